"""Tests for disparity.spec: reading, checking and changing model specifications."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

from disparity.errors import ReadError, SpecError
from disparity.spec import (
    DEFAULT_PRIORS,
    ModelSpec,
    check_spec_against_data,
    formula_variables,
    group_term_names,
    load_spec,
    spec_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
[data]
path = "cells.csv"

[model]
family = "binomial"
events = "n_perm_excl"
trials = "n_pupils"
formula = "ethnicity + sen"
groups = ["la/school"]
slopes = { ethnicity = "la" }

[model.reference]
ethnicity = "White British"
sen = "none"

[fit]
engine = "pymc"
seed = 7
draws = 200
chains = 2
sampler = "nutpie"
noncentered = { school = false }

[fit.pymc]
cores = 1

[priors]
group_sd = 0.5

[report]
ci_prob = 0.9
title = "Exclusions"

[[ladder]]
name = "raw"
formula = "ethnicity"
"""


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def cells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "la": ["A", "A", "B", "B"],
            "school": ["1", "2", "3", "4"],
            "ethnicity": ["White British", "Black Caribbean", "White British", "Indian"],
            "sen": ["none", "ehcp", "support", "none"],
            "n_perm_excl": [1, 2, 0, 1],
            "n_pupils": [100, 20, 80, 50],
        }
    )


