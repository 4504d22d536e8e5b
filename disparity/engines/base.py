"""The common surface every engine returns.

CONTRACT (shared by every engine; extend, do not rename): an engine is a module with
``fit(design: Design, spec: ModelSpec, *, progress: bool = True) -> Fit``.

Frequentist engines fill ``coef`` and ``coef_cov`` (and ``group_sd`` with standard errors);
the Bayesian engine also fills ``coef_draws`` and ``sd_draws`` (posterior draws, chains
stacked) and sets ``coef``/``coef_cov`` to the posterior mean and covariance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

#: Columns of every ``estimates.csv`` (extend, never rename).
ESTIMATE_COLUMNS: tuple[str, ...] = (
    "estimand",
    "term",
    "estimate",
    "std_error",
    "conf_low",
    "conf_high",
    "ci_prob",
    "engine",
)


@dataclass(frozen=True)
class Fit:
    """A fitted model, whatever the engine.

    Attributes
    ----------
    engine : str
        ``"glm"``, ``"ml"`` or ``"pymc"``.
    family : str
        ``"binomial"``, ``"poisson"`` or ``"negative_binomial"``.
    terms : tuple of str
        Fixed-effect names as patsy writes them (``"Intercept"``, ``"sen[T.ehcp]"``).
    coef : ndarray, shape (p,)
        Point estimates on the link scale (ML estimate, or posterior mean).
    coef_cov : ndarray, shape (p, p)
        Their covariance (sampling or posterior).
    group_sd : DataFrame
        One row per group term: ``term``, ``estimate``, ``std_error``, ``conf_low``,
        ``conf_high`` (standard deviation of the random intercepts on the link scale;
        intervals at ``ci_prob``; NaN where an engine cannot give them).
    group_effects : mapping of str to DataFrame
        Per group term: ``level``, ``estimate`` (conditional mode or posterior mean),
        ``std_error`` (conditional or posterior SD).
    slope_effects : mapping of str to DataFrame
        Per ``"<variable>|<group>"``: ``level``, ``term``, ``estimate``, ``std_error``
        (deviations from the fixed effect), plus ``slope_sd`` rows in ``group_sd`` named
        ``"<term>|<group>"``.
    dispersion : float or None
        Negative-binomial shape (``alpha``, variance = mu + mu^2 / alpha); None otherwise.
    coef_draws, sd_draws : posterior draws (Bayesian engine only).
    diagnostics : mapping
        JSON-serialisable convergence facts (converged, iterations, r-hat, ESS, ...).
    warnings : tuple of str
        Plain-English warnings raised during the fit.
    ci_prob : float
        Interval probability used for ``group_sd`` intervals.
    raw : Any
        The engine's own result object (statsmodels results, the Laplace fit, ArviZ data).
    """

    engine: str
    family: str
    terms: tuple[str, ...]
    coef: np.ndarray
    coef_cov: np.ndarray
    group_sd: pd.DataFrame
    group_effects: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    slope_effects: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    dispersion: float | None = None
    coef_draws: np.ndarray | None = None
    sd_draws: Mapping[str, np.ndarray] | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    ci_prob: float = 0.95
    raw: Any = None

    @property
    def std_errors(self) -> np.ndarray:
        return np.sqrt(np.diag(self.coef_cov))
