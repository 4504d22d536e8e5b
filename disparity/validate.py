"""Validate pupils and cells tables: find every problem, then raise once.

Each function checks the whole table, collects every problem it finds, and raises a single
:class:`~disparity.errors.ValidationError` listing them all, so that one run shows
everything to fix. Each problem names the column, how many rows, the first (up to five)
offending rows, the offending values and the fix. Rows are numbered from 1, the first data
row after the header (row ``i`` is position ``i - 1`` of the frame, whatever its index).

A valid table is returned with its count columns as integers: ``int64``, or nullable
``Int64`` where missing counts are allowed. Whole-number floats (``3.0``), text numbers
(``"3"``) and text numbers with thousands separators (``"1,234"``) are converted; nothing
else is changed, and columns the checks do not use pass through untouched.

Which columns each table needs is set by arguments, not fixed: the defaults describe the
exclusions tables of ``docs/data_dictionary.md``, and a teacher's table of ``incidence``
events out of ``size`` animals by ``herd`` validates with
``validate_cells(frame, by=["herd"], events=["incidence"], trials="size")``.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from disparity import vocabulary
from disparity.errors import SpecError, ValidationError
from disparity.vocabulary import (
    ANY_SUSP,
    EVENTS_PREFIX,
    LA,
    LEVELS,
    N_PUPILS,
    N_SUSP,
    PERM_EXCL,
    PUPIL_ID,
    PUPIL_KEY,
    PUPIL_OUTCOMES,
    SCHOOL,
    YEAR,
    events_column,
)

#: Markers that official tables put in place of a number (GSS and DfE practice;
#: :data:`disparity.vocabulary.SUPPRESSION_MARKERS`). In a count column of a cells table they
#: mean "suppressed": read as missing, never as zero.
SUPPRESSION_MARKERS: frozenset[str] = frozenset(vocabulary.SUPPRESSION_MARKERS)

#: Ending of the columns that say why a count is missing (``n_perm_excl_missing``, as
#: :mod:`disparity.dfe` writes them); they are neither counts nor grouping columns.
MISSING_SUFFIX: str = "_missing"

#: Kinds of outcome a pupils table can hold.
OUTCOME_KINDS: tuple[str, ...] = ("binary", "count")

#: Columns a pupils table needs by default (with the key and the outcomes requested).
PUPILS_REQUIRED: tuple[str, ...] = (PUPIL_ID, YEAR, LA, SCHOOL)

# Event counts of cells tables known to be binary-type (at most one per pupil) or counts.
# An event column not named here is treated as binary-type (the stricter check).
_BINARY_EVENTS = frozenset(
    [events_column(o) for o, k in PUPIL_OUTCOMES.items() if k == "binary"] + ["n_one_plus_fixed"]
)
_COUNT_EVENTS = frozenset(
    [events_column(o) for o, k in PUPIL_OUTCOMES.items() if k == "count"] + ["n_fixed_excl"]
)

_SHOW = 5  # offending rows and values shown per problem
#: The largest count a cell may hold: more than a century of every pupil in England.
MAX_COUNT: int = 1_000_000_000
_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"


# --------------------------------------------------------------------------- formatting
def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def rows_text(first: Sequence[str], k: int, n: int) -> str:
    """``"rows 2, 9, 14 of 20"``: the first of ``k`` offending rows, already labelled, of ``n``.

    Shared by the checks on a frame (rows counted from 1) and those run in a database
    (:mod:`disparity.source_checks`, where a row may be labelled by file and row or by key).
    """
    more = ", ..." if k > len(first) else ""
    return f"{'row' if k == 1 else 'rows'} {', '.join(first)}{more} of {n:,}"


def _rows(mask: np.ndarray) -> str:
    """``"rows 2, 9, 14 of 20"``: the first offending data rows, counted from 1."""
    where = np.flatnonzero(mask) + 1
    return rows_text([f"{r:,}" for r in where[:_SHOW]], len(where), len(mask))


def _value(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return "NA"
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if isinstance(v, float) and np.isfinite(v) and v == int(v):
        return str(int(v)) if abs(v) < 1e15 else repr(v)
    return repr(v) if isinstance(v, str) else str(v)


def values_text(first: Sequence[Any], n_distinct: int) -> str:
    """The first few of ``n_distinct`` distinct values, and how many more there are."""
    shown = list(dict.fromkeys(_value(v) for v in first))[:_SHOW]
    more = n_distinct - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def _values(values: Iterable[Any]) -> str:
    """The distinct values, in order of first appearance, the first few shown."""
    first = {}
    for v in values:
        first.setdefault(_value(v), v)
    return values_text(list(first.values())[:_SHOW], len(first))


def _names(columns: Iterable[str]) -> str:
    return ", ".join(repr(c) for c in columns)


def _normal(text: str) -> str:
    return " ".join(str(text).replace("_", " ").replace("-", " ").lower().split())


def _nearest(value: Any, choices: Sequence[Any]) -> Any | None:
    """The choice closest to ``value``: same after case and spacing, else by difflib."""
    by_normal = {_normal(c): c for c in choices}
    if _normal(value) in by_normal:
        return by_normal[_normal(value)]
    close = difflib.get_close_matches(_normal(value), list(by_normal), n=1, cutoff=0.6)
    return by_normal[close[0]] if close else None


def _similar_columns(name: str, present: Sequence[str]) -> list[str]:
    same = [c for c in present if _normal(c) == _normal(name)]
    if same:
        return same
    by_normal = {_normal(c): c for c in present}
    close = difflib.get_close_matches(_normal(name), list(by_normal), n=3, cutoff=0.75)
    return [by_normal[c] for c in close]


def _what(table: str, frame: pd.DataFrame) -> str:
    return f"{table} ({_plural(len(frame), 'row')}; rows numbered from 1 = first data row)"


def _has(k: int) -> str:
    return "has" if k == 1 else "have"


# --------------------------------------------------------------------------- wording
# One wording per problem, shared by the checks on a frame below and by the same checks run
# in a database (disparity.source_checks): each takes the counts and the texts of the first
# offending rows (rows_text) and values (values_text).
#: Fix for a missing value in a key or required column of a pupils table.
REQUIRED_MISSING_FIX = "Every row needs one: fill them in, or drop those rows."
#: Fix for a missing value in a characteristic column with fixed levels.
LEVEL_MISSING_FIX = (
    "Fill them in (e.g. 'Unclassified' for ethnicity, where recorded so), or drop those rows."
)
#: Fix for a repeated pupil-year.
PUPIL_KEY_FIX = (
    "Each pupil appears once a year: remove the duplicate rows, or combine "
    "them (e.g. keep the pupil's main school and add up the outcomes)."
)


def empty_problem(table: str, columns: Sequence[str]) -> str:
    return (
        f"the {table} has no rows (columns: {_names(columns) or 'none'}). "
        "Give a table with at least one row; check that the right file or filter was used."
    )


def missing_problem(column: str, k: int, rows: str, fix: str) -> str:
    return f"column {column!r}: {_plural(k, 'row')} {_has(k)} missing values ({rows}). {fix}"


def levels_problem(
    column: str, k: int, bad: Sequence[Any], n_bad: int, rows: str, valid: Sequence[Any],
    caller: str,
) -> str:
    """Unknown levels: ``bad`` holds the first distinct ones (at least five), of ``n_bad``."""
    level_word = "level" if n_bad == 1 else "levels"
    guesses = [(v, _nearest(v, valid)) for v in bad[:_SHOW]]
    guesses = [(v, g) for v, g in guesses if g is not None]
    if n_bad == 1 and guesses:
        hint = f" Did you mean {_value(guesses[0][1])}?"
    elif guesses:
        pairs = ", ".join(f"{_value(g)} for {_value(v)}" for v, g in guesses)
        hint = f" Did you mean {pairs}?"
    else:
        hint = ""
    return (
        f"column {column!r}: {_plural(k, 'row')} {_has(k)} unknown "
        f"{level_word} {values_text(bad, n_bad)} ({rows}). Valid levels: "
        f"{', '.join(_value(v) for v in valid)}."
        f"{hint} Recode the column, or pass levels= to {caller}."
    )


def outcome_fixes(column: str, kind: str, caller: str) -> tuple[str, str]:
    """The fixes (for missing values, for values other than 0 and 1) of a pupil outcome."""
    binary = kind == "binary"
    missing_fix = (
        "missing values ({values}; {rows}). Every pupil-year needs "
        f"an outcome: fill in {'0 or 1' if binary else 'the count (0 if none)'}, "
        "or drop those rows."
    )
    binary_fix = (
        f"{column!r} is a binary outcome (1 = it happened to the pupil that "
        "year, 0 = not): recode it to 0 and 1, or, if it counts events, pass "
        f"outcomes={{{column!r}: 'count'}} to {caller}."
    )
    return missing_fix, binary_fix


def not_number_problem(column: str, k: int, values: str, rows: str, fix: str | None) -> str:
    """Text that is not a number; ``fix`` is the binary fix of a binary column, else None."""
    return (
        f"column {column!r}: {_plural(k, 'row')} {_has(k)} values "
        f"that are not numbers {values} ({rows}). "
        + (fix if fix is not None else "Counts must be whole numbers (a thousands separator, "
           "as in '1,234', is accepted); correct these values or drop those rows.")
    )


def count_missing_problem(column: str, k: int, values: str, rows: str, fix: str) -> str:
    """Missing counts; ``fix`` may hold ``{values}`` and ``{rows}``."""
    return (
        f"column {column!r}: {_plural(k, 'row')} {_has(k)} "
        f"{fix}".replace("{rows}", rows).replace("{values}", values)
    )


def not_whole_problem(column: str, k: int, values: str, rows: str) -> str:
    return (
        f"column {column!r}: {_plural(k, 'row')} {_has(k)} values "
        f"that are not whole numbers {values} "
        f"({rows}). Counts of pupils and events are whole numbers: check "
        "that the column holds counts, not rates or percentages, and correct these rows."
    )


def negative_problem(column: str, k: int, values: str, rows: str) -> str:
    return (
        f"column {column!r}: {_plural(k, 'row')} {_has(k)} negative "
        f"values {values} ({rows}). Counts cannot be negative: correct these rows."
    )


def not_binary_problem(column: str, k: int, values: str, rows: str, fix: str) -> str:
    return (
        f"column {column!r}: {_plural(k, 'row')} {_has(k)} values "
        f"other than 0 and 1: {values} ({rows}). " + fix
    )


def unique_problem(
    columns: Sequence[str], k: int, n_keys: int, what: str, rows: str,
    example: Mapping[str, Any], fix: str,
) -> str:
    """``k`` rows repeat ``n_keys`` values of ``columns``; ``example`` is one repeated key."""
    text = ", ".join(f"{c}={_value(example[c])}" for c in columns)
    label = "columns" if len(columns) > 1 else "column"
    return (
        f"{label} {_names(columns)}: {_plural(k, 'row')} repeat {_plural(n_keys, what)} "
        f"({rows}), e.g. {text}. {fix}"
    )


def nesting_problem(
    inner: str, outer: str, period: str | None, k: int, rows: str,
    examples: Sequence[tuple[Any, Any, Sequence[Any]]],
) -> str:
    """``k`` inner units in several outer ones (within ``period`` if not None).

    ``examples`` holds (period value or None, inner value, its outer values), the first three
    shown.
    """
    texts = []
    for when, unit, outers in list(examples)[:3]:
        text = f"{inner} {_value(unit)} in {outer} {_values(outers)}"
        texts.append(text + (f" in {period} {_value(when)}" if period is not None else ""))
    in_period = f" in the same {period}" if period is not None else ""
    return (
        f"column {outer!r}: {_plural(k, inner + ' value')} {'is' if k == 1 else 'are'} in "
        f"more than one {outer}{in_period} ({rows}): {'; '.join(texts)}"
        f"{'; ...' if k > 3 else ''}. Each {inner} belongs to one {outer}"
        f"{' per ' + period if period is not None else ''}: correct {outer!r} in those rows, or "
        f"give each {inner} in a different {outer} its own id (or pass unit_nesting=() to "
        "skip this check)."
    )


# --------------------------------------------------------------------------- checks
def _check_not_empty(frame: pd.DataFrame, table: str, problems: list[str]) -> None:
    if len(frame) == 0:
        problems.append(empty_problem(table, [str(c) for c in frame.columns]))


def _check_columns(
    frame: pd.DataFrame, needed: Mapping[str, str], problems: list[str]
) -> None:
    """Report each column of ``needed`` (name -> how to stop needing it) not in ``frame``."""
    present = [str(c) for c in frame.columns]
    for name, how in needed.items():
        if name in frame.columns:
            continue
        similar = _similar_columns(name, present)
        if similar:
            seen = f"Columns that look similar: {_names(similar)}. Rename one to {name!r}"
        else:
            listed = _names(present[:15]) + (", ..." if len(present) > 15 else "")
            seen = f"Columns present: {listed or 'none'}. Add the column"
        problems.append(f"column {name!r} is missing (required). {seen}, or {how}.")


def _category_rows(series: pd.Series, per_category: np.ndarray) -> np.ndarray:
    """Each row's entry of ``per_category`` (a flag per category of a categorical series);
    False where the row is missing. Checks on a category run once, not once per row."""
    codes = series.cat.codes.to_numpy()
    return (codes >= 0) & np.asarray(per_category, dtype=bool)[np.maximum(codes, 0)]


def _blank(series: pd.Series) -> np.ndarray:
    """Missing values, counting empty and all-space text as missing."""
    missing = series.isna().to_numpy(dtype=bool)
    if isinstance(series.dtype, pd.CategoricalDtype):
        labels = pd.Series(series.cat.categories.astype(str))
        return missing | _category_rows(series, (labels.str.strip() == "").to_numpy())
    if not pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        text = series.astype("string").str.strip()
        missing = missing | (text == "").fillna(False).to_numpy(dtype=bool)
    return missing


def _check_complete(
    frame: pd.DataFrame, column: str, fix: str, problems: list[str]
) -> np.ndarray:
    missing = _blank(frame[column])
    k = int(missing.sum())
    if k:
        problems.append(missing_problem(column, k, _rows(missing), fix))
    return missing


def _check_levels(
    frame: pd.DataFrame,
    column: str,
    valid: Sequence[Any],
    missing: np.ndarray,
    caller: str,
    problems: list[str],
) -> None:
    series = frame[column]
    if isinstance(series.dtype, pd.CategoricalDtype):  # each category checked once
        outside = ~series.cat.categories.isin(list(valid))
        unknown = ~missing & _category_rows(series, outside)
    else:
        unknown = ~missing & ~series.isin(list(valid)).to_numpy(dtype=bool)
    k = int(unknown.sum())
    if not k:
        return
    bad = list(dict.fromkeys(series.to_numpy(dtype=object)[unknown]))
    problems.append(levels_problem(column, k, bad, len(bad), _rows(unknown), valid, caller))


def _as_counts(
    frame: pd.DataFrame,
    column: str,
    *,
    binary: bool,
    allow_missing: bool,
    missing_fix: str,
    binary_fix: str,
    problems: list[str],
    whole_numbers: bool = True,
) -> tuple[np.ndarray, pd.Series | None]:
    """Check a count column; return its valid counts and the column as integers.

    The first item holds each row's count as a float, NaN where the count is missing or
    invalid (for checks between columns). The second is the column as integers, or ``None``
    after reporting problems: text numbers, with or without thousands separators, and
    whole-number floats become ``int64`` (``Int64`` if missing values are allowed and
    present). Suppression markers and empty text count as missing.
    """
    series = frame[column]
    n_before = len(problems)
    shown_values = series.to_numpy()
    if pd.api.types.is_bool_dtype(series) and binary:
        series = series.astype("int64")
        shown_values = series.to_numpy()
    if pd.api.types.is_bool_dtype(series):
        problems.append(
            f"column {column!r} holds True/False values, not counts. A count column holds "
            "whole numbers of pupils or events: recode it (e.g. the number of pupils with the "
            "event in each row), or, for a 0/1 outcome of a pupils table, name it as an "
            "outcome rather than a count.")
        return np.full(len(series), np.nan), None
    elif pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        not_number = np.zeros(len(series), dtype=bool)
    else:
        text = series.astype("string").str.strip()
        marker = text.str.lower().isin(SUPPRESSION_MARKERS).fillna(False)
        missing = (text.isna() | (text == "").fillna(False) | marker).to_numpy(dtype=bool)
        thousands = text.str.fullmatch(_THOUSANDS).fillna(False)
        cleaned = text.where(~thousands, text.str.replace(",", "", regex=False))
        cleaned = cleaned.where(~pd.Series(missing, index=cleaned.index))
        parsed = pd.to_numeric(cleaned, errors="coerce")
        values = pd.Series(parsed).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        not_number = ~missing & np.isnan(values)
        shown_values = text.to_numpy(dtype=object, na_value=None)

    k = int(not_number.sum())
    if k:
        problems.append(not_number_problem(
            column, k, _values(shown_values[not_number]), _rows(not_number),
            binary_fix if binary else None))
    k = int(missing.sum())
    if k and not allow_missing:
        problems.append(count_missing_problem(
            column, k, _values(shown_values[missing]), _rows(missing), missing_fix))
    number = ~missing & ~not_number
    infinite = number & np.isinf(values)
    k = int(infinite.sum())
    if k:
        problems.append(
            f"column {column!r}: {_plural(k, 'row')} {'has' if k == 1 else 'have'} infinite "
            f"values {_values(shown_values[infinite])} ({_rows(infinite)}). Counts are finite "
            "whole numbers: correct these rows.")
    with np.errstate(invalid="ignore"):
        huge = number & np.isfinite(values) & (np.abs(values) > MAX_COUNT)
    k = int(huge.sum())
    if k:
        problems.append(
            f"column {column!r}: {_plural(k, 'row')} {'has' if k == 1 else 'have'} values "
            f"above {MAX_COUNT:,} {_values(shown_values[huge])} ({_rows(huge)}), more pupils "
            "or events than any cell can hold (England has about 8 million pupils a year): "
            "check the column and correct these rows.")
    number = number & ~infinite & ~huge
    with np.errstate(invalid="ignore"):
        whole = number & np.isfinite(values) & (
            (values == np.round(values)) if whole_numbers else True)
    non_whole = number & ~whole
    k = int(non_whole.sum())
    if k:
        problems.append(
            not_whole_problem(column, k, _values(shown_values[non_whole]), _rows(non_whole)))
    negative = whole & (values < 0)
    k = int(negative.sum())
    if k:
        problems.append(
            negative_problem(column, k, _values(shown_values[negative]), _rows(negative)))
    if binary:
        above = whole & (values > 1)
        k = int(above.sum())
        if k:
            problems.append(not_binary_problem(
                column, k, _values(shown_values[above]), _rows(above), binary_fix))
    valid = np.where(whole & (values >= 0), values, np.nan)
    if len(problems) > n_before:
        return valid, None
    if pd.api.types.is_integer_dtype(series) and not missing.any():
        return valid, series.astype("int64")
    if pd.api.types.is_integer_dtype(series):
        return valid, series.astype("Int64")
    if not whole_numbers and not np.all(values[number] == np.round(values[number])):
        return valid, pd.Series(values, index=series.index)
    out = pd.Series(values, index=series.index).round()
    return valid, out.astype("Int64") if missing.any() else out.astype("int64")


def _check_unique(
    frame: pd.DataFrame, columns: Sequence[str], what: str, fix: str, problems: list[str]
) -> None:
    repeated = frame.duplicated(subset=list(columns), keep=False).to_numpy(dtype=bool)
    k = int(repeated.sum())
    if not k:
        return
    first = frame.loc[repeated, list(columns)].iloc[0]
    n_keys = len(frame.loc[repeated, list(columns)].drop_duplicates())
    problems.append(unique_problem(columns, k, n_keys, what, _rows(repeated), first, fix))


def _check_nesting(
    frame: pd.DataFrame, inner: str, outer: str, period: str | None, problems: list[str]
) -> None:
    keys = [period, inner] if period is not None and period in frame.columns else [inner]
    complete = ~np.logical_or.reduce([_blank(frame[c]) for c in [*keys, outer]])
    used = frame.loc[complete, [*keys, outer]]
    n_outer = used.groupby(keys, sort=False)[outer].nunique()
    bad = n_outer[n_outer > 1]
    if bad.empty:
        return
    index = pd.MultiIndex.from_frame(frame[keys]) if len(keys) > 1 else pd.Index(frame[inner])
    mask = np.asarray(index.isin(bad.index), dtype=bool) & complete
    where = used.groupby(keys, sort=False)[outer].unique().loc[bad.index]
    examples = []
    for key, outers in list(where.items())[:3]:
        key = key if isinstance(key, tuple) else (key,)
        examples.append((key[0] if len(keys) > 1 else None, key[-1], list(outers)))
    problems.append(nesting_problem(
        inner, outer, period if len(keys) > 1 else None, len(bad), _rows(mask), examples))


def strip_levels(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with spaces around the text levels of ``columns`` removed ("none " is
    "none"), and a :class:`~disparity.errors.DataWarning` saying how many were changed.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     out = strip_levels(pd.DataFrame({"sen": ["none ", "ehcp"]}), ["sen"])
    >>> out.sen.tolist(), "1 value" in str(w[0].message)
    (['none', 'ehcp'], True)
    """
    import warnings

    from disparity.errors import DataWarning

    changed: list[str] = []
    out = None
    for c in columns:
        series = frame[c]
        if isinstance(series.dtype, pd.CategoricalDtype):
            labels = pd.Series(series.cat.categories.astype(str))
            if not (labels.str.strip() != labels).any():
                continue  # nothing to strip: the rows need not be looked at
        elif not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        text = series.where(series.isna(), series.astype(str))
        stripped = text.where(text.isna(), text.str.strip())
        moved = (stripped != text) & text.notna()
        k = int(moved.sum())
        if k:
            if out is None:
                out = frame.copy()
            out[c] = stripped
            changed.append(f"{_plural(k, 'value')} of {c!r} ({_rows(moved.to_numpy())})")
    if changed:
        warnings.warn("stripped spaces before or after the levels of "
                      + "; ".join(changed) + ": 'none ' and 'none' are the same level",
                      DataWarning, stacklevel=3)
    return frame if out is None else out


