"""Granularity panels and automatic-mask overlays: layout, colours, captions, names and input checks."""

import numpy as np
import pytest

from semsam.prediction import MaskLabel
from semsam.visualize import LEVEL_COLOURS, granularity_panels, mask_overlay, name_segments


def rings(height: int = 40, width: int = 60, count: int = 6) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    return np.stack([(rows - 20) ** 2 + (cols - 30) ** 2 < (3 + 4 * k) ** 2 for k in range(count)])


def test_six_levels_make_two_rows_of_three_and_labels_add_a_caption_line():
    image = np.full((40, 60, 3), 128, np.uint8)
    plain = granularity_panels(image, rings(), np.linspace(0.5, 1.0, 6), None, panel_size=120)
    labelled = granularity_panels(
        image, rings(), np.linspace(0.5, 1.0, 6), [MaskLabel("dog", 0.8, "head", 0.5)] * 6,
        points=[(30, 20), (5, 5)], point_labels=[1, 0], box=(10, 5, 50, 35), panel_size=120,
    )
    assert plain.width == labelled.width == 3 * 120 + 4 * 6
    assert labelled.height > plain.height > 2 * 80
    assert granularity_panels(image, rings(count=2), np.ones(2), None, panel_size=120).height < plain.height


def test_mask_overlay_tints_only_the_mask_and_outlines_it():
    image = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    out = mask_overlay(image, mask, LEVEL_COLOURS[0], alpha=0.5, outline=1)
    assert (out[~mask] == 0).all()
    assert tuple(out[2, 5]) == LEVEL_COLOURS[0]
    assert tuple(out[5, 5]) == tuple(round(c * 0.5) for c in LEVEL_COLOURS[0])


@pytest.mark.parametrize(
    "image, masks, scores, message",
    [
        (np.zeros((40, 60), np.uint8), rings(), np.ones(6), "HxWx3 uint8"),
        (np.zeros((40, 60, 3), np.uint8), rings(30, 60), np.ones(6), "masks must be"),
        (np.zeros((40, 60, 3), np.uint8), rings(), np.ones(5), "6 masks but 5 scores"),
    ],
)
def test_bad_inputs_are_named(image, masks, scores, message):
    with pytest.raises(ValueError, match=message):
        granularity_panels(image, masks, scores, None)


def test_names_go_inside_segments_wide_enough_to_hold_them():
    label_map = np.zeros((120, 300), np.int32)
    label_map[10:110, 10:150] = 1  # wide: named at its centre
    label_map[10:110, 160:290] = 2  # as wide, but nameless
    label_map[60:63, 200:203] = 3  # too thin for any text
    overlay = np.full((120, 300, 3), 90, np.uint8)
    names = name_segments(overlay, label_map, {1: "person", 3: "hair", 4: "absent"})
    changed = (names != overlay).any(-1)
    assert changed[label_map == 1].sum() > 100 and not changed[label_map != 1].any()
    rows, columns = np.nonzero(changed)
    assert abs(rows.mean() - 60) < 6 and abs(columns.mean() - 80) < 12
    # light letters with a dark rim, legible on any colour
    assert (names[changed].min(-1) > 200).any() and (names[changed].max(-1) < 60).any()
    with pytest.raises(ValueError, match="does not match"):
        name_segments(overlay, label_map[:-1], {1: "person"})


def test_a_name_that_would_cover_another_is_left_out():
    label_map = np.ones((100, 100), np.int32)
    label_map[:, 45:] = 2  # the wider segment is named first; the other's name would run into it
    overlay = np.zeros((100, 100, 3), np.uint8)
    names = {1: "a long name", 2: "another long name"}
    both = name_segments(overlay, label_map, names)
    assert np.array_equal(both, name_segments(overlay, label_map, {2: names[2]}))
    assert (name_segments(overlay, label_map, {1: names[1]})[:, :45] != 0).any()
