"""Raw disproportionality measures as practitioners compute them, with intervals.

Two layers, as in ArviZ: functions on numpy arrays underneath (vectorised, no pandas), and
one DataFrame function on top, :func:`disproportionality`, that turns any cells table into a
tidy table of risks and ratios under the rules of the US IDEA "significant
disproportionality" regulations (34 CFR 300.646-300.647), which are also a sensible default
for England's DfE data.

Definitions (34 CFR 300.647(a)):

risk
    events in a group divided by pupils in the group (``n_events / n_pupils``).
risk ratio
    the risk of a group within a unit (an LEA, a local authority, a school) divided by the
    risk of all other pupils in the same unit. 1 means the group's risk equals that of the
    others; 2 means twice the risk.
alternate risk ratio
    the group's risk within the unit divided by the risk of all other pupils in the State
    (here: the wider area, all units together); used when the unit's own comparison group is
    below the minimum cell size or the minimum n-size (300.647(b)(5)).
minimum cell size
    the fewest events allowed in the numerator of a risk, for the group and for its
    comparison group (presumptively reasonable: at most 10, 300.647(b)(1)(iv)).
minimum n-size
    the fewest pupils allowed in the denominator of a risk, for the group and for its
    comparison group (presumptively reasonable: at most 30).
risk ratio threshold
    a ratio above which disproportionality is "significant"; a State may wait until it has
    been exceeded in up to three consecutive years (300.647(d)(1)): see
    :func:`flag_consecutive`.

Zero cells. The point estimates are the plain definitions, so a zero count gives 0, ``inf``
or NaN (never a warning). The log-scale intervals (Katz, Woolf) are undefined with a zero
cell; there, and only there, 0.5 is added to each of the four cells of the 2x2 table (the
Haldane-Anscombe correction) before the interval is computed; ``zero_correction=0`` gives a
NaN interval instead. :func:`disproportionality` says so in its ``note`` column. With the
IDEA minimum cell size (10 events) zero cells never reach a calculated ratio.

References
----------
.. [1] 34 CFR 300.647, "Determining significant disproportionality", final regulations
   81 FR 92376 (19 December 2016). https://sites.ed.gov/idea/regs/b/f/300.647
.. [2] Bollmer J, Bethel J, Garrison-Mogren R, Brauen M (2007). Using the risk ratio to
   assess racial/ethnic disproportionality in special education at the school-district
   level. Journal of Special Education 41(3):186-198.
.. [3] Bollmer JM, Bethel JW, Munk TE, Bitterman AR (2014). Methods for Assessing
   Racial/Ethnic Disproportionality in Special Education: A Technical Assistance Guide
   (Revised). IDEA Data Center, Westat.
.. [4] Wilson EB (1927). Probable inference, the law of succession, and statistical
   inference. JASA 22:209-212.
.. [5] Newcombe RG (1998). Two-sided confidence intervals for the single proportion:
   comparison of seven methods. Statistics in Medicine 17:857-872.
.. [6] Newcombe RG (1998). Interval estimation for the difference between independent
   proportions: comparison of eleven methods. Statistics in Medicine 17:873-890.
.. [7] Katz D, Baptista J, Azen SP, Pike MC (1978). Obtaining confidence intervals for the
   risk ratio in cohort studies. Biometrics 34:469-474.
.. [8] Woolf B (1955). On estimating the relation between blood group and disease.
   Annals of Human Genetics 19:251-253.
.. [9] Breslow NE, Day NE (1987). Statistical Methods in Cancer Research, vol. II,
   ch. 2 (directly standardised rates and their variance). IARC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from . import config
from .errors import DisparityError, ValidationError
from .quantiles import two_sided_z
from .vocabulary import N_PUPILS, REFERENCE, YEAR, events_column

__all__ = [
    "COMPARISONS",
    "STATUSES",
    "risk",
    "wilson_interval",
    "risk_ratio",
    "katz_interval",
    "odds_ratio",
    "woolf_interval",
    "risk_difference",
    "newcombe_interval",
    "representation_index",
    "relative_rate_index",
    "weighted_comparison_risk",
    "weighted_risk_ratio",
    "weighted_risk_ratio_interval",
    "disproportionality",
    "flag_consecutive",
]

#: Comparison groups understood by :func:`disproportionality`.
COMPARISONS: tuple[str, ...] = ("others", "reference", "alternate", "weighted")

CALCULATED = "calculated"
ALTERNATE = "alternate"
NOT_N_SIZE = "not_calculated:n_size"
NOT_CELL_SIZE = "not_calculated:cell_size"
NOT_SUPPRESSED = "not_calculated:suppressed"
NOT_REFERENCE = "not_calculated:reference"

#: Every value of the ``status`` column of :func:`disproportionality`.
STATUSES: tuple[str, ...] = (
    CALCULATED,
    ALTERNATE,
    NOT_N_SIZE,
    NOT_CELL_SIZE,
    NOT_SUPPRESSED,
    NOT_REFERENCE,
)

#: ``unit`` label of the single unit when ``unit`` is None (all cells together).
ALL_UNITS = "all"

#: Columns written by :func:`disproportionality` besides the unit columns.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "unit",
    "group",
    "n_events",
    "n_pupils",
    "risk",
    "risk_low",
    "risk_high",
    "comparison",
    "comparison_events",
    "comparison_pupils",
    "comparison_risk",
    "risk_ratio",
    "conf_low",
    "conf_high",
    "risk_difference",
    "rd_low",
    "rd_high",
    "odds_ratio",
    "or_low",
    "or_high",
    "representation_index",
    "status",
    "note",
    "flag",
    "ci_prob",
)

_HALDANE_NOTE = (
    "zero cell: 0.5 added to each cell of the 2x2 table for the intervals (Haldane-Anscombe)"
)


# =========================================================================== array layer
def _z(ci_prob: float) -> float:
    """Two-sided standard normal quantile for an interval of probability ``ci_prob``."""
    if not (isinstance(ci_prob, (int, float)) and 0 < ci_prob < 1):
        raise ValidationError(
            [f"ci_prob must be a probability strictly between 0 and 1; got {ci_prob!r}. "
             f"Use e.g. ci_prob={config.CI_PROB}."],
            what="ci_prob",
        )
    return two_sided_z(ci_prob)


def _arrays(*values: object) -> list[np.ndarray]:
    """Float arrays broadcast to one shape."""
    return list(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values)))


def _out(x: np.ndarray) -> np.ndarray:
    """A numpy scalar for 0-d results, the array otherwise."""
    return x[()] if x.ndim == 0 else x


def _check_counts(n_events: np.ndarray, n_pupils: np.ndarray, what: str) -> None:
    """Raise if counts are negative or events exceed pupils (missing values pass)."""
    problems = []
    with np.errstate(invalid="ignore"):
        bad_e = np.flatnonzero(n_events < 0)
        bad_n = np.flatnonzero(n_pupils < 0)
        over = np.flatnonzero(n_events > n_pupils)
    if bad_e.size:
        problems.append(f"{what}: {bad_e.size} negative event count(s), first at positions "
                        f"{bad_e[:5].tolist()}. Counts must be >= 0.")
    if bad_n.size:
        problems.append(f"{what}: {bad_n.size} negative pupil count(s), first at positions "
                        f"{bad_n[:5].tolist()}. Counts must be >= 0.")
    if over.size:
        problems.append(
            f"{what}: {over.size} position(s) have more events than pupils, first at "
            f"{over[:5].tolist()}. Risks need at most one event per pupil: use a 0/1 "
            "outcome (e.g. any_susp rather than n_susp)."
        )
    if problems:
        raise ValidationError(problems, what="counts")


def risk(n_events: ArrayLike, n_pupils: ArrayLike) -> np.ndarray:
    """Risk: the share of pupils with the event, ``n_events / n_pupils``.

    A risk is a proportion in [0, 1]; 0.01 means one pupil in a hundred. It is NaN where
    ``n_pupils`` is 0 (no pupils, no risk) or a count is missing.

    Parameters
    ----------
    n_events, n_pupils : array_like
        Events (pupils with the outcome) and pupils; broadcast together.

    Returns
    -------
    ndarray or numpy scalar

    References
    ----------
    34 CFR 300.647(a)(5) ("risk").

    Examples
    --------
    >>> float(risk(20, 100))
    0.2
    >>> risk([0, 5], [0, 10]).tolist()
    [nan, 0.5]
    """
    e, n = _arrays(n_events, n_pupils)
    _check_counts(e, n, "risk")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(n > 0, e / np.where(n > 0, n, 1.0), np.nan)
    return _out(r)


def wilson_interval(
    n_events: ArrayLike,
    n_pupils: ArrayLike,
    ci_prob: float = config.CI_PROB,
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a risk.

    The interval of the risk ``p`` whose score test does not reject at level
    ``1 - ci_prob``: centre ``(e + z^2/2) / (n + z^2)``, half-width
    ``z / (n + z^2) * sqrt(e (n - e) / n + z^2 / 4)``. It stays inside [0, 1] and is exact
    at the edges (lower bound 0 when ``e = 0``, upper bound 1 when ``e = n``). NaN where
    ``n = 0``.

    Parameters
    ----------
    n_events, n_pupils : array_like
    ci_prob : float
        Probability mass of the interval.

    Returns
    -------
    (low, high) : tuple of ndarray

    References
    ----------
    Wilson (1927); Newcombe (1998), method 3 ([4]_, [5]_ in the module docstring).

    Examples
    --------
    >>> low, high = wilson_interval(81, 263)
    >>> round(float(low), 4), round(float(high), 4)
    (0.2553, 0.3662)
    """
    z = _z(ci_prob)
    e, n = _arrays(n_events, n_pupils)
    _check_counts(e, n, "wilson_interval")
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        safe_n = np.where(n > 0, n, 1.0)
        denom = safe_n + z2
        centre = (e + z2 / 2.0) / denom
        half = z / denom * np.sqrt(np.maximum(e * (safe_n - e) / safe_n, 0.0) + z2 / 4.0)
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    low = np.where(e == 0, 0.0, low)
    high = np.where(e == n, 1.0, high)
    empty = ~(n > 0)
    low = np.where(empty, np.nan, low)
    high = np.where(empty, np.nan, high)
    return _out(low), _out(high)


