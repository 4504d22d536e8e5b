"""Tests of disparity.distribution: schools banded by their number of events.

Oracles: the Timpson Review's published 2016/17 figures for mainstream schools (85% of
state-funded primary and secondary schools permanently excluded no pupil, 0.2% more than
10), DfE's national totals of permanent exclusions (1,255 primary and 6,385 secondary,
rounded to 5), closed forms of the binomial and Poisson band probabilities, an independent
numerical integral of the logit-normal mixture (a fine trapezoid grid with scipy's
distributions, not Gauss-Hermite), a brute-force grid maximisation of the censored
likelihood, the multinomial identity of the band statistic, and simulated schools with a
known school SD.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from disparity.dfe import read_dfe, shipped_path
from disparity.distribution import (
    BANDS,
    band_goodness_of_fit,
    band_index,
    band_probabilities,
    exclusion_distribution,
    fit_school_sd,
)
from disparity.errors import ValidationError


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- DfE, published
@pytest.fixture(scope="module")
def geographic() -> pd.DataFrame:
    return read_dfe(shipped_path("geographic"))


@pytest.fixture(scope="module")
def mainstream(geographic):
    return exclusion_distribution(geographic, "perm_excl", year="2016/17")


def test_timpson_figures_for_mainstream_schools_2016_17(mainstream):
    # Timpson Review (2019): 85% of mainstream schools permanently excluded no pupil in
    # 2016/17, and 0.2% excluded more than 10. Mainstream means the state-funded primary and
    # secondary schools of DfE's school rows (special schools out), x counted as 1 or 2.
    t = mainstream.table.set_index("band")
    assert list(t.index) == list(BANDS)
    assert t["n_schools"].sum() == 20_288  # 16,837 primary + 3,451 secondary school rows
    assert round(100 * t.loc["0", "share"]) == 85
    assert round(100 * t.loc["more than 10", "share"], 1) == 0.2
    assert t.loc["0", "n_schools"] == 17_285 and t.loc["more than 10", "n_schools"] == 47
    assert mainstream.school_types == ("State-funded primary", "State-funded secondary")


def test_suppressed_schools_are_band_1_2_not_dropped(geographic, mainstream):
    # Every 1 or 2 is published as 'x' in these rows: all 2,015 such schools are band 1-2.
    # Dropping them instead would give 94.6% with no exclusion, not the published 85%.
    rows = geographic[(geographic["geographic_level"] == "school")
                      & (geographic["year"] == "2016/17")
                      & geographic["school_type"].isin(["State-funded primary",
                                                        "State-funded secondary"])]
    n_x = int(rows["n_perm_excl_missing"].notna().sum())
    assert n_x == 2_015
    t = mainstream.table.set_index("band")
    assert t.loc["1-2", "n_schools"] == n_x
    assert pd.isna(t.loc["1-2", "n_events"])
    published = rows["n_perm_excl"].dropna()
    assert round(100 * (published == 0).mean(), 1) == 94.6  # the wrong answer
    # exact bands: events are the published counts
    for band, lo, hi in (("3-5", 3, 5), ("6-10", 6, 10), ("more than 10", 11, 10**6)):
        inside = published[(published >= lo) & (published <= hi)]
        assert t.loc[band, "n_events"] == inside.sum()
        assert t.loc[band, "n_schools"] == len(inside)


def test_band_1_2_events_agree_with_national_totals(mainstream):
    # DfE national totals (rounded to 5 each): 1,255 primary + 6,385 secondary = 7,640, so
    # the suppressed schools hold 7,640 - (published school counts) within +-4. The range
    # narrowed by the LAs' published totals must contain that, and lie inside [x, 2x].
    t = mainstream.table.set_index("band")
    published = int(t.loc[["3-5", "6-10", "more than 10"], "n_events"].sum())
    assert published == 5_076
    implied = 7_640 - published
    lo, hi = int(t.loc["1-2", "n_events_min"]), int(t.loc["1-2", "n_events_max"])
    assert 2_015 <= lo <= hi <= 4_030
    assert lo <= implied + 4 and implied - 4 <= hi
    assert hi - lo < 40  # from a range of 2,015 events to a few dozen
    # the model's point for the suppressed schools falls near (a misfit of a few per cent)
    assert abs(mainstream.suppressed_events_expected - implied) / implied < 0.06


def test_more_variation_than_equal_risk(mainstream):
    # Equal risk given size and phase cannot give 45 schools with more than 10 exclusions:
    # it expects under one; the likelihood ratio for a school SD is decisive.
    t = mainstream.table.set_index("band")
    assert t.loc["more than 10", "expected_same_risk"] < 1
    assert t.loc["more than 10", "n_schools_modelled"] == 45
    tests = mainstream.tests.set_index("test")
    assert tests.loc["school_sd_lr", "p_value"] < 1e-100
    assert tests.loc["bands_same_risk", "statistic"] > tests.loc["bands_school_sd", "statistic"]
    assert mainstream.school_sd_source == "estimated"
    # the expectations add up to the schools that enter the models
    for col in ("expected_same_risk", "expected_school_sd"):
        assert t[col].sum() == pytest.approx(t["n_schools_modelled"].sum(), rel=1e-9)
    assert t["n_schools_modelled"].sum() == 20_288 - 101  # 101 schools with headcount 0


# --------------------------------------------------------------------------- closed forms
def test_band_index():
    assert band_index([0, 1, 2, 3, 5, 6, 10, 11, 1000]).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_equal_risk_band_probabilities_closed_form():
    n = np.array([1, 30, 250, 1200])
    p = 0.003
    got = band_probabilities(n, math.log(p / (1 - p)))
    q = 1 - p
    assert got[:, 0] == pytest.approx(q**n, rel=1e-12)
    one_two = n * p * q ** (n - 1) + n * (n - 1) / 2 * p**2 * q ** (n - 2)
    assert got[:, 1] == pytest.approx(one_two, rel=1e-10)
    assert got.sum(axis=1) == pytest.approx(1.0, abs=1e-12)
    # expected number of schools with no event: sum over schools of (1 - p)^n
    assert got[:, 0].sum() == pytest.approx(float(np.sum(q**n)), rel=1e-12)
    # Poisson: P(0) = exp(-n r), and the tail is scipy's
    pois = band_probabilities(n, math.log(0.01), family="poisson")
    assert pois[:, 0] == pytest.approx(np.exp(-n * 0.01), rel=1e-12)
    assert pois[:, 4] == pytest.approx(stats.poisson.sf(10, n * 0.01), rel=1e-9, abs=1e-300)


def test_mixture_band_probabilities_against_numerical_integral():
    n, mu, sd = np.array([80, 400, 1500]), -6.5, 1.3
    z = np.linspace(-12, 12, 24_001)
    phi = stats.norm.pdf(z)
    got = band_probabilities(n, mu, sd)
    for i, ni in enumerate(n):
        prob = _expit(mu + sd * z)
        for b, (lo, hi) in enumerate(((0, 0), (1, 2), (3, 5), (6, 10))):
            band = stats.binom.cdf(hi, ni, prob) - stats.binom.cdf(lo - 1, ni, prob)
            assert got[i, b] == pytest.approx(np.trapezoid(band * phi, z), rel=1e-4, abs=1e-12)
        tail = np.trapezoid(stats.binom.sf(10, ni, prob) * phi, z)
        assert got[i, 4] == pytest.approx(tail, rel=1e-4, abs=1e-12)


def test_band_statistic_is_pearson_for_identical_schools():
    # With the same probabilities for every school, V is the multinomial covariance and
    # d' V^-1 d over four bands equals Pearson's sum (O - E)^2 / E over all five.
    p = np.array([0.6, 0.2, 0.1, 0.07, 0.03])
    observed = np.array([55, 26, 9, 7, 3])
    stat, df, pval = band_goodness_of_fit(observed, np.tile(p, (100, 1)))
    pearson = float(np.sum((observed - 100 * p) ** 2 / (100 * p)))
    assert stat == pytest.approx(pearson, rel=1e-10)
    assert df == 4 and pval == pytest.approx(stats.chi2.sf(pearson, 4), rel=1e-10)


# --------------------------------------------------------------------------- fitting
def test_equal_risk_rate_exact_and_censored():
    n = np.array([120, 300, 450, 800, 1000, 60])
    y = np.array([0, 1, 2, 4, 3, 0])
    fit = fit_school_sd(n, y)
    assert fit.rate_same_risk[0] == pytest.approx(y.sum() / n.sum(), rel=1e-6)
    # with two counts censored to {1, 2}: brute-force grid over p of the censored likelihood
    low, high = y.copy(), y.copy()
    low[[1, 2]], high[[1, 2]] = 1, 2
    fit = fit_school_sd(n, low, high)
    grid = np.linspace(1e-4, 0.01, 200_001)
    ll = np.zeros_like(grid)
    for ni, lo, hi in zip(n, low, high):
        ll += np.log(stats.binom.cdf(hi, ni, grid) - stats.binom.cdf(lo - 1, ni, grid))
    assert fit.rate_same_risk[0] == pytest.approx(grid[np.argmax(ll)], rel=1e-4)
    assert fit.loglik_same_risk[0] == pytest.approx(ll.max(), abs=1e-6)


def _mixture_loglik(n, low, high, mu, sd):
    """Log-likelihood by a trapezoid grid with scipy's binomial (independent of the code)."""
    z = np.linspace(-12, 12, 12_001)
    phi = stats.norm.pdf(z)
    prob = _expit(mu + sd * z)
    total = 0.0
    for ni, lo, hi in zip(n, low, high):
        f = stats.binom.cdf(hi, ni, prob) - stats.binom.cdf(lo - 1, ni, prob)
        total += math.log(np.trapezoid(f * phi, z))
    return total


