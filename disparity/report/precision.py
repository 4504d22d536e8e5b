"""The digits a run publishes: as many as the uncertainty supports, and the same on every machine.

A fit's numbers carry rounding error from the machine that computed them: the order of
summation in BLAS, the vector width of ``exp`` and ``log``. After the ml engine's Newton
polish (:func:`disparity.engines.laplace_fit._newton_polish`) that error is below about
``1e-9`` of a standard error, far below anything a reader needs, but ten significant digits
would show it. So published tables are rounded first:

* an estimate, its standard error and its interval to the decimal place of the
  ``SE_DIGITS``-th significant digit of the row's standard error (or, for a row with an
  interval and no standard error, of a quarter of the interval's width): the convention of
  reporting an estimate to the precision of its uncertainty;
* every other model-derived number (a rate, a probability, an expected count), and a row
  with neither, to ``SIG_DIGITS`` significant digits of itself.

A value then changes between machines only if it lies within the rounding error of a
rounding boundary, about one chance in ``10^SE_DIGITS / 1e-9``; the full-precision numbers
stay in the in-memory :class:`~disparity.result.Result`.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["SE_DIGITS", "SIG_DIGITS", "PLOT_DIGITS", "round_to_uncertainty",
           "round_significant", "rounding_step", "plotted", "rounded_table"]

#: Significant digits of the standard error that fix an estimate's last published decimal.
SE_DIGITS = 3
#: Significant digits of a published number without a standard error of its own.
SIG_DIGITS = 4
#: Significant digits of a computed curve that a figure draws (far below a pixel, far above
#: the last-bit differences of ``exp``, ``sqrt`` or a quantile function between machines).
PLOT_DIGITS = 9
#: The columns rounded to the row's standard error.
UNCERTAIN = ("estimate", "std_error", "conf_low", "conf_high")


def _decimals(scale: float, digits: int) -> int | None:
    """Decimal places that keep ``digits`` significant digits of ``scale`` (None if none)."""
    if not (math.isfinite(scale) and scale > 0):
        return None
    return digits - 1 - math.floor(math.log10(scale))


def _row_decimals(std_error: float, conf_low: float, conf_high: float) -> int | None:
    """Decimal places of a row: ``SE_DIGITS`` of its SE, else of a quarter of its interval."""
    places = _decimals(std_error, SE_DIGITS)
    return places if places is not None else _decimals((conf_high - conf_low) / 4.0,
                                                       SE_DIGITS)


def round_significant(value: float, digits: int = SIG_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (non-finite values unchanged).

    Examples
    --------
    >>> round_significant(0.001142798559), round_significant(1327.941594, 3)
    (0.001143, 1330.0)
    >>> round_significant(0.0), round_significant(float("nan"))
    (0.0, nan)
    """
    places = _decimals(abs(value), digits)
    return value if places is None else round(value, places) + 0.0  # no -0


