"""Training run configuration: a TOML file read into small dataclasses."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from semsam.data.registry import resolve_data_root

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class DatasetSpec:
    """One training or validation source and its sampling weight."""

    kind: str
    root: str
    split: str = "train"
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)  # extra arguments of the dataset, e.g. length


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs (see `load_train_config` for how a file's relative paths resolve)."""

    model: str = "semsam_tiny"
    output_dir: str = "runs/default"
    init_checkpoint: str | None = None
    backbone_checkpoint: str | None = None  # pretrained backbone (semsam convert-tflite); unused with init_checkpoint
    heads_checkpoint: str | None = None  # decoders from another semsam checkpoint; unused with init_checkpoint
    datasets: tuple[DatasetSpec, ...] = ()
    validation: DatasetSpec | None = None
    validation_images: int = 20
    steps: int = 10000
    batch_size: int = 2
    prompts_per_image: int = 16
    image_size: int | None = None
    flip: bool = True
    scale_range: tuple[float, float] | None = (0.6, 1.4)
    lr: float = 2e-4
    backbone_lr_scale: float = 1.0
    weight_decay: float = 0.05
    warmup_steps: int = 200
    grad_clip: float = 1.0
    mask_prompt_prob: float = 0.25
    correction_prob: float = 0.0  # share of steps that first simulate corrective clicks
    max_corrections: int = 3  # such a step simulates 1..max_corrections rounds
    num_points: int = 3136
    checkpoint_every: int = 200
    validate_every: int = 1000
    log_every: int = 10
    seed: int = 0
    num_threads: int = 0
    device: str = "auto"
    precision: str = "auto"


# Settings that may change when resuming: where the run trains does not change what it learns.
RESUMABLE_CHANGES = ("device", "num_threads")


def load_train_config(path: str | Path, *, data_root: str | Path | None = None) -> TrainConfig:
    """Reads a TOML training config.

    Relative dataset roots lie under the data root; relative `output_dir` and checkpoint paths
    (`init_checkpoint`, `backbone_checkpoint`, `heads_checkpoint`) are relative to the config file's folder. Nothing is checked on disk here: the trainer opens the datasets
    before it writes anything.

    Args:
        path: the TOML file.
        data_root: folder holding the data sets (see `semsam.data.resolve_data_root`: None falls back to
            $SEMSAM_DATA_ROOT, then ./data).

    Returns:
        The config, with absolute paths.

    Raises:
        ValueError: unreadable TOML, unknown keys, or a config without datasets.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training config {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"training config {path} is not valid TOML: {error}") from error
    base = path.resolve().parent
    data = resolve_data_root(data_root).resolve()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in {path}: {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    values: dict[str, Any] = dict(raw)
    if "scale_range" in raw:
        values["scale_range"] = tuple(raw["scale_range"]) if raw["scale_range"] else None
    values["datasets"] = tuple(_dataset(item, data, path) for item in raw.get("datasets", []))
    if not values["datasets"]:
        raise ValueError(f"{path} lists no [[datasets]] to train on")
    if "validation" in raw:
        values["validation"] = _dataset(raw["validation"], data, path)
    for key in ("output_dir", "init_checkpoint", "backbone_checkpoint", "heads_checkpoint"):
        if values.get(key):
            values[key] = str(base / values[key])
    return TrainConfig(**values)


def _dataset(item: dict[str, Any], data_root: Path, path: Path) -> DatasetSpec:
    known = {f.name for f in fields(DatasetSpec)}
    unknown = sorted(set(item) - known)
    if unknown or "kind" not in item or "root" not in item:
        raise ValueError(f"dataset entry {item} in {path} needs 'kind' and 'root' (known keys: {', '.join(sorted(known))})")
    if not isinstance(item.get("options", {}), dict):
        raise ValueError(f"dataset entry {item} in {path}: 'options' must be a table, e.g. options = {{ length = 500 }}")
    # An empty root (generated data sets) stays empty; absolute roots are kept as they are.
    root = str(data_root / item["root"]) if item["root"] else ""
    return DatasetSpec(**{**item, "root": root})


def as_dict(config: TrainConfig) -> dict[str, Any]:
    """A JSON-serialisable view, stored with checkpoints so a resumed run can check it is the same run."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "datasets":
            value = [_spec_dict(d) for d in value]
        elif f.name == "validation" and value is not None:
            value = _spec_dict(value)
        out[f.name] = value
    return out


def _spec_dict(spec: DatasetSpec) -> dict[str, Any]:
    # Without empty options, so that runs saved before datasets had options still resume.
    return {k: v for k, v in vars(spec).items() if k != "options" or v}


def same_run(saved: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a saved `as_dict` config describes this run; keys added since it was saved count as defaults."""
    current = as_dict(config)
    defaults = as_dict(TrainConfig())
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    return all(saved[k] == v for k, v in current.items() if k not in RESUMABLE_CHANGES)
