"""Funnel-plot control limits for unit rates and standardised ratios (numbers only).

A funnel plot shows each unit's indicator against its size with control limits around the
target that narrow as size grows. Two indicators are supported:

*proportion*
    ``rate = n_events / n_pupils`` against ``n_pupils``; target the pooled proportion
    (or a given one); binomial limits.
*ratio*
    an indirectly standardised ratio ``observed / expected`` against ``expected``;
    target 1; Poisson limits. Plot it on a log axis.

Limits are *exact* (binomial or Poisson quantiles, interpolated between integers as
Spiegelhalter 2005, appendix A.1.1, so the curves are smooth) or *normal*
(``target +/- z_p * s``, with ``s`` the standard error at the target). Probabilities are
two-sided: 0.95 gives the 2.5% and 97.5% points ("2 standard deviations"), 0.998 the
0.1% and 99.9% points ("3 standard deviations").

Over-dispersion: real units differ by more than chance. Spiegelhalter (2005a, section 6;
2005b) estimates a dispersion factor ``phi`` as the mean square of the z-scores after
winsorising the 10% most extreme z-scores at each end, then either

* **multiplicative** (default here): if ``phi > 1``, limits widen by ``sqrt(phi)`` about the
  target (exact limits: ``target + sqrt(phi) * (limit - target)``) and z-scores shrink by
  ``sqrt(phi)``; or
* **additive** (random effects): a between-unit variance
  ``tau2 = (I * phi - (I - 1)) / (sum(w) - sum(w**2) / sum(w))`` with ``w = 1 / s**2``
  (zero when negative) is added to each unit's variance: limits
  ``target +/- z_p * sqrt(s**2 + tau2)`` (exact limits widened by
  ``sqrt(1 + tau2 / s**2)`` about the target), z-scores ``(y - target) / sqrt(s**2 + tau2)``.

Winsorising shrinks the estimate: with no over-dispersion (z-scores standard normal) the
winsorised mean square is about 0.68, not 1, so ``phi`` near 1 already suggests some
over-dispersion; as in Spiegelhalter's method, only ``phi > 1`` changes the limits.

The multiplicative version widens limits in proportion to chance variation and so hardly
at all for the largest units; the additive version widens them by a fixed amount and so
most for the largest units. Both are reported as ``z_adjusted`` according to
``overdispersion``.

References
----------
Spiegelhalter, D. J. (2005a). Funnel plots for comparing institutional performance.
*Statistics in Medicine*, 24, 1185-1202. doi:10.1002/sim.1970

Spiegelhalter, D. J. (2005b). Handling over-dispersion of performance indicators.
*Quality and Safety in Health Care*, 14, 347-351. doi:10.1136/qshc.2005.013755
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..errors import SpecError, ValidationError
from ..quantiles import normal_quantile
from ..vocabulary import N_PUPILS
from .precision import plotted

__all__ = [
    "Funnel",
    "funnel_limits",
    "funnel_proportions",
    "funnel_ratios",
    "winsorised_phi",
    "additive_tau2",
]

PROBS: tuple[float, float] = (0.95, 0.998)
KINDS = ("proportion", "ratio")
METHODS = ("exact", "normal")
OVERDISPERSION = ("multiplicative", "additive", "none")


def _check_choice(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise SpecError(f"{name}={value!r} is not valid; choose one of {', '.join(valid)}.")


def _target_se(target: float, sizes: np.ndarray, kind: str) -> np.ndarray:
    """Standard error of the indicator at the target: the funnel's width."""
    if kind == "proportion":
        return np.sqrt(target * (1.0 - target) / sizes)
    return np.sqrt(target / sizes)


def _exact_point(p: float, target: float, sizes: np.ndarray, kind: str) -> np.ndarray:
    """Interpolated ``p`` quantile of the indicator (Spiegelhalter 2005a, A.1.1)."""
    from scipy import stats

    if kind == "proportion":
        sizes = np.maximum(np.round(sizes), 1.0)  # binomial trials are whole numbers
        dist = stats.binom(sizes, target)
    else:
        dist = stats.poisson(sizes * target)
    r = dist.ppf(p)
    at_r = dist.cdf(r)
    below = dist.cdf(r - 1)
    alpha = (at_r - p) / (at_r - below)
    return (r - alpha) / sizes


