"""Intervals and preregistered verdicts for the experiments' comparisons of two arms over seeds.

    d = paired_interval(lrn_errors, none_errors)        # per-seed differences, t interval
    verdict(d, Rule(direction=-1))                      # 'reproduced' if d < 0 surely, ...

An experiment states its Rule before its runs (experiments/*/README.md); the verdict then follows
from the numbers alone. Differences are arm B minus arm A; `direction` is the sign the paper's
claim gives that difference (+1: B larger). Student-t intervals: paired over seeds where the two
arms of a seed share their initial weights and batches, Welch's otherwise. Pure functions.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

from scipy import stats as _scipy

from cnnjax.errors import UserError

REPRODUCED, CONTRADICTED, EQUIVALENT, INCONCLUSIVE = ("reproduced", "contradicted", "equivalent",
                                                      "inconclusive")


@dataclasses.dataclass(frozen=True)
class Interval:
    """mean of B - A with its two-sided `level` confidence interval [low, high] (t with df degrees
    of freedom; df 0 when there are too few values for one: then low = -inf, high = +inf)."""

    mean: float
    low: float
    high: float
    level: float
    df: float
    n: int

    def at(self, level: float) -> Interval:
        """The same estimate with the interval at another level."""
        half = _half_width(self, level)
        return dataclasses.replace(self, low=self.mean - half, high=self.mean + half, level=level)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A preregistered decision rule for the difference B - A.

    claim 'differs': reproduced when the `level` interval excludes 0 on the side of `direction`,
    contradicted when it excludes 0 on the other side, equivalent when `margin` > 0 and the
    (1 - 2 (1 - level)) interval (90% for 95%: two one-sided tests) lies inside (-margin, margin),
    inconclusive otherwise.
    claim 'no_worse' (B loses at most `margin` in the `direction` sense): reproduced when the
    `level` interval's worse end is within the margin, contradicted when the whole interval is on
    the worse side of 0 and not within the margin, inconclusive otherwise.
    """

    direction: int
    claim: str = "differs"
    margin: float = 0.0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.direction not in (-1, 1):
            raise UserError(f"Rule.direction must be +1 or -1, got {self.direction!r}")
        if self.claim not in ("differs", "no_worse"):
            raise UserError(f"Rule.claim must be 'differs' or 'no_worse', got {self.claim!r}")
        if self.margin < 0 or (self.claim == "no_worse" and self.margin == 0):
            raise UserError(f"Rule.margin must be >= 0 (> 0 for 'no_worse'), got {self.margin}")
        if not 0.5 < self.level < 1:
            raise UserError(f"Rule.level must be in (0.5, 1), got {self.level}")


def paired_interval(b: Sequence[float], a: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of the per-seed differences b[i] - a[i] and its t interval (n - 1 df)."""
    if len(a) != len(b):
        raise UserError(f"paired_interval: {len(b)} values against {len(a)}")
    return one_sample_interval([y - x for x, y in zip(a, b, strict=True)], level)


def one_sample_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of `values` and its t interval (n - 1 df)."""
    n = len(values)
    if n == 0:
        raise UserError("one_sample_interval: no values")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, -math.inf, math.inf, level, 0, 1)
    se = statistics.stdev(values) / math.sqrt(n)
    return _interval(mean, se, n - 1, level, n)


def welch_interval(b: Sequence[float], a: Sequence[float], level: float = 0.95) -> Interval:
    """mean(b) - mean(a) with Welch's t interval (Welch-Satterthwaite df)."""
    if len(a) < 2 or len(b) < 2:
        mean = statistics.fmean(b) - statistics.fmean(a)
        return Interval(mean, -math.inf, math.inf, level, 0, len(a) + len(b))
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    mean = statistics.fmean(b) - statistics.fmean(a)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    return _interval(mean, se, df, level, len(a) + len(b))


def verdict(d: Interval, rule: Rule) -> str:
    """REPRODUCED, CONTRADICTED, EQUIVALENT or INCONCLUSIVE for `d` (B - A) under `rule`."""
    d = d.at(rule.level)
    toward = (d.low, d.high) if rule.direction > 0 else (-d.high, -d.low)  # as if direction +1
    low, high = toward
    if rule.claim == "no_worse":
        if low > -rule.margin:
            return REPRODUCED
        if high < 0:
            return CONTRADICTED
        return INCONCLUSIVE
    if low > 0:
        return REPRODUCED
    if high < 0:
        return CONTRADICTED
    if rule.margin > 0:
        narrow = d.at(1 - 2 * (1 - rule.level))
        if -rule.margin < narrow.low and narrow.high < rule.margin:
            return EQUIVALENT
    return INCONCLUSIVE


def _interval(mean: float, se: float, df: float, level: float, n: int) -> Interval:
    half = _scipy.t.ppf(0.5 + level / 2, df) * se
    return Interval(mean, mean - half, mean + half, level, df, n)


def _half_width(d: Interval, level: float) -> float:
    if d.df == 0:
        return math.inf
    old = _scipy.t.ppf(0.5 + d.level / 2, d.df)
    return (d.high - d.mean) / old * _scipy.t.ppf(0.5 + level / 2, d.df)
