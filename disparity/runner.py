"""The ``run`` job: a model file in, a published run folder out.

:func:`fit_result` is the whole model flow as values::

    model file -> ModelSpec -> cells (ModelData) -> Design -> engine.fit -> Fit
               -> estimands -> Result

:func:`run_model` adds the one writing step, :func:`disparity.report.publish.publish`
(disclosure control, the report, an atomic write). :func:`rerender` redraws a run's report
from its published files without refitting.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

import pandas as pd

from disparity.errors import DisparityWarning, UnconvergedError
from disparity.progress import Progress
from disparity.result import Result, build_result
from disparity.settings import ReportSettings
from disparity.spec import ModelSpec

__all__ = ["fit_result", "run_model", "rerender", "ReportSettings"]


def _spec(model: ModelSpec | str | os.PathLike[str], engine: str | None) -> tuple[ModelSpec,
                                                                                Path | None]:
    from disparity.spec import load_spec

    spec = model if isinstance(model, ModelSpec) else load_spec(model)
    model_file = spec.source if spec.source is not None else None
    if engine is not None:
        spec = spec.replace(engine=engine)
    return spec, (Path(model_file) if model_file is not None else None)


def fit_result(
    model: ModelSpec | str | os.PathLike[str],
    *,
    data: pd.DataFrame | str | os.PathLike[str] | None = None,
    engine: str | None = None,
    scope: str = "run",
    progress: bool = True,
) -> Result:
    """Fit a model and compute every estimand of its report, in memory.

    Parameters
    ----------
    model : ModelSpec or path
        A specification or a TOML model file.
    data : DataFrame or path, optional
        Data to use instead of the model file's ``[data] path``.
    engine : {"ml", "pymc", "glm"}, optional
        Overrides ``[fit] engine``.
    scope : {"run", "fit"}
        ``"run"``: every estimand; ``"fit"``: the model's own estimates only.
    progress : bool
        Print one line per step on stderr (and let the engine show its progress).

    Returns
    -------
    Result

    Warns
    -----
    DisparityWarning
        Every warning raised on the way is kept in ``Result.warnings`` and re-issued once.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [10, 20],
    ...                       "n_pupils": [1000, 200]})
    >>> r = fit_result(ModelSpec(formula="sen", engine="glm"), data=cells, progress=False)
    >>> r.estimates.query("estimand == 'crude_rate_ratio'").estimate.round(2).tolist()
    [10.0]
    """
    from disparity.design import build_design
    from disparity.engines import check_censored, get_engine
    from disparity.model_data import load_model_data

    spec, model_file = _spec(model, engine)
    say = Progress(progress)
    settings = ReportSettings.from_mapping(spec.report)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        say("reading data")
        loaded = load_model_data(spec, data)
        say(f"building the design ({len(loaded.frame):,} cells)")
        design = build_design(spec, loaded.frame)
        if loaded.notes:
            design = replace(design, notes=(*design.notes, *loaded.notes))
        say(f"fitting with the {spec.engine} engine")
        engine_module = get_engine(spec.engine)
        check_censored(engine_module, spec.engine, design)
        fit = engine_module.fit(design, spec, progress=progress)
        result = build_result(spec, loaded, design, fit, settings=settings, scope=scope,
                              progress=say, model_file=model_file)
    run_warnings = tuple(dict.fromkeys(
        [*fit.warnings, *(str(w.message) for w in caught
                          if issubclass(w.category, DisparityWarning))]))
    result = replace(result, warnings=run_warnings, timings=say.done())
    for message in run_warnings:
        category = next((w.category for w in caught if str(w.message) == message),
                        DisparityWarning)
        warnings.warn(message, category, stacklevel=2)
    for w in caught:  # everything else passes through unchanged
        if not issubclass(w.category, DisparityWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def run_model(
    model: ModelSpec | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    data: pd.DataFrame | str | os.PathLike[str] | None = None,
    engine: str | None = None,
    scope: str = "run",
    progress: bool = True,
    restricted: bool = False,
    force: bool = False,
    allow_unconverged: bool = False,
) -> Path:
    """Fit a model file, compute its estimands and publish its run folder.

    Parameters
    ----------
    model : ModelSpec or path
        A TOML model file (``models/NAME.toml``) or a specification.
    out_dir : path
        The run folder. Made if needed; a previous run there is replaced whole; a folder
        holding other files is refused unless ``force``; held by a lock while the run lasts.
    data, engine, scope, progress
        As :func:`fit_result`.
    restricted : bool
        Also write ``restricted/`` (raw counts, cells and the fit; not for release).
    force : bool
        Replace ``out_dir`` even if it holds files disparity did not write.
    allow_unconverged : bool
        Publish a fit that did not converge (its report then opens with a warning).

    Returns
    -------
    Path
        ``out_dir``, holding ``estimates.csv``, ``unit_effects.csv``, ``cells_summary.csv``,
        ``diagnostics.json``, ``figures/``, ``report.md``, ``report.html`` and
        ``manifest.json`` (written last). Every count in them is disclosure-controlled.

    Raises
    ------
    SpecError, ReadError, ValidationError, FitError
        From the model file, the data, or the fit.
    UnconvergedError
        The fit did not converge and ``allow_unconverged`` is false; nothing was written.
    WriteError
        The folder cannot be written (in use, not ours, read-only, full).
    """
    from disparity.report.publish import claim, publish

    with claim(out_dir, force=force):
        result = fit_result(model, data=data, engine=engine, scope=scope, progress=progress)
        if not result.converged and not allow_unconverged:
            raise UnconvergedError(_unconverged_message(result))
        if progress:
            Progress(True)("publishing (disclosure control, figures, report)")
        return publish(result, out_dir, restricted=restricted, force=force)


def _unconverged_message(result: Result) -> str:
    diag = result.fit.diagnostics
    why = [w for w in result.warnings if "converge" in w.lower() or "r-hat" in w.lower()]
    detail = why[0] if why else f"engine {result.fit.engine!r} reported no convergence"
    return (f"the {result.fit.engine} fit of {result.spec.name!r} did not converge"
            f"{' after ' + str(diag['iterations']) + ' iterations' if 'iterations' in diag else ''}"
            f" ({detail}); nothing was published. Try the suggestions above, another engine "
            "(--engine), or pass --allow-unconverged to publish the report with a warning")


def rerender(run_dir: str | os.PathLike[str]) -> Path:
    """Redraw the figures and rewrite the report of a run folder without refitting; its
    files are first checked against the manifest. See
    :func:`disparity.report.publish.rerender`."""
    from disparity.report.publish import rerender as _rerender

    return _rerender(run_dir)
