"""Tests for disparity.engines.pymc: the Bayesian engine on cells.

Oracles: the known truth of data simulated here with numpy; the same model fitted to one
0/1 row per pupil (equal posteriors, since the binomial likelihood of cells equals the
Bernoulli likelihood of pupils up to a constant); statsmodels GLM maximum-likelihood
estimates where the prior is negligible; the model's log-likelihood written out by hand
with scipy; invariances (same seed, same draws).

Sampler runs are short (2 chains x 300 tune x 300 draws, PyMC's own NUTS in one process)
and every fit is made once per module.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from disparity.design import Design, build_design
from disparity.engines import pymc as engine
from disparity.errors import ConvergenceWarning, DataWarning, SpecError
from disparity.spec import ModelSpec

# PyTensor built from pip cannot find a BLAS library and says so once per process; it is a
# statement about speed, not about these models.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

SHORT = {"draws": 300, "tune": 300, "chains": 2, "engine_options": {"pymc": {"cores": 1}}}
BASE = ModelSpec(
    name="test",
    family="binomial",
    events="n_perm_excl",
    trials="n_pupils",
    formula="sen",
    reference={"sen": "none"},
    engine="pymc",
    sampler="pymc",
    seed=20240601,
    **SHORT,
)
SEN = ("none", "support", "ehcp")


def simulate_binomial_cells(seed: int, n_la: int, sd_la: float, beta: np.ndarray,
                            pupils: tuple[int, int]) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells of a 3-level factor within ``n_la`` LAs; returns cells and the true LA effects."""
    rng = np.random.default_rng(seed)
    la_effect = rng.normal(0.0, sd_la, n_la)
    rows = []
    for j in range(n_la):
        for k, sen in enumerate(SEN):
            n = int(rng.integers(*pupils))
            eta = beta[0] + (beta[k] if k > 0 else 0.0) + la_effect[j]
            rows.append((f"E{j:02d}", sen, n, int(rng.binomial(n, 1 / (1 + np.exp(-eta))))))
    cells = pd.DataFrame(rows, columns=["la", "sen", "n_pupils", "n_perm_excl"])
    return cells, la_effect


# --------------------------------------------------------------------------- fits, made once
TRUE_BETA = np.array([-2.5, 0.6, 1.2])  # Intercept, sen[T.support], sen[T.ehcp]
TRUE_SD_LA = 0.5
# With 2 chains x 300 draws the largest R-hat is itself noisy around 1.01, so these short
# fits may warn; the tests that use them judge recovery (allowing for Monte Carlo error),
# while the convergence checks are tested on a model that mixes fast and on a run made to
# fail.
SHORT_RUN = pytest.mark.filterwarnings("ignore::disparity.errors.ConvergenceWarning")


