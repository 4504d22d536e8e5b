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
from typing import Any

import numpy as np
import pandas as pd


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

    @property
    def n_cells(self) -> int:
        return int(self.X.shape[0])

    def group(self, name: str) -> GroupTerm:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group term {name!r}; terms are {[g.name for g in self.groups]}")
