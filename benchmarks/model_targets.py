"""Every figure of the model's targets, on each val split of ../shared/data, for one checkpoint.

usage: python -m benchmarks.model_targets [--checkpoint PATH] [--data ../shared/data] [--max-images N]
           [--skip interactive] [--out results.json]

Runs the library's evaluators (the protocols of `semsam eval click`, `semsam eval labels` and
`semsam eval interactive`, `semsam eval text`): 1-click best-of-K mIoU on BSDS500 and COCO-MVal, label
accuracy of the best-matching mask on COCO-MVal (objects), CamVid (objects) and CCP (parts) with chance levels,
NoC@85/90 on COCO-MVal, and text-to-mask on COCO-MVal and CCP. Prints each figure beside its target (text-to-mask
and how often a corrective click fixes its own pixel have none yet: they are printed as measured).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from semsam.build import load_model
from semsam.data import build_dataset
from semsam.evaluation.click import evaluate_clicks
from semsam.evaluation.labels import evaluate_labels
from semsam.io import write_json_atomic
from semsam.predictor import Predictor

# (figure, target, higher is better)
TARGETS = {
    "bsds500.miou_best": (0.62, True), "bsds500.miou_top1": (0.45, True), "bsds500.coverage": (0.60, True),
    "coco_mval.miou_best": (0.70, True), "coco_mval_labels.object_accuracy": (0.50, True),
    "ccp_labels.part_accuracy": (0.50, True), "camvid_labels.object_accuracy": (0.70, True),
    "coco_mval_interactive.noc85": (5.0, False), "coco_mval_interactive.noc90": (8.0, False),
    "bsds500.seconds_per_image": (0.1, False), "bsds500.ms_per_click": (10.0, False),
}
# Figures without a target, printed as measured.
MEASURED_FIGURES = ("coco_mval_text.mean_top_iou", "coco_mval_text.top_hit_rate", "coco_mval_text.class_first_rate",
                    "ccp_text.mean_top_iou", "ccp_text.top_hit_rate", "ccp_text.class_first_rate",
                    "coco_mval_interactive.miou_at_5", "coco_mval_interactive.fixed_positive",
                    "coco_mval_interactive.fixed_negative")
SOURCES = {  # name -> (dataset kind, folder under --data)
    "bsds500": ("bsds500", "bsds500"), "coco_mval": ("coco", "coco_mval"), "ccp": ("coco_parts", "ccp"),
    "camvid": ("coco", "camvid"),
}


def dataset(data: Path, name: str, split: str) -> Any:
    kind, folder = SOURCES[name]
    return build_dataset(SimpleNamespace(kind=kind, root=str(data / folder), split=split, options={}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="semsam checkpoint (default: the embedded model)")
    parser.add_argument("--data", default="../shared/data", help="folder holding bsds500/, coco_mval/, ccp/, camvid/")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images of each set")
    parser.add_argument("--skip", action="append", default=[], choices=["interactive", "labels", "click", "text"])
    parser.add_argument("--out", help="write all figures as JSON here")
    args = parser.parse_args()
    data = Path(args.data)
    model = load_model(checkpoint=args.checkpoint)
    results: dict[str, Any] = {"checkpoint": args.checkpoint or "embedded", "split": args.split,
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "click" not in args.skip:
        for name in ("bsds500", "coco_mval"):
            metrics = evaluate_clicks(Predictor(model), dataset(data, name, args.split), max_images=args.max_images)
            results[name] = asdict(metrics)
    if "labels" not in args.skip and model.semantic.trained:
        for name in ("coco_mval", "camvid", "ccp"):
            metrics = evaluate_labels(Predictor(model), dataset(data, name, args.split), max_images=args.max_images)
            results[f"{name}_labels"] = asdict(metrics)
    if "text" not in args.skip and model.semantic.trained:
        from semsam.automatic.text_prompt import TextPrompter
        from semsam.evaluation.text import evaluate_text

        for name in ("coco_mval", "ccp"):
            metrics = evaluate_text(TextPrompter(model), dataset(data, name, args.split), max_images=args.max_images)
            results[f"{name}_text"] = asdict(metrics)
    if "interactive" not in args.skip:
        from semsam.data.benchmarks import RecordBenchmark
        from semsam.evaluation.interactive import evaluate_interactive
        from semsam.evaluation.segmenters import ModelSegmenter

        images = RecordBenchmark(dataset(data, "coco_mval", args.split))
        result = evaluate_interactive(ModelSegmenter(Predictor(model)), images, max_clicks=20,
                                      max_images=args.max_images)
        results["coco_mval_interactive"] = asdict(result)
    print(json.dumps(results, indent=2))
    for figure, (target, higher) in TARGETS.items():
        section, key = figure.split(".")
        value = results.get(section, {}).get(key)
        if value is not None:
            met = value >= target if higher else value <= target
            print(f"{figure:40s} {value:8.3f}  target {'>=' if higher else '<='} {target}  {'met' if met else 'MISSED'}")
    for figure in MEASURED_FIGURES:
        section, key = figure.split(".")
        if results.get(section, {}).get(key) is not None:
            print(f"{figure:40s} {results[section][key]:8.3f}")
    if args.out:
        write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
