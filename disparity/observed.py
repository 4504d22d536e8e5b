"""Observed statistics of a model's cells: counts by margin, crude ratios, unit labels and
indirectly standardised unit ratios.

These are the numbers built directly on counts. Every one of them leaves a run only through
the publish stage's disclosure control (:mod:`disparity.report.disclosure`), where a count
of 1 or 2, or a rate or ratio built on one, is never published.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from disparity.estimates import SUMMARY_COLUMNS, UNIT_COLUMNS
from disparity.quantiles import two_sided_z
from disparity.vocabulary import YEAR

__all__ = ["crude_rows", "unit_labels", "cells_summary", "model_variables",
           "unit_standardised_rows"]


def crude_rows(cells: pd.DataFrame, spec: Any, variable: str, levels: tuple[str, ...],
                reference: str, terms: Mapping[str, str], ci_prob: float) -> pd.DataFrame:
    """Crude ratios and differences of each level against the reference, from the cells.

    Binomial: risk ratios with Katz intervals and Newcombe risk differences
    (:func:`disparity.measures.disproportionality`, no minimum sizes). Count families: rate
    ratios ``(e1 / n1) / (e0 / n0)`` with the Poisson interval
    ``exp(log RR +/- z sqrt(1 / e1 + 1 / e0))`` and rate differences with the Wald interval
    ``+/- z sqrt(e1 / n1**2 + e0 / n0**2)`` (Rothman, Greenland and Lash 2008, *Modern
    Epidemiology*, 3rd ed., chapter 14).
    """
    from disparity.measures import disproportionality

    work = pd.DataFrame({
        variable: cells[variable].astype(str).to_numpy(),
        "n_events": pd.to_numeric(cells[spec.events]).to_numpy(dtype=float),
        "n_pupils": pd.to_numeric(cells[spec.trials]).to_numpy(dtype=float),
    })
    if spec.family == "binomial":
        out = disproportionality(work, outcome="n_events", by=variable, comparison="reference",
                                 reference=reference, trials="n_pupils", min_n_size=0,
                                 min_cell_size=0, ci_prob=ci_prob)
        out = out.set_index(out["group"].astype(str))
        methods = ("katz", "newcombe")
    else:
        sums = work.groupby(variable, sort=False)[["n_events", "n_pupils"]].sum()
        e0, n0 = sums.loc[reference]
        e1, n1 = sums["n_events"].to_numpy(), sums["n_pupils"].to_numpy()
        z = two_sided_z(ci_prob)
        with np.errstate(divide="ignore", invalid="ignore"):
            rr = (e1 / n1) / (e0 / n0)
            half = z * np.sqrt(1 / e1 + 1 / e0)
            rd = e1 / n1 - e0 / n0
            rd_half = z * np.sqrt(e1 / n1**2 + e0 / n0**2)
        out = pd.DataFrame({
            "n_events": e1, "n_pupils": n1, "risk": e1 / n1, "comparison_risk": e0 / n0,
            "risk_ratio": rr, "conf_low": rr * np.exp(-half), "conf_high": rr * np.exp(half),
            "risk_difference": rd, "rd_low": rd - rd_half, "rd_high": rd + rd_half,
            "note": np.where(e1 > 0, "", "no events: no interval"),
        }, index=sums.index.astype(str))
        methods = ("poisson", "wald")
    censored = _censored_levels(cells, spec, variable)
    rows = []
    for level in levels:
        if level == reference or level not in out.index:
            continue
        r = out.loc[level].copy()
        if level in censored or reference in censored:  # a count suppressed at source
            r[["risk", "comparison_risk", "risk_ratio", "conf_low", "conf_high",
               "risk_difference", "rd_low", "rd_high", "n_events"]] = np.nan
            r["note"] = "not available: includes counts suppressed at source"
        base = {"term": terms.get(level, f"{variable}[T.{level}]"), "ci_prob": ci_prob,
                "engine": "", "variable": variable, "level": level, "reference": reference,
                "rate": r["risk"], "rate_reference": r["comparison_risk"],
                "n_events": r["n_events"], "n_pupils": r["n_pupils"], "std_error": np.nan,
                "note": str(r["note"] or "")}
        rows.append({**base, "estimand": "crude_rate_ratio", "estimate": r["risk_ratio"],
                     "conf_low": r["conf_low"], "conf_high": r["conf_high"],
                     "method": methods[0]})
        rows.append({**base, "estimand": "crude_rate_difference",
                     "estimate": r["risk_difference"], "conf_low": r["rd_low"],
                     "conf_high": r["rd_high"], "method": methods[1]})
    return pd.DataFrame(rows)



def unit_labels(cells: pd.DataFrame, design: Any) -> dict[str, dict[str, str]]:
    """Readable names of units, by group term: ``"Bury (E08000002)"`` where the data have the
    unit's name (DfE files: ``la_name`` beside ``la``); the most recent name of a code wins."""
    out: dict[str, dict[str, str]] = {}
    for g in design.groups:
        if len(g.columns) != 1 or f"{g.columns[0]}_name" not in cells.columns:
            continue
        code, name = g.columns[0], f"{g.columns[0]}_name"
        pairs = cells[[*([YEAR] if YEAR in cells.columns else []), code, name]].dropna()
        if YEAR in pairs.columns:
            pairs = pairs.sort_values(YEAR, kind="mergesort")
        names = dict(zip(pairs[code].astype(str), pairs[name].astype(str)))
        out[g.name] = {u: f"{names[u]} ({u})" for u in map(str, g.levels) if u in names}
    return out



