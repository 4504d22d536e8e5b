"""Validate a pupils table inside the engine that holds it, before it is collapsed.

The checks are those of :func:`disparity.validate.validate_pupils`, each run in the engine
as a count of offending rows; only where a count is not zero do the first few offending
rows and values come back (at most five of each), to name them in the message. The
wording of every problem is :mod:`disparity.validate`'s, so a check says the same thing
of a Parquet file read here and of the same file read into pandas.

What "row" means depends on the source (:attr:`disparity.sources.Source.row_order`):
the row of the file counted from 1 after the header, as a spreadsheet shows it (with the
file's name when several files are read together); or, for a database table, whose rows
have no order, the row's key (``pupil_id=17 year='2016/17'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from disparity.errors import ValidationError
from disparity.sources import ROW, Source
from disparity.validate import (
    _THOUSANDS,
    LEVEL_MISSING_FIX,
    PUPIL_KEY_FIX,
    REQUIRED_MISSING_FIX,
    SUPPRESSION_MARKERS,
    _check_columns,
    _plural,
    _value,
    count_missing_problem,
    empty_problem,
    levels_problem,
    missing_problem,
    needed_columns,
    negative_problem,
    nesting_problem,
    not_binary_problem,
    not_number_problem,
    not_whole_problem,
    outcome_fixes,
    rows_text,
    unique_problem,
    values_text,
)
from disparity.vocabulary import PUPIL_KEY

__all__ = ["Checked", "check_pupils", "count_value"]

_SHOW = 5  # offending rows and values named per problem
Predicate = Callable[[Any], Any]  # ibis.Table -> boolean column of offending rows


@dataclass(frozen=True)
class Checked:
    """A pupils table that passed the checks, with its totals counted in the engine.

    Attributes
    ----------
    n_rows : int
        Pupil rows.
    events : dict
        Outcome name -> its total over all rows (each read by :func:`count_value`).
    """

    n_rows: int
    events: dict[str, int]


# --------------------------------------------------------------------------- predicates
def _is_text(dtype: Any) -> bool:
    return dtype.is_string()


def _blank(column: str, dtype: Any) -> Predicate:
    """Missing, as :func:`disparity.validate._blank`: null, NaN, or empty text."""

    def pred(t: Any) -> Any:
        c = t[column]
        out = c.isnull()
        if dtype.is_floating():
            out = out | c.isnan()
        elif not (dtype.is_numeric() or dtype.is_boolean()):
            out = out | (c.cast("string").strip() == "")
        return out.fill_null(False)

    return pred


def _unknown_level(column: str, dtype: Any, valid: Sequence[Any]) -> Predicate:
    import ibis

    blank = _blank(column, dtype)
    # Text never equals a number (as in pandas' isin): only levels of the column's kind match.
    same_kind = [v for v in valid if isinstance(v, str) == _is_text(dtype)]

    def pred(t: Any) -> Any:
        known = t[column].isin(same_kind) if same_kind else ibis.literal(False)
        return (~blank(t) & ~known.fill_null(False)).fill_null(False)

    return pred


class _Counts:
    """The predicates of a count column, as :func:`disparity.validate._as_counts` defines them."""

    def __init__(self, column: str, dtype: Any) -> None:
        self.column, self.dtype = column, dtype

    def text(self, t: Any) -> Any:
        return t[self.column].cast("string").strip()

    def shown(self, t: Any) -> Any:
        """The value a message shows: the text, stripped, or the number as stored."""
        return self.text(t) if _is_text(self.dtype) else t[self.column]

    def missing(self, t: Any) -> Any:
        c = t[self.column]
        if _is_text(self.dtype):
            text = self.text(t)
            marker = text.lower().isin(sorted(SUPPRESSION_MARKERS))
            return (text.isnull() | (text == "") | marker).fill_null(True)
        if self.dtype.is_floating():
            return (c.isnull() | c.isnan()).fill_null(True)
        return c.isnull()

    def number(self, t: Any) -> Any:
        """The value as a float: text parsed (thousands separators allowed), else cast."""
        c = t[self.column]
        if not _is_text(self.dtype):
            return c.cast("float64")
        text = self.text(t)
        grouped = text.re_search(f"^(?:{_THOUSANDS})$").fill_null(False)
        return grouped.ifelse(text.replace(",", ""), text).try_cast("float64")

    def not_number(self, t: Any) -> Any:
        if not _is_text(self.dtype):
            return t[self.column].isnull() & False  # stored as numbers: never
        value = self.number(t)
        return (~self.missing(t) & (value.isnull() | value.isnan())).fill_null(False)

    def whole(self, t: Any) -> Any:
        value = self.number(t)
        ok = ~self.missing(t) & ~self.not_number(t)
        return (ok & ~value.isinf() & ((value % 1) == 0)).fill_null(False)

    def non_whole(self, t: Any) -> Any:
        return (~self.missing(t) & ~self.not_number(t) & ~self.whole(t)).fill_null(False)

    def negative(self, t: Any) -> Any:
        return (self.whole(t) & (self.number(t) < 0)).fill_null(False)

    def above_one(self, t: Any) -> Any:
        return (self.whole(t) & (self.number(t) > 1)).fill_null(False)

    def value(self, t: Any) -> Any:
        """The count as an int64; null where it is not a count (the checks report those)."""
        c = t[self.column]
        if self.dtype.is_integer() or self.dtype.is_boolean():
            return c.cast("int64")
        return self.number(t).try_cast("int64")


def count_value(t: Any, column: str) -> Any:
    """Column ``column`` of ``t`` as an int64 count, read as the checks read it."""
    return _Counts(column, t.schema()[column]).value(t)


# --------------------------------------------------------------------------- offending rows
class _Finder:
    """Counts and names offending rows in the engine."""

    def __init__(self, source: Source, key: Sequence[str], n_rows: int) -> None:
        self.source, self.n_rows = source, n_rows
        self.key = [c for c in key if c in source.table.columns]
        self._numbered: Any = None

    @property
    def table(self) -> Any:
        """The table to name rows from: with the row-order column where rows have an order."""
        if self.source.numbered is None:
            return self.source.table
        if self._numbered is None:
            self._numbered = self.source.numbered()
        return self._numbered

    @property
    def ordered(self) -> bool:
        return self.source.numbered is not None

    def order(self, t: Any) -> list[Any]:
        return [t[ROW]] if self.ordered else [t[c] for c in self.key]

    def labels(self, rows: pd.DataFrame) -> list[str]:
        if self.ordered:
            return [self.source.row_label(int(r)) for r in rows[ROW]]
        return [" ".join(f"{c}={_value(v)}" for c, v in zip(self.key, r)) for r in
                rows[self.key].itertuples(index=False)]

    def first_rows(self, bad: Any, k: int) -> str:
        """``rows 2, 9, ... of N``: the first of the ``k`` rows of ``bad``, a filter of
        :attr:`table`."""
        if not self.ordered and not self.key:
            return (f"{_plural(k, 'row')} of {self.n_rows:,}, not named: the table has no "
                    "order and no key")
        cols = [ROW] if self.ordered else self.key
        first = bad.order_by(self.order(bad)).select(cols).limit(_SHOW).to_pandas()
        return rows_text(self.labels(first), k, self.n_rows)

    def rows(self, pred: Predicate, k: int) -> str:
        """``rows 2, 9, ... of N`` for the ``k`` rows where ``pred`` holds."""
        t = self.table
        return self.first_rows(t.filter(pred(t)), k)

    def values(self, pred: Predicate, shown: Callable[[Any], Any]) -> tuple[list[Any], int]:
        """The first distinct values of ``shown`` where ``pred`` holds, and how many."""
        t = self.table
        bad = t.filter(pred(t)).mutate(__shown=shown(t))
        if self.ordered:
            groups = bad.group_by("__shown").aggregate(__first=bad[ROW].min())
            first = groups.order_by("__first").limit(_SHOW)
        else:
            groups = bad.group_by("__shown").aggregate()
            first = groups.order_by(groups["__shown"]).limit(_SHOW)
        values = first.to_pyarrow().column("__shown").to_pylist()
        return values, int(groups.count().to_pyarrow().as_py())


# --------------------------------------------------------------------------- the checks
def _value_counts(g: Any, weight: str, checks: Mapping[str, Predicate], by_value: bool) -> list:
    """One-row tables counting, over the grouping ``g``, the rows where each check holds.

    ``g``'s ``weight`` column counts each group's rows; ``checks`` maps a metric name to
    (column, predicate). With ``by_value`` each column is first reduced to its distinct
    values (quicker in DuckDB, where text functions cost more than a hash of the column);
    else every check runs on every group in one pass (quicker in Spark, where each
    reduction is a shuffle).
    """
    if not by_value:
        metrics = {name: (pred(g).cast("int64") * g[weight]).sum()
                   for name, (_, pred) in checks.items()}
        return [g.aggregate(**metrics)]
    parts = []
    for column in dict.fromkeys(c for c, _ in checks.values()):
        distinct = g.group_by(column).aggregate(__w=g[weight].sum())
        metrics = {name: (pred(distinct).cast("int64") * distinct["__w"]).sum()
                   for name, (c, pred) in checks.items() if c == column}
        parts.append(distinct.aggregate(**metrics))
    return parts


def check_pupils(
    source: Source,
    *,
    by: Sequence[str],
    kinds: Mapping[str, str],
    key: Sequence[str] = PUPIL_KEY,
    levels: Mapping[str, Sequence[Any]] | None = None,
    unit_nesting: Sequence[tuple[str, str]] = (),
    period: str | None = None,
    caller: str = "collapse",
    cells: Any = None,
    trials: str = "n_pupils",
) -> Checked:
    """Run the pupils-table checks in the engine; raise one error listing every problem.

    The checks, each a count in the engine, are those of
    :func:`disparity.validate.validate_pupils` with ``required=by``: the table has rows and
    the ``key``, ``by`` and outcome columns; key and ``by`` columns have no missing values;
    columns of ``levels`` have only valid levels; binary outcomes are 0 or 1 and count
    outcomes whole numbers >= 0, none missing; no key appears twice; each inner unit of
    ``unit_nesting`` is in one outer unit per ``period``.

    A check of a column's values (missing, unknown level) depends on the value alone, so it
    runs on a grouping of the rows that holds the column, weighted by the group's rows:
    ``cells`` for the ``by`` columns, the (period, inner, outer) groups of a nesting check
    for those. Only where a check finds rows are the pupil rows searched for the first of
    them.

    Parameters
    ----------
    source : Source
        From :func:`disparity.sources.open_source`.
    by : sequence of str
        Grouping columns (required and complete).
    kinds : mapping of str to {"binary", "count"}
        Outcome columns and their kinds.
    key : sequence of str
        Columns identifying a row (required; no two rows share them). ``()``: none.
    levels : mapping of str to sequence, optional
        Valid levels of columns, checked where the column is present.
    unit_nesting : sequence of (inner, outer)
        Checked where both columns are present.
    period : str, optional
        Column within each value of which nesting is checked.
    caller : str
        Function named in the fixes (``"pass levels= to collapse"``).
    cells : ibis.Table, optional
        The rows grouped by ``by`` in the engine (cached there), with ``trials`` counting
        the rows of each group.
    trials : str
        The column of ``cells`` counting rows.

    Returns
    -------
    Checked
        The number of rows and the event totals, counted over the pupil rows.

    Raises
    ------
    ValidationError
        Listing every problem found; the header says what "row" means for this source.
    """
    t = source.table
    schema = t.schema()
    columns = [str(c) for c in schema.names]
    present = set(columns)
    levels = dict(levels or {})
    key, by = list(key), list(by)
    problems: list[str] = []

    needed = needed_columns(key, by, kinds, caller, "by")
    counts = {c: _Counts(c, schema[c]) for c in kinds if c in present}
    nesting = [(i, o) for i, o in unit_nesting if i in present and o in present]
    period = period if period is not None and period in present else None

    # (check, column) -> predicate, in the order validate_pupils reports them
    grouping = [c for c in needed if c in present and c not in kinds]
    level_cols = [c for c in levels if c in present and c not in kinds]
    values: dict[tuple[str, str], Predicate] = {}
    for c in grouping:
        values["missing", c] = _blank(c, schema[c])
    for c in level_cols:
        if c not in grouping:
            values["missing", c] = _blank(c, schema[c])
        values["level", c] = _unknown_level(c, schema[c], list(levels[c]))
    outcome_checks: dict[tuple[str, str], Predicate] = {}
    for c, cnt in counts.items():
        outcome_checks["not number", c] = cnt.not_number
        outcome_checks["missing count", c] = cnt.missing
        outcome_checks["non whole", c] = cnt.non_whole
        outcome_checks["negative", c] = cnt.negative
        if kinds[c] == "binary":
            outcome_checks["above one", c] = cnt.above_one

    # Groupings on which checks of values are counted: the cells, the units of each nesting.
    units = {}
    try:
        for inner, outer in nesting:
            cols = list(dict.fromkeys([*([period] if period else []), inner, outer]))
            units[inner, outer] = t.group_by(cols).aggregate(__rows=t.count()).cache()
        groupings = [(cells, trials, set(by))] if cells is not None else []
        groupings += [(g, "__rows", {i, o, period}) for (i, o), g in units.items()]
        row, found = _count_all(source, values, outcome_checks, counts, groupings, key,
                                [(units[pair], *pair) for pair in nesting], schema, period)
        n_rows = row["__n"]
        finder = _Finder(source, key, n_rows)
        if n_rows == 0:
            problems.append(empty_problem("pupils table", columns))
        _check_columns(pd.DataFrame(columns=columns), needed, problems)
        if n_rows:
            checks = {**values, **outcome_checks}
            problems += _describe(finder, checks, found, counts, kinds, levels, grouping, caller)
            if row.get("__key_rows"):
                _check_unique(finder, key, row["__key_rows"], row["__key_values"], problems)
            for j, (inner, outer) in enumerate(nesting):
                if row[f"__nest{j}"]:
                    _check_nesting(finder, schema, inner, outer, period, row[f"__nest{j}"],
                                   problems)
    finally:
        for g in units.values():
            g.release()
    if problems:
        row_order = source.row_order
        if source.numbered is None:
            row_order += f" ({', '.join(finder.key)})" if finder.key else " (it has none)"
        raise ValidationError(
            problems, what=f"pupils table {source.label} ({_plural(n_rows, 'row')}; {row_order})"
        )
    events = {c: row[f"__s{i}"] for i, c in enumerate(counts)}
    return Checked(n_rows=n_rows, events=events)


def _count_all(
    source: Source, values: Mapping, outcome_checks: Mapping, counts: Mapping[str, _Counts],
    groupings: Sequence[tuple[Any, str, set]], key: Sequence[str],
    nesting: Sequence[tuple[Any, str, str]], schema: Any, period: str | None,
) -> tuple[dict[str, int], dict]:
    """Every count of the checks, in one query: one-row tables, cross-joined.

    The scan of the pupil rows counts them, their events, the outcome checks and the checks
    of columns no grouping holds; each check of a column's values is counted on the first
    grouping holding the column; the key check groups by the key; a nesting check counts
    inner units with more than one outer unit.
    """
    t = source.table
    metric = {name: f"__c{i}" for i, name in enumerate([*values, *outcome_checks])}
    raw: dict[str, Predicate] = {metric[name]: pred for name, pred in outcome_checks.items()}
    held: dict[int, tuple[Any, str, dict]] = {}
    for name, pred in values.items():
        where = [(g, weight) for g, weight, cols in groupings if name[1] in cols]
        if where:
            held.setdefault(id(where[0][0]), (*where[0], {}))[2][metric[name]] = (name[1], pred)
        else:
            raw[metric[name]] = pred
    scan = {"__n": t.count()}
    for i, cnt in enumerate(counts.values()):
        scan[f"__s{i}"] = cnt.value(t).sum().cast("int64")
    scan.update({name: pred(t).cast("int64").sum() for name, pred in raw.items()})
    parts = [t.aggregate(**scan)]
    for g, weight, checks in held.values():
        parts.extend(_value_counts(g, weight, checks, by_value=source.engine == "duckdb"))
    if key and all(c in t.columns for c in key):
        per_key = t.group_by(list(key)).aggregate(__n=t.count())
        repeated = per_key.filter(per_key["__n"] > 1)
        parts.append(repeated.aggregate(__key_rows=repeated["__n"].sum(),
                                        __key_values=repeated.count()))
    for j, (units, inner, outer) in enumerate(nesting):
        per_unit = _outers_per_unit(units, schema, inner, outer, period)
        parts.append(per_unit.aggregate(**{f"__nest{j}": (per_unit["__k"] > 1).cast("int64").sum()}))
    query = parts[0]
    for part in parts[1:]:
        query = query.cross_join(part)
    row = {k: int(v or 0) for k, v in query.to_pyarrow().to_pylist()[0].items()}
    return row, {name: row[metric[name]] for name in metric}


def _describe(
    finder: _Finder, checks: Mapping, found: Mapping, counts: Mapping[str, _Counts],
    kinds: Mapping[str, str], levels: Mapping, grouping: Sequence[str], caller: str,
) -> list[str]:
    """The message of every check of values and outcomes that found rows."""
    problems = []
    for (what, c), pred in checks.items():
        k = found[what, c]
        if not k:
            continue
        if what == "missing":
            fix = REQUIRED_MISSING_FIX if c in grouping else LEVEL_MISSING_FIX
            problems.append(missing_problem(c, k, finder.rows(pred, k), fix))
            continue
        if what == "level":
            bad, n_bad = finder.values(pred, lambda t, c=c: t[c])
            problems.append(levels_problem(c, k, bad, n_bad, finder.rows(pred, k),
                                           list(levels[c]), caller))
            continue
        shown = _values_text(finder, pred, counts[c].shown)
        rows = finder.rows(pred, k)
        missing_fix, binary_fix = outcome_fixes(c, kinds[c], caller)
        if what == "not number":
            binary = binary_fix if kinds[c] == "binary" else None
            problems.append(not_number_problem(c, k, shown, rows, binary))
        elif what == "missing count":
            problems.append(count_missing_problem(c, k, shown, rows, missing_fix))
        elif what == "non whole":
            problems.append(not_whole_problem(c, k, shown, rows))
        elif what == "negative":
            problems.append(negative_problem(c, k, shown, rows))
        else:
            problems.append(not_binary_problem(c, k, shown, rows, binary_fix))
    return problems


def _values_text(finder: _Finder, pred: Predicate, shown: Callable[[Any], Any]) -> str:
    values, n = finder.values(pred, shown)
    return values_text(values, n)


def _check_unique(finder: _Finder, key: list[str], k: int, n_keys: int,
                  problems: list[str]) -> None:
    """Name the first of the ``k`` rows that repeat ``n_keys`` values of ``key``."""
    nt = finder.table
    ntg = nt.group_by(key).aggregate(__n=nt.count())
    bad = nt.semi_join(ntg.filter(ntg["__n"] > 1), key)
    example = bad.order_by(finder.order(bad)).select(key).limit(1).to_pandas().iloc[0]
    rows = finder.first_rows(bad, k)
    what = "pupil-year" if tuple(key) == PUPIL_KEY else "key"
    problems.append(unique_problem(key, k, n_keys, what, rows, example, PUPIL_KEY_FIX))


def _complete(schema: Any, columns: Sequence[str]) -> Predicate:
    def pred(t: Any) -> Any:
        out = None
        for c in columns:
            ok = ~_blank(c, schema[c])(t)
            out = ok if out is None else out & ok
        return out

    return pred


def _outers_per_unit(g: Any, schema: Any, inner: str, outer: str, period: str | None) -> Any:
    """Outer units per inner unit (and period), among complete rows of ``g``."""
    keys = [period, inner] if period is not None else [inner]
    used = g.filter(_complete(schema, [*keys, outer])(g))
    return used.group_by(keys).aggregate(__k=used[outer].nunique())


def _check_nesting(
    finder: _Finder, schema: Any, inner: str, outer: str, period: str | None, k: int,
    problems: list[str],
) -> None:
    """Name the ``k`` inner units in more than one outer unit (per period) and their rows."""
    keys = [period, inner] if period is not None else [inner]
    nt = finder.table
    used = nt.filter(_complete(schema, [*keys, outer])(nt))
    if finder.ordered:
        per = used.group_by(keys).aggregate(__k=used[outer].nunique(), __first=used[ROW].min())
        bad = per.filter(per["__k"] > 1)
        shown = bad.order_by("__first").limit(3)
    else:
        per = used.group_by(keys).aggregate(__k=used[outer].nunique())
        bad = per.filter(per["__k"] > 1)
        shown = bad.order_by(keys).limit(3)
    shown_keys = shown.select(keys).to_pandas()
    in_bad = used.semi_join(bad.select(keys), keys)
    in_shown = used.semi_join(shown.select(keys), keys)
    if finder.ordered:
        outers = in_shown.group_by([*keys, outer]).aggregate(__first=in_shown[ROW].min())
        outers = outers.order_by("__first").to_pandas()
    else:
        outers = in_shown.group_by([*keys, outer]).aggregate().order_by([*keys, outer]).to_pandas()
    examples = []
    for unit in shown_keys.itertuples(index=False):
        match = pd.Series(True, index=outers.index)
        for c, v in zip(keys, unit):
            match &= outers[c] == v
        examples.append((unit[0] if len(keys) > 1 else None, unit[-1],
                         list(outers.loc[match, outer])))
    rows = finder.first_rows(in_bad, int(in_bad.count().to_pyarrow().as_py()))
    problems.append(nesting_problem(inner, outer, period if len(keys) > 1 else None, k, rows,
                                    examples))
