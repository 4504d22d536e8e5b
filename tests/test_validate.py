"""Tests of disparity.validate: every check, its message, and collect-then-raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disparity.errors import SpecError, ValidationError
from disparity.validate import validate_cells, validate_pupils
from disparity.vocabulary import ETHNICITY_LEVELS, LEVELS, SEN_LEVELS


def pupils(n: int = 20) -> pd.DataFrame:
    """A valid pupils table: schools S1, S2 in LA E1 and S3, S4 in LA E2, in 2016/17."""
    school = [f"S{i % 4 + 1}" for i in range(n)]
    return pd.DataFrame(
        {
            "pupil_id": list(range(1, n + 1)),
            "year": ["2016/17"] * n,
            "la": ["E1" if s in ("S1", "S2") else "E2" for s in school],
            "school": school,
            "trust": [None if s == "S1" else "T1" for s in school],  # S1 is LA-maintained
            "ethnicity": [ETHNICITY_LEVELS[i % len(ETHNICITY_LEVELS)] for i in range(n)],
            "sen": [SEN_LEVELS[i % 3] for i in range(n)],
            "fsm": ["yes" if i % 2 else "no" for i in range(n)],
            "sex": ["female" if i % 2 else "male" for i in range(n)],
            "nc_year": [7 + i % 5 for i in range(n)],
            "perm_excl": [1 if i == 4 else 0 for i in range(n)],
            "any_susp": [1 if i % 5 == 4 else 0 for i in range(n)],
            "n_susp": [i // 5 if i % 5 == 4 else 0 for i in range(n)],
            "note": ["extra"] * n,
        }
    )


def cells() -> pd.DataFrame:
    """A valid cells table by LA and SEN."""
    return pd.DataFrame(
        {
            "la": ["E1", "E1", "E1", "E2", "E2", "E2"],
            "sen": ["none", "support", "ehcp", "none", "support", "ehcp"],
            "n_pupils": [900, 80, 20, 700, 60, 0],
            "n_perm_excl": [1, 2, 1, 0, 1, 0],
            "n_susp": [40, 90, 12, 30, 5, 0],
        }
    )


def problems_of(call, *args, **kwargs) -> list[str]:
    with pytest.raises(ValidationError) as err:
        call(*args, **kwargs)
    assert str(err.value).count("\n") == len(err.value.problems)  # one line each
    return err.value.problems


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


# --------------------------------------------------------------------------- pupils: valid
def test_valid_pupils_pass_and_are_not_changed():
    frame = pupils()
    before = frame.copy()
    out = validate_pupils(frame)
    pd.testing.assert_frame_equal(frame, before)  # the input is not mutated
    pd.testing.assert_frame_equal(out, before)  # int64 outcomes already: nothing to change
    assert out is not frame


def test_whole_floats_and_text_numbers_become_int64():
    frame = pupils(5).assign(
        perm_excl=[0.0, 1.0, 0.0, 0.0, 0.0],
        any_susp=["0", "1", " 1 ", "0", "0"],
        n_susp=["0", "1,234", "12,345,678", "3", "0"],
    )
    out = validate_pupils(frame)
    for column in ("perm_excl", "any_susp", "n_susp"):
        assert out[column].dtype == "int64"
    assert out["perm_excl"].tolist() == [0, 1, 0, 0, 0]
    assert out["any_susp"].tolist() == [0, 1, 1, 0, 0]
    # "1,234" is 1 * 1000 + 234; "12,345,678" is 12 * 10**6 + 345 * 10**3 + 678.
    assert out["n_susp"].tolist() == [0, 1234, 12_345_678, 3, 0]
    assert out["note"].tolist() == ["extra"] * 5  # extra columns pass through


def test_optional_columns_only_checked_when_present():
    frame = pupils().drop(columns=["ethnicity", "sen", "fsm", "sex", "trust"])
    validate_pupils(frame)  # no characteristic is required by default


def test_missing_trust_is_allowed():
    frame = pupils()
    assert frame["trust"].isna().sum() == 5
    validate_pupils(frame)


def test_required_is_configurable():
    frame = pupils().drop(columns=["sen"])
    problem = only(problems_of(validate_pupils, frame, required=("la", "school", "sen")))
    assert problem.startswith("column 'sen' is missing (required).")
    assert "pass required= to validate_pupils" in problem


# --------------------------------------------------------------------------- pupils: problems
def test_empty_pupils():
    problem = only(problems_of(validate_pupils, pupils().iloc[:0]))
    assert "the pupils table has no rows" in problem
    assert "'pupil_id'" in problem  # the columns found are listed


def test_missing_column_lists_similar_names():
    frame = pupils().rename(columns={"school": "School"})
    problem = only(problems_of(validate_pupils, frame))
    assert problem == (
        "column 'school' is missing (required). Columns that look similar: 'School'. "
        "Rename one to 'school', or pass required= to validate_pupils."
    )


def test_missing_outcome_without_similar_column_lists_present_ones():
    frame = pupils().drop(columns=["perm_excl"])
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith("column 'perm_excl' is missing (required). Columns present: ")
    assert "'pupil_id'" in problem
    assert "pass outcomes= to validate_pupils" in problem


def test_unknown_level_message():
    frame = pupils()
    frame.loc[[1, 8, 13], "sen"] = "SEN support"  # data rows 2, 9, 14
    problem = only(problems_of(validate_pupils, frame))
    assert problem == (
        "column 'sen': 3 rows have unknown level 'SEN support' (rows 2, 9, 14 of 20). "
        "Valid levels: 'none', 'support', 'ehcp'. Did you mean 'support'? "
        "Recode the column, or pass levels= to validate_pupils."
    )


def test_several_unknown_levels_get_a_suggestion_each():
    frame = pupils()
    frame.loc[0, "ethnicity"] = "black caribbean"
    frame.loc[2, "ethnicity"] = "Gypsy Roma"
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith(
        "column 'ethnicity': 2 rows have unknown levels 'black caribbean', 'Gypsy Roma' "
        "(rows 1, 3 of 20)."
    )
    assert "Did you mean 'Black Caribbean' for 'black caribbean', 'Gypsy/Roma' for " in problem
    assert "'Any other ethnic group', 'Unclassified'." in problem  # all valid levels listed


def test_numeric_codes_are_unknown_levels():
    frame = pupils().assign(fsm=[i % 2 for i in range(20)])
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith("column 'fsm': 20 rows have unknown levels 0, 1 (rows 1, 2, 3")
    assert "Valid levels: 'no', 'yes'." in problem


def test_custom_levels_and_no_levels():
    frame = pupils().assign(sen=["K", "E", "N", "N"] * 5)
    problems_of(validate_pupils, frame)
    validate_pupils(frame, levels={**LEVELS, "sen": ("N", "K", "E")})
    validate_pupils(frame, levels=None)


def test_missing_values_in_key_and_grouping_columns():
    frame = pupils()
    frame.loc[2, "school"] = None
    frame.loc[[5, 6], "la"] = "  "  # blank text counts as missing
    frame.loc[3, "sen"] = None
    problems = problems_of(validate_pupils, frame)
    assert len(problems) == 3
    assert (
        "column 'la': 2 rows have missing values (rows 6, 7 of 20). Every row needs one: "
        "fill them in, or drop those rows." in problems
    )
    assert any(p.startswith("column 'school': 1 row has missing values (row 3 of 20).")
               for p in problems)
    assert any(p.startswith("column 'sen': 1 row has missing values (row 4 of 20).")
               and "Unclassified" in p for p in problems)


def test_binary_outcome_outside_0_1():
    frame = pupils()
    frame.loc[[3, 10], "perm_excl"] = 2
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith(
        "column 'perm_excl': 2 rows have values other than 0 and 1: 2 (rows 4, 11 of 20)."
    )
    assert "recode it to 0 and 1" in problem
    assert "outcomes={'perm_excl': 'count'}" in problem


def test_binary_outcome_as_words():
    frame = pupils().assign(any_susp=["no", "yes"] * 10)
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith(
        "column 'any_susp': 20 rows have values that are not numbers 'no', 'yes' "
        "(rows 1, 2, 3, 4, 5, ... of 20)."
    )
    assert "recode it to 0 and 1" in problem


def test_negative_and_fractional_counts():
    frame = pupils().assign(n_susp=[0.0] * 20)
    frame.loc[1, "n_susp"] = -1.0
    frame.loc[[6, 7], "n_susp"] = 2.5
    problems = problems_of(validate_pupils, frame)
    assert len(problems) == 2
    assert problems[0].startswith(
        "column 'n_susp': 2 rows have values that are not whole numbers 2.5 (rows 7, 8 of 20)."
    )
    assert "not rates or percentages" in problems[0]
    assert problems[1] == (
        "column 'n_susp': 1 row has negative values -1 (row 2 of 20). "
        "Counts cannot be negative: correct these rows."
    )


def test_infinite_count_is_refused():
    frame = pupils().assign(n_susp=[0.0] * 19 + [np.inf])
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith("column 'n_susp': 1 row has infinite values inf (row 20 of 20)")


def test_missing_outcome():
    frame = pupils().assign(any_susp=[0] * 19 + [None])
    problem = only(problems_of(validate_pupils, frame))
    assert problem == (
        "column 'any_susp': 1 row has missing values (NA; row 20 of 20). Every pupil-year "
        "needs an outcome: fill in 0 or 1, or drop those rows."
    )


def test_duplicated_pupil_years():
    frame = pupils()
    frame.loc[[7, 15], "pupil_id"] = 3  # pupil 3 (row 3) now appears in rows 8 and 16 too
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith(
        "columns 'pupil_id', 'year': 3 rows repeat 1 pupil-year (rows 3, 8, 16 of 20), "
        "e.g. pupil_id=3, year='2016/17'."
    )
    assert "remove the duplicate rows" in problem


def test_same_pupil_in_two_years_is_fine():
    frame = pupils(4)
    later = frame.assign(year="2017/18")
    validate_pupils(pd.concat([frame, later], ignore_index=True))


def test_school_in_two_las_in_one_year():
    frame = pupils()
    frame.loc[[4, 12], "la"] = "E7"  # two rows of school S1 (in E1) put in LA E7
    problem = only(problems_of(validate_pupils, frame))
    assert problem.startswith(
        "column 'la': 1 school value is in more than one la in the same year "
        "(rows 1, 5, 9, 13, 17 of 20): school 'S1' in la 'E1', 'E7' in year '2016/17'."
    )
    assert "correct 'la' in those rows" in problem


def test_school_may_change_la_between_years():
    first = pupils(8)
    second = pupils(8).assign(year="2017/18", la="E9")
    validate_pupils(pd.concat([first, second], ignore_index=True))
    problem = only(
        problems_of(validate_pupils, pd.concat([first, second], ignore_index=True), period=None)
    )
    assert problem.startswith("column 'la': 4 school values are in more than one la (rows")
    assert "school 'S1' in la 'E1', 'E9'; " in problem


def test_many_problems_in_one_error():
    frame = pupils().rename(columns={"school": "School"})
    frame.loc[1, "sen"] = "SEN support"
    frame.loc[2, "perm_excl"] = 5
    frame.loc[3, "n_susp"] = -2
    frame.loc[4, "pupil_id"] = 1
    frame.loc[5, "la"] = None
    with pytest.raises(ValidationError) as err:
        validate_pupils(frame)
    problems = err.value.problems
    assert len(problems) == 6
    message = str(err.value)
    assert message.startswith(
        "pupils table (20 rows; rows numbered from 1 = first data row) failed validation "
        "with 6 problems:"
    )
    for expected in (
        "column 'school' is missing",
        "column 'la': 1 row has missing values (row 6 of 20)",
        "column 'sen': 1 row has unknown level 'SEN support' (row 2 of 20)",
        "column 'perm_excl': 1 row has values other than 0 and 1: 5 (row 3 of 20)",
        "column 'n_susp': 1 row has negative values -2 (row 4 of 20)",
        "columns 'pupil_id', 'year': 2 rows repeat 1 pupil-year (rows 1, 5 of 20)",
    ):
        assert sum(expected in p for p in problems) == 1, expected


def test_only_first_five_rows_are_listed():
    frame = pupils().assign(perm_excl=[3] * 20)
    problem = only(problems_of(validate_pupils, frame))
    assert "(rows 1, 2, 3, 4, 5, ... of 20)" in problem
    assert "6," not in problem


def test_custom_outcomes():
    frame = pupils().assign(sick=[0, 1] * 10, visits=[0, 4] * 10)
    out = validate_pupils(frame, outcomes={"sick": "binary", "visits": "count"})
    assert out["visits"].tolist() == [0, 4] * 10
    problem = only(problems_of(validate_pupils, frame, outcomes={"visits": "binary"}))
    assert problem.startswith("column 'visits': 10 rows have values other than 0 and 1: 4")


def test_bad_outcome_arguments():
    with pytest.raises(SpecError, match="outcomes=\\{'sick': 'binary'\\}"):
        validate_pupils(pupils(), outcomes=("sick",))
    with pytest.raises(SpecError, match="Valid kinds: 'binary', 'count'"):
        validate_pupils(pupils(), outcomes={"perm_excl": "rate"})


@st.composite
def valid_pupils(draw):
    n = draw(st.integers(min_value=1, max_value=30))
    n_schools = draw(st.integers(min_value=1, max_value=5))
    school = draw(st.lists(st.integers(0, n_schools - 1), min_size=n, max_size=n))
    years = draw(st.lists(st.sampled_from(["2015/16", "2016/17"]), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "pupil_id": [f"P{i:04d}" for i in range(n)],
            "year": years,
            "la": [f"L{s % 2}" for s in school],  # a school's LA is fixed by its number
            "school": [f"S{s}" for s in school],
            "sen": draw(st.lists(st.sampled_from(SEN_LEVELS), min_size=n, max_size=n)),
            "ethnicity": draw(
                st.lists(st.sampled_from(ETHNICITY_LEVELS), min_size=n, max_size=n)
            ),
            "perm_excl": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
            "any_susp": draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n)),
            "n_susp": draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)),
        }
    )


@settings(max_examples=25, deadline=None)
@given(frame=valid_pupils())
def test_valid_random_pupils_never_raise(frame):
    out = validate_pupils(frame)
    # Type normalisation only: same values, integer dtype.
    assert out["any_susp"].dtype == "int64"
    assert out["any_susp"].tolist() == [int(v) for v in frame["any_susp"]]
    pd.testing.assert_frame_equal(out.drop(columns="any_susp"), frame.drop(columns="any_susp"))


# --------------------------------------------------------------------------- cells: valid
def test_valid_cells_pass():
    frame = cells()
    out = validate_cells(frame, by=["la", "sen"], events=["n_perm_excl", "n_susp"])
    pd.testing.assert_frame_equal(out, frame)
    # by and events default to the columns that are not / are "n_" counts.
    pd.testing.assert_frame_equal(validate_cells(frame), frame)


def test_default_columns_skip_missing_reasons():
    # Suppressed counts with the column saying why, as the DfE reader writes them.
    frame = cells().assign(
        n_perm_excl=pd.array([1, None, 1, 0, 1, 0], dtype="Int64"),
        n_perm_excl_missing=[None, "x: suppressed", None, None, None, None],
    )
    out = validate_cells(frame, allow_missing=True)
    assert out["n_perm_excl_missing"].tolist() == frame["n_perm_excl_missing"].tolist()
    problem = only(problems_of(validate_cells, frame))  # reasons are not grouping columns
    assert problem.startswith("column 'n_perm_excl': 1 row has missing (suppressed?) counts")


def test_count_events_may_exceed_pupils():
    frame = cells()
    assert (frame["n_susp"] > frame["n_pupils"]).any()  # 90 suspensions among 80 pupils
    validate_cells(frame, by=["la", "sen"])


def test_teachers_table_with_custom_columns():
    herds = pd.DataFrame(
        {"herd": ["a", "b", "c"], "size": [20.0, 15.0, 8.0], "incidence": ["3", "0", "8"]}
    )
    out = validate_cells(herds, by=["herd"], events=["incidence"], trials="size")
    assert out["size"].dtype == "int64"
    assert out["incidence"].tolist() == [3, 0, 8]
    sick = herds.assign(incidence=[3, 0, 9])
    problem = only(
        problems_of(validate_cells, sick, by=["herd"], events=["incidence"], trials="size")
    )
    assert problem.startswith(
        "column 'incidence': 1 row has more events than trials in 'size' (row 3 of 3), "
        "e.g. incidence=9 with size=8."
    )
    assert "pass binary= without 'incidence' to validate_cells" in problem
    validate_cells(sick, by=["herd"], events=["incidence"], trials="size", binary=False)


def test_suppressed_counts_allowed_when_asked():
    frame = cells().assign(n_perm_excl=["1", "x", "c", "0", "", "0"])
    out = validate_cells(frame, by=["la", "sen"], allow_missing=True)
    assert out["n_perm_excl"].dtype == "Int64"
    assert out["n_perm_excl"].isna().tolist() == [False, True, True, False, True, False]
    assert out["n_perm_excl"].sum() == 1  # 1 + 0 + 0: the suppressed cells are not zeros


def test_nullable_counts_pass_through_when_allowed():
    frame = cells().assign(n_perm_excl=pd.array([1, None, 1, 0, 1, 0], dtype="Int64"))
    out = validate_cells(frame, by=["la", "sen"], allow_missing=True)
    pd.testing.assert_series_equal(out["n_perm_excl"], frame["n_perm_excl"])


# --------------------------------------------------------------------------- cells: problems
def test_empty_cells():
    problem = only(problems_of(validate_cells, cells().iloc[:0], by=["la", "sen"]))
    assert "the cells table has no rows" in problem


def test_missing_cells_columns():
    frame = cells().rename(columns={"n_pupils": "N_Pupils"}).drop(columns="sen")
    problems = problems_of(validate_cells, frame, by=["la", "sen"], events=["n_perm_excl"])
    assert len(problems) == 2
    assert problems[0].startswith("column 'sen' is missing (required). Columns present:")
    assert problems[0].endswith("or pass by= to validate_cells.")
    assert problems[1] == (
        "column 'n_pupils' is missing (required). Columns that look similar: 'N_Pupils'. "
        "Rename one to 'n_pupils', or pass trials= to validate_cells."
    )


def test_no_event_columns():
    frame = cells()[["la", "sen", "n_pupils"]]
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"]))
    assert "no event-count columns" in problem
    assert "pass events= to validate_cells" in problem


def test_missing_values_in_grouping_columns():
    frame = cells()
    frame.loc[4, "sen"] = None
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"]))
    assert problem == (
        "column 'sen': 1 row has missing values (row 5 of 6). Every cell needs a value: "
        "fill them in, or drop those rows."
    )


def test_cells_levels():
    frame = cells()
    frame.loc[0, "sen"] = "SEN support"
    frame.loc[2, "la"] = "E3"
    levels = {"sen": SEN_LEVELS}
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"], levels=levels))
    assert problem.startswith("column 'sen': 1 row has unknown level 'SEN support' (row 1 of 6)")
    assert "Did you mean 'support'?" in problem
    assert "pass levels= to validate_cells" in problem


def test_suppressed_counts_reported_by_default():
    frame = cells().assign(n_perm_excl=pd.array([1, None, 1, None, 1, 0], dtype="Int64"))
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"]))
    assert problem.startswith(
        "column 'n_perm_excl': 2 rows have missing (suppressed?) counts (NA; rows 2, 4 of 6)."
    )
    assert "pass allow_missing=True to validate_cells" in problem


def test_suppression_markers_reported_by_default():
    frame = cells().assign(n_pupils=["900", "80", "x", "700", "60", "0"])
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"]))
    assert problem.startswith(
        "column 'n_pupils': 1 row has missing (suppressed?) counts ('x'; row 3 of 6)."
    )


def test_negative_and_fractional_cell_counts():
    frame = cells().assign(n_pupils=[900, -80, 20, 700, 60, 0], n_susp=[40, 90, 12.5, 30, 5, 0])
    problems = problems_of(validate_cells, frame, by=["la", "sen"])
    assert len(problems) == 2
    assert problems[0].startswith("column 'n_pupils': 1 row has negative values -80 (row 2 of 6)")
    assert problems[1].startswith(
        "column 'n_susp': 1 row has values that are not whole numbers 12.5 (row 3 of 6)"
    )


def test_thousands_separators_converted_and_bad_ones_reported():
    frame = cells().assign(n_pupils=["900", "1,080", "20", "700", "60", "0"])
    out = validate_cells(frame, by=["la", "sen"])
    assert out["n_pupils"].tolist() == [900, 1080, 20, 700, 60, 0]  # "1,080" = 1 * 1000 + 80
    bad = cells().assign(n_pupils=["900", "1,08", "20", "7 00", "60", "0"])
    problem = only(problems_of(validate_cells, bad, by=["la", "sen"]))
    assert problem.startswith(
        "column 'n_pupils': 2 rows have values that are not numbers '1,08', '7 00' "
        "(rows 2, 4 of 6)."
    )
    assert "'1,234'" in problem


def test_binary_events_above_trials():
    frame = cells()
    frame.loc[1, "n_perm_excl"] = 81  # 81 permanent exclusions among 80 pupils
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"]))
    assert problem.startswith(
        "column 'n_perm_excl': 1 row has more events than trials in 'n_pupils' (row 2 of 6), "
        "e.g. n_perm_excl=81 with n_pupils=80."
    )
    # Declared a count, it may exceed the pupils.
    validate_cells(frame, by=["la", "sen"], binary=[])
    validate_cells(frame, by=["la", "sen"], binary=False)


def test_binary_true_checks_every_event_column():
    problem = only(problems_of(validate_cells, cells(), by=["la", "sen"], binary=True))
    assert problem.startswith("column 'n_susp': 1 row has more events than trials")
    with pytest.raises(SpecError, match="not event columns"):
        validate_cells(cells(), by=["la", "sen"], binary=["n_fixed"])


def test_events_without_trials():
    frame = cells()
    frame.loc[5, ["n_perm_excl", "n_susp"]] = [1, 2]  # the E2 EHCP cell has 0 pupils
    problems = problems_of(validate_cells, frame, by=["la", "sen"])
    assert problems == [
        "column 'n_perm_excl': 1 row has events but 'n_pupils' is 0 (row 6 of 6). Events "
        "need pupils: correct the counts of those rows, or drop them.",
        "column 'n_susp': 1 row has events but 'n_pupils' is 0 (row 6 of 6). Events "
        "need pupils: correct the counts of those rows, or drop them.",
    ]


def test_duplicated_cells():
    frame = pd.concat([cells(), cells().iloc[[1]]], ignore_index=True)
    problem = only(problems_of(validate_cells, frame, by=["la", "sen"]))
    assert problem.startswith(
        "columns 'la', 'sen': 2 rows repeat 1 combination (rows 2, 7 of 7), "
        "e.g. la='E1', sen='support'. Cells must be unique by by=['la', 'sen']"
    )


def test_repeated_cells_allowed_when_asked():
    frame = pd.concat([cells().assign(year="2015/16"), cells().assign(year="2016/17")])
    problems_of(validate_cells, frame, by=["la", "sen"], events=["n_perm_excl"])
    validate_cells(frame, by=["la", "sen"], events=["n_perm_excl"], unique=False)


def test_many_cell_problems_in_one_error():
    frame = cells()
    frame.loc[0, "la"] = None
    frame.loc[1, "n_pupils"] = -1
    frame.loc[2, "n_perm_excl"] = 21
    frame.loc[3, "sen"] = "support"
    with pytest.raises(ValidationError) as err:
        validate_cells(frame, by=["la", "sen"])
    problems = err.value.problems
    assert len(problems) == 4
    assert str(err.value).startswith("cells table (6 rows; rows numbered from 1 = first")
    assert problems[0].startswith("column 'la': 1 row has missing values (row 1 of 6)")
    assert problems[1].startswith("column 'n_pupils': 1 row has negative values -1 (row 2")
    assert problems[2].startswith("column 'n_perm_excl': 1 row has more events than trials")
    assert problems[3].startswith("columns 'la', 'sen': 2 rows repeat 1 combination (rows 4, 5")


def test_contradictory_cell_arguments():
    with pytest.raises(SpecError, match="both as trials and as an event column"):
        validate_cells(cells(), by=["la"], events=["n_pupils"])
    with pytest.raises(SpecError, match="both as grouping and as count columns"):
        validate_cells(cells(), by=["la", "n_susp"], events=["n_perm_excl", "n_susp"])


@st.composite
def valid_cells(draw):
    n_las = draw(st.integers(min_value=1, max_value=6))
    rows = []
    for la in range(n_las):
        for sen in SEN_LEVELS:
            n = draw(st.integers(0, 10_000))
            rows.append(
                {
                    "la": f"L{la}",
                    "sen": sen,
                    "n_pupils": n,
                    "n_perm_excl": draw(st.integers(0, n)),
                    "n_susp": draw(st.integers(0, 5 * n)),
                }
            )
    frame = pd.DataFrame(rows)
    as_float = draw(st.booleans())
    return frame.astype({"n_pupils": "float64"}) if as_float else frame


@settings(max_examples=50, deadline=None)
@given(frame=valid_cells())
def test_valid_random_cells_never_raise(frame):
    out = validate_cells(frame, by=["la", "sen"], levels={"sen": SEN_LEVELS})
    assert out["n_pupils"].dtype == "int64"
    assert out["n_pupils"].tolist() == [int(v) for v in frame["n_pupils"]]
    # Pupils and events are conserved by validation.
    for column in ("n_pupils", "n_perm_excl", "n_susp"):
        assert out[column].sum() == frame[column].sum()
