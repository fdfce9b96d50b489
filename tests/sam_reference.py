"""The reference `segment-anything` package, importable without torchvision (which has no CPU build here)."""

from __future__ import annotations

import sys
import types

from PIL import Image


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