@pytest.fixture(scope="module")
def recovery():
    cells, la_effect = simulate_binomial_cells(11, 20, TRUE_SD_LA, TRUE_BETA, (40, 100))
    spec = BASE.replace(groups=("la",))
    design = build_design(spec, cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return design, engine.fit(design, spec, progress=False), la_effect


@pytest.fixture(scope="module")
def glm_case():
    # Large cells: 6 x 20,000 pupils, so the Normal(0, 1) priors are negligible and the
    # posterior mean and SD approach the ML estimate and its standard error.
    rng = np.random.default_rng(21)
    grid = pd.MultiIndex.from_product([SEN, ["no", "yes"]], names=["sen", "fsm"]).to_frame(
        index=False)
    eta = -3.0 + grid["sen"].map({"none": 0.0, "support": 0.4, "ehcp": 1.1}) + 0.6 * (
        grid["fsm"] == "yes")
    grid["n_pupils"] = 20_000
    grid["n_perm_excl"] = rng.binomial(20_000, 1 / (1 + np.exp(-eta)))
    spec = BASE.replace(formula="sen + fsm", reference={"sen": "none", "fsm": "no"})
    design = build_design(spec, grid)
    return design, engine.fit(design, spec, progress=False)


@pytest.fixture(scope="module")
def poisson_fit():
    # Rate ratio exp(0.7) for "ehcp" against "none"; exposure (pupil-years) differs by level
    # so a fit that ignored exposure would be far off.
    rng = np.random.default_rng(5)
    exposure = np.r_[rng.uniform(50, 200, 30), rng.uniform(400, 900, 30)]
    sen = ["none"] * 30 + ["ehcp"] * 30
    rate = np.exp(-2.0 + 0.7 * (np.array(sen) == "ehcp"))
    cells = pd.DataFrame({"sen": sen, "n_pupils": exposure,
                          "n_susp": rng.poisson(rate * exposure)})
    spec = BASE.replace(family="poisson", events="n_susp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return engine.fit(build_design(spec, cells), spec, progress=False)


@pytest.fixture(scope="module")
def negative_binomial_fit():
    # Gamma-Poisson mixture: mean mu, shape alpha = 4, so variance mu + mu^2 / 4.
    rng = np.random.default_rng(8)
    n = 120
    sen = np.where(np.arange(n) % 2 == 0, "none", "ehcp")
    exposure = rng.uniform(100, 300, n)
    mu = np.exp(-1.5 + 0.5 * (sen == "ehcp")) * exposure
    counts = rng.poisson(rng.gamma(shape=4.0, scale=mu / 4.0))
    cells = pd.DataFrame({"sen": sen, "n_pupils": exposure, "n_susp": counts})
    spec = BASE.replace(family="negative_binomial", events="n_susp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return engine.fit(build_design(spec, cells), spec, progress=False)


# --------------------------------------------------------------------------- recovery
def test_recovers_simulated_fixed_effects_and_la_sd(recovery):
    design, result, _ = recovery
    assert result.terms == ("Intercept", "sen[T.support]", "sen[T.ehcp]")
    z = (result.coef - TRUE_BETA) / result.std_errors
    assert np.all(np.abs(z) < 3), z
    row = result.group_sd.set_index("term").loc["la"]
    assert row["conf_low"] < TRUE_SD_LA < row["conf_high"]
    # std_error is the posterior SD; the interval is the equal-tailed 95% one of the draws
    draws = result.sd_draws["la"]
    assert row["std_error"] == pytest.approx(np.std(draws, ddof=1))
    assert row["conf_low"] == pytest.approx(np.quantile(draws, 0.025))


def test_la_effects_track_the_simulated_ones(recovery):
    design, result, la_effect = recovery
    effects = result.group_effects["la"]
    assert list(effects["level"]) == [f"E{j:02d}" for j in range(20)] == list(
        design.group("la").levels)
    # ~30 events per LA give each LA effect a standard error near 0.2 against an SD of 0.5
    assert np.corrcoef(effects["estimate"], la_effect)[0, 1] > 0.75
    covered = np.abs(effects["estimate"] - la_effect) < 3 * effects["std_error"]
    assert covered.mean() >= 0.9


def test_fit_surface_draws_and_coords(recovery):
    design, result, _ = recovery
    assert result.engine == "pymc" and result.family == "binomial"
    assert result.coef_draws.shape == (600, 3)  # 2 chains x 300 draws, stacked
    np.testing.assert_allclose(result.coef, result.coef_draws.mean(axis=0))
    np.testing.assert_allclose(result.coef_cov, np.cov(result.coef_draws.T))
    posterior = result.raw.posterior
    assert list(posterior["beta"].coords["term"].values) == list(design.terms)
    assert list(posterior["effect_la"].coords["la"].values) == list(design.group("la").levels)
    assert list(result.raw.observed_data["events"].dims) == ["cell"]
    assert result.dispersion is None


def test_diagnostics_have_every_key_and_pass_on_a_model_that_mixes(glm_case):
    _, result = glm_case
    d = result.diagnostics
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_bfmi",
                "sampler", "draws", "chains", "seconds", "converged", "warnings",
                "parameters", "effects"):
        assert key in d
    # no group terms: no effects, and the parameters' extremes are every quantity's
    assert d["effects"]["n"] == 0 and d["parameters"]["max_rhat"] == d["max_rhat"]
    assert d["sampler"] == "pymc" and d["draws"] == 300 and d["chains"] == 2
    assert d["ess_required"] == 200  # 100 per chain
    assert d["max_rhat"] <= 1.01 and d["min_ess_bulk"] >= 200 and d["min_ess_tail"] >= 200
    assert d["divergences"] == 0 and d["min_bfmi"] >= 0.3
    assert d["converged"] is True and result.warnings == ()
    import json

    json.dumps(d)  # JSON-serialisable


# --------------------------------------------------------------------------- cells = pupils
@SHORT_RUN
def test_cell_fit_agrees_with_pupil_rows_within_monte_carlo_error():
    import arviz as az

    cells, _ = simulate_binomial_cells(3, 5, 0.4, np.array([-1.5, 0.5, 1.0]), (15, 30))
    spec = BASE.replace(groups=("la",), seed=7)
    by_cell = engine.fit(build_design(spec, cells), spec, progress=False)
    # One row per pupil: n_perm_excl is 0 or 1, n_pupils is 1.
    pupils = cells.loc[cells.index.repeat(cells["n_pupils"])].copy()
    within = pupils.groupby(level=0).cumcount()
    pupils["n_perm_excl"] = (within < pupils["n_perm_excl"]).astype(int)
    pupils["n_pupils"] = 1
    assert len(pupils) == cells["n_pupils"].sum()
    assert pupils["n_perm_excl"].sum() == cells["n_perm_excl"].sum()
    by_pupil = engine.fit(build_design(spec, pupils.reset_index(drop=True)), spec,
                          progress=False)
    for name in ("beta", "sd_la"):
        mcse = np.hypot(
            az.mcse(by_cell.raw, var_names=[name])[name].to_numpy(),
            az.mcse(by_pupil.raw, var_names=[name])[name].to_numpy(),
        )
        a = by_cell.raw.posterior[name].mean(("chain", "draw")).to_numpy()
        b = by_pupil.raw.posterior[name].mean(("chain", "draw")).to_numpy()
        assert np.all(np.abs(a - b) < 4 * mcse), (name, a, b, mcse)
    assert np.all(np.abs(by_cell.std_errors / by_pupil.std_errors - 1) < 0.2)


# --------------------------------------------------------------------------- frequentist oracle
def test_no_random_effects_matches_statsmodels_glm(glm_case):
    import statsmodels.api as sm

    design, result = glm_case
    endog = np.column_stack([design.events, design.trials - design.events])
    glm = sm.GLM(endog, design.X, family=sm.families.Binomial()).fit()
    assert np.all(np.abs(result.coef - glm.params) < 0.3 * result.std_errors)
    np.testing.assert_allclose(result.std_errors, glm.bse, rtol=0.15)
    assert result.group_sd.empty


# --------------------------------------------------------------------------- count families
def test_poisson_with_exposure_recovers_the_rate_ratio(poisson_fit):
    j = poisson_fit.terms.index("sen[T.ehcp]")
    low, high = np.quantile(np.exp(poisson_fit.coef_draws[:, j]), [0.005, 0.995])
    assert low < np.exp(0.7) < high
    assert abs(poisson_fit.coef[j] - 0.7) < 3 * poisson_fit.std_errors[j]
    assert poisson_fit.dispersion is None


def test_negative_binomial_dispersion_is_finite_and_covers_truth(negative_binomial_fit):
    result = negative_binomial_fit
    assert result.family == "negative_binomial"
    assert np.isfinite(result.dispersion) and result.dispersion > 0
    summary = result.diagnostics["dispersion"]
    assert summary["conf_low"] < 4.0 < summary["conf_high"]
    j = result.terms.index("sen[T.ehcp]")
    assert abs(result.coef[j] - 0.5) < 3 * result.std_errors[j]


# --------------------------------------------------------------------------- the likelihood
def _point_logp(model, design, point):
    """Log-likelihood of the observed events at ``point`` (model-scale values, with ``beta``
    given on the reference-level scale and turned here into the sampled parameters)."""
    beta = point.pop("beta")
    # the engine samples the intercept at the pupil-weighted covariate means
    centre = (design.X[:, 1:] * design.trials[:, None]).sum(axis=0) / design.trials.sum()
    point["intercept_centred"] = beta[0] + centre @ beta[1:]
    point["coef"] = beta[1:]
    values = {}
    for rv in model.free_RVs:
        value = np.asarray(point[rv.name], dtype=float)
        transform = model.rvs_to_transforms.get(rv)
        name = model.rvs_to_values[rv].name
        values[name] = (transform.forward(value).eval() if transform is not None else value)
    return float(model.compile_fn(model.logp(vars=[model["events"]], sum=True))(values))


def test_model_log_likelihood_equals_hand_written_one_with_slopes_and_nested_groups():
    rng = np.random.default_rng(2)
    rows = [(la, f"{la}-s{s}", sen, int(rng.integers(20, 60)))
            for la in ("E1", "E2", "E3") for s in range(2) for sen in SEN]
    cells = pd.DataFrame(rows, columns=["la", "school", "sen", "n_pupils"])
    cells["n_perm_excl"] = rng.binomial(cells["n_pupils"], 0.1)
    spec = BASE.replace(groups=("la/school",), slopes={"sen": "la"})
    design = build_design(spec, cells)
    model = engine.build_model(design, spec)
    assert set(model.coords) >= {"term", "la", "school", "cell", "sen|la"}
    la, school = design.group("la"), design.group("school")
    (slope,) = design.slopes
    point = {
        "beta": np.array([-2.0, 0.3, 0.8]),
        "sd_la": 0.7, "z_la": rng.normal(size=la.n_levels),
        "sd_school": 0.4, "z_school": rng.normal(size=school.n_levels),
        "slope_sd_sen_la": np.array([0.2, 0.5]),
        "slope_z_sen_la": rng.normal(size=(la.n_levels, 2)),
    }
    # eta = X beta + sd_la z_la[la] + sd_school z_school[school] + sum_k X_k sd_k z[la, k]
    eta = (design.X @ point["beta"] + 0.7 * point["z_la"][la.index]
           + 0.4 * point["z_school"][school.index])
    deviation = point["slope_z_sen_la"] * point["slope_sd_sen_la"]
    eta = eta + (design.X[:, list(slope.columns)] * deviation[la.index]).sum(axis=1)
    expected = stats.binom.logpmf(design.events, design.trials, 1 / (1 + np.exp(-eta))).sum()
    assert _point_logp(model, design, point) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_count_log_likelihood_uses_exposure_as_offset(family):
    design = Design(family=family, X=np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]]),
                    terms=("Intercept", "sen[T.ehcp]"), events=np.array([3, 9, 4]),
                    trials=np.array([100.0, 250.0, 80.0]))
    spec = BASE.replace(family=family)
    model = engine.build_model(design, spec)
    point = {"beta": np.array([-3.5, 0.4]), "alpha": 2.5}
    mu = design.trials * np.exp(design.X @ point["beta"])
    if family == "poisson":
        expected = stats.poisson.logpmf(design.events, mu).sum()
    else:  # alpha is the shape: scipy's nbinom(n = alpha, p = alpha / (alpha + mu))
        expected = stats.nbinom.logpmf(design.events, 2.5, 2.5 / (2.5 + mu)).sum()
    assert _point_logp(model, design, point) == pytest.approx(expected, rel=1e-9)


