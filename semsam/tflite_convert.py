"""Converting the quantized MobileNetV2 TFLite files (Coral, Apache-2.0) into float safetensors.

Reads the flatbuffer with the `tflite` parser and numpy only (no TensorFlow), dequantizes every convolution
(per tensor or per output channel; batch norm is already folded in) and maps the graph, convolution by
convolution in graph order, onto `semsam.modeling.mobilenet_v2`. Needs the optional `tflite` package
(`pip install "semsam[convert]"`); nothing at run time does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from semsam.config import MobileNetV2Config
from semsam.io import write_atomic
from semsam.modeling.mobilenet_v2 import MobileNetV2Classifier

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
FILE_IDENTIFIER = b"TFL3"
# What each converted file holds: the ImageNet classifier whole, or the backbone of the DeepLabV3 segmenter.
KINDS = ("imagenet", "deeplab")


class TfliteConversionError(ValueError):
    """The file is not a TFLite MobileNetV2 of the expected layout."""


@dataclass(frozen=True)
class TfliteConv:
    """One convolution of the graph, dequantized, in PyTorch layout."""

    name: str
    depthwise: bool
    weight: np.ndarray  # [O, I, kh, kw] (depthwise: [C, 1, kh, kw])
    bias: np.ndarray  # [O]
    stride: int
    dilation: int


def read_convolutions(path: str | Path) -> list[TfliteConv]:
    """Every CONV_2D and DEPTHWISE_CONV_2D of a TFLite file's main graph, in execution order.

    Raises:
        TfliteConversionError: not a TFLite flatbuffer, a truncated file, or weights of an unsupported type.
    """
    try:
        import tflite
    except ImportError as error:
        raise ImportError('converting TFLite files needs the tflite parser: pip install "semsam[convert]"') from error
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise TfliteConversionError(f"{path} is not a TFLite flatbuffer (no {FILE_IDENTIFIER.decode()} identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        op_names = {value: key for key, value in vars(tflite.BuiltinOperator).items() if not key.startswith("_")}
        convs = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            if kind in CONV_OPS:
                convs.append(_read_conv(tflite, model, graph, op, depthwise=kind == "DEPTHWISE_CONV_2D"))
    except TfliteConversionError:
        raise
    except Exception as error:  # the flatbuffer reader raises struct/index errors on damaged files
        raise TfliteConversionError(f"{path} could not be read as a TFLite model (truncated or damaged?): "
                                    f"{type(error).__name__}: {error}") from error
    return convs


def _read_conv(tflite, model, graph, op, *, depthwise: bool) -> TfliteConv:
    options_cls = tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions
    table = op.BuiltinOptions()
    options = options_cls()
    options.Init(table.Bytes, table.Pos)
    if options.StrideW() != options.StrideH() or options.DilationWFactor() != options.DilationHFactor():
        raise TfliteConversionError("convolutions with different horizontal and vertical strides are not supported")
    weight = _dequantize(tflite, model, graph.Tensors(op.Inputs(1)))
    bias = _dequantize(tflite, model, graph.Tensors(op.Inputs(2)))
    # TFLite keeps weights as [O, kh, kw, I] and depthwise ones as [1, kh, kw, C].
    weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
    name = graph.Tensors(op.Outputs(0)).Name().decode(errors="replace").split(";")[0]
    return TfliteConv(name=name, depthwise=depthwise, weight=np.ascontiguousarray(weight), bias=bias,
                      stride=options.StrideW(), dilation=options.DilationWFactor())


def _dequantize(tflite, model, tensor) -> np.ndarray:
    """A constant tensor as float32: `scale * (q - zero_point)`, per tensor or along its quantized dimension."""
    dtypes = {tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT32: np.int32,
              tflite.TensorType.FLOAT32: np.float32}
    if tensor.Type() not in dtypes:
        name = tensor.Name().decode(errors="replace")
        raise TfliteConversionError(f"tensor {name} has unsupported type {tensor.Type()}")
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    values = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), dtype=dtypes[tensor.Type()])
    if values.size != int(np.prod(shape)):
        raise TfliteConversionError(f"tensor {tensor.Name().decode(errors='replace')} holds {values.size} values "
                                    f"for shape {shape} (truncated file?)")
    values = values.reshape(shape).astype(np.float32)
    quant = tensor.Quantization()
    if tensor.Type() == tflite.TensorType.FLOAT32 or quant is None or quant.ScaleLength() == 0:
        return values
    view = [1] * len(shape)
    if quant.ScaleLength() > 1:
        view[quant.QuantizedDimension()] = -1
    scale = quant.ScaleAsNumpy().astype(np.float32).reshape(view)
    zero_point = quant.ZeroPointAsNumpy().astype(np.float32).reshape(view) if quant.ZeroPointLength() else 0.0
    return (values - zero_point) * scale


def _our_convs(model: MobileNetV2Classifier) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """Our convolutions (and the classifier, a 1x1 convolution in the graph) in graph order, by state-dict prefix."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]


