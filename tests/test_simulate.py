"""Tests of disparity.simulate: determinism, layout, prevalences and recovery of the truth.

Oracles: the known truth of the simulation (coefficients, group SDs and realised effects
in ``Simulation.truth``), published 2016/17 national shares and rates (DfE, "Permanent and
fixed-period exclusions in England: 2016 to 2017": White British 67.8 % of pupils, FSM
13.9 %, SEN support 11.4 %, EHC plan 2.8 %, permanent exclusion 0.10 %, one or more
fixed-period exclusions 2.29 %, 2.08 fixed-period exclusions per excluded pupil), and
statsmodels GLMs as an independent estimator.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from disparity import vocabulary as v
from disparity.cells import collapse
from disparity.errors import DisparityError
from disparity.simulate import (
    ETHNICITY_SHARES,
    NC_YEAR_LEVELS,
    UNEXPLAINED_DESTINATIONS,
    LaterOutcomes,
    OffRollingTruth,
    Truth,
    simulate_off_rolling,
    simulate_pupils,
)


@pytest.fixture(scope="module")
def sim200k():
    return simulate_pupils(200_000, n_schools=400, n_las=20, n_trusts=30, seed=11)


@pytest.fixture(scope="module")
def sim_rich():
    """Every optional part switched on: trusts, LA-varying ethnicity, two years, nc_year."""
    return simulate_pupils(
        300_000, n_schools=300, n_las=30, n_years=2, n_trusts=40, seed=5,
        la_varying_ethnicity_sd=0.4, truth=Truth.with_nc_year(),
    )


# --------------------------------------------------------------------------- layout
def test_same_seed_same_output_different_seed_differs():
    a = simulate_pupils(5_000, n_schools=20, n_las=3, n_trusts=4, seed=1)
    b = simulate_pupils(5_000, n_schools=20, n_las=3, n_trusts=4, seed=1)
    c = simulate_pupils(5_000, n_schools=20, n_las=3, n_trusts=4, seed=2)
    pd.testing.assert_frame_equal(a.pupils, b.pupils)
    assert json.dumps(a.truth) == json.dumps(b.truth)
    cols = ["ethnicity", "fsm", "perm_excl"]
    assert not a.pupils[cols].equals(c.pupils[cols])
    assert a.truth["perm_excl"]["effects"] != c.truth["perm_excl"]["effects"]


def test_canonical_columns_levels_and_dtypes(sim200k):
    p = sim200k.pupils
    assert list(p.columns) == [
        "pupil_id", "year", "la", "school", "trust", "ethnicity", "sen", "fsm", "cin", "sex",
        "nc_year", "perm_excl", "any_susp", "n_susp",
    ]
    assert len(p) == 200_000 and p["pupil_id"].is_unique
    for col in v.CHARACTERISTICS:
        assert tuple(p[col].cat.categories) == v.LEVELS[col]
    assert tuple(p["nc_year"].cat.categories) == NC_YEAR_LEVELS
    assert p["year"].astype(str).unique().tolist() == ["2016/17"]
    assert p["la"].cat.categories[0] == "LA001" and p["school"].cat.categories[0] == "S00001"
    assert p["perm_excl"].dtype == np.int8 and p["any_susp"].dtype == np.int8
    assert set(np.unique(p["perm_excl"])) <= {0, 1}
    assert p.drop(columns="trust").notna().all().all()


def test_schools_nest_in_las_and_trusts_span_las(sim200k):
    p = sim200k.pupils
    assert (p.groupby("school", observed=True)["la"].nunique() == 1).all()
    in_trust = p[p["trust"].notna()]
    las_per_trust = in_trust.groupby("trust", observed=True)["la"].nunique()
    assert (las_per_trust > 1).any()
    # a school is in at most one trust
    assert (in_trust.groupby("school", observed=True)["trust"].nunique() == 1).all()


def test_standalone_schools_have_no_trust_and_the_truth_lists_members(sim200k):
    # Standalone schools must not form one big trust: their trust is missing, not a level.
    p = sim200k.pupils
    assert list(p["trust"].cat.categories) == [f"T{i:04d}" for i in range(1, 31)]
    standalone = p.loc[p["trust"].isna(), "school"].astype(str).unique()
    assert 0 < len(standalone) < p["school"].nunique()
    trusts = sim200k.truth["trusts"]
    assert sorted(trusts["standalone"]) == sorted(standalone)
    # membership in the truth is exactly the pupils' school -> trust map
    seen = (p.dropna(subset=["trust"]).groupby("school", observed=True)["trust"].first()
            .astype(str))
    from_truth = {s: t for t, schools in trusts["members"].items() for s in schools}
    assert from_truth == seen.to_dict()
    # secondary schools join trusts more often than primaries (75 % against 35 %)
    secondary = p.groupby("school", observed=True)["nc_year"].first().astype(str).isin(
        ["7", "8", "9", "10", "11"])
    in_trust = pd.Series({s: s in from_truth for s in secondary.index.astype(str)})
    assert in_trust[secondary.to_numpy()].mean() > in_trust[~secondary.to_numpy()].mean() + 0.2


def test_default_output_has_no_trust_truth():
    assert "trusts" not in simulate_pupils(1_000, n_schools=5, n_las=2, seed=3).truth


def test_n_susp_consistent_with_any_susp(sim200k):
    p = sim200k.pupils
    assert ((p["n_susp"] > 0) == (p["any_susp"] == 1)).all()


def test_no_trust_column_without_trusts():
    p = simulate_pupils(1_000, n_schools=5, n_las=2, seed=3).pupils
    assert "trust" not in p.columns


def test_bad_arguments_raise():
    with pytest.raises(DisparityError, match="n_schools must be a whole number >= 1"):
        simulate_pupils(100, n_schools=0)
    with pytest.raises(DisparityError, match="sd_school"):
        Truth(sd_school=-1.0)
    with pytest.raises(DisparityError, match="unknown levels"):
        Truth(effects={"perm_excl": {"sen": {"statement": 1.0}}, "any_susp": {}})


def test_write_round_trip(tmp_path):
    sim = simulate_pupils(2_000, n_schools=8, n_las=2, n_trusts=2, seed=4)
    sim.write(tmp_path / "pupils.parquet", tmp_path / "truth.json")
    back = pd.read_parquet(tmp_path / "pupils.parquet")
    pd.testing.assert_frame_equal(back, sim.pupils)
    assert json.loads((tmp_path / "truth.json").read_text()) == sim.truth
    with pytest.raises(DisparityError, match=".parquet or .csv"):
        sim.write(tmp_path / "pupils.xlsx", tmp_path / "t.json")


# --------------------------------------------------------------------------- prevalences
def test_prevalences_near_national_figures(sim200k):
    p = sim200k.pupils
    share = lambda col, level: float((p[col] == level).mean())  # noqa: E731
    # DfE 2016/17 (module docstring); LA compositions vary, so White British has a wider band
    assert 0.60 < share("ethnicity", "White British") < 0.74
    assert 0.12 < share("fsm", "yes") < 0.20
    assert 0.10 < share("sen", "support") < 0.14
    assert 0.02 < share("sen", "ehcp") < 0.04
    assert 0.02 < share("cin", "yes") < 0.045
    assert 0.49 < share("sex", "male") < 0.53
    assert 0.0006 < p["perm_excl"].mean() < 0.0016
    assert 0.015 < p["any_susp"].mean() < 0.035
    per_suspended = p["n_susp"].sum() / p["any_susp"].sum()
    assert 1.8 < per_suspended < 2.7
    # correlated as in the census: FSM more common with SEN and with CIN
    fsm = p["fsm"] == "yes"
    assert fsm[p["sen"] != "none"].mean() > 1.3 * fsm[p["sen"] == "none"].mean()
    assert fsm[p["cin"] == "yes"].mean() > 2 * fsm[p["cin"] == "no"].mean()


def test_national_ethnicity_shares_match_source():
    # Shares written into simulate.py, checked against two DfE headcounts by hand:
    # White British 5,439,960 and Black Caribbean 92,595 of 8,025,085 pupils.
    assert math.isclose(ETHNICITY_SHARES["White British"], 5_439_960 / 8_025_085)
    assert math.isclose(ETHNICITY_SHARES["Black Caribbean"], 92_595 / 8_025_085)
    assert math.isclose(sum(ETHNICITY_SHARES.values()), 1.0)
    assert tuple(ETHNICITY_SHARES) == v.ETHNICITY_LEVELS


# --------------------------------------------------------------------------- truth
def test_truth_names_patsy_terms_and_reference_levels(sim_rich):
    t = sim_rich.truth
    assert t["reference"] == {
        "ethnicity": "White British", "sen": "none", "fsm": "no", "cin": "no", "sex": "female",
        "year": "2016/17", "nc_year": "R",
    }
    coefs = t["perm_excl"]["coefficients"]
    assert coefs["ethnicity[T.Black Caribbean]"] == 0.5
    assert coefs["sen[T.support]"] == 1.2 and coefs["fsm[T.yes]"] == 0.9
    assert coefs["year[T.2017/18]"] == pytest.approx(0.05)
    assert "ethnicity[T.White British]" not in coefs
    assert t["perm_excl"]["group_sd"] == {"la": 0.25, "school": 0.6, "trust": 0.3}
    # the count's mean model: any_susp's predictor with Intercept + log(k)
    cnt, bin_ = t["n_susp"]["coefficients"], t["any_susp"]["coefficients"]
    assert cnt["Intercept"] == pytest.approx(bin_["Intercept"] + math.log(2.08))
    assert {k: cnt[k] for k in cnt if k != "Intercept"} == {
        k: bin_[k] for k in bin_ if k != "Intercept"
    }
    json.dumps(t)  # serialisable


def test_realised_group_sds_near_truth():
    sim = simulate_pupils(20_000, n_schools=4_000, n_las=300, seed=8)
    for o in ("perm_excl", "any_susp"):
        school = sim.unit_effects(o, "school")
        la = sim.unit_effects(o, "la")
        # SD of a sample SD of n normals ~ sigma / sqrt(2 (n - 1)); allow 4 of those
        assert abs(school.std() - 0.6) < 4 * 0.6 / math.sqrt(2 * 3_999)
        assert abs(la.std() - 0.25) < 4 * 0.25 / math.sqrt(2 * 299)
        assert sim.truth[o]["realised_sd"]["school"] == pytest.approx(school.std())


def _truth_eta(p: pd.DataFrame, entry: dict) -> np.ndarray:
    """Linear predictor rebuilt from the truth's patsy names and realised effects."""
    coefs = entry["coefficients"]
    eta = np.full(len(p), coefs["Intercept"])
    for col in ("ethnicity", "sen", "fsm", "cin", "sex", "nc_year", "year",
                "exclusion_history", "alt_provision"):
        if col in p.columns:
            lookup = {lv: coefs.get(f"{col}[T.{lv}]", 0.0) for lv in p[col].cat.categories}
            eta += p[col].map(lookup).astype(float).to_numpy()
    for term, effects in entry["effects"].items():  # standalone schools: no trust effect
        eta += p[term].map(effects).astype(float).fillna(0.0).to_numpy()
    if "la_varying" in entry:
        dev = entry["la_varying"]["ethnicity"]["effects"]
        table = np.array([[dev[la].get(e, 0.0) for e in p["ethnicity"].cat.categories]
                          for la in p["la"].cat.categories])
        eta += table[p["la"].cat.codes.to_numpy(), p["ethnicity"].cat.codes.to_numpy()]
    return eta


