import numpy as np
import pytest
import scipy.io

from semsam.data.bsds500 import Bsds500Dataset
from semsam.evaluation.baselines import ConcentricSquares, UcmBaseline
from semsam.evaluation.click import evaluate_clicks
from helpers import HEIGHT, WIDTH, halves_annotations, write_bsds


def _ucm_with_two_boundaries(height: int, width: int) -> np.ndarray:
    """A weak vertical boundary (0.1) at x = width // 2 and a strong horizontal one (0.5) at y = height // 2."""
    ucm = np.zeros((2 * height + 1, 2 * width + 1))
    ucm[:, 2 * (width // 2)] = 0.1
    ucm[2 * (height // 2), :] = 0.5
    return ucm


def test_ucm_regions_merge_as_the_threshold_rises(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"ucm2": _ucm_with_two_boundaries(20, 30)})
    baseline = UcmBaseline(images=[(image, path)], thresholds=(0.05, 0.3, 0.6))
    baseline.set_image(image)
    prediction = baseline.predict([(3, 3)])
    areas = prediction.masks.reshape(3, -1).sum(1)
    assert areas.tolist() == [150, 300, 600]  # quarter, top half, whole image
    assert prediction.masks[0, 3, 3] and not prediction.masks[0, 3, 20] and prediction.masks[1, 3, 20]
    assert int(np.argmax(prediction.scores)) == 1


def test_ucm_refuses_an_unknown_image_or_a_wrong_size(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"ucm2": np.zeros((5, 5))})
    baseline = UcmBaseline(images=[(image, path)])
    with pytest.raises(ValueError, match="no ucm2 file"):
        baseline.set_image(image + 1)
    with pytest.raises(ValueError, match="twice the image size"):
        baseline.set_image(image)


def test_concentric_squares_are_nested_and_centred():
    squares = ConcentricSquares()
    squares.set_image(np.zeros((100, 100, 3), np.uint8))
    masks = squares.predict([(50, 40)]).masks
    assert all((masks[k] <= masks[k + 1]).all() for k in range(len(masks) - 1))
    assert all(mask[40, 50] for mask in masks)


def test_a_hierarchy_matching_the_annotations_scores_near_one_through_the_click_protocol(tmp_path):
    write_bsds(tmp_path, "val", "a", halves_annotations())
    dataset = Bsds500Dataset(root=tmp_path, split="val")
    ucm = np.zeros((2 * HEIGHT + 1, 2 * WIDTH + 1))
    ucm[:, 2 * (WIDTH // 2)] = 0.5
    ucm[2 * (HEIGHT // 2), 2 * (WIDTH // 2) + 1 :] = 0.1  # stops at the vertical wall, leaving it whole
    scipy.io.savemat(tmp_path / "a.mat", {"ucm2": ucm})
    baseline = UcmBaseline(images=[(dataset[0].image, tmp_path / "a.mat")], thresholds=(0.05, 0.3, 0.6))
    matched = evaluate_clicks(baseline, dataset, progress=False)
    squares = evaluate_clicks(ConcentricSquares(), dataset, progress=False)
    assert matched.targets == squares.targets > 0
    assert matched.miou_best > 0.95 and matched.coverage > 0.95
    assert squares.miou_best < matched.miou_best
