"""The standard normal quantile, defined once for every interval of the package."""

from __future__ import annotations

from statistics import NormalDist

__all__ = ["normal_quantile", "two_sided_z"]

_STANDARD = NormalDist()


def normal_quantile(p: float) -> float:
    """The ``p`` quantile of the standard normal distribution (Wichura's AS 241, accurate to
    about 1e-16; no scipy needed).

    Examples
    --------
    >>> round(normal_quantile(0.975), 9)
    1.959963985
    """
    return _STANDARD.inv_cdf(float(p))


def two_sided_z(ci_prob: float) -> float:
    """The multiplier of a two-sided interval of probability ``ci_prob``:
    ``normal_quantile(0.5 + ci_prob / 2)``.

    Examples
    --------
    >>> round(two_sided_z(0.95), 6)
    1.959964
    """
    return normal_quantile(0.5 + float(ci_prob) / 2.0)
