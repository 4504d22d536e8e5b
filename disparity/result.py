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
    units : DataFrame
        Shrunken unit effects, unit-specific ratios and standardised unit ratios (the rows
        of ``unit_effects.csv``; :meth:`unit_effects` filters them).
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
    units: pd.DataFrame
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

    # -- the analyst's view
    def rate_ratios(self, variable: str | None = None, *, group_effects: str | None = None,
                    standard: str | None = None, ci_prob: float | None = None,
                    n_draws: int | None = None) -> pd.DataFrame:
        """Adjusted (standardised) rate ratios of a variable's levels against its reference.

        With no settings given, the rows of :attr:`estimates` (as published); otherwise
        computed afresh by :func:`disparity.estimands.rate_ratios`. ``variable`` defaults to
        every categorical variable of the formula.
        """
        return _ratio_rows(self, "rate_ratio", variable, group_effects, standard, ci_prob,
                           n_draws)

    def rate_differences(self, variable: str | None = None, *,
                         group_effects: str | None = None, standard: str | None = None,
                         ci_prob: float | None = None, n_draws: int | None = None
                         ) -> pd.DataFrame:
        """Adjusted (standardised) rate differences, per pupil; see :meth:`rate_ratios`."""
        return _ratio_rows(self, "rate_difference", variable, group_effects, standard,
                           ci_prob, n_draws)

    def icc(self) -> pd.DataFrame:
        """Group SDs, intraclass correlations and median odds (rate) ratios."""
        keep = ("group_sd", "slope_sd", "icc", "median_odds_ratio", "median_rate_ratio")
        return self.estimates[self.estimates.estimand.isin(keep)].reset_index(drop=True)

    def unit_effects(self, group: str | None = None) -> pd.DataFrame:
        """Shrunken unit effects (``unit_ratio`` and ``unit_rate`` rows) of one group term,
        or of every term."""
        rows = self.units[self.units.estimand.isin(["unit_ratio", "unit_rate"])]
        if group is not None:
            terms = [g.name for g in self.design.groups]
            if group not in terms:
                raise SpecError(f"no group term {group!r}; the model's terms are {terms!r}")
            rows = rows[rows.group_term == group]
        return rows.reset_index(drop=True)

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The engine's convergence facts and every warning of the run."""
        return {**dict(self.fit.diagnostics), "warnings": list(self.warnings)}

    @property
    def idata(self) -> Any:
        """The posterior as ArviZ InferenceData (pymc engine), with a ``log_likelihood``
        group per cell where the engine stores one, so ``az.loo`` works."""
        raw = self.fit.raw
        if raw is None or not hasattr(raw, "posterior"):
            raise SpecError(f"the {self.fit.engine} engine gives no posterior; fit with "
                            "engine='pymc' for InferenceData")
        return raw

    def predict(self, newdata: pd.DataFrame, *, scale: str = "response",
                group_effects: str = "observed", new_levels: str = "population") -> pd.Series:
        """Predicted rates (or linear predictors) of new cells or pupils; see
        :func:`_predict` for the choices."""
        return _predict(self, newdata, scale=scale, group_effects=group_effects,
                        new_levels=new_levels)

    def summary(self) -> str:
        """The model in plain text: family, engine, convergence, fixed effects, group SDs
        and headline rate ratios."""
        return _summary(self)

    def __repr__(self) -> str:
        return (f"<disparity Result: {self.spec.name}, {self.fit.engine} engine, "
                f"{self.design.n_cells:,} cells; .summary() for the model>")

    def plot(self, kind: str = "forest", *, variable: str | None = None,
             term: str | None = None) -> Any:
        """A figure of the report as a matplotlib ``Figure``: ``"forest"``, ``"funnel"``,
        ``"funnel_ratio"``, ``"caterpillar"`` or ``"trend"``, drawn from the published
        (disclosure-controlled) tables exactly as in the report."""
        from disparity.report.publish import published_files
        from disparity.report.render import draw, read_tables

        if self.scope != "run":
            raise SpecError("this result has the model's own estimates only (scope 'fit'); "
                            "its figures need every estimand: fit it with scope='run'")
        return draw(read_tables(published_files(self)), kind, variable=variable, term=term)

    def report(self, out_dir: Any, **options: Any) -> Path:
        """Publish the run folder (disclosure control, the report, an atomic write); see
        :func:`disparity.report.publish.publish` for the options."""
        from disparity.report.publish import publish

        return publish(self, out_dir, **options)

    def compare(self, other: "Result", *, estimands: tuple[str, ...] = (
            "coefficient", "group_sd", "rate_ratio")) -> pd.DataFrame:
        """Two results' estimates side by side (``estimate_a``, ``estimate_b``, their
        difference and that difference in standard errors of ``a``): e.g. two engines, or
        two models, on the same data."""
        keys = ["estimand", "term", "group_effects"]

        def pick(r: "Result") -> pd.DataFrame:
            t = r.estimates[r.estimates.estimand.isin(estimands)]
            t = t[[*keys, "estimate", "std_error", "conf_low", "conf_high"]].copy()
            for k in keys:
                t[k] = t[k].fillna("").astype(str)
            return t

        both = pick(self).merge(pick(other), on=keys, how="outer", suffixes=("_a", "_b"))
        both["difference"] = both.estimate_b - both.estimate_a
        with np.errstate(divide="ignore", invalid="ignore"):
            both["difference_in_se"] = both.difference / both.std_error_a
        return both


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
                  estimates=table, units=units,
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
    upper = getattr(design, "events_upper", None)
    censored = 0 if upper is None else int(np.sum(np.asarray(upper) != design.events))
    return {
        "censored_cells": censored,
        "censoring": next((n for n in design.notes if "suppressed at source" in n
                           or "interval-censored" in n), ""),
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
        # the values the sampler used where it reports them (a None in the spec is the
        # engine's default)
        "sampler": {"sampler": spec.sampler, "draws": spec.draws,
                    "tune": fit.diagnostics.get("tune", spec.tune), "chains": spec.chains,
                    "target_accept": fit.diagnostics.get("target_accept", spec.target_accept)},
        "priors": dict(spec.priors),
        "engine_options": {k: dict(v) for k, v in spec.engine_options.items()},
        "ladder": [dict(step) for step in spec.ladder],
        "design_notes": list(design.notes),
        "n_cells": int(design.n_cells),
        "n_pupils": float(np.sum(design.trials)),
        "n_events": float(np.sum(design.events)),
    }


