"""`semsam convert`: an official .pth release -> a semsam safetensors checkpoint."""

from __future__ import annotations

import argparse

from semsam.download import OFFICIAL_FILES

DESCRIPTION = f"""Convert an official checkpoint (.pth) into a semsam safetensors file.

Every tensor is checked against the model's layout (missing, unexpected and mis-shaped keys are refused), the
official files' aliased keys are checked to be equal, and the result carries its config, so that
`semsam segment --checkpoint OUT.safetensors` and `load_model(checkpoint=...)` need no model name.
The .pth file is read with torch.load(weights_only=True): no code in it is run.

models: {', '.join(OFFICIAL_FILES)}

examples:
  semsam convert sam_vit_b sam_vit_b_01ec64.pth
  semsam convert semantic_sam_t swint_only_sam_many2many.pth --out semantic_sam_t.safetensors"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert an official .pth checkpoint to safetensors", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="the model the file belongs to, e.g. sam_vit_b")
    parser.add_argument("checkpoint", metavar="PTH", help="the official .pth file")
    parser.add_argument("--out", metavar="PATH", help="safetensors file to write (default: PTH with .safetensors)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from semsam.convert import convert_official

    written = convert_official(args.model, args.checkpoint, args.out)
    print(f"wrote {written}")
    return 0
