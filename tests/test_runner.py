"""The run job: model file -> estimates, figures, report and manifest; re-rendering."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.cli import main
from disparity.engines.base import ESTIMATE_COLUMNS
from disparity.errors import DisparityError, SpecError
from disparity.estimands import MEDIATOR_NOTE, OddsRatioWarning
from disparity.report.precision import rounding_step
from disparity.report.publish import csv_bytes
from disparity.runner import ReportSettings, fit_result, rerender, run_model

ROOT = Path(__file__).resolve().parents[1]
CBPP = ROOT / "models" / "cbpp.toml"
FILES = ("estimates.csv", "unit_effects.csv", "cells_summary.csv", "diagnostics.json",
         "report.md", "report.html", "manifest.json",
         "figures/forest_period.png", "figures/forest_period.svg",
         "figures/funnel_herd.png", "figures/funnel_herd.svg")


def _run(out: Path, engine: str) -> Path:
    # cbpp's incidence is common (12%), so the odds ratios overstate the risk ratios
    with pytest.warns(OddsRatioWarning, match="overstate"):
        return run_model(CBPP, out, engine=engine, progress=False)


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("ml") / "run", "ml")


@pytest.fixture(scope="module")
def glm_runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("glm")
    return _run(base / "a", "glm"), _run(base / "b", "glm")


def test_every_file_is_written(ml_run, glm_runs):
    glm_run = glm_runs[0]
    for name in FILES:
        assert (glm_run / name).is_file(), name
        assert (ml_run / name).is_file(), name
    # random effects only in the ml fit: unit effects and their caterpillar plot
    assert (ml_run / "figures" / "caterpillar_herd.png").is_file()
    assert not (glm_run / "figures" / "caterpillar_herd.png").exists()
    assert len(pd.read_csv(ml_run / "unit_effects.csv")) == 3 * 15  # rate, ratio, O/E per herd
    assert "no group SDs" in (glm_run / "report.md").read_text(encoding="utf-8")


def test_estimates_table_is_tidy_with_crude_ratios_from_the_data(ml_run):
    table = pd.read_csv(ml_run / "estimates.csv", dtype={"level": str, "reference": str})
    assert tuple(table.columns[: len(ESTIMATE_COLUMNS)]) == ESTIMATE_COLUMNS
    adjusted = table[(table.estimand == "rate_ratio") & (table.group_effects == "observed")]
    assert adjusted.level.tolist() == ["2", "3", "4"]
    assert (adjusted.standard == "all").all()
    # crude risk ratios by hand from the data file: risk of each period over period 1's
    data = pd.read_csv(ROOT / "data" / "cbpp.csv")
    sums = data.groupby("period")[["incidence", "size"]].sum()
    risk = sums.incidence / sums["size"]
    crude = table[table.estimand == "crude_rate_ratio"].set_index("level")
    for period in (2, 3, 4):
        assert crude.loc[str(period), "estimate"] == pytest.approx(risk[period] / risk[1],
                                                                   rel=1e-9)
        assert crude.loc[str(period), "n_events"] == sums.incidence[period]
    # every group SD row has an ICC and a median odds ratio beside it
    assert set(table.estimand) >= {"coefficient", "odds_ratio", "group_sd", "icc",
                                   "median_odds_ratio", "rate_difference"}


def test_two_runs_give_identical_bytes(glm_runs):
    a, b = glm_runs
    for name in ("estimates.csv", "unit_effects.csv", "cells_summary.csv", "report.md",
                 "report.html", "figures/forest_period.png", "figures/funnel_herd.svg",
                 "diagnostics.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    text = (a / "estimates.csv").read_text(encoding="utf-8")
    assert "\r" not in text and "20" + "2" not in text.split("\n")[0]  # no dates in the header


def test_rerender_reproduces_the_report(ml_run, tmp_path: Path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ml_run, copy)
    before = (copy / "report.md").read_bytes(), (copy / "report.html").read_bytes()
    png = (copy / "figures" / "forest_period.png").read_bytes()
    assert rerender(copy) == copy / "report.md"
    assert (copy / "report.md").read_bytes() == before[0]
    assert (copy / "report.html").read_bytes() == before[1]
    assert (copy / "figures" / "forest_period.png").read_bytes() == png
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    assert "rerendered" in manifest
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert listed["report.md"] == hashlib.sha256(before[0]).hexdigest()


def test_rerender_refuses_a_changed_or_incomplete_folder(ml_run, tmp_path: Path):
    import shutil

    from disparity.errors import ReadError

    copy = tmp_path / "copy"
    shutil.copytree(ml_run, copy)
    text = (copy / "estimates.csv").read_bytes()
    (copy / "estimates.csv").write_bytes(text[: len(text) // 2])  # half-truncated
    with pytest.raises(ReadError, match="'estimates.csv'.*differs"):
        rerender(copy)
    (copy / "estimates.csv").write_bytes(text)
    (copy / "figures" / "forest_period.png").unlink()
    with pytest.raises(ReadError, match="figures/forest_period.png.*missing"):
        rerender(copy)


def test_manifest_hashes_match_the_files(ml_run):
    run = ml_run
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    on_disk = sorted(p.relative_to(run).as_posix() for p in run.rglob("*")
                     if p.is_file() and p.name != "manifest.json")
    assert sorted(listed) == on_disk
    for path, digest in listed.items():
        assert hashlib.sha256((run / path).read_bytes()).hexdigest() == digest
    assert manifest["model_file"]["sha256"] == hashlib.sha256(CBPP.read_bytes()).hexdigest()
    data = ROOT / "data" / "cbpp.csv"
    assert manifest["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["seed"] == 1 and manifest["engine"] == "ml"
    assert {"numpy", "pandas", "scipy", "matplotlib"} <= set(manifest["packages"])
    assert manifest["diagnostics"]["converged"] is True
    # the report names the same hashes (provenance) and no timestamp
    report = (run / "report.md").read_text(encoding="utf-8")
    assert manifest["data"]["sha256"] in report
    assert manifest["created"] not in report


def test_html_report_stands_alone(ml_run):
    page = (ml_run / "report.html").read_text(encoding="utf-8")
    # forest, funnel, standardised-ratio funnel, caterpillar
    assert page.count('src="data:image/png;base64,') == 4
    assert "http://" not in page and "https://" not in page
    assert "<h2>Methods</h2>" in page and "<h2>Diagnostics</h2>" in page


def _pupils(n_per_school: int = 60, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    schools = np.repeat([f"S{i}" for i in range(8)], n_per_school)
    n = schools.size
    ethnicity = rng.choice(["White British", "Black Caribbean"], size=n, p=[0.7, 0.3])
    sen = rng.choice(["none", "ehcp"], size=n, p=[0.8, 0.2])
    risk = 0.05 * np.where(ethnicity == "Black Caribbean", 2.0, 1.0) * np.where(
        sen == "ehcp", 3.0, 1.0)
    return pd.DataFrame({"pupil_id": np.arange(n), "school": schools, "ethnicity": ethnicity,
                         "sen": sen, "perm_excl": (rng.random(n) < risk).astype(int)})


LADDER_MODEL = """\
[model]
family = "binomial"
events = "n_perm_excl"
trials = "n_pupils"
formula = "ethnicity + sen"
[model.reference]
ethnicity = "White British"
sen = "none"
[fit]
engine = "glm"
seed = 11
[report]
n_draws = 100
[[ladder]]
label = "ethnicity only"
formula = "ethnicity"
groups = []
[[ladder]]
label = "+ SEN"
formula = "ethnicity + sen"
groups = []
"""


def test_pupil_data_are_collapsed_and_never_written(tmp_path: Path):
    pupils = _pupils()
    model = tmp_path / "ladder.toml"
    model.write_text(LADDER_MODEL)
    out = run_model(model, tmp_path / "run", data=pupils, progress=False)
    for csv in out.rglob("*.csv"):
        assert "pupil_id" not in pd.read_csv(csv, nrows=0).columns, csv.name
    # the saved counts conserve pupils and events (each variable's margin sums to them)
    cells = pd.read_csv(out / "cells_summary.csv")
    for variable in ("ethnicity", "sen"):
        margin = cells[(cells.margin == "variable") & (cells.by == variable)]
        assert margin.n_pupils.sum() == len(pupils)
        assert margin.n_events.sum() == pupils.perm_excl.sum()
    # ladder: step 1 (ethnicity only, a saturated GLM for ethnicity) gives the crude ratio
    table = pd.read_csv(out / "estimates.csv")
    ladder = table[table.estimand == "ladder_rate_ratio"]
    assert ladder.step_label.tolist() == ["ethnicity only", "+ SEN"]
    by = pupils.groupby("ethnicity").perm_excl.mean()
    first = ladder.iloc[0]
    step = rounding_step(first.estimate, first.std_error, first.conf_low, first.conf_high)
    assert 0 < step <= 0.01  # published to half its last decimal
    assert abs(first.estimate - by["Black Caribbean"] / by["White British"]) <= step / 2 * 1.001
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Adjustment ladder" in report and MEDIATOR_NOTE in report


def test_saturated_model_adjusted_ratio_equals_crude(tmp_path: Path):
    cells = pd.DataFrame({"sen": ["none", "support", "ehcp"], "n_perm_excl": [20, 10, 1],
                          "n_pupils": [1000, 200, 50]})
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "binomial"\nevents = "n_perm_excl"\n'
                     'formula = "sen"\n[model.reference]\nsen = "none"\n'
                     '[fit]\nengine = "glm"\n[report]\nn_draws = 50\n')
    result = fit_result(model, data=cells, progress=False)
    table = result.estimates
    rr = table[(table.estimand == "rate_ratio")].set_index("level").estimate
    # (10 / 200) / (20 / 1000) = 2.5 and (1 / 50) / (20 / 1000) = 1.0
    assert rr["support"] == pytest.approx(2.5, rel=1e-6)
    assert rr["ehcp"] == pytest.approx(1.0, rel=1e-6)
    # published: a saturated model's ratios are crude ratios, so EHC plan's (1 event) and
    # the one its total would reveal (support's 10) are suppressed
    out = run_model(model, tmp_path / "run", data=cells, progress=False)
    published = pd.read_csv(out / "estimates.csv", dtype=str, keep_default_na=False)
    shown = published[published.estimand == "rate_ratio"].set_index("level").estimate
    assert shown["ehcp"] == "c" and shown["support"] == "c"
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["display"] == "a data frame passed in memory"


def test_csv_writer_refuses_pupil_rows():
    with pytest.raises(DisparityError, match="pupil_id"):
        csv_bytes(pd.DataFrame({"pupil_id": [1], "x": [2]}))


def test_report_settings_are_checked():
    with pytest.raises(SpecError) as err:
        ReportSettings.from_mapping({"n_draw": 10, "group_effects": "random",
                                     "suppression": {"min_pupil": 5}})
    text = str(err.value)
    assert "did you mean 'n_draws'" in text
    assert "'observed', 'conditional', 'integrated'" in text
    assert "min_pupil" in text


def test_cli_run_and_report(tmp_path: Path, capsys):
    model = tmp_path / "m.toml"
    model.write_text(textwrap.dedent("""\
        [data]
        path = "cells.csv"
        [model]
        family = "binomial"
        events = "n_perm_excl"
        formula = "sen"
        [fit]
        engine = "glm"
        [report]
        n_draws = 50
        """))
    pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [20, 9],
                  "n_pupils": [1000, 100]}).to_csv(tmp_path / "cells.csv", index=False)
    assert main(["run", str(model), "-o", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "run")]) == 0
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "disparity report: error:" in err and "is not a folder" in err
    assert "Traceback" not in err


def test_several_years_give_a_trend_figure(tmp_path: Path):
    cells = pd.DataFrame({
        "year": ["2015/16"] * 2 + ["2016/17"] * 2,
        "sen": ["none", "ehcp"] * 2,
        "n_perm_excl": [20, 9, 30, 12],
        "n_pupils": [1000, 100, 1000, 100],
    })
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "binomial"\nevents = "n_perm_excl"\nformula = "sen"\n'
                     '[fit]\nengine = "glm"\n[report]\nn_draws = 50\n')
    out = run_model(model, tmp_path / "run", data=cells, progress=False)
    assert (out / "figures" / "trend_sen.png").is_file()
    summary = pd.read_csv(out / "cells_summary.csv", dtype={"year": str})
    trend = summary[(summary.margin == "trend") & (summary.by == "all")]
    assert trend.year.tolist() == ["2015/16", "2016/17"]
    assert trend.n_events.tolist() == [29, 42] and trend.n_pupils.tolist() == [1100, 1100]
    assert "## Trend" in (out / "report.md").read_text(encoding="utf-8")


def test_count_family_crude_rate_ratio_has_the_poisson_interval(tmp_path: Path):
    import math

    cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_susp": [50, 30],
                          "n_pupils": [1000, 100]})
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "poisson"\nevents = "n_susp"\nformula = "sen"\n'
                     '[model.reference]\nsen = "none"\n'
                     '[fit]\nengine = "glm"\n[report]\nn_draws = 50\n')
    out = run_model(model, tmp_path / "run", data=cells, progress=False)
    table = pd.read_csv(out / "estimates.csv").set_index("estimand")
    crude = table.loc["crude_rate_ratio"]
    # (30 / 100) / (50 / 1000) = 6; 95% interval exp(log 6 +/- 1.959964 sqrt(1/30 + 1/50))
    # (Rothman, Greenland and Lash 2008, Modern Epidemiology, ch. 14)
    half = 1.959963985 * math.sqrt(1 / 30 + 1 / 50)
    assert crude.estimate == pytest.approx(6.0, rel=1e-9)
    assert crude.conf_low == pytest.approx(6.0 * math.exp(-half), rel=1e-8)
    assert crude.conf_high == pytest.approx(6.0 * math.exp(half), rel=1e-8)
    # the saturated Poisson GLM reproduces it as the standardised rate ratio
    adjusted = table[table.group_effects == "observed"].loc["rate_ratio"]
    assert adjusted.estimate == pytest.approx(6.0, rel=1e-6)
    assert "rate ratio" in (out / "report.md").read_text(encoding="utf-8")


def test_ratio_by_year_equals_the_interaction_coefficients(tmp_path: Path):
    # "sen * year" saturates the 2 x 2 table, so the within-year Poisson rate ratios are the
    # crude ones, worked out by hand: 2015/16 (9/100)/(20/1000) = 4.5; 2016/17
    # (12/100)/(30/1000) = 4.0. A log link with no other covariates makes each year's
    # standardised ratio exp(b_sen + b_sen:year) exactly (an invariance of the estimand).
    cells = pd.DataFrame({
        "year": ["2015/16"] * 2 + ["2016/17"] * 2,
        "sen": ["none", "ehcp"] * 2,
        "n_susp": [20, 9, 30, 12],
        "n_pupils": [1000, 100, 1000, 100],
    })
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "poisson"\nevents = "n_susp"\nformula = "sen * year"\n'
                     '[model.reference]\nsen = "none"\nyear = "2015/16"\n'
                     '[fit]\nengine = "glm"\n[report]\nn_draws = 50\n')
    out = run_model(model, tmp_path / "run", data=cells, progress=False)
    table = pd.read_csv(out / "estimates.csv", dtype={"year": str})
    by_year = table[(table.estimand == "rate_ratio_by_year") & (table.variable == "sen")]
    assert by_year.year.tolist() == ["2015/16", "2016/17"]
    assert by_year.estimate.tolist() == pytest.approx([4.5, 4.0], rel=1e-6)
    coef = table[table.estimand == "coefficient"].set_index("term")
    terms = ["sen[T.ehcp]", "sen[T.ehcp]:year[T.2016/17]"]
    both = np.exp(coef.estimate[terms].sum())
    # each published value is within half its last decimal of the exact one
    slack = [rounding_step(coef.estimate[t], coef.std_error[t]) / 2 for t in terms]
    row = by_year.iloc[1]
    allowed = both * sum(slack) * 1.01 + rounding_step(row.estimate, row.std_error,
                                                       row.conf_low, row.conf_high) / 2
    assert abs(row.estimate - both) <= allowed
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "within each year" in report and "| 2016/17 | 4.00 (" in report


def test_units_with_names_are_labelled_but_keep_their_codes(tmp_path: Path):
    rng = np.random.default_rng(7)
    codes = [f"E0600000{i}" for i in range(1, 7)]
    names = ["Hartlepool", "Middlesbrough", "Redcar", "Stockton", "Darlington", "Halton"]
    cells = pd.DataFrame({
        "la": np.repeat(codes, 2), "la_name": np.repeat(names, 2),
        "sen": ["none", "ehcp"] * 6,
        "n_perm_excl": rng.integers(5, 30, 12), "n_pupils": [2000, 200] * 6,
    })
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "binomial"\nevents = "n_perm_excl"\nformula = "sen"\n'
                     'groups = ["la"]\n[model.reference]\nsen = "none"\n'
                     '[fit]\nengine = "ml"\n[report]\nn_draws = 50\n')
    with pytest.warns(OddsRatioWarning):  # 10% excluded with SEN: OR overstates RR
        out = run_model(model, tmp_path / "run", data=cells, progress=False)
    units = pd.read_csv(out / "unit_effects.csv")
    assert set(units.unit) == set(codes)  # codes stay the key
    expected = {c: f"{n} ({c})" for c, n in zip(codes, names)}
    assert all(units.label == units.unit.map(expected))
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| Middlesbrough (E06000002) |" in report
    assert "Crude funnel (99.8%)" in report



def _share_cells() -> pd.DataFrame:
    # eight cells; the pupils "with SEN (support or EHC plan), CIN or FSM" are every row
    # but the first two (sen none, cin no, fsm no)
    return pd.DataFrame({
        "sen": ["none", "none", "support", "ehcp", "none", "none", "support", "none"],
        "cin": ["no", "no", "no", "no", "yes", "no", "yes", "no"],
        "fsm": ["no", "no", "no", "no", "no", "yes", "yes", "yes"],
        "sex": ["female", "male", "female", "male", "female", "male", "female", "female"],
        "n_perm_excl": [3, 5, 6, 4, 2, 7, 1, 2],
        "n_pupils": [900, 1100, 150, 40, 30, 200, 20, 260],
    })


def test_share_of_events_on_sen_cin_or_fsm_equals_the_hand_count(tmp_path: Path):
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "poisson"\nevents = "n_perm_excl"\n'
                     'formula = "sen + fsm"\n[fit]\nengine = "glm"\n[report]\nn_draws = 50\n')
    table = fit_result(model, data=_share_cells(), progress=False).estimates
    table = table.set_index("estimand")
    # by hand: events 6 + 4 + 2 + 7 + 1 + 2 = 22 of 30; pupils 700 of 2,700
    assert table.loc["event_share_observed", "estimate"] == pytest.approx(22 / 30, rel=1e-9)
    assert table.loc["event_share_observed", "n_events"] == 22
    assert table.loc["pupil_share", "estimate"] == pytest.approx(700 / 2700, rel=1e-9)
    assert table.loc["event_share_expected", "level"] == "SEN (support or EHC plan) or CIN or FSM"
    low, high = table.loc["event_share_expected", ["conf_low", "conf_high"]]
    assert 0 < low <= table.loc["event_share_expected", "estimate"] <= high < 1
    # the counts of sen and fsm are all published (every level has 3 or more events), so
    # the observed share is published too
    out = run_model(model, tmp_path / "run", data=_share_cells(), progress=False)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Share of events on overlapping groups" in report
    assert "| SEN (support or EHC plan) or CIN or FSM | 73.3% | 25.9% |" in report  # 22/30, 7/27
    # an override restricted to FSM: events 7 + 1 + 2 = 10 of 30
    model.write_text(model.read_text() + 'share_groups = { fsm = "yes" }\n')
    table = fit_result(model, data=_share_cells(), progress=False).estimates
    table = table.set_index("estimand")
    assert table.loc["event_share_observed", "estimate"] == pytest.approx(10 / 30, rel=1e-9)
    out = run_model(model, tmp_path / "run2", data=_share_cells(), progress=False)
    assert "| FSM (yes) | 33.3% |" in (out / "report.md").read_text(encoding="utf-8")


def test_share_is_suppressed_when_a_count_it_is_built_on_is(tmp_path: Path):
    cells = _share_cells().assign(n_perm_excl=[3, 5, 1, 4, 2, 7, 1, 2])  # support: 1 + 1
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "poisson"\nevents = "n_perm_excl"\n'
                     'formula = "sen + fsm"\n[fit]\nengine = "glm"\n[report]\nn_draws = 50\n')
    out = run_model(model, tmp_path / "run", data=cells, progress=False)
    table = pd.read_csv(out / "estimates.csv", dtype=str, keep_default_na=False)
    share = table[table.estimand.isin(["event_share_observed", "pupil_share"])]
    assert (share.estimate == "c").all() and (share.n_events == "c").all()
    expected = table[table.estimand == "event_share_expected"]
    assert expected.estimate.iloc[0] not in ("", "c")  # model-based: published


def test_share_groups_setting_is_checked(tmp_path: Path):
    with pytest.raises(SpecError, match="share_groups"):
        ReportSettings.from_mapping({"share_groups": {"sen": 3}})
    assert ReportSettings.from_mapping({"share_groups": {}}).share_groups == {}
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "binomial"\nevents = "n_perm_excl"\nformula = "sen"\n'
                     '[fit]\nengine = "glm"\n[report]\nn_draws = 50\n'
                     'share_groups = { ethnicity = "Irish" }\n')
    with pytest.raises(SpecError, match="ethnicity"):
        run_model(model, tmp_path / "run", data=_share_cells(), progress=False)


def test_intercept_only_standardised_ratio_is_crude_rate_over_overall_rate(tmp_path: Path):
    cells = pd.DataFrame({"la": ["A", "A", "B", "C", "C", "D"],
                          "sex": ["female", "male", "female", "female", "male", "female"],
                          "n_perm_excl": [4, 6, 3, 10, 2, 5],
                          "n_pupils": [300, 200, 400, 500, 100, 1000]})
    model = tmp_path / "m.toml"
    model.write_text('[model]\nfamily = "binomial"\nevents = "n_perm_excl"\nformula = "1"\n'
                     'groups = ["la"]\n[fit]\nengine = "glm"\n[fit.glm]\ncluster = "none"\n'
                     '[report]\nn_draws = 50\n')
    out = run_model(model, tmp_path / "run", data=cells, progress=False)
    units = pd.read_csv(out / "unit_effects.csv", dtype={"unit": str})
    sr = units[units.estimand == "unit_standardised_ratio"].set_index("unit")
    # by hand: overall rate 30 / 2,500 = 0.012; A 10/500 = 0.02, B 3/400 = 0.0075,
    # C 12/600 = 0.02, D 5/1000 = 0.005; O/E = crude rate / overall rate
    hand = {"A": 0.02 / 0.012, "B": 0.0075 / 0.012, "C": 0.02 / 0.012, "D": 0.005 / 0.012}
    for unit, ratio in hand.items():  # as published: to half the row's last decimal
        row = sr.loc[unit]
        step = rounding_step(row.estimate, row.std_error, row.conf_low, row.conf_high)
        assert 0 < step <= 0.01 and abs(row.estimate - ratio) <= step / 2 * (1 + 1e-9)
    assert sr.loc["A", "expected_events"] == pytest.approx(500 * 0.012, rel=1e-6)
    assert (out / "figures" / "funnel_ratio_la.png").is_file()
    assert (out / "figures" / "funnel_ratio_la.svg").is_file()
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "figures/funnel_ratio_la.png" in report
    assert report.index("figures/funnel_la.png") < report.index("figures/funnel_ratio_la.png")
    assert "fixed effects alone" in report
