"""A model file's data: read, kept to a year and levels, and turned into cells.

:func:`load_model_data` reads the model file's ``[data]`` (a cells table, a pupils table
collapsed to cells by the model's columns, or a DfE open-data file cut to the cells of one
characteristic) and says what it changed, in :class:`ModelData`.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from disparity.errors import DataWarning, DisparityError, SpecError
from disparity.spec import ModelSpec, formula_variables
from disparity.vocabulary import YEAR, events_column

__all__ = ["ModelData", "load_model_data"]


@dataclass(frozen=True)
class ModelData:
    """The cells a model is fitted to, and what was done to the data to get them.

    Attributes
    ----------
    frame : pandas.DataFrame
        Cells (events out of trials per row) ready for :func:`~disparity.design.build_design`.
    kind : str
        What the data were: ``"cells"``, ``"pupils"`` (collapsed here) or ``"dfe"``.
    notes : tuple of str
        Plain-English notes on rows dropped or collapsed (also in ``Design.notes`` and the
        fit's ``diagnostics["data"]``).
    n_rows_read : int
        Rows of the table as read (pupils, cells or DfE cells of the chosen slice).
    n_dropped_cells, n_dropped_pupils : int
        DfE cells dropped because a count the model uses was suppressed, and the pupils in
        them (where their headcount is published).
    source : str or None
        The file read, if any.
    """

    frame: pd.DataFrame
    kind: str
    notes: tuple[str, ...] = ()
    n_rows_read: int = 0
    n_dropped_cells: int = 0
    n_dropped_pupils: int = 0
    source: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (the fit's ``diagnostics["data"]``)."""
        return {
            "kind": self.kind,
            "source": self.source,
            "n_rows_read": int(self.n_rows_read),
            "n_cells": int(len(self.frame)),
            "n_dropped_cells": int(self.n_dropped_cells),
            "n_dropped_pupils": int(self.n_dropped_pupils),
            "notes": list(self.notes),
        }


def _frame(data: Any, spec: ModelSpec) -> pd.DataFrame:
    """The cells to fit (kept for callers of the earlier private helper)."""
    return load_model_data(spec, data).frame


def _no_data(spec: ModelSpec) -> SpecError:
    where = f" {str(spec.source)!r}" if spec.source is not None else ""
    return SpecError(
        f"no data to fit: model{where} has no [data] path and none was given; add "
        "[data] path = \"cells.csv\" to the model file or pass the data (--data)"
    )


def _guess_kind(columns: list[str], spec: ModelSpec) -> str:
    """Kind of a table from its columns; a table with the model's counts is cells."""
    from disparity.read import detect_kind

    names = set(columns)
    if spec.events in names and spec.trials in names:
        return "cells"
    if {"characteristic", "geographic_level"} <= names:
        return "dfe"  # a frame already read by disparity.dfe.read_dfe
    try:
        return detect_kind(pd.DataFrame(columns=columns))
    except DisparityError:
        return "cells"  # build_design then names the missing columns


def _year_text(value: Any) -> str:
    text = str(value).strip()
    m = re.fullmatch(r"(\d{4})/?(\d{2})", text)
    return f"{m.group(1)}/{m.group(2)}" if m else text


def _keep_year(frame: pd.DataFrame, year: str, what: str) -> pd.DataFrame:
    if YEAR not in frame.columns:
        raise SpecError(
            f"[data] year = {year!r} was given but the {what} table has no {YEAR!r} column; "
            "remove year from [data] or add the column"
        )
    values = frame[YEAR].astype(str).map(_year_text)
    keep = (values == _year_text(year)).to_numpy()
    if not keep.any():
        years = sorted(pd.unique(values))
        raise SpecError(
            f"[data] year = {year!r} is not in the {what} table; its years are "
            f"{', '.join(map(repr, years))}"
        )
    out = frame.loc[keep].reset_index(drop=True)
    for col in out.columns:  # drop the other years' categories
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    return out


def _keep_levels(
    frame: pd.DataFrame, keep: Any, spec: ModelSpec, kind: str
) -> tuple[pd.DataFrame, str]:
    """Keep the rows at the listed levels of each column of ``[data] keep``."""
    problems: list[str] = []
    mask = np.ones(len(frame), dtype=bool)
    for col, levels in keep.items():
        if col not in frame.columns:
            problems.append(f"column {col!r} is not in the data")
            continue
        values = frame[col].astype(str)
        present = set(pd.unique(values))
        absent = [lv for lv in levels if lv not in present]
        if absent:
            problems.append(f"level(s) {absent!r} of {col!r} are not in the data; levels are "
                            f"{', '.join(map(repr, sorted(present)))}")
        mask &= values.isin(list(levels)).to_numpy()
    if problems:
        raise SpecError("[data] keep does not match the data: " + "; ".join(problems))
    out = frame.loc[mask].reset_index(drop=True)
    for col in keep:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    dropped = int((~mask).sum())
    if kind == "pupils" or spec.trials not in frame.columns:
        what = f"{dropped:,} of {len(frame):,} rows"
    else:
        trials = pd.to_numeric(frame[spec.trials], errors="coerce")
        what = (f"{dropped:,} of {len(frame):,} cells ({int(trials[~mask].sum()):,} of "
                f"{int(trials.sum()):,} {spec.trials})")
    kept = "; ".join(f"{col} in {list(levels)!r}" for col, levels in keep.items())
    return out, f"[data] keep ({kept}) left out {what}"


def _model_columns(spec: ModelSpec) -> list[str]:
    """Columns the model uses: formula variables, then group columns, in order."""
    columns = list(formula_variables(spec.formula))
    for entry in spec.groups:
        columns.extend(part.strip() for part in entry.split("/"))
    return list(dict.fromkeys(columns))


def _pupil_outcome_and_by(columns: list[str], spec: ModelSpec) -> tuple[str, list[str]]:
    """The outcome column that counts into ``spec.events``, and the columns to collapse by."""
    if spec.events in columns:
        outcome = spec.events  # a count outcome on pupil rows, e.g. n_susp
    elif spec.events.startswith("n_") and spec.events[2:] in columns:
        outcome = spec.events[2:]  # perm_excl counted into n_perm_excl
    else:
        raise SpecError(
            f"the pupils table has no outcome for events {spec.events!r}: expected a column "
            f"{spec.events[2:] if spec.events.startswith('n_') else spec.events!r} "
            f"(columns are {', '.join(map(repr, columns))}); set [model] events to "
            "'n_<outcome>' for a 0/1 outcome column '<outcome>'"
        )
    if events_column(outcome) != spec.events:
        raise SpecError(
            f"events {spec.events!r}: a pupils table is collapsed to the count column "
            f"{events_column(outcome)!r}; set [model] events = {events_column(outcome)!r}"
        )
    by = list(spec.data_options.get("collapse_by") or _model_columns(spec))
    missing = [c for c in by if c not in columns]
    if missing:
        raise SpecError(
            f"cannot collapse the pupils table by {missing!r}: not among its columns "
            f"({', '.join(map(repr, columns))}); fix [data] collapse_by or the formula"
        )
    used = _model_columns(spec)
    absent = [c for c in used if c not in by]
    if absent:
        raise SpecError(
            f"[data] collapse_by {by!r} leaves out {absent!r}, which the model uses; "
            "add them to collapse_by (or leave collapse_by out)"
        )
    return outcome, by


def _collapse_pupils(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, str]:
    from disparity.cells import collapse

    outcome, by = _pupil_outcome_and_by([str(c) for c in frame.columns], spec)
    cells = collapse(frame, by, [outcome], trials=spec.trials)
    note = (f"{len(frame):,} pupil rows collapsed to {len(cells):,} cells by "
            f"{', '.join(by)} (events {spec.events} out of {spec.trials})")
    return cells, note


def _collapse_source(path: Any, spec: ModelSpec) -> tuple[pd.DataFrame, str, int]:
    """Pupil rows where they are (Parquet files, a glob, a database): checked, filtered
    (``year``, ``keep``, ``where``) and grouped in the engine; only cells come back."""
    from disparity.collapse_sql import collapse_source
    from disparity.sources import source_columns

    options = spec.data_options
    columns = [str(c) for c in source_columns(path, table=options.get("table"))]
    outcome, by = _pupil_outcome_and_by(columns, spec)
    keep = {c: list(v) for c, v in dict(options.get("keep", {})).items()}
    if "year" in options:
        if YEAR not in columns:
            raise SpecError(f"[data] year = {options['year']!r} was given but the pupils "
                            f"source has no {YEAR!r} column; remove year or add the column")
        keep[YEAR] = [_year_text(options["year"])]
    kind = "count" if outcome == spec.events else "binary"
    result = collapse_source(path, by, {outcome: kind}, table=options.get("table"),
                             trials=spec.trials, keep=keep or None,
                             where=options.get("where"))
    note = (f"{result.n_rows:,} pupil rows collapsed to {len(result.cells):,} cells by "
            f"{', '.join(by)} in {result.engine} (events {spec.events} out of {spec.trials})"
            + (f"; [data] where = \"{options['where']}\" kept {result.n_rows:,} of "
               f"{result.n_rows_read:,} rows" if options.get("where") else ""))
    return result.cells, note, int(result.n_rows_read)


def _is_source(path: Any) -> bool:
    """A path the engine reads: Parquet, a folder, a glob, or a database URL."""
    text = os.fspath(path)
    if "://" in text or any(ch in text for ch in "*?["):
        return True
    p = Path(text)
    return p.is_dir() or p.suffix.lower() in (".parquet", ".pq")


def _drop_suppressed(
    cells: pd.DataFrame, spec: ModelSpec, by: str | None = None
) -> tuple[pd.DataFrame, int, int, str]:
    """Drop DfE cells whose events or trials count is missing; say why."""
    counts = [c for c in (spec.events, spec.trials) if c in cells.columns]
    if not counts:
        return cells, 0, 0, ""
    missing = np.zeros(len(cells), dtype=bool)
    for col in counts:
        missing |= cells[col].isna().to_numpy()
    if not missing.any():
        return cells, 0, 0, ""
    dropped = cells.loc[missing]
    n_cells = int(missing.sum())
    n_pupils = 0
    if spec.trials in dropped.columns:
        n_pupils = int(pd.to_numeric(dropped[spec.trials], errors="coerce").fillna(0).sum())
    reasons = []
    for col in counts:
        reason_col = f"{col}_missing"
        na = dropped[col].isna()
        if not na.any():
            continue
        if reason_col in dropped.columns:
            counts_by = dropped.loc[na, reason_col].fillna("no reason given").value_counts()
            why = "; ".join(f"{n} {r}" for r, n in counts_by.items())
        else:
            why = f"{int(na.sum())} missing"
        reasons.append(f"{col}: {why}")
    suppressed_trials = (int(dropped[spec.trials].isna().sum())
                         if spec.trials in dropped.columns else 0)
    pupils_text = f"{n_pupils:,} pupils"
    if suppressed_trials:
        pupils_text += (f" (plus 1 or 2 in each of {suppressed_trials} cells whose headcount "
                        "is suppressed)")
    kept = cells.loc[~missing].reset_index(drop=True)
    for col in counts:
        kept[col] = kept[col].astype("int64")
    empty = ""
    if by is not None and by in kept.columns and spec.events in kept.columns:
        events_by = kept.groupby(by, observed=True, sort=False)[spec.events].sum()
        gone = [str(v) for v in pd.unique(cells[by]) if events_by.get(v, 0) == 0]
        if gone:
            empty = (f" After dropping them, {by} level(s) {', '.join(map(repr, gone))} have "
                     "no events left, so their rates cannot be estimated from these cells "
                     "(their effects run to minus infinity without a prior); consider a "
                     "coarser grouping or a national-level model for them.")
    note = (
        f"{n_cells:,} of {len(cells):,} DfE cells ({pupils_text}) were dropped because a count "
        f"the model uses is suppressed or missing ({'; '.join(reasons)}). A count suppressed "
        "with 'x' is 1 or 2, never 0, and cannot enter a likelihood. Leaving those cells out "
        "drops their events but keeps the cells with no events, so rates are biased "
        "downward: slightly for large groups, strongly for groups with few events per unit, "
        f"whose events are mostly in suppressed cells.{empty}"
    )
    return kept, n_cells, n_pupils, note


#: Markers of a count suppressed for confidentiality (GSS and DfE): censored, not missing.
CENSORED_MARKERS: tuple[str, ...] = ("x", "c", "[c]")
#: The range a DfE ``x`` stands for.
DFE_SUPPRESSED_RANGE: tuple[int, int] = (1, 2)


def _is_censored_reason(reason: Any) -> bool:
    if reason is None or (isinstance(reason, float) and np.isnan(reason)) or reason is pd.NA:
        return False
    marker = str(reason).split(":", 1)[0].strip().lower()
    return marker in CENSORED_MARKERS


def _censor_suppressed(
    cells: pd.DataFrame, spec: ModelSpec, *, low_high: tuple[int, int],
    totals: pd.DataFrame | None = None, unit: str | None = None, by: str | None = None,
    partial: bool = False,
) -> tuple[pd.DataFrame, int, int, list[str]]:
    """Keep DfE cells whose event count is suppressed, as a count known to lie in
    ``low_high`` (interval-censored), narrowed where the unit's published total allows.

    Returns the cells (events at the lower bound, ``<events>_upper`` at the upper), the
    cells and pupils dropped (headcount or event count missing for another reason), and
    notes. Where the unit's total is published, the suppressed cells of the unit add up to
    the total less its published cells (less than or equal to it where the breakdown leaves
    pupils out, as ethnicity does for pupils aged 4 and under), so each cell's range is
    narrowed to what that sum allows (with ``partial``, some groups were left out, and the
    sum is only bounded).
    """
    from disparity.vocabulary import upper_column

    events, trials = spec.events, spec.trials
    notes: list[str] = []
    reason = cells.get(f"{events}_missing")
    censored = (cells[events].isna()
                & (reason.map(_is_censored_reason) if reason is not None
                   else pd.Series(False, index=cells.index))).to_numpy(dtype=bool)
    no_trials = cells[trials].isna().to_numpy() if trials in cells.columns else \
        np.zeros(len(cells), bool)
    other_missing = cells[events].isna().to_numpy() & ~censored
    drop = no_trials | other_missing
    n_drop, pupils_drop = int(drop.sum()), 0
    if n_drop:
        pupils_drop = int(pd.to_numeric(cells.loc[drop, trials], errors="coerce").fillna(0).sum())
        parts = []
        if (no_trials & drop).any():
            parts.append(f"{int(no_trials.sum()):,} whose headcount is suppressed (1 or 2 "
                         "pupils: a cell cannot be fitted without its pupils)")
        if other_missing[~no_trials].any():
            parts.append(f"{int((other_missing & ~no_trials).sum()):,} whose {events} is "
                         "not available for another reason")
        notes.append(f"{n_drop:,} of {len(cells):,} DfE cells were left out: "
                     + " and ".join(parts) + ".")
    kept = cells.loc[~drop].copy()
    cens = censored[~drop]
    low, high = low_high
    lower = kept[events].to_numpy(dtype=float, na_value=np.nan)
    upper = lower.copy()
    lower[cens], upper[cens] = low, high
    if spec.family == "binomial" and trials in kept.columns:  # never more than the pupils
        pupils = kept[trials].to_numpy(dtype=float)
        upper = np.minimum(upper, pupils)
        lower = np.minimum(lower, upper)
    narrowed = 0
    if totals is not None and unit is not None and cens.any() and unit in kept.columns:
        from disparity.dfe import PARTITIONS

        how = PARTITIONS.get(by or "", None)
        if partial and how == "equal":  # some groups were left out ([data] keep)
            how = "at_most"
        keys = [c for c in ("year", unit) if c in kept.columns and c in totals.columns]
        known = totals.dropna(subset=[events]).set_index(keys)[events]
        for key, idx in kept.groupby(keys, sort=False).indices.items():
            key = key if isinstance(key, tuple) else (key,)
            mask = cens[idx]
            if not mask.any() or how not in ("equal", "at_most"):
                continue
            try:
                total = float(known.loc[key if len(keys) > 1 else key[0]])
            except KeyError:
                continue
            rest = total - np.nansum(lower[idx][~mask])  # the suppressed cells' sum (or cap)
            lo_i, hi_i = lower[idx][mask], upper[idx][mask]
            new_hi = np.minimum(hi_i, rest - (lo_i.sum() - lo_i))
            new_lo = np.maximum(lo_i, rest - (hi_i.sum() - hi_i)) if how == "equal" else lo_i
            if (new_lo > new_hi).any():  # inconsistent published figures: keep the ranges
                continue
            changed = (new_lo != lo_i) | (new_hi != hi_i)
            narrowed += int(changed.sum())
            where = idx[mask]
            lower[where], upper[where] = new_lo, new_hi
    kept[events] = lower.astype(np.int64)
    kept[upper_column(events)] = upper.astype(np.int64)
    if trials in kept.columns:
        kept[trials] = kept[trials].astype(np.int64)
    n_cens = int(cens.sum())
    if n_cens:
        exact = int(((upper == lower) & cens).sum())
        notes.append(
            f"{n_cens:,} of {len(kept):,} cells have their {events} suppressed at source "
            f"('x': {low} or {high}). They are kept: each enters the likelihood as a count "
            f"known to lie between {low} and {high} (interval-censored), so no group or unit "
            "is lost and rates are not biased down by leaving those cells out"
            + (f"; the units' published totals narrowed {narrowed:,} of them"
               + (f", {exact:,} to an exact count" if exact else "") if narrowed else "")
            + ".")
    return kept.reset_index(drop=True), n_drop, pupils_drop, notes


def _censored_markers(frame: pd.DataFrame, events: str) -> np.ndarray:
    """Rows whose event count is a suppression marker (``x``, ``c``, ``[c]``)."""
    if events not in frame.columns or pd.api.types.is_numeric_dtype(frame[events]):
        return np.zeros(len(frame), dtype=bool)
    text = frame[events].astype("string").str.strip().str.lower()
    return text.isin(list(CENSORED_MARKERS)).fillna(False).to_numpy(dtype=bool)


def _censor_marked(frame: pd.DataFrame, spec: ModelSpec, marked: np.ndarray,
                   options: Any) -> tuple[pd.DataFrame, str]:
    """A cells table's suppressed event counts as interval-censored counts (or dropped,
    with ``[data] suppressed = "drop"``)."""
    from disparity.vocabulary import upper_column

    events = spec.events
    low, high = tuple(options.get("suppressed_range", DFE_SUPPRESSED_RANGE))
    n = int(marked.sum())
    if options.get("suppressed", "censored") == "drop":
        kept = frame.loc[~marked].reset_index(drop=True)
        kept[events] = kept[events].astype(np.int64)
        note = (f"{n:,} of {len(frame):,} cells with a suppressed {events} (x, c or [c]) "
                "were dropped ([data] suppressed = 'drop'): rates are biased down, most for "
                "groups whose events are mostly in those cells.")
        warnings.warn(note, DataWarning, stacklevel=3)
        return kept, note
    out = frame.copy()
    values = out[events].to_numpy(dtype=float, na_value=np.nan)
    upper = values.copy()
    values[marked], upper[marked] = low, high
    if spec.family == "binomial" and spec.trials in out.columns:  # never more than the pupils
        trials = out[spec.trials].to_numpy(dtype=float)
        upper = np.minimum(upper, trials)
        values = np.minimum(values, upper)
    out[events] = values.astype(np.int64)
    out[upper_column(events)] = upper.astype(np.int64)
    return out, (f"{n:,} of {len(frame):,} cells have their {events} suppressed (x, c or "
                 f"[c]). They are kept: each enters the likelihood as a count known to lie "
                 f"between {low} and {high} (interval-censored), so no cell is lost.")


def load_model_data(
    spec: ModelSpec,
    data: pd.DataFrame | str | os.PathLike[str] | None = None,
) -> ModelData:
    """Read the data of a model and turn it into cells, as its ``[data]`` table says.

    Three kinds of data are understood (``[data] kind``; by default told from the columns:
    a table with the model's events and trials columns is cells, a DfE open-data file is
    ``dfe``, a table with ``pupil_id`` is ``pupils``):

    ``cells``
        Used as read (``year`` keeps one academic year).
    ``pupils``
        One row per pupil: kept to ``year`` if given, then collapsed to cells by
        :func:`disparity.cells.collapse` by ``collapse_by`` (default: the formula's and the
        groups' columns). The event count ``n_<outcome>`` comes from the 0/1 (or count)
        column ``<outcome>``; pupils and events are conserved (checked).
    ``dfe``
        A DfE exclusions file (:func:`disparity.dfe.read_dfe`), cut with
        :func:`disparity.dfe.dfe_cells` by ``by`` (characteristic), ``unit``, ``year`` and
        ``school_type`` (default ``"Total"``). Cells whose event or headcount is suppressed
        are dropped with a :class:`~disparity.errors.DataWarning`.

    Any kind: ``keep = {column: [levels]}`` then keeps only the rows at those levels (before
    pupils are collapsed); the rows left out are counted in the notes.

    Parameters
    ----------
    spec : ModelSpec
        Its ``data_path`` and ``data_options`` (the ``[data]`` table) say what to read.
    data : DataFrame or path, optional
        Data to use instead of ``spec.data_path``; the ``[data]`` options still apply.

    Returns
    -------
    ModelData
        The cells, the kind, and notes on what was dropped or collapsed.

    Raises
    ------
    SpecError
        No data, an option that does not apply to the kind of data, a year not in the data,
        or a pupils table without the model's outcome or columns.
    ReadError, ValidationError
        From the readers and :func:`~disparity.cells.collapse`.

    Warns
    -----
    DataWarning
        DfE cells with a suppressed count were dropped (how many cells and pupils, and the
        downward bias this gives).

    Notes
    -----
    DfE suppresses counts of 1 or 2 (GSS symbol ``x``). A suppressed count is not zero, and
    a likelihood needs a number, so such cells are left out. This selects on the outcome:
    cells with 0 events stay, cells with 1 or 2 go, so rates are biased downward, little for
    large groups and much for groups with few events per unit. In the 2016/17 LA file by
    ethnicity, 660 of 2,870 cells (867,379 of 8.0 million pupils) are dropped, and the Irish,
    Chinese and Any other Asian background groups are left with no events at all (the
    warning names such levels).

    References
    ----------
    Government Statistical Service (2021). *Symbols in tables, definitions and guidance*.

    Examples
    --------
    >>> import pandas as pd
    >>> pupils = pd.DataFrame({"pupil_id": [1, 2, 3, 4], "sen": ["none", "ehcp", "none", "none"],
    ...                        "perm_excl": [0, 1, 1, 0]})
    >>> loaded = load_model_data(ModelSpec(formula="sen"), pupils)
    >>> loaded.kind
    'pupils'
    >>> loaded.frame
        sen  n_pupils  n_perm_excl
    0  ehcp         1            1
    1  none         3            1
    """
    options = spec.data_options
    kind = options.get("kind")
    source: str | None = None
    if isinstance(data, pd.DataFrame):
        frame = data
        if kind is None:
            kind = _guess_kind([str(c) for c in frame.columns], spec)
    else:
        path = data if data is not None else spec.data_path
        if path is None:
            raise _no_data(spec)
        from disparity.read import read_columns, read_data

        source = str(path)
        if kind is None:
            if _is_source(path) and not Path(os.fspath(path)).is_file():
                from disparity.sources import source_columns

                kind = _guess_kind([str(c) for c in source_columns(
                    path, table=options.get("table"))], spec)
            else:
                kind = _guess_kind(read_columns(path), spec)
        if kind == "pupils" and _is_source(path):  # grouped where the rows are
            frame, note, n_rows_read = _collapse_source(path, spec)
            return ModelData(frame=frame, kind=kind, notes=(note,),
                             n_rows_read=n_rows_read, source=source)
        if kind == "dfe":
            _, frame = read_data(path, kind="dfe")
        else:
            from disparity.read import read_frame

            frame = read_frame(path)
    censored_note = None
    if kind == "cells":  # the check `disparity validate` makes, rows as in the file
        from disparity.validate import validate_model_cells

        marked = _censored_markers(frame, spec.events)
        frame = validate_model_cells(frame, events=spec.events, trials=spec.trials,
                                     family=spec.family, allow_missing=bool(marked.any()))
        if marked.any():
            frame, censored_note = _censor_marked(frame, spec, marked, options)
    wrong = [k for k, kinds in (("by", ("dfe",)), ("unit", ("dfe",)),
                                ("school_type", ("dfe",)), ("collapse_by", ("pupils",)))
             if k in options and kind not in kinds]
    if wrong:
        raise SpecError(
            f"[data] {', '.join(wrong)} given, but the data are a {kind} table"
            f"{' (' + source + ')' if source else ''}; those keys apply to "
            + "; ".join(f"{k}: kind {'dfe' if k != 'collapse_by' else 'pupils'}" for k in wrong)
            + ". Remove them or set [data] kind."
        )

    notes: list[str] = []
    n_dropped_cells = n_dropped_pupils = 0
    n_rows_read = len(frame)
    if kind == "dfe":
        from disparity.dfe import dfe_cells

        if "characteristic" not in frame.columns:
            raise SpecError(
                "[data] kind = 'dfe' but the table was not read as a DfE file (no "
                "'characteristic' column); pass the file's path, or a frame from "
                "disparity.dfe.read_dfe"
            )
        cells = dfe_cells(frame, by=options.get("by"), unit=options.get("unit"),
                          year=options.get("year"),
                          school_type=options.get("school_type", "Total"))
        n_rows_read = len(cells)
        if "keep" in options:  # before dropping, so the warning is about the cells kept
            cells, note = _keep_levels(cells, options["keep"], spec, kind)
            notes.append(note)
        if options.get("suppressed", "censored") == "drop":
            frame, n_dropped_cells, n_dropped_pupils, note = _drop_suppressed(
                cells, spec, options.get("by"))
            if note:
                notes.append(note)
                warnings.warn(note, DataWarning, stacklevel=2)
        else:
            totals = None
            if options.get("unit") not in (None, "national"):
                totals = dfe_cells(frame, by=None, unit=options.get("unit"),
                                   year=options.get("year"),
                                   school_type=options.get("school_type", "Total"))
            frame, n_dropped_cells, n_dropped_pupils, more = _censor_suppressed(
                cells, spec, low_high=tuple(options.get("suppressed_range",
                                                        DFE_SUPPRESSED_RANGE)),
                totals=totals, unit=options.get("unit"), by=options.get("by"),
                partial="keep" in options)
            notes += more
    else:
        if "year" in options:
            frame = _keep_year(frame, options["year"], kind)
        if "keep" in options:
            frame, note = _keep_levels(frame, options["keep"], spec, kind)
            notes.append(note)
    if kind == "pupils":
        if options.get("where"):
            from disparity.formula import parse_filter

            keep_rows = parse_filter(options["where"]).mask(frame)
            notes.append(f"[data] where = \"{options['where']}\" kept {int(keep_rows.sum()):,} "
                         f"of {len(frame):,} pupil rows")
            frame = frame.loc[keep_rows].reset_index(drop=True)
        frame, note = _collapse_pupils(frame, spec)
        notes.append(note)
    if censored_note:
        notes.append(censored_note)
    return ModelData(frame=frame, kind=kind, notes=tuple(notes), n_rows_read=n_rows_read,
                     n_dropped_cells=n_dropped_cells, n_dropped_pupils=n_dropped_pupils,
                     source=source)
