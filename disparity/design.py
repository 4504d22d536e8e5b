"""Design matrices: a :class:`ModelSpec` applied to a cells table.

CONTRACT (shared by every engine; extend, do not rename):

- :class:`GroupTerm` one random-intercept term. ``name`` is the label used in output
  (``la``, ``school``); for a nested entry ``"la/school"`` two terms are made, ``la`` and
  ``school`` (whose levels are the ``la/school`` combinations, ``parent="la"``).
- :class:`SlopeTerm` fixed-effect columns whose effects vary by a group term (partial pooling).
- :class:`Design` the fixed-effect matrix ``X`` (float64, cells x terms, patsy column names),
  ``events``, ``trials`` (trials for binomial, exposure for counts), the group and slope terms,
  the cells used, and the patsy ``design_info`` kept so counterfactual rows can be rebuilt.

The builder :func:`build_design` lives here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import warnings

import numpy as np
import pandas as pd

from disparity import vocabulary
from disparity.errors import DataWarning, SpecError, ValidationError

if TYPE_CHECKING:
    from disparity.spec import ModelSpec


@dataclass(frozen=True)
class GroupTerm:
    """One grouping factor with random intercepts.

    Attributes
    ----------
    name : str
        Output label, e.g. ``"la"`` or ``"school"``.
    columns : tuple of str
        Data columns defining the factor, e.g. ``("la", "school")`` for schools within LAs.
    index : ndarray of int
        Level code of each cell row, ``0 .. len(levels) - 1``.
    levels : tuple of str
        Level labels (``"E09000013/1234"`` for a nested term).
    parent : str or None
        Name of the enclosing term for a nested factor.
    """

    name: str
    columns: tuple[str, ...]
    index: np.ndarray
    levels: tuple[str, ...]
    parent: str | None = None

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class SlopeTerm:
    """Fixed-effect columns of ``X`` whose coefficients vary by a group term.

    Attributes
    ----------
    group : str
        Name of the :class:`GroupTerm` the effects vary by.
    variable : str
        The data column, e.g. ``"ethnicity"``.
    columns : tuple of int
        Indices into ``Design.X`` of the varying columns.
    terms : tuple of str
        Their patsy names, e.g. ``("ethnicity[T.Black Caribbean]", ...)``.
    """

    group: str
    variable: str
    columns: tuple[int, ...]
    terms: tuple[str, ...]


@dataclass(frozen=True)
class Design:
    """Everything an engine needs to fit a model, as arrays."""

    family: str
    X: np.ndarray
    terms: tuple[str, ...]
    events: np.ndarray
    trials: np.ndarray
    groups: tuple[GroupTerm, ...] = ()
    slopes: tuple[SlopeTerm, ...] = ()
    data: pd.DataFrame | None = None
    design_info: Any = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: Levels of each categorical formula variable, reference first (added to the contract).
    levels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Reference level of each categorical formula variable (added to the contract).
    reference: Mapping[str, str] = field(default_factory=dict)
    #: Upper end of each cell's event count (float64, same length as ``events``), or None
    #: when every count is exact. A censored cell's count is only known to lie in
    #: ``[events[i], events_upper[i]]`` (equal where observed exactly; a DfE ``x`` is
    #: ``[1, 2]``); engines use the interval-censored likelihood (added to the contract).
    events_upper: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return int(self.X.shape[0])

    def group(self, name: str) -> GroupTerm:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group term {name!r}; terms are {[g.name for g in self.groups]}")


# --------------------------------------------------------------------------- building
def _first_rows(mask: np.ndarray, limit: int = 5) -> str:
    """The first rows of ``mask``, numbered from 1 (the first data row)."""
    rows = (np.flatnonzero(np.asarray(mask)) + 1)[:limit].tolist()
    more = ", ..." if int(np.sum(mask)) > limit else ""
    return ", ".join(str(r) for r in rows) + more


def _sort_key_levels(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _check_values(spec: ModelSpec, cells: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    """The shared check of a cells table (:func:`disparity.validate.validate_model_cells`:
    what ``disparity validate`` checks; repeated rows are allowed here, so pupil rows can be
    fitted directly, and refused where a model file's data are read), then missing values
    in the columns the model uses."""
    from disparity.validate import validate_model_cells

    cells = validate_model_cells(cells, events=spec.events, trials=spec.trials,
                                 family=spec.family, unique=False)
    problems: list[str] = []
    for col in used:
        na = cells[col].isna().to_numpy()
        if na.any():
            problems.append(
                f"column {col!r} has {int(na.sum())} missing value(s) (rows "
                f"{_first_rows(na)}); fill them or drop those rows before fitting "
                "(a suppressed count is missing, never zero)"
            )
    if problems:
        raise ValidationError(problems, what="cells for the model")
    return cells


def _level_order(var: str, series: pd.Series) -> list[str]:
    """Candidate levels of a categorical variable as text, in a stable order."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        levels = [str(c) for c in series.cat.categories]
    else:
        levels = [str(v) for v in _sort_key_levels(list(series.dropna().unique()))]
    known = vocabulary.LEVELS.get(var)
    if known:
        first = [lv for lv in known if lv in levels]
        levels = first + [lv for lv in levels if lv not in first]
    return levels


def _is_categorical(var: str, series: pd.Series, spec: ModelSpec) -> bool:
    if var in spec.reference:
        return True
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def build_design(spec: ModelSpec, cells: pd.DataFrame) -> Design:
    """Apply a model specification to a cells table.

    Categorical formula variables (text, categorical or boolean columns, and any column
    given a reference level) get treatment contrasts against their reference level: the
    level in ``spec.reference``, else the package default in
    :data:`disparity.vocabulary.REFERENCE` when the data have it, else the first level.
    The reference is put first so patsy names columns ``var[T.level]``.

    Parameters
    ----------
    spec : ModelSpec
        Formula, family, events and trials columns, groups, slopes and reference levels.
    cells : pandas.DataFrame
        One row per cell: covariates, group columns, events and trials.

    Returns
    -------
    Design
        ``X`` (cells x terms), ``events``, ``trials`` (float64), the group and slope terms,
        the rows used (index reset), the patsy ``design_info``, the categorical ``levels``
        and ``reference`` of each variable, and ``notes`` on anything dropped.

    Raises
    ------
    SpecError
        A column or level named in ``spec`` is not in the data; a grouping factor has one
        level; a reference level has no pupils; a slope variable is not a main effect; the
        fixed-effect columns are collinear.
    ValidationError
        Missing values in a used column, or impossible counts.

    Warns
    -----
    DataWarning
        Cells with zero trials dropped; levels with no pupils dropped.

    Notes
    -----
    With categorical covariates the binomial likelihood of the cells equals the Bernoulli
    likelihood of the pupils they came from up to a constant, so fitting cells is fitting
    pupils [1]_.

    References
    ----------
    .. [1] McCullagh, P. and Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed.,
       section 4.2 (grouped binary data). Chapman and Hall.

    Examples
    --------
    >>> import pandas as pd
    >>> from disparity.spec import ModelSpec
    >>> cells = pd.DataFrame({"sen": ["ehcp", "none", "ehcp", "none"],
    ...                       "school": ["A", "A", "B", "B"],
    ...                       "n_perm_excl": [2, 1, 3, 0], "n_pupils": [10, 40, 12, 50]})
    >>> d = build_design(ModelSpec(formula="sen", groups=("school",)), cells)
    >>> d.terms
    ('Intercept', 'sen[T.ehcp]')
    >>> d.group("school").levels, d.group("school").index.tolist()
    (('A', 'B'), [0, 0, 1, 1])
    """
    import patsy

    from disparity.formula import model_desc, parse_formula
    from disparity.spec import check_spec_against_data

    parsed = parse_formula(spec.formula)
    check_spec_against_data(spec, cells)
    variables = list(parsed.columns)
    group_cols = list(dict.fromkeys(c for entry in spec.groups for c in entry.split("/")))
    used = list(dict.fromkeys([spec.events, spec.trials, *variables, *group_cols]))
    cells = _check_values(spec, cells, used)

    notes: list[str] = []

    def note(message: str, warn: bool = True) -> None:
        notes.append(message)
        if warn:
            warnings.warn(message, DataWarning, stacklevel=3)

    # -- cells with no trials carry no information
    trials_all = cells[spec.trials].to_numpy(dtype=float)
    empty = trials_all == 0
    if empty.any():
        n_events_lost = float(cells[spec.events].to_numpy(dtype=float)[empty].sum())
        if n_events_lost > 0:
            raise ValidationError(
                [
                    f"{int(np.sum(empty & (cells[spec.events].to_numpy(float) > 0)))} row(s) "
                    f"have events in {spec.events!r} but 0 in {spec.trials!r} (rows "
                    f"{_first_rows(empty)}); events need pupils"
                ],
                what="cells for the model",
            )
        note(
            f"dropped {int(empty.sum())} of {len(cells)} cells with 0 {spec.trials} "
            f"(rows {_first_rows(empty)}): they carry no information"
        )
    data = cells.loc[~empty].copy()
    data.index = pd.RangeIndex(len(data))
    if len(data) == 0:
        raise ValidationError(
            [f"no cells have {spec.trials} > 0; there is nothing to fit"],
            what="cells for the model",
        )

    # -- categorical variables: levels with pupils, reference first
    levels_of: dict[str, tuple[str, ...]] = {}
    reference_of: dict[str, str] = {}
    problems: list[str] = []
    given_reference = {**{c: v for c, v in parsed.categorical.items() if v is not None},
                       **dict(spec.reference)}
    for var in variables:
        original = cells[var]
        if var not in parsed.categorical and not _is_categorical(var, original, spec):
            continue
        candidates = _level_order(var, original)
        text = data[var].astype(str)
        present = set(text.unique())
        kept = [lv for lv in candidates if lv in present]
        dropped = [lv for lv in candidates if lv not in present]
        if dropped:
            note(
                f"level(s) {dropped!r} of {var!r} have no pupils and were dropped from the "
                "model: no effect is estimated for them"
            )
        if var in given_reference:
            ref = str(given_reference[var])
            if ref not in kept:
                problems.append(
                    f"reference level {ref!r} of {var!r} has no pupils in the cells used; "
                    f"choose another in [model.reference]: levels with pupils are {kept!r}"
                )
                continue
        elif var in vocabulary.REFERENCE and vocabulary.REFERENCE[var] in kept:
            ref = vocabulary.REFERENCE[var]
        else:
            ref = kept[0]
            note(f"reference level of {var!r} not given; using {ref!r}", warn=False)
        order = [ref] + [lv for lv in kept if lv != ref]
        levels_of[var] = tuple(order)
        reference_of[var] = ref
        data[var] = pd.Categorical(text.to_numpy(), categories=order)
    if problems:
        raise SpecError(
            "model specification does not match the data:\n"
            + "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        )

    # -- fixed effects
    try:
        matrix = patsy.dmatrix(model_desc(parsed), data, NA_action="raise",
                               return_type="matrix")
    except patsy.PatsyError as exc:
        raise SpecError(f"formula {spec.formula!r} could not be built on the data: {exc}") from None
    design_info = matrix.design_info
    X = np.asarray(matrix, dtype=np.float64)
    terms = tuple(design_info.column_names)
    _check_rank(X, terms, spec.formula)

    # -- random intercepts
    group_terms: list[GroupTerm] = []
    for entry in spec.groups:
        cols = [c.strip() for c in entry.split("/")]
        for depth in range(len(cols)):
            prefix = cols[: depth + 1]
            name = cols[depth]
            grouped = data.groupby(prefix, sort=True, observed=True)
            index = grouped.ngroup().to_numpy(dtype=np.int64)
            # One row per level, in level-code order (codes follow the sorted keys).
            first_rows = np.unique(index, return_index=True)[1]
            labels = tuple(
                "/".join(str(v) for v in row)
                for row in data[prefix].iloc[first_rows].itertuples(index=False, name=None)
            )
            if len(labels) < 2:
                raise SpecError(
                    f"group term {name!r} (from groups entry {entry!r}) has only one level "
                    f"({labels[0]!r}) among the cells used; a random intercept needs at least "
                    f"two levels: remove {name!r} from [model] groups"
                )
            group_terms.append(
                GroupTerm(
                    name=name,
                    columns=tuple(prefix),
                    index=index,
                    levels=labels,
                    parent=cols[depth - 1] if depth > 0 else None,
                )
            )

    # -- varying slopes
    slope_terms: list[SlopeTerm] = []
    for var, group in spec.slopes.items():
        chosen: list[int] = []
        for term, slc in design_info.term_slices.items():
            if len(term.factors) == 1 and term.factors[0].tree == ("col", var):
                chosen.extend(range(slc.start, slc.stop))
        if not chosen:
            raise SpecError(
                f"slope variable {var!r} is not a main effect of the formula {spec.formula!r}; "
                f"add {var!r} as a term of its own"
            )
        slope_terms.append(
            SlopeTerm(
                group=group,
                variable=var,
                columns=tuple(chosen),
                terms=tuple(terms[i] for i in chosen),
            )
        )

    events_upper = _events_upper(spec, data)
    return Design(
        family=spec.family,
        X=X,
        terms=terms,
        events_upper=events_upper,
        events=data[spec.events].to_numpy(dtype=np.float64),
        trials=data[spec.trials].to_numpy(dtype=np.float64),
        groups=tuple(group_terms),
        slopes=tuple(slope_terms),
        data=data,
        design_info=design_info,
        notes=tuple(notes),
        levels=levels_of,
        reference=reference_of,
    )


def _events_upper(spec: ModelSpec, data: pd.DataFrame) -> np.ndarray | None:
    """The largest value of each cell's event count, where some are censored (a column
    ``<events>_upper``, as :mod:`disparity.model_data` writes for suppressed counts)."""
    column = vocabulary.upper_column(spec.events)
    if column not in data.columns:
        return None
    upper = pd.to_numeric(data[column], errors="coerce").to_numpy(dtype=np.float64)
    events = data[spec.events].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(upper) | (upper < events)
    if spec.family == "binomial":
        bad |= upper > data[spec.trials].to_numpy(dtype=np.float64)
    if bad.any():
        raise ValidationError(
            [f"column {column!r}: {int(bad.sum())} row(s) (rows {_first_rows(bad)}) are "
             f"missing, below {spec.events!r} or above the trials; it must hold the largest "
             f"value each censored count can take (equal to {spec.events!r} where known)"],
            what="cells for the model")
    if np.array_equal(upper, events):
        return None
    return upper


def _check_rank(X: np.ndarray, terms: tuple[str, ...], formula: str) -> None:
    """Refuse collinear fixed effects, naming the first column that adds nothing."""
    if X.shape[1] == 0:
        return
    scale = np.sqrt((X**2).sum(axis=0))
    scale[scale == 0] = 1.0
    gram = (X / scale).T @ (X / scale)
    rank = 0
    for j in range(X.shape[1]):
        r = np.linalg.matrix_rank(gram[: j + 1, : j + 1], tol=1e-9 * (j + 1))
        if r == rank:
            raise SpecError(
                f"fixed-effect column {terms[j]!r} of formula {formula!r} is a linear "
                f"combination of the columns before it ({', '.join(terms[:j]) or 'none'}) in "
                "these cells; remove a term or merge levels that always occur together"
            )
        rank = r


def counterfactual_X(design: Design, variable: str, level: Any) -> np.ndarray:
    """The fixed-effect matrix with every cell's ``variable`` set to ``level``.

    Rebuilt through the design's patsy ``design_info``, so interactions and transforms
    follow. Averaging predictions over these rows gives marginal (standardised) rates [1]_.

    Parameters
    ----------
    design : Design
    variable : str
        A formula variable (a data column).
    level : str or number
        A level of a categorical variable (see ``design.levels``), or a value of a numeric one.

    Returns
    -------
    ndarray, shape (n_cells, n_terms)

    References
    ----------
    .. [1] Muller, C. J. and MacLehose, R. F. (2014). Estimating predicted probabilities from
       logistic regression: different methods correspond to different target populations.
       *International Journal of Epidemiology* 43(3), 962-970.

    Examples
    --------
    >>> import pandas as pd
    >>> from disparity.spec import ModelSpec
    >>> cells = pd.DataFrame({"sen": ["ehcp", "none"], "n_perm_excl": [2, 1],
    ...                       "n_pupils": [10, 40]})
    >>> d = build_design(ModelSpec(formula="sen"), cells)
    >>> counterfactual_X(d, "sen", "ehcp").tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    import patsy

    if design.data is None or design.design_info is None:
        raise SpecError("this design keeps no data or design_info; build it with build_design")
    if variable not in design.data.columns:
        raise SpecError(
            f"variable {variable!r} is not a column of the design's data; columns are "
            f"{list(map(str, design.data.columns))!r}"
        )
    data = design.data.copy()
    n = len(data)
    if variable in design.levels:
        levels = design.levels[variable]
        if str(level) not in levels:
            raise SpecError(
                f"level {level!r} of {variable!r} is not in the model; levels are {list(levels)!r}"
            )
        data[variable] = pd.Categorical([str(level)] * n, categories=list(levels))
    else:
        data[variable] = np.full(n, float(level))
    (matrix,) = patsy.build_design_matrices([design.design_info], data, NA_action="raise")
    return np.asarray(matrix, dtype=np.float64)
