"""Figures for reports: funnel, forest, caterpillar and trend plots, and saving them.

matplotlib is imported inside each function. Figures are built as
:class:`matplotlib.figure.Figure` objects without pyplot, so no window, no global figure
registry and no backend choice are involved (files are drawn with Agg). Text is at least
9 pt at the saved size. :func:`save_figure` writes PNG and SVG files that are identical
byte for byte when the same figure is saved again.

References
----------
Spiegelhalter, D. J. (2005). Funnel plots for comparing institutional performance.
*Statistics in Medicine*, 24, 1185-1202.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["funnel_plot", "forest_plot", "caterpillar_plot", "trend_plot", "distribution_plot",
           "save_figure", "figure_bytes"]

#: Style applied while a figure is built and saved (fonts >= 9 pt, deterministic SVG ids).
STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "disparity",
    "svg.fonttype": "path",
}
PNG_DPI = 150
_POINT = "#3b6ea8"
_ALERT = "#c0392b"
_WARN = "#e08e0b"
_GREY = "#555555"


def _style():
    import matplotlib as mpl

    return mpl.rc_context(STYLE)


#: Name of the log scale the figures use: matplotlib's, with the C library's scalar
#: ``log10`` in place of NumPy's vectorised one.
LOG_SCALE = "log_scalar"


def _scalar_log10(values: np.ndarray) -> np.ndarray:
    """``log10`` element by element with the C library's scalar function (``-1000`` at or
    below zero, as matplotlib clips): the same bits on every processor.

    NumPy vectorises ``log10`` differently on different processors (AVX-512 or AVX2), so
    its last bit can differ, and a figure's bytes with it: a coordinate computed from a
    rounded one (an axis limit with its margin) can sit exactly on a rounding boundary.

    Examples
    --------
    >>> _scalar_log10(np.array([100.0, 0.5, 0.0, np.nan])).round(6).tolist()
    [2.0, -0.30103, -1000.0, nan]
    """
    flat = np.asarray(values, dtype=np.float64)
    out = np.array([math.log10(v) if v > 0 else (-1000.0 if v <= 0 else math.nan)
                    for v in flat.ravel().tolist()], dtype=np.float64)
    return out.reshape(flat.shape)


def _log_axis(ax, which: str) -> None:
    """Put the ``which`` (``"x"`` or ``"y"``) axis of ``ax`` on a log scale whose drawn
    positions are the same on every machine (:func:`_scalar_log10`)."""
    import matplotlib.scale as mscale

    if LOG_SCALE not in mscale.get_scale_names():

        class ScalarLogTransform(mscale.LogTransform):
            def transform_non_affine(self, values):
                return _scalar_log10(values)

        class ScalarLogScale(mscale.LogScale):
            name = LOG_SCALE

            def __init__(self, axis, **kwargs):
                super().__init__(axis, **kwargs)
                self._transform = ScalarLogTransform(10)

        mscale.register_scale(ScalarLogScale)
    (ax.set_xscale if which == "x" else ax.set_yscale)(LOG_SCALE)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(
            [f"column {c!r} is missing; the frame has {list(frame.columns)}." for c in missing],
            what=what,
        )


def _first_present(frame: pd.DataFrame, names: Sequence[str], what: str) -> str:
    for name in names:
        if name in frame.columns:
            return name
    raise ValidationError([f"none of the columns {list(names)} is present."], what=what)


# --------------------------------------------------------------------------- funnel
def funnel_plot(
    funnel_frame: pd.DataFrame,
    limits: pd.DataFrame,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    highlight: Sequence[str] | None = None,
    target: float | None = None,
    percent: bool | None = None,
    log_x: bool = True,
    n_labelled: int = 8,
) -> "Figure":
    """Funnel plot: each unit's rate (or ratio) against its size, with control limits.

    Parameters
    ----------
    funnel_frame : DataFrame
        ``Funnel.units`` from :mod:`disparity.report.funnel`: ``unit``, ``n_pupils`` or
        ``expected``, ``rate`` or ``ratio`` and, if present, ``outside_95``/``outside_998``
        (used to colour points).
    limits : DataFrame
        ``size``, ``prob``, ``low``, ``high`` (``Funnel.limits()``); 95% limits dashed,
        99.8% limits solid.
    title, xlabel, ylabel : str
    highlight : sequence of str, optional
        Units to label; default: the ``n_labelled`` units furthest outside the 99.8%
        limits (by ``|z_adjusted|``).
    target : float, optional
        Draws the target line.
    percent : bool, optional
        Show proportions as per cent (default: for ``rate``, not for ``ratio``).
    log_x : bool
        Log-scaled size axis (ratios are always shown on a log value axis).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from disparity.report.funnel import funnel_proportions
    >>> t = pd.DataFrame({"la": list("abcd"), "n_pupils": [900, 2000, 500, 4000],
    ...                   "n_events": [10, 18, 5, 80]})
    >>> f = funnel_proportions(t, unit="la")
    >>> fig = funnel_plot(f.units, f.limits(), title="Exclusions", xlabel="Pupils",
    ...                   ylabel="Rate", target=f.target)
    >>> len(fig.axes[0].collections[0].get_offsets())
    4
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    _require(limits, ["size", "prob", "low", "high"], "funnel limits")
    x_col = _first_present(funnel_frame, ["n_pupils", "expected"], "funnel frame")
    y_col = _first_present(funnel_frame, ["rate", "ratio"], "funnel frame")
    _require(funnel_frame, ["unit"], "funnel frame")
    is_ratio = y_col == "ratio"
    if percent is None:
        percent = not is_ratio
    with _style():
        fig = Figure(figsize=(9.0, 5.0), layout="constrained")
        ax = fig.add_subplot()
        probs = sorted(limits["prob"].unique())
        for prob in probs:
            at = limits[limits["prob"] == prob].sort_values("size")
            solid = prob == max(probs)
            style = dict(color=_GREY, lw=1.2 if solid else 1.0, ls="-" if solid else "--")
            ax.plot(at["size"], at["high"], label=f"{prob * 100:g}% limits", **style)
            ax.plot(at["size"], at["low"], **style)
        if target is not None:
            ax.axhline(target, color="black", lw=0.9, label="Target")
        colour = np.full(len(funnel_frame), _POINT, dtype=object)
        if "outside_95" in funnel_frame:
            colour[funnel_frame["outside_95"].to_numpy(dtype=bool)] = _WARN
        if "outside_998" in funnel_frame:
            colour[funnel_frame["outside_998"].to_numpy(dtype=bool)] = _ALERT
        ax.scatter(funnel_frame[x_col], funnel_frame[y_col], s=22, c=list(colour),
                   edgecolors="white", linewidths=0.5, zorder=3)
        # legend proxies for point colours
        ax.scatter([], [], s=22, c=_POINT, label="Within 95% limits")
        if "outside_95" in funnel_frame:
            ax.scatter([], [], s=22, c=_WARN, label="Outside 95% limits")
        if "outside_998" in funnel_frame:
            ax.scatter([], [], s=22, c=_ALERT, label="Outside 99.8% limits")
        if highlight is None:
            highlight = []
            if "outside_998" in funnel_frame:
                out = funnel_frame[funnel_frame["outside_998"].astype(bool)]
                z = _first_present(funnel_frame, ["z_adjusted", "z", y_col], "funnel frame")
                order = out[z].abs().sort_values(ascending=False).index[:n_labelled]
                highlight = out.loc[order, "unit"].tolist()
        if log_x:
            _log_axis(ax, "x")
        if is_ratio:
            _log_axis(ax, "y")
        elif percent:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=2))
        if not is_ratio:  # room for the units, not for the limits of the tiniest sizes
            top = limits[limits["prob"] == max(probs)].sort_values("size")
            small = funnel_frame[x_col].quantile(0.1)
            at_small = np.interp(small, top["size"], top["high"])
            ax.set_ylim(0, 1.15 * max(funnel_frame[y_col].max(), at_small))
        else:
            _ratio_axis(ax.yaxis, funnel_frame[y_col].min(), funnel_frame[y_col].max())
        chosen = funnel_frame[funnel_frame["unit"].isin(list(highlight))]
        _label_points(ax, chosen[x_col].to_numpy(float), chosen[y_col].to_numpy(float),
                      chosen["unit"].astype(str).tolist())
        _title(ax, title, fig.get_figwidth())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax.grid(True, which="major", color="#dddddd", lw=0.6)
    return fig


