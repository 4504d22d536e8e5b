"""Tests for disparity.estimates: the tidy estimates table.

Fits are built by hand so every expected number is arithmetic written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from disparity.engines.base import ESTIMATE_COLUMNS, Fit
from disparity.errors import DisparityError
from disparity.estimates import estimates

#: Standard normal 97.5% quantile (Abramowitz and Stegun, Table 26.5: 1.959963985).
Z975 = 1.959963984540054
#: 95% quantile (Table 26.5: 1.644853627).
Z95 = 1.6448536269514722

GROUP_SD = pd.DataFrame(
    {
        "term": ["la", "school", "ethnicity[T.Indian]|la"],
        "estimate": [0.3, 0.5, 0.1],
        "std_error": [0.05, 0.04, 0.02],
        "conf_low": [0.21, 0.43, 0.07],
        "conf_high": [0.42, 0.59, 0.15],
    }
)


def frequentist(family: str = "binomial", **kw) -> Fit:
    return Fit(
        engine=kw.pop("engine", "ml"),
        family=family,
        terms=("Intercept", "ethnicity[T.Indian]", "sen[T.ehcp]"),
        coef=np.array([-4.0, -0.5, 1.2]),
        coef_cov=np.array([[0.01, 0.0, 0.0], [0.0, 0.04, 0.01], [0.0, 0.01, 0.09]]),
        group_sd=kw.pop("group_sd", GROUP_SD),
        **kw,
    )


def test_columns_rows_and_wald_intervals():
    table = estimates(frequentist())
    assert tuple(table.columns) == ESTIMATE_COLUMNS
    assert table["estimand"].tolist() == ["coefficient"] * 3 + ["odds_ratio"] * 2 + [
        "group_sd",
        "group_sd",
        "slope_sd",
    ]
    assert table["term"].tolist()[:5] == [
        "Intercept",
        "ethnicity[T.Indian]",
        "sen[T.ehcp]",
        "ethnicity[T.Indian]",
        "sen[T.ehcp]",
    ]
    sen = table.iloc[2]
    # se = sqrt(0.09) = 0.3; 95% Wald: 1.2 -/+ 1.96 * 0.3
    assert sen["std_error"] == pytest.approx(0.3)
    assert sen["conf_low"] == pytest.approx(1.2 - Z975 * 0.3)
    assert sen["conf_high"] == pytest.approx(1.2 + Z975 * 0.3)
    assert (table["ci_prob"] == 0.95).all() and (table["engine"] == "ml").all()


def test_ratios_are_exponentiated_coefficients():
    table = estimates(frequentist())
    ratio = table[table["estimand"] == "odds_ratio"].set_index("term")
    coef = table[table["estimand"] == "coefficient"].set_index("term")
    for term in ("ethnicity[T.Indian]", "sen[T.ehcp]"):
        assert ratio.loc[term, "estimate"] == pytest.approx(math.exp(coef.loc[term, "estimate"]))
        assert ratio.loc[term, "conf_low"] == pytest.approx(math.exp(coef.loc[term, "conf_low"]))
        assert ratio.loc[term, "conf_high"] == pytest.approx(math.exp(coef.loc[term, "conf_high"]))
    # Delta method: se(exp(b)) = exp(b) se(b) = exp(-0.5) * 0.2
    assert ratio.loc["ethnicity[T.Indian]", "std_error"] == pytest.approx(math.exp(-0.5) * 0.2)
    assert "Intercept" not in ratio.index


def test_count_families_give_rate_ratios():
    table = estimates(frequentist("poisson"))
    assert (table["estimand"] == "rate_ratio").sum() == 2
    assert (table["estimand"] == "odds_ratio").sum() == 0


def test_ci_prob_override_changes_wald_width_not_engine_group_sd():
    table = estimates(frequentist(), ci_prob=0.9)
    sen = table.iloc[2]
    assert sen["conf_high"] - sen["conf_low"] == pytest.approx(2 * Z95 * 0.3)
    assert sen["ci_prob"] == 0.9
    la = table[table["term"] == "la"].iloc[0]
    # A frequentist engine's group-SD interval is its own, at the fit's ci_prob.
    assert (la["conf_low"], la["conf_high"], la["ci_prob"]) == (0.21, 0.42, 0.95)


def test_bad_ci_prob_refused():
    with pytest.raises(DisparityError, match="between 0 and 1"):
        estimates(frequentist(), ci_prob=95)


def test_draws_give_equal_tailed_quantiles():
    # 1001 equally spaced draws of each coefficient: quantiles are read off by hand.
    base = np.linspace(-1.0, 1.0, 1001)
    draws = np.column_stack([base - 4.0, base - 0.5, base + 1.2])
    sd_draws = {"la": np.linspace(0.0, 1.0, 1001), "school": np.linspace(0.0, 2.0, 1001),
                "ethnicity[T.Indian]|la": np.linspace(0.0, 0.2, 1001)}
    fit = frequentist(
        engine="pymc",
        coef_draws=draws,
        sd_draws=sd_draws,
        group_sd=GROUP_SD.assign(estimate=[0.5, 1.0, 0.1]),
    )
    table = estimates(fit)
    sen = table.iloc[2]
    # The 2.5% and 97.5% points of linspace(-1, 1, 1001) are -0.95 and 0.95.
    assert sen["conf_low"] == pytest.approx(1.2 - 0.95)
    assert sen["conf_high"] == pytest.approx(1.2 + 0.95)
    assert sen["std_error"] == pytest.approx(np.std(base, ddof=1))
    ratio = table[(table["estimand"] == "odds_ratio") & (table["term"] == "sen[T.ehcp]")].iloc[0]
    assert ratio["conf_low"] == pytest.approx(math.exp(0.25))
    assert ratio["conf_high"] == pytest.approx(math.exp(2.15))
    school = table[table["term"] == "school"].iloc[0]
    assert (school["conf_low"], school["conf_high"]) == pytest.approx((0.05, 1.95))
    assert school["ci_prob"] == 0.95


def test_negative_binomial_dispersion_row():
    fit = frequentist(
        "negative_binomial",
        group_sd=GROUP_SD.iloc[:0],
        dispersion=2.0,
        diagnostics={"dispersion_std_error": 0.2},
    )
    table = estimates(fit)
    row = table[table["estimand"] == "dispersion"].iloc[0]
    assert row["estimate"] == 2.0 and row["std_error"] == 0.2
    # Wald interval on the log scale: 2 * exp(-/+ 1.96 * 0.2 / 2)
    assert row["conf_low"] == pytest.approx(2.0 * math.exp(-Z975 * 0.1))
    assert row["conf_high"] == pytest.approx(2.0 * math.exp(Z975 * 0.1))
    assert (table["estimand"] == "rate_ratio").sum() == 2


def test_empty_group_sd_gives_no_group_rows():
    table = estimates(frequentist(engine="glm", group_sd=GROUP_SD.iloc[:0]))
    assert set(table["estimand"]) == {"coefficient", "odds_ratio"}
    assert len(table) == 5
