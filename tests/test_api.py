"""The Python entry point: ``disparity.fit`` from one formula, and the Result it returns.

The oracle is lme4's published ``cbpp`` fit (``data/README.md``): ``glmer(cbind(incidence,
size - incidence) ~ period + (1 | herd), family = binomial)`` gives -1.3983, -0.9919,
-1.1282, -1.5797 (standard errors 0.2312, 0.3032, 0.3228, 0.4220) and a herd SD of 0.6421.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import disparity
from disparity.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
LME4 = [-1.3983, -0.9919, -1.1282, -1.5797]
LME4_SE = [0.2312, 0.3032, 0.3228, 0.4220]


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "cbpp.csv")


@pytest.fixture(scope="module")
def result(cbpp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cbpp's odds ratios overstate its risk ratios
        return disparity.fit("p(incidence, size) ~ C(period) + (1 | herd)", cbpp,
                             n_draws=300, seed=3)


def test_fit_matches_lme4(result):
    coef = result.estimates[result.estimates.estimand == "coefficient"]
    assert coef.term.tolist() == ["Intercept", "period[T.2]", "period[T.3]", "period[T.4]"]
    np.testing.assert_allclose(coef.estimate, LME4, atol=2e-3)
    np.testing.assert_allclose(coef.std_error, LME4_SE, rtol=0.02)
    sd = result.icc().set_index("estimand").loc["group_sd"]
    assert float(sd.estimate) == pytest.approx(0.6421, abs=2e-3)


def test_summary_reads_like_a_model_summary(result):
    text = result.summary()
    assert "engine: ml" in text and "binomial (logit link)" in text
    assert "converged: yes" in text
    assert "period[T.4]" in text and "herd" in text
    assert "Adjusted risk ratios" in text
    assert repr(result).startswith("<disparity Result")


def test_rate_ratios_are_the_published_rows_and_can_be_recomputed(result, cbpp):
    rr = result.rate_ratios("period")
    assert rr.level.tolist() == ["2", "3", "4"]
    assert (rr.estimand == "rate_ratio").all()
    # recomputed with the run's own settings, the plug-in estimates are the published ones
    with pytest.warns(Warning, match="overstate"):  # cbpp's incidence is common (12%)
        same = result.rate_ratios("period", group_effects="observed", n_draws=300)
    np.testing.assert_allclose(same.estimate, rr.estimate, rtol=1e-12)
    # a typical herd (effects at zero): the risk ratio of the fixed effects alone, by hand
    b = result.estimates[result.estimates.estimand == "coefficient"].estimate.to_numpy()
    with pytest.warns(Warning, match="overstate"):
        again = result.rate_ratios("period", group_effects="conditional", n_draws=100)
    assert (again.group_effects == "conditional").all() and len(again) == 3
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(again.estimate, expit(b[0] + b[1:]) / expit(b[0]), rtol=1e-9)
    diffs = result.rate_differences("period")  # the published rows: no new warning
    assert (diffs.estimate < 0).all()  # every later period has fewer cases than period 1
    with pytest.raises(SpecError, match="not a categorical variable"):
        result.rate_ratios("sen")


def test_predict_on_an_unseen_herd(result):
    coef = result.estimates[result.estimates.estimand == "coefficient"].estimate.to_numpy()
    sd = float(result.icc().set_index("estimand").loc["group_sd"].estimate)
    herd1 = result.fit.group_effects["herd"].set_index("level").estimate.loc["1"]
    new = pd.DataFrame({"period": [1, 2, 1], "herd": [1, 1, 99]})
    link = result.predict(new, scale="link")
    assert link.iloc[0] == pytest.approx(coef[0] + herd1, abs=1e-9)
    assert link.iloc[1] == pytest.approx(coef[0] + coef[1] + herd1, abs=1e-9)
    assert link.iloc[2] == pytest.approx(coef[0], abs=1e-9)  # a new herd: no effect
    rate = result.predict(new)
    assert rate.iloc[2] == pytest.approx(1 / (1 + math.exp(-coef[0])), abs=1e-12)
    # integrated over herds: E expit(b0 + u), u ~ N(0, sd^2), by a fine grid
    u = np.linspace(-8 * sd, 8 * sd, 20001)
    density = np.exp(-0.5 * (u / sd) ** 2)
    mean = np.sum(density / (1 + np.exp(-(coef[0] + u)))) / np.sum(density)
    assert result.predict(new, new_levels="integrated").iloc[2] == pytest.approx(mean, rel=1e-6)
    with pytest.raises(SpecError, match="not in the fitted data"):
        result.predict(new, new_levels="error")
    with pytest.raises(SpecError, match="level"):
        result.predict(pd.DataFrame({"period": [7], "herd": [1]}))


def test_plot_gives_figures_of_the_report(result):
    from matplotlib.figure import Figure

    for kind in ("forest", "funnel", "caterpillar"):
        assert isinstance(result.plot(kind), Figure)
    with pytest.raises(SpecError, match="figures are"):
        result.plot("pie")


def test_report_goes_through_the_publish_stage(result, tmp_path):
    out = result.report(tmp_path / "run")
    assert (out / "report.md").is_file() and (out / "manifest.json").is_file()
    assert not (out / "restricted").exists()


def test_idata_needs_the_bayesian_engine(result):
    with pytest.raises(SpecError, match="engine='pymc'"):
        result.idata


def test_compare_two_engines(result, cbpp):
    glm = disparity.fit("p(incidence, size) ~ C(period) + (1 | herd)", cbpp, engine="glm",
                        scope="fit")
    both = result.compare(glm)
    coef = both[both.estimand == "coefficient"].set_index("term")
    # the glm is saturated in period: its intercept is the log odds of period 1, 61 / 217
    assert coef.loc["Intercept", "estimate_b"] == pytest.approx(math.log(61 / 217), abs=1e-8)
    assert coef.loc["Intercept", "difference"] == pytest.approx(
        coef.loc["Intercept", "estimate_b"] - coef.loc["Intercept", "estimate_a"])


def test_options_are_checked_like_a_model_file(cbpp):
    with pytest.raises(SpecError, match="did you mean 'n_draws'"):
        disparity.fit("p(incidence, size) ~ period", cbpp, n_draw=10)
    with pytest.raises(SpecError, match="ci_prob must be a number between 0 and 1"):
        disparity.fit("p(incidence, size) ~ period", cbpp, ci_prob=1.5)
    with pytest.raises(SpecError, match="did you mean 'binomial'"):
        disparity.fit("p(incidence, size) ~ period", cbpp, family="binomal")
    with pytest.raises(SpecError, match="reserved"):
        disparity.fit("p(incidence, size) ~ period + I(__import__('os'))", cbpp)


def test_a_spec_built_in_python_is_checked_like_one_from_a_file():
    from disparity.spec import ModelSpec

    with pytest.raises(SpecError, match="groups must be a list of strings"):
        ModelSpec(groups="la")
    with pytest.raises(SpecError, match="did you mean 'binomial'"):
        ModelSpec(family="binomal")
    with pytest.raises(SpecError, match="ci_prob must be a number between 0 and 1"):
        ModelSpec(ci_prob=1.5)
    with pytest.raises(SpecError, match="did you mean 'binomial'"):
        ModelSpec().replace(family="binomal")


def test_counts_with_an_offset(tmp_path):
    rng = np.random.default_rng(4)
    cells = pd.DataFrame({"school": [f"S{i}" for i in range(40) for _ in (0, 1)],
                          "fsm": ["no", "yes"] * 40,
                          "n_pupils": rng.integers(50, 200, 80)})
    cells["n_susp"] = rng.poisson(cells.n_pupils * np.where(cells.fsm == "yes", 0.3, 0.1))
    r = disparity.fit("n_susp ~ fsm + offset(log(n_pupils)) + (1 | school)", cells,
                      family="poisson", scope="fit")
    coef = r.estimates[r.estimates.estimand == "coefficient"].set_index("term").estimate
    assert math.exp(coef["fsm[T.yes]"]) == pytest.approx(3.0, rel=0.15)  # the truth, 0.3/0.1
    with pytest.raises(SpecError, match="family is required for a count response"):
        disparity.fit("n_susp ~ fsm + offset(log(n_pupils))", cells)


def test_import_disparity_stays_light():
    code = ("import sys, disparity; heavy = [m for m in ('pymc', 'statsmodels', "
            "'matplotlib', 'gpboost', 'arviz', 'scipy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    assert {"fit", "rates", "read_dfe", "simulate", "collapse", "validate", "load_model",
            "run"} <= set(disparity.__all__)
