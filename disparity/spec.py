"""Model specifications: a TOML model file read into a frozen :class:`ModelSpec`.

A model file says what is modelled (family, events out of trials, fixed effects, grouping
factors, varying slopes, reference levels), how it is fitted (engine, seed, sampler
settings), the priors of the Bayesian engine and the settings of the report::

    [data]
    path = "cells.csv"            # CSV or Parquet, relative to the model file
    kind = "cells"                # optional: dfe | pupils | cells (default: told from columns)
    year = "2016/17"              # optional: keep one academic year
    keep = { sen = ["none", "support"] }   # optional: keep only rows at these levels
    [model]
    family = "binomial"           # binomial | poisson | negative_binomial
    events = "n_perm_excl"
    trials = "n_pupils"
    formula = "ethnicity + sen + fsm + cin"
    groups = ["la/school"]        # "a/b" nested; several entries are crossed
    slopes = { ethnicity = "la" }
    [model.reference]
    ethnicity = "White British"
    [fit]
    engine = "ml"                 # ml | pymc | glm
    seed = 1
    [priors]
    group_sd = 1.0
    [report]
    ci_prob = 0.95

A DfE open-data file is read with ``kind = "dfe"`` (or detected) and cut to cells with
``by`` (the characteristic), ``unit`` (geographic unit), ``year`` and ``school_type``; a
pupils file is collapsed to cells by the model's columns (or ``collapse_by``). See
:func:`disparity.fitting.load_model_data`.

Reading checks every key and value and raises one :class:`~disparity.errors.SpecError`
listing every problem found, each naming the key, what was found and the valid choices
(with the nearest valid key for a misspelt one). :func:`check_spec_against_data` then checks
the columns and levels the specification names against a data frame.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields, replace as _dc_replace
from pathlib import Path
from typing import Any, Mapping

from disparity import config, vocabulary
from disparity.errors import ReadError, SpecError

class FrozenMap(dict):
    """A read-only ``dict`` (picklable, unlike :class:`types.FrozenMap`).

    Examples
    --------
    >>> m = FrozenMap({"a": 1})
    >>> m["a"]
    1
    >>> m["b"] = 2
    Traceback (most recent call last):
    ...
    TypeError: FrozenMap is read-only; make a new one (spec.replace(...))
    """

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("FrozenMap is read-only; make a new one (spec.replace(...))")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items())))


# --------------------------------------------------------------------------- vocabularies
FAMILIES: tuple[str, ...] = ("binomial", "poisson", "negative_binomial")
ENGINES: tuple[str, ...] = ("ml", "pymc", "glm")
SAMPLERS: tuple[str, ...] = ("auto", "pymc", "nutpie", "numpyro")
#: Largest seed numpy's and the samplers' generators all take (2**32 - 1).
MAX_SEED: int = 2**32 - 1

#: Weakly-informative prior defaults of the Bayesian engine (link scale):
#: ``intercept_sd`` Normal(logit/log crude rate, 2.5) on the intercept; ``coef_sd`` Normal(0, 1)
#: on each fixed effect; ``group_sd`` HalfNormal(1) on each random-intercept SD; ``slope_sd``
#: HalfNormal(0.5) on each varying-slope SD; ``dispersion_shape``/``dispersion_rate``
#: Gamma(2, 0.1) on the negative-binomial ``alpha``.
DEFAULT_PRIORS: Mapping[str, float] = FrozenMap(
    {
        "intercept_sd": 2.5,
        "coef_sd": 1.0,
        "group_sd": 1.0,
        "slope_sd": 0.5,
        "dispersion_shape": 2.0,
        "dispersion_rate": 0.1,
    }
)

_TOP_KEYS = ("name", "description", "data", "model", "fit", "priors", "report", "ladder",
             "chain")
_DATA_KEYS = ("path", "kind", "by", "unit", "year", "school_type", "collapse_by", "keep",
              "suppressed", "suppressed_range", "where", "table")
#: What to do with a count suppressed at source (``[data] suppressed``).
SUPPRESSED_CHOICES: tuple[str, ...] = ("censored", "drop")
#: Kinds of data a model file may name in ``[data] kind``.
DATA_KINDS: tuple[str, ...] = ("dfe", "pupils", "cells")
#: Geographic units of ``[data] unit`` (DfE files).
DATA_UNITS: tuple[str, ...] = ("national", "region", "la", "school")
#: ``[data]`` keys that apply to one kind only.
_DATA_KEY_KINDS: Mapping[str, tuple[str, ...]] = {
    "by": ("dfe",),
    "unit": ("dfe",),
    "school_type": ("dfe",),
    "collapse_by": ("pupils",),
    "where": ("pupils",),
}
_MODEL_KEYS = ("family", "events", "trials", "formula", "groups", "slopes", "reference")
_FIT_KEYS = (
    "engine",
    "seed",
    "draws",
    "tune",
    "chains",
    "sampler",
    "target_accept",
    "noncentered",
) + ENGINES  # [fit.ml], [fit.pymc], [fit.glm]: engine options, passed through


@dataclass(frozen=True)
class ModelSpec:
    """A model, as a value: what is modelled, how it is fitted, and its report settings.

    Attributes
    ----------
    name : str
        Model name (the model file's stem).
    source : Path or None
        The TOML file it came from.
    data_path : Path, str or None
        Cells, pupils or DfE file (or folder or glob of Parquet files), resolved relative to
        the model file; or a database URL (``duckdb://PATH``, any Ibis URL) as a string.
    data_options : mapping
        The other ``[data]`` keys: ``kind`` (``"dfe"``, ``"pupils"`` or ``"cells"``; absent:
        told from the file's columns), ``by``, ``unit``, ``school_type`` (DfE files),
        ``year`` (keep one academic year), ``collapse_by`` (pupils: a tuple of columns) and
        ``keep`` (``{column: tuple of levels}``: keep only rows at those levels).
    family : str
        ``"binomial"``, ``"poisson"`` or ``"negative_binomial"``.
    events : str
        Column counting events (``"n_perm_excl"``).
    trials : str
        Column of trials (binomial) or exposure (count families), usually ``"n_pupils"``.
    formula : str
        Fixed effects, right-hand side of a patsy formula (``"ethnicity + sen"``).
    groups : tuple of str
        Random-intercept entries as written: ``"la/school"`` is schools nested in LAs;
        several entries are crossed.
    slopes : mapping of str to str
        ``{variable: group term}``: the variable's effects vary by that group term.
    reference : mapping of str to str
        Reference level of each categorical variable. A numeric column named here is
        treated as categorical (its levels are written as text).
    priors : mapping of str to float
        Prior scales of the Bayesian engine; see :data:`DEFAULT_PRIORS`.
    engine : str
        ``"ml"``, ``"pymc"`` or ``"glm"``.
    seed : int
    draws, tune, chains : int
        Posterior draws and tuning steps per chain, and the number of chains. ``tune``
        None (the default) is the sampler's own default: 300 for nutpie on the compiled
        cell density, 1000 for PyMC's and numpyro's NUTS (see
        :func:`disparity.engines.pymc.default_tune`).
    sampler : str
        ``"auto"``, ``"pymc"``, ``"nutpie"`` or ``"numpyro"``.
    target_accept : float or None
        Target mean acceptance of NUTS's step-size adaptation; None (the default) is 0.9,
        or 0.8 for a model of at least 10,000 parameters on the compiled cell density
        (:func:`disparity.engines.pymc.default_target_accept`).
    noncentered : mapping of str to bool
        Per group term name; a term not named is non-centred.
    engine_options : mapping of str to mapping
        The ``[fit.ml]``, ``[fit.pymc]`` and ``[fit.glm]`` tables, passed to the engines.
    ci_prob : float
        Probability of reported intervals (``[report] ci_prob``).
    report : mapping
        The raw ``[report]`` table.
    ladder : tuple of mapping
        The raw ``[[ladder]]`` entries.
    chain : tuple of mapping
        The ``[[chain]]`` stages (``name``, ``events``, optional ``where``), checked by
        :func:`disparity.chain.check_chain`.
    description : str
        Free text from the model file.

    Examples
    --------
    >>> spec = ModelSpec(name="m", family="binomial", events="n_perm_excl",
    ...                  trials="n_pupils", formula="sen")
    >>> spec.replace(family="poisson").family
    'poisson'
    >>> spec.group_terms
    ()
    """

    name: str = "model"
    source: Path | None = None
    data_path: Path | str | None = None
    data_options: Mapping[str, Any] = field(default_factory=lambda: FrozenMap({}))
    family: str = "binomial"
    events: str = vocabulary.events_column(vocabulary.PERM_EXCL)
    trials: str = vocabulary.N_PUPILS
    formula: str = "1"
    groups: tuple[str, ...] = ()
    slopes: Mapping[str, str] = field(default_factory=lambda: FrozenMap({}))
    reference: Mapping[str, str] = field(default_factory=lambda: FrozenMap({}))
    priors: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PRIORS)
    engine: str = "ml"
    seed: int = config.SEED
    draws: int = 1000
    tune: int | None = None
    chains: int = 4
    sampler: str = "auto"
    target_accept: float | None = None
    noncentered: Mapping[str, bool] = field(default_factory=lambda: FrozenMap({}))
    engine_options: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: FrozenMap({})
    )
    ci_prob: float = config.CI_PROB
    report: Mapping[str, Any] = field(default_factory=lambda: FrozenMap({}))
    ladder: tuple[Mapping[str, Any], ...] = ()
    chain: tuple[Mapping[str, str], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        # The same rules as a model file (SCHEMA), so ModelSpec(groups="la") or
        # family="binomal" is refused here, naming the field and the nearest valid value.
        problems = [p for p in (check_field(f, getattr(self, f)) for f in SCHEMA)
                    if p is not None]
        if problems:
            _raise([p.replace("[model] ", "").replace("[fit] ", "").replace("[report] ", "")
                    .replace("[priors]", "priors") for p in problems], "ModelSpec")
        # Normalise containers so a spec made in Python is as immutable as one read from TOML.
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "ladder", tuple(FrozenMap(x) for x in self.ladder))
        object.__setattr__(self, "chain", tuple(FrozenMap(x) for x in self.chain))
        for name in ("slopes", "reference", "noncentered", "report", "data_options"):
            object.__setattr__(self, name, FrozenMap(getattr(self, name)))
        object.__setattr__(self, "priors", FrozenMap({**DEFAULT_PRIORS, **self.priors}))
        object.__setattr__(
            self,
            "engine_options",
            FrozenMap({k: FrozenMap(v) for k, v in self.engine_options.items()}),
        )
        if self.source is not None:
            object.__setattr__(self, "source", Path(self.source))
        if self.data_path is not None and "://" not in str(self.data_path):
            object.__setattr__(self, "data_path", Path(self.data_path))

    def replace(self, **changes: Any) -> ModelSpec:
        """A new specification with ``changes`` applied (the original is unchanged).

        Examples
        --------
        >>> ModelSpec(formula="sen").replace(groups=("la/school",)).group_terms
        ('la', 'school')
        """
        valid = {f.name for f in fields(self)}
        unknown = [k for k in changes if k not in valid]
        if unknown:
            raise SpecError(
                "ModelSpec has no field "
                + ", ".join(f"{k!r}{_suggest(k, valid)}" for k in unknown)
                + f"; fields are {', '.join(sorted(valid))}"
            )
        return _dc_replace(self, **changes)

    @property
    def group_terms(self) -> tuple[str, ...]:
        """Names of the random-intercept terms, in order (``"la/school"`` gives two)."""
        return group_term_names(self.groups)

    def prior(self, key: str) -> float:
        """Prior scale ``key``, falling back to :data:`DEFAULT_PRIORS`."""
        if key in self.priors:
            return float(self.priors[key])
        return float(DEFAULT_PRIORS[key])

    def is_noncentered(self, term: str) -> bool:
        """Whether group term ``term`` is non-centred (the default)."""
        return bool(self.noncentered.get(term, True))

    def engine_option(self, engine: str, key: str, default: Any = None) -> Any:
        """Option ``key`` of ``[fit.<engine>]``, or ``default``."""
        return self.engine_options.get(engine, {}).get(key, default)


# --------------------------------------------------------------------------- helpers
def group_term_names(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Names of the group terms made by ``groups`` entries.

    A nested entry ``"la/school"`` makes two terms, ``la`` and ``school``; each entry of the
    list is a crossed factor.

    Examples
    --------
    >>> group_term_names(["la/school", "trust"])
    ('la', 'school', 'trust')
    """
    names: list[str] = []
    for entry in groups:
        names.extend(p.strip() for p in str(entry).split("/"))
    return tuple(names)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choices(choices: Any) -> str:
    return ", ".join(repr(c) for c in choices)


def _unknown_keys(table: Mapping[str, Any], valid: tuple[str, ...], where: str) -> list[str]:
    problems = []
    for key in table:
        if key not in valid:
            problems.append(
                f"unknown key {key!r} in {where}{_suggest(key, valid)}; "
                f"valid keys are {_choices(valid)}"
            )
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def formula_variables(formula: str) -> tuple[str, ...]:
    """Data columns named by a formula's fixed effects, in order of appearance.

    The formula is parsed by :mod:`disparity.formula` (never evaluated); transforms
    (``log``, ``I``, ``C``) are not columns; ``Q("a name")`` is.

    Raises
    ------
    SpecError
        The formula is outside the formula grammar.

    Examples
    --------
    >>> formula_variables("ethnicity + sen:fsm + C(cin) + log(age)")
    ('ethnicity', 'sen', 'fsm', 'cin', 'age')
    """
    from disparity.formula import formula_columns

    return formula_columns(formula)


# --------------------------------------------------------------------------- the schema
# One declared rule per field of ModelSpec: where a model file sets it, and the check of its
# value. spec_from_dict (a model file, or disparity.fit's keywords) and ModelSpec itself (a
# spec built in Python, or changed with .replace) use the same rules, so a spec is checked
# the same way wherever it comes from.
def _choice(choices: tuple[str, ...], what: str) -> Any:
    def check(v: Any) -> str | None:
        if v in choices:
            return None
        return (f"{v!r} is not known{_suggest(str(v), choices)}; valid {what} are "
                f"{_choices(choices)}")
    return check


def _whole(low: int, high: int | None = None) -> Any:
    def check(v: Any) -> str | None:
        if _is_int(v) and low <= v and (high is None or v <= high):
            return None
        return (f"must be a whole number from {low} to {high}, not {v!r}" if high is not None
                else f"must be an integer >= {low}, not {v!r}")
    return check


def _or_default(rule: Any) -> Any:
    """``rule``, with None accepted too (the field's engine default, in Python only: TOML
    has no null)."""
    def check(v: Any) -> str | None:
        return None if v is None else rule(v)
    return check


def _open_unit(v: Any) -> str | None:
    return None if _is_number(v) and 0 < v < 1 else f"must be a number between 0 and 1, not {v!r}"


def _column(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else (
        f"must be a column name (a string), not {v!r}")


def _group_entries(v: Any) -> str | None:
    if isinstance(v, str):
        return f"must be a list of strings, e.g. groups = [{v!r}], not a string"
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return f"must be a list of strings such as [\"la/school\"], not {v!r}"
    if any(not part.strip() for x in v for part in x.split("/")):
        return (f"entries {list(v)!r} have an empty part; write \"la/school\" for schools "
                "nested in LAs")
    names = group_term_names(tuple(v))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return (f"name the term(s) {dupes!r} more than once ({list(v)!r}); name each grouping "
                "factor once")
    return None


def _text_map(example: str) -> Any:
    def check(v: Any) -> str | None:
        if isinstance(v, Mapping) and all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items()):
            return None
        return f"must be a table of strings, e.g. {{ ethnicity = {example} }}, not {v!r}"
    return check


def _formula_rule(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        return f"must be a string such as \"sen + fsm\", not {v!r}"
    from disparity.formula import parse_formula

    try:
        parse_formula(v)
    except SpecError as exc:
        return str(exc)
    return None


def _priors_rule(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"must be a table of prior scales, not {v!r}"
    bad = [k for k in v if k not in DEFAULT_PRIORS]
    if bad:
        return (f"has unknown key(s) {bad!r}{_suggest(bad[0], DEFAULT_PRIORS)}; valid keys are "
                f"{_choices(tuple(DEFAULT_PRIORS))}")
    neg = [k for k, x in v.items() if not _is_number(x) or not x > 0]
    if neg:
        return f"{neg[0]} must be a positive number, not {v[neg[0]]!r}"
    return None


#: ModelSpec field -> (where a model file sets it, the check of its value).
SCHEMA: Mapping[str, tuple[str, Any]] = {
    "family": ("[model] family", _choice(FAMILIES, "families")),
    "events": ("[model] events", _column),
    "trials": ("[model] trials", _column),
    "formula": ("[model] formula", _formula_rule),
    "groups": ("[model] groups", _group_entries),
    "slopes": ("[model] slopes", _text_map('"la"')),
    "reference": ("[model] reference", _text_map('"White British"')),
    "engine": ("[fit] engine", _choice(ENGINES, "engines")),
    "sampler": ("[fit] sampler", _choice(SAMPLERS, "samplers")),
    "seed": ("[fit] seed", _whole(0, MAX_SEED)),
    "draws": ("[fit] draws", _whole(1)),
    "tune": ("[fit] tune", _or_default(_whole(0))),
    "chains": ("[fit] chains", _whole(1)),
    "target_accept": ("[fit] target_accept", _or_default(_open_unit)),
    "ci_prob": ("[report] ci_prob", _open_unit),
    "priors": ("[priors]", _priors_rule),
}


def check_field(name: str, value: Any) -> str | None:
    """The problem with a value of a :class:`ModelSpec` field, in words (None if fine).

    Examples
    --------
    >>> check_field("family", "binomal")
    "[model] family 'binomal' is not known (did you mean 'binomial'?); valid families are 'binomial', 'poisson', 'negative_binomial'"
    >>> check_field("seed", 7) is None
    True
    """
    where, rule = SCHEMA[name]
    problem = rule(value)
    if problem is None:
        return None
    return f"{where} {problem}" if not problem.startswith("formula") else f"[model] {problem}"


# --------------------------------------------------------------------------- reading
def load_spec(path: str | Path) -> ModelSpec:
    """Read and check a TOML model file.

    Parameters
    ----------
    path : str or Path
        The model file. ``[data] path`` inside it is resolved relative to its folder.

    Returns
    -------
    ModelSpec
        Named after the file's stem unless the file sets ``name``.

    Raises
    ------
    ReadError
        The file does not exist or cannot be read.
    SpecError
        The TOML is malformed (the message gives the line and column) or the specification
        has problems (all listed at once).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.toml").write_text('[model]\\nfamily = "binomial"\\n'
    ...     'events = "incidence"\\ntrials = "size"\\nformula = "period"\\n')
    >>> load_spec(d / "m.toml").events
    'incidence'
    """
    path = Path(path)
    if not path.is_file():
        raise ReadError(
            f"model file {str(path)!r} not found; give the path of a .toml model file "
            "(see models/ for examples)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadError(f"model file {str(path)!r} could not be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(
            f"model file {str(path)!r} is not valid TOML: {exc}. Fix the syntax there "
            "(strings need double quotes; tables are written [name])."
        ) from None
    name = None if "name" in raw else path.stem  # a name in the file wins (and is checked)
    return spec_from_dict(raw, base_dir=path.parent, name=name, source=path)


def spec_from_dict(
    d: Mapping[str, Any],
    base_dir: str | Path | None = None,
    *,
    name: str | None = None,
    source: str | Path | None = None,
) -> ModelSpec:
    """Check a parsed model file (nested mappings) and make a :class:`ModelSpec`.

    Parameters
    ----------
    d : mapping
        The tables of a model file, as :func:`tomllib.loads` gives them.
    base_dir : str or Path, optional
        Folder ``[data] path`` is relative to (the model file's folder).
    name, source : optional
        Model name (default: ``d["name"]`` or ``"model"``) and originating file.

    Raises
    ------
    SpecError
        Listing every problem found.

    Examples
    --------
    >>> spec = spec_from_dict({"model": {"family": "poisson", "events": "n_susp",
    ...     "trials": "n_pupils", "formula": "sen", "groups": ["la/school"]},
    ...     "fit": {"engine": "glm"}})
    >>> spec.family, spec.groups, spec.engine
    ('poisson', ('la/school',), 'glm')
    """
    where_file = f" in {str(source)!r}" if source is not None else ""
    problems: list[str] = []
    if not isinstance(d, Mapping):
        raise SpecError(f"a model specification must be a table of tables, not {type(d).__name__}")
    problems += _unknown_keys(d, _TOP_KEYS, "the top level")
    kw: dict[str, Any] = {}

    def table(key: str) -> Mapping[str, Any]:
        value = d.get(key, {})
        if not isinstance(value, Mapping):
            problems.append(f"[{key}] must be a table (write it as [{key}]), not {value!r}")
            return {}
        return value

    # -- name / description
    if name is None:
        name = d.get("name", "model")
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, not {name!r}")
        name = "model"
    kw["name"] = name
    description = d.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description must be a string, not {description!r}")
    else:
        kw["description"] = description
    kw["source"] = Path(source) if source is not None else None

    # -- [data]
    data = table("data")
    problems += _unknown_keys(data, _DATA_KEYS, "[data]")
    if "path" in data:
        p = data["path"]
        if not isinstance(p, str) or not p:
            problems.append(f"[data] path must be a string (a file path), not {p!r}")
        elif "://" in p:  # a database URL (duckdb://PATH, postgres://...): kept as written
            scheme, rest = p.split("://", 1)
            if scheme == "duckdb" and rest and not Path(rest).is_absolute() and base_dir:
                rest = os.path.normpath(Path(base_dir) / rest)
            kw["data_path"] = f"{scheme}://{rest}"
        else:
            dp = Path(p)
            if not dp.is_absolute() and base_dir is not None:
                dp = Path(base_dir) / dp
            kw["data_path"] = Path(os.path.normpath(dp))
    data_options, data_problems = _data_options(data)
    problems += data_problems
    kw["data_options"] = FrozenMap(data_options)

    # -- [model]
    model = table("model")
    problems += _unknown_keys(model, _MODEL_KEYS, "[model]")
    parsed = None
    if "formula" in model:
        f = model["formula"]
        if not isinstance(f, str) or not f.strip():
            problems.append(f"[model] formula must be a string such as \"sen + fsm\", not {f!r}")
        else:
            from disparity.formula import parse_formula

            try:
                parsed = parse_formula(f)
            except SpecError as exc:
                problems.append(f"[model] {exc}")
    else:
        problems.append("[model] formula is required")
    response = parsed is not None and parsed.has_response
    if "events" not in model and not response:
        problems.append("[model] events is required (or write the response in the formula, "
                        "e.g. formula = \"p(n_perm_excl, n_pupils) ~ ethnicity\")")
    family = model.get("family")
    if family is None and response:
        if parsed.trials is None:
            problems.append("[model] family is required for a count response (poisson or "
                            "negative_binomial); p(events, trials) in the formula means binomial")
        family = "binomial"
    elif family is None:
        problems.append("[model] family is required")
    if family is not None:
        _take("family", family, kw, problems)
    for key in ("events", "trials"):
        if key in model:
            _take(key, model[key], kw, problems)
    if parsed is not None:
        kw["formula"] = parsed.fixed
        problems += _formula_keys(parsed, model, kw, family)
    groups: tuple[str, ...] = ()
    if "groups" in model:
        g = model["groups"]
        problem = check_field("groups", g)
        if problem is not None:
            problems.append(problem)
        else:
            groups = tuple("/".join(part.strip() for part in x.split("/")) for x in g)
            kw["groups"] = groups
    if parsed is not None and parsed.groups:
        if "groups" in model and tuple(groups) != parsed.groups:
            problems.append(f"[model] groups {list(groups)!r} differ from the random-effects "
                            f"terms of the formula {list(parsed.groups)!r}; give them in one "
                            "place")
        groups = parsed.groups
        kw["groups"] = groups
    term_names = group_term_names(groups)
    for key in ("slopes", "reference"):
        if key in model:
            m = model[key]
            if not isinstance(m, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in m.items()
            ):
                example = '"la"' if key == "slopes" else '"White British"'
                problems.append(
                    f"[model] {key} must be a table of strings, e.g. "
                    f"{{ ethnicity = {example} }}, not {m!r}"
                )
                continue
            kw[key] = FrozenMap(dict(m))
    if parsed is not None:
        for key, found in (("slopes", dict(parsed.slopes)),
                           ("reference", {c: v for c, v in parsed.categorical.items()
                                          if v is not None})):
            if not found:
                continue
            given = dict(kw.get(key, {}))
            clash = {k: (given[k], v) for k, v in found.items() if k in given and given[k] != v}
            if clash:
                problems.append(f"[model] {key} and the formula disagree on "
                                f"{', '.join(f'{k!r} ({a!r} vs {b!r})' for k, (a, b) in clash.items())}"
                                "; give each in one place")
            kw[key] = FrozenMap({**given, **found})
    for var, grp in kw.get("slopes", {}).items():
        if grp not in term_names:
            problems.append(
                f"[model] slopes: {var!r} varies by {grp!r}, which is not a group term"
                f"{_suggest(grp, term_names)}; group terms are "
                f"{_choices(term_names) if term_names else 'none (set [model] groups)'}"
            )

    # -- [fit]
    fit = table("fit")
    problems += _unknown_keys(fit, _FIT_KEYS, "[fit]")
    _take("engine", fit.get("engine", "ml"), kw, problems)
    _take("sampler", fit.get("sampler", "auto"), kw, problems)
    for key in ("seed", "draws", "tune", "chains", "target_accept"):
        if key in fit:
            _take(key, fit[key], kw, problems)
    if "noncentered" in fit:
        nc = fit["noncentered"]
        if isinstance(nc, bool):
            kw["noncentered"] = FrozenMap({t: nc for t in term_names})
        elif isinstance(nc, Mapping) and all(isinstance(v, bool) for v in nc.values()):
            for k in nc:
                if k not in term_names:
                    problems.append(
                        f"[fit] noncentered names {k!r}, which is not a group term"
                        f"{_suggest(k, term_names)}; group terms are "
                        f"{_choices(term_names) if term_names else 'none'}"
                    )
            kw["noncentered"] = FrozenMap(dict(nc))
        else:
            problems.append(
                "[fit] noncentered must be true/false or a table such as { school = false }, "
                f"not {nc!r}"
            )
    options = {}
    for eng in ENGINES:
        if eng in fit:
            if not isinstance(fit[eng], Mapping):
                problems.append(f"[fit.{eng}] must be a table of engine options, not {fit[eng]!r}")
            else:
                options[eng] = FrozenMap(dict(fit[eng]))
    kw["engine_options"] = FrozenMap(options)

    # -- [priors]
    priors = table("priors")
    problems += _unknown_keys(priors, tuple(DEFAULT_PRIORS), "[priors]")
    merged = dict(DEFAULT_PRIORS)
    for key, value in priors.items():
        if key not in DEFAULT_PRIORS:
            continue
        if not _is_number(value) or not value > 0:
            problems.append(f"[priors] {key} must be a positive number, not {value!r}")
        else:
            merged[key] = float(value)
    kw["priors"] = FrozenMap(merged)

    # -- [report], [[ladder]]
    report = table("report")
    kw["report"] = FrozenMap(dict(report))
    if "ci_prob" in report:
        _take("ci_prob", report["ci_prob"], kw, problems)
    ladder = d.get("ladder", [])
    if not isinstance(ladder, list) or not all(isinstance(x, Mapping) for x in ladder):
        problems.append(f"[[ladder]] entries must be tables, not {ladder!r}")
    else:
        kw["ladder"] = tuple(FrozenMap(dict(x)) for x in ladder)

    if "chain" in d:
        from disparity.chain import check_chain

        stages, chain_problems = check_chain(d["chain"])
        problems += chain_problems
        kw["chain"] = stages

    if problems:
        _raise(problems, f"model specification{where_file}")
    return ModelSpec(**kw)


def _take(field: str, value: Any, kw: dict[str, Any], problems: list[str]) -> None:
    """Check a model file's value of a field by :data:`SCHEMA`; keep it or say why not."""
    problem = check_field(field, value)
    if problem is None:
        kw[field] = float(value) if field in ("target_accept", "ci_prob") else value
    else:
        problems.append(problem)


def _formula_keys(parsed: Any, model: Mapping[str, Any], kw: dict[str, Any],
                  family: Any) -> list[str]:
    """Take the response of a full formula into ``kw``; problems where it clashes with the
    ``events``/``trials`` keys or the family."""
    problems: list[str] = []
    if not parsed.has_response:
        if parsed.exposure is not None:
            kw.setdefault("trials", parsed.exposure)
        return problems
    pairs = [("events", parsed.events), ("trials", parsed.trials or parsed.exposure)]
    for key, value in pairs:
        if value is None:
            continue
        if key in model and model[key] != value:
            problems.append(f"[model] {key} = {model[key]!r} but the formula's response says "
                            f"{value!r}; give it in one place")
        kw[key] = value
    if parsed.trials is not None and family not in (None, "binomial"):
        problems.append(f"[model] p(events, trials) is a binomial response, but family is "
                        f"{family!r}; for counts write \"{parsed.events} ~ ... + "
                        f"offset(log({parsed.trials}))\"")
    if parsed.trials is None and family == "binomial":
        problems.append(f"[model] the response {parsed.events!r} is a count, but family is "
                        f"'binomial'; write p({parsed.events}, n_pupils) ~ ... for events out "
                        "of trials, or choose family poisson or negative_binomial")
    elif parsed.trials is None and parsed.exposure is None and "trials" not in model:
        problems.append(f"[model] the count response {parsed.events!r} needs an exposure: add "
                        "offset(log(n_pupils)) to the formula or set trials")
    return problems


def _data_options(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check the ``[data]`` keys other than ``path``; return (options, problems)."""
    options: dict[str, Any] = {}
    problems: list[str] = []
    kind = data.get("kind")
    if kind is not None:
        if kind not in DATA_KINDS:
            problems.append(
                f"[data] kind {kind!r} is not known{_suggest(kind, DATA_KINDS)}; valid kinds "
                f"are {_choices(DATA_KINDS)} (leave it out to tell the kind from the columns)"
            )
            kind = None
        else:
            options["kind"] = kind
    for key in ("by", "school_type"):
        if key in data:
            v = data[key]
            if not isinstance(v, str) or not v.strip():
                example = '"ethnicity"' if key == "by" else '"Total"'
                problems.append(f"[data] {key} must be a string such as {example}, not {v!r}")
            else:
                options[key] = v.strip()
    if "unit" in data:
        v = data["unit"]
        if v not in DATA_UNITS:
            problems.append(
                f"[data] unit {v!r} is not known{_suggest(str(v), DATA_UNITS)}; valid units "
                f"are {_choices(DATA_UNITS)}"
            )
        else:
            options["unit"] = v
    if "year" in data:
        v = data["year"]
        if _is_int(v):
            v = str(v)
        if not isinstance(v, str) or not v.strip():
            problems.append(f"[data] year must be an academic year such as \"2016/17\", not {v!r}")
        else:
            options["year"] = v.strip()
    if "collapse_by" in data:
        v = data["collapse_by"]
        if (not isinstance(v, list) or not v
                or not all(isinstance(x, str) and x.strip() for x in v)):
            problems.append(
                "[data] collapse_by must be a non-empty list of column names such as "
                f"[\"ethnicity\", \"sen\", \"la\", \"school\"], not {v!r}"
            )
        elif len(set(v)) != len(v):
            problems.append(f"[data] collapse_by names a column more than once: {v!r}")
        else:
            options["collapse_by"] = tuple(x.strip() for x in v)
    if "keep" in data:
        v = data["keep"]
        if (not isinstance(v, Mapping) or not v or not all(
                isinstance(levels, list) and levels
                and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in levels)
                for levels in v.values())):
            problems.append(
                "[data] keep must be a table of non-empty lists of levels, such as "
                f"{{ ethnicity = [\"White British\", \"Black Caribbean\"] }}, not {v!r}"
            )
        else:
            options["keep"] = FrozenMap(
                {str(col): tuple(str(x) for x in levels) for col, levels in v.items()})
    if "suppressed" in data:
        v = data["suppressed"]
        if v not in SUPPRESSED_CHOICES:
            problems.append(
                f"[data] suppressed {v!r} is not known{_suggest(str(v), SUPPRESSED_CHOICES)}; "
                "valid choices are 'censored' (the default: a suppressed count enters the "
                "likelihood as known to lie in suppressed_range) and 'drop' (cells with a "
                "suppressed count are left out, which biases rates down)")
        else:
            options["suppressed"] = v
    if "suppressed_range" in data:
        v = data["suppressed_range"]
        if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_int(x) for x in v)
                or not 0 <= v[0] <= v[1]):
            problems.append(
                "[data] suppressed_range must be two whole numbers [low, high] with "
                f"0 <= low <= high, such as [1, 2] (DfE's 'x'), not {v!r}")
        else:
            options["suppressed_range"] = (int(v[0]), int(v[1]))
    if "table" in data:
        v = data["table"]
        if not isinstance(v, str) or not v.strip():
            problems.append(f"[data] table must be the name of a database table, such as "
                            f"\"pupils\", not {v!r}")
        else:
            options["table"] = v.strip()
    if "where" in data:
        v = data["where"]
        from disparity.formula import parse_filter

        try:
            parse_filter(v)
        except SpecError as exc:
            problems.append(f"[data] where: {exc}")
        else:
            options["where"] = v
    if kind is not None:
        for key, kinds in _DATA_KEY_KINDS.items():
            if key in data and kind not in kinds:
                problems.append(
                    f"[data] {key} applies to kind {' or '.join(map(repr, kinds))} only, but "
                    f"kind is {kind!r}; remove {key} or change kind"
                )
    return options, problems


def _raise(problems: list[str], what: str) -> None:
    n = len(problems)
    body = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
    raise SpecError(f"{what} ({n} problem{'s' if n != 1 else ''}):\n{body}")


# --------------------------------------------------------------------------- against data
def _list_some(values: Any, limit: int = 20) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... ({len(values) - limit} more)" if len(values) > limit else ""
    return shown + more


def check_spec_against_data(spec: ModelSpec, frame: Any) -> None:
    """Check that the columns and levels ``spec`` names exist in ``frame``.

    Checks the events and trials columns, the formula's columns, every group column, every
    slope variable (and that it is in the formula) and every reference level. All problems
    are collected and raised together.

    Parameters
    ----------
    spec : ModelSpec
    frame : pandas.DataFrame
        Cells (or pupils) the model will be fitted to.

    Raises
    ------
    SpecError
        Naming each missing column or level and listing what exists.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [1, 2],
    ...                       "n_pupils": [10, 20]})
    >>> check_spec_against_data(ModelSpec(formula="sen"), cells)
    >>> check_spec_against_data(ModelSpec(formula="fsm"), cells)
    Traceback (most recent call last):
    ...
    disparity.errors.SpecError: model specification does not match the data (1 problem):
      1. formula column 'fsm' is not in the data; columns are 'sen', 'n_perm_excl', 'n_pupils'
    """
    columns = [str(c) for c in frame.columns]
    have = set(columns)
    problems: list[str] = []

    def missing(col: str, role: str) -> None:
        problems.append(
            f"{role} column {col!r} is not in the data{_suggest(col, columns)}; "
            f"columns are {_list_some(columns)}"
        )

    for role, col in (("events", spec.events), ("trials", spec.trials)):
        if col not in have:
            missing(col, role)
    try:
        variables = formula_variables(spec.formula)
    except SpecError as exc:
        problems.append(str(exc))
        variables = ()
    for col in variables:
        if col not in have:
            missing(col, "formula")
    for entry in spec.groups:
        for col in entry.split("/"):
            if col not in have:
                missing(col, f"group ({entry!r})")
    for var in spec.slopes:
        if var not in have:
            missing(var, "slope")
        elif var not in variables:
            problems.append(
                f"slope variable {var!r} is not in the formula {spec.formula!r}; add it as a "
                "fixed effect (its varying effects are deviations from the fixed effect)"
            )
    for var, level in spec.reference.items():
        if var not in have:
            missing(var, "reference")
            continue
        levels = [str(v) for v in frame[var].dropna().unique()]
        if str(level) not in levels:
            try:
                levels = sorted(levels, key=lambda s: (float(s), s))
            except ValueError:
                levels = sorted(levels)
            problems.append(
                f"reference level {level!r} of {var!r} is not in the data"
                f"{_suggest(level, levels)}; levels are {_list_some(levels)}"
            )
    if problems:
        _raise(problems, "model specification does not match the data")


def spec_overrides(spec: ModelSpec, *, engine: str | None = None, draws: int | None = None,
                   chains: int | None = None, seed: int | None = None,
                   ci_prob: float | None = None) -> ModelSpec:
    """``spec`` with command-line overrides, each checked as the model file's own value is.

    Raises
    ------
    SpecError
        Naming each bad value and the valid range.

    Examples
    --------
    >>> spec_overrides(ModelSpec(), seed=7, draws=200).seed
    7
    >>> spec_overrides(ModelSpec(), seed=-1)
    Traceback (most recent call last):
    ...
    disparity.errors.SpecError: command-line options (1 problem):
      1. --seed must be a whole number from 0 to 4294967295, not -1
    """
    problems: list[str] = []
    changes: dict[str, Any] = {}
    if engine is not None:
        if engine not in ENGINES:
            problems.append(f"--engine {engine!r} is not known; valid engines are "
                            f"{_choices(ENGINES)}")
        else:
            changes["engine"] = engine
    for name, value, low in (("draws", draws, 1), ("chains", chains, 1)):
        if value is not None:
            if not _is_int(value) or not low <= value <= 1_000_000:
                problems.append(f"--{name} must be a whole number from {low} to 1000000, "
                                f"not {value!r}")
            else:
                changes[name] = value
    if seed is not None:
        if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
            problems.append(f"--seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}")
        else:
            changes["seed"] = seed
    if ci_prob is not None:
        if not _is_number(ci_prob) or not 0 < ci_prob < 1:
            problems.append(f"--ci-prob must be a number between 0 and 1, not {ci_prob!r}")
        else:
            changes["ci_prob"] = float(ci_prob)
            changes["report"] = FrozenMap({**dict(spec.report), "ci_prob": float(ci_prob)})
    if problems:
        _raise(problems, "command-line options")
    return spec.replace(**changes) if changes else spec
