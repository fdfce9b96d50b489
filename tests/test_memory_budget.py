"""Memory budget of "segment everything" at the largest image the server accepts (4096 x 4096): the peak
resident memory added by one call stays under MEMORY_BUDGET_MIB whatever the number of masks (README, Web demo)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fastapi.testclient import TestClient

from semsam.automatic import MaskGenerator
from semsam.serving import ServeLimits, create_app
from serving_helpers import png_bytes, upload

SIDE = 4096
MEMORY_BUDGET_MIB = 512
# Filters off, so that many full-size masks are made: without streaming they would take about 200 MiB each.
KEEP_ALL = {"pred_iou_thresh": -1.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}

pytestmark = pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                                reason="needs Linux's /proc/self/clear_refs to reset the peak resident memory")


def resident_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def peak_increase_mib(work) -> tuple[float, object]:  # noqa: ANN001
    """The peak resident memory during `work()` above the resident memory before it, and its result."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current VmRSS
    before = resident_mib("VmRSS")
    result = work()
    return resident_mib("VmHWM") - before, result


@pytest.fixture(scope="module")
def largest_image() -> np.ndarray:
    image = np.full((SIDE, SIDE, 3), 90, np.uint8)
    image[..., 0] = (np.arange(SIDE) * 200 // SIDE)[None, :]
    image[..., 1] = (np.arange(SIDE) * 200 // SIDE)[:, None]
    image[SIDE // 4 : SIDE // 2, SIDE // 8 : SIDE // 2] = (220, 40, 40)
    image[SIDE // 2 :, SIDE // 2 :] = (30, 200, 60)
    return image


def test_the_generator_stays_within_its_memory_budget(small_model, largest_image):
    generator = MaskGenerator(small_model, points_per_side=2, levels=(1, 3, 6), output_mode="coco_rle", **KEEP_ALL)
    increase, masks = peak_increase_mib(lambda: generator.generate(largest_image))
    assert len(masks) >= 8
    print(f"generator at {SIDE}x{SIDE}: +{increase:.0f} MiB for {len(masks)} masks")
    assert increase < MEMORY_BUDGET_MIB, f"{increase:.0f} MiB for {len(masks)} masks"


def test_everything_on_the_server_stays_within_its_memory_budget(small_model, largest_image, monkeypatch):
    import semsam.serving.app as app_module

    monkeypatch.setattr(app_module, "MaskGenerator",
                        lambda model, **kwargs: MaskGenerator(model, **kwargs, **KEEP_ALL))
    with TestClient(create_app(model=small_model, model_name="small", limits=ServeLimits())) as client:
        image_id = upload(client, png_bytes(largest_image)).json()["image_id"]
        increase, response = peak_increase_mib(lambda: client.post(
            f"/api/images/{image_id}/everything", json={"points_per_side": 2, "levels": [1, 3, 6]}))
    assert response.status_code == 200 and len(response.json()["masks"]) >= 8
    print(f"/everything at {SIDE}x{SIDE}: +{increase:.0f} MiB for {len(response.json()['masks'])} masks")
    assert increase < MEMORY_BUDGET_MIB, f"{increase:.0f} MiB for {len(response.json()['masks'])} masks"


def test_a_click_with_sharp_edges_on_the_server_stays_within_the_memory_budget(small_model, largest_image):
    with TestClient(create_app(model=small_model, model_name="small", limits=ServeLimits())) as client:
        image_id = upload(client, png_bytes(largest_image)).json()["image_id"]
        click = {"points": [[1500, 1500]], "labels": [1]}
        assert client.post(f"/api/images/{image_id}/predict", json=click).status_code == 200  # encodes the image
        increase, response = peak_increase_mib(lambda: client.post(
            f"/api/images/{image_id}/predict", json={**click, "refine_edges": True}))
    assert response.status_code == 200 and len(response.json()["masks"]) == 6
    print(f"/predict with refine_edges at {SIDE}x{SIDE}: +{increase:.0f} MiB")
    assert increase < MEMORY_BUDGET_MIB, f"{increase:.0f} MiB"


def test_a_zoomed_click_with_sharp_edges_stays_within_the_memory_budget(small_model, largest_image):
    with TestClient(create_app(model=small_model, model_name="small", limits=ServeLimits())) as client:
        url = f"/api/images/{upload(client, png_bytes(largest_image)).json()['image_id']}/predict"
        points = [[1500, 1500], [1200, 1300], [1800, 1700]]
        answer = client.post(url, json={"points": points[:2], "return_logits": True}).json()
        click = {"points": points, "mask_input": answer["logits"][2], "zoom_in": True, "refine_edges": True}
        increase, response = peak_increase_mib(lambda: client.post(url, json=click))
    assert response.status_code == 200 and response.json()["crop"] is not None
    print(f"/predict zoomed with refine_edges at {SIDE}x{SIDE}: +{increase:.0f} MiB")
    assert increase < MEMORY_BUDGET_MIB, f"{increase:.0f} MiB"
