"""Makes the documentation's pictures from real runs of semsam: `python scripts/make_doc_figures.py`.

Writes to docs/images/ (small palette PNGs):
  segment_overlay.png    `semsam segment` on the example image, one click, the embedded default model
  everything_levels.png  `semsam everything --levels 1,3,6` on the example: the three level overlays
  text_prompt.png        `semsam segment --text hair` and `--text person`: the top two matches of each, ranked
  web_demo.png           the web demo in headless Chromium after one click
  web_everything.png     the same page after "Segment everything"
  api_docs.png           /docs (Swagger UI) rendered with every outside request blocked

The web pictures need the `serve` and `test` extras and Debian's Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "semsam" / "assets" / "example.jpg"
CLICK = (225, 120)
CHROMIUM = "/usr/bin/chromium"


def save_small(image: Image.Image, path: Path, *, max_width: int, colours: int = 128) -> None:
    """Downscales to `max_width` and stores as an optimised palette PNG, to keep the repository small."""
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


def segment_figure(out: Path) -> None:
    from semsam import Predictor, load_model, read_image
    from semsam.visualize import granularity_panels

    image = read_image(EXAMPLE)
    predictor = Predictor(load_model())
    predictor.set_image(image)
    result = predictor.predict(points=[CLICK], labels=[1])
    figure = granularity_panels(image, result.masks, result.scores, result.labels, points=[CLICK], panel_size=320)
    save_small(figure, out / "segment_overlay.png", max_width=1000)


def everything_figure(out: Path) -> None:
    from semsam.cli.main import main

    with tempfile.TemporaryDirectory() as folder:
        if main(["everything", str(EXAMPLE), "--levels", "1,3,6", "--out", folder]) != 0:
            raise SystemExit("semsam everything failed")
        panels = [Image.open(Path(folder) / "example" / f"overlay_level{level}.png").convert("RGB")
                  for level in (1, 3, 6)]
    gutter = 6
    figure = Image.new("RGB", (sum(p.width for p in panels) + gutter * (len(panels) - 1), panels[0].height),
                       (255, 255, 255))
    for index, panel in enumerate(panels):
        figure.paste(panel, (index * (panel.width + gutter), 0))
    save_small(figure, out / "everything_levels.png", max_width=1000)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def web_figures(out: Path) -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "semsam", "serve", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/api/info", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("semsam serve did not start")
            time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                       else route.abort())
            page.goto(url)
            page.click("#example")
            page.wait_for_function("document.getElementById('canvas').width === 512")
            box = page.locator("#canvas").bounding_box()
            scale = box["width"] / 512
            page.mouse.click(box["x"] + CLICK[0] * scale, box["y"] + CLICK[1] * scale)
            page.wait_for_selector("#masks .mask-card >> nth=5")
            page.locator("#masks .mask-card").nth(3).click()
            save_small(Image.open(_shot(page)), out / "web_demo.png", max_width=1000)

            page.fill("#points-per-side", "12")
            page.click("#run-everything")
            page.wait_for_function("document.getElementById('status').textContent.includes('masks on')",
                                   timeout=120_000)
            page.locator("#everything-level").fill("3")
            save_small(Image.open(_shot(page)), out / "web_everything.png", max_width=1000)

            page.goto(f"{url}/docs")
            page.wait_for_selector(".swagger-ui .opblock")
            save_small(Image.open(_shot(page)), out / "api_docs.png", max_width=900, colours=64)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _shot(page) -> Path:  # noqa: ANN001 - a Playwright page
    path = Path(tempfile.mkdtemp()) / "shot.png"
    page.screenshot(path=str(path))
    return path


def text_figure(out: Path) -> None:
    from semsam import load_model, read_image
    from semsam.automatic import TextPrompter
    from semsam.visualize import granularity_panels

    image = read_image(EXAMPLE)
    model = load_model()
    prompter = TextPrompter(model, max_matches=2)
    # A phrase the model does not find is shown anyway, with its best candidates marked as below the threshold.
    unfiltered = TextPrompter(model, max_matches=2, thresholds={"object": 0.0, "part": 0.0})
    matches, titles = [], []
    for text in ("hair", "person"):
        result = prompter.predict(image, text)
        below = "" if result.found else f" (below {result.threshold:.2f})"
        if not result.found:
            print(f"the default model finds no {text!r} on the example: {result.reason}")
            result = unfiltered.predict(image, text)
        matches += result.matches
        titles += [f"#{rank} {text!r} · score {m.score:.2f}{below} · level {m.level}"
                   for rank, m in enumerate(result.matches, start=1)]
    figure = granularity_panels(image, [m.mask for m in matches], [m.score for m in matches],
                                [m.label for m in matches], titles=titles, panel_size=320)
    save_small(figure, out / "text_prompt.png", max_width=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["segment", "everything", "text", "web"], help="make one group of pictures")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    makers = {"segment": segment_figure, "everything": everything_figure, "text": text_figure, "web": web_figures}
    for name, make in makers.items():
        if args.only in (None, name):
            make(args.out)


if __name__ == "__main__":
    main()
