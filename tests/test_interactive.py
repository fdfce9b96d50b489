"""The interactive protocol: click choice on hand-made masks, NoC/NoF/mIoU from known IoUs, the segmenters, and
`semsam eval interactive` on every layout's fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import BENCHMARK_OBJECT, rect, scene_image, write_benchmark, write_coco_instances
from semsam import SemanticInfo, save_checkpoint
from semsam.cli.main import main
from semsam.data.benchmarks import BenchmarkImage
from semsam.clicks import Click, corrective_click
from semsam.evaluation.interactive import evaluate_interactive, masked_iou, number_of_clicks
from semsam.evaluation.segmenters import GrabCutSegmenter, ModelSegmenter
from semsam.predictor import Predictor

SIZE = (40, 60)


def test_first_click_is_the_interior_most_pixel():
    square = rect(5, 10, 16, 21, SIZE)  # 11 x 11: its centre is the one pixel farthest from the boundary
    assert corrective_click(np.zeros(SIZE, bool), square) == Click(row=10, col=15, positive=True)
    # The image border is a boundary too: a square against the left edge is clicked 6 pixels in, not at the edge.
    assert corrective_click(np.zeros(SIZE, bool), rect(0, 0, 11, 11, SIZE)) == Click(row=5, col=5, positive=True)


def test_corrective_click_goes_to_the_deeper_error_region():
    found = rect(5, 5, 16, 16, SIZE)
    missed = rect(20, 30, 27, 37, SIZE)  # 7 x 7 false negative, centre (33, 23), 4 pixels deep
    target = found | missed
    small_fp = rect(25, 5, 30, 10, SIZE)  # 5 x 5 false positive, 3 pixels deep
    assert corrective_click(found | small_fp, target) == Click(row=23, col=33, positive=True)
    big_fp = rect(25, 5, 34, 14, SIZE)  # 9 x 9 false positive, centre (9, 29), 5 pixels deep
    assert corrective_click(found | big_fp, target) == Click(row=29, col=9, positive=False)
    equal_fp = rect(25, 5, 32, 12, SIZE)  # as deep as the false negative: negative, as in RITM
    assert corrective_click(found | equal_fp, target) == Click(row=28, col=8, positive=False)


def test_ignored_pixels_are_no_errors_and_no_error_means_no_click():
    found = rect(5, 5, 16, 16, SIZE)
    missed = rect(20, 30, 27, 37, SIZE)
    small_fp = rect(25, 5, 30, 10, SIZE)
    assert corrective_click(found | small_fp, found | missed, ignore=missed) == Click(row=27, col=7, positive=False)
    assert corrective_click(found, found | missed, ignore=missed) is None
    assert corrective_click(found, found) is None


def test_a_pixel_clicked_before_is_never_clicked_again():
    target, missed = rect(5, 5, 16, 16, SIZE), rect(20, 30, 27, 37, SIZE)
    clicked = np.zeros(SIZE, bool)
    clicked[23, 33] = True  # the missed square's centre, 4 px deep; the first pixel 3 px deep comes next
    assert corrective_click(target, target | missed, clicked=clicked) == Click(row=22, col=32, positive=True)
    speck = rect(30, 50, 31, 51, SIZE)
    assert corrective_click(target, target | speck, clicked=speck) is None


def test_masked_iou_leaves_ignored_pixels_out():
    target, predicted = rect(0, 0, 10, 10, SIZE), rect(0, 0, 10, 12, SIZE)
    assert masked_iou(predicted, target) == pytest.approx(100 / 120)
    assert masked_iou(predicted, target, ignore=rect(0, 10, 10, 12, SIZE)) == 1.0
    assert masked_iou(np.zeros(SIZE, bool), np.zeros(SIZE, bool)) == 1.0


def test_number_of_clicks_counts_a_miss_as_max_clicks():
    ious = np.array([[0.5, 0.86, 0.91], [0.9, 0.95, 0.95], [0.2, 0.3, 0.84]])
    assert number_of_clicks(ious, 0.85).tolist() == [2, 1, 3]
    assert number_of_clicks(ious, 0.90).tolist() == [3, 1, 3]


class Scripted:
    """Answers with a fixed list of masks, one per click, and records the clicks and boxes it gets."""

    name = "scripted"

    def __init__(self, answers: list[np.ndarray]) -> None:
        self.answers = answers
        self.clicks: list[Click] = []
        self.boxes: list[tuple[int, ...]] = []
        self.images = 0

    def set_image(self, image: np.ndarray) -> None:
        self.images += 1

    def start_object(self, box) -> None:
        self.boxes.append(tuple(box))
        self.step = 0

    def add_click(self, click: Click) -> np.ndarray:
        self.clicks.append(click)
        self.step += 1
        return self.answers[min(self.step, len(self.answers)) - 1]


def test_evaluation_has_known_noc_nof_and_miou():
    target = rect(10, 10, 30, 30, SIZE)  # 400 pixels
    half = rect(10, 10, 30, 20, SIZE)  # IoU 0.5
    most = rect(10, 10, 30, 28, SIZE)  # IoU 0.9
    over = rect(10, 10, 30, 32, SIZE)  # IoU 400/440: reached 90%, still wrong, so clicking goes on
    sample = BenchmarkImage(image=np.zeros((*SIZE, 3), np.uint8), masks=np.stack([target, target]), ignore=None,
                            image_id="x")
    scripted = Scripted([half, most, over, target])
    result = evaluate_interactive(scripted, [sample, sample], max_clicks=5, max_images=1, progress=False)
    assert scripted.images == 1 and scripted.boxes == [(10, 10, 30, 30)] * 2
    assert result.objects == 2 and result.images == 1 and result.object_ids == ["x#0", "x#1"]
    # The perfect answer at click 4 ends the object: click 5 is never made and its IoU stays 1.
    assert len(scripted.clicks) == 8
    assert scripted.clicks[0] == corrective_click(np.zeros(SIZE, bool), target)
    assert scripted.clicks[1] == corrective_click(half, target) and scripted.clicks[1].positive
    assert scripted.clicks[3] == corrective_click(over, target) and not scripted.clicks[3].positive
    assert result.object_ious[0] == pytest.approx([0.5, 0.9, 400 / 440, 1.0, 1.0])
    assert result.noc85 == 2 and result.noc90 == 2 and result.nof90 == 0
    assert result.miou_at_1 == 0.5 and result.miou_at_3 == pytest.approx(400 / 440) and result.miou_at_5 == 1.0
    # Per object, clicks 2 and 3 (positive) and 4 (negative) each get their own pixel right.
    assert result.fixed_positive == 1.0 and result.fixed_negative == 1.0
    never = evaluate_interactive(Scripted([half]), [sample], max_clicks=3, progress=False)
    assert never.noc85 == 3 and never.nof85 == never.nof90 == 2 and never.miou_at_5 is None
    assert never.fixed_positive == 0.0 and never.fixed_negative is None
    with pytest.raises(ValueError, match="max_clicks"):
        evaluate_interactive(scripted, [sample], max_clicks=0)


class SpyPredictor(Predictor):
    """A real predictor that records what each decoder call was asked; after the first call its predicted IoUs are
    rotated by one, so that another granularity scores highest than at click 1."""

    def predict_low_res(self, prompts, *, multimask=True):
        output = super().predict_low_res(prompts, multimask=multimask)
        if self.calls:
            output.scores = output.scores.roll(1, dims=-1)
        self.calls.append((prompts[0], multimask, output))
        return output


def run_model(model, clicks: int) -> tuple[SpyPredictor, list[np.ndarray]]:
    predictor = SpyPredictor(model)
    predictor.calls = []
    segmenter = ModelSegmenter(predictor, name="tiny")
    image = scene_image(BENCHMARK_OBJECT)
    segmenter.set_image(image)
    segmenter.start_object((16, 12, 44, 36))
    clicks = (Click(row=24, col=30, positive=True), Click(row=5, col=5, positive=False),
              Click(row=15, col=20, positive=True))
    masks = [segmenter.add_click(click) for click in clicks]
    return predictor, masks


def test_semantic_sam_keeps_the_granularity_of_click_one(small_model):
    predictor, masks = run_model(small_model, 3)
    (first, multi, output), *later = predictor.calls
    assert multi and first.mask_input is None
    token = int(output.scores[0].argmax())
    assert all(int(call[2].scores[0].argmax()) != token for call in later)
    previous = output
    for clicks, (prompt, multimask, output) in enumerate(later, start=2):
        assert multimask and len(prompt.points) == len(prompt.labels) == clicks
        assert np.array_equal(prompt.mask_input, previous.logits[0, token].numpy())
        previous = output
    assert later[-1][0].labels == [1, 0, 1]
    expected = (predictor.upsample_logits(previous.logits[0, token]) > 0).numpy()
    assert np.array_equal(masks[-1], expected) and masks[-1].shape == BENCHMARK_OBJECT.shape


def test_sam_answers_later_clicks_with_its_single_mask_output():
    from semsam.config import SamConfig
    from semsam.modeling.sam import Sam

    torch.manual_seed(0)
    config = SamConfig(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, global_attn_indexes=(1,),
                       image_size=64)
    predictor, masks = run_model(Sam(config=config).eval(), 2)
    (first, multi, output), (second, multi_after, single) = predictor.calls[:2]
    assert multi and output.logits.shape[1] == 3
    assert not multi_after and single.logits.shape[1] == 1
    assert np.array_equal(second.mask_input, output.logits[0, int(output.scores[0].argmax())].numpy())
    assert np.array_equal(masks[1], (predictor.upsample_logits(single.logits[0, 0]) > 0).numpy())


def test_grabcut_finds_a_bright_object_from_its_box_and_clicks():
    grabcut = GrabCutSegmenter()
    sample = BenchmarkImage(image=scene_image(BENCHMARK_OBJECT), masks=BENCHMARK_OBJECT[None], ignore=None,
                            image_id="a")
    result = evaluate_interactive(grabcut, [sample], max_clicks=2, progress=False)
    assert result.miou_at_1 > 0.95
    # A box over the whole image leaves no outside to learn the background from; the frame stands in for it.
    grabcut.start_object((0, 0, BENCHMARK_OBJECT.shape[1], BENCHMARK_OBJECT.shape[0]))
    mask = grabcut.add_click(Click(row=24, col=30, positive=True))
    assert masked_iou(mask, BENCHMARK_OBJECT) > 0.9


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small_model, small_config):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, small_model, small_config, SemanticInfo())
    return path


@pytest.mark.parametrize("kind", ["grabcut", "berkeley", "davis", "coco"])
def test_eval_interactive_on_each_layout(tmp_path, capsys, checkpoint, kind):
    root = tmp_path / kind
    if kind == "coco":
        write_coco_instances(root, "val")
        layout = ["--split", "val"]
    else:
        image_dir = write_benchmark(root, kind)
        layout = ["--images", str(image_dir)] if kind == "berkeley" else []
    out = tmp_path / "out"
    args = ["eval", "interactive", "--dataset", kind, "--root", str(root), *layout, "--checkpoint", str(checkpoint),
            "--max-clicks", "3", "--grabcut", "--out", str(out)]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "interactive.json").read_text())
    assert [r["name"] for r in report["results"]] == ["tiny", "grabcut"]
    objects = 4 if kind == "coco" else 2
    for brief, full in zip(printed["results"], report["results"]):
        assert brief["objects"] == full["objects"] == objects and "object_ious" not in brief
        assert len(full["object_ious"]) == objects and len(full["miou_per_click"]) == 3
        assert 1 <= full["noc90"] <= 3 and full["seconds_per_click"] > 0
    assert (out / "miou_per_click.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zoom_in_and_refinement_add_every_combination(tmp_path, capsys, checkpoint):
    write_coco_instances(tmp_path, "val")
    args = ["eval", "interactive", "--dataset", "coco", "--root", str(tmp_path), "--split", "val",
            "--checkpoint", str(checkpoint), "--max-clicks", "3", "--zoom-in", "--refine-grabcut"]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["name"] for r in results] == ["tiny", "tiny+grabcut", "tiny+zoom", "tiny+zoom+grabcut"]
    assert all(r["objects"] == 4 and 1 <= r["noc90"] <= 3 for r in results)


@pytest.mark.parametrize(("extra", "message"), [
    (["--split", "val"], "without splits"),
    (["--max-clicks", "0"], "--max-clicks must be at least 1"),
    (["--out", "{root}/img/a.jpg"], "is a file; the interactive protocol writes into a folder"),
])
def test_eval_interactive_errors(tmp_path, capsys, extra, message):
    write_benchmark(tmp_path, "davis")
    extra = [value.format(root=tmp_path) for value in extra]
    assert main(["eval", "interactive", "--dataset", "davis", "--root", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--grabcut", "--refine-grabcut", "--zoom-in"])
def test_interactive_options_belong_to_interactive(capsys, flag):
    assert main(["eval", "click", "--dataset", "bsds500", flag]) == 2
    assert "belong to the interactive protocol" in capsys.readouterr().err