@pytest.mark.parametrize("outcome", ["perm_excl", "any_susp"])
def test_outcomes_follow_truth_per_school(sim_rich, outcome):
    # Expected events per school from the truth (including realised school, LA and trust
    # effects, LA-varying ethnicity, nc_year and year terms) against observed events:
    # Pearson X2 over schools ~ chi2(n_schools) if the data follow the stated truth.
    p = sim_rich.pupils
    prob = 1 / (1 + np.exp(-_truth_eta(p, sim_rich.truth[outcome])))
    school = p["school"].cat.codes.to_numpy()
    observed = np.bincount(school, weights=p[outcome].to_numpy())
    expected = np.bincount(school, weights=prob)
    variance = np.bincount(school, weights=prob * (1 - prob))
    keep = expected > 0
    x2 = float(np.sum((observed - expected)[keep] ** 2 / variance[keep]))
    df = int(keep.sum())
    assert stats.chi2.sf(x2, df) > 0.001
    # the check has power: dropping the school effects from the expectation fails it
    entry = dict(sim_rich.truth[outcome])
    entry["effects"] = {k: e for k, e in entry["effects"].items() if k != "school"}
    wrong = 1 / (1 + np.exp(-_truth_eta(p, entry)))
    e2 = np.bincount(school, weights=wrong)
    v2 = np.bincount(school, weights=wrong * (1 - wrong))
    x2_wrong = float(np.sum((observed - e2)[keep] ** 2 / v2[keep]))
    assert stats.chi2.sf(x2_wrong, df) < 1e-6


