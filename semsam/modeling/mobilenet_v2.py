"""MobileNetV2 (Sandler et al. 2018) with batch norm folded into the convolutions, as in TFLite exports.

Its weights and activations are channels-last, which runs its depthwise convolutions in about half the time on
CPU (the 512-px recognizer pass: 64 -> 35 ms on 2 threads).

The layout follows the TF-slim/Keras graph that the Coral TFLite files were exported from, so that converted
weights (`semsam.tflite_convert`) load one-to-one: convolutions carry a bias, padding is TensorFlow's "SAME".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semsam.config import MobileNetV2Config

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2.
INVERTED_RESIDUAL_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                              (6, 160, 3, 2), (6, 320, 1, 1))
# After which entry of `features` each pyramid level is taken (strides 4, 8, 16, 32).
FEATURE_TAPS = {"res2": 3, "res3": 6, "res4": 13, "res5": 17}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def scaled_channels(channels: int, width: float) -> int:
    """Channels times the width multiplier, rounded to a multiple of 8 as in the reference implementation."""
    scaled = max(8, int(channels * width + 4) // 8 * 8)
    return scaled + 8 if scaled < 0.9 * channels * width else scaled


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: for stride 2 on even sizes the extra row/column is at the end."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1],
                                                  self.dilation[::-1]):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0::2] == pads[1::2]:
            # Symmetric, as for every stride-1 layer: the convolution pads by itself, without copying the input
            # (F.pad's copy also drops a channels-last layout).
            return F.conv2d(x, self.weight, self.bias, self.stride, (pads[2], pads[0]), self.dilation, self.groups)
        return super().forward(F.pad(x, pads))


class ConvAct(nn.Module):
    """A folded conv + batch-norm, optionally followed by ReLU6."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, relu6: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)
        self.relu6 = relu6

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.relu6(x, inplace=True) if self.relu6 else x


class InvertedResidual(nn.Module):
    """1x1 expansion (absent for t = 1) -> 3x3 depthwise -> linear 1x1 projection, residual when shapes allow."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvAct(in_channels=in_channels, out_channels=hidden) if expansion != 1 else None
        self.depthwise = ConvAct(in_channels=hidden, out_channels=hidden, kernel_size=3, stride=stride, groups=hidden)
        self.project = ConvAct(in_channels=hidden, out_channels=out_channels, relu6=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(x if self.expand is None else self.expand(x)))
        return x + out if self.residual else out


def build_features(width: float) -> tuple[nn.ModuleList, list[int]]:
    """The stem and the 17 inverted-residual blocks, and the channels of each entry's output."""
    channels = scaled_channels(STEM_CHANNELS, width)
    layers: list[nn.Module] = [ConvAct(in_channels=3, out_channels=channels, kernel_size=3, stride=2)]
    outputs = [channels]
    for expansion, base, repeats, first_stride in INVERTED_RESIDUAL_SETTINGS:
        out_channels = scaled_channels(base, width)
        for i in range(repeats):
            layers.append(InvertedResidual(in_channels=channels, out_channels=out_channels,
                                           stride=first_stride if i == 0 else 1, expansion=expansion))
            channels = out_channels
            outputs.append(channels)
    return nn.ModuleList(layers), outputs


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 returning res2..res5 feature maps (strides 4, 8, 16, 32) for the pixel decoder."""

    def __init__(self, *, config: MobileNetV2Config) -> None:
        super().__init__()
        self.features, channels = build_features(config.width_multiplier)
        self.num_features = [channels[index] for index in FEATURE_TAPS.values()]
        self.features.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images: [B, 3, H, W] normalised. Returns {"res2": ..., "res5": ...} as contiguous [B, C, h, w]."""
        taps = {index: name for name, index in FEATURE_TAPS.items()}
        outputs = {}
        x = images.contiguous(memory_format=torch.channels_last)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                # Contiguous, so that the mask features every prompt reads are too.
                outputs[taps[index]] = x.contiguous()
        return outputs


class MobileNetV2Embedder(nn.Module):
    """The ImageNet network without its classifier: features and the 1x1 conv to 1280 channels, unpooled."""

    def __init__(self, *, config: MobileNetV2Config) -> None:
        super().__init__()
        self.features, channels = build_features(config.width_multiplier)
        head_channels = scaled_channels(HEAD_CHANNELS, max(1.0, config.width_multiplier))
        self.head = ConvAct(in_channels=channels[-1], out_channels=head_channels)
        self.to(memory_format=torch.channels_last)

    @property
    def out_channels(self) -> int:
        return self.head.conv.out_channels

    def embed(self, images: Tensor) -> Tensor:
        """images: [B, 3, H, W] scaled to [-1, 1]. Returns [B, 1280, H / 32, W / 32] features."""
        x = images.contiguous(memory_format=torch.channels_last)
        for layer in self.features:
            x = layer(x)
        return self.head(x)


class MobileNetV2Classifier(MobileNetV2Embedder):
    """The ImageNet classifier: the embedder, global average pooling and logits.

    Used to check converted weights against the TFLite interpreter; the segmentation models use the backbone.
    """

    def __init__(self, *, config: MobileNetV2Config, num_classes: int = 1001) -> None:
        super().__init__(config=config)
        self.classifier = nn.Linear(self.out_channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """images: [B, 3, H, W] scaled to [-1, 1]. Returns [B, num_classes] logits."""
        return self.classifier(self.embed(images).mean((2, 3)))
