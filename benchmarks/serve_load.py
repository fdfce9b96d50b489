"""Load test of the demo server: click requests on one cached image, over loopback only.

Starts `semsam serve`'s app in this process on a free 127.0.0.1 port (or uses --url, which must be a loopback
address), uploads an image, makes one click to encode it, then sends single-click requests from --clients
threads until --requests are done or --seconds have passed. Reports requests/s and latency percentiles, and
checks with /api/info that no request re-encoded the image.

example (from the repository root): OMP_NUM_THREADS=1 python -m benchmarks.serve_load --requests 300 --clients 4
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "semsam" / "assets" / "example.jpg"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_REQUESTS, MAX_SECONDS = 5000, 600


def start_server(workers: int) -> tuple[str, object]:
    """Serves the embedded model on a free loopback port from a background thread."""
    import uvicorn

    from semsam import load_model
    from semsam.serving import ServeLimits, create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(model=load_model(), model_name="semsam_mobilenet", limits=ServeLimits(max_concurrency=workers))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start within 60 s")
        time.sleep(0.05)
    return url, server


def run_load(url: str, image: Path, *, requests: int, clients: int, seconds: float, seed: int) -> dict:
    with httpx.Client(base_url=url, timeout=120) as client:
        files = {"file": (image.name, image.read_bytes())}
        uploaded = client.post("/api/images", files=files).raise_for_status().json()
        image_id, width, height = uploaded["image_id"], uploaded["width"], uploaded["height"]
        client.post(f"/api/images/{image_id}/predict", json={"points": [[width / 2, height / 2]]}).raise_for_status()
        encodes_before = client.get("/api/info").json()["encodes"]
    rng = np.random.default_rng(seed)
    clicks = np.column_stack([rng.uniform(0, width - 1, requests), rng.uniform(0, height - 1, requests)]).tolist()
    latencies: list[float] = []
    failures: list[str] = []
    next_index = iter(range(requests))
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as session:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                started = time.perf_counter()
                response = session.post(f"/api/images/{image_id}/predict", json={"points": [clicks[index]]})
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies if response.status_code == 200 else failures).append(
                        elapsed if response.status_code == 200 else f"{response.status_code}: {response.text[:80]}")

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    with httpx.Client(base_url=url) as client:
        encodes_after = client.get("/api/info").json()["encodes"]
    milliseconds = sorted(1000 * value for value in latencies)
    return {
        "image": f"{image.name} ({width}x{height})",
        "clients": clients,
        "requests_ok": len(latencies),
        "requests_failed": len(failures),
        "first_failures": failures[:3],
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(milliseconds), 1) if milliseconds else None,
        "p95_ms": round(milliseconds[int(0.95 * (len(milliseconds) - 1))], 1) if milliseconds else None,
        "max_ms": round(milliseconds[-1], 1) if milliseconds else None,
        "encodes_during_load": encodes_after - encodes_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running semsam server on this machine (default: start one here)")
    parser.add_argument("--image", type=Path, default=EXAMPLE, help="image to click on (default: the example)")
    parser.add_argument("--requests", type=int, default=200, help=f"click requests (at most {MAX_REQUESTS})")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients (default: 1)")
    parser.add_argument("--seconds", type=float, default=60, help=f"stop after this long (at most {MAX_SECONDS})")
    parser.add_argument("--workers", type=int, default=1, help="model workers of the started server (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random click positions")
    args = parser.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS or not 0 < args.seconds <= MAX_SECONDS or not 1 <= args.clients <= 64:
        parser.error(f"--requests must be in 1..{MAX_REQUESTS}, --seconds in (0, {MAX_SECONDS}], --clients in 1..64")
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error(f"--url must be a loopback address ({', '.join(sorted(LOOPBACK))}): this script loads a server")
    url, server = (args.url, None) if args.url else start_server(args.workers)
    try:
        report = run_load(url, args.image, requests=args.requests, clients=args.clients, seconds=args.seconds,
                          seed=args.seed)
    finally:
        if server is not None:
            server.should_exit = True
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
