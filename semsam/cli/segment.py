"""`semsam segment`: K masks, part to whole, for clicks and/or a box on one image (K = 6 Semantic-SAM, 3 SAM)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from semsam.cli.arguments import add_vocabulary_arguments
from semsam.config import DEFAULT_MODEL, MODEL_CONFIGS

if TYPE_CHECKING:
    import numpy as np
    import torch

DESCRIPTION = """Segment one image from clicks and/or a box, at every granularity.

Writes to --out (K masks: 6 granularity levels for Semantic-SAM models, SAM's 3 ambiguity masks for sam_vit_*):
  overlay.png          one panel per mask (level 1 = finest ... K = coarsest) with score and label
  mask_level{i}.png    each mask as a black/white PNG
  result.json          COCO RLE masks (pycocotools), scores, boxes, areas, labels and the prompts

Coordinates are pixels of the original image, x from the left, y from the top.
Give at least one --point or a --box; --negative clicks only refine one of those.

With --text, find what a phrase names instead ("dog", "person:hair", "hair of the person"; any wording, e.g.
"puppy" finds "dog"): the masks whose object or part labels match it, ranked best first, each with its score
(the probability its label puts on the phrase), or the answer that nothing matches and why. Alone, the whole
image is searched; with --point/--box, only that prompt's masks ("the dog here"). Writes overlay.png (one
panel per match), match{i}.png and result.json. Needs a model with trained object/part heads (the embedded
default has them).

With --refine-edges, each mask's uncertain band (|logit| <= 4) is re-cut by OpenCV's GrabCut, with the clicks as
sure seeds: edges follow the image's (about 0.1 s per mask; needs pip install 'semsam[eval]').

examples:
  semsam segment semsam/assets/example.jpg --point 225,120
  semsam segment semsam/assets/example.jpg --text hair
  semsam segment semsam/assets/example.jpg --text person --point 225,120
  semsam segment photo.jpg --point 120,80 --negative 200,90
  semsam segment photo.jpg --point 120,80 --negative 200,90 --refine-edges
  semsam segment photo.jpg --box 50,40,300,260 --point 120,80 --out results
  semsam segment photo.jpg --point 120,80 --checkpoint my_model.safetensors --objects person,dog --parts head,leg
  semsam segment photo.jpg --point 120,80 --model sam_vit_b --checkpoint sam_vit_b_01ec64.pth
  semsam segment photo.jpg --point 120,80 --model sam_vit_b    (downloads the official file once, then cached)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment an image from clicks and/or a box", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", help="image file (PNG, JPEG, TIFF, BMP, WebP ...)")
    parser.add_argument("--point", action="append", default=[], metavar="X,Y", help="positive click (repeatable)")
    parser.add_argument("--negative", action="append", default=[], metavar="X,Y",
                        help="negative click: a place that must not be in the mask (repeatable)")
    parser.add_argument("--box", metavar="X0,Y0,X1,Y1", help="box around the thing to segment")
    parser.add_argument("--text", metavar="PHRASE",
                        help='find what the phrase names: "dog", "person:hair" (see above); with --point/--box, '
                        "among that prompt's masks")
    parser.add_argument("--text-threshold", type=float, metavar="T",
                        help="--text: masks scoring below T are no match, objects and parts alike (default: "
                        "calibrated for the embedded model, see docs/evaluation.md)")
    parser.add_argument("--refine-edges", action="store_true",
                        help="re-cut each mask's uncertain edges with GrabCut (clicks as sure seeds)")
    parser.add_argument("--out", default="semsam_out", metavar="DIR", help="output folder (default: semsam_out)")
    parser.add_argument("--model", metavar="NAME", help=f"registered model: {', '.join(MODEL_CONFIGS)} "
                        f"(default: the checkpoint's own, else the embedded {DEFAULT_MODEL})")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="semsam safetensors checkpoint, or an official .pth with --model (default: the model's "
                        "embedded weights, or its official release downloaded into ~/.cache/semsam/checkpoints)")
    add_vocabulary_arguments(parser)
    parser.set_defaults(func=run)


def parse_numbers(text: str, count: int, flag: str) -> tuple[float, ...]:
    """Parses "x,y" or "x0,y0,x1,y1", naming the flag and the expected form on error."""
    parts = [part.strip() for part in text.split(",")]
    form = "X,Y" if count == 2 else "X0,Y0,X1,Y1"
    if len(parts) != count:
        raise ValueError(f"{flag} {text!r}: expected {count} comma-separated numbers ({form})")
    try:
        numbers = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: {form} must be numbers") from None
    if not all(math.isfinite(number) for number in numbers):
        raise ValueError(f"{flag} {text!r}: {form} must be finite pixel coordinates, not nan or inf")
    return numbers


