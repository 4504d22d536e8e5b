"""Tests for disparity.engines.glm: the fixed-effects engine on cells.

Oracles: log-odds written out by hand from the CBPP period totals (a one-factor model is
saturated, so R's glm reproduces them exactly); independent statsmodels fits to the
pupil-level (0/1 or per-pupil count) rows the cells summarise; the known truth of
simulated negative-binomial data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.design import build_design
from disparity.engines import get_engine
from disparity.engines.glm import GROUP_SD_COLUMNS, fit
from disparity.errors import ConvergenceWarning, FitError, SpecError
from disparity.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]
CBPP = ModelSpec(
    name="cbpp",
    family="binomial",
    events="incidence",
    trials="size",
    formula="period",
    reference={"period": "1"},
    engine="glm",
)


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "cbpp.csv")


def pupils_binary(design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand cells to one 0/1 row per animal (pupil): X rows, outcome, cell of each row."""
    events = design.events.astype(int)
    trials = design.trials.astype(int)
    cell = np.repeat(np.arange(design.n_cells), trials)
    y = np.concatenate([np.r_[np.ones(e), np.zeros(n - e)] for e, n in zip(events, trials)])
    return design.X[cell], y, cell


def test_cbpp_saturated_period_model_equals_hand_computed_log_odds(cbpp):
    result = fit(build_design(CBPP, cbpp), CBPP)
    # Period totals of data/cbpp.csv (cases / cattle): 61/278, 17/212, 14/197, 7/155.
    # One factor: the fit is saturated, so coefficients are the observed log odds and
    # log odds ratios (as R's glm(cbind(incidence, size - incidence) ~ period) gives).
    log_odds_1 = math.log(61 / (278 - 61))
    expected = [
        log_odds_1,
        math.log(17 / (212 - 17)) - log_odds_1,
        math.log(14 / (197 - 14)) - log_odds_1,
        math.log(7 / (155 - 7)) - log_odds_1,
    ]
    np.testing.assert_allclose(result.coef, expected, rtol=0, atol=1e-8)
    # Conventional SE of a saturated logit: sqrt(1/a + 1/b + 1/c + 1/d) for a 2x2 table.
    se_period2 = math.sqrt(1 / 61 + 1 / 217 + 1 / 17 + 1 / 195)
    assert result.std_errors[1] == pytest.approx(se_period2, abs=1e-8)
    assert result.terms == ("Intercept", "period[T.2]", "period[T.3]", "period[T.4]")
    assert result.diagnostics["cov_type"] == "nonrobust"
    assert result.diagnostics["converged"] is True


def test_cell_fit_equals_pupil_fit(cbpp):
    """Binomial on cells = Bernoulli on the animals, coefficients and SEs, to 1e-6."""
    import statsmodels.api as sm

    spec = CBPP.replace(formula="period + herd", reference={"period": "1", "herd": "1"})
    design = build_design(spec, cbpp)
    result = fit(design, spec)
    X, y, _ = pupils_binary(design)
    assert len(y) == 842 and y.sum() == 99  # every animal and case, once
    pupil = sm.Logit(y, X).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    np.testing.assert_allclose(result.coef, pupil.params, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.std_errors, pupil.bse, rtol=0, atol=1e-6)


def test_cluster_robust_se_equals_pupil_level_sandwich(cbpp):
    """Clustering cells on herd = clustering animals on herd (sandwich x G/(G-1))."""
    import statsmodels.api as sm

    spec = CBPP.replace(groups=("herd",))
    design = build_design(spec, cbpp)
    result = fit(design, spec)
    assert result.diagnostics["cov_type"] == "cluster"
    assert result.diagnostics["cluster"] == "herd"
    assert result.diagnostics["n_clusters"] == 15
    X, y, cell = pupils_binary(design)
    herd = design.group("herd").index[cell]
    pupil = sm.Logit(y, X).fit(
        disp=0,
        method="newton",
        tol=1e-12,
        cov_type="cluster",
        cov_kwds={"groups": herd, "use_correction": False},
    )
    g = 15
    np.testing.assert_allclose(result.coef, pupil.params, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        result.coef_cov, np.asarray(pupil.cov_params()) * g / (g - 1), rtol=1e-6, atol=1e-10
    )
    # Point estimates do not depend on the clustering.
    plain = fit(design, spec.replace(engine_options={"glm": {"cluster": "none"}}))
    np.testing.assert_allclose(plain.coef, result.coef, atol=1e-12)
    assert plain.diagnostics["cov_type"] == "nonrobust"


def test_cluster_on_innermost_nested_term():
    rng = np.random.default_rng(3)
    cells = pd.DataFrame(
        {
            "la": np.repeat(["E1", "E2", "E3"], 8),
            "estab": np.tile(np.repeat(["a", "b", "c", "d"], 2), 3),  # numbered within LA
            "sen": np.tile(["none", "ehcp"], 12),
            "n_pupils": rng.integers(50, 100, 24),
        }
    )
    cells["n_perm_excl"] = rng.binomial(cells["n_pupils"], 0.1)
    spec = ModelSpec(formula="sen", groups=("la/estab",), engine="glm")
    result = fit(build_design(spec, cells), spec)
    assert result.diagnostics["cluster"] == "estab"
    assert result.diagnostics["n_clusters"] == 12


