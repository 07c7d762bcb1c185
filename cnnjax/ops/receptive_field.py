"""Receptive-field arithmetic for a stack of convolution / pooling layers.

Recurrences (Araujo, Norris & Sim 2019, "Computing Receptive Fields of Convolutional Neural
Networks", Distill; Dumoulin & Visin 2016), per layer with kernel k, stride s, dilation d,
padding p (low side) and k_eff = (k - 1) d + 1:

    r_out = r_in + (k_eff - 1) j_in               (receptive-field size, in input pixels)
    j_out = j_in s                                (jump: input pixels between adjacent outputs)
    start_out = start_in + ((k_eff - 1) / 2 - p) j_in   (centre of the first output's field)

starting from r = 1, j = 1, start = 0 (the centre of input pixel 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cnnjax.ops.errors import OpError
from cnnjax.ops.padding import effective_kernel_size


@dataclass(frozen=True)
class LayerGeometry:
    """One layer's window along an axis: kernel size, stride, dilation, low-side padding."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's outputs, in input-pixel units.

    size: extent r of one output's field; jump: distance j between neighbouring outputs' fields;
    start: centre of the first output's field (input pixel centres at 0, 1, 2, ...; negative
    values lie in the padding).
    """

    size: int
    jump: int
    start: float


def receptive_field(layers: Sequence[LayerGeometry | tuple[int, ...]]) -> list[ReceptiveField]:
    """Receptive field after each layer of a stack; one ReceptiveField per layer.

    Each layer is a LayerGeometry or a tuple in its field order (kernel, stride, dilation,
    padding). Two 3x3 stride-1 convolutions see 5x5 and three see 7x7 (Simonyan & Zisserman
    2015, Sec. 2.3); AlexNet's conv1 (11, stride 4) and a 3/2 max pool see 19 with jump 8.
    """
    size, jump, start = 1, 1, 0.0
    out = []
    for i, layer in enumerate(layers):
        geo = layer if isinstance(layer, LayerGeometry) else LayerGeometry(*layer)
        if geo.kernel < 1 or geo.stride < 1 or geo.dilation < 1 or geo.padding < 0:
            raise OpError(f"layers[{i}]: kernel, stride, dilation must be >= 1 and "
                          f"padding >= 0, got {geo}")
        k_eff = effective_kernel_size(geo.kernel, geo.dilation)
        start = start + ((k_eff - 1) / 2 - geo.padding) * jump
        size = size + (k_eff - 1) * jump
        jump = jump * geo.stride
        out.append(ReceptiveField(size=size, jump=jump, start=start))
    return out
