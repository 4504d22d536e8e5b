"""Stage chains: a group's adjusted ratio at each decision point and overall.

Oracles: crude risks multiply exactly through a chain (closed form, counted by hand); the
simulator's known truth of a suspension -> escalation chain (the standardised risk ratios
computed from the true probabilities of the stage's own pupils); the model-file grammar.
"""

from __future__ import annotations

import dataclasses
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.chain import DIRECT_LABEL, PRODUCT_LABEL, chain_ratios, chain_table, check_chain
from disparity.errors import SpecError
from disparity.report.precision import rounding_step
from disparity.spec import ModelSpec, load_spec


def _pupils(counts: dict[str, tuple[int, int, int]]) -> pd.DataFrame:
    """Pupils of each group with (pupils, suspended, excluded after suspension)."""
    rows = []
    for g, (n, s, e) in counts.items():
        for i in range(n):
            rows.append({"g": g, "susp": int(i < s), "perm": int(i < e)})
    return pd.DataFrame(rows)


def test_crude_ratios_multiply_exactly():
    # a: 40/2000 suspended, 2 of them excluded; b: 90/1500 suspended, 9 excluded
    # stage 1 RR = (90/1500)/(40/2000) = 3; stage 2 RR = (9/90)/(2/40) = 2;
    # overall RR = (9/1500)/(2/2000) = 6
    pupils = _pupils({"a": (2000, 40, 2), "b": (1500, 90, 9)})
    spec = ModelSpec(formula="g", engine="glm", reference={"g": "a"},
                     data_options={"kind": "pupils"},
                     chain=({"name": "suspended", "events": "n_susp"},
                            {"name": "excluded", "events": "n_perm", "where": "susp == 1"}))
    t = chain_ratios(spec, pupils).set_index("step_label")
    assert t.loc["suspended", "estimate"] == pytest.approx(3.0, rel=1e-9)
    assert t.loc["excluded", "estimate"] == pytest.approx(2.0, rel=1e-9)
    assert t.loc[PRODUCT_LABEL, "estimate"] == pytest.approx(6.0, rel=1e-9)
    assert t.loc[DIRECT_LABEL, "estimate"] == pytest.approx(6.0, rel=1e-9)
    assert t["step"].tolist() == [1, 2, 3, 4]
    # the product's log-scale variance is the sum of the stages' (Katz: 1/a - 1/n ...)
    z = 1.959963984540054

    def log_var(row):
        return ((np.log(row.conf_high) - np.log(row.conf_low)) / (2 * z)) ** 2

    stage_var = log_var(t.loc["suspended"]) + log_var(t.loc["excluded"])
    assert log_var(t.loc[PRODUCT_LABEL]) == pytest.approx(stage_var, rel=1e-9)
    # and the stages' intervals (parametric draws) are near the crude Katz ones
    katz_1 = 1 / 90 - 1 / 1500 + 1 / 40 - 1 / 2000
    assert log_var(t.loc["suspended"]) == pytest.approx(katz_1, rel=0.15)
    table = chain_table(t.reset_index())
    assert table.loc[1, "events"] == "n_perm" and table.loc[1, "where"] == "susp == 1"
    assert table.loc[0, "where"] == "all pupils"


def _true_standardised(p_level: dict[str, np.ndarray]) -> dict[str, float]:
    ref = p_level["none"].mean()
    return {lv: float(p.mean() / ref) for lv, p in p_level.items() if lv != "none"}


