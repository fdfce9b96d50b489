"""`semsam train CONFIG`: train or fine-tune a model from a TOML config; `semsam fit-recognizer`: fit its visual prior;
`semsam calibrate-iou`: fit its rank head."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """Train a model with multi-choice learning on the datasets listed in a TOML config.

Data: a dataset's relative `root` in the config lies under the data root: --data-root DIR, else the
SEMSAM_DATA_ROOT environment variable, else ./data (e.g. root = "bsds500" reads DATA_ROOT/bsds500). If a
dataset is missing, the error names the folder and where to download the data, and nothing is written.

Checkpoints go to the config's output_dir (relative to the config file): last.pt (full state, written atomically every
checkpoint_every steps and when the run is interrupted), best.safetensors (best validation
1-click mIoU) and final.safetensors; metrics.jsonl logs losses and validation figures.
Running the same command again resumes an interrupted run exactly where it stopped. An interrupted
run (Ctrl-C, SIGTERM) saves last.pt, writes no final.safetensors and exits with 128 + the signal
number (130 for Ctrl-C, 143 for SIGTERM).

Datasets that name their classes (object_names / part_names, e.g. synthetic_parts, COCO, part
datasets) also train the object and part classification heads on their joint vocabulary; the
exported checkpoints then label masks with those names. device = "auto" picks CUDA when available;
precision = "auto" trains in bf16 autocast on a CPU and fp16 (with loss scaling) on CUDA.

Several processes: start the same command under torchrun; each process samples different data, the
gradients are averaged (DistributedDataParallel: gloo on CPU, nccl on GPU), and only the first
process writes checkpoints, logs and validation results.

examples:
  semsam train configs/joint_mobilenet.toml --data-root ~/datasets
  SEMSAM_DATA_ROOT=~/datasets semsam train configs/joint_mobilenet.toml
  semsam train configs/synthetic_parts_mobilenet.toml --steps 200
  torchrun --nproc_per_node=2 -m semsam train configs/synthetic_parts_mobilenet.toml"""


RECOGNIZER_DESCRIPTION = """Fit a trained checkpoint's recognizer: the visual prior that names objects with the head.

The recognizer is a frozen ImageNet MobileNetV2 (converted by `semsam convert-tflite`). Its features are averaged
inside every labelled object mask (>= 0.5% of its image) of the config's training data sets, and a projection of
them onto the names' text embeddings is fitted (L-BFGS, cross-entropy, each data set weighing the same). Object
labels then multiply the head's probabilities with the recognizer's (renormalised), which names objects of
classes seen only a few times in training much better. A checkpoint without a recognizer gets one added.

Data: as for `semsam train` (--data-root, else $SEMSAM_DATA_ROOT, else ./data). Takes a few minutes on a CPU.

examples:
  semsam fit-recognizer configs/joint_mobilenet_phase7.toml --checkpoint runs/joint_mobilenet_phase7/final.safetensors \\
      --imagenet runs/pretrained/mobilenet_v2_imagenet.safetensors --out runs/joint_mobilenet_phase7/recognized.safetensors"""

CALIBRATION_DESCRIPTION = """Fit a trained checkpoint's rank head, whose predicted IoUs rank one prompt's masks.