def test_n_susp_mean_follows_truth(sim_rich):
    p = sim_rich.pupils
    mean = np.exp(_truth_eta(p, sim_rich.truth["n_susp"]))
    # by SEN x FSM: observed total / expected total. Per suspended pupil the variance is
    # about m + 1.5 m^2 (m ~ 1.1) plus the Bernoulli part, so totals of thousands of
    # suspensions have relative SD of a few per cent; allow 12 %.
    g = p.assign(mu=mean).groupby(["sen", "fsm"], observed=True)[["n_susp", "mu"]].sum()
    assert ((g["n_susp"] / g["mu"] - 1).abs() < 0.12).all()
    assert abs(p["n_susp"].sum() / mean.sum() - 1) < 0.04


@pytest.fixture(scope="module")
def cells_no_groups():
    # rates raised (intercepts -6 and -4) so that the check has power for rare groups
    truth = dataclasses.replace(
        Truth(), sd_la=0.0, sd_school=0.0, intercept={"perm_excl": -6.0, "any_susp": -4.0}
    )
    sim = simulate_pupils(1_000_000, n_schools=300, n_las=15, seed=21, truth=truth)
    cells = collapse(sim.pupils, ["ethnicity", "sen", "fsm", "cin", "sex"])
    return sim.truth, cells


