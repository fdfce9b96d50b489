"""Interactive prediction: encode an image once, then answer clicks, boxes and mask prompts quickly."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from semsam.data.records import mask_boxes
from semsam.image import as_rgb_uint8, resize_long_side
from semsam.modeling import DecoderOutput, SemanticSam
from semsam.modeling.sam import Sam, SamOutput
from semsam.prediction import LowResPrediction, MaskLabel, Prediction, Prompt
from semsam.resampling import upsampling_map
from semsam.text import DEFAULT_OBJECTS, DEFAULT_PARTS, TextEncoder, parse_vocabulary

MAX_PROMPTS_PER_PASS = 64
# Full-resolution float logits held at once when upsampling (64 MiB): one mask of a 4096 x 4096 image, 64 of a
# 512 x 512 one. Masks are upsampled in chunks of this many pixels, so memory does not grow with their count.
UPSAMPLING_CHUNK_PIXELS = 2**24


class Predictor:
    """Wraps a model for repeated prompting on one image at a time.

    Args:
        model: a `SemanticSam` or a `Sam`, e.g. from `semsam.load_model()`.
        objects: object vocabulary to label masks with; default: what the heads were trained on, else a
            generic list. Ignored (labels are None) when the heads were never trained.
        parts: part vocabulary, likewise.
        text_encoder: embeds the vocabularies; default: a `TextEncoder` with a disk cache. Share one between
            predictors to share its memory cache.
        labels: name the masks when the heads were trained; False skips the heads and the recognizer, for callers
            that need masks only.
    """

    def __init__(
        self,
        model: SemanticSam | Sam,
        *,
        objects: str | Sequence[str] | None = None,
        parts: str | Sequence[str] | None = None,
        text_encoder: TextEncoder | None = None,
        labels: bool = True,
    ) -> None:
        self.model = model.eval()
        self._labelling = labels
        self._text_encoder = text_encoder or TextEncoder()
        self._vocabulary: tuple[list[str], list[str]] | None = None
        self._text_embeddings: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._features = None
        self._recognition: torch.Tensor | None = None
        self._recognizer_image: np.ndarray | None = None
        self._original_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None
        self.set_vocabulary(objects=objects, parts=parts)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(height, width) of the image last given to `set_image`; None before the first."""
        return self._original_size

    @property
    def labels_available(self) -> bool:
        """Whether masks get labels: only when the model's classification heads were trained, and asked for."""
        return self._labelling and self.model.semantic.trained

    @property
    def recognizer_active(self) -> bool:
        """Whether object labels combine the head with the recognizer: the model has a fitted one, and every object
        name of the vocabulary is one it was fitted on."""
        # The recognizer has learnt only the names it was fitted on; on others it misleads (measured: COCO-MVal
        # object accuracy fell from 0.36 to 0.29 with a recognizer fitted without COCO's names), so it is left out.
        return self._has_recognizer and set(self._vocabulary[0]) <= set(self.model.semantic.recognizer_names)

    @property
    def _has_recognizer(self) -> bool:
        return isinstance(self.model, SemanticSam) and self.model.recognizes and self.labels_available

    @property
    def vocabulary(self) -> tuple[list[str], list[str]]:
        """The object and part names that masks are labelled with."""
        objects, parts = self._vocabulary
        return list(objects), list(parts)

    def set_vocabulary(self, *, objects: str | Sequence[str] | None, parts: str | Sequence[str] | None) -> None:
        """Sets the object and part names that masks are labelled with (embedded when first used, cached on disk)."""
        semantic = self.model.semantic
        object_names = parse_vocabulary(objects if objects is not None else (semantic.objects or DEFAULT_OBJECTS))
        part_names = parse_vocabulary(parts if parts is not None else (semantic.parts or DEFAULT_PARTS))
        self._vocabulary = (object_names, part_names)
        self._text_embeddings = None

    @torch.inference_mode()
    def set_image(self, image: np.ndarray | Image.Image) -> None:
        """Encodes an image (HxWx3 uint8 RGB; grey, RGBA, 16-bit and [0, 1] float are converted)."""
        rgb = as_rgb_uint8(image)
        resized = self.model.resize_image(rgb)
        tensor = torch.tensor(resized).permute(2, 0, 1)[None].to(self.model.device)
        self._features = self.model.encode_image(self.model.preprocess(tensor))
        # The recognizer's pass (about half of this call) runs only for a vocabulary it serves; after a change to
        # one, at the first labelled prediction. Its small input is kept for that.
        self._recognizer_image = (resize_long_side(rgb, self.model.recognizer.config.input_size)
                                  if self._has_recognizer else None)
        self._recognition = None
        self._original_size, self._input_size = rgb.shape[:2], resized.shape[:2]
        if self.recognizer_active:
            self._recognition = self.model.recognizer.encode(self._recognizer_image)

    def predict(
        self,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Prediction:
        """K masks for one prompt: clicks, a box, a mask input, or any combination.

        Without `multimask`, one mask: SAM's single-mask output, or Semantic-SAM's highest predicted-IoU mask.
        """
        prompt = Prompt(points=points, labels=labels, box=box, mask_input=mask_input)
        return self.predict_batch([prompt], multimask=multimask)[0]

    @torch.inference_mode()
    def predict_batch(self, prompts: Sequence[Prompt], *, multimask: bool = True) -> list[Prediction]:
        """Answers many independent prompts on the current image; each result is as if asked alone."""
        if self._features is None:
            raise RuntimeError("call set_image(image) before predicting")
        if len(prompts) == 0:
            raise ValueError("predict_batch needs at least one prompt")
        results: list[Prediction] = []
        for start in range(0, len(prompts), MAX_PROMPTS_PER_PASS):
            chunk = prompts[start : start + MAX_PROMPTS_PER_PASS]
            results.extend(self._predict_chunk([self._validate(p) for p in chunk], multimask))
        return results

    @torch.inference_mode()
    def predict_low_res(self, prompts: Sequence[Prompt], *, multimask: bool = True) -> LowResPrediction:
        """Like `predict_batch`, but stops before upsampling, so that callers can reject masks cheaply first.

        Args:
            prompts: independent prompts on the current image; each result is as if asked alone.
            multimask: K masks per prompt, else one (as in `predict`).

        Returns:
            Low-resolution logits, predicted IoUs and labels of all K masks per prompt.
        """
        if self._features is None:
            raise RuntimeError("call set_image(image) before predicting")
        if len(prompts) == 0:
            raise ValueError("predict_low_res needs at least one prompt")
        logits, scores, proposal_scores, labels, object_probs, part_probs = [], [], [], [], [], []
        for start in range(0, len(prompts), MAX_PROMPTS_PER_PASS):
            chunk = [self._validate(p) for p in prompts[start : start + MAX_PROMPTS_PER_PASS]]
            output = self._decode(chunk, multimask=multimask)
            logits.append(output.mask_logits[0].float())
            scores.append(output.ranking_scores[0].float())
            proposal_scores.append(output.iou_scores[0].float())
            objects, parts = self._probabilities(output)
            if objects is not None:
                order = list(range(objects.shape[1]))
                labels.extend(self._mask_labels((objects[i], parts[i]), order) for i in range(len(chunk)))
                object_probs.append(objects.float())
                part_probs.append(parts.float())
        trained = self.labels_available
        return LowResPrediction(logits=torch.cat(logits), scores=torch.cat(scores),
                                proposal_scores=torch.cat(proposal_scores),
                                labels=labels if trained else None,
                                label_probabilities=(torch.cat(object_probs), torch.cat(part_probs)) if trained else None,
                                valid_size=self._valid_low_res_size())

    @torch.inference_mode()
    def upsample_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Maps low-resolution logits [..., h, w] of the current image to its original pixels [..., H, W].

        Exactly SAM's two bilinear steps (x4 to the padded input, crop, resize to the original), composed into one
        linear map per axis and applied as matrix products, so the 4x-upsampled intermediate is never made.
        """
        if self._original_size is None:
            raise RuntimeError("call set_image(image) before upsampling")
        (input_h, input_w), (height, width) = self._input_size, self._original_size
        low_h, low_w = logits.shape[-2:]
        flat = logits.reshape(-1, low_h, low_w).float()
        rows = [(start, weights.to(flat.device)) for start, weights in upsampling_map(low_h, input_h, height)]
        flat = torch.cat([weights @ flat[:, start : start + weights.shape[1]] for start, weights in rows], dim=1)
        # Tiles are written into the output as they are made, so that the full-size result exists only once.
        out = flat.new_empty(flat.shape[0], height, width)
        column = 0
        for start, weights in upsampling_map(low_w, input_w, width):
            weights = weights.to(flat.device)
            out[..., column : column + weights.shape[0]] = flat[..., start : start + weights.shape[1]] @ weights.t()
            column += weights.shape[0]
        return out.reshape(*logits.shape[:-2], height, width)

    def check_mask_input(self, mask_input: object) -> np.ndarray:
        """A mask prompt for the current image as float32 [h, w] logits, as `predict` checks it.

        Raises:
            ValueError: not the shape of this image's logits (`Prediction.logits[i]`), or not finite numbers.
        """
        if self._features is None:
            raise RuntimeError("call set_image(image) before checking a mask input")
        mask = _numbers(mask_input, "mask_input", "logits of an earlier prediction")
        mask = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
        expected = tuple(self.model.mask_input_size(self._features))
        if mask.shape != expected:
            raise ValueError(f"mask_input must be one mask of this image's logits, shape {expected}; got {mask.shape}")
        if not np.isfinite(mask).all():
            raise ValueError("mask_input contains NaN or infinite values; pass the logits of an earlier "
                             "prediction (Prediction.logits[i])")
        return mask

    @torch.inference_mode()
    def mask_input_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Logits [H, W] at the current image's size as a mask prompt (`Prompt.mask_input`): roughly the inverse of
        `upsample_logits`, e.g. for logits pasted together from predictions on crops of the image.

        Returns:
            [h, w] float32 low-resolution logits; the padding beyond the image is background (-20).
        """
        if self._original_size is None:
            raise RuntimeError("call set_image(image) before converting logits")
        if logits.shape != self._original_size:
            raise ValueError(f"logits must have the image's size {self._original_size}, got {logits.shape}")
        valid_h, valid_w = self._valid_low_res_size()
        low = F.interpolate(torch.as_tensor(logits, dtype=torch.float32)[None, None], size=(valid_h, valid_w),
                            mode="bilinear", align_corners=False, antialias=True)[0, 0]
        mask_input = torch.full(tuple(self.model.mask_input_size(self._features)), -20.0)
        mask_input[:valid_h, :valid_w] = low
        return mask_input.numpy()

    def upsampled_chunks(self, logits: torch.Tensor) -> Iterator[torch.Tensor]:
        """`upsample_logits` of [N, h, w] logits a few masks at a time, in order, each chunk [n, H, W].

        At most UPSAMPLING_CHUNK_PIXELS float pixels (at least one mask) are made per chunk: consume each chunk
        before asking for the next, and memory stays bounded whatever N and the image size.
        """
        height, width = self._original_size or (1, 1)
        size = max(1, UPSAMPLING_CHUNK_PIXELS // (height * width))
        for start in range(0, len(logits), size):
            yield self.upsample_logits(logits[start : start + size])

    def _validate(self, prompt: Prompt) -> Prompt:
        height, width = self._original_size
        points = (np.zeros((0, 2), np.float32) if prompt.points is None
                  else _numbers(prompt.points, "points", "(x, y) pairs of numbers"))
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must have shape [P, 2] as (x, y) pairs, got shape {points.shape}")
        labels = (np.ones(len(points), np.int64) if prompt.labels is None
                  else _numbers(prompt.labels, "labels", "1 (positive) or 0 (negative) per point"))
        if labels.shape != (len(points),):
            raise ValueError(f"labels must have one entry per point ({len(points)}), got shape {labels.shape}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labels must be 1 (positive) or 0 (negative), got {labels.tolist()}")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or infinite coordinates")
        outside = (points[:, 0] < 0) | (points[:, 0] >= width) | (points[:, 1] < 0) | (points[:, 1] >= height)
        if outside.any():
            raise ValueError(f"point(s) {points[outside].tolist()} lie outside the {width}x{height} image (x, y)")
        box = None if prompt.box is None else _numbers(prompt.box, "box", "4 numbers (x0, y0, x1, y1)")
        if box is not None:
            if box.shape != (4,) or not np.isfinite(box).all():
                raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {prompt.box!r}")
            x0, y0, x1, y1 = box.tolist()
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(
                    f"box {box.tolist()} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}"
                )
        mask = None if prompt.mask_input is None else self.check_mask_input(prompt.mask_input)
        if box is None and mask is None and not (labels == 1).any():
            raise ValueError("empty prompt: give at least one positive point, a box or a mask input")
        return Prompt(points=points, labels=labels, box=box, mask_input=mask)

    def _predict_chunk(self, prompts: list[Prompt], multimask: bool) -> list[Prediction]:
        output = self._decode(prompts, multimask)
        objects, parts = self._probabilities(output)
        return [
            self._postprocess(output.mask_logits[0, i], output.ranking_scores[0, i],
                              None if objects is None else (objects[i], parts[i]))
            for i in range(len(prompts))
        ]

    def _decode(self, prompts: list[Prompt], multimask: bool) -> DecoderOutput | SamOutput:
        batch = self.model.prompt_batch(prompts, original_size=self._original_size, input_size=self._input_size,
                                        features=self._features)
        return self.model.decode(self._features, batch, multimask=multimask)

    def _probabilities(self, output: DecoderOutput | SamOutput) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Object and part probabilities [N, K, names] of each mask; (None, None) when the heads are untrained."""
        if not self.labels_available:
            return None, None
        object_text, object_names, part_names = self._embeddings()
        head = self.model.sem_seg_head.predictor
        objects = head.score_names(output.object_embeddings[0], object_names).float().log_softmax(-1)
        if self.recognizer_active:
            # A product of experts: the head and the frozen ImageNet prior must agree on a name.
            objects = objects + self._recognized(output.mask_logits[0], object_text)
        return objects.softmax(-1), head.score_names(output.part_embeddings[0], part_names).softmax(-1)

    def _recognized(self, mask_logits: torch.Tensor, object_text: torch.Tensor) -> torch.Tensor:
        """The recognizer's object log-probabilities [N, K, names] of low-resolution masks [N, K, h, w]."""
        valid_h, valid_w = self._valid_low_res_size()
        masks = mask_logits[..., :valid_h, :valid_w].flatten(0, 1) > 0
        recognizer = self.model.recognizer
        if self._recognition is None:
            self._recognition = recognizer.encode(self._recognizer_image)
        logits = recognizer.logits(recognizer.pool(self._recognition, masks), object_text.float())
        return logits.log_softmax(-1).view(*mask_logits.shape[:2], -1)

    def _valid_low_res_size(self) -> tuple[int, int]:
        """(h, w) of the low-resolution grid that covers the image; the rest is padding."""
        input_h, input_w = self._input_size
        return math.ceil(input_h / 4), math.ceil(input_w / 4)

    def _mask_labels(self, probabilities: tuple[torch.Tensor, torch.Tensor], order: list[int]) -> list[MaskLabel]:
        """The best object and part name of masks `order` (indices into K)."""
        objects, parts = self._vocabulary
        labels = []
        for k in order:
            object_p, object_i = probabilities[0][k].max(-1)
            part_p, part_i = probabilities[1][k].max(-1)
            labels.append(MaskLabel(object=objects[object_i], object_score=float(object_p),
                                    part=parts[part_i], part_score=float(part_p)))
        return labels

    def _postprocess(
        self, logits: torch.Tensor, scores: torch.Tensor, probabilities: tuple[torch.Tensor, torch.Tensor] | None
    ) -> Prediction:
        masks = torch.cat([chunk > 0 for chunk in self.upsampled_chunks(logits)]).cpu().numpy()
        # Counted in numpy: a torch sum over bool makes an int64 copy of every mask (+770 MiB at 4096 x 4096).
        order = np.argsort(np.count_nonzero(masks.reshape(len(masks), -1), axis=1), kind="stable")
        masks = masks[order]
        index = torch.from_numpy(order).to(logits.device)
        logits, scores = logits[index], scores[index]
        labels = None if probabilities is None else self._mask_labels(probabilities, order.tolist())
        sorted_probabilities = (None if probabilities is None
                                else tuple(p[index].float().cpu().numpy() for p in probabilities))
        return Prediction(masks=masks, scores=scores.float().cpu().numpy(), logits=logits.float().cpu().numpy(),
                          boxes=mask_boxes(masks).astype(np.float32), labels=labels,
                          label_probabilities=sorted_probabilities)

    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The object names' text embeddings, and the object and the part names as the heads compare them."""
        if self._text_embeddings is None:
            objects, parts = self._vocabulary
            device = self.model.device
            head = self.model.sem_seg_head.predictor
            object_text = self._text_encoder.encode(objects).to(device)
            self._text_embeddings = (object_text, head.name_embeddings(object_text),
                                     head.name_embeddings(self._text_encoder.encode(parts).to(device)))
        return self._text_embeddings


def _numbers(value: object, name: str, form: str) -> np.ndarray:
    """`value` as a float32 array, or a ValueError saying what `name` must be."""
    try:
        with np.errstate(over="ignore"):  # values beyond float32 become inf, which the callers refuse
            return np.asarray(value, np.float32)
    except (ValueError, TypeError):
        shown = repr(value)
        raise ValueError(f"{name} must be {form}, got {shown[:80]}{'...' if len(shown) > 80 else ''}") from None