def funnel_limits(
    target: float,
    sizes: ArrayLike,
    probs: Sequence[float] = PROBS,
    *,
    phi: float = 1.0,
    tau2: float = 0.0,
    kind: str = "proportion",
    method: str = "exact",
) -> pd.DataFrame:
    """Control limits of a funnel plot at the given sizes.

    Parameters
    ----------
    target : float
        Target proportion (``0 < target < 1``) or ratio (usually 1).
    sizes : array-like
        Pupils (proportion) or expected events (ratio), all > 0. Exact binomial limits
        use the nearest whole number of pupils.
    probs : sequence of float
        Two-sided coverage of each pair of limits, e.g. 0.95 and 0.998.
    phi : float
        Multiplicative over-dispersion factor; limits widen by ``sqrt(phi)`` when ``phi > 1``
        (values below 1 are treated as 1).
    tau2 : float
        Additive between-unit variance (on the indicator's scale); 0 for none.
    kind : {"proportion", "ratio"}
    method : {"exact", "normal"}

    Returns
    -------
    DataFrame
        Columns ``size``, ``prob``, ``low``, ``high``; one row per size and probability.
        Proportion limits are clipped to [0, 1] and ratio limits at 0.

    Examples
    --------
    >>> lim = funnel_limits(0.1, [100, 10000], [0.95], method="normal")
    >>> lim.round(4).to_numpy().tolist()
    [[100.0, 0.95, 0.0412, 0.1588], [10000.0, 0.95, 0.0941, 0.1059]]

    References
    ----------
    Spiegelhalter (2005a), appendix A.1.1; Spiegelhalter (2005b).
    """

    _check_choice("kind", kind, KINDS)
    _check_choice("method", method, METHODS)
    sizes = np.atleast_1d(np.asarray(sizes, dtype=float))
    if sizes.size == 0 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValidationError(["sizes must be finite and > 0."], what="funnel sizes")
    if kind == "proportion" and not 0 < target < 1:
        raise ValidationError([f"a proportion target must lie in (0, 1), got {target}."],
                              what="funnel target")
    if kind == "ratio" and not target > 0:
        raise ValidationError([f"a ratio target must be > 0, got {target}."],
                              what="funnel target")
    for prob in probs:
        if not 0 < prob < 1:
            raise ValidationError([f"probabilities must lie in (0, 1), got {prob}."],
                                  what="funnel probs")
    if tau2 < 0:
        raise ValidationError([f"tau2 must be >= 0, got {tau2}."], what="funnel tau2")
    s = _target_se(target, sizes, kind)
    widen = np.sqrt(max(phi, 1.0) * (1.0 + tau2 / s**2))
    frames = []
    for prob in probs:
        tail = (1.0 - prob) / 2.0
        if method == "exact":
            low = _exact_point(tail, target, sizes, kind)
            high = _exact_point(1.0 - tail, target, sizes, kind)
        else:
            z = normal_quantile(1.0 - tail)
            low, high = target - z * s, target + z * s
        low = target + widen * (low - target)
        high = target + widen * (high - target)
        low = np.maximum(low, 0.0)
        if kind == "proportion":
            high = np.minimum(high, 1.0)
        frames.append(pd.DataFrame({"size": sizes, "prob": prob, "low": low, "high": high}))
    return pd.concat(frames, ignore_index=True)


def winsorised_phi(z: ArrayLike, *, fraction: float = 0.1) -> float:
    """Dispersion factor: mean square of winsorised z-scores.

    With ``I`` z-scores and ``k = floor(fraction * I)``, the ``k`` smallest are set to the
    ``(k+1)``-th smallest and the ``k`` largest to the ``(k+1)``-th largest (the same rule as
    ``scipy.stats.mstats.winsorize``); ``phi = mean(z_w ** 2)``.

    Examples
    --------
    >>> winsorised_phi([-3, -1, 0, 0, 0, 0, 0, 0, 1, 5], fraction=0.1)  # (1+1+1+1)/10
    0.4

    References
    ----------
    Spiegelhalter (2005a), section 6.
    """
    z = np.sort(np.asarray(z, dtype=float))
    if z.size == 0 or not np.all(np.isfinite(z)):
        raise ValidationError(["z-scores must be finite and not empty."], what="z-scores")
    k = int(np.floor(fraction * z.size))
    if k > 0:
        z[:k] = z[k]
        z[-k:] = z[-k - 1]
    return float(np.mean(z**2))