def plotted(values: np.ndarray, digits: int = PLOT_DIGITS) -> np.ndarray:
    """A computed curve rounded to ``digits`` significant digits, so that a figure's bytes
    (a PNG's anti-aliased edges) do not follow last-bit differences between machines.

    Examples
    --------
    >>> plotted(np.array([0.1 + 0.2, 1e-12 / 3, 0.0, np.inf])).tolist()
    [0.3, 3.33333333e-13, 0.0, inf]
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values) & (values != 0)
    out = values.copy()
    exponent = np.floor(np.log10(np.abs(values[finite])))
    scale = 10.0 ** (digits - 1 - exponent)
    out[finite] = np.round(values[finite] * scale) / scale
    return out


def rounding_step(estimate: float, std_error: float = math.nan, conf_low: float = math.nan,
                  conf_high: float = math.nan) -> float:
    """The last published decimal of a row's estimate (what a reader comparing a
    published value with an exact one allows: half of it either way).

    Examples
    --------
    >>> rounding_step(-7.0298, 0.0585), rounding_step(1.328, conf_low=0.839, conf_high=2.063)
    (0.0001, 0.001)
    >>> rounding_step(0.001184)  # neither: four significant digits of the value
    1e-06
    """
    places = _row_decimals(std_error, conf_low, conf_high)
    if places is None:
        places = _decimals(abs(estimate), SIG_DIGITS)
    return 0.0 if places is None else 10.0 ** -places


def round_to_uncertainty(estimate: float, std_error: float, conf_low: float,
                         conf_high: float) -> tuple[float, float, float, float]:
    """A row's estimate, standard error and interval to its standard error's precision.

    Parameters
    ----------
    estimate, std_error, conf_low, conf_high : float
        NaN where the row has none.

    Returns
    -------
    tuple of float
        The four values rounded to the decimal place of the ``SE_DIGITS``-th significant
        digit of ``std_error`` (of a quarter of the interval's width if there is no
        standard error); each value to ``SIG_DIGITS`` significant digits of itself if there
        is neither.

    Examples
    --------
    >>> round_to_uncertainty(-7.02981443, 0.05846073039, -7.144395356, -6.915233504)
    (-7.0298, 0.0585, -7.1444, -6.9152)
    >>> round_to_uncertainty(-1.192185724e-05, 0.003217025094, -0.0063, 0.0063)
    (-1e-05, 0.00322, -0.0063, 0.0063)

    An interval without a standard error sets the scale by its width:

    >>> round_to_uncertainty(1.327941594, float("nan"), 0.8388956945, 2.062575121)
    (1.328, nan, 0.839, 2.063)
    """
    values = (estimate, std_error, conf_low, conf_high)
    places = _row_decimals(std_error, conf_low, conf_high)
    if places is None:
        return tuple(round_significant(v) for v in values)  # type: ignore[return-value]
    return tuple(v if not math.isfinite(v) else round(v, places) + 0.0  # no -0
                 for v in values)  # type: ignore[return-value]


def _numbers(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64)


def rounded_table(frame: pd.DataFrame, *, significant: Iterable[str] = (),
                  rows: np.ndarray | None = None) -> pd.DataFrame:
    """A table of estimates with its published precision.

    Parameters
    ----------
    frame : DataFrame
        A tidy table; the columns of ``UNCERTAIN`` it has are rounded row by row by
        :func:`round_to_uncertainty`, the ``significant`` ones value by value by
        :func:`round_significant`. Cells that are not numbers are left as they are.
    rows : boolean array, optional
        The rows to round (default all): observed figures, exact arithmetic on counts
        that is the same on every machine, can be left as they are.

    Returns
    -------
    DataFrame
        A copy.

    Examples
    --------
    >>> t = pd.DataFrame({"estimate": [0.28537849], "std_error": [0.18758075],
    ...                   "conf_low": [-0.08227302], "conf_high": [0.65303002],
    ...                   "rate": [0.0011835098]})
    >>> rounded_table(t, significant=["rate"]).iloc[0].tolist()
    [0.285, 0.188, -0.082, 0.653, 0.001184]
    """
    if rows is not None:
        rows = np.asarray(rows, dtype=bool)
        out = frame.copy()
        if rows.any():
            out.loc[rows] = rounded_table(frame.loc[rows], significant=significant)
        return out
    out = frame.copy()
    cols = {c: _numbers(out[c]) for c in UNCERTAIN if c in out.columns}
    if cols:
        nan = np.full(len(out), np.nan)
        records = zip(*(cols.get(c, nan) for c in UNCERTAIN))
        rounded = np.array([round_to_uncertainty(*r) for r in records],
                           dtype=np.float64).reshape(len(out), len(UNCERTAIN))
        for j, c in enumerate(UNCERTAIN):
            if c in cols:
                out[c] = _merged(out[c], cols[c], rounded[:, j])
    for c in significant:
        if c in out.columns:
            values = _numbers(out[c])
            out[c] = _merged(out[c], values, np.array([round_significant(v) for v in values]))
    return out


def _merged(original: pd.Series, numbers: np.ndarray, rounded: np.ndarray) -> pd.Series:
    """``rounded`` where the original cell was a number, else the original cell."""
    if original.dtype.kind == "f":
        return pd.Series(rounded, index=original.index)
    keep = np.isnan(numbers) & original.notna().to_numpy()
    values = [o if k else r for o, k, r in zip(original.tolist(), keep, rounded.tolist())]
    return pd.Series(values, index=original.index, dtype=object)
