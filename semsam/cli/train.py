"""`semsam train CONFIG`: train or fine-tune a model from a TOML config."""

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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train or fine-tune a model from a TOML config", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="path to a TOML training config (see configs/ for examples)")
    parser.add_argument("--steps", type=int, help="override the config's number of steps")
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder holding the data sets that the config's relative roots name "
                        "(default: $SEMSAM_DATA_ROOT, else ./data)")
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