def _ratio_axis(axis, low: float, high: float) -> None:
    """Ticks at halvings and doublings (plus 0.75 and 1.5 for narrow ranges), plain numbers."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    ticks = [2.0**k for k in range(-8, 9)]
    if high / max(low, 1e-12) < 4:
        ticks += [0.75, 1.25, 1.5]
    axis.set_major_locator(FixedLocator(sorted(ticks)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _title(ax, title: str, width_in: float) -> None:
    import textwrap

    ax.figure.suptitle(textwrap.fill(title, width=max(30, int(width_in * 9))), fontsize=12)


def _check_intervals(frame: pd.DataFrame, label: str, estimate: str, low: str, high: str,
                     what: str) -> None:
    est, lo, hi = (frame[c].to_numpy(float) for c in (estimate, low, high))
    bad = (lo > est) | (est > hi)
    if bad.any():
        first = frame.loc[bad, label].astype(str).head(3).tolist()
        raise ValidationError(
            [f"{int(bad.sum())} rows have {estimate!r} outside its interval "
             f"[{low!r}, {high!r}] (first: {first}); check the column names and the "
             "interval's scale."],
            what=what,
        )


def _label_points(ax, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Name points, nudging labels apart so that none overlap (greedy, top to bottom)."""
    if not len(labels):
        return
    to_axes = ax.transData + ax.transAxes.inverted()
    frac = to_axes.transform(np.column_stack([x, y]))
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    step = 11.0 / height_pt  # one line of 9 pt text, in axes fraction
    placed: list[tuple[float, float, float]] = []
    for i in np.argsort(-frac[:, 1], kind="stable"):
        fx, fy = frac[i]
        width = 0.012 * len(labels[i]) + 0.02
        ty = fy
        while any(abs(fx - px) < max(w, width) and abs(ty - py) < step
                  for px, py, w in placed):
            ty -= step
        placed.append((fx, ty, width))
        shift = (ty - fy) * height_pt
        ax.annotate(labels[i], (x[i], y[i]), xytext=(5, 3 + shift), textcoords="offset points",
                    fontsize=9, va="center",
                    arrowprops=dict(arrowstyle="-", color="#999999", lw=0.5)
                    if shift < 0 else None)


