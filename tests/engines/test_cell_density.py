"""Tests for disparity.engines.cell_density: the compiled log posterior and its gradient.

Oracles: PyMC's own log density of the same model (``build_model``, compiled by PyTensor,
with the Jacobians of its log transforms); the log-likelihood written out with scipy.stats,
censored cells by direct enumeration of their interval; central finite differences for the
gradient; the change-of-variables identity for the partial-centring weights.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit

from disparity.design import Design, build_design
from disparity.engines import cell_density, cell_sampler
from disparity.engines import pymc as engine
from disparity.spec import DEFAULT_PRIORS, ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
PRIORS = dict(DEFAULT_PRIORS)
SEN = ("none", "support", "ehcp")


def _cells(seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(la, f"{la}-s{s}", sen, int(rng.integers(20, 60)))
            for la in ("E1", "E2", "E3") for s in range(2) for sen in SEN]
    cells = pd.DataFrame(rows, columns=["la", "school", "sen", "n_pupils"])
    cells["n_perm_excl"] = rng.binomial(cells["n_pupils"], 0.1)
    cells["trust"] = np.where(np.arange(len(cells)) % 3 == 0, "T1", "T2")
    return cells


def _spec(family: str, **kw) -> ModelSpec:
    return ModelSpec(family=family, events="n_perm_excl", trials="n_pupils", formula="sen",
                     reference={"sen": "none"}, **kw)


def _pymc_point(density: cell_density.CellDensity, theta: np.ndarray) -> dict:
    """The PyMC value variables (non-centred) that correspond to ``theta`` (weights 0)."""
    nf = density.n_fixed
    point = {"intercept_centred": theta[0], "coef": theta[1:nf]}
    log_sd = theta[nf : density.t_start]
    t = theta[density.t_start : density.t_start + density.n_effects]
    for b in density.blocks:
        values = t[b.start : b.start + b.size].reshape(b.shape)
        if b.name.startswith("effect_"):
            g = b.name.removeprefix("effect_")
            point[f"sd_{g}_log__"] = log_sd[b.sd_index]
            point[f"z_{g}"] = values
        else:
            key = b.name.removeprefix("slope_")
            point[f"slope_sd_{key}_log__"] = log_sd[b.sd_index : b.sd_index + b.shape[1]]
            point[f"slope_z_{key}"] = values
    if density.has_alpha:
        point["alpha_log__"] = theta[-1]
    return point


CASES = [
    ("binomial", ("la/school",), {"sen": "la"}),  # nested + slopes: the per-cell path
    ("binomial", ("la/school",), {}),  # nested: the by-unit path
    ("binomial", ("school", "trust"), {}),  # crossed
    ("poisson", ("la/school",), {"sen": "la"}),
    ("poisson", ("la/school",), {}),
    ("negative_binomial", ("la/school",), {"sen": "la"}),
    ("negative_binomial", ("school", "trust"), {}),
]


@pytest.mark.parametrize("family, groups, slopes", CASES)
def test_log_density_equals_pymc_and_gradient_equals_finite_differences(family, groups, slopes):
    spec = _spec(family, groups=groups, slopes=slopes)
    design = build_design(spec, _cells())
    density = cell_density.build_density(design, priors=PRIORS)
    model = engine.build_model(design, spec)
    logp = model.compile_logp(jacobian=True)
    rng = np.random.default_rng(len(groups) + len(slopes))
    for _ in range(3):
        theta = rng.normal(scale=0.5, size=density.n_dim)
        theta[0] += -2.0
        lp, grad = density.logp_and_grad(theta)
        # PyMC's HalfNormal constant differs from log(2) - log(2 pi) / 2 in the 8th decimal
        assert lp == pytest.approx(float(logp(_pymc_point(density, theta))), abs=1e-6)
        h = 1e-6
        numeric = np.array([
            (density.logp_and_grad(theta + h * e)[0] - density.logp_and_grad(theta - h * e)[0])
            / (2 * h) for e in np.eye(density.n_dim)])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def test_centring_weights_change_only_the_coordinates():
    # Same (beta, sd, u) in two parameterisations: the densities differ by the log Jacobian
    # of t -> z = t / sd^w, i.e. -sum_e w_e log sd_e.
    spec = _spec("binomial", groups=("la/school",))
    design = build_design(spec, _cells())
    flat = cell_density.build_density(design, priors=PRIORS)
    rng = np.random.default_rng(4)
    weights = rng.uniform(0, 1, flat.n_effects)
    partial = flat.with_weights(weights, located=rng.integers(0, 2, flat.n_effects))
    assert partial.effect_located.any()
    fixed = np.array([-2.0, 0.3, 0.5])
    sd = np.array([0.4, 0.7])
    u = rng.normal(scale=0.5, size=flat.n_effects)
    a = flat.to_theta(fixed, sd, u)
    b = partial.to_theta(fixed, sd, u)
    np.testing.assert_allclose(partial.effects(b), u)
    jacobian = -np.sum(weights * np.log(sd[flat.effect_sd_index]))
    assert partial.logp_and_grad(b)[0] - flat.logp_and_grad(a)[0] == pytest.approx(jacobian)
    for name, value in flat.expand(a).items():
        np.testing.assert_allclose(partial.expand(b)[name], value)


@pytest.mark.parametrize("groups", [("la/school",), ("school", "trust")])
def test_partially_centred_gradient_equals_finite_differences(groups):
    # Location and scale centring at weights strictly between 0 and 1: schools centred on
    # their LA's value, LAs (and crossed terms) on the intercept. The reverse pass through
    # the parents must give the gradient of the density that finite differences see.
    spec = _spec("binomial", groups=groups)
    design = build_design(spec, _cells())
    flat = cell_density.build_density(design, priors=PRIORS)
    rng = np.random.default_rng(11)
    partial = flat.with_weights(rng.uniform(0.05, 0.95, flat.n_effects),
                                located=np.ones(flat.n_effects))
    nested = groups == ("la/school",)
    assert (partial.effect_parent >= 0).any() == nested  # schools point at their LA
    assert (partial.effect_parent == -2).any()  # top-level terms at the intercept
    theta = rng.normal(scale=0.5, size=partial.n_dim)
    theta[0] -= 2.0
    lp, grad = partial.logp_and_grad(theta)
    h = 1e-6
    numeric = np.array([
        (partial.logp_and_grad(theta + h * e)[0] - partial.logp_and_grad(theta - h * e)[0])
        / (2 * h) for e in np.eye(partial.n_dim)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def _by_hand(family: str, events, upper, trials, eta, alpha) -> np.ndarray:
    """Each cell's log-likelihood with scipy: log of the summed pmf over [lo, hi]."""
    out = []
    for lo, hi, n, e in zip(events, upper, trials, eta):
        ks = np.arange(lo, hi + 1)
        if family == "binomial":
            pmf = stats.binom.pmf(ks, n, expit(e))
        elif family == "poisson":
            pmf = stats.poisson.pmf(ks, n * np.exp(e))
        else:
            mu = n * np.exp(e)
            pmf = stats.nbinom.pmf(ks, alpha, alpha / (alpha + mu))
        out.append(np.log(pmf.sum()))
    return np.array(out)