def test_school_sd_fit_is_the_maximum_of_an_independent_likelihood():
    rng = np.random.default_rng(4)
    n = rng.integers(100, 1500, 80)
    y = rng.binomial(n, _expit(-6.0 + 1.0 * rng.standard_normal(80)))
    low, high = y.astype(float), y.astype(float)
    x = (y >= 1) & (y <= 2)
    low[x], high[x] = 1, 2
    fit = fit_school_sd(n, low, high)
    mu, sd = float(fit.intercept[0]), float(fit.school_sd[0])
    at = _mixture_loglik(n, low, high, mu, sd)
    assert fit.loglik[0] == pytest.approx(at, abs=1e-3)  # quadrature error ~1e-6 a school
    for dmu, dsd in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
        assert _mixture_loglik(n, low, high, mu + dmu, sd + dsd) < at


def test_school_sd_recovered_from_simulated_schools():
    rng = np.random.default_rng(20170719)
    k = 4_000
    n = rng.integers(150, 1500, k)
    y = rng.binomial(n, _expit(-6.2 + 0.8 * rng.standard_normal(k)))
    fit = fit_school_sd(n, y)
    assert abs(float(fit.school_sd[0]) - 0.8) < 0.12
    assert abs(float(fit.intercept[0]) + 6.2) < 0.12
    assert fit.converged
    _, df, p = fit.lr_test()
    assert df == 1 and p < 1e-20


