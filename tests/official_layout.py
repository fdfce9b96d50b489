"""The key/shape layout of the released Semantic-SAM files, written out from the reference notes
(../shared/reference/semantic-sam-official.md), independently of semsam's modules."""

from __future__ import annotations

from semsam.config import DecoderConfig, PixelDecoderConfig, SemanticSamConfig, SwinConfig


def semantic_sam_layout(*, embed: int, depths: tuple[int, ...], heads: tuple[int, ...], window: int,
                        dim: int = 256, ffn: int = 2048, encoder_layers: int = 6, decoder_layers: int = 9,
                        attn_heads: int = 8, points: int = 4, class_dim: int = 512,
                        granularities: int = 6) -> dict[str, tuple[int, ...]]:
    """Every key (after stripping `model.`) with its shape, aliases included."""
    layout: dict[str, tuple[int, ...]] = {}

    def linear(prefix: str, fan_in: int, fan_out: int, bias: bool = True) -> None:
        layout[f"{prefix}.weight"] = (fan_out, fan_in)
        if bias:
            layout[f"{prefix}.bias"] = (fan_out,)

    def norm(prefix: str, channels: int) -> None:
        layout[f"{prefix}.weight"] = layout[f"{prefix}.bias"] = (channels,)

    def mlp(prefix: str, dims: list[int]) -> None:
        for i, (fan_in, fan_out) in enumerate(zip(dims, dims[1:])):
            linear(f"{prefix}.layers.{i}", fan_in, fan_out)

    def deform(prefix: str) -> None:
        levels = 4
        linear(f"{prefix}.sampling_offsets", dim, attn_heads * levels * points * 2)
        linear(f"{prefix}.attention_weights", dim, attn_heads * levels * points)
        linear(f"{prefix}.value_proj", dim, dim)
        linear(f"{prefix}.output_proj", dim, dim)

    # Swin backbone
    layout["backbone.patch_embed.proj.weight"] = (embed, 3, 4, 4)
    layout["backbone.patch_embed.proj.bias"] = (embed,)
    norm("backbone.patch_embed.norm", embed)
    channels = [embed * 2**i for i in range(len(depths))]
    for i, (c, depth, h) in enumerate(zip(channels, depths, heads)):
        for j in range(depth):
            block = f"backbone.layers.{i}.blocks.{j}"
            norm(f"{block}.norm1", c)
            layout[f"{block}.attn.relative_position_bias_table"] = ((2 * window - 1) ** 2, h)
            layout[f"{block}.attn.relative_position_index"] = (window**2, window**2)
            linear(f"{block}.attn.qkv", c, 3 * c)
            linear(f"{block}.attn.proj", c, c)
            norm(f"{block}.norm2", c)
            linear(f"{block}.mlp.fc1", c, 4 * c)
            linear(f"{block}.mlp.fc2", 4 * c, c)
        if i < len(depths) - 1:
            linear(f"backbone.layers.{i}.downsample.reduction", 4 * c, 2 * c, bias=False)
            norm(f"backbone.layers.{i}.downsample.norm", 4 * c)
        norm(f"backbone.norm{i}", c)

    # Pixel decoder: input_proj from high to low resolution (res3, res4, res5), then the extra level on res5
    pixel = "sem_seg_head.pixel_decoder"
    for i, (c, kernel) in enumerate([(channels[1], 1), (channels[2], 1), (channels[3], 1), (channels[3], 3)]):
        layout[f"{pixel}.input_proj.{i}.0.weight"] = (dim, c, kernel, kernel)
        layout[f"{pixel}.input_proj.{i}.0.bias"] = (dim,)
        norm(f"{pixel}.input_proj.{i}.1", dim)
    layout[f"{pixel}.transformer.level_embed"] = (4, dim)
    for k in range(encoder_layers):
        layer = f"{pixel}.transformer.encoder.layers.{k}"
        deform(f"{layer}.self_attn")
        norm(f"{layer}.norm1", dim)
        linear(f"{layer}.linear1", dim, ffn)
        linear(f"{layer}.linear2", ffn, dim)
        norm(f"{layer}.norm2", dim)
    layout[f"{pixel}.mask_features.weight"] = (dim, dim, 1, 1)
    layout[f"{pixel}.mask_features.bias"] = (dim,)
    layout[f"{pixel}.adapter_1.weight"] = (dim, channels[0], 1, 1)
    norm(f"{pixel}.adapter_1.norm", dim)
    layout[f"{pixel}.layer_1.weight"] = (dim, dim, 3, 3)
    norm(f"{pixel}.layer_1.norm", dim)

    # Prompt decoder and heads
    head = "sem_seg_head.predictor"
    layout[f"{head}.lang_mapper"] = (class_dim, dim)
    layout[f"{head}.class_embed"] = (dim, class_dim)
    layout[f"{head}.class_embed_part"] = (dim, class_dim)
    mlp(f"{head}.mask_embed", [dim, dim, dim, dim])
    mlp(f"{head}.iou_prediction_head", [dim, dim, dim, 1])
    layout[f"{head}.mask_tokens.weight"] = (granularities, dim)
    layout[f"{head}.pb_embedding.weight"] = (2, dim)
    layout[f"{head}.label_enc.weight"] = (2, dim)
    for k in range(decoder_layers):
        layer = f"{head}.decoder.layers.{k}"
        deform(f"{layer}.cross_attn")
        norm(f"{layer}.norm1", dim)
        layout[f"{layer}.self_attn.in_proj_weight"] = (3 * dim, dim)
        layout[f"{layer}.self_attn.in_proj_bias"] = (3 * dim,)
        linear(f"{layer}.self_attn.out_proj", dim, dim)
        norm(f"{layer}.norm2", dim)
        linear(f"{layer}.linear1", dim, ffn)
        linear(f"{layer}.linear2", ffn, dim)
        norm(f"{layer}.norm3", dim)
    mlp(f"{head}.decoder.ref_point_head", [2 * dim, dim, dim])
    for name in ("decoder.norm", "decoder_norm"):
        norm(f"{head}.{name}", dim)
    for name in ["_bbox_embed"] + [f"{p}bbox_embed.{k}" for p in ("", "decoder.") for k in range(decoder_layers)]:
        mlp(f"{head}.{name}", [dim, dim, dim, 4])
    return layout


SWIN_T = dict(embed=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7)
SWIN_L = dict(embed=192, depths=(2, 2, 18, 2), heads=(6, 12, 24, 48), window=12)


# The reduced Swin-T of ../shared/golden/semantic_sam (its README): the official config with smaller widths and
# depths. The official decoder always has 8 heads.
REDUCED_SWIN_T = SemanticSamConfig(
    backbone=SwinConfig(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7),
    pixel_decoder=PixelDecoderConfig(conv_dim=64, mask_dim=64, num_layers=2, num_heads=4, ffn_dim=256),
    decoder=DecoderConfig(hidden_dim=64, num_layers=3, num_heads=8, ffn_dim=256, class_dim=128),
    resize="short_side",
)
