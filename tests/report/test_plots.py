"""Figures: expected artists, legible text, no overlapping labels, byte-identical files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from disparity import config  # noqa: E402
from disparity.report.funnel import funnel_proportions  # noqa: E402
from disparity.report.plots import (  # noqa: E402
    caterpillar_plot,
    forest_plot,
    funnel_plot,
    save_figure,
    trend_plot,
)
from disparity.vocabulary import ETHNICITY_LEVELS  # noqa: E402


def _rng(offset=0):
    return np.random.default_rng(config.SEED + offset)


def _units(n=150, spread=0.3):
    rng = _rng()
    sizes = rng.integers(2_000, 200_000, n)
    p = 0.001 * np.exp(rng.normal(0, spread, n))
    return pd.DataFrame({"la": [f"Local authority {i:03d}" for i in range(n)],
                         "n_pupils": sizes, "n_events": rng.binomial(sizes, p)})


def _effects(n):
    rng = _rng(1)
    est = np.exp(rng.normal(0, 0.3, n))
    width = np.exp(rng.uniform(0.1, 0.4, n))
    return pd.DataFrame({"unit": [f"Unit {i:03d}" for i in range(n)], "estimate": est,
                         "conf_low": est / width, "conf_high": est * width})


def _texts(fig):
    FigureCanvasAgg(fig).draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _assert_legible(fig):
    for t in _texts(fig):
        assert t.get_fontsize() >= 9, (t.get_text(), t.get_fontsize())


def _assert_no_overlap(texts):
    fig = texts[0].figure
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # text only, no arrow
    for (a, ta), (b, tb) in itertools.combinations(zip(boxes, texts), 2):
        assert not a.overlaps(b), (ta.get_text(), tb.get_text())


# --------------------------------------------------------------------------- funnel
def test_funnel_plot_points_lines_and_labels():
    units = _units()
    f = funnel_proportions(units, unit="la")
    fig = funnel_plot(f.units, f.limits(), title="Permanent exclusions by local authority",
                      xlabel="Pupils", ylabel="Permanent exclusion rate", target=f.target)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_offsets()) == len(units)  # one point per unit
    # two probabilities x (low, high) limit lines, plus the target line
    assert len(ax.get_lines()) == 2 * 2 + 1
    n_out = int(f.units["outside_998"].sum())
    assert n_out >= 2 and len(ax.texts) == min(n_out, 8)
    _assert_legible(fig)
    _assert_no_overlap(list(ax.texts))


def test_funnel_plot_highlight_names_units():
    units = _units(30)
    f = funnel_proportions(units, unit="la")
    chosen = ["Local authority 003", "Local authority 010", "Local authority 011"]
    fig = funnel_plot(f.units, f.limits(), title="t", xlabel="x", ylabel="y",
                      highlight=chosen)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == chosen
    _assert_legible(fig)
    _assert_no_overlap(list(fig.axes[0].texts))


def test_funnel_plot_for_ratios_uses_log_axis():
    from disparity.report.funnel import funnel_ratios

    t = pd.DataFrame({"la": list("abcdef"), "n_events": [5, 12, 30, 8, 60, 20],
                      "expected": [6.0, 10.0, 25.0, 12.0, 50.0, 22.0]})
    f = funnel_ratios(t, unit="la")
    fig = funnel_plot(f.units, f.limits(), title="t", xlabel="Expected", ylabel="O/E")
    assert fig.axes[0].get_yscale() == "log_scalar"


# --------------------------------------------------------------------------- forest
def test_forest_plot_adjusted_and_crude():
    terms = [g for g in ETHNICITY_LEVELS if g != "White British"]
    est = _effects(len(terms)).rename(columns={"unit": "term"}).assign(term=terms)
    crude = est.assign(**{c: est[c] * 1.2 for c in ("estimate", "conf_low", "conf_high")})
    fig = forest_plot(est, crude=crude, title="Rate ratios by ethnicity (reference White "
                      "British), adjusted and crude")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == terms
    # two error-bar containers (adjusted, crude), each with one marker per term
    assert len(ax.containers) == 2
    markers = [c.lines[0] for c in ax.containers]
    assert [len(m.get_xdata()) for m in markers] == [len(terms), len(terms)]
    assert markers[0].get_marker() != markers[1].get_marker()
    assert ax.get_xscale() == "log_scalar"
    _assert_legible(fig)
    _assert_no_overlap(list(ax.get_yticklabels()))
    # the wrapped title fits inside the figure
    renderer = fig.canvas.get_renderer()
    box = fig._suptitle.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1


def test_forest_plot_crude_matched_by_label():
    est = pd.DataFrame({"term": ["a", "b"], "estimate": [2.0, 0.5], "conf_low": [1.5, 0.4],
                        "conf_high": [2.5, 0.6]})
    crude = est.iloc[::-1].assign(estimate=[0.6, 2.2], conf_low=[0.5, 2.0],
                                  conf_high=[0.7, 2.4])  # b then a
    fig = forest_plot(est, crude=crude, title="t")
    crude_x = fig.axes[0].containers[1].lines[0].get_xdata()
    assert list(crude_x) == [2.2, 0.6]  # a's crude first, as in the estimates frame


# --------------------------------------------------------------------------- caterpillar
def test_caterpillar_named_units_sorted():
    eff = _effects(30)
    fig = caterpillar_plot(eff, title="Local authority effects")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == eff.sort_values("estimate")["unit"].tolist()
    _assert_legible(fig)
    _assert_no_overlap(list(ax.get_yticklabels()))


def test_caterpillar_many_units_labels_extremes():
    eff = _effects(150)
    fig = caterpillar_plot(eff, title="Local authority effects", n_labelled=5)
    ax = fig.axes[0]
    assert len(ax.get_lines()[0].get_xdata()) == 150
    named = [t.get_text() for t in ax.texts]
    order = eff.sort_values("estimate")["unit"].tolist()
    assert sorted(named) == sorted(order[:5] + order[-5:])
    _assert_legible(fig)
    _assert_no_overlap(list(ax.texts))


# --------------------------------------------------------------------------- trend
def test_trend_plot_twenty_groups():
    years = ["2011/12", "2012/13", "2013/14", "2014/15", "2015/16", "2016/17"]
    groups = list(ETHNICITY_LEVELS) + ["Extra group"]
    rng = _rng(2)
    frame = pd.DataFrame([(y, g, rng.uniform(0.02, 0.3)) for g in groups for y in years],
                         columns=["year", "ethnicity", "rate"])
    fig = trend_plot(frame, group="ethnicity", title="Permanent exclusion rate by ethnicity")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == len(groups) == 20
    assert all(len(line.get_xdata()) == len(years) for line in ax.get_lines())
    assert [t.get_text() for t in ax.get_xticklabels()] == years
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == groups
    _assert_legible(fig)
    _assert_no_overlap(list(legend.get_texts()))
    _assert_no_overlap(list(ax.get_xticklabels()))


# --------------------------------------------------------------------------- saving
def _funnel_figure():
    f = funnel_proportions(_units(), unit="la")
    return funnel_plot(f.units, f.limits(), title="Funnel", xlabel="Pupils", ylabel="Rate",
                       target=f.target)


def test_save_figure_writes_png_and_svg_identically(tmp_path):
    paths = save_figure(_funnel_figure(), tmp_path / "first" / "funnel")
    assert [p.name for p in paths] == ["funnel.png", "funnel.svg"]
    png, svg = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and b"<svg" in svg
    assert b"<dc:date>" not in svg
    # a freshly built, identical figure saved elsewhere gives the same bytes
    again = save_figure(_funnel_figure(), tmp_path / "second" / "funnel")
    assert again[0].read_bytes() == png
    assert again[1].read_bytes() == svg


def test_png_is_150_dpi(tmp_path):
    from PIL import Image

    png, _ = save_figure(_funnel_figure(), tmp_path / "f")
    with Image.open(png) as im:
        assert im.size == (9 * 150, 5 * 150)  # 9 x 5 inch figure


def test_estimate_outside_its_interval_is_rejected():
    from disparity.errors import ValidationError

    est = pd.DataFrame({"term": ["a"], "estimate": [3.0], "conf_low": [1.5], "conf_high": [2.5]})
    with pytest.raises(ValidationError, match="outside its interval"):
        forest_plot(est, title="t")
