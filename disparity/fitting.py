"""Fit a model from its specification, and write a run's results to a folder.

``fit_model`` is the whole model flow in one call::

    model file -> ModelSpec -> data (read) -> Design -> engine.fit -> Fit

``write_run`` saves what a run produced: ``estimates.csv`` (deterministic: the same fit
gives the same bytes), ``diagnostics.json`` and the fit itself (``fit.pkl``; for the
Bayesian engine also the posterior as ``posterior.nc``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from disparity.design import build_design
from disparity.engines import get_engine
from disparity.engines.base import Fit
from disparity.errors import DisparityError, SpecError
from disparity.estimates import estimates
from disparity.spec import ModelSpec, load_spec

#: Float format of ``estimates.csv``: ten significant digits, enough for every reported
#: figure and stable across platforms.
FLOAT_FORMAT = "%.10g"


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
    frame = _frame(data, spec)
    design = build_design(spec, frame)
    return get_engine(spec.engine).fit(design, spec, progress=progress)


def _frame(data: Any, spec: ModelSpec) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    path = data if data is not None else spec.data_path
    if path is None:
        where = f" {str(spec.source)!r}" if spec.source is not None else ""
        raise SpecError(
            f"no data to fit: model{where} has no [data] path and none was given; add "
            "[data] path = \"cells.csv\" to the model file or pass the data (--data)"
        )
    from disparity.read import read_frame

    return read_frame(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _json_float(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return [_json_default(v) if not isinstance(v, (int, str)) else v for v in value.tolist()]
    if isinstance(value, (Path,)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, pd.DataFrame):
        return value.to_dict("records")
    return str(value)


def _json_float(x: float) -> Any:
    # JSON has no NaN or infinity; write them as strings so the file stays standard.
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, np.floating):
        return _json_float(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_run(fit: Fit, run_dir: str | os.PathLike[str], spec: ModelSpec) -> Path:
    """Write a fit's estimates, diagnostics and the fit itself to ``run_dir``.

    Files written (the folder is made if needed; existing files are replaced):

    ``estimates.csv``
        :func:`disparity.estimates.estimates` at ``spec.ci_prob``; floats with
        ``%.10g``, ``\\n`` line ends, no timestamps: the same fit gives the same bytes.
    ``diagnostics.json``
        The model name, engine, family, terms, the engine's diagnostics and warnings
        (keys sorted; NaN written as ``"NaN"``).
    ``fit.pkl``
        The :class:`Fit` (pickle). If the engine's raw object cannot be pickled it is left
        out (``raw=None``) and ``diagnostics.json`` says so.
    ``posterior.nc``
        Bayesian engine only: the posterior (``fit.raw``, an ArviZ InferenceData) written
        with ``to_netcdf``; ``fit.pkl`` then holds the fit without it.

    Parameters
    ----------
    fit : Fit
    run_dir : path
    spec : ModelSpec
        Gives the model name and ``ci_prob``.

    Returns
    -------
    Path
        ``run_dir``.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [10, 20],
    ...                       "n_pupils": [1000, 200]})
    >>> spec = ModelSpec(name="sen", formula="sen", engine="glm")
    >>> run = write_run(fit_model(spec, cells), tempfile.mkdtemp(), spec)
    >>> sorted(p.name for p in run.iterdir())
    ['diagnostics.json', 'estimates.csv', 'fit.pkl']
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    table = estimates(fit, ci_prob=spec.ci_prob)
    with open(run_dir / "estimates.csv", "w", encoding="utf-8", newline="") as handle:
        table.to_csv(handle, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")

    notes: list[str] = []
    to_pickle = fit
    raw = fit.raw
    if fit.engine == "pymc" and raw is not None and hasattr(raw, "to_netcdf"):
        raw.to_netcdf(str(run_dir / "posterior.nc"))
        to_pickle = replace(fit, raw=None)
        notes.append("posterior saved as posterior.nc; fit.pkl holds the fit without it")
    try:
        payload = pickle.dumps(to_pickle, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # raw engine objects may hold handles that cannot be pickled
        payload = pickle.dumps(replace(to_pickle, raw=None), protocol=pickle.HIGHEST_PROTOCOL)
        notes.append(f"the engine's raw result could not be pickled ({type(exc).__name__}); "
                     "fit.pkl holds the fit without it")
    (run_dir / "fit.pkl").write_bytes(payload)

    diagnostics = {
        "model": spec.name,
        "engine": fit.engine,
        "family": fit.family,
        "terms": list(fit.terms),
        "ci_prob": spec.ci_prob,
        "diagnostics": dict(fit.diagnostics),
        "warnings": list(fit.warnings),
        "files": notes,
    }
    try:
        text = json.dumps(_clean(diagnostics), indent=2, sort_keys=True,
                          default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DisparityError(f"diagnostics of engine {fit.engine!r} are not JSON: {exc}") from exc
    (run_dir / "diagnostics.json").write_text(text + "\n", encoding="utf-8")
    return run_dir
