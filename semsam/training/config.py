"""Training run configuration: a TOML file read into small dataclasses."""

from __future__ import annotations

import math
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

    model: str = "semsam_mobilenet"
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
    refiner_lr_scale: float = 1.0  # the click refiner's lr over `lr`: it starts from zero when added to a trained model
    weight_decay: float = 0.05
    warmup_steps: int = 200
    grad_clip: float = 1.0
    mask_prompt_prob: float = 0.25
    correction_prob: float = 0.0  # share of steps that first simulate corrective clicks
    max_corrections: int = 3  # such a step simulates 1..max_corrections rounds
    correct_all_outputs: bool = False  # after corrections every output learns the target, not only the matched one
    rank_weight: float = 0.0  # > 0: train the model's rank head with the decoder, toward each prompt's own mask
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

# Value rules of the numeric settings, checked before anything is built.
POSITIVE_INTS = ("steps", "batch_size", "prompts_per_image", "num_points", "checkpoint_every", "validate_every",
                 "log_every", "validation_images", "max_corrections")
NON_NEGATIVE_INTS = ("warmup_steps", "seed", "num_threads")
POSITIVE_FLOATS = ("lr",)
NON_NEGATIVE_FLOATS = ("backbone_lr_scale", "refiner_lr_scale", "weight_decay", "grad_clip", "rank_weight")
STRINGS = ("model", "output_dir", "device", "precision")
PATHS = ("init_checkpoint", "backbone_checkpoint", "heads_checkpoint")
PROBABILITIES = ("mask_prompt_prob", "correction_prob")
# A smaller input than the backbone's coarsest stride leaves it nothing to see.
MIN_IMAGE_SIZE = 32


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
        ValueError: unreadable TOML, unknown keys, a config without datasets, or a setting of the wrong type
            or out of range (named, with what it accepts).
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(item.name for item in path.glob("*.toml"))
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise ValueError(f"training config {path} is a folder{hint}; give the path of a .toml file")
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
    _check_settings(raw, path)
    values: dict[str, Any] = dict(raw)
    if "scale_range" in raw:
        values["scale_range"] = tuple(raw["scale_range"]) if raw["scale_range"] else None
    datasets = raw.get("datasets", [])
    if not isinstance(datasets, list):
        raise ValueError(f"{path}: datasets must be a list of [[datasets]] tables, got {datasets!r}")
    values["datasets"] = tuple(_dataset(item, data, path) for item in datasets)
    if not values["datasets"]:
        raise ValueError(f"{path} lists no [[datasets]] to train on")
    if "validation" in raw:
        values["validation"] = _dataset(raw["validation"], data, path)
    for key in ("output_dir", "init_checkpoint", "backbone_checkpoint", "heads_checkpoint"):
        if values.get(key):
            values[key] = str(base / values[key])
    return TrainConfig(**values)


def _check_settings(raw: dict[str, Any], path: Path) -> None:
    """Refuses a top-level setting of the wrong type or out of range, naming it and what it accepts."""

    def refuse(key: str, accepted: str) -> None:
        raise ValueError(f"{path}: {key} = {raw[key]!r} is not accepted; {key} must be {accepted}")

    for key in POSITIVE_INTS + NON_NEGATIVE_INTS:
        low = 1 if key in POSITIVE_INTS else 0
        if key in raw and (not _is_int(raw[key]) or raw[key] < low):
            refuse(key, f"a whole number >= {low}")
    for key in POSITIVE_FLOATS + NON_NEGATIVE_FLOATS:
        if key in raw and (not _is_number(raw[key]) or raw[key] < 0 or (key in POSITIVE_FLOATS and raw[key] == 0)):
            refuse(key, "a number " + ("> 0" if key in POSITIVE_FLOATS else ">= 0"))
    for key in STRINGS:
        if key in raw and not isinstance(raw[key], str):
            refuse(key, "a string")
    for key in PATHS:
        if key in raw and not isinstance(raw[key], str):
            refuse(key, "the path of a checkpoint file, as a string")
    for key in ("flip", "correct_all_outputs"):
        if key in raw and not isinstance(raw[key], bool):
            refuse(key, "true or false")
    for key in PROBABILITIES:
        if key in raw and not (_is_number(raw[key]) and 0 <= raw[key] <= 1):
            refuse(key, "a probability in [0, 1]")
    if "image_size" in raw and not (_is_int(raw["image_size"]) and raw["image_size"] >= MIN_IMAGE_SIZE):
        refuse("image_size", f"a whole number of pixels >= {MIN_IMAGE_SIZE} (or left out for the model's own)")
    scale = raw.get("scale_range")
    if scale is not None and scale is not False and not (
            isinstance(scale, list) and len(scale) == 2 and all(_is_number(v) and v > 0 for v in scale)
            and scale[0] <= scale[1]):
        refuse("scale_range", "two numbers 0 < low <= high, e.g. [0.6, 1.4], or false for no rescaling")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _dataset(item: dict[str, Any], data_root: Path, path: Path) -> DatasetSpec:
    if not isinstance(item, dict):
        raise ValueError(f"{path}: a dataset must be a table with 'kind' and 'root', got {item!r}")
    known = {f.name for f in fields(DatasetSpec)}
    unknown = sorted(set(item) - known)
    if unknown or "kind" not in item or "root" not in item:
        raise ValueError(f"dataset entry {item} in {path} needs 'kind' and 'root' (known keys: {', '.join(sorted(known))})")
    if not isinstance(item.get("options", {}), dict):
        raise ValueError(f"dataset entry {item} in {path}: 'options' must be a table, e.g. options = {{ length = 500 }}")
    for key in ("kind", "root", "split"):
        if key in item and not isinstance(item[key], str):
            raise ValueError(f"dataset entry {item} in {path}: {key} must be a string")
    weight = item.get("weight", 1.0)
    if not _is_number(weight) or weight <= 0:
        raise ValueError(f"dataset entry {item} in {path}: weight must be a number > 0 (its share of the samples); "
                         "to leave a dataset out, delete its entry")
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
