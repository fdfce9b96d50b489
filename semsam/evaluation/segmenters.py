"""Segmenters for the interactive protocol: a semsam model (Semantic-SAM or SAM) and OpenCV's GrabCut."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semsam.clicks import Click
from semsam.grabcut import GrabCutRefiner, import_cv2
from semsam.image import as_rgb_uint8
from semsam.modeling.sam import Sam
from semsam.prediction import Prompt
from semsam.predictor import Predictor
from semsam.zoom import BACKGROUND_LOGIT, Box, ZoomIn, clicks_in_crop, paste


class ModelSegmenter:
    """A model behind a `Predictor`: the image is encoded once, each click runs the prompt decoder only.

    Every click is answered from all clicks so far plus the previous click's low-resolution logits as the mask
    prompt. The granularity is chosen at the first click, by the highest predicted IoU:
    - Semantic-SAM (6 granularity tokens): later clicks keep the token chosen at click 1.
    - SAM (3 multimask tokens and a single-mask token): click 1 takes the best of the 3 multimask outputs; later
      clicks take the single-mask output, the only one SAM was trained to return for several prompts; the
      granularity then carries over through the fed-back mask.

    With a `refiner`, each answer's uncertain band is re-cut by GrabCut (`semsam.grabcut`); the model still gets its
    own logits back. With `zoom_in`, clicks after the first few are answered on a crop around the object
    (`semsam.zoom`), encoded as a new image; the clicks outside the crop are left out, and the previous answer,
    cropped, is the mask prompt whenever the crop changes.

    Args:
        predictor: wraps the model under test.
        name: the name results and plots use.
        refiner: re-cuts the edges of each answer; None returns the model's masks.
        zoom_in: when and where to crop; None answers every click on the whole image.
    """

    def __init__(
        self, predictor: Predictor, *, name: str = "model", refiner: GrabCutRefiner | None = None,
        zoom_in: ZoomIn | None = None,
    ) -> None:
        self.predictor = predictor
        self.name = name
        self.refiner = refiner
        self.zoom_in = zoom_in
        # A second predictor keeps the crop's encoding, so the whole image is encoded once for all its objects.
        self._crop_predictor = None if zoom_in is None else Predictor(predictor.model, labels=False)
        self._image: np.ndarray | None = None
        self.single_mask_after_first = isinstance(predictor.model, Sam)
        self._points: list[tuple[int, int]] = []
        self._labels: list[int] = []
        self._logits: np.ndarray | None = None
        self._answer: np.ndarray | None = None
        self._crop: Box | None = None
        self._token: int | None = None

    @property
    def crop(self) -> Box | None:
        """The crop (x0, y0, x1, y1) the current object's last click was answered on; None for the whole image."""
        return self._crop

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)
        keep = self.refiner is not None or self.zoom_in is not None
        self._image = as_rgb_uint8(image) if keep else None

    def start_object(self, box: Sequence[int]) -> None:
        self._points, self._labels, self._logits, self._answer, self._crop, self._token = [], [], None, None, None, None

    def add_click(self, click: Click) -> np.ndarray:
        self._points.append((click.col, click.row))
        self._labels.append(int(click.positive))
        if self.zoom_in is not None and len(self._points) > self.zoom_in.skip_clicks:
            self._answer = self._zoomed_answer()
        else:
            self._answer = self._answer_on(self.predictor, self._points, self._labels, self._logits)
        if self.refiner is None:
            return self._answer > 0
        return self.refiner.refine(self._image, self._answer, self._points, self._labels)

    def _zoomed_answer(self) -> np.ndarray:
        """The answer [H, W] from the crop around the previous answer and the positive clicks."""
        crop = self.zoom_in.next_crop(self._answer > 0, self._points, self._labels, self._crop)
        x0, y0, x1, y1 = crop
        if crop != self._crop:
            self._crop = crop
            self._crop_predictor.set_image(self._image[y0:y1, x0:x1])
            self._logits = self._crop_predictor.mask_input_from_logits(self._answer[y0:y1, x0:x1])
        points, labels = clicks_in_crop(self._points, self._labels, crop)
        crop_answer = self._answer_on(self._crop_predictor, points, labels, self._logits)
        return paste(crop_answer, crop, self._answer.shape, BACKGROUND_LOGIT)

    def _answer_on(
        self, predictor: Predictor, points: list[tuple[int, int]], labels: list[int], mask_input: np.ndarray | None
    ) -> np.ndarray:
        """Logits [h, w] at the size of `predictor`'s image; keeps their low-resolution form for the next click."""
        single = self.single_mask_after_first and self._token is not None
        prompt = Prompt(points=list(points), labels=list(labels), mask_input=mask_input)
        output = predictor.predict_low_res([prompt], multimask=not single)
        if self._token is None:
            self._token = int(output.scores[0].argmax())
        logits = output.logits[0, 0 if single else self._token]
        self._logits = logits.cpu().numpy()
        return predictor.upsample_logits(logits).cpu().numpy()


class GrabCutSegmenter:
    """OpenCV's GrabCut (Rother et al. 2004) as the classical floor: the object's box and the clicks as seeds.

    At the first click the box's inside is probable foreground and its outside background; each click paints a
    disk of sure foreground (positive) or sure background (negative) into the previous result's labels, and GrabCut
    re-estimates its colour models from them and re-segments, as OpenCV's interactive sample does.

    Args:
        iterations: GrabCut iterations per click.
        seed_radius: radius in pixels of each click's disk.
    """

    name = "grabcut"

    def __init__(self, *, iterations: int = 3, seed_radius: int = 5) -> None:
        if iterations < 1 or seed_radius < 1:
            raise ValueError(f"iterations and seed_radius must be at least 1, got {iterations} and {seed_radius}")
        self.cv2 = import_cv2()
        self.iterations = iterations
        self.seed_radius = seed_radius
        self._image: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._models: tuple[np.ndarray, np.ndarray] | None = None

    def set_image(self, image: np.ndarray) -> None:
        self._image = np.ascontiguousarray(as_rgb_uint8(image)[..., ::-1])

    def start_object(self, box: Sequence[int]) -> None:
        cv2 = self.cv2
        x0, y0, x1, y1 = box
        labels = np.full(self._image.shape[:2], cv2.GC_BGD, np.uint8)
        labels[y0:y1, x0:x1] = cv2.GC_PR_FGD
        if (labels == cv2.GC_PR_FGD).all():
            # A box over the whole image leaves no background to learn colours from: the frame becomes probable.
            labels[[0, -1], :] = labels[:, [0, -1]] = cv2.GC_PR_BGD
        self._labels = labels
        self._models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))

    def add_click(self, click: Click) -> np.ndarray:
        cv2 = self.cv2
        seed = cv2.GC_FGD if click.positive else cv2.GC_BGD
        cv2.circle(self._labels, (click.col, click.row), self.seed_radius, int(seed), thickness=-1)
        background, foreground = self._models
        cv2.grabCut(self._image, self._labels, None, background, foreground, self.iterations,
                    cv2.GC_INIT_WITH_MASK)
        return (self._labels == cv2.GC_FGD) | (self._labels == cv2.GC_PR_FGD)
