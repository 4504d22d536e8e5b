"""The ``run`` job: a model file in, a folder of estimates, figures and a report out.

:func:`run_model` is the whole flow in one call::

    model file -> ModelSpec -> cells -> Design -> engine.fit -> Fit
               -> estimands (ratios, rate ratios by marginal standardisation, crude ratios,
                  ICC/MOR, unit effects, unit-specific ratios, adjustment ladder)
               -> estimates.csv, unit_effects.csv, cells_summary.csv, diagnostics.json
               -> figures, report.md, report.html -> manifest.json

:func:`rerender` redraws the figures and rewrites the report from the saved files without
refitting. Every file but ``manifest.json`` (and the engine's own ``fit.pkl``,
``posterior.nc`` and the timings in ``diagnostics.json``) is a function of the inputs and
the seed: running twice gives byte-identical ``estimates.csv`` and ``report.md``.

Settings of the report come from the model file's ``[report]`` table::

    [report]
    ci_prob = 0.95
    group_effects = "observed"   # observed | conditional | integrated (see estimands.rate_ratios)
    standard = "all"             # all | group
    n_draws = 1000               # draws for the intervals of derived estimands
    threshold = 1.0              # unit effects: probability that exp(u) exceeds this
    fdr = 0.05                   # false discovery rate of unit flags
    ladder_variable = "ethnicity"  # whose ratios the [[ladder]] follows
    share_groups = { sen = ["support", "ehcp"], cin = ["yes"], fsm = ["yes"] }
                                 # pupils whose share of events is reported (any of them);
                                 # default: these, for the columns the cells have; {} for none
    [report.suppression]
    min_pupils = 10
    min_events = 3
    round_to = 5
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from disparity import __version__, config
from disparity.engines.base import ESTIMATE_COLUMNS
from disparity.errors import DisparityError, DisparityWarning, SpecError
from disparity.vocabulary import PUPIL_ID, YEAR

__all__ = ["ReportSettings", "run_model", "rerender", "write_table", "ESTIMATES_EXTRA",
           "UNIT_COLUMNS", "SUMMARY_COLUMNS"]

#: Keys of ``[report]``.
REPORT_KEYS: tuple[str, ...] = ("ci_prob", "group_effects", "standard", "n_draws", "threshold",
                                "fdr", "ladder_variable", "share_groups", "suppression")
#: Default ``share_groups``: pupils with SEN (support or EHC plan), CIN or FSM (the Timpson
#: Review's "78% of permanent exclusions were of pupils with SEN, CIN or FSM"), restricted to
#: the columns the cells have.
SHARE_GROUPS: Mapping[str, tuple[str, ...]] = {"sen": ("support", "ehcp"), "cin": ("yes",),
                                               "fsm": ("yes",)}
#: How the default share groups read in the report.
SHARE_LABELS: Mapping[str, str] = {"sen": "SEN (support or EHC plan)", "cin": "CIN",
                                   "fsm": "FSM"}
#: Columns of ``estimates.csv`` after :data:`~disparity.engines.base.ESTIMATE_COLUMNS`.
ESTIMATES_EXTRA: tuple[str, ...] = (
    "variable", "level", "reference", "group_effects", "standard", "rate", "rate_reference",
    "n_events", "n_pupils", "variance", "step", "step_label", "formula", "groups", "n_draws",
    "method", "note", "year",
)
#: Columns of ``unit_effects.csv``.
UNIT_COLUMNS: tuple[str, ...] = (*ESTIMATE_COLUMNS, "group_term", "unit", "label", "variable",
                                 "level",
                                 "reference", "n_pupils", "n_events", "observed_rate",
                                 "prob_exceeds", "threshold", "p_value", "q_value", "flag_fdr",
                                 "fdr", "n_draws", "method", "expected_events")
#: Columns of ``cells_summary.csv``: observed counts by variable level, by unit, by year.
SUMMARY_COLUMNS: tuple[str, ...] = ("margin", "by", "level", "year", "n_pupils", "n_events")
#: Float format of every CSV written (as :data:`disparity.fitting.FLOAT_FORMAT`).
FLOAT_FORMAT = "%.10g"


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ReportSettings:
    """Settings of the estimands and the report, from a model file's ``[report]`` table.

    Examples
    --------
    >>> s = ReportSettings.from_mapping({"n_draws": 200, "suppression": {"min_events": 5}})
    >>> s.n_draws, s.group_effects, s.suppression["min_events"]
    (200, 'observed', 5)
    """

    ci_prob: float = config.CI_PROB
    group_effects: str = "observed"
    standard: str = "all"
    n_draws: int = 1000
    threshold: float = 1.0
    fdr: float = 0.05
    ladder_variable: str | None = None
    share_groups: Mapping[str, tuple[str, ...]] | None = None
    suppression: Mapping[str, Any] = None  # type: ignore[assignment]

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any] | None) -> "ReportSettings":
        """Check a ``[report]`` table (every problem listed at once) and build the settings."""
        from disparity.estimands import GROUP_EFFECTS, STANDARDS
        from disparity.report.suppress import SuppressionRules

        table = dict(table or {})
        problems = []
        for key in table:
            if key not in REPORT_KEYS:
                near = difflib.get_close_matches(key, REPORT_KEYS, n=1, cutoff=0.6)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(f"unknown key {key!r} in [report]{hint}; valid keys are "
                                + ", ".join(map(repr, REPORT_KEYS)))
        choices = {"group_effects": GROUP_EFFECTS, "standard": STANDARDS}
        for key, valid in choices.items():
            if key in table and table[key] not in valid:
                problems.append(f"[report] {key} = {table[key]!r} is not known; valid choices "
                                f"are {', '.join(map(repr, valid))}")
        n = table.get("n_draws", 1000)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            problems.append(f"[report] n_draws must be a whole number >= 1, not {n!r}")
        for key, low in (("threshold", 0.0), ("ci_prob", 0.0), ("fdr", 0.0)):
            v = table.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not v > low or (key != "threshold" and not v < 1)):
                problems.append(f"[report] {key} must be a number "
                                + ("> 0" if key == "threshold" else "between 0 and 1")
                                + f", not {v!r}")
        lv = table.get("ladder_variable")
        if lv is not None and not isinstance(lv, str):
            problems.append(f"[report] ladder_variable must be a column name, not {lv!r}")
        share = table.get("share_groups")
        if share is not None:
            good = isinstance(share, Mapping) and all(
                isinstance(k, str) and (isinstance(v, str) or (
                    isinstance(v, (list, tuple)) and len(v) > 0
                    and all(isinstance(x, str) for x in v)))
                for k, v in share.items())
            if not good:
                problems.append(f"[report] share_groups must be a table of column = level or "
                                f"[levels], such as {{ sen = [\"support\", \"ehcp\"], "
                                f"fsm = \"yes\" }} ({{}} for none), not {share!r}")
                share = None
            else:
                share = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in share.items()}
        suppression = table.get("suppression", {})
        if not isinstance(suppression, Mapping):
            problems.append("[report.suppression] must be a table such as "
                            "{ min_pupils = 10, min_events = 3 }")
            suppression = {}
        else:
            try:
                rules = SuppressionRules.from_mapping(suppression)
                suppression = {k: v for k, v in asdict(rules).items()}
            except SpecError as exc:
                problems.append(str(exc))
        if problems:
            raise SpecError("the [report] table has problems:\n"
                            + "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1)))
        return cls(
            ci_prob=float(table.get("ci_prob", config.CI_PROB)),
            group_effects=str(table.get("group_effects", "observed")),
            standard=str(table.get("standard", "all")),
            n_draws=int(n),
            threshold=float(table.get("threshold", 1.0)),
            fdr=float(table.get("fdr", 0.05)),
            ladder_variable=lv,
            share_groups=share,
            suppression=dict(suppression),
        )

    def to_dict(self) -> dict[str, Any]:
        share = (None if self.share_groups is None
                 else {k: list(v) for k, v in self.share_groups.items()})
        return {**asdict(self), "share_groups": share,
                "suppression": dict(self.suppression or {})}


# --------------------------------------------------------------------------- helpers
class _Progress:
    """One line per step on stderr, with the seconds since the run began."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}
        self._last: tuple[str, float] | None = None

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        if self._last is not None:
            name, began = self._last
            self.times[name] = round(now - began, 3)
        self._last = (step, now)
        if self.enabled:
            print(f"[disparity run {now - self.start:7.1f}s] {step}", file=sys.stderr,
                  flush=True)

    def done(self) -> dict[str, float]:
        self("done")
        return {k: v for k, v in self.times.items()}


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a CSV deterministically (``%.10g`` floats, ``\\n`` line ends, no index).

    Raises
    ------
    DisparityError
        The frame has a ``pupil_id`` column: pupil-level rows are never written to a run.

    Examples
    --------
    >>> import tempfile
    >>> write_table(pd.DataFrame({"pupil_id": [1]}), tempfile.mkdtemp() + "/x.csv")
    Traceback (most recent call last):
    ...
    disparity.errors.DisparityError: refusing to write x.csv: it has a 'pupil_id' column; ...
    """
    path = Path(path)
    if PUPIL_ID in map(str, frame.columns):
        raise DisparityError(
            f"refusing to write {path.name}: it has a {PUPIL_ID!r} column; pupil-level rows "
            "are never written to a run folder; collapse them to cells first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return path


def _file_facts(path: Path | None, out_dir: Path) -> dict[str, Any]:
    """SHA-256 of an input file, and its path relative to the run folder (no machine paths)."""
    from disparity.report.manifest import sha256_file

    if path is None or not Path(path).is_file():
        return {"path": None if path is None else str(path), "sha256": None}
    try:
        where = os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())
    except ValueError:  # another drive
        where = Path(path).name
    return {"path": Path(where).as_posix(), "sha256": sha256_file(path)}


def _display_path(path: Path | None, model_file: Path | None) -> str | None:
    """A path as the reader should see it: relative to the model file's folder if possible."""
    if path is None:
        return None
    if model_file is not None:
        try:
            return os.path.relpath(Path(path).resolve(), Path(model_file).resolve().parent)
        except ValueError:  # another drive
            pass
    return Path(path).name


