"""The reference `segment-anything` package, importable without torchvision (which has no CPU build here)."""

from __future__ import annotations

import sys
import types
from functools import partial

import torch
from PIL import Image

from semsam.config import SamConfig

# A reduced ViT: fast enough for tests, with windowed and global blocks like the real ones.
SMALL = SamConfig(encoder_embed_dim=192, encoder_depth=4, encoder_num_heads=6, global_attn_indexes=(1, 3),
                  image_size=256)


def standin_modules() -> dict[str, types.ModuleType]:
    """torchvision modules with the few functions segment_anything imports; NMS is never called by these tests."""
    modules = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
        "torchvision.transforms.functional")}

    def batched_nms(*args, **kwargs):
        raise NotImplementedError("the torchvision stand-in has no NMS; these tests do not use the mask generator")

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
        # torchvision's resize of a PIL image with (h, w) is PIL's bilinear resize to (w, h).
        return image.resize((size[1], size[0]), Image.BILINEAR)

    modules["torchvision.ops.boxes"].batched_nms = batched_nms
    modules["torchvision.ops.boxes"].box_area = box_area
    modules["torchvision.transforms.functional"].resize = resize
    modules["torchvision.transforms.functional"].to_pil_image = Image.fromarray
    return modules


def import_segment_anything(monkeypatch) -> types.ModuleType:
    """Imports segment_anything with the stand-in torchvision in sys.modules for this test only."""
    for name, module in standin_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in [n for n in sys.modules if n == "segment_anything" or n.startswith("segment_anything.")]:
        monkeypatch.delitem(sys.modules, name)
    import segment_anything

    return segment_anything



def reference_model(config: SamConfig) -> torch.nn.Module:
    """A ViT built from the reference's own classes (imported beforehand), with every tensor randomised."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = config.image_size // config.patch_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth, embed_dim=config.encoder_embed_dim, img_size=config.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=config.encoder_num_heads,
            patch_size=config.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=config.global_attn_indexes, window_size=config.window_size, out_chans=256,
        ),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(config.image_size, config.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.05)
    return model.eval()
