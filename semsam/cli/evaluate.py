"""`semsam eval click|labels|interactive|text|everything`: 1-click mIoU and coverage, label accuracy of clicked
masks, clicks to a target IoU with simulated corrective clicks, text-to-mask, or segment-everything recall."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semsam.cli.arguments import GRID_DEFAULTS, add_grid_arguments

if TYPE_CHECKING:
    import torch

    from semsam.automatic.text_prompt import TextPrompter
    from semsam.data.records import SegmentationDataset

DESCRIPTION = """Evaluate a model on a dataset with one of five protocols.

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

interactive: every object is segmented with up to --max-clicks simulated clicks (RITM's protocol). The first
click is the object's interior-most pixel; each next one is the interior-most pixel of the deeper error
region (positive on missed object, negative on false foreground), never a pixel clicked before. Each click
is answered from all clicks so far with the previous low-resolution logits as mask prompt; the image is
encoded once. The granularity is chosen at click 1 by the highest predicted IoU and kept (Semantic-SAM:
the same of its 6 outputs; SAM: the best of its 3 masks at click 1, then its single-mask output, the one
SAM returns for several prompts).
Reported per model: noc85/noc90 (mean clicks to reach 85%/90% IoU; never reached counts as max-clicks),
nof85/nof90 (objects never reaching it), miou_at_1/3/5, miou_per_click, fixed_positive/fixed_negative (share of
corrective clicks whose own pixel the next mask gets right), seconds_per_click (decoder),
seconds_per_image (encoder); --grabcut adds OpenCV's GrabCut (object box + clicks as seeds) as a floor;
--refine-grabcut adds the model with GrabCut re-cutting the uncertain band of each answer (|logit| <= 4; clicks
as sure seeds; the model still gets its own logits back); --zoom-in adds the model answering each click after
the second on a crop around the previous mask and the positive clicks (their box scaled by 1.8, re-encoded
when it moves), as RITM does; both flags together also add the model with both.
Datasets: the folder layouts grabcut (data_GT/, boundary_GT/; 128 = ignored boundary), berkeley (images/,
masks/; --images for BSDS images kept elsewhere), davis (img/, gt/), or any data set `semsam train` reads,
each instance mask one object. With --out DIR: DIR/interactive.json (with per-object IoUs) and
DIR/miou_per_click.png. Needs the eval extra for --grabcut, --refine-grabcut and the plot:
pip install 'semsam[eval]'.

text: every labelled object or part mask covering >= 0.5% of its image is looked for by its class name as a
text prompt (`semsam segment --text`), on the automatic candidates of its image. Reported: mean_top_iou (IoU
of the top-ranked mask with the instance, best over the image's instances of that class), top_hit_rate
(that IoU >= 0.5), class_first_rate (the best-matching candidate scores its own class above every other name
of its kind); and per kind (object, part), detection of names present vs absent in each image at the text
threshold: found_rate, rejected_rate, auc, best_threshold (calibrate the thresholds on a train split).

everything: "segment everything" (`semsam everything`) on each image, its masks taken as object proposals for
the segments covering >= 0.5% of the image (BSDS500: all annotators, near-duplicates merged). Reported:
average_recall (share of segments some mask matches at IoU >= t, averaged over t = 0.5:0.05:0.95, as COCO and
SAM evaluate proposals), average_recall_100 (with each image's 100 highest predicted-IoU masks), recall_50,
mean_best_iou, masks_per_image, seconds_per_image. --points-per-side, --pred-iou-thresh and --stability-thresh
set the generator as for `semsam everything`.

examples:
  semsam eval click --dataset bsds500 --root data/bsds500 --split val
  semsam eval click --dataset coco --root data/coco_mval --split val
  semsam eval labels --dataset coco --root data/camvid --split val
  semsam eval labels --dataset coco_parts --root data/ccp --split val
  semsam eval interactive --dataset coco --root data/coco_mval --split val --grabcut --out results
  semsam eval interactive --dataset coco --root data/coco_mval --split val --zoom-in --refine-grabcut
  semsam eval interactive --dataset berkeley --root Berkeley --images BSDS500/images/test --max-clicks 20
  semsam eval text --dataset coco --root data/coco_mval --split val
  semsam eval text --dataset coco_parts --root data/ccp --split train --max-images 200
  semsam eval everything --dataset bsds500 --root data/bsds500 --max-images 20 --pred-iou-thresh 0.5
  semsam eval labels --dataset synthetic_parts --split val --checkpoint runs/synthetic_parts_mobilenet/final.safetensors
  semsam eval labels --dataset synthetic_parts --dataset-option length=50 --checkpoint model.safetensors"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model (1-click mIoU and coverage, label accuracy, NoC with corrective clicks, "
                     "text-to-mask, or segment-everything recall)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("protocol", choices=["click", "labels", "interactive", "text", "everything"],
                        help="evaluation protocol")
    parser.add_argument("--dataset", required=True,
                        help="dataset kind, e.g. bsds500, coco or synthetic_parts; for interactive also grabcut, "
                             "berkeley or davis")
    parser.add_argument("--root", default="", help="dataset folder (not needed for synthetic_parts)")
    parser.add_argument("--split", help="split to evaluate (default: val; the folder layouts have none)")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra dataset argument as in a config's options table, e.g. length=100 (repeatable)")
    parser.add_argument("--model", help="registered model name (default: the checkpoint's own config)")
    parser.add_argument("--checkpoint", help="semsam checkpoint (default: the embedded model)")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument("--max-clicks", type=int, default=20, help="interactive: clicks per object (default: 20)")
    parser.add_argument("--images", help="interactive: the image folder of a folder layout, if not under --root")
    parser.add_argument("--grabcut", action="store_true", help="interactive: also run OpenCV's GrabCut baseline")
    parser.add_argument("--refine-grabcut", action="store_true",
                        help="interactive: also run the model with GrabCut re-cutting the edges of its masks")
    parser.add_argument("--zoom-in", action="store_true",
                        help="interactive: also run the model answering clicks after the second on a crop around "
                             "the object (with --refine-grabcut, also both together)")
    parser.add_argument("--text-threshold", type=float, metavar="T",
                        help="text: score below which a name is not found, for objects and parts alike (default: "
                        "the text prompter's calibrated ones)")
    add_grid_arguments(parser.add_argument_group("everything protocol"))
    parser.add_argument("--out", help="also write the metrics as JSON to this file (interactive: to this folder, "
                                      "with the plot)")
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
    if args.max_images is not None and args.max_images <= 0:
        raise ValueError(f"--max-images must be positive, got {args.max_images}")
    if args.protocol == "interactive":
        return run_interactive(args)
    if args.text_threshold is not None and args.protocol != "text":
        raise ValueError("--text-threshold belongs to the text protocol")
    if args.images or args.grabcut or args.refine_grabcut or args.zoom_in:
        raise ValueError("--images, --grabcut, --refine-grabcut and --zoom-in belong to the interactive protocol")
    if args.protocol != "everything" and any(getattr(args, name) != value for name, value in GRID_DEFAULTS.items()):
        raise ValueError("--points-per-side, --pred-iou-thresh and --stability-thresh belong to the everything "
                         "protocol")
    from semsam.automatic import MaskGenerator
    from semsam.build import load_model
    from semsam.evaluation.click import evaluate_clicks
    from semsam.evaluation.everything import evaluate_everything
    from semsam.evaluation.labels import evaluate_labels
    from semsam.evaluation.text import evaluate_text
    from semsam.io import write_json_atomic
    from semsam.predictor import Predictor

    settings: dict[str, float] = {}
    dataset = open_dataset(args)
    model = load_model(args.model, checkpoint=args.checkpoint)
    if args.protocol == "text":
        metrics = evaluate_text(text_prompter(model, args.text_threshold), dataset, max_images=args.max_images)
    elif args.protocol == "everything":
        settings = {"points_per_side": args.points_per_side, "pred_iou_thresh": args.pred_iou_thresh,
                    "stability_score_thresh": args.stability_thresh}
        metrics = evaluate_everything(MaskGenerator(model, output_mode="coco_rle", **settings), dataset,
                                      max_images=args.max_images)
    else:
        evaluate = evaluate_clicks if args.protocol == "click" else evaluate_labels
        metrics = evaluate(Predictor(model), dataset, max_images=args.max_images)
    report = {"protocol": args.protocol, "dataset": args.dataset, "split": args.split or "val",
              "checkpoint": args.checkpoint or "embedded", **settings, **asdict(metrics)}
    print(json.dumps(report, indent=2))
    if args.out:
        write_json_atomic(args.out, report)
    return 0


def text_prompter(model: torch.nn.Module, threshold: float | None) -> TextPrompter:
    """A text prompter for `model` at `threshold` (None: the default)."""
    from semsam.automatic.text_prompt import TextPrompter

    return TextPrompter(model, thresholds=None if threshold is None else {"object": threshold, "part": threshold})


def open_dataset(args: argparse.Namespace) -> SegmentationDataset:
    """The training dataset that --dataset, --root, --split and --dataset-option name."""
    from semsam.data import build_dataset
    from semsam.training.config import DatasetSpec

    spec = DatasetSpec(kind=args.dataset, root=args.root, split=args.split or "val",
                       options=parse_options(args.dataset_option))
    try:
        return build_dataset(spec)
    except TypeError as error:
        raise ValueError(f"--dataset-option does not fit dataset {args.dataset!r}: {error}") from None


def run_interactive(args: argparse.Namespace) -> int:
    from semsam.build import load_model
    from semsam.data.benchmarks import FOLDER_LAYOUTS, FolderBenchmark, RecordBenchmark
    from semsam.evaluation.curves import plot_miou_per_click
    from semsam.evaluation.interactive import InteractiveSegmenter, evaluate_interactive
    from semsam.evaluation.segmenters import GrabCutSegmenter, ModelSegmenter
    from semsam.grabcut import GrabCutRefiner
    from semsam.io import write_json_atomic
    from semsam.predictor import Predictor
    from semsam.zoom import ZoomIn

    if args.max_clicks < 1:
        raise ValueError(f"--max-clicks must be at least 1, got {args.max_clicks}")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the interactive protocol writes into a folder")
    if args.dataset in FOLDER_LAYOUTS:
        if args.split or args.dataset_option:
            raise ValueError(f"{args.dataset} is a folder layout without splits or options; "
                             "leave out --split and --dataset-option")
        images = FolderBenchmark(root=args.root, layout=FOLDER_LAYOUTS[args.dataset], image_dir=args.images)
    elif args.images:
        raise ValueError(f"--images belongs to the folder layouts ({', '.join(FOLDER_LAYOUTS)}), not {args.dataset}")
    else:
        images = RecordBenchmark(open_dataset(args))
    name = Path(args.checkpoint).stem if args.checkpoint else "embedded"
    predictor = Predictor(load_model(args.model, checkpoint=args.checkpoint), labels=False)
    segmenters: list[InteractiveSegmenter] = [
        ModelSegmenter(predictor, name=name + "+zoom" * zoom + "+grabcut" * refine,
                       zoom_in=ZoomIn() if zoom else None, refiner=GrabCutRefiner() if refine else None)
        for zoom in dict.fromkeys((False, args.zoom_in)) for refine in dict.fromkeys((False, args.refine_grabcut))
    ]
    if args.grabcut:
        segmenters.append(GrabCutSegmenter())
    results, walls = [], []
    for segmenter in segmenters:
        start = time.perf_counter()
        results.append(evaluate_interactive(segmenter, images, max_clicks=args.max_clicks,
                                            max_images=args.max_images))
        walls.append(round(time.perf_counter() - start, 1))
    split = None if args.dataset in FOLDER_LAYOUTS else args.split or "val"
    report = {"protocol": "interactive", "dataset": args.dataset, "split": split,
              "checkpoint": args.checkpoint or "embedded",
              "results": [{**asdict(result), "wall_seconds": wall} for result, wall in zip(results, walls)]}
    detail = ("object_ids", "object_ious", "miou_per_click")
    brief = [{k: v for k, v in entry.items() if k not in detail} for entry in report["results"]]
    print(json.dumps({**report, "results": brief}, indent=2))
    if out is not None:
        write_json_atomic(out / "interactive.json", report)
        plot_miou_per_click(results, out / "miou_per_click.png", title=" ".join(filter(None, (args.dataset, split))))
    return 0
