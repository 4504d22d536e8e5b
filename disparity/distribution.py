"""How events spread over schools: schools banded by their number of events.

:func:`exclusion_distribution` counts the schools of a selection (by default the state-funded
primary and secondary schools of England in 2016/17, the "mainstream schools" of the Timpson
Review) in the bands ``0``, ``1-2``, ``3-5``, ``6-10`` and ``more than 10`` events, and sets
beside each observed band what it would hold

* **if every school had the same risk given its size** (and phase): each school's count is
  binomial (Poisson for counts of repeated events) with its headcount and the rate of its
  school type, and the expected number of schools in a band is the sum over schools of
  the probability of that band (for band ``0``, ``sum (1 - p)^n``);
* **if schools varied only as much as a school SD implies**: the school's log-odds (log
  rate) is its type's intercept plus ``school_sd * z`` with ``z ~ N(0, 1)``, so each band
  probability is a logit-normal (log-normal) mixture, integrated by Gauss-Hermite
  quadrature. The SD is the caller's, or estimated here by maximum likelihood from the same
  school counts: a random-intercept model with an intercept and an SD for each school type
  (:func:`fit_school_sd`).

Suppressed counts are data. DfE writes a school count of 1 or 2 as ``x``; such a school is
in band ``1-2`` (never dropped, never read as 0), and in the likelihood its count is the
interval ``{1, 2}``: the probability ``P(Y = 1) + P(Y = 2)``. The events of band ``1-2``
are then a range, ``n_events_min`` to ``n_events_max`` (``n_events`` is missing where the
range is not a single number). With DfE's LA rows in the data, each LA's unrounded total
narrows the range: the suppressed schools of an LA hold its total less its published
school counts.

Whether schools vary more than chance would give is tested by the likelihood ratio of the
random-intercept model against equal risk (``school_sd = 0`` in every school type). Each
null value lies on the boundary of the parameter space, so the reference distribution is
a chi-bar-square mixture (Self and Liang, 1987): with one stratum, half a point mass at 0
and half chi-square with 1 df. Each set of expected bands also gets a goodness-of-fit
statistic over the bands (:func:`band_goodness_of_fit`), which asks whether a logit-normal
spread of that SD reproduces the shape of the distribution, not only its variance.

References
----------
Department for Education (2019). *Timpson Review of School Exclusion*, CP 92: 85% of
mainstream schools permanently excluded no pupil in 2016/17, and 0.2% excluded more than
10.

Self, S. G. and Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood
estimators and likelihood ratio tests under nonstandard conditions. *JASA* 82, 605-610.

Chernoff, H. and Lehmann, E. L. (1954). The use of maximum likelihood estimates in
chi-square tests for goodness of fit. *Annals of Mathematical Statistics* 25, 579-586.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from disparity import vocabulary as voc
from disparity.errors import ValidationError

__all__ = [
    "BANDS",
    "MAINSTREAM",
    "ExclusionDistribution",
    "SchoolSDFit",
    "band_goodness_of_fit",
    "band_index",
    "band_probabilities",
    "exclusion_distribution",
    "fit_school_sd",
]

#: Bands of schools by their number of events (the Timpson Review's bands).
BANDS: tuple[str, ...] = ("0", "1-2", "3-5", "6-10", "more than 10")
#: Lowest count of each band; the last band is open above.
_BAND_LOW: tuple[int, ...] = (0, 1, 3, 6, 11)
#: School types that make up "mainstream" schools in DfE's exclusion statistics.
MAINSTREAM: tuple[str, ...] = ("State-funded primary", "State-funded secondary")
#: Outcomes of the DfE geographic file: events column and the family of its count.
_OUTCOMES: dict[str, tuple[str, str]] = {
    "perm_excl": ("n_perm_excl", "binomial"),
    "one_plus_fixed": ("n_one_plus_fixed", "binomial"),
    "fixed_excl": ("n_fixed_excl", "poisson"),
}
_FAMILIES: tuple[str, ...] = ("binomial", "poisson")
#: Gauss-Hermite nodes of the school-SD mixture.
N_NODES: int = 100


# --------------------------------------------------------------------------- arrays
def band_index(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Index into :data:`BANDS` of each count.

    Examples
    --------
    >>> band_index([0, 1, 2, 3, 10, 11, 40]).tolist()
    [0, 1, 1, 2, 3, 4, 4]
    """
    counts = np.asarray(counts, dtype=np.float64)
    return np.searchsorted(np.asarray(_BAND_LOW, dtype=np.float64), counts, side="right") - 1


def _check_family(family: str) -> None:
    if family not in _FAMILIES:
        raise ValidationError([f"family {family!r} is not known; valid families are "
                               f"{', '.join(map(repr, _FAMILIES))}."], what="distribution")


