"""The plot of interactive results: mIoU against the number of clicks, one curve per segmenter."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from semsam.evaluation.interactive import InteractiveResult
from semsam.io import write_atomic


def plot_miou_per_click(results: Sequence[InteractiveResult], path: str | Path, *, title: str) -> Path:
    """Writes a PNG of mIoU after 1..K clicks, one curve per result, with the 85% and 90% lines.

    Args:
        results: one per segmenter, e.g. a model and the GrabCut baseline on the same benchmark.
        path: the PNG to write (atomically).
        title: the plot's title, e.g. the benchmark's name.

    Raises:
        ValueError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ValueError("the plot needs matplotlib: pip install 'semsam[eval]' (or matplotlib)") from error
    figure = Figure(figsize=(6, 4), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    for result in results:
        clicks = range(1, len(result.miou_per_click) + 1)
        axes.plot(clicks, result.miou_per_click, marker="o", markersize=3,
                  label=f"{result.name} (NoC@90 {result.noc90:.2f})")
    for level in (0.85, 0.90):
        axes.axhline(level, color="grey", linewidth=0.8, linestyle="--")
    axes.set(xlabel="number of clicks", ylabel="mIoU", title=title, ylim=(0, 1))
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