def additive_tau2(phi: float, se: ArrayLike) -> float:
    """Between-unit variance from ``phi`` (method of moments, Spiegelhalter 2005b).

    ``tau2 = (I * phi - (I - 1)) / (sum(w) - sum(w**2) / sum(w))`` with ``w = 1 / se**2``,
    and 0 if that is negative.

    Examples
    --------
    >>> additive_tau2(2.0, [0.1, 0.1])  # (2*2 - 1) / (200 - 100)
    0.03
    """
    w = 1.0 / np.asarray(se, dtype=float) ** 2
    n = w.size
    tau2 = (n * phi - (n - 1)) / (w.sum() - (w**2).sum() / w.sum())
    return float(max(tau2, 0.0))


@dataclass(frozen=True)
class Funnel:
    """Units placed on a funnel plot, with the dispersion used for adjusted limits.

    Attributes
    ----------
    units : DataFrame
        ``unit``, the size column (``n_pupils`` or ``expected``), ``n_events``, the indicator
        (``rate`` or ``ratio``), ``z``, ``z_adjusted``, ``outside_95``, ``outside_998``
        (against the adjusted limits) and ``outside_95_unadjusted``,
        ``outside_998_unadjusted``.
    target, phi, tau2 : float
        ``phi`` is the winsorised estimate (reported even when below 1); ``tau2`` is 0 unless
        ``overdispersion="additive"``.
    kind, method, overdispersion : str
    """

    units: pd.DataFrame
    target: float
    phi: float
    tau2: float
    kind: str
    method: str
    overdispersion: str
    probs: tuple[float, ...] = PROBS

    @property
    def size_column(self) -> str:
        return N_PUPILS if self.kind == "proportion" else "expected"

    @property
    def value_column(self) -> str:
        return "rate" if self.kind == "proportion" else "ratio"

    def limits(
        self, sizes: ArrayLike | None = None, *, adjusted: bool = True, n: int = 300
    ) -> pd.DataFrame:
        """Limit curves over ``sizes`` (default: ``n`` points log-spaced over the units)."""
        if sizes is None:
            lo, hi = self.units[self.size_column].min(), self.units[self.size_column].max()
            sizes = np.geomspace(max(lo * 0.8, 1e-9), hi * 1.25, n)
        phi, tau2 = (1.0, 0.0)
        if adjusted and self.overdispersion == "multiplicative":
            phi = self.phi
        if adjusted and self.overdispersion == "additive":
            tau2 = self.tau2
        curves = funnel_limits(self.target, sizes, self.probs, phi=phi, tau2=tau2,
                               kind=self.kind, method=self.method)
        for column in ("size", "low", "high"):  # the same figure bytes on every machine
            curves[column] = plotted(curves[column].to_numpy())
        return curves


def _funnel(
    unit: pd.Series,
    size: np.ndarray,
    events: np.ndarray,
    *,
    kind: str,
    size_name: str,
    target: float,
    method: str,
    overdispersion: str,
    winsor: float,
) -> Funnel:
    _check_choice("overdispersion", overdispersion, OVERDISPERSION)
    _check_choice("method", method, METHODS)
    value = events / size
    s = _target_se(target, size, kind)
    z = (value - target) / s
    phi = winsorised_phi(z, fraction=winsor)
    tau2 = 0.0
    if overdispersion == "multiplicative":
        z_adjusted = z / np.sqrt(max(phi, 1.0))
    elif overdispersion == "additive":
        tau2 = additive_tau2(phi, s)
        z_adjusted = (value - target) / np.sqrt(s**2 + tau2)
    else:
        z_adjusted = z
    units = pd.DataFrame({
        "unit": unit.to_numpy(),
        size_name: size,
        "n_events": events,
        ("rate" if kind == "proportion" else "ratio"): value,
        "z": z,
        "z_adjusted": z_adjusted,
    })
    funnel = Funnel(units, float(target), phi, tau2, kind, method, overdispersion)
    for adjusted, suffix in ((True, ""), (False, "_unadjusted")):
        lim = funnel.limits(size, adjusted=adjusted)
        for prob, label in ((0.95, "95"), (0.998, "998")):
            at = lim[lim["prob"] == prob]
            low, high = at["low"].to_numpy(), at["high"].to_numpy()
            units[f"outside_{label}{suffix}"] = (value < low) | (value > high)
    return funnel


