"""`semsam everything` end to end: one image, a folder, resuming after a kill, labels, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsam import SemanticInfo, save_checkpoint
from semsam.cli.everything import parse_levels
from semsam.cli.main import main
from semsam.io import rle_to_mask

from helpers import check_panoptic

SA1B_FIELDS = {"id", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "point_coords", "crop_box",
               "level"}


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, small_model, small_config) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    return path


@pytest.fixture(scope="module")
def labelled_checkpoint(tmp_path_factory, small_model, small_config) -> Path:
    """The small random model, recorded as having trained heads: its labels are arbitrary but well formed."""
    path = tmp_path_factory.mktemp("ckpt") / "labelled.safetensors"
    save_checkpoint(path, small_model, small_config,
                    SemanticInfo(trained=True, objects=["person", "dog", "car"], parts=["head", "hair", "wheel"]))
    return path


@pytest.fixture()
def photos(tmp_path, scene) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, name in enumerate(["a.png", "b.jpg", "c.png"]):
        Image.fromarray(np.roll(scene, 7 * index, axis=1)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def everything(path: Path, out: Path, checkpoint: Path, *extra: str) -> int:
    return main(["everything", str(path), "--out", str(out), "--checkpoint", str(checkpoint), "--points-per-side", "3",
                 "--pred-iou-thresh", "-10", "--stability-thresh", "0", *extra])


def check_image_outputs(out: Path, image: Path, levels: set[int]) -> dict:
    record = json.loads((out / f"{image.stem}.json").read_text())
    height, width = np.asarray(Image.open(image)).shape[:2]
    assert record["image"]["width"] == width and record["image"]["height"] == height
    assert (out / record["image"]["file_name"]).resolve() == image.resolve()
    assert record["annotations"] and {a["level"] for a in record["annotations"]} <= levels
    for annotation in record["annotations"]:
        assert SA1B_FIELDS <= set(annotation)
        mask = rle_to_mask(annotation["segmentation"])
        assert mask.shape == (height, width) and mask.sum() == annotation["area"]
        x, y, w, h = annotation["bbox"]
        assert mask[int(y) : int(y + h), int(x) : int(x + w)].sum() == annotation["area"]
    extras = out / image.stem
    written_levels = {int(p.stem.removeprefix("overlay_level")) for p in extras.glob("overlay_level*.png")}
    assert written_levels == {a["level"] for a in record["annotations"]}
    coco = json.loads((extras / "coco.json").read_text())
    assert len(coco["annotations"]) == len(record["annotations"])
    assert (extras / coco["images"][0]["file_name"]).resolve() == image.resolve()
    tree = json.loads((extras / "tree.json").read_text())
    seen = []

    def walk(node: dict, parent_level: int) -> None:
        assert node["level"] < parent_level
        seen.append(node["id"])
        for child in node["children"]:
            walk(child, node["level"])

    for root in tree["roots"]:
        walk(root, 99)
    assert sorted(seen) == [a["id"] for a in record["annotations"]]
    return record


def test_one_image(tmp_path, photos, small_checkpoint, capsys):
    out = tmp_path / "out"
    assert everything(photos / "a.png", out, small_checkpoint, "--levels", "1,3,6") == 0
    check_image_outputs(out, photos / "a.png", {1, 3, 6})
    assert "masks" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a", "a.json"]


def test_match_sam_suppresses_across_levels(tmp_path, photos, small_checkpoint):
    assert everything(photos / "a.png", tmp_path / "levels", small_checkpoint) == 0
    assert everything(photos / "a.png", tmp_path / "sam", small_checkpoint, "--match-sam") == 0
    per_level = check_image_outputs(tmp_path / "levels", photos / "a.png", set(range(1, 7)))["annotations"]
    across = json.loads((tmp_path / "sam" / "a.json").read_text())["annotations"]
    # The small random model's masks are overlapping blobs: suppressing across levels leaves fewer.
    assert 0 < len(across) < len(per_level)


def test_folder_resumes_after_a_kill(tmp_path, photos, small_checkpoint, capsys):
    out = tmp_path / "out"
    out.mkdir()
    finished = {"image": {"image_id": 1, "width": 1, "height": 1, "file_name": "x"}, "annotations": []}
    (out / "a.json").write_text(json.dumps(finished))
    # a run killed while writing b: its JSON only exists as write_atomic's temp file
    stale = out / ".b.json.abc123.tmp"
    stale.write_text('{"image": ')
    assert everything(photos, out, small_checkpoint) == 0
    assert json.loads((out / "a.json").read_text()) == finished, "finished images are skipped"
    for name in ("b.jpg", "c.png"):
        check_image_outputs(out, photos / name, set(range(1, 7)))
    assert not list(out.rglob("*.tmp"))
    assert "skipping 1 finished image" in capsys.readouterr().err
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert everything(photos, out, small_checkpoint) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.json")} == before
    assert "nothing to do" in capsys.readouterr().out


def test_output_beside_the_images_is_the_sa1b_layout(photos, small_checkpoint):
    assert everything(photos, photos, small_checkpoint, "--levels", "6") == 0
    for name in ("a.png", "b.jpg", "c.png"):
        record = check_image_outputs(photos, photos / name, {6})
        assert record["image"]["file_name"] == name


def test_labels_name_the_tree_and_give_panoptic_files(tmp_path, photos, labelled_checkpoint, monkeypatch):
    monkeypatch.setenv("SEMSAM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert everything(photos / "a.png", out, labelled_checkpoint, "--levels", "1,6", "--labels",
                      "--objects", "cat,tree", "--parts", "leg,leaf,eye") == 0
    annotations = check_image_outputs(out, photos / "a.png", {1, 6})["annotations"]
    assert all(a["label"]["object"] in ("cat", "tree") and a["label"]["part"] in ("leg", "leaf", "eye")
               for a in annotations)
    panoptic = check_panoptic(out / "a", annotations)
    assert [c["name"] for c in panoptic["categories"]] == ["cat", "tree", "leg", "leaf", "eye"]
    assert panoptic["images"][0]["file_name"] == "../../photos/a.png"
    tree = json.loads((out / "a" / "tree.json").read_text())
    for root in tree["roots"]:
        assert root["name"] == root["path"] == root["label"]["object"]
        for child in root["children"]:
            assert child["path"] in (child["name"], f"{root['path']} > {child['name']}")


def test_labels_are_refused_without_trained_heads(tmp_path, photos, small_checkpoint, capsys):
    assert everything(photos / "a.png", tmp_path / "out", small_checkpoint, "--labels") == 2
    error = capsys.readouterr().err
    assert "were never trained" in error and "embedded default" in error
    assert not (tmp_path / "out").exists()


def test_bad_input(tmp_path, photos, small_checkpoint, capsys):
    def error(*args: str) -> str:
        capsys.readouterr()
        assert main(["everything", *args]) == 2
        return capsys.readouterr().err

    assert "does not exist" in error(str(tmp_path / "missing.jpg"))
    (tmp_path / "empty").mkdir()
    assert "no images" in error(str(tmp_path / "empty"))
    assert "--levels" in error(str(photos), "--levels", "0,2")
    assert "--levels" in error(str(photos), "--levels", "one")
    assert "--points-per-side" in error(str(photos), "--points-per-side", "0")
    assert "levels must be 1..6" in error(str(photos / "a.png"), "--levels", "7", "--checkpoint",
                                          str(small_checkpoint), "--out", str(tmp_path / "o"))
    (tmp_path / "file").write_text("x")
    assert "is a file" in error(str(photos), "--out", str(tmp_path / "file"))
    (photos / "a.jpg").write_bytes(b"")
    assert "would both be written as a.json" in error(str(photos))
    (photos / "a.jpg").unlink()
    (photos / "broken.png").write_bytes(b"not a png")
    assert "could not be read" in error(str(photos), "--checkpoint", str(small_checkpoint), "--points-per-side",
                                        "2", "--out", str(tmp_path / "o2"))
    assert (tmp_path / "o2" / "a.json").is_file(), "the readable images are still done"


def test_parse_levels():
    assert parse_levels("6,1,3") == (6, 1, 3)
    with pytest.raises(ValueError, match="distinct"):
        parse_levels("1,1")
