"""Command-line arguments that several commands share, defined once."""

from __future__ import annotations

import argparse


def add_vocabulary_arguments(parser: argparse.ArgumentParser) -> None:
    """`--objects` and `--parts`: the names masks are labelled with (and text prompts are matched against)."""
    parser.add_argument("--objects", metavar="NAMES",
                        help='object names to label masks with, comma-separated, e.g. "person,dog" (default: what '
                        "the model was trained on; ignored when its heads were never trained)")
    parser.add_argument("--parts", metavar="NAMES",
                        help='part names to label masks with, comma-separated, e.g. "head,leg" '
                        "(default and caveat as for --objects)")
