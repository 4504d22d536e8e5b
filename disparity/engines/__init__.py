"""Engines fit a :class:`~disparity.design.Design` and return a
:class:`~disparity.engines.base.Fit`.

Each adapter imports its heavy library (statsmodels, numba, PyMC) inside its functions.

======  ==========================================================================
name    what it fits
======  ==========================================================================
glm     fixed effects only (statsmodels GLM), cluster-robust standard errors
ml      random intercepts and slopes by maximum likelihood (Laplace; adaptive quadrature)
pymc    the full Bayesian model (PyMC), posterior draws
======  ==========================================================================
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from disparity.errors import DisparityError, SpecError

#: Engine name -> module implementing ``fit(design, spec, *, progress=True) -> Fit``.
ENGINES: dict[str, str] = {
    "glm": "disparity.engines.glm",
    "ml": "disparity.engines.ml",
    "pymc": "disparity.engines.pymc",
}

#: Optional dependency group (``pip install disparity[GROUP]``) each engine needs.
_EXTRAS = {"glm": "ml", "ml": "ml", "pymc": "bayes"}


def get_engine(name: str) -> ModuleType:
    """The engine module called ``name``, imported on first use.

    Parameters
    ----------
    name : str
        ``"glm"``, ``"ml"`` or ``"pymc"``.

    Returns
    -------
    module
        With ``fit(design, spec, *, progress=True) -> Fit``.

    Raises
    ------
    SpecError
        ``name`` is not an engine (the message lists those there are).
    DisparityError
        The engine's module or library cannot be imported (the message says what to install).

    Examples
    --------
    >>> get_engine("glm").__name__
    'disparity.engines.glm'
    >>> get_engine("lme4")
    Traceback (most recent call last):
    ...
    disparity.errors.SpecError: unknown engine 'lme4'; valid engines are 'glm', 'ml', 'pymc'
    """
    if name not in ENGINES:
        close = difflib.get_close_matches(str(name), list(ENGINES), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        valid = ", ".join(repr(n) for n in ENGINES)
        raise SpecError(f"unknown engine {name!r}{hint}; valid engines are {valid}")
    try:
        return importlib.import_module(ENGINES[name])
    except ImportError as exc:
        raise DisparityError(
            f"engine {name!r} could not be imported ({exc}); install its dependencies with "
            f"pip install 'disparity[{_EXTRAS[name]}]'"
        ) from exc


def check_censored(module: ModuleType, name: str, design: object) -> None:
    """Refuse censored counts (``Design.events_upper``) in an engine that cannot fit them.

    Raises
    ------
    FitError
        Naming how many cells are censored and the engines that fit them.
    """
    import numpy as np

    from disparity.errors import FitError

    upper = getattr(design, "events_upper", None)
    if upper is None or getattr(module, "FITS_CENSORED", False):
        return
    n = int(np.sum(np.asarray(upper) != np.asarray(getattr(design, "events"))))
    able = [e for e in ENGINES if e != name and getattr(importlib.import_module(ENGINES[e]),
                                                        "FITS_CENSORED", False)]
    raise FitError(
        f"{n:,} cells have a count known only to lie in a range (suppressed at source, e.g. "
        f"DfE's 'x' = 1 or 2), which the {name} engine cannot fit; use engine "
        + (" or ".join(repr(e) for e in able) if able else "'pymc'")
        + ", or set [data] suppressed = \"drop\" (which leaves those cells out and biases "
        "rates down)")
