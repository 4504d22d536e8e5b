"""Tests for disparity.engines.rhat_ess against ArviZ's own R-hat and ESS.

Oracle: ``arviz.rhat`` (rank-normalised split R-hat) and ``arviz.ess`` (bulk and tail), an
independent implementation of Vehtari et al. (2021), one parameter at a time.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from disparity.engines import rhat_ess


def _chains(seed: int, chains: int = 4, draws: int = 400) -> np.ndarray:
    """Parameters that mix well, slowly, not at all, with ties, and constant."""
    rng = np.random.default_rng(seed)
    k = 7
    x = rng.standard_normal((chains, draws, k))
    for phi, j in ((0.9, 1), (0.99, 2)):  # AR(1) chains
        for t in range(1, draws):
            x[:, t, j] = phi * x[:, t - 1, j] + np.sqrt(1 - phi**2) * x[:, t, j]
    x[:, :, 3] += np.arange(chains)[:, None] * 0.5  # chains disagree: R-hat well above 1
    x[:, :, 4] = rng.poisson(1.0, (chains, draws))  # heavy ties
    x[:, :, 5] = np.exp(x[:, :, 5] * 2)  # skewed
    x[:, :, 6] = 1.0  # constant
    return x


@pytest.mark.parametrize("seed, chains, draws", [(1, 4, 400), (2, 2, 101), (3, 8, 57)])
def test_rhat_and_ess_equal_arviz_parameter_by_parameter(seed, chains, draws):
    x = _chains(seed, chains, draws)
    got = {"rhat": rhat_ess.rhat(x), "bulk": rhat_ess.ess_bulk(x),
           "tail": rhat_ess.ess_tail(x)}
    for j in range(x.shape[2]):
        one = x[:, :, j]
        with warnings.catch_warnings():  # ArviZ warns on the constant parameter (NaN)
            warnings.simplefilter("ignore")
            expected = {"rhat": float(az.rhat(one)),
                        "bulk": float(az.ess(one, method="bulk")),
                        "tail": float(az.ess(one, method="tail"))}
        for name, value in expected.items():
            if np.isnan(value):
                assert np.isnan(got[name][j]), (name, j)
            else:
                assert got[name][j] == pytest.approx(value, rel=1e-9), (name, j)


def test_a_stuck_chain_is_flagged_and_blocks_give_the_same_answer(monkeypatch):
    x = _chains(4)
    assert rhat_ess.rhat(x)[3] > 1.1  # chains centred 0.5 apart
    assert rhat_ess.ess_bulk(x)[2] < rhat_ess.ess_bulk(x)[0] / 10  # AR(0.99) vs white noise
    together = rhat_ess.rhat_ess_bulk_tail(x)
    for one, name in zip(together, ("rhat", "ess_bulk", "ess_tail")):
        np.testing.assert_allclose(one, getattr(rhat_ess, name)(x), rtol=1e-12)
    whole = rhat_ess.ess_bulk(x)
    monkeypatch.setattr(rhat_ess, "BLOCK", 2)
    np.testing.assert_array_equal(rhat_ess.ess_bulk(x), whole)


def test_many_well_mixed_quantities_pass_r_hat_1_01_only_by_chance_and_stay_under_1_05():
    """Why the Bayesian engine holds group effects to R-hat 1.05, not 1.01: stationary AR(1)
    chains (4 x 1,000 draws, bulk ESS near 400 of 4,000, the least the engine accepts)
    have R-hats above 1.01 in a large share, though nothing is wrong with them; none
    reaches 1.05 (the performance page quotes the same study with 20,000 quantities)."""
    rng = np.random.default_rng(11)
    chains, draws, k, phi = 4, 1000, 2000, 0.818
    x = np.empty((chains, draws, k))
    x[:, 0] = rng.standard_normal((chains, k))
    noise = rng.standard_normal((chains, draws, k)) * np.sqrt(1 - phi**2)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    rhat, bulk, _ = rhat_ess.rhat_ess_bulk_tail(x)
    assert 300 < np.median(bulk) < 500
    assert np.mean(rhat > 1.01) > 0.2  # chance alone
    assert rhat.max() < 1.05 and bulk.min() > 100