Training teaches the IoU head to score an output matched to no target by its best IoU with any segment at the
click, so the coarse outputs, which fit some large region, score highest even when a part was meant. This command
clicks every segment covering >= 0.5% of its image in the config's training data sets at its interior-most pixel,
as `semsam eval click` does, records the heads' input (the decoder's output tokens), and fits a second head of the
same shape, the rank head (added when the checkpoint has none), to each output's IoU with the clicked segment:
squared error plus a ranking term, each data set weighing the same, keeping the epoch whose held-out clicks (those
of each data set's last images, about 15% of its clicks) rank best. Only the rank head changes: the trained IoU
head still gates segment-everything proposals. Training on from the result leaves the rank head out (it ranks the
tokens of these weights), so fit it again afterwards. Data: as for `semsam train`. For the four joint data sets,
clicking takes about 16 minutes on one CPU thread and the fit under a minute.

examples:
  semsam calibrate-iou configs/joint_mobilenet_phase7.toml \\
      --checkpoint runs/joint_mobilenet_phase7/recognized.safetensors --out runs/calibrated.safetensors"""


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_recognizer(subparsers)
    _register_calibration(subparsers)
    parser = subparsers.add_parser(
        "train", help="train or fine-tune a model from a TOML config", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="path to a TOML training config (see configs/ for examples)")
    parser.add_argument("--steps", type=int, help="override the config's number of steps")
    _add_data_root(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from semsam.training.config import load_train_config
    from semsam.training.trainer import TrainingStopped, train

    config = load_train_config(args.config, data_root=args.data_root)
    if args.steps is not None:
        if args.steps <= 0:
            raise ValueError(f"--steps must be positive, got {args.steps}")
        config = replace(config, steps=args.steps)
    main = int(os.environ.get("RANK", "0")) == 0
    try:
        train(config)
    except TrainingStopped as stopped:
        if main:
            print(f"semsam: {stopped}. To resume, run the same command again: semsam train {args.config}"
                  + (f" --steps {args.steps}" if args.steps is not None else ""), file=sys.stderr)
        return 128 + stopped.signum
    if main:
        print(f"done: weights in {config.output_dir}/final.safetensors (best: best.safetensors)")
    return 0


def _register_recognizer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit-recognizer", help="fit a trained checkpoint's object recognizer (frozen ImageNet features)",
        description=RECOGNIZER_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_refit_arguments(parser, "fit on")
    parser.add_argument("--imagenet", required=True, metavar="PATH",
                        help="ImageNet MobileNetV2 from `semsam convert-tflite tf2_mobilenet_v2_1.0_224_ptq.tflite`")
    parser.add_argument("--weight-decay", type=float, default=1e-2, help="L2 penalty on the projection (default: 0.01)")
    parser.set_defaults(func=run_fit_recognizer)


def run_fit_recognizer(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from semsam.build import load_with_recognizer
    from semsam.checkpoint import save_checkpoint
    from semsam.data import build_dataset
    from semsam.text import TextEncoder
    from semsam.training.config import load_train_config
    from semsam.training.recognizer import fit_recognizer, load_imagenet_embedder

    config = load_train_config(args.config, data_root=args.data_root)
    datasets = [build_dataset(spec) for spec in config.datasets]
    model = load_with_recognizer(args.checkpoint)
    if not model.semantic.trained:
        raise ValueError(f"{args.checkpoint}'s object head was never trained: train it on labelled data first")
    load_imagenet_embedder(model.recognizer, args.imagenet)
    fit = fit_recognizer(model.recognizer, datasets, TextEncoder(), weight_decay=args.weight_decay)
    model.semantic = replace(model.semantic, recognizer_names=fit.names)
    save_checkpoint(args.out, model, model.config, model.semantic)
    print(f"fitted on {sum(fit.samples)} object masks ({', '.join(map(str, fit.samples))} per data set) of "
          f"{len(fit.names)} names; training accuracy {fit.train_accuracy:.3f}; wrote {args.out}")
    return 0


def _register_calibration(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate-iou", help="fit a trained checkpoint's rank head on clicks of its training data",
        description=CALIBRATION_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_refit_arguments(parser, "click on")
    parser.add_argument("--max-images", type=int, metavar="N", help="images read per data set (default: all)")
    parser.add_argument("--epochs", type=int, default=40, metavar="N",
                        help="epochs of 50 steps; the best on held-out clicks is kept (default: 40)")
    parser.set_defaults(func=run_calibration)


def run_calibration(args: argparse.Namespace) -> int:
    from semsam.build import load_with_rank_head
    from semsam.checkpoint import save_checkpoint
    from semsam.data import build_dataset
    from semsam.predictor import Predictor
    from semsam.training.calibration import collect_head_samples, fit_rank_head, rank_head
    from semsam.training.config import load_train_config

    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be at least 1, got {args.max_images}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    config = load_train_config(args.config, data_root=args.data_root)
    datasets = [build_dataset(spec) for spec in config.datasets]
    model = load_with_rank_head(args.checkpoint).eval()
    predictor = Predictor(model, labels=False)
    samples = [collect_head_samples(predictor, dataset, max_images=args.max_images) for dataset in datasets]
    fit = fit_rank_head(rank_head(model), samples, epochs=args.epochs)
    save_checkpoint(args.out, model, model.config, model.semantic)
    for spec, sample, before, after in zip(config.datasets, samples, fit.before, fit.after):
        print(f"{spec.root} ({spec.split}): {len(sample.ious)} clicks, held-out top-1 mIoU {before:.3f} -> {after:.3f}")
    print(f"kept the head after {fit.steps} steps; wrote {args.out}")
    return 0


def _add_refit_arguments(parser: argparse.ArgumentParser, use: str) -> None:
    parser.add_argument("config", help=f"the TOML training config whose data sets to {use}")
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="trained semsam checkpoint")
    parser.add_argument("--out", required=True, metavar="PATH", help="safetensors file to write")
    _add_data_root(parser)


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder holding the data sets that the config's relative roots name "
                        "(default: $SEMSAM_DATA_ROOT, else ./data)")