def test_centred_override_and_prior_centre():
    cells, _ = simulate_binomial_cells(4, 4, 0.3, TRUE_BETA, (50, 60))
    spec = BASE.replace(groups=("la",), noncentered={"la": False})
    design = build_design(spec, cells)
    centred = engine.build_model(design, spec)
    assert "effect_la" in {rv.name for rv in centred.free_RVs} and "z_la" not in centred.named_vars
    noncentred = engine.build_model(design, spec.replace(noncentered={}))
    assert "z_la" in {rv.name for rv in noncentred.free_RVs}
    # Intercept (at the covariate means) centred on the logit of the crude rate
    # (events + 0.5) / (pupils + 1); Normal(0, 1) on the other coefficients
    rate = (design.events.sum() + 0.5) / (design.trials.sum() + 1)
    mu, sigma = (x.eval() for x in centred["intercept_centred"].owner.inputs[2:4])
    assert mu == pytest.approx(np.log(rate / (1 - rate))) and sigma == 2.5
    mu, sigma = (x.eval() for x in centred["coef"].owner.inputs[2:4])
    assert mu == 0.0 and sigma == 1.0
    assert list(centred.coords["covariate"]) == ["sen[T.support]", "sen[T.ehcp]"]


# --------------------------------------------------------------------------- warnings
@SHORT_RUN
def test_separation_warns_and_estimates_stay_finite():
    cells = pd.DataFrame({"sen": ["none", "support", "ehcp"] * 2,
                          "n_pupils": [400, 300, 40, 380, 320, 35],
                          "n_perm_excl": [12, 15, 0, 10, 14, 0]})  # no ehcp exclusions
    spec = BASE.replace(seed=3)
    with pytest.warns(DataWarning, match=r"sen\[T.ehcp\].*prior"):
        result = engine.fit(build_design(spec, cells), spec, progress=False)
    assert np.all(np.isfinite(result.coef)) and np.all(np.isfinite(result.coef_cov))
    assert result.diagnostics["separated_terms"] == ["sen[T.ehcp]"]
    assert any("prior" in w for w in result.warnings)
    # prior-driven: the posterior SD is of the order of the prior's, not a data SE
    assert result.std_errors[result.terms.index("sen[T.ehcp]")] > 0.4


