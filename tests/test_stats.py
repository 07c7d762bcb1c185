"""cnnjax.stats: t intervals against scipy's own tests and printed t tables; the verdict rules on
intervals placed by hand around each boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cnnjax import stats

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("n", [3, 6, 8])
def test_paired_interval_matches_scipy_ttest_rel(n):
    a, b = RNG.normal(0.1, 0.02, n), RNG.normal(0.09, 0.02, n)
    d = stats.paired_interval(list(b), list(a))
    ref = scipy_stats.ttest_rel(b, a).confidence_interval(0.95)
    assert d.mean == pytest.approx(float(np.mean(b - a)), abs=1e-15)
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert (d.df, d.n) == (n - 1, n)


@pytest.mark.parametrize(("na", "nb"), [(3, 3), (6, 4), (2, 8)])
def test_welch_interval_matches_scipy_ttest_ind(na, nb):
    a, b = RNG.normal(0.1, 0.01, na), RNG.normal(0.12, 0.03, nb)
    d = stats.welch_interval(list(b), list(a))
    ref = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high), rel=1e-12)


@pytest.mark.parametrize(("df", "t975"), [(2, 4.303), (5, 2.571), (7, 2.365)])
def test_half_width_uses_the_printed_t_quantiles(df, t975):
    """Half-width / standard error is the 0.975 quantile of t (printed tables, 3 decimals)."""
    values = [0.0] * df + [float(df + 1)]  # mean 1, so the half-width is t * sd / sqrt(n)
    d = stats.one_sample_interval(values)
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    assert (d.high - d.mean) / se == pytest.approx(t975, abs=5e-4)


def test_at_rescales_to_another_level():
    d = stats.one_sample_interval([0.1, 0.3, 0.2, 0.5])
    ref = scipy_stats.ttest_1samp([0.1, 0.3, 0.2, 0.5], 0).confidence_interval(0.90)
    assert (d.at(0.90).low, d.at(0.90).high) == pytest.approx((ref.low, ref.high), rel=1e-12)


def test_one_value_has_an_unbounded_interval():
    d = stats.one_sample_interval([0.3])
    assert (d.low, d.high, d.df) == (-math.inf, math.inf, 0)
    assert stats.verdict(d, stats.Rule(direction=1)) == stats.INCONCLUSIVE


def _around(low: float, high: float, level: float = 0.95, df: float = 5) -> stats.Interval:
    return stats.Interval((low + high) / 2, low, high, level, df, int(df) + 1)


@pytest.mark.parametrize(("low", "high", "direction", "expected"), [
    (0.1, 0.5, 1, stats.REPRODUCED), (0.1, 0.5, -1, stats.CONTRADICTED),
    (-0.5, -0.1, -1, stats.REPRODUCED), (-0.5, -0.1, 1, stats.CONTRADICTED),
    (-0.1, 0.5, 1, stats.INCONCLUSIVE), (-0.5, 0.1, -1, stats.INCONCLUSIVE),
])
def test_differs_rule(low, high, direction, expected):
    assert stats.verdict(_around(low, high), stats.Rule(direction=direction)) == expected


def test_equivalence_uses_the_90_percent_interval():
    # 95% interval (-0.4, 0.4) at 5 df: the 90% interval is 2.015 / 2.571 of it, (-0.313, 0.313).
    d = _around(-0.4, 0.4)
    assert stats.verdict(d, stats.Rule(direction=1, margin=0.35)) == stats.EQUIVALENT
    assert stats.verdict(d, stats.Rule(direction=1, margin=0.30)) == stats.INCONCLUSIVE
    assert stats.verdict(_around(0.1, 0.2), stats.Rule(direction=-1, margin=1.0)) == \
        stats.CONTRADICTED  # a sure difference is not called equivalent, however small


@pytest.mark.parametrize(("low", "high", "direction", "expected"), [
    (-0.25, 0.4, 1, stats.REPRODUCED),      # loses at most 0.25 < 0.3
    (-0.35, 0.4, 1, stats.INCONCLUSIVE),    # could lose 0.35
    (-0.8, -0.05, 1, stats.CONTRADICTED),   # surely loses, maybe more than the margin
    (-0.29, -0.05, 1, stats.REPRODUCED),    # surely loses, but within the margin
    (-0.4, 0.25, -1, stats.REPRODUCED),     # direction -1: the worse side is +
])
def test_no_worse_rule(low, high, direction, expected):
    rule = stats.Rule(direction=direction, claim="no_worse", margin=0.3)
    assert stats.verdict(_around(low, high), rule) == expected


@pytest.mark.parametrize("kwargs", [dict(direction=0), dict(direction=1, claim="better"),
                                    dict(direction=1, claim="no_worse"),
                                    dict(direction=1, margin=-1.0), dict(direction=1, level=1.0)])
def test_bad_rules_raise(kwargs):
    with pytest.raises(ValueError):
        stats.Rule(**kwargs)


def test_mismatched_pairs_raise():
    with pytest.raises(ValueError, match="3 values against 2"):
        stats.paired_interval([1, 2, 3], [1, 2])
