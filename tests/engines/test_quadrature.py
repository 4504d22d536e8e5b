"""Nested adaptive Gauss-Hermite quadrature against a brute-force integral."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from disparity.design import build_design
from disparity.engines import ml
from disparity.engines.cell_likelihood import CellModel
from disparity.engines.laplace import Component, LaplaceGLMM
from disparity.engines.quadrature import NestedQuadrature
from disparity.errors import SpecError
from disparity.spec import ModelSpec


def _nested(seed=3, n_la=5, per_la=4, per_school=3):
    rng = np.random.default_rng(seed)
    n_school = n_la * per_la
    school = np.repeat(np.arange(n_school), per_school)
    la = school // per_la
    x = rng.integers(0, 2, len(school)).astype(float)
    X = np.column_stack([np.ones(len(school)), x])
    trials = rng.integers(50, 200, len(school)).astype(float)
    eta = -4 + 0.5 * x + rng.normal(0, 0.5, n_la)[la] + rng.normal(0, 0.8, n_school)[school]
    y = rng.binomial(trials.astype(int), special.expit(eta)).astype(float)
    return X, school, la, y, trials


def _brute_force(X, school, la, y, trials, beta, sigma_la, sigma_s, nodes=150):
    """The exact nested integral by non-adaptive Gauss-Hermite with many nodes."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    lw = np.log(w / w.sum())
    total = 0.0
    for g in np.unique(la):
        inner = np.zeros(nodes)
        for s in np.unique(school[la == g]):
            i = school == s
            eta = (X[i] @ beta)[:, None, None] + sigma_la * z[None, :, None] + sigma_s * z[
                None, None, :]
            ll = stats.binom.logpmf(y[i][:, None, None], trials[i][:, None, None],
                                    special.expit(eta)).sum(axis=0)
            inner += special.logsumexp(ll + lw[None, :], axis=1)
        total += special.logsumexp(inner + lw)
    return -total


def test_quadrature_converges_to_the_exact_likelihood_where_laplace_does_not():
    X, school, la, y, trials = _nested()
    cells = CellModel("binomial", y, trials)
    beta, sigma_la, sigma_s = np.array([-4.1, 0.45]), 0.45, 0.7
    exact = _brute_force(X, school, la, y, trials, beta, sigma_la, sigma_s)
    errors = {}
    for q in (5, 11):
        quad = NestedQuadrature(X, school, la, cells, q, q)
        errors[q] = abs(quad.objective(beta, sigma_la, sigma_s)[0] - exact)
    comps = [Component("la", "la", la, 5, ()), Component("school", "school", school, 20, ())]
    laplace = LaplaceGLMM(X, comps, cells).objective(beta, np.array([sigma_la, sigma_s]),
                                                     gradient=False)[0]
    assert abs(laplace - exact) > 0.03  # about 5 events per school: Laplace is off
    assert errors[5] < 3e-3 and errors[11] < 1e-5, errors


def test_quadrature_gradient_matches_differences_of_its_value():
    X, school, la, y, trials = _nested(seed=4)
    quad = NestedQuadrature(X, school, la, CellModel("binomial", y, trials), 11, 11)
    t0 = np.array([-4.0, 0.5, 0.4, 0.8])
    _, grad = quad.objective(t0[:2], t0[2], t0[3])
    h = 1e-5
    numeric = [(quad.objective(*np.split(t0 + h * e, [2, 3]))[0]
                - quad.objective(*np.split(t0 - h * e, [2, 3]))[0]) / (2 * h)
               for e in np.eye(4)]
    # Fisher's identity with fixed nodes: exact up to the (small) effect of node placement
    np.testing.assert_allclose(grad, numeric, atol=2e-3)


def test_ml_option_fits_by_quadrature_and_refuses_slopes():
    X, school, la, y, trials = _nested(seed=5, n_la=8, per_la=5)
    cells = pd.DataFrame({"la": [f"L{g}" for g in la], "school": [f"S{s:02d}" for s in school],
                          "fsm": np.where(X[:, 1] == 1, "yes", "no"), "n_perm_excl": y,
                          "n_pupils": trials})
    spec = ModelSpec(formula="fsm", groups=("la/school",), engine="ml",
                     engine_options={"ml": {"quadrature_nodes": 9}})
    design = build_design(spec, cells)
    fit = ml.fit(design, spec, progress=False)
    assert fit.diagnostics["approximation"].startswith("adaptive Gauss-Hermite")
    assert fit.diagnostics["converged"] is True
    # the quadrature maximum is the exact one: the brute-force likelihood at the estimate
    sd = fit.group_sd.estimate.to_numpy()
    exact = -_brute_force(design.X, design.group("school").index, design.group("la").index,
                          design.events, design.trials, fit.coef, sd[0], sd[1])
    assert fit.diagnostics["log_likelihood"] == pytest.approx(exact, abs=1e-3)
    assert np.all(np.isfinite(fit.group_sd.conf_high))
    with pytest.raises(SpecError, match="no varying slopes"):
        slopes = spec.replace(groups=("la",), slopes={"fsm": "la"})
        ml.fit(build_design(slopes, cells), slopes, progress=False)
