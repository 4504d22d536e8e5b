"""Fit a model from its specification: the model flow up to the engine's :class:`Fit`.

``fit_model`` is the flow in one call::

    model file -> ModelSpec -> data (read; DfE cut or pupils collapsed to cells)
               -> Design -> engine.fit -> Fit

For every estimand of a report use :func:`disparity.runner.fit_result` (a
:class:`~disparity.result.Result`); to write a run folder,
:func:`disparity.report.publish.publish`.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd

from disparity.design import build_design
from disparity.engines import check_censored, get_engine
from disparity.engines.base import Fit
from disparity.model_data import ModelData, load_model_data
from disparity.spec import ModelSpec, load_spec

__all__ = ["fit_model", "load_model_data", "ModelData"]


def fit_model(
    spec_or_path: ModelSpec | str | os.PathLike[str],
    data: pd.DataFrame | str | os.PathLike[str] | None = None,
    *,
    engine: str | None = None,
    progress: bool = True,
) -> Fit:
    """Fit a model to cells.

    Parameters
    ----------
    spec_or_path : ModelSpec or path
        A specification, or the path of a TOML model file.
    data : DataFrame or path, optional
        The cells (or a CSV/Parquet file of them). Default: the model file's ``[data] path``.
    engine : str, optional
        Overrides the specification's engine (``"glm"``, ``"ml"`` or ``"pymc"``).
    progress : bool
        Passed to the engine (progress bars, messages).

    Returns
    -------
    Fit

    Raises
    ------
    SpecError
        No data were given and the specification names none, or an unknown engine.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [10, 20],
    ...                       "n_pupils": [1000, 200]})
    >>> fit = fit_model(ModelSpec(formula="sen"), cells, engine="glm")
    >>> fit.engine, fit.terms
    ('glm', ('Intercept', 'sen[T.ehcp]'))
    """
    spec = spec_or_path if isinstance(spec_or_path, ModelSpec) else load_spec(spec_or_path)
    if engine is not None:
        spec = spec.replace(engine=engine)
    loaded = load_model_data(spec, data)
    design = build_design(spec, loaded.frame)
    if loaded.notes:
        design = replace(design, notes=(*design.notes, *loaded.notes))
    engine_module = get_engine(spec.engine)
    check_censored(engine_module, spec.engine, design)
    fit = engine_module.fit(design, spec, progress=progress)
    return replace(fit, diagnostics={**dict(fit.diagnostics), "data": loaded.summary()})