def run(args: argparse.Namespace) -> int:
    from semsam.build import load_model
    from semsam.image import read_image
    from semsam.io import mask_to_rle, write_json_atomic, write_png_atomic
    from semsam.predictor import Predictor
    from semsam.visualize import granularity_panels

    positives = [parse_numbers(p, 2, "--point") for p in args.point]
    negatives = [parse_numbers(p, 2, "--negative") for p in args.negative]
    box = parse_numbers(args.box, 4, "--box") if args.box else None
    if args.text_threshold is not None and args.text is None:
        raise ValueError("--text-threshold goes with --text")
    if args.refine_edges and args.text is not None:
        raise ValueError("--refine-edges goes with --point/--box prompts, not --text")
    if not positives and box is None and args.text is None:
        raise ValueError("give at least one --point, a --box or a --text (negative clicks alone do not say what "
                         "to segment)")
    if negatives and not positives and box is None:
        raise ValueError("--negative clicks only refine a --point or a --box; give one of those too")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder to write the results into")
    image = read_image(args.image)
    _progress(f"loading model {args.checkpoint or args.model or DEFAULT_MODEL} ...")
    model = load_model(args.model, checkpoint=args.checkpoint)
    points = positives + negatives
    labels = [1] * len(positives) + [0] * len(negatives)
    if args.text is not None:
        return run_text(args, model, image, points, labels, box, out)
    predictor = Predictor(model, objects=args.objects, parts=args.parts)
    _progress(f"encoding the {image.shape[1]}x{image.shape[0]} image and decoding the prompt ...")
    predictor.set_image(image)
    result = predictor.predict(points=points or None, labels=labels or None, box=box)
    if args.refine_edges:
        _progress("re-cutting the edges with GrabCut ...")
        from semsam.grabcut import GrabCutRefiner

        result = GrabCutRefiner().refine_prediction(predictor, image, result, points, labels)

    overlay = granularity_panels(image, result.masks, result.scores, result.labels, points=points,
                                 point_labels=labels, box=box)
    write_png_atomic(out / "overlay.png", overlay)
    masks_json = []
    for level, mask in enumerate(result.masks, start=1):
        write_png_atomic(out / f"mask_level{level}.png", mask)
        x0, y0, x1, y1 = (float(v) for v in result.boxes[level - 1])
        label = result.labels[level - 1] if result.labels is not None else None
        masks_json.append({
            "level": level,
            "score": float(result.scores[level - 1]),
            "area": int(mask.sum()),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "segmentation": mask_to_rle(mask),
            "label": None if label is None else vars(label),
        })
    note = ("levels are ordered by area, 1 = finest; score = predicted IoU" if predictor.labels_available else
            "this model's classification heads were not trained, so no labels are given")
    write_json_atomic(out / "result.json", {
        "image": str(args.image),
        "image_size": list(image.shape[:2]),
        "model": args.checkpoint or args.model or f"{DEFAULT_MODEL} (embedded)",
        "prompts": {"points": [list(p) for p in points], "labels": labels, "box": list(box) if box else None},
        "labels_available": predictor.labels_available,
        "masks": masks_json,
        "note": note,
    })
    print(f"{'level':>5}  {'area':>8}  {'score':>6}  label")
    for entry in masks_json:
        label = entry["label"]
        text = "-" if label is None else (
            f"{label['object']} ({label['object_score']:.2f}) / {label['part']} ({label['part_score']:.2f})"
        )
        print(f"{entry['level']:>5}  {entry['area']:>8}  {entry['score']:>6.3f}  {text}")
    if not predictor.labels_available:
        print("no labels: this model's object/part classification heads were not trained (see the model card)")
    print(f"wrote {out / 'overlay.png'}, {out / 'mask_level1.png'} ... mask_level{len(masks_json)}.png, "
          f"{out / 'result.json'}")
    return 0


def run_text(args: argparse.Namespace, model: torch.nn.Module, image: np.ndarray, points: list, labels: list[int],
             box: tuple[float, ...] | None, out: Path) -> int:
    """`--text`: the matches ranked, their overlay, masks and result.json; or why nothing matches."""
    from semsam.automatic.text_prompt import TextPrompter
    from semsam.io import write_json_atomic, write_png_atomic
    from semsam.visualize import granularity_panels

    thresholds = None if args.text_threshold is None else {"object": args.text_threshold, "part": args.text_threshold}
    prompter = TextPrompter(model, thresholds=thresholds, objects=args.objects, parts=args.parts)
    _progress(f"looking for {args.text!r} in the {image.shape[1]}x{image.shape[0]} image ...")
    spatial = bool(points) or box is not None
    result = prompter.predict(image, args.text, points=points if points else None,
                              labels=labels if points else None, box=box)
    if result.found:
        titles = [f"#{rank} {result.query.text!r} · score {match.score:.2f} · level {match.level}"
                  for rank, match in enumerate(result.matches, start=1)]
        overlay = granularity_panels(image, [m.mask for m in result.matches], [m.score for m in result.matches],
                                     [m.label for m in result.matches], points=points, point_labels=labels,
                                     box=box, titles=titles)
        write_png_atomic(out / "overlay.png", overlay)
        for rank, match in enumerate(result.matches, start=1):
            write_png_atomic(out / f"match{rank}.png", match.mask)
    write_json_atomic(out / "result.json", {
        "image": str(args.image),
        "image_size": list(image.shape[:2]),
        "model": args.checkpoint or args.model or f"{DEFAULT_MODEL} (embedded)",
        "prompts": {"points": [list(p) for p in points], "labels": labels, "box": list(box) if box else None}
        if spatial else None,
        **result.to_json(),
    })
    for name in result.names:
        nearest = ", ".join(f"{n} {c:.2f}" for n, c in name.nearest)
        print(f"{name.phrase!r} read as {name.vocabulary} name(s): {nearest}")
    if not result.found:
        print(f"nothing matches: {result.reason}")
        print(f"wrote {out / 'result.json'}")
        return 0
    print(f"{'rank':>4}  {'score':>6}  {'level':>5}  {'area':>8}  label")
    for rank, match in enumerate(result.matches, start=1):
        label = match.label
        print(f"{rank:>4}  {match.score:>6.3f}  {match.level:>5}  {int(match.mask.sum()):>8}  "
              f"{label.object} ({label.object_score:.2f}) / {label.part} ({label.part_score:.2f})")
    print(f"wrote {out / 'overlay.png'}, {out / 'match1.png'} ... match{len(result.matches)}.png, "
          f"{out / 'result.json'}")
    return 0


def _progress(message: str) -> None:
    # stderr, so that stdout carries only the summary table and the output paths.
    print(message, file=sys.stderr, flush=True)
