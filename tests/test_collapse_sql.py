"""Tests of disparity.collapse_sql and disparity.source_checks on DuckDB (Parquet, databases).

Oracles: the in-memory path (:func:`disparity.cells.collapse`, and the checks of
:mod:`disparity.validate` on the same file read into pandas), an independent implementation
that the engine path shares no code with; totals written out as plain sums of the frame;
hand-worked examples; and a count of the rows every query sends back to Python.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disparity.cells import collapse as collapse_in_memory
from disparity.collapse_sql import collapse, collapse_source
from disparity.errors import ReadError, SpecError, ValidationError

pytest.importorskip("duckdb")
pytest.importorskip("ibis")

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BY_CHOICES = ["ethnicity", "fsm", "school", "la", "year"]
ETHNICITIES = ["White British", "Indian", "Black Caribbean"]


@st.composite
def pupils_frames(draw, min_rows: int = 1, max_rows: int = 60) -> pd.DataFrame:
    """Valid random pupils: categorical, text and integer columns; two years; outcomes
    stored as int8, bool, int32 or whole floats."""
    n = draw(st.integers(min_rows, max_rows))
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
    school = np.asarray(ints(1, 5), dtype=np.int64)
    frame = pd.DataFrame({
        "pupil_id": np.arange(1, n + 1, dtype=np.int64),
        "year": np.where(np.asarray(ints(0, 1)) == 1, "2017/18", "2016/17"),
        "la": [f"E{s % 2}" for s in school],
        "school": school,
        "ethnicity": pd.Categorical(
            [ETHNICITIES[i] for i in ints(0, 2)], categories=[*ETHNICITIES, "Chinese"]),
        "fsm": pd.array([("no", "yes")[i] for i in ints(0, 1)], dtype="str"),
        "perm_excl": np.asarray(ints(0, 1), dtype=np.int8),
        "any_susp": np.asarray(ints(0, 1), dtype=bool),
        "n_susp": np.asarray(ints(0, 6), dtype=np.int32),
    })
    if draw(st.booleans()):
        frame["n_susp"] = frame["n_susp"].astype("float64")
    return frame


def _write(frame: pd.DataFrame, folder: str, name: str = "pupils.parquet") -> Path:
    path = Path(folder) / name
    frame.to_parquet(path, index=False)
    return path


def _normalised(cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Cells with text levels, in text order: equal cells whatever the levels' order."""
    out = cells.copy()
    for c in by:
        out[c] = out[c].astype(object).astype(str)
    return out.sort_values(by).reset_index(drop=True) if by else out


# --------------------------------------------------------------------------- equality
@SETTINGS
@given(frame=pupils_frames(), by=st.lists(st.sampled_from(BY_CHOICES), unique=True, max_size=3))
def test_duckdb_equals_pandas_on_random_pupils(frame, by):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(frame, folder)
        engine = collapse_source(path, by, engine="engine")
        in_pandas = collapse_source(path, by, engine="pandas")
    assert engine.engine == "duckdb" and in_pandas.engine == "pandas"
    expected = collapse_in_memory(frame, by)
    pd.testing.assert_frame_equal(_normalised(engine.cells, by), _normalised(expected, by))
    pd.testing.assert_frame_equal(_normalised(in_pandas.cells, by), _normalised(expected, by))
    totals = {"n_pupils": len(frame), "n_perm_excl": int(frame["perm_excl"].sum()),
              "n_any_susp": int(frame["any_susp"].sum()), "n_susp": int(frame["n_susp"].sum())}
    assert engine.totals == in_pandas.totals == totals
    assert engine.n_rows == len(frame)


@settings(SETTINGS, max_examples=8)
@given(frame=pupils_frames(min_rows=2), data=st.data())
def test_several_files_equal_their_concatenation(frame, data):
    cut = data.draw(st.integers(1, len(frame) - 1))
    by = ["year", "fsm"]
    with tempfile.TemporaryDirectory() as folder:
        _write(frame.iloc[:cut], folder, "a.parquet")
        _write(frame.iloc[cut:], folder, "b.parquet")
        from_glob = collapse_source(Path(folder) / "*.parquet", by)
        from_folder = collapse_source(folder, by)
    expected = collapse_in_memory(frame, by)
    pd.testing.assert_frame_equal(_normalised(from_glob.cells, by), _normalised(expected, by))
    pd.testing.assert_frame_equal(from_glob.cells, from_folder.cells)


