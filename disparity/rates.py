"""Raw disproportionality tables from any supported input: the ``disparity rates`` job.

Reads a DfE EES file, a pupils table or a cells table, turns it into cells of the requested
characteristic within the requested unit, and applies
:func:`disparity.measures.disproportionality`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import config
from .errors import SpecError, ValidationError
from .vocabulary import YEAR, events_column

#: DfE geographic units accepted by ``unit`` for DfE files.
DFE_UNITS = ("national", "region", "la", "school")


def _normalise_year(year: str | None) -> str | None:
    if year is None:
        return None
    text = str(year).strip()
    if len(text) == 6 and text.isdigit():
        return f"{text[:4]}/{text[4:]}"
    return text


def _filter_year(frame: pd.DataFrame, year: str | None) -> pd.DataFrame:
    if year is None:
        return frame
    if YEAR not in frame.columns:
        raise ValidationError(
            [f"--year {year!r} was given but the data have no {YEAR!r} column. "
             "Drop --year, or add a year column."]
        )
    kept = frame[frame[YEAR].astype(str) == year]
    if kept.empty:
        present = ", ".join(repr(y) for y in sorted(frame[YEAR].astype(str).unique()))
        raise ValidationError(
            [f"column {YEAR!r}: no rows for year {year!r}. Years present: {present}."]
        )
    return kept


def rates_table(
    path: str | Path,
    *,
    outcome: str,
    by: str,
    unit: str | None = None,
    year: str | None = None,
    reference: str | None = None,
    comparison: str | None = None,
    kind: str | None = None,
    school_type: str = "Total",
    min_n_size: int | None = None,
    min_cell_size: int | None = None,
    threshold: float | None = None,
    ci_prob: float | None = None,
) -> pd.DataFrame:
    """Raw risks and ratios of ``outcome`` by ``by`` within ``unit``, from a data file.

    Parameters
    ----------
    path : path
        A DfE EES exclusions file, a pupils table or a cells table (CSV or Parquet).
    outcome : str
        Outcome name: ``perm_excl``, ``any_susp``, ``n_susp`` for pupils and cells;
        the file's own names (``perm_excl``, ``fixed_excl``, ``one_plus_fixed``) for DfE files.
    by : str
        The characteristic compared, e.g. ``ethnicity``.
    unit : str, optional
        The unit within which groups are compared (``la``, ``school``, ``region``, ``year``);
        national when omitted.
    year : str, optional
        Keep one academic year, ``"2016/17"`` or ``"201617"``.
    reference, comparison
        The comparison group: ``others`` (all other pupils in the unit; the default),
        ``reference`` (the named group; the default when ``reference`` is given),
        ``alternate`` or ``weighted``; see :func:`disparity.measures.disproportionality`.

    Returns
    -------
    DataFrame
        One row per unit x group; see :func:`disparity.measures.disproportionality`.
    """
    from .measures import disproportionality
    from .read import read_data

    counts_of_events = {"fixed_excl": "one_plus_fixed", "n_susp": "any_susp",
                        "susp": "any_susp", "n_fixed_excl": "n_one_plus_fixed"}
    if outcome in counts_of_events:
        raise SpecError(
            f"outcome {outcome!r} counts events (a pupil can be suspended several times), so "
            "it has no risk or risk ratio: a risk counts pupils with at least one event. Use "
            f"--outcome {counts_of_events[outcome]} (pupils with one or more), or a model with "
            "a count family (poisson or negative_binomial) for suspensions per pupil")
    comparison = comparison or ("reference" if reference is not None else "others")
    year = _normalise_year(year)
    kind, frame = read_data(path, kind=kind)
    units: list[str] = [] if unit in (None, "national") else [unit]
    unit_totals: pd.DataFrame | None = None

    if kind == "dfe":
        from .dfe import dfe_cells

        cells = dfe_cells(frame, by=by, unit=unit, year=year, school_type=school_type)
        # The file's own Total rows give each unit's others, so one suppressed group does
        # not hide every comparison.
        unit_totals = dfe_cells(frame, by=None, unit=unit, year=year, school_type=school_type)
        if year is None and YEAR in cells.columns and cells[YEAR].nunique() > 1:
            units = [YEAR, *units]
        if not units:
            unit_totals = unit_totals.head(1) if len(unit_totals) == 1 else unit_totals
    else:
        if kind == "pupils":
            from .cells import collapse
            from .validate import validate_pupils

            frame = validate_pupils(frame)
            frame = _filter_year(frame, year)
            keys = [by, *units]
            if year is None and YEAR in frame.columns and frame[YEAR].nunique() > 1:
                keys.append(YEAR)
                units = [*units, YEAR] if YEAR not in units else units
            cells = collapse(frame, by=list(dict.fromkeys(keys)))
        else:
            from .validate import validate_cells

            ev = events_column(outcome)
            cells = validate_cells(frame, by=[by, *units], events=[ev], allow_missing=True,
                                   unique=False)
            cells = _filter_year(cells, year)

    table = disproportionality(
        cells,
        outcome=outcome,
        by=by,
        unit=(units[0] if len(units) == 1 else units) if units else None,
        comparison=comparison,
        reference=reference,
        min_n_size=config.MIN_N_SIZE if min_n_size is None else min_n_size,
        min_cell_size=config.MIN_CELL_SIZE if min_cell_size is None else min_cell_size,
        ci_prob=config.CI_PROB if ci_prob is None else ci_prob,
        threshold=threshold,
        unit_totals=unit_totals,
    )
    return _with_la_names(table, cells)


def _with_la_names(table: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """``la_name`` beside each ``la`` code, where the data name the LAs."""
    if "la" not in table.columns or "la_name" not in cells.columns or "la_name" in table:
        return table
    names = cells[["la", "la_name"]].dropna().drop_duplicates("la", keep="last")
    out = table.merge(names, on="la", how="left")
    columns = list(table.columns)
    columns.insert(columns.index("la") + 1, "la_name")
    return out[columns]