def test_a_deliberately_short_run_gives_a_plain_english_convergence_warning():
    cells, _ = simulate_binomial_cells(6, 4, 0.5, TRUE_BETA, (50, 80))  # 4 LAs x 3 levels
    spec = BASE.replace(groups=("la",), draws=20, tune=20, chains=1, seed=1)
    with pytest.warns(ConvergenceWarning) as caught:
        result = engine.fit(build_design(spec, cells), spec, progress=False)
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert any("Increase draws" in m for m in messages)  # ESS far below 100 per chain
    assert any("R-hat could not be computed" in m for m in messages)  # one chain
    assert result.diagnostics["converged"] is False
    assert result.diagnostics["chains"] == 1 and result.diagnostics["draws"] == 20
    assert result.warnings


def test_group_effects_are_judged_apart_from_the_fixed_effects_and_sds():
    import xarray as xr

    rng = np.random.default_rng(5)
    chains, draws = 4, 500
    beta = rng.standard_normal((chains, draws, 3))  # independent draws: mixed
    effects = rng.standard_normal((chains, draws, 50))
    effects[:, :, 7] += np.array([-2.0, 0.0, 0.0, 2.0])[:, None]  # one effect, stuck chains
    posterior = xr.Dataset({
        "beta": (("chain", "draw", "term"), beta),
        "sd_school": (("chain", "draw"), np.exp(0.1 * rng.standard_normal((chains, draws)))),
        "effect_school": (("chain", "draw", "school"), effects),
    })
    got = engine._convergence_extremes(posterior, 400)
    assert got["parameters"]["max_rhat"] < 1.01 and got["parameters"]["min_ess_bulk"] > 1000
    assert got["effects"]["n"] == 50 and got["effects"]["max_rhat"] > 1.5
    assert got["effects"]["n_outside"] >= 1 and got["max_rhat"] == got["effects"]["max_rhat"]
    ok = {"divergences": 0, "min_bfmi": 0.9}
    found = engine.convergence_problems({**ok, **got}, min_ess=400)
    assert len(found) == 1 and found[0].startswith("Group effects have not all mixed")
    # R-hats of well-mixed effects a little above 1.01 (chance, with thousands) pass; the
    # fixed effects and SDs are still held to 1.01
    chance = {"n": 20_000, "n_outside": 150, "max_rhat": 1.017, "min_ess_bulk": 600.0,
              "min_ess_tail": 900.0}
    mixed = {"max_rhat": 1.004, "min_ess_bulk": 900.0, "min_ess_tail": 800.0}
    assert engine.convergence_problems(
        {**ok, **mixed, "parameters": mixed, "effects": chance}, min_ess=400) == []
    slow = {**mixed, "max_rhat": 1.02}
    found = engine.convergence_problems(
        {**ok, **mixed, "parameters": slow, "effects": chance}, min_ess=400)
    assert len(found) == 1 and found[0].startswith("R-hat is 1.020")