# --------------------------------------------------------------------------- the Result's API
_SCALES = ("response", "link")
_NEW_LEVELS = ("population", "integrated", "error")


def _ratio_rows(result: Result, estimand: str, variable: str | None, group_effects: str | None,
                standard: str | None, ci_prob: float | None, n_draws: int | None
                ) -> pd.DataFrame:
    from disparity import estimands as E

    variables = list(result.variables)
    chosen = variables if variable is None else [variable]
    unknown = [v for v in chosen if v not in variables]
    if unknown:
        raise SpecError(f"{unknown[0]!r} is not a categorical variable of the formula; "
                        f"variables are {variables!r}")
    s = result.settings
    if all(x is None for x in (group_effects, standard, ci_prob, n_draws)) and \
            result.scope == "run":
        t = result.estimates
        rows = t[(t.estimand == estimand) & t.variable.isin(chosen) & (t.group_effects != "")]
        return rows.reset_index(drop=True)
    parts = [E.rate_ratios(result.fit, result.design, v,
                           group_effects=group_effects or s.group_effects,
                           standard=standard or s.standard, ci_prob=ci_prob or s.ci_prob,
                           n_draws=n_draws or s.n_draws, seed=int(result.spec.seed))
             for v in chosen]
    rows = pd.concat(parts, ignore_index=True)
    return rows[rows.estimand == estimand].reset_index(drop=True)


