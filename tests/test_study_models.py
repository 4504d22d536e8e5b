"""The off-rolling, trust and outcomes-after-exclusion model files and their synthetic data.

Oracles: the truth written beside each data file by examples/make_study_data.py
(coefficients, planted schools, trust membership), and conservation of pupils and events
from the pupil file to the cells each model is fitted to. The slow tests fit the models
from their files with the ml engine and check the estimates against the truth.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.errors import DataWarning
from disparity.fitting import load_model_data
from disparity.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def _truth(name: str) -> dict:
    return json.loads((ROOT / "data" / "synthetic" / f"truth_{name}.json").read_text())


@pytest.mark.parametrize("model, data", [
    ("synthetic_off_rolling", "pupils_off_rolling.parquet"),
    ("synthetic_trusts", "pupils_trusts.parquet"),
    ("synthetic_outcomes_after_exclusion", "pupils_outcomes.parquet"),
])
def test_model_files_load_and_name_their_data(model, data):
    spec = load_spec(MODELS / f"{model}.toml")
    assert spec.data_path == ROOT / "data" / "synthetic" / data
    assert spec.data_path.is_file()
    assert spec.family == "binomial" and spec.engine == "ml"
    assert "la/school" in spec.groups


def test_off_rolling_cells_conserve_pupils_and_losses():
    spec = load_spec(MODELS / "synthetic_off_rolling.toml")
    pupils = pd.read_parquet(spec.data_path)
    cells = load_model_data(spec).frame
    assert cells["n_pupils"].sum() == len(pupils) == 140_000
    assert cells["n_unexplained_loss"].sum() == pupils["unexplained_loss"].sum()
    truth = _truth("off_rolling")["unexplained_loss"]
    assert len(truth["planted"]) == 20
    units = set((cells["la"].astype(str) + "/" + cells["school"].astype(str)).unique())
    assert set(truth["planted_units"]) <= units


@pytest.mark.parametrize("model", ["synthetic_off_rolling", "synthetic_trusts",
                                   "synthetic_outcomes_after_exclusion"])
def test_every_level_has_pupils_with_and_without_the_event(model):
    # A level with no events (or only events) has an infinite maximum-likelihood
    # coefficient: the fit cannot converge. The shipped data must have none.
    from disparity.spec import formula_variables

    spec = load_spec(MODELS / f"{model}.toml")
    pupils = pd.read_parquet(spec.data_path)
    outcome = spec.events.removeprefix("n_")
    for var in formula_variables(spec.formula):
        g = pupils.groupby(var, observed=True)[outcome].agg(["sum", "size"])
        assert ((g["sum"] > 0) & (g["sum"] < g["size"])).all(), (var, g)


def test_outcomes_file_holds_year11_pupils_with_later_outcomes():
    spec = load_spec(MODELS / "synthetic_outcomes_after_exclusion.toml")
    pupils = pd.read_parquet(spec.data_path)
    assert (pupils["nc_year"] == "11").all()
    assert pupils["good_gcse"].notna().all() and pupils["neet_16_17"].notna().all()
    cells = load_model_data(spec).frame
    assert cells["n_good_gcse"].sum() == pupils["good_gcse"].sum()
    assert cells["n_pupils"].sum() == len(pupils)
    counts = pupils["exclusion_history"].value_counts()
    assert counts["permanent"] > 200 and counts["suspended"] > 1_000
    assert (pupils["alt_provision"] == "yes").sum() > 200
    description = spec.description.lower()
    assert "association" in description and "not causal" in description
    text = (MODELS / "synthetic_outcomes_after_exclusion.toml").read_text()
    assert "no evidence that exclusion" in text and "causes crime" in text


def test_trusts_file_has_missing_trust_for_standalone_schools():
    spec = load_spec(MODELS / "synthetic_trusts.toml")
    assert spec.groups == ("la/school", "trust")
    pupils = pd.read_parquet(spec.data_path)
    trusts = _truth("trusts")["trusts"]
    standalone = set(pupils.loc[pupils["trust"].isna(), "school"].astype(str))
    assert standalone == set(trusts["standalone"])
    assert "none" not in set(pupils["trust"].dropna().astype(str))
    members = {s: t for t, schools in trusts["members"].items() for s in schools}
    seen = pupils.dropna(subset=["trust"]).groupby("school", observed=True)["trust"].first()
    assert seen.astype(str).to_dict() == members
    las = pupils.dropna(subset=["trust"]).groupby("trust", observed=True)["la"].nunique()
    assert (las > 1).sum() > 10  # trusts span LAs: crossed with la/school, not nested


# --------------------------------------------------------------------------- slow fits
@pytest.mark.slow
def test_outcomes_model_recovers_the_adjusted_gaps():
    from disparity.estimates import estimates
    from disparity.fitting import fit_model

    spec = load_spec(MODELS / "synthetic_outcomes_after_exclusion.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        fit = fit_model(spec, progress=False)
    table = estimates(fit, ci_prob=0.99).set_index("term")
    truth = _truth("outcomes")["good_gcse"]["coefficients"]
    for term in ("exclusion_history[T.suspended]", "exclusion_history[T.permanent]",
                 "alt_provision[T.yes]"):
        row = table.loc[term]
        row = row[row["estimand"] == "coefficient"] if isinstance(row, pd.DataFrame) else row
        low, high = float(np.squeeze(row["conf_low"])), float(np.squeeze(row["conf_high"]))
        assert low < truth[term] < high, term


@pytest.mark.slow
def test_off_rolling_flags_find_the_planted_schools():
    from disparity.design import build_design
    from disparity.estimands import unit_effects
    from disparity.fitting import fit_model

    spec = load_spec(MODELS / "synthetic_off_rolling.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        cells = load_model_data(spec).frame
        design = build_design(spec, cells)
        fit = fit_model(spec, cells, progress=False)
    units = unit_effects(fit, design, "school", fdr=float(spec.report["fdr"]))
    units = units[units["estimand"] == "unit_ratio"]
    flagged = set(units.loc[units["flag_fdr"], "level"])
    planted = set(_truth("off_rolling")["unexplained_loss"]["planted_units"])
    assert len(flagged & planted) / len(flagged) >= 0.8
    assert len(flagged & planted) / len(planted) >= 0.5