# --------------------------------------------------------------------------- same problems
@st.composite
def defective_frames(draw) -> pd.DataFrame:
    """Random pupils with random defects of every kind the checks look for."""
    frame = draw(pupils_frames(min_rows=3, max_rows=40))
    n = len(frame)
    rows = lambda: draw(st.lists(st.integers(0, n - 1), max_size=4, unique=True))
    fsm = frame["fsm"].astype(object)
    for i in rows():
        fsm[i] = draw(st.sampled_from([None, "", "  ", "Yes", "maybe", "no "]))
    frame["fsm"] = pd.array(fsm, dtype="str")
    perm = frame["perm_excl"].astype("float64")
    for i in rows():
        perm[i] = draw(st.sampled_from([2.0, -1.0, np.nan, 0.5, 3.0]))
    frame["perm_excl"] = perm
    if draw(st.booleans()):  # a text count column, as a spreadsheet export gives
        text = frame["n_susp"].astype(int).astype(str).astype(object)
        for i in rows():
            text[i] = draw(st.sampled_from(["x", "1,234", "abc", "1.5", "", " 2 ", "-3", None]))
        frame["n_susp"] = pd.array(text, dtype="str")
    for i in rows():  # repeated pupil-years
        frame.loc[i, "pupil_id"] = frame.loc[(i + 1) % n, "pupil_id"]
        frame.loc[i, "year"] = frame.loc[(i + 1) % n, "year"]
    for i in rows():  # a school in two LAs
        frame.loc[i, "la"] = "E9"
    return frame


def _problems(path: Path, by: list[str], engine: str) -> list[str]:
    with pytest.raises(ValidationError) as err:
        collapse_source(path, by, engine=engine, key=("pupil_id", "year"))
    return err.value.problems


@settings(SETTINGS, max_examples=25)
@given(frame=defective_frames(), by=st.sampled_from([["fsm"], ["fsm", "school", "la"]]))
def test_engine_words_every_problem_as_pandas_does(frame, by):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(frame, folder)
        try:
            collapse_source(path, by, engine="pandas", key=("pupil_id", "year"))
        except ValidationError as err:
            expected = err.problems
        else:
            expected = None
        if expected is None:  # no defect drawn: both pass
            collapse_source(path, by, engine="engine", key=("pupil_id", "year"))
            return
        assert _problems(path, by, "engine") == expected


def test_problems_name_file_rows_and_fixes():
    frame = pd.DataFrame({
        "pupil_id": [1, 2, 3, 4, 5, 5], "year": ["2016/17"] * 6,
        "la": ["E1", "E1", "E2", "E2", "E1", "E1"], "school": ["A", "A", "B", "A", "C", "C"],
        "sen": ["none", "SEN support", None, "ehcp", "none", "none"],
        "perm_excl": [0, 1, 2, 0, 0, 0],
    })
    with tempfile.TemporaryDirectory() as folder:
        path = _write(frame, folder)
        with pytest.raises(ValidationError) as err:
            collapse_source(path, ["sen"], key=("pupil_id", "year"), engine="engine")
    text = str(err.value)
    assert "pupils table" in text and "(6 rows; rows numbered from 1 = first data row)" in text
    problems = err.value.problems
    assert problems[0] == (
        "column 'sen': 1 row has missing values (row 3 of 6). Every row needs one: fill them "
        "in, or drop those rows.")
    assert problems[1].startswith(
        "column 'sen': 1 row has unknown level 'SEN support' (row 2 of 6). Valid levels: "
        "'none', 'support', 'ehcp'. Did you mean 'support'?")
    assert problems[2].startswith(
        "column 'perm_excl': 1 row has values other than 0 and 1: 2 (row 3 of 6).")
    assert problems[3].startswith(
        "columns 'pupil_id', 'year': 2 rows repeat 1 pupil-year (rows 5, 6 of 6), e.g. "
        "pupil_id=5, year='2016/17'.")
    assert problems[4].startswith(
        "column 'la': 1 school value is in more than one la in the same year (rows 1, 2, 4 "
        "of 6): school 'A' in la 'E1', 'E2' in year '2016/17'.")
    assert len(problems) == 5


