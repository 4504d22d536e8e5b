"""Tests of disparity.cells: conservation, round trips and errors.

Oracles: totals and per-cell sums written out by hand or computed independently with
pandas ``groupby`` (a separate implementation from the code under test), and invariances
(collapse(expand(c)) == c; collapsing by a subset == recollapsing the finer cells).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disparity.cells import check_conservation, collapse, expand, recollapse, totals
from disparity.errors import DisparityError, ValidationError

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BY = ["ethnicity", "fsm", "school"]


@st.composite
def pupils_frames(draw, min_rows: int = 0, max_rows: int = 80) -> pd.DataFrame:
    """Random pupils: a categorical (with an unused category), a string and an int column."""
    n = draw(st.integers(min_rows, max_rows))
    eth = draw(st.lists(st.sampled_from(["White British", "Indian", "Black Caribbean"]),
                        min_size=n, max_size=n))
    fsm = draw(st.lists(st.sampled_from(["no", "yes"]), min_size=n, max_size=n))
    school = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    perm = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    susp = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    n_susp = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "ethnicity": pd.Categorical(
                eth, categories=["White British", "Indian", "Black Caribbean", "Chinese"]
            ),
            "fsm": pd.array(fsm, dtype="str"),
            "school": np.asarray(school, dtype=np.int64),
            "perm_excl": np.asarray(perm, dtype=np.int8),
            "any_susp": np.asarray(susp, dtype=np.int8),
            "n_susp": np.asarray(n_susp, dtype=np.int32),
        },
        # a non-default index: collapse must not depend on it
        index=pd.Index(np.arange(n) * 3 + 7),
    )


def _groupby_oracle(pupils: pd.DataFrame, by: list[str], outcomes: list[str]) -> pd.DataFrame:
    """Cells computed independently with pandas groupby, sorted by the group levels."""
    g = pupils.groupby(by, observed=True, sort=True)
    out = g.size().rename("n_pupils").to_frame()
    for o in outcomes:
        name = o if o.startswith("n_") else f"n_{o}"
        out[name] = g[o].sum().astype(np.int64)
    return out.reset_index()


# --------------------------------------------------------------------------- collapse
def test_collapse_hand_worked_example():
    # Five pupils written out; the expected cells are counted by hand.
    pupils = pd.DataFrame(
        {
            "sex": ["male", "female", "male", "male", "female"],
            "fsm": ["yes", "no", "no", "yes", "no"],
            "perm_excl": [1, 0, 0, 1, 0],
            "any_susp": [1, 1, 0, 1, 0],
            "n_susp": [4, 2, 0, 1, 0],
        }
    )
    cells = collapse(pupils, ["sex", "fsm"])
    assert cells["sex"].astype(str).tolist() == ["female", "male", "male"]
    assert cells["fsm"].astype(str).tolist() == ["no", "no", "yes"]
    assert cells["n_pupils"].tolist() == [2, 1, 2]
    assert cells["n_perm_excl"].tolist() == [0, 0, 2]
    assert cells["n_any_susp"].tolist() == [1, 0, 2]
    assert cells["n_susp"].tolist() == [2, 0, 5]
    assert list(cells.columns) == ["sex", "fsm", "n_pupils", "n_perm_excl", "n_any_susp", "n_susp"]
    assert all(isinstance(cells[c].dtype, pd.CategoricalDtype) for c in ["sex", "fsm"])
    assert cells["n_pupils"].dtype == np.int64


@SETTINGS
@given(pupils=pupils_frames(), k=st.integers(0, 3))
def test_collapse_conserves_and_matches_groupby(pupils, k):
    by = BY[:k]
    cells = collapse(pupils, by)
    outcomes = ["perm_excl", "any_susp", "n_susp"]
    # conservation, totals written out as plain sums
    assert int(cells["n_pupils"].sum()) == len(pupils)
    assert int(cells["n_perm_excl"].sum()) == int(pupils["perm_excl"].sum())
    assert int(cells["n_any_susp"].sum()) == int(pupils["any_susp"].sum())
    assert int(cells["n_susp"].sum()) == int(pupils["n_susp"].sum())
    # every cell has at least one pupil when observed=True
    assert (cells["n_pupils"] > 0).all()
    if by and len(pupils):
        expected = _groupby_oracle(pupils, by, outcomes)
        got = cells.copy()
        for c in by:
            got[c] = got[c].astype(pupils[c].dtype) if c != "ethnicity" else got[c]
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True), expected, check_dtype=False, check_categorical=False
        )


@SETTINGS
@given(pupils=pupils_frames())
def test_collapse_expand_round_trip(pupils):
    cells = collapse(pupils, BY, ["perm_excl", "any_susp"])
    back = collapse(expand(cells, ["perm_excl", "any_susp"]), BY, ["perm_excl", "any_susp"])
    pd.testing.assert_frame_equal(back, cells)


@SETTINGS
@given(pupils=pupils_frames(), sub=st.sampled_from([[], ["fsm"], ["ethnicity", "school"]]))
def test_collapse_by_subset_equals_recollapse(pupils, sub):
    fine = collapse(pupils, BY)
    direct = collapse(pupils, sub)
    pd.testing.assert_frame_equal(recollapse(fine, sub), direct)
    # collapse itself accepts a cells frame (recognised by its n_pupils column)
    pd.testing.assert_frame_equal(collapse(fine, sub), direct)


def test_collapse_unobserved_combinations_with_zeros():
    pupils = pd.DataFrame(
        {
            "sex": pd.Categorical(["male", "male"], categories=["female", "male"]),
            "fsm": ["no", "yes"],
            "perm_excl": [1, 0],
        }
    )
    cells = collapse(pupils, ["sex", "fsm"], ["perm_excl"], observed=False)
    # 2 sexes x 2 FSM levels = 4 rows, two of them empty
    assert cells["sex"].astype(str).tolist() == ["female", "female", "male", "male"]
    assert cells["fsm"].astype(str).tolist() == ["no", "yes", "no", "yes"]
    assert cells["n_pupils"].tolist() == [0, 0, 1, 1]
    assert cells["n_perm_excl"].tolist() == [0, 0, 1, 0]


def test_collapse_keeps_category_order_and_sorts_rows():
    levels = ["White British", "Irish", "Black Caribbean"]
    pupils = pd.DataFrame(
        {
            "ethnicity": pd.Categorical(
                ["Black Caribbean", "White British", "Irish", "Black Caribbean"],
                categories=levels,
            ),
            "perm_excl": [1, 0, 0, 0],
        }
    )
    cells = collapse(pupils, ["ethnicity"], ["perm_excl"])
    assert list(cells["ethnicity"].cat.categories) == levels
    assert cells["ethnicity"].astype(str).tolist() == levels  # category order, not alphabetical
    assert cells["n_pupils"].tolist() == [1, 1, 2]


def test_collapse_many_levels_uses_compacted_key():
    # 3 columns of 2**21 possible levels each overflow a direct int64 mixed-radix key
    # (2**63); pupils are still grouped exactly. Oracle: pandas groupby.
    rng = np.random.default_rng(1)
    n = 5000
    pupils = pd.DataFrame(
        {
            "a": rng.integers(0, 2**21, n),
            "b": rng.integers(0, 3, n),
            "c": rng.integers(0, 2**21, n),
            "d": rng.integers(0, 2**21, n),
            "perm_excl": rng.integers(0, 2, n),
        }
    )
    cells = collapse(pupils, ["a", "b", "c", "d"], ["perm_excl"])
    expected = _groupby_oracle(pupils, ["a", "b", "c", "d"], ["perm_excl"])
    for col in "abcd":
        cells[col] = cells[col].astype(np.int64)
    pd.testing.assert_frame_equal(cells, expected, check_dtype=False)


def test_collapse_missing_grouping_values_raise_naming_column_and_rows():
    pupils = pd.DataFrame(
        {"fsm": ["no", None, "yes", None], "perm_excl": [0, 1, 0, 0]},
        index=[10, 11, 12, 13],
    )
    with pytest.raises(ValidationError) as err:
        collapse(pupils, ["fsm"])
    msg = str(err.value)
    assert "'fsm'" in msg and "2 missing values" in msg and "11, 13" in msg


def test_collapse_bad_outcomes_listed_together():
    pupils = pd.DataFrame(
        {"fsm": ["no", "yes", "no"], "perm_excl": [0, 2, 0], "any_susp": [0, -1, np.nan]}
    )
    with pytest.raises(ValidationError) as err:
        collapse(pupils, ["fsm"], ["perm_excl", "any_susp"])
    assert len(err.value.problems) == 2
    assert "other than 0 and 1" in err.value.problems[0]
    assert "missing" in err.value.problems[1]


def test_collapse_unknown_column_lists_columns():
    pupils = pd.DataFrame({"fsm": ["no"], "perm_excl": [0]})
    with pytest.raises(ValidationError, match="'school'.*not found"):
        collapse(pupils, ["school"])


def test_collapse_non_integer_outcome_rejected():
    pupils = pd.DataFrame({"fsm": ["no", "yes"], "n_susp": [0.5, 1.0]})
    with pytest.raises(ValidationError, match="not whole numbers"):
        collapse(pupils, ["fsm"], {"n_susp": "count"})


# --------------------------------------------------------------------------- expand
def test_expand_hand_worked_example():
    cells = pd.DataFrame(
        {
            "fsm": pd.Categorical(["no", "yes"]),
            "n_pupils": [3, 2],
            "n_perm_excl": [1, 2],
            "n_any_susp": [2, 0],
            "n_susp": [5, 0],  # a count column not expanded: dropped
        }
    )
    pupils = expand(cells, ["perm_excl", "any_susp"])
    assert list(pupils.columns) == ["fsm", "perm_excl", "any_susp"]
    assert pupils["fsm"].astype(str).tolist() == ["no", "no", "no", "yes", "yes"]
    assert pupils["perm_excl"].tolist() == [1, 0, 0, 1, 1]
    assert pupils["any_susp"].tolist() == [1, 1, 0, 0, 0]
    assert pupils["perm_excl"].dtype == np.int8
    assert isinstance(pupils["fsm"].dtype, pd.CategoricalDtype)


def test_expand_refuses_count_outcome():
    cells = pd.DataFrame({"fsm": ["no"], "n_pupils": [3], "n_susp": [5]})
    with pytest.raises(ValidationError, match="'n_susp'.*counts"):
        expand(cells, ["n_susp"])


def test_expand_more_events_than_pupils_rejected():
    cells = pd.DataFrame({"fsm": ["no", "yes"], "n_pupils": [3, 1], "n_perm_excl": [1, 2]})
    with pytest.raises(ValidationError, match="exceeds 'n_pupils' in 1 cells"):
        expand(cells, ["perm_excl"])


def test_expand_zero_pupil_cells_give_no_rows():
    cells = pd.DataFrame({"fsm": ["no", "yes"], "n_pupils": [0, 2], "n_perm_excl": [0, 1]})
    pupils = expand(cells, ["perm_excl"])
    assert pupils["fsm"].tolist() == ["yes", "yes"]
    assert pupils["perm_excl"].tolist() == [1, 0]


# --------------------------------------------------------------------------- conservation
def test_totals_of_pupils_and_cells_agree():
    pupils = pd.DataFrame({"fsm": ["no", "yes", "yes"], "perm_excl": [0, 1, 1]})
    cells = pd.DataFrame({"fsm": ["no", "yes"], "n_pupils": [1, 2], "n_perm_excl": [0, 2]})
    assert totals(pupils, ["perm_excl"]) == {"n_pupils": 3, "n_perm_excl": 2}
    assert totals(cells, ["perm_excl"]) == {"n_pupils": 3, "n_perm_excl": 2}


def test_check_conservation_raises_on_lost_pupils_and_events():
    pupils = pd.DataFrame({"fsm": ["no", "yes", "yes"], "perm_excl": [0, 1, 1]})
    lost = pd.DataFrame({"fsm": ["yes"], "n_pupils": [2], "n_perm_excl": [1]})
    with pytest.raises(DisparityError) as err:
        check_conservation(pupils, lost, ["perm_excl"], step="test step")
    msg = str(err.value)
    assert "test step" in msg
    assert "n_pupils: 3 before, 2 after" in msg and "n_perm_excl: 2 before, 1 after" in msg