def _log_pmf(y: np.ndarray, n: np.ndarray, eta: np.ndarray, family: str) -> np.ndarray:
    """log P(Y = y) for a binomial (logit ``eta``) or Poisson (log rate ``eta``) count.

    Broadcasts ``y`` and ``n`` (schools, 1) against ``eta`` (schools, nodes).
    """
    from scipy.special import gammaln

    if family == "binomial":
        with np.errstate(invalid="ignore"):
            out = (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
                   - y * np.logaddexp(0.0, -eta) - (n - y) * np.logaddexp(0.0, eta))
        return np.where(y <= n, out, -np.inf)
    with np.errstate(divide="ignore"):
        log_n = np.log(n)
    log_mean = log_n + eta
    out = y * log_mean - np.exp(log_mean) - gammaln(y + 1)
    return np.where(n > 0, out, np.where(y == 0, 0.0, -np.inf))


def _band_probabilities_at(n: np.ndarray, eta: np.ndarray, family: str) -> np.ndarray:
    """P(band) of counts with trials ``n`` (schools, 1) at ``eta`` (schools, nodes)."""
    from scipy import stats

    out = np.empty((*np.broadcast_shapes(n.shape, eta.shape), len(BANDS)))
    edges = (*_BAND_LOW, None)
    for b in range(len(BANDS) - 1):
        total = np.zeros(out.shape[:-1])
        for y in range(edges[b], edges[b + 1]):
            total += np.exp(_log_pmf(np.float64(y), n, eta, family))
        out[..., b] = total
    last = _BAND_LOW[-1] - 1
    if family == "binomial":
        tail = stats.binom.sf(last, n, 1.0 / (1.0 + np.exp(-eta)))
    else:
        tail = stats.poisson.sf(last, n * np.exp(eta))
    out[..., -1] = np.nan_to_num(tail)
    return out


