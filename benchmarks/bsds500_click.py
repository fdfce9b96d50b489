"""1-click quality and speed on BSDS500 against the project's targets and the classical baselines.

usage: python benchmarks/bsds500_click.py --root ../shared/data/bsds500 [--checkpoint PATH] [--max-images N]
           [--baselines] [--out results.json]

Runs `semsam.evaluation.click.evaluate_clicks` (the protocol of `semsam eval click`) on the model, and with
--baselines also on the gPb-owt-ucm hierarchy (root/ucm2/SPLIT, six thresholds) and six concentric squares.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from semsam.build import load_model
from semsam.data.bsds500 import Bsds500Dataset
from semsam.evaluation.baselines import ConcentricSquares, UcmBaseline
from semsam.evaluation.click import ClickMetrics, evaluate_clicks
from semsam.io import write_json_atomic
from semsam.predictor import Predictor

TARGETS = {"miou_best": 0.68, "miou_top1": 0.55, "coverage": 0.65, "seconds_per_image": 0.3, "ms_per_click": 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="BSDS500 folder (images/, groundTruth/, ucm2/)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--checkpoint", help="semsam checkpoint (default: the embedded model)")
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--baselines", action="store_true", help="also evaluate gPb-owt-ucm and concentric squares")
    parser.add_argument("--out", help="write all figures as JSON here")
    args = parser.parse_args()

    dataset = Bsds500Dataset(root=args.root, split=args.split)
    rows: dict[str, ClickMetrics] = {}
    rows["semsam"] = evaluate_clicks(Predictor(load_model(checkpoint=args.checkpoint)), dataset,
                                     max_images=args.max_images)
    if args.baselines:
        count = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
        ucm_dir = dataset.items[0][0].parents[2] / "ucm2" / args.split
        images = [(dataset[i].image, ucm_dir / f"{dataset.items[i][0].stem}.mat") for i in range(count)]
        rows["gPb-owt-ucm"] = evaluate_clicks(UcmBaseline(images=images), dataset, max_images=args.max_images)
        rows["concentric squares"] = evaluate_clicks(ConcentricSquares(), dataset, max_images=args.max_images)

    print(f"{'':20s}" + "".join(f"{name:>18s}" for name in TARGETS))
    print(f"{'target':20s}" + "".join(f"{value:>18.3f}" for value in TARGETS.values()))
    for name, metrics in rows.items():
        print(f"{name:20s}" + "".join(f"{getattr(metrics, key):>18.3f}" for key in TARGETS))
    if args.out:
        write_json_atomic(args.out, {name: asdict(metrics) for name, metrics in rows.items()})


if __name__ == "__main__":
    main()