def test_no_school_variation_gives_a_small_sd_and_no_rejection():
    rng = np.random.default_rng(7)
    n = rng.integers(150, 1500, 1_500)
    y = rng.binomial(n, 0.003)
    fit = fit_school_sd(n, y)
    _, _, p = fit.lr_test()
    assert float(fit.school_sd[0]) < 0.2
    assert p > 0.01


def test_strata_and_given_sd():
    rng = np.random.default_rng(9)
    n = rng.integers(150, 1500, 2_000)
    stratum = np.where(np.arange(2_000) % 2 == 0, "primary", "secondary")
    mu = np.where(stratum == "primary", -8.0, -6.0)
    y = rng.binomial(n, _expit(mu + 0.7 * rng.standard_normal(2_000)))
    fit = fit_school_sd(n, y, stratum=stratum, school_sd={"primary": 0.7, "secondary": 0.7})
    assert fit.strata == ("primary", "secondary") and fit.sd_given
    assert fit.school_sd.tolist() == [0.7, 0.7]
    assert fit.intercept == pytest.approx([-8.0, -6.0], abs=0.2)
    with pytest.raises(ValidationError, match="strata"):
        fit_school_sd(n, y, stratum=stratum, school_sd={"tertiary": 1.0})
    with pytest.raises(ValidationError, match="n_pupils"):
        fit_school_sd([0, 10], [0, 1])
    with pytest.raises(ValidationError, match="exceed"):
        fit_school_sd([5, 10], [6, 1])