def test_convergence_problems_name_each_failure_and_what_to_try():
    ok = {"max_rhat": 1.001, "min_ess_bulk": 900.0, "min_ess_tail": 700.0,
          "divergences": 0, "min_bfmi": 0.8}
    assert engine.convergence_problems(ok, min_ess=400) == []
    bad = engine.convergence_problems(
        {"max_rhat": 1.2, "min_ess_bulk": 50.0, "min_ess_tail": 500.0, "divergences": 4,
         "min_bfmi": 0.1}, min_ess=400)
    assert len(bad) == 4
    assert "R-hat is 1.200" in bad[0] and "tune" in bad[0]
    assert "bulk ESS 50" in bad[1] and "tail" not in bad[1].split(";")[0]
    assert "4 divergent" in bad[2] and "target_accept" in bad[2] and "centred" in bad[2]
    assert "E-BFMI is 0.10" in bad[3]
    assert [engine.ess_required(c) for c in (1, 2, 4, 8)] == [100, 200, 400, 400]


# --------------------------------------------------------------------------- samplers, seeds
def test_auto_resolves_to_an_installed_sampler():
    import importlib.util

    chosen = engine.resolve_sampler("auto")
    assert chosen in ("pymc", "nutpie", "numpyro")
    if importlib.util.find_spec("nutpie") is not None:
        assert chosen == "nutpie"
    assert engine.resolve_sampler("PyMC") == "pymc"


def test_unknown_sampler_is_a_spec_error_listing_valid_names():
    with pytest.raises(SpecError, match="'auto', 'pymc', 'nutpie', 'numpyro'"):
        engine.resolve_sampler("stan")
    # a spec is checked when it is made, before any engine sees it
    with pytest.raises(SpecError, match="sampler 'stan' is not known"):
        BASE.replace(sampler="stan")


