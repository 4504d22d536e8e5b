"""Numerics of the Laplace engine: exact gradient, censored cells, against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from disparity.design import build_design
from disparity.engines import ml
from disparity.engines.cell_likelihood import CellModel
from disparity.engines.laplace import Component, LaplaceGLMM
from disparity.spec import ModelSpec


def _design(family: str, seed: int, *, crossed=False, slope=False, censor=False):
    rng = np.random.default_rng(seed)
    n_la, n_school = 4, 12
    school = np.repeat(np.arange(n_school), 3)
    n = len(school)
    la, trust = school % n_la, rng.integers(0, 3, n_school)[school]
    x = rng.integers(0, 2, n).astype(float)
    X = np.column_stack([np.ones(n), x])
    trials = rng.integers(5, 40, n).astype(float)
    eta = -1.5 + 0.5 * x + rng.normal(0, 0.5, n_la)[la] + rng.normal(0, 0.4, n_school)[school]
    if family == "binomial":
        y = rng.binomial(trials.astype(int), special.expit(eta)).astype(float)
    elif family == "poisson":
        y = rng.poisson(trials * np.exp(eta)).astype(float)
    else:
        y = rng.negative_binomial(3, 3 / (3 + trials * np.exp(eta))).astype(float)
    comps = [Component("la", "la", la, n_la, tuple("abcd")),
             Component("school", "school", school, n_school, tuple(map(str, range(n_school))))]
    if crossed:
        comps.append(Component("trust", "trust", trust, 3, ("t0", "t1", "t2")))
    if slope:
        comps.append(Component("x|la", "la", la, n_la, tuple("abcd"), x=x, term="x"))
    upper = None
    if censor:
        hidden = (y >= 1) & (y <= 2)
        y, upper = np.where(hidden, 1.0, y), np.where(hidden, 2.0, y)
    return X, comps, CellModel(family, y, trials, upper)


@pytest.mark.parametrize("family,options", [
    ("binomial", {}),
    ("binomial", {"crossed": True, "slope": True}),
    ("poisson", {"censor": True, "slope": True}),
    ("negative_binomial", {"censor": True, "crossed": True}),
])
def test_gradient_is_the_derivative_of_the_laplace_objective(family, options):
    # Oracle: central differences of the objective's value (each a full mode search).
    X, comps, cells = _design(family, seed=3, **options)
    model = LaplaceGLMM(X, comps, cells)
    beta, sigma = np.array([-1.4, 0.4]), np.array([0.5, 0.3, 0.2, 0.25][: len(comps)])
    alpha = 2.5 if family == "negative_binomial" else None
    _, grad = model.objective(beta, sigma, alpha)
    t0 = np.concatenate([beta, sigma, [np.log(alpha)] if alpha else []])

    def value(t):
        a = np.exp(t[-1]) if alpha else None
        return model.objective(t[:2], t[2 : 2 + len(comps)], a, gradient=False)[0]

    h = 1e-5
    numeric = [(value(t0 + h * e) - value(t0 - h * e)) / (2 * h) for e in np.eye(len(t0))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def _brute_force_laplace(family, X, comps, y_lo, y_hi, trials, beta, sigma):
    """Laplace by generic tools: the censored log-likelihood by enumerating the counts with
    scipy.stats, the mode by scipy BFGS, the curvature by central differences."""
    Z = np.column_stack([np.eye(c.n_levels)[c.index] * s for c, s in zip(comps, sigma)])

    def log_lik(eta):
        total = 0.0
        for e, lo, hi, n in zip(eta, y_lo, y_hi, trials):
            ks = np.arange(lo, hi + 1)
            if family == "binomial":
                lp = stats.binom.logpmf(ks, n, special.expit(e))
            else:
                lp = stats.poisson.logpmf(ks, n * np.exp(e))
            total += special.logsumexp(lp)
        return total

    def joint(u):
        return -(log_lik(X @ beta + Z @ u) - 0.5 * u @ u)

    res = optimize.minimize(joint, np.zeros(Z.shape[1]), method="BFGS", options={"gtol": 1e-9})
    H = _second_differences(joint, res.x, 1e-4)
    return res.fun + 0.5 * np.linalg.slogdet(H)[1]


def _second_differences(f, x: np.ndarray, h: float) -> np.ndarray:
    """The Hessian of ``f`` at ``x`` by central second differences of its value."""
    q = len(x)
    H = np.empty((q, q))
    for i in range(q):
        for j in range(q):
            ei, ej = np.eye(q)[i] * h, np.eye(q)[j] * h
            H[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                       + f(x - ei - ej)) / (4 * h * h)
    return H


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_censored_laplace_objective_matches_brute_force(family):
    rng = np.random.default_rng(7)
    la = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    school = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    x = np.tile([0.0, 1.0], 5)
    X = np.column_stack([np.ones(10), x])
    trials = rng.integers(3, 12, 10).astype(float)
    y_lo = np.array([0, 1, 2, 1, 0, 3, 1, 0, 1, 2], dtype=float)
    y_hi = np.array([0, 2, 2, 2, 0, 3, 2, 0, 3, 2], dtype=float)  # cells 2, 4, 7, 9 censored
    comps = [Component("la", "la", la, 2, ("a", "b")),
             Component("school", "school", school, 5, tuple("12345"))]
    beta, sigma = np.array([-1.0, 0.3]), np.array([0.4, 0.7])
    model = LaplaceGLMM(X, comps, CellModel(family, y_lo, trials, y_hi))
    mine, _ = model.objective(beta, sigma)
    oracle = _brute_force_laplace(family, X, comps, y_lo.astype(int), y_hi.astype(int),
                                  trials, beta, sigma)
    assert mine == pytest.approx(oracle, abs=1e-6)


def test_censored_fit_matches_exact_marginal_likelihood_by_quadrature():
    # Oracle: the exact marginal likelihood of a one-level Poisson model with censored
    # cells, by 80-point Gauss-Hermite quadrature of each school's integral and scipy's
    # Nelder-Mead; with about 40 events per school Laplace and exact agree closely.
    rng = np.random.default_rng(11)
    n_school, per = 30, 4
    school = np.repeat(np.arange(n_school), per)
    x = np.tile([0.0, 1.0, 0.0, 1.0], n_school)
    trials = rng.integers(20, 60, len(school)).astype(float)
    u = rng.normal(0, 0.5, n_school)
    y = rng.poisson(trials * np.exp(-3.0 + 0.6 * x + u[school])).astype(float)
    lo, hi = y.copy(), y.copy()
    hidden = y <= 2
    lo[hidden], hi[hidden] = np.where(y[hidden] == 0, 0.0, 1.0), np.where(y[hidden] == 0,
                                                                          0.0, 2.0)
    cells = pd.DataFrame({"school": [f"s{s:02d}" for s in school],
                          "fsm": np.where(x == 1, "yes", "no"), "n_susp": lo,
                          "n_pupils": trials})
    spec = ModelSpec(family="poisson", events="n_susp", trials="n_pupils", formula="fsm",
                     groups=("school",), engine="ml")
    design = build_design(spec, cells)
    censored = design.__class__(**{**design.__dict__, "events_upper": hi})
    fit = ml.fit(censored, spec, progress=False)
    assert fit.diagnostics["n_censored_cells"] == int(np.sum(hi > lo))

    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    ks = np.arange(0, 3)

    def neg_marginal(par):
        b0, b1, log_sd = par
        eta = b0 + b1 * x[:, None] + np.exp(log_sd) * nodes[None, :]   # cells x nodes
        mu = trials[:, None] * np.exp(eta)
        exact = stats.poisson.logpmf(y[:, None], mu)
        lpk = stats.poisson.logpmf(ks[None, None, :], mu[:, :, None])
        in_range = (ks[None, :] >= lo[:, None]) & (ks[None, :] <= hi[:, None])
        cens = special.logsumexp(np.where(in_range[:, None, :], lpk, -np.inf), axis=2)
        ll = np.where((hi > lo)[:, None], cens, exact)
        per_school = np.zeros((n_school, len(nodes)))
        np.add.at(per_school, school, ll)
        return -np.sum(special.logsumexp(per_school, b=weights[None, :], axis=1))

    start = [fit.coef[0], fit.coef[1], np.log(fit.group_sd.estimate[0])]
    exact = optimize.minimize(neg_marginal, start, method="Nelder-Mead",
                              options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000}).x
    se = np.r_[fit.std_errors, fit.group_sd.std_error[0]]
    got = np.r_[fit.coef, fit.group_sd.estimate[0]]
    want = np.r_[exact[:2], np.exp(exact[2])]
    assert np.all(np.abs(got - want) < 0.1 * se), (got, want, se)
    # the test can fail: taking each censored count at its lower end moves the fit away
    naive = ml.fit(design, spec, progress=False)
    naive_got = np.r_[naive.coef, naive.group_sd.estimate[0]]
    assert np.max(np.abs(naive_got - want) / se) > 0.3, (naive_got, want, se)


def test_sparse_events_warn_and_point_to_pymc():
    rng = np.random.default_rng(5)
    n_school = 200
    school = np.repeat(np.arange(n_school), 2)
    trials = np.full(len(school), 150)
    p = special.expit(-6.5 + rng.normal(0, 0.6, n_school)[school])
    cells = pd.DataFrame({"school": [f"s{s:03d}" for s in school],
                          "sen": np.tile(["none", "ehcp"], n_school),
                          "n_perm_excl": rng.binomial(trials, p), "n_pupils": trials})
    spec = ModelSpec(formula="sen", groups=("school",), engine="ml")
    with pytest.warns(Warning) as caught:
        fit = ml.fit(build_design(spec, cells), spec, progress=False)
    text = " ".join(str(w.message) for w in caught)
    assert "events per school" in text and "pymc" in text
    assert fit.diagnostics["sparse_events"]["term"] == "school"


@pytest.mark.parametrize("family", ["binomial", "negative_binomial"])
def test_polished_fits_from_different_starts_agree_to_rounding_error(family, monkeypatch):
    # Oracle: the maximum is unique, so two fits from different starts (different BFGS
    # paths, as rounding on two machines gives) must end at the same point; published
    # digits (three of the SE, disparity.report.precision) need agreement far below 1e-3 SE.
    from disparity.engines import laplace_fit

    X, comps, cells = _design(family, seed=5, slope=True)
    nb = family == "negative_binomial"

    def fit(start=None):
        model = LaplaceGLMM(X, comps, cells)
        r = laplace_fit.fit_laplace(model, nb=nb, start=start)
        t = np.concatenate([r.beta, r.sigma, [np.log(r.alpha)] if nb else []])
        return t, r

    t_a, r_a = fit()
    se = np.sqrt(np.diag(np.linalg.inv(r_a.hessian)))
    start = t_a.copy()
    start[r_a.active] += 0.3 * se  # a third of an SE away: BFGS takes another path
    t_b, r_b = fit(start)
    assert r_a.polish_steps >= 1 and r_b.polish_steps >= 1
    gap = np.abs(t_a - t_b)[r_a.active] / se
    assert gap.max() < 1e-8, gap
    # the curvature's difference directions come from the start's whitening, so another
    # start moves the SEs by the truncation error of the differences (on two machines the
    # start, and so the directions, are the same)
    se_b = np.sqrt(np.diag(np.linalg.inv(r_b.hessian)))
    assert np.max(np.abs(se_b / se - 1)) < 1e-5
    # the test can fail: BFGS alone stops within its tolerance, at a path-dependent point
    monkeypatch.setattr(laplace_fit, "POLISH_STEPS", 0)
    t_c, _ = fit()
    t_d, _ = fit(start)
    assert (np.abs(t_c - t_d)[r_a.active] / se).max() > 1e-8


def test_hessian_by_richardson_differences_matches_the_hessian_of_the_value():
    # Oracle: second differences of the objective's *value* (each a full mode search) at
    # a wide step with Richardson extrapolation, independent of the gradient code.
    from disparity.engines import laplace_fit

    X, comps, cells = _design("binomial", seed=8)
    model = LaplaceGLMM(X, comps, cells)
    r = laplace_fit.fit_laplace(model, nb=False)
    t = np.concatenate([r.beta, r.sigma])

    def f(tt):
        m = LaplaceGLMM(X, comps, cells)
        return m.objective(tt[:2], tt[2:], None)[0]

    want = (4 * _second_differences(f, t, 2e-3) - _second_differences(f, t, 4e-3)) / 3
    np.testing.assert_allclose(r.hessian, want, rtol=2e-5, atol=1e-6 * np.abs(want).max())
