"""Training under bad configs, broken or hostile state files, kills and signals: clear errors, honest exits."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from semsam.cli.main import main
from semsam.training.config import load_train_config
from semsam.training.trainer import STATE_FILE, Trainer

from test_trainer import bsds_root, write_config  # noqa: F401 - bsds_root is a fixture


class RunsCode:
    """Unpickling this creates `marker`: stands for any code a crafted last.pt could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_crafted_last_pt_runs_no_code(tmp_path, bsds_root):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root))
    marker = tmp_path / "code_ran"
    Path(config.output_dir).mkdir(parents=True)
    torch.save({"model": RunsCode(marker), "step": 1}, Path(config.output_dir) / STATE_FILE)
    with pytest.raises(ValueError, match="never loaded"):
        Trainer(config=config).resume()
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_state"])
def test_a_broken_last_pt_is_named_with_how_to_recover(tmp_path, bsds_root, damage):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root, steps=2))
    Trainer(config=config).run()
    state = Path(config.output_dir) / STATE_FILE
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "empty":
        state.write_bytes(b"")
    else:
        torch.save([1, 2, 3], state)
    with pytest.raises(ValueError, match=f"{STATE_FILE}.*(truncated or corrupt|not a semsam training state).*"
                                         "delete or move .* start over"):
        Trainer(config=config).resume()


def test_sigterm_exits_non_zero_says_where_the_state_is_and_resumes(tmp_path, bsds_root, monkeypatch, capsys):
    path = write_config(tmp_path / "train.toml", bsds_root, steps=4)
    original_step = Trainer.train_step

    def step_then_sigterm(self):
        losses = original_step(self)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return losses

    monkeypatch.setattr(Trainer, "train_step", step_then_sigterm)
    assert main(["train", str(path)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at step 2 of 4" in err and str(tmp_path / "run" / STATE_FILE) in err
    assert f"run the same command again: semsam train {path}" in err and "done" not in err
    assert not (tmp_path / "run" / "final.safetensors").exists()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert main(["train", str(path)]) == 0
    assert (tmp_path / "run" / "final.safetensors").is_file()


def test_temp_files_of_a_killed_write_are_removed(tmp_path, bsds_root):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root))
    out = Path(config.output_dir)
    out.mkdir(parents=True)
    left = [out / ".last.pt.k1ll3d.tmp", out / ".final.safetensors.x9.tmp"]
    for path in left:
        path.write_bytes(b"half a checkpoint")
    unrelated = out / "notes.tmp"
    unrelated.write_text("mine")
    Trainer(config=config)
    assert not any(path.exists() for path in left) and unrelated.exists()


def test_metrics_have_one_line_per_step_after_a_kill_and_resume(tmp_path, bsds_root, monkeypatch):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root, steps=4))
    original_save = Trainer.save_state
    # As if killed after logging step 4: steps 1-4 logged, the state saved last at step 2.
    monkeypatch.setattr(Trainer, "save_state", lambda self: original_save(self) if self.step <= 2 else None)
    Trainer(config=config).run()
    metrics = Path(config.output_dir) / "metrics.jsonl"
    with open(metrics, "a") as handle:
        handle.write('{"step": 5, "tot')  # a line cut by the kill
    monkeypatch.setattr(Trainer, "save_state", original_save)
    Trainer(config=config).run()
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "setting, message",
    [
        ('steps = "ten"', 'steps = \'ten\' is not accepted; steps must be a whole number >= 1'),
        ("steps = -5", "steps must be a whole number >= 1"),
        ("steps = 2.5", "steps must be a whole number >= 1"),
        ("batch_size = 0", "batch_size must be a whole number >= 1"),
        ("steps = true", "steps must be a whole number >= 1"),
        ("lr = 0", "lr must be a number > 0"),
        ('lr = "fast"', "lr must be a number > 0"),
        ("lr = nan", "lr must be a number > 0"),
        ("mask_prompt_prob = 1.5", "mask_prompt_prob must be a probability"),
        ("correction_prob = -0.1", "correction_prob must be a probability"),
        ("max_corrections = 0", "max_corrections must be a whole number >= 1"),
        ("rank_weight = -1", "rank_weight must be a number >= 0"),
        ('rank_weight = "high"', "rank_weight must be a number >= 0"),
        ("heads_checkpoint = 5", "heads_checkpoint must be the path of a checkpoint file"),
        ("flip = 1", "flip must be true or false"),
        ("correct_all_outputs = \"yes\"", "correct_all_outputs must be true or false"),
        ("image_size = 0", "image_size must be a whole number of pixels >= 32"),
        ("scale_range = [1.4, 0.6]", "scale_range must be two numbers"),
        ("scale_range = 5", "scale_range must be two numbers"),
        ("model = 3", "model must be a string"),
        ("datasets = 5", "datasets must be a list"),
    ],
)
def test_settings_of_the_wrong_type_or_range_are_named(tmp_path, setting, message):
    path = tmp_path / "train.toml"
    path.write_text(f"{setting}\n" + ("" if setting.startswith("datasets") else "[[datasets]]\nkind='bsds500'\nroot='x'\n"))
    with pytest.raises(ValueError, match=message.replace("[", "\\[").replace("(", "\\(")):
        load_train_config(path)


@pytest.mark.parametrize("weight", [0, -1, '"heavy"'])
def test_a_dataset_weight_must_be_positive(tmp_path, weight):
    path = tmp_path / "train.toml"
    path.write_text(f"[[datasets]]\nkind='bsds500'\nroot='x'\nweight = {weight}\n")
    with pytest.raises(ValueError, match="weight must be a number > 0"):
        load_train_config(path)


def test_a_config_path_that_is_a_folder_is_named(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.toml").write_text("")
    assert main(["train", str(tmp_path / "configs")]) == 2
    assert "is a folder (it holds mine.toml); give the path of a .toml file" in capsys.readouterr().err
