"""Tests of disparity.measures.

Every expected value is independent of the code under test: arithmetic written out here,
published values (Newcombe 1998), published DfE counts, or an invariance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disparity import measures as m
from disparity.errors import ValidationError
from disparity.measures import disproportionality

# Two-sided 95% standard normal quantile, from tables (not computed by the code under test).
Z95 = 1.959963984540054


# =========================================================================== array layer
class TestRiskAndWilson:
    def test_risk_is_events_over_pupils(self):
        assert float(m.risk(20, 100)) == 20 / 100
        assert np.isnan(m.risk(0, 0))  # no pupils, no risk

    @pytest.mark.parametrize(
        ("e", "n", "low", "high"),
        [
            # Newcombe RG (1998), Statistics in Medicine 17:857-872, Table II, method 3
            # (Wilson score without continuity correction), examples (a)-(d).
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0000, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ],
    )
    def test_wilson_matches_newcombe_1998(self, e, n, low, high):
        lo, hi = m.wilson_interval(e, n, 0.95)
        assert float(lo) == pytest.approx(low, abs=5e-5)
        assert float(hi) == pytest.approx(high, abs=5e-5)

    def test_wilson_edges_exact_and_empty_nan(self):
        lo, hi = m.wilson_interval([0, 7, 0], [10, 7, 0])
        assert lo[0] == 0.0 and hi[1] == 1.0
        assert np.isnan(lo[2]) and np.isnan(hi[2])

    def test_wilson_formula_by_hand(self):
        # e = 10, n = 30: centre (10 + z^2/2) / (30 + z^2); half z/(30+z^2) sqrt(10*20/30 + z^2/4)
        z2 = Z95**2
        centre = (10 + z2 / 2) / (30 + z2)
        half = Z95 / (30 + z2) * math.sqrt(10 * 20 / 30 + z2 / 4)
        lo, hi = m.wilson_interval(10, 30)
        assert float(lo) == pytest.approx(centre - half, rel=1e-12)
        assert float(hi) == pytest.approx(centre + half, rel=1e-12)

    def test_bad_counts_raise(self):
        with pytest.raises(ValidationError, match="negative"):
            m.risk(-1, 10)
        with pytest.raises(ValidationError, match="more events than pupils"):
            m.wilson_interval(11, 10)
        with pytest.raises(ValidationError, match="ci_prob"):
            m.wilson_interval(1, 10, 1.5)


class TestTwoByTwo:
    # group: 20 of 100; comparison: 30 of 600
    E1, N1, E0, N0 = 20, 100, 30, 600

    def test_risk_ratio_and_katz_by_hand(self):
        rr = (20 / 100) / (30 / 600)  # = 0.2 / 0.05 = 4
        assert rr == pytest.approx(4.0)
        se = math.sqrt(1 / 20 - 1 / 100 + 1 / 30 - 1 / 600)  # Katz SE of log RR
        assert float(m.risk_ratio(self.E1, self.N1, self.E0, self.N0)) == pytest.approx(4.0)
        lo, hi = m.katz_interval(self.E1, self.N1, self.E0, self.N0, 0.95)
        assert float(lo) == pytest.approx(4 * math.exp(-Z95 * se), rel=1e-12)
        assert float(hi) == pytest.approx(4 * math.exp(Z95 * se), rel=1e-12)

    def test_odds_ratio_and_woolf_by_hand(self):
        # cells a = 20, b = 80, c = 30, d = 570
        odds = (20 * 570) / (80 * 30)  # = 4.75
        se = math.sqrt(1 / 20 + 1 / 80 + 1 / 30 + 1 / 570)
        assert float(m.odds_ratio(self.E1, self.N1, self.E0, self.N0)) == pytest.approx(odds)
        lo, hi = m.woolf_interval(self.E1, self.N1, self.E0, self.N0, 0.95)
        assert float(lo) == pytest.approx(odds * math.exp(-Z95 * se), rel=1e-12)
        assert float(hi) == pytest.approx(odds * math.exp(Z95 * se), rel=1e-12)

    def test_risk_difference_by_hand(self):
        assert float(m.risk_difference(20, 100, 30, 600)) == pytest.approx(0.2 - 0.05)

    @pytest.mark.parametrize(
        ("e1", "n1", "e0", "n0", "low", "high"),
        [
            # Newcombe RG (1998), Statistics in Medicine 17:873-890, Table II, method 10
            # (hybrid score, no continuity correction), examples (a)-(d).
            (56, 70, 48, 80, 0.0524, 0.3339),
            (9, 10, 3, 10, 0.1705, 0.8090),
            (5, 56, 0, 29, -0.0381, 0.1926),
            (6, 7, 2, 7, 0.0582, 0.8062),
        ],
    )
    def test_newcombe_matches_published(self, e1, n1, e0, n0, low, high):
        lo, hi = m.newcombe_interval(e1, n1, e0, n0, 0.95)
        assert float(lo) == pytest.approx(low, abs=5e-5)
        assert float(hi) == pytest.approx(high, abs=5e-5)

    def test_zero_cell_haldane_anscombe(self):
        # e1 = 0: the point estimate stays the definition (0); the interval uses the table
        # with 0.5 added to all four cells: 0.5 of 101 against 30.5 of 601.
        assert float(m.risk_ratio(0, 100, 30, 600)) == 0.0
        rr_c = (0.5 / 101) / (30.5 / 601)
        se_c = math.sqrt(1 / 0.5 - 1 / 101 + 1 / 30.5 - 1 / 601)
        lo, hi = m.katz_interval(0, 100, 30, 600, 0.95)
        assert float(lo) == pytest.approx(rr_c * math.exp(-Z95 * se_c), rel=1e-12)
        assert float(hi) == pytest.approx(rr_c * math.exp(Z95 * se_c), rel=1e-12)
        lo, hi = m.katz_interval(0, 100, 30, 600, 0.95, zero_correction=0)
        assert np.isnan(lo) and np.isnan(hi)

    def test_zero_non_event_cell_corrects_woolf_only(self):
        # e1 = n1 = 10: b = 0 breaks the Woolf interval, not the Katz one.
        odds_c = (10.5 * 570.5) / (0.5 * 30.5)
        se_c = math.sqrt(1 / 10.5 + 1 / 0.5 + 1 / 30.5 + 1 / 570.5)
        lo, _ = m.woolf_interval(10, 10, 30, 600)
        assert float(lo) == pytest.approx(odds_c * math.exp(-Z95 * se_c), rel=1e-12)
        se = math.sqrt(1 / 10 - 1 / 10 + 1 / 30 - 1 / 600)
        lo, _ = m.katz_interval(10, 10, 30, 600)
        assert float(lo) == pytest.approx(20 * math.exp(-Z95 * se), rel=1e-12)

    def test_zero_comparison_events_infinite_without_warning(self):
        # pytest turns RuntimeWarnings into errors: division by zero must be silent.
        assert np.isinf(m.risk_ratio(5, 100, 0, 600))
        assert np.isnan(m.risk_ratio(0, 100, 0, 600))
        assert np.isnan(m.risk_ratio(0, 0, 3, 600))

    def test_vectorised_broadcast(self):
        rr = m.risk_ratio(np.array([20, 10]), 100, 30, 600)
        assert rr.tolist() == pytest.approx([4.0, 2.0])


class TestIndices:
    def test_representation_index_by_hand(self):
        # 20 of the unit's 50 events, 100 of its 700 pupils: (20/50) / (100/700) = 2.8
        assert float(m.representation_index(20, 100, 50, 700)) == pytest.approx(2.8)

    def test_relative_rate_index_by_hand(self):
        # per-1,000 rates: 1000*12/400 = 30 and 1000*5/500 = 10 -> RRI = 3
        assert float(m.relative_rate_index(12, 400, 5, 500)) == pytest.approx(30 / 10)

    def test_weighted_risk_ratio_by_hand(self):
        # risks 0.1, 0.2, 0.3; wider-area shares 0.5, 0.3, 0.2
        wrr = m.weighted_risk_ratio([10, 20, 30], [100, 100, 100], [0.5, 0.3, 0.2])
        assert wrr[0] == pytest.approx(0.1 / ((0.3 * 0.2 + 0.2 * 0.3) / 0.5))
        assert wrr[1] == pytest.approx(0.2 / ((0.5 * 0.1 + 0.2 * 0.3) / 0.7))
        assert wrr[2] == pytest.approx(0.3 / ((0.5 * 0.1 + 0.3 * 0.2) / 0.8))

    def test_weighted_equals_crude_with_own_composition(self):
        # Invariance: weights = the unit's own pupil shares give the crude RR vs others.
        e = np.array([12.0, 7.0, 40.0, 3.0])
        n = np.array([150.0, 90.0, 800.0, 20.0])
        wrr = m.weighted_risk_ratio(e, n, n / n.sum())
        crude = (e / n) / ((e.sum() - e) / (n.sum() - n))
        np.testing.assert_allclose(wrr, crude, rtol=1e-12)

    def test_weighted_leaves_out_absent_groups(self):
        # a group with no pupils in the unit drops out and the weights renormalise
        wrr = m.weighted_risk_ratio([10, 20, 0], [100, 100, 0], [0.5, 0.3, 0.2])
        assert wrr[0] == pytest.approx(0.1 / 0.2)
        assert np.isnan(wrr[2])

    def test_weighted_interval_by_hand(self):
        # group 3 (30/100) against groups 1, 2 with shares renormalised: 0.5/0.8, 0.3/0.8
        w1, w2 = 0.5 / 0.8, 0.3 / 0.8
        comp = w1 * 0.1 + w2 * 0.2
        var_comp = w1**2 * 0.1 * 0.9 / 100 + w2**2 * 0.2 * 0.8 / 100
        se = math.sqrt(1 / 30 - 1 / 100 + var_comp / comp**2)
        lo, hi = m.weighted_risk_ratio_interval([10, 20, 30], [100, 100, 100],
                                                [0.5, 0.3, 0.2], 0.95)
        assert lo[2] == pytest.approx(0.3 / comp * math.exp(-Z95 * se), rel=1e-12)
        assert hi[2] == pytest.approx(0.3 / comp * math.exp(Z95 * se), rel=1e-12)


# =========================================================================== frame layer
def _cells(rows, unit="la", by="ethnicity"):
    """Cells frame from (unit, group, pupils, events) tuples, counts as nullable Int64."""
    frame = pd.DataFrame(rows, columns=[unit, by, "n_pupils", "n_perm_excl"])
    frame["n_pupils"] = frame["n_pupils"].astype("Int64")
    frame["n_perm_excl"] = frame["n_perm_excl"].astype("Int64")
    return frame


def _row(out, **where):
    mask = np.ones(len(out), dtype=bool)
    for k, v in where.items():
        mask &= (out[k] == v).to_numpy()
    assert mask.sum() == 1, where
    return out[mask].iloc[0]


class TestStatusBoundaries:
    """IDEA: cell size on events (numerator), n-size on pupils (denominator), both groups."""

    def run(self, group, comparison):
        cells = _cells([("A", "g", *group), ("A", "other", *comparison)])
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la")
        return _row(out, group="g")

    def test_exactly_at_the_minimums_is_calculated(self):
        r = self.run((30, 10), (30, 10))  # 10 events of 30 pupils each side
        assert r["status"] == "calculated"
        assert r["risk_ratio"] == pytest.approx((10 / 30) / (10 / 30))

    def test_group_one_event_short(self):
        r = self.run((30, 9), (30, 10))
        assert r["status"] == "not_calculated:cell_size"
        assert np.isnan(r["risk_ratio"]) and "group below the minimum cell size" in r["note"]
        assert r["risk"] == pytest.approx(9 / 30)  # risks are still given

    def test_group_one_pupil_short(self):
        r = self.run((29, 10), (30, 10))
        assert r["status"] == "not_calculated:n_size"

    def test_comparison_one_event_short(self):
        r = self.run((30, 10), (30, 9))
        assert r["status"] == "not_calculated:cell_size"
        assert "comparison group below the minimum cell size" in r["note"]

    def test_comparison_one_pupil_short(self):
        r = self.run((30, 10), (29, 10))
        assert r["status"] == "not_calculated:n_size"
        assert "comparison group below the minimum n-size" in r["note"]

    def test_minimums_are_parameters(self):
        cells = _cells([("A", "g", 29, 9), ("A", "other", 30, 10)])
        out = m.disproportionality(cells, outcome="n_perm_excl", by="ethnicity", unit="la",
                                   min_n_size=29, min_cell_size=9)
        assert _row(out, group="g")["status"] == "calculated"

    def test_zero_cell_with_no_minimums_notes_haldane(self):
        cells = _cells([("A", "g", 40, 0), ("A", "other", 60, 6)])
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                                   min_n_size=0, min_cell_size=0)
        r = _row(out, group="g")
        assert r["status"] == "calculated" and r["risk_ratio"] == 0.0
        assert "Haldane-Anscombe" in r["note"]
        # interval of the corrected table 0.5/41 vs 6.5/61, by hand
        rr_c = (0.5 / 41) / (6.5 / 61)
        se_c = math.sqrt(1 / 0.5 - 1 / 41 + 1 / 6.5 - 1 / 61)
        assert r["conf_high"] == pytest.approx(rr_c * math.exp(Z95 * se_c), rel=1e-12)


class TestOthersAndReference:
    def test_others_by_hand_and_all_columns(self):
        cells = _cells([("A", "g1", 100, 20), ("A", "g2", 600, 30), ("A", "g3", 50, 10)])
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                                   threshold=3.0)
        for col in m.OUTPUT_COLUMNS:
            assert col in out.columns
        r = _row(out, group="g1")
        # others: 30 + 10 = 40 events of 600 + 50 = 650 pupils
        assert r["comparison"] == "others"
        assert (r["comparison_events"], r["comparison_pupils"]) == (40, 650)
        assert r["risk_ratio"] == pytest.approx((20 / 100) / (40 / 650))
        se = math.sqrt(1 / 20 - 1 / 100 + 1 / 40 - 1 / 650)
        assert r["conf_low"] == pytest.approx((20 / 100) / (40 / 650) * math.exp(-Z95 * se))
        assert r["odds_ratio"] == pytest.approx((20 * 610) / (80 * 40))
        assert r["risk_difference"] == pytest.approx(20 / 100 - 40 / 650)
        # representation: (20 / 60 events) / (100 / 750 pupils)
        assert r["representation_index"] == pytest.approx((20 / 60) / (100 / 750))
        assert bool(r["flag"]) is True  # 3.25 > 3
        assert bool(_row(out, group="g3")["flag"]) is False  # 2.8 <= 3
        assert r["ci_prob"] == 0.95 and r["unit"] == "A" and r["la"] == "A"

    def test_reference_default_from_vocabulary(self):
        cells = _cells([("A", "Black Caribbean", 100, 20), ("A", "White British", 600, 30),
                        ("A", "Indian", 50, 10)])
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                                   comparison="reference")
        r = _row(out, group="Black Caribbean")
        assert r["comparison"] == "reference: White British"
        assert r["risk_ratio"] == pytest.approx((20 / 100) / (30 / 600))  # = 4
        ref = _row(out, group="White British")
        assert ref["status"] == "not_calculated:reference" and np.isnan(ref["risk_ratio"])

    def test_sums_over_unused_grouping_columns(self):
        split = pd.DataFrame({
            "la": ["A"] * 4, "ethnicity": ["g1", "g1", "g2", "g2"],
            "sex": ["female", "male"] * 2,
            "n_pupils": [40, 60, 300, 300], "n_perm_excl": [5, 15, 10, 20],
        })
        out = m.disproportionality(split, outcome="perm_excl", by="ethnicity", unit="la")
        r = _row(out, group="g1")
        assert (r["n_events"], r["n_pupils"]) == (20, 100)
        assert r["risk_ratio"] == pytest.approx((20 / 100) / (30 / 600))

    def test_unit_none_is_all(self):
        cells = _cells([("A", "g1", 100, 20), ("B", "g2", 600, 30)])
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity")
        assert set(out["unit"]) == {"all"} and "la" not in out.columns
        assert _row(out, group="g1")["risk_ratio"] == pytest.approx(4.0)

    def test_threshold_none_flag_is_missing(self):
        cells = _cells([("A", "g1", 100, 20), ("A", "g2", 600, 30)])
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la")
        assert out["flag"].isna().all()


class TestSuppressed:
    CELLS = [("A", "Black Caribbean", 100, 20), ("A", "White British", 600, 30),
             ("A", "Chinese", 50, pd.NA), ("B", "Black Caribbean", 80, 12),
             ("B", "White British", 400, 20)]

    def test_missing_count_is_never_zero(self):
        cells = _cells(self.CELLS)
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la")
        chinese = _row(out, la="A", group="Chinese")
        assert chinese["status"] == "not_calculated:suppressed"
        assert pd.isna(chinese["n_events"]) and np.isnan(chinese["risk"])
        # every "others" comparison in unit A needs the Chinese count
        for g in ("Black Caribbean", "White British"):
            r = _row(out, la="A", group=g)
            assert r["status"] == "not_calculated:suppressed", g
            assert "suppressed" in r["note"]
        # unit B is untouched: (12/80) / (20/400) = 3
        assert _row(out, la="B", group="Black Caribbean")["risk_ratio"] == pytest.approx(3.0)

    def test_reference_comparison_does_not_need_other_groups(self):
        cells = _cells(self.CELLS)
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                                   comparison="reference")
        r = _row(out, la="A", group="Black Caribbean")
        assert r["status"] == "calculated"
        assert r["risk_ratio"] == pytest.approx((20 / 100) / (30 / 600))

    def test_float_nan_counts_are_missing_too(self):
        cells = _cells(self.CELLS)
        cells["n_perm_excl"] = cells["n_perm_excl"].astype("Float64").astype(float)
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la")
        assert _row(out, la="A", group="Chinese")["status"] == "not_calculated:suppressed"


class TestAlternateAndWeighted:
    """Two units x three groups, worked by hand.

    unit U1: a 20/100, b 12/200, c  4/25
    unit U2: a  3/20,  b 40/400, c  4/15
    national pupils: a 120, b 600, c 40 (760); events: a 23, b 52, c 8
    """

    ROWS = [("U1", "a", 100, 20), ("U1", "b", 200, 12), ("U1", "c", 25, 4),
            ("U2", "a", 20, 3), ("U2", "b", 400, 40), ("U2", "c", 15, 4)]

    def test_alternate_by_hand(self):
        out = m.disproportionality(_cells(self.ROWS), outcome="perm_excl", by="ethnicity",
                                   unit="la", comparison="alternate")
        # U1, a: own others b + c = 16 of 225 meet the minimums -> the unit's own RR
        r = _row(out, la="U1", group="a")
        assert (r["status"], r["comparison"]) == ("calculated", "others")
        assert r["risk_ratio"] == pytest.approx((20 / 100) / (16 / 225))
        # U1, b: own others a + c = 24 of 125
        assert _row(out, la="U1", group="b")["risk_ratio"] == pytest.approx(
            (12 / 200) / (24 / 125))
        # U2, b: own others a + c = 7 events < 10 -> national others of b:
        # a + c over both units = (20 + 4 + 3 + 4) of (100 + 25 + 20 + 15) = 31 of 160
        r = _row(out, la="U2", group="b")
        assert (r["status"], r["comparison"]) == ("alternate", "alternate: national others")
        assert (r["comparison_events"], r["comparison_pupils"]) == (31, 160)
        assert r["risk_ratio"] == pytest.approx((40 / 400) / (31 / 160))
        # groups below the minimums themselves are not calculated whatever the comparison;
        # U2, a fails both (3 events, 20 pupils): the n-size is checked first
        assert _row(out, la="U2", group="a")["status"] == "not_calculated:n_size"
        assert _row(out, la="U1", group="c")["status"] == "not_calculated:n_size"  # 25 pupils

    def test_weighted_by_hand(self):
        out = m.disproportionality(_cells(self.ROWS), outcome="perm_excl", by="ethnicity",
                                   unit="la", comparison="weighted")
        # national shares a 120/760, b 600/760, c 40/760; U1 risks a .2, b .06, c .16
        r = _row(out, la="U1", group="a")
        comp = (600 * 0.06 + 40 * 0.16) / (600 + 40)  # = 42.4 / 640 = 0.06625
        assert r["comparison"] == "weighted" and r["status"] == "calculated"
        assert r["comparison_risk"] == pytest.approx(comp)
        assert r["risk_ratio"] == pytest.approx(0.2 / comp)
        wb, wc = 600 / 640, 40 / 640
        var_comp = wb**2 * 0.06 * 0.94 / 200 + wc**2 * 0.16 * 0.84 / 25
        se = math.sqrt(1 / 20 - 1 / 100 + var_comp / comp**2)
        assert r["conf_low"] == pytest.approx(0.2 / comp * math.exp(-Z95 * se), rel=1e-10)
        r = _row(out, la="U1", group="b")
        assert r["risk_ratio"] == pytest.approx(0.06 / ((120 * 0.2 + 40 * 0.16) / 160))
        # U2, b: the unit's other pupils have 7 events < 10: IDEA rules still apply
        assert _row(out, la="U2", group="b")["status"] == "not_calculated:cell_size"

    def test_wider_area_is_taken_within_year(self):
        y1 = _cells(self.ROWS)
        y2 = _cells([(u, g, n, e * 2) for u, g, n, e in self.ROWS])
        y1["year"], y2["year"] = "2015/16", "2016/17"
        cells = pd.concat([y1, y2], ignore_index=True)
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity",
                                   unit=["year", "la"], comparison="alternate")
        r = _row(out, year="2015/16", la="U2", group="b")
        assert r["unit"] == "2015/16 / U2"
        assert r["risk_ratio"] == pytest.approx((40 / 400) / (31 / 160))
        # pooling both years instead: others of b = 31 + 62 of 320
        pooled = m.disproportionality(cells, outcome="perm_excl", by="ethnicity",
                                      unit=["year", "la"], comparison="alternate", area_by=[])
        r = _row(pooled, year="2015/16", la="U2", group="b")
        assert r["risk_ratio"] == pytest.approx((40 / 400) / (93 / 320))


class TestDfENational:
    """Real counts: DfE, Permanent and fixed-period exclusions in England 2016 to 2017.

    File /work/shared/data/dfe_exclusions_ees_test_data/exclusions_by_characteristic_national.csv,
    rows with time_period 201617, school_type Total (national counts rounded to the nearest 5):
      line   2  Total, Total:                               headcount 8025075, perm_excl 7720
      line  56  Ethnicity Minor White British:              headcount 5439960, perm_excl 5470
      line 104  Ethnicity Minor Black Caribbean:            headcount   92595, perm_excl  260
      line 113  Ethnicity Minor Chinese:                    headcount   35130, perm_excl x
    """

    def cells(self):
        return pd.DataFrame({
            "ethnicity": ["White British", "Black Caribbean", "Chinese"],
            "n_pupils": pd.array([5439960, 92595, 35130], dtype="Int64"),
            "n_perm_excl": pd.array([5470, 260, pd.NA], dtype="Int64"),
        })

    def test_black_caribbean_vs_white_british(self):
        out = m.disproportionality(self.cells(), outcome="perm_excl", by="ethnicity",
                                   comparison="reference", reference="White British")
        r = _row(out, group="Black Caribbean")
        rr = (260 / 92595) / (5470 / 5439960)  # = 0.0028079 / 0.0010055 = 2.7925
        assert r["risk_ratio"] == pytest.approx(rr, rel=1e-12)
        assert round(r["risk_ratio"], 2) == 2.79
        # the published rates, 0.28% and 0.10%, agree with the counts
        assert round(100 * r["risk"], 2) == 0.28
        assert round(100 * r["comparison_risk"], 2) == 0.10
        se = math.sqrt(1 / 260 - 1 / 92595 + 1 / 5470 - 1 / 5439960)
        assert r["conf_low"] == pytest.approx(rr * math.exp(-Z95 * se), rel=1e-10)
        assert r["conf_high"] == pytest.approx(rr * math.exp(Z95 * se), rel=1e-10)
        assert _row(out, group="Chinese")["status"] == "not_calculated:suppressed"

    def test_black_caribbean_vs_all_others_from_the_total_row(self):
        # others = Total minus Black Caribbean: 8025075 - 92595 = 7932480 pupils,
        # 7720 - 260 = 7460 exclusions
        cells = pd.DataFrame({
            "ethnicity": ["Black Caribbean", "everyone else"],
            "n_pupils": [92595, 8025075 - 92595],
            "n_perm_excl": [260, 7720 - 260],
        })
        out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity")
        r = _row(out, group="Black Caribbean")
        assert (r["comparison_pupils"], r["comparison_events"]) == (7932480, 7460)
        assert r["risk_ratio"] == pytest.approx((260 / 92595) / (7460 / 7932480), rel=1e-12)

    def test_others_need_every_group(self):
        out = m.disproportionality(self.cells(), outcome="perm_excl", by="ethnicity")
        assert (out["status"] == "not_calculated:suppressed").all()


class TestFlagConsecutive:
    # Same file, lines 3949/3901 (2011/12), 3211/3163, 2458/2410, 1679/1631, 901/853,
    # 104/56 (2016/17): Black Caribbean and White British headcount, perm_excl.
    SERIES = {
        "2011/12": (90095, 210, 4885840, 3770),
        "2012/13": (89410, 200, 4855365, 3300),
        "2013/14": (88445, 210, 4839150, 3555),
        "2014/15": (87125, 245, 4821115, 4110),
        "2015/16": (85255, 245, 4811695, 4740),
        "2016/17": (92595, 260, 5439960, 5470),
    }

    def results(self, years=None):
        rows = []
        for year, (n1, e1, n0, e0) in self.SERIES.items():
            if years is None or year in years:
                rows += [(year, "Black Caribbean", n1, e1), (year, "White British", n0, e0)]
        cells = _cells(rows, unit="year")
        return m.disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="year",
                                    comparison="reference")

    def test_real_series(self):
        # by hand, (e1/n1)/(e0/n0): 2011/12 3.02, 2012/13 3.29, 2013/14 3.23,
        # 2014/15 3.30, 2015/16 2.92, 2016/17 2.79 -> above 3 in the first four years
        out = m.flag_consecutive(self.results(), threshold=3.0, n_years=3)
        bc = out[out["group"] == "Black Caribbean"].sort_values("year")
        assert bc["flag"].tolist() == [True, True, True, True, False, False]
        assert bc["flag_years"].tolist() == [1, 2, 3, 4, 0, 0]
        assert bc["flag_consecutive"].tolist() == [False, False, True, True, False, False]
        wb = out[out["group"] == "White British"]
        assert (wb["flag_years"] == 0).all()  # the reference row is never flagged

    def test_a_missing_year_breaks_the_run(self):
        # all three years flagged (3.02, 3.29, 3.30 > 3), but Black Caribbean's 2012/13 row
        # is dropped: its years 2011/12 and 2014/15 are not adjacent among the table's
        # years (2011/12, 2012/13, 2014/15), so the run restarts.
        res = self.results(years={"2011/12", "2012/13", "2014/15"})
        res = res[~((res["group"] == "Black Caribbean") & (res["year"] == "2012/13"))]
        out = m.flag_consecutive(res, threshold=3.0, n_years=2)
        bc = out[out["group"] == "Black Caribbean"].sort_values("year")
        assert bc["flag_years"].tolist() == [1, 1]

    def test_validation(self):
        with pytest.raises(ValidationError, match="year"):
            m.flag_consecutive(self.results().drop(columns="year"), threshold=3, n_years=3)
        with pytest.raises(ValidationError, match="n_years"):
            m.flag_consecutive(self.results(), threshold=3, n_years=0)


class TestValidation:
    def cells(self):
        return _cells([("A", "g1", 100, 20), ("A", "g2", 600, 30)])

    def test_unknown_outcome_lists_columns(self):
        with pytest.raises(ValidationError) as err:
            m.disproportionality(self.cells(), outcome="fixed_excl", by="ethnicity")
        assert "'n_fixed_excl'" in str(err.value) and "'n_perm_excl'" in str(err.value)

    def test_unknown_by_and_unit_listed_together(self):
        with pytest.raises(ValidationError) as err:
            m.disproportionality(self.cells(), outcome="perm_excl", by="sen", unit="school")
        assert len(err.value.problems) == 2
        assert "Available columns" in str(err.value)

    def test_bad_comparison_lists_valid(self):
        with pytest.raises(ValidationError, match="'others', 'reference', 'alternate'"):
            m.disproportionality(self.cells(), outcome="perm_excl", by="ethnicity",
                                 comparison="national")

    def test_reference_not_present_lists_levels(self):
        with pytest.raises(ValidationError, match="Levels present: 'g1', 'g2'"):
            m.disproportionality(self.cells(), outcome="perm_excl", by="ethnicity",
                                 comparison="reference")  # default White British absent

    def test_reference_needed_for_unknown_by(self):
        cells = self.cells().rename(columns={"ethnicity": "herd"})
        with pytest.raises(ValidationError, match="no default reference"):
            m.disproportionality(cells, outcome="perm_excl", by="herd",
                                 comparison="reference")

    def test_events_above_pupils(self):
        cells = _cells([("A", "g1", 10, 20), ("A", "g2", 600, 30)])
        with pytest.raises(ValidationError, match="exceeds 'n_pupils'"):
            m.disproportionality(cells, outcome="perm_excl", by="ethnicity")


# =========================================================================== properties
counts = st.tuples(st.integers(1, 5000), st.integers(0, 5000)).map(
    lambda t: (max(t), min(t))  # (pupils, events) with events <= pupils
)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(counts, min_size=2, max_size=6))
def test_others_ratio_equals_two_by_two(groups):
    cells = pd.DataFrame({
        "ethnicity": [f"g{i}" for i in range(len(groups))],
        "n_pupils": [n for n, _ in groups],
        "n_perm_excl": [e for _, e in groups],
    })
    out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity",
                               min_n_size=0, min_cell_size=0)
    big_n = sum(n for n, _ in groups)
    big_e = sum(e for _, e in groups)
    for i, (n1, e1) in enumerate(groups):
        r = out.iloc[i]
        n0, e0 = big_n - n1, big_e - e1
        if e0 == 0:
            continue  # the ratio is undefined or infinite; covered elsewhere
        assert r["risk_ratio"] == pytest.approx((e1 / n1) / (e0 / n0), rel=1e-12)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(counts, min_size=1, max_size=8).filter(lambda g: sum(e for _, e in g) > 0))
def test_representation_indices_average_to_one(groups):
    cells = pd.DataFrame({
        "ethnicity": [f"g{i}" for i in range(len(groups))],
        "n_pupils": [n for n, _ in groups],
        "n_perm_excl": [e for _, e in groups],
    })
    out = m.disproportionality(cells, outcome="perm_excl", by="ethnicity")
    shares = out["n_pupils"].to_numpy(dtype=float) / sum(n for n, _ in groups)
    assert float(np.sum(shares * out["representation_index"].to_numpy())) == pytest.approx(1.0)


def test_published_unit_totals_give_others_despite_a_suppressed_group():
    # Unit "L": groups A (suppressed), B, C; the published total also holds pupils outside
    # the breakdown (as DfE's ethnicity rows leave out pupils aged 4 and under).
    cells = pd.DataFrame({
        "la": ["L", "L", "L"],
        "ethnicity": ["A", "B", "C"],
        "n_pupils": [50, 400, 600],
        "n_perm_excl": pd.array([pd.NA, 12, 6], dtype="Int64"),
    })
    totals = pd.DataFrame({"la": ["L"], "n_pupils": [1100], "n_perm_excl": [20]})
    out = disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                             unit_totals=totals, min_n_size=1, min_cell_size=1)
    b = out[out["group"] == "B"].iloc[0]
    # B's others: 1100 - 400 = 700 pupils, 20 - 12 = 8 events.
    assert b["comparison_pupils"] == 700 and b["comparison_events"] == 8
    assert b["risk_ratio"] == pytest.approx((12 / 400) / (8 / 700), rel=1e-12)
    assert b["status"] == "calculated"
    assert out[out["group"] == "A"].iloc[0]["status"] == "not_calculated:suppressed"
    # Without the published totals, one suppressed group hides every comparison.
    plain = disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                               min_n_size=1, min_cell_size=1)
    assert set(plain["status"]) == {"not_calculated:suppressed"}


def test_unit_totals_must_have_one_row_per_unit():
    cells = pd.DataFrame({"la": ["L", "L"], "ethnicity": ["A", "B"], "n_pupils": [50, 60],
                          "n_perm_excl": [1, 2]})
    totals = pd.DataFrame({"la": ["L", "L"], "n_pupils": [110, 110], "n_perm_excl": [3, 3]})
    with pytest.raises(ValidationError, match="repeat a unit"):
        disproportionality(cells, outcome="perm_excl", by="ethnicity", unit="la",
                           unit_totals=totals)
