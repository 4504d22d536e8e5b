"""Tests for disparity.fitting and disparity.model_data: fit_model from a model file, and the
model file's data."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from disparity.errors import DataWarning, SpecError
from disparity.fitting import fit_model, load_model_data
from disparity.simulate import simulate_pupils
from disparity.spec import ModelSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
CBPP_MODEL = ROOT / "models" / "cbpp.toml"


@pytest.fixture(scope="module")
def cbpp_glm():
    spec = load_spec(CBPP_MODEL).replace(engine="glm")
    return spec, fit_model(CBPP_MODEL, engine="glm", progress=False)


def test_fit_model_from_model_file_reads_its_data(cbpp_glm):
    spec, fit = cbpp_glm
    assert fit.engine == "glm"
    assert fit.terms == ("Intercept", "period[T.2]", "period[T.3]", "period[T.4]")
    # Saturated in period: intercept = log odds of period 1 = log(61 / 217) (data/README.md, cbpp).
    assert fit.coef[0] == pytest.approx(math.log(61 / 217), abs=1e-8)
    # The model file has groups = ["herd"]: glm clusters its standard errors on herd.
    assert fit.diagnostics["cluster"] == "herd"


def test_fit_model_with_a_frame_and_a_spec_gives_the_same_fit(cbpp_glm):
    spec, fit = cbpp_glm
    frame = pd.read_csv(ROOT / "data" / "cbpp.csv")
    again = fit_model(spec, frame, progress=False)
    np.testing.assert_array_equal(again.coef, fit.coef)
    np.testing.assert_array_equal(again.coef_cov, fit.coef_cov)


def test_fit_model_without_data_says_how_to_give_it():
    spec = ModelSpec(formula="sen", engine="glm")
    with pytest.raises(SpecError, match=r"no \[data\] path"):
        fit_model(spec)


# --------------------------------------------------------------------------- [data] kinds

DFE_LA = ROOT / "data" / "dfe" / "exclusions_by_characteristic_la_national.csv.gz"


def _model_file(tmp_path: Path, data: str, model: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(f"[data]\n{data}\n[model]\n{model}\n[fit]\nengine = \"glm\"\n",
                    encoding="utf-8")
    return path


def _dfe_raw_rows(group: str) -> pd.DataFrame:
    """2016/17 LA rows of one characteristic in the shipped file, read with plain pandas."""
    raw = pd.read_csv(DFE_LA, dtype=str, keep_default_na=False)
    return raw[(raw["time_period"] == "201617") & (raw["geographic_level"] == "local authority")
               & (raw["school_type"] == "Total") & (raw["characteristic and group"] == group)]


DFE_OPTIONS = (f'path = "{DFE_LA.as_posix()}"\nkind = "dfe"\nunit = "la"\n'
               'year = "2016/17"\nschool_type = "Total"\n')
# The tests of leaving suppressed cells out ask for it: the default keeps them as censored
# counts (tests/test_model_data.py).
DROP = 'suppressed = "drop"\n'



def test_dfe_cells_with_suppressed_counts_are_dropped_with_a_warning_when_asked(tmp_path):
    rows = _dfe_raw_rows("Ethnicity")
    rows = rows[rows["characteristic"].str.startswith("Ethnicity Minor ")
                | (rows["characteristic"] == "Ethnicity Unclassified")]
    # Oracle: the raw file read with pandas: 2,870 LA x ethnicity cells in 2016/17, of which
    # 637 have perm_excl 'x' and 23 headcount 'x' (660 in all); the published headcount of
    # those with a known headcount sums to 867,379.
    suppressed = (rows["perm_excl"] == "x") | (rows["headcount"] == "x")
    n_cells = int(suppressed.sum())
    n_pupils = int(rows.loc[suppressed & (rows["headcount"] != "x"), "headcount"]
                   .astype(int).sum())
    assert (len(rows), n_cells, n_pupils) == (2870, 660, 867379)
    spec = load_spec(_model_file(
        tmp_path, DFE_OPTIONS + DROP + 'by = "ethnicity"',
        'family = "binomial"\nevents = "n_perm_excl"\ntrials = "n_pupils"\n'
        'formula = "ethnicity"'))
    with pytest.warns(DataWarning) as record:
        loaded = load_model_data(spec)
    (message,) = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert loaded.kind == "dfe" and loaded.n_rows_read == 2870
    assert len(loaded.frame) == 2870 - n_cells
    assert (loaded.n_dropped_cells, loaded.n_dropped_pupils) == (n_cells, n_pupils)
    assert loaded.frame["n_perm_excl"].dtype == np.int64
    assert "660 of 2,870 DfE cells (867,379 pupils" in message
    assert "23 cells whose headcount is suppressed" in message
    assert "1 or 2" in message and "biased downward" in message
    # Oracle (same pandas rows): every LA cell of these groups with events was suppressed.
    kept = rows[~suppressed]
    no_events = kept.groupby("characteristic")["perm_excl"].apply(
        lambda s: (s.astype(int) == 0).all())
    assert sorted(no_events[no_events].index) == [
        "Ethnicity Minor Any other Asian background", "Ethnicity Minor Chinese",
        "Ethnicity Minor Irish"]
    assert ("'Irish', 'Chinese', 'Any other Asian background' have no events left" in message
            or all(g in message for g in ("'Irish'", "'Chinese'",
                                          "'Any other Asian background'")))
    assert loaded.notes == (message,)


def test_dfe_fit_equals_log_odds_of_the_kept_cells(tmp_path):
    path = _model_file(tmp_path, DFE_OPTIONS + DROP + 'by = "sex"',
                       'family = "binomial"\nevents = "n_perm_excl"\ntrials = "n_pupils"\n'
                       'formula = "sex"\n[model.reference]\nsex = "female"')
    with pytest.warns(DataWarning, match="DfE cells"):
        fit = fit_model(path, progress=False)
    # Saturated one-factor logit: each coefficient is a log odds ratio of summed counts of
    # the cells kept (published perm_excl and headcount), written out here with pandas.
    rows = _dfe_raw_rows("Gender")
    kept = rows[(rows["perm_excl"] != "x") & (rows["headcount"] != "x")]
    assert len(kept) < len(rows)  # some LA x sex counts are suppressed
    sums = kept.assign(e=kept["perm_excl"].astype(int), n=kept["headcount"].astype(int)) \
        .groupby("characteristic")[["e", "n"]].sum()
    logit = np.log(sums["e"] / (sums["n"] - sums["e"]))
    coef = dict(zip(fit.terms, fit.coef))
    assert coef["Intercept"] == pytest.approx(logit["Gender female"], abs=1e-8)
    assert coef["sex[T.male]"] == pytest.approx(
        logit["Gender male"] - logit["Gender female"], abs=1e-8)
    data = fit.diagnostics["data"]
    assert data["n_dropped_cells"] == len(rows) - len(kept)
    assert data["n_cells"] == len(kept) and len(data["notes"]) == 1


def test_dfe_notes_reach_the_design(tmp_path, monkeypatch):
    seen = {}

    def fake_fit(design, spec, *, progress=True):
        from disparity.engines import glm

        seen["notes"] = design.notes
        return glm.fit(design, spec, progress=False)

    spec = load_spec(_model_file(
        tmp_path, f'path = "{DFE_LA.as_posix()}"\nby = "sex"\nunit = "la"\nyear = 201617\n'
        + DROP,
        'family = "binomial"\nevents = "n_perm_excl"\ntrials = "n_pupils"\nformula = "sex"'))
    import disparity.fitting as fitting

    monkeypatch.setattr(fitting, "get_engine", lambda name: SimpleNamespace(fit=fake_fit))
    with pytest.warns(DataWarning, match="DfE cells"):
        fit_model(spec.replace(engine="ml"), progress=False)  # kind told from the columns
    assert any("suppressed" in n for n in seen["notes"])


@pytest.fixture(scope="module")
def pupils_file(tmp_path_factory):
    sim = simulate_pupils(4_000, n_schools=20, n_las=4, n_years=2, seed=11)
    path = tmp_path_factory.mktemp("pupils") / "pupils.parquet"
    sim.pupils.to_parquet(path, index=False)
    return path, sim.pupils


PUPILS_MODEL = ('family = "binomial"\nevents = "n_any_susp"\ntrials = "n_pupils"\n'
                'formula = "sen + fsm"\ngroups = ["la/school"]')


def test_pupils_file_is_collapsed_by_the_model_columns(tmp_path, pupils_file):
    path, pupils = pupils_file
    spec = load_spec(_model_file(tmp_path, f'path = "{path.as_posix()}"', PUPILS_MODEL))
    loaded = load_model_data(spec)
    assert loaded.kind == "pupils"  # told from pupil_id
    # Oracle: the same cells by pandas groupby, written out here.
    by = ["sen", "fsm", "la", "school"]
    hand = (pupils.groupby(by, observed=True)
            .agg(n_pupils=("any_susp", "size"), n_any_susp=("any_susp", "sum")).reset_index())
    got = loaded.frame.sort_values(by).reset_index(drop=True)
    hand = hand.sort_values(by).reset_index(drop=True)
    assert list(got.columns) == [*by, "n_pupils", "n_any_susp"]
    np.testing.assert_array_equal(got["n_pupils"], hand["n_pupils"])
    np.testing.assert_array_equal(got["n_any_susp"], hand["n_any_susp"])
    assert got["n_pupils"].sum() == len(pupils) == 8_000
    assert "8,000 pupil rows collapsed" in loaded.notes[0]
    # The glm fit from the file equals the glm fit of the hand-made cells.
    by_file = fit_model(spec, progress=False)
    by_hand = fit_model(spec, hand, progress=False)
    np.testing.assert_allclose(by_file.coef, by_hand.coef, atol=1e-10)


def test_pupils_year_keeps_one_year(tmp_path, pupils_file):
    path, pupils = pupils_file
    for year in ('"2017/18"', '"201718"'):
        spec = load_spec(_model_file(
            tmp_path, f'path = "{path.as_posix()}"\nkind = "pupils"\nyear = {year}\n'
            'collapse_by = ["sen", "fsm", "la", "school", "sex"]', PUPILS_MODEL))
        frame = load_model_data(spec).frame
        in_year = pupils["year"].astype(str) == "2017/18"
        assert frame["n_pupils"].sum() == int(in_year.sum())
        assert frame["n_any_susp"].sum() == int(pupils.loc[in_year, "any_susp"].sum())
        assert "sex" in frame.columns  # collapse_by wins over the model's columns


def test_pupils_problems_are_spec_errors(tmp_path, pupils_file):
    path, _ = pupils_file
    spec = load_spec(_model_file(tmp_path, f'path = "{path.as_posix()}"\nyear = "2019/20"',
                                 PUPILS_MODEL))
    with pytest.raises(SpecError, match=r"'2019/20' is not in the data's 'year' column; its "
                                        r"values are '2016/17', '2017/18'"):
        load_model_data(spec)
    spec = load_spec(_model_file(tmp_path, f'path = "{path.as_posix()}"',
                                 PUPILS_MODEL.replace("n_any_susp", "n_exclusions")))
    with pytest.raises(SpecError, match="no outcome for events 'n_exclusions'"):
        load_model_data(spec)
    spec = load_spec(_model_file(tmp_path, f'path = "{path.as_posix()}"\n'
                                 'collapse_by = ["sen", "fsm"]', PUPILS_MODEL))
    with pytest.raises(SpecError, match=r"leaves out \['la', 'school'\]"):
        load_model_data(spec)


def test_dfe_keys_on_a_cells_file_are_refused(tmp_path):
    spec = load_spec(CBPP_MODEL)
    spec = spec.replace(data_options={"by": "ethnicity"})
    with pytest.raises(SpecError, match="by given, but the data are a cells table"):
        load_model_data(spec)


def test_cells_are_used_as_read_without_warnings():
    spec = load_spec(CBPP_MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model_data(spec)
    raw = pd.read_csv(ROOT / "data" / "cbpp.csv")
    assert loaded.kind == "cells" and loaded.notes == ()
    pd.testing.assert_frame_equal(loaded.frame, raw, check_dtype=False)


def test_keep_levels_counts_what_it_leaves_out(tmp_path):
    spec = load_spec(CBPP_MODEL).replace(data_options={"keep": {"period": ("1", "2")}})
    loaded = load_model_data(spec)
    raw = pd.read_csv(ROOT / "data" / "cbpp.csv")
    # Oracle: cbpp has 56 herd-period rows, 14 in period 3 and 13 in period 4 (data/cbpp.csv
    # counted with pandas); their herd sizes are left out.
    left = raw[raw["period"].isin([3, 4])]
    assert len(loaded.frame) == len(raw) - len(left) and set(loaded.frame["period"]) == {1, 2}
    assert (f"left out {len(left)} of {len(raw)} cells ({left['size'].sum():,} of "
            f"{raw['size'].sum():,} size)") in loaded.notes[0]
    with pytest.raises(SpecError, match=r"level\(s\) \['9'\] of 'period' are not in the data"):
        load_model_data(spec.replace(data_options={"keep": {"period": ("1", "9")}}))


def test_keep_applies_before_dfe_suppression_is_counted(tmp_path):
    spec = load_spec(_model_file(
        tmp_path, DFE_OPTIONS + DROP + 'by = "ethnicity"\nkeep = { ethnicity = ["White British", '
        '"Black Caribbean"] }',
        'family = "binomial"\nevents = "n_perm_excl"\ntrials = "n_pupils"\n'
        'formula = "ethnicity"'))
    rows = _dfe_raw_rows("Ethnicity")
    rows = rows[rows["characteristic"].isin(["Ethnicity Minor White British",
                                             "Ethnicity Minor Black Caribbean"])]
    suppressed = (rows["perm_excl"] == "x") | (rows["headcount"] == "x")
    with pytest.warns(DataWarning) as record:
        loaded = load_model_data(spec)
    assert loaded.n_dropped_cells == int(suppressed.sum())
    assert len(loaded.frame) == len(rows) - int(suppressed.sum())
    assert "no events left" not in str(record[0].message)