def cells_summary(design: Any, frame: pd.DataFrame, spec: Any) -> pd.DataFrame:
    """Observed pupils and events by each variable's level, each unit, and year (aggregates)."""
    events = np.asarray(design.events, dtype=float)
    trials = np.asarray(design.trials, dtype=float)
    parts = []
    variables = model_variables(spec, design)
    for variable, levels in variables.items():
        codes = design.data[variable].astype(str).to_numpy()
        for level in levels:
            m = codes == str(level)
            parts.append(("variable", variable, str(level), "", trials[m].sum(), events[m].sum()))
    for g in design.groups:
        idx = np.asarray(g.index)
        n = np.bincount(idx, weights=trials, minlength=g.n_levels)
        e = np.bincount(idx, weights=events, minlength=g.n_levels)
        parts += [("unit", g.name, str(lv), "", n[i], e[i]) for i, lv in enumerate(g.levels)]
    if YEAR in frame.columns and frame[YEAR].nunique() > 1:
        years = frame[YEAR].astype(str).to_numpy()
        f_events = pd.to_numeric(frame[spec.events]).to_numpy(dtype=float)
        f_trials = pd.to_numeric(frame[spec.trials]).to_numpy(dtype=float)
        for year in sorted(set(years)):
            in_year = years == year
            parts.append(("trend", "all", "all", year, f_trials[in_year].sum(),
                          f_events[in_year].sum()))
            for variable, levels in variables.items():
                if variable not in frame.columns:
                    continue
                codes = frame[variable].astype(str).to_numpy()
                for level in levels:
                    m = in_year & (codes == str(level))
                    parts.append(("trend", variable, str(level), year, f_trials[m].sum(),
                                  f_events[m].sum()))
    out = pd.DataFrame(parts, columns=list(SUMMARY_COLUMNS))
    for col in ("n_pupils", "n_events"):
        values = out[col].to_numpy(dtype=float)
        out[col] = values.astype(np.int64) if np.all(values == np.round(values)) else values
    return out



def model_variables(spec: Any, design: Any) -> dict[str, tuple[str, ...]]:
    """Categorical variables of the formula and their levels, in formula order."""
    from disparity.spec import formula_variables

    order = [v for v in formula_variables(spec.formula) if v in design.levels]
    order += [v for v in design.levels if v not in order]
    return {v: tuple(design.levels[v]) for v in order}



def unit_standardised_rows(fit: Any, design: Any, group: Any) -> pd.DataFrame:
    """Indirectly standardised ratios ``O / E`` of the units of one group term.

    ``E`` sums, over the unit's cells, ``trials x`` the rate the model predicts from the
    fixed effects alone (every group effect and slope at zero): the events expected of the
    unit given its pupils' characteristics, at an average unit. Point estimates only.
    """
    from scipy.special import expit

    eta = np.asarray(design.X, dtype=float) @ np.asarray(fit.coef, dtype=float)
    rate = expit(eta) if design.family == "binomial" else np.exp(eta)
    trials = np.asarray(design.trials, dtype=float)
    events = np.asarray(design.events, dtype=float)
    idx = np.asarray(group.index)
    expected = np.bincount(idx, weights=trials * rate, minlength=group.n_levels)
    observed = np.bincount(idx, weights=events, minlength=group.n_levels)
    n = np.bincount(idx, weights=trials, minlength=group.n_levels)
    if getattr(design, "events_upper", None) is not None:  # suppressed at source: unknown
        high = np.bincount(idx, weights=np.asarray(design.events_upper, dtype=float),
                           minlength=group.n_levels)
        observed = np.where(high == observed, observed, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = observed / expected
        observed_rate = observed / n
    units = list(map(str, group.levels))
    return pd.DataFrame({
        "estimand": "unit_standardised_ratio", "term": units, "estimate": ratio,
        "engine": fit.engine, "group_term": group.name, "unit": units, "variable": "",
        "level": "", "reference": "", "n_pupils": n, "n_events": observed,
        "observed_rate": observed_rate, "method": "indirect standardisation (fixed effects)",
        "expected_events": expected,
    }).reindex(columns=list(UNIT_COLUMNS))


def _censored_levels(cells: pd.DataFrame, spec: Any, variable: str) -> set[str]:
    """Levels of ``variable`` whose event count includes a count suppressed at source (an
    ``<events>_upper`` above the events in some cell)."""
    from disparity.vocabulary import upper_column

    column = upper_column(spec.events)
    if column not in cells.columns:
        return set()
    gap = (pd.to_numeric(cells[column]).to_numpy(dtype=float)
           != pd.to_numeric(cells[spec.events]).to_numpy(dtype=float))
    return set(cells.loc[gap, variable].astype(str))