def _jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as strings (JSON has neither) and numpy scalars
    as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _link(family: str) -> str:
    return "logit" if family == "binomial" else "log"


# --------------------------------------------------------------------------- estimands
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


def _crude_rows(cells: pd.DataFrame, spec: Any, variable: str, levels: tuple[str, ...],
                reference: str, terms: Mapping[str, str], ci_prob: float) -> pd.DataFrame:
    """Crude ratios and differences of each level against the reference, from the cells.

    Binomial: risk ratios with Katz intervals and Newcombe risk differences
    (:func:`disparity.measures.disproportionality`, no minimum sizes). Count families: rate
    ratios ``(e1 / n1) / (e0 / n0)`` with the Poisson interval
    ``exp(log RR +/- z sqrt(1 / e1 + 1 / e0))`` and rate differences with the Wald interval
    ``+/- z sqrt(e1 / n1**2 + e0 / n0**2)`` (Rothman, Greenland and Lash 2008, *Modern
    Epidemiology*, 3rd ed., chapter 14).
    """
    from scipy.stats import norm

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
        z = float(norm.ppf(0.5 + ci_prob / 2))
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
    rows = []
    for level in levels:
        if level == reference or level not in out.index:
            continue
        r = out.loc[level]
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


def _unit_labels(cells: pd.DataFrame, design: Any) -> dict[str, dict[str, str]]:
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


