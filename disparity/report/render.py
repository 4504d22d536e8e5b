"""Render a run folder's saved files into figures, ``report.md`` and ``report.html``.

Everything comes from the files :func:`disparity.runner.run_model` saved
(``estimates.csv``, ``unit_effects.csv``, ``cells_summary.csv``, ``diagnostics.json``), so a
report can be redrawn without refitting and gives the same bytes each time. Counts pass
through disclosure control (:func:`~disparity.report.suppress.suppress_table`) before they
are formatted. ``report.md`` links the PNG figures in ``figures/``; ``report.html`` embeds
them as base64 data URIs and stands alone.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import config
from ..errors import ReadError
from . import document as doc
from .tables import (format_count, format_estimate, format_probability, format_ratio)

__all__ = ["render_report", "load_run"]

_TEXT = ("estimand", "term", "engine", "variable", "level", "reference", "group_effects",
         "standard", "step_label", "formula", "groups", "method", "note", "group_term", "unit",
         "margin", "by", "year", "label", "flag_fdr")
FIGURES = "figures"


# --------------------------------------------------------------------------- reading
#: Files a report is drawn from (all published, all disclosure-controlled).
SAVED_FILES = ("estimates.csv", "unit_effects.csv", "cells_summary.csv", "diagnostics.json")
#: Symbols a published value may be replaced by (GSS: suppressed, unavailable, not
#: applicable).
_SYMBOLS = ("c", "x", "z")


def _parse(data: bytes, name: str) -> pd.DataFrame:
    """A published CSV: text columns as text; number columns as floats, with a
    ``<column>_symbol`` column where some values are a symbol instead."""
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ReadError(f"{name} could not be read as a table ({exc}); run the model again")
    out: dict[str, Any] = {}
    for col in raw.columns:
        text = raw[col]
        if col in _TEXT:
            out[col] = text
            continue
        symbol = text.isin(_SYMBOLS)
        numbers = pd.to_numeric(text.mask(symbol | (text == "")), errors="coerce")
        if numbers.isna().sum() > (symbol | (text == "")).sum():
            raise ReadError(f"{name}: column {col!r} holds values that are neither numbers nor "
                            "the symbols c, x, z; the file was changed after the run")
        out[col] = numbers.astype(float)
        if symbol.any():
            out[f"{col}_symbol"] = text.where(symbol, "")
    return pd.DataFrame(out, index=raw.index)


def read_tables(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The saved tables of a run (``estimates``, ``units``, ``cells``, ``diagnostics``) from
    the bytes of its published files."""
    missing = [f for f in SAVED_FILES if f not in files]
    if missing:
        raise ReadError(f"{', '.join(missing)} not found: not a run folder written by "
                        "`disparity run` (or a file was removed); run the model again")
    try:
        diagnostics = json.loads(files["diagnostics.json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReadError(f"diagnostics.json is not valid JSON ({exc}); run the model again")
    if "run" not in diagnostics:
        raise ReadError("diagnostics.json was written by `disparity fit`, not `disparity "
                        "run`; a report needs `disparity run MODEL.toml -o DIR`")
    return {
        "estimates": _parse(files["estimates.csv"], "estimates.csv"),
        "units": _parse(files["unit_effects.csv"], "unit_effects.csv"),
        "cells": _parse(files["cells_summary.csv"], "cells_summary.csv"),
        "diagnostics": diagnostics,
    }


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved files of a run folder: ``estimates``, ``units``, ``cells``, ``diagnostics``."""
    run_dir = Path(run_dir)
    files = {}
    for name in SAVED_FILES:
        path = run_dir / name
        if path.is_file():
            files[name] = path.read_bytes()
    if "diagnostics.json" not in files:
        raise ReadError(f"diagnostics.json not found in {str(run_dir)!r}: not a run folder "
                        "written by `disparity run`; give the folder passed to -o")
    return read_tables(files)


# --------------------------------------------------------------------------- words
class _Words:
    """The vocabulary of one run: ratio names, rates, interval probability."""

    def __init__(self, run: Mapping[str, Any]) -> None:
        spec = run["spec"]
        self.binomial = spec["family"] == "binomial"
        self.ratio = "risk ratio" if self.binomial else "rate ratio"
        self.rate = "risk" if self.binomial else "rate"
        self.odds = "odds ratio" if self.binomial else "rate ratio"
        self.ci = f"{run['report']['ci_prob'] * 100:g}%"
        self.events = spec["events"]
        self.trials = spec["trials"]
        #: what a trial is: pupils for the package's own data, "trials" otherwise
        self.unit = "pupils" if self.trials == "n_pupils" else "trials"
        self.pupil = "pupil" if self.trials == "n_pupils" else "trial"
        #: rates per 100, or per 1,000 for rare events (permanent exclusion: about 0.1%)
        shown = all(isinstance(spec[k], (int, float)) for k in ("n_events", "n_pupils"))
        overall = spec["n_events"] / spec["n_pupils"] if shown and spec["n_pupils"] else 0.02
        self.per = 1000 if overall < 0.01 else 100
        self.per_text = f"{self.per:,}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


#: How the package's own column names read in headings and table headers.
_LABELS = {"sen": "SEN", "fsm": "FSM", "cin": "CIN", "la": "LA", "nc_year": "NC year"}


def _noun(name: str) -> str:
    """A column name inside a sentence: ``LA``, ``SEN``, ``school``."""
    return _LABELS.get(name, name.replace("_", " "))


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _label(name: str) -> str:
    """A column name as a heading: known abbreviations in capitals, else capitalised."""
    return _LABELS.get(name, _cap(name.replace("_", " ")))


def _join(items: list[str]) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- figures
class FigureSink(dict):
    """Where the render functions put figures when the caller wants the matplotlib objects
    (``Result.plot``) rather than their bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, Any] = {}


def _figure(fig: Any, files: dict[str, bytes], name: str) -> str:
    from .plots import figure_bytes

    if isinstance(files, FigureSink):
        files.figures[name] = fig
        return f"{FIGURES}/{name}.png"
    png, svg = figure_bytes(fig)
    files[f"{FIGURES}/{name}.png"] = png
    files[f"{FIGURES}/{name}.svg"] = svg
    return f"{FIGURES}/{name}.png"


def _forest(files: dict[str, bytes], est: pd.DataFrame, variable: str, reference: str,
            w: _Words) -> str | None:
    from .plots import forest_plot

    adjusted = est[(est.estimand == "rate_ratio") & (est.variable == variable)
                   & (est.group_effects != "")]
    adjusted = adjusted[np.isfinite(adjusted.estimate)]  # hidden: built on a small count
    if not len(adjusted):
        return None
    crude = est[(est.estimand == "crude_rate_ratio") & (est.variable == variable)]
    crude = crude[np.isfinite(crude.estimate) & (crude.estimate > 0)
                  & (crude.conf_low > 0)]
    crude = crude if len(crude) else None  # none shown (suppressed, or not available)
    fig = forest_plot(adjusted, label="level", crude=crude,
                      title=f"{'Adjusted and crude' if crude is not None else 'Adjusted'} "
                            f"{w.ratio}s by {_noun(variable)} (reference: {reference})",
                      xlabel=_cap(w.ratio))
    if crude is not None:  # legend beside the axes, clear of the bottom row
        fig.axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _ratio_ticks(fig.axes[0].xaxis, *fig.axes[0].get_xlim())
    return _figure(fig, files, f"forest_{variable}")


def _ratio_ticks(axis: Any, low: float, high: float) -> None:
    """Ratio ticks inside the axis: halvings and doublings where three or more fit, finer
    steps (0.8, 1.25, 1.5, 2.5, 3...) over narrower ranges."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fine = [0.25, 0.33, 0.5, 0.67, 0.75, 0.8, 1, 1.25, 1.5, 2, 2.5, 3, 4]
    ticks: list[float] = []
    for step in (1, 2, 3, 4, 6, 8):  # every doubling, then every 4th, 8th...: at most 8
        ticks = [2.0 ** k for k in range(-24, 25) if k % step == 0
                 and low <= 2.0 ** k <= high]
        if len(ticks) <= 8:
            break
    if len(ticks) < 3:
        ticks = [t for t in fine if low <= t <= high]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v >= 1 else f"{v:.2g}"))
    axis.set_minor_locator(NullLocator())


def _funnel(files: dict[str, bytes], units: pd.DataFrame, term: str, w: _Words,
            min_pupils: int, names: Mapping[str, str] | None = None
            ) -> tuple[str, str, dict[str, str]] | None:
    """The funnel plot of a group term, its caption, and each unit's position against the
    adjusted 99.8% limits (``"above"``, ``"below"`` or ``"within"``), keyed by unit code."""
    from .funnel import funnel_proportions, funnel_ratios
    from .plots import funnel_plot

    from .disclosure import OTHER

    names = dict(names or {})
    listed = units[[str(u).split("/")[-1] != OTHER for u in units.level]]
    shown = listed[np.isfinite(listed.n_pupils) & np.isfinite(listed.n_events)]
    n_hidden = len(listed) - len(shown)
    units = shown[shown.n_pupils >= min_pupils].rename(columns={"level": "code"})
    if len(units) < 3 or units.n_events.sum() == 0 or (
            w.binomial and (units.n_events == units.n_pupils).all()):
        return None  # nothing to compare: every unit at 0 (or every pupil with the event)
    units = units.assign(unit=[names.get(str(c), str(c)) for c in units.code])
    if w.binomial and (units.n_events <= units.n_pupils).all():
        f = funnel_proportions(units, unit="unit")
        ylabel = f"Observed {w.rate} (events per {w.pupil}, %)"
    else:
        overall = units.n_events.sum() / units.n_pupils.sum()
        f = funnel_ratios(units.assign(expected=units.n_pupils * overall), unit="unit")
        ylabel = "Observed / expected events"
    fig = funnel_plot(f.units, f.limits(), target=f.target, xlabel=f"{_cap(w.unit)} (log scale)"
                      if f.kind == "proportion" else "Expected events (log scale)",
                      ylabel=ylabel, title=f"Observed {w.rate} by {_noun(term)}, with 95% and "
                      "99.8% limits adjusted for overdispersion")
    from matplotlib.ticker import PercentFormatter

    size = f.units[f.size_column]
    _plain_ticks(fig.axes[0].xaxis, float(size.min()), float(size.max()))
    if f.kind == "proportion":
        fig.axes[0].yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
    else:  # the lower Poisson limits fall to 0 for small units: keep the axis on the units
        values = f.units["ratio"][f.units["ratio"] > 0]
        low, high = float(values.min()) / 1.5, float(values.max()) * 1.5
        fig.axes[0].set_ylim(low, high)
        _ratio_ticks(fig.axes[0].yaxis, low, high)
    n_out = int(f.units["outside_998"].sum())
    caption = (f"Crude {w.rate}s of {_plural(len(units), _noun(term) + ' unit')} with at least "
               f"{min_pupils} {w.unit} "
               f"against their size. Overdispersion factor phi = {f.phi:.2f}"
               + (f"; limits widened by sqrt(phi) = {np.sqrt(f.phi):.2f}" if f.phi > 1 else "")
               + f". {_plural(n_out, 'unit lies', 'units lie')} outside the adjusted 99.8% limits. "
               "Crude rates do not "
               "allow for the pupils' characteristics; see the model's unit effects."
               + (f" {_plural(n_hidden, 'unit is', 'units are')} not drawn: "
                  f"{'its' if n_hidden == 1 else 'their'} counts are suppressed here (c) or "
                  "not available (x: they include counts suppressed at source)."
                  if n_hidden else ""))
    value = f.units[f.value_column].to_numpy(dtype=float)
    outside = f.units["outside_998"].astype(bool).to_numpy()
    position = np.where(~outside, "within", np.where(value > f.target, "above", "below"))
    codes = dict(zip(units.unit.astype(str), units.code.astype(str)))
    where = {codes[str(u)]: str(p) for u, p in zip(f.units["unit"], position)}
    return _figure(fig, files, f"funnel_{term}"), caption, where


def _funnel_ratio(files: dict[str, bytes], units: pd.DataFrame, term: str, w: _Words,
                  min_pupils: int, names: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The funnel of a group term's indirectly standardised ratios ``O / E`` against ``E``
    (``unit_standardised_ratio`` rows of ``unit_effects.csv``), and its caption."""
    from .funnel import funnel_ratios
    from .plots import funnel_plot

    names = dict(names or {})
    mine = units[(units.estimand == "unit_standardised_ratio") & (units.group_term == term)]
    n_all = len(mine)
    mine = mine[np.isfinite(mine.expected_events) & (mine.expected_events > 0)
                & np.isfinite(mine.n_events) & np.isfinite(mine.n_pupils)
                & np.isfinite(mine.estimate) & (mine.n_pupils >= min_pupils)]
    n_hidden = n_all - len(mine)
    if mine.n_events.sum() == 0:
        return None
    if len(mine) < 3:
        return None
    table = pd.DataFrame({"unit": [names.get(str(u), str(u)) for u in mine.unit],
                          "n_events": mine.n_events.to_numpy(dtype=float),
                          "expected": mine.expected_events.to_numpy(dtype=float)})
    f = funnel_ratios(table, unit="unit")
    fig = funnel_plot(f.units, f.limits(), target=f.target,
                      xlabel="Expected events E (log scale)",
                      ylabel="Observed / expected events (O/E)",
                      title=f"Standardised event ratios by {_noun(term)}, with 95% and "
                            "99.8% limits adjusted for overdispersion")
    _plain_ticks(fig.axes[0].xaxis, float(table.expected.min()), float(table.expected.max()))
    values = f.units["ratio"][f.units["ratio"] > 0]
    if len(values):
        low, high = float(values.min()) / 1.5, float(values.max()) * 1.5
        fig.axes[0].set_ylim(low, high)
        _ratio_ticks(fig.axes[0].yaxis, low, high)
    n_out = int(f.units["outside_998"].sum())
    total_o, total_e = float(table.n_events.sum()), float(table.expected.sum())
    caption = (f"Observed over expected events (O/E) of {_plural(len(table), _noun(term) + ' unit')}"
               f" with at least {min_pupils} {w.unit} against E. E is the sum over the unit's cells of `{w.trials}` times the "
               f"{w.rate} the model predicts from its fixed effects alone (every unit effect "
               "at zero): the events expected given the unit's pupils' characteristics, at an "
               f"average {_noun(term)}. Over all units O/E = {total_o / total_e:.2f}. "
               f"Overdispersion factor phi = {f.phi:.2f}"
               + (f"; limits widened by sqrt(phi) = {np.sqrt(f.phi):.2f}" if f.phi > 1 else "")
               + f". {_plural(n_out, 'unit lies', 'units lie')} outside the adjusted 99.8% "
               "limits."
               + (f" {_plural(n_hidden, 'unit is', 'units are')} not drawn (counts "
                  "suppressed here or at source, or no expected events)." if n_hidden else ""))
    return _figure(fig, files, f"funnel_ratio_{term}"), caption


def _plain_ticks(axis: Any, low: float, high: float) -> None:
    """Log-axis ticks at 1, 2, 5 x 10^k (1 x 10^k over wide ranges), as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    subs = (1.0,) if high / max(low, 1e-12) > 1e3 else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _display_units(frame: pd.DataFrame, column: str = "unit") -> list[str]:
    """Units as readers know them: the ``label`` (e.g. ``"Bury (E08000002)"``) where the run
    saved one, else the code."""
    labels = frame["label"] if "label" in frame.columns else pd.Series("", index=frame.index)
    return [str(lab) if str(lab) else str(u) for u, lab in zip(frame[column], labels)]


def _unit_names(units: pd.DataFrame, term: str) -> dict[str, str]:
    """Code -> label of the units of one group term (only those with a label)."""
    if "label" not in units.columns:
        return {}
    mine = units[(units.group_term == term) & (units.label != "")]
    return dict(zip(mine.unit.astype(str), mine.label.astype(str)))


def _caterpillar(files: dict[str, bytes], units: pd.DataFrame, term: str, w: _Words) -> str:
    from .plots import caterpillar_plot

    frame = units[(units.estimand == "unit_ratio") & (units.group_term == term)]
    frame = frame.assign(display=_display_units(frame))
    fig = caterpillar_plot(frame, label="display", title=f"Unit effects: {_noun(term)}",
                           value_label=f"{_cap(w.odds)} relative to an average {_noun(term)}")
    return _figure(fig, files, f"caterpillar_{term}")


def _trend(files: dict[str, bytes], cells: pd.DataFrame, variable: str, w: _Words) -> str:
    from .plots import trend_plot

    t = cells[(cells.margin == "trend") & (cells.by == variable) & np.isfinite(cells.rate)]
    t = t.assign(rate=w.per * t.rate).rename(columns={"level": _label(variable)})
    fig = trend_plot(t, x="year", y="rate", group=_label(variable),
                     title=f"Observed {w.rate} by {_noun(variable)} and year",
                     ylabel=f"Events per {w.per_text} {w.unit}")
    return _figure(fig, files, f"trend_{variable}")


# --------------------------------------------------------------------------- sections
def _ratio_table(est: pd.DataFrame, variable: str, info: Mapping[str, Any],
                 w: _Words) -> doc.Table:
    pick = est[est.variable == variable]
    adjusted = pick.group_effects != ""
    # (column, rows of the estimand, scale): the model's own exp(coefficient) rows are the
    # ones without group effects (for count families they are also called rate_ratio)
    columns = (
        ("crude", pick[pick.estimand == "crude_rate_ratio"], 1),
        ("adjusted", pick[(pick.estimand == "rate_ratio") & adjusted], 1),
        ("difference", pick[(pick.estimand == "rate_difference") & adjusted], w.per),
        ("coef", pick[pick.estimand.isin(["odds_ratio", "rate_ratio"]) & ~adjusted], 1),
    )
    rows = []
    for level in info["levels"]:
        if level == info["reference"]:
            rows.append({"level": f"{level} (reference)", "crude": "1", "adjusted": "1",
                         "difference": "0", "coef": "1"})
            continue
        row = {"level": level}
        for key, table, scale in columns:
            r = table[table.level == level]
            if len(r) and not np.isfinite(r.estimate.iloc[0]):
                row[key] = _symbol(r, "estimate", r.index[0])
                continue
            row[key] = ("x" if not len(r) else format_estimate(
                r.estimate.iloc[0], r.conf_low.iloc[0], r.conf_high.iloc[0], scale=scale))
        rows.append(row)
    # With an interaction with year the coefficient is the ratio in the reference year only.
    by_year = bool(((est.estimand == "rate_ratio_by_year") & (est.variable == variable)).any())
    coef_label = (f"{_cap(w.odds)} (model coefficient: reference year only, see by year)"
                  if by_year else f"{_cap(w.odds)} (model coefficient)")
    labels = {"level": _label(variable), "crude": f"Crude {w.ratio}",
              "adjusted": f"Adjusted {w.ratio}",
              "difference": f"Adjusted {w.rate} difference per {w.per_text}",
              "coef": coef_label}
    align = {k: "right" for k in labels if k != "level"}
    return doc.Table(pd.DataFrame(rows), labels=labels, align=align,
                     caption=f"{_cap(w.ratio)}s by {_noun(variable)} ({w.ci} intervals)")


def _results(files: dict[str, bytes], saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    est = saved["estimates"]
    run = saved["diagnostics"]["run"]
    report = run["report"]
    blocks: list[doc.Block] = [doc.Heading(f"Adjusted {w.ratio}s")]
    ge = {"observed": "with every unit at its estimated effect (observed group effects)",
          "conditional": "at a typical unit (group effects set to zero)",
          "integrated": "averaged over the distribution of unit effects (a new unit)"}
    blocks.append(doc.Paragraph(
        f"Adjusted {w.ratio}s are standardised over "
        + (f"all {w.unit}" if report["standard"] == "all" else f"each level's own {w.unit}")
        + f", {ge[report['group_effects']]}; crude {w.ratio}s compare the observed {w.rate}s. "
        "A ratio of 1 means no difference from the reference level; "
        + f"the {w.rate} difference is per {w.per_text} {w.unit}."))
    for info in run["spec"]["variables"]:
        variable = info["name"]
        blocks.append(doc.Heading(_label(variable), 3))
        blocks.append(_ratio_table(est, variable, info, w))
        notes = est[(est.variable == variable) & (est.estimand == "rate_ratio")
                    & (est.note != "") & (est.group_effects != "")]
        if len(notes):
            blocks.append(doc.Paragraph(
                f"The {w.odds}s overstate the adjusted {w.ratio}s of {variable} "
                f"{_join(list(notes.level))} (events are common): read the {w.ratio}s."))
        blocks += _by_year(est, saved["cells"], variable, info, w)
        forest = _forest(files, est, variable, info["reference"], w)
        if forest is not None:
            blocks.append(doc.Figure(forest,
                                     alt=f"Forest plot of {w.ratio}s by {_noun(variable)}",
                                     caption=f"Filled circles: adjusted; open squares: crude "
                                             f"({w.ci} intervals, log scale; an interval "
                                             "that runs beyond the axis ends in an "
                                             "arrowhead)."))
    return blocks


def _by_year(est: pd.DataFrame, cells: pd.DataFrame, variable: str, info: Mapping[str, Any],
             w: _Words) -> list[doc.Block]:
    """Adjusted (and crude) ratios of ``variable`` within each year, when the model let the
    ratio differ by year (``variable * year``)."""
    pick = est[(est.estimand == "rate_ratio_by_year") & (est.variable == variable)]
    if not len(pick):
        return []
    trend = cells[(cells.margin == "trend") & (cells.by == variable)]
    rates = {(str(r.level), str(r.year)): r.rate for r in trend.itertuples()}
    levels = [lv for lv in info["levels"] if lv != info["reference"]]
    rows = []
    for year in dict.fromkeys(pick.year):
        row = {"year": year}
        for lv in levels:
            r = pick[(pick.year == year) & (pick.level == lv)]
            row[lv] = ("x" if not len(r) else format_estimate(
                r.estimate.iloc[0], r.conf_low.iloc[0], r.conf_high.iloc[0]))
            base = rates.get((info["reference"], year), np.nan)
            crude = rates.get((lv, year), np.nan) / base if base else np.nan
            row[f"{lv} crude"] = (format_ratio(crude) if np.isfinite(crude)
                                  else config.SYMBOL_SUPPRESSED)
        rows.append(row)
    columns = ["year"] + [c for lv in levels for c in (lv, f"{lv} crude")]
    labels = {"year": "Year", **{lv: f"{lv}: adjusted" for lv in levels},
              **{f"{lv} crude": f"{lv}: crude" for lv in levels}}
    return [doc.Table(pd.DataFrame(rows), columns=tuple(columns), labels=labels,
                      align={c: "right" for c in columns if c != "year"},
                      caption=f"{_cap(w.ratio)}s by {_noun(variable)} within each year, "
                              f"against {info['reference']} ({w.ci} intervals for the "
                              "adjusted ratios)")]


def _variation(files: dict[str, bytes], saved: Mapping[str, Any], w: _Words,
               min_pupils: int) -> list[doc.Block]:
    est, units, cells = saved["estimates"], saved["units"], saved["cells"]
    run = saved["diagnostics"]["run"]
    terms = [g["name"] for g in run["spec"]["group_terms"]]
    if not terms:
        return []
    blocks: list[doc.Block] = [doc.Heading("Variation between units")]
    sd = est[est.estimand.isin(["group_sd", "slope_sd", "icc", "median_odds_ratio",
                                "median_rate_ratio", "dispersion"])]
    if (sd.estimand == "group_sd").sum() < 2:  # "total" repeats the single term
        sd = sd[sd.term != "total"]
    if len(sd):
        names = {"group_sd": "SD of unit effects (link scale)", "slope_sd": "SD of slopes",
                 "icc": "Intraclass correlation (latent scale)",
                 "median_odds_ratio": "Median odds ratio", "median_rate_ratio": "Median rate ratio",
                 "dispersion": "Negative-binomial shape (variance mu + mu^2 / shape)"}
        table = pd.DataFrame({
            "quantity": [names[e] for e in sd.estimand],
            "term": list(sd.term),
            "estimate": [format_estimate(a, b, c, digits=3)
                         for a, b, c in zip(sd.estimate, sd.conf_low, sd.conf_high)],
        })
        blocks.append(doc.Table(table, labels={"quantity": "Quantity", "term": "Term",
                                               "estimate": f"Estimate ({w.ci} interval)"},
                                align={"estimate": "right"},
                                caption="Between-unit variation"))
        blocks.append(doc.Paragraph(
            "The median odds (rate) ratio is the median ratio between the rates of two "
            "otherwise identical pupils in two randomly chosen units (Larsen and Merlo 2005); "
            "the ICC is the share of the latent-scale variance between units."))
    for note in run["notes"]:
        blocks.append(doc.Paragraph(note))
    for term in terms:
        blocks.append(doc.Heading(f"Units: {_noun(term)}", 3))
        funnel = _funnel(files, cells[(cells.margin == "unit") & (cells.by == term)], term,
                         w, min_pupils, _unit_names(units, term))
        position = funnel[2] if funnel is not None else {}
        if funnel is not None:
            blocks.append(doc.Figure(funnel[0], alt=f"Funnel plot of {_noun(term)} rates",
                                     caption=funnel[1]))
        if "expected_events" in units.columns:
            ratio = _funnel_ratio(files, units, term, w, min_pupils,
                                  _unit_names(units, term))
            if ratio is not None:
                blocks.append(doc.Figure(ratio[0], alt=f"Funnel plot of {_noun(term)} "
                                         "standardised ratios", caption=ratio[1]))
        mine = units[(units.estimand == "unit_ratio") & (units.group_term == term)]
        if not len(mine):
            continue
        blocks.append(doc.Figure(_caterpillar(files, units, term, w),
                                 alt=f"Caterpillar plot of {_noun(term)} effects",
                                 caption=f"Shrunken {_noun(term)} effects with {w.ci} "
                                 "intervals, ranked."))
        flagged = mine[mine.flag_fdr.astype(str) == "True"]
        threshold = float(mine.threshold.iloc[0])
        fdr = float(mine.fdr.iloc[0])
        top = mine.sort_values(["prob_exceeds", "estimate", "unit"],
                               ascending=[False, False, True], kind="mergesort").head(10)
        table = pd.DataFrame({
            "unit": _display_units(top),
            "ratio": [format_estimate(a, b, c) for a, b, c in
                      zip(top.estimate, top.conf_low, top.conf_high)],
            "prob": [format_probability(p) for p in top.prob_exceeds],
            "flag": ["yes" if str(f) == "True" else "no" for f in top.flag_fdr],
            "funnel": [position.get(str(u), "not shown") for u in top.unit],
        })
        blocks.append(doc.Table(table, labels={
            "unit": _label(term), "ratio": f"{_cap(w.odds)} ({w.ci} interval)",
            "prob": f"P(ratio > {threshold:g})", "flag": f"Flagged (FDR {fdr:g})",
            "funnel": "Crude funnel (99.8%)"},
            align={"ratio": "right", "prob": "right", "flag": "center", "funnel": "center"},
            caption=f"The {_plural(len(top), _noun(term) + ' unit')} most likely to exceed "
                    f"{threshold:g}"))
        blocks.append(doc.Paragraph(
            f"{len(flagged):,} of {_plural(len(mine), _noun(term) + ' unit')} flagged: "
            f"{'its' if len(flagged) == 1 else 'their'} {w.odds} relative to an average "
            f"{_noun(term)} with the same {w.unit} exceeds {threshold:g} at a false "
            f"discovery rate of {fdr:g}. Effects are shrunk towards the average, most for "
            "small units, so flags are conservative there. The last column is the raw flag: "
            "where the unit's crude rate lies against the funnel's adjusted 99.8% limits "
            "(above, below or within; \"not shown\" below the funnel's minimum size). The "
            "two can disagree: the crude rate does not allow for the unit's pupils."
            + (f" {_plural(sum(v == 'above' for v in position.values()), _noun(term) + ' unit')}"
               f" lie above the funnel's 99.8% limit, of which "
               f"{sum(position.get(str(u)) == 'above' for u in flagged.unit):,} are also "
               "flagged by the model." if position else "")))
    return blocks


def _shares(saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    """Share of events on pupils in overlapping groups (``event_share_*`` rows)."""
    est = saved["estimates"]
    pick = est[est.estimand.isin(["event_share_observed", "pupil_share",
                                  "event_share_expected"])]
    if not len(pick):
        return []
    blocks: list[doc.Block] = [doc.Heading("Share of events on overlapping groups")]
    rows = []
    for level, part in pick.groupby("level", sort=False):
        by = part.set_index("estimand")
        obs, pup = by.loc["event_share_observed"], by.loc["pupil_share"]
        exp = by.loc["event_share_expected"]
        def share(value: float) -> str:
            return f"{100 * value:.1f}%" if np.isfinite(value) else config.SYMBOL_SUPPRESSED

        rows.append({"group": level,
                     "observed": share(obs.estimate),
                     "pupils": share(pup.estimate),
                     "expected": f"{100 * exp.estimate:.1f}% ({100 * exp.conf_low:.1f}% to "
                                 f"{100 * exp.conf_high:.1f}%)"})
    blocks.append(doc.Table(
        pd.DataFrame(rows), labels={"group": f"{_cap(w.unit)} with any of",
                                    "observed": "Share of events (observed)",
                                    "pupils": f"Share of {w.unit}",
                                    "expected": f"Share of events (model, {w.ci} interval)"},
        align={"observed": "right", "pupils": "right", "expected": "right"},
        caption="Share of all events falling on these (overlapping) groups"))
    blocks.append(doc.Paragraph(
        f"A {w.pupil} counts once however many of the groups they belong to; the observed "
        f"share is their events over all events, set beside their share of {w.unit} (as in "
        "the Timpson Review's \"78% of permanent exclusions were of pupils with SEN, CIN or "
        "FSM\"), and the model's share is their expected events (`" + w.trials + "` times the "
        f"predicted {w.rate}) over all expected events, which shows how far the model "
        "reproduces the concentration of events."))
    return blocks


def _slopes(saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    units = saved["units"]
    mine = units[units.estimand == "unit_marginal_rate_ratio"]
    if not len(mine):
        mine = units[units.estimand.isin(["unit_odds_ratio", "unit_rate_ratio"])]
    if not len(mine):
        return []
    rows = []
    for (term, variable, level), part in mine.groupby(["group_term", "variable", "level"],
                                                      sort=False):
        rows.append({"level": f"{_noun(variable)}: {level}", "units": str(len(part)),
                     "median": format_ratio(part.estimate.median()),
                     "range": f"{format_ratio(part.estimate.min())} to "
                              f"{format_ratio(part.estimate.max())}",
                     "above": str(int((part.conf_low > 1).sum())),
                     "below": str(int((part.conf_high < 1).sum())), "term": _noun(term)})
    table = pd.DataFrame(rows)
    return [doc.Heading("Unit-specific ratios"), doc.Table(
        table, columns=("level", "term", "units", "median", "range", "above", "below"),
        labels={"level": "Level", "term": "Unit", "units": "Units", "median": "Median",
                "range": "Lowest to highest", "above": "Interval above 1",
                "below": "Interval below 1"},
        align={k: "right" for k in ("units", "median", "range", "above", "below")},
        caption=f"Unit-specific {w.ratio}s (varying slopes), summarised over units")]


def _ladder(saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    from ..estimands import MEDIATOR_NOTE

    est = saved["estimates"]
    lad = est[est.estimand == "ladder_rate_ratio"]
    if not len(lad):
        return []
    steps = list(dict.fromkeys(lad.step_label))
    wide = {}
    for r in lad.itertuples():
        wide.setdefault(r.level, {"level": r.level})[r.step_label] = format_estimate(
            r.estimate, r.conf_low, r.conf_high)
    table = pd.DataFrame(list(wide.values())).reindex(columns=["level", *steps])
    described = list(dict.fromkeys(
        f"{s}: `{f}`" + (f" with groups {g}" if g else " (no groups)")
        for s, f, g in zip(lad.step_label, lad.formula, lad.groups)))
    return [doc.Heading("Adjustment ladder"),
            doc.Paragraph(f"Adjusted {w.ratio}s of {lad.variable.iloc[0]} as characteristics "
                          "and units are added, one model per step:"),
            doc.Bullets(tuple(described)),
            doc.Table(table, labels={"level": _label(lad.variable.iloc[0])},
                      align={s: "right" for s in steps},
                      caption=f"{_cap(w.ratio)}s by step ({w.ci} intervals)"),
            doc.Paragraph("Note: " + MEDIATOR_NOTE + ".")]


def _chain(saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    from ..chain import CHAIN_ESTIMAND, DIRECT_LABEL, PRODUCT_LABEL

    est = saved["estimates"]
    ch = est[est.estimand == CHAIN_ESTIMAND].sort_values("step", kind="stable")
    if not len(ch):
        return []
    steps = list(dict.fromkeys(ch.step_label))
    wide: dict[str, dict[str, str]] = {}
    for i, r in zip(ch.index, ch.itertuples()):
        shown = bool(np.all(np.isfinite([r.estimate, r.conf_low, r.conf_high])))
        wide.setdefault(r.level, {"level": r.level})[r.step_label] = (
            format_estimate(r.estimate, r.conf_low, r.conf_high) if shown
            else _symbol(ch, "estimate", i))
    table = pd.DataFrame(list(wide.values())).reindex(columns=["level", *steps])
    variable, reference = ch.variable.iloc[0], ch.reference.iloc[0]
    stages = [s for s in steps if s not in (PRODUCT_LABEL, DIRECT_LABEL)]
    described = tuple(dict.fromkeys(
        f"{lab}: `{note}`" for lab, note in zip(ch.step_label, ch.note)))
    return [doc.Heading("Stage chain"),
            doc.Paragraph(
                f"Adjusted {w.ratio}s of {variable} against {reference} at each decision "
                f"point, the relative rate index's logic with adjustment: each of the "
                f"{len(stages)} stages is a separate fit of the formula `{ch.formula.iloc[0]}`"
                + (f" with groups {ch.groups.iloc[0]}" if ch.groups.iloc[0] else "")
                + " to the pupils who reached it, with its own events:"),
            doc.Bullets(described),
            doc.Table(table, labels={"level": _label(variable)},
                      align={s: "right" for s in steps},
                      caption=f"{_cap(w.ratio)}s at each stage and overall ({w.ci} "
                              "intervals)"),
            doc.Paragraph(
                f"The overall {w.ratio} is the product of the stage ratios: when each "
                "stage's pupils are the previous stage's events, a risk is the product of "
                "the stages' risks, and the stages' likelihoods are separate factors, so "
                "their estimates are independent and the product's interval adds their "
                "variances on the log scale. The direct fit of the last outcome among the "
                "first stage's pupils is a check: it differs from the product only as "
                "standardised ratios of different populations differ. A group with a "
                "ratio above 1 at the first stage and near 1 later is more often "
                "suspended, not more often escalated; the ratios are associations given "
                "the model's characteristics, not evidence of how decisions were made.")]


def _shown(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Which values of a published number column are shown (not a symbol, not blank)."""
    values = frame[column].to_numpy(dtype=float)
    return np.isfinite(values)


def _symbol(frame: pd.DataFrame, column: str, i: Any) -> str:
    """The symbol standing for a hidden value (``c`` unless the file says otherwise)."""
    col = f"{column}_symbol"
    if col in frame.columns and str(frame.at[i, col]):
        return str(frame.at[i, col])
    return config.SYMBOL_UNAVAILABLE


def _count_table(frame: pd.DataFrame, total: pd.DataFrame, key: str, label: str,
                 w: _Words, rules: Any) -> doc.Table:
    """Published pupils, events and their rate by level (or unit), with the total row."""
    rows = []
    for part in (frame, total):
        for i in part.index:
            n, e, r = part.at[i, "n_pupils"], part.at[i, "n_events"], part.at[i, "rate"]
            level = str(part.at[i, "level"])
            rows.append({
                key: "Total" if part is total else level,
                "n_pupils": format_count(n) if np.isfinite(n) else _symbol(part, "n_pupils", i),
                "n_events": format_count(e) if np.isfinite(e) else _symbol(part, "n_events", i),
                "rate": f"{w.per * r:.2f}" if np.isfinite(r) else _symbol(part, "rate", i),
            })
    return doc.Table(pd.DataFrame(rows),
                     labels={key: label, "n_pupils": _cap(w.unit), "n_events": "Events",
                             "rate": f"Per {w.per_text} {w.unit}"},
                     align={"n_pupils": "right", "n_events": "right", "rate": "right"},
                     caption=f"Observed events (`{w.events}`) and {w.unit} (`{w.trials}`) by "
                             f"{label if label.isupper() else label.lower()}",
                     note=_SYMBOL_NOTE + (
                         f" Counts are rounded to the nearest {rules.round_to}; rates are "
                         "computed from unrounded counts." if rules.round_to not in (None, 1)
                         else ""))


#: Footnote of every count table.
_SYMBOL_NOTE = ("c: suppressed to protect confidentiality (a count below the thresholds, or "
                "one that would reveal such a count through a total); z: not applicable; "
                "x: not available.")


def _counts(saved: Mapping[str, Any], w: _Words, rules: Any,
            max_units: int = 200) -> list[doc.Block]:
    cells = saved["cells"]
    run = saved["diagnostics"]["run"]
    total = cells[cells.margin == "total"]
    blocks: list[doc.Block] = [doc.Heading("Observed counts"), doc.Paragraph(
        "Counts below, and every count, rate and crude ratio elsewhere in this run's files, "
        "are published after disclosure control over all of them together (primary and "
        f"secondary suppression: fewer than {rules.min_pupils} {w.unit} or 1 to "
        f"{rules.min_events - 1} events are hidden, and so is any count that would reveal "
        "them through a total of any table).")]
    for note in run.get("disclosure_notes", []):
        blocks.append(doc.Paragraph(note))
    for variable in (v["name"] for v in run["spec"]["variables"]):
        part = cells[(cells.margin == "variable") & (cells.by == variable)]
        blocks.append(_count_table(part, total, variable, _label(variable), w, rules))
    for g in run["spec"]["group_terms"]:
        part = cells[(cells.margin == "unit") & (cells.by == g["name"])]
        if g["parent"] is None and 0 < len(part) <= max_units:
            names = _unit_names(saved["units"], g["name"])
            part = part.assign(level=[names.get(str(u), _remainder_label(str(u)))
                                      for u in part.level])
            blocks.append(_count_table(part, total, g["name"], _label(g["name"]), w, rules))
    return blocks


def _remainder_label(unit: str) -> str:
    from .disclosure import OTHER

    return f"{unit} (pooled units too small to list)" if unit.split("/")[-1] == OTHER else unit


def _trend_blocks(files: dict[str, bytes], saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    cells = saved["cells"]
    trend = cells[cells.margin == "trend"]
    if trend.year.nunique() < 2:
        return []
    variables = [v["name"] for v in saved["diagnostics"]["run"]["spec"]["variables"]
                 if (trend.by == v["name"]).any()]
    if not variables:
        return []
    # a level's rate is shown only where its counts are: draw the variable with the most
    shown = {v: int(np.isfinite(trend[trend.by == v].rate).sum()) for v in variables}
    variables.sort(key=lambda v: (-shown[v], v != "ethnicity"))
    variable = variables[0]
    if shown[variable] == 0:
        return [doc.Heading("Trend"), doc.Paragraph(
            "No observed rate by year can be shown: every one includes counts suppressed at "
            "source (x) or below the thresholds (c). The model's year effects are in the "
            "coefficients.")]
    return [doc.Heading("Trend"),
            doc.Figure(_trend(files, cells, variable, w), alt=f"Trend by {_noun(variable)}",
                       caption=f"Observed events per {w.per_text} {w.unit} by year "
                               "(crude).")]


def _methods(run: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    spec, report = run["spec"], run["report"]
    family = {"binomial": "binomial", "poisson": "Poisson",
              "negative_binomial": "negative binomial"}[spec["family"]]
    refs = _join([f"{v['name']} = {v['reference']}" for v in spec["variables"]])
    groups = [g["name"] + (f" (nested in {g['parent']})" if g["parent"] else "")
              for g in spec["group_terms"]]
    text = [f"The model is a {family} regression with a {spec['link']} link for "
            f"`{w.events}` out of `{w.trials}`, with fixed effects `{spec['formula']}`"
            + (f" (reference levels: {refs})" if refs else "") + "."]
    if groups:
        text.append(f"Random intercepts: {_join(groups)}.")
    if spec["slopes"]:
        text.append("Varying slopes: " + _join([f"{v} by {g}" for v, g in spec["slopes"].items()])
                    + ".")
    s = spec["sampler"]
    engines = {
        "glm": "a generalised linear model fitted by maximum likelihood (statsmodels); group "
               "terms, if any, only cluster the standard errors",
        "ml": "maximum likelihood with the Laplace approximation of the integral over unit "
              "effects (adaptive Gauss-Hermite quadrature where [fit.ml] quadrature_nodes is "
              "set), with exact gradients",
    }
    if spec["engine"] == "pymc":  # the values the sampler used (engine defaults resolved)
        engines["pymc"] = (
            f"Bayesian estimation with PyMC (sampler {s['sampler']}, {s['chains']} chains "
            f"of {s['draws']} draws after {s['tune']} tuning steps, target acceptance "
            f"{s['target_accept']:g})")
    text.append(f"It was fitted by {engines.get(spec['engine'], spec['engine'])}, "
                f"seed {spec['seed']}.")
    ge = {
        "observed": "Group effects are \"observed\": each cell keeps the estimated effects of "
                    "its own units, so the adjusted ratio describes these pupils in the units "
                    "they are in",
        "conditional": "Group effects are set to zero: the ratio is for a typical unit",
        "integrated": "Group effects are averaged over their estimated distribution: the "
                      "ratio is for a new, randomly drawn unit",
    }[report["group_effects"]]
    population = ("every cell" if report["standard"] == "all"
                  else "the cells of each level (its own pupils)")
    text.append(f"Adjusted {w.ratio}s are marginal (standardised) ratios: {population} is "
                f"given each level of the variable in turn and then the reference level, its "
                f"{w.rate} is predicted, and the two means weighted by `{w.trials}` are "
                f"compared (Muller and MacLehose 2014). {ge}.")
    if spec["engine"] == "pymc":
        text.append(f"Intervals are equal-tailed {w.ci} posterior intervals; derived "
                    f"quantities use {report['n_draws']} posterior draws and are posterior "
                    "medians.")
    else:
        text.append(f"Intervals are {w.ci} intervals: Wald intervals for coefficients; for "
                    f"adjusted ratios, ICC, median odds ratios and unit effects, percentile "
                    f"intervals of {report['n_draws']} parametric draws (fixed effects from "
                    "their sampling distribution, unit effects from their conditional "
                    "distribution; Gelman and Hill 2007), which ignore the uncertainty of the "
                    "variance parameters.")
    text.append(f"Crude {w.ratio}s compare each level's observed {w.rate} with the reference "
                "level's, with " + ("Katz intervals" if w.binomial else
                                    "Poisson intervals sqrt(1/e1 + 1/e0) on the log scale")
                + " and no minimum sizes.")
    return [doc.Heading("Methods"), doc.Paragraph(" ".join(text))]


def _g3(value: Any) -> str:
    """A number to 3 significant digits, or n/a."""
    return "n/a" if value is None else f"{value:.3g}"


def _diagnostics(saved: Mapping[str, Any]) -> list[doc.Block]:
    diag = saved["diagnostics"]
    fit = diag.get("diagnostics", {})
    run = diag["run"]
    items = []
    if "converged" in fit:
        items.append("Converged: " + ("yes" if fit["converged"] else "**no**"))
    # not the optimiser's iteration count: it follows the machine's rounding (it is in
    # diagnostics.json), and the report is the same on every machine
    labels = {"max_rhat": "Largest R-hat",
              "min_ess_bulk": "Smallest bulk ESS", "min_ess_tail": "Smallest tail ESS",
              "divergences": "Divergent transitions", "cov_type": "Covariance",
              "singular_terms": "Group terms with SD at zero"}
    for key, label in labels.items():
        value = fit.get(key)
        if value in (None, [], ""):
            continue
        if isinstance(value, float):
            value = f"{value:.3g}"
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        items.append(f"{label}: {value}")
    parameters, effects = fit.get("parameters"), fit.get("effects") or {}
    if parameters and effects.get("n"):  # MCMC with group effects: judged apart
        items.append("Fixed effects and SDs (held to R-hat 1.01): largest R-hat "
                     f"{_g3(parameters.get('max_rhat'))}, smallest bulk ESS "
                     f"{_g3(parameters.get('min_ess_bulk'))}")
        items.append(f"Group effects ({effects['n']:,}): largest R-hat "
                     f"{_g3(effects.get('max_rhat'))}, smallest bulk ESS "
                     f"{_g3(effects.get('min_ess_bulk'))}, {effects.get('n_outside', 0):,} "
                     "above R-hat 1.01 or below the ESS required (chance puts some there)")
    warnings_ = run["warnings"] or ["none"]
    blocks: list[doc.Block] = [doc.Heading("Diagnostics"), doc.Bullets(tuple(items))]
    blocks += [doc.Paragraph("Warnings:"), doc.Bullets(tuple(warnings_))]
    notes = run["spec"].get("design_notes") or []
    if notes:
        blocks += [doc.Paragraph("Data notes:"), doc.Bullets(tuple(notes))]
    return blocks


def _provenance(run: Mapping[str, Any]) -> list[doc.Block]:
    data, model = run["data"], run["model_file"]
    items = [
        f"Model file: `{model.get('display')}` (SHA-256 `{model.get('sha256')}`)",
        f"Data: `{data.get('display')}` (SHA-256 `{data.get('sha256')}`), read as "
        f"{data.get('kind')}: {data.get('n_rows_read', 0):,} rows, "
        f"{data.get('n_cells', 0):,} cells modelled",
        f"disparity {run['package_version']}; package versions and file hashes are in "
        "`manifest.json`",
        "Files: `estimates.csv` (every estimate), `unit_effects.csv`, `cells_summary.csv` "
        "(observed counts by level, unit and year), `diagnostics.json`, `figures/` (PNG and "
        "SVG); every count, rate and crude ratio in them is disclosure-controlled, and "
        "`manifest.json` lists each file with its SHA-256",
        "Figures are linked from `report.md` by relative path and embedded in `report.html` "
        "as base64 data URIs, so the HTML file stands alone",
    ]
    return [doc.Heading("Data provenance"), doc.Bullets(tuple(items))]


def _coefficients(saved: Mapping[str, Any], w: _Words) -> list[doc.Block]:
    est = saved["estimates"]
    coef = est[est.estimand == "coefficient"]
    table = pd.DataFrame({
        "term": list(coef.term),
        "estimate": [format_ratio(v, digits=3) for v in coef.estimate],
        "se": [format_ratio(v, digits=3) for v in coef.std_error],
        "ci": [format_estimate(0.0, a, b, digits=3).split(" (", 1)[-1].rstrip(")")
               for a, b in zip(coef.conf_low, coef.conf_high)],
    })
    return [doc.Heading("Appendix: model coefficients"),
            doc.Table(table, labels={"term": "Term", "estimate": "Estimate",
                                     "se": "Standard error", "ci": f"{w.ci} interval"},
                      align={"estimate": "right", "se": "right", "ci": "right"},
                      caption=f"Coefficients on the {saved['diagnostics']['run']['spec']['link']} "
                              "scale")]


# --------------------------------------------------------------------------- main
def render_report(saved: Mapping[str, Any]) -> dict[str, bytes]:
    """Draw the figures and write ``report.md`` and ``report.html`` from a run's published
    tables.

    Parameters
    ----------
    saved : mapping
        :func:`read_tables` of the run's published files: every count in them has been
        through disclosure control, and the report is drawn from nothing else.

    Returns
    -------
    dict of str to bytes
        ``report.md``, ``report.html`` and ``figures/*.png|svg``, by path in the run folder.
    """
    from ..settings import SuppressionRules

    files: dict[str, bytes] = {}
    run = saved["diagnostics"]["run"]
    w = _Words(run)
    rules = SuppressionRules.from_mapping(run["report"]["suppression"])
    spec = run["spec"]
    total = saved["cells"][saved["cells"].margin == "total"]

    def count(column: str) -> str:
        if not len(total):
            return config.SYMBOL_UNAVAILABLE
        v = total[column].iloc[0]
        return f"{v:,.0f}" if np.isfinite(v) else _symbol(total, column, total.index[0])

    events = count("n_events")
    events_text = (f"their events (`{w.events}`; the total is not available: it includes "
                   "counts suppressed at source)" if events == config.SYMBOL_UNAVAILABLE
                   else f"{events} events (`{w.events}`)")
    intro = (f"{spec['description'] + '. ' if spec['description'] else ''}"
             f"{count('n_pupils')} {w.unit} (`{w.trials}`) and {events_text} in "
             f"{spec['n_cells']:,} cells; engine `{spec['engine']}`.")
    blocks: list[doc.Block] = []
    if not saved["diagnostics"].get("diagnostics", {}).get("converged", True):
        blocks.append(doc.Paragraph(
            "**Warning: the fit did not converge.** The estimates below are where the "
            "optimiser stopped, not a maximum; do not use them for decisions. This report "
            "was written only because the run was asked to (`--allow-unconverged`); see "
            "Diagnostics for what to try."))
    blocks.append(doc.Paragraph(intro))
    if spec.get("censoring"):  # said beside the headline, not only in the appendix
        blocks.append(doc.Paragraph(spec["censoring"]))
    blocks += _methods(run, w)
    blocks += _results(files, saved, w)
    blocks += _shares(saved, w)
    blocks += _variation(files, saved, w, rules.min_pupils)
    blocks += _slopes(saved, w)
    blocks += _ladder(saved, w)
    blocks += _chain(saved, w)
    blocks += _trend_blocks(files, saved, w)
    blocks += _counts(saved, w, rules)
    blocks += _diagnostics(saved)
    blocks += _provenance(run)
    blocks += _coefficients(saved, w)
    title = f"Model report: {spec['name']}"
    files["report.md"] = doc.to_markdown(blocks, title=title).encode("utf-8")
    images = {k: v for k, v in files.items() if k.endswith(".png")}
    files["report.html"] = doc.to_html(blocks, title=title, images=images).encode("utf-8")
    return files


#: Figures :func:`draw` makes.
FIGURE_KINDS: tuple[str, ...] = ("forest", "funnel", "funnel_ratio", "caterpillar", "trend")


def draw(saved: Mapping[str, Any], kind: str, *, variable: str | None = None,
         term: str | None = None) -> Any:
    """One figure of a run's report, as a matplotlib ``Figure``, from its published tables.

    Parameters
    ----------
    saved : mapping
        :func:`read_tables` of the run's published files.
    kind : {"forest", "funnel", "funnel_ratio", "caterpillar", "trend"}
    variable : str, optional
        The variable of a forest or trend plot (default: the first of the formula).
    term : str, optional
        The group term of a funnel or caterpillar plot (default: the first).

    Raises
    ------
    SpecError
        An unknown kind, variable or term, or a figure the run cannot draw (e.g. a
        caterpillar plot of a model with no unit effects).
    """
    from ..errors import SpecError

    run = saved["diagnostics"]["run"]
    w = _Words(run)
    spec = run["spec"]
    variables = [v["name"] for v in spec["variables"]]
    terms = [g["name"] for g in spec["group_terms"]]
    if kind not in FIGURE_KINDS:
        raise SpecError(f"unknown figure {kind!r}; figures are {', '.join(FIGURE_KINDS)}")
    sink = FigureSink()
    if kind in ("forest", "trend"):
        variable = variable or (variables[0] if variables else None)
        if variable not in variables:
            raise SpecError(f"variable {variable!r} is not a categorical variable of the "
                            f"formula; variables are {variables!r}")
        if kind == "forest":
            info = next(v for v in spec["variables"] if v["name"] == variable)
            _forest(sink, saved["estimates"], variable, info["reference"], w)
        else:
            _trend(sink, saved["cells"], variable, w)
    else:
        term = term or (terms[0] if terms else None)
        if term not in terms:
            raise SpecError(f"group term {term!r} is not in the model; terms are {terms!r}")
        from ..settings import SuppressionRules

        rules = SuppressionRules.from_mapping(run["report"]["suppression"])
        units, cells = saved["units"], saved["cells"]
        if kind == "funnel":
            _funnel(sink, cells[(cells.margin == "unit") & (cells.by == term)], term, w,
                    rules.min_pupils, _unit_names(units, term))
        elif kind == "funnel_ratio":
            _funnel_ratio(sink, units, term, w, rules.min_pupils, _unit_names(units, term))
        elif ((units.estimand == "unit_ratio") & (units.group_term == term)).any():
            _caterpillar(sink, units, term, w)
    if not sink.figures:
        raise SpecError(f"this run has no {kind} figure"
                        + (f" for {variable or term!r}" if (variable or term) else "")
                        + " (too few units, no unit effects, or every value suppressed)")
    return next(iter(sink.figures.values()))
