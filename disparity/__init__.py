"""disparity: measuring disproportionality in school exclusions honestly and at scale.

The package is a one-directional flow of values (see ``README.md``)::

    read -> validate -> collapse (cells) -> measures (raw ratios)
    cells + ModelSpec -> design -> engine.fit -> Fit -> estimands -> Result
    Result -> publish (disclosure control, report, atomic write)

The names below are the public entry points; each is imported on first use, so
``import disparity`` stays light (no statsmodels, numba, PyMC, ArviZ or matplotlib).

Examples
--------
>>> import disparity
>>> sorted(n for n in disparity.__all__ if n.islower() and not n.startswith("_"))
['collapse', 'distribution', 'fit', 'load_model', 'publish', 'rates', 'read_dfe', 'run', 'simulate', 'validate']
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from disparity.errors import (ConvergenceWarning, DataWarning, DisparityError,
                              DisparityWarning, FitError, ReadError, SpecError,
                              UnconvergedError, ValidationError, WriteError)

__version__ = "0.1.0"

#: Public name -> (module, attribute), imported on first use.
_LAZY: dict[str, tuple[str, str]] = {
    "fit": ("disparity.api", "fit"),
    "validate": ("disparity.api", "validate"),
    "rates": ("disparity.rates", "rates_table"),
    "read_dfe": ("disparity.dfe", "read_dfe"),
    "simulate": ("disparity.simulate", "simulate_pupils"),
    "collapse": ("disparity.cells", "collapse"),
    "distribution": ("disparity.school_bands", "exclusion_distribution"),
    "load_model": ("disparity.spec", "load_spec"),
    "run": ("disparity.runner", "run_model"),
    "publish": ("disparity.report.publish", "publish"),
    "Result": ("disparity.result", "Result"),
    "ModelSpec": ("disparity.spec", "ModelSpec"),
}

__all__ = [*_LAZY, "__version__", "DisparityError", "ValidationError", "ReadError",
           "SpecError", "FitError", "WriteError", "UnconvergedError", "DisparityWarning",
           "ConvergenceWarning", "DataWarning"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'disparity' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
