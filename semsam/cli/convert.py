"""`semsam convert` (official .pth releases) and `semsam convert-tflite` (MobileNetV2 TFLite files) -> safetensors."""

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


TFLITE_DESCRIPTION = """Convert a quantized MobileNetV2 TFLite file into float safetensors, to initialise a backbone.

Reads the flatbuffer with the `tflite` parser and numpy (no TensorFlow; pip install "semsam[convert]"),
dequantizes every convolution and maps it onto semsam's MobileNetV2. An ImageNet classifier converts whole
(backbone, head, classifier); a DeepLabV3-MobileNetV2 converts its backbone. A file that is not MobileNetV2 1.0
is refused, naming the first convolution that does not fit. Training configs then name the result as
backbone_checkpoint.

examples:
  semsam convert-tflite tf2_mobilenet_v2_1.0_224_ptq.tflite --out runs/pretrained/mobilenet_v2_imagenet.safetensors
  semsam convert-tflite deeplabv3_mnv2_pascal_quant.tflite --out runs/pretrained/mobilenet_v2_deeplab_voc.safetensors"""


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_official(subparsers)
    parser = subparsers.add_parser(
        "convert-tflite", help="convert a MobileNetV2 TFLite file to safetensors (backbone initialisation)",
        description=TFLITE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tflite", metavar="TFLITE",
                        help="the .tflite file (ImageNet MobileNetV2 or DeepLabV3-MobileNetV2)")
    parser.add_argument("--out", metavar="PATH", required=True, help="safetensors file to write")
    parser.set_defaults(func=run_tflite)


def run_tflite(args: argparse.Namespace) -> int:
    from semsam.tflite_convert import write_converted

    written, kind = write_converted(args.tflite, args.out)
    print(f"wrote {written} ({kind} MobileNetV2)")
    return 0


def _register_official(subparsers: argparse._SubParsersAction) -> None:
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

    written, own = convert_official(args.model, args.checkpoint, args.out)
    print(f"wrote {written}")
    if own:
        print(f"semsam's own tensors, not in official files, keep their initial values: {', '.join(own)}")
    return 0
