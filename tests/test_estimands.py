"""Tests for disparity.estimands.

Oracles: crude risk ratios of a saturated model computed by hand; the closed form of the
log link (the standardised rate ratio is exp(coef)); the known truth of simulated data;
ICC and median odds ratio arithmetic written out; Benjamini-Hochberg on a hand example;
event shares counted by hand; the GLM score equations; invariances.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from disparity.design import Design, GroupTerm, SlopeTerm, build_design
from disparity.draws import parameter_draws, point_parameters
from disparity.engines import glm, ml
from disparity.engines.base import ESTIMATE_COLUMNS, Fit
from disparity.errors import SpecError
from disparity.estimands import (
    MEDIATOR_NOTE,
    OddsRatioWarning,
    adjustment_ladder,
    bayes_fdr,
    bh_adjust,
    event_shares,
    icc_mor,
    rate_ratios,
    unit_effects,
    unit_rate_ratios,
)
from disparity.spec import ModelSpec

#: Standard normal quantiles (Abramowitz and Stegun, Table 26.5).
Z75 = 0.6744897501960817
Z975 = 1.959963984540054


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- data
def _saturated_cells() -> pd.DataFrame:
    # one binary factor spread over three schools; the formula has nothing else
    return pd.DataFrame({
        "school": ["s1", "s1", "s2", "s2", "s3", "s3"],
        "eth": ["A", "B", "A", "B", "A", "B"],
        "n_perm_excl": [4, 3, 6, 5, 2, 4],
        "n_pupils": [400, 100, 500, 150, 300, 90],
    })


def _simulated(seed: int, family: str = "binomial", n_schools: int = 60):
    """Cells school x eth x sen with school effects N(0, 0.5); returns cells and truth."""
    rng = np.random.default_rng(seed)
    b0, b_eth, b_sen = (-3.5, 0.6, 1.2)
    u = rng.normal(0.0, 0.5, n_schools)
    school = np.repeat(np.arange(n_schools), 4)
    eth = np.tile([0, 1, 0, 1], n_schools)
    sen = np.tile([0, 0, 1, 1], n_schools)
    trials = rng.integers(100, 300, len(school)).astype(float)
    eta = b0 + b_eth * eth + b_sen * sen + u[school]
    if family == "binomial":
        events = rng.binomial(trials.astype(int), _expit(eta))
    else:
        events = rng.poisson(trials * np.exp(eta))
    cells = pd.DataFrame({
        "school": [f"S{s:02d}" for s in school],
        "eth": np.array(["A", "B"])[eth],
        "sen": np.array(["none", "ehcp"])[sen],
        "n_perm_excl": events,
        "n_pupils": trials,
    })
    truth = dict(b0=b0, b_eth=b_eth, b_sen=b_sen, u=u, school=school, sen=sen, trials=trials)
    return cells, truth


def _spec(**kw) -> ModelSpec:
    base = dict(formula="eth + sen", groups=("school",), reference={"eth": "A", "sen": "none"},
                engine="ml")
    base.update(kw)
    return ModelSpec(**base)


def _rows(table: pd.DataFrame, estimand: str) -> pd.DataFrame:
    return table[table["estimand"] == estimand].reset_index(drop=True)


# --------------------------------------------------------------------------- (a) saturated
@pytest.mark.parametrize("standard", ["all", "group"])
def test_saturated_glm_gives_crude_risk_ratio(standard):
    cells = _saturated_cells()
    spec = ModelSpec(formula="eth", reference={"eth": "A"}, engine="glm")
    design = build_design(spec, cells)
    fit = glm.fit(design, spec)
    table = rate_ratios(fit, design, "eth", standard=standard, n_draws=2000, seed=1)
    assert tuple(table.columns[: len(ESTIMATE_COLUMNS)]) == ESTIMATE_COLUMNS
    # crude risks by hand: A (4+6+2)/(400+500+300) = 12/1200 = 0.01;
    # B (3+5+4)/(100+150+90) = 12/340; risk ratio (12/340)/0.01 = 3.529411..., difference
    # 12/340 - 0.01 = 0.025294...
    risk_a, risk_b = 12 / 1200, 12 / 340
    rr, rd = _rows(table, "rate_ratio").iloc[0], _rows(table, "rate_difference").iloc[0]
    assert rr.term == "eth[T.B]" and rr.level == "B" and rr.reference == "A"
    assert rr.estimate == pytest.approx(risk_b / risk_a, rel=1e-7)
    assert rd.estimate == pytest.approx(risk_b - risk_a, rel=1e-7)
    assert rr.rate == pytest.approx(risk_b, rel=1e-7)
    assert rr.rate_reference == pytest.approx(risk_a, rel=1e-7)
    assert rr.conf_low < rr.estimate < rr.conf_high and rr.std_error > 0
    assert rr.group_effects == "observed" and rr.standard == standard and rr.ci_prob == 0.95


def test_odds_ratio_overstating_risk_ratio_warns():
    # common events: risks 0.4 vs 0.2, RR 2, OR (0.4/0.6)/(0.2/0.8) = 2.667 (factor 1.33)
    cells = pd.DataFrame({"eth": ["A", "B"], "n_perm_excl": [40, 40], "n_pupils": [200, 100]})
    spec = ModelSpec(formula="eth", reference={"eth": "A"}, engine="glm")
    design = build_design(spec, cells)
    fit = glm.fit(design, spec)
    with pytest.warns(OddsRatioWarning, match="overstate"):
        table = rate_ratios(fit, design, "eth", n_draws=200)
    rr = _rows(table, "rate_ratio").iloc[0]
    assert rr.estimate == pytest.approx(2.0, rel=1e-7)
    assert "overstates" in rr.note


# --------------------------------------------------------------------------- (b) invariance
@pytest.mark.parametrize("groups", [(), ("school",)])
def test_without_random_effects_all_group_effect_choices_agree(groups):
    cells, _ = _simulated(seed=4, n_schools=12)
    spec = _spec(engine="glm", groups=groups)
    design = build_design(spec, cells)
    fit = glm.fit(design, spec)
    tables = [
        rate_ratios(fit, design, "eth", group_effects=ge, n_draws=300, seed=8)
        for ge in ("conditional", "observed", "integrated")
    ]
    cols = ["estimate", "std_error", "conf_low", "conf_high"]
    for other in tables[1:]:
        np.testing.assert_allclose(other[cols].to_numpy(), tables[0][cols].to_numpy(),
                                   rtol=1e-12)


# --------------------------------------------------------------------------- (c) closed form
def test_poisson_glm_rate_ratio_is_exp_coef():
    cells, _ = _simulated(seed=5, family="poisson", n_schools=10)
    spec = _spec(engine="glm", family="poisson", groups=())
    design = build_design(spec, cells)
    fit = glm.fit(design, spec)
    j = fit.terms.index("eth[T.B]")
    for standard in ("all", "group"):
        table = rate_ratios(fit, design, "eth", standard=standard, n_draws=500, seed=3)
        rr = _rows(table, "rate_ratio").iloc[0]
        # exp(b) multiplies every cell's rate, so the weighted average ratio is exp(b)
        assert rr.estimate == pytest.approx(math.exp(fit.coef[j]), rel=1e-10)
        # draw by draw too: each ratio draw is exp() of its coefficient draw
        coef_draws = parameter_draws(fit, design, n_draws=500, seed=3).coef[:, j]
        low, high = np.quantile(np.exp(coef_draws), [0.025, 0.975])
        assert (rr.conf_low, rr.conf_high) == pytest.approx((low, high), rel=1e-10)


def test_poisson_glmm_rate_ratio_is_exp_coef_for_every_group_effect_choice():
    cells, _ = _simulated(seed=6, family="poisson", n_schools=20)
    spec = _spec(family="poisson")
    design = build_design(spec, cells)
    fit = ml.fit(design, spec, progress=False)
    j = fit.terms.index("eth[T.B]")
    for ge in ("observed", "conditional", "integrated"):
        rr = _rows(rate_ratios(fit, design, "eth", group_effects=ge, n_draws=200), "rate_ratio")
        assert rr.estimate.iloc[0] == pytest.approx(math.exp(fit.coef[j]), rel=1e-10)


# --------------------------------------------------------------------------- (d) truth
def test_binomial_glmm_marginal_rate_ratio_covers_the_truth():
    cells, t = _simulated(seed=3)
    spec = _spec()
    design = build_design(spec, cells)
    fit = ml.fit(design, spec, progress=False)
    # The true marginal risk ratio with every cell at its own school's true effect:
    # sum_c n_c expit(b0 + b_eth + b_sen sen_c + u_s(c)) / sum_c n_c expit(b0 + b_sen sen_c
    # + u_s(c)), from the simulation's own linear predictor.
    base = t["b0"] + t["b_sen"] * t["sen"] + t["u"][t["school"]]
    n = t["trials"]
    true_rr = np.sum(n * _expit(base + t["b_eth"])) / np.sum(n * _expit(base))
    true_rd = (np.sum(n * _expit(base + t["b_eth"])) - np.sum(n * _expit(base))) / np.sum(n)
    table = rate_ratios(fit, design, "eth", n_draws=1000, seed=2)
    rr, rd = _rows(table, "rate_ratio").iloc[0], _rows(table, "rate_difference").iloc[0]
    assert rr.conf_low < true_rr < rr.conf_high
    assert rd.conf_low < true_rd < rd.conf_high
    assert abs(rr.estimate - true_rr) < 2 * rr.std_error
    # The plug-in estimate sits well inside its own interval (not at an edge): unit effects
    # are held at their modes in the draws of a population-averaged estimand.
    for row in (rr, rd):
        width = row.conf_high - row.conf_low
        assert row.conf_low + 0.25 * width < row.estimate < row.conf_high - 0.25 * width
    # the conditional version (school effects at zero) against its truth
    cond = _rows(rate_ratios(fit, design, "eth", group_effects="conditional"), "rate_ratio")
    base0 = t["b0"] + t["b_sen"] * t["sen"]
    true_cond = np.sum(n * _expit(base0 + t["b_eth"])) / np.sum(n * _expit(base0))
    assert cond.conf_low.iloc[0] < true_cond < cond.conf_high.iloc[0]
    # units: the conditional modes track the true school effects
    units = _rows(unit_effects(fit, design, "school"), "unit_ratio")
    order = [int(level[1:]) for level in units.level]
    r = np.corrcoef(np.log(units.estimate), t["u"][order])[0, 1]
    assert r > 0.7
    flagged = units[units.flag_fdr]
    assert len(flagged) > 0 and (t["u"][[int(x[1:]) for x in flagged.level]] > 0).mean() >= 0.9


# --------------------------------------------------------------------------- (e) ICC, MOR
def _sd_fit(family: str, sds: dict, ses: dict) -> Fit:
    group_sd = pd.DataFrame({"term": list(sds), "estimate": list(sds.values()),
                             "std_error": [ses[k] for k in sds], "conf_low": np.nan,
                             "conf_high": np.nan})
    return Fit(engine="ml", family=family, terms=("Intercept",), coef=np.zeros(1),
               coef_cov=np.eye(1), group_sd=group_sd)


def test_icc_and_median_odds_ratio_by_hand():
    table = icc_mor(_sd_fit("binomial", {"school": 0.6}, {"school": 0.05}), n_draws=4000)
    t = table.set_index(["estimand", "term"])
    # MOR = exp(sqrt(2 * 0.36) * 0.6745) = exp(0.848528 * 0.674490) = exp(0.572324) = 1.77238
    assert t.loc[("median_odds_ratio", "school"), "estimate"] == pytest.approx(1.77238, abs=1e-5)
    # ICC = 0.36 / (0.36 + pi^2/3) = 0.36 / (0.36 + 3.289868) = 0.36 / 3.649868 = 0.098634
    assert t.loc[("icc", "school"), "estimate"] == pytest.approx(0.098634, abs=1e-6)
    # one term: total = the term
    assert t.loc[("icc", "total"), "estimate"] == t.loc[("icc", "school"), "estimate"]
    # interval: sd log-normal(log 0.6, 0.05 / 0.6); MOR is increasing in sd, so its 2.5%
    # point is exp(sqrt(2) * 0.6 exp(-1.96 * 0.08333) * 0.6745) = exp(0.48726) = 1.6278
    low = math.exp(math.sqrt(2) * 0.6 * math.exp(-Z975 * 0.05 / 0.6) * Z75)
    assert t.loc[("median_odds_ratio", "school"), "conf_low"] == pytest.approx(low, rel=0.01)


def test_icc_two_terms_and_count_family():
    fit = _sd_fit("binomial", {"la": 0.3, "school": 0.5}, {"la": 0.03, "school": 0.04})
    t = icc_mor(fit).set_index(["estimand", "term"])
    # denominators: 0.09 + 0.25 + 3.289868 = 3.629868
    assert t.loc[("icc", "la"), "estimate"] == pytest.approx(0.09 / 3.629868, abs=1e-6)
    assert t.loc[("icc", "total"), "estimate"] == pytest.approx(0.34 / 3.629868, abs=1e-6)
    # total MOR: exp(sqrt(2 * 0.34) * 0.6745) = exp(0.824621 * 0.674490) = exp(0.556198)
    # = e^0.5 * e^0.056198 = 1.648721 * 1.057807 = 1.74403
    assert t.loc[("median_odds_ratio", "total"), "estimate"] == pytest.approx(
        math.exp(math.sqrt(0.68) * Z75), rel=1e-9)
    assert math.exp(math.sqrt(0.68) * Z75) == pytest.approx(1.74403, abs=1e-5)
    counts = icc_mor(_sd_fit("poisson", {"la": 0.3}, {"la": 0.03}))
    assert set(counts.estimand) == {"median_rate_ratio"}  # no latent-scale ICC for counts
    # an SD at zero without a standard error: MOR 1, no interval
    zero = icc_mor(_sd_fit("binomial", {"school": 0.0}, {"school": np.nan}))
    row = zero.set_index(["estimand", "term"]).loc[("median_odds_ratio", "school")]
    assert row.estimate == 1.0 and np.isnan(row.conf_low) and np.isnan(row.conf_high)


# --------------------------------------------------------------------------- (f) FDR
def test_benjamini_hochberg_hand_example():
    # m = 10, alpha = 0.05; thresholds k * 0.005. Sorted p: 0.010 > 0.005 and 0.013 > 0.010
    # fail their own thresholds, but 0.014 <= 0.015, so the step-up rejects the three
    # smallest. q_(i) = min_{j>=i} 10 p_(j) / j: 10*0.014/3 = 0.046667 for the first three;
    # 10*0.19/4 = 0.475; 10*0.35/5 = 0.7; then min(10*0.5/6, ..., 10*0.81/10) = 0.81.
    p = np.array([0.190, 0.010, 0.350, 0.013, 0.500, 0.014, 0.630, 0.670, 0.750, 0.810])
    q = bh_adjust(p)
    expected = [0.475, 0.14 / 3, 0.7, 0.14 / 3, 0.81, 0.14 / 3, 0.81, 0.81, 0.81, 0.81]
    np.testing.assert_allclose(q, expected, rtol=1e-12)
    assert (q <= 0.05).tolist() == [False, True, False, True, False, True] + [False] * 4
    assert np.isnan(bh_adjust([np.nan, 0.01]))[0] and bh_adjust([np.nan, 0.01])[1] == 0.01


def test_bayes_fdr_hand_example():
    # sorted error probabilities 0.02, 0.04, 0.5: running means 0.02, 0.03, 0.18667
    np.testing.assert_allclose(bayes_fdr([0.5, 0.02, 0.04]), [0.56 / 3, 0.02, 0.03])


# --------------------------------------------------------------------------- unit effects
def _two_school_fit():
    g = GroupTerm(name="school", columns=("school",), index=np.array([0, 1]), levels=("A", "B"))
    design = Design(family="binomial", X=np.ones((2, 1)), terms=("Intercept",),
                    events=np.array([5.0, 20.0]), trials=np.array([100.0, 100.0]), groups=(g,))
    effects = pd.DataFrame({"level": ["A", "B"], "estimate": [-0.5, 0.5],
                            "std_error": [0.2, 0.2]})
    sd = pd.DataFrame({"term": ["school"], "estimate": [0.5], "std_error": [0.1],
                       "conf_low": [np.nan], "conf_high": [np.nan]})
    fit = Fit(engine="ml", family="binomial", terms=("Intercept",), coef=np.array([-2.0]),
              coef_cov=np.array([[0.01]]), group_sd=sd, group_effects={"school": effects})
    return fit, design


def test_unit_effects_by_hand():
    fit, design = _two_school_fit()
    table = unit_effects(fit, design, "school")
    ratio = _rows(table, "unit_ratio").set_index("level")
    rate = _rows(table, "unit_rate").set_index("level")
    # exp(u): exp(-0.5) = 0.606531, exp(0.5) = 1.648721
    assert ratio.estimate.tolist() == pytest.approx([math.exp(-0.5), math.exp(0.5)])
    # shrunken rates expit(-2 -/+ 0.5): expit(-2.5) = 0.075858, expit(-1.5) = 0.182426
    assert rate.estimate.tolist() == pytest.approx([0.075858, 0.182426], abs=1e-6)
    assert rate.observed_rate.tolist() == [0.05, 0.20]
    # P(exp(u) > 1) = Phi(u / se): Phi(-2.5) = 0.0062097, Phi(2.5) = 0.9937903 (A&S 26.1)
    assert ratio.prob_exceeds.tolist() == pytest.approx([0.0062097, 0.9937903], abs=1e-7)
    # one-sided p-values 0.99379 and 0.0062097; BH with m = 2: q_B = 2 * 0.0062097 / 1
    assert ratio.loc["B", "q_value"] == pytest.approx(2 * 0.0062097, abs=1e-6)
    assert ratio.flag_fdr.tolist() == [False, True]
    # threshold exp(0.5): school B sits exactly at it, probability one half
    at = _rows(unit_effects(fit, design, "school", threshold=math.exp(0.5)), "unit_ratio")
    assert at.prob_exceeds.iloc[1] == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(SpecError, match="group terms are"):
        unit_effects(fit, design, "la")


# --------------------------------------------------------------------------- unit rate ratios
def _slope_fit(family: str):
    g = GroupTerm(name="la", columns=("la",), index=np.array([0, 0, 1, 1]), levels=("L1", "L2"))
    s = SlopeTerm(group="la", variable="sen", columns=(1,), terms=("sen[T.ehcp]",))
    data = pd.DataFrame({"sen": pd.Categorical(["none", "ehcp"] * 2,
                                               categories=["none", "ehcp"])})
    import patsy

    info = patsy.dmatrix("sen", data).design_info
    design = Design(family=family, X=np.array([[1.0, 0.0], [1.0, 1.0]] * 2),
                    terms=("Intercept", "sen[T.ehcp]"), events=np.ones(4),
                    trials=np.array([80.0, 20.0, 60.0, 40.0]), groups=(g,), slopes=(s,),
                    data=data, design_info=info, levels={"sen": ("none", "ehcp")},
                    reference={"sen": "none"})
    effects = pd.DataFrame({"level": ["L1", "L2"], "estimate": [0.3, -0.3], "std_error": 0.1})
    dev = pd.DataFrame({"level": ["L1", "L2"], "term": "sen[T.ehcp]",
                        "estimate": [-0.2, 0.2], "std_error": 0.1})
    fit = Fit(engine="ml", family=family, terms=design.terms, coef=np.array([-3.0, 1.0]),
              coef_cov=np.eye(2) * 0.01, group_sd=pd.DataFrame(),
              group_effects={"la": effects}, slope_effects={"sen|la": dev})
    return fit, design


def test_unit_rate_ratios_by_hand():
    fit, design = _slope_fit("binomial")
    table = unit_rate_ratios(fit, design, "sen", "la", n_draws=200)
    link = _rows(table, "unit_odds_ratio")
    # exp(1 - 0.2) = 2.225541, exp(1 + 0.2) = 3.320117
    assert link.estimate.tolist() == pytest.approx([2.225541, 3.320117], abs=1e-6)
    assert link.unit.tolist() == ["L1", "L2"] and link.n_pupils_level.tolist() == [20.0, 40.0]
    marginal = _rows(table, "unit_marginal_rate_ratio")
    # L1: every cell's risk at ehcp / at none; both cells of L1 have the same X once set,
    # so RR = expit(-3 + 0.3 + 0.8) / expit(-3 + 0.3) = expit(-1.9) / expit(-2.7)
    assert marginal.estimate.iloc[0] == pytest.approx(_expit(-1.9) / _expit(-2.7), rel=1e-10)
    with pytest.raises(SpecError, match="no varying slopes"):
        unit_rate_ratios(fit, design, "fsm", "la")


def test_unit_marginal_rate_ratio_is_exp_link_for_log_link():
    fit, design = _slope_fit("poisson")
    table = unit_rate_ratios(fit, design, "sen", "la", n_draws=300, seed=4)
    link, marginal = _rows(table, "unit_rate_ratio"), _rows(table, "unit_marginal_rate_ratio")
    cols = ["estimate", "conf_low", "conf_high"]
    np.testing.assert_allclose(marginal[cols].to_numpy(), link[cols].to_numpy(), rtol=1e-10)


# --------------------------------------------------------------------------- (g) shares
def test_event_shares_by_hand_and_score_equations():
    cells = pd.DataFrame({
        "sen": ["none", "none", "ehcp", "ehcp", "none", "none", "ehcp", "ehcp"],
        "fsm": ["no", "yes", "no", "yes", "no", "yes", "no", "yes"],
        "cin": ["no", "no", "no", "no", "yes", "yes", "yes", "yes"],
        "n_perm_excl": [5, 4, 3, 2, 1, 2, 1, 2],
        "n_pupils": [1000, 300, 100, 60, 40, 30, 10, 10],
    })
    spec = ModelSpec(formula="sen + fsm + cin", engine="glm",
                     reference={"sen": "none", "fsm": "no", "cin": "no"})
    design = build_design(spec, cells)
    fit = glm.fit(design, spec)
    where = "sen != 'none' or cin == 'yes' or fsm == 'yes'"
    t = event_shares(cells, fit, design, where, n_draws=500).set_index("estimand")
    # every cell except the first is in the group: (20 - 5) / 20 events = 0.75;
    # pupils (1550 - 1000) / 1550 = 0.354839
    assert t.loc["event_share_observed", "estimate"] == 0.75
    assert t.loc["pupil_share", "estimate"] == pytest.approx(550 / 1550)
    assert t.loc["event_share_observed", "n_events"] == 15
    same = event_shares(cells, fit, design, {"sen": "ehcp", "cin": ["yes"], "fsm": "yes"},
                        n_draws=500).set_index("estimand")
    assert same.loc["event_share_observed", "estimate"] == 0.75
    # score equations of a canonical-link GLM with an intercept: fitted events of each
    # level of a factor equal the observed ones, so the expected share of sen != none is
    # the observed (3 + 2 + 1 + 2) / 20 = 0.4
    sen = event_shares(cells, fit, design, "sen == 'ehcp'", n_draws=500).set_index("estimand")
    assert sen.loc["event_share_expected", "estimate"] == pytest.approx(0.4, rel=1e-6)
    low, high = sen.loc["event_share_expected", ["conf_low", "conf_high"]]
    assert low < 0.4 < high
    with pytest.raises(SpecError, match="columns are"):
        event_shares(cells, fit, design, {"ethnicity": "x"})


# --------------------------------------------------------------------------- ladder
def test_adjustment_ladder_steps():
    cells, _ = _simulated(seed=7, n_schools=15)
    spec = _spec(engine="glm", groups=())
    steps = [{"label": "crude", "formula": "eth"},
             {"label": "+ SEN", "formula": "eth + sen"}]
    table = adjustment_ladder(spec, cells, "eth", steps, n_draws=200)
    assert table.step.tolist() == [1, 2] and table.step_label.tolist() == ["crude", "+ SEN"]
    assert (table.note == MEDIATOR_NOTE).all() and "mediators" in MEDIATOR_NOTE
    # step 1 is saturated: the crude risk ratio of the cells
    by_eth = cells.groupby("eth")[["n_perm_excl", "n_pupils"]].sum()
    risk = by_eth.n_perm_excl / by_eth.n_pupils
    assert table.estimate.iloc[0] == pytest.approx(risk["B"] / risk["A"], rel=1e-7)
    # read from the spec's [[ladder]] entries; a step without groups under "ml" uses glm
    ladder_spec = _spec(ladder=({"label": "crude", "formula": "eth", "groups": []},))
    from_spec = adjustment_ladder(ladder_spec, cells, "eth", n_draws=100)
    assert from_spec.engine.tolist() == ["glm"]
    assert from_spec.estimate.iloc[0] == pytest.approx(table.estimate.iloc[0], rel=1e-10)
    with pytest.raises(SpecError, match="does not contain 'eth'") as err:
        adjustment_ladder(spec, cells, "eth", [{"label": "x", "formula": "sen", "colour": 1}])
    assert "unknown key" in str(err.value)


# --------------------------------------------------------------------------- choices
def test_bad_choices_are_named():
    cells = _saturated_cells()
    spec = ModelSpec(formula="eth", reference={"eth": "A"}, engine="glm")
    design = build_design(spec, cells)
    fit = glm.fit(design, spec)
    with pytest.raises(SpecError, match="'observed', 'conditional', 'integrated'"):
        rate_ratios(fit, design, "eth", group_effects="marginal")
    with pytest.raises(SpecError, match="categorical variables are"):
        rate_ratios(fit, design, "sen")


# --------------------------------------------------------------------------- pymc
@pytest.mark.filterwarnings("ignore::disparity.errors.ConvergenceWarning")
def test_bayesian_fit_uses_posterior_draws():
    from disparity.engines import pymc as pymc_engine

    rng = np.random.default_rng(1)
    school = np.repeat(np.arange(8), 2)
    eth = np.tile([0, 1], 8)
    eta = -3.0 + 0.5 * eth + rng.normal(0, 0.4, 8)[school]
    cells = pd.DataFrame({"school": [f"S{s}" for s in school], "eth": np.array(["A", "B"])[eth],
                          "n_perm_excl": rng.binomial(200, _expit(eta)), "n_pupils": 200})
    spec = ModelSpec(formula="eth", groups=("school",), reference={"eth": "A"}, engine="pymc",
                     draws=200, tune=200, chains=2, sampler="pymc", seed=3,
                     engine_options={"pymc": {"cores": 1}})
    design = build_design(spec, cells)
    fit = pymc_engine.fit(design, spec, progress=False)
    draws = parameter_draws(fit, design, n_draws=1000)
    assert draws.method == "posterior" and draws.n_draws == 400
    # the group-effect draws are the posterior's, in the design's level order
    posterior = fit.raw.posterior["effect_school"].values.reshape(400, 8)
    np.testing.assert_array_equal(draws.group["school"], posterior)
    np.testing.assert_allclose(draws.group["school"].mean(axis=0),
                               fit.group_effects["school"].estimate, rtol=1e-12)
    table = rate_ratios(fit, design, "eth")
    rr = _rows(table, "rate_ratio").iloc[0]
    # Bayesian estimate: the posterior median of the ratio draws
    assert rr.method == "posterior" and rr.conf_low < rr.estimate < rr.conf_high
    sd_mor = icc_mor(fit).set_index(["estimand", "term"])
    mor_draws = np.exp(np.sqrt(2) * fit.sd_draws["school"] * Z75)
    assert sd_mor.loc[("median_odds_ratio", "school"), "estimate"] == pytest.approx(
        np.median(mor_draws), rel=1e-12)


def test_integrated_effects_match_numerical_integration():
    # Random intercept SD 0.5 by LA and slope SD 0.3 for ehcp: a cell set to ehcp has
    # latent variance 0.25 + 0.09 = 0.34, a cell set to none 0.25. With the fixed effects
    # (-3, 1), every cell's integrated risk is E expit(eta + s Z), computed here with
    # scipy's adaptive quadrature (an independent integrator).
    from scipy import integrate, stats

    fit, design = _slope_fit("binomial")
    sds = pd.DataFrame({"term": ["la", "sen[T.ehcp]|la"], "estimate": [0.5, 0.3],
                        "std_error": [0.05, 0.03], "conf_low": np.nan, "conf_high": np.nan})
    fit = Fit(**{**fit.__dict__, "group_sd": sds})

    def mean_risk(eta, var):
        f = lambda z: _expit(eta + math.sqrt(var) * z) * stats.norm.pdf(z)  # noqa: E731
        return integrate.quad(f, -12, 12, epsabs=1e-13)[0]

    expected = mean_risk(-2.0, 0.34) / mean_risk(-3.0, 0.25)
    table = rate_ratios(fit, design, "sen", group_effects="integrated", n_draws=200)
    assert _rows(table, "rate_ratio").estimate.iloc[0] == pytest.approx(expected, rel=1e-8)
    # and the conditional version: expit(-2) / expit(-3)
    cond = rate_ratios(fit, design, "sen", group_effects="conditional", n_draws=200)
    assert _rows(cond, "rate_ratio").estimate.iloc[0] == pytest.approx(
        _expit(-2.0) / _expit(-3.0), rel=1e-12)


def test_integrated_effects_on_many_cells_match_numerical_integration():
    # Many cells take the grid-and-interpolate path; each cell's integrated risk with
    # school SD 0.8 is checked against scipy's adaptive quadrature.
    from scipy import integrate, stats

    from disparity.estimands import _weighted_means  # the prediction core itself

    n = 3000
    rng = np.random.default_rng(0)
    g = GroupTerm(name="school", columns=("school",), index=rng.integers(0, 50, n),
                  levels=tuple(f"S{i}" for i in range(50)))
    x = rng.uniform(-3, 3, n)
    design = Design(family="binomial", X=np.column_stack([np.ones(n), x]),
                    terms=("Intercept", "x"), events=np.zeros(n), trials=np.ones(n),
                    groups=(g,))
    sd = pd.DataFrame({"term": ["school"], "estimate": [0.8], "std_error": [0.1],
                       "conf_low": np.nan, "conf_high": np.nan})
    fit = Fit(engine="ml", family="binomial", terms=design.terms, coef=np.array([-3.0, 0.7]),
              coef_cov=np.eye(2) * 0.01, group_sd=sd,
              group_effects={"school": pd.DataFrame({"level": g.levels, "estimate": 0.0,
                                                     "std_error": 0.1})})
    pick = np.arange(0, n, 300)
    W = np.zeros((n, pick.size))
    W[pick, np.arange(pick.size)] = 1.0  # one column per checked cell: its own risk
    got = _weighted_means(point_parameters(fit, design), design, design.X, W, "integrated")[0]
    for j, c in enumerate(pick):
        eta = -3.0 + 0.7 * x[c]
        f = lambda z: _expit(eta + 0.8 * z) * stats.norm.pdf(z)  # noqa: E731
        assert got[j] == pytest.approx(integrate.quad(f, -12, 12, epsabs=1e-14)[0], rel=1e-7)