def _raise(problems: list[str], what: str) -> None:
    if problems:
        raise ValidationError(problems, what=what)


# --------------------------------------------------------------------------- pupils
def _outcome_kinds(outcomes: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(outcomes, str):
        outcomes = (outcomes,)
    if isinstance(outcomes, Mapping):
        kinds = dict(outcomes)
    else:
        unknown = [o for o in outcomes if o not in PUPIL_OUTCOMES]
        if unknown:
            raise SpecError(
                f"outcome kind unknown for {_names(unknown)}: known outcomes are "
                f"{_names(PUPIL_OUTCOMES)}. For other outcomes pass a mapping, e.g. "
                f"outcomes={{{unknown[0]!r}: 'binary'}} (or 'count')."
            )
        kinds = {o: PUPIL_OUTCOMES[o] for o in outcomes}
    wrong = {o: k for o, k in kinds.items() if k not in OUTCOME_KINDS}
    if wrong:
        raise SpecError(
            f"unknown outcome kind for {_names(wrong)}: {_values(wrong.values())}. "
            f"Valid kinds: {_names(OUTCOME_KINDS)}."
        )
    return kinds


def validate_pupils(
    frame: pd.DataFrame,
    *,
    outcomes: Sequence[str] | Mapping[str, str] = (PERM_EXCL, ANY_SUSP, N_SUSP),
    key: Sequence[str] = PUPIL_KEY,
    required: Sequence[str] = PUPILS_REQUIRED,
    levels: Mapping[str, Sequence[Any]] | None = LEVELS,
    unit_nesting: Sequence[tuple[str, str]] = ((SCHOOL, LA),),
    period: str | None = YEAR,
) -> pd.DataFrame:
    """Check a pupils table (one row per pupil-year) and return it with integer outcomes.

    Every problem is collected before one error is raised. The checks:

    * the table has rows;
    * the required columns are present: ``key``, ``required`` and the outcomes (a missing
      column is reported with the present columns that look like it);
    * required columns have no missing values;
    * characteristic columns of ``levels`` that are present have no missing values and only
      valid levels (a characteristic is only required if it is in ``required``);
    * binary outcomes are 0 or 1; count outcomes are whole numbers >= 0; no outcome is
      missing;
    * no pupil-year (``key``) appears twice;
    * each inner unit sits in one outer unit per ``period`` (by default, a school is in one
      LA in each year), where both columns are present.

    Columns not named by the arguments (``trust``, ``nc_year``, extra columns) pass through
    unchecked.

    Parameters
    ----------
    frame : pandas.DataFrame
        The pupils table.
    outcomes : sequence of str or mapping of str to {"binary", "count"}
        Outcome columns. Names in :data:`disparity.vocabulary.PUPIL_OUTCOMES` may be given
        alone; others need their kind, e.g. ``{"sick": "binary"}``.
    key : sequence of str
        Columns that identify a row; no two rows may share them.
    required : sequence of str
        Further columns that must be present and complete. Default ``pupil_id``, ``year``,
        ``la``, ``school``.
    levels : mapping of str to sequence, optional
        Valid levels of each categorical column, checked where the column is present.
        Default :data:`disparity.vocabulary.LEVELS`; ``{}`` or ``None`` checks none.
    unit_nesting : sequence of (inner, outer)
        Pairs of unit columns where each inner unit must sit in one outer unit.
    period : str or None
        Column within each value of which nesting is checked (default ``year``: schools may
        change LA between years, not within one). ``None`` checks across the whole table.

    Returns
    -------
    pandas.DataFrame
        A new frame: the input with outcome columns as ``int64``.

    Raises
    ------
    ValidationError
        Listing every problem found.
    SpecError
        If an outcome's kind is unknown.

    Examples
    --------
    >>> import pandas as pd
    >>> pupils = pd.DataFrame({
    ...     "pupil_id": [1, 2, 3], "year": ["2016/17"] * 3, "la": ["E1", "E1", "E2"],
    ...     "school": ["A", "A", "B"], "sen": ["none", "support", "ehcp"],
    ...     "perm_excl": [0.0, 1.0, 0.0], "any_susp": [0, 1, 1], "n_susp": [0, 3, 1],
    ... })
    >>> validate_pupils(pupils)["perm_excl"].dtype
    dtype('int64')
    >>> bad = pupils.assign(sen=["none", "SEN support", "ehcp"])
    >>> try:
    ...     validate_pupils(bad)
    ... except ValidationError as err:
    ...     print(err.problems[0])  # doctest: +NORMALIZE_WHITESPACE
    column 'sen': 1 row has unknown level 'SEN support' (row 2 of 3). Valid levels:
    'none', 'support', 'ehcp'. Did you mean 'support'? Recode the column, or pass levels=
    to validate_pupils.
    """
    out, problems = pupils_problems(
        frame, _outcome_kinds(outcomes), key=key, required=required, levels=levels,
        unit_nesting=unit_nesting, period=period,
    )
    _raise(problems, _what("pupils table", frame))
    return out


def needed_columns(
    key: Sequence[str], required: Sequence[str], outcomes: Iterable[str], caller: str,
    required_arg: str = "required",
) -> dict[str, str]:
    """Columns a pupils table needs, each with how to stop needing it (for the message)."""
    needed: dict[str, str] = {}
    for c in key:
        needed.setdefault(c, f"pass key= to {caller}")
    for c in required:
        needed.setdefault(c, f"pass {required_arg}= to {caller}")
    for c in outcomes:
        needed.setdefault(c, f"pass outcomes= to {caller}")
    return needed


def pupils_problems(
    frame: pd.DataFrame,
    kinds: Mapping[str, str],
    *,
    key: Sequence[str] = PUPIL_KEY,
    required: Sequence[str] = PUPILS_REQUIRED,
    levels: Mapping[str, Sequence[Any]] | None = LEVELS,
    unit_nesting: Sequence[tuple[str, str]] = ((SCHOOL, LA),),
    period: str | None = YEAR,
    caller: str = "validate_pupils",
    required_arg: str = "required",
) -> tuple[pd.DataFrame, list[str]]:
    """The checks of :func:`validate_pupils`: the frame with integer outcomes, and the problems.

    ``kinds`` maps each outcome to its kind; ``caller`` and ``required_arg`` name the
    function and argument the fixes point to (``"pass by= to collapse"``).
    """
    key = [key] if isinstance(key, str) else list(key)
    required = [required] if isinstance(required, str) else list(required)
    levels = dict(levels or {})
    problems: list[str] = []
    _check_not_empty(frame, "pupils table", problems)

    needed = needed_columns(key, required, kinds, caller, required_arg)
    _check_columns(frame, needed, problems)

    out = frame.copy()
    if len(frame):
        missing: dict[str, np.ndarray] = {}
        grouping = [c for c in needed if c in frame.columns and c not in kinds]
        for c in grouping:
            missing[c] = _check_complete(frame, c, REQUIRED_MISSING_FIX, problems)
        for c, valid in levels.items():
            if c not in frame.columns or c in kinds:
                continue
            if c not in missing:
                missing[c] = _check_complete(frame, c, LEVEL_MISSING_FIX, problems)
            _check_levels(frame, c, list(valid), missing[c], caller, problems)
        for c, kind in kinds.items():
            if c not in frame.columns:
                continue
            missing_fix, binary_fix = outcome_fixes(c, kind, caller)
            _, converted = _as_counts(
                frame,
                c,
                binary=kind == "binary",
                allow_missing=False,
                missing_fix=missing_fix,
                binary_fix=binary_fix,
                problems=problems,
            )
            if converted is not None:
                out[c] = converted
        if all(c in frame.columns for c in key) and key:
            _check_unique(
                frame,
                key,
                "pupil-year" if tuple(key) == PUPIL_KEY else "key",
                PUPIL_KEY_FIX,
                problems,
            )
        for inner, outer in unit_nesting:
            if inner in frame.columns and outer in frame.columns:
                _check_nesting(frame, inner, outer, period, problems)
    return out, problems


# --------------------------------------------------------------------------- cells
def _binary_events(events: Sequence[str], binary: bool | Iterable[str] | None) -> set[str]:
    if binary is None:
        return {e for e in events if e not in _COUNT_EVENTS}
    if isinstance(binary, bool):
        return set(events) if binary else set()
    if isinstance(binary, str):
        binary = [binary]
    chosen = set(binary)
    unknown = chosen - set(events)
    if unknown:
        raise SpecError(
            f"binary= names {_names(sorted(unknown))}, which are not event columns. "
            f"Event columns: {_names(events)}."
        )
    return chosen


def validate_cells(
    frame: pd.DataFrame,
    *,
    by: Sequence[str] | None = None,
    events: Sequence[str] | None = None,
    trials: str = N_PUPILS,
    binary: bool | Sequence[str] | None = None,
    levels: Mapping[str, Sequence[Any]] | None = LEVELS,
    allow_missing: bool = False,
    unique: bool = True,
    unit_nesting: Sequence[tuple[str, str]] = ((SCHOOL, LA),),
    whole_trials: bool = True,
) -> pd.DataFrame:
    """Check a cells table (events out of trials per combination) and return integer counts.

    Every problem is collected before one error is raised. The checks:

    * the table has rows, and the ``by``, ``events`` and ``trials`` columns;
    * grouping columns have no missing values and, where ``levels`` names them (by default
      the package's characteristics, ``sen``, ``fsm``, ``ethnicity``...; a table's own
      columns stay free), only valid levels; spaces around a level are stripped, with a
      :class:`~disparity.errors.DataWarning`;
    * each inner unit of ``unit_nesting`` (a school) is in one outer unit (an LA), per year;
    * counts are whole numbers >= 0; missing counts (empty, ``NA`` or a suppression marker
      such as ``x`` or ``c``) are allowed only with ``allow_missing=True``;
    * binary-type events (at most one per pupil) do not exceed the trials;
    * a cell with no trials has no events;
    * each combination of ``by`` appears once (unless ``unique=False``).

    Parameters
    ----------
    frame : pandas.DataFrame
        The cells table.
    by : sequence of str, optional
        Grouping columns. Default: every column that is neither ``trials``, an event column
        nor a ``*_missing`` reason column.
    events : sequence of str, optional
        Event-count columns. Default: every column starting ``n_`` other than ``trials``
        and the ``*_missing`` reason columns.
    trials : str
        Column of trials (pupils) per cell. Default ``n_pupils``.
    binary : bool or sequence of str, optional
        Which event columns are binary-type, so may not exceed ``trials``. ``True``: all;
        ``False``: none; a list: those. Default: all except the known counts of events
        (``n_susp``, ``n_fixed_excl``), which a pupil can have several of.
    levels : mapping of str to sequence, optional
        Valid levels of grouping columns, checked where the column is a grouping column.
        Default: :data:`disparity.vocabulary.LEVELS`; ``None`` or ``{}`` for no check.
    allow_missing : bool
        Whether missing (suppressed) counts are allowed; they are returned as ``<NA>`` in
        an ``Int64`` column.
    unique : bool
        Whether each combination of ``by`` must appear once. ``False`` allows repeats, e.g.
        when ``by`` leaves out a column (such as ``year``) that tells the rows apart.
    unit_nesting : sequence of (inner, outer)
        Pairs of grouping columns where each inner unit must be in one outer unit (per
        ``year`` where there is one); ``()`` to skip.
    whole_trials : bool
        Whether ``trials`` must be whole numbers (pupils); ``False`` for the exposure of a
        count model, which may be, e.g., pupil-years.

    Returns
    -------
    pandas.DataFrame
        A new frame: the input with ``trials`` and ``events`` as ``int64`` (``Int64`` where
        missing counts are allowed and present).

    Raises
    ------
    ValidationError
        Listing every problem found.
    SpecError
        If the arguments contradict each other.

    Examples
    --------
    >>> import pandas as pd
    >>> herds = pd.DataFrame({"herd": ["A", "B"], "size": [20, 15], "incidence": [3.0, 0.0]})
    >>> valid = validate_cells(herds, by=["herd"], events=["incidence"], trials="size")
    >>> valid["incidence"].tolist()
    [3, 0]
    >>> try:
    ...     validate_cells(herds.assign(incidence=[30, 0]), by=["herd"],
    ...                    events=["incidence"], trials="size")
    ... except ValidationError as err:
    ...     print(err.problems[0])  # doctest: +ELLIPSIS
    column 'incidence': 1 row has more events than trials in 'size' (row 1 of 2), ...
    """
    caller = "validate_cells"
    columns = [str(c) for c in frame.columns]
    reasons = [c for c in columns if c.endswith(MISSING_SUFFIX)]
    if events is None:
        events = [
            c for c in columns if c.startswith(EVENTS_PREFIX) and c != trials and c not in reasons
        ]
    events = list([events] if isinstance(events, str) else events)
    if by is None:
        by = [c for c in columns if c != trials and c not in events and c not in reasons]
    by = list([by] if isinstance(by, str) else by)
    if trials in events:
        raise SpecError(f"{trials!r} is given both as trials and as an event column.")
    overlap = [c for c in by if c == trials or c in events]
    if overlap:
        raise SpecError(f"{_names(overlap)} given both as grouping and as count columns.")
    binary_events = _binary_events(events, binary)
    levels = dict(levels or {})

    problems: list[str] = []
    _check_not_empty(frame, "cells table", problems)
    if not events:
        problems.append(
            f"the cells table has no event-count columns (columns: {_names(columns)}). "
            f"Name them 'n_<outcome>' (e.g. 'n_perm_excl'), or pass events= to {caller}."
        )
    needed: dict[str, str] = {c: f"pass by= to {caller}" for c in by}
    needed.setdefault(trials, f"pass trials= to {caller}")
    for c in events:
        needed.setdefault(c, f"pass events= to {caller}")
    _check_columns(frame, needed, problems)

    frame = strip_levels(frame, [c for c in by if c in frame.columns])
    out = frame.copy()
    if len(frame):
        for c in by:
            if c not in frame.columns:
                continue
            missing = _check_complete(
                frame, c, "Every cell needs a value: fill them in, or drop those rows.", problems
            )
            if c in levels:
                _check_levels(frame, c, list(levels[c]), missing, caller, problems)
        for inner, outer in unit_nesting:
            if inner in by and outer in by:
                _check_nesting(frame, inner, outer, YEAR if YEAR in by else None, problems)
        counts: dict[str, np.ndarray] = {}
        for c in [trials, *events]:
            if c not in frame.columns:
                continue
            counts[c], converted = _as_counts(
                frame,
                c,
                binary=False,
                allow_missing=allow_missing,
                missing_fix="missing (suppressed?) counts ({values}; {rows}). Models need "
                "every count: fill them in from unsuppressed data, drop those cells, or pass "
                f"allow_missing=True to {caller} to keep them as missing.",
                binary_fix="",
                problems=problems,
                whole_numbers=whole_trials or c != trials,
            )
            if converted is not None:
                out[c] = converted
        if trials in counts:
            n = counts[trials]
            for c in events:
                if c not in counts:
                    continue
                e = counts[c]
                with np.errstate(invalid="ignore"):
                    no_trials = (n == 0) & (e > 0)
                    over = (e > n) & ~no_trials & (c in binary_events)
                k = int(over.sum())
                if k:
                    i = int(np.flatnonzero(over)[0])
                    problems.append(
                        f"column {c!r}: {_plural(k, 'row')} {'has' if k == 1 else 'have'} more "
                        f"events than trials in {trials!r} ({_rows(over)}), e.g. {c}="
                        f"{int(e[i])} with {trials}={int(n[i])}. {c!r} is checked as a binary "
                        "outcome (at most one event per pupil): correct the counts, or, if a "
                        f"pupil can have several such events, pass binary= without {c!r} "
                        f"to {caller}."
                    )
                k = int(no_trials.sum())
                if k:
                    problems.append(
                        f"column {c!r}: {_plural(k, 'row')} {'has' if k == 1 else 'have'} "
                        f"events but {trials!r} is 0 ({_rows(no_trials)}). Events need "
                        "pupils: correct the counts of those rows, or drop them."
                    )
        if unique and by and all(c in frame.columns for c in by):
            _check_unique(
                frame,
                by,
                "combination",
                f"Cells must be unique by by={list(by)!r}: add up the repeated rows (e.g. "
                "frame.groupby(by, as_index=False).sum()), or add the column that tells "
                "them apart to by=.",
                problems,
            )
    _raise(problems, _what("cells table", frame))
    return out


def validate_model_cells(
    frame: pd.DataFrame,
    *,
    events: str,
    trials: str,
    family: str,
    allow_missing: bool = False,
    unique: bool = True,
) -> pd.DataFrame:
    """The one check of a cells table that ``disparity validate`` and ``disparity run`` share.

    :func:`validate_cells` with its defaults (every column that is not a count is a
    grouping column, so repeated cells are refused; the package's characteristics must have
    valid levels; schools sit in one LA), with the model's ``events`` among the counts and,
    for a binomial model, never more than ``trials``. ``unique=False`` lets rows repeat
    (one row per pupil, each with ``trials`` 1, passed to the design directly).

    Examples
    --------
    >>> cells = pd.DataFrame({"herd": ["A", "B"], "size": [20, 15], "incidence": [3, 16]})
    >>> validate_model_cells(cells, events="incidence", trials="size", family="binomial")
    Traceback (most recent call last):
    ...
    disparity.errors.ValidationError: cells table (2 rows; ...) failed validation with 1 problem:
      1. column 'incidence': 1 row has more events than trials in 'size' (row 2 of 2), ...
    """
    columns = [str(c) for c in frame.columns]
    counts = [c for c in columns if c.startswith(EVENTS_PREFIX) and c != trials
              and not c.endswith(MISSING_SUFFIX)]
    all_events = list(dict.fromkeys([*counts, events]))
    binary = set(_binary_events(all_events, None))
    if family == "binomial":
        binary.add(events)
    else:
        binary.discard(events)
    out = validate_cells(frame, events=all_events, trials=trials, binary=sorted(binary),
                         allow_missing=True, whole_trials=family == "binomial", unique=unique)
    problems: list[str] = []
    for c in (events, trials):
        if c not in out.columns or (allow_missing and c == events):
            continue
        missing = out[c].isna().to_numpy(dtype=bool)
        k = int(missing.sum())
        if k:
            problems.append(
                f"column {c!r}: {_plural(k, 'row')} {'has' if k == 1 else 'have'} missing "
                f"(suppressed?) counts ({_rows(missing)}). The model needs them: fill them "
                "in from unsuppressed data, or drop those cells (a suppressed count is "
                "missing, never zero)")
    _raise(problems, _what("cells table", frame))
    return out
