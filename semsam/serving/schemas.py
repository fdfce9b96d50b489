"""Request and response bodies of the HTTP API (pydantic models; FastAPI derives the OpenAPI schema from them)."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from semsam.automatic.text_prompt import MAX_TEXT_LENGTH, parse_text_prompt

Coordinate = Annotated[float, Field(allow_inf_nan=False)]
PixelIndex = Annotated[int, Field(ge=0)]
# Larger than any model's mask input (official Semantic-SAM: 256 x 256), so that no valid one is refused.
MAX_LOGITS_SIDE = 512
LogitsSide = Annotated[int, Field(ge=1, le=MAX_LOGITS_SIDE)]
MAX_LOGITS_BASE64 = 4 * math.ceil(MAX_LOGITS_SIDE**2 * 2 / 3)  # characters of the largest one, float16
FLOAT16_MAX = float(np.finfo(np.float16).max)


class Rle(BaseModel):
    """A mask as COCO run-length encoding (pycocotools' compressed string), column-major like COCO."""

    size: tuple[int, int] = Field(description="[height, width]")
    counts: str


class LowResLogits(BaseModel):
    """One mask's low-resolution logits, to send back as the mask input of the next click on the same image.

    float16, little-endian, row-major, base64-encoded; `shape` is the model's mask-input size.
    """

    model_config = ConfigDict(extra="forbid")

    shape: tuple[LogitsSide, LogitsSide] = Field(description="[h, w]")
    data: str = Field(max_length=MAX_LOGITS_BASE64, description="base64 of h*w float16 values")
    _raw: bytes = PrivateAttr(default=b"")

    @model_validator(mode="after")
    def _data_fits_shape(self) -> LowResLogits:
        try:
            self._raw = base64.b64decode(self.data, validate=True)
        except binascii.Error:
            raise ValueError("data is not valid base64; send back the logits of an earlier response") from None
        expected = self.shape[0] * self.shape[1] * 2
        if len(self._raw) != expected:
            raise ValueError(f"data holds {len(self._raw)} bytes but shape {list(self.shape)} needs {expected} "
                             f"(2 bytes per float16 value)")
        return self

    def to_array(self) -> np.ndarray:
        """The logits as float32 [h, w]."""
        return np.frombuffer(self._raw, dtype="<f2").reshape(self.shape).astype(np.float32)

    @classmethod
    def from_array(cls, logits: np.ndarray) -> LowResLogits:
        """Encodes [h, w] logits; values beyond float16's range are clipped to it."""
        half = np.clip(logits, -FLOAT16_MAX, FLOAT16_MAX).astype("<f2")
        return cls(shape=half.shape, data=base64.b64encode(half.tobytes()).decode("ascii"))


class ImageInfo(BaseModel):
    image_id: str
    width: int
    height: int
    encoded: bool = Field(description="whether the image's embedding is cached, so a click only runs the decoder")


class SpatialPrompt(BaseModel):
    """Clicks and/or a box in pixel coordinates of the uploaded image (x from the left, y from the top)."""

    model_config = ConfigDict(extra="forbid")

    points: list[tuple[Coordinate, Coordinate]] = Field(default_factory=list, examples=[[[170, 385]]])
    labels: list[int] = Field(default_factory=list, description="1 positive, 0 negative; all 1 when omitted",
                              examples=[[1]])
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = Field(
        default=None, description="x0, y0, x1, y1")
    objects: str | None = Field(default=None, description='object vocabulary, comma-separated, e.g. "person,dog"')
    parts: str | None = Field(default=None, description='part vocabulary, comma-separated, e.g. "head,leg"')

    @model_validator(mode="after")
    def _labels_match_points(self) -> SpatialPrompt:
        if not self.labels:
            self.labels = [1] * len(self.points)
        if len(self.labels) != len(self.points):
            raise ValueError(f"labels must have one entry per point: {len(self.points)} points, "
                             f"{len(self.labels)} labels")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError(f"labels must be 1 (positive) or 0 (negative), got {self.labels}")
        if self.points and self.box is None and 1 not in self.labels:
            raise ValueError("give at least one positive point or a box; negative clicks alone do not say what "
                             "to segment")
        return self


class PredictRequest(SpatialPrompt):
    """K masks for clicks and/or a box, refined by the chosen mask of the previous click when `mask_input` is
    given (as the interactive benchmarks do: it saves clicks)."""

    mask_input: LowResLogits | None = Field(
        default=None, description="`logits[level]` of the previous response on this image, for the chosen level")
    return_logits: bool = Field(default=False, description="also return each mask's low-resolution logits")
    refine_edges: bool = Field(default=False, description="re-cut each mask's uncertain edges with GrabCut (clicks "
                               "as sure seeds; about 0.1 s per mask; the logits stay the model's)")
    zoom_in: bool = Field(default=False, description="from the third click on (with mask_input, no box), answer on "
                          "a crop around the previous mask and the positive clicks, encoded at the model's full "
                          "input size (RITM's zoom-in); the response's `crop` says where")
    crop: tuple[PixelIndex, PixelIndex, PixelIndex, PixelIndex] | None = Field(
        default=None, description="`crop` of the response whose logits mask_input is (x0, y0, x1, y1)")

    @model_validator(mode="after")
    def _says_what_to_segment(self) -> PredictRequest:
        if self.box is None and not self.points:
            raise ValueError("give at least one positive point or a box")
        if self.crop is not None and self.mask_input is None:
            raise ValueError("crop names the frame of mask_input: send both, from the same response, or neither")
        return self


class TextRequest(SpatialPrompt):
    """A phrase to find, alone (the whole image) or with clicks and/or a box that the answer must come from."""

    text: str = Field(max_length=MAX_TEXT_LENGTH, examples=["hair", "person:hair"],
                      description='"dog", "person:hair", "hair of the person", ... (any wording)')

    @model_validator(mode="after")
    def _text_is_readable(self) -> TextRequest:
        parse_text_prompt(self.text)
        return self


class MaskLabelOut(BaseModel):
    object: str
    object_score: float
    part: str
    part_score: float


class PredictResponse(BaseModel):
    """K masks for one prompt, finest -> coarsest (level 1 .. K)."""

    masks: list[Rle]
    scores: list[float] = Field(description="predicted IoU per mask")
    labels: list[MaskLabelOut | None] = Field(
        description="object and part label per mask; null when the model's classification heads were not trained")
    boxes: list[tuple[float, float, float, float]] = Field(description="x0, y0, x1, y1 per mask (exclusive ends)")
    areas: list[int]
    labels_available: bool
    logits: list[LowResLogits] | None = Field(
        default=None, description="with return_logits: each mask's low-resolution logits, to send back as mask_input")
    crop: tuple[int, int, int, int] | None = Field(
        default=None, description="x0, y0, x1, y1 of the crop answered on (zoom_in), whose frame the logits are in: "
        "send it back with them; null for the whole image")


class ServerInfo(BaseModel):
    model: str
    levels: int = Field(description="masks per prompt (K)")
    labels_available: bool
    limits: dict[str, int | float] = Field(description="the server's ServeLimits: counts and bytes as integers, "
                                                 "times in seconds")
    cached_embeddings: int
    encodes: int = Field(description="images encoded since start")


class ErrorResponse(BaseModel):
    detail: str


class EverythingRequest(BaseModel):
    """Segment everything: a grid of clicks, masks kept per granularity level and linked into a whole/part tree."""

    model_config = ConfigDict(extra="forbid")

    levels: list[int] | None = Field(default=None, description="levels to produce, 1 = finest; all when omitted",
                                     examples=[[1, 3, 6]])
    points_per_side: int | None = Field(default=None, ge=1, description="the click grid is points_per_side squared; "
                                        "default 16, or the server's limit if lower")
    objects: str | None = Field(default=None, description='object vocabulary, comma-separated')
    parts: str | None = Field(default=None, description='part vocabulary, comma-separated')


class EverythingMask(BaseModel):
    id: int = Field(description="index in `masks`")
    level: int
    segmentation: Rle
    area: int
    bbox: tuple[float, float, float, float] = Field(description="x, y, width, height (COCO)")
    predicted_iou: float
    stability_score: float
    point_coords: list[tuple[float, float]] = Field(description="the grid click that gave this mask")
    label: MaskLabelOut | None
    name: str | None = Field(description="what the whole/part tree calls the mask: its object, or its part when it "
                             "lies in a mask of the same object; null without a label")
    path: str | None = Field(description='the name with the wholes it is part of, e.g. "person > hair"')
    parent: int | None = Field(description="id of the smallest coarser-level mask containing this one")
    children: list[int]


class EverythingResponse(BaseModel):
    """Masks ordered by level, then largest first, with the whole/part tree as parent/children ids."""

    levels: list[int]
    masks: list[EverythingMask]


class NameMatchOut(BaseModel):
    phrase: str
    vocabulary: str = Field(description='"object" or "part"')
    nearest: list[tuple[str, float]] = Field(description="closest vocabulary names with their cosine similarity")


class TextMatchOut(BaseModel):
    segmentation: Rle
    score: float = Field(description="probability mass the mask's label puts on the phrase's names")
    level: int
    predicted_iou: float
    area: int
    bbox: tuple[float, float, float, float] = Field(description="x, y, width, height (COCO)")
    label: MaskLabelOut


class TextResponse(BaseModel):
    """Matches ranked best first, or none (`found` false) and the reason."""

    text: str
    found: bool
    reason: str | None
    threshold: float
    names: list[NameMatchOut]
    matches: list[TextMatchOut]