def _wald_check(est: pd.Series, cov: pd.DataFrame, truth: dict) -> None:
    t = pd.Series(truth).loc[est.index]
    z = (est - t) / np.sqrt(np.diag(cov))
    assert (z.abs() < 3.5).all(), z[z.abs() >= 3.5]
    d = (est - t).to_numpy()
    w = float(d @ np.linalg.solve(cov.to_numpy(), d))
    assert stats.chi2.sf(w, len(d)) > 0.001


@pytest.mark.parametrize("outcome", ["perm_excl", "any_susp"])
def test_binomial_glm_on_cells_recovers_truth(cells_no_groups, outcome):
    # With group SDs 0 the single-level logistic model is the true model: a binomial GLM
    # (statsmodels, independent estimator) on the cells recovers the coefficients; every
    # term within 3.5 SE and a joint Wald test of (estimate - truth) not rejected at 0.001.
    import patsy
    import statsmodels.api as sm

    truth, cells = cells_no_groups
    X = patsy.dmatrix("ethnicity + sen + fsm + cin + sex", cells, return_type="dataframe")
    events = cells[f"n_{outcome}"].to_numpy()
    y = np.column_stack([events, cells["n_pupils"].to_numpy() - events])
    fit = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    assert set(X.columns) == set(truth[outcome]["coefficients"])
    _wald_check(fit.params, fit.cov_params(), truth[outcome]["coefficients"])


def test_quasi_poisson_glm_on_cells_recovers_count_truth(cells_no_groups):
    import patsy
    import statsmodels.api as sm

    truth, cells = cells_no_groups
    X = patsy.dmatrix("ethnicity + sen + fsm + cin + sex", cells, return_type="dataframe")
    fit = sm.GLM(
        cells["n_susp"].to_numpy(), X, family=sm.families.Poisson(),
        offset=np.log(cells["n_pupils"].to_numpy()),
    ).fit(scale="X2")  # overdispersed: Pearson-scaled (quasi-Poisson) standard errors
    _wald_check(fit.params, fit.cov_params(), truth["n_susp"]["coefficients"])


