"""End to end in headless Chromium: `semsam serve` on a loopback port, upload, click, K masks render."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from semsam.build import ASSETS
from semsam.io import rle_to_mask

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "semsam", "serve", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"semsam serve exited early:\n{process.stdout.read()}")
            try:
                if httpx.get(f"{url}/api/info", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("semsam serve did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_upload_click_and_see_six_masks(server, tmp_path, scene):
    from playwright.sync_api import sync_playwright

    scene_png = tmp_path / "scene.png"
    Image.fromarray(scene).save(scene_png)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        missing: list[str] = []
        page.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)
        page.goto(server)
        page.wait_for_load_state("networkidle")
        assert missing == []
        # Headless Chromium fetches no favicon itself: check that the page names one and both paths serve it.
        for icon in (page.evaluate("document.querySelector('link[rel=icon]').href"), f"{server}/favicon.ico"):
            answer = httpx.get(icon)
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
        # A file that is not an image is refused with the server's reason, and the page keeps working.
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
        page.wait_for_selector("#status.error")
        assert "not an image this server reads" in page.locator("#status").inner_text()
        page.set_input_files("#file", str(scene_png))
        page.wait_for_function("document.getElementById('canvas').width === 128")
        page.click("#example")
        page.wait_for_function("document.getElementById('canvas').width === 512")
        box = page.locator("#canvas").bounding_box()
        scale = box["width"] / 512
        sent: list[dict] = []
        page.on("request", lambda request: sent.append(request.post_data_json)
                if request.url.endswith("/predict") else None)
        page.mouse.click(box["x"] + 170 * scale, box["y"] + 385 * scale)
        page.wait_for_selector("#masks .mask-card >> nth=5")
        assert page.locator("#masks .mask-card").count() == 6
        assert page.locator("#masks .mask-card canvas").count() == 6
        assert "6 masks" in page.locator("#status").inner_text()
        # A first click shows its best-scored level; a corrective click refines that level: it sends its logits.
        first = page.evaluate("({scores: state.result.scores, level: state.level, logits: state.result.logits})")
        assert first["level"] == int(np.argmax(first["scores"])) and sent[0]["mask_input"] is None

        # A negative click (right button) and a drag (box) each ask again and still give six masks.
        page.mouse.click(box["x"] + 300 * scale, box["y"] + 100 * scale, button="right")
        page.wait_for_function("document.getElementById('status').textContent.includes('masks in')")
        assert sent[1]["mask_input"] == first["logits"][first["level"]]
        assert page.evaluate("state.level") == first["level"]
        # Zoom in (on by default): the third click is answered on a crop, whose box comes back with its logits.
        page.mouse.click(box["x"] + 200 * scale, box["y"] + 400 * scale)
        page.wait_for_function("state.points.length === 3 && state.result?.crop")
        crop = page.evaluate("state.result.crop")
        assert sent[2]["zoom_in"] is True and sent[2]["crop"] is None and len(crop) == 4
        assert page.locator("#masks .mask-card").count() == 6
        # Turned off, it asks again for the same prompt, answered on the whole image.
        with page.expect_response(lambda response: response.url.endswith("/predict")) as answered:
            page.uncheck("#zoom-in")
        assert answered.value.ok and answered.value.json()["crop"] is None
        assert sent[3]["zoom_in"] is False and sent[3]["mask_input"] == sent[2]["mask_input"]
        page.check("#zoom-in")
        page.wait_for_function("state.result?.crop")
        sent[3:] = []
        page.mouse.move(box["x"] + 20 * scale, box["y"] + 150 * scale)
        page.mouse.down()
        page.mouse.move(box["x"] + 200 * scale, box["y"] + 300 * scale, steps=5)
        page.mouse.move(box["x"] + 370 * scale, box["y"] + 500 * scale, steps=5)
        page.mouse.up()
        page.wait_for_function("document.getElementById('status').textContent.includes('masks in')")
        prompts = page.evaluate("({points: state.points, labels: state.labels, box: state.box})")
        assert prompts["labels"] == [1, 0, 1] and prompts["box"] is not None
        assert sent[3]["crop"] is None and sent[3]["mask_input"] is None  # a new box starts afresh
        assert not any(body["refine_edges"] for body in sent)
        # Sharp edges asks again for the same prompt, with GrabCut re-cutting the masks on the server.
        with page.expect_response(lambda response: response.url.endswith("/predict")) as answered:
            page.check("#refine-edges")
        refined = answered.value
        assert refined.ok and refined.request.post_data_json["refine_edges"] is True
        assert refined.request.post_data_json["box"] == prompts["box"]
        page.wait_for_function("document.getElementById('status').textContent.includes('masks in')")
        assert prompts["box"][0] == pytest.approx(20, abs=3) and prompts["box"][3] == pytest.approx(501, abs=3)

        # The page decodes the COCO RLE the same way pycocotools does (row sums, so orientation counts).
        rows = page.evaluate("state.result.masks.map((r) => { const m = decodeRle(r); const s = new Array(m.height)"
                             ".fill(0); m.data.forEach((v, i) => { s[Math.floor(i / m.width)] += v; }); return s; })")
        rles = page.evaluate("state.result.masks")
        for rle, row_sums in zip(rles, rows):
            assert np.array_equal(rle_to_mask(rle).sum(1), row_sums)

        page.locator("#masks .mask-card").nth(3).click()
        assert page.locator("#level").input_value() == "3"
        with page.expect_download() as download:
            page.click("#download-json")
        coco = json.loads(download.value.path().read_text())
        assert [a["segmentation"] for a in coco["annotations"]] == rles
        assert coco["images"][0]["file_name"] == "example.jpg" and coco["annotations"][3]["level"] == 4
        with page.expect_download() as download:
            page.click("#download-png")
        assert download.value.suggested_filename == "example_level4.png"
        png = np.asarray(Image.open(download.value.path()).convert("L"))
        assert set(np.unique(png)) <= {0, 255}
        assert np.array_equal(png == 255, rle_to_mask(rles[3]))
        screenshot = tmp_path / "demo.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000

        # Find: a phrase gives ranked matches shown like the K masks, or says that nothing matches.
        page.click("#clear")
        page.fill("#text", "hair")
        page.click("#find")
        page.wait_for_function("/match|Nothing/.test(document.getElementById('status').textContent)")
        assert "match(es) for “hair”" in page.locator("#status").inner_text()
        assert page.locator("#masks .mask-card").first.inner_text().startswith("#1 “hair”")
        page.fill("#text", "giraffe")
        page.click("#find")
        page.wait_for_function("document.getElementById('status').textContent.includes('Nothing matches')")
        assert page.locator("#masks .mask-card").count() == 0

        # Segment everything: the slider picks a level, the tree nests parts under wholes.
        page.fill("#points-per-side", "6")
        page.click("#run-everything")
        page.wait_for_function("document.getElementById('status').textContent.includes('masks on 6 levels')")
        assert page.locator("#masks .mask-card").count() == 0  # the clicks' masks made way for everything's
        assert page.evaluate("state.points.length") == 0
        response = page.evaluate("state.everything")
        nested = sum(m["parent"] is not None for m in response["masks"])
        assert page.locator("#tree span.node").count() == len(response["masks"]) > 0
        assert page.locator("#tree ul ul span.node").count() == nested
        page.locator("#everything-level").fill("3")
        shown = len([m for m in response["masks"] if m["level"] == 3])
        assert page.locator("#everything-summary").inner_text() == f"level 3: {shown} masks"
        assert page.locator("#tree span.node.at-level").count() == shown
        # The embedded default names its masks: on the view (those that have room) and in the tree.
        drawn = page.evaluate("state.everythingNames")
        names = {m["id"]: m["name"] for m in response["masks"] if m["level"] == 3}
        assert drawn and all(names[d["id"]] == d["name"] for d in drawn)
        assert sorted(page.locator("#tree .name").all_inner_texts()) == sorted(m["path"] for m in response["masks"])
        page.screenshot(path=str(tmp_path / "everything.png"), full_page=True)
        assert errors == []
        browser.close()


def test_api_docs_render_offline(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        outside: list[str] = []

        def only_this_server(route):
            if route.request.url.startswith(server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(f"{server}/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/images/{image_id}/predict" in [path.replace("\u200b", "") for path in paths]
        assert outside == []
        browser.close()