def risk_ratio(
    e1: ArrayLike,
    n1: ArrayLike,
    e0: ArrayLike,
    n0: ArrayLike,
) -> np.ndarray:
    """Risk ratio of a group (``e1`` of ``n1``) against a comparison (``e0`` of ``n0``).

    ``(e1 / n1) / (e0 / n0)``. 1 means equal risks; 2 means the group's risk is twice the
    comparison's. With ``e0 = 0`` it is ``inf`` (or NaN when ``e1 = 0`` too); NaN where a
    group has no pupils.

    References
    ----------
    34 CFR 300.647(a)(6) ("risk ratio").

    Examples
    --------
    >>> float(risk_ratio(20, 100, 30, 600))
    4.0
    """
    e1, n1, e0, n0 = _arrays(e1, n1, e0, n0)
    r1 = risk(e1, n1)
    r0 = risk(e0, n0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(np.asarray(r1 / r0, dtype=float))


def _zero_rr(e1: np.ndarray, e0: np.ndarray) -> np.ndarray:
    return (e1 == 0) | (e0 == 0)


def _zero_or(e1: np.ndarray, n1: np.ndarray, e0: np.ndarray, n0: np.ndarray) -> np.ndarray:
    return (e1 == 0) | (e0 == 0) | (n1 - e1 == 0) | (n0 - e0 == 0)


def katz_interval(
    e1: ArrayLike,
    n1: ArrayLike,
    e0: ArrayLike,
    n0: ArrayLike,
    ci_prob: float = config.CI_PROB,
    *,
    zero_correction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Katz log interval for a risk ratio.

    ``exp(log RR -/+ z * SE)`` with ``SE = sqrt(1/e1 - 1/n1 + 1/e0 - 1/n0)``. Where
    ``e1 = 0`` or ``e0 = 0`` the log is undefined: there ``zero_correction`` (default 0.5,
    the Haldane-Anscombe correction) is added to each of the four cells of the 2x2 table
    (events and non-events of both groups, so each ``n`` grows by ``2 * zero_correction``);
    with ``zero_correction=0`` the interval is NaN there. Rows without a zero are never
    corrected. NaN where a group has no pupils.

    References
    ----------
    Katz et al. (1978) ([7]_ in the module docstring).

    Examples
    --------
    >>> low, high = katz_interval(20, 100, 30, 600)
    >>> round(float(low), 3), round(float(high), 3)
    (2.367, 6.76)
    """
    z = _z(ci_prob)
    e1, n1, e0, n0 = _arrays(e1, n1, e0, n0)
    _check_counts(e1, n1, "katz_interval (group)")
    _check_counts(e0, n0, "katz_interval (comparison)")
    zero = _zero_rr(e1, e0)
    c = np.where(zero, float(zero_correction), 0.0)
    a, m1, b, m0 = e1 + c, n1 + 2 * c, e0 + c, n0 + 2 * c
    with np.errstate(divide="ignore", invalid="ignore"):
        log_rr = np.log(a / m1) - np.log(b / m0)
        se = np.sqrt(1 / a - 1 / m1 + 1 / b - 1 / m0)
        low, high = np.exp(log_rr - z * se), np.exp(log_rr + z * se)
    bad = ~((n1 > 0) & (n0 > 0) & (a > 0) & (b > 0))
    return _out(np.where(bad, np.nan, low)), _out(np.where(bad, np.nan, high))


def odds_ratio(
    e1: ArrayLike,
    n1: ArrayLike,
    e0: ArrayLike,
    n0: ArrayLike,
) -> np.ndarray:
    """Odds ratio of a group against a comparison.

    ``(e1 / (n1 - e1)) / (e0 / (n0 - e0))``. 1 means equal odds. Close to the risk ratio
    when events are rare (as exclusions are), further from 1 than it otherwise. Zero cells
    give 0, ``inf`` or NaN.

    Examples
    --------
    >>> float(odds_ratio(20, 100, 30, 600))
    4.75
    """
    e1, n1, e0, n0 = _arrays(e1, n1, e0, n0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (e1 * (n0 - e0)) / ((n1 - e1) * e0)
    out = np.where((n1 > 0) & (n0 > 0), out, np.nan)
    return _out(out)


def woolf_interval(
    e1: ArrayLike,
    n1: ArrayLike,
    e0: ArrayLike,
    n0: ArrayLike,
    ci_prob: float = config.CI_PROB,
    *,
    zero_correction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Woolf (logit) interval for an odds ratio.

    ``exp(log OR -/+ z * sqrt(1/a + 1/b + 1/c + 1/d))`` over the four cells of the 2x2
    table. Where any cell is 0, ``zero_correction`` (default 0.5, Haldane-Anscombe) is added
    to all four; with ``zero_correction=0`` the interval is NaN there.

    References
    ----------
    Woolf (1955) ([8]_ in the module docstring).

    Examples
    --------
    >>> low, high = woolf_interval(20, 100, 30, 600)
    >>> round(float(low), 3), round(float(high), 3)
    (2.575, 8.762)
    """
    z = _z(ci_prob)
    e1, n1, e0, n0 = _arrays(e1, n1, e0, n0)
    _check_counts(e1, n1, "woolf_interval (group)")
    _check_counts(e0, n0, "woolf_interval (comparison)")
    zero = _zero_or(e1, n1, e0, n0)
    c = np.where(zero, float(zero_correction), 0.0)
    a, b, cc, d = e1 + c, n1 - e1 + c, e0 + c, n0 - e0 + c
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(a) + np.log(d) - np.log(b) - np.log(cc)
        se = np.sqrt(1 / a + 1 / b + 1 / cc + 1 / d)
        low, high = np.exp(log_or - z * se), np.exp(log_or + z * se)
    bad = ~((a > 0) & (b > 0) & (cc > 0) & (d > 0))
    return _out(np.where(bad, np.nan, low)), _out(np.where(bad, np.nan, high))


def risk_difference(
    e1: ArrayLike,
    n1: ArrayLike,
    e0: ArrayLike,
    n0: ArrayLike,
) -> np.ndarray:
    """Risk difference ``e1/n1 - e0/n0`` (a proportion; 0 means equal risks).

    Examples
    --------
    >>> round(float(risk_difference(20, 100, 30, 600)), 10)
    0.15
    """
    return _out(np.asarray(risk(e1, n1) - risk(e0, n0), dtype=float))


def newcombe_interval(
    e1: ArrayLike,
    n1: ArrayLike,
    e0: ArrayLike,
    n0: ArrayLike,
    ci_prob: float = config.CI_PROB,
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe hybrid score interval for a risk difference (Newcombe 1998, method 10).

    With ``p1 = e1/n1``, ``p0 = e0/n0`` and their Wilson intervals ``(l1, u1)``,
    ``(l0, u0)``: ``d - sqrt((p1 - l1)^2 + (u0 - p0)^2)`` to
    ``d + sqrt((u1 - p1)^2 + (p0 - l0)^2)``. Defined with zero cells (no correction);
    NaN where a group has no pupils.

    References
    ----------
    Newcombe (1998b) ([6]_ in the module docstring).

    Examples
    --------
    >>> low, high = newcombe_interval(56, 70, 48, 80)
    >>> round(float(low), 4), round(float(high), 4)
    (0.0524, 0.3339)
    """
    e1, n1, e0, n0 = _arrays(e1, n1, e0, n0)
    l1, u1 = (np.asarray(x) for x in wilson_interval(e1, n1, ci_prob))
    l0, u0 = (np.asarray(x) for x in wilson_interval(e0, n0, ci_prob))
    p1, p0 = np.asarray(risk(e1, n1)), np.asarray(risk(e0, n0))
    d = p1 - p0
    low = d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return _out(low), _out(high)


def representation_index(
    e_group: ArrayLike,
    n_group: ArrayLike,
    e_total: ArrayLike,
    n_total: ArrayLike,
) -> np.ndarray:
    """Representation (composition) index: group share of events / group share of pupils.

    ``(e_group / e_total) / (n_group / n_total)``, equal to the group's risk divided by the
    risk of everyone in the unit (group included). 1 means the group's share of exclusions
    equals its share of pupils; 2 means it has twice its share. The indices of all groups
    in a unit, weighted by their shares of pupils, average to exactly 1. NaN where the unit
    has no events or the group no pupils.

    References
    ----------
    Bollmer et al. (2014), "composition" ([3]_ in the module docstring).

    Examples
    --------
    >>> round(float(representation_index(20, 100, 50, 700)), 10)
    2.8
    """
    e, n, et, nt = _arrays(e_group, n_group, e_total, n_total)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (e / et) / (n / nt)
    out = np.where((et > 0) & (n > 0) & (nt > 0), out, np.nan)
    return _out(out)


def relative_rate_index(
    e_group: ArrayLike,
    n_group: ArrayLike,
    e_reference: ArrayLike,
    n_reference: ArrayLike,
) -> np.ndarray:
    """Relative rate index (RRI): a group's rate divided by the reference group's rate.

    The measure of the US juvenile-justice "disproportionate minority contact" reports
    (OJJDP): the rate per 1,000 at a decision point (the per-1,000 scale cancels) for a
    group over that of the reference group (there, White youth). The denominators may be
    the population or the count at the previous decision point. With pupils as the
    denominator it is the risk ratio against a named reference group; 1 means equal rates.

    Examples
    --------
    >>> float(relative_rate_index(260, 92595, 5470, 5439960)) > 2.79
    True
    """
    return risk_ratio(e_group, n_group, e_reference, n_reference)


def _leave_one_out(
    n_events: ArrayLike,
    n_pupils: ArrayLike,
    weights: ArrayLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit risks, weighted comparison risks and their delta-method variances.

    Groups lie along the last axis. A group with 0 pupils in the unit is left out of the
    sums (its risk is undefined); a missing (NaN) count or weight of a group that is present
    makes every comparison that needs it NaN.
    """
    e, n, w = _arrays(n_events, n_pupils, weights)
    if e.ndim == 0:
        raise ValidationError(["weighted measures need groups along the last axis; got "
                               "scalars."], what="weighted risk ratio")
    _check_counts(e, n, "weighted risk ratio")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = e / n
        var_r = r * (1 - r) / n
    present = n != 0  # NaN != 0 is True: a missing count is present and propagates
    n_groups = e.shape[-1]
    comp = np.empty(e.shape, dtype=float)
    comp_var = np.empty(e.shape, dtype=float)
    for g in range(n_groups):
        use = present.copy()
        use[..., g] = False
        sw = np.sum(np.where(use, w, 0.0), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            swr = np.sum(np.where(use, w * r, 0.0), axis=-1)
            swv = np.sum(np.where(use, w * w * var_r, 0.0), axis=-1)
            comp[..., g] = np.where(sw > 0, swr / sw, np.nan)
            comp_var[..., g] = np.where(sw > 0, swv / (sw * sw), np.nan)
    r = np.where(present, r, np.nan)
    return r, comp, comp_var


def weighted_comparison_risk(
    n_events: ArrayLike,
    n_pupils: ArrayLike,
    weights: ArrayLike,
) -> np.ndarray:
    """Risk of the other groups in a unit, standardised to the wider area's composition.

    For group ``g``: ``sum_{j != g} w_j R_j / sum_{j != g} w_j``, where ``R_j`` is group
    ``j``'s risk in the unit and ``w_j`` its share of pupils in the wider area (State,
    nation). Groups lie along the last axis; groups with no pupils in the unit are left out
    (their weights are dropped and the rest renormalised).

    References
    ----------
    Bollmer et al. (2007; 2014), the weighted risk ratio ([2]_, [3]_ in the module
    docstring).

    Examples
    --------
    >>> weighted_comparison_risk([10, 20, 30], [100, 100, 100], [0.5, 0.3, 0.2]).round(4)
    array([0.24  , 0.1571, 0.1375])
    """
    return _out(_leave_one_out(n_events, n_pupils, weights)[1])


def weighted_risk_ratio(
    n_events: ArrayLike,
    n_pupils: ArrayLike,
    weights: ArrayLike,
) -> np.ndarray:
    """IDEA weighted risk ratio (WRR) of each group in a unit.

    ``WRR_g = R_g * sum_{j != g} w_j / sum_{j != g} w_j R_j``: the group's risk in the unit
    over the risk of the unit's other groups, each weighted by its share of pupils in the
    wider area (the State in the IDEA guidance; here the nation or the area the caller
    chooses), so that units with unusual compositions are compared on a common footing.
    With the unit's own pupil shares as weights it equals the crude risk ratio against all
    other pupils. 1 means equal risks. Groups lie along the last axis.

    References
    ----------
    Bollmer et al. (2007), Journal of Special Education 41(3):186-198; Bollmer et al.
    (2014), Methods for Assessing Racial/Ethnic Disproportionality in Special Education
    ([2]_, [3]_ in the module docstring).

    Examples
    --------
    >>> weighted_risk_ratio([10, 20, 30], [100, 100, 100], [0.5, 0.3, 0.2]).round(4)
    array([0.4167, 1.2727, 2.1818])
    """
    r, comp, _ = _leave_one_out(n_events, n_pupils, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(r / comp)


def weighted_risk_ratio_interval(
    n_events: ArrayLike,
    n_pupils: ArrayLike,
    weights: ArrayLike,
    ci_prob: float = config.CI_PROB,
) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method log interval for the weighted risk ratio.

    ``exp(log WRR -/+ z * SE)`` with ``SE^2 = (1/e_g - 1/n_g) + V_g / C_g^2``, where
    ``C_g`` is the weighted comparison risk and
    ``V_g = sum_{j != g} w~_j^2 R_j (1 - R_j) / n_j`` its binomial variance (``w~``: the
    weights renormalised over the other groups present), the groups being independent.
    NaN where ``e_g = 0`` or ``C_g = 0`` (no zero-cell correction).

    References
    ----------
    Breslow & Day (1987), variance of a directly standardised rate ([9]_ in the module
    docstring); Katz et al. (1978) for the group's own term.

    Examples
    --------
    >>> low, high = weighted_risk_ratio_interval([10, 20, 30], [100, 100, 100],
    ...                                          [0.5, 0.3, 0.2])
    >>> bool(low[2] < 2.1818 < high[2])
    True
    """
    z = _z(ci_prob)
    e, n, _ = _arrays(n_events, n_pupils, weights)
    r, comp, comp_var = _leave_one_out(n_events, n_pupils, weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_wrr = np.log(r) - np.log(comp)
        se = np.sqrt(1 / e - 1 / n + comp_var / comp**2)
        low, high = np.exp(log_wrr - z * se), np.exp(log_wrr + z * se)
    bad = ~((e > 0) & (n > 0) & (comp > 0))
    return _out(np.where(bad, np.nan, low)), _out(np.where(bad, np.nan, high))


# =========================================================================== frame layer
def _as_list(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return list(columns)


def _float_column(series: pd.Series) -> np.ndarray:
    """A count column as float64 with NaN for missing (pandas NA, None, NaN)."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _first_rows(mask: np.ndarray, index: pd.Index, k: int = 5) -> str:
    rows = index[np.flatnonzero(mask)[:k]].tolist()
    return ", ".join(repr(r) for r in rows)


def _validate(
    cells: pd.DataFrame,
    *,
    events: str,
    trials: str,
    by: str,
    unit_cols: list[str],
    area_cols: list[str],
    comparison: str,
    reference: str | None,
    min_n_size: int,
    min_cell_size: int,
    ci_prob: float,
    threshold: float | None,
) -> str | None:
    """Collect every problem with a request, raise one ValidationError; return the reference."""
    if not isinstance(cells, pd.DataFrame):
        raise ValidationError([f"cells must be a pandas DataFrame; got {type(cells).__name__}."],
                              what="cells")
    problems: list[str] = []
    if len(cells) == 0:
        raise ValidationError(["the cells table has no rows; pass at least one cell."],
                              what="cells")
    available = ", ".join(repr(c) for c in cells.columns)
    for role, col in [("outcome events", events), ("trials", trials), ("by", by)] + [
        ("unit", c) for c in unit_cols
    ]:
        if col not in cells.columns:
            problems.append(f"{role} column {col!r} is not in the cells table. "
                            f"Available columns: {available}.")
    if by in unit_cols:
        problems.append(f"column {by!r} is given both as by and as a unit column; "
                        "compare groups within units of another column.")
    clash = [c for c in unit_cols if c in OUTPUT_COLUMNS]
    if clash:
        problems.append(f"unit column(s) {clash} share a name with an output column; rename "
                        f"them (output columns: {', '.join(OUTPUT_COLUMNS)}).")
    for c in area_cols:
        if c not in unit_cols:
            problems.append(f"area_by column {c!r} must be one of the unit columns "
                            f"{unit_cols}.")
    if comparison not in COMPARISONS:
        problems.append(f"comparison {comparison!r} is not known. Valid comparisons: "
                        f"{', '.join(repr(c) for c in COMPARISONS)}.")
    if reference is not None and comparison != "reference":
        problems.append(f"reference={reference!r} is used only with comparison='reference'; "
                        f"got comparison={comparison!r}. Drop reference, or use "
                        "comparison='reference'.")
    for name, value in [("min_n_size", min_n_size), ("min_cell_size", min_cell_size)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            problems.append(f"{name} must be a whole number >= 0; got {value!r}.")
    if not (isinstance(ci_prob, (int, float)) and 0 < ci_prob < 1):
        problems.append(f"ci_prob must be strictly between 0 and 1; got {ci_prob!r}.")
    if threshold is not None and not (
        isinstance(threshold, (int, float)) and np.isfinite(threshold) and threshold > 0
    ):
        problems.append(f"threshold must be a positive number or None; got {threshold!r}.")
    if problems:
        raise ValidationError(problems, what="disproportionality request")

    for col in [by, *unit_cols]:
        missing = cells[col].isna().to_numpy()
        if missing.any():
            problems.append(f"column {col!r} has {int(missing.sum())} missing value(s), first "
                            f"at rows {_first_rows(missing, cells.index)}. Give every cell a "
                            "group and a unit (e.g. 'Unclassified').")
    e = _float_column(cells[events])
    n = _float_column(cells[trials])
    for col, values in [(events, e), (trials, n)]:
        raw_missing = cells[col].isna().to_numpy()
        unreadable = np.isnan(values) & ~raw_missing
        if unreadable.any():
            problems.append(f"column {col!r} has {int(unreadable.sum())} value(s) that are not "
                            f"numbers, first at rows {_first_rows(unreadable, cells.index)}. "
                            "Convert suppression markers to missing values when reading.")
        with np.errstate(invalid="ignore"):
            negative = values < 0
        if negative.any():
            problems.append(f"column {col!r} has {int(negative.sum())} negative value(s), "
                            f"first at rows {_first_rows(negative, cells.index)}.")
    with np.errstate(invalid="ignore"):
        over = e > n
    if over.any():
        problems.append(
            f"column {events!r} exceeds {trials!r} in {int(over.sum())} row(s), first at rows "
            f"{_first_rows(over, cells.index)}. Risks need at most one event per pupil: use a "
            "0/1 outcome (e.g. any_susp, not n_susp)."
        )
    ref = reference
    if comparison == "reference":
        if ref is None:
            ref = REFERENCE.get(by)
        if ref is None:
            problems.append(f"comparison='reference' needs reference=...: there is no default "
                            f"reference level for {by!r}.")
        else:
            levels = pd.unique(cells[by].dropna())
            if ref not in set(levels.tolist()):
                shown = ", ".join(repr(x) for x in levels[:30])
                problems.append(f"reference level {ref!r} is not in column {by!r}. Levels "
                                f"present: {shown}.")
    if problems:
        raise ValidationError(problems, what="cells")
    return ref


def _totals(frame: pd.DataFrame, keys: list[str], values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` within ``keys`` broadcast to the rows; NaN if any member is NaN."""
    filled = pd.Series(np.nan_to_num(values, nan=0.0), index=frame.index)
    missing = pd.Series(np.isnan(values), index=frame.index)
    if keys:
        grouper = [frame[k] for k in keys]
        total = filled.groupby(grouper, sort=False, observed=True).transform("sum").to_numpy()
        miss = missing.groupby(grouper, sort=False, observed=True).transform("max").to_numpy()
    else:
        total = np.full(len(frame), filled.sum())
        miss = np.full(len(frame), bool(missing.any()))
    return np.where(miss.astype(bool), np.nan, total)


def _published_totals(
    agg: pd.DataFrame, unit_cols: list[str], unit_totals: pd.DataFrame, events: str, trials: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's unit total (events, pupils) from a table of published unit totals."""
    needed = [*unit_cols, events, trials]
    absent = [c for c in needed if c not in unit_totals.columns]
    if absent:
        raise ValidationError(
            [f"unit_totals lacks column(s) {absent}; it has {list(unit_totals.columns)}. "
             "Give one row per unit with the unit columns, pupils and events."]
        )
    if unit_cols:
        dup = unit_totals.duplicated(unit_cols, keep=False).to_numpy()
        if dup.any():
            raise ValidationError(
                [f"unit_totals: {int(dup.sum())} rows repeat a unit of {unit_cols} "
                 f"(rows {_first_rows(dup, unit_totals.index)}). Give one total per unit."]
            )
        # Unit labels are matched as text, whatever their dtype on either side.
        right = unit_totals[needed].rename(columns={events: "__pe", trials: "__pn"})
        right = right.astype({c: str for c in unit_cols})
        left = agg[unit_cols].astype(str)
        merged = left.merge(right, on=unit_cols, how="left", validate="many_to_one")
    else:
        if len(unit_totals) != 1:
            raise ValidationError(
                [f"unit_totals has {len(unit_totals)} rows but there is one unit (no unit "
                 "columns); give exactly one total row."]
            )
        merged = pd.DataFrame({"__pe": np.repeat(unit_totals[events].to_numpy(), len(agg)),
                               "__pn": np.repeat(unit_totals[trials].to_numpy(), len(agg))})
    return _float_column(merged["__pe"]), _float_column(merged["__pn"])


def _counts_out(x: np.ndarray) -> pd.Series | np.ndarray:
    """Counts as nullable Int64 when every known value is whole, float otherwise."""
    missing = np.isnan(x)
    known = x[~missing]
    if np.all(np.isfinite(known)) and np.all(np.mod(known, 1) == 0):
        return pd.arrays.IntegerArray(np.where(missing, 0, x).astype(np.int64), missing)
    return x


def _notes(n_rows: int, items: list[tuple[np.ndarray, str]]) -> np.ndarray:
    out = np.full(n_rows, "", dtype=object)
    for mask, text in items:
        mask = np.asarray(mask, dtype=bool)
        joined = np.where(out[mask] == "", text, out[mask] + "; " + text)
        out[mask] = joined
    return out


def disproportionality(
    cells: pd.DataFrame,
    *,
    outcome: str,
    by: str,
    unit: str | Sequence[str] | None = None,
    comparison: str = "others",
    reference: str | None = None,
    trials: str = N_PUPILS,
    min_n_size: int = config.MIN_N_SIZE,
    min_cell_size: int = config.MIN_CELL_SIZE,
    ci_prob: float = config.CI_PROB,
    threshold: float | None = None,
    area_by: str | Sequence[str] | None = None,
    unit_totals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Risks, risk ratios and their intervals for each group within each unit.

    The IDEA "significant disproportionality" method (34 CFR 300.647) on any cells table:
    for every unit (a local authority, a school, a year...) and every group of ``by``, the
    group's risk, the risk of its comparison group, the risk ratio with a Katz interval, the
    risk difference (Newcombe interval), the odds ratio (Woolf interval) and the
    representation index, with a ``status`` saying whether the ratio could be calculated
    and why not.

    Parameters
    ----------
    cells : DataFrame
        Grouping columns, ``trials`` (pupils) and the outcome's event count. Columns other
        than ``by`` and ``unit`` are summed over first (e.g. sex, year when ``unit`` does
        not name it). Missing counts (suppressed in official files; nullable ``Int64``
        with NA) are never treated as zero: see ``status``.
    outcome : str
        Outcome name, ``"perm_excl"`` or its count column ``"n_perm_excl"``.
    by : str
        The characteristic whose groups are compared, e.g. ``"ethnicity"``.
    unit : str or sequence of str, optional
        Column(s) defining the units within which groups are compared, e.g. ``"la"`` or
        ``["year", "la"]``. None: all cells form one unit, labelled ``"all"``.
    comparison : {"others", "reference", "alternate", "weighted"}
        ``"others"``: all other pupils in the unit (the IDEA risk ratio).
        ``"reference"``: the ``reference`` group in the unit.
        ``"alternate"``: the unit's others when they meet the minimum sizes, else all other
        pupils of the wider area (the IDEA alternate risk ratio; status ``"alternate"``).
        ``"weighted"``: the IDEA weighted risk ratio, the unit's other groups' risks
        weighted by the wider area's composition.
    reference : str, optional
        Reference level for ``comparison="reference"``; default
        :data:`disparity.vocabulary.REFERENCE` ``[by]`` (e.g. White British).
    trials : str
        Pupils column.
    min_n_size, min_cell_size : int
        IDEA minimum n-size (pupils, the denominator of a risk) and minimum cell size
        (events, the numerator), applied to the group and to its comparison group
        (300.647(a)(3)-(4), (b)(5)-(6)). A ratio is calculated where both are met (>=).
    ci_prob : float
        Probability of every interval.
    threshold : float, optional
        Risk ratio threshold: ``flag`` is True where the ratio exceeds it (strictly) and the
        ratio was calculated. None: ``flag`` is missing (not assessed).
    area_by : str or sequence of str, optional
        Unit columns that split the wider area used by ``"alternate"`` and ``"weighted"``.
        Default: ``"year"`` when it is a unit column (each year's nation), else none (all
        units together).
    unit_totals : DataFrame, optional
        Published totals of each unit (the unit columns, ``trials`` and the event count; one
        row per unit), e.g. the ``Total`` rows of a DfE file. When given, a unit's "others"
        are its published total minus the group, so one suppressed group (DfE's ``x``) does
        not make every other group's comparison unknown, and pupils outside the breakdown
        (DfE's ethnicity rows leave out pupils aged 4 and under) count among the others.
        National DfE counts are rounded to the nearest 5, so such differences carry that
        rounding. Units absent from ``unit_totals`` fall back to the sum of their groups.

    Returns
    -------
    DataFrame
        One row per unit x group, in the order they first appear in ``cells``: the unit
        columns, then ``unit`` (a label: the unit's value(s) joined by " / ", or ``"all"``),
        ``group``, ``n_events``, ``n_pupils``, ``risk``, ``risk_low``, ``risk_high``
        (Wilson), ``comparison`` (what the comparator was: ``"others"``,
        ``"reference: White British"``, ``"alternate: national others"``, ``"weighted"``),
        ``comparison_events``, ``comparison_pupils`` (for ``"weighted"``: the unit's other
        pupils, whose sizes the rules check), ``comparison_risk``, ``risk_ratio``,
        ``conf_low``, ``conf_high`` (Katz; delta method for ``"weighted"``),
        ``risk_difference``, ``rd_low``, ``rd_high`` (Newcombe), ``odds_ratio``, ``or_low``,
        ``or_high`` (Woolf), ``representation_index``, ``status``, ``note``, ``flag``,
        ``ci_prob``.

        ``status`` is one of :data:`STATUSES`: ``"calculated"``; ``"alternate"`` (the wider
        area's comparison was used); ``"not_calculated:suppressed"`` (a count the ratio needs
        is missing: the group's own, or for ``"others"`` any group's in the unit);
        ``"not_calculated:n_size"`` / ``"not_calculated:cell_size"`` (the group, or its
        comparison, is below the minimum; ``note`` says which);
        ``"not_calculated:reference"`` (the reference group's own row). Where the status is
        not calculated/alternate the ratio columns are NaN; risks and the representation
        index (which has no size rule) are still given where the counts are known.

    Raises
    ------
    ValidationError
        Unknown columns (listing those available), an unknown comparison (listing the
        valid ones), a reference level not present (listing the levels), bad counts.

    References
    ----------
    34 CFR 300.647 ([1]_ in the module docstring); Bollmer et al. (2007; 2014) for the
    alternate and weighted risk ratios.

    Examples
    --------
    >>> cells = pd.DataFrame({
    ...     "la": ["A", "A", "B", "B"],
    ...     "ethnicity": ["Black Caribbean", "White British"] * 2,
    ...     "n_pupils": [100, 600, 40, 500],
    ...     "n_perm_excl": [20, 30, 3, 25],
    ... })
    >>> out = disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la")
    >>> out[["unit", "group", "risk_ratio", "status"]]
      unit            group  risk_ratio                    status
    0    A  Black Caribbean        4.00                calculated
    1    A    White British        0.25                calculated
    2    B  Black Caribbean         NaN  not_calculated:cell_size
    3    B    White British         NaN  not_calculated:cell_size
    """
    unit_cols = _as_list(unit)
    events = events_column(outcome)
    area_cols = _as_list(area_by) if area_by is not None else (
        [YEAR] if YEAR in unit_cols else []
    )
    ref = _validate(
        cells, events=events, trials=trials, by=by, unit_cols=unit_cols, area_cols=area_cols,
        comparison=comparison, reference=reference, min_n_size=min_n_size,
        min_cell_size=min_cell_size, ci_prob=ci_prob, threshold=threshold,
    )

    # ---- 1. sum over the grouping columns not used, NA-propagating ----------------------
    keys = [*unit_cols, by]
    e_raw = _float_column(cells[events])
    n_raw = _float_column(cells[trials])
    values = np.column_stack([np.nan_to_num(e_raw, nan=0.0), np.nan_to_num(n_raw, nan=0.0),
                              np.isnan(e_raw), np.isnan(n_raw)])
    work = cells[keys].reset_index(drop=True)
    value_cols = ["__e", "__n", "__e_na", "__n_na"]
    work[value_cols] = values
    summed = work.groupby(keys, sort=False, observed=True)[value_cols].sum()
    agg = summed.index.to_frame(index=False)
    agg.columns = keys
    sums = summed.to_numpy()
    if not np.allclose(sums[:, :2].sum(axis=0), values[:, :2].sum(axis=0), rtol=1e-12, atol=0):
        raise DisparityError("internal error: summing cells did not conserve events and "
                             "pupils; please report this with the input table.")
    e1 = np.where(sums[:, 2] > 0, np.nan, sums[:, 0])
    n1 = np.where(sums[:, 3] > 0, np.nan, sums[:, 1])
    rows = len(agg)
    groups = agg[by].to_numpy()

    # ---- 2. the unit's totals and its "others" ------------------------------------------
    e_unit = _totals(agg, unit_cols, e1)
    n_unit = _totals(agg, unit_cols, n1)
    if unit_totals is not None:
        e_pub, n_pub = _published_totals(agg, unit_cols, unit_totals, events, trials)
        e_unit = np.where(np.isnan(e_pub), e_unit, e_pub)
        n_unit = np.where(np.isnan(n_pub), n_unit, n_pub)
    e_others, n_others = e_unit - e1, n_unit - n1

    own_missing = np.isnan(e1) | np.isnan(n1)
    label = np.full(rows, comparison, dtype=object)
    is_ref_row = np.zeros(rows, dtype=bool)
    use_area = np.zeros(rows, dtype=bool)
    notes: list[tuple[np.ndarray, str]] = []
    comp_risk_override = None
    wrr = wrr_low = wrr_high = None

    if comparison == "reference":
        is_ref_row = groups == ref
        ref_e = np.where(is_ref_row, e1, 0.0)
        ref_n = np.where(is_ref_row, n1, 0.0)
        e0 = _totals(agg, unit_cols, ref_e)
        n0 = _totals(agg, unit_cols, ref_n)
        label[:] = f"reference: {ref}"
        notes.append((is_ref_row, "reference group itself"))
    elif comparison == "others":
        e0, n0 = e_others, n_others
    elif comparison == "alternate":
        area_keys = [*area_cols, by]
        e_area_group = _totals(agg, area_keys, e1)
        n_area_group = _totals(agg, area_keys, n1)
        e_area_others = _totals(agg, area_cols, e1) - e_area_group
        n_area_others = _totals(agg, area_cols, n1) - n_area_group
        with np.errstate(invalid="ignore"):
            own_small = (n_others < min_n_size) | (e_others < min_cell_size)
        use_area = own_small & ~np.isnan(e_others) & ~np.isnan(n_others)
        e0 = np.where(use_area, e_area_others, e_others)
        n0 = np.where(use_area, n_area_others, n_others)
        label[:] = "others"
        label[use_area] = "alternate: national others"
        notes.append((use_area, "the unit's other pupils are below the minimum sizes: all "
                                "other pupils of the wider area are the comparison"))
    else:  # weighted
        e0, n0 = e_others, n_others
        n_area_group = _totals(agg, [*area_cols, by], n1)
        n_area = _totals(agg, area_cols, n1)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = n_area_group / n_area
        comp_risk_override, wrr, wrr_low, wrr_high = _weighted_long(
            agg, unit_cols, by, e1, n1, share, ci_prob
        )
        weighted_note = ("weighted risk ratio: delta-method interval; no odds ratio or "
                         "risk-difference interval")

    # ---- 3. status ----------------------------------------------------------------------
    comp_missing = np.isnan(e0) | np.isnan(n0)
    if comp_risk_override is not None:
        with np.errstate(invalid="ignore"):
            comp_missing |= np.isnan(comp_risk_override) & ~own_missing & (n0 != 0)
    with np.errstate(invalid="ignore"):
        own_n = n1 < min_n_size
        own_cell = e1 < min_cell_size
        comp_n = n0 < min_n_size
        comp_cell = e0 < min_cell_size
    status = np.full(rows, CALCULATED, dtype=object)
    status[use_area] = ALTERNATE
    # lowest precedence first; later assignments win
    conditions = [
        (comp_cell & ~comp_missing, NOT_CELL_SIZE,
         f"comparison group below the minimum cell size ({min_cell_size} events)"),
        (comp_n & ~comp_missing, NOT_N_SIZE,
         f"comparison group below the minimum n-size ({min_n_size} pupils)"),
        (comp_missing & ~own_missing, NOT_SUPPRESSED,
         "a count the comparison group needs is missing (suppressed) in the source"),
        (own_cell & ~own_missing, NOT_CELL_SIZE,
         f"group below the minimum cell size ({min_cell_size} events)"),
        (own_n & ~own_missing, NOT_N_SIZE,
         f"group below the minimum n-size ({min_n_size} pupils)"),
        (own_missing, NOT_SUPPRESSED, "the group's count is missing (suppressed) in the source"),
        (is_ref_row, NOT_REFERENCE, None),
    ]
    for mask, value, text in conditions:
        status[mask] = value
    for mask, _value, text in reversed(conditions):
        if text is not None:
            # every reason that applies is noted; the status shows the one that decided
            notes.append((mask & ~is_ref_row, text))
    ok = np.isin(status, [CALCULATED, ALTERNATE])

    # ---- 4. measures --------------------------------------------------------------------
    r1 = np.asarray(risk(e1, n1))
    r_low, r_high = (np.asarray(x) for x in wilson_interval(e1, n1, ci_prob))
    if comparison == "weighted":
        comp_risk = comp_risk_override
        rr, lo, hi = wrr, wrr_low, wrr_high
        with np.errstate(invalid="ignore"):
            rd = r1 - comp_risk
        rd_lo = rd_hi = np.full(rows, np.nan)
        orr = or_lo = or_hi = np.full(rows, np.nan)
        zero = np.zeros(rows, dtype=bool)
    else:
        comp_risk = np.asarray(risk(e0, n0))
        rr = np.asarray(risk_ratio(e1, n1, e0, n0))
        lo, hi = (np.asarray(x) for x in katz_interval(e1, n1, e0, n0, ci_prob))
        rd = np.asarray(risk_difference(e1, n1, e0, n0))
        rd_lo, rd_hi = (np.asarray(x) for x in newcombe_interval(e1, n1, e0, n0, ci_prob))
        orr = np.asarray(odds_ratio(e1, n1, e0, n0))
        or_lo, or_hi = (np.asarray(x) for x in woolf_interval(e1, n1, e0, n0, ci_prob))
        with np.errstate(invalid="ignore"):
            zero = _zero_or(e1, n1, e0, n0)
    notes.append((ok & zero, _HALDANE_NOTE))
    if comparison == "weighted":
        notes.append((ok, weighted_note))
    with np.errstate(invalid="ignore"):
        notes.append((ok & ~np.isfinite(rr), "ratio undefined or infinite: no events in the "
                                             "comparison group"))
    ri = np.asarray(representation_index(e1, n1, e_unit, n_unit))

    def only_ok(x: np.ndarray) -> np.ndarray:
        return np.where(ok, x, np.nan)

    if threshold is None:
        flag = pd.array([pd.NA] * rows, dtype="boolean")
    else:
        with np.errstate(invalid="ignore"):
            flag = pd.array(ok & (np.nan_to_num(rr, nan=-np.inf) > threshold), dtype="boolean")

    if unit_cols:
        labels = [agg[c].astype(str).to_numpy(dtype=object) for c in unit_cols]
        unit_label = labels[0]
        for more in labels[1:]:
            unit_label = unit_label + " / " + more
    else:
        unit_label = np.full(rows, ALL_UNITS, dtype=object)

    columns = {c: agg[c].array for c in unit_cols}
    columns |= {
        "unit": unit_label,
        "group": agg[by].to_numpy(),
        "n_events": _counts_out(e1),
        "n_pupils": _counts_out(n1),
        "risk": r1,
        "risk_low": r_low,
        "risk_high": r_high,
        "comparison": label,
        "comparison_events": _counts_out(e0),
        "comparison_pupils": _counts_out(n0),
        "comparison_risk": comp_risk,
        "risk_ratio": only_ok(rr),
        "conf_low": only_ok(lo),
        "conf_high": only_ok(hi),
        "risk_difference": only_ok(rd),
        "rd_low": only_ok(rd_lo),
        "rd_high": only_ok(rd_hi),
        "odds_ratio": only_ok(orr),
        "or_low": only_ok(or_lo),
        "or_high": only_ok(or_hi),
        "representation_index": ri,
        "status": status,
        "note": _notes(rows, notes),
        "flag": flag,
        "ci_prob": np.full(rows, float(ci_prob)),
    }
    for name in ("unit", "comparison", "status", "note"):
        columns[name] = pd.array(np.asarray(columns[name], dtype=object), dtype="str")
    return pd.DataFrame(columns)


def _weighted_long(
    agg: pd.DataFrame,
    unit_cols: list[str],
    by: str,
    e1: np.ndarray,
    n1: np.ndarray,
    share: np.ndarray,
    ci_prob: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted comparison risk, WRR and its interval for each long row of ``agg``."""
    if unit_cols:
        unit_code = agg.groupby(unit_cols, sort=False, observed=True).ngroup().to_numpy()
    else:
        unit_code = np.zeros(len(agg), dtype=np.int64)
    group_code, _levels = pd.factorize(agg[by], sort=False)
    n_units, n_groups = unit_code.max() + 1, len(_levels)
    e_wide = np.zeros((n_units, n_groups))
    n_wide = np.zeros((n_units, n_groups))  # absent group: 0 pupils, left out of the sums
    w_wide = np.zeros((n_units, n_groups))
    e_wide[unit_code, group_code] = e1
    n_wide[unit_code, group_code] = n1
    w_wide[unit_code, group_code] = share
    _, comp, _ = _leave_one_out(e_wide, n_wide, w_wide)
    wrr = np.asarray(weighted_risk_ratio(e_wide, n_wide, w_wide))
    low, high = (np.asarray(x) for x in weighted_risk_ratio_interval(e_wide, n_wide, w_wide,
                                                                       ci_prob))
    pick = (unit_code, group_code)
    return comp[pick], wrr[pick], low[pick], high[pick]


def flag_consecutive(
    results: pd.DataFrame,
    *,
    threshold: float,
    n_years: int,
    year: str = YEAR,
) -> pd.DataFrame:
    """Count the consecutive years each unit x group has exceeded a risk ratio threshold.

    IDEA lets a State wait until an LEA has exceeded its risk ratio threshold for up to
    three prior consecutive years before identifying it (34 CFR 300.647(d)(1)). A year
    counts when ``risk_ratio > threshold`` and the status is ``"calculated"`` or
    ``"alternate"``. Years are consecutive in the order of the distinct values of ``year``
    in ``results`` (sorted), so a unit missing a year, or not calculated in it, starts
    again.

    Parameters
    ----------
    results : DataFrame
        Output of :func:`disproportionality` with ``year`` among its unit columns.
    threshold : float
        Risk ratio threshold.
    n_years : int
        Number of consecutive years needed (IDEA allows States 1 to 3).
    year : str
        The year column.

    Returns
    -------
    DataFrame
        ``results`` with ``flag`` recomputed at ``threshold`` and two more columns:
        ``flag_years`` (consecutive flagged years up to and including each row's year; 0
        when not flagged) and ``flag_consecutive`` (``flag_years >= n_years``). A series is
        the unit columns other than ``year``, and ``group``.

    Examples
    --------
    >>> res = pd.DataFrame({"year": [2015, 2016, 2017], "unit": ["2015", "2016", "2017"],
    ...                     "group": "g", "risk_ratio": [3.5, 3.2, 3.1],
    ...                     "status": "calculated"})
    >>> flag_consecutive(res, threshold=3, n_years=3)["flag_consecutive"].tolist()
    [False, False, True]
    """
    problems = []
    needed = [year, "group", "risk_ratio", "status"]
    missing = [c for c in needed if c not in results.columns]
    if missing:
        problems.append(f"results lack column(s) {missing}; available: "
                        f"{', '.join(repr(c) for c in results.columns)}. Pass the output of "
                        f"disproportionality() with {year!r} among its unit columns.")
    if isinstance(n_years, bool) or not isinstance(n_years, (int, np.integer)) or n_years < 1:
        problems.append(f"n_years must be a whole number >= 1; got {n_years!r}.")
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and threshold > 0):
        problems.append(f"threshold must be a positive number; got {threshold!r}.")
    if problems:
        raise ValidationError(problems, what="flag_consecutive request")
    key = [c for c in results.columns if c not in OUTPUT_COLUMNS and c != year
           and c not in ("flag_years", "flag_consecutive")] + ["group"]
    dup = results.duplicated([*key, year], keep=False).to_numpy()
    if dup.any():
        raise ValidationError(
            [f"{int(dup.sum())} rows repeat the same {key + [year]}, first at rows "
             f"{_first_rows(dup, results.index)}. Give one comparison per unit x group x "
             "year (keep the unit columns in the results)."],
            what="flag_consecutive request",
        )
    ok = results["status"].isin([CALCULATED, ALTERNATE]).to_numpy()
    rr = pd.to_numeric(results["risk_ratio"], errors="coerce").to_numpy(dtype=float,
                                                                         na_value=np.nan)
    flag = ok & (np.nan_to_num(rr, nan=-np.inf) > threshold)
    years = np.sort(pd.unique(results[year]))
    rank = pd.Series(np.searchsorted(years, results[year].to_numpy()), index=results.index)
    order = results.reset_index(drop=True).assign(
        _rank=rank.to_numpy(), _flag=flag, _pos=np.arange(len(results))
    ).sort_values([*key, "_rank"], kind="stable")
    same_key = np.ones(len(order), dtype=bool)
    if len(order):
        same_key[0] = False
        for k in key:
            v = order[k].to_numpy()
            same_key[1:] &= v[1:] == v[:-1]
    f = order["_flag"].to_numpy()
    rk = order["_rank"].to_numpy()
    prev_flag = np.concatenate([[False], f[:-1]])
    prev_rank = np.concatenate([[-2], rk[:-1]])
    continues = same_key & prev_flag & (rk == prev_rank + 1)
    run = np.cumsum(~continues)
    years_flagged = pd.Series(f.astype(int)).groupby(run).cumsum().to_numpy()
    years_flagged = np.where(f, years_flagged, 0)
    out = results.copy()
    out["flag"] = pd.array(flag, dtype="boolean")
    flag_years = np.zeros(len(results), dtype=int)
    flag_years[order["_pos"].to_numpy()] = years_flagged
    out["flag_years"] = flag_years
    out["flag_consecutive"] = out["flag_years"] >= n_years
    return out
