"""A model file's data: suppressed counts kept as interval-censored counts, not dropped.

Oracles: the shipped DfE 2016/17 LA file (published LA totals; counts of the suppressed
cells by hand), and small hand-made tables where the published total pins a cell.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from disparity.dfe import dfe_cells, read_dfe
from disparity.errors import FitError, SpecError
from disparity.model_data import _censor_suppressed, load_model_data
from disparity.spec import ModelSpec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
LA_FILE = ROOT / "data" / "dfe" / "exclusions_by_characteristic_la_national.csv.gz"


def _spec(**data) -> ModelSpec:
    return spec_from_dict({"data": {"path": str(LA_FILE), "kind": "dfe", "by": "ethnicity",
                                    "unit": "la", "year": "2016/17", **data},
                           "model": {"family": "binomial", "events": "n_perm_excl",
                                     "trials": "n_pupils", "formula": "ethnicity",
                                     "groups": ["la"]}})


@pytest.fixture(scope="module")
def censored():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model_data(_spec())


def test_every_suppressed_count_is_kept_as_one_or_two(censored):
    frame = read_dfe(LA_FILE)
    cells = dfe_cells(frame, by="ethnicity", unit="la", year="2016/17")
    x = cells.n_perm_excl_missing.astype(str).str.startswith("x")
    no_pupils = cells.n_pupils.isna()
    kept = censored.frame
    # every cell but the 23 whose headcount is suppressed (a cell needs its pupils)
    assert int(no_pupils.sum()) == 23
    assert len(kept) == len(cells) - 23 == 2870 - 23
    upper = kept.n_perm_excl_upper
    gap = upper != kept.n_perm_excl
    # the 637 'x' counts (none of them in a cell whose headcount is suppressed) are each
    # censored to 1 or 2, or pinned by their LA's total
    assert int((x & ~no_pupils).sum()) == int(x.sum()) == 637
    pinned = kept.n_perm_excl_missing.notna() & ~gap
    assert int(gap.sum() + pinned.sum()) == 637
    assert set(kept.loc[gap, "n_perm_excl"]) <= {1} and set(kept.loc[gap, "n_perm_excl_upper"]) <= {2}
    # the 18 minor groups and Unclassified: none lost
    assert kept.ethnicity.nunique() == 19
    assert "interval-censored" in " ".join(censored.notes)


def test_la_sizes_are_the_published_totals(censored):
    frame = read_dfe(LA_FILE)
    totals = dfe_cells(frame, by=None, unit="la", year="2016/17").set_index("la")
    pupils = censored.frame.groupby("la").n_pupils.sum()
    # the examples: St Helens, Tower Hamlets, Westminster
    for la, published in (("E08000013", 26_067), ("E09000030", 43_520),
                          ("E09000033", 22_514)):
        assert pupils[la] == published == totals.loc[la, "n_pupils"]


def test_published_totals_pin_or_narrow_suppressed_cells():
    cells = pd.DataFrame({
        "year": "2016/17", "la": ["A"] * 3 + ["B"] * 3, "sen": ["none", "support", "ehcp"] * 2,
        "n_pupils": [500, 80, 20, 400, 90, 30],
        "n_perm_excl": [5, pd.NA, pd.NA, 3, pd.NA, 4],
        "n_perm_excl_missing": [None, "x: suppressed", "x: suppressed", None, "x: suppressed",
                                None],
    })
    cells["n_perm_excl"] = cells.n_perm_excl.astype("Int64")
    totals = pd.DataFrame({"year": "2016/17", "la": ["A", "B"], "n_pupils": [600, 520],
                           "n_perm_excl": [8, 9]})
    spec = ModelSpec(formula="sen")
    out, _, _, notes = _censor_suppressed(cells, spec, low_high=(1, 2), totals=totals,
                                          unit="la", by="sen")
    # A: 8 - 5 = 3 between two suppressed cells, each 1 or 2: {1, 2} either way
    a = out[out.la == "A"]
    assert a.n_perm_excl.tolist() == [5, 1, 1] and a.n_perm_excl_upper.tolist() == [5, 2, 2]
    # B: 9 - 3 - 4 = 2 in its one suppressed cell: exactly 2
    b = out[out.la == "B"]
    assert b.n_perm_excl.tolist() == [3, 2, 4] and b.n_perm_excl_upper.tolist() == [3, 2, 4]
    assert "narrowed 1" in notes[0] and "1 to an exact count" in notes[0]
    # a breakdown that may leave pupils out (ethnicity) only caps the sum
    out, _, _, _ = _censor_suppressed(cells, spec, low_high=(1, 2), totals=totals.assign(
        n_perm_excl=[7, 9]), unit="la", by="ethnicity")
    a = out[out.la == "A"]  # 7 - 5 = 2 >= the two cells' sum, so each is exactly 1
    assert a.n_perm_excl_upper.tolist() == [5, 1, 1]


def test_drop_is_still_there_and_says_what_it_costs():
    with pytest.warns(Warning, match="biased downward"):
        dropped = load_model_data(_spec(suppressed="drop"))
    assert len(dropped.frame) == 2870 - 637 - 23  # the 'x' cells and the headcount-x cells
    assert "n_perm_excl_upper" not in dropped.frame.columns


def test_suppressed_options_are_checked():
    with pytest.raises(SpecError, match="did you mean 'censored'"):
        _spec(suppressed="censor")
    with pytest.raises(SpecError, match="suppressed_range must be two whole numbers"):
        _spec(suppressed_range=[2, 1])


def test_cells_tables_may_carry_gss_markers(tmp_path):
    import disparity

    path = tmp_path / "cells.csv"
    path.write_text("sen,n_pupils,n_perm_excl\nnone,900,12\nsupport,150,x\nehcp,60,[c]\n")
    loaded = load_model_data(ModelSpec(formula="sen"), path)
    assert loaded.frame.n_perm_excl.tolist() == [12, 1, 1]
    assert loaded.frame.n_perm_excl_upper.tolist() == [12, 2, 2]
    # an engine that cannot fit censored counts says so and names the ones that can
    with pytest.raises(FitError, match="pymc"):
        disparity.fit("p(n_perm_excl, n_pupils) ~ sen", str(path), engine="glm", scope="fit")
