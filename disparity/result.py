"""The in-memory result of a model run: what ``disparity run`` publishes and what
``disparity.fit`` returns.

A :class:`Result` holds every estimand as tidy frames (adjusted and crude ratios, group SDs,
ICC and median odds ratios, unit effects, the adjustment ladder, shares of events), the
observed counts by margin, the fit and its design, the notes and warnings. It is a value:
nothing here writes a file. :func:`disparity.report.publish.publish` is the one step that
writes a Result to a run folder, through disclosure control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from disparity.design import Design
from disparity.engines.base import ESTIMATE_COLUMNS, Fit
from disparity.errors import SpecError
from disparity.estimates import ESTIMATES_EXTRA, UNIT_COLUMNS, link_of
from disparity.model_data import ModelData
from disparity.observed import (cells_summary, crude_rows, model_variables, unit_labels,
                                unit_standardised_rows)
from disparity.progress import Progress
from disparity.settings import SHARE_GROUPS, SHARE_LABELS, ReportSettings
from disparity.spec import ModelSpec

__all__ = ["Result", "build_result"]


@dataclass(frozen=True)
class Result:
    """A fitted model and every estimand of its report, in memory.

    Attributes
    ----------
    spec : ModelSpec
        The model as fitted (engine overrides applied).
    settings : ReportSettings
        The ``[report]`` settings the estimands were computed with.
    data : ModelData
        The cells and what was done to the data to get them.
    design : Design
        The design matrix the engine fitted.
    fit : Fit
        The engine's fit.
    estimates : DataFrame
        Every estimand, one tidy table (the columns of ``estimates.csv``).
    unit_effects : DataFrame
        Shrunken unit effects, unit-specific ratios and standardised unit ratios.
    cells_summary : DataFrame
        Observed pupils and events by each level, unit and year (not yet suppressed).
    notes : tuple of str
        Plain-English notes for the report (e.g. why there are no unit effects).
    warnings : tuple of str
        Every warning raised on the way (convergence, dropped data, odds ratios).
    share_groups : mapping or None
        The pupils whose share of events is reported, ``{column: levels}``.
    model_file : Path or None
        The model file, if the spec came from one.
    scope : str
        ``"run"`` (every estimand and a report) or ``"fit"`` (the model's own estimates).
    """

    spec: ModelSpec
    settings: ReportSettings
    data: ModelData
    design: Design
    fit: Fit
    estimates: pd.DataFrame
    unit_effects: pd.DataFrame
    cells_summary: pd.DataFrame
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    share_groups: Mapping[str, tuple[str, ...]] | None = None
    model_file: Path | None = None
    scope: str = "run"
    timings: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def converged(self) -> bool:
        """Whether the engine reported convergence (True when it says nothing)."""
        return bool(self.fit.diagnostics.get("converged", True))

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Categorical formula variables and their levels (reference first)."""
        return model_variables(self.spec, self.design)

    def facts(self) -> dict[str, Any]:
        """JSON-ready facts of the model for the report and ``diagnostics.json``."""
        return _spec_facts(self.spec, self.design, self.fit)


def build_result(spec: ModelSpec, loaded: ModelData, design: Design, fit: Fit, *,
                 settings: ReportSettings | None = None, scope: str = "run",
                 progress: Progress | None = None, warnings: tuple[str, ...] = (),
                 model_file: Path | None = None) -> Result:
    """Compute every estimand of a fitted model (``scope="run"``), or only the model's own
    estimates (``scope="fit"``), and gather them in a :class:`Result`.

    Examples
    --------
    >>> import pandas as pd
    >>> from disparity.design import build_design
    >>> from disparity.engines import get_engine
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [10, 20],
    ...                       "n_pupils": [1000, 200]})
    >>> spec = ModelSpec(formula="sen", engine="glm")
    >>> design = build_design(spec, cells)
    >>> fit = get_engine("glm").fit(design, spec, progress=False)
    >>> r = build_result(spec, ModelData(frame=cells, kind="cells"), design, fit, scope="fit")
    >>> r.estimates.estimand.tolist()
    ['coefficient', 'coefficient', 'odds_ratio']
    """
    say = progress or Progress(False)
    settings = settings or ReportSettings.from_mapping(spec.report)
    cells = loaded.frame
    if scope == "fit":
        table = _estimate_rows(fit, settings.ci_prob, {}).reindex(
            columns=[*ESTIMATE_COLUMNS, *ESTIMATES_EXTRA])
        units = pd.DataFrame(columns=list(UNIT_COLUMNS))
        notes: list[str] = []
        shares = None
    else:
        table, units, notes = _estimands(spec, settings, design, fit, cells, say,
                                         progress=say.enabled)
        chosen = _share_groups(settings, cells)
        shares = None if chosen is None else chosen[0]
    return Result(spec=spec, settings=settings, data=loaded, design=design, fit=fit,
                  estimates=table, unit_effects=units,
                  cells_summary=cells_summary(design, cells, spec), notes=tuple(notes),
                  warnings=tuple(warnings), share_groups=shares, model_file=model_file,
                  scope=scope)


def _estimate_rows(fit: Any, ci_prob: float, term_map: Mapping[str, tuple[str, str, str]]
                   ) -> pd.DataFrame:
    from disparity.draws import is_bayesian
    from disparity.estimates import estimates

    table = estimates(fit, ci_prob=ci_prob)
    bayes = is_bayesian(fit)
    method, variable, level, reference, note = [], [], [], [], []
    for est, term in zip(table["estimand"], table["term"]):
        var, lv, ref = term_map.get(term, ("", "", ""))
        variable.append(var)
        level.append(lv)
        reference.append(ref)
        if est in ("coefficient", "odds_ratio", "rate_ratio"):
            method.append("posterior" if bayes else "wald")
        else:
            method.append("posterior" if bayes else "engine")
        note.append("exp(coefficient): conditional on the group effects and the other "
                    "covariates" if est in ("odds_ratio", "rate_ratio") else "")
    return table.assign(variable=variable, level=level, reference=reference, method=method,
                        note=note)



def _unit_rows(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "effects":
        table = table.rename(columns={"level": "unit"}).assign(variable="", level="",
                                                               reference="")
    else:
        table = table.rename(columns={"n_pupils_level": "n_pupils"})
    return table.reindex(columns=list(UNIT_COLUMNS))



def _ladder_variable(settings: ReportSettings, design: Any) -> str:
    if settings.ladder_variable is not None:
        if settings.ladder_variable not in design.levels:
            raise SpecError(
                f"[report] ladder_variable = {settings.ladder_variable!r} is not a categorical "
                f"variable of the formula; choose one of {', '.join(map(repr, design.levels))}"
            )
        return settings.ladder_variable
    if "ethnicity" in design.levels:
        return "ethnicity"
    if not design.levels:
        raise SpecError("[[ladder]] needs a categorical variable in the formula to follow")
    return next(iter(design.levels))



def _share_groups(settings: ReportSettings, cells: pd.DataFrame
                  ) -> tuple[dict[str, tuple[str, ...]], str] | None:
    """The pupils whose share of events is reported, and how they read: ``[report]
    share_groups`` if given (``{}``: none), else :data:`SHARE_GROUPS` for the columns the
    cells have (None when they have none of sen, cin, fsm)."""
    if settings.share_groups is not None:
        groups = {k: tuple(v) for k, v in settings.share_groups.items()}
        if not groups:
            return None
        missing = [c for c in groups if c not in cells.columns]
        if missing:
            raise SpecError(
                f"[report] share_groups names column(s) {missing!r} that the cells do not "
                f"have; columns are {list(map(str, cells.columns))!r}; name only those, or "
                "set share_groups = {} for no event shares"
            )
        label = " or ".join(f"{_LABEL_OF.get(k, k)} ({' or '.join(v)})"
                            for k, v in groups.items())
        return groups, label
    groups = {k: v for k, v in SHARE_GROUPS.items() if k in cells.columns}
    if not groups:
        return None
    return groups, " or ".join(SHARE_LABELS[k] for k in groups)


_LABEL_OF = {"sen": "SEN", "cin": "CIN", "fsm": "FSM"}


def _share_rows(spec: Any, settings: ReportSettings, design: Any, fit: Any,
                cells: pd.DataFrame, common: Mapping[str, Any]) -> pd.DataFrame:
    """Observed share of events, share of pupils and the model's expected share of events
    on the pupils of :func:`_share_groups` (:func:`disparity.estimands.event_shares`)."""
    from disparity import estimands as E

    chosen = _share_groups(settings, cells)
    if chosen is None:
        return pd.DataFrame()
    groups, label = chosen
    rows = E.event_shares(cells, fit, design, groups, events=spec.events, trials=spec.trials,
                          group_effects=settings.group_effects, **common)
    return rows.assign(level=label, variable=" + ".join(groups),
                       note="share of all events (observed, expected) or pupils")



def _estimands(spec: ModelSpec, settings: ReportSettings, design: Design, fit: Fit,
               cells: pd.DataFrame, say: Progress, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    from disparity import estimands as E

    seed = int(spec.seed)
    common = dict(ci_prob=settings.ci_prob, n_draws=settings.n_draws, seed=seed)
    notes: list[str] = []
    rr_parts, crude_parts = [], []
    term_map: dict[str, tuple[str, str, str]] = {}
    for variable, levels in model_variables(spec, design).items():
        n = len(levels) - 1
        say(f"standardised rate ratios of {variable} ({n} level{'s' if n != 1 else ''})")
        rr = E.rate_ratios(fit, design, variable, group_effects=settings.group_effects,
                           standard=settings.standard, **common)
        rr_parts.append(rr)
        terms = dict(zip(rr["level"].astype(str), rr["term"]))
        term_map.update({t: (variable, lv, str(design.reference[variable]))
                         for lv, t in terms.items()})
        crude_parts.append(crude_rows(cells, spec, variable, tuple(map(str, levels)),
                                       str(design.reference[variable]), terms,
                                       settings.ci_prob))
        if E.interacts_with_year(design, variable):
            say(f"standardised rate ratios of {variable} within each year")
            crude_parts[-1] = pd.concat([crude_parts[-1],
                                         E.rate_ratios_by_year(
                                             fit, design, variable,
                                             group_effects=settings.group_effects,
                                             standard=settings.standard, **common)],
                                        ignore_index=True)
    parts = [_estimate_rows(fit, settings.ci_prob, term_map)]
    for rr, crude in zip(rr_parts, crude_parts):
        parts += [rr, crude]
    has_random = fit.group_sd is not None and len(fit.group_sd) > 0
    if has_random:
        say("ICC and median odds/rate ratios")
        parts.append(E.icc_mor(fit, **common))
    elif design.groups:
        notes.append(f"The {fit.engine} engine fits no random effects (group terms "
                     f"{', '.join(g.name for g in design.groups)} only cluster the standard "
                     "errors), so there are no group SDs, ICC, median odds ratios or unit "
                     "effects; fit with engine ml or pymc for them.")
    if _share_groups(settings, cells) is not None:
        say("share of events on pupils in overlapping groups")
        parts.append(_share_rows(spec, settings, design, fit, cells, common))
    units = []
    for g in design.groups:
        if g.name in fit.group_effects:
            say(f"unit effects of {g.name} ({g.n_levels} units)")
            units.append(_unit_rows(E.unit_effects(fit, design, g.name,
                                                   threshold=settings.threshold,
                                                   fdr=settings.fdr, **common), "effects"))
    for g in design.groups:
        units.append(unit_standardised_rows(fit, design, g))
    for s in design.slopes:
        if f"{s.variable}|{s.group}" in fit.slope_effects:
            say(f"{s.group}-specific ratios of {s.variable}")
            units.append(_unit_rows(E.unit_rate_ratios(fit, design, s.variable, s.group,
                                                       **common), "slopes"))
    if spec.ladder:
        variable = _ladder_variable(settings, design)
        say(f"adjustment ladder of {variable} ({len(spec.ladder)} steps, each a new fit)")
        ladder = E.adjustment_ladder(spec, cells, variable, group_effects=settings.group_effects,
                                     standard=settings.standard, progress=progress, **common)
        parts.append(ladder.assign(estimand="ladder_rate_ratio", variable=variable,
                                   reference=str(design.reference[variable]),
                                   n_draws=settings.n_draws))
    columns = [*ESTIMATE_COLUMNS, *ESTIMATES_EXTRA]
    table = pd.concat([p.reindex(columns=columns) for p in parts if len(p)],
                      ignore_index=True)
    unit_table = (pd.concat(units, ignore_index=True) if units
                  else pd.DataFrame(columns=list(UNIT_COLUMNS)))
    if len(unit_table):
        labels = unit_labels(cells, design)
        unit_table["label"] = [labels.get(str(g), {}).get(str(u), "")
                               for g, u in zip(unit_table["group_term"], unit_table["unit"])]
    return table, unit_table, notes



def _spec_facts(spec: Any, design: Any, fit: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "family": spec.family,
        "link": link_of(spec.family),
        "events": spec.events,
        "trials": spec.trials,
        "formula": spec.formula,
        "groups": list(spec.groups),
        "group_terms": [{"name": g.name, "columns": list(g.columns), "n_levels": g.n_levels,
                         "parent": g.parent} for g in design.groups],
        "slopes": dict(spec.slopes),
        "variables": [{"name": v, "levels": list(map(str, lv)),  # a list: keeps formula order
                       "reference": str(design.reference[v])}
                      for v, lv in model_variables(spec, design).items()],
        "engine": fit.engine,
        "seed": int(spec.seed),
        "sampler": {"sampler": spec.sampler, "draws": spec.draws, "tune": spec.tune,
                    "chains": spec.chains, "target_accept": spec.target_accept},
        "priors": dict(spec.priors),
        "engine_options": {k: dict(v) for k, v in spec.engine_options.items()},
        "ladder": [dict(step) for step in spec.ladder],
        "design_notes": list(design.notes),
        "n_cells": int(design.n_cells),
        "n_pupils": float(np.sum(design.trials)),
        "n_events": float(np.sum(design.events)),
    }
