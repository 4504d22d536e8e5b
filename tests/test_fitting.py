"""Tests for disparity.fitting: fit_model from a model file, and write_run."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.engines.base import ESTIMATE_COLUMNS
from disparity.errors import SpecError
from disparity.fitting import fit_model, write_run
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
    # Saturated in period: intercept = log odds of period 1 = log(61 / 217) (data/cbpp.md).
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


def test_write_run_is_deterministic(cbpp_glm, tmp_path):
    spec, fit = cbpp_glm
    first = write_run(fit, tmp_path / "a", spec)
    second = write_run(fit, tmp_path / "b", spec)
    a = (first / "estimates.csv").read_bytes()
    b = (second / "estimates.csv").read_bytes()
    assert a == b
    # Rewriting the same folder gives the same bytes too.
    write_run(fit, first, spec)
    assert (first / "estimates.csv").read_bytes() == a
    assert (first / "diagnostics.json").read_bytes() == (second / "diagnostics.json").read_bytes()
    assert b"\r\n" not in a


def test_write_run_files_and_contents(cbpp_glm, tmp_path):
    spec, fit = cbpp_glm
    run = write_run(fit, tmp_path / "run", spec)
    assert sorted(p.name for p in run.iterdir()) == [
        "diagnostics.json",
        "estimates.csv",
        "fit.pkl",
    ]
    table = pd.read_csv(run / "estimates.csv")
    assert tuple(table.columns) == ESTIMATE_COLUMNS
    intercept = table[(table["estimand"] == "coefficient") & (table["term"] == "Intercept")]
    # '%.10g' keeps ten significant digits of log(61/217) = -1.269023489...
    assert intercept["estimate"].iloc[0] == pytest.approx(math.log(61 / 217), abs=1e-9)
    text = (run / "estimates.csv").read_text()
    assert "-1.269023489" in text
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["model"] == "cbpp" and diagnostics["engine"] == "glm"
    assert diagnostics["diagnostics"]["n_clusters"] == 15
    loaded = pickle.loads((run / "fit.pkl").read_bytes())
    np.testing.assert_array_equal(loaded.coef, fit.coef)


class FakePosterior:
    """Stands in for ArviZ InferenceData: has to_netcdf, cannot be pickled."""

    def to_netcdf(self, path: str) -> str:
        Path(path).write_text("netcdf stand-in")
        return path

    def __reduce__(self):
        raise TypeError("not picklable")


def test_write_run_saves_a_posterior_for_pymc(cbpp_glm, tmp_path):
    spec, fit = cbpp_glm
    bayes = replace(
        fit, engine="pymc", raw=FakePosterior(), diagnostics={"rhat_max": np.float64(1.01)}
    )
    run = write_run(bayes, tmp_path / "run", spec)
    assert (run / "posterior.nc").read_text() == "netcdf stand-in"
    assert pickle.loads((run / "fit.pkl").read_bytes()).raw is None
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["diagnostics"]["rhat_max"] == 1.01
    assert "posterior.nc" in diagnostics["files"][0]


def test_write_run_drops_an_unpicklable_raw_object_and_says_so(cbpp_glm, tmp_path):
    spec, fit = cbpp_glm
    odd = replace(fit, engine="ml", raw=FakePosterior(), diagnostics={"x": float("nan")})
    run = write_run(odd, tmp_path / "run", spec)
    assert pickle.loads((run / "fit.pkl").read_bytes()).raw is None
    assert not (run / "posterior.nc").exists()
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    assert diagnostics["diagnostics"]["x"] == "NaN"
    assert "could not be pickled" in diagnostics["files"][0]
