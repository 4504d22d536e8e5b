"""Disclosure control of published counts: primary and secondary suppression, rounding.

Counts of pupils and of events are protected *before* anything is formatted. A table is
given in long form: one row per cell, keyed by a ``rows`` column and optionally a ``cols``
column, in which the label ``total`` (``"Total"`` by default) marks a margin. Two shapes
cover the tables the package publishes:

* groups within units with a unit total row, e.g. pupils and exclusions by ethnicity within
  each local authority plus the LA total (``rows="la", cols="ethnicity"``, rows
  ``(la, "Total")`` present);
* a two-way table with row and column margins and a grand total (rows ``(r, "Total")``,
  ``("Total", c)`` and ``("Total", "Total")``).

A one-way table (``cols=None``) with an optional ``"Total"`` row is the simplest case.

Rules (defaults in :mod:`disparity.config`, usually set from a model file's
``[report.suppression]`` table, see :meth:`SuppressionRules.from_mapping`):

*Primary suppression*
    a cell or margin with ``1 <= n_pupils < min_pupils`` has its pupils, events and rate
    suppressed; a cell with ``1 <= n_events < min_events`` has its events and rate
    suppressed. Zero counts are shown (a rate on zero pupils is "not applicable").
*Secondary suppression*
    every additive relation of the table (a row, a column, a margin: "cells sum to their
    total") is a linear constraint. Where a constraint holds exactly one hidden value, the
    smallest non-zero published member of that constraint (the total itself if nothing else
    is left) is suppressed too, ties broken by table order, repeated to a fixed point. Then
    every suppressed value is audited against *all* published figures at once by linear
    programming (the attack a reader could make); a value that is still not protected gets
    a further complement and the loop repeats. Pupils are protected first; every cell whose
    pupils are suppressed then has its events suppressed, and the events are protected the
    same way.
*Protection criterion*
    for each suppressed value, the smallest and largest values consistent with every
    published figure, every additive relation and non-negativity differ by at least 1
    (it cannot be recovered exactly), and for a primary-suppressed value the range reaches
    either 0 or the threshold (the published figures cannot show that it is a small
    non-zero count). Tables with margins have totally unimodular constraint matrices, so
    the linear-programming bounds are attained by integer tables and are exact.
*Rounding*
    optionally, published counts are rounded to the nearest ``round_to`` (halves up) after
    suppression. Rates are always computed from the unrounded counts. Rounding only widens
    what a reader can infer, so the protection above still holds.

Published tables use the GSS symbols of :mod:`disparity.config`: ``c`` suppressed, ``z``
not applicable, ``x`` unavailable (missing in the input).

References
----------
Government Statistical Service (2021). *Statistical disclosure control for tables produced
from administrative data sources.*

Hundepool, A. et al. (2012). *Statistical Disclosure Control*, chapter 4 (magnitude and
frequency tables; secondary suppression and the attacker's linear programs). Wiley.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import config
from ..errors import DataWarning, ValidationError
from ..settings import SuppressionRules
from ..vocabulary import N_PUPILS

__all__ = ["SuppressionRules", "SuppressedTable", "suppress_table", "round_counts"]

#: Status of a published value (kept beside the table, never published itself).
PUBLISHED = "published"
PRIMARY = "primary"
SECONDARY = "secondary"
NOT_APPLICABLE = "not_applicable"
UNAVAILABLE = "unavailable"

_SYMBOL = {
    PUBLISHED: "",
    PRIMARY: config.SYMBOL_SUPPRESSED,
    SECONDARY: config.SYMBOL_SUPPRESSED,
    NOT_APPLICABLE: config.SYMBOL_NOT_APPLICABLE,
    UNAVAILABLE: config.SYMBOL_UNAVAILABLE,
}
_TOL = 1e-7


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SuppressedTable:
    """A table after disclosure control.

    Attributes
    ----------
    published : DataFrame
        Key columns, then the pupils and events counts (nullable integers, missing where
        not published; rounded if the rules say so), the rate (nullable float, per
        ``per``, from unrounded counts) and one ``<column>_symbol`` column each holding
        ``""`` or the GSS symbol ``c``/``z``/``x``.
    status : DataFrame
        Key columns and, per value, ``"published"``, ``"primary"``, ``"secondary"``,
        ``"not_applicable"`` or ``"unavailable"``. For audit; never publish it (it tells
        primary from secondary suppressions).
    rules : SuppressionRules
    note : str
        One sentence for the table's footnote (rounding, symbols).
    """

    published: pd.DataFrame
    status: pd.DataFrame
    rules: SuppressionRules
    note: str
    value_columns: tuple[str, str, str]

    def formatted(self, *, decimals: int = 2) -> pd.DataFrame:
        """The table as text: counts with thousands separators, rates to ``decimals``
        places, GSS symbols where a value is not published."""
        out = self.published.drop(columns=[f"{c}_symbol" for c in self.value_columns]).copy()
        for i, column in enumerate(self.value_columns):
            values = self.published[column]
            symbols = self.published[f"{column}_symbol"]
            if i < 2:
                text = [f"{int(v):,}" if s == "" else s for v, s in zip(values, symbols)]
            else:
                text = [f"{float(v):.{decimals}f}" if s == "" else s
                        for v, s in zip(values, symbols)]
            out[column] = pd.Series(text, index=out.index, dtype=object)
        return out


# --------------------------------------------------------------------------- structure
def _cell_keys(table: pd.DataFrame, rows: str, cols: str | None) -> list[tuple]:
    if cols is None:
        return [(r,) for r in table[rows].tolist()]
    return list(zip(table[rows].tolist(), table[cols].tolist()))


def _constraints(
    keys: list[tuple], total: Any
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Additive relations ``sum(coef * value) == 0`` among the cells, in table order."""
    index = {k: i for i, k in enumerate(keys)}
    out: list[tuple[np.ndarray, np.ndarray, str]] = []

    def add(members: list[int], margin: int, what: str) -> None:
        if not members:
            return  # a margin with no breakdown constrains nothing
        idx = np.array(members + [margin])
        coef = np.r_[np.ones(len(members)), -1.0]
        out.append((idx, coef, what))

    if len(keys[0]) == 1:
        if (total,) in index:
            add([i for k, i in index.items() if k[0] != total], index[(total,)],
                f"the {total!r} row")
        return out

    row_labels = list(dict.fromkeys(k[0] for k in keys if k[0] != total))
    col_labels = list(dict.fromkeys(k[1] for k in keys if k[1] != total))
    interior = {k: i for k, i in index.items() if k[0] != total and k[1] != total}
    for r in row_labels:
        if (r, total) in index:
            add([i for k, i in interior.items() if k[0] == r], index[(r, total)],
                f"row {r!r} and its total")
    for c in col_labels:
        if (total, c) in index:
            add([i for k, i in interior.items() if k[1] == c], index[(total, c)],
                f"column {c!r} and its total")
    if (total, total) in index:
        grand = index[(total, total)]
        for side, labels, pos in (("row", row_labels, 0), ("column", col_labels, 1)):
            members = []
            for lab in labels:
                margin = (lab, total) if side == "row" else (total, lab)
                if margin in index:
                    members.append(index[margin])
                else:
                    members += [i for k, i in interior.items() if k[pos] == lab]
            add(members, grand, f"the grand total and the {side} totals")
    unique: dict[tuple, tuple[np.ndarray, np.ndarray, str]] = {}
    for idx, coef, what in out:  # the same relation may arise from both sides
        unique.setdefault((tuple(sorted(idx[:-1].tolist())), int(idx[-1])), (idx, coef, what))
    return list(unique.values())


