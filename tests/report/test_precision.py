"""Published precision: estimates to their SE's precision, the same digits on every machine."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disparity.report.precision import (SE_DIGITS, plotted, round_significant,
                                        round_to_uncertainty, rounded_table)


def test_hand_rounded_rows():
    # Oracle: rounded by hand. SE 0.05846 -> 3 significant digits -> 4 decimals.
    assert round_to_uncertainty(-7.02981443, 0.05846073039, -7.144395356, -6.915233504) == (
        -7.0298, 0.0585, -7.1444, -6.9152)
    # SE 412.7 -> 413, units: 1234567.8 -> 1234568
    assert round_to_uncertainty(1234567.8, 412.7, 1233758.9, 1235376.7) == (
        1234568.0, 413.0, 1233759.0, 1235377.0)
    # no SE: a quarter of the interval's width (0.3059) sets 3 decimals
    assert round_to_uncertainty(1.327941594, math.nan, 0.8388956945, 2.062575121)[0] == 1.328
    # neither: four significant digits each; zero stays zero, never -0
    r = round_to_uncertainty(0.0001288238, math.nan, 0.0, math.nan)
    assert r[0] == 0.0001288 and math.isnan(r[1]) and r[2] == 0.0 and math.isnan(r[3])
    assert str(round_to_uncertainty(-1e-9, 0.01, -0.02, 0.02)[0]) == "0.0"


@settings(max_examples=300, deadline=None)
@given(est=st.floats(-1e6, 1e6), log_se=st.floats(-8, 4))
def test_rounding_error_is_a_thousandth_to_a_hundredth_of_the_se(est, log_se):
    se = 10.0 ** log_se
    got, got_se, _, _ = round_to_uncertainty(est, se, est - 2 * se, est + 2 * se)
    grid = 10.0 ** (math.floor(math.log10(se)) - (SE_DIGITS - 1))
    assert 10.0 ** -SE_DIGITS < grid / se <= 10.0 ** -(SE_DIGITS - 1) * (1 + 1e-12)
    assert abs(got - est) <= grid / 2 * (1 + 1e-9) + 1e-12 * abs(est)
    assert abs(got_se - se) <= grid / 2 * (1 + 1e-9)


@settings(max_examples=300, deadline=None)
@given(est=st.floats(-1e3, 1e3), log_se=st.floats(-6, 2), noise=st.floats(-1e-9, 1e-9))
def test_rounding_noise_below_1e9_of_an_se_rarely_changes_a_digit(est, log_se, noise):
    # what makes the published bytes machine-independent: a change of 1e-9 SE moves a
    # value across a rounding boundary only within 1e-9 SE of it (one value in 1e6)
    se = 10.0 ** log_se
    a = round_to_uncertainty(est, se, math.nan, math.nan)[0]
    b = round_to_uncertainty(est + noise * se, se * (1 + noise), math.nan, math.nan)[0]
    grid = 10.0 ** (math.floor(math.log10(se)) - (SE_DIGITS - 1))
    distance = abs(est / grid - math.floor(est / grid) - 0.5) * grid  # to the nearest boundary
    near_power_of_ten = abs(log_se - round(log_se)) < 1e-8  # the SE's own leading digit
    if distance > 2e-9 * se and not near_power_of_ten:
        assert a == b


def test_significant_digits():
    assert round_significant(0.001142798559) == 0.001143
    assert round_significant(46601942.0) == 46600000.0
    assert round_significant(-0.00004) == -0.00004
    assert math.isinf(round_significant(math.inf))


def test_table_keeps_symbols_and_rounds_numbers():
    t = pd.DataFrame({"estimate": [0.28537849, "c"], "std_error": [0.18758075, np.nan],
                      "conf_low": [-0.08227302, np.nan], "conf_high": [0.65303002, np.nan],
                      "rate": ["0.0011835098", "x"]})
    out = rounded_table(t, significant=["rate"])
    assert out["estimate"].tolist() == [0.285, "c"]
    assert out["rate"].tolist() == [0.001184, "x"]
    assert t["estimate"].tolist()[0] == 0.28537849  # a copy


def test_plotted_curve_hides_last_bit_differences():
    x = np.geomspace(1e-3, 1e6, 500)
    jiggled = x * (1 + 2.0 ** -52)  # the last-bit difference of a vectorised log or exp
    assert np.array_equal(plotted(np.log10(x)), plotted(np.log10(jiggled)))
    assert np.max(np.abs(plotted(x) / x - 1)) < 1e-8


def test_figures_log_axes_use_the_scalar_log10():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from disparity.report.plots import LOG_SCALE, _log_axis

    ax = Figure().add_subplot()
    _log_axis(ax, "x")
    assert ax.get_xscale() == LOG_SCALE
    x = np.array([0.5, 3.0, 1e-300, 0.0])
    got = ax.xaxis.get_transform().transform_non_affine(x)
    assert got.tolist() == [math.log10(0.5), math.log10(3.0), -300.0, -1000.0]
