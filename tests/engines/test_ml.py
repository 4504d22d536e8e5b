"""Tests of the ``ml`` engine (Laplace-approximate maximum likelihood)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.design import build_design
from disparity.engines import ml
from disparity.errors import ConvergenceWarning, SpecError
from disparity.spec import ModelSpec

DATA = Path(__file__).resolve().parents[2] / "data"


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def _nested_cells(seed: int, la_sd: float, school_sd: float, beta=(-3.0, 0.5, 1.0),
                  n_la: int = 30, n_school: int = 20) -> pd.DataFrame:
    """Binomial cells: n_la LAs x n_school schools x 3 levels of a factor, known truth."""
    rng = np.random.default_rng(seed)
    n_s = n_la * n_school
    la = np.repeat(np.arange(n_la), n_school)
    u_la, u_s = rng.normal(0, la_sd, n_la), rng.normal(0, school_sd, n_s)
    school = np.repeat(np.arange(n_s), 3)
    group = np.tile([0, 1, 2], n_s)
    eta = np.asarray(beta)[0] + np.r_[0.0, beta[1], beta[2]][group] + u_la[la[school]] + u_s[school]
    trials = rng.integers(20, 80, len(school))
    return pd.DataFrame({
        "la": [f"L{la[s]:02d}" for s in school],
        "school": [f"S{s:03d}" for s in school],
        "group": np.array(["a", "b", "c"])[group],
        "n_events": rng.binomial(trials, _logistic(eta)),
        "n_pupils": trials,
    })


def _spec(**kw) -> ModelSpec:
    base = dict(family="binomial", events="n_events", trials="n_pupils", formula="group",
                groups=("la/school",), reference={"group": "a"}, engine="ml")
    base.update(kw)
    return ModelSpec(**base)


def test_cbpp_matches_lme4():
    # Oracle: R lme4::glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
    # family = binomial, data = cbpp), Laplace approximation, as printed in M. Nguyen,
    # "A Guide on Data Analysis", section 9.6 (bookdown.org/mike/data_analysis/
    # application-nonlinear-and-generalized-linear-mixed-models.html), and in the lme4
    # examples: herd SD 0.6421; estimates -1.3983, -0.9919, -1.1282, -1.5797; standard
    # errors 0.2312, 0.3032, 0.3228, 0.4220; logLik -92.0 (deviance 184.1).
    cbpp = pd.read_csv(DATA / "cbpp.csv").astype({"herd": str, "period": str})
    spec = ModelSpec(family="binomial", events="incidence", trials="size", formula="period",
                     groups=("herd",), reference={"period": "1"}, engine="ml")
    fit = ml.fit(build_design(spec, cbpp), spec, progress=False)

    assert fit.terms == ("Intercept", "period[T.2]", "period[T.3]", "period[T.4]")
    np.testing.assert_allclose(fit.coef, [-1.3983, -0.9919, -1.1282, -1.5797], atol=1e-3)
    assert fit.group_sd.set_index("term").loc["herd", "estimate"] == pytest.approx(0.6421,
                                                                                    abs=1e-3)
    # Standard errors agree to about 1.5% (lme4's finite-difference Hessian differs slightly).
    np.testing.assert_allclose(fit.std_errors, [0.2312, 0.3032, 0.3228, 0.4220], rtol=0.02)
    assert fit.diagnostics["log_likelihood"] == pytest.approx(-184.1 / 2, abs=0.05)
    assert fit.diagnostics["converged"] is True
    # one conditional mode per herd; a herd's conditional SD is below the herd SD
    herd = fit.group_effects["herd"]
    assert len(herd) == 15 and (herd.std_error < 0.6421).all()
    sd = fit.group_sd.iloc[0]
    assert sd.conf_low < sd.estimate < sd.conf_high and sd.std_error > 0


# Oracle: R 4.2, glmmTMB 1.1.5 and lme4 1.1-31 on data/cbpp.csv (benchmarks/peers.R's
# calls): glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial) gives
# logLik -92.02628186, coefficients -1.3985324664, -0.9923322929, -1.1286712975,
# -1.5803136871, sdreport standard errors 0.2324720507, 0.3066424950, 0.3266378085,
# 0.4274365967, herd SD 0.6422616722 with se(log SD) 0.2780210399; lme4's
# vcov(fit, use.hessian = FALSE) gives 0.2278523702, 0.3053475089, 0.3260011864,
# 0.4287018666 (its fit stops at a log-likelihood 1e-4 lower, so 0.2% is allowed there).
GLMMTMB_CBPP_COEF = [-1.3985324664, -0.9923322929, -1.1286712975, -1.5803136871]
GLMMTMB_CBPP_SE = [0.2324720507, 0.3066424950, 0.3266378085, 0.4274365967]
LME4_CBPP_CONDITIONAL_SE = [0.2278523702, 0.3053475089, 0.3260011864, 0.4287018666]


@pytest.mark.parametrize("se_method", ["hessian", "conditional"])
def test_cbpp_matches_glmmtmb_and_lme4_standard_errors(se_method):
    cbpp = pd.read_csv(DATA / "cbpp.csv").astype({"herd": str, "period": str})
    spec = ModelSpec(family="binomial", events="incidence", trials="size", formula="period",
                     groups=("herd",), reference={"period": "1"}, engine="ml",
                     engine_options={"ml": {"se_method": se_method}})
    fit = ml.fit(build_design(spec, cbpp), spec, progress=False)
    assert fit.diagnostics["log_likelihood"] == pytest.approx(-92.02628186, abs=1e-6)
    np.testing.assert_allclose(fit.coef, GLMMTMB_CBPP_COEF, atol=2e-5)
    herd = fit.group_sd.iloc[0]
    assert herd.estimate == pytest.approx(0.6422616722, abs=2e-5)
    # the SD's standard error comes from the Hessian under both methods
    assert herd.std_error / herd.estimate == pytest.approx(0.2780210399, rel=1e-3)
    if se_method == "hessian":
        np.testing.assert_allclose(fit.std_errors, GLMMTMB_CBPP_SE, rtol=1e-3)
    else:
        np.testing.assert_allclose(fit.std_errors, LME4_CBPP_CONDITIONAL_SE, rtol=2e-3)
    assert fit.diagnostics["cov_type"] == se_method


def test_recovers_known_truth_nested_binomial():
    truth_beta, truth_sd = np.array([-3.0, 0.5, 1.0]), {"la": 0.3, "school": 0.5}
    cells = _nested_cells(seed=11, la_sd=truth_sd["la"], school_sd=truth_sd["school"])
    spec = _spec()
    fit = ml.fit(build_design(spec, cells), spec, progress=False)
    z = (fit.coef - truth_beta) / fit.std_errors
    assert np.all(np.abs(z) < 3.5), z
    for row in fit.group_sd.itertuples():
        assert abs(row.estimate - truth_sd[row.term]) < 3.5 * row.std_error, row
        assert row.conf_low < truth_sd[row.term] < row.conf_high or abs(
            row.estimate - truth_sd[row.term]) < 3.5 * row.std_error
    assert list(fit.group_effects) == ["la", "school"]
    assert len(fit.group_effects["la"]) == 30 and len(fit.group_effects["school"]) == 600
    assert fit.diagnostics["converged"] is True


def test_pupil_rows_give_the_same_fit_as_cells():
    # Invariance: the binomial likelihood of cells is the Bernoulli likelihood of their
    # pupils up to a constant, so both fits have the same maximum.
    cells = _nested_cells(seed=5, la_sd=0.6, school_sd=0.4, n_la=8, n_school=5)
    cells["n_pupils"] = cells["n_pupils"] // 4
    cells["n_events"] = np.minimum(cells["n_events"], cells["n_pupils"])
    reps = cells["n_pupils"].to_numpy()
    pupils = cells.loc[cells.index.repeat(reps)].reset_index(drop=True)
    pupils["n_events"] = np.concatenate(
        [np.r_[np.ones(e), np.zeros(n - e)] for e, n in zip(cells.n_events, reps)]).astype(int)
    pupils["n_pupils"] = 1
    assert pupils.n_events.sum() == cells.n_events.sum()
    spec = _spec(engine_options={"ml": {"se_method": "conditional"}})
    by_cell = ml.fit(build_design(spec, cells), spec, progress=False)
    by_pupil = ml.fit(build_design(spec, pupils), spec, progress=False)
    np.testing.assert_allclose(by_cell.coef, by_pupil.coef, atol=2e-4)
    np.testing.assert_allclose(by_cell.group_sd.estimate, by_pupil.group_sd.estimate, atol=2e-4)
    np.testing.assert_allclose(by_cell.std_errors, by_pupil.std_errors, rtol=1e-3)


def _count_cells(seed: int, family: str) -> tuple[pd.DataFrame, float]:
    rng = np.random.default_rng(seed)
    n_school = 80
    school = np.repeat(np.arange(n_school), 2)
    fsm = np.tile([0, 1], n_school)
    u = rng.normal(0, 0.4, n_school)
    exposure = rng.integers(50, 400, len(school))
    rate_ratio = 1.8
    mu = exposure * np.exp(-2.5 + np.log(rate_ratio) * fsm + u[school])
    if family == "poisson":
        y = rng.poisson(mu)
    else:
        shape = 4.0
        y = rng.negative_binomial(shape, shape / (shape + mu))
    cells = pd.DataFrame({"school": [f"S{s:02d}" for s in school],
                          "fsm": np.array(["no", "yes"])[fsm],
                          "n_susp": y, "n_pupils": exposure})
    return cells, rate_ratio


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_count_families_recover_rate_ratio(family):
    cells, rate_ratio = _count_cells(seed=3, family=family)
    spec = ModelSpec(family=family, events="n_susp", trials="n_pupils", formula="fsm",
                     groups=("school",), engine="ml")
    fit = ml.fit(build_design(spec, cells), spec, progress=False)
    j = fit.terms.index("fsm[T.yes]")
    # truth: log rate ratio log(1.8), school SD 0.4, intercept log(rate) = -2.5
    assert abs(fit.coef[j] - np.log(rate_ratio)) < 3 * fit.std_errors[j]
    assert abs(fit.coef[0] - (-2.5)) < 3 * fit.std_errors[0]
    sd = fit.group_sd.iloc[0]
    assert abs(sd.estimate - 0.4) < 3 * sd.std_error
    if family == "negative_binomial":
        se = fit.diagnostics["dispersion_std_error"]
        assert abs(fit.dispersion - 4.0) < 3 * se
    else:
        assert fit.dispersion is None


def test_offset_is_log_trials():
    # Invariance: multiplying every exposure by 10 shifts only the log-rate intercept by
    # -log(10); the rate ratio and the school SD are unchanged.
    cells, _ = _count_cells(seed=4, family="poisson")
    spec = ModelSpec(family="poisson", events="n_susp", trials="n_pupils", formula="fsm",
                     groups=("school",), engine="ml",
                     engine_options={"ml": {"se_method": "conditional"}})
    a = ml.fit(build_design(spec, cells), spec, progress=False)
    b = ml.fit(build_design(spec, cells.assign(n_pupils=cells.n_pupils * 10)), spec,
               progress=False)
    assert b.coef[0] == pytest.approx(a.coef[0] - np.log(10), abs=1e-4)
    assert b.coef[1] == pytest.approx(a.coef[1], abs=1e-4)
    assert b.group_sd.estimate[0] == pytest.approx(a.group_sd.estimate[0], abs=1e-4)


def test_zero_variance_group_does_not_crash():
    # Schools differ only by binomial noise (true school SD 0), LAs by 0.4.
    cells = _nested_cells(seed=9, la_sd=0.4, school_sd=0.0, n_la=20, n_school=6)
    spec = _spec()
    with pytest.warns(ConvergenceWarning, match="school SD was estimated at"):
        fit = ml.fit(build_design(spec, cells), spec, progress=False)
    school = fit.group_sd.set_index("term").loc["school"]
    assert school.estimate < 0.05
    assert np.isnan(school.std_error) and school.conf_low == 0.0
    assert fit.diagnostics["singular_terms"] == ["school"]
    assert np.all(np.isfinite(fit.std_errors))


def test_iteration_limit_gives_convergence_warning():
    cells = _nested_cells(seed=2, la_sd=0.3, school_sd=0.5, n_la=10, n_school=5)
    spec = _spec(engine_options={"ml": {"maxit": 1}})
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = ml.fit(build_design(spec, cells), spec, progress=False)
    assert fit.diagnostics["converged"] is False
    assert any("maxit" in w for w in fit.warnings)


def test_varying_slopes_are_reported():
    rng = np.random.default_rng(8)
    n_school = 60
    school = np.repeat(np.arange(n_school), 2)
    fsm = np.tile([0, 1], n_school)
    u0, u1 = rng.normal(0, 0.3, n_school), rng.normal(0, 0.5, n_school)
    trials = rng.integers(300, 600, len(school))
    p = _logistic(-2.5 + (0.6 + u1[school]) * fsm + u0[school])
    cells = pd.DataFrame({"school": [f"S{s:02d}" for s in school],
                          "fsm": np.array(["no", "yes"])[fsm],
                          "n_events": rng.binomial(trials, p), "n_pupils": trials})
    spec = ModelSpec(family="binomial", events="n_events", trials="n_pupils", formula="fsm",
                     groups=("school",), slopes={"fsm": "school"}, engine="ml")
    fit = ml.fit(build_design(spec, cells), spec, progress=False)
    sds = fit.group_sd.set_index("term")
    # truth: intercept SD 0.3, fsm slope SD 0.5, mean fsm effect 0.6
    assert list(sds.index) == ["school", "fsm[T.yes]|school"]
    for term, truth in (("school", 0.3), ("fsm[T.yes]|school", 0.5)):
        assert abs(sds.loc[term, "estimate"] - truth) < 3 * sds.loc[term, "std_error"]
    assert abs(fit.coef[1] - 0.6) < 3 * fit.std_errors[1]
    slopes = fit.slope_effects["fsm|school"]
    assert list(slopes.columns) == ["level", "term", "estimate", "std_error"]
    assert len(slopes) == n_school
    # the predicted deviations track the simulated ones
    assert np.corrcoef(slopes.estimate, u1)[0, 1] > 0.7


def test_unknown_option_lists_valid_choices():
    cells = _nested_cells(seed=1, la_sd=0.3, school_sd=0.3, n_la=4, n_school=3)
    spec = _spec(engine_options={"ml": {"max_iter": 5}})
    with pytest.raises(SpecError, match="max_iter.*valid options are.*maxit"):
        ml.fit(build_design(spec, cells), spec, progress=False)