# --------------------------------------------------------------------------- protection
def _pick(candidates: np.ndarray, values: np.ndarray) -> int | None:
    """Smallest non-zero value (zeros only if nothing else), ties by table order."""
    if candidates.size == 0:
        return None
    cand = np.unique(candidates)
    vals = values[cand]
    nonzero = vals > 0
    if nonzero.any():
        cand, vals = cand[nonzero], vals[nonzero]
    order = np.lexsort((cand, vals))
    return int(cand[order[0]])


def _components(unknown: np.ndarray, cons: list) -> list[tuple[np.ndarray, list[int]]]:
    """Groups of unknown cells linked through shared constraints, with their constraints."""
    parent = {int(i): int(i) for i in np.flatnonzero(unknown)}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for idx, _, _ in cons:
        hidden = [int(i) for i in idx if unknown[i]]
        for a in hidden[1:]:
            ra, rb = find(hidden[0]), find(a)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(find(i), []).append(i)
    out = []
    for root in sorted(groups):
        cells = np.array(sorted(groups[root]))
        members = set(cells.tolist())
        ks = [k for k, (idx, _, _) in enumerate(cons) if members.intersection(idx.tolist())]
        out.append((cells, ks))
    return out


def feasible_ranges(
    values: np.ndarray, hidden: np.ndarray, cons: list, cells: list[int] | None = None
) -> dict[int, tuple[float, float]]:
    """Smallest and largest value of each hidden cell given the published ones.

    ``values`` are the true counts (NaN where unavailable); ``hidden`` marks values a
    reader does not see; ``cells`` limits the work to some hidden cells. Two linear
    programs per cell. Returns ``{cell: (low, high)}``; ``high`` may be ``inf``.
    """
    from scipy.optimize import linprog

    unknown = hidden | np.isnan(values)
    wanted = None if cells is None else set(int(c) for c in cells)
    ranges: dict[int, tuple[float, float]] = {}
    for cells, ks in _components(unknown, cons):
        if wanted is not None and not wanted.intersection(cells.tolist()):
            continue
        pos = {int(c): j for j, c in enumerate(cells)}
        a_eq = np.zeros((len(ks), len(cells)))
        b_eq = np.zeros(len(ks))
        for row, k in enumerate(ks):
            idx, coef, _ = cons[k]
            for i, a in zip(idx, coef):
                if unknown[i]:
                    a_eq[row, pos[int(i)]] += a
                else:
                    b_eq[row] -= a * values[i]
        for c in cells:
            if not hidden[c] or (wanted is not None and int(c) not in wanted):
                continue
            bounds = []
            for sign in (1.0, -1.0):
                obj = np.zeros(len(cells))
                obj[pos[int(c)]] = sign
                if len(ks) == 0:
                    res_status, fun = (0, 0.0) if sign > 0 else (3, None)
                else:
                    res = linprog(obj, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
                    res_status, fun = res.status, res.fun
                if res_status == 3:
                    bounds.append(np.inf)
                elif res_status == 0:
                    bounds.append(sign * fun)
                else:  # pragma: no cover - consistent tables are always feasible
                    raise ValidationError(
                        [f"the suppression audit found the table's totals inconsistent "
                         f"(linear program status {res_status})."], what="table")
            ranges[int(c)] = (bounds[0], bounds[1])
    return ranges


def _path(
    adjacency: dict[int, list[tuple[int, int]]], start: int, goal: int, *, skip: int, usable
) -> dict[int, tuple[int, int] | None] | None:
    """Breadth-first search from ``start`` to ``goal`` avoiding edge ``skip``."""
    from collections import deque

    prev: dict[int, tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue and goal not in prev:
        node = queue.popleft()
        for edge, other in adjacency.get(node, []):
            if edge != skip and other not in prev and usable(edge):
                prev[other] = (edge, node)
                queue.append(other)
    return prev if goal in prev else None


def _cycle_ranges(
    values: np.ndarray, unknown: np.ndarray, hidden: np.ndarray, cons: list
) -> dict[int, tuple[float, float]]:
    """Inner bounds on each hidden cell's feasible range from one short cycle each.

    Each hidden value sits in at most two constraints, so the hidden values form a graph:
    constraints are nodes (plus one "free" node standing for no constraint) and values are
    edges. Moving by ``+t``/``-t`` around a cycle of hidden values keeps every constraint
    satisfied; how far it can move before a value turns negative gives a range that the
    true feasible range contains. Cells with no usable cycle are left out (the caller then
    solves linear programs for them).
    """
    free = len(cons)
    coef_at: dict[tuple[int, int], float] = {}
    ends: dict[int, list[int]] = {}
    for k, (idx, coef, _) in enumerate(cons):
        for i, a in zip(idx.tolist(), coef.tolist()):
            if unknown[i]:
                coef_at[(k, i)] = coef_at.get((k, i), 0.0) + a
                ends.setdefault(i, []).append(k)
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for i, ks in ends.items():
        if len(ks) > 2:
            return {}
        u, v = (ks[0], ks[1]) if len(ks) == 2 else (ks[0], free)
        ends[i] = [u, v]
        adjacency.setdefault(u, []).append((i, v))
        adjacency.setdefault(v, []).append((i, u))
    x = np.where(np.isnan(values), 0.0, values)
    out: dict[int, tuple[float, float]] = {}
    for i in np.flatnonzero(hidden):
        i = int(i)
        if i not in ends:
            out[i] = (0.0, np.inf)  # in no constraint: nothing bounds it
            continue
        u, v = ends[i]
        prev = None
        for usable in (lambda e: x[e] >= 1, lambda e: True):  # prefer cycles of non-zeros
            prev = _path(adjacency, v, u, skip=i, usable=usable)
            if prev is not None:
                break
        if prev is None:
            continue  # a bridge: no cycle through it
        path, node = [], u  # edges from v to u, in order
        while prev[node] is not None:
            edge, back = prev[node]
            path.append((edge, back, node))
            node = back
        path.reverse()
        d = {i: 1.0}
        ok = True
        last = i
        for edge, a_node, _ in path:  # a_node joins ``last`` and ``edge``
            if a_node == free:
                break
            d[edge] = -coef_at[(a_node, last)] * d[last] / coef_at[(a_node, edge)]
            last = edge
        else:
            if u != free:
                ok = abs(coef_at[(u, last)] * d[last] + coef_at[(u, i)] * d[i]) < _TOL
        if len(d) < len(path) + 1:  # the cycle passes the free node: fill in backwards
            last = i
            for edge, _, b_node in reversed(path):
                if b_node == free:
                    break
                d[edge] = -coef_at[(b_node, last)] * d[last] / coef_at[(b_node, edge)]
                last = edge
        if not ok:
            continue
        up = [x[e] for e, s in d.items() if s > 0]
        down = [x[e] for e, s in d.items() if s < 0]
        t_lo = -min(up)
        t_hi = min(down) if down else np.inf
        out[i] = (x[i] + t_lo, x[i] + t_hi)
    return out


def _is_protected(low: float, high: float, primary: bool, threshold: int) -> bool:
    if high - low < 1 - _TOL:
        return False
    if primary and low > _TOL and high < threshold - _TOL:
        return False
    return True


def protect(
    values: np.ndarray,
    suppressed: np.ndarray,
    primary: np.ndarray,
    threshold: int,
    cons: list,
) -> np.ndarray:
    """Secondary suppression to a fixed point, then audit and complement until safe.

    ``values`` are the true counts (NaN where unavailable), ``suppressed`` the values hidden
    to begin with, ``primary`` those hidden because they are small (their range must reach 0
    or ``threshold``), and ``cons`` the additive relations ``(indices, coefficients, what)``
    among them, from one table or from every table of a run together. Returns the mask of
    values to hide.
    """
    suppressed = suppressed.copy()
    unavailable = np.isnan(values)
    known = np.where(unavailable, -1.0, values)
    # Hiding more values only widens what a reader can infer, so a value once shown to
    # be protected stays protected as the loop adds suppressions.
    safe: set[int] = set()
    while True:
        changed = True
        while changed:
            changed = False
            for idx, _, _ in cons:
                hidden = suppressed[idx] | unavailable[idx]
                if hidden.sum() == 1 and suppressed[idx].any():
                    choice = _pick(idx[~hidden], known)
                    if choice is not None:
                        suppressed[choice] = True
                        changed = True
        if not suppressed.any():
            return suppressed
        unknown = suppressed | unavailable
        inner = _cycle_ranges(values, unknown, suppressed, cons)
        target = suppressed & (known > 0)  # zeros are shown under the rules; see module doc
        doubtful = []
        for c in np.flatnonzero(target).tolist():
            if c in safe:
                continue
            if c in inner and _is_protected(*inner[c], bool(primary[c]), threshold):
                safe.add(c)
            else:
                doubtful.append(c)
        ranges = feasible_ranges(values, suppressed, cons, cells=doubtful) if doubtful else {}
        exposed = [c for c, (lo, hi) in sorted(ranges.items())
                   if not _is_protected(lo, hi, bool(primary[c]), threshold)]
        safe.update(c for c in ranges if c not in exposed)
        if not exposed:
            return suppressed
        added = False
        for c in exposed:
            near = [idx for idx, _, _ in cons if c in idx]
            pool = np.concatenate(near) if near else np.array([], dtype=int)
            pool = pool[~(suppressed[pool] | unavailable[pool])]
            choice = _pick(pool, known)
            if choice is not None and not suppressed[choice]:
                suppressed[choice] = True
                added = True
        if not added:
            warnings.warn(
                f"{len(exposed)} suppressed value(s) could not be protected further: every "
                "figure they are added up with is already hidden. Check the table's margins.",
                DataWarning,
                stacklevel=3,
            )
            return suppressed


# --------------------------------------------------------------------------- input
def _counts(table: pd.DataFrame, column: str) -> np.ndarray:
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype("Float64")
    problems = []
    bad = raw.notna() & values.isna()
    if bad.any():
        rows = ", ".join(repr(v) for v in raw[bad].head(3))
        problems.append(
            f"column {column!r}: {int(bad.sum())} value(s) are not numbers (e.g. {rows}); "
            "turn suppression markers into missing values before suppressing."
        )
    v = values.to_numpy(dtype=float, na_value=np.nan)
    frac = ~np.isnan(v) & ((v < 0) | (v != np.round(v)))
    if frac.any():
        first = table.index[frac][:3].tolist()
        problems.append(
            f"column {column!r}: {int(frac.sum())} value(s) are negative or not whole "
            f"(first rows {first}); counts must be whole numbers >= 0."
        )
    if problems:
        raise ValidationError(problems, what="table to suppress")
    return v


def round_counts(values: np.ndarray, round_to: int | None) -> np.ndarray:
    """Round counts to the nearest multiple of ``round_to``, halves up.

    Examples
    --------
    >>> round_counts(np.array([0, 2, 3, 7, 8, 12.0]), 5).tolist()
    [0.0, 0.0, 5.0, 5.0, 10.0, 10.0]
    """
    if round_to is None or round_to == 1:
        return np.asarray(values, dtype=float)
    return round_to * np.floor(np.asarray(values, dtype=float) / round_to + 0.5)


# --------------------------------------------------------------------------- main
def suppress_table(
    table: pd.DataFrame,
    *,
    rows: str,
    cols: str | None = None,
    n_pupils: str = N_PUPILS,
    n_events: str = "n_events",
    rate: str = "rate",
    per: float = 100.0,
    total: Any = "Total",
    rules: SuppressionRules | None = None,
) -> SuppressedTable:
    """Apply primary and secondary suppression (and optional rounding) to a count table.

    Parameters
    ----------
    table : DataFrame
        One row per cell, keyed by ``rows`` (and ``cols``), with counts of pupils and of
        events. Rows whose key is ``total`` are margins (row, column or grand totals);
        each must equal the sum of its cells.
    rows, cols : str
        Key columns. ``cols=None`` for a one-way table.
    n_pupils, n_events : str
        Count columns (missing values are "unavailable", shown as ``x``).
    rate : str
        Name of the rate column added: ``per * n_events / n_pupils`` from unrounded counts.
    per : float
        Scale of the rate (100: per cent, as DfE publishes).
    total : object
        The label of margins in the key columns.
    rules : SuppressionRules, optional
        Thresholds; defaults from :mod:`disparity.config`.

    Returns
    -------
    SuppressedTable
        ``published`` (values and GSS symbols), ``status`` (why), the rules and a note.

    Raises
    ------
    ValidationError
        Missing columns, duplicated keys, negative or fractional counts, events exceeding
        pupils, or margins that do not equal the sum of their cells.

    Examples
    --------
    >>> t = pd.DataFrame({"group": ["A", "B", "C", "Total"],
    ...                   "n_pupils": [120, 8, 300, 428], "n_events": [4, 0, 9, 13]})
    >>> out = suppress_table(t, rows="group")
    >>> out.formatted()[["group", "n_pupils", "n_events"]].to_numpy().tolist()
    [['A', 'c', 'c'], ['B', 'c', 'c'], ['C', '300', '9'], ['Total', '428', '13']]

    ``B`` has fewer than 10 pupils (primary); ``A``, the smallest other cell, is suppressed
    as well, or B could be recovered from the total.

    References
    ----------
    Hundepool, A. et al. (2012). *Statistical Disclosure Control*, section 4.2. Wiley.
    """
    rules = SuppressionRules() if rules is None else rules
    keys_cols = [rows] if cols is None else [rows, cols]
    missing = [c for c in keys_cols + [n_pupils, n_events] if c not in table.columns]
    if missing:
        raise ValidationError(
            [f"column {c!r} is missing; the table has {list(table.columns)}. Name the key "
             "and count columns with rows=, cols=, n_pupils=, n_events=." for c in missing],
            what="table to suppress",
        )
    if table.empty:
        raise ValidationError(["the table has no rows."], what="table to suppress")
    table = table.reset_index(drop=True)
    dup = table.duplicated(subset=keys_cols, keep=False)
    if dup.any():
        first = table.loc[dup, keys_cols].head(3).to_dict("records")
        raise ValidationError(
            [f"{int(dup.sum())} rows share their key {keys_cols} (first: {first}); each cell "
             "must appear once. Aggregate or drop the duplicates."],
            what="table to suppress",
        )
    pupils = _counts(table, n_pupils)
    events = _counts(table, n_events)
    over = ~np.isnan(pupils) & ~np.isnan(events) & (events > pupils)
    if over.any():
        raise ValidationError(
            [f"column {n_events!r} exceeds {n_pupils!r} in {int(over.sum())} rows (first rows "
             f"{np.flatnonzero(over)[:3].tolist()}); an event count cannot exceed the pupils "
             "it is counted among."],
            what="table to suppress",
        )
    keys = _cell_keys(table, rows, cols)
    cons = _constraints(keys, total)
    problems = []
    for name, v in ((n_pupils, pupils), (n_events, events)):
        for idx, coef, what in cons:
            if np.isnan(v[idx]).any():
                continue
            gap = float(np.dot(coef, v[idx]))
            if abs(gap) > 0.5:
                problems.append(
                    f"column {name!r}: the cells of {what} add up to "
                    f"{float(np.dot(coef[:-1], v[idx[:-1]])):.0f} but the total is "
                    f"{v[idx[-1]]:.0f}. Add the missing categories (e.g. unclassified) or "
                    f"drop that total."
                )
    if problems:
        raise ValidationError(problems, what="table to suppress")

    # pupils: primary, then secondary
    primary_p = (pupils >= 1) & (pupils < rules.min_pupils)
    supp_p = protect(pupils, primary_p, primary_p, rules.min_pupils, cons)
    # events: primary, plus every cell whose pupils are hidden, then secondary
    primary_e = (events >= 1) & (events < rules.min_events)
    supp_e = protect(events, primary_e | supp_p, primary_e, rules.min_events, cons)

    def status_of(v: np.ndarray, supp: np.ndarray, prim: np.ndarray) -> np.ndarray:
        s = np.full(v.shape, PUBLISHED, dtype=object)
        s[supp] = SECONDARY
        s[prim] = PRIMARY
        s[np.isnan(v)] = UNAVAILABLE
        return s

    st_p = status_of(pupils, supp_p, primary_p)
    st_e = status_of(events, supp_e, primary_e)
    st_r = np.full(pupils.shape, PUBLISHED, dtype=object)
    hidden_either = (st_p != PUBLISHED) | (st_e != PUBLISHED)
    st_r[hidden_either] = SECONDARY
    st_r[(st_p == PRIMARY) | (st_e == PRIMARY)] = PRIMARY
    st_r[(st_p == UNAVAILABLE) | (st_e == UNAVAILABLE)] = UNAVAILABLE
    st_r[(st_r == PUBLISHED) & (pupils == 0)] = NOT_APPLICABLE

    with np.errstate(divide="ignore", invalid="ignore"):
        rate_values = per * events / pupils
    pub_p = round_counts(pupils, rules.round_to)
    pub_e = round_counts(events, rules.round_to)

    published = table[keys_cols].copy()
    status = table[keys_cols].copy()
    for name, values, st, dtype in (
        (n_pupils, pub_p, st_p, "Int64"),
        (n_events, pub_e, st_e, "Int64"),
        (rate, rate_values, st_r, "Float64"),
    ):
        shown = st == PUBLISHED
        col = pd.array(np.where(shown, values, 0.0), dtype="Float64")
        col[~shown] = pd.NA
        published[name] = col.astype(dtype)
        status[name] = pd.Series(st, dtype=object)
    for name, st in ((n_pupils, st_p), (n_events, st_e), (rate, st_r)):
        published[f"{name}_symbol"] = pd.Series([_SYMBOL[s] for s in st], dtype=object)

    note = (
        f"c: suppressed to protect confidentiality (fewer than {rules.min_pupils} pupils, or "
        f"1 to {rules.min_events - 1} events, or a value that would reveal one); "
        "z: not applicable; x: not available."
    )
    if rules.round_to not in (None, 1):
        note += (
            f" Counts are rounded to the nearest {rules.round_to}; rates are computed from "
            "unrounded counts."
        )
    return SuppressedTable(
        published=published,
        status=status,
        rules=rules,
        note=note,
        value_columns=(n_pupils, n_events, rate),
    )
