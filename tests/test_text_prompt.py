"""Text prompts: parsing, ranking with known label probabilities, a trained model, refusal, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semsam.automatic.hierarchy import GeneratedMask
from semsam.automatic.text_prompt import TextPrompter, TextQuery, parse_text_prompt
from semsam.config import SemanticInfo
from semsam.data.synthetic import OBJECT_NAMES, PART_NAMES, SyntheticPartsDataset
from semsam.evaluation.click import interior_click
from semsam.evaluation.text import evaluate_text
from semsam.io import mask_to_rle
from semsam.prediction import MaskLabel

OBJECTS = ["dog", "cat", "car", "person"]  # the last names take the probability the candidates leave over
PARTS = ["head", "tail", "wheel", "hair"]


@pytest.mark.parametrize(("text", "expected"), [
    ("dog", ("dog", None)),
    ("  the   dog ", ("dog", None)),
    ("person:hair", ("person", "hair")),
    ("the hair of the person", ("person", "hair")),
    ("person's hair", ("person", "hair")),
    ("a car's wheel", ("car", "wheel")),
])
def test_text_prompts_are_read_as_an_object_a_part_or_a_part_of_an_object(text, expected):
    query = parse_text_prompt(text)
    assert (query.object, query.part) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"), ("   ", "empty"), (":hair", "give both"), ("person:", "give both"), ("x" * 300, "under 200"),
])
def test_bad_text_prompts_are_refused_saying_why(text, message):
    with pytest.raises(ValueError, match=message):
        parse_text_prompt(text)


def candidate(mask_id: int, level: int, mask: np.ndarray, objects: dict[str, float], parts: dict[str, float],
              iou: float = 0.9) -> GeneratedMask:
    """A generated mask whose label probabilities are known: the given names, the rest on the last name."""
    def spread(names: list[str], given: dict[str, float]) -> np.ndarray:
        probabilities = np.array([given.get(name, 0.0) for name in names], np.float32)
        probabilities[-1] += 1 - probabilities.sum()
        return probabilities

    ys, xs = np.nonzero(mask)
    return GeneratedMask(
        id=mask_id, level=level, segmentation=mask_to_rle(mask), area=int(mask.sum()),
        bbox=(float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)),
        predicted_iou=iou, stability_score=1.0, point_coords=(0.0, 0.0), crop_box=(0, 0, 40, 40),
        label=MaskLabel(object=max(objects, key=objects.get, default="dog"), object_score=0.5,
                        part=max(parts, key=parts.get, default="head"), part_score=0.5),
        label_probabilities=(spread(OBJECTS, objects), spread(PARTS, parts)),
    )


def box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((40, 40), bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def prompter(small_model, monkeypatch):
    """A prompter over a model that claims trained heads on OBJECTS and PARTS (rank and score never run it)."""
    monkeypatch.setattr(small_model, "semantic", SemanticInfo(trained=True, objects=OBJECTS, parts=PARTS))
    return TextPrompter(small_model, thresholds={"object": 0.3, "part": 0.3})


@pytest.fixture
def scene_candidates() -> list[GeneratedMask]:
    dog = box_mask(0, 0, 20, 20)
    dog_head = box_mask(0, 0, 8, 8)
    return [
        candidate(0, 5, dog, {"dog": 0.8}, {"head": 0.1}),
        candidate(1, 4, box_mask(0, 0, 20, 19), {"dog": 0.7}, {}),  # the same dog one level finer
        candidate(2, 5, box_mask(22, 22, 40, 40), {"cat": 0.9}, {}),
        candidate(3, 1, box_mask(30, 0, 38, 8), {"dog": 0.95}, {"tail": 0.2}),  # too fine for an object name
        candidate(4, 2, dog_head, {"dog": 0.2}, {"head": 0.9}),
        candidate(5, 2, box_mask(22, 22, 28, 28), {"cat": 0.3}, {"head": 0.8}),  # a cat's head
    ]


def resolve(prompter: TextPrompter, text: str) -> tuple[TextQuery, list]:
    query = parse_text_prompt(text)
    return query, prompter.resolve(query, (OBJECTS, PARTS))


@pytest.mark.parametrize("text", ["dog", "puppy", "the dog"])
def test_any_wording_of_a_name_finds_its_mask_once_at_the_levels_that_fit(prompter, scene_candidates, text):
    result = prompter.rank(*resolve(prompter, text), scene_candidates)
    assert result.found and result.reason is None
    assert [m.level for m in result.matches] == [5]  # the level-4 duplicate is dropped; level 1 never fits an object
    assert result.matches[0].score == pytest.approx(0.8, abs=0.05)
    assert result.matches[0].mask.sum() == 400
    assert result.names[0].nearest[0][0] == "dog"


def test_a_part_name_searches_part_levels_and_a_part_of_an_object_needs_that_object(prompter, scene_candidates):
    heads = prompter.rank(*resolve(prompter, "head"), scene_candidates)
    assert [m.mask.sum() for m in heads.matches] == [64, 36]  # the dog's head, then the cat's
    dog_heads = prompter.rank(*resolve(prompter, "dog:head"), scene_candidates)
    assert [m.mask.sum() for m in dog_heads.matches] == [64]  # inside the dog; no dog holds the cat's head
    assert dog_heads.matches[0].score == pytest.approx(np.sqrt(0.9 * 0.8), abs=0.02)
    assert prompter.threshold(dog_heads.names) == pytest.approx(0.3)
    assert prompter.rank(*resolve(prompter, "head of the cat"), scene_candidates).matches[0].mask.sum() == 36


def test_nothing_matches_is_an_explicit_answer_with_its_reason(prompter, scene_candidates):
    absent = prompter.rank(*resolve(prompter, "car"), scene_candidates)
    assert not absent.found and absent.matches == []
    assert "no mask matches 'car'" in absent.reason and "below the threshold 0.300" in absent.reason
    prompter.thresholds["object"] = 0.85
    strict = prompter.rank(*resolve(prompter, "dog"), scene_candidates)
    assert not strict.found and "the best score is 0.799, below the threshold 0.850" in strict.reason


def test_a_phrase_unlike_every_name_is_refused_before_any_search(prompter, scene):
    result = prompter.predict(scene, "quantum chromodynamics")
    assert not result.found and "unlike every" in result.reason and "add it to the vocabulary" in result.reason


def test_an_untrained_model_refuses_text_prompts(small_model):
    with pytest.raises(ValueError, match="trained object/part heads"):
        TextPrompter(small_model)


def test_the_trained_micro_model_scores_the_right_name_of_a_clicked_thing_above_the_others(micro_labelled_model):
    """Its masks are coarse (64 px, 300 steps), but its heads know the names: measured 0.51 of right names above
    every other name of their kind (chance 1/4 for objects, 1/11 for parts) and a detection AUC of 0.69."""
    prompter = TextPrompter(micro_labelled_model, thresholds={"object": 0.0, "part": 0.0}, points_per_side=8)
    held_out = SyntheticPartsDataset(split="val", length=12, image_size=64)
    right, best_other = [], []
    for index in range(6):
        record = held_out[index]
        prompter.predictor.set_image(record.image)
        for mask, obj, part in zip(record.masks, record.object_classes, record.part_classes):
            if mask.sum() < 20:
                continue
            names = PART_NAMES if part is not None else OBJECT_NAMES
            name = names[part if part is not None else obj]
            click = [interior_click(mask)]

            def top_score(text: str) -> float:
                result = prompter.predict(record.image, text, points=click, predictor=prompter.predictor)
                return result.matches[0].score

            right.append(top_score(name))
            best_other.append(max(top_score(other) for other in names if other != name))
    assert len(right) > 40
    assert np.mean(np.array(right) > np.array(best_other)) > 0.35 and np.mean(right) > np.mean(best_other)
    metrics = evaluate_text(prompter, held_out, progress=False)
    assert metrics.instances > 100 and metrics.images == 12, metrics
    assert metrics.detection["object"].auc > 0.58 and metrics.detection["part"].auc > 0.58, metrics


def test_segment_text_writes_ranked_matches_or_says_nothing_matches(tmp_path, capsys):
    from semsam.cli.main import main

    out = tmp_path / "hair"
    assert main(["segment", "semsam/assets/example.jpg", "--text", "hair", "--point", "220,40",
                 "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["found"] and result["matches"][0]["label"]["part"] == "hair"
    assert (out / "overlay.png").is_file() and (out / "match1.png").is_file()
    scores = [m["score"] for m in result["matches"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= result["threshold"]
    assert main(["segment", "semsam/assets/example.jpg", "--text", "giraffe", "--out", str(tmp_path / "none")]) == 0
    assert "nothing matches" in capsys.readouterr().out
    assert json.loads((tmp_path / "none" / "result.json").read_text())["matches"] == []


def test_segment_text_on_a_model_without_trained_heads_fails_saying_what_to_do(tmp_path, small_model, small_config,
                                                                              capsys):
    from semsam.checkpoint import save_checkpoint
    from semsam.cli.main import main

    checkpoint = tmp_path / "untrained.safetensors"
    save_checkpoint(checkpoint, small_model, small_config, SemanticInfo())
    assert main(["segment", "semsam/assets/example.jpg", "--text", "dog", "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "out")]) == 2
    assert "trained object/part heads" in capsys.readouterr().err


@given(st.text(max_size=250))
def test_any_text_either_parses_into_names_or_is_refused_with_a_value_error(text):
    try:
        query = parse_text_prompt(text)
    except ValueError:
        return
    assert query.object and query.object.strip() == query.object and (query.part is None or query.part.strip())


@pytest.mark.parametrize("thresholds", [{"object": 0.1}, {"object": -0.1, "part": 0.2}, {"object": 0.1, "part": 2}])
def test_bad_thresholds_are_refused(prompter, small_model, thresholds):
    with pytest.raises(ValueError, match="thresholds must be"):
        TextPrompter(small_model, thresholds=thresholds)


def test_objects_rank_by_score_times_predicted_iou_and_parts_by_score(prompter):
    ragged = candidate(0, 4, box_mask(0, 0, 20, 20), {"dog": 0.8}, {"head": 0.8}, iou=0.3)
    clean = candidate(1, 3, box_mask(22, 22, 40, 40), {"dog": 0.7}, {"head": 0.7}, iou=0.9)
    dogs = prompter.rank(*resolve(prompter, "dog"), [ragged, clean])
    assert [m.predicted_iou for m in dogs.matches] == [0.9, 0.3]
    assert [m.score for m in dogs.matches] == pytest.approx([0.7, 0.8], abs=0.01)  # the score stays the label's
    heads = prompter.rank(*resolve(prompter, "head"), [ragged, clean])
    assert [m.predicted_iou for m in heads.matches] == [0.3, 0.9]


@pytest.mark.parametrize(("args", "message"), [
    (["segment", "semsam/assets/example.jpg", "--point", "5,5", "--text-threshold", "0.1"],
     "--text-threshold goes with --text"),
    (["segment", "semsam/assets/example.jpg", "--text", "dog", "--text-threshold", "2"], "thresholds must be"),
    (["segment", "semsam/assets/example.jpg", "--text", ":hair"], "give both"),
    (["segment", "semsam/assets/example.jpg", "--text", "dog", "--negative", "5,5"], "--negative clicks only refine"),
    (["eval", "labels", "--dataset", "synthetic_parts", "--text-threshold", "0.1"], "belongs to the text protocol"),
])
def test_bad_text_options_fail_in_one_line_saying_why(tmp_path, capsys, args, message):
    from semsam.cli.main import main

    extra = ["--out", str(tmp_path / "out")] if args[0] == "segment" else []
    assert main([*args, *extra]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("semsam: error:") and message in last
