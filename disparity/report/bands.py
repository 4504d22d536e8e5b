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

__all__ = ["distribution_blocks", "published_distribution"]

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


def distribution_blocks(distribution: Any, published: pd.DataFrame, *, what: str,
                        figure: str | None = None) -> list:
    """A report section on the band table: the published bands beside the expectations, the
    school SDs and the tests, in words.

    Parameters
    ----------
    distribution : disparity.school_bands.ExclusionDistribution
    published : DataFrame
        :func:`published_distribution` of it: the section shows nothing that table does not.
    what : str
        The events, in words ("permanent exclusions").
    figure : str, optional
        Path of the bar chart, relative to the report.

    Returns
    -------
    list of disparity.report.document blocks
    """
    from . import document as doc

    def num(text: str, digits: int = 0) -> str:
        try:
            return f"{float(text):,.{digits}f}"
        except ValueError:
            return text

    rows = pd.DataFrame({
        "band": published["band"],
        "n_schools": [num(v) for v in published["n_schools"]],
        "share": [f"{100 * float(v):.1f}%" for v in published["share"]],
        "n_events": [num(v) for v in published["n_events"]],
        "expected_same_risk": [num(v, 1) for v in published["expected_same_risk"]],
        "expected_school_sd": [num(v, 1) for v in published["expected_school_sd"]],
    })
    tests = distribution.tests.set_index("test")
    lr = tests.loc["school_sd_lr"]
    sds = "; ".join(f"{r.stratum} {r.school_sd:.2f} (equal-risk rate {1000 * r.rate_same_risk:.2f} "
                    "per 1,000 pupils)" for r in distribution.rates.itertuples())
    selection = ", ".join(distribution.school_types) or "all school types"
    blocks = [
        doc.Heading(f"How {what} spread over schools"),
        doc.Paragraph(
            f"Schools ({selection}{', ' + distribution.year if distribution.year else ''}) "
            f"banded by their number of {what}. A suppressed school count (x, 1 or 2) is in "
            "band 1-2, never dropped. Beside each band: the schools expected if every school "
            "had its type's risk given its size, and if school effects varied with the "
            f"fitted SD (logit scale): {sds}."),
        doc.Table(rows, labels={"band": "Events", "n_schools": "Schools", "share": "Share",
                                "n_events": "Events in the band",
                                "expected_same_risk": "Expected: same risk",
                                "expected_school_sd": "Expected: school SD"},
                  align={c: "right" for c in rows.columns if c != "band"},
                  caption=f"Schools by their number of {what}",
                  note="x: includes counts suppressed at source (1 or 2); c: suppressed "
                       "(fewer than the minimum events or pupils). The expectations are over "
                       "the schools with a headcount."),
        doc.Paragraph(
            f"Likelihood ratio of a school SD against equal risk: {lr.statistic:,.1f} on "
            f"{int(lr.df)} df (chi-bar-square), {_p_text(lr.p_value)}. Band goodness of fit: "
            f"equal risk {tests.loc['bands_same_risk', 'statistic']:,.1f}, school SD "
            f"{tests.loc['bands_school_sd', 'statistic']:,.1f} (chi-square, 4 df; "
            "conservative, parameters estimated)."),
    ]
    if figure is not None:
        blocks.append(doc.Figure(path=figure, alt=f"Schools by their number of {what}",
                                 caption="Observed schools (those with a headcount) beside "
                                         "the two expectations, log scale."))
    return blocks


def _p_text(p: float) -> str:
    """``p = 0.0123``, or ``p < 1e-300`` where the p-value underflows."""
    return f"p = {p:.3g}" if p > 0 else "p < 1e-300"

