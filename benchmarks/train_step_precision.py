"""Seconds per training step in fp32 and bf16 autocast, on synthetic scenes, for choosing the CPU default.

Reports wall-clock and CPU seconds per step: on a shared machine the wall clock measures the neighbours too,
while the process's CPU time (one thread) measures the work itself.

usage (from the repository root): PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/train_step_precision.py --image-size 384 --steps 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from semsam.training.config import DatasetSpec, TrainConfig
from semsam.training.trainer import Trainer


def time_steps(precision: str, args: argparse.Namespace, output: str) -> tuple[list[float], list[float]]:
    data = DatasetSpec(kind="synthetic_parts", root="", options={"image_size": args.image_size})
    config = TrainConfig(model=args.model, output_dir=output, datasets=(data,), batch_size=args.batch_size,
                         prompts_per_image=args.prompts, image_size=args.image_size, num_points=args.num_points,
                         mask_prompt_prob=0.0, precision=precision, device=args.device, num_threads=args.threads)
    trainer = Trainer(config=config)
    trainer.model.train()
    wall, cpu = [], []
    for step in range(args.warmup + args.steps):
        trainer.step = step
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer.train_step()
        if step >= args.warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="semsam_mobilenet")
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    runs = []
    for precision in args.precisions.split(","):
        with tempfile.TemporaryDirectory() as output:
            wall, cpu = time_steps(precision, args, output)
        runs.append({"precision": precision, "wall_median_s": statistics.median(wall),
                     "cpu_median_s": statistics.median(cpu), "cpu_mean_s": statistics.mean(cpu)})
        print(json.dumps(runs[-1]), flush=True)
    print(json.dumps({"args": vars(args), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
