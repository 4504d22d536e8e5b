"""Stage chains: a group's adjusted ratio at each decision point, and overall.

The relative rate index asks, at each decision point, how a group's rate compares among
the pupils who reached that point: of all pupils, who is suspended; of the suspended, who
is then permanently excluded. A model file's ``[[chain]]`` gives the stages::

    [[chain]]
    name = "suspended"                 # stage 1: any suspension, among all pupils
    events = "n_any_susp"

    [[chain]]
    name = "permanently excluded after suspension"
    events = "n_perm_excl"             # stage 2: among pupils with a suspension
    where = "n_susp >= 1"

Each stage is a separate fit of the model's formula and groups to the stage's pupils (the
rows kept by the model's ``[data] where`` and the stage's own ``where``, parsed by the same
safe grammar), with the stage's events column; its row of the chain is the standardised
rate (risk) ratio of each level of the report's main variable (``[report]
ladder_variable``; by default ``ethnicity`` or the formula's first categorical variable).

**The overall ratio is the product of the stage ratios.** With risks,
``P(last stage) = P(stage 1) P(stage 2 | stage 1) ...`` when every stage's pupils are the
previous stage's events, so a group's risk ratio for the last outcome among the first
stage's pupils is the product of its stage ratios: exactly for crude risks, and nearly so
for standardised ones (standardisation averages each stage over its own pupils). The
likelihood of such a chain factorises into the stages, whose parameters are separate, so
the stage estimates are asymptotically independent and the product's interval adds the
stages' variances on the log scale (each taken from the stage's interval). As a check the
chain also fits the last stage's events **directly**, among the first stage's pupils
(``step_label`` ``"overall, direct fit"``): the two overall rows differ only by the
non-collapsibility of standardised ratios, and a large gap means the stages are not a chain
(a stage's pupils are not the previous stage's events).

References
----------
Office of Juvenile Justice and Delinquency Prevention (2009). *Disproportionate Minority
Contact Technical Assistance Manual*, 4th ed., chapter 1 (the relative rate index at
successive decision points).

Fienberg, S. E. (1980). *The Analysis of Cross-Classified Categorical Data*, section 6.6
(continuation-ratio logits: the likelihood of a sequence of stages factorises).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from disparity.errors import SpecError

__all__ = [
    "CHAIN_COLUMNS",
    "CHAIN_ESTIMAND",
    "chain_ratios",
    "chain_table",
    "check_chain",
    "stage_spec",
]

#: Estimand of the chain's rows in ``estimates.csv``.
CHAIN_ESTIMAND = "chain_rate_ratio"
#: Keys of a ``[[chain]]`` entry.
CHAIN_KEYS: tuple[str, ...] = ("name", "events", "where")
#: Columns of the published ``chain.csv``.
CHAIN_COLUMNS: tuple[str, ...] = ("variable", "level", "reference", "step", "step_label",
                                  "events", "where", "estimate", "conf_low", "conf_high",
                                  "ci_prob", "method")
PRODUCT_LABEL = "overall, product of the stages"
DIRECT_LABEL = "overall, direct fit"


def check_chain(entries: Any) -> tuple[tuple[Mapping[str, str], ...], list[str]]:
    """The ``[[chain]]`` entries of a model file, checked: ``(stages, problems)``.

    Each entry needs ``name`` (unique) and ``events`` (a column name); ``where`` is an
    optional pupil filter in the safe filter grammar. A chain has at least two stages.

    Examples
    --------
    >>> stages, problems = check_chain([{"name": "suspended", "events": "n_any_susp"},
    ...     {"name": "excluded", "events": "n_perm_excl", "where": "n_susp >= 1"}])
    >>> [s["name"] for s in stages], problems
    (['suspended', 'excluded'], [])
    >>> check_chain([{"name": "a", "events": "n_x", "where": "open('f')"}])[1][0][:40]
    '[[chain]] needs at least two stages (one'
    """
    from disparity.formula import parse_filter

    if not isinstance(entries, list) or not all(isinstance(x, Mapping) for x in entries):
        return (), [f"[[chain]] entries must be tables (write each stage as [[chain]]), not "
                    f"{entries!r}"]
    problems: list[str] = []
    if len(entries) < 2:
        problems.append("[[chain]] needs at least two stages (one [[chain]] table each, e.g. "
                        "events = \"n_any_susp\", then events = \"n_perm_excl\" with where = "
                        "\"n_susp >= 1\")")
    stages, names = [], set()
    for i, entry in enumerate(entries, 1):
        where = f"[[chain]] stage {i}"
        unknown = [k for k in entry if k not in CHAIN_KEYS]
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; keys are "
                            f"{', '.join(map(repr, CHAIN_KEYS))}")
        name, events = entry.get("name"), entry.get("events")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: name must be a non-empty string, not {name!r}")
        elif name in names:
            problems.append(f"{where}: name {name!r} is used by an earlier stage; give each "
                            "stage its own name")
        else:
            names.add(name)
        if not isinstance(events, str) or not events.isidentifier():
            problems.append(f"{where}: events must be the name of a count column such as "
                            f"\"n_perm_excl\", not {events!r}")
        stage = {"name": str(name), "events": str(events)}
        if "where" in entry:
            try:
                stage["where"] = parse_filter(entry["where"]).text
            except SpecError as exc:
                problems.append(f"{where}: where: {exc}")
        stages.append(stage)
    return tuple(stages), problems


def _and(*filters: str | None) -> str | None:
    parts = [f for f in filters if f]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else " and ".join(f"({f})" for f in parts)


def stage_spec(spec: Any, stage: Mapping[str, str]) -> Any:
    """The model of one stage: the spec's formula and groups, the stage's events, and the
    rows kept by both the model's ``[data] where`` and the stage's; no ladder or chain.

    Examples
    --------
    >>> from disparity.spec import ModelSpec
    >>> s = stage_spec(ModelSpec(formula="sen", data_options={"where": "sex == 'male'"}),
    ...                {"name": "excluded", "events": "n_perm_excl", "where": "n_susp >= 1"})
    >>> s.events, s.data_options["where"]
    ('n_perm_excl', "(sex == 'male') and (n_susp >= 1)")
    """
    from disparity.spec import FrozenMap

    options = dict(spec.data_options)
    where = _and(options.get("where"), stage.get("where"))
    if where is not None:
        options["where"] = where
    return spec.replace(events=stage["events"], data_options=FrozenMap(options), ladder=(),
                        chain=(), name=f"{spec.name}: {stage['name']}")


def _log_se(estimate: float, low: float, high: float, z: float) -> float:
    if not (estimate > 0 and low > 0 and high > 0):
        return math.nan
    return (math.log(high) - math.log(low)) / (2.0 * z)


def chain_ratios(
    spec: Any,
    data: pd.DataFrame | str | os.PathLike[str] | None,
    variable: str | None = None,
    *,
    settings: Any = None,
    progress: Any = None,
) -> pd.DataFrame:
    """Fit each stage of ``spec.chain`` and give the chain's rows of ``estimates``.

    Parameters
    ----------
    spec : ModelSpec
        With at least two ``chain`` stages.
    data : DataFrame, path or None
        Pupil rows (``None``: the model file's ``[data] path``).
    variable : str, optional
        The variable whose levels are compared (default: the report's main variable,
        ``[report] ladder_variable``, else ``ethnicity``, else the first categorical one).
    settings : ReportSettings, optional
        Interval probability, draws, group effects and standard of the standardised ratios.
    progress : callable, optional
        Called with one line per stage.

    Returns
    -------
    DataFrame
        Rows of ``estimand`` :data:`CHAIN_ESTIMAND` with the columns of ``estimates``:
        per level of ``variable`` and per ``step`` (``1 .. k`` the stages, ``k + 1`` the
        product, ``k + 2`` the direct fit), ``step_label``, ``estimate``, ``conf_low``,
        ``conf_high``, ``formula``, ``groups``, and in ``note`` the stage's events and
        filter.

    Examples
    --------
    Crude risks (no covariate but the variable, no groups) multiply exactly:

    >>> from disparity.spec import ModelSpec
    >>> pupils = pd.DataFrame({
    ...     "g": ["a"] * 1000 + ["b"] * 1000,
    ...     "susp": [1] * 20 + [0] * 980 + [1] * 40 + [0] * 960,
    ...     "perm": [1] * 1 + [0] * 999 + [1] * 4 + [0] * 996})
    >>> spec = ModelSpec(formula="g", engine="glm", reference={"g": "a"}, chain=(
    ...     {"name": "suspended", "events": "n_susp"},
    ...     {"name": "excluded", "events": "n_perm", "where": "susp == 1"}),
    ...     data_options={"kind": "pupils"})
    >>> t = chain_ratios(spec, pupils)
    >>> [(r.step_label, round(r.estimate, 6)) for r in t.itertuples()]
    [('suspended', 2.0), ('excluded', 2.0), ('overall, product of the stages', 4.0), ('overall, direct fit', 4.0)]
    """
    from scipy import stats

    from disparity.design import build_design
    from disparity.engines import check_censored, get_engine
    from disparity.estimands import rate_ratios
    from disparity.model_data import load_model_data
    from disparity.result import _ladder_variable
    from disparity.settings import ReportSettings

    stages = list(spec.chain)
    if len(stages) < 2:
        raise SpecError("a stage chain needs at least two [[chain]] stages")
    settings = settings or ReportSettings.from_mapping(spec.report)
    say = progress or (lambda _: None)
    direct = {"name": DIRECT_LABEL, "events": stages[-1]["events"]}
    if stages[0].get("where"):
        direct["where"] = stages[0]["where"]
    rows: list[pd.DataFrame] = []
    for step, stage in enumerate([*stages, direct], 1):
        s = stage_spec(spec, stage)
        say(f"stage chain: {stage['name']} ({s.events}"
            + (f" among pupils with {stage['where']})" if stage.get("where") else ")"))
        loaded = load_model_data(s, data)
        design = build_design(s, loaded.frame)
        if variable is None:
            variable = _ladder_variable(settings, design)
        engine = get_engine(s.engine)
        check_censored(engine, s.engine, design)
        fit = engine.fit(design, s, progress=False)
        rr = rate_ratios(fit, design, variable, group_effects=settings.group_effects,
                         standard=settings.standard, ci_prob=settings.ci_prob,
                         n_draws=settings.n_draws, seed=int(spec.seed))
        rr = rr[rr.estimand == "rate_ratio"].copy()
        label = stage["name"]
        rows.append(rr.assign(
            estimand=CHAIN_ESTIMAND, step=step if label != DIRECT_LABEL else len(stages) + 2,
            step_label=label, formula=spec.formula, groups=" + ".join(spec.groups),
            note=f"{s.events}" + (f" among pupils with {s.data_options['where']}"
                                  if s.data_options.get("where") else " among all pupils")))
    stage_rows = pd.concat(rows[:-1], ignore_index=True)
    z = float(stats.norm.ppf(0.5 + settings.ci_prob / 2.0))
    product = []
    for level, part in stage_rows.groupby("level", sort=False):
        log_est, var = 0.0, 0.0
        for r in part.itertuples():
            log_est += math.log(r.estimate) if r.estimate > 0 else -math.inf
            var += _log_se(r.estimate, r.conf_low, r.conf_high, z) ** 2
        se = math.sqrt(var)
        first = part.iloc[0]
        product.append({
            **{c: first[c] for c in ("term", "ci_prob", "engine", "variable", "level",
                                     "reference", "group_effects", "standard", "formula",
                                     "groups", "n_draws")},
            "estimand": CHAIN_ESTIMAND, "estimate": math.exp(log_est),
            "std_error": math.exp(log_est) * se,
            "conf_low": math.exp(log_est - z * se), "conf_high": math.exp(log_est + z * se),
            "step": len(stages) + 1, "step_label": PRODUCT_LABEL,
            "method": "product of the stage ratios; log-scale variances added",
            "note": f"{stages[-1]['events']} among "
                    + (f"pupils with {stages[0]['where']}" if stages[0].get("where")
                       else "all pupils") + ", through every stage",
        })
    out = pd.concat([stage_rows, pd.DataFrame(product), rows[-1]], ignore_index=True)
    return out.sort_values(["step"], kind="stable").reset_index(drop=True)


def chain_table(estimates: pd.DataFrame) -> pd.DataFrame:
    """The chain's rows of an estimates table as ``chain.csv`` (:data:`CHAIN_COLUMNS`), the
    stage's events and filter split out of ``note``."""
    rows = estimates[estimates["estimand"] == CHAIN_ESTIMAND]
    events, where = [], []
    for note in rows["note"].astype(str):
        head, _, rest = note.partition(" among ")
        events.append(head)
        where.append(rest.removeprefix("pupils with ") if rest.startswith("pupils with ")
                     else rest)
    return rows.assign(events=events, where=where).reindex(columns=list(CHAIN_COLUMNS)
                                                           ).reset_index(drop=True)
