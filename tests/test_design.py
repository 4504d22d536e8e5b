"""Tests for disparity.design: design matrices, group and slope terms, counterfactual rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from disparity.design import build_design, counterfactual_X
from disparity.errors import DataWarning, SpecError, ValidationError
from disparity.spec import ModelSpec


def cells() -> pd.DataFrame:
    """Two LAs; establishment numbers repeat across LAs (DfE's ``estab`` is numbered within
    each LA), so nesting must combine them."""
    return pd.DataFrame(
        {
            "la": ["E1", "E1", "E1", "E1", "E2", "E2", "E2", "E2"],
            "estab": ["s1", "s1", "s2", "s2", "s1", "s1", "s3", "s3"],
            "trust": ["T1", "T2", "T1", "T2", "T1", "T2", "T1", "T2"],
            "ethnicity": [
                "Indian",
                "White British",
                "Black Caribbean",
                "White British",
                "Indian",
                "White British",
                "Black Caribbean",
                "White British",
            ],
            "sen": ["none", "ehcp", "none", "support", "ehcp", "none", "support", "none"],
            "n_perm_excl": [1, 2, 0, 1, 3, 0, 1, 2],
            "n_pupils": [10, 20, 30, 40, 50, 60, 70, 80],
        }
    )


def factorial() -> pd.DataFrame:
    """Every combination of three ethnic groups, three SEN levels and two LAs."""
    rows = [
        (la, eth, sen)
        for la in ("E1", "E2")
        for eth in ("White British", "Indian", "Black Caribbean")
        for sen in ("none", "support", "ehcp")
    ]
    frame = pd.DataFrame(rows, columns=["la", "ethnicity", "sen"])
    frame["n_perm_excl"] = np.arange(len(frame)) % 3
    frame["n_pupils"] = 10 + np.arange(len(frame))
    return frame


SPEC = ModelSpec(formula="ethnicity + sen", groups=("la/estab", "trust"))


def test_reference_first_and_treatment_columns():
    design = build_design(SPEC.replace(reference={"sen": "support"}), cells())
    # ethnicity: package default reference (White British); others in DfE order.
    assert design.levels["ethnicity"] == ("White British", "Indian", "Black Caribbean")
    assert design.levels["sen"] == ("support", "none", "ehcp")
    assert design.terms == (
        "Intercept",
        "ethnicity[T.Indian]",
        "ethnicity[T.Black Caribbean]",
        "sen[T.none]",
        "sen[T.ehcp]",
    )
    # The first row is Indian with sen "none": written out by hand.
    np.testing.assert_array_equal(design.X[0], [1, 1, 0, 1, 0])
    # A White British, support row is the reference: intercept only.
    np.testing.assert_array_equal(design.X[3], [1, 0, 0, 0, 0])
    assert design.reference == {"ethnicity": "White British", "sen": "support"}
    np.testing.assert_array_equal(design.events, [1, 2, 0, 1, 3, 0, 1, 2])
    np.testing.assert_array_equal(design.trials, [10, 20, 30, 40, 50, 60, 70, 80])
    assert design.X.dtype == np.float64


def test_nested_and_crossed_group_terms():
    design = build_design(SPEC, cells())
    assert [g.name for g in design.groups] == ["la", "estab", "trust"]
    la, school, trust = design.groups
    assert la.levels == ("E1", "E2") and la.parent is None and la.columns == ("la",)
    assert la.index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # "s1" in E1 and "s1" in E2 are different schools.
    assert school.levels == ("E1/s1", "E1/s2", "E2/s1", "E2/s3")
    assert school.columns == ("la", "estab") and school.parent == "la"
    assert school.index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert trust.levels == ("T1", "T2") and trust.parent is None
    assert trust.index.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert design.group("estab") is school


def test_slope_term_indices_point_at_the_variable_columns():
    spec = SPEC.replace(formula="sen + ethnicity", slopes={"ethnicity": "la"})
    design = build_design(spec, cells())
    (slope,) = design.slopes
    assert slope.group == "la" and slope.variable == "ethnicity"
    assert slope.columns == (3, 4)
    assert slope.terms == ("ethnicity[T.Indian]", "ethnicity[T.Black Caribbean]")
    assert tuple(design.terms[i] for i in slope.columns) == slope.terms


def test_slope_variable_must_be_a_main_effect():
    spec = ModelSpec(formula="ethnicity:sen", groups=("la",), slopes={"ethnicity": "la"})
    with pytest.raises(SpecError, match="not a main effect"):
        build_design(spec, factorial())


def test_level_without_pupils_is_dropped_with_a_note():
    frame = cells()
    frame["sen"] = pd.Categorical(frame["sen"], categories=["none", "support", "ehcp", "unknown"])
    with pytest.warns(DataWarning, match="'unknown'"):
        design = build_design(SPEC, frame)
    assert design.levels["sen"] == ("none", "support", "ehcp")
    assert not any("unknown" in t for t in design.terms)
    assert any("['unknown'] of 'sen' have no pupils" in n for n in design.notes)


def test_zero_trial_cells_dropped_with_a_warning_and_their_levels_too():
    frame = cells()
    frame.loc[6, "n_pupils"] = 0  # the only Black Caribbean/support row in E2/s3 ...
    frame.loc[6, "n_perm_excl"] = 0
    frame.loc[2, "ethnicity"] = "Indian"  # ... and now the only Black Caribbean row
    with pytest.warns(DataWarning) as record:
        design = build_design(SPEC, frame)
    messages = [str(w.message) for w in record]
    assert any("dropped 1 of 8 cells with 0 n_pupils" in m for m in messages)
    assert any("['Black Caribbean'] of 'ethnicity' have no pupils" in m for m in messages)
    assert design.n_cells == 7
    assert design.trials.sum() == 360 - 70  # pupils conserved apart from the dropped cell
    assert "ethnicity[T.Black Caribbean]" not in design.terms
    assert len(design.notes) == 2


def test_events_without_pupils_refused():
    frame = cells()
    frame.loc[6, "n_pupils"] = 0
    with pytest.raises(ValidationError, match="events but 'n_pupils' is 0.*row 7 of 8"):
        build_design(SPEC.replace(family="poisson"), frame)


def test_one_level_group_refused():
    frame = cells()
    frame["la"] = "E1"
    with pytest.raises(SpecError) as info:
        build_design(ModelSpec(formula="sen", groups=("la",)), frame)
    message = str(info.value)
    assert "group term 'la'" in message and "only one level ('E1')" in message
    assert "remove 'la' from [model] groups" in message


def test_missing_values_named_by_column_and_row():
    frame = cells()
    frame.loc[[2, 5], "sen"] = None
    frame.loc[3, "estab"] = None
    with pytest.raises(ValidationError) as info:
        build_design(SPEC, frame)
    message = str(info.value)
    assert "2 problems" in message  # rows numbered from 1: frame rows 2 and 5 are rows 3, 6
    assert "column 'sen': 2 rows have missing values (rows 3, 6 of 8)" in message
    assert "column 'estab': 1 row has missing values (row 4 of 8)" in message


def test_events_above_trials_refused_for_binomial():
    frame = cells()
    frame.loc[0, "n_perm_excl"] = 11
    with pytest.raises(ValidationError, match="more events than trials.*row 1 of 8"):
        build_design(SPEC, frame)
    # A count family allows several events per pupil.
    design = build_design(SPEC.replace(family="poisson"), frame)
    assert design.events[0] == 11


def test_reference_level_without_pupils_refused():
    frame = cells()
    frame.loc[frame["sen"] == "ehcp", "n_pupils"] = 0
    frame.loc[frame["sen"] == "ehcp", "n_perm_excl"] = 0
    spec = SPEC.replace(reference={"sen": "ehcp"})
    with pytest.warns(DataWarning), pytest.raises(SpecError, match="has no pupils"):
        build_design(spec, frame)


def test_numeric_column_with_reference_is_categorical():
    frame = pd.DataFrame(
        {
            "period": [1, 2, 3, 4, 1, 2, 3, 4],
            "herd": [1, 1, 1, 1, 10, 10, 10, 10],
            "incidence": [2, 3, 4, 0, 3, 1, 1, 0],
            "size": [14, 12, 9, 5, 22, 18, 21, 20],
        }
    )
    spec = ModelSpec(
        events="incidence",
        trials="size",
        formula="period",
        groups=("herd",),
        reference={"period": "1"},
    )
    design = build_design(spec, frame)
    assert design.terms == ("Intercept", "period[T.2]", "period[T.3]", "period[T.4]")
    assert design.group("herd").levels == ("1", "10")  # numeric order, written as text
    numeric = build_design(spec.replace(reference={}), frame)
    assert numeric.terms == ("Intercept", "period")


def test_collinear_columns_refused():
    frame = cells()
    frame["sen2"] = frame["sen"]
    with pytest.raises(SpecError, match="linear combination"):
        build_design(ModelSpec(formula="sen + sen2"), frame)


def test_counterfactual_X_sets_every_row():
    design = build_design(SPEC, cells())
    X = counterfactual_X(design, "ethnicity", "Black Caribbean")
    assert X.shape == design.X.shape
    col = design.terms.index("ethnicity[T.Black Caribbean]")
    other = design.terms.index("ethnicity[T.Indian]")
    assert (X[:, col] == 1).all() and (X[:, other] == 0).all()
    # Columns of other variables are untouched.
    sen_cols = [i for i, t in enumerate(design.terms) if t.startswith("sen")]
    np.testing.assert_array_equal(X[:, sen_cols], design.X[:, sen_cols])
    reference = counterfactual_X(design, "ethnicity", "White British")
    assert (reference[:, [col, other]] == 0).all()
    with pytest.raises(SpecError, match="levels are"):
        counterfactual_X(design, "ethnicity", "Chinese")


def test_counterfactual_X_follows_interactions():
    design = build_design(ModelSpec(formula="ethnicity * sen"), factorial())
    X = counterfactual_X(design, "sen", "ehcp")
    names = list(design.terms)
    inter = names.index("ethnicity[T.Indian]:sen[T.ehcp]")
    indian = names.index("ethnicity[T.Indian]")
    np.testing.assert_array_equal(X[:, inter], design.X[:, indian])