def test_chain_recovers_the_simulated_truth():
    from scipy.special import expit

    from disparity.simulate import Escalation, Truth, simulate_pupils

    # only SEN, FSM and sex matter at either stage, so that the fitted formula is the truth's
    base = Truth()
    effects = dict(base.effects)
    effects["any_susp"] = {k: v for k, v in base.effects["any_susp"].items()
                           if k in ("sen", "fsm", "sex")}
    esc = Escalation(effects={k: v for k, v in Escalation().effects.items()
                              if k in ("sen", "fsm", "sex")})
    sim = simulate_pupils(300_000, n_schools=120, n_las=12, seed=11,
                          truth=dataclasses.replace(base, effects=effects), escalation=esc)
    pupils = sim.pupils
    truth = sim.truth
    spec = ModelSpec(formula="sen + fsm + sex", groups=("la/school",), engine="ml",
                     reference={"sen": "none", "fsm": "no", "sex": "female"},
                     data_options={"kind": "pupils"}, seed=3, report={"n_draws": 300},
                     chain=({"name": "suspended", "events": "n_any_susp"},
                            {"name": "escalated", "events": "n_perm_excl",
                             "where": "n_susp >= 1"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = chain_ratios(spec, pupils, "sen")

    def eta(coefs, frame, sen):
        out = np.full(len(frame), coefs["Intercept"])
        out += coefs.get(f"sen[T.{sen}]", 0.0)
        out += np.where(frame["fsm"] == "yes", coefs["fsm[T.yes]"], 0.0)
        out += np.where(frame["sex"] == "male", coefs["sex[T.male]"], 0.0)
        assert not any(v for k, v in coefs.items() if k.startswith(("ethnicity[", "cin[")))
        return out

    # stage 1: any_susp among all pupils, with its LA and school effects
    s = truth["any_susp"]
    u = (pupils["la"].astype(str).map(s["effects"]["la"]).to_numpy()
         + pupils["school"].astype(str).map(s["effects"]["school"]).to_numpy())
    true1 = _true_standardised({lv: expit(eta(s["coefficients"], pupils, lv) + u)
                                for lv in ("none", "support", "ehcp")})
    # stage 2: escalation among suspended pupils, with its school effects
    e2 = truth["escalation"]
    susp = pupils[pupils["n_susp"] >= 1]
    u2 = susp["school"].astype(str).map(e2["effects"]["school"]).to_numpy()
    true2 = _true_standardised({lv: expit(eta(e2["coefficients"], susp, lv) + u2)
                                for lv in ("none", "support", "ehcp")})
    # overall: P(perm_excl) = P(suspended) P(escalated), both at the level, over all pupils
    u_all = pupils["school"].astype(str).map(e2["effects"]["school"]).to_numpy()
    true_all = _true_standardised({
        lv: expit(eta(s["coefficients"], pupils, lv) + u)
        * expit(eta(e2["coefficients"], pupils, lv) + u_all)
        for lv in ("none", "support", "ehcp")})
    got = t.set_index(["step_label", "level"])
    for stage, true in (("suspended", true1), ("escalated", true2), (PRODUCT_LABEL, true_all),
                        (DIRECT_LABEL, true_all)):
        for level, value in true.items():
            row = got.loc[(stage, level)]
            assert row.conf_low < value < row.conf_high, (stage, level, value, row.estimate)
    # escalation depends on SEN apart from suspension: EHC plans are suspended more but
    # escalated less (truth +1.0 and -0.3 on the log-odds scale)
    assert got.loc[("suspended", "ehcp"), "conf_low"] > 1
    assert got.loc[("escalated", "ehcp"), "estimate"] < 1
    # the product and the direct fit of perm_excl among all pupils agree closely
    for level in ("support", "ehcp"):
        prod = got.loc[(PRODUCT_LABEL, level), "estimate"]
        direct = got.loc[(DIRECT_LABEL, level), "estimate"]
        assert abs(np.log(prod / direct)) < 0.1, (level, prod, direct)


def test_simulator_escalation_leaves_other_columns_alone():
    from disparity.simulate import simulate_pupils

    a = simulate_pupils(20_000, n_schools=40, n_las=4, seed=5)
    b = simulate_pupils(20_000, n_schools=40, n_las=4, seed=5, escalation=True)
    for c in a.pupils.columns:
        if c != "perm_excl":
            assert a.pupils[c].equals(b.pupils[c]), c
    assert (b.pupils["perm_excl"] <= b.pupils["any_susp"]).all()
    assert b.pupils["perm_excl"].sum() > 0
    assert "escalation" in b.truth and "escalation" not in a.truth
    assert b.truth["escalation"]["coefficients"]["ethnicity[T.Black Caribbean]"] == 0.6


def _model(tmp: Path, chain: str) -> Path:
    path = tmp / "m.toml"
    top, chain = (chain, "") if chain.startswith("chain =") else ("", chain)
    path.write_text(top + textwrap.dedent("""\
        [data]
        path = "p.csv"
        kind = "pupils"
        [model]
        family = "binomial"
        events = "n_perm_excl"
        trials = "n_pupils"
        formula = "sen"
        """) + textwrap.dedent(chain))
    return path


def test_model_file_chain(tmp_path):
    spec = load_spec(_model(tmp_path, """\
        [[chain]]
        name = "suspended"
        events = "n_any_susp"
        [[chain]]
        name = "excluded"
        events = "n_perm_excl"
        where = "n_susp >= 1"
        """))
    assert [s["name"] for s in spec.chain] == ["suspended", "excluded"]
    assert spec.chain[1]["where"] == "n_susp >= 1"


@pytest.mark.parametrize("chain, word", [
    ('[[chain]]\nname = "a"\nevents = "n_any_susp"\n', "at least two stages"),
    ('[[chain]]\nname = "a"\nevents = "n_x"\n[[chain]]\nname = "a"\nevents = "n_y"\n',
     "used by an earlier stage"),
    (('[[chain]]\nname = "a"\nevents = "n_x"\n[[chain]]\nname = "b"\nevents = "n_y"\n'
      'where = "__import__(\'os\').system(\'touch OWNED\')"\n'), "not allowed"),
    ('[[chain]]\nname = "a"\nevents = "n_x"\n[[chain]]\nname = "b"\nevnts = "n_y"\n',
     "unknown key"),
    ('chain = "n_susp"\n', "must be tables"),
])
def test_bad_chain_is_refused(tmp_path, chain, word):
    with pytest.raises(SpecError, match=word):
        load_spec(_model(tmp_path, chain))
    assert not (tmp_path / "OWNED").exists()


def test_check_chain_lists_every_problem():
    _, problems = check_chain([{"name": "", "events": "1x"}])
    assert len(problems) == 3


def _chain_run(tmp_path: Path, formula: str) -> Path:
    from disparity.runner import run_model

    rng = np.random.default_rng(4)
    n = 6000
    g = rng.choice(["a", "b"], n)
    h = rng.choice(["x", "y"], n)
    susp = (rng.random(n) < np.where(g == "b", 0.2, 0.1)).astype(int)
    perm = susp * (rng.random(n) < np.where(g == "b", 0.3, 0.15)).astype(int)
    pd.DataFrame({"pupil_id": np.arange(n), "g": g, "h": h, "any_susp": susp,
                  "n_susp": susp, "perm_excl": perm}).to_csv(tmp_path / "p.csv", index=False)
    model = tmp_path / "m.toml"
    model.write_text(textwrap.dedent(f"""\
        [data]
        path = "p.csv"
        kind = "pupils"
        [model]
        family = "binomial"
        events = "n_perm_excl"
        trials = "n_pupils"
        formula = "{formula}"
        reference = {{ {'g = "a", h = "x"' if "h" in formula else 'g = "a"'} }}
        [fit]
        engine = "glm"
        [report]
        n_draws = 200
        ladder_variable = "g"
        [[chain]]
        name = "suspended"
        events = "n_any_susp"
        [[chain]]
        name = "excluded after suspension"
        events = "n_perm_excl"
        where = "n_susp >= 1"
        """))
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_model(model, out, progress=False)
    return out


def test_run_publishes_chain_csv_and_a_report_section(tmp_path):
    out = _chain_run(tmp_path, "g + h")
    chain = pd.read_csv(out / "chain.csv", dtype=str)
    assert chain["step_label"].tolist() == ["suspended", "excluded after suspension",
                                            PRODUCT_LABEL, DIRECT_LABEL]
    assert chain["where"].tolist()[:2] == ["all pupils", "n_susp >= 1"]
    est = chain["estimate"].astype(float).tolist()
    # the product of the stage ratios, each published to half its last decimal (the
    # decimal set by the row's SE in estimates.csv)
    table = pd.read_csv(out / "estimates.csv")
    rows = table[table.estimand == "chain_rate_ratio"].reset_index(drop=True)
    assert rows.estimate.tolist() == est
    steps = [rounding_step(r.estimate, r.std_error, r.conf_low, r.conf_high) / 2
             for r in rows.itertuples()]
    allowed = est[1] * steps[0] + est[0] * steps[1] + steps[0] * steps[1] + steps[2]
    assert abs(est[2] - est[0] * est[1]) <= allowed * 1.001 and max(steps[:3]) <= 0.005
    assert 1.5 < est[0] < 2.6 and 1.3 < est[1] < 2.8  # truth 2 and 2 (risks 0.2/0.1, 0.3/0.15)
    report = (out / "report.md").read_text()
    assert "## Stage chain" in report and "product of the stage ratios" in report
    manifest = (out / "manifest.json").read_text()
    assert "chain.csv" in manifest


def test_crude_chain_ratios_are_not_published(tmp_path):
    # the variable alone, no groups: each stage ratio is a crude ratio on the stage's pupils,
    # whose counts are not under disclosure control, so it is suppressed
    out = _chain_run(tmp_path, "g")
    chain = pd.read_csv(out / "chain.csv", dtype=str)
    assert set(chain["estimate"]) == {"c"} and set(chain["conf_low"]) == {"c"}
