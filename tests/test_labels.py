import copy

import pytest
import torch

from semsam import Predictor, SemanticInfo
from semsam.text import TextEncoder, parse_vocabulary


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSAM_CACHE_DIR", str(tmp_path))
    return tmp_path / "text"


def _steer_heads(model, object_name: str, part_name: str):
    """Makes every query's hidden state e0 and maps e0 onto the text embeddings of the given names."""
    model = copy.deepcopy(model)
    head = model.sem_seg_head.predictor
    text = TextEncoder().encode([object_name, part_name])
    with torch.no_grad():
        head.decoder_norm.weight.zero_()
        head.decoder_norm.bias.zero_()
        head.decoder_norm.bias[0] = 1.0
        head.text_projection.copy_(torch.eye(head.text_projection.shape[0]))
        head.class_embed.zero_()
        head.class_embed[0] = text[0]
        head.class_embed_part.zero_()
        head.class_embed_part[0] = text[1]
        head.logit_scale.fill_(4.0)
    model.semantic = SemanticInfo(trained=True, objects=["person"], parts=["head"])
    return model


def test_labels_come_from_the_custom_vocabulary(small_model, scene, cache):
    model = _steer_heads(small_model, "giraffe", "wheel")
    predictor = Predictor(model, objects="cat, giraffe,car", parts=["leg", "wheel", "tail"])
    predictor.set_image(scene)
    labels = predictor.predict(points=[(60, 45)]).labels
    assert len(labels) == 6
    for label in labels:
        assert label.object == "giraffe" and label.object_score > 0.9
        assert label.part == "wheel" and label.part_score > 0.9
    assert len(list(cache.glob("*.safetensors"))) >= 2


def test_vocabulary_can_change_between_predictions(small_model, scene, cache):
    model = _steer_heads(small_model, "giraffe", "wheel")
    predictor = Predictor(model)
    predictor.set_image(scene)
    assert predictor.predict(points=[(60, 45)]).labels[0].object == "person"
    predictor.set_vocabulary(objects=["zebra", "giraffe"], parts=["wheel", "door"])
    label = predictor.predict(points=[(60, 45)]).labels[0]
    assert (label.object, label.part) == ("giraffe", "wheel")


def test_untrained_heads_give_no_labels(small_model, scene):
    predictor = Predictor(small_model, objects="cat,dog", parts="head")
    predictor.set_image(scene)
    assert not predictor.labels_available
    assert predictor.predict(points=[(60, 45)]).labels is None


def test_embeddings_are_cached_on_disk(cache):
    first = TextEncoder().encode(["dog", "cat"])
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1
    again = TextEncoder().encode(["dog", "cat"])
    assert torch.equal(first, again)
    assert torch.allclose(first.norm(dim=-1), torch.ones(2), atol=1e-4)
    assert float(first[0] @ first[1]) < 0.95


@pytest.mark.parametrize("names, message", [("dog,,cat", "empty name"), ([], "empty name"), ("a,b,a", "repeated: a")])
def test_bad_vocabularies(names, message):
    with pytest.raises(ValueError, match=message):
        parse_vocabulary(names)
