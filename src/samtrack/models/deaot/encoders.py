"""CNN image encoders of the AOT family: MobileNetV2 and ResNet-50 with frozen batch norm.

Module names follow the official release so that its checkpoints load unchanged
(``features.N...`` for MobileNetV2, ``conv1/bn1/layerK...`` for ResNet-50). Both return four
feature maps at strides 4, 8, 16 and 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, stored as buffers."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels) - eps)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


def fold_frozen_batch_norms(module: nn.Module) -> None:
    """Fold, in place, every :class:`FrozenBatchNorm2d` registered right after a convolution into
    that convolution's weight and bias (the norm becomes an identity). Inference only: the
    ``state_dict`` no longer has the official keys afterwards."""
    previous = None
    for name, child in list(module.named_children()):
        if isinstance(child, FrozenBatchNorm2d) and isinstance(previous, nn.Conv2d):
            previous.weight, previous.bias = fuse_conv_bn_weights(
                previous.weight, previous.bias, child.running_mean, child.running_var, child.eps,
                child.weight, child.bias)
            setattr(module, name, nn.Identity())
        else:
            fold_frozen_batch_norms(child)
        previous = child


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                   dilation: int = 1) -> nn.Sequential:
    padding = (kernel - 1) // 2 * dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
        FrozenBatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1x1 expansion, depthwise 3x3, linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(cin, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            FrozenBatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with output stride 16 (the last downsampling replaced by dilation)."""

    # expansion t, channels c, repeats n, stride s
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        cin = _make_divisible(32)
        features: list[nn.Module] = [_conv_bn_relu6(3, cin, stride=2)]
        current_stride, rate = 2, 1
        for t, c, n, s in self.SETTING:
            if current_stride == output_stride:
                stride, dilation = 1, rate
                rate *= s
            else:
                stride, dilation = s, 1
                current_stride *= s
            cout = _make_divisible(c)
            for i in range(n):
                if i == 0:
                    features.append(InvertedResidual(cin, cout, stride, dilation, t))
                else:
                    features.append(InvertedResidual(cin, cout, 1, rate, t))
                cin = cout
        features.append(_conv_bn_relu6(cin, _make_divisible(1280), kernel=1))
        self.features = nn.Sequential(*features)
        self._bounds = (0, 4, 7, 14, len(features))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for start, end in zip(self._bounds[:-1], self._bounds[1:]):
            for layer in self.features[start:end]:
                x = layer(x)
            outs.append(x)
        return outs


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3, 1x1) with frozen batch norm."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, dilation=dilation, padding=dilation,
                               bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNet50(nn.Module):
    """ResNet-50 stem and stages 1-3 (stage 4 dropped, as in STM/AOT); output stride 16."""

    def __init__(self) -> None:
        super().__init__()
        self._inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                FrozenBatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, 1, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x4 = self.layer1(x)
        x8 = self.layer2(x4)
        x16 = self.layer3(x8)
        return [x4, x8, x16, x16]
