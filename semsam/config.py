"""Model sizes as small dataclasses and a plain registry of named configurations."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Union

# Bounds of any size in a model config: far above every released model (the largest width is SAM ViT-H's 1280),
# low enough that a crafted config cannot ask for an absurd allocation before its tensors are compared.
MAX_CONFIG_INT = 8192


@dataclass(frozen=True)
class SwinConfig:
    """Swin Transformer backbone (Mask2Former layout: outputs res2..res5 at strides 4, 8, 16, 32)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    patch_size: int = 4


@dataclass(frozen=True)
class MobileNetV2Config:
    """MobileNetV2 backbone with folded batch norm (outputs res2..res5 at strides 4, 8, 16, 32)."""

    width_multiplier: float = 1.0


BackboneConfig = Union[SwinConfig, MobileNetV2Config]
# A checkpoint's backbone section is told apart by its fields; Swin first, as in every older checkpoint.
BACKBONE_CONFIGS: tuple[type, ...] = (SwinConfig, MobileNetV2Config)


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Multi-scale deformable-attention encoder plus the stride-4 FPN step that makes mask features."""

    conv_dim: int = 256
    mask_dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    num_points: int = 4
    ffn_dim: int = 2048
    num_groups: int = 32


@dataclass(frozen=True)
class DecoderConfig:
    """Prompt-query decoder: every prompt becomes `num_granularities` queries sharing one anchor box."""

    hidden_dim: int = 256
    num_layers: int = 9
    num_heads: int = 8
    num_points: int = 4
    ffn_dim: int = 2048
    num_granularities: int = 6
    class_dim: int = 512
    text_dim: int = 512
    click_size: float = 0.005
    click_refiner: bool = False  # semsam's own: a conv net that corrects the logits from maps of the clicks
    # semsam's own: a second IoU head, fitted on clicks (`semsam calibrate-iou`), that ranks one prompt's masks
    # while the trained head keeps gating segment-everything proposals.
    rank_head: bool = False


@dataclass(frozen=True)
class RecognizerConfig:
    """A frozen ImageNet MobileNetV2 whose mask-pooled features name objects, beside the object head."""

    input_size: int = 512  # long side of the image it sees
    width_multiplier: float = 1.0
    text_dim: int = 384


RESIZE_RULES = ("short_side", "long_side")
OFFICIAL_SHORT_SIDE = 640


@dataclass(frozen=True)
class SemanticSamConfig:
    """A whole `SemanticSam` model: backbone, pixel decoder, prompt decoder and pre-processing."""

    backbone: BackboneConfig = field(default_factory=SwinConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    image_size: int = 1024
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    # How images are resized before inference, as the weights were trained: "long_side" (semsam's training: long
    # side to image_size, bilinear) or "short_side" (the official demo: short side to OFFICIAL_SHORT_SIDE, bicubic).
    resize: str = "long_side"
    recognizer: RecognizerConfig | None = None

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_RULES:
            raise ValueError(f"resize must be one of {RESIZE_RULES}, got {self.resize!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SemanticSamConfig":
        """Rebuilds a config from `to_dict` output, naming any unknown field."""
        sections = {"pixel_decoder": PixelDecoderConfig, "decoder": DecoderConfig, "recognizer": RecognizerConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "backbone":
                kwargs[key] = _build_section(_backbone_config(value), value, key)
            elif key in sections and value is not None:
                kwargs[key] = _build_section(sections[key], value, key)
            elif key in cls.__dataclass_fields__:
                kwargs[key] = tuple(value) if isinstance(value, list) else value
            else:
                raise ValueError(f"unknown model config field {key!r}")
        return cls(**kwargs)


@dataclass(frozen=True)
class SamConfig:
    """A Segment Anything model: ViT image encoder, prompt encoder and two-way mask decoder."""

    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    image_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SamConfig":
        """Rebuilds a config from `to_dict` output, naming any unknown field."""
        return _build_section(cls, data, "sam")


ModelConfig = Union[SemanticSamConfig, SamConfig]
ARCHITECTURES: dict[str, type] = {"semantic_sam": SemanticSamConfig, "sam": SamConfig}


def architecture_of(config: ModelConfig) -> str:
    """The architecture name a config belongs to ("semantic_sam" or "sam")."""
    return next(name for name, config_cls in ARCHITECTURES.items() if isinstance(config, config_cls))


def _backbone_config(values: dict[str, Any]) -> type:
    """The backbone config class whose fields hold every key of a saved backbone section."""
    for config_cls in BACKBONE_CONFIGS:
        if set(values) <= set(config_cls.__dataclass_fields__):
            return config_cls
    raise ValueError(f"model config section 'backbone' has fields {sorted(values)} of no known backbone "
                     f"({', '.join(c.__name__ for c in BACKBONE_CONFIGS)})")


def check_config(config: ModelConfig) -> None:
    """Checks every value of a model config (e.g. one read from a checkpoint) before a model is built from it.

    Sizes, counts and layer indices must be whole numbers in [1, MAX_CONFIG_INT] ([0, ...] for indices), other
    numbers finite, and `pixel_std` and ratios positive; switches (`click_refiner`) true or false; named choices
    (`resize`) are checked by their dataclass.

    Raises:
        ValueError: naming the field, its value and what it must be.
    """
    for name, value in _leaves(config):
        field_name = name.rsplit(".", 1)[-1]
        if field_name in CHOICE_FIELDS:
            continue
        if field_name in SWITCH_FIELDS:
            if not isinstance(value, bool):
                raise ValueError(f"model config {name} = {value!r} must be true or false")
            continue
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ValueError(f"model config {name} = {value!r} must be numbers")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"model config {name} = {value!r} must be finite")
        if all(isinstance(v, int) for v in values) and field_name not in FLOAT_FIELDS:
            low = 0 if field_name == "global_attn_indexes" else 1
            if not all(low <= v <= MAX_CONFIG_INT for v in values):
                what = "whole numbers" if isinstance(value, tuple) else "a whole number"
                raise ValueError(f"model config {name} = {value!r} must be {what} in [{low}, {MAX_CONFIG_INT}]")
        elif field_name not in ("pixel_mean",) and not all(v > 0 for v in values):
            raise ValueError(f"model config {name} = {value!r} must be positive")


# Fields that name a choice, validated when their dataclass is built.
CHOICE_FIELDS = ("resize",)
# Fields that switch a part of the model on or off.
SWITCH_FIELDS = ("click_refiner", "rank_head")
# Fields whose values are real numbers, even when written as whole ones.
FLOAT_FIELDS = ("mlp_ratio", "click_size", "pixel_mean", "pixel_std", "width_multiplier")


def _leaves(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    leaves = []
    for item in fields(config):
        value = getattr(config, item.name)
        if value is None:  # an optional section left out
            continue
        name = f"{prefix}{item.name}"
        leaves.extend(_leaves(value, f"{name}.") if is_dataclass(value) else [(name, value)])
    return leaves


def _build_section(section_cls: type, values: dict[str, Any], name: str) -> Any:
    unknown = set(values) - set(section_cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} in model config section {name!r}")
    return section_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass
class SemanticInfo:
    """What was fitted to a model beyond its weights: whether its object/part heads were trained and on which
    vocabularies, and the recognizer's names."""

    trained: bool = False
    objects: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    # The object names `semsam fit-recognizer` fitted the recognizer on; empty when it was never fitted.
    recognizer_names: list[str] = field(default_factory=list)


