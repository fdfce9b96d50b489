"""MobileNetV2: TFLite conversion checked against the TFLite interpreter, the backbone's pyramid, and loading."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from semsam import MODEL_CONFIGS, Predictor, load_model, read_image
from semsam.build import build_model, load_backbone, model_from_config
from semsam.checkpoint import CheckpointError, save_checkpoint
from semsam.config import MobileNetV2Config, SemanticSamConfig, SwinConfig
from semsam.modeling.mobilenet_v2 import MobileNetV2Classifier, SameConv2d

from helpers import SMALL_SWIN

CORAL = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "coral"
IMAGENET = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
DEEPLAB = CORAL / "deeplabv3_mnv2_pascal_quant.tflite"
BODYPIX = CORAL / "bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite"
PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_mval" / "val"
needs_coral = pytest.mark.skipif(not IMAGENET.is_file(), reason=f"Coral TFLite weights not found in {CORAL}")


def test_backbone_gives_res2_to_res5_at_strides_4_to_32():
    model = build_model("semsam_mobilenet")
    features = model.backbone(torch.zeros(1, 3, 96, 160))
    assert {name: tuple(f.shape) for name, f in features.items()} == {
        "res2": (1, 24, 24, 40), "res3": (1, 32, 12, 20), "res4": (1, 96, 6, 10), "res5": (1, 320, 3, 5)}
    assert model.backbone.num_features == [24, 32, 96, 320]


def test_same_padding_puts_the_extra_row_and_column_at_the_end_as_tensorflow_does():
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    image = torch.randn(1, 1, 8, 8)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(image, (0, 1, 0, 1)), conv.weight, stride=2)
    assert torch.allclose(conv(image), expected)
    odd = torch.randn(1, 1, 7, 7)
    assert torch.allclose(conv(odd), torch.nn.functional.conv2d(odd, conv.weight, stride=2, padding=1))


def test_a_mobilenet_model_round_trips_through_a_checkpoint(tmp_path):
    config = MODEL_CONFIGS["semsam_mobilenet"]
    assert SemanticSamConfig.from_dict(config.to_dict()) == config
    assert isinstance(SemanticSamConfig.from_dict(SMALL_SWIN.to_dict()).backbone, SwinConfig)
    model = build_model("semsam_mobilenet")
    save_checkpoint(tmp_path / "m.safetensors", model, config, model.semantic)
    loaded = load_model(checkpoint=tmp_path / "m.safetensors")
    assert isinstance(loaded.config.backbone, MobileNetV2Config)
    assert torch.equal(loaded.backbone.features[5].depthwise.conv.weight,
                       model.backbone.features[5].depthwise.conv.weight)


def test_an_unknown_backbone_section_is_named():
    data = MODEL_CONFIGS["semsam_mobilenet"].to_dict()
    data["backbone"] = {"depth_multiplier": 2}
    with pytest.raises(ValueError, match="depth_multiplier"):
        SemanticSamConfig.from_dict(data)


@needs_coral
def test_converted_imagenet_weights_classify_real_photos_as_the_tflite_interpreter_does():
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    from semsam.tflite_convert import convert_tflite

    state, kind = convert_tflite(IMAGENET)
    assert kind == "imagenet"
    network = MobileNetV2Classifier(config=MobileNetV2Config())
    network.load_state_dict(state, strict=True)
    network.eval()
    interpreter = interpreter_module.Interpreter(model_path=str(IMAGENET))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    photos = sorted(glob.glob(str(PHOTOS / "*.jpg")))[:20]
    assert len(photos) == 20
    agree = 0
    for photo in photos:
        pixels = np.array(Image.open(photo).convert("RGB").resize((224, 224), Image.BILINEAR))
        interpreter.set_tensor(source["index"], pixels[None])
        interpreter.invoke()
        expected = int(np.argmax(interpreter.get_tensor(target["index"])[0]))
        with torch.no_grad():
            logits = network(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1)
        agree += int(logits.argmax()) == expected
    assert agree >= 19, f"top-1 agrees with the interpreter on {agree} of 20 photos"


@needs_coral
def test_conversion_writes_safetensors_that_initialise_the_backbone(tmp_path):
    from semsam.tflite_convert import write_converted

    for source in (IMAGENET, DEEPLAB):
        path, kind = write_converted(source, tmp_path / f"{source.stem}.safetensors")
        model = build_model("semsam_mobilenet")
        load_backbone(model, path)
        if kind == "imagenet":
            converted = MobileNetV2Classifier(config=MobileNetV2Config())
            converted.load_state_dict(load_file(path))
            assert torch.equal(model.backbone.features[17].project.conv.weight,
                               converted.features[17].project.conv.weight)
    assert {write_converted(s, tmp_path / "k.safetensors")[1] for s in (IMAGENET, DEEPLAB)} == {"imagenet", "deeplab"}


@needs_coral
def test_files_that_are_not_the_expected_network_are_refused_with_the_reason(tmp_path):
    from semsam.tflite_convert import TfliteConversionError, convert_tflite

    with pytest.raises(TfliteConversionError, match="34 convolutions"):
        convert_tflite(BODYPIX)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(IMAGENET.read_bytes()[:1_000_000])
    with pytest.raises(TfliteConversionError, match="truncated"):
        convert_tflite(truncated)
    text = tmp_path / "notes.tflite"
    text.write_text("not a model")
    with pytest.raises(TfliteConversionError, match="not a TFLite flatbuffer"):
        convert_tflite(text)


def test_a_backbone_file_that_does_not_fit_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"features.0.conv.weight": torch.zeros(8, 3, 3, 3)}, str(tmp_path / "small.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys"):
        load_backbone(build_model("semsam_mobilenet"), tmp_path / "small.safetensors")
    save_file({"head.conv.weight": torch.zeros(1)}, str(tmp_path / "head.safetensors"))
    with pytest.raises(CheckpointError, match="convert-tflite"):
        load_backbone(build_model("semsam_mobilenet"), tmp_path / "head.safetensors")


def test_decoders_transfer_from_a_swin_checkpoint_except_the_feature_projections(tmp_path):
    from semsam.build import transfer_heads

    donor = model_from_config(SMALL_SWIN)
    save_checkpoint(tmp_path / "donor.safetensors", donor, donor.config, donor.semantic)
    model = build_model("semsam_mobilenet")
    fresh = transfer_heads(model, tmp_path / "donor.safetensors")
    assert fresh == ["sem_seg_head.pixel_decoder.adapter_1.weight"] + [
        f"sem_seg_head.pixel_decoder.input_proj.{i}.0.weight" for i in range(4)]
    donor_state, state = donor.state_dict(), model.state_dict()
    for name in ("sem_seg_head.predictor.decoder.layers.1.linear1.weight",
                 "sem_seg_head.predictor.bbox_embed.0.layers.0.weight", "sem_seg_head.pixel_decoder.mask_features.weight"):
        assert torch.equal(state[name], donor_state[name]), name
    assert not torch.equal(state[fresh[0]][:, :1], donor_state[fresh[0]][:, :1])


def test_the_embedded_default_labels_a_real_photo_with_its_trained_heads():
    model = load_model()
    assert model.semantic.trained and "person" in model.semantic.objects and "hair" in model.semantic.parts
    predictor = Predictor(model)
    predictor.set_image(read_image(Path(__file__).resolve().parents[1] / "semsam" / "assets" / "example.jpg"))
    # Parts the heads learned from Clothing Co-Parsing, on a photo from none of the data sets. (The object names of
    # this orange-suited astronaut are wrong; the model card says so.)
    hair = predictor.predict(points=[(220, 40)]).labels  # the astronaut's hair
    assert hair[0].part == "hair" and hair[0].part_score > 0.5
    face = predictor.predict(points=[(225, 120)]).labels
    assert any(label.part == "skin" for label in face[:-1])
