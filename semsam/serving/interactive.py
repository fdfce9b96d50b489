"""Answers a click or box prompt of the demo: on the whole image, or with zoom-in on a crop around the object."""

from __future__ import annotations

import numpy as np
import torch

from semsam.grabcut import GrabCutRefiner
from semsam.io import mask_to_rle
from semsam.predictor import Predictor
from semsam.serving.schemas import LowResLogits, PredictRequest, PredictResponse
from semsam.serving.store import ImageStore
from semsam.zoom import BACKGROUND_LOGIT, Box, ZoomIn, clicks_in_crop, paste

ZOOM = ZoomIn()


def answer_prompt(store: ImageStore, image_id: str, prompt: PredictRequest) -> PredictResponse:
    """K masks for the prompt, in the whole image's pixels.

    With `zoom_in`, a click after the first `ZOOM.skip_clicks` is answered on a crop around the previous mask (from
    `mask_input`, in the frame of `prompt.crop`) and the positive clicks, as `semsam eval interactive --zoom-in`
    answers it: the crop is kept while the object's new box overlaps it enough, else re-encoded with the previous
    answer, cropped, as the mask prompt. Clicks outside the crop are left out; masks are background outside it.

    Blocking: call it from a worker thread. Raises UnknownImage, and ValueError for a mask input of another frame.
    """
    image = store.image(image_id)
    vocabulary = {"objects": prompt.objects, "parts": prompt.parts}
    mask_input = None if prompt.mask_input is None else prompt.mask_input.to_array()
    zoom = (prompt.zoom_in and prompt.box is None and mask_input is not None
            and len(prompt.points) > ZOOM.skip_clicks)
    if prompt.crop is None and not zoom:
        return store.with_predictor(
            image_id, lambda predictor: _respond(predictor, prompt, image, mask_input, None), **vocabulary)
    size = image.shape[:2]
    previous = store.with_predictor(
        image_id, lambda predictor: _full_logits(predictor, mask_input, prompt.crop, size), crop=prompt.crop)
    crop = (ZOOM.next_crop(previous > 0, [tuple(map(int, p)) for p in prompt.points], prompt.labels, prompt.crop)
            if zoom else None)
    if crop != prompt.crop:
        x0, y0, x1, y1 = crop or (0, 0, size[1], size[0])
        mask_input = store.with_predictor(
            image_id, lambda predictor: predictor.mask_input_from_logits(previous[y0:y1, x0:x1]), crop=crop)
    return store.with_predictor(
        image_id, lambda predictor: _respond(predictor, prompt, image, mask_input, crop), crop=crop, **vocabulary)


def _full_logits(predictor: Predictor, mask_input: np.ndarray, crop: Box | None, size: tuple[int, int]) -> np.ndarray:
    """A mask input of `predictor`'s image (the crop `crop` of the whole) as logits over the whole image."""
    logits = predictor.upsample_logits(torch.from_numpy(predictor.check_mask_input(mask_input))).numpy()
    return logits if crop is None else paste(logits, crop, size, BACKGROUND_LOGIT)


def _respond(
    predictor: Predictor, prompt: PredictRequest, image: np.ndarray, mask_input: np.ndarray | None, crop: Box | None
) -> PredictResponse:
    """Runs the decoder on `predictor`'s image (the whole, or `crop` of it), GrabCut re-cutting the edges when asked,
    and encodes the K masks, in the whole image's pixels, as COCO RLE."""
    x0, y0, x1, y1 = crop or (0, 0, image.shape[1], image.shape[0])
    points, labels = clicks_in_crop(prompt.points, prompt.labels, (x0, y0, x1, y1))
    result = predictor.predict(points=points or None, labels=labels or None, box=prompt.box, mask_input=mask_input)
    if prompt.refine_edges:
        result = GrabCutRefiner().refine_prediction(predictor, image[y0:y1, x0:x1], result, points, labels)
    masks = result.masks if crop is None else paste(result.masks, crop, image.shape[:2], False)
    labels_out = result.labels or [None] * len(masks)
    return PredictResponse(
        masks=[mask_to_rle(mask) for mask in masks],
        scores=[float(s) for s in result.scores],
        labels=[None if label is None else vars(label) for label in labels_out],
        boxes=[tuple(float(v) for v in box + np.array([x0, y0, x0, y0])) for box in result.boxes],
        areas=[int(mask.sum()) for mask in masks],
        labels_available=result.labels is not None,
        logits=[LowResLogits.from_array(logits) for logits in result.logits] if prompt.return_logits else None,
        crop=crop,
    )

