"""Collapse pupils to cells where the pupil rows live: DuckDB by default, any Ibis backend.

:func:`collapse_source` runs the checks of :func:`disparity.validate.validate_pupils`, the
GROUP BY, the event sums and the conservation totals in the engine that holds the rows
(:mod:`disparity.sources`): only the cells, the totals and, for a check that fails, the
first few offending rows come back to Python. Peak memory is then set by the number of
cells and DuckDB's ``memory_limit``, not by the number of pupil rows.

:func:`collapse` is the entry point for any input: a pandas DataFrame is collapsed in
memory by :func:`disparity.cells.collapse` (as before); a file, folder, glob, database or
table object goes to :func:`collapse_source`.

Which path runs (``engine="auto"``):

* a pandas DataFrame, and a CSV file: pandas (:func:`disparity.read.read_frame`, then the
  checks and :func:`disparity.cells.collapse` in memory);
* Parquet (one file, a folder or a glob): DuckDB, except a single file of fewer than
  :data:`PANDAS_MAX_ROWS` rows, which pandas collapses sooner (``benchmarks/
  bench_collapse_sources.py`` measures the crossover);
* ``duckdb://PATH``, other Ibis URLs, Ibis tables and PySpark DataFrames: their engine.

Both paths give the same cells (tested on random inputs) and word every problem alike.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from disparity import cells as in_memory
from disparity.errors import SpecError, ValidationError
from disparity.validate import _plural, pupils_problems
from disparity.vocabulary import LA, LEVELS, N_PUPILS, PUPIL_KEY, SCHOOL, YEAR, events_column

__all__ = ["SourceCells", "collapse", "collapse_source", "where_expression", "PANDAS_MAX_ROWS",
           "ENGINES"]

#: Single Parquet files with fewer rows than this are collapsed in pandas by default: below
#: it, importing and starting the engine costs more than it saves (see the benchmark).
PANDAS_MAX_ROWS: int = 200_000

#: Choices of ``engine``: "auto", in memory ("pandas"), or in the source's own engine.
ENGINES: tuple[str, ...] = ("auto", "pandas", "engine")


@dataclass(frozen=True)
class SourceCells:
    """Cells collapsed from a source, and what was counted on the way.

    Attributes
    ----------
    cells : pandas.DataFrame
        As :func:`disparity.cells.collapse` returns them: ``by`` columns (categorical,
        sorted levels), the trials column and one ``n_<outcome>`` per outcome (int64).
    totals : dict
        Pupils and events counted over the pupil rows by the engine (equal to the cells'
        sums: checked).
    n_rows : int
        Pupil rows collapsed (after ``keep``).
    n_rows_read : int
        Pupil rows in the source (before ``keep``).
    engine : str
        Where the work was done: ``"pandas"``, ``"duckdb"``, ``"pyspark"``, ...
    source : str
        How messages name the source.
    """

    cells: pd.DataFrame
    totals: dict[str, int]
    n_rows: int
    n_rows_read: int
    engine: str
    source: str


# --------------------------------------------------------------------------- arguments
def _arguments(
    columns: Sequence[str],
    by: Sequence[str] | str,
    outcomes: Mapping[str, str] | Sequence[str] | str | None,
    trials: str,
    label: str,
) -> tuple[list[str], dict[str, str]]:
    by = [by] if isinstance(by, str) else list(by)
    if trials in columns:
        raise SpecError(
            f"{label} has a {trials!r} column, so it is a cells table, not pupil rows. Read "
            "it with disparity.read.read_data and collapse it further with "
            "disparity.cells.recollapse, or name the pupils table."
        )
    kinds = in_memory._resolve_outcomes(columns, outcomes, trials=trials, is_cells=False)
    problems = []
    if len(set(by)) != len(by):
        problems.append(f"grouping columns repeat: {by}")
    clash = [c for c in by if c == trials or c in kinds or c in map(events_column, kinds)]
    if clash:
        problems.append(f"grouping column(s) {clash} are also outcome or count columns")
    if problems:
        raise ValidationError(problems, what="collapse arguments")
    return by, kinds


def _key(key: Sequence[str] | None, columns: Sequence[str]) -> list[str]:
    """``None``: the pupil-year key where the table has all its columns, else none."""
    if key is None:
        return list(PUPIL_KEY) if all(c in columns for c in PUPIL_KEY) else []
    return [key] if isinstance(key, str) else list(key)


def _levels_of(by: Sequence[str], levels: Mapping[str, Sequence[Any]] | None) -> dict:
    """The levels to check: those of the grouping columns (only they reach the cells)."""
    return {c: list(v) for c, v in (levels or {}).items() if c in by}


def _keep_problem(col: str, absent: list, present: list) -> str:
    shown = ", ".join(map(repr, present[:20])) + (", ..." if len(present) > 20 else "")
    what = ", ".join(map(repr, absent))
    return (f"{what} {'is' if len(absent) == 1 else 'are'} not in the data's {col!r} column; "
            f"its values are {shown}: correct the year or the levels to keep")


# --------------------------------------------------------------------------- pandas path
def _collapse_frame(
    frame: pd.DataFrame, label: str, by, kinds, *, trials, observed, keep, key, levels,
    unit_nesting, period, where=None,
) -> SourceCells:
    n_read = len(frame)
    if where is not None:  # a parsed filter: evaluated by the formula interpreter
        frame = frame.loc[where.mask(frame)].reset_index(drop=True)
    if keep:
        mask = pd.Series(True, index=frame.index)
        problems = []
        for col, wanted in keep.items():
            if col not in frame.columns:
                problems.append(f"column {col!r} is not in the data")
                continue
            text = frame[col].astype(str)
            present = sorted(pd.unique(text))
            absent = [v for v in map(str, wanted) if v not in set(present)]
            if absent:
                problems.append(_keep_problem(col, absent, present))
            mask &= text.isin([str(v) for v in wanted])
        if problems:
            raise SpecError("no rows to model: " + "; ".join(problems))
        frame = frame.loc[mask.to_numpy()].reset_index(drop=True)
    out, problems = pupils_problems(
        frame, kinds, key=key, required=by, levels=levels, unit_nesting=unit_nesting,
        period=period, caller="collapse", required_arg="by",
    )
    if problems:
        kept = " kept" if keep else ""
        raise ValidationError(problems, what=f"pupils table {label} ({_plural(len(frame), 'row')}"
                              f"{kept}; rows numbered from 1 = first data row)")
    cells = in_memory.collapse(out, by, kinds, trials=trials, observed=observed)
    totals = {trials: len(out), **{events_column(o): int(out[o].sum()) for o in kinds}}
    return SourceCells(cells=cells, totals=totals, n_rows=len(out), n_rows_read=n_read,
                       engine="pandas", source=label)


def _parquet_rows(files: Sequence[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


# --------------------------------------------------------------------------- engine path
def _kept(keep: Mapping[str, Sequence[str]]):
    """Predicate of the rows at the ``keep`` levels (each column read as text)."""

    def pred(t):
        out = None
        for col, wanted in keep.items():
            this = t[col].cast("string").isin(list(wanted))
            out = this if out is None else out & this
        return out

    return pred


def _keep_in_engine(source, keep: Mapping[str, Sequence[Any]]):
    """The source with only the rows at the ``keep`` levels; raise if a level is absent."""
    t = source.table
    keep = {col: [str(v) for v in wanted] for col, wanted in keep.items()}
    problems = []
    for col, wanted in keep.items():
        if col not in t.columns:
            problems.append(f"column {col!r} is not in the data")
            continue
        text = t.select(v=t[col].cast("string"))
        found = set(text.filter(text.v.isin(wanted)).distinct().to_pyarrow().column("v")
                    .to_pylist())
        absent = [v for v in wanted if v not in found]
        if absent:
            present = text.distinct().order_by("v").limit(21).to_pyarrow().column("v")
            problems.append(_keep_problem(col, absent, [str(v) for v in present.to_pylist()]))
    if problems:
        raise SpecError("no rows to model: " + "; ".join(problems))
    pred, numbered = _kept(keep), source.numbered

    def kept_numbered():
        nt = numbered()
        return nt.filter(pred(nt))

    kept = "; ".join(f"{c} in {v!r}" for c, v in keep.items())
    return dataclasses.replace(
        source,
        table=t.filter(pred(t)),
        numbered=None if numbered is None else kept_numbered,
        label=f"{source.label} (kept: {kept})",
    )


def _frame_of(arrow, by: Sequence[str]) -> pd.DataFrame:
    """Fetched cells as a frame whose text ``by`` columns are categoricals with sorted levels.

    Dictionary-encoding in Arrow and sorting only the levels is much quicker than sorting
    every value, and gives :func:`disparity.cells.collapse` the same levels it would find.
    """
    import numpy as np
    import pyarrow as pa

    frame = arrow.to_pandas()
    for c in by:
        column = arrow.column(c)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        encoded = column.combine_chunks().dictionary_encode()
        levels = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
        order = np.argsort(levels, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
        frame[c] = pd.Categorical.from_codes(codes, categories=pd.Index(levels[order]))
    return frame


def _as_count(t, outcome: str):
    """Sum of an outcome over a group, as int64 (text counts parsed as the checks parse them)."""
    from disparity.source_checks import count_value

    return count_value(t, outcome).sum().cast("int64")


def _collapse_engine(
    source, by, kinds, *, trials, observed, keep, key, levels, unit_nesting, period,
    where=None,
) -> SourceCells:
    from dataclasses import replace as _replace

    from disparity.source_checks import check_pupils

    n_read = (int(source.table.count().to_pyarrow().as_py())
              if keep or where is not None else None)
    if where is not None:  # the same filter, as an expression the engine evaluates
        source = _replace(source, table=source.table.filter(where_expression(where,
                                                                             source.table)))
    if keep:
        source = _keep_in_engine(source, keep)
    t = source.table
    columns = set(t.columns)
    grouped = None
    if all(c in columns for c in [*by, *kinds]):
        sums = {trials: t.count()}
        for o in kinds:  # summed as stored; text or float outcomes are parsed below
            sums[events_column(o)] = _as_count(t, o)
        grouped = (t.group_by(by).aggregate(**sums) if by else t.aggregate(**sums)).cache()
    try:
        checked = check_pupils(source, by=by, kinds=kinds, key=key, levels=levels,
                               unit_nesting=unit_nesting, period=period, cells=grouped,
                               trials=trials)
        fetched = _frame_of(grouped.to_pyarrow(), by)
    finally:
        if grouped is not None:
            grouped.release()
    if not by and checked.n_rows == 0:
        fetched = fetched.iloc[:0]
    # Sort, encode and complete the cells exactly as the in-memory path does.
    counts = {events_column(o): "count" for o in kinds}
    cells = in_memory.collapse(fetched, by, counts, trials=trials, observed=observed)
    totals = {trials: checked.n_rows, **{events_column(o): checked.events[o] for o in kinds}}
    in_memory.check_conservation(totals, cells, list(kinds), trials=trials,
                                 step=f"collapse in {source.engine}")
    return SourceCells(cells=cells, totals=totals, n_rows=checked.n_rows,
                       n_rows_read=checked.n_rows if n_read is None else n_read,
                       engine=source.engine, source=source.label)


# --------------------------------------------------------------------------- public
def collapse_source(
    source: Any,
    by: Sequence[str] | str,
    outcomes: Mapping[str, str] | Sequence[str] | str | None = None,
    *,
    table: str | None = None,
    trials: str = N_PUPILS,
    observed: bool = True,
    keep: Mapping[str, Sequence[Any]] | None = None,
    key: Sequence[str] | None = None,
    levels: Mapping[str, Sequence[Any]] | None = LEVELS,
    unit_nesting: Sequence[tuple[str, str]] = ((SCHOOL, LA),),
    period: str | None = YEAR,
    engine: str = "auto",
    where: Any = None,
) -> SourceCells:
    """Check pupil rows and collapse them to cells in the engine where they are.

    Parameters
    ----------
    source : str, path, pandas.DataFrame, ibis.Table or pyspark.sql.DataFrame
        Pupil rows: a Parquet file, a folder of Parquet files or a glob
        (``"years/*.parquet"``); a CSV file; ``"duckdb://PATH"`` or any Ibis backend URL
        (with ``table``); an Ibis table; a PySpark DataFrame; or a pandas DataFrame.
    by : sequence of str
        Grouping columns of the cells. Each must be present and complete.
    outcomes : mapping of outcome to kind, sequence of outcomes, or None
        As in :func:`disparity.cells.collapse`. ``None``: the outcomes of
        :data:`~disparity.vocabulary.PUPIL_OUTCOMES` that the source has.
    table : str, optional
        The table of pupil rows, for a database URL.
    trials : str
        Name of the trials column of the cells.
    observed : bool
        As in :func:`disparity.cells.collapse`.
    keep : mapping of column to levels, optional
        Collapse only rows whose column (read as text) is one of the levels, e.g.
        ``{"year": ["2016/17"]}``; the filter runs in the engine, before the checks. A level
        not in the data is an error.
    key : sequence of str, optional
        Columns that identify a pupil row: required, and no two rows may share them.
        Default ``None``: ``pupil_id`` and ``year`` where the source has both, else none.
        ``()`` checks none.
    levels : mapping of column to levels, optional
        Valid levels, checked for the grouping columns (default
        :data:`~disparity.vocabulary.LEVELS`). ``None`` checks none.
    unit_nesting : sequence of (inner, outer)
        Each inner unit is in one outer unit per ``period``, where both columns are present
        (default: a school is in one LA each year). ``()`` checks none.
    period : str, optional
        Column within each value of which nesting is checked.
    engine : {"auto", "pandas", "engine"}
        Where to work: ``"auto"`` chooses as the module docstring says; ``"pandas"`` reads
        the rows into memory (single files and DataFrames only); ``"engine"`` uses the
        source's engine (DuckDB for files and DataFrames).
    where : str or Filter, optional
        Collapse only the rows a filter keeps (``"n_susp >= 1"``: the pupils of an earlier
        stage), parsed by :func:`disparity.formula.parse_filter` (never executed as Python)
        and evaluated in the engine as an expression of its own.

    Returns
    -------
    SourceCells
        The cells, with the totals the engine counted and where the work was done.

    Raises
    ------
    ValidationError
        Every problem the checks found, each naming the column, how many rows, the first
        offending rows and the fix. Rows of files are numbered from 1 (``file:row`` when
        several files are read); rows of a database table are named by their key.
    ReadError
        A source that cannot be opened.
    SpecError
        Arguments that do not fit the source (no ``table`` for a database URL, a cells
        table, a ``keep`` level not in the data).
    DisparityError
        Pupils or events not conserved (checked on every call; a bug if raised).

    Notes
    -----
    In the engine each check is one aggregate over the rows (all of them in a single
    scan), the key check a GROUP BY on the key, and the cells one GROUP BY on ``by``, so
    the pupil rows never leave it. The cells are then sorted and encoded in pandas, as
    :func:`disparity.cells.collapse` does, so both paths return equal frames.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for year, excluded in (("2016/17", [0, 1, 0]), ("2017/18", [1, 0, 0])):
    ...     pd.DataFrame({"pupil_id": [1, 2, 3], "year": year, "sen": ["none", "ehcp", "none"],
    ...                   "perm_excl": excluded}).to_parquet(folder / f"{year[:4]}.parquet")
    >>> result = collapse_source(folder / "*.parquet", by=["sen"])
    >>> result.engine, result.n_rows
    ('duckdb', 6)
    >>> result.cells
        sen  n_pupils  n_perm_excl
    0  ehcp         2            1
    1  none         4            1
    """
    if engine not in ENGINES:
        raise SpecError(f"engine={engine!r}; valid choices: {', '.join(map(repr, ENGINES))}")
    if isinstance(where, str):
        from disparity.formula import parse_filter

        where = parse_filter(where)
    options = {"trials": trials, "observed": observed, "keep": dict(keep or {}),
               "unit_nesting": list(unit_nesting), "period": period, "where": where}
    if isinstance(source, pd.DataFrame):
        if engine == "engine":
            raise SpecError("engine='engine' needs a file or database; a DataFrame is "
                            "collapsed in pandas")
        columns = [str(c) for c in source.columns]
        by, kinds = _arguments(columns, by, outcomes, trials, "the DataFrame")
        return _collapse_frame(source, "(DataFrame)", by, kinds, key=_key(key, columns),
                               levels=_levels_of(by, levels), **options)

    from disparity.read import read_frame
    from disparity.sources import is_parquet_path, open_source, parquet_files

    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    in_pandas = None
    if text is not None and "://" not in text:
        if not is_parquet_path(text):  # CSV and the other files pandas reads
            in_pandas = text
        else:
            files = parquet_files(text)
            small = len(files) == 1 and _parquet_rows(files) < PANDAS_MAX_ROWS
            if engine == "pandas" or (engine == "auto" and small):
                if len(files) != 1:
                    raise SpecError(
                        f"engine='pandas' reads one Parquet file; {text!r} is {len(files)} "
                        "files. Use engine='engine' (or 'auto')."
                    )
                in_pandas = files[0]
    if in_pandas is not None:
        if engine == "engine":
            raise SpecError(f"engine='engine' reads Parquet files or databases, not {text!r}")
        frame = read_frame(in_pandas)
        columns = [str(c) for c in frame.columns]
        by, kinds = _arguments(columns, by, outcomes, trials, repr(text))
        return _collapse_frame(frame, repr(text), by, kinds, key=_key(key, columns),
                               levels=_levels_of(by, levels), **options)
    if engine == "pandas":
        raise SpecError("engine='pandas' reads a file or a DataFrame; a database table is "
                        "collapsed in its engine. Use engine='auto'.")

    src = open_source(source, table=table)
    try:
        columns = [str(c) for c in src.table.columns]
        by, kinds = _arguments(columns, by, outcomes, trials, src.label)
        return _collapse_engine(src, by, kinds, key=_key(key, columns),
                                levels=_levels_of(by, levels), **options)
    finally:
        src.close()


def collapse(
    source: Any,
    by: Sequence[str] | str,
    outcomes: Mapping[str, str] | Sequence[str] | str | None = None,
    *,
    trials: str = N_PUPILS,
    observed: bool = True,
    table: str | None = None,
    **checks: Any,
) -> pd.DataFrame:
    """Collapse pupils to cells: in memory for a DataFrame, in the engine for anything else.

    A pandas DataFrame is collapsed by :func:`disparity.cells.collapse` (pupils or finer
    cells; the same arguments, checks and result as before). Any other source — Parquet
    files, a folder or glob of them, ``"duckdb://PATH"`` or another Ibis URL with
    ``table``, an Ibis table or a PySpark DataFrame — is checked and collapsed where it is
    by :func:`collapse_source`, to which ``checks`` (``keep``, ``key``, ``levels``,
    ``unit_nesting``, ``period``, ``engine``) are passed.

    Returns
    -------
    pandas.DataFrame
        Cells: ``by`` columns (categorical), ``trials`` and ``n_<outcome>`` (int64), rows
        sorted by ``by``.

    Examples
    --------
    >>> pupils = pd.DataFrame({"sex": ["male", "female", "male"], "perm_excl": [1, 0, 0]})
    >>> collapse(pupils, ["sex"])
          sex  n_pupils  n_perm_excl
    0  female         1            0
    1    male         2            1
    """
    if isinstance(source, pd.DataFrame):
        if checks or table is not None:
            extra = sorted(checks) + (["table"] if table is not None else [])
            raise SpecError(
                f"{', '.join(extra)} apply to files and databases; a DataFrame is collapsed "
                "by disparity.cells.collapse. Use collapse_source for the pupils checks on "
                "a DataFrame."
            )
        return in_memory.collapse(source, by, outcomes, trials=trials, observed=observed)
    return collapse_source(source, by, outcomes, trials=trials, observed=observed,
                           table=table, **checks).cells


def where_expression(where: Any, table: Any) -> Any:
    """A parsed filter (:class:`disparity.formula.Filter`) as an Ibis boolean expression on
    ``table``, so the engine applies it where the rows are.

    Levels compare as text, numbers as numbers, exactly as
    :meth:`disparity.formula.Filter.mask` does on a DataFrame; a missing value passes no
    comparison.
    """
    import ibis

    from disparity.errors import SpecError

    missing = [c for c in where.columns if c not in table.columns]
    if missing:
        raise SpecError(f"filter \"{where.text}\" names column(s) {missing!r} that the source "
                        f"does not have; columns are {list(table.columns)!r}")

    def text(x: Any) -> Any:
        return x.cast("string") if hasattr(x, "cast") else ibis.literal(str(x))

    def value(tree: tuple) -> Any:
        kind = tree[0]
        if kind == "num":
            return ibis.literal(tree[1])
        if kind == "str":
            return tree[1]
        if kind == "col":
            return table[tree[1]]
        if kind == "neg":
            return -value(tree[1])
        if kind == "bin":
            a, b = value(tree[2]), value(tree[3])
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                    "/": lambda: a / b, "**": lambda: a ** b}[tree[1]]()
        if kind == "call":
            arg = value(tree[2])
            return {"log": arg.ln, "log1p": lambda: (arg + 1).ln(), "exp": arg.exp,
                    "sqrt": arg.sqrt}[tree[1]]()
        raise AssertionError(kind)

    def is_text(x: Any, tree: tuple) -> bool:
        if tree[0] == "str":
            return True
        return tree[0] == "col" and not table[tree[1]].type().is_numeric()

    def compare(op: str, ta: tuple, tb: tuple) -> Any:
        a, b = value(ta), value(tb)
        if is_text(a, ta) or is_text(b, tb):
            if op not in ("==", "!="):
                raise SpecError(f"the comparison {op!r} needs numbers on both sides; levels "
                                "are compared with ==, != or `in [...]`")
            a, b = text(a), text(b)
        out = {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b,
               "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
        return out.fill_null(False)

    def walk(tree: tuple) -> Any:
        kind = tree[0]
        if kind == "or":
            return walk(tree[1]) | walk(tree[2])
        if kind == "and":
            return walk(tree[1]) & walk(tree[2])
        if kind == "not":
            return ~walk(tree[1])
        if kind == "cmp":
            return compare(tree[1], tree[2], tree[3])
        if kind == "in":
            hits = [compare("==", tree[1], v) for v in tree[2]]
            out = hits[0]
            for h in hits[1:]:
                out = out | h
            return ~out if tree[3] else out
        raise AssertionError(kind)

    return walk(where.tree)
