"""Disclosure control of the table of schools banded by their number of events.

The band table of :func:`disparity.school_bands.exclusion_distribution` publishes, per band,
a number of schools and the events they hold. The school counts are published as they are:
for DfE's open data each school's count is itself public (or ``x``), so how many schools lie
in a band tells nothing new. The events of a band follow the run's rules for event counts
(:func:`disparity.report.disclosure.disclose_counts`):

* a band's events that include a count suppressed at source (DfE's ``x``, "1 or 2") are
  **not available** (``x``), whatever the range; the range ``n_events_min`` to
  ``n_events_max`` is published beside it, since it says no more than the ``x`` and the
  published totals it was narrowed by;
* a band's events that are known and ``1 <= n_events < min_events`` (one school of the
  band ``1-2`` with a published 1 or 2, say, or a range narrowed to a single small number)
  are **suppressed** (``c``), and so are their ``n_events_min`` and ``n_events_max``;
* a band whose pupils are ``1 <= n_pupils < min_pupils`` has its events suppressed too.

The bands have no published total of events, so no secondary suppression is needed: no
published figure gives a suppressed one away.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from disparity.settings import SuppressionRules

from .disclosure import CountRegistry, _count, _text, disclose_counts, key

__all__ = ["published_distribution"]

#: Columns of the published band table, in order (the dispersion test repeats on every row).
COLUMNS: tuple[str, ...] = (
    "band", "n_schools", "share", "n_events", "n_events_min", "n_events_max",
    "n_schools_modelled", "expected_same_risk", "expected_school_sd",
    "dispersion_lr", "dispersion_df", "dispersion_p_value",
)


def published_distribution(distribution: Any, rules: SuppressionRules | None = None
                           ) -> pd.DataFrame:
    """The band table as text, under disclosure control, with the dispersion test.

    Parameters
    ----------
    distribution : disparity.school_bands.ExclusionDistribution
    rules : SuppressionRules, optional
        Default :class:`SuppressionRules()` (events ``1 <= n < 3`` and pupils
        ``1 <= n < 10`` suppressed).

    Returns
    -------
    DataFrame of str
        :data:`COLUMNS`: ``band``, ``n_schools``, ``share``, ``n_events`` (``x`` where it
        includes a count suppressed at source, ``c`` where it is suppressed here),
        ``n_events_min``, ``n_events_max``, ``n_schools_modelled``, the expectations
        ``expected_same_risk`` and ``expected_school_sd``, and the likelihood-ratio test
        of a school SD against equal risk (``dispersion_lr``, ``dispersion_df``,
        ``dispersion_p_value``; the same on every row).

    Examples
    --------
    One school with a published 2 is alone in band ``1-2``: its events are suppressed.

    >>> from disparity.school_bands import exclusion_distribution
    >>> schools = pd.DataFrame({"n_pupils": [200, 400, 300, 1000, 900, 500],
    ...                         "n_perm_excl": [0, 0, 2, 4, 12, 0]})
    >>> d = exclusion_distribution(schools, year=None, school_type=None, rate_by=None)
    >>> published_distribution(d)[["band", "n_schools", "n_events"]]
               band n_schools n_events
    0             0         3        0
    1           1-2         1        c
    2           3-5         1        4
    3          6-10         0        0
    4  more than 10         1       12
    """
    rules = SuppressionRules() if rules is None else rules
    table = distribution.table
    registry = CountRegistry()
    for row in table.itertuples(index=False):
        registry.add(key(band=row.band), float(row.n_pupils), float(row.n_events_min),
                     float(row.n_events_max))
    d = disclose_counts(registry, rules)
    known = registry.events_known
    n_events, low, high = [], [], []
    for i, row in enumerate(table.itertuples(index=False)):
        shown = bool(d.events_shown[i])
        n_events.append(_count(row.n_events_min, shown, rules.round_to, known=bool(known[i])))
        bounds_shown = shown or not known[i]
        low.append(_count(row.n_events_min, bounds_shown, rules.round_to))
        high.append(_count(row.n_events_max, bounds_shown, rules.round_to))
    tests = distribution.tests.set_index("test")
    out = pd.DataFrame({
        "band": table["band"].astype(str),
        "n_schools": [_count(v, True, rules.round_to) for v in table["n_schools"]],
        "share": [_text(float(v)) for v in table["share"]],
        "n_events": n_events,
        "n_events_min": low,
        "n_events_max": high,
        "n_schools_modelled": [_count(v, True, rules.round_to)
                               for v in table["n_schools_modelled"]],
        "expected_same_risk": [_text(float(v)) for v in table["expected_same_risk"]],
        "expected_school_sd": [_text(float(v)) for v in table["expected_school_sd"]],
        "dispersion_lr": _text(float(tests.loc["school_sd_lr", "statistic"])),
        "dispersion_df": _text(int(tests.loc["school_sd_lr", "df"])),
        "dispersion_p_value": _text(float(tests.loc["school_sd_lr", "p_value"])),
    })
    assert tuple(out.columns) == COLUMNS
    return out.astype(object)
