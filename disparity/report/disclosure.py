"""Disclosure control of a whole run: every count, and every number built on one, in every
table and file that leaves the process, suppressed together.

A run publishes counts in several places: pupils and events by each level of each formula
variable (and by year), by each unit (LA, school in LA, trust), crude ratios and rates built
on those counts, observed shares of events, and the unit positions drawn in the funnel
plots. Suppressing each table on its own is not enough: a count hidden in one table can be
read from another, or from a difference between tables. So this module builds **one
registry of counts** for the run, keyed by what each count counts::

    {}                              every pupil (the grand total)
    {sen: support}                  a level of a variable
    {sen: support, year: 2016/17}   a level in one year
    {year: 2016/17}                 a year
    {la: E09000013}                 a unit
    {school: E09000013/1234}        a unit nested in another (its label names the parent)
    {school: E09000013/other}       the units of a parent too small to be listed, pooled

and one list of the additive relations between them (a total is the sum of its parts:
levels of each variable, years, units in their parent, levels within each year). Primary
suppression (``1 <= n_pupils < min_pupils``; ``1 <= n_events < min_events``), then secondary
suppression and a linear-programming audit (:func:`disparity.report.suppress.protect`) run
over the whole registry at once, so a value is protected against every published figure of
every table together. Pupils are protected first; every count whose pupils are hidden has
its events hidden too.

The published collection of margins is *decomposable*: variables, years and units meet only
at shared totals (a variable's levels by year, a unit hierarchy), with no cycle among them.
For such collections any set of margins consistent on their shared totals is attained by a
non-negative integer table, so the audit over the margins is exact: a reader who knows every
published figure learns no more than the registry's linear program allows. The one count
that would break this, the number of pupils in a union of groups (the "share of events on
pupils with SEN, CIN or FSM"), is published only when every count of the variables it is
built on is published and both it and its complement pass primary suppression; the
cross-tabulated pupils of varying slopes (units by level) are not published at all.

*Derived numbers* follow their counts (DfE's own rule: ``x`` is "a count of 1 or 2, or a
rate built on one"): a rate, a share, a crude ratio or difference with its interval, an
observed/expected ratio, and any model estimate that is algebraically a crude one (a step of
the adjustment ladder whose only term is the variable itself, with no group effects) is
published only when every count it is built on is. Model-based quantities (adjusted ratios,
shrunken unit effects, SDs) are published.

*Units below* ``min_pupils`` are not listed one by one: their counts are pooled into a
stated remainder (per parent unit, for nested units), which is itself a count under the same
rules, and their model effects are left out with a count of how many were.

References
----------
Government Statistical Service (2021). *Statistical disclosure control for tables produced
from administrative data sources.*

Hundepool, A. et al. (2012). *Statistical Disclosure Control*, sections 4.2-4.4 (linked
tables). Wiley.

Lauritzen, S. L. (1996). *Graphical Models*, chapter 4 (decomposable margins have a joint).
Oxford University Press.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from disparity import config
from disparity.settings import SuppressionRules
from disparity.vocabulary import YEAR

from .precision import rounded_table
from .suppress import protect

if TYPE_CHECKING:  # pragma: no cover
    from ..result import Result

__all__ = ["CountRegistry", "Disclosure", "disclose_counts", "OTHER", "SUPPRESSED"]

#: Level label of a remainder: the units too small to list, pooled.
OTHER = "other"
#: The GSS symbol of a suppressed value.
SUPPRESSED = config.SYMBOL_SUPPRESSED
#: The GSS symbol of a value that is not available (it includes counts suppressed at source).
UNAVAILABLE = config.SYMBOL_UNAVAILABLE

Key = frozenset


def key(**parts: Any) -> Key:
    """A registry key: what a count counts, e.g. ``key(sen="support", year="2016/17")``.

    Examples
    --------
    >>> sorted(key(sen="support", year="2016/17"))
    [('sen', 'support'), ('year', '2016/17')]
    """
    return frozenset((k, str(v)) for k, v in parts.items())


@dataclass
class CountRegistry:
    """Counts of pupils and events under their keys, and the relations between them.

    ``relations`` holds ``(total, parts, what)``: the count under ``total`` equals the sum of
    the counts under ``parts``.
    """

    keys: list[Key] = field(default_factory=list)
    pupils: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    events_high: list[float] = field(default_factory=list)
    relations: list[tuple[int, list[int], str]] = field(default_factory=list)
    _index: dict[Key, int] = field(default_factory=dict)

    def add(self, k: Key, pupils: float, events: float, events_high: float | None = None
            ) -> int:
        """Register a count (once; a second registration must agree). ``events_high``:
        the largest value of an event count that includes counts suppressed at source
        (the count is then not available; default ``events``)."""
        if k in self._index:
            i = self._index[k]
            if self.pupils[i] != pupils or self.events[i] != events:  # pragma: no cover
                raise AssertionError(f"two different counts under one key {sorted(k)}")
            return i
        self._index[k] = len(self.keys)
        self.keys.append(k)
        self.pupils.append(float(pupils))
        self.events.append(float(events))
        self.events_high.append(float(events if events_high is None else events_high))
        return self._index[k]

    @property
    def events_known(self) -> np.ndarray:
        """Whether each event count is known exactly (no count suppressed at source in it)."""
        return np.asarray(self.events) == np.asarray(self.events_high)

    def index(self, k: Key) -> int | None:
        return self._index.get(k)

    def relate(self, total: Key, parts: Sequence[Key], what: str) -> None:
        """Record ``count(total) == sum(count(p) for p in parts)`` (checked)."""
        t = self._index[total]
        idx = [self._index[p] for p in parts]
        if not idx:
            return
        for name, values in (("pupils", self.pupils), ("events", self.events)):
            gap = values[t] - sum(values[i] for i in idx)
            if abs(gap) > 1e-6 * max(1.0, abs(values[t])):  # pragma: no cover - by construction
                raise AssertionError(f"{what}: {name} of the parts do not add up to the total")
        self.relations.append((t, idx, what))

    def constraints(self) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """The relations as ``sum(coef * value) == 0`` rows, total last."""
        out = []
        for t, idx, what in self.relations:
            out.append((np.array([*idx, t]), np.r_[np.ones(len(idx)), -1.0], what))
        return out


@dataclass(frozen=True)
class Disclosure:
    """What may be published of a registry.

    Attributes
    ----------
    registry : CountRegistry
    pupils_shown, events_shown : ndarray of bool
        Per registered count.
    rules : SuppressionRules
    """

    registry: CountRegistry
    pupils_shown: np.ndarray
    events_shown: np.ndarray
    rules: SuppressionRules

    def shown(self, k: Key, what: str = "both") -> bool:
        """Whether the count under ``k`` is published (``what``: pupils, events or both).
        A key not registered is not published."""
        i = self.registry.index(k)
        if i is None:
            return False
        p, e = bool(self.pupils_shown[i]), bool(self.events_shown[i])
        return {"pupils": p, "events": e, "both": p and e}[what]

    def all_shown(self, keys: Iterable[Key]) -> bool:
        return all(self.shown(k) for k in keys)

    def value(self, k: Key, what: str) -> float:
        i = self.registry.index(k)
        assert i is not None
        return (self.registry.pupils if what == "pupils" else self.registry.events)[i]

    @property
    def n_suppressed(self) -> int:
        return int((~self.pupils_shown).sum() + (~self.events_shown).sum())


def disclose_counts(registry: CountRegistry, rules: SuppressionRules) -> Disclosure:
    """Primary and secondary suppression over the whole registry at once.

    Examples
    --------
    Three groups of one variable and their total; the small group is hidden, and so is the
    next smallest, or the total would give it away:

    >>> r = CountRegistry()
    >>> for lv, n, e in (("a", 120, 4), ("b", 8, 0), ("c", 300, 9)):
    ...     _ = r.add(key(g=lv), n, e)
    >>> _ = r.add(key(), 428, 13)
    >>> r.relate(key(), [key(g="a"), key(g="b"), key(g="c")], "g")
    >>> d = disclose_counts(r, SuppressionRules())
    >>> [d.shown(key(g=lv)) for lv in "abc"], d.shown(key())
    ([False, False, True], True)
    """
    pupils = np.asarray(registry.pupils, dtype=float)
    # an event count that includes counts suppressed at source is not available (NaN): it
    # is never shown, and the audit treats it as unknown
    events = np.where(registry.events_known, np.asarray(registry.events, dtype=float), np.nan)
    cons = registry.constraints()
    primary_p = (pupils >= 1) & (pupils < rules.min_pupils)
    hidden_p = protect(pupils, primary_p, primary_p, rules.min_pupils, cons)
    with np.errstate(invalid="ignore"):
        primary_e = (events >= 1) & (events < rules.min_events)
    hidden_e = protect(events, primary_e | hidden_p, primary_e, rules.min_events, cons)
    hidden_e |= np.isnan(events)
    return Disclosure(registry=registry, pupils_shown=~hidden_p, events_shown=~hidden_e,
                      rules=rules)


# --------------------------------------------------------------------------- the run's counts
@dataclass(frozen=True)
class UnitPlan:
    """Which units of a group term are listed, and the remainder each pooled unit goes to.

    ``listed`` maps a unit's level label to True (listed) or the key of its remainder.
    """

    term: str
    parent: str | None
    listed: Mapping[str, bool]
    remainder_of: Mapping[str, Key]
    n_pooled: int


def run_registry(design: Any, variables: Mapping[str, Sequence[str]], rules: SuppressionRules,
                 ) -> tuple[CountRegistry, dict[str, UnitPlan]]:
    """The registry of a run's published counts, from the cells it was fitted to.

    Parameters
    ----------
    design : Design
        Its ``data`` (the cells), ``events``, ``trials`` and ``groups``.
    variables : mapping
        Categorical formula variables and their levels (the counts by level are published).
    rules : SuppressionRules
        ``min_pupils`` decides which units are listed.

    Returns
    -------
    registry, plans
        The registry, and per group term which units are listed.
    """
    data = design.data
    trials = np.asarray(design.trials, dtype=float)
    events = np.asarray(design.events, dtype=float)
    upper = (events if getattr(design, "events_upper", None) is None
             else np.asarray(design.events_upper, dtype=float))
    reg = CountRegistry()
    grand = key()
    reg.add(grand, trials.sum(), events.sum(), upper.sum())

    def _sums(index: np.ndarray, n: int, trials: np.ndarray, events: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.bincount(index, weights=trials, minlength=n),
                np.bincount(index, weights=events, minlength=n),
                np.bincount(index, weights=upper, minlength=n))
    years: list[str] = []
    year_codes = None
    if YEAR in data.columns and data[YEAR].nunique() > 1:
        year_text = data[YEAR].astype(str).to_numpy()
        years = sorted(set(year_text))
        year_codes = np.searchsorted(np.array(years), year_text)
        n, e, h = _sums(year_codes, len(years), trials, events)
        for j, y in enumerate(years):
            reg.add(key(**{YEAR: y}), n[j], e[j], h[j])
        reg.relate(grand, [key(**{YEAR: y}) for y in years], "the years")
    for v, levels in variables.items():
        if v == YEAR:
            continue
        text = data[v].astype(str).to_numpy()
        levels = [str(lv) for lv in levels]
        codes = pd.Categorical(text, categories=levels).codes.astype(np.int64)
        if (codes < 0).any():  # pragma: no cover - the levels come from these cells
            raise AssertionError(f"a value of {v!r} is not among its levels")
        n, e, h = _sums(codes, len(levels), trials, events)
        for j, lv in enumerate(levels):
            reg.add(key(**{v: lv}), n[j], e[j], h[j])
        reg.relate(grand, [key(**{v: lv}) for lv in levels], f"the levels of {v}")
        if year_codes is not None:
            both = codes * len(years) + year_codes
            n, e, h = _sums(both, len(levels) * len(years), trials, events)
            for j, lv in enumerate(levels):
                for k, y in enumerate(years):
                    i = j * len(years) + k
                    reg.add(key(**{v: lv, YEAR: y}), n[i], e[i], h[i])
                reg.relate(key(**{v: lv}), [key(**{v: lv, YEAR: y}) for y in years],
                           f"{v} {lv} by year")
            for y in years:
                reg.relate(key(**{YEAR: y}), [key(**{v: lv, YEAR: y}) for lv in levels],
                           f"the levels of {v} in {y}")
    plans: dict[str, UnitPlan] = {}
    by_name = {g.name: g for g in design.groups}
    for g in design.groups:
        idx = np.asarray(g.index)
        n, e, h = _sums(idx, g.n_levels, trials, events)
        levels = [str(lv) for lv in g.levels]
        if g.parent is None:
            parent_of = [None] * len(levels)
        else:
            parent = by_name[g.parent]
            # the parent unit of each level: the parent's level of its first cell
            first = np.unique(idx, return_index=True)[1]
            parent_of = [str(parent.levels[parent.index[i]]) for i in first]
        listed: dict[str, bool] = {}
        remainder_of: dict[str, Key] = {}
        parent_plan = plans.get(g.parent) if g.parent else None
        pooled_sums: dict[Key, list[float]] = {}
        for j, lv in enumerate(levels):
            small = n[j] < rules.min_pupils
            p = parent_of[j]
            parent_pooled = parent_plan is not None and not parent_plan.listed.get(p, True)
            if small or parent_pooled:
                listed[lv] = False
                if parent_pooled:  # its parent is pooled: counted in the parent's remainder
                    continue
                rk = key(**{g.name: OTHER if p is None else f"{p}/{OTHER}"})
                remainder_of[lv] = rk
                s = pooled_sums.setdefault(rk, [0.0, 0.0, 0.0])
                s[0] += n[j]
                s[1] += e[j]
                s[2] += h[j]
            else:
                listed[lv] = True
                reg.add(key(**{g.name: lv}), n[j], e[j], h[j])
        for rk, (pn, pe, ph) in pooled_sums.items():
            reg.add(rk, pn, pe, ph)
        plans[g.name] = UnitPlan(term=g.name, parent=g.parent, listed=listed,
                                 remainder_of=remainder_of,
                                 n_pooled=sum(1 for v in listed.values() if not v))
        if g.parent is None:
            parts = [key(**{g.name: lv}) for lv in levels if listed[lv]]
            parts += list(pooled_sums)
            reg.relate(grand, parts, f"the units of {g.name}")
        else:
            children: dict[str, list[Key]] = {}
            for j, lv in enumerate(levels):
                p = parent_of[j]
                if not parent_plan.listed.get(p, True):
                    continue
                if listed[lv]:
                    children.setdefault(p, []).append(key(**{g.name: lv}))
            for rk in pooled_sums:
                p = dict(rk)[g.name].rsplit("/", 1)[0]
                children.setdefault(p, []).append(rk)
            for p, parts in children.items():
                reg.relate(key(**{g.parent: p}), parts, f"the {g.name} units of {p}")
    return reg, plans


# --------------------------------------------------------------------------- the run's tables
#: Columns of ``estimates.csv`` that are counts or built on them (hidden together).
_ESTIMATE_DERIVED = ("estimate", "std_error", "conf_low", "conf_high", "rate",
                     "rate_reference", "n_events", "n_pupils")
#: Estimands built directly on counts.
_CRUDE = ("crude_rate_ratio", "crude_rate_difference")
_SHARES = ("event_share_observed", "pupil_share")
#: Observed figures: arithmetic on counts, published as computed (not rounded).
_OBSERVED = (*_CRUDE, *_SHARES)


@dataclass(frozen=True)
class PublishedTables:
    """The tables of a run as they may be published: hidden values are the symbol ``c``.

    Attributes
    ----------
    estimates, unit_effects, cells_summary : DataFrame
        Text-ready tables (hidden cells hold ``"c"``; units below ``min_pupils`` are left
        out of ``unit_effects`` and pooled in ``cells_summary``).
    notes : tuple of str
        What disclosure control did, for the report.
    disclosure : Disclosure
    """

    estimates: pd.DataFrame
    unit_effects: pd.DataFrame
    cells_summary: pd.DataFrame
    notes: tuple[str, ...]
    disclosure: Disclosure


def crude_equivalent(formula: str, groups: Sequence[str] | str, engine: str = "ml"
                     ) -> str | None:
    """The variable whose crude ratios a model reproduces exactly, if any.

    A model with no group effects (none named, or the ``glm`` engine, whose group terms only
    cluster the standard errors) whose only term is one categorical variable is saturated:
    its fitted rate of each level is the level's observed rate, so its ratios are crude
    ratios and follow the rules of counts.

    Examples
    --------
    >>> crude_equivalent("ethnicity", ()), crude_equivalent("ethnicity + sex", ())
    ('ethnicity', None)
    >>> crude_equivalent("ethnicity", ("la",)) is None
    True
    >>> crude_equivalent("ethnicity", ("la",), engine="glm")
    'ethnicity'
    """
    from disparity.formula import parse_formula

    if engine != "glm" and (groups if isinstance(groups, str) else "".join(groups)).strip():
        return None
    try:
        parsed = parse_formula(formula)
    except Exception:  # a formula that cannot be read reproduces nothing
        return None
    return parsed.fixed if parsed.fixed in parsed.columns else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:.10g}"
    return str(value)


def _count(value: float, shown: bool, round_to: int | None = None,
           known: bool = True) -> str:
    if not known:
        return UNAVAILABLE
    if not shown:
        return SUPPRESSED
    if round_to not in (None, 1) and float(value).is_integer():
        value = round_to * np.floor(value / round_to + 0.5)
    return str(int(round(value))) if float(value).is_integer() else f"{value:.10g}"


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: [_text(v) for v in frame[c].tolist()] for c in frame.columns},
                        index=frame.index).astype(object)


#: Model-derived columns without a standard error of their own, published to
#: :data:`~disparity.report.precision.SIG_DIGITS` significant digits
#: (:mod:`disparity.report.precision`); estimates and intervals go to their SE's precision.
#: Observed (crude) rates are exact arithmetic on counts, the same everywhere: not rounded.
ESTIMATE_RATES = ("rate", "rate_reference", "variance")
UNIT_RATES = ("prob_exceeds", "p_value", "q_value", "expected_events")


def published_tables(result: Result) -> PublishedTables:
    """Apply the run's ``[report.suppression]`` rules to everything it publishes.

    Parameters
    ----------
    result : disparity.result.Result

    Returns
    -------
    PublishedTables
    """
    rules = SuppressionRules.from_mapping(result.settings.suppression)
    variables = result.variables
    registry, plans = run_registry(result.design, variables, rules)
    d = disclose_counts(registry, rules)
    events_known = registry.events_known  # an array built from the registry: once
    notes: list[str] = []

    # -- estimates: crude rows, crude-equivalent ladder steps, observed shares
    est = result.estimates.reset_index(drop=True)
    est = _as_text(rounded_table(est, significant=ESTIMATE_RATES,
                                 rows=~est["estimand"].isin(_OBSERVED).to_numpy()))
    main_crude = crude_equivalent(result.spec.formula, result.spec.groups,
                                  result.fit.engine)
    hidden_rows = 0
    share_ok = _share_publishable(result, d, rules)
    for i in range(len(est)):
        estimand, variable = est.at[i, "estimand"], est.at[i, "variable"]
        level, reference = est.at[i, "level"], est.at[i, "reference"]
        keys: list[Key] | None = None
        if estimand == "chain_rate_ratio":
            # a stage fitted with the variable alone is a crude ratio on the stage's pupils,
            # whose counts are not in the registry: not published; else model-based
            keys = [] if crude_equivalent(est.at[i, "formula"], est.at[i, "groups"],
                                          est.at[i, "engine"]) == variable else None
        elif estimand in _CRUDE or (estimand == "ladder_rate_ratio" and crude_equivalent(
                est.at[i, "formula"], est.at[i, "groups"], est.at[i, "engine"]) == variable) or (
                main_crude is not None and variable == main_crude and level
                and estimand not in (*_SHARES, "event_share_expected")):
            keys = [key(**{variable: level}), key(**{variable: reference})]
        elif estimand in _SHARES:
            keys = None if share_ok else []
        elif estimand == "event_share_expected":  # model-based, beside the union's counts
            if not share_ok:
                for c in ("n_events", "n_pupils"):
                    if est.at[i, c] != "":
                        est.at[i, c] = SUPPRESSED
            continue
        elif est.at[i, "n_events"] != "" or est.at[i, "n_pupils"] != "":
            keys = [key(**{variable: level})] if variable and level else []
        if keys is None:
            continue
        if not keys or not d.all_shown(keys):
            hidden_rows += 1
            known = all(registry.index(k) is None or events_known[registry.index(k)]
                        for k in keys)
            for c in _ESTIMATE_DERIVED:
                if est.at[i, c] != "":
                    est.at[i, c] = SUPPRESSED if known else UNAVAILABLE
    if hidden_rows:
        notes.append(f"{hidden_rows:,} crude or observed figure(s) of estimates.csv are "
                     f"shown as {SUPPRESSED}: they are built on a count of pupils below "
                     f"{rules.min_pupils} or of 1 to {rules.min_events - 1} events, or on a "
                     "count hidden to protect one.")

    # -- unit effects: listed units only; their counts under the rules
    units = result.units.reset_index(drop=True)
    keep = []
    for g, u, var in zip(units["group_term"].astype(str), units["unit"].astype(str),
                         units["variable"].fillna("").astype(str)):
        plan = plans.get(g)
        keep.append(plan is None or plan.listed.get(u, False))
    units = _as_text(rounded_table(units.loc[keep].reset_index(drop=True),
                                   significant=UNIT_RATES))
    for i in range(len(units)):
        g, u, var = units.at[i, "group_term"], units.at[i, "unit"], units.at[i, "variable"]
        if var:  # pupils of one level within one unit: a cross-tabulation, not published
            for c in ("n_pupils", "n_events", "observed_rate"):
                units.at[i, c] = ""
            continue
        k = key(**{g: u})
        p_ok, e_ok = d.shown(k, "pupils"), d.shown(k, "events")
        j = registry.index(k)
        known = j is None or bool(events_known[j])
        for c, ok in (("n_pupils", p_ok), ("n_events", e_ok)):
            if units.at[i, c] != "":
                units.at[i, c] = _count(float(units.at[i, c]), ok, rules.round_to,
                                        known or c == "n_pupils")
        if units.at[i, "observed_rate"] != "" and not (p_ok and e_ok):
            units.at[i, "observed_rate"] = SUPPRESSED if known else UNAVAILABLE
        if units.at[i, "estimand"] == "unit_standardised_ratio" and not e_ok:
            for c in ("estimate", "std_error", "conf_low", "conf_high"):
                if units.at[i, c] != "":
                    units.at[i, c] = SUPPRESSED if known else UNAVAILABLE
    for plan in plans.values():
        if plan.n_pooled:
            notes.append(
                f"{plan.n_pooled:,} {plan.term} unit(s) with fewer than {rules.min_pupils} "
                f"pupils are not listed one by one: their counts are pooled into a remainder "
                + ("row" if plan.parent is None else f"row for each {plan.parent}")
                + f" (level '{OTHER}'), and their effects are left out.")

    # -- cells summary: every registered count, with the symbol where hidden
    rows = []
    for i, k in enumerate(registry.keys):
        parts = dict(k)
        if not parts:
            margin, by, level, year = "total", "all", "all", ""
        elif set(parts) == {YEAR}:
            margin, by, level, year = "trend", "all", "all", parts[YEAR]
        elif YEAR in parts:
            (by, level), = [(c, v) for c, v in parts.items() if c != YEAR]
            margin, year = "trend", parts[YEAR]
        else:
            (by, level), = parts.items()
            margin, year = ("unit" if by in plans else "variable"), ""
        p_ok, e_ok = bool(d.pupils_shown[i]), bool(d.events_shown[i])
        known = bool(events_known[i])
        n, e = registry.pupils[i], registry.events[i]
        rows.append({"margin": margin, "by": by, "level": level, "year": year,
                     "n_pupils": _count(n, p_ok, rules.round_to),
                     "n_events": _count(e, e_ok, rules.round_to, known),
                     "rate": (UNAVAILABLE if not known else SUPPRESSED if not (p_ok and e_ok)
                              else (_text(e / n) if n > 0 else config.SYMBOL_NOT_APPLICABLE))})
    cells = pd.DataFrame(rows, columns=["margin", "by", "level", "year", "n_pupils",
                                        "n_events", "rate"])
    order = {"total": 0, "variable": 1, "unit": 2, "trend": 3}
    cells = cells.iloc[np.argsort([order[m] for m in cells.margin], kind="stable")]
    n_unknown = int((~registry.events_known).sum())
    if n_unknown:
        notes.append(f"{n_unknown:,} event count(s) are not available ({UNAVAILABLE}): they "
                     "add up cells whose count was suppressed at source, so only a range is "
                     "known (the model uses it as such).")
    n_hidden = int((~d.pupils_shown).sum() + (~d.events_shown).sum()) - n_unknown
    if n_hidden:
        notes.append(f"{n_hidden:,} count(s) are suppressed ({SUPPRESSED}): fewer than "
                     f"{rules.min_pupils} pupils or 1 to {rules.min_events - 1} events, or a "
                     "count that would reveal one through any total of any table of the run.")
    return PublishedTables(estimates=est, unit_effects=units,
                           cells_summary=cells.reset_index(drop=True), notes=tuple(notes),
                           disclosure=d)


def _share_publishable(result: Result, d: Disclosure, rules: SuppressionRules) -> bool:
    """Whether the observed share of events on the union of share groups may be published.

    Its count of pupils and events is a union across variables, so it is published only if
    every published count of those variables is shown (it then reveals nothing hidden) and
    both it and the pupils outside it pass primary suppression. A column of the union whose
    counts are not published (not a model variable) has nothing the union could reveal.
    """
    groups = result.share_groups
    if not groups:
        return False
    for column in groups:
        levels = result.variables.get(column)
        if levels is None:  # no count of this column is published: nothing to reveal
            continue
        if not d.all_shown(key(**{column: lv}) for lv in levels):
            return False
        for k in d.registry.keys:
            if dict(k).get(column) is not None and not d.shown(k):
                return False
    data = result.design.data
    inside = np.zeros(len(data), dtype=bool)
    for column, levels in groups.items():
        inside |= data[column].astype(str).isin(list(levels)).to_numpy()
    trials = np.asarray(result.design.trials, dtype=float)
    events = np.asarray(result.design.events, dtype=float)
    for mask in (inside, ~inside):
        n, e = trials[mask].sum(), events[mask].sum()
        if 1 <= n < rules.min_pupils or 1 <= e < rules.min_events:
            return False
    return True
