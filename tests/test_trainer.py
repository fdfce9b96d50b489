"""The training loop: it learns, checkpoints atomically, and resumes exactly after an interruption."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from semsam import load_model
from semsam.training.config import load_train_config
from semsam.training.trainer import Trainer, TrainingStopped

from helpers import halves_annotations, write_bsds


@pytest.fixture
def bsds_root(tmp_path: Path) -> Path:
    root = tmp_path / "bsds"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        write_bsds(root, split, "0001", halves_annotations())
        write_bsds(root, split, "0002", [rng.integers(1, 4, size=(48, 64))])
    return root


def write_config(path: Path, bsds_root: Path, *, steps: int = 4, validation: bool = False, **extra: object) -> Path:
    lines = [
        'model = "semsam_mobilenet"',
        f'output_dir = "{path.parent / "run"}"',
        f"steps = {steps}",
        "batch_size = 2",
        "prompts_per_image = 4",
        "image_size = 64",
        "num_points = 64",
        "warmup_steps = 2",
        "checkpoint_every = 2",
        "validate_every = 2",
        "validation_images = 1",
        "log_every = 1",
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
        "[[datasets]]",
        'kind = "bsds500"',
        f'root = "{bsds_root}"',
    ]
    if validation:
        lines += ["[validation]", 'kind = "bsds500"', f'root = "{bsds_root}"', 'split = "val"']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, bsds_root, monkeypatch, precision):
    straight = load_train_config(write_config(tmp_path / "a" / "train.toml", bsds_root, precision=precision))
    interrupted = load_train_config(write_config(tmp_path / "b" / "train.toml", bsds_root, precision=precision))
    Trainer(config=straight).run()

    original_step = Trainer.train_step

    def step_then_sigterm(self):
        losses = original_step(self)
        if self.step == 2:  # the loop increments after train_step returns, so this fires during step 3
            os.kill(os.getpid(), signal.SIGTERM)
        return losses

    monkeypatch.setattr(Trainer, "train_step", step_then_sigterm)
    first = Trainer(config=interrupted)
    with pytest.raises(TrainingStopped, match="SIGTERM at step 3 of 4"):
        first.run()
    assert first.step == 3 and not (Path(interrupted.output_dir) / "final.safetensors").exists()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = Trainer(config=interrupted)
    assert resumed.resume() and resumed.step == 3
    Trainer(config=interrupted).run()

    a = load_file(str(Path(straight.output_dir) / "final.safetensors"))
    b = load_file(str(Path(interrupted.output_dir) / "final.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_a_crash_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path, bsds_root, monkeypatch):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root, steps=4))
    original_step = Trainer.train_step

    def crash_in_step_four(self):
        if self.step == 3:
            raise RuntimeError("power cut")
        return original_step(self)

    monkeypatch.setattr(Trainer, "train_step", crash_in_step_four)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(config=config).run()
    after_crash = Trainer(config=config)
    assert after_crash.resume() and after_crash.step == 2
    assert not list(Path(config.output_dir).glob("*.tmp"))


def test_validation_keeps_the_best_model_and_logs_metrics(tmp_path, bsds_root):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root, steps=2, validation=True))
    Trainer(config=config).run()
    out = Path(config.output_dir)
    assert load_model(checkpoint=out / "best.safetensors").config.image_size == 64  # runs at its training size
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "total" in r] == [1, 2]
    validation = [r["validation"] for r in records if "validation" in r]
    assert validation and 0 <= validation[0]["miou_best"] <= 1 and validation[0]["targets"] > 0


def test_training_reduces_the_loss_on_a_fixed_batch(tmp_path, bsds_root):
    config = load_train_config(write_config(tmp_path / "train.toml", bsds_root, steps=100, lr=1e-3, mask_prompt_prob=0.0))
    trainer = Trainer(config=config)
    trainer.model.train()
    first = trainer.train_step()["total"]
    for _ in range(40):
        last = trainer.train_step()["total"]  # same step index: the same batch every time
    assert last < 0.7 * first


def test_resuming_with_another_config_is_refused(tmp_path, bsds_root):
    path = write_config(tmp_path / "train.toml", bsds_root, steps=2)
    Trainer(config=load_train_config(path)).run()
    write_config(path, bsds_root, steps=2, lr=0.5)
    with pytest.raises(ValueError, match="different config"):
        Trainer(config=load_train_config(path)).run()


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps = 2\n", "no \\[\\[datasets\\]\\]"),
        ("stepz = 2\n[[datasets]]\nkind='bsds500'\nroot='x'\n", "unknown key\\(s\\).*stepz"),
        ("steps = = 2\n", "not valid TOML"),
        ("[[datasets]]\nroot='x'\n", "needs 'kind' and 'root'"),
        ("[[datasets]]\nkind='imagenet'\nroot='x'\n", "imagenet"),
    ],
)
def test_bad_configs_are_named(tmp_path, monkeypatch, text, message):
    path = tmp_path / "train.toml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        Trainer(config=load_train_config(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.toml"]  # no runs/ folder left behind


def test_missing_data_says_where_to_get_it_and_writes_nothing(tmp_path, bsds_root, monkeypatch, capsys):
    from semsam.cli.main import main

    config = write_config(tmp_path / "configs" / "train.toml", bsds_root, steps=1)
    config.write_text(config.read_text().replace(f'root = "{bsds_root}"', f'root = "{bsds_root.name}"'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEMSAM_DATA_ROOT", raising=False)
    before = sorted(tmp_path.rglob("*"))
    assert main(["train", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"bsds500 data not found: {tmp_path / 'data' / 'bsds'} is not a folder" in error
    assert "Get BSDS500 from https://" in error and "--data-root DIR, else $SEMSAM_DATA_ROOT" in error
    monkeypatch.setenv("SEMSAM_DATA_ROOT", str(tmp_path / "elsewhere"))
    assert main(["train", str(config)]) == 2
    assert str(tmp_path / "elsewhere" / "bsds") in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before
    assert main(["train", str(config), "--data-root", str(tmp_path)]) == 0  # the option wins over the variable
    assert (tmp_path / "configs" / "run" / "final.safetensors").is_file()


def test_train_command(tmp_path, bsds_root, capsys):
    from semsam.cli.main import main

    path = write_config(tmp_path / "train.toml", bsds_root, steps=10)
    assert main(["train", str(path), "--steps", "1"]) == 0
    assert (tmp_path / "run" / "final.safetensors").is_file()
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
