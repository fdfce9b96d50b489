"""Speed of `MaskGenerator` on BSDS500 images, and the score distributions its default thresholds come from.

Reports, per image, the best of --repeats full `generate` calls (set_image, decoding, filtering, NMS, RLE,
tree) in wall-clock seconds and in CPU seconds of this process (all threads), and the best time of decoding
alone (the model's share), then the median over images. The machine may be shared: best-of-N is the wall
figure least disturbed by other load, and CPU seconds / threads is what the wall time would be on idle cores
with perfect threading (a lower bound).

example (the issue's target: <= 3 s per image, embedded default, 32x32 points, all 6 levels, 2 cores):
  OMP_NUM_THREADS=2 python benchmarks/everything_speed.py --root ../shared/data/bsds500 --images 5 --repeats 3
(from a source checkout that is not the installed one, prefix PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from semsam.automatic import MaskGenerator
from semsam.automatic.grid import point_grid
from semsam.automatic.masks import stability_scores
from semsam.build import load_model
from semsam.image import read_image
from semsam.prediction import Prompt


def decode_only(generator: MaskGenerator, image: np.ndarray) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Seconds for set_image plus decoding every grid point, and the predicted IoUs and stabilities [N, K]."""
    predictor = generator.predictor
    start = time.perf_counter()
    predictor.set_image(image)
    points = point_grid(generator.points_per_side) * np.array([image.shape[1], image.shape[0]], np.float32)
    scores, stability = [], []
    for begin in range(0, len(points), generator.points_per_batch):
        batch = points[begin : begin + generator.points_per_batch]
        low = predictor.predict_low_res([Prompt(points=[p]) for p in batch])
        valid_h, valid_w = low.valid_size
        scores.append(low.proposal_scores)
        stability.append(stability_scores(low.logits[..., :valid_h, :valid_w], generator.stability_score_offset))
    return time.perf_counter() - start, torch.cat(scores), torch.cat(stability)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="BSDS500 folder (images/val/*.jpg are used)")
    parser.add_argument("--images", type=int, default=5, help="how many val images (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per image; the best counts (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--levels", default="1,2,3,4,5,6")
    parser.add_argument("--checkpoint", help="semsam checkpoint (default: the embedded model)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    paths = sorted(Path(args.root, "images", "val").glob("*.jpg"))[: args.images]
    if not paths:
        raise SystemExit(f"no images under {args.root}/images/val")
    model = load_model(checkpoint=args.checkpoint)
    generator = MaskGenerator(model, levels=[int(v) for v in args.levels.split(",")],
                              points_per_side=args.points_per_side, points_per_batch=args.points_per_batch)
    rows, all_scores, all_stability = [], [], []
    for path in paths:
        image = read_image(path)
        generator.generate(image)  # warm-up
        totals, cpu, decodes = [], [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            masks = generator.generate(image)
            totals.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            seconds, scores, stability = decode_only(generator, image)
            decodes.append(seconds)
        all_scores.append(scores)
        all_stability.append(stability)
        rows.append({
            "image": path.name, "size": f"{image.shape[1]}x{image.shape[0]}", "best_s": round(min(totals), 3),
            "all_s": [round(t, 3) for t in totals], "best_cpu_s": round(min(cpu), 3),
            "decode_only_best_s": round(min(decodes), 3),
            "masks": len(masks), "per_level": dict(sorted(Counter(m.level for m in masks).items())),
            "roots": sum(m.parent is None for m in masks),
        })
        print(json.dumps(rows[-1]), flush=True)
    scores, stability = torch.cat(all_scores).flatten(), torch.cat(all_stability).flatten()
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    print(json.dumps({
        "threads": args.threads, "points_per_side": args.points_per_side, "levels": args.levels,
        "median_best_s": round(statistics.median(r["best_s"] for r in rows), 3),
        "median_best_cpu_s": round(statistics.median(r["best_cpu_s"] for r in rows), 3),
        "median_decode_only_best_s": round(statistics.median(r["decode_only_best_s"] for r in rows), 3),
        "predicted_iou_quantiles_10_25_50_75_90": [round(v, 3) for v in torch.quantile(scores, quantiles).tolist()],
        "stability_quantiles_10_25_50_75_90": [round(v, 3) for v in torch.quantile(stability, quantiles).tolist()],
        "thresholds": {"pred_iou": generator.pred_iou_thresh, "stability": generator.stability_score_thresh},
    }, indent=2))


if __name__ == "__main__":
    main()
