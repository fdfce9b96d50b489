"""Command-line arguments that several commands share, defined once."""

from __future__ import annotations

import argparse

from semsam.automatic.generator import DEFAULT_POINTS_PER_SIDE, DEFAULT_PRED_IOU_THRESH, DEFAULT_STABILITY_THRESH


def add_vocabulary_arguments(parser: argparse.ArgumentParser) -> None:
    """`--objects` and `--parts`: the names masks are labelled with (and text prompts are matched against)."""
    parser.add_argument("--objects", metavar="NAMES",
                        help='object names to label masks with, comma-separated, e.g. "person,dog" (default: what '
                        "the model was trained on; ignored when its heads were never trained)")
    parser.add_argument("--parts", metavar="NAMES",
                        help='part names to label masks with, comma-separated, e.g. "head,leg" '
                        "(default and caveat as for --objects)")


# Segment everything's defaults on the command line: the generator's.
GRID_DEFAULTS = {"points_per_side": DEFAULT_POINTS_PER_SIDE, "pred_iou_thresh": DEFAULT_PRED_IOU_THRESH,
                 "stability_thresh": DEFAULT_STABILITY_THRESH}


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """`--points-per-side`, `--pred-iou-thresh`, `--stability-thresh`: how segment everything prompts and filters."""
    parser.add_argument("--points-per-side", type=int, default=GRID_DEFAULTS["points_per_side"], metavar="N",
                        help="prompt an N x N grid of points (default: %(default)s; fewer is faster, coarser)")
    parser.add_argument("--pred-iou-thresh", type=float, default=GRID_DEFAULTS["pred_iou_thresh"], metavar="T",
                        help="keep masks with predicted IoU > T (default: %(default)s, for the embedded model; "
                        "SAM: 0.88)")
    parser.add_argument("--stability-thresh", type=float, default=GRID_DEFAULTS["stability_thresh"], metavar="T",
                        help="keep masks with stability score >= T (default: %(default)s, for the embedded model; "
                        "SAM: 0.95)")