# --------------------------------------------------------------------------- compatibility
def _assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same columns, dtypes, categories and values (column by column: pandas' frame
    comparison of large categoricals takes minutes)."""
    assert list(a.columns) == list(b.columns)
    for col in b.columns:
        x, y = a[col], b[col]
        assert x.dtype.name == y.dtype.name, col
        if isinstance(y.dtype, pd.CategoricalDtype):
            assert list(x.cat.categories) == list(y.cat.categories), col
            x, y = x.cat.codes, y.cat.codes
        assert np.array_equal(x.to_numpy(), y.to_numpy()), col


ROOT = Path(__file__).resolve().parent.parent


def _example(name: str):
    """An examples/ script as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_shipped_national_file_is_reproduced():
    # The shipped pupils file (and the reports built on it) must come out of the simulator
    # unchanged: the script's call gives the same pupils and truth as the files.
    root = ROOT
    script = _example("make_synthetic_data")
    sim = simulate_pupils(300_000, n_schools=1_000, n_las=60, seed=script.SEED,
                          truth=script.synthetic_truth())
    shipped = pd.read_parquet(root / "data" / "synthetic" / "pupils_national.parquet")
    _assert_same_frame(sim.pupils, shipped)
    truth = json.loads((root / "data" / "synthetic" / "truth_national.json").read_text())
    truth.pop("note")
    assert truth == json.loads(json.dumps(sim.truth))


@pytest.mark.parametrize("name", ["off_rolling", "trusts", "outcomes"])
def test_shipped_study_files_are_reproduced(name):
    script = _example("make_study_data")
    sim = script.MAKERS[name](script.SEEDS[name])
    shipped = pd.read_parquet(ROOT / "data" / "synthetic" / f"pupils_{name}.parquet")
    _assert_same_frame(sim.pupils, shipped)
    truth = json.loads((ROOT / "data" / "synthetic" / f"truth_{name}.json").read_text())
    assert "not real" in truth.pop("note")
    assert truth == json.loads(json.dumps(sim.truth))


# --------------------------------------------------------------------------- later outcomes
def test_later_outcomes_leave_every_other_column_unchanged():
    args = dict(n_schools=60, n_las=6, n_years=2, n_trusts=5, seed=5)
    plain = simulate_pupils(30_000, **args)
    more = simulate_pupils(30_000, **args, later_outcomes=True)
    _assert_same_frame(more.pupils[plain.pupils.columns], plain.pupils)
    extra = [c for c in more.pupils.columns if c not in plain.pupils.columns]
    assert extra == ["exclusion_history", "alt_provision", "good_gcse", "neet_16_17"]
    for key, value in plain.truth.items():
        if key not in ("arguments", "reference"):
            assert more.truth[key] == value, key
    assert "good_gcse" not in plain.truth and "later_outcomes" not in plain.truth["arguments"]


def test_later_outcomes_layout_and_placement(sim_later):
    p, truth = sim_later.pupils, sim_later.truth
    year11 = (p["nc_year"] == "11").to_numpy()
    for col in ("good_gcse", "neet_16_17"):
        assert p[col].dtype == "Int8"
        assert (p[col].isna().to_numpy() == ~year11).all()  # missing outside year 11
    history = p["exclusion_history"].astype(str)
    assert ((history == "permanent") == (p["perm_excl"] == 1)).all()
    assert ((history == "suspended") == ((p["any_susp"] == 1) & (p["perm_excl"] == 0))).all()
    # AP after a permanent exclusion with probability 0.9: a binomial test
    ap = p["alt_provision"] == "yes"
    perm = p["perm_excl"] == 1
    k, n = int(ap[perm].sum()), int(perm.sum())
    assert n > 1_000 and stats.binomtest(k, n, 0.9).pvalue > 0.001
    assert truth["reference"]["exclusion_history"] == "none"
    assert "associations" in truth["later_outcomes_note"]
    assert truth["good_gcse"]["coefficients"]["exclusion_history[T.permanent]"] == -1.8
    json.dumps(truth)


@pytest.fixture(scope="module")
def sim_later():
    # no group effects, raised exclusion rates: a single-level logistic GLM is the true model
    truth = dataclasses.replace(
        Truth(), sd_la=0.0, sd_school=0.0, intercept={"perm_excl": -5.0, "any_susp": -3.0})
    later = LaterOutcomes(sd_la=0.0, sd_school=0.0)
    return simulate_pupils(600_000, n_schools=300, n_las=15, seed=31, truth=truth,
                           later_outcomes=later)


