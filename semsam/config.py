"""Model sizes as small dataclasses and a plain registry of named configurations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union


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

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_RULES:
            raise ValueError(f"resize must be one of {RESIZE_RULES}, got {self.resize!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SemanticSamConfig":
        """Rebuilds a config from `to_dict` output, naming any unknown field."""
        sections = {"pixel_decoder": PixelDecoderConfig, "decoder": DecoderConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "backbone":
                kwargs[key] = _build_section(_backbone_config(value), value, key)
            elif key in sections:
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


def _build_section(section_cls: type, values: dict[str, Any], name: str) -> Any:
    unknown = set(values) - set(section_cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} in model config section {name!r}")
    return section_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass
class SemanticInfo:
    """Whether a model's object/part heads were trained, and on which vocabularies."""

    trained: bool = False
    objects: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


TEXT_DIM_MINILM = 384

MODEL_CONFIGS: dict[str, ModelConfig] = {
    "semsam_tiny": SemanticSamConfig(
        backbone=SwinConfig(embed_dim=48, depths=(2, 2, 4, 1), num_heads=(2, 4, 8, 16), window_size=7),
        pixel_decoder=PixelDecoderConfig(
            conv_dim=128, mask_dim=128, num_layers=2, num_heads=4, num_points=4, ffn_dim=512, num_groups=32
        ),
        decoder=DecoderConfig(
            hidden_dim=128,
            num_layers=4,
            num_heads=4,
            num_points=4,
            ffn_dim=512,
            class_dim=TEXT_DIM_MINILM,
            text_dim=TEXT_DIM_MINILM,
        ),
        image_size=384,
    ),
    "semsam_mobilenet": SemanticSamConfig(
        backbone=MobileNetV2Config(),
        pixel_decoder=PixelDecoderConfig(
            conv_dim=128, mask_dim=128, num_layers=2, num_heads=4, num_points=4, ffn_dim=512, num_groups=32
        ),
        decoder=DecoderConfig(
            hidden_dim=128,
            num_layers=4,
            num_heads=4,
            num_points=4,
            ffn_dim=512,
            class_dim=TEXT_DIM_MINILM,
            text_dim=TEXT_DIM_MINILM,
        ),
        image_size=384,
        # MobileNetV2's ImageNet and DeepLab weights expect pixels scaled to [-1, 1].
        pixel_mean=(127.5, 127.5, 127.5),
        pixel_std=(127.5, 127.5, 127.5),
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

DEFAULT_MODEL = "semsam_tiny"