TEXT_DIM_MINILM = 384
# The decoders of the small CPU models, whatever their backbone.
SMALL_PIXEL_DECODER = PixelDecoderConfig(
    conv_dim=128, mask_dim=128, num_layers=2, num_heads=4, num_points=4, ffn_dim=512, num_groups=32
)
SMALL_DECODER = DecoderConfig(
    hidden_dim=128, num_layers=4, num_heads=4, num_points=4, ffn_dim=512, class_dim=TEXT_DIM_MINILM,
    text_dim=TEXT_DIM_MINILM, click_refiner=True, rank_head=True,
)

MODEL_CONFIGS: dict[str, ModelConfig] = {
    "semsam_mobilenet": SemanticSamConfig(
        backbone=MobileNetV2Config(),
        pixel_decoder=SMALL_PIXEL_DECODER,
        decoder=SMALL_DECODER,
        image_size=320,
        # MobileNetV2's ImageNet and DeepLab weights expect pixels scaled to [-1, 1].
        pixel_mean=(127.5, 127.5, 127.5),
        pixel_std=(127.5, 127.5, 127.5),
        recognizer=RecognizerConfig(),
    ),
    "semantic_sam_t": SemanticSamConfig(
        backbone=SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
        resize="short_side",
    ),
    "semantic_sam_l": SemanticSamConfig(
        backbone=SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
        resize="short_side",
    ),
    "sam_vit_b": SamConfig(),
    "sam_vit_l": SamConfig(
        encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16, global_attn_indexes=(5, 11, 17, 23)
    ),
    "sam_vit_h": SamConfig(
        encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ),
}

DEFAULT_MODEL = "semsam_mobilenet"
