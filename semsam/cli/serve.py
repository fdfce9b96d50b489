"""`semsam serve`: the web demo, a page to click on images and get masks at every granularity."""

from __future__ import annotations

import argparse
import socket
import sys

from semsam.config import DEFAULT_MODEL, MODEL_CONFIGS

DESCRIPTION = """Serve the web demo: upload an image (or take the bundled example), click on it and see the
K masks from the finest part to the whole object, with scores and labels; download them as PNG or COCO JSON.

In the page: left click = positive point, right click = negative point, drag = box.
The image is encoded once per upload and kept in a cache, so each click only runs the decoder.
The HTTP API is described at http://HOST:PORT/docs (OpenAPI schema at /openapi.json).

The server listens on 127.0.0.1 by default: only this machine can reach it. Use --host 0.0.0.0 to open it
to your network (it has no authentication).

examples:
  semsam serve                                  then open http://127.0.0.1:8000
  semsam serve --port 8080 --checkpoint my_model.safetensors
  curl -F file=@photo.jpg http://127.0.0.1:8000/api/images"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="web demo: click on an image in the browser", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", metavar="NAME", help=f"registered model: {', '.join(MODEL_CONFIGS)} "
                        f"(default: the checkpoint's own, else the embedded {DEFAULT_MODEL})")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="semsam checkpoint file (default: the model's embedded weights)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="model calls run at once; more requests wait in a queue (default: 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from semsam.serving import ServeLimits, create_app
        from semsam.serving.server import server_config
    except ImportError as error:
        raise ValueError(f"the web demo needs its extra dependencies ({error.name} is missing): "
                         'pip install "semsam[serve]"') from None
    from semsam.build import load_model

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    _check_address(args.host, args.port)
    limits = ServeLimits(max_concurrency=args.workers)
    name = args.checkpoint or args.model or DEFAULT_MODEL
    print(f"loading model {name} ...", file=sys.stderr, flush=True)
    model = load_model(args.model, checkpoint=args.checkpoint)
    app = create_app(model=model, model_name=name, limits=limits)
    print(f"semsam demo on http://{args.host}:{args.port} (API docs at /docs); Ctrl-C stops it",
          file=sys.stderr, flush=True)
    uvicorn.Server(server_config(app, host=args.host, port=args.port, limits=limits)).run()
    return 0


def _check_address(host: str, port: int) -> None:
    # Before the slow model load, so that a taken port is reported at once and in one line.
    try:
        socket.create_server((host, port)).close()
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                         "choose another --port, or stop what is using it") from None