@pytest.mark.parametrize("family", ["binomial", "poisson", "negative_binomial"])
def test_censored_cells_add_the_log_of_their_interval_mass(family):
    # Four cells, two of them published as "x" (1 or 2 events), one censored to [0, 3].
    X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    events = np.array([4.0, 1.0, 1.0, 7.0, 0.0])
    upper = np.array([4.0, 2.0, 2.0, 7.0, 3.0])
    trials = np.array([60.0, 40.0, 30.0, 80.0, 25.0])
    design = Design(family=family, X=X, terms=("Intercept", "sen[T.ehcp]"), events=events,
                    trials=trials, events_upper=upper)
    density = cell_density.build_density(design, priors=PRIORS)
    assert density.censored["trials"].shape == (3,)
    theta = np.array([-2.2, 0.4] + ([np.log(3.0)] if family == "negative_binomial" else []))
    lp, grad = density.logp_and_grad(theta)
    # by hand: beta = (a - centre b, b); priors Normal(crude link, 2.5), Normal(0, 1)
    centre = np.average(X[:, 1], weights=trials)
    beta = np.array([theta[0] - centre * theta[1], theta[1]])
    eta = X @ beta
    alpha = 3.0
    pointwise = _by_hand(family, events, upper, trials, eta, alpha)
    crude = (events.sum() + 0.5) / (trials.sum() + 1)
    mu0 = np.log(crude / (1 - crude)) if family == "binomial" else np.log(crude)
    prior = stats.norm.logpdf(theta[0], mu0, 2.5) + stats.norm.logpdf(theta[1], 0, 1)
    if family == "negative_binomial":
        prior += stats.gamma.logpdf(alpha, a=2.0, scale=1 / 0.1) + np.log(alpha)
    assert lp == pytest.approx(pointwise.sum() + prior, rel=1e-10)
    np.testing.assert_allclose(density.pointwise_log_likelihood(theta)[0], pointwise,
                               rtol=1e-10)
    h = 1e-6
    numeric = [(density.logp_and_grad(theta + h * e)[0] - density.logp_and_grad(theta - h * e)[0])
               / (2 * h) for e in np.eye(theta.size)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)
    # The PyMC graph of the same model agrees (its censored cells enter as a Potential).
    spec = ModelSpec(family=family)
    model = engine.build_model(design, spec)
    point = {"intercept_centred": theta[0], "coef": theta[1:2]}
    if family == "negative_binomial":
        point["alpha_log__"] = theta[2]
    assert float(model.compile_logp(jacobian=True)(point)) == pytest.approx(lp, abs=1e-6)


