"""Training set-up: precision and device choice, and configs that stay resumable as they gain settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semsam.training.config import DatasetSpec, TrainConfig, as_dict, load_train_config, same_run
from semsam.training.distributed import resolve_device, start
from semsam.training.step import autocast, resolve_precision

CPU = torch.device("cpu")


def test_precision_defaults_to_bf16_on_cpu_and_refuses_fp16_there():
    assert resolve_precision("auto", CPU) == "bf16"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "fp16"
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="unknown; use one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", CPU)
    layer = torch.nn.Linear(4, 4)
    with autocast("bf16", CPU):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert layer(torch.ones(1, 4)).dtype == torch.float32


def test_device_choice_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    placement = start("cpu")
    assert placement.is_main and not placement.distributed and placement.device == CPU


def test_runs_saved_before_new_settings_still_resume(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('steps = 5\n[[datasets]]\nkind = "synthetic_parts"\nroot = ""\noptions = { length = 3 }\n')
    config = load_train_config(path)
    assert config.datasets[0].options == {"length": 3}
    saved = as_dict(config)
    older = {k: v for k, v in saved.items() if k not in ("precision", "device")}
    assert same_run(older, config)
    assert same_run({**saved, "device": "cuda", "num_threads": 8}, config)  # where it runs may change
    assert not same_run({**saved, "precision": "fp32"}, config)
    assert not same_run({**saved, "steps": 6}, config)
    plain = as_dict(TrainConfig(datasets=(DatasetSpec(kind="bsds500", root="x"),)))
    assert "options" not in plain["datasets"][0]  # as saved before datasets had options


def test_dataset_options_must_be_a_table(tmp_path: Path):
    path = tmp_path / "train.toml"
    path.write_text('[[datasets]]\nkind = "synthetic_parts"\nroot = ""\noptions = 3\n')
    with pytest.raises(ValueError, match="'options' must be a table"):
        load_train_config(path)


def test_dataset_roots_lie_under_the_data_root(tmp_path, monkeypatch):
    path = tmp_path / "configs" / "train.toml"
    path.parent.mkdir()
    path.write_text('output_dir = "../runs/x"\n[[datasets]]\nkind = "bsds500"\nroot = "bsds500"\n'
                    f'[[datasets]]\nkind = "coco"\nroot = "{tmp_path / "abs"}"\n'
                    '[[datasets]]\nkind = "synthetic_parts"\nroot = ""\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEMSAM_DATA_ROOT", raising=False)
    roots = lambda config: [spec.root for spec in config.datasets]  # noqa: E731
    assert roots(load_train_config(path)) == [str(tmp_path / "data" / "bsds500"), str(tmp_path / "abs"), ""]
    monkeypatch.setenv("SEMSAM_DATA_ROOT", str(tmp_path / "from_env"))
    assert roots(load_train_config(path))[0] == str(tmp_path / "from_env" / "bsds500")
    config = load_train_config(path, data_root="given")  # the option wins over the environment
    assert roots(config)[0] == str(tmp_path / "given" / "bsds500")
    assert config.output_dir == str(tmp_path / "configs" / ".." / "runs" / "x")  # relative to the config file
