"""The `semsam` command: one sub-command per module in `COMMANDS`."""

from __future__ import annotations

import argparse
import sys

from semsam import __version__
from semsam.checkpoint import CheckpointError
from semsam.cli import convert, evaluate, everything, segment, serve, train

COMMANDS = (segment, train, evaluate, convert, everything, serve)

DESCRIPTION = """semsam: segment and recognise anything at any granularity.

One click gives six masks, from the finest part to the whole object, each with a predicted IoU
(and object/part labels when the model's classification heads were trained).

examples:
  semsam segment semsam/assets/example.jpg --point 225,120
  semsam segment photo.jpg --point 120,80 --negative 200,90 --box 50,40,300,260 --out results
  semsam train configs/joint_mobilenet.toml --data-root ~/datasets
  semsam fit-recognizer configs/joint_mobilenet.toml --checkpoint runs/joint_mobilenet/final.safetensors \\
      --imagenet mobilenet_v2_imagenet.safetensors --out recognized.safetensors
  semsam calibrate-iou configs/joint_mobilenet.toml --checkpoint recognized.safetensors --out calibrated.safetensors
  semsam eval click --dataset bsds500 --root data/bsds500 --split val
  semsam eval labels --dataset synthetic_parts --split val --checkpoint runs/synthetic_parts_mobilenet/final.safetensors
  semsam eval interactive --dataset coco --root data/coco_mval --split val --grabcut --out results
  semsam convert sam_vit_b sam_vit_b_01ec64.pth
  semsam everything photos/ --levels 1,3,6 --out annotations
  semsam serve --port 8000          (then open http://127.0.0.1:8000)

Run `semsam COMMAND --help` for the options of each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semsam", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"semsam {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; bad input and file-system errors (missing file, no permission) print one line, exit code 2.

    Without a command it prints the help (exit code 0).
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, CheckpointError, OSError) as error:
        print(f"semsam: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