# --------------------------------------------------------------------------- forest
def forest_plot(
    estimates_frame: pd.DataFrame,
    *,
    estimate: str = "estimate",
    low: str = "conf_low",
    high: str = "conf_high",
    label: str = "term",
    crude: pd.DataFrame | None = None,
    ref_line: float | None = 1.0,
    log_scale: bool = True,
    title: str,
    xlabel: str = "Rate ratio",
) -> "Figure":
    """Forest plot of (adjusted) ratios with intervals, crude ratios beside them.

    Parameters
    ----------
    estimates_frame : DataFrame
        One row per term: ``label``, ``estimate``, ``low``, ``high``; drawn top to bottom
        in frame order as filled circles.
    crude : DataFrame, optional
        The same columns for crude ratios; matched on ``label`` and drawn just below each
        adjusted one as open squares.
    ref_line : float or None
        Vertical reference line (1 = no difference).
    log_scale : bool
        Ratios on a log axis (symmetric for halving and doubling).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> est = pd.DataFrame({"term": ["Black Caribbean", "Irish"], "estimate": [1.9, 1.1],
    ...                     "conf_low": [1.5, 0.8], "conf_high": [2.4, 1.5]})
    >>> fig = forest_plot(est, title="Adjusted rate ratios")
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['Black Caribbean', 'Irish']
    """
    from matplotlib.figure import Figure

    _require(estimates_frame, [label, estimate, low, high], "estimates")
    _check_intervals(estimates_frame, label, estimate, low, high, "estimates")
    n = len(estimates_frame)
    labels = estimates_frame[label].astype(str).tolist()
    y = np.arange(n)[::-1].astype(float)
    offset = 0.18 if crude is not None else 0.0
    with _style():
        longest = max((len(s) for s in labels), default=5)
        fig = Figure(figsize=(max(6.5, 3.5 + 0.075 * longest), 1.4 + 0.32 * n),
                     layout="constrained")
        ax = fig.add_subplot()
        est = estimates_frame[estimate].to_numpy(float)
        lo = estimates_frame[low].to_numpy(float)
        hi = estimates_frame[high].to_numpy(float)
        if log_scale:  # an interval a hundred times wider than the rest runs off the axis
            edge_lo, edge_hi = _forest_limits(est, lo, hi)
            cut_lo, cut_hi = lo < edge_lo, hi > edge_hi
            lo, hi = np.maximum(lo, edge_lo), np.minimum(hi, edge_hi)
        ax.errorbar(est, y + offset, xerr=[est - lo, hi - est], fmt="o", color=_POINT,
                    ms=5, capsize=0, lw=1.4, label="Adjusted")
        if log_scale and (cut_lo.any() or cut_hi.any()):
            ax.plot(lo[cut_lo], (y + offset)[cut_lo], marker="<", ls="none", color=_POINT,
                    ms=5)
            ax.plot(hi[cut_hi], (y + offset)[cut_hi], marker=">", ls="none", color=_POINT,
                    ms=5)
        if crude is not None:
            _require(crude, [label, estimate, low, high], "crude estimates")
            _check_intervals(crude, label, estimate, low, high, "crude estimates")
            c = crude.set_index(crude[label].astype(str)).reindex(labels)
            ce, cl, ch = (c[k].to_numpy(float) for k in (estimate, low, high))
            ax.errorbar(ce, y - offset, xerr=[ce - cl, ch - ce], fmt="s", color=_GREY,
                        mfc="white", ms=5, capsize=0, lw=1.0, label="Crude")
        if ref_line is not None:
            ax.axvline(ref_line, color="black", lw=0.8, ls=":")
        if log_scale:
            _log_axis(ax, "x")
            span = [lo, hi] + ([np.maximum(cl, edge_lo), np.minimum(ch, edge_hi)]
                               if crude is not None else [])
            _ratio_axis(ax.xaxis, np.nanmin(np.concatenate(span)),
                        np.nanmax(np.concatenate(span)))
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.7, n - 0.3)
        _title(ax, title, fig.get_figwidth())
        ax.set_xlabel(xlabel + (" (log scale)" if log_scale else ""))
        ax.grid(True, axis="x", color="#dddddd", lw=0.6)
        if crude is not None:
            ax.legend(loc="lower right", frameon=False)
    return fig


