"""Tests for disparity.draws: joint parameter draws from any fit.

Oracles: the moments of the normal and log-normal distributions the draws are defined by,
the values a hand-built fit holds, and determinism under a seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from disparity.design import Design, GroupTerm, SlopeTerm
from disparity.draws import Draws, parameter_draws, point_parameters, sd_draws
from disparity.engines.base import Fit
from disparity.errors import DisparityError

TERMS = ("Intercept", "sen[T.ehcp]")


def _design(n_levels: int = 3) -> Design:
    index = np.repeat(np.arange(n_levels), 2)
    g = GroupTerm(name="school", columns=("school",), index=index,
                  levels=tuple(f"S{i}" for i in range(n_levels)))
    s = SlopeTerm(group="school", variable="sen", columns=(1,), terms=("sen[T.ehcp]",))
    X = np.tile([[1.0, 0.0], [1.0, 1.0]], (n_levels, 1))
    return Design(family="binomial", X=X, terms=TERMS, events=np.ones(2 * n_levels),
                  trials=np.full(2 * n_levels, 50.0), groups=(g,), slopes=(s,))


def _fit(**kw) -> Fit:
    # levels listed out of order on purpose: draws must follow the design's level order
    effects = pd.DataFrame({"level": ["S2", "S0", "S1"], "estimate": [0.3, -0.2, 0.0],
                            "std_error": [0.1, 0.05, 0.2]})
    slopes = pd.DataFrame({"level": ["S0", "S1", "S2"], "term": "sen[T.ehcp]",
                           "estimate": [0.1, -0.1, 0.0], "std_error": [0.02, 0.02, 0.02]})
    sd = pd.DataFrame({"term": ["school", "sen[T.ehcp]|school"], "estimate": [0.4, 0.1],
                       "std_error": [0.04, np.nan], "conf_low": [0.3, np.nan],
                       "conf_high": [0.5, np.nan]})
    base = dict(engine="ml", family="binomial", terms=TERMS, coef=np.array([-3.0, 1.0]),
                coef_cov=np.array([[0.04, -0.01], [-0.01, 0.09]]), group_sd=sd,
                group_effects={"school": effects}, slope_effects={"sen|school": slopes})
    base.update(kw)
    return Fit(**base)


def test_parametric_draws_have_the_stated_moments():
    d = parameter_draws(_fit(), _design(), n_draws=20000, seed=5)
    assert isinstance(d, Draws) and d.method == "parametric" and d.n_draws == 20000
    # coef ~ MVN(coef, coef_cov): mean, SDs 0.2 and 0.3, covariance -0.01
    np.testing.assert_allclose(d.coef.mean(axis=0), [-3.0, 1.0], atol=0.01)
    np.testing.assert_allclose(np.cov(d.coef, rowvar=False), [[0.04, -0.01], [-0.01, 0.09]],
                               atol=0.004)
    # group effects N(mode, SE) in the design's order S0, S1, S2
    np.testing.assert_allclose(d.group["school"].mean(axis=0), [-0.2, 0.0, 0.3], atol=0.01)
    np.testing.assert_allclose(d.group["school"].std(axis=0), [0.05, 0.2, 0.1], rtol=0.03)
    assert d.slopes["sen|school"].shape == (20000, 3, 1)
    np.testing.assert_allclose(d.slopes["sen|school"][:, :, 0].mean(axis=0), [0.1, -0.1, 0.0],
                               atol=0.005)
    # SD log-normal: median 0.4, log-scale SD 0.04 / 0.4 = 0.1
    log_sd = np.log(d.group_sd["school"])
    assert np.median(d.group_sd["school"]) == pytest.approx(0.4, rel=0.01)
    assert log_sd.std() == pytest.approx(0.1, rel=0.03)
    # an SD without a standard error is held at its estimate and listed
    assert np.all(d.group_sd["sen[T.ehcp]|school"] == 0.1)
    assert d.fixed_sd == ("sen[T.ehcp]|school",)


def test_draws_are_deterministic_per_seed():
    a = parameter_draws(_fit(), _design(), n_draws=50, seed=11)
    b = parameter_draws(_fit(), _design(), n_draws=50, seed=11)
    c = parameter_draws(_fit(), _design(), n_draws=50, seed=12)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.group["school"], b.group["school"])
    np.testing.assert_array_equal(a.group_sd["school"], b.group_sd["school"])
    assert not np.array_equal(a.coef, c.coef)
    assert not np.array_equal(a.group["school"], c.group["school"])


def test_point_parameters_are_the_estimates():
    p = point_parameters(_fit(), _design())
    assert p.n_draws == 1 and p.method == "point"
    np.testing.assert_array_equal(p.coef[0], [-3.0, 1.0])
    np.testing.assert_array_equal(p.group["school"][0], [-0.2, 0.0, 0.3])
    np.testing.assert_array_equal(p.slopes["sen|school"][0, :, 0], [0.1, -0.1, 0.0])
    assert float(p.group_sd["school"][0]) == 0.4


def test_fit_without_random_effects_gets_zero_group_effects():
    glm_fit = _fit(engine="glm", group_sd=pd.DataFrame(), group_effects={}, slope_effects={})
    d = parameter_draws(glm_fit, _design(), n_draws=10, seed=1)
    assert np.all(d.group["school"] == 0) and np.all(d.slopes["sen|school"] == 0)
    assert np.all(d.group_sd["school"] == 0)


def test_new_level_drawn_from_its_sd():
    # the design has a level S3 that the fit never saw: drawn from N(0, sd_school)
    design = _design(n_levels=4)
    d = parameter_draws(_fit(), design, n_draws=20000, seed=2)
    assert abs(d.group["school"][:, 3].mean()) < 0.01
    # E[(sd Z)^2] = E[sd^2] with sd log-normal(log 0.4, 0.1): 0.16 exp(2 * 0.01) = 0.1632
    assert np.mean(d.group["school"][:, 3] ** 2) == pytest.approx(0.16 * np.exp(0.02), rel=0.03)


def test_sd_draws_without_design_and_errors():
    d = sd_draws(_fit(), n_draws=100, seed=3)
    assert set(d.group_sd) == {"school", "sen[T.ehcp]|school"}
    with pytest.raises(DisparityError, match="n_draws"):
        parameter_draws(_fit(), _design(), n_draws=0)
    with pytest.raises(DisparityError, match="terms"):
        parameter_draws(_fit(terms=("Intercept", "x")), _design())


def test_posterior_draws_thinned_evenly_without_raw():
    # A Bayesian fit whose raw posterior was not kept: coefficient and SD draws are used
    # as they are (thinned evenly), the group effects from their posterior mean and SD.
    rng = np.random.default_rng(0)
    coef_draws = rng.normal(size=(400, 2))
    fit = _fit(engine="pymc", coef_draws=coef_draws,
               sd_draws={"school": np.abs(rng.normal(size=400)) + 0.1,
                         "sen[T.ehcp]|school": np.full(400, 0.1)})
    d = parameter_draws(fit, _design(), n_draws=100, seed=1)
    e = parameter_draws(fit, _design(), n_draws=100, seed=99)
    assert d.method == "posterior" and d.n_draws == 100
    # evenly spaced: draws 0, 4.03, ..., 399 rounded; the first and last are kept
    np.testing.assert_array_equal(d.coef[0], coef_draws[0])
    np.testing.assert_array_equal(d.coef[-1], coef_draws[-1])
    np.testing.assert_array_equal(d.coef, e.coef)  # thinning does not depend on the seed
    assert any("posterior mean" in n for n in d.notes)
    all_draws = parameter_draws(fit, _design(), n_draws=1000)
    np.testing.assert_array_equal(all_draws.coef, coef_draws)  # fewer than asked: all kept
