"""Converting official `.pth` releases into semsam safetensors checkpoints."""

from __future__ import annotations

from pathlib import Path

from semsam.build import load_official, own_tensors_absent_from_official
from semsam.checkpoint import save_checkpoint


def convert_official(name: str, source: str | Path, destination: str | Path | None = None) -> tuple[Path, list[str]]:
    """Loads an official release with every key and shape checked and writes it as safetensors (atomically).

    Args:
        name: the registered model the file belongs to, e.g. "sam_vit_b" or "semantic_sam_t".
        source: the official `.pth` file.
        destination: the safetensors file to write; default: `source` with the suffix `.safetensors`.

    Returns:
        The path written (`load_model(checkpoint=PATH)` reads it without a model name), and semsam's own tensors
        that the official file lacks, written with their initial values.
    """
    source = Path(source)
    destination = Path(destination) if destination is not None else source.with_suffix(".safetensors")
    if destination.suffix != ".safetensors":
        raise ValueError(f"the converted file must end in .safetensors, got {destination}")
    model = load_official(name, source)
    save_checkpoint(destination, model, model.config, model.semantic)
    return destination, own_tensors_absent_from_official(model)