def _unit_rows(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "effects":
        table = table.rename(columns={"level": "unit"}).assign(variable="", level="",
                                                               reference="")
    else:
        table = table.rename(columns={"n_pupils_level": "n_pupils"})
    return table.reindex(columns=list(UNIT_COLUMNS))


def _cells_summary(design: Any, frame: pd.DataFrame, spec: Any) -> pd.DataFrame:
    """Observed pupils and events by each variable's level, each unit, and year (aggregates)."""
    events = np.asarray(design.events, dtype=float)
    trials = np.asarray(design.trials, dtype=float)
    parts = []
    variables = _variables(spec, design)
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


def _variables(spec: Any, design: Any) -> dict[str, tuple[str, ...]]:
    """Categorical variables of the formula and their levels, in formula order."""
    from disparity.spec import formula_variables

    order = [v for v in formula_variables(spec.formula) if v in design.levels]
    order += [v for v in design.levels if v not in order]
    return {v: tuple(design.levels[v]) for v in order}


def _year_design(design: Any, year: str) -> Any:
    """The cells of one year of ``design`` (same columns, units and levels; fewer rows)."""
    keep = np.flatnonzero(design.data[YEAR].astype(str).to_numpy() == str(year))
    groups = tuple(replace(g, index=np.asarray(g.index)[keep]) for g in design.groups)
    return replace(design, X=np.asarray(design.X)[keep], events=np.asarray(design.events)[keep],
                   trials=np.asarray(design.trials)[keep], groups=groups,
                   data=design.data.iloc[keep].reset_index(drop=True))


def _interacts_with_year(design: Any, variable: str) -> bool:
    """Whether the formula lets ``variable``'s effect differ by year (``variable * year``)."""
    if variable == YEAR or YEAR not in design.levels:
        return False
    return any(":" in term and f"{variable}[" in term and f"{YEAR}[" in term
               for term in design.terms)


def _by_year_rows(fit: Any, design: Any, variable: str, settings: "ReportSettings",
                  common: Mapping[str, Any]) -> pd.DataFrame:
    """Standardised rate ratios of ``variable`` within each year, when it interacts with year.

    Each year's ratio is :func:`disparity.estimands.rate_ratios` over that year's cells only,
    so with a log link and no other covariates it equals ``exp(b_level + b_level:year)``.
    """
    from disparity import estimands as E

    parts = []
    for year in design.levels[YEAR]:
        rr = E.rate_ratios(fit, _year_design(design, year), variable,
                           group_effects=settings.group_effects, standard=settings.standard,
                           **common)
        parts.append(rr.assign(estimand=rr["estimand"] + "_by_year", year=str(year)))
    return pd.concat(parts, ignore_index=True)


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


def _unit_standardised_rows(fit: Any, design: Any, group: Any) -> pd.DataFrame:
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


def _estimands(spec: Any, settings: ReportSettings, design: Any, fit: Any, cells: pd.DataFrame,
               say: _Progress, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    from disparity import estimands as E

    seed = int(spec.seed)
    common = dict(ci_prob=settings.ci_prob, n_draws=settings.n_draws, seed=seed)
    notes: list[str] = []
    rr_parts, crude_parts = [], []
    term_map: dict[str, tuple[str, str, str]] = {}
    for variable, levels in _variables(spec, design).items():
        n = len(levels) - 1
        say(f"standardised rate ratios of {variable} ({n} level{'s' if n != 1 else ''})")
        rr = E.rate_ratios(fit, design, variable, group_effects=settings.group_effects,
                           standard=settings.standard, **common)
        rr_parts.append(rr)
        terms = dict(zip(rr["level"].astype(str), rr["term"]))
        term_map.update({t: (variable, lv, str(design.reference[variable]))
                         for lv, t in terms.items()})
        crude_parts.append(_crude_rows(cells, spec, variable, tuple(map(str, levels)),
                                       str(design.reference[variable]), terms,
                                       settings.ci_prob))
        if _interacts_with_year(design, variable):
            say(f"standardised rate ratios of {variable} within each year")
            crude_parts[-1] = pd.concat([crude_parts[-1],
                                         _by_year_rows(fit, design, variable, settings, common)],
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
        units.append(_unit_standardised_rows(fit, design, g))
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
        labels = _unit_labels(cells, design)
        unit_table["label"] = [labels.get(str(g), {}).get(str(u), "")
                               for g, u in zip(unit_table["group_term"], unit_table["unit"])]
    return table, unit_table, notes


# --------------------------------------------------------------------------- run
def _fit(spec: Any, data: Any, say: _Progress, progress: bool) -> tuple[Any, Any, Any]:
    from disparity.design import build_design
    from disparity.engines import get_engine
    from disparity.fitting import load_model_data

    say("reading data")
    loaded = load_model_data(spec, data)
    say(f"building the design ({len(loaded.frame):,} cells)")
    design = build_design(spec, loaded.frame)
    if loaded.notes:
        design = replace(design, notes=(*design.notes, *loaded.notes))
    say(f"fitting with the {spec.engine} engine")
    fit = get_engine(spec.engine).fit(design, spec, progress=progress)
    fit = replace(fit, diagnostics={**dict(fit.diagnostics), "data": loaded.summary()})
    return loaded, design, fit


def _spec_facts(spec: Any, design: Any, fit: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "family": spec.family,
        "link": _link(spec.family),
        "events": spec.events,
        "trials": spec.trials,
        "formula": spec.formula,
        "groups": list(spec.groups),
        "group_terms": [{"name": g.name, "columns": list(g.columns), "n_levels": g.n_levels,
                         "parent": g.parent} for g in design.groups],
        "slopes": dict(spec.slopes),
        "variables": [{"name": v, "levels": list(map(str, lv)),  # a list: keeps formula order
                       "reference": str(design.reference[v])}
                      for v, lv in _variables(spec, design).items()],
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


def run_model(
    model_path: str | os.PathLike[str] | Any,
    out_dir: str | os.PathLike[str],
    *,
    data: pd.DataFrame | str | os.PathLike[str] | None = None,
    engine: str | None = None,
    progress: bool = True,
) -> Path:
    """Fit a model file, compute its estimands and write a full report to ``out_dir``.

    Parameters
    ----------
    model_path : path or ModelSpec
        A TOML model file (``models/NAME.toml``).
    out_dir : path
        The run folder (made if needed; files of an earlier run are replaced).
    data : DataFrame or path, optional
        Data to use instead of the model file's ``[data] path``.
    engine : {"ml", "pymc", "glm"}, optional
        Overrides ``[fit] engine``.
    progress : bool
        Print one line per step on stderr (and let the engine show its progress).

    Returns
    -------
    Path
        ``out_dir``, holding ``estimates.csv`` (every estimand, one tidy table),
        ``unit_effects.csv``, ``cells_summary.csv`` (observed counts by level, unit and year:
        aggregates, never pupil rows), ``diagnostics.json``, ``fit.pkl``, ``figures/``
        (PNG and SVG), ``report.md``, ``report.html`` and ``manifest.json``.

    Raises
    ------
    SpecError, ReadError, ValidationError, FitError
        From reading the model and data, fitting, or an invalid ``[report]`` table.

    Warns
    -----
    DisparityWarning
        Every warning raised on the way (convergence, dropped data, odds ratios that
        overstate risk ratios) is recorded in ``diagnostics.json`` and the report, then
        re-issued once.

    Examples
    --------
    >>> import tempfile, warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     out = run_model("models/cbpp.toml", tempfile.mkdtemp(), engine="glm",
    ...                     progress=False)  # doctest: +SKIP
    >>> (out / "report.md").exists()  # doctest: +SKIP
    True
    """
    from disparity.fitting import write_run
    from disparity.report.render import render_report
    from disparity.spec import ModelSpec, load_spec

    say = _Progress(progress)
    spec = model_path if isinstance(model_path, ModelSpec) else load_spec(model_path)
    model_file = None if isinstance(model_path, ModelSpec) else Path(model_path)
    if model_file is None and spec.source is not None:
        model_file = Path(spec.source)
    if engine is not None:
        spec = spec.replace(engine=engine)
    settings = ReportSettings.from_mapping(spec.report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, design, fit = _fit(spec, data, say, progress)
        say("writing the fit")
        write_run(fit, out_dir, spec)
        table, units, notes = _estimands(spec, settings, design, fit, loaded.frame, say,
                                         progress)
    run_warnings = list(dict.fromkeys(
        [*fit.warnings, *(str(w.message) for w in caught
                          if issubclass(w.category, DisparityWarning))]))

    say("writing estimates")
    write_table(table, out_dir / "estimates.csv")
    write_table(units, out_dir / "unit_effects.csv")
    write_table(_cells_summary(design, loaded.frame, spec), out_dir / "cells_summary.csv")

    if isinstance(data, pd.DataFrame):
        from disparity.report.manifest import sha256_bytes

        data_facts = {"path": None, "display": "a data frame passed in memory",
                      "sha256": sha256_bytes(data.to_csv(index=False,
                                                         lineterminator="\n").encode())}
    else:
        data_file = Path(data) if data is not None else spec.data_path
        data_facts = {**_file_facts(data_file, out_dir),
                      "display": _display_path(data_file, model_file)}
    data_facts.update(fit.diagnostics.get("data", {}))
    data_facts["source"] = data_facts.get("display")
    model_facts = {**_file_facts(model_file, out_dir),
                   "display": None if model_file is None else Path(model_file).name}
    run = {
        "model_file": model_facts,
        "data": data_facts,
        "spec": _spec_facts(spec, design, fit),
        "report": settings.to_dict(),
        "warnings": run_warnings,
        "notes": notes,
        "package_version": __version__,
    }
    diag_path = out_dir / "diagnostics.json"
    diagnostics = json.loads(diag_path.read_text(encoding="utf-8"))
    diagnostics["run"] = run
    diag_path.write_text(json.dumps(_jsonable(diagnostics), indent=2, sort_keys=True,
                                    default=str, allow_nan=False) + "\n", encoding="utf-8")

    say("drawing figures and writing the report")
    render_report(out_dir)
    times = say.done()
    _manifest(out_dir, run, diagnostics, times)
    for message in run_warnings:
        category = next((w.category for w in caught if str(w.message) == message),
                        DisparityWarning)
        warnings.warn(message, category, stacklevel=2)
    for w in caught:  # everything else passes through unchanged
        if not issubclass(w.category, DisparityWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out_dir


def _manifest(out_dir: Path, run: Mapping[str, Any], diagnostics: Mapping[str, Any],
              times: Mapping[str, float] | None, **extra: Any) -> Path:
    from disparity.report.manifest import write_manifest

    spec = run["spec"]
    fit_diag = diagnostics.get("diagnostics", {})
    summary_keys = ("converged", "iterations", "max_rhat", "min_ess_bulk", "min_ess_tail",
                    "divergences", "singular_terms")
    info = {
        "model": spec["name"],
        "model_file": run["model_file"],
        "data": {k: run["data"].get(k) for k in ("path", "sha256", "kind", "n_cells",
                                                 "n_rows_read")},
        "engine": spec["engine"],
        "seed": spec["seed"],
        "sampler": spec["sampler"],
        "report": run["report"],
        "diagnostics": {k: fit_diag[k] for k in summary_keys if k in fit_diag},
        "warnings": run["warnings"],
        "disparity_version": run["package_version"],
        **({"seconds": dict(times)} if times else {}),
        **extra,
    }
    return write_manifest(out_dir, info)


def rerender(run_dir: str | os.PathLike[str]) -> Path:
    """Redraw the figures and rewrite ``report.md``/``report.html`` from a run's saved files.

    Nothing is refitted: the report is built from ``estimates.csv``, ``unit_effects.csv``,
    ``cells_summary.csv`` and ``diagnostics.json``, so it has the same bytes as the one
    :func:`run_model` wrote (unless those files were changed). ``manifest.json`` is rewritten
    with the new file hashes and a ``rerendered`` timestamp.

    Returns
    -------
    Path
        The path of ``report.md``.

    Raises
    ------
    ReadError
        ``run_dir`` is not a run folder (a saved file is missing).
    """
    from datetime import datetime, timezone

    from disparity.report.render import render_report

    run_dir = Path(run_dir)
    report = render_report(run_dir)
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text(encoding="utf-8"))
    previous = {}
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        previous = json.loads(manifest.read_text(encoding="utf-8"))
    _manifest(run_dir, diagnostics["run"], diagnostics, previous.get("seconds"),
              rerendered=datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **({"created_first": previous.get("created")} if previous.get("created") else {}))
    return report
