"""Cells: pupils collapsed to event counts out of pupils per combination of characteristics.

A *cells* table has the grouping columns, a trials column (:data:`~disparity.vocabulary.N_PUPILS`)
and one event count ``n_<outcome>`` per outcome (:func:`~disparity.vocabulary.events_column`).
With categorical covariates the binomial (or Poisson) likelihood of the cells equals the
Bernoulli (or Poisson) likelihood of the pupils they came from up to a constant, so cells
are the modelling unit: a national year of eight million pupils becomes a few hundred
thousand rows.

Every function here conserves pupils and events and checks that it did
(:func:`check_conservation`); a violation raises :class:`~disparity.errors.DisparityError`.

Functions
---------
collapse
    pupils (or finer cells) to cells, one row per observed combination of ``by``.
recollapse
    cells to coarser cells (sums the trials and every event column).
expand
    cells back to one row per pupil with 0/1 outcomes (binary outcomes only).
totals, check_conservation
    the pupil and event totals of a pupils or cells frame, and their comparison.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DisparityError, ValidationError
from .vocabulary import EVENTS_PREFIX, N_PUPILS, PUPIL_OUTCOMES, events_column

__all__ = ["collapse", "recollapse", "expand", "totals", "check_conservation"]

_OUTCOME_KINDS = ("binary", "count")
#: Below this many possible combinations the group key is counted with a dense ``bincount``.
_DENSE_LIMIT = 1 << 24
#: Mixed-radix keys are compacted before they could overflow int64.
_KEY_LIMIT = 1 << 62
_SHOW = 5  # offending rows named in a message


# --------------------------------------------------------------------------- helpers
def _first_rows(index: pd.Index, mask: np.ndarray) -> str:
    rows = index[np.flatnonzero(mask)[:_SHOW]]
    return ", ".join(repr(r) if isinstance(r, str) else str(r) for r in rows)


def _resolve_outcomes(
    columns: Sequence[object],
    outcomes: Mapping[str, str] | Sequence[str] | str | None,
    *,
    trials: str,
    is_cells: bool,
) -> dict[str, str]:
    """Outcome name -> kind ("binary" or "count"), given the table's ``columns``."""
    if outcomes is None:
        present = {}
        for name, kind in PUPIL_OUTCOMES.items():
            col = events_column(name) if is_cells else name
            if col in columns:
                present[name] = kind
        if is_cells:  # any other event column of a cells frame is carried along as a count
            for col in columns:
                if (
                    isinstance(col, str)
                    and col.startswith(EVENTS_PREFIX)
                    and col != trials
                    and col not in {events_column(o) for o in present}
                ):
                    present[col] = "count"
        return present
    if isinstance(outcomes, str):
        outcomes = [outcomes]
    if isinstance(outcomes, Mapping):
        resolved = {str(k): str(v) for k, v in outcomes.items()}
    else:
        resolved = {str(o): PUPIL_OUTCOMES.get(str(o), "binary") for o in outcomes}
    bad = {k: v for k, v in resolved.items() if v not in _OUTCOME_KINDS}
    if bad:
        raise ValidationError(
            [
                f"outcome {k!r} has kind {v!r}; valid kinds are "
                f"{', '.join(map(repr, _OUTCOME_KINDS))}"
                for k, v in bad.items()
            ],
            what="outcomes",
        )
    return resolved


def _check_counts(
    frame: pd.DataFrame, columns: Mapping[str, str], problems: list[str]
) -> dict[str, np.ndarray]:
    """Validate count columns (column -> kind); return them as int64 arrays."""
    values: dict[str, np.ndarray] = {}
    for col, kind in columns.items():
        if col not in frame.columns:
            problems.append(
                f"column {col!r} is missing; the frame has columns "
                f"{', '.join(map(repr, frame.columns))}"
            )
            continue
        s = frame[col]
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            problems.append(
                f"column {col!r} has dtype {s.dtype}; it must hold whole numbers "
                f"(convert it with pd.to_numeric)"
            )
            continue
        miss = s.isna().to_numpy()
        if miss.any():
            problems.append(
                f"column {col!r} has {int(miss.sum())} missing values (first rows: "
                f"{_first_rows(frame.index, miss)}); fill or drop those rows before collapsing"
            )
            continue
        arr = s.to_numpy()
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                bad = ~np.isfinite(arr) | (arr != np.round(arr))
                problems.append(
                    f"column {col!r} has {int(bad.sum())} values that are not whole numbers "
                    f"(first rows: {_first_rows(frame.index, bad)})"
                )
                continue
        arr = arr.astype(np.int64, copy=False)
        neg = arr < 0
        if neg.any():
            problems.append(
                f"column {col!r} has {int(neg.sum())} negative values "
                f"(first rows: {_first_rows(frame.index, neg)}); counts must be 0 or more"
            )
            continue
        if kind == "binary":
            big = arr > 1
            if big.any():
                problems.append(
                    f"binary outcome {col!r} has {int(big.sum())} values other than 0 and 1 "
                    f"(first rows: {_first_rows(frame.index, big)}); declare it as a count "
                    f"with outcomes={{{col!r}: 'count'}} if it counts events"
                )
                continue
        values[col] = arr
    return values


