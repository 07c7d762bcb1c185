"""Reference PyTorch implementations with torchvision's module names and structure, so that their
state_dict keys and shapes are torchvision's; the oracle for the converter's tests and the PyTorch
side of the benchmarks. Imports torch: import this module only where torch is installed.

- ResNet (He et al. 2016) as torchvision.models.resnet: BasicBlock / Bottleneck with the stride on
  the 3x3 convolution ("v1.5"), projection shortcuts `downsample` = Sequential(conv1x1, BN).
- The CIFAR ResNets of Sec. 4.2 (depth 6n + 2) with option-A shortcuts: subsample, then zero-pad
  the new channels at the end, as cnnjax's shortcut='identity_pad' does.
- VGG (Simonyan & Zisserman 2015) as torchvision.models.vgg: `features` from the configuration
  letter, AdaptiveAvgPool2d((7, 7)), `classifier` Linear-ReLU-Dropout x2, Linear.
- AlexNet as torchvision.models.alexnet (the single-tower 64-192-384-256-256 variant).
- GoogLeNet as torchvision.models.googlenet: BasicConv2d (conv without bias, BN eps 0.001, ReLU),
  3x3 convolutions in the "5x5" branch, ceil-mode max pools (2x2 before 5a), InceptionAux with
  adaptive 4x4 pooling, transform_input (off by default, as in torchvision's class: its pretrained
  builder turns it on); aux heads run only in training, as torchvision's.
- LeNet-5 as cnnjax's lenet5: c1-s2-c3-s4-c5-f6-output, tanh, 2x2 average pooling, 32x32x1 input.

Initialisation follows torchvision (He normal fan_out convolutions, BN 1 and 0, VGG linear
N(0, 0.01)); PyTorch's defaults elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnjax.convert.io import ConvertError


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: x[:, :, ::s, ::s] with zero channels appended up to `channels`."""

    def __init__(self, stride: int, channels: int) -> None:
        super().__init__()
        self.stride, self.channels = stride, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.channels - x.shape[1]))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions: (N, Cin, H, W) -> (N, planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3 (with the stride), 1x1 x4: (N, Cin, H, W) -> (N, 4 planes, H/s, W/s)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _init_resnet_like(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ResNet(nn.Module):
    """torchvision's ResNet. ImageNet stem 7x7/2 conv 64 + 3x3/2 max pool, or (cifar=True) a
    3x3 conv 16 with option-A shortcuts; stages layer1..layerK; global average pool; fc."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int],
                 num_classes: int = 1000, cifar: bool = False) -> None:
        super().__init__()
        self.cifar = cifar
        width = 16 if cifar else 64
        self.inplanes = width
        if cifar:
            self.conv1 = _conv3x3(3, width)                            # (N, 16, 32, 32)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3,
                                   bias=False)                         # (N, 64, 112, 112)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        if not cifar:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # (N, 64, 56, 56)
        for i, blocks in enumerate(layers):                            # (N, w 2^i e, H/2^i, W/2^i)
            stage = self._make_layer(block, width * 2**i, blocks, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 2 ** (len(layers) - 1) * block.expansion, num_classes)
        _init_resnet_like(self)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            if self.cifar:
                downsample = ZeroPadShortcut(stride, planes * block.expansion)
            else:
                downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                           nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.cifar:
            x = self.maxpool(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


VGG_CFGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def _vgg_features(cfg: list, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG: features, AdaptiveAvgPool2d((7, 7)), classifier on 512*7*7 inputs."""

    def __init__(self, config: str, batch_norm: bool = False, num_classes: int = 1000,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _vgg_features(VGG_CFGS[config], batch_norm)   # (N, 512, H/32, W/32)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))                     # (N, 512, 7, 7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        _init_resnet_like(self)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class AlexNet(nn.Module):
    """torchvision's AlexNet: five convolutions, AdaptiveAvgPool2d((6, 6)), three linear layers
    with dropout before the first two."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),                     # (N, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),                     # (N, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))                     # (N, 256, 6, 6)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class BasicConv2d(nn.Module):
    """torchvision's GoogLeNet block: conv (no bias) -> BatchNorm2d(eps=0.001) -> ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """torchvision's Inception: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 (the paper's 5x5); pool -> 1x1."""

    def __init__(self, cin: int, n1: int, r3: int, n3: int, r5: int, n5: int, proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, n1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, r3, kernel_size=1),
                                     BasicConv2d(r3, n3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, r5, kernel_size=1),
                                     BasicConv2d(r5, n5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """torchvision's auxiliary head: adaptive 4x4 average pool, 1x1 conv 128, FC 1024, FC."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(cin, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    """torchvision's GoogLeNet; forward returns (logits, aux2, aux1) in training with aux heads, as
    torchvision's GoogLeNetOutputs(logits, aux_logits2, aux_logits1), and logits otherwise."""

    TABLE = (("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
             ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
             ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
             ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
             ("5b", 832, 384, 192, 384, 48, 128, 128))

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, *widths in self.TABLE:
            setattr(self, f"inception{name}", Inception(*widths))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor):
        if self.transform_input:
            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (logits, aux2, aux1) if aux1 is not None else logits


class LeNet5(nn.Module):
    """cnnjax's lenet5: (N, 1, 32, 32) -> c1 (N, 6, 28, 28) -> s2 14x14 -> c3 (N, 16, 10, 10) ->
    s4 5x5 -> c5 (N, 120, 1, 1) -> f6 (N, 84) -> output (N, num_classes); tanh after c1, c3, c5
    and f6."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        x = torch.flatten(torch.tanh(self.c5(x)), 1)
        return self.output(torch.tanh(self.f6(x)))


_IMAGENET_RESNETS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                     50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
                     152: (Bottleneck, [3, 8, 36, 3])}
_VGG_DEPTHS = {11: "A", 13: "B", 16: "D", 19: "E"}


def torch_model_names() -> list[str]:
    """Every name build_torch_model accepts, sorted."""
    names = ["lenet5", "alexnet_torchvision", "googlenet_torchvision"]
    names += [f"resnet{d}" for d in (*_IMAGENET_RESNETS, 20, 32, 44, 56, 110)]
    names += [f"vgg{d}{bn}" for d in _VGG_DEPTHS for bn in ("", "_bn")]
    return sorted(names)


def build_torch_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """The PyTorch reference model `name` (cnnjax's name; vgg*_bn with batch norm) with
    `num_classes` outputs, in training mode as nn.Module constructors leave it. kwargs go to
    GoogLeNet (aux_logits, transform_input); other models take none."""
    if kwargs and name != "googlenet_torchvision":
        raise ConvertError(f"the torch reference {name} takes no arguments; got {sorted(kwargs)}")
    if name == "lenet5":
        return LeNet5(num_classes)
    if name == "alexnet_torchvision":
        return AlexNet(num_classes)
    if name == "googlenet_torchvision":
        return GoogLeNet(num_classes, **kwargs)
    if name.startswith("resnet") and name[6:].isdigit():
        depth = int(name[6:])
        if depth in _IMAGENET_RESNETS:
            block, layers = _IMAGENET_RESNETS[depth]
            return ResNet(block, layers, num_classes)
        if depth in (20, 32, 44, 56, 110):
            return ResNet(BasicBlock, [(depth - 2) // 6] * 3, num_classes, cifar=True)
    if name.startswith("vgg"):
        depth, _, bn = name[3:].partition("_")
        if depth.isdigit() and int(depth) in _VGG_DEPTHS and bn in ("", "bn"):
            return VGG(_VGG_DEPTHS[int(depth)], batch_norm=bn == "bn", num_classes=num_classes)
    raise ConvertError(f"unknown torch reference model {name!r}; valid names: "
                       f"{', '.join(torch_model_names())}")