def _predict(result: Result, newdata: pd.DataFrame, *, scale: str = "response",
            group_effects: str = "observed", new_levels: str = "population") -> pd.Series:
    """Predicted rates (or linear predictors) of new cells or pupils (:meth:`Result.predict`).

    Parameters
    ----------
    result : Result
    newdata : DataFrame
        The formula's columns (categorical levels as in the fitted data) and, for group
        effects, the group terms' columns.
    scale : {"response", "link"}
        ``"response"``: the rate per pupil (a probability for the binomial family, events
        per unit of exposure for counts); ``"link"``: the linear predictor.
    group_effects : {"observed", "conditional"}
        ``"observed"``: each row at its own units' estimated effects (conditional modes or
        posterior means); ``"conditional"``: every unit effect at zero.
    new_levels : {"population", "integrated", "error"}
        A unit not in the fitted data: ``"population"`` gives it no effect (a typical
        unit: the median rate of a new unit); ``"integrated"`` averages the rate over the
        unit distribution ``N(0, sd^2)`` (the mean rate of a new unit; response scale
        only); ``"error"`` refuses it.

    Returns
    -------
    Series
        One value per row of ``newdata`` (same index), named ``"rate"`` or ``"link"``.
    """
    import patsy

    from disparity.estimands import _logistic_normal

    if scale not in _SCALES:
        raise SpecError(f"scale {scale!r} is not known; choose {_SCALES!r}")
    if group_effects not in ("observed", "conditional"):
        raise SpecError(f"group_effects {group_effects!r} is not known; choose 'observed' or "
                        "'conditional'")
    if new_levels not in _NEW_LEVELS:
        raise SpecError(f"new_levels {new_levels!r} is not known; choose {_NEW_LEVELS!r}")
    design, fit = result.design, result.fit
    data = newdata.copy()
    problems = []
    for var, levels in design.levels.items():
        if var not in data.columns:
            problems.append(f"column {var!r} is missing")
            continue
        text = data[var].astype(str).str.strip()
        bad = sorted(set(text) - set(levels))
        if bad:
            problems.append(f"column {var!r} has level(s) {bad!r} the model was not fitted to; "
                            f"its levels are {list(levels)!r}")
        data[var] = pd.Categorical(text, categories=list(levels))
    if problems:
        raise SpecError("newdata cannot be predicted: " + "; ".join(problems))
    try:
        (X,) = patsy.build_design_matrices([design.design_info], data, NA_action="raise")
    except patsy.PatsyError as exc:
        raise SpecError(f"newdata cannot be predicted: {exc}") from None
    eta = np.asarray(X, dtype=float) @ np.asarray(fit.coef, dtype=float)
    unknown_var = np.zeros(len(data))
    if group_effects == "observed":
        sds = {} if fit.group_sd is None else dict(zip(fit.group_sd.term, fit.group_sd.estimate))
        for g in design.groups:
            missing = [c for c in g.columns if c not in data.columns]
            if missing:
                raise SpecError(f"newdata has no {missing!r} column(s) for the group term "
                                f"{g.name!r}; add them, or pass group_effects='conditional'")
            label = data[list(g.columns)].astype(str).agg("/".join, axis=1).to_numpy()
            table = fit.group_effects.get(g.name)
            if table is None:
                continue
            effects = dict(zip(table.level.astype(str), table.estimate))
            known = np.array([lv in effects for lv in label])
            if new_levels == "error" and not known.all():
                raise SpecError(f"newdata has {g.name} level(s) "
                                f"{sorted(set(label[~known]))[:5]!r} not in the fitted data; "
                                "pass new_levels='population' or 'integrated'")
            eta = eta + np.array([effects.get(lv, 0.0) for lv in label])
            unknown_var += np.where(known, 0.0, float(sds.get(g.name, 0.0)) ** 2)
        for s in design.slopes:
            table = fit.slope_effects.get(f"{s.variable}|{s.group}")
            if table is None:
                continue
            g = design.group(s.group)
            label = data[list(g.columns)].astype(str).agg("/".join, axis=1).to_numpy()
            for j, term in zip(s.columns, s.terms):
                part = table[table.term == term]
                dev = dict(zip(part.level.astype(str), part.estimate))
                eta = eta + np.asarray(X)[:, j] * np.array([dev.get(lv, 0.0) for lv in label])
    if scale == "link":
        return pd.Series(eta, index=newdata.index, name="link")
    if design.family == "binomial":
        from scipy.special import expit

        rate = (_logistic_normal(eta, unknown_var) if new_levels == "integrated"
                else expit(eta))
    else:
        rate = np.exp(eta + (unknown_var / 2 if new_levels == "integrated" else 0.0))
    return pd.Series(rate, index=newdata.index, name="rate")


