"""Funnel-plot limits (Spiegelhalter 2005) checked against arithmetic written out here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import mstats

from disparity import config
from disparity.errors import SpecError, ValidationError
from disparity.report.funnel import (
    additive_tau2,
    funnel_limits,
    funnel_proportions,
    funnel_ratios,
    winsorised_phi,
)


def _limit(lim: pd.DataFrame, size: float, prob: float, side: str) -> float:
    row = lim[(lim["size"] == size) & (lim["prob"] == prob)]
    assert len(row) == 1
    return float(row[side].iloc[0])


def test_normal_limits_by_hand():
    lim = funnel_limits(0.1, [100, 2500], [0.95, 0.998], method="normal")
    # 0.1 +/- z * sqrt(0.1 * 0.9 / n); z = 1.959964 (97.5%) and 3.090232 (99.9%)
    z95, z998 = stats.norm.ppf(0.975), stats.norm.ppf(0.999)
    assert z95 == pytest.approx(1.959964, abs=1e-6) and z998 == pytest.approx(3.090232, abs=1e-6)
    assert _limit(lim, 100, 0.95, "high") == pytest.approx(0.1 + z95 * 0.03)
    assert _limit(lim, 100, 0.95, "low") == pytest.approx(0.1 - z95 * 0.03)
    assert _limit(lim, 2500, 0.998, "high") == pytest.approx(0.1 + z998 * 0.006)
    assert _limit(lim, 2500, 0.998, "low") == pytest.approx(0.1 - z998 * 0.006)


def test_exact_binomial_limits_by_hand():
    # Spiegelhalter (2005, appendix A.1.1): r = smallest count with P(R <= r) >= p,
    # alpha = (P(R <= r) - p) / (P(R = r)), limit = (r - alpha) / n.
    n, theta = 200, 0.05
    lim = funnel_limits(theta, [n], [0.95, 0.998])
    for prob in (0.95, 0.998):
        for side, p in (("low", (1 - prob) / 2), ("high", 1 - (1 - prob) / 2)):
            r = stats.binom.ppf(p, n, theta)
            cdf_r, cdf_below = stats.binom.cdf(r, n, theta), stats.binom.cdf(r - 1, n, theta)
            assert cdf_below < p <= cdf_r
            alpha = (cdf_r - p) / (cdf_r - cdf_below)
            assert _limit(lim, n, prob, side) == pytest.approx((r - alpha) / n, rel=1e-12)
    # the numbers themselves: 97.5% point of Binomial(200, 0.05) is 16 (P(R<=15) = 0.9556,
    # P(R<=16) = 0.9781), so the interpolated upper 95% limit lies in (15/200, 16/200]
    assert stats.binom.ppf(0.975, n, theta) == 16
    assert 15 / 200 < _limit(lim, n, 0.95, "high") <= 16 / 200


def test_exact_limits_approach_normal_for_large_sizes():
    exact = funnel_limits(0.2, [1_000_000], [0.998])
    normal = funnel_limits(0.2, [1_000_000], [0.998], method="normal")
    half_width = normal["high"].iloc[0] - 0.2
    # the binomial's skewness is small at n = 10^6: within 1% of the half width
    assert exact["high"].iloc[0] == pytest.approx(normal["high"].iloc[0], abs=0.01 * half_width)
    assert exact["low"].iloc[0] == pytest.approx(normal["low"].iloc[0], abs=0.01 * half_width)


def test_exact_poisson_limits_for_ratios_by_hand():
    e = 20.0
    lim = funnel_limits(1.0, [e], [0.998], kind="ratio")
    p = 0.999
    r = stats.poisson.ppf(p, e)
    cdf_r, cdf_below = stats.poisson.cdf(r, e), stats.poisson.cdf(r - 1, e)
    alpha = (cdf_r - p) / (cdf_r - cdf_below)
    assert _limit(lim, e, 0.998, "high") == pytest.approx((r - alpha) / e, rel=1e-12)


def test_phi_and_tau2_widen_limits():
    base = funnel_limits(0.1, [400], [0.95], method="normal")
    wide = funnel_limits(0.1, [400], [0.95], method="normal", phi=4.0)
    # sqrt(4) = 2: the half width doubles
    assert wide["high"].iloc[0] - 0.1 == pytest.approx(2 * (base["high"].iloc[0] - 0.1))
    # phi below 1 is not used to narrow limits
    same = funnel_limits(0.1, [400], [0.95], method="normal", phi=0.5)
    assert same["high"].iloc[0] == pytest.approx(base["high"].iloc[0])
    # additive: s^2 = 0.1*0.9/400 = 0.000225; with tau2 = 0.000675 the sd is sqrt(0.0009) = 0.03
    add = funnel_limits(0.1, [400], [0.95], method="normal", tau2=0.000675)
    assert add["high"].iloc[0] == pytest.approx(0.1 + stats.norm.ppf(0.975) * 0.03)


def test_winsorising_by_hand():
    z = [-4.0, -1.0, -0.5, 0.0, 0.2, 0.3, 0.5, 1.0, 1.5, 6.0]
    # 10 values, 10%: one at each end. -4 -> -1 and 6 -> 1.5:
    # squares 1 + 1 + 0.25 + 0 + 0.04 + 0.09 + 0.25 + 1 + 2.25 + 2.25 = 8.13
    assert winsorised_phi(z) == pytest.approx(0.813)
    # the same rule as scipy's winsorize
    expected = np.mean(np.asarray(mstats.winsorize(np.array(z), limits=(0.1, 0.1))) ** 2)
    assert winsorised_phi(z) == pytest.approx(expected)
    # 25 values at 10%: floor(2.5) = 2 at each end
    z25 = np.arange(25.0) - 12
    expected25 = np.mean(np.asarray(mstats.winsorize(z25, limits=(0.1, 0.1))) ** 2)
    assert winsorised_phi(z25) == pytest.approx(expected25)


def test_additive_tau2_by_hand():
    # se = 0.1, 0.2: w = 100, 25; sum w = 125, sum w^2 = 10625, 10625/125 = 85
    # tau2 = (2 * 3 - 1) / (125 - 85) = 5 / 40
    assert additive_tau2(3.0, [0.1, 0.2]) == pytest.approx(0.125)
    assert additive_tau2(0.2, [0.1, 0.2]) == 0.0


def _binomial_units(rng, n_units, p, *, spread=0.0):
    sizes = rng.integers(500, 20_000, n_units)
    probs = np.full(n_units, p)
    if spread:
        probs = np.clip(p * np.exp(rng.normal(0, spread, n_units)), 1e-4, 0.5)
    return pd.DataFrame({"la": [f"u{i}" for i in range(n_units)], "n_pupils": sizes,
                         "n_events": rng.binomial(sizes, probs)})


def test_phi_without_overdispersion_matches_winsorised_normal():
    # Binomial data with one p: z-scores are close to standard normal. Winsorising 10% in
    # each tail, E[z_w^2] = 1 - 0.2 - 2 q pdf(q) + 0.2 q^2 with q = norm.ppf(0.9)
    # (integral of z^2 pdf over (-q, q), plus the winsorised tails) = 0.679, not 1: the
    # winsorised estimate is below 1 when there is no over-dispersion, so no adjustment.
    q = stats.norm.ppf(0.9)
    expected = 1 - 0.2 - 2 * q * stats.norm.pdf(q) + 0.2 * q**2
    assert expected == pytest.approx(0.679, abs=1e-3)
    rng = np.random.default_rng(config.SEED)
    f = funnel_proportions(_binomial_units(rng, 2000, 0.05), unit="la")
    assert f.phi == pytest.approx(expected, abs=0.06)
    np.testing.assert_allclose(f.units["z_adjusted"], f.units["z"])  # phi < 1: unchanged
    # with no over-dispersion about 0.2% of units fall outside the 99.8% limits
    assert f.units["outside_998"].mean() < 0.01


def test_phi_with_overdispersion():
    rng = np.random.default_rng(config.SEED + 1)
    t = _binomial_units(rng, 300, 0.05, spread=0.3)
    f = funnel_proportions(t, unit="la")
    # between-unit sd of 0.3 on the log scale at p = 0.05 and n ~ 10,000: binomial sd of a
    # rate is sqrt(0.05 * 0.95 / 10000) = 0.0022, between-unit sd ~ 0.015, so phi >> 1
    assert f.phi > 5
    np.testing.assert_allclose(f.units["z_adjusted"], f.units["z"] / np.sqrt(f.phi))
    assert f.units["outside_998"].sum() < f.units["outside_998_unadjusted"].sum()
    fa = funnel_proportions(t, unit="la", overdispersion="additive")
    s2 = f.target * (1 - f.target) / t["n_pupils"].to_numpy()
    assert fa.tau2 > 0
    np.testing.assert_allclose(fa.units["z_adjusted"],
                               (fa.units["rate"] - fa.target) / np.sqrt(s2 + fa.tau2))


def test_funnel_proportions_columns_and_z_by_hand():
    t = pd.DataFrame({"la": ["a", "b", "c"], "n_pupils": [1000, 3000, 6000],
                      "n_events": [30, 30, 40]})
    f = funnel_proportions(t, unit="la", overdispersion="none")
    # pooled target 100 / 10000 = 0.01; z for a = (0.03 - 0.01) / sqrt(0.01 * 0.99 / 1000)
    assert f.target == pytest.approx(0.01)
    assert f.units.loc[0, "z"] == pytest.approx(0.02 / np.sqrt(0.0099 / 1000))
    assert list(f.units.columns[:8]) == ["unit", "n_pupils", "n_events", "rate", "z",
                                         "z_adjusted", "outside_95", "outside_998"]
    # a: 30 events where 10 are expected: far above the 99.8% limit; flags follow limits
    lim = f.limits(t["n_pupils"], adjusted=False)
    high = lim[lim["prob"] == 0.998]["high"].to_numpy()
    low = lim[lim["prob"] == 0.998]["low"].to_numpy()
    rate = f.units["rate"].to_numpy()
    np.testing.assert_array_equal(f.units["outside_998"], (rate > high) | (rate < low))
    assert f.units.loc[0, "outside_998"]


def test_funnel_ratios_z_by_hand():
    t = pd.DataFrame({"la": ["a", "b"], "n_events": [30, 18], "expected": [20.0, 18.0]})
    f = funnel_ratios(t, unit="la", overdispersion="none")
    # z = (O - E) / sqrt(E): (30 - 20) / sqrt(20) = 2.236
    assert f.units["z"].tolist() == pytest.approx([10 / np.sqrt(20), 0.0])
    assert f.units["ratio"].tolist() == pytest.approx([1.5, 1.0])


def test_bad_inputs():
    with pytest.raises(ValidationError, match="sizes"):
        funnel_limits(0.1, [0, 10])
    with pytest.raises(ValidationError, match="target"):
        funnel_limits(1.2, [10])
    with pytest.raises(SpecError, match="multiplicative, additive, none"):
        funnel_proportions(pd.DataFrame({"la": ["a"], "n_pupils": [10], "n_events": [1]}),
                           unit="la", overdispersion="both")
    with pytest.raises(ValidationError, match="'n_events'"):
        funnel_proportions(pd.DataFrame({"la": ["a"], "n_pupils": [10], "n_events": [None]}),
                           unit="la")