@pytest.mark.parametrize("outcome", ["good_gcse", "neet_16_17"])
def test_glm_on_year11_cells_recovers_later_truth(sim_later, outcome):
    # statsmodels' binomial GLM (independent estimator) on year-11 cells: every coefficient
    # of the truth within 3.5 SE, joint Wald test not rejected at 0.001.
    import patsy
    import statsmodels.api as sm

    p = sim_later.pupils
    y11 = p[p["nc_year"] == "11"].copy()
    y11[outcome] = y11[outcome].astype("int8")
    by = ["ethnicity", "sen", "fsm", "cin", "sex", "exclusion_history", "alt_provision"]
    cells = collapse(y11, by, [outcome])
    formula = " + ".join(by)
    X = patsy.dmatrix(formula, cells, return_type="dataframe")
    events = cells[f"n_{outcome}"].to_numpy()
    y = np.column_stack([events, cells["n_pupils"].to_numpy() - events])
    fit = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    coefs = sim_later.truth[outcome]["coefficients"]
    assert set(X.columns) == set(coefs)
    _wald_check(fit.params, fit.cov_params(), coefs)


def test_later_outcomes_follow_truth_per_school():
    # with school and LA effects: Pearson X2 of observed against truth-expected year-11
    # good GCSEs per school ~ chi2(n_schools); dropping the school effects fails it.
    sim = simulate_pupils(300_000, n_schools=200, n_las=10, seed=12,
                          later_outcomes=LaterOutcomes(sd_school=0.6))
    p = sim.pupils[sim.pupils["nc_year"] == "11"]
    observed_y = p["good_gcse"].astype(float).to_numpy()
    school = p["school"].cat.codes.to_numpy()

    def x2(entry):
        prob = 1 / (1 + np.exp(-_truth_eta(p, entry)))
        o = np.bincount(school, weights=observed_y)
        e = np.bincount(school, weights=prob)
        v = np.bincount(school, weights=prob * (1 - prob))
        keep = e > 0
        return float(np.sum((o - e)[keep] ** 2 / v[keep])), int(keep.sum())

    stat, df = x2(sim.truth["good_gcse"])
    assert stats.chi2.sf(stat, df) > 0.001
    entry = dict(sim.truth["good_gcse"])
    entry["effects"] = {"la": entry["effects"]["la"]}
    stat, df = x2(entry)
    assert stats.chi2.sf(stat, df) < 1e-6


def test_later_outcomes_bad_arguments():
    with pytest.raises(DisparityError, match="ap_after_permanent"):
        LaterOutcomes(ap_after_permanent=1.5)
    with pytest.raises(DisparityError, match="later_outcomes"):
        simulate_pupils(100, n_schools=2, n_las=1, later_outcomes="yes")


# --------------------------------------------------------------------------- off-rolling
@pytest.fixture(scope="module")
def cohort():
    return simulate_off_rolling(70_000, n_schools=300, n_las=30, n_planted=15,
                                planted_effect=2.0, seed=17)


def test_off_rolling_layout_and_flags(cohort):
    p, truth = cohort.pupils, cohort.truth
    assert list(p.columns) == [
        "pupil_id", "year", "la", "school", "ethnicity", "sen", "fsm", "cin", "sex",
        "nc_year", "destination", "roll_loss", "unexplained_loss",
    ]
    assert (p["nc_year"] == "10").all() and p["year"].astype(str).unique().tolist() == ["2016/17"]
    assert (p.groupby("school", observed=True)["la"].nunique() == 1).all()
    dest = p["destination"].astype(str)
    assert ((p["roll_loss"] == 1) == (dest != "on_roll")).all()
    assert ((p["unexplained_loss"] == 1) == dest.isin(UNEXPLAINED_DESTINATIONS)).all()
    # about 1.2 % unexplained and 3.4 % any loss (Ofsted: about 4 % of a cohort left
    # between Year 10 and Year 11, about half of them not to another state school)
    assert 0.008 < p["unexplained_loss"].mean() < 0.018
    assert 0.025 < p["roll_loss"].mean() < 0.045
    planted = truth["unexplained_loss"]["planted"]
    assert len(planted) == 15 and set(planted.values()) == {2.0}
    la_of = p.groupby("school", observed=True)["la"].first().astype(str)
    assert truth["unexplained_loss"]["planted_units"] == {
        f"{la_of[s]}/{s}": v for s, v in planted.items()}
    again = simulate_off_rolling(70_000, n_schools=300, n_las=30, n_planted=15,
                                 planted_effect=2.0, seed=17)
    _assert_same_frame(again.pupils, p)
    assert json.dumps(again.truth) == json.dumps(truth)