def test_load_spec_reads_every_table(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.name == "m"
    assert spec.source == tmp_path / "m.toml"
    assert spec.data_path == tmp_path / "cells.csv"  # relative to the model file
    assert spec.family == "binomial"
    assert spec.formula == "ethnicity + sen"
    assert spec.groups == ("la/school",)
    assert spec.group_terms == ("la", "school")
    assert dict(spec.slopes) == {"ethnicity": "la"}
    assert dict(spec.reference) == {"ethnicity": "White British", "sen": "none"}
    assert (spec.engine, spec.seed, spec.draws, spec.chains, spec.tune) == ("pymc", 7, 200, 2, None)
    assert spec.sampler == "nutpie"
    assert spec.is_noncentered("la") and not spec.is_noncentered("school")
    assert spec.engine_option("pymc", "cores") == 1
    assert spec.priors["group_sd"] == 0.5
    assert spec.priors["coef_sd"] == DEFAULT_PRIORS["coef_sd"] == 1.0
    assert spec.ci_prob == 0.9
    assert spec.report["title"] == "Exclusions"
    assert spec.ladder[0]["name"] == "raw"


def test_cbpp_model_file_loads():
    spec = load_spec(ROOT / "models" / "cbpp.toml")
    assert (spec.family, spec.events, spec.trials, spec.formula) == (
        "binomial",
        "incidence",
        "size",
        "period",
    )
    assert spec.groups == ("herd",) and spec.engine == "ml"
    assert spec.data_path == ROOT / "data" / "cbpp.csv"
    assert spec.data_path.is_file()


def test_spec_is_frozen_and_replace_makes_a_new_one():
    spec = ModelSpec(formula="sen")
    other = spec.replace(family="poisson", groups=["la"])
    assert spec.family == "binomial" and other.family == "poisson"
    assert other.groups == ("la",)
    with pytest.raises(AttributeError):
        spec.family = "poisson"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.reference["sen"] = "none"  # type: ignore[index]
    with pytest.raises(SpecError, match="did you mean 'family'"):
        spec.replace(famly="poisson")


def test_spec_pickles(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_unknown_key_names_the_nearest_valid_key(tmp_path):
    text = GOOD.replace('family = "binomial"', 'famly = "binomial"').replace(
        "seed = 7", "sed = 7"
    )
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    message = str(info.value)
    assert "unknown key 'famly' in [model] (did you mean 'family'?)" in message
    assert "unknown key 'sed' in [fit] (did you mean 'seed'?)" in message
    assert "[model] family is required" in message
    assert "3 problems" in message  # all collected, not the first only


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, '[model]\nfamily = "binomial"\nevents = n_perm_excl\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message


def test_missing_file_is_a_read_error(tmp_path):
    with pytest.raises(ReadError, match="not found"):
        load_spec(tmp_path / "absent.toml")


def test_bad_family_lists_valid_ones():
    with pytest.raises(SpecError) as info:
        spec_from_dict({"model": {"family": "binomal", "events": "e", "formula": "x"}})
    message = str(info.value)
    assert "'binomal' is not known (did you mean 'binomial'?)" in message
    assert "'binomial', 'poisson', 'negative_binomial'" in message


def test_bad_engine_and_sampler_list_valid_ones():
    with pytest.raises(SpecError) as info:
        spec_from_dict(
            {
                "model": {"family": "poisson", "events": "e", "formula": "x"},
                "fit": {"engine": "stan", "sampler": "nuts"},
            }
        )
    message = str(info.value)
    assert "'ml', 'pymc', 'glm'" in message
    assert "'auto', 'pymc', 'nutpie', 'numpyro'" in message


@pytest.mark.parametrize(
    ("fit", "expected"),
    [
        ({"seed": "1"}, "seed must be a whole number from 0 to 4294967295"),
        ({"draws": 0}, "draws must be an integer >= 1"),
        ({"chains": 2.5}, "chains must be an integer >= 1"),
        ({"target_accept": 1.5}, "target_accept must be a number between 0 and 1"),
        ({"noncentered": {"schol": False}}, "did you mean 'school'"),
    ],
)
def test_fit_types_checked(fit, expected):
    d = {
        "model": {"family": "binomial", "events": "e", "formula": "x", "groups": ["la/school"]},
        "fit": fit,
    }
    with pytest.raises(SpecError, match=expected):
        spec_from_dict(d)


def test_model_types_checked():
    d = {
        "model": {
            "family": "binomial",
            "events": 3,
            "formula": "n ~ x",
            "groups": "la",
            "slopes": {"x": "region"},
        },
        "priors": {"group_sd": -1, "coef_sd2": 1},
        "report": {"ci_prob": 95},
    }
    with pytest.raises(SpecError) as info:
        spec_from_dict(d)
    message = str(info.value)
    assert "events must be a column name" in message
    assert "the response 'n' is a count, but family is 'binomial'" in message
    assert "groups must be a list of strings, e.g. groups = ['la']" in message
    assert "'region', which is not a group term" in message
    assert "group_sd must be a positive number" in message
    assert "unknown key 'coef_sd2' in [priors] (did you mean 'coef_sd'?)" in message
    assert "ci_prob must be a number between 0 and 1" in message


def test_group_term_names_nested_and_crossed():
    assert group_term_names(["region/la/school", "trust"]) == ("region", "la", "school", "trust")


def test_formula_variables_skip_functions():
    assert formula_variables("C(sen) + log(age) + ethnicity:fsm") == (
        "sen",
        "age",
        "ethnicity",
        "fsm",
    )


def test_spec_against_data_names_missing_formula_column():
    spec = ModelSpec(formula="ethnicity + fsm", groups=("la/school",))
    with pytest.raises(SpecError) as info:
        check_spec_against_data(spec, cells())
    message = str(info.value)
    assert "formula column 'fsm' is not in the data" in message
    assert "'ethnicity'" in message and "'n_pupils'" in message  # lists what exists


def test_spec_against_data_names_missing_reference_level():
    spec = ModelSpec(formula="sen", reference={"sen": "None"})
    with pytest.raises(SpecError) as info:
        check_spec_against_data(spec, cells())
    message = str(info.value)
    assert "reference level 'None' of 'sen' is not in the data (did you mean 'none'?)" in message
    assert "'ehcp', 'none', 'support'" in message


def test_spec_against_data_collects_every_problem():
    spec = ModelSpec(
        formula="sen",
        events="n_susp",
        groups=("la/schol",),
        slopes={"ethnicity": "la"},
        reference={"sex": "female"},
    )
    with pytest.raises(SpecError) as info:
        check_spec_against_data(spec, cells())
    message = str(info.value)
    assert "events column 'n_susp'" in message
    assert (
        "group ('la/schol') column 'schol' is not in the data (did you mean 'school'?)" in message
    )
    assert "slope variable 'ethnicity' is not in the formula" in message
    assert "reference column 'sex'" in message
    assert "4 problems" in message


# --------------------------------------------------------------------------- [data] options
DFE_DATA = """
[data]
path = "../data/dfe/exclusions_by_characteristic_la_national.csv.gz"
kind = "dfe"
by = "ethnicity"
unit = "la"
year = "2016/17"
school_type = "Total"

[model]
family = "binomial"
events = "n_perm_excl"
trials = "n_pupils"
formula = "ethnicity"
"""


def test_data_table_reads_every_dfe_key(tmp_path):
    spec = load_spec(write(tmp_path, DFE_DATA))
    assert dict(spec.data_options) == {"kind": "dfe", "by": "ethnicity", "unit": "la",
                                       "year": "2016/17", "school_type": "Total"}
    assert spec.data_path == (tmp_path.parent / "data" / "dfe"
                              / "exclusions_by_characteristic_la_national.csv.gz")
    with pytest.raises(TypeError):
        spec.data_options["kind"] = "cells"  # frozen like every other table


def test_data_table_pupils_keys_and_integer_year():
    spec = spec_from_dict({"data": {"path": "p.parquet", "kind": "pupils", "year": 201617,
                                    "collapse_by": ["sen", "la"]},
                           "model": {"family": "binomial", "events": "n_perm_excl",
                                     "formula": "sen"}})
    assert spec.data_options["collapse_by"] == ("sen", "la")
    assert spec.data_options["year"] == "201617"


def test_data_table_without_options_is_unchanged():
    spec = spec_from_dict({"data": {"path": "cells.csv"}, "model": {
        "family": "binomial", "events": "n_perm_excl", "formula": "sen"}})
    assert dict(spec.data_options) == {}


def test_unknown_data_key_names_the_nearest_valid_key(tmp_path):
    text = DFE_DATA.replace('year = "2016/17"', 'yaer = "2016/17"')
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    assert "unknown key 'yaer' in [data] (did you mean 'year'?)" in str(info.value)
    assert "'collapse_by'" in str(info.value)  # the valid keys are listed


def test_bad_data_values_are_all_listed():
    d = {"data": {"kind": "pupil", "unit": "county", "by": 3, "collapse_by": "sen"},
         "model": {"family": "binomial", "events": "n_perm_excl", "formula": "sen"}}
    with pytest.raises(SpecError) as info:
        spec_from_dict(d)
    message = str(info.value)
    assert "[data] kind 'pupil' is not known (did you mean 'pupils'?)" in message
    assert "'dfe', 'pupils', 'cells'" in message
    assert "[data] unit 'county' is not known" in message and "'la'" in message
    assert "[data] by must be a string" in message
    assert "[data] collapse_by must be a non-empty list" in message
    assert "4 problems" in message


def test_data_keys_of_another_kind_are_refused():
    d = {"data": {"kind": "pupils", "by": "ethnicity", "unit": "la"},
         "model": {"family": "binomial", "events": "n_perm_excl", "formula": "sen"}}
    with pytest.raises(SpecError) as info:
        spec_from_dict(d)
    message = str(info.value)
    assert "[data] by applies to kind 'dfe' only, but kind is 'pupils'" in message
    assert "[data] unit applies to kind 'dfe' only" in message
    d["data"] = {"kind": "dfe", "collapse_by": ["sen"]}
    with pytest.raises(SpecError, match="collapse_by applies to kind 'pupils' only"):
        spec_from_dict(d)


def test_shipped_model_files_load():
    for path in sorted((ROOT / "models").glob("*.toml")):
        spec = load_spec(path)
        assert spec.description, path  # each says what it is
        assert spec.data_path is not None and spec.data_path.is_file(), path


def test_data_keep_table_is_read_and_checked():
    base = {"model": {"family": "binomial", "events": "n_perm_excl", "formula": "sen"}}
    spec = spec_from_dict({**base, "data": {"keep": {"sen": ["none", "ehcp"], "year": [2016]}}})
    assert spec.data_options["keep"] == {"sen": ("none", "ehcp"), "year": ("2016",)}
    for bad in ({"sen": "none"}, {"sen": []}, ["sen"]):
        with pytest.raises(SpecError, match="keep must be a table of non-empty lists"):
            spec_from_dict({**base, "data": {"keep": bad}})