def test_rows_of_several_files_are_named_by_file_and_row():
    a = pd.DataFrame({"fsm": ["no", "yes"], "perm_excl": [0, 1]})
    b = pd.DataFrame({"fsm": ["no", None, "yes"], "perm_excl": [0, 0, 1]})
    with tempfile.TemporaryDirectory() as folder:
        _write(a, folder, "2016.parquet")
        _write(b, folder, "2017.parquet")
        with pytest.raises(ValidationError) as err:
            collapse_source(Path(folder) / "*.parquet", ["fsm"])
    assert "(2 files) (5 rows; rows named file:row" in str(err.value)
    assert err.value.problems[0].startswith(
        "column 'fsm': 1 row has missing values (row 2017.parquet:2 of 5).")


# --------------------------------------------------------------------------- databases
@pytest.fixture()
def database(tmp_path) -> tuple[str, pd.DataFrame]:
    import duckdb

    frame = pd.DataFrame({
        "pupil_id": [3, 1, 2, 4], "year": ["2016/17"] * 4, "sen": ["none", "ehcp", "none", "x"],
        "perm_excl": [0, 1, 1, 0],
    })
    path = tmp_path / "npd.duckdb"
    con = duckdb.connect(str(path))
    con.register("frame", frame)
    con.execute("CREATE TABLE pupils AS SELECT * FROM frame")
    con.execute("CREATE TABLE good AS SELECT * FROM frame WHERE sen <> 'x'")
    con.close()
    return f"duckdb://{path}", frame


def test_duckdb_table_source(database):
    url, _ = database
    result = collapse_source(url, ["sen"], table="good")
    assert result.engine == "duckdb"
    assert result.cells["sen"].astype(str).tolist() == ["ehcp", "none"]
    assert result.cells["n_pupils"].tolist() == [1, 2]
    assert result.cells["n_perm_excl"].tolist() == [1, 1]
    assert result.totals == {"n_pupils": 3, "n_perm_excl": 2}


def test_rows_of_a_database_table_are_named_by_key(database):
    url, _ = database
    with pytest.raises(ValidationError) as err:
        collapse_source(url, ["sen"], table="pupils")
    assert "no row order, so rows are named by their key (pupil_id, year)" in str(err.value)
    assert err.value.problems[0].startswith(
        "column 'sen': 1 row has unknown level 'x' (row pupil_id=4 year='2016/17' of 4).")


def test_database_needs_an_existing_table(database):
    url, _ = database
    with pytest.raises(SpecError, match="name the table.*'good', 'pupils'"):
        collapse_source(url, ["sen"])
    with pytest.raises(ReadError, match="no table 'nope'"):
        collapse_source(url, ["sen"], table="nope")
    with pytest.raises(ReadError, match="no DuckDB database"):
        collapse_source("duckdb:///no/such.duckdb", ["sen"], table="pupils")


def test_missing_files_and_empty_globs_are_read_errors(tmp_path):
    with pytest.raises(ReadError, match="file not found"):
        collapse_source(tmp_path / "none.parquet", ["sen"])
    with pytest.raises(ReadError, match="no file matches"):
        collapse_source(tmp_path / "*.parquet", ["sen"])


# --------------------------------------------------------------------------- options
def test_keep_filters_in_the_engine_and_counts_rows_read(tmp_path):
    frame = pd.DataFrame({"year": ["2016/17", "2017/18", "2017/18"], "sen": ["none"] * 3,
                          "perm_excl": [1, 0, 1]})
    path = _write(frame, tmp_path)
    for engine in ("engine", "pandas"):
        result = collapse_source(path, ["sen"], keep={"year": ["2017/18"]}, engine=engine)
        assert (result.n_rows, result.n_rows_read) == (2, 3)
        assert result.cells["n_perm_excl"].tolist() == [1]
        with pytest.raises(SpecError, match=r"'2018/19' is not in the data's 'year' column"):
            collapse_source(path, ["sen"], keep={"year": ["2018/19"]}, engine=engine)