def test_pointwise_log_likelihood_matches_scipy_in_design_order():
    spec = _spec("binomial", groups=("la/school",))
    design = build_design(spec, _cells())
    density = cell_density.build_density(design, priors=PRIORS)
    rng = np.random.default_rng(8)
    thetas = rng.normal(scale=0.3, size=(2, density.n_dim))
    thetas[:, 0] -= 2.0
    values = density.pointwise_log_likelihood(thetas)
    assert values.shape == (2, design.n_cells)
    for theta, row in zip(thetas, values):
        parts = density.expand(theta)
        eta = (design.X @ parts["beta"] + parts["effect_la"][design.group("la").index]
               + parts["effect_school"][design.group("school").index])
        expected = stats.binom.logpmf(design.events, design.trials, expit(eta))
        np.testing.assert_allclose(row, expected, rtol=1e-10)


def test_vectorised_softplus_is_exact_to_rounding_over_the_whole_range():
    # The binomial cells' log(1 + e^eta) comes from an atanh series (no call to log, so the
    # loop runs in SIMD lanes); against numpy's logaddexp it must agree to rounding over
    # every value an exclusion model meets and far beyond, on both sides of the split at 0.
    eta = np.concatenate([np.linspace(-40.0, 40.0, 40_001), [-1e-12, 0.0, 1e-12]])
    got = cell_density.log1p_exp(eta)
    expected = np.logaddexp(0.0, eta)
    assert np.max(np.abs(got - expected) / expected) < 1e-15


