import json

import numpy as np
import pytest

from semsam.io import mask_to_rle, rle_to_mask, write_json_atomic, write_png_atomic


def test_rle_round_trip_and_json():
    mask = np.zeros((7, 11), bool)
    mask[2:5, 3:9] = True
    mask[6, 10] = True
    rle = mask_to_rle(mask)
    assert rle["size"] == [7, 11] and isinstance(rle["counts"], str)
    assert np.array_equal(rle_to_mask(json.loads(json.dumps(rle))), mask)


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(ValueError, match="uint8 or bool"):
        write_png_atomic(tmp_path / "m.png", np.zeros((3, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_bad_rle():
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        rle_to_mask({"counts": "abc"})
