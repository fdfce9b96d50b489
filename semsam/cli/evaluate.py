"""`semsam eval click|labels`: 1-click mIoU and coverage, or label accuracy of clicked masks."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

DESCRIPTION = """Evaluate a model on a dataset with one of two protocols.

click: every segment covering >= 0.5% of its image (all annotators; near-duplicates with IoU > 0.95
merged) is a target, clicked at its interior-most pixel. Reported:
  miou_best   mean over targets of the best IoU among the K masks
  miou_top1   mean IoU of the highest-scored mask
  coverage    per click, the mean over all segments containing the click of the best IoU; then the mean
  seconds_per_image (set_image) and ms_per_click (one predict call, all K masks) on this machine

Any data set `semsam train` reads works (--dataset is its kind: bsds500, coco, coco_parts, sa1b, ...).

labels: every labelled object or part mask covering >= 0.5% of its image is clicked at its interior-most
pixel; the label of the predicted mask that best matches it (highest IoU) must name its class among the
dataset's names. Reported: object_accuracy over object masks, part_accuracy over part masks, the same for
the highest-scored mask (*_top1), and the chance levels (*_chance: always the most frequent class;
*_uniform_chance: one over the number of names); null for a kind the data set does not name. Needs a model
whose object/part heads were trained.

examples:
  semsam eval click --dataset bsds500 --root data/bsds500 --split val
  semsam eval click --dataset coco --root data/coco_mval --split val
  semsam eval labels --dataset coco --root data/camvid --split val
  semsam eval labels --dataset coco_parts --root data/ccp --split val
  semsam eval labels --dataset synthetic_parts --split val --checkpoint runs/synthetic_parts_mobilenet/final.safetensors
  semsam eval labels --dataset synthetic_parts --dataset-option length=50 --checkpoint model.safetensors"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model (1-click mIoU and coverage, or label accuracy)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("protocol", choices=["click", "labels"], help="evaluation protocol")
    parser.add_argument("--dataset", required=True, help="dataset kind, e.g. bsds500 or synthetic_parts")
    parser.add_argument("--root", default="", help="dataset folder (not needed for synthetic_parts)")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra dataset argument as in a config's options table, e.g. length=100 (repeatable)")
    parser.add_argument("--model", help="registered model name (default: the checkpoint's own config)")
    parser.add_argument("--checkpoint", help="semsam checkpoint (default: the embedded model)")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument("--out", help="also write the metrics as JSON to this file")
    parser.set_defaults(func=run)


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are read as JSON (numbers, true/false) and otherwise kept as text."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--dataset-option {item!r}: expected KEY=VALUE, e.g. length=100")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def run(args: argparse.Namespace) -> int:
    from semsam.build import load_model
    from semsam.data import build_dataset
    from semsam.evaluation.click import evaluate_clicks
    from semsam.evaluation.labels import evaluate_labels
    from semsam.io import write_json_atomic
    from semsam.predictor import Predictor
    from semsam.training.config import DatasetSpec

    if args.max_images is not None and args.max_images <= 0:
        raise ValueError(f"--max-images must be positive, got {args.max_images}")
    spec = DatasetSpec(kind=args.dataset, root=args.root, split=args.split,
                       options=parse_options(args.dataset_option))
    try:
        dataset = build_dataset(spec)
    except TypeError as error:
        raise ValueError(f"--dataset-option does not fit dataset {args.dataset!r}: {error}") from None
    model = load_model(args.model, checkpoint=args.checkpoint)
    evaluate = evaluate_clicks if args.protocol == "click" else evaluate_labels
    metrics = evaluate(Predictor(model), dataset, max_images=args.max_images)
    report = {"protocol": args.protocol, "dataset": args.dataset, "split": args.split,
              "checkpoint": args.checkpoint or "embedded", **asdict(metrics)}
    print(json.dumps(report, indent=2))
    if args.out:
        write_json_atomic(args.out, report)
    return 0
