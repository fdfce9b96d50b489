"""`multimask=False` on a Semantic-SAM model: its highest predicted-IoU mask (it has no single-mask output)."""

from __future__ import annotations

import numpy as np

from semsam import Predictor


def test_single_mask_is_the_best_scored_of_the_six(small_model, scene):
    predictor = Predictor(small_model)
    predictor.set_image(scene)
    many = predictor.predict(points=[(60, 45)], labels=[1])
    one = predictor.predict(points=[(60, 45)], labels=[1], multimask=False)
    best = int(np.argmax(many.scores))
    assert one.masks.shape == (1, *scene.shape[:2])
    np.testing.assert_allclose(one.logits[0], many.logits[best], atol=1e-6)
    assert one.scores[0] == many.scores.max()
    assert np.array_equal(one.masks[0], many.masks[best])