def test_vectorised_binomial_pass_equals_the_per_cell_path():
    # The same density by the by-unit pass (gather, vectorised series, scatter) and, with
    # the units removed, by the per-cell softplus path: equal to rounding, value and
    # gradient.
    spec = _spec("binomial", groups=("la/school",))
    design = build_design(spec, _cells(7))
    density = cell_density.build_density(design, priors=PRIORS)
    rng = np.random.default_rng(3)
    theta = rng.normal(0.0, 0.7, density.n_dim)
    theta[0] = -2.0
    lp, grad = density.logp_and_grad(theta)
    per_cell = dataclasses.replace(density, cells={**density.cells,
                                                   "unit_start": np.zeros(0, np.int64)})
    lp_cell, grad_cell = per_cell.logp_and_grad(theta)
    assert lp == pytest.approx(lp_cell, rel=1e-13)
    np.testing.assert_allclose(grad, grad_cell, rtol=1e-11, atol=1e-12)


def test_extreme_values_fall_back_to_the_exact_per_cell_path():
    # An intercept of 400 overflows exp(): the by-unit products are skipped and the
    # softplus path gives the exact log-likelihood y eta - n log(1 + e^eta).
    spec = _spec("binomial", groups=("la/school",))
    design = build_design(spec, _cells())
    density = cell_density.build_density(design, priors=PRIORS)
    theta = np.zeros(density.n_dim)
    theta[0] = 400.0
    lp, grad = density.logp_and_grad(theta)
    beta = density.expand(theta)["beta"]
    eta = design.X @ beta
    loglik = np.sum(design.events * eta - design.trials * np.logaddexp(0.0, eta)
                    + density.cells["log_constant"].sum() / design.n_cells)
    prior = lp - density.with_weights(np.zeros(density.n_effects)).logp_and_grad(theta)[0]
    assert prior == 0.0
    crude = (design.events.sum() + 0.5) / (design.trials.sum() + 1)
    log_prior = (stats.norm.logpdf(400.0, np.log(crude / (1 - crude)), 2.5)
                 + stats.norm.logpdf(0.0, 0, 1) * 2
                 + 2 * (np.log(2) - 0.5 * np.log(2 * np.pi))  # HalfNormal(1) at sd = 1
                 - 0.5 * 2  # - sd^2 / 2 for the two SDs
                 + stats.norm.logpdf(0.0) * density.n_effects)
    assert lp == pytest.approx(loglik + log_prior, rel=1e-10)
    assert np.all(np.isfinite(grad))


def test_centring_weights_follow_the_information_and_honour_the_model_file():
    # Big LAs with many events each: weights near 1 (centred); tiny ones: near 0.
    # LA effects with SD 0.5: about 6,000 events in each big LA (I sd^2 near 1,500), about
    # 6 in each small one (I sd^2 near 1.5 at most).
    rng = np.random.default_rng(3)
    rows = []
    for j in range(12):
        n = 20_000 if j < 6 else 20
        u = rng.normal(0, 0.5)
        for sen in SEN:
            rows.append((f"L{j:02d}", sen, n, rng.binomial(n, expit(-2.2 + u))))
    cells = pd.DataFrame(rows, columns=["la", "sen", "n_pupils", "n_perm_excl"])
    spec = _spec("binomial", groups=("la",))
    design = build_design(spec, cells)
    assert design.group("la").levels[:6] == ("L00", "L01", "L02", "L03", "L04", "L05")
    density = cell_density.build_density(design, priors=PRIORS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mode = cell_sampler.posterior_mode(density, design)
    w = cell_sampler.choose_weights(density, mode, design, {})
    assert np.all(w[:6] > 0.99) and np.all(w[6:] < 0.7), w
    assert np.all(cell_sampler.choose_weights(density, mode, design, {"la": True}) == 0.0)
    assert np.all(cell_sampler.choose_weights(density, mode, design, {"la": False}) == 1.0)


def test_progress_line_reads_as_plain_english():
    counter = cell_sampler._DrawCounter(8000)
    progress = cell_sampler._Progress(counter, enabled=False)
    line = progress.line(2000, 30.0)
    assert line == ("pymc: 2,000 of 8,000 draws (25%, tuning included), 30 s, "
                    "about 2 min left")