def test_poisson_cell_fit_equals_pupil_fit():
    """Poisson on cells with offset log(pupils) = Poisson on each pupil's count."""
    import statsmodels.api as sm

    rng = np.random.default_rng(20240601)
    n = 3000
    pupils = pd.DataFrame(
        {
            "sen": rng.choice(["none", "support", "ehcp"], n, p=[0.8, 0.15, 0.05]),
            "fsm": rng.choice(["no", "yes"], n, p=[0.75, 0.25]),
        }
    )
    log_rate = -2.0 + 0.8 * (pupils["sen"] == "ehcp") + 0.5 * (pupils["fsm"] == "yes")
    pupils["n_susp"] = rng.poisson(np.exp(log_rate))
    cells = (
        pupils.groupby(["sen", "fsm"], as_index=False)
        .agg(n_susp=("n_susp", "sum"), n_pupils=("n_susp", "size"))
    )
    spec = ModelSpec(family="poisson", events="n_susp", formula="sen + fsm", engine="glm")
    design = build_design(spec, cells)
    result = fit(design, spec)
    assert design.terms == ("Intercept", "sen[T.support]", "sen[T.ehcp]", "fsm[T.yes]")
    X_pupil = np.column_stack(
        [
            np.ones(n),
            pupils["sen"] == "support",
            pupils["sen"] == "ehcp",
            pupils["fsm"] == "yes",
        ]
    ).astype(float)
    pupil = sm.GLM(pupils["n_susp"].to_numpy(), X_pupil, family=sm.families.Poisson()).fit(
        tol=1e-12
    )
    np.testing.assert_allclose(result.coef, pupil.params, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.std_errors, pupil.bse, rtol=0, atol=1e-6)
    assert result.dispersion is None


def test_negative_binomial_recovers_simulated_truth():
    rng = np.random.default_rng(11)
    n_cells = 4000
    cells = pd.DataFrame(
        {
            "school": np.arange(n_cells),  # one cell per school: no cell repeats
            "sen": rng.choice(["none", "ehcp"], n_cells),
            "n_pupils": rng.integers(20, 200, n_cells),
        }
    )
    true_coef = np.array([-3.0, 1.0])
    true_shape = 2.0  # variance = mu + mu^2 / 2
    mu = cells["n_pupils"] * np.exp(true_coef[0] + true_coef[1] * (cells["sen"] == "ehcp"))
    # Negative binomial as a gamma-Poisson mixture with mean mu and shape 2.
    cells["n_susp"] = rng.poisson(rng.gamma(true_shape, mu / true_shape))
    spec = ModelSpec(family="negative_binomial", events="n_susp", formula="sen", engine="glm")
    result = fit(build_design(spec, cells), spec)
    assert np.all(np.abs(result.coef - true_coef) < 4 * result.std_errors)
    se_shape = result.diagnostics["dispersion_std_error"]
    assert abs(result.dispersion - true_shape) < 4 * se_shape
    assert 0 < se_shape < 0.5


def test_group_sd_is_empty_with_the_contract_columns(cbpp):
    result = fit(build_design(CBPP, cbpp), CBPP)
    assert tuple(result.group_sd.columns) == GROUP_SD_COLUMNS
    assert len(result.group_sd) == 0
    assert result.engine == "glm" and result.family == "binomial"


def test_level_without_events_is_separation_naming_the_level(cbpp):
    frame = cbpp.copy()
    frame.loc[frame["period"] == 4, "incidence"] = 0
    with pytest.raises(FitError) as info:
        fit(build_design(CBPP, frame), CBPP)
    message = str(info.value)
    assert "level '4' of 'period' has no events (0 of 155 trials)" in message
    assert "on_separation" in message
    spec = CBPP.replace(engine_options={"glm": {"on_separation": "warn"}})
    with pytest.warns(ConvergenceWarning, match="level '4' of 'period'"):
        result = fit(build_design(spec, frame), spec)
    assert result.coef[3] < -10  # heading to minus infinity
    assert any("separation" in w for w in result.warnings)


def test_unknown_option_and_cluster_refused(cbpp):
    design = build_design(CBPP, cbpp)
    with pytest.raises(SpecError, match="unknown option"):
        fit(design, CBPP.replace(engine_options={"glm": {"clustr": "none"}}))
    with pytest.raises(SpecError, match="has none"):
        fit(design, CBPP.replace(engine_options={"glm": {"cluster": "herd"}}))


def test_get_engine_registry():
    assert get_engine("glm").fit is fit
    with pytest.raises(SpecError) as info:
        get_engine("pymcc")
    message = str(info.value)
    assert "did you mean 'pymc'" in message
    assert "'glm', 'ml', 'pymc'" in message
