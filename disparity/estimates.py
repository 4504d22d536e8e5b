"""The tidy estimates table of a fit: coefficients, odds or rate ratios, group SDs.

One row per estimand and term, with the columns of
:data:`disparity.engines.base.ESTIMATE_COLUMNS`. This is what ``estimates.csv`` holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from disparity.engines.base import ESTIMATE_COLUMNS, Fit
from disparity.errors import DisparityError
from disparity.quantiles import normal_quantile

#: Ratio estimand of each family: exp(coefficient).
RATIO_ESTIMAND: dict[str, str] = {
    "binomial": "odds_ratio",
    "poisson": "rate_ratio",
    "negative_binomial": "rate_ratio",
}

#: Columns of ``estimates.csv`` after :data:`~disparity.engines.base.ESTIMATE_COLUMNS`.
ESTIMATES_EXTRA: tuple[str, ...] = (
    "variable", "level", "reference", "group_effects", "standard", "rate", "rate_reference",
    "n_events", "n_pupils", "variance", "step", "step_label", "formula", "groups", "n_draws",
    "method", "note", "year",
)
#: Columns of ``unit_effects.csv``.
UNIT_COLUMNS: tuple[str, ...] = (*ESTIMATE_COLUMNS, "group_term", "unit", "label", "variable",
                                 "level",
                                 "reference", "n_pupils", "n_events", "observed_rate",
                                 "prob_exceeds", "threshold", "p_value", "q_value", "flag_fdr",
                                 "fdr", "n_draws", "method", "expected_events")
#: Columns of ``cells_summary.csv``: observed counts by variable level, by unit, by year.
SUMMARY_COLUMNS: tuple[str, ...] = ("margin", "by", "level", "year", "n_pupils", "n_events")


def link_of(family: str) -> str:
    """The link function of a family: ``"logit"`` (binomial) or ``"log"`` (counts).

    Examples
    --------
    >>> link_of("binomial"), link_of("poisson")
    ('logit', 'log')
    """
    return "logit" if family == "binomial" else "log"


def _check_ci_prob(ci_prob: Any) -> float:
    if isinstance(ci_prob, bool) or not isinstance(ci_prob, (int, float)) or not 0 < ci_prob < 1:
        raise DisparityError(f"ci_prob must be a number between 0 and 1, not {ci_prob!r}")
    return float(ci_prob)


def estimates(fit: Fit, ci_prob: float | None = None) -> pd.DataFrame:
    """Tidy table of a fit's estimates and intervals.

    Rows, in order:

    ``coefficient``
        every fixed effect on the link scale (log odds or log rate), ``term`` as patsy
        names it (``"Intercept"``, ``"sen[T.ehcp]"``);
    ``odds_ratio`` (binomial) or ``rate_ratio`` (Poisson, negative binomial)
        every coefficient but the intercept, exponentiated: the odds (rate) of the level
        relative to the reference level, other terms held fixed; 1 means no difference;
    ``group_sd``
        standard deviation of each group term's random intercepts (link scale), as the
        engine gives it; varying-slope SDs (terms ``"<coef>|<group>"``) are ``slope_sd``;
    ``dispersion``
        the negative-binomial shape (variance = mu + mu^2 / dispersion).

    Intervals are Wald (normal) intervals ``estimate +/- z * std_error`` for frequentist
    engines, and equal-tailed posterior quantiles when the fit has draws
    (``coef_draws``; then ``estimate`` is the posterior mean of the coefficient and
    ``std_error`` its posterior SD). Ratio intervals are the exponentiated coefficient
    intervals; a ratio's ``estimate`` is exp(coefficient estimate) and its ``std_error``
    is the delta-method ``exp(b) * se(b)`` (frequentist) or the posterior SD of exp(b).
    ``group_sd`` intervals of frequentist engines are the engine's own, at the engine's
    ``ci_prob`` (the ``ci_prob`` column says which).

    Parameters
    ----------
    fit : Fit
    ci_prob : float, optional
        Interval probability; default ``fit.ci_prob``.

    Returns
    -------
    DataFrame
        Columns ``ESTIMATE_COLUMNS``: estimand, term, estimate, std_error, conf_low,
        conf_high, ci_prob, engine.

    References
    ----------
    Agresti, A. (2013). *Categorical Data Analysis*, 3rd ed., section 5.2 (Wald intervals
    for logistic regression parameters). Wiley.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from disparity.engines.base import Fit
    >>> fit = Fit(engine="glm", family="binomial", terms=("Intercept", "sen[T.ehcp]"),
    ...           coef=np.array([-4.0, 1.0]), coef_cov=np.diag([0.01, 0.04]),
    ...           group_sd=pd.DataFrame(columns=["term", "estimate", "std_error",
    ...                                          "conf_low", "conf_high"]))
    >>> table = estimates(fit)
    >>> table[["estimand", "term"]].values.tolist()
    [['coefficient', 'Intercept'], ['coefficient', 'sen[T.ehcp]'], ['odds_ratio', 'sen[T.ehcp]']]
    >>> round(float(table["estimate"].iloc[2]), 4)  # exp(1)
    2.7183
    """
    ci_prob = _check_ci_prob(fit.ci_prob if ci_prob is None else ci_prob)
    tail = (1.0 - ci_prob) / 2.0
    terms = list(fit.terms)
    coef = np.asarray(fit.coef, dtype=np.float64)
    rows: list[dict[str, Any]] = []

    def add(estimand: str, term: str, est: float, se: float, low: float, high: float,
            prob: float = ci_prob) -> None:
        rows.append(
            {
                "estimand": estimand,
                "term": term,
                "estimate": float(est),
                "std_error": float(se),
                "conf_low": float(low),
                "conf_high": float(high),
                "ci_prob": float(prob),
                "engine": fit.engine,
            }
        )

    draws = None if fit.coef_draws is None else np.asarray(fit.coef_draws, dtype=np.float64)
    if draws is not None:
        if draws.ndim != 2 or draws.shape[1] != len(terms):
            raise DisparityError(
                f"coef_draws has shape {draws.shape}; expected (n_draws, {len(terms)})"
            )
        se = draws.std(axis=0, ddof=1)
        low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    else:
        se = np.sqrt(np.diag(np.asarray(fit.coef_cov, dtype=np.float64)))
        z = normal_quantile(1.0 - tail)
        low, high = coef - z * se, coef + z * se
    for j, term in enumerate(terms):
        add("coefficient", term, coef[j], se[j], low[j], high[j])

    ratio = RATIO_ESTIMAND.get(fit.family)
    if ratio is None:
        raise DisparityError(
            f"family {fit.family!r} is not known; valid families are {list(RATIO_ESTIMAND)}"
        )
    for j, term in enumerate(terms):
        if term == "Intercept":
            continue
        if draws is not None:
            ratio_se = float(np.exp(draws[:, j]).std(ddof=1))
        else:
            ratio_se = float(np.exp(coef[j]) * se[j])
        add(ratio, term, np.exp(coef[j]), ratio_se, np.exp(low[j]), np.exp(high[j]))

    group_sd = fit.group_sd if fit.group_sd is not None else pd.DataFrame()
    sd_draws = fit.sd_draws or {}
    for record in group_sd.to_dict("records"):
        term = str(record["term"])
        estimand = "slope_sd" if "|" in term else "group_sd"
        if term in sd_draws:
            d = np.asarray(sd_draws[term], dtype=np.float64).ravel()
            q_low, q_high = np.quantile(d, [tail, 1.0 - tail])
            add(estimand, term, record["estimate"], d.std(ddof=1), q_low, q_high)
        else:
            add(
                estimand,
                term,
                record.get("estimate", np.nan),
                record.get("std_error", np.nan),
                record.get("conf_low", np.nan),
                record.get("conf_high", np.nan),
                prob=fit.ci_prob,
            )

    if fit.family == "negative_binomial" and fit.dispersion is not None:
        if "dispersion" in sd_draws:
            d = np.asarray(sd_draws["dispersion"], dtype=np.float64).ravel()
            q_low, q_high = np.quantile(d, [tail, 1.0 - tail])
            add("dispersion", "dispersion", fit.dispersion, d.std(ddof=1), q_low, q_high)
        else:
            se_disp = float(fit.diagnostics.get("dispersion_std_error", np.nan))
            if np.isfinite(se_disp) and fit.dispersion > 0 and np.isfinite(fit.dispersion):
                # Wald interval on the log scale keeps the shape positive.
                z = normal_quantile(1.0 - tail)
                half = z * se_disp / fit.dispersion
                d_low = fit.dispersion * np.exp(-half)
                d_high = fit.dispersion * np.exp(half)
            else:
                d_low = d_high = np.nan
            add("dispersion", "dispersion", fit.dispersion, se_disp, d_low, d_high)

    return pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
