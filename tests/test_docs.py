"""The documentation site builds with `mkdocs build --strict`: no broken link, reference or docstring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strictly_with_current_help_and_api(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cli = (site / "cli" / "index.html").read_text()
    assert "usage: semsam train" in cli and "--data-root" in cli  # the commands' own --help, as they are now
    api = (site / "reference" / "predictor" / "index.html").read_text()
    assert "set_image" in api and "predict_batch" in api  # generated from the docstrings
    assert "fonts.googleapis" not in (site / "index.html").read_text()  # readable offline


def test_pictures_are_small_and_used():
    pages = "".join(path.read_text() for path in (ROOT / "docs").rglob("*.md"))
    for picture in (ROOT / "docs" / "images").glob("*.png"):
        assert picture.stat().st_size < 300_000, f"{picture.name}: regenerate it with scripts/make_doc_figures.py"
        assert f"images/{picture.name}" in pages, f"{picture.name} is not shown on any page"
