"""Agreement between engines, recovery of simulated truth, and published cbpp figures.

Where the other agreement checks live (not repeated here):

- pupil rows and cells give the same fit: glm to 1e-6 in
  ``tests/engines/test_glm.py::test_cell_fit_equals_pupil_fit`` (and the Poisson case),
  ml to 2e-4 in ``tests/engines/test_ml.py::test_pupil_rows_give_the_same_fit_as_cells``,
  pymc within Monte Carlo error in
  ``tests/engines/test_pymc.py::test_cell_fit_agrees_with_pupil_rows_within_monte_carlo_error``.

Here: ml against pymc on one simulated data set (fixed effects and group SDs), both against
the simulator's truth, each engine on the shipped cbpp model file against lme4's published
estimates, and the shipped DfE LA model with the ml engine.

Sampler runs are short (2 chains x 300 tune x 300 draws, one process); each fit is made once
per module.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest

from disparity.errors import ConvergenceWarning
from disparity.fitting import fit_model, load_model_data
from disparity.simulate import Truth, simulate_pupils
from disparity.spec import ModelSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

# PyTensor built from pip cannot find a BLAS library and says so once per process.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
SHORT = {"draws": 300, "tune": 300, "chains": 2, "sampler": "pymc"}
SHORT_OPTIONS = {"pymc": {"cores": 1}}


def _short(spec: ModelSpec) -> ModelSpec:
    return spec.replace(engine="pymc", engine_options={**spec.engine_options, **SHORT_OPTIONS},
                        **SHORT)


def _fit_quietly(spec: ModelSpec, data=None, engine=None):
    # Short chains may trip the R-hat/ESS checks; these tests judge the estimates with
    # their Monte Carlo and sampling error instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_model(spec, data, engine=engine, progress=False)


# --------------------------------------------------------------------------- simulated data
@pytest.fixture(scope="module")
def simulated():
    """24,000 simulated pupils in 60 schools in 30 LAs; outcome any_susp (about 5 %).

    The truth has effects of SEN and FSM only (the other characteristics' effects set to
    0), so ``sen + fsm`` with ``la/school`` intercepts is the generating model and its
    coefficients are the truth's, not odds ratios marginal over omitted covariates.
    """
    default = Truth()
    truth = dataclasses.replace(
        default,
        intercept=MappingProxyType({"perm_excl": default.intercept["perm_excl"],
                                    "any_susp": -3.5}),
        effects=MappingProxyType({
            "perm_excl": default.effects["perm_excl"],
            "any_susp": {"sen": {"support": 1.1, "ehcp": 1.0}, "fsm": {"yes": 0.8}}}),
    )
    sim = simulate_pupils(24_000, n_schools=60, n_las=30, seed=2024, truth=truth)
    spec = ModelSpec(name="sim", family="binomial", events="n_any_susp", trials="n_pupils",
                     formula="sen + fsm", groups=("la/school",), seed=5,
                     reference={"sen": "none", "fsm": "no"},
                     engine_options={"ml": {"num_threads": 1}})
    cells = load_model_data(spec, sim.pupils).frame  # pupils collapsed by the model columns
    ml_fit = _fit_quietly(spec.replace(engine="ml"), cells)
    pymc_fit = _fit_quietly(_short(spec), cells)
    return sim.truth["any_susp"], ml_fit, pymc_fit


def test_ml_and_pymc_fixed_effects_agree(simulated):
    _, ml_fit, pymc_fit = simulated
    assert ml_fit.terms == pymc_fit.terms
    # Tolerance: half a pooled standard error. With ~1,200 events and SEN/FSM contrasts the
    # Normal(0, 1) prior moves a posterior mean by about se^2 (under 0.02 se here), the
    # Laplace and posterior means differ by O(se / sqrt(n)), and 600 draws add a Monte Carlo
    # error near 0.05 posterior SD: together far below 0.5 se, while an engine error (a
    # wrong link, offset or contrast) moves an estimate by many standard errors.
    pooled = np.sqrt((ml_fit.std_errors**2 + pymc_fit.std_errors**2) / 2)
    diff = np.abs(ml_fit.coef - pymc_fit.coef)
    assert np.all(diff < 0.5 * pooled), dict(zip(ml_fit.terms, diff / pooled))
    # Standard errors of the contrasts and their posterior SDs agree to a third. The
    # intercept is left out: with 30 LAs its posterior SD also carries the uncertainty of
    # the LA SD (a right-skewed posterior), which the Laplace curvature understates.
    ratio = (pymc_fit.std_errors / ml_fit.std_errors)[1:]
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio


def test_ml_and_pymc_group_sds_agree(simulated):
    _, ml_fit, pymc_fit = simulated
    a = ml_fit.group_sd.set_index("term")
    b = pymc_fit.group_sd.set_index("term")
    assert list(a.index) == list(b.index) == ["la", "school"]
    # The posterior of an SD is right-skewed and its mean sits above the ML estimate (the
    # mode of the likelihood); within one posterior SD is the agreement to expect.
    for term in a.index:
        assert abs(a.loc[term, "estimate"] - b.loc[term, "estimate"]) < b.loc[term, "std_error"]


@pytest.mark.parametrize("which", ["ml", "pymc"])
def test_engines_recover_simulated_truth(simulated, which):
    truth, ml_fit, pymc_fit = simulated
    fit = ml_fit if which == "ml" else pymc_fit
    table = pd.DataFrame({"term": fit.terms, "estimate": fit.coef, "se": fit.std_errors})
    table["truth"] = [truth["coefficients"][t] for t in fit.terms]
    z = (table["estimate"] - table["truth"]) / table["se"]
    # Four coefficients: all within 3 standard errors has probability about 0.99 under a
    # correct engine; a biased engine fails it.
    assert np.all(np.abs(z) < 3), table.assign(z=z)
    sds = fit.group_sd.set_index("term")
    for term in ("la", "school"):
        generating = truth["group_sd"][term]
        realised = truth["realised_sd"][term]
        low, high = sds.loc[term, ["conf_low", "conf_high"]]
        # 30 LAs (two schools each) give a wide interval for the LA SD.
        assert low < realised < high, (term, low, high, realised)
        assert low < generating < high, (term, low, high, generating)


# --------------------------------------------------------------------------- cbpp (lme4)
# Oracle: R lme4::glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
# family = binomial, data = cbpp) (Laplace): intercept -1.3983, period2 -0.9919,
# period3 -1.1282, period4 -1.5797, herd SD 0.6421 (lme4 package examples; also printed in
# M. Nguyen, "A Guide on Data Analysis", section 9.6).
LME4_COEF = np.array([-1.3983, -0.9919, -1.1282, -1.5797])
LME4_HERD_SD = 0.6421


def test_cbpp_model_file_ml_matches_lme4():
    fit = fit_model(MODELS / "cbpp.toml", engine="ml", progress=False)
    np.testing.assert_allclose(fit.coef, LME4_COEF, atol=1e-3)
    sd = fit.group_sd.set_index("term").loc["herd", "estimate"]
    assert sd == pytest.approx(LME4_HERD_SD, abs=1e-3)


def test_cbpp_model_file_pymc_is_within_posterior_sds_of_lme4():
    spec = _short(load_spec(MODELS / "cbpp.toml"))
    fit = _fit_quietly(spec)
    assert np.all(np.abs(fit.coef - LME4_COEF) < fit.std_errors), (fit.coef, fit.std_errors)
    row = fit.group_sd.set_index("term").loc["herd"]
    assert abs(row["estimate"] - LME4_HERD_SD) < row["std_error"]


def test_cbpp_model_file_glm_runs():
    # glm has no random effect: a different estimand (marginal, not herd-conditional), so
    # it is not compared with lme4; its saturated period model gives the pooled log odds,
    # e.g. period 1: log(61 / 217) (data/cbpp.md) -- written out by hand.
    fit = fit_model(MODELS / "cbpp.toml", engine="glm", progress=False)
    assert fit.terms == ("Intercept", "period[T.2]", "period[T.3]", "period[T.4]")
    assert fit.coef[0] == pytest.approx(np.log(61 / 217), abs=1e-8)


# --------------------------------------------------------------------------- DfE LA model
def test_dfe_la_model_fits_with_ml_and_reports_la_and_slope_sds():
    from disparity.errors import ConvergenceWarning
    from disparity.vocabulary import ETHNICITY_LEVELS

    spec = load_spec(MODELS / "dfe_perm_excl_ethnicity_la_2016-17.toml")
    spec = spec.replace(engine_options={"ml": {"num_threads": 1}})
    # several groups' LA-varying effects sit at an SD of zero: said, not hidden
    with pytest.warns(ConvergenceWarning, match="estimated at \\(near\\) zero"):
        fit = fit_model(spec, progress=False)
    assert fit.diagnostics["converged"] is True
    sds = fit.group_sd.set_index("term")
    # every published group is in (the 18 minor groups and Unclassified): none dropped
    groups = [g for g in ETHNICITY_LEVELS if g != "White British"]
    slopes = [f"ethnicity[T.{g}]|la" for g in groups]
    assert sorted(sds.index) == sorted(["la", *slopes])
    positive = sds[sds.estimate > 1e-3]
    assert np.all(np.isfinite(positive[["estimate", "conf_low", "conf_high"]].to_numpy()))
    assert np.all(positive["conf_low"] < positive["estimate"])
    # One conditional mode per LA for the intercepts and for each slope: 152 LAs in the file.
    assert len(fit.group_effects["la"]) == 152
    assert set(fit.slope_effects) == {"ethnicity|la"}
    assert len(fit.slope_effects["ethnicity|la"]) == 152 * len(slopes)
    data = fit.diagnostics["data"]
    # only the 23 cells whose headcount is suppressed are left out; the 637 'x' counts stay
    assert data["kind"] == "dfe" and data["n_dropped_cells"] == 23
