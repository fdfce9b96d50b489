"""semsam's MaskGenerator against the reference SamAutomaticMaskGenerator: SAM ViT-B, same random weights.

Official weights cannot be downloaded here, so both run the same randomly initialised ViT-B (saved as an official
.pth and loaded by semsam); semsam runs with `match_sam`, which gives the reference's mask set. Reports the
best-of-N seconds of each generator on one image (alternating runs so both see the same machine load), with and
without the image encoder's time, and how well the masks agree: counts, and the share of each side's masks
matched by the other at mask IoU >= 0.95 (same prompt point).

Random weights predict low IoUs and soft masks, so SAM's thresholds (0.88, 0.95) keep nothing: pick thresholds
at which the reference keeps tens to hundreds of masks (the same for both).

Run from the repository root (needs `pip install segment-anything`; torchvision is stood in for):
    OMP_NUM_THREADS=2 python -m benchmarks.everything_vs_sam --points-per-side 32 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from semsam import MODEL_CONFIGS, load_model, read_image
from semsam.automatic import MaskGenerator
from semsam.automatic.masks import grouped_nms

DEFAULT_IMAGE = "../shared/data/bsds500/images/val/101085.jpg"
# The reference's torchvision stand-in and its random-weight model builder live with the tests.
TESTS = Path(__file__).resolve().parents[1] / "tests"


def matched_share(ours: list[np.ndarray], ours_points: list, theirs: list[np.ndarray], theirs_points: list) -> float:
    """Share of `ours` with a mask of `theirs` from the same prompt point at IoU >= 0.95."""
    if not ours:
        return 1.0
    hits = 0
    for mask, point in zip(ours, ours_points):
        for other, other_point in zip(theirs, theirs_points):
            if np.allclose(point, other_point) and (mask & other).sum() >= 0.95 * (mask | other).sum():
                hits += 1
                break
    return hits / len(ours)


def timed(function: Callable[..., None], seconds: list[float]) -> Callable[..., None]:
    """`function`, appending the seconds of each call to `seconds`."""

    def wrapper(*args, **kwargs) -> None:
        start = time.perf_counter()
        function(*args, **kwargs)
        seconds.append(time.perf_counter() - start)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-thresh", type=float, default=0.95)
    parser.add_argument("--box-nms-thresh", type=float, default=0.7)
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from sam_reference import reference_model, standin_modules

    sys.modules.update(standin_modules())
    from segment_anything import SamAutomaticMaskGenerator, automatic_mask_generator

    automatic_mask_generator.batched_nms = lambda boxes, scores, groups, iou_threshold: grouped_nms(
        boxes, scores, groups, iou_threshold)
    torch.manual_seed(0)
    reference = reference_model(MODEL_CONFIGS["sam_vit_b"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sam_vit_b_random.pth"
        torch.save(reference.state_dict(), path)
        ours = load_model("sam_vit_b", checkpoint=path)

    settings = dict(points_per_side=args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
                    stability_score_thresh=args.stability_thresh, box_nms_thresh=args.box_nms_thresh)
    reference_generator = SamAutomaticMaskGenerator(reference, **settings)
    generator = MaskGenerator(ours, levels=(1, 2, 3), match_sam=True, **settings)
    image = read_image(args.image)
    times: dict[str, list[float]] = {"reference": [], "semsam": []}
    encode_times: dict[str, list[float]] = {"reference": [], "semsam": []}
    for name, predictor in (("reference", reference_generator.predictor), ("semsam", generator.predictor)):
        predictor.set_image = timed(predictor.set_image, encode_times[name])
    for _ in range(args.repeats):
        for name, run in (("reference", reference_generator.generate), ("semsam", generator.generate)):
            start = time.perf_counter()
            result = run(image)
            times[name].append(time.perf_counter() - start)
            if name == "reference":
                expected = [m for m in result if m["area"] > 0]
            else:
                found = result
    decode = {name: [t - e for t, e in zip(times[name], encode_times[name])] for name in times}
    theirs = [m["segmentation"] for m in expected]
    theirs_points = [m["point_coords"][0] for m in expected]
    mine = [m.mask() for m in found]
    mine_points = [m.point_coords for m in found]
    print(json.dumps({
        "image": args.image, "size": f"{image.shape[1]}x{image.shape[0]}", "threads": torch.get_num_threads(),
        "settings": settings,
        "reference_best_s": round(min(times["reference"]), 2), "semsam_best_s": round(min(times["semsam"]), 2),
        "all_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "speed_up": round(min(times["reference"]) / min(times["semsam"]), 2),
        "encode_s": {k: [round(t, 2) for t in v] for k, v in encode_times.items()},
        "decode_only_best_s": {k: round(min(v), 2) for k, v in decode.items()},
        "decode_only_speed_up": round(min(decode["reference"]) / min(decode["semsam"]), 2),
        "masks": {"reference": len(theirs), "semsam": len(mine)},
        "reference_matched_by_semsam": round(matched_share(theirs, theirs_points, mine, mine_points), 4),
        "semsam_matched_by_reference": round(matched_share(mine, mine_points, theirs, theirs_points), 4),
    }, indent=2))


if __name__ == "__main__":
    main()