def convert_tflite(source: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Maps a MobileNetV2 TFLite file onto `MobileNetV2Classifier`'s weights.

    An ImageNet classifier converts whole (features, head, classifier). A DeepLabV3-MobileNetV2 converts its
    backbone (`features.*`); its atrous blocks become ordinary strided ones, as the backbone runs at stride 32.

    Returns:
        The state dict (float32) and the kind, "imagenet" or "deeplab".

    Raises:
        TfliteConversionError: the graph is not MobileNetV2 1.0: the first mismatching convolution is named.
    """
    convs = read_convolutions(source)
    reference = MobileNetV2Classifier(config=MobileNetV2Config())
    ours = _our_convs(reference)
    backbone = [(name, conv) for name, conv in ours if name.startswith("features.")]
    classifier_graph = len(convs) == len(ours) and convs[-1].weight.shape[0] == reference.classifier.out_features
    if classifier_graph:
        kind, targets = "imagenet", ours
    elif len(convs) > len(backbone):
        kind, targets = "deeplab", backbone
    else:
        raise TfliteConversionError(f"{source} has {len(convs)} convolutions; MobileNetV2 1.0 needs {len(backbone)} "
                                    f"for its backbone ({len(ours)} with the ImageNet classifier)")
    state: dict[str, torch.Tensor] = {}
    for (name, conv), found in zip(targets, convs):
        linear = isinstance(conv, nn.Linear)
        expected = (*conv.weight.shape, 1, 1) if linear else tuple(conv.weight.shape)
        stride, dilation = (1, 1) if linear else (conv.stride[0], conv.dilation[0])
        if found.weight.shape != expected or found.depthwise != (not linear and conv.groups > 1):
            raise TfliteConversionError(
                f"{source}: convolution {found.name!r} has weights {found.weight.shape}, but MobileNetV2 1.0 "
                f"expects {expected} for {name} here: this is not the expected network"
            )
        if kind == "imagenet" and (found.stride, found.dilation) != (stride, dilation):
            raise TfliteConversionError(f"{source}: convolution {found.name!r} has stride {found.stride} and "
                                        f"dilation {found.dilation}, {name} expects {stride} and {dilation}")
        weight = found.weight.reshape(conv.weight.shape) if linear else found.weight
        state[f"{name}.weight"] = torch.from_numpy(weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(found.bias.copy())
    return state, kind


def write_converted(source: str | Path, destination: str | Path) -> tuple[Path, str]:
    """Converts a TFLite MobileNetV2 and writes it as safetensors, atomically; returns the path and the kind."""
    destination = Path(destination)
    if destination.suffix != ".safetensors":
        raise ValueError(f"the converted file must end in .safetensors, got {destination}")
    state, kind = convert_tflite(source)
    metadata = {"format": "semsam-mobilenet-v2", "kind": kind, "source": Path(source).name}
    destination.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(destination, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    return destination, kind
