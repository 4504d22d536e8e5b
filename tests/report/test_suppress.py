"""Disclosure control: primary rules at their boundaries, rounding, and an attack.

The attack is the main check. After suppression a reader knows every published figure and
that the table adds up. For each suppressed value the attacker solves two linear programs
(smallest and largest value consistent with all published cells, all margins and
non-negativity), written here independently of the module, from the published frame alone.
Tables with margins have totally unimodular constraints, so these bounds are attained by
integer tables. The protection asserted:

* no suppressed non-zero value is pinned: ``max - min >= 1``;
* no primary-suppressed value is shown to be a small non-zero count: the range reaches 0 or
  the threshold (``min == 0`` or ``max >= threshold``).

(Zeros are publishable under the rules, and a zero under a zero total cannot be hidden by
any suppression, so zeros are not required to be protected.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from disparity import config
from disparity.errors import SpecError, ValidationError
from disparity.report.suppress import SuppressionRules, suppress_table

T = "Total"


# --------------------------------------------------------------------------- attacker
def attack(truth: pd.DataFrame, published: pd.DataFrame, column: str, rows: str,
           cols: str | None) -> dict[int, tuple[float, float]]:
    """Feasible range of every unpublished value of ``column`` given what is published."""
    keys = [rows] if cols is None else [rows, cols]
    key_list = [tuple(k) for k in published[keys].itertuples(index=False)]
    where = {k: i for i, k in enumerate(key_list)}
    shown = published[column].notna().to_numpy()
    value = truth[column].to_numpy(float)
    hidden = [i for i in range(len(key_list)) if not shown[i]]
    var = {i: j for j, i in enumerate(hidden)}

    equations: list[dict[int, float]] = []  # cell -> coefficient, sum == 0
    if cols is None:
        if (T,) in where:
            eq = {i: 1.0 for k, i in where.items() if k[0] != T}
            eq[where[(T,)]] = -1.0
            equations.append(eq)
    else:
        row_labels = {k[0] for k in key_list if k[0] != T}
        col_labels = {k[1] for k in key_list if k[1] != T}
        for r in row_labels:
            if (r, T) in where:
                eq = {i: 1.0 for k, i in where.items() if k[0] == r and k[1] != T}
                eq[where[(r, T)]] = -1.0
                equations.append(eq)
        for c in col_labels:
            if (T, c) in where:
                eq = {i: 1.0 for k, i in where.items() if k[1] == c and k[0] != T}
                eq[where[(T, c)]] = -1.0
                equations.append(eq)
        if (T, T) in where:
            eq = {i: 1.0 for k, i in where.items() if k[0] != T and k[1] != T}
            eq[where[(T, T)]] = -1.0
            equations.append(eq)
            if all((r, T) in where for r in row_labels):
                eq = {where[(r, T)]: 1.0 for r in row_labels}
                eq[where[(T, T)]] = -1.0
                equations.append(eq)
            if all((T, c) in where for c in col_labels):
                eq = {where[(T, c)]: 1.0 for c in col_labels}
                eq[where[(T, T)]] = -1.0
                equations.append(eq)
    a_eq, b_eq = [], []
    for eq in equations:
        row = np.zeros(len(hidden))
        rhs = 0.0
        for i, a in eq.items():
            if i in var:
                row[var[i]] += a
            else:
                rhs -= a * value[i]
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
    out = {}
    for i in hidden:
        if not a_eq:
            out[i] = (0.0, np.inf)
            continue
        ends = []
        for sign in (1.0, -1.0):
            c = np.zeros(len(hidden))
            c[var[i]] = sign
            res = linprog(c, A_eq=np.array(a_eq), b_eq=np.array(b_eq), bounds=(0, None),
                          method="highs")
            assert res.status in (0, 3), res.message
            ends.append(np.inf if res.status == 3 else sign * res.fun)
        out[i] = (ends[0], ends[1])
    return out


def assert_protected(truth, result, rows, cols, rules=SuppressionRules()):
    published, status = result.published, result.status
    for column, threshold in (("n_pupils", rules.min_pupils), ("n_events", rules.min_events)):
        true = truth[column].to_numpy(float)
        shown = published[column].notna().to_numpy()
        # what is published is the truth (no rounding in these tests)
        np.testing.assert_array_equal(published[column].to_numpy(float, na_value=np.nan)[shown],
                                      true[shown])
        for i, (lo, hi) in attack(truth, published, column, rows, cols).items():
            if true[i] > 0:
                assert hi - lo >= 1 - 1e-6, (column, published.iloc[i].to_dict(), lo, hi)
            if status[column].iloc[i] == "primary":
                assert lo <= 1e-6 or hi >= threshold - 1e-6, (column, i, lo, hi)
    # primary rules hold
    p, e = truth["n_pupils"].to_numpy(), truth["n_events"].to_numpy()
    assert not published["n_pupils"].notna()[(p >= 1) & (p < rules.min_pupils)].any()
    assert not published["n_events"].notna()[(p >= 1) & (p < rules.min_pupils)].any()
    assert not published["n_events"].notna()[(e >= 1) & (e < rules.min_events)].any()
    # a rate is published only with both of its counts
    rate_shown = published["rate"].notna().to_numpy()
    assert not (rate_shown & ~(published["n_pupils"].notna() & published["n_events"].notna())).any()


# --------------------------------------------------------------------------- table makers
def two_way(pupils: np.ndarray, events: np.ndarray, *, col_margins: bool) -> pd.DataFrame:
    recs = []
    n_rows, n_cols = pupils.shape
    for i in range(n_rows):
        for j in range(n_cols):
            recs.append((f"u{i}", f"g{j}", pupils[i, j], events[i, j]))
        recs.append((f"u{i}", T, pupils[i].sum(), events[i].sum()))
    if col_margins:
        for j in range(n_cols):
            recs.append((T, f"g{j}", pupils[:, j].sum(), events[:, j].sum()))
        recs.append((T, T, pupils.sum(), events.sum()))
    return pd.DataFrame(recs, columns=["unit", "group", "n_pupils", "n_events"])


# --------------------------------------------------------------------------- rules
def test_rules_from_mapping_and_defaults():
    rules = SuppressionRules.from_mapping({"min_pupils": 10, "min_events": 3, "round_to": 5})
    assert rules == SuppressionRules(10, 3, 5)
    assert SuppressionRules.from_mapping(None) == SuppressionRules(
        config.MIN_PUPILS, config.MIN_EVENTS, None)
    assert SuppressionRules.from_mapping({}).round_to is None


def test_rules_unknown_key_names_nearest():
    with pytest.raises(SpecError, match="did you mean 'min_pupils'"):
        SuppressionRules.from_mapping({"min_pupil": 10})
    with pytest.raises(SpecError, match="round_to"):
        SuppressionRules.from_mapping({"round_to": 0})
    with pytest.raises(SpecError, match="min_events"):
        SuppressionRules(min_events=2.5)


# --------------------------------------------------------------------------- primary
def test_primary_boundaries_pupils_and_events():
    # No total row: nothing adds up, so only primary suppression applies.
    t = pd.DataFrame({
        "group": ["p9", "p10", "e0", "e1", "e2", "e3", "empty"],
        "n_pupils": [9, 10, 50, 50, 50, 50, 0],
        "n_events": [4, 4, 0, 1, 2, 3, 0],
    })
    out = suppress_table(t, rows="group")
    f = out.formatted(decimals=1).set_index("group")
    assert f.loc["p9"].tolist() == ["c", "c", "c"]  # 9 pupils: everything suppressed
    assert f.loc["p10"].tolist() == ["10", "4", "40.0"]  # 10 pupils shown; 4/10 = 40%
    assert f.loc["e0"].tolist() == ["50", "0", "0.0"]  # zero events shown
    assert f.loc["e1"].tolist() == ["50", "c", "c"]
    assert f.loc["e2"].tolist() == ["50", "c", "c"]
    assert f.loc["e3"].tolist() == ["50", "3", "6.0"]  # 3/50 = 6%
    assert f.loc["empty"].tolist() == ["0", "0", "z"]  # rate on no pupils: not applicable
    s = out.status.set_index("group")
    assert s.loc["p9", "n_pupils"] == "primary" and s.loc["e1", "n_events"] == "primary"
    assert out.published.set_index("group").loc["e1", "n_events_symbol"] == config.SYMBOL_SUPPRESSED


def test_nothing_small_means_nothing_suppressed():
    t = pd.DataFrame({"group": ["a", "b", T], "n_pupils": [100, 200, 300],
                      "n_events": [0, 5, 5]})
    out = suppress_table(t, rows="group")
    assert (out.status[["n_pupils", "n_events", "rate"]] == "published").all().all()


def test_unavailable_input_is_x_not_zero():
    t = pd.DataFrame({"group": ["a", "b"], "n_pupils": [100, 200],
                      "n_events": [np.nan, 5]})
    out = suppress_table(t, rows="group")
    assert out.formatted().loc[0, "n_events"] == config.SYMBOL_UNAVAILABLE
    assert out.formatted().loc[0, "rate"] == config.SYMBOL_UNAVAILABLE


def test_rounding_to_five_rates_from_unrounded():
    t = pd.DataFrame({"group": ["a", "b", "c", T], "n_pupils": [123, 67, 1002, 1192],
                      "n_events": [7, 12, 0, 19]})
    out = suppress_table(t, rows="group", rules=SuppressionRules(round_to=5))
    pub = out.published.set_index("group")
    # nearest multiple of 5: 123 -> 125, 67 -> 65, 1002 -> 1000, 1192 -> 1190
    assert pub["n_pupils"].tolist() == [125, 65, 1000, 1190]
    # 7 -> 5, 12 -> 10, 0 -> 0, 19 -> 20
    assert pub["n_events"].tolist() == [5, 10, 0, 20]
    # rate from unrounded counts: 100 * 7 / 123
    assert pub.loc["a", "rate"] == pytest.approx(700 / 123)
    assert "rounded to the nearest 5" in out.note and "unrounded" in out.note


# --------------------------------------------------------------------------- secondary
def test_single_suppression_in_a_row_gets_a_complement():
    # B has 8 pupils; without a complement B = 428 - 120 - 300.
    t = pd.DataFrame({"group": ["A", "B", "C", T], "n_pupils": [120, 8, 300, 428],
                      "n_events": [4, 0, 9, 13]})
    out = suppress_table(t, rows="group")
    st_ = out.status.set_index("group")["n_pupils"]
    assert st_["B"] == "primary"
    assert st_["A"] == "secondary"  # the smallest other non-zero cell
    assert st_["C"] == "published" and st_[T] == "published"
    assert_protected(t, out, "group", None)


def test_tie_break_is_table_order():
    t = pd.DataFrame({"group": ["A", "B", "C", T], "n_pupils": [50, 5, 50, 105],
                      "n_events": [10, 0, 10, 20]})
    out = suppress_table(t, rows="group")
    assert out.status["n_pupils"].tolist() == ["secondary", "primary", "published", "published"]


def test_only_other_nonzero_cell_is_the_total_two_way():
    # u0's events: g0 has 1 (primary); g1 has 0; so u0's total equals g0 and is primary too.
    # The national row then links u0's total to u1's: the attack must still fail.
    pupils = np.array([[40, 30], [60, 70]])
    events = np.array([[1, 0], [5, 7]])
    t = two_way(pupils, events, col_margins=True)
    out = suppress_table(t, rows="unit", cols="group")
    st_ = out.status.set_index(["unit", "group"])["n_events"]
    assert st_[("u0", "g0")] == "primary" and st_[("u0", T)] == "primary"
    assert_protected(t, out, "unit", "group")


def test_unit_with_one_group_only_total_left():
    # A unit whose only group is small: the group equals the total, both suppressed.
    t = pd.DataFrame({"unit": ["u0", "u0", "u1", "u1", "u1"],
                      "group": ["g0", T, "g0", "g1", T],
                      "n_pupils": [7, 7, 40, 60, 100], "n_events": [0, 0, 4, 6, 10]})
    out = suppress_table(t, rows="unit", cols="group")
    assert out.published.loc[:1, "n_pupils"].isna().all()
    assert_protected(t, out, "unit", "group")


def test_bridge_is_detected_and_fixed():
    # Two 2x2 blocks of small cells joined by one small cell: every row and column has at
    # least two suppressed cells, so the "one per line" rule adds nothing, but the joining
    # cell (3 pupils) is determined (a "bridge"): rows u0+u1 minus columns g0+g1 leave it
    # alone. The audit must find and protect it.
    pupils = np.array([
        [5, 6, 0, 0, 200],
        [7, 8, 3, 0, 200],
        [0, 0, 4, 5, 200],
        [0, 0, 6, 7, 200],
        [200, 200, 200, 200, 200],
    ])
    events = np.zeros_like(pupils)
    t = two_way(pupils, events, col_margins=True)
    out = suppress_table(t, rows="unit", cols="group")
    assert_protected(t, out, "unit", "group")


# --------------------------------------------------------------------------- attack, random
@st.composite
def tables(draw):
    n_rows = draw(st.integers(2, 5))
    n_cols = draw(st.integers(2, 5))
    cells = st.one_of(st.integers(0, 15), st.integers(10, 400))
    pupils = np.array(draw(st.lists(cells, min_size=n_rows * n_cols,
                                    max_size=n_rows * n_cols))).reshape(n_rows, n_cols)
    fractions = np.array(draw(st.lists(st.sampled_from([0.0, 0.005, 0.02, 0.05, 0.2]),
                                       min_size=n_rows * n_cols,
                                       max_size=n_rows * n_cols))).reshape(n_rows, n_cols)
    extra = np.array(draw(st.lists(st.integers(0, 3), min_size=n_rows * n_cols,
                                   max_size=n_rows * n_cols))).reshape(n_rows, n_cols)
    events = np.minimum(pupils, np.floor(pupils * fractions) + extra * (fractions > 0))
    return pupils, events.astype(int), draw(st.booleans())


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_attack_random_two_way_tables(table):
    pupils, events, col_margins = table
    t = two_way(pupils, events, col_margins=col_margins)
    out = suppress_table(t, rows="unit", cols="group")
    assert_protected(t, out, "unit", "group")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.one_of(st.integers(0, 12), st.integers(10, 300)),
                          st.integers(0, 6)), min_size=1, max_size=8))
def test_attack_random_one_way_tables(cells):
    pupils = [p for p, _ in cells]
    events = [min(p, e) for p, e in cells]
    t = pd.DataFrame({"group": [f"g{i}" for i in range(len(cells))] + [T],
                      "n_pupils": pupils + [sum(pupils)], "n_events": events + [sum(events)]})
    out = suppress_table(t, rows="group")
    assert_protected(t, out, "group", None)


def test_attack_realistic_la_by_ethnicity_table():
    # 30 units x 12 groups with national margins, group sizes spanning small to large.
    rng = np.random.default_rng(config.SEED)
    sizes = np.geomspace(3000, 4, 12)
    pupils = rng.poisson(sizes * rng.lognormal(0, 0.8, (30, 12)))
    events = rng.binomial(pupils, 0.004)
    t = two_way(pupils, events, col_margins=True)
    out = suppress_table(t, rows="unit", cols="group")
    assert_protected(t, out, "unit", "group")
    # not everything is hidden: most of the large cells are published
    big = (t["n_pupils"] >= 500).to_numpy()
    assert out.published["n_pupils"].notna()[big].mean() > 0.9


# --------------------------------------------------------------------------- validation
def test_margin_that_does_not_add_up_is_rejected():
    t = pd.DataFrame({"group": ["a", "b", T], "n_pupils": [100, 200, 301],
                      "n_events": [1, 5, 6]})
    with pytest.raises(ValidationError, match="add up to 300 but the total is 301"):
        suppress_table(t, rows="group")


def test_bad_inputs_are_rejected():
    t = pd.DataFrame({"group": ["a", "a"], "n_pupils": [10, 20], "n_events": [1, 2]})
    with pytest.raises(ValidationError, match="share their key"):
        suppress_table(t, rows="group")
    t = pd.DataFrame({"group": ["a", "b"], "n_pupils": [10, 20], "n_events": [11, 2]})
    with pytest.raises(ValidationError, match="cannot exceed"):
        suppress_table(t, rows="group")
    t = pd.DataFrame({"group": ["a", "b"], "n_pupils": [10, 20], "n_events": ["c", 2]})
    with pytest.raises(ValidationError, match="not numbers"):
        suppress_table(t, rows="group")
    with pytest.raises(ValidationError, match="'events' is missing"):
        suppress_table(t, rows="group", n_events="events")
