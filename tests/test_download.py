"""Downloads against a local HTTP server on loopback: progress, resume, checksum, offline errors. No internet."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from semsam.download import DownloadError, download

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    payload = PAYLOAD
    honour_range = True
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802
        if self.path != "/sam.pth":
            self.send_error(404, "Not Found")
            return
        requested = self.headers.get("Range")
        type(self).ranges.append(requested)
        start = int(requested.removeprefix("bytes=").rstrip("-")) if requested and self.honour_range else 0
        if start >= len(self.payload) and requested:
            self.send_error(416, "Range Not Satisfiable")
            return
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    _Handler.ranges = []
    _Handler.honour_range = True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_downloads_and_verifies(server, tmp_path):
    path = download(f"{server}/sam.pth", tmp_path / "cache" / "sam.pth", md5=MD5)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache" / "sam.pth.part").exists()
    assert download(f"{server}/sam.pth", path, md5=MD5) == path  # cached: no second request
    assert _Handler.ranges == [None]


def test_resumes_a_partial_download(server, tmp_path):
    (tmp_path / "sam.pth.part").write_bytes(PAYLOAD[:300_000])
    path = download(f"{server}/sam.pth", tmp_path / "sam.pth", md5=MD5)
    assert _Handler.ranges == ["bytes=300000-"]
    assert path.read_bytes() == PAYLOAD


def test_restarts_when_the_server_ignores_ranges(server, tmp_path):
    _Handler.honour_range = False
    (tmp_path / "sam.pth.part").write_bytes(b"x" * 1000)
    assert download(f"{server}/sam.pth", tmp_path / "sam.pth", md5=MD5).read_bytes() == PAYLOAD


def test_a_complete_part_file_is_finished(server, tmp_path):
    (tmp_path / "sam.pth.part").write_bytes(PAYLOAD)
    assert download(f"{server}/sam.pth", tmp_path / "sam.pth", md5=MD5).read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    with pytest.raises(DownloadError, match="has MD5 .*, expected 0+: the damaged download was deleted"):
        download(f"{server}/sam.pth", tmp_path / "sam.pth", md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_the_file_to_place(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404 .*place it at .*missing\.pth"):
        download(f"{server}/missing.pth", tmp_path / "missing.pth", md5=None)


def test_offline_fails_at_once_saying_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(DownloadError, match=rf"cannot download .*Offline\? Download .* place it at {tmp_path}/sam\.pth"):
        download(f"http://127.0.0.1:{port}/sam.pth", tmp_path / "sam.pth", md5=MD5)
    assert time.perf_counter() - start < 5


def test_load_model_downloads_the_official_file_into_the_cache(server, tmp_path, monkeypatch):
    import torch

    from semsam import MODEL_CONFIGS, load_model
    from semsam.build import build_model
    from semsam.config import SamConfig
    from semsam.download import OFFICIAL_FILES, OfficialFile

    config = SamConfig(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, global_attn_indexes=(0,),
                       image_size=64)
    monkeypatch.setitem(MODEL_CONFIGS, "sam_micro_test", config)
    torch.manual_seed(0)
    original = build_model("sam_micro_test")
    weights = tmp_path / "weights.pth"
    torch.save(original.state_dict(), weights)
    _Handler.payload = weights.read_bytes()
    try:
        digest = hashlib.md5(_Handler.payload).hexdigest()
        monkeypatch.setitem(OFFICIAL_FILES, "sam_micro_test", OfficialFile(f"{server}/sam.pth", digest))
        monkeypatch.setenv("SEMSAM_CACHE_DIR", str(tmp_path / "cache"))
        model = load_model("sam_micro_test")
    finally:
        _Handler.payload = PAYLOAD
    assert (tmp_path / "cache" / "checkpoints" / "sam.pth").is_file()
    for key, tensor in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor)