@SHORT_RUN
def test_default_sampler_same_seed_same_draws():
    cells, _ = simulate_binomial_cells(9, 4, 0.5, TRUE_BETA, (100, 200))
    spec = BASE.replace(sampler=ModelSpec().sampler, groups=("la",), draws=100, tune=100,
                        engine_options={})
    design = build_design(spec, cells)
    first = engine.fit(design, spec, progress=False)
    again = engine.fit(design, spec, progress=False)
    assert first.diagnostics["sampler"] == engine.resolve_sampler("auto")
    np.testing.assert_array_equal(first.coef_draws, again.coef_draws)
    np.testing.assert_array_equal(first.sd_draws["la"], again.sd_draws["la"])
    assert np.unique(first.coef_draws[:, 0]).size > 50  # draws that move


# --------------------------------------------------------------------------- compiled density
@pytest.fixture(scope="module")
def native_fits():
    """The default sampler (nutpie on the compiled cell density): the full counts, and the
    same cells with every count of 1 or 2 published as "1 or 2" (interval-censored)."""
    cells, _ = simulate_binomial_cells(12, 20, TRUE_SD_LA, TRUE_BETA, (40, 100))
    # tune and target_accept unset: the engine's defaults for the compiled density
    spec = BASE.replace(sampler="auto", groups=("la",), engine_options={}, tune=None,
                        target_accept=None)
    design = build_design(spec, cells)
    small = (design.events >= 1) & (design.events <= 2)
    censored = dataclasses.replace(design, events=np.where(small, 1.0, design.events),
                                   events_upper=np.where(small, 2.0, design.events))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return (design, engine.fit(design, spec, progress=False),
                censored, engine.fit(censored, spec, progress=False))


def test_native_path_recovers_truth_and_carries_a_log_likelihood_for_loo(native_fits):
    import arviz as az

    design, full, _, _ = native_fits
    assert full.diagnostics["log_density"] == "native"
    assert full.diagnostics["sampler"] == "nutpie"
    # the defaults it used (nutpie's 300 tuning steps; 0.9 below 10,000 parameters)
    assert (full.diagnostics["tune"], full.diagnostics["target_accept"]) == (300, 0.9)
    z = (full.coef - TRUE_BETA) / full.std_errors
    assert np.all(np.abs(z) < 3), z
    row = full.group_sd.set_index("term").loc["la"]
    assert row["conf_low"] < TRUE_SD_LA < row["conf_high"]
    pointwise = full.raw.log_likelihood["events"]
    assert pointwise.dims == ("chain", "draw", "cell") and pointwise.sizes["cell"] == 60
    # each value is the binomial log pmf of its cell at that draw (checked at one draw)
    post = full.raw.posterior
    eta = (design.X @ post["beta"].values[0, 0]
           + post["effect_la"].values[0, 0][design.group("la").index])
    expected = stats.binom.logpmf(design.events, design.trials, 1 / (1 + np.exp(-eta)))
    np.testing.assert_allclose(pointwise.values[0, 0], expected, rtol=1e-9)
    with warnings.catch_warnings():
        # 3 cells per LA effect: some Pareto k above 0.7 is a fact of the model, not the engine
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto")
        loo = az.loo(full.raw)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == 60


def test_censored_counts_give_nearly_the_posterior_of_the_full_counts(native_fits):
    design, full, censored, partial = native_fits
    n_censored = int(np.sum(censored.events_upper > censored.events))
    assert n_censored >= 3 and partial.diagnostics["n_censored_cells"] == n_censored
    # Knowing 1 or 2 instead of the count loses a little information: the estimates move
    # by well under a posterior SD.
    assert np.all(np.abs(partial.coef - full.coef) < 0.5 * full.std_errors)
    # a censored cell's log-likelihood is the log of P(1) + P(2) at the draw
    post = partial.raw.posterior
    eta = (design.X @ post["beta"].values[1, 5]
           + post["effect_la"].values[1, 5][design.group("la").index])
    p = 1 / (1 + np.exp(-eta))
    i = int(np.flatnonzero(censored.events_upper > censored.events)[0])
    expected = np.log(stats.binom.pmf([1, 2], design.trials[i], p[i]).sum())
    assert partial.raw.log_likelihood["events"].values[1, 5, i] == pytest.approx(expected)
