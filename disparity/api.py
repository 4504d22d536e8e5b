"""The Python entry point: fit a model from one formula and get a :class:`~disparity.result.Result`.

``disparity.fit`` is for notebooks: the formula carries the whole model in lme4/bambi
syntax, and every other setting is a keyword, checked by the same schema as a model file
(:func:`disparity.spec.spec_from_dict`), so a misspelt option names the nearest valid one::

    import disparity
    result = disparity.fit("p(n_perm_excl, n_pupils) ~ ethnicity + sen + (1 | la/school)",
                           cells)
    print(result.summary())
    result.rate_ratios("ethnicity")
    result.predict(new_cells)
    result.plot("funnel", term="school")
    result.report("runs/ethnicity")       # the publish stage: disclosure control, atomic
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Mapping

import pandas as pd

from disparity.errors import SpecError
from disparity.result import Result

__all__ = ["fit", "validate"]

#: Keyword options of :func:`fit`, by the model-file table they belong to.
OPTION_TABLES: Mapping[str, tuple[str, ...]] = {
    "fit": ("seed", "draws", "tune", "chains", "sampler", "target_accept", "noncentered",
            "ml", "pymc", "glm"),
    "report": ("ci_prob", "group_effects", "standard", "n_draws", "threshold", "fdr",
               "ladder_variable", "share_groups", "suppression"),
    "data": ("year", "keep", "kind", "by", "unit", "school_type", "collapse_by",
             "suppressed", "suppressed_range", "where"),
}


def fit(
    formula: str,
    data: pd.DataFrame | str | os.PathLike[str],
    *,
    family: str | None = None,
    engine: str = "ml",
    reference: Mapping[str, str] | None = None,
    exposure: str | None = None,
    priors: Mapping[str, float] | None = None,
    ladder: list[Mapping[str, Any]] | None = None,
    scope: str = "run",
    progress: bool = False,
    name: str = "model",
    **options: Any,
) -> Result:
    """Fit a hierarchical model of events from one formula.

    Parameters
    ----------
    formula : str
        lme4/bambi syntax, parsed (never executed) by :mod:`disparity.formula`:
        ``"p(EVENTS, TRIALS) ~ fixed + (1 | g)"`` for events out of trials (binomial), or
        ``"EVENTS ~ fixed + offset(log(EXPOSURE)) + (1 | g)"`` for counts. Grouping terms:
        ``(1 | g)``, nested ``(1 | la/school)``, crossed (several terms), independent
        varying slopes ``(1 + x || g)``.
    data : DataFrame or path
        Cells (events out of trials per combination), pupils (one row each: collapsed to
        cells by the formula's columns), or a DfE file (with ``by=``, ``unit=``, ``year=``).
    family : {"binomial", "poisson", "negative_binomial"}, optional
        Default: binomial for ``p(...)``; a count response needs one.
    engine : {"ml", "pymc", "glm"}
        Laplace maximum likelihood (default), Bayesian (PyMC), or fixed effects only.
    reference : mapping, optional
        Reference level of each categorical variable, e.g. ``{"ethnicity": "White British"}``.
    exposure : str, optional
        For counts: the exposure column, if the formula has no ``offset(log(...))``.
    priors : mapping, optional
        Prior scales of the Bayesian engine (see :data:`disparity.spec.DEFAULT_PRIORS`).
    ladder : list of mapping, optional
        Adjustment ladder steps (as ``[[ladder]]`` in a model file).
    scope : {"run", "fit"}
        ``"run"`` (default): every estimand of the report; ``"fit"``: the model only.
    progress : bool
        Progress lines on stderr.
    name : str
        The model's name in its report.
    **options
        Any other model-file setting: ``seed``, ``draws``, ``chains``, ``tune``,
        ``sampler``, ``target_accept``, engine options ``ml={...}``, ``pymc={...}``; report
        settings ``ci_prob``, ``group_effects``, ``standard``, ``n_draws``, ``threshold``,
        ``fdr``, ``share_groups``, ``suppression={...}``; data settings ``year``, ``keep``.

    Returns
    -------
    Result
        ``.estimates``, ``.rate_ratios()``, ``.summary()``, ``.predict()``, ``.plot()``,
        ``.report(dir)`` and the rest.

    Raises
    ------
    SpecError
        A formula outside the grammar, an unknown option (naming the nearest valid one), a
        value out of range, or a column not in the data.

    Examples
    --------
    The lme4 ``cbpp`` example (Bates et al. 2015): period effects with a random intercept
    per herd; lme4's ``glmer`` gives -1.3983, -0.9919, -1.1282, -1.5797 and a herd SD of
    0.6421.

    >>> import pandas as pd, warnings
    >>> cbpp = pd.read_csv("data/cbpp.csv")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     r = fit("p(incidence, size) ~ C(period) + (1 | herd)", cbpp, n_draws=200)
    >>> import numpy as np
    >>> coef = r.estimates.query("estimand == 'coefficient'")
    >>> coef.term.tolist()
    ['Intercept', 'period[T.2]', 'period[T.3]', 'period[T.4]']
    >>> bool(np.allclose(coef.estimate, [-1.3983, -0.9919, -1.1282, -1.5797], atol=2e-3))
    True
    >>> round(float(r.icc().query("estimand == 'group_sd'").estimate.iloc[0]), 2)
    0.64
    >>> "herd" in r.summary()
    True

    Rate ratios of the periods against period 1, a prediction for a herd the model has not
    seen (its effect is the population's, 0), and a figure:

    >>> rr = r.rate_ratios("period")
    >>> rr.level.tolist(), bool((rr.estimate < 1).all())
    (['2', '3', '4'], True)
    >>> new = pd.DataFrame({"period": ["1"], "herd": ["a new herd"], "size": [20]})
    >>> p = r.predict(new, new_levels="population")
    >>> round(float(p.iloc[0]), 3)  # 1 / (1 + exp(1.3983)), the period-1 rate of a typical herd
    0.198
    >>> r.plot("forest").axes[0].get_xlabel() != ""
    True
    """
    from disparity.formula import parse_formula
    from disparity.runner import fit_result
    from disparity.spec import spec_from_dict

    parsed = parse_formula(formula)
    tables: dict[str, dict[str, Any]] = {"model": {"formula": formula}, "fit": {"engine": engine}}
    if family is not None:
        tables["model"]["family"] = family
    if reference:
        tables["model"]["reference"] = dict(reference)
    if exposure is not None:
        if parsed.exposure is not None:
            raise SpecError(f"exposure={exposure!r} given, but the formula has "
                            f"offset(log({parsed.exposure})); give it in one place")
        tables["model"]["trials"] = exposure
    unknown = []
    for key, value in options.items():
        table = next((t for t, keys in OPTION_TABLES.items() if key in keys), None)
        if table is None:
            unknown.append(key)
            continue
        tables.setdefault(table, {})[key] = value
    if unknown:
        valid = sorted(k for keys in OPTION_TABLES.values() for k in keys)
        hints = []
        for key in unknown:
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise SpecError(f"disparity.fit got unknown option(s) {', '.join(hints)}; options are "
                        + ", ".join(valid))
    if priors:
        tables["priors"] = dict(priors)
    if ladder:
        tables["ladder"] = [dict(step) for step in ladder]
    spec = spec_from_dict(tables, name=name)
    return fit_result(spec, data=data, scope=scope, progress=progress)


def validate(data: pd.DataFrame | str | os.PathLike[str], *, kind: str | None = None,
             **options: Any) -> pd.DataFrame:
    """Check a pupils or cells table (or a DfE file) and return it with integer counts;
    one :class:`~disparity.errors.ValidationError` lists every problem.

    Examples
    --------
    >>> import pandas as pd
    >>> validate(pd.DataFrame({"herd": ["A"], "n_pupils": [10], "n_events": [2]}))["n_events"].tolist()
    [2]
    """
    from disparity.read import detect_kind, read_data
    from disparity.validate import validate_cells, validate_pupils

    if isinstance(data, pd.DataFrame):
        frame, kind = data, kind or detect_kind(data)
    else:
        kind, frame = read_data(data, kind=kind)
    if kind == "pupils":
        return validate_pupils(frame, **options)
    if kind == "cells":
        return validate_cells(frame, **{"allow_missing": True, **options})
    return frame