def _summary(result: Result) -> str:
    """The model in plain text, in the spirit of statsmodels' summary: family, engine,
    convergence, fixed effects, group SDs and headline rate ratios."""
    fit, spec, design = result.fit, result.spec, result.design
    diag = fit.diagnostics
    link = link_of(spec.family)
    width = 78
    lines = ["=" * width, f"disparity model: {spec.name}".ljust(48)
             + f"engine: {fit.engine}".rjust(width - 48)]
    lines.append(f"family: {spec.family} ({link} link)   response: {spec.events} out of "
                 f"{spec.trials}")
    lines.append(f"cells: {design.n_cells:,}   {spec.trials}: {float(np.sum(design.trials)):,.0f}"
                 f"   {spec.events}: {float(np.sum(design.events)):,.0f}")
    conv = diag.get("converged")
    parts = [f"converged: {'yes' if conv else 'NO'}" if conv is not None else ""]
    for key, label in (("iterations", "iterations"), ("log_likelihood", "log-likelihood"),
                       ("max_rhat", "max r-hat"), ("min_ess_bulk", "min bulk ESS"),
                       ("divergences", "divergences")):
        if diag.get(key) is not None and not isinstance(diag[key], (dict, list)):
            v = diag[key]
            parts.append(f"{label}: {v:,.4g}" if isinstance(v, float) else f"{label}: {v}")
    lines.append("   ".join(p for p in parts if p))
    lines.append("-" * width)
    ci = f"{result.settings.ci_prob:.0%}"
    lines.append(f"{'Fixed effects (' + link + ' scale)':<40}{'estimate':>10}{'std.err':>10}"
                 f"{ci + ' interval':>18}")
    est = result.estimates
    for r in est[est.estimand == "coefficient"].itertuples():
        lines.append(f"  {r.term[:37]:<38}{r.estimate:>10.3f}{r.std_error:>10.3f}"
                     f"{r.conf_low:>9.3f} {r.conf_high:>8.3f}")
    sd = est[est.estimand.isin(["group_sd", "slope_sd"])]
    if len(sd):
        lines.append(f"{'Group SDs (' + link + ' scale)':<40}")
        for r in sd.itertuples():
            lines.append(f"  {r.term[:37]:<38}{r.estimate:>10.3f}{r.std_error:>10.3f}"
                         f"{r.conf_low:>9.3f} {r.conf_high:>8.3f}")
    rr = est[(est.estimand == "rate_ratio") & (est.group_effects != "")]
    if len(rr):
        word = "risk" if spec.family == "binomial" else "rate"
        lines.append(f"Adjusted {word} ratios (standardised; group effects "
                     f"{result.settings.group_effects})")
        for r in rr.itertuples():
            label = f"{r.variable}: {r.level} vs {r.reference}"
            lines.append(f"  {label[:47]:<48}{r.estimate:>8.2f}  ({r.conf_low:.2f} to "
                         f"{r.conf_high:.2f})")
    if result.warnings:
        lines.append("-" * width)
        lines.append("Warnings:")
        import textwrap

        for w in result.warnings:
            lines += textwrap.wrap(w, width=width - 4, initial_indent="  - ",
                                   subsequent_indent="    ")
    lines.append("=" * width)
    return "\n".join(lines)