def test_unobserved_combinations_and_no_grouping(tmp_path):
    frame = pd.DataFrame({"sen": ["none", "ehcp"], "fsm": ["no", "yes"], "perm_excl": [0, 1]})
    path = _write(frame, tmp_path)
    full = collapse_source(path, ["sen", "fsm"], observed=False, engine="engine").cells
    assert len(full) == 4 and full["n_pupils"].tolist() == [0, 1, 1, 0]
    national = collapse_source(path, [], engine="engine").cells
    assert national["n_pupils"].tolist() == [2] and national["n_perm_excl"].tolist() == [1]


def test_a_cells_table_is_refused(tmp_path):
    path = _write(pd.DataFrame({"sen": ["none"], "n_pupils": [3], "n_perm_excl": [1]}),
                  tmp_path)
    with pytest.raises(SpecError, match="cells table"):
        collapse_source(path, ["sen"], engine="engine")


def test_collapse_dispatches_frames_to_pandas_and_files_to_the_engine(tmp_path):
    frame = pd.DataFrame({"sex": ["male", "female", "male"], "perm_excl": [1, 0, 0]})
    pd.testing.assert_frame_equal(collapse(frame, ["sex"]), collapse_in_memory(frame, ["sex"]))
    path = _write(frame, tmp_path)
    pd.testing.assert_frame_equal(collapse(path, ["sex"], engine="engine"),
                                  collapse_in_memory(frame, ["sex"]))
    with pytest.raises(SpecError, match="apply to files and databases"):
        collapse(frame, ["sex"], keep={"sex": ["male"]})


def test_no_query_returns_more_rows_than_the_cells(tmp_path, monkeypatch):
    """Pupil rows never come back: every result is the cells or a handful of rows."""
    from ibis.backends.duckdb import Backend

    rng = np.random.default_rng(1)
    n = 5_000
    frame = pd.DataFrame({
        "pupil_id": np.arange(n), "year": "2016/17", "la": "E1", "school": "A",
        "sen": rng.choice(["none", "support", "ehcp", "bad"], n),  # a defect on ~1,250 rows
        "perm_excl": rng.integers(0, 2, n),
    })
    path = _write(frame, tmp_path)
    sizes = []
    for method in ("to_pyarrow", "execute"):
        original = getattr(Backend, method)

        def counted(self, *args, _original=original, **kwargs):
            result = _original(self, *args, **kwargs)
            sizes.append(len(result) if hasattr(result, "__len__") else 1)
            return result

        monkeypatch.setattr(Backend, method, counted)
    with pytest.raises(ValidationError, match="unknown level 'bad'"):
        collapse_source(path, ["sen"], engine="engine")
    collapse_source(path, ["sen"], engine="engine", levels=None)
    assert sizes and max(sizes) <= 5  # four cells; five offending rows at most


def test_an_ibis_table_is_collapsed_in_its_backend(database):
    import ibis

    url, frame = database
    con = ibis.duckdb.connect(url.removeprefix("duckdb://"), read_only=True)
    try:
        result = collapse_source(con.table("good"), ["sen"])
    finally:
        con.disconnect()
    assert result.engine == "duckdb" and result.cells["n_pupils"].tolist() == [1, 2]


# --------------------------------------------------------------------------- command line
def test_cli_collapses_a_glob_and_a_database_table(tmp_path, database, capsys):
    from disparity.cli import main

    frame = pd.DataFrame({"pupil_id": [1, 2, 3], "year": ["2016/17", "2017/18", "2017/18"],
                          "sen": ["none", "ehcp", "none"], "perm_excl": [0, 1, 1]})
    _write(frame.iloc[:1], tmp_path, "2016.parquet")
    _write(frame.iloc[1:], tmp_path, "2017.parquet")
    out = tmp_path / "cells.csv"
    assert main(["collapse", str(tmp_path / "*.parquet"), "--by", "year,sen", "-o", str(out)]) == 0
    cells = pd.read_csv(out)
    assert cells["n_pupils"].tolist() == [1, 1, 1] and cells["n_perm_excl"].sum() == 2
    assert "collapsed 3 pupil-years into 3 cells (duckdb)" in capsys.readouterr().err
    url, _ = database
    assert main(["collapse", url, "--table", "good", "--by", "sen", "-o", str(out)]) == 0
    assert pd.read_csv(out)["n_pupils"].tolist() == [1, 2]
    assert main(["collapse", url, "--table", "pupils", "--by", "sen", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown level 'x' (row pupil_id=4 year='2016/17' of 4)" in err
    assert "Traceback" not in err
