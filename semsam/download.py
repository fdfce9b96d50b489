"""Downloading official checkpoints into a cache: progress bar, resumable, checksum-verified, clear offline errors."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

CHUNK_BYTES = 1 << 20


class DownloadError(OSError):
    """A download that failed or whose checksum did not match; the message says what to do."""


@dataclass(frozen=True)
class OfficialFile:
    """An official release file. `md5` is None where the publishers give no checksum."""

    url: str
    md5: str | None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# SAM: the MD5 sums whose first six hex digits the official file names carry.
# Semantic-SAM publishes no checksum: its files are not verified (their SHA-256 is printed for comparison).
OFFICIAL_FILES: dict[str, OfficialFile] = {
    "sam_vit_b": OfficialFile("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                              "01ec64d29a2fca3f0661936605ae66f5"),
    "sam_vit_l": OfficialFile("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                              "0b3195507c641ddb6910d2bb5adee89c"),
    "sam_vit_h": OfficialFile("https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                              "4b8939a88964f0f4ff5f5b2642c598a6"),
    "semantic_sam_t": OfficialFile(
        "https://github.com/UX-Decoder/Semantic-SAM/releases/download/checkpoint/swint_only_sam_many2many.pth", None),
    "semantic_sam_l": OfficialFile(
        "https://github.com/UX-Decoder/Semantic-SAM/releases/download/checkpoint/swinl_only_sam_many2many.pth", None),
}


def checkpoint_dir() -> Path:
    """Where official checkpoints are kept: $SEMSAM_CACHE_DIR/checkpoints, else ~/.cache/semsam/checkpoints."""
    return Path(os.environ.get("SEMSAM_CACHE_DIR", Path.home() / ".cache" / "semsam")) / "checkpoints"


def fetch_official(name: str) -> Path:
    """The cached official file of a model, downloaded first when absent."""
    official = OFFICIAL_FILES[name]
    return download(official.url, checkpoint_dir() / official.filename, md5=official.md5)


def download(url: str, destination: Path, *, md5: str | None, timeout: float = 30.0) -> Path:
    """Downloads `url` to `destination` unless it is already there.

    Bytes go to `destination + ".part"` first; a later call resumes it with an HTTP Range request. The file is
    renamed into place only once complete and, when `md5` is given, verified.

    Raises:
        DownloadError: no connection, an HTTP error, or a checksum mismatch; the message names the file to
            place by hand and where.
    """
    destination = Path(destination)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the range: start again
            total = response.length + offset if response.length is not None else None
            with open(part, "ab" if offset else "wb") as handle, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=destination.name, disable=None,
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    bar.update(len(chunk))
    except HTTPError as error:
        if error.code == 416 and offset:
            return _finish(part, destination, url, md5)  # the part file already holds every byte
        raise DownloadError(f"downloading {url} failed: HTTP {error.code} {error.reason}. {_by_hand(url, destination)}")
    except (URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot download {url} ({reason}). {_by_hand(url, destination)}") from None
    return _finish(part, destination, url, md5)


def _finish(part: Path, destination: Path, url: str, md5: str | None) -> Path:
    if md5 is not None:
        actual = file_digest(part, "md5")
        if actual != md5:
            part.unlink()
            raise DownloadError(
                f"{destination.name} from {url} has MD5 {actual}, expected {md5}: the damaged download was deleted; "
                "run again to download it afresh"
            )
    else:
        print(f"{destination.name}: no published checksum to verify against; SHA-256 {file_digest(part, 'sha256')}")
    shutil.move(part, destination)
    return destination


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _by_hand(url: str, destination: Path) -> str:
    return (f"Offline? Download {url} on another machine and place it at {destination} "
            "(or pass checkpoint=PATH / --checkpoint PATH).")