def _column(table: pd.DataFrame, name: str, *, positive: bool) -> np.ndarray:
    if name not in table.columns:
        raise ValidationError(
            [f"column {name!r} is missing; the table has {list(table.columns)}."],
            what="funnel table")
    values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values) | (values <= 0 if positive else values < 0)
    if bad.any():
        first = table.index[bad][:3].tolist()
        need = "> 0" if positive else ">= 0"
        raise ValidationError(
            [f"column {name!r}: {int(bad.sum())} rows are missing, not numbers or not {need} "
             f"(first rows {first}). Drop suppressed or empty units before a funnel plot."],
            what="funnel table")
    return values


def funnel_proportions(
    table: pd.DataFrame,
    *,
    unit: str,
    n_events: str = "n_events",
    n_pupils: str = N_PUPILS,
    target: float | None = None,
    method: str = "exact",
    overdispersion: str = "multiplicative",
    winsor: float = 0.1,
) -> Funnel:
    """Place units' proportions on a funnel plot (binomial limits).

    Parameters
    ----------
    table : DataFrame
        One row per unit with event and pupil counts (unsuppressed).
    unit, n_events, n_pupils : str
        Column names.
    target : float, optional
        Target proportion; default the pooled ``sum(n_events) / sum(n_pupils)``.
    method : {"exact", "normal"}
    overdispersion : {"multiplicative", "additive", "none"}
    winsor : float
        Fraction winsorised at each end when estimating ``phi``.

    Returns
    -------
    Funnel

    Examples
    --------
    >>> t = pd.DataFrame({"la": ["a", "b", "c", "d"], "n_pupils": [1000, 2000, 500, 4000],
    ...                   "n_events": [10, 18, 5, 80]})
    >>> f = funnel_proportions(t, unit="la")
    >>> round(f.target, 4), f.units["outside_998_unadjusted"].tolist()
    (0.0151, [False, False, False, False])

    References
    ----------
    Spiegelhalter (2005a, 2005b); see the module docstring.
    """
    size = _column(table, n_pupils, positive=True)
    events = _column(table, n_events, positive=False)
    if np.any(events > size):
        raise ValidationError([f"column {n_events!r} exceeds {n_pupils!r} in some rows."],
                              what="funnel table")
    if target is None:
        target = float(events.sum() / size.sum())
    return _funnel(table[unit] if unit in table.columns else _missing(table, unit),
                   size, events, kind="proportion", size_name=N_PUPILS, target=target,
                   method=method, overdispersion=overdispersion, winsor=winsor)


def funnel_ratios(
    table: pd.DataFrame,
    *,
    unit: str,
    observed: str = "n_events",
    expected: str = "expected",
    method: str = "exact",
    overdispersion: str = "multiplicative",
    winsor: float = 0.1,
) -> Funnel:
    """Place units' standardised ratios ``observed / expected`` on a funnel (Poisson limits).

    The target is 1; ``z = (O - E) / sqrt(E)`` (Spiegelhalter 2005a, table I).

    Examples
    --------
    >>> t = pd.DataFrame({"la": ["a", "b"], "n_events": [12, 30], "expected": [10.0, 31.0]})
    >>> funnel_ratios(t, unit="la", overdispersion="none").units["ratio"].round(3).tolist()
    [1.2, 0.968]
    """
    size = _column(table, expected, positive=True)
    events = _column(table, observed, positive=False)
    return _funnel(table[unit] if unit in table.columns else _missing(table, unit),
                   size, events, kind="ratio", size_name="expected", target=1.0,
                   method=method, overdispersion=overdispersion, winsor=winsor)


def _missing(table: pd.DataFrame, name: str) -> pd.Series:
    raise ValidationError([f"column {name!r} is missing; the table has {list(table.columns)}."],
                          what="funnel table")