def _codes(frame: pd.DataFrame, by: Sequence[str]) -> tuple[list[np.ndarray], list[pd.Index]]:
    """Integer codes (sorted level order) and levels of each ``by`` column; missing -> error."""
    problems: list[str] = []
    codes: list[np.ndarray] = []
    levels: list[pd.Index] = []
    for col in by:
        s = frame[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            c = s.cat.codes.to_numpy()  # int8/int16/int32: widened only inside the key
            lev = s.cat.categories
        else:
            c, lev = pd.factorize(s, sort=True, use_na_sentinel=True)
            lev = pd.Index(lev)
        miss = c < 0
        if miss.any():
            problems.append(
                f"grouping column {col!r} has {int(miss.sum())} missing values (first rows: "
                f"{_first_rows(frame.index, miss)}); collapsing would drop those pupils. "
                f"Recode them to an explicit level (e.g. 'Unclassified') or drop the rows first"
            )
        codes.append(c)
        levels.append(lev)
    if problems:
        raise ValidationError(problems, what="grouping columns")
    return codes, levels


def _group_index(codes: list[np.ndarray], sizes: list[int], n_rows: int) -> tuple[np.ndarray, int]:
    """Group number of each row (groups in lexicographic order of the codes) and group count."""
    if not codes:
        return np.zeros(n_rows, dtype=np.int64), (1 if n_rows else 0)
    key = codes[0].astype(np.int64)
    bound = max(sizes[0], 1)
    for c, size in zip(codes[1:], sizes[1:]):
        size = max(size, 1)
        if bound * size >= _KEY_LIMIT:
            # compact the key so far to its dense rank (order preserved by sort=True)
            key, uniq = pd.factorize(key, sort=True)
            key = np.asarray(key, dtype=np.int64)
            bound = len(uniq)
        key *= size
        key += c
        bound *= size
    if bound <= max(_DENSE_LIMIT, 2 * n_rows):
        present = np.bincount(key, minlength=bound) > 0
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[key], int(present.sum())
    inv, uniq = pd.factorize(key, sort=True)
    return np.asarray(inv, dtype=np.int64), len(uniq)


# --------------------------------------------------------------------------- conservation
def totals(
    frame: pd.DataFrame,
    outcomes: Sequence[str],
    *,
    trials: str = N_PUPILS,
) -> dict[str, int]:
    """Pupil and event totals of a pupils or cells frame.

    A frame with a ``trials`` column is read as cells (pupils = sum of ``trials``, events =
    sums of ``n_<outcome>``); otherwise as pupils (pupils = rows, events = sums of the
    outcome columns).

    Parameters
    ----------
    frame : DataFrame
        Pupils or cells.
    outcomes : sequence of str
        Outcome names (``perm_excl``), not event-column names.
    trials : str
        Name of the trials column of a cells frame.

    Returns
    -------
    dict
        ``{trials: total pupils, events_column(o): total events of o, ...}`` as Python ints.

    Examples
    --------
    >>> pupils = pd.DataFrame({"sex": ["male", "female", "male"], "perm_excl": [1, 0, 0]})
    >>> totals(pupils, ["perm_excl"])
    {'n_pupils': 3, 'n_perm_excl': 1}
    """
    is_cells = trials in frame.columns
    out = {trials: int(frame[trials].sum()) if is_cells else int(len(frame))}
    for o in outcomes:
        out[events_column(o)] = int(frame[events_column(o) if is_cells else o].sum())
    return out


def check_conservation(
    before: pd.DataFrame | Mapping[str, int],
    after: pd.DataFrame | Mapping[str, int],
    outcomes: Sequence[str],
    *,
    trials: str = N_PUPILS,
    step: str = "transformation",
) -> None:
    """Raise if ``after`` does not hold the same pupils and events as ``before``.

    Each of ``before`` and ``after`` is a pupils frame, a cells frame or a mapping of
    totals from :func:`totals`.

    Raises
    ------
    DisparityError
        Naming every total that changed. This is a bug in the step, never a data problem.

    Examples
    --------
    >>> pupils = pd.DataFrame({"sex": ["male", "female", "male"], "perm_excl": [1, 0, 0]})
    >>> cells = pd.DataFrame({"sex": ["female", "male"], "n_pupils": [1, 2], "n_perm_excl": [0, 1]})
    >>> check_conservation(pupils, cells, ["perm_excl"])  # passes silently
    """
    tb = before if isinstance(before, Mapping) else totals(before, outcomes, trials=trials)
    ta = after if isinstance(after, Mapping) else totals(after, outcomes, trials=trials)
    diffs = [
        f"{k}: {tb.get(k)} before, {ta.get(k)} after"
        for k in dict.fromkeys([*tb, *ta])
        if tb.get(k) != ta.get(k)
    ]
    if diffs:
        raise DisparityError(
            f"{step} did not conserve pupils and events ({'; '.join(diffs)}). "
            "This is a bug in disparity; please report it with the input that caused it."
        )


# --------------------------------------------------------------------------- collapse
def collapse(
    pupils: pd.DataFrame,
    by: Sequence[str],
    outcomes: Mapping[str, str] | Sequence[str] | None = None,
    *,
    trials: str = N_PUPILS,
    observed: bool = True,
) -> pd.DataFrame:
    """Collapse pupils (or finer cells) to cells: events out of pupils per combination of ``by``.

    Parameters
    ----------
    pupils : DataFrame
        One row per pupil with 0/1 (binary) or 0, 1, 2, ... (count) outcome columns; or a
        cells frame, recognised by its ``trials`` column, whose ``trials`` and ``n_<outcome>``
        columns are summed (see :func:`recollapse`).
    by : sequence of str
        Grouping columns. Missing values are an error: no pupil is dropped silently.
    outcomes : mapping of outcome to kind, sequence of outcomes, or None
        Outcomes to count, by name (``"perm_excl"``; for a cells input the event column
        ``n_perm_excl`` is read). A mapping gives each outcome's kind, ``"binary"`` or
        ``"count"``; a sequence takes kinds from :data:`~disparity.vocabulary.PUPIL_OUTCOMES`
        (others are binary). ``None``: the outcomes of ``PUPIL_OUTCOMES`` present in the frame
        (and, for a cells input, every other ``n_`` column).
    trials : str
        Name of the trials (pupil count) column.
    observed : bool
        ``True``: one row per combination present in the data. ``False``: one row per
        combination of the levels of ``by`` (categories of categorical columns, observed
        values of others), empty ones with zero pupils and events.

    Returns
    -------
    DataFrame
        Columns ``by`` (categorical, levels in sorted or category order), ``trials`` (int64)
        and ``n_<outcome>`` (int64) per outcome; rows sorted by ``by``; a fresh RangeIndex.

    Raises
    ------
    ValidationError
        A grouping column has missing values, an outcome is missing, negative, not a whole
        number, or a binary outcome holds values other than 0 and 1.
    DisparityError
        Pupils or events were not conserved (checked on every call; a bug if raised).

    Notes
    -----
    Each ``by`` column is factorised to integer codes, the codes are combined into one int64
    key in mixed radix (so the key order is the lexicographic order of the levels) and the
    trials and events are summed per key with ``numpy.bincount``. Eight million pupils by
    six columns take a few seconds.

    The binomial likelihood of cells equals the Bernoulli likelihood of the pupils up to a
    constant, so a model with these covariates fitted to either gives the same estimates
    [1]_.

    References
    ----------
    .. [1] McCullagh, P. and Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed.,
       section 4.2 (grouped binary data). Chapman and Hall.

    Examples
    --------
    >>> pupils = pd.DataFrame({
    ...     "sex": ["male", "female", "male", "male"],
    ...     "fsm": ["yes", "no", "no", "yes"],
    ...     "perm_excl": [1, 0, 0, 0],
    ...     "n_susp": [3, 0, 1, 0],
    ... })
    >>> collapse(pupils, ["sex"])
          sex  n_pupils  n_perm_excl  n_susp
    0  female         1            0       0
    1    male         3            1       4
    >>> collapse(pupils, ["sex", "fsm"], ["perm_excl"])
          sex  fsm  n_pupils  n_perm_excl
    0  female   no         1            0
    1    male   no         1            0
    2    male  yes         2            1
    """
    if isinstance(by, str):
        by = [by]
    by = list(by)
    is_cells = trials in pupils.columns
    resolved = _resolve_outcomes(list(pupils.columns), outcomes, trials=trials, is_cells=is_cells)

    problems: list[str] = []
    missing_by = [c for c in by if c not in pupils.columns]
    if missing_by:
        problems.append(
            f"grouping column(s) {', '.join(map(repr, missing_by))} not found; the frame has "
            f"columns {', '.join(map(repr, pupils.columns))}"
        )
    if len(set(by)) != len(by):
        problems.append(f"grouping columns repeat: {by}")
    clash = [c for c in by if c == trials or c in {events_column(o) for o in resolved}]
    if clash:
        problems.append(f"grouping column(s) {clash} are also count columns of the output")
    if is_cells:
        value_cols = {trials: "count"}
        value_cols.update({events_column(o): "count" for o in resolved})
    else:
        value_cols = dict(resolved)
    values = _check_counts(pupils, value_cols, problems)
    if problems:
        raise ValidationError(problems, what="pupils" if not is_cells else "cells")

    codes, levels = _codes(pupils, by)
    n_rows = len(pupils)
    group, n_groups = _group_index(codes, [len(lev) for lev in levels], n_rows)

    # first row of each group, to read its levels back
    first = np.empty(n_groups, dtype=np.int64)
    first[group[::-1]] = np.arange(n_rows - 1, -1, -1, dtype=np.int64)

    out: dict[str, object] = {}
    for col, c, lev in zip(by, codes, levels):
        out[col] = pd.Categorical.from_codes(c[first], categories=lev)
    if is_cells:
        out[trials] = _sum_by(group, values[trials], n_groups)
    else:
        out[trials] = np.bincount(group, minlength=n_groups).astype(np.int64)
    for o in resolved:
        src = events_column(o) if is_cells else o
        out[events_column(o)] = _sum_by(group, values[src], n_groups)
    cells = pd.DataFrame(out)

    if not observed and by:
        full = pd.MultiIndex.from_product([list(lev) for lev in levels], names=by)
        if len(full) > 50_000_000:
            raise DisparityError(
                f"observed=False would make {len(full):,} cells; collapse with observed=True"
            )
        counts = [trials, *(events_column(o) for o in resolved)]
        cells = (
            cells.set_index(by)[counts]
            .reindex(full, fill_value=0)
            .reset_index()
        )
        for col, lev in zip(by, levels):
            cells[col] = pd.Categorical(cells[col], categories=lev)
        for col in counts:
            cells[col] = cells[col].astype(np.int64)

    before = {trials: int(values[trials].sum()) if is_cells else n_rows}
    for o in resolved:
        src = events_column(o) if is_cells else o
        before[events_column(o)] = int(values[src].sum())
    check_conservation(before, cells, list(resolved), trials=trials, step="collapse")
    return cells


def _sum_by(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Exact integer sums of ``values`` per group."""
    if values.size and int(values.max()) * values.size < 2**53:
        return np.rint(np.bincount(group, weights=values, minlength=n_groups)).astype(np.int64)
    sums = np.zeros(n_groups, dtype=np.int64)
    np.add.at(sums, group, values)
    return sums


def recollapse(
    cells: pd.DataFrame,
    by: Sequence[str],
    outcomes: Sequence[str] | None = None,
    *,
    trials: str = N_PUPILS,
    observed: bool = True,
) -> pd.DataFrame:
    """Collapse cells further: sum the trials and event counts over the columns not in ``by``.

    Parameters
    ----------
    cells : DataFrame
        A cells frame with a ``trials`` column and ``n_<outcome>`` event columns.
    by : sequence of str
        Grouping columns of the coarser cells; a subset of the cells' grouping columns.
    outcomes : sequence of str, optional
        Outcomes whose event columns are summed; default every ``n_`` column but ``trials``.
    trials : str
        Name of the trials column.
    observed : bool
        As in :func:`collapse`.

    Returns
    -------
    DataFrame
        Coarser cells, rows sorted by ``by``. Collapsing pupils by a subset of columns gives
        the same frame as collapsing them by more columns and then recollapsing.

    Examples
    --------
    >>> cells = pd.DataFrame({"sex": ["female", "male", "male"], "fsm": ["no", "no", "yes"],
    ...                       "n_pupils": [1, 1, 2], "n_perm_excl": [0, 0, 1]})
    >>> recollapse(cells, ["sex"])
          sex  n_pupils  n_perm_excl
    0  female         1            0
    1    male         3            1
    """
    if trials not in cells.columns:
        raise ValidationError(
            [
                f"trials column {trials!r} not found; a cells frame needs one "
                f"(columns: {', '.join(map(repr, cells.columns))}). Use collapse() for pupils"
            ],
            what="cells",
        )
    resolved = (
        None if outcomes is None else {events_column(o): "count" for o in outcomes}
    )
    return collapse(cells, by, resolved, trials=trials, observed=observed)


# --------------------------------------------------------------------------- expand
def expand(
    cells: pd.DataFrame,
    outcomes: Sequence[str] | Mapping[str, str],
    *,
    trials: str = N_PUPILS,
) -> pd.DataFrame:
    """Expand cells to one row per pupil with 0/1 outcome columns.

    Each cell becomes ``trials`` rows; for each outcome, ``n_<outcome>`` of them are 1 and
    the rest 0. Grouping columns (every column that is neither ``trials`` nor an ``n_`` event
    column) are repeated with their dtypes; event columns of outcomes not expanded are
    dropped.

    Parameters
    ----------
    cells : DataFrame
        Cells with ``trials`` and the event columns of ``outcomes``.
    outcomes : sequence of str or mapping of outcome to kind
        Binary outcomes to expand, by name (``"perm_excl"`` reads ``n_perm_excl``).
    trials : str
        Name of the trials column.

    Returns
    -------
    DataFrame
        Pupil rows (fresh RangeIndex) in cell order; outcome columns are int8.

    Raises
    ------
    ValidationError
        An outcome is a count (see Notes), a count column is missing, negative or not a whole
        number, or a cell has more events than pupils.

    Notes
    -----
    Only the marginal totals of each outcome are kept in cells, so:

    * a *count* outcome (``n_susp``) is refused. Cells keep its total per cell but not how it
      was spread over pupils (one pupil with six suspensions or six with one), and any spread
      this function chose would be invented. Fit count models to the cells themselves (event
      total with ``log(n_pupils)`` as offset), or leave the count out of ``outcomes``.
    * with several binary outcomes the joint distribution within a cell is not recoverable;
      every outcome's ones are put on the first rows of its cell, so the ones overlap as much
      as possible. Each outcome's totals are exact.

    ``collapse(expand(cells, outcomes), by, outcomes)`` returns ``cells`` for cells with at
    least one pupil, sorted by ``by``.

    Examples
    --------
    >>> cells = pd.DataFrame({"sex": ["female", "male"], "n_pupils": [2, 3],
    ...                       "n_perm_excl": [0, 2]})
    >>> expand(cells, ["perm_excl"])
          sex  perm_excl
    0  female          0
    1  female          0
    2    male          1
    3    male          1
    4    male          0
    """
    if isinstance(outcomes, str):
        outcomes = [outcomes]
    resolved = _resolve_outcomes(list(cells.columns), outcomes, trials=trials, is_cells=True)
    problems: list[str] = []
    counts = [o for o, k in resolved.items() if k == "count"]
    if counts:
        problems.append(
            f"outcome(s) {', '.join(map(repr, counts))} are counts: cells keep each count's "
            "total but not how it is spread over pupils, so it cannot be expanded without "
            "inventing data. Fit count models to the cells (total with log(n_pupils) offset), "
            f"or expand only the binary outcomes"
        )
    cols = {trials: "count", **{events_column(o): "count" for o in resolved}}
    values = _check_counts(cells, cols, problems)
    if not problems:
        for o in resolved:
            over = values[events_column(o)] > values[trials]
            if over.any():
                problems.append(
                    f"column {events_column(o)!r} exceeds {trials!r} in {int(over.sum())} cells "
                    f"(first rows: {_first_rows(cells.index, over)}); a binary outcome cannot "
                    f"have more events than pupils"
                )
    if problems:
        raise ValidationError(problems, what="cells")

    n = values[trials]
    rows = np.repeat(np.arange(len(cells), dtype=np.int64), n)
    starts = np.cumsum(n) - n
    position = np.arange(rows.size, dtype=np.int64) - np.repeat(starts, n)

    group_cols = [
        c
        for c in cells.columns
        if c != trials and not (isinstance(c, str) and c.startswith(EVENTS_PREFIX))
    ]
    out = {c: cells[c].take(rows).reset_index(drop=True) for c in group_cols}
    for o in resolved:
        out[o] = (position < np.repeat(values[events_column(o)], n)).astype(np.int8)
    pupils = pd.DataFrame(out, index=pd.RangeIndex(rows.size))
    check_conservation(cells, pupils, list(resolved), trials=trials, step="expand")
    return pupils
