"""Settings of the estimands, the report and its disclosure control, from a model file's
``[report]`` and ``[report.suppression]`` tables, checked in one place.

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
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from disparity import config
from disparity.errors import SpecError

__all__ = ["ReportSettings", "SuppressionRules", "REPORT_KEYS", "SHARE_GROUPS",
           "SHARE_LABELS", "GROUP_EFFECTS", "STANDARDS"]

#: How unit (group) effects enter population-averaged estimands (see
#: :func:`disparity.estimands.rate_ratios`).
GROUP_EFFECTS: tuple[str, ...] = ("observed", "conditional", "integrated")
#: Standard populations of standardised ratios.
STANDARDS: tuple[str, ...] = ("all", "group")

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
@dataclass(frozen=True)
class SuppressionRules:
    """Thresholds of disclosure control.

    Parameters
    ----------
    min_pupils : int
        Cells or units with ``1 <= n_pupils < min_pupils`` are suppressed.
    min_events : int
        Event counts ``1 <= n_events < min_events`` are suppressed (0 is shown).
    round_to : int or None
        If given, published counts are rounded to the nearest multiple (halves up); rates
        are computed from unrounded counts.

    Examples
    --------
    >>> SuppressionRules.from_mapping({"min_pupils": 10, "min_events": 3, "round_to": 5})
    SuppressionRules(min_pupils=10, min_events=3, round_to=5)
    """

    min_pupils: int = config.MIN_PUPILS
    min_events: int = config.MIN_EVENTS
    round_to: int | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("min_pupils", "min_events"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                problems.append(f"{name} must be a whole number >= 1, got {value!r}")
        r = self.round_to
        if r is not None and (
            isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1
        ):
            problems.append(f"round_to must be a whole number >= 1 or absent, got {r!r}")
        if problems:
            raise SpecError(
                "[report.suppression]: " + "; ".join(problems)
                + ". Example: min_pupils = 10, min_events = 3, round_to = 5."
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "SuppressionRules":
        """Build rules from a ``[report.suppression]`` table; missing keys take defaults.

        Raises
        ------
        SpecError
            On an unknown key (naming the nearest valid key) or an invalid value.
        """
        if mapping is None:
            return cls()
        valid = [f.name for f in fields(cls)]
        for key in mapping:
            if key not in valid:
                near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.0)
                raise SpecError(
                    f"[report.suppression]: unknown key {key!r}; did you mean {near[0]!r}? "
                    f"Valid keys: {', '.join(valid)}."
                )
        return cls(**dict(mapping))


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