def test_off_rolling_losses_follow_truth_per_school(cohort):
    # Pearson X2 of unexplained losses per school against the truth (coefficients, realised
    # LA and school effects and the planted excess) ~ chi2(schools); leaving the planted
    # excess out of the expectation fails it.
    p, entry = cohort.pupils, cohort.truth["unexplained_loss"]
    school = p["school"].cat.codes.to_numpy()
    observed = np.bincount(school, weights=p["unexplained_loss"].to_numpy())
    base = _truth_eta(p, entry)
    for planted, ok in ((entry["planted"], True), ({}, False)):
        eta = base + p["school"].map(planted).astype(float).fillna(0.0).to_numpy()
        prob = 1 / (1 + np.exp(-eta))
        e = np.bincount(school, weights=prob)
        v = np.bincount(school, weights=prob * (1 - prob))
        x2 = float(np.sum((observed - e) ** 2 / v))
        assert bool(stats.chi2.sf(x2, len(e)) > 0.001) == ok


def test_glm_recovers_off_rolling_coefficients():
    # no group effects, nothing planted: a single-level binomial GLM (statsmodels) is the
    # true model of unexplained loss
    truth = OffRollingTruth(sd_la=0.0, sd_school=0.0, intercept=-3.5)
    sim = simulate_off_rolling(400_000, n_schools=200, n_las=20, n_planted=0, seed=23,
                               truth=truth)
    import patsy
    import statsmodels.api as sm

    cells = collapse(sim.pupils, ["ethnicity", "sen", "fsm", "cin", "sex"],
                     ["unexplained_loss"])
    X = patsy.dmatrix("ethnicity + sen + fsm + cin + sex", cells, return_type="dataframe")
    events = cells["n_unexplained_loss"].to_numpy()
    y = np.column_stack([events, cells["n_pupils"].to_numpy() - events])
    fit = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    coefs = sim.truth["unexplained_loss"]["coefficients"]
    assert set(X.columns) == set(coefs)
    _wald_check(fit.params, fit.cov_params(), coefs)


def test_off_rolling_destinations_follow_their_weights(cohort):
    # within unexplained losses of pupils with no SEN and not Gypsy/Roma or Traveller, the
    # destinations are multinomial with the weights 0.35 / 0.40 / 0.25
    p = cohort.pupils
    plain = (p["unexplained_loss"] == 1) & (p["sen"] == "none") & ~p["ethnicity"].isin(
        ["Gypsy/Roma", "Traveller of Irish heritage"])
    counts = p.loc[plain, "destination"].astype(str).value_counts()
    observed = np.array([counts.get(d, 0) for d in UNEXPLAINED_DESTINATIONS])
    expected = observed.sum() * np.array([0.35, 0.40, 0.25])
    assert stats.chisquare(observed, expected).pvalue > 0.001
    # any SEN shifts towards AP or a PRU
    sen = (p["unexplained_loss"] == 1) & (p["sen"] != "none")
    share_ap = lambda m: (p.loc[m, "destination"] == "ap_pru").mean()  # noqa: E731
    assert share_ap(sen) > share_ap(plain)


def test_off_rolling_bad_arguments():
    with pytest.raises(DisparityError, match="n_planted"):
        simulate_off_rolling(1_000, n_schools=5, n_las=2, n_planted=6)
    with pytest.raises(DisparityError, match="planted_effect"):
        simulate_off_rolling(1_000, n_schools=5, n_las=2, n_planted=2, planted_effect=[1, 2, 3])
    with pytest.raises(DisparityError, match="destination_weights"):
        OffRollingTruth(destination_weights={"ap_pru": 1.0})
