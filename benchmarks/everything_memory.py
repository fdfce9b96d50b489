"""Peak memory of the web demo's "segment everything" (POST /api/images/{id}/everything) by image size.

Each size runs in a fresh process: the embedded model, a synthetic image of shapes (PNG, uploaded through the
API), one click to encode it, then the peak is reset (/proc/self/clear_refs) and /everything runs with the
server's defaults (all levels, 16x16 points). Reported: the resident memory before the request, its peak during
it (VmHWM), the increase, the time and the number of masks. Linux only.

example:
  OMP_NUM_THREADS=1 python -m benchmarks.everything_memory --sizes 1024 2048 4096
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time

import numpy as np
from PIL import Image


def shapes_png(side: int) -> bytes:
    """A side x side RGB image of overlapping rectangles and discs on a gradient, as PNG (compresses well)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    image = np.stack([x * 200, y * 200, (x + y) * 100], axis=-1).astype(np.uint8)
    for _ in range(12):
        x0, y0 = rng.integers(0, side * 3 // 4, size=2)
        w, h = rng.integers(side // 10, side // 3, size=2)
        image[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, size=3)
    for _ in range(8):
        cx, cy, r = rng.integers(0, side), rng.integers(0, side), rng.integers(side // 20, side // 6)
        image[(x * side - cx) ** 2 + (y * side - cy) ** 2 < r * r] = rng.integers(0, 256, size=3)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def resident_kib() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS", "VmHWM")):
                name, value = line.split(":")
                fields[name] = int(value.split()[0])
    return fields


def measure(side: int) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from semsam.build import load_model
    from semsam.serving import create_app

    with TestClient(create_app(model=load_model(), model_name="semsam_tiny")) as client:
        uploaded = client.post("/api/images", files={"file": ("shapes.png", shapes_png(side), "image/png")})
        uploaded.raise_for_status()
        image_id = uploaded.json()["image_id"]
        client.post(f"/api/images/{image_id}/predict", json={"points": [[side // 2, side // 2]]}).raise_for_status()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = resident_kib()["VmRSS"]
        start = time.perf_counter()
        response = client.post(f"/api/images/{image_id}/everything", json={})
        seconds = time.perf_counter() - start
        response.raise_for_status()
        peak = resident_kib()["VmHWM"]
    return {"side": side, "rss_before_mib": before / 1024, "peak_mib": peak / 1024,
            "increase_mib": (peak - before) / 1024, "seconds": seconds, "masks": len(response.json()["masks"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print("| image | RSS before (MiB) | peak during /everything (MiB) | increase (MiB) | time (s) | masks |")
    print("|---|---|---|---|---|---|")
    for side in args.sizes:
        done = subprocess.run([sys.executable, "-m", "benchmarks.everything_memory", "--one", str(side)],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {side}x{side} | {row['rss_before_mib']:.0f} | {row['peak_mib']:.0f} | {row['increase_mib']:.0f} | "
              f"{row['seconds']:.1f} | {row['masks']} |", flush=True)


if __name__ == "__main__":
    main()