def _nodes(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the expectation over ``z ~ N(0, 1)``."""
    z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    return z, w / math.sqrt(2.0 * math.pi)


def band_probabilities(
    n_pupils: Sequence[float] | np.ndarray,
    intercept: float | Sequence[float] | np.ndarray,
    school_sd: float | Sequence[float] | np.ndarray = 0.0,
    *,
    family: str = "binomial",
    n_nodes: int = N_NODES,
) -> np.ndarray:
    """Probability that each school's count falls in each band of :data:`BANDS`.

    The school's count is binomial with ``n_pupils`` trials and probability
    ``expit(intercept + school_sd * z)`` (Poisson with mean
    ``n_pupils * exp(intercept + school_sd * z)`` for ``family="poisson"``), and
    ``z ~ N(0, 1)`` is integrated out by Gauss-Hermite quadrature with ``n_nodes`` nodes.
    With ``school_sd = 0`` every school of an intercept has the same risk.

    Parameters
    ----------
    n_pupils : array of float
        Headcount (trials, or exposure for ``"poisson"``) of each school.
    intercept : float or array of float
        Logit (log rate) of each school's typical pupil; broadcast against ``n_pupils``.
    school_sd : float or array of float
        SD of the school effects on that scale; broadcast against ``n_pupils``.
    family : {"binomial", "poisson"}
    n_nodes : int

    Returns
    -------
    ndarray, shape (schools, 5)
        Rows sum to 1. The expected number of schools in each band is the column sum.

    Examples
    --------
    With equal risk the chance that a school of ``n`` pupils has no event is ``(1 - p)^n``:

    >>> import math
    >>> p = band_probabilities([100, 1000], math.log(0.001 / 0.999))
    >>> [round(float(x), 6) for x in p[:, 0]]
    [0.904792, 0.367695]
    >>> [round(0.999 ** 100, 6), round(0.999 ** 1000, 6)]
    [0.904792, 0.367695]
    """
    _check_family(family)
    n = np.asarray(n_pupils, dtype=np.float64).reshape(-1)
    mu = np.broadcast_to(np.asarray(intercept, dtype=np.float64), n.shape)
    sd = np.broadcast_to(np.asarray(school_sd, dtype=np.float64), n.shape)
    rows, inverse = np.unique(np.column_stack([n, mu, sd]), axis=0, return_inverse=True)
    z, w = _nodes(n_nodes)
    out = np.empty((len(rows), len(BANDS)))
    flat = rows[:, 2] <= 0
    if flat.any():
        at = rows[flat]
        out[flat] = _band_probabilities_at(at[:, 0:1], at[:, 1:2], family)[:, 0, :]
    if (~flat).any():
        at = rows[~flat]
        probs = _band_probabilities_at(at[:, 0:1], at[:, 1:2] + at[:, 2:3] * z[None, :], family)
        out[~flat] = np.einsum("snb,n->sb", probs, w)
    return out[inverse.reshape(-1)]


# --------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class SchoolSDFit:
    """Maximum-likelihood fit of school random intercepts to (possibly interval) counts.

    Every stratum (e.g. school type) has its own intercept and its own school SD; the
    likelihood factorises over strata, so each is fitted on its own.

    Attributes
    ----------
    strata : tuple of str
        Stratum labels, in the order of the arrays below.
    intercept : ndarray
        Logit (log rate) intercept of each stratum, at ``school_sd``.
    school_sd : ndarray
        SD of the school effects in each stratum (estimated, or as given).
    sd_given : bool
    loglik : ndarray
        Log-likelihood of each stratum at the fit (constants of the counts included).
    intercept_same_risk, loglik_same_risk : ndarray
        The same for the equal-risk model (``school_sd = 0``).
    n_schools : ndarray
        Schools in each stratum.
    family : str
    n_nodes : int
    converged : bool
    """

    strata: tuple[str, ...]
    intercept: np.ndarray
    school_sd: np.ndarray
    sd_given: bool
    loglik: np.ndarray
    intercept_same_risk: np.ndarray
    loglik_same_risk: np.ndarray
    n_schools: np.ndarray
    family: str
    n_nodes: int
    converged: bool

    @property
    def rate_same_risk(self) -> np.ndarray:
        """Equal-risk rate of each stratum (risk per pupil, or events per pupil)."""
        mu = self.intercept_same_risk
        return 1.0 / (1.0 + np.exp(-mu)) if self.family == "binomial" else np.exp(mu)

    def lr_test(self) -> tuple[float, int, float]:
        """Likelihood-ratio test of ``school_sd = 0`` in every stratum: (LR, df, p-value).

        Each stratum's SD is tested on the boundary of its parameter space and the strata
        are independent, so the reference distribution is the chi-bar-square mixture
        ``sum_j C(S, j) 2^-S chi2(j)`` over ``S`` strata (Self and Liang, 1987, case 5);
        with one stratum, half a point mass at 0 and half chi-square with 1 df.
        """
        from scipy import stats

        lr = float(max(2.0 * float(np.sum(self.loglik - self.loglik_same_risk)), 0.0))
        s = len(self.strata)
        if lr == 0:
            return 0.0, s, 1.0
        p = sum(math.comb(s, j) * float(stats.chi2.sf(lr, j)) for j in range(1, s + 1))
        return lr, s, p / 2.0**s


class _Counts:
    """Schools of one stratum, compressed to distinct (n, low, high) with their numbers."""

    def __init__(self, n: np.ndarray, low: np.ndarray, high: np.ndarray, family: str) -> None:
        from scipy.special import gammaln

        rows, weight = np.unique(np.column_stack([n, low, high]), axis=0, return_counts=True)
        self.n, self.low, self.high = rows[:, 0:1], rows[:, 1:2], rows[:, 2:3]
        self.weight = weight.astype(np.float64)
        self.family = family
        width = int(np.max(self.high - self.low)) if len(rows) else 0
        self.y = [self.low + k for k in range(width + 1)]
        self.const = []
        for y in self.y:
            if family == "binomial":
                c = gammaln(self.n + 1) - gammaln(y + 1) - gammaln(self.n - y + 1)
            else:
                c = y * np.log(self.n) - gammaln(y + 1)
            self.const.append(np.where(y <= self.high, c, -np.inf))

    def loglik(self, mu: float, sd: float, z: np.ndarray, log_w: np.ndarray,
               ) -> tuple[float, float, float]:
        """Log-likelihood and its derivatives in ``mu`` and ``log sd`` (0 when ``sd = 0``)."""
        from scipy.special import expit, logsumexp

        eta = mu + sd * z[None, :]
        if self.family == "binomial":
            a, a_prime = self.n * np.logaddexp(0.0, eta), self.n * expit(eta)
        else:
            a = a_prime = self.n * np.exp(eta)
        terms = np.stack([c + y * eta for c, y in zip(self.const, self.y)])
        s = logsumexp(terms, axis=0)
        y_bar = np.einsum("kij,kij->ij", np.exp(terms - s), np.broadcast_to(
            np.stack(self.y), terms.shape))
        log_f = s - a + log_w[None, :]
        log_l = logsumexp(log_f, axis=1, keepdims=True)
        r = np.exp(log_f - log_l)
        g = r * (y_bar - a_prime)
        w = self.weight
        return (float(w @ log_l[:, 0]), float(w @ g.sum(axis=1)),
                float(w @ (g @ z)) * sd)


def _fit_stratum(counts: _Counts, sd_given: float | None, z: np.ndarray, log_w: np.ndarray,
                 ) -> tuple[float, float, float, float, float, bool]:
    """(mu same risk, loglik same risk, mu, sd, loglik, converged) of one stratum."""
    from scipy import optimize

    zero = np.zeros(1)
    events = float(counts.weight @ ((counts.low + counts.high)[:, 0] / 2.0)) + 0.5
    pupils = float(counts.weight @ counts.n[:, 0]) + 1.0
    rate = events / pupils
    start = math.log(rate / (1.0 - rate)) if counts.family == "binomial" else math.log(rate)

    def same(m: np.ndarray) -> tuple[float, np.ndarray]:
        ll, d_mu, _ = counts.loglik(float(m[0]), 0.0, zero, zero)
        return -ll, np.array([-d_mu])

    res0 = optimize.minimize(same, [start], jac=True, method="BFGS")
    mu0, ll0 = float(res0.x[0]), -float(res0.fun)
    if sd_given is not None:
        if not sd_given > 0:
            return mu0, ll0, mu0, 0.0, ll0, bool(res0.success)

        def at_sd(m: np.ndarray) -> tuple[float, np.ndarray]:
            ll, d_mu, _ = counts.loglik(float(m[0]), float(sd_given), z, log_w)
            return -ll, np.array([-d_mu])

        res = optimize.minimize(at_sd, [mu0], jac=True, method="BFGS")
        return mu0, ll0, float(res.x[0]), float(sd_given), -float(res.fun), bool(res.success)

    def both(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, d_mu, d_log_sd = counts.loglik(float(theta[0]), math.exp(theta[1]), z, log_w)
        return -ll, -np.array([d_mu, d_log_sd])

    best = None
    for log_sd in (math.log(0.3), math.log(1.0)):
        res = optimize.minimize(both, [mu0, log_sd], jac=True, method="L-BFGS-B",
                                bounds=[(None, None), (math.log(1e-3), math.log(20.0))])
        if best is None or res.fun < best.fun:
            best = res
    mu, sd, ll = float(best.x[0]), math.exp(best.x[1]), -float(best.fun)
    if ll <= ll0:  # the boundary is the maximum: no school variation
        return mu0, ll0, mu0, 0.0, ll0, bool(res0.success)
    return mu0, ll0, mu, sd, ll, bool(best.success and res0.success)


def fit_school_sd(
    n_pupils: Sequence[float] | np.ndarray,
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray | None = None,
    stratum: Sequence[Any] | np.ndarray | None = None,
    *,
    family: str = "binomial",
    school_sd: float | Mapping[str, float] | None = None,
    n_nodes: int = N_NODES,
) -> SchoolSDFit:
    """Fit ``count ~ intercept[stratum] + (1 | school)`` to school counts by maximum likelihood.

    Each school's count is known to lie in ``[low, high]`` (equal for a published count;
    ``[1, 2]`` for DfE's ``x``). In stratum ``s`` the likelihood of a school is
    ``E_z[P(low <= Y <= high | n, intercept_s + school_sd_s * z)]`` with ``z ~ N(0, 1)``,
    integrated by Gauss-Hermite quadrature with ``n_nodes`` nodes, ``Y`` binomial (logit
    link) or Poisson (log link, exposure ``n``). The equal-risk model (``school_sd = 0``)
    is fitted too, so that the two can be compared (:meth:`SchoolSDFit.lr_test`).
    Gradients are analytic; schools with the same ``(n, low, high)`` are computed once.

    Parameters
    ----------
    n_pupils : array of float
        Trials (exposure for ``"poisson"``) of each school; all > 0.
    low, high : array of float
        Bounds of each school's count (``high`` defaults to ``low``: exact counts).
    stratum : array, optional
        Label of each school's stratum (default: one stratum, ``"all"``).
    family : {"binomial", "poisson"}
    school_sd : float or mapping, optional
        Hold the SD at this value (one for all strata, or ``{stratum: sd}``) and fit only
        the intercepts.
    n_nodes : int

    Returns
    -------
    SchoolSDFit

    Examples
    --------
    Without school variation the equal-risk rate of exact counts is events / pupils:

    >>> fit = fit_school_sd([100, 200, 300], [1, 2, 3])
    >>> round(float(fit.rate_same_risk[0]), 6)
    0.01
    """
    _check_family(family)
    n = np.asarray(n_pupils, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    hi = lo if high is None else np.asarray(high, dtype=np.float64)
    problems = []
    if not (n.shape == lo.shape == hi.shape) or n.ndim != 1:
        problems.append(f"n_pupils, low and high must be 1-d arrays of one length, got "
                        f"shapes {n.shape}, {lo.shape}, {hi.shape}.")
    elif not len(n):
        problems.append("there are no schools to fit.")
    else:
        for name, values in (("n_pupils", n), ("low", lo), ("high", hi)):
            bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
            if name == "n_pupils":
                bad |= values <= 0
            if bad.any():
                rows = ", ".join(str(i + 1) for i in np.flatnonzero(bad)[:5])
                problems.append(f"{name} has {int(bad.sum())} values that are not whole "
                                f"numbers{' > 0' if name == 'n_pupils' else ' >= 0'} (rows "
                                f"{rows}); leave such schools out.")
        if not problems and np.any(hi < lo):
            rows = ", ".join(str(i + 1) for i in np.flatnonzero(hi < lo)[:5])
            problems.append(f"high is below low in rows {rows}.")
        if not problems and family == "binomial" and np.any(lo > n):
            rows = ", ".join(str(i + 1) for i in np.flatnonzero(lo > n)[:5])
            problems.append(f"events exceed pupils in rows {rows}; a binomial count cannot "
                            "exceed its trials.")
    if stratum is None:
        labels, codes = ("all",), np.zeros(len(n), dtype=np.int64)
    else:
        uniques, codes = np.unique(np.asarray(stratum).astype(str), return_inverse=True)
        labels, codes = tuple(str(u) for u in uniques), codes.reshape(-1).astype(np.int64)
    given: list[float | None] = [None] * len(labels)
    if isinstance(school_sd, Mapping):
        unknown = [k for k in school_sd if k not in labels]
        if unknown:
            problems.append(f"school_sd names strata {unknown!r} that are not in the data; "
                            f"strata are {list(labels)!r}.")
        given = [school_sd.get(s) for s in labels]
    elif school_sd is not None:
        given = [school_sd] * len(labels)
    for s, v in zip(labels, given):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            problems.append(f"school_sd of {s!r} must be a finite number >= 0, got {v!r}.")
    if problems:
        raise ValidationError(problems, what="school counts")
    z, w = _nodes(n_nodes)
    log_w = np.log(w)
    parts = []
    for j, _ in enumerate(labels):
        at = codes == j
        counts = _Counts(n[at], lo[at], hi[at], family)
        parts.append(_fit_stratum(counts, None if given[j] is None else float(given[j]), z,
                                  log_w))
    cols = list(zip(*parts))
    return SchoolSDFit(
        strata=labels, intercept=np.array(cols[2]), school_sd=np.array(cols[3]),
        sd_given=school_sd is not None, loglik=np.array(cols[4]),
        intercept_same_risk=np.array(cols[0]), loglik_same_risk=np.array(cols[1]),
        n_schools=np.bincount(codes, minlength=len(labels)), family=family,
        n_nodes=n_nodes, converged=all(cols[5]),
    )


# --------------------------------------------------------------------------- tests
def band_goodness_of_fit(
    observed: Sequence[float] | np.ndarray, probabilities: np.ndarray
) -> tuple[float, int, float]:
    """Chi-square statistic of observed band counts against per-school band probabilities.

    The band counts are sums over schools of independent one-of-five indicators with
    school-specific probabilities ``p_i``, so under the model their covariance is
    ``V = sum_i (diag(p_i) - p_i p_i')``, not multinomial. The statistic is
    ``d' V^- d`` with ``d = observed - expected`` over the first four bands (the fifth is
    determined by the total); its reference is chi-square with 4 df when the model's
    parameters are known. With parameters estimated from the same schools the statistic is
    stochastically smaller (Chernoff and Lehmann, 1954), so the p-value is conservative.

    Returns
    -------
    (statistic, df, p_value)

    Examples
    --------
    Two schools certain to be in band 0 and one certain to be in band 1-2 fit perfectly:

    >>> p = np.array([[1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    >>> band_goodness_of_fit([2, 1, 0, 0, 0], p)
    (0.0, 4, 1.0)
    """
    from scipy import stats

    o = np.asarray(observed, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    d = (o - p.sum(axis=0))[:-1]
    q = p[:, :-1]
    v = np.diag(q.sum(axis=0)) - q.T @ q
    stat = float(d @ np.linalg.pinv(v, hermitian=True, rcond=1e-12) @ d)
    stat = max(stat, 0.0)
    df = len(BANDS) - 1
    return stat, df, float(stats.chi2.sf(stat, df))


# --------------------------------------------------------------------------- table
@dataclass(frozen=True)
class ExclusionDistribution:
    """Schools banded by their number of events, beside two expectations, with tests.

    Attributes
    ----------
    table : DataFrame
        One row per band of :data:`BANDS`:

        ``band``
            the band.
        ``n_schools``, ``share``
            schools of the selection whose count (published, or ``x`` = 1 or 2) is in the
            band, and their share of all schools whose count is known.
        ``n_events_min``, ``n_events_max``, ``n_events``
            events in the band's schools: exact where no count is suppressed; for band
            ``1-2`` with suppressed schools the range (each ``x`` counted as 1 and as 2)
            and ``n_events`` missing.
        ``n_schools_modelled``
            schools of the band that enter the models (headcount known and > 0, events
            within the headcount for a binomial count); the expectations sum to their total.
        ``expected_same_risk``
            expected schools in the band if every school had its type's rate.
        ``expected_school_sd``
            expected schools in the band with school effects of SD ``school_sd`` (per
            stratum, see ``rates``).
    tests : DataFrame
        ``test``, ``statistic``, ``df``, ``p_value``, ``reference``: the likelihood-ratio
        test of ``school_sd = 0`` in every stratum (``school_sd_lr``,
        :meth:`SchoolSDFit.lr_test`) and the band goodness-of-fit of each expectation
        (``bands_same_risk``, ``bands_school_sd``, :func:`band_goodness_of_fit`).
    rates : DataFrame
        Per stratum (``rate_by`` level): ``stratum``, ``n_schools_modelled``,
        ``n_pupils``, ``rate_same_risk`` (events / pupils where nothing is suppressed;
        the maximum-likelihood rate with ``x`` read as "1 or 2"), ``school_sd`` (used for
        ``expected_school_sd``; logit scale, log scale for Poisson), ``school_sd_estimate``
        (maximum likelihood, also when an SD was given) and ``intercept_school_sd``.
    school_sd_source : str
        ``"given"`` or ``"estimated"`` (maximum likelihood, :func:`fit_school_sd`).
    fit : SchoolSDFit
        The maximum-likelihood fit behind the tests.
    suppressed_events_expected : float
        Expected events in the modelled schools with a suppressed count, each conditional
        on being 1 or 2, under the school-SD model: a model-based point within the range.
    outcome, family, year : str
    school_types : tuple of str
    notes : tuple of str
        Schools left out of the table or the models, and why.
    """

    table: pd.DataFrame
    tests: pd.DataFrame
    rates: pd.DataFrame
    school_sd_source: str
    fit: SchoolSDFit
    suppressed_events_expected: float
    outcome: str
    family: str
    year: str | None
    school_types: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def _select(frame: pd.DataFrame, column: str, values: Sequence[str], what: str) -> np.ndarray:
    present = sorted(pd.unique(frame[column].dropna().astype(str)))
    absent = [v for v in values if v not in present]
    if absent:
        raise ValidationError(
            [f"{what} {absent!r} not in column {column!r}; its values are "
             f"{', '.join(map(repr, present))}."], what="distribution")
    return frame[column].astype(str).isin(list(values)).to_numpy()


def exclusion_distribution(
    data: pd.DataFrame | str | os.PathLike[str],
    outcome: str = "perm_excl",
    *,
    year: str | None = "2016/17",
    school_type: Sequence[str] | str | None = MAINSTREAM,
    school_sd: float | None = None,
    rate_by: str | None = "school_type",
    family: str | None = None,
    n_nodes: int = N_NODES,
) -> ExclusionDistribution:
    """Schools banded by their number of events, beside equal-risk and school-SD expectations.

    Parameters
    ----------
    data : DataFrame or path
        School rows: a frame from :func:`disparity.dfe.read_dfe` of DfE's geographic file
        (only ``geographic_level == "school"`` rows are used), a path to such a file, or
        any table with ``n_pupils`` and the events column ``n_<outcome>`` (one row per
        school; ``year`` and ``school_type`` columns if those filters are used). A missing
        count whose ``n_<outcome>_missing`` reason is DfE's ``x`` is "1 or 2".
    outcome : str
        ``"perm_excl"`` (permanent exclusions), ``"one_plus_fixed"`` (pupils with one or
        more fixed-period exclusions) or ``"fixed_excl"`` (fixed-period exclusions, a
        Poisson count); any other ``n_`` column with ``family`` given.
    year : str or None
        Academic year to keep (``"2016/17"``); ``None`` keeps every row.
    school_type : sequence of str, str or None
        School types to keep; default :data:`MAINSTREAM` (state-funded primary and
        secondary). ``None`` keeps every row.
    school_sd : float or mapping, optional
        SD of school effects for ``expected_school_sd`` (logit scale; log scale for
        Poisson): one for every stratum, or ``{stratum: sd}``. Default: estimated by
        maximum likelihood from these schools, one SD per stratum (:func:`fit_school_sd`).
    rate_by : str or None
        Column whose levels get their own rate (intercept): default ``"school_type"``,
        so "equal risk" means equal risk per pupil among schools of a type. ``None``: one
        rate for all schools.
    family : {"binomial", "poisson"}, optional
        Default: binomial for counts of pupils, Poisson for ``fixed_excl``.
    n_nodes : int
        Gauss-Hermite nodes.

    Returns
    -------
    ExclusionDistribution

    Raises
    ------
    ValidationError
        Missing columns, or a year or school type not in the data.

    Examples
    --------
    >>> schools = pd.DataFrame({
    ...     "n_pupils": [200, 400, 300, 1000, 900],
    ...     "n_perm_excl": [0, 0, None, 4, 12],
    ...     "n_perm_excl_missing": [None, None, "x: suppressed", None, None]})
    >>> d = exclusion_distribution(schools, year=None, school_type=None, rate_by=None)
    >>> d.table[["band", "n_schools", "n_events_min", "n_events_max"]]
               band  n_schools  n_events_min  n_events_max
    0             0          2             0             0
    1           1-2          1             1             2
    2           3-5          1             4             4
    3          6-10          0             0             0
    4  more than 10          1            12            12
    """
    if not isinstance(data, pd.DataFrame):
        from disparity.dfe import read_dfe

        data = read_dfe(data)
    events = voc.events_column(outcome)
    if family is None:
        family = _OUTCOMES.get(outcome.removeprefix(voc.EVENTS_PREFIX), (events, "binomial"))[1]
    _check_family(family)
    if isinstance(school_type, str):
        school_type = (school_type,)
    needed = [events, voc.N_PUPILS]
    if year is not None:
        needed.append(voc.YEAR)
    if school_type is not None:
        needed.append("school_type")
    if rate_by is not None:
        needed.append(rate_by)
    missing = [c for c in dict.fromkeys(needed) if c not in data.columns]
    if missing:
        raise ValidationError(
            [f"column {c!r} is missing; the table has {', '.join(map(repr, data.columns))}. "
             + ("Pass school rows with n_pupils and the events column, or set year, "
                "school_type or rate_by to None." if c != events else
                f"Choose an outcome whose column is present ({', '.join(_OUTCOMES)} in "
                "DfE's geographic file).")
             for c in missing], what="distribution")

    keep = np.ones(len(data), dtype=bool)
    if year is not None:
        keep &= _select(data, voc.YEAR, [year], "year")
    if school_type is not None:
        keep &= _select(data, "school_type", list(school_type), "school type(s)")
    la_rows = None
    if "geographic_level" in data.columns:
        level = data["geographic_level"].to_numpy()
        la_rows = data.loc[keep & (level == "la")]
        keep &= level == "school"
    rows = data.loc[keep].reset_index(drop=True)
    if not len(rows):
        raise ValidationError(["no school rows are left after the year and school-type "
                               "filters."], what="distribution")

    notes: list[str] = []
    count = pd.to_numeric(rows[events], errors="coerce").to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)
    reason_col = f"{events}_missing"
    reason = (rows[reason_col].astype("string").fillna("") if reason_col in rows.columns
              else pd.Series("", index=rows.index, dtype="string"))
    suppressed = np.isnan(count) & reason.str.startswith("x").to_numpy(dtype=bool)
    unknown = np.isnan(count) & ~suppressed
    if unknown.any():
        why = reason[unknown].replace("", "no reason given").value_counts()
        notes.append(f"{int(unknown.sum()):,} schools have no {events} count for a reason "
                     f"other than suppression ({'; '.join(f'{n} {r}' for r, n in why.items())})"
                     ": they are left out of every band.")
    low = np.where(suppressed, 1.0, count)
    high = np.where(suppressed, 2.0, count)
    known = ~unknown
    if suppressed.any():
        notes.append(f"{int(suppressed.sum()):,} schools have a suppressed count ('x', 1 or "
                     "2): they are in band 1-2, and their events are the range "
                     "n_events_min to n_events_max.")

    band = band_index(low[known])
    n_band = np.bincount(band, minlength=len(BANDS))
    ev_min = np.bincount(band, weights=low[known], minlength=len(BANDS))
    ev_max = np.bincount(band, weights=high[known], minlength=len(BANDS))
    if suppressed.any() and la_rows is not None and len(la_rows) and voc.LA in rows.columns:
        exact = ev_min[1] - float(np.sum(low[suppressed]))  # published 1s and 2s, if any
        x_min, x_max, note = _suppressed_range_from_la_totals(rows, la_rows, events, suppressed)
        ev_min[1], ev_max[1] = exact + x_min, exact + x_max
        notes.append(note)

    pupils = pd.to_numeric(rows[voc.N_PUPILS], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan)
    modelled = known & np.isfinite(pupils) & (pupils > 0)
    no_pupils = known & ~modelled
    if no_pupils.any():
        with_events = int(np.sum(no_pupils & (low > 0)))
        notes.append(f"{int(no_pupils.sum()):,} schools have no headcount or a headcount of "
                     f"0 ({with_events} of them with events): they are in the bands but not "
                     "in the models (no pupils to put at risk).")
    if family == "binomial":
        over = modelled & (low > pupils)
        if over.any():
            notes.append(f"{int(over.sum()):,} schools have more {events} than pupils: "
                         "they are in the bands but not in the binomial models.")
            modelled &= ~over
    strata = (rows[rate_by].astype(str).to_numpy() if rate_by is not None
              else np.full(len(rows), "all"))

    m = modelled
    est = fit_school_sd(pupils[m], low[m], high[m], strata[m], family=family, n_nodes=n_nodes)
    used = est if school_sd is None else fit_school_sd(
        pupils[m], low[m], high[m], strata[m], family=family, school_sd=school_sd,
        n_nodes=n_nodes)
    codes = np.searchsorted(np.asarray(est.strata), strata[m])
    p_same = band_probabilities(pupils[m], est.intercept_same_risk[codes], 0.0, family=family)
    p_sd = band_probabilities(pupils[m], used.intercept[codes], used.school_sd[codes],
                              family=family, n_nodes=n_nodes)
    n_modelled = np.bincount(band_index(low[m]), minlength=len(BANDS))

    table = pd.DataFrame({
        "band": list(BANDS),
        "n_schools": n_band.astype(np.int64),
        "share": n_band / max(int(n_band.sum()), 1),
        "n_events_min": ev_min.astype(np.int64),
        "n_events_max": ev_max.astype(np.int64),
        "n_events": pd.array([int(a) if a == b else pd.NA for a, b in zip(ev_min, ev_max)],
                             dtype="Int64"),
        "n_schools_modelled": n_modelled.astype(np.int64),
        "expected_same_risk": p_same.sum(axis=0),
        "expected_school_sd": p_sd.sum(axis=0),
    })

    lr, lr_df, p_lr = est.lr_test()
    tests = [{"test": "school_sd_lr", "statistic": lr, "df": lr_df, "p_value": p_lr,
              "reference": f"likelihood ratio of a school SD in each of {lr_df} strata against "
                           "none: chi-bar-square, binomial mixture of chi2(0) to "
                           f"chi2({lr_df}) (Self and Liang, 1987)"}]
    for name, probs in (("bands_same_risk", p_same), ("bands_school_sd", p_sd)):
        stat, df, p = band_goodness_of_fit(n_modelled, probs)
        tests.append({"test": name, "statistic": stat, "df": df, "p_value": p,
                      "reference": "d' V^- d over bands 0 to 6-10 against chi2(4), the "
                                   "parameters taken as known (conservative)"})

    rates = pd.DataFrame({
        "stratum": list(est.strata),
        "n_schools_modelled": est.n_schools.astype(np.int64),
        "n_pupils": np.bincount(codes, weights=pupils[m],
                                minlength=len(est.strata)).astype(np.int64),
        "rate_same_risk": est.rate_same_risk,
        "school_sd": used.school_sd,
        "school_sd_estimate": est.school_sd,
        "intercept_school_sd": used.intercept,
    })
    suppressed_expected = _suppressed_events(pupils[m], low[m], high[m],
                                             used.intercept[codes], used.school_sd[codes],
                                             family, n_nodes)
    return ExclusionDistribution(
        table=table, tests=pd.DataFrame(tests), rates=rates,
        school_sd_source="estimated" if school_sd is None else "given", fit=est,
        suppressed_events_expected=suppressed_expected, outcome=outcome, family=family,
        year=year, school_types=tuple(school_type) if school_type is not None else (),
        notes=tuple(notes),
    )


def _suppressed_range_from_la_totals(
    rows: pd.DataFrame, la_rows: pd.DataFrame, events: str, suppressed: np.ndarray
) -> tuple[float, float, str]:
    """Bounds on the sum of the suppressed school counts from the LAs' published totals.

    In an LA (and school type) whose total ``T`` is published, the suppressed schools hold
    exactly ``T`` less the published school counts; where ``T`` is itself ``x`` (1 or 2)
    they hold between ``max(k, 1 - e)`` and ``min(2k, 2 - e)`` (``k`` suppressed schools,
    ``e`` published events); elsewhere between ``k`` and ``2k``. A total that contradicts
    its schools is not used.
    """
    key = [voc.LA, "school_type"] if "school_type" in rows.columns else [voc.LA]
    schools = pd.DataFrame({
        **{k: rows[k].astype(str).to_numpy() for k in key},
        "k": suppressed.astype(np.int64),
        "e": pd.to_numeric(rows[events], errors="coerce").fillna(0).to_numpy(np.float64),
    }).groupby(key, sort=False)[["k", "e"]].sum()
    schools = schools[schools["k"] > 0]
    la = la_rows.assign(**{k: la_rows[k].astype(str) for k in key}).drop_duplicates(key)
    total = pd.to_numeric(la.set_index(key)[events], errors="coerce").reindex(schools.index)
    reason_col = f"{events}_missing"
    la_x = (la.set_index(key)[reason_col].astype("string").fillna("").str.startswith("x")
            .reindex(schools.index).fillna(False).to_numpy(bool)
            if reason_col in la.columns else np.zeros(len(schools), dtype=bool))
    k, e, t = (schools["k"].to_numpy(np.float64), schools["e"].to_numpy(np.float64),
               total.to_numpy(np.float64, na_value=np.nan))
    lo, hi = k.copy(), 2.0 * k
    exact = np.isfinite(t) & (t - e >= k) & (t - e <= 2 * k)
    lo[exact] = hi[exact] = (t - e)[exact]
    small = la_x & ~np.isfinite(t)
    lo[small] = np.maximum(k, 1.0 - e)[small]
    hi[small] = np.minimum(2.0 * k, 2.0 - e)[small]
    unusable = (lo > hi) | (np.isfinite(t) & ~exact)
    lo[unusable], hi[unusable] = k[unusable], 2.0 * k[unusable]
    note = (f"The LAs' published totals narrow the events of the {int(k.sum()):,} suppressed "
            f"schools to {int(lo.sum()):,}-{int(hi.sum()):,} (from {int(k.sum()):,}-"
            f"{int(2 * k.sum()):,}): exact in {int(exact.sum())} of {len(k)} LA groups with "
            f"suppressed schools, 1 or 2 in total in {int((small & ~unusable).sum())}"
            + (f"; {int(unusable.sum())} totals contradict their schools and were not used"
               if unusable.any() else "") + ".")
    return float(lo.sum()), float(hi.sum()), note


def _suppressed_events(n: np.ndarray, low: np.ndarray, high: np.ndarray, mu: np.ndarray,
                       sd: np.ndarray, family: str, n_nodes: int) -> float:
    """Sum over interval-censored schools of E[Y | low <= Y <= high] under the mixture."""
    cens = high > low
    if not cens.any():
        return 0.0
    n, low, high, mu, sd = n[cens], low[cens], high[cens], mu[cens], sd[cens]
    z, w = _nodes(n_nodes)
    eta = mu[:, None] + sd[:, None] * z[None, :]
    mass = np.zeros(len(n))
    first = np.zeros(len(n))
    for k in range(int(np.max(high - low)) + 1):
        y = low + k
        inside = (y <= high)[:, None]
        p = np.where(inside, np.exp(_log_pmf(y[:, None], n[:, None], eta, family)), 0.0) @ w
        mass += p
        first += y * p
    return float(np.sum(first / mass))