# --------------------------------------------------------------------------- hand-built tables
def _schools():
    return pd.DataFrame({
        "year": ["2016/17"] * 7 + ["2015/16"],
        "school_type": ["State-funded primary"] * 3 + ["State-funded secondary"] * 4
        + ["State-funded primary"],
        "n_pupils": [200, 250, 300, 900, 1000, 1100, 0, 300],
        "n_perm_excl": [0, None, 0, 4, 12, None, 3, 5],
        "n_perm_excl_missing": [None, "x: suppressed", None, None, None, "x: suppressed",
                                None, None],
    })


def test_hand_built_table():
    d = exclusion_distribution(_schools())
    t = d.table
    assert t["n_schools"].tolist() == [2, 2, 2, 0, 1]
    assert t["share"].tolist() == pytest.approx([2 / 7, 2 / 7, 2 / 7, 0, 1 / 7])
    assert t["n_events_min"].tolist() == [0, 2, 7, 0, 12]
    assert t["n_events_max"].tolist() == [0, 4, 7, 0, 12]
    assert pd.isna(t.loc[1, "n_events"]) and t.loc[2, "n_events"] == 7
    # the school with no headcount is banded but not modelled
    assert t["n_schools_modelled"].tolist() == [2, 2, 1, 0, 1]
    assert any("headcount of 0" in n for n in d.notes)
    assert d.rates["stratum"].tolist() == ["State-funded primary", "State-funded secondary"]
    # equal risk in the primary stratum: its MLE with one school censored to {1, 2}
    assert set(d.tests["test"]) == {"school_sd_lr", "bands_same_risk", "bands_school_sd"}


def test_la_totals_narrow_the_suppressed_events():
    schools = pd.DataFrame({
        "geographic_level": ["school"] * 6 + ["la"] * 3,
        "year": ["2016/17"] * 9,
        "la": ["A", "A", "A", "B", "B", "C", "A", "B", "C"],
        "school_type": ["State-funded secondary"] * 9,
        "n_pupils": [900, 800, 700, 600, 500, 400, 2400, 1100, 400],
        "n_perm_excl": [None, None, 5, None, None, None, 8, None, None],
        "n_perm_excl_missing": ["x", "x", None, "x", "x", "x", None, "x", None],
    })
    d = exclusion_distribution(schools, school_type="State-funded secondary")
    band = d.table.set_index("band").loc["1-2"]
    # LA A: total 8 - 5 published = 3 in two x schools (exact); LA B: total is x (1 or 2)
    # with two x schools, so both are 1 (exactly 2); LA C: no usable total: 1 to 2.
    assert band["n_schools"] == 5
    assert (band["n_events_min"], band["n_events_max"]) == (3 + 2 + 1, 3 + 2 + 2)
    assert any("narrow" in n for n in d.notes)


def test_bad_requests():
    with pytest.raises(ValidationError, match="school type"):
        exclusion_distribution(_schools(), school_type="Academy")
    with pytest.raises(ValidationError, match="year"):
        exclusion_distribution(_schools(), year="2030/31")
    with pytest.raises(ValidationError, match="n_fixed_excl"):
        exclusion_distribution(_schools(), "fixed_excl")


# --------------------------------------------------------------------------- plot
def test_distribution_plot_draws_the_table(mainstream):
    pytest.importorskip("matplotlib")
    from disparity.report.plots import distribution_plot

    fig = distribution_plot(mainstream.table, title="Permanent exclusions per school")
    bars = fig.axes[0].patches
    assert len(bars) == 3 * len(BANDS)
    heights = [b.get_height() for b in bars]
    t = mainstream.table
    expected = np.concatenate([np.maximum(t[c].to_numpy(float), 0.1) for c in
                               ("n_schools_modelled", "expected_same_risk",
                                "expected_school_sd")])
    assert heights == pytest.approx(expected.tolist())
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(BANDS)
    with pytest.raises(ValidationError, match="expected_school_sd"):
        distribution_plot(t.drop(columns="expected_school_sd"), title="x")