def _forest_limits(est: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[float, float]:
    """The x-range of a log-scale forest plot: every point, and each interval as far as
    eight times beyond the outermost point (and within 1/100 to 100); beyond that an
    interval is drawn to the edge with an arrowhead."""
    points = est[np.isfinite(est) & (est > 0)]
    if not points.size:
        return 1e-2, 1e2
    low = max(float(np.nanmin(lo[lo > 0])) if (lo > 0).any() else points.min(),
              points.min() / 8, 1e-2)
    high = min(float(np.nanmax(hi)), points.max() * 8, 1e2)
    return min(low, points.min()), max(high, points.max())


# --------------------------------------------------------------------------- caterpillar
def caterpillar_plot(
    effects_frame: pd.DataFrame,
    *,
    estimate: str = "estimate",
    low: str = "conf_low",
    high: str = "conf_high",
    label: str = "unit",
    ref_line: float | None = 1.0,
    log_scale: bool = True,
    title: str,
    value_label: str = "Rate ratio relative to the average unit",
    n_labelled: int = 5,
    max_named: int = 40,
) -> "Figure":
    """Caterpillar plot: unit effects sorted, each with its interval.

    With up to ``max_named`` units every unit is named (horizontal layout); with more, the
    units are ranked along the horizontal axis and the ``n_labelled`` lowest and highest
    are named.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> eff = pd.DataFrame({"unit": list("abc"), "estimate": [1.2, 0.8, 1.0],
    ...                     "conf_low": [1.0, 0.6, 0.9], "conf_high": [1.4, 1.0, 1.1]})
    >>> fig = caterpillar_plot(eff, title="LA effects")
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['b', 'c', 'a']
    """
    from matplotlib.figure import Figure

    _require(effects_frame, [label, estimate, low, high], "unit effects")
    _check_intervals(effects_frame, label, estimate, low, high, "unit effects")
    frame = effects_frame.sort_values([estimate, label], kind="mergesort").reset_index(drop=True)
    n = len(frame)
    est = frame[estimate].to_numpy(float)
    lo, hi = frame[low].to_numpy(float), frame[high].to_numpy(float)
    rank = np.arange(n, dtype=float)
    named = n <= max_named

    with _style():
        if named:
            longest = max((len(str(s)) for s in frame[label]), default=5)
            fig = Figure(figsize=(max(6.0, 3.5 + 0.075 * longest), 1.3 + 0.24 * n),
                         layout="constrained")
            ax = fig.add_subplot()
            ax.errorbar(est, rank, xerr=[est - lo, hi - est], fmt="o", ms=4, color=_POINT,
                        lw=1.0, capsize=0)
            ax.set_yticks(rank, frame[label].astype(str).tolist())
            ax.set_ylim(-0.7, n - 0.3)
            if ref_line is not None:
                ax.axvline(ref_line, color="black", lw=0.8, ls=":")
            if log_scale:
                _log_axis(ax, "x")
                _ratio_axis(ax.xaxis, lo.min(), hi.max())
            ax.set_xlabel(value_label + (" (log scale)" if log_scale else ""))
        else:
            fig = Figure(figsize=(8.0, 4.8), layout="constrained")
            ax = fig.add_subplot()
            ax.vlines(rank, lo, hi, color=_POINT, lw=0.8, alpha=0.7)
            ax.plot(rank, est, "o", ms=2.5, color=_POINT)
            if ref_line is not None:
                ax.axhline(ref_line, color="black", lw=0.8, ls=":")
            if log_scale:
                _log_axis(ax, "y")
                _ratio_axis(ax.yaxis, lo.min(), hi.max())
            # name the extremes in the empty corners: lowest top left, highest bottom right
            k = min(n_labelled, n // 2)
            step = 13.0 / (4.0 * 72)
            for j in range(k):
                for i, fx, fy, ha in ((j, 0.03, 0.95 - j * step, "left"),
                                      (n - 1 - j, 0.97, 0.05 + j * step, "right")):
                    ax.annotate(str(frame.loc[i, label]), (rank[i], est[i]), xytext=(fx, fy),
                                textcoords="axes fraction", fontsize=9, ha=ha, va="center",
                                arrowprops=dict(arrowstyle="-", color="#999999", lw=0.5))
            ax.set_xlim(-2, n + 1)
            ax.set_xlabel(f"Units ranked by estimate ({n} units)")
            ax.set_ylabel(value_label + (" (log scale)" if log_scale else ""))
        _title(ax, title, fig.get_figwidth())
        ax.grid(True, color="#eeeeee", lw=0.6)
    return fig


# --------------------------------------------------------------------------- trend
def trend_plot(
    frame: pd.DataFrame,
    *,
    x: str = "year",
    y: str = "rate",
    group: str | None = None,
    low: str | None = None,
    high: str | None = None,
    title: str,
    xlabel: str = "Academic year",
    ylabel: str = "Rate (%)",
) -> "Figure":
    """Trend plot: ``y`` against ``x``, one line per ``group``, legend beside the axes.

    ``x`` values are treated as ordered categories (e.g. ``"2015/16"``) in sorted order.
    Optional ``low``/``high`` columns draw a shaded interval per group.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> t = pd.DataFrame({"year": ["2015/16", "2016/17"] * 2, "rate": [0.1, 0.12, 0.2, 0.25],
    ...                   "sex": ["female", "female", "male", "male"]})
    >>> fig = trend_plot(t, group="sex", title="Permanent exclusion rate")
    >>> len(fig.axes[0].get_lines())
    2
    """
    from matplotlib.figure import Figure

    _require(frame, [x, y] + ([group] if group else []), "trend frame")
    xs = sorted(frame[x].unique())
    pos = {v: i for i, v in enumerate(xs)}
    groups = list(dict.fromkeys(frame[group])) if group else [None]
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
    with _style():
        import matplotlib as mpl

        cmap = mpl.colormaps["tab10" if len(groups) <= 10 else "tab20"]
        fig = Figure(figsize=(8.0 if group else 6.5, max(4.2, 0.22 * len(groups) + 1.2)),
                     layout="constrained")
        ax = fig.add_subplot()
        for k, g in enumerate(groups):
            part = frame if g is None else frame[frame[group] == g]
            part = part.assign(_pos=part[x].map(pos)).sort_values("_pos")
            colour = cmap(k % cmap.N)
            ax.plot(part["_pos"], part[y], marker=markers[k % len(markers)], ms=4, lw=1.3,
                    color=colour, label=None if g is None else str(g))
            if low and high:
                ax.fill_between(part["_pos"], part[low], part[high], color=colour, alpha=0.15,
                                lw=0)
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        _title(ax, title, fig.get_figwidth())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, color="#eeeeee", lw=0.6)
        if group:
            ax.legend(title=_cap_first(group.replace("_", " ")), loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _cap_first(text: str) -> str:
    """``text`` with its first letter in capitals and the rest as written ("FSM", "NC year")."""
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- distribution
#: Bars of :func:`distribution_plot`: column of the table, legend label, colour.
DISTRIBUTION_BARS: tuple[tuple[str, str, str], ...] = (
    ("n_schools_modelled", "Observed", _POINT),
    ("expected_same_risk", "Expected: same risk given size", _GREY),
    ("expected_school_sd", "Expected: school SD", _WARN),
)


def distribution_plot(
    table: pd.DataFrame,
    *,
    title: str,
    xlabel: str = "Events in the school",
    ylabel: str = "Schools",
    log_scale: bool = True,
) -> "Figure":
    """Bar chart of schools per band of events: observed beside the two expectations.

    Parameters
    ----------
    table : DataFrame
        ``ExclusionDistribution.table`` (:func:`disparity.school_bands.exclusion_distribution`):
        ``band``, ``n_schools_modelled`` (observed schools that enter the expectations),
        ``expected_same_risk`` and ``expected_school_sd``; bars are drawn in that order
        within each band, bands in table order.
    title, xlabel, ylabel : str
    log_scale : bool
        Log-scaled count axis (the band ``0`` usually holds most schools); bars below 0.1
        school are drawn at 0.1, and the values are written above the bars.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> t = pd.DataFrame({"band": ["0", "1-2", "3-5", "6-10", "more than 10"],
    ...                   "n_schools_modelled": [850, 100, 35, 12, 3],
    ...                   "expected_same_risk": [800, 180, 19, 1, 0.01],
    ...                   "expected_school_sd": [845, 110, 30, 11, 4]})
    >>> fig = distribution_plot(t, title="Permanent exclusions per school")
    >>> len(fig.axes[0].patches)
    15
    """
    from matplotlib.figure import Figure

    columns = [c for c, _, _ in DISTRIBUTION_BARS]
    _require(table, ["band", *columns], "distribution table")
    bands = table["band"].astype(str).tolist()
    x = np.arange(len(bands), dtype=float)
    width = 0.8 / len(DISTRIBUTION_BARS)
    floor = 0.1
    with _style():
        fig = Figure(figsize=(8.0, 4.6), layout="constrained")
        ax = fig.add_subplot()
        for k, (col, label, colour) in enumerate(DISTRIBUTION_BARS):
            values = table[col].to_numpy(dtype=float)
            shown = np.maximum(values, floor) if log_scale else values
            at = x + (k - (len(DISTRIBUTION_BARS) - 1) / 2) * width
            ax.bar(at, shown, width=width * 0.95, color=colour, label=label)
            for xi, v, h in zip(at, values, shown):
                text = f"{v:,.0f}" if v >= 10 or float(v).is_integer() else f"{v:.1f}"
                ax.annotate(text, (xi, h), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=9, rotation=90)
        if log_scale:
            _log_axis(ax, "y")
            top = max(float(np.nanmax(table[columns].to_numpy(dtype=float))), 1.0)
            ax.set_ylim(floor, top * 30)
        ax.set_xticks(x, bands)
        _title(ax, title, fig.get_figwidth())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel + (" (log scale)" if log_scale else ""))
        ax.legend(loc="upper right", frameon=False)
        ax.grid(True, axis="y", color="#eeeeee", lw=0.6)
    return fig


# --------------------------------------------------------------------------- saving
def figure_bytes(fig: "Figure") -> tuple[bytes, bytes]:
    """The figure as PNG (150 dpi) and SVG bytes, with no date or software stamp and SVG ids
    from a fixed salt, so drawing the same figure again gives the same bytes.

    Examples
    --------
    >>> fig = trend_plot(pd.DataFrame({"year": ["a", "b"], "rate": [1, 2]}), title="t")
    >>> png, svg = figure_bytes(fig)
    >>> png[:4], svg.lstrip()[:5]
    (b'\x89PNG', b'<?xml')
    """
    import io

    png, svg = io.BytesIO(), io.BytesIO()
    with _style():
        fig.savefig(png, dpi=PNG_DPI, format="png", metadata={"Software": None})
        # the layout was worked out by the first save; keep it rather than redo it
        fig.set_layout_engine("none")
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png.getvalue(), svg.getvalue()


def save_figure(fig: "Figure", path_stem: str | Path) -> list[Path]:
    """Write ``<path_stem>.png`` (150 dpi) and ``<path_stem>.svg``; return their paths.

    The files carry no date or software-version stamp and SVG element ids come from a fixed
    salt, so saving the same figure again gives the same bytes.

    Examples
    --------
    >>> import tempfile
    >>> fig = trend_plot(pd.DataFrame({"year": ["a", "b"], "rate": [1, 2]}), title="t")
    >>> [p.suffix for p in save_figure(fig, Path(tempfile.mkdtemp()) / "trend")]
    ['.png', '.svg']
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_name(stem.name + ".png")
    svg = stem.with_name(stem.name + ".svg")
    png_bytes, svg_bytes = figure_bytes(fig)
    png.write_bytes(png_bytes)
    svg.write_bytes(svg_bytes)
    return [png, svg]
