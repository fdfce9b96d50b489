"""The `semsam` command end to end, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsam import SemanticInfo, save_checkpoint
from semsam.build import ASSETS
from semsam.cli.main import build_parser, main
from semsam.cli.segment import parse_numbers
from semsam.io import rle_to_mask

EXAMPLE = ASSETS / "example.jpg"


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, small_model, small_config) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    return path


def check_outputs(out: Path, image_size: tuple[int, int], labelled: bool = False) -> dict:
    result = json.loads((out / "result.json").read_text())
    assert result["image_size"] == list(image_size)
    assert len(result["masks"]) == 6 and result["labels_available"] is labelled
    assert Image.open(out / "overlay.png").size[0] > image_size[1]
    areas = []
    for entry in result["masks"]:
        png = np.asarray(Image.open(out / f"mask_level{entry['level']}.png")) > 0
        assert np.array_equal(rle_to_mask(entry["segmentation"]), png)
        assert entry["area"] == int(png.sum())
        assert (entry["label"]["object"] and entry["label"]["part"]) if labelled else entry["label"] is None
        areas.append(entry["area"])
    assert areas == sorted(areas)
    return result


def test_main_job_on_the_embedded_model(tmp_path, capsys):
    assert main(["segment", str(EXAMPLE), "--point", "225,120", "--out", str(tmp_path)]) == 0
    result = check_outputs(tmp_path, (512, 512), labelled=True)
    assert result["prompts"] == {"points": [[225.0, 120.0]], "labels": [1], "box": None}
    printed = capsys.readouterr().out
    assert "label" in printed and "skin" in printed and "overlay.png" in printed


def test_refine_edges_recuts_the_masks_and_remeasures_them(tmp_path, capsys):
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    args = ["segment", str(EXAMPLE), "--point", "225,120", "--negative", "60,60"]
    assert main([*args, "--out", str(plain)]) == 0
    assert main([*args, "--refine-edges", "--out", str(refined)]) == 0
    before, after = (json.loads((folder / "result.json").read_text())["masks"] for folder in (plain, refined))
    changed = 0
    for old, new in zip(before, after):
        mask = rle_to_mask(new["segmentation"])
        assert np.array_equal(np.asarray(Image.open(refined / f"mask_level{new['level']}.png")) > 0, mask)
        rows, cols = np.nonzero(mask)
        assert new["area"] == mask.sum() and new["bbox"][:2] == [cols.min(), rows.min()]
        assert mask[120, 225] and not mask[60, 60]
        changed += not np.array_equal(mask, rle_to_mask(old["segmentation"]))
    assert changed >= 3


def test_clicks_negatives_box_and_vocabulary(tmp_path, small_checkpoint, capsys):
    args = ["segment", str(EXAMPLE), "--point", "170,385", "--negative", "300,100", "--box", "20,150,370,512",
            "--checkpoint", str(small_checkpoint), "--objects", "person, flag", "--parts", "arm", "--out", str(tmp_path)]
    assert main(args) == 0
    result = check_outputs(tmp_path, (512, 512))
    assert result["prompts"]["labels"] == [1, 0] and result["prompts"]["box"] == [20.0, 150.0, 370.0, 512.0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--point", "12,abc"], "must be numbers"),
        (["--point", "12"], "expected 2 comma-separated numbers"),
        (["--box", "1,2,3"], "expected 4"),
        (["--point", "nan,5"], "must be finite"),
        (["--negative", "5,5"], "at least one --point, a --box or a --text"),
        (["--point", "900,5"], "outside the 512x512 image"),
        (["--point", "5,5", "--model", "nope"], "unknown model 'nope'"),
        (["--point", "5,5", "--objects", "a,,b"], "contains an empty name"),
        (["--text", "hair", "--refine-edges"], "--refine-edges goes with --point/--box"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, small_checkpoint, args, message):
    extra = [] if "--model" in args else ["--checkpoint", str(small_checkpoint)]
    code = main(["segment", str(EXAMPLE), "--out", str(tmp_path), *extra, *args])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("semsam: error:") and message in last and "Traceback" not in err


def test_unreadable_image_and_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["segment", str(bad), "--point", "1,1"]) == 2
    assert "not an image file" in capsys.readouterr().err
    assert main(["segment", str(EXAMPLE), "--point", "1,1", "--checkpoint", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["segment", str(EXAMPLE), "--point", "1,1", "--out", str(taken)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_parse_numbers():
    assert parse_numbers(" 1.5, 2 ", 2, "--point") == (1.5, 2.0)


def test_help_explains_every_command():
    for argv in (["--help"], ["segment", "--help"], ["train", "--help"], ["eval", "--help"]):
        done = subprocess.run([sys.executable, "-m", "semsam", *argv], capture_output=True, text=True, check=True)
        assert "usage: semsam" in done.stdout and "example" in done.stdout
    top = subprocess.run([sys.executable, "-m", "semsam", "--help"], capture_output=True, text=True).stdout
    for command in ("segment", "train", "eval"):
        assert command in top


def test_bare_command_prints_help_and_version_prints_version(capsys):
    import semsam

    assert main([]) == 0
    assert capsys.readouterr().out == build_parser().format_help()
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"semsam {semsam.__version__}\n"


def test_help_examples_keep_their_line_breaks(capsys):
    with pytest.raises(SystemExit):
        main(["everything", "--help"])
    lines = capsys.readouterr().out.splitlines()
    continued = [i for i, line in enumerate(lines) if line.rstrip().endswith("\\")]
    assert continued and all(lines[i + 1].startswith("      --") for i in continued)


def test_sam_checkpoint_end_to_end(tmp_path, capsys, monkeypatch):
    import torch

    from semsam import MODEL_CONFIGS, build_model
    from semsam.config import SamConfig

    config = SamConfig(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, global_attn_indexes=(1,),
                       image_size=128)
    monkeypatch.setitem(MODEL_CONFIGS, "sam_cli_test", config)
    torch.manual_seed(0)
    official = tmp_path / "sam_cli_test.pth"
    torch.save(build_model("sam_cli_test").state_dict(), official)
    args = ["segment", str(EXAMPLE), "--point", "170,385", "--model", "sam_cli_test", "--checkpoint", str(official),
            "--out", str(tmp_path / "pth")]
    assert main(args) == 0
    first = json.loads((tmp_path / "pth" / "result.json").read_text())
    assert len(first["masks"]) == 3 and "mask_level3.png" in capsys.readouterr().out
    assert main(["convert", "sam_cli_test", str(official)]) == 0
    converted = official.with_suffix(".safetensors")
    assert main(["segment", str(EXAMPLE), "--point", "170,385", "--checkpoint", str(converted),
                 "--out", str(tmp_path / "safetensors")]) == 0
    second = json.loads((tmp_path / "safetensors" / "result.json").read_text())
    assert [m["segmentation"] for m in second["masks"]] == [m["segmentation"] for m in first["masks"]]


def test_official_checkpoint_without_model_name_is_an_error(tmp_path, capsys):
    official = tmp_path / "some.pth"
    official.write_bytes(b"not a checkpoint")
    assert main(["segment", str(EXAMPLE), "--point", "1,1", "--checkpoint", str(official)]) == 2
    assert "carries no config: name its model" in capsys.readouterr().err


def test_convert_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    assert "semsam convert sam_vit_b sam_vit_b_01ec64.pth" in capsys.readouterr().out
    assert main(["convert", "sam_vit_z", str(tmp_path / "x.pth")]) == 2
    assert "unknown model 'sam_vit_z'" in capsys.readouterr().err
    assert main(["convert", "sam_vit_b", str(tmp_path / "absent.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
