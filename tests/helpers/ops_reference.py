"""Independent numpy oracles for cnnjax.ops tests: plain loops over the defining formulas.

Nothing here calls cnnjax; padding amounts are computed from their own definitions.
"""

from __future__ import annotations

import math

import numpy as np


def same_pads(m: int, k: int, s: int, d: int) -> tuple[int, int]:
    """XLA's SAME rule: output ceil(m / s), total padding split with the smaller half first."""
    k_eff = (k - 1) * d + 1
    total = max((math.ceil(m / s) - 1) * s + k_eff - m, 0)
    return total // 2, total - total // 2


def pads_for(padding, x_spatial, kernel_spatial, stride, dilation):
    """(lo, hi) per axis for the padding forms the ops accept, from first principles."""
    out = []
    for axis, (m, k) in enumerate(zip(x_spatial, kernel_spatial, strict=True)):
        s, d = stride[axis], dilation[axis]
        if padding == "VALID":
            out.append((0, 0))
        elif padding == "SAME":
            out.append(same_pads(m, k, s, d))
        elif padding == "FULL":
            out.append(((k - 1) * d, (k - 1) * d))
        elif isinstance(padding, int):
            out.append((padding, padding))
        else:
            out.append(tuple(padding[axis]))
    return out


def conv2d_loop(x, w, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """y[n,i,j,o] = sum_{a,b,c} xp[n, i sh + a dh, j sw + b dw, g(o) Cin/g + c] w[a,b,c,o]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = np.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    n, hp, wp, _ = xp.shape
    kh, kw, cin_g, cout = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho = (hp - (kh - 1) * dh - 1) // sh + 1
    wo = (wp - (kw - 1) * dw - 1) // sw + 1
    cout_g = cout // groups
    y = np.zeros((n, ho, wo, cout))
    for i in range(ho):
        for j in range(wo):
            for o in range(cout):
                g = o // cout_g
                for a in range(kh):
                    for b in range(kw):
                        patch = xp[:, i * sh + a * dh, j * sw + b * dw, g * cin_g:(g + 1) * cin_g]
                        y[:, i, j, o] += patch @ w[a, b, :, o]
    return y


def conv1d_loop(x, w, stride=1, pads=(0, 0), dilation=1, groups=1):
    """y[n,i,o] = sum_{t,c} xp[n, i s + t d, g(o) Cin/g + c] w[t,c,o], scalar loops (d2l style)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = np.pad(x, ((0, 0), tuple(pads), (0, 0)))
    n, lp, _ = xp.shape
    k, cin_g, cout = w.shape
    lo = (lp - (k - 1) * dilation - 1) // stride + 1
    cout_g = cout // groups
    y = np.zeros((n, lo, cout))
    for b in range(n):
        for i in range(lo):
            for o in range(cout):
                g = o // cout_g
                for t in range(k):
                    for c in range(cin_g):
                        y[b, i, o] += xp[b, i * stride + t * dilation, g * cin_g + c] * w[t, c, o]
    return y


def pool_loop(x, window, stride, pads, kind, count_include_pad=True):
    """Max or mean over each window of x (N, H, W, C); padded cells are -inf for max, zero for
    the mean (divided by the full window or by the count of real cells)."""
    x = np.asarray(x, np.float64)
    n, h, w_, c = x.shape
    (wh, ww), (sh, sw) = window, stride
    hp, wp = h + sum(pads[0]), w_ + sum(pads[1])
    ho, wo = (hp - wh) // sh + 1, (wp - ww) // sw + 1
    y = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            rows = [r - pads[0][0] for r in range(i * sh, i * sh + wh)]
            cols = [q - pads[1][0] for q in range(j * sw, j * sw + ww)]
            real = [(r, q) for r in rows for q in cols if 0 <= r < h and 0 <= q < w_]
            vals = np.stack([x[:, r, q, :] for r, q in real])
            if kind == "max":
                y[:, i, j, :] = vals.max(axis=0)
            else:
                y[:, i, j, :] = vals.sum(axis=0) / (wh * ww if count_include_pad else len(real))
    return y


def lrn_loop(x, size, k, alpha, beta):
    """AlexNet Sec. 3.3: b_i = a_i / (k + alpha sum_{j=max(0,i-size//2)}^{min(C-1,i+(size-1)//2)}
    a_j^2)^beta."""
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    y = np.zeros_like(x)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c - 1, i + (size - 1) // 2)
        s = np.sum(x[..., lo:hi + 1] ** 2, axis=-1)
        y[..., i] = x[..., i] / (k + alpha * s) ** beta
    return y


def dilate_kernel(w2d, d):
    """Insert d - 1 zeros between the taps of a 2-D kernel (for the scipy oracle)."""
    kh, kw = w2d.shape
    out = np.zeros(((kh - 1) * d + 1, (kw - 1) * d + 1))
    out[::d, ::d] = w2d
    return out


# Rounding-error bounds for sums, shared by the tests that compare a float32 (or bfloat16) result
# with a float64 oracle or with another implementation that sums in another order. No CPU's kernels
# promise an order (oneDNN, Eigen and XLA's own loops block and vectorise by the CPU's vector width),
# so a tolerance must hold for every order: it is derived from the number of terms, not measured.
F32_U = 2.0**-24  # unit roundoff of float32
BF16_U = 2.0**-8  # unit roundoff of bfloat16 (8 significand bits)
LAMBDA = 6.0      # the probabilistic bound fails with probability below 2 k exp(-18) = k * 3e-8


def sum_rtol(k: int, u: float = F32_U) -> float:
    """The error of a k-term sum (or dot product) computed in any order with unit roundoff u,
    relative to the sum of the absolute values of its terms: gamma_k = k u / (1 - k u) in the worst
    case (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5), and lambda sqrt(k) u with
    high probability (Higham & Mary 2019, Thm 3.1, independent rounding errors); the smaller."""
    worst = k * u / (1 - k * u) if k * u < 1 else math.inf
    return min(worst, LAMBDA * math.sqrt(k) * u)


def assert_within_sum_bound(got, want, abs_sum, k: int, *, u: float = F32_U, sides: int = 1,
                            err_msg: str = "") -> None:
    """|got - want| <= sides * sum_rtol(k, u) * abs_sum entry by entry, where abs_sum holds each
    entry's sum of |terms| (the oracle run on absolute values) and k bounds its number of terms.
    sides=2 when both sides are rounded sums (two implementations, two orders); the float64
    oracle's own error (k * 2**-53) is negligible against float32's."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (err_msg, got.shape, want.shape)
    bound = sides * sum_rtol(k, u) * np.broadcast_to(np.asarray(abs_sum, np.float64), want.shape)
    error = np.abs(got - want)
    bad = ~(error <= bound)  # NaN fails too
    ratio = error / np.maximum(bound, np.finfo(np.float64).tiny)
    assert not bad.any(), (f"{err_msg}: {bad.sum()} of {bad.size} entries beyond the rounding "
                           f"bound for {k}-term sums; worst error / bound = {ratio.max():.3g}")


def network_rtol(k: int, layers: int, u: float = F32_U) -> float:
    """A float32 forward pass's error relative to its output's largest entry, through `layers`
    layers whose longest sums have k terms (He-initialised, so each layer keeps its input's scale):
    a layer's sums are within sum_rtol(k) of sum|t|, and sum|t| exceeds a sum of k terms of random
    signs by sqrt(k), so each layer adds sqrt(k) * sum_rtol(k) of its output's scale, and the layers'
    errors add up. Compare two float32 runs at twice this."""
    return layers * math.sqrt(k) * sum_rtol(k, u)


# Float32 error bounds, entry by entry, from the n values per group and channel (see sum_rtol),
# for ops.batch_norm and the model's batch-norm layer:
# mean: a sum of n terms and a division, off by sum_rtol(n + 1) * mean|x|. var = E[x^2] - mean^2 in
# one pass: E[x^2]'s n squares, sum and division, mean^2's error (2 |mean| times mean's), and the
# subtraction, so sum_rtol(n + 3) * (E[x^2] + 2 mean|x| |mean| + mean^2 + var): relative to var,
# that grows as (mean / std)^2, the one-pass method's cancellation. rsqrt(var + eps) inherits half
# of var's relative error (+ 2 ulp of its own); y = x k + (bias - mean k) with k = rstd * scale
# adds |x - mean| |k| times that, |k| times mean's error and four roundings.


def batch_norm_bounds(x, scale, bias, groups: int, eps: float, extra: int = 0):
    """Bounds on |float32 - exact| of batch norm's (y, mean, var) over `groups` runs of consecutive
    examples, from float64 statistics; `extra` roundings per sum (e.g. an all-reduce's levels)."""
    xg = x.astype(np.float64).reshape(groups, -1, x.shape[-1])
    n = xg.shape[1] + extra
    mean, var, mean_abs = xg.mean(1), xg.var(1), np.abs(xg).mean(1)
    mean_err = sum_rtol(n + 1) * mean_abs
    var_err = sum_rtol(n + 3) * ((xg**2).mean(1) + 2 * mean_abs * np.abs(mean) + mean**2 + var)
    k = np.abs(scale) / np.sqrt(var + eps)
    k_rel = var_err / (2 * (var + eps)) + 3 * F32_U
    y_err = (np.abs(xg - mean[:, None]) * (k * k_rel)[:, None] + (k * mean_err)[:, None]
             + 4 * F32_U * (np.abs(xg) * k[:, None] + np.abs(bias) + (np.abs(mean) * k)[:, None]))
    return y_err.reshape(x.shape), mean_err, var_err
