"""`semsam eval click`: 1-click mIoU, top-1 mIoU and coverage on a segmentation dataset."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

DESCRIPTION = """Evaluate 1-click segmentation on a dataset.

Every segment covering >= 0.5% of its image (all annotators; near-duplicates with IoU > 0.95 merged)
is a target, clicked at its interior-most pixel. Reported:
  miou_best   mean over targets of the best IoU among the K masks
  miou_top1   mean IoU of the highest-scored mask
  coverage    per click, the mean over all segments containing the click of the best IoU; then the mean
  seconds_per_image (set_image) and ms_per_click (one predict call, all K masks) on this machine

example: semsam eval click --dataset bsds500 --root ../shared/data/bsds500 --split val"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model (1-click mIoU and coverage)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("protocol", choices=["click"], help="evaluation protocol")
    parser.add_argument("--dataset", required=True, help="dataset kind, e.g. bsds500")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--model", help="registered model name (default: the checkpoint's own config)")
    parser.add_argument("--checkpoint", help="semsam checkpoint (default: the embedded model)")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument("--out", help="also write the metrics as JSON to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from semsam.build import load_model
    from semsam.data import build_dataset
    from semsam.evaluation.click import evaluate_clicks
    from semsam.io import write_json_atomic
    from semsam.predictor import Predictor
    from semsam.training.config import DatasetSpec

    if args.max_images is not None and args.max_images <= 0:
        raise ValueError(f"--max-images must be positive, got {args.max_images}")
    dataset = build_dataset(DatasetSpec(kind=args.dataset, root=args.root, split=args.split))
    model = load_model(args.model, checkpoint=args.checkpoint)
    metrics = evaluate_clicks(Predictor(model), dataset, max_images=args.max_images)
    report = {"dataset": args.dataset, "split": args.split, "checkpoint": args.checkpoint or "embedded", **asdict(metrics)}
    print(json.dumps(report, indent=2))
    if args.out:
        write_json_atomic(args.out, report)
    return 0
