"""Fixed-effects engine: a generalised linear model of the cells (statsmodels).

The model ignores the grouping factors when it estimates the coefficients, and uses them
only for the standard errors:

* ``binomial``: logit link, ``events`` out of ``trials`` in each cell;
* ``poisson``: log link with offset ``log(trials)`` (a rate per pupil);
* ``negative_binomial``: NB2 (variance ``mu + mu**2 / dispersion``), log link, offset
  ``log(trials)``, the dispersion estimated by maximum likelihood.

Standard errors are cluster-robust (sandwich) on the innermost grouping factor of the
model (usually the school) when the model has groups, and conventional (inverse
information) otherwise. Each cell belongs to one school, so the school code of every cell
is a cluster id, and the cell's score is the sum of its pupils' scores: the sandwich from
cells equals the sandwich from pupils exactly. The small-sample factor is ``G / (G - 1)``
for ``G`` clusters only; the ``(N - 1) / (N - K)`` factor some software adds is left out
because ``N`` (cells or pupils) would make the answer depend on how the data are grouped.

Options (``[fit.glm]`` in a model file):

``cluster``
    ``"auto"`` (default: the innermost group term; with crossed terms, the one with the
    most levels), ``"none"`` for conventional standard errors, or a group term name.
``on_separation``
    ``"raise"`` (default) or ``"warn"``: what to do when a level has no events (or, for
    the binomial, only events), whose coefficient is then infinite.
``maxiter``
    Iteration limit (default 100).

For the binomial and Poisson families the cell model equals the pupil model; the negative
binomial's overdispersion is a property of the cells as grouped, not of pupils.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from disparity.design import Design
from disparity.engines.base import Fit
from disparity.errors import ConvergenceWarning, FitError, SpecError

#: Columns of ``Fit.group_sd`` (empty for this engine).
GROUP_SD_COLUMNS: tuple[str, ...] = ("term", "estimate", "std_error", "conf_low", "conf_high")

DEFAULT_OPTIONS: dict[str, Any] = {"cluster": "auto", "on_separation": "raise", "maxiter": 100}


def fit(design: Design, spec: Any, *, progress: bool = True) -> Fit:
    """Fit the fixed effects of ``design`` by maximum likelihood.

    Parameters
    ----------
    design : Design
        From :func:`disparity.design.build_design`; its group terms give the clusters.
    spec : ModelSpec
        Read for ``family``, ``ci_prob`` and ``engine_options["glm"]``.
    progress : bool
        Unused (the fit takes well under a second on national cells).

    Returns
    -------
    Fit
        ``engine="glm"``; ``coef`` and ``coef_cov`` (cluster-robust where there are
        groups), an empty ``group_sd``, ``dispersion`` for the negative binomial.

    Raises
    ------
    FitError
        A level of a factor has no events (or only events), so its coefficient is infinite
        (separation); the message names the level. Set ``on_separation = "warn"`` to fit anyway.

    References
    ----------
    McCullagh, P. and Nelder, J. A. (1989). *Generalized Linear Models*, 2nd ed. Chapman and Hall.
    Cameron, A. C. and Miller, D. L. (2015). A practitioner's guide to cluster-robust
    inference. *Journal of Human Resources* 50(2), 317-372.

    Examples
    --------
    >>> import pandas as pd
    >>> from disparity.design import build_design
    >>> from disparity.spec import ModelSpec
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [10, 20],
    ...                       "n_pupils": [1000, 200]})
    >>> spec = ModelSpec(formula="sen", engine="glm")
    >>> result = fit(build_design(spec, cells), spec)
    >>> round(float(result.coef[1]), 4)  # log odds ratio: log((20/180) / (10/990))
    2.3979
    """
    options = _options(spec)
    family = design.family
    X = np.asarray(design.X, dtype=np.float64)
    events = np.asarray(design.events, dtype=np.float64)
    trials = np.asarray(design.trials, dtype=np.float64)
    messages: list[str] = []

    separation = _separation(design)
    if separation:
        text = (
            "separation: "
            + "; ".join(separation)
            + ". The maximum-likelihood coefficient of such a level is infinite. Merge it with "
            "a neighbouring level, drop it from the data, or use engine 'ml' or 'pymc' "
            "(random effects and priors keep it finite)."
        )
        if options["on_separation"] == "raise":
            raise FitError(text + " To fit anyway, set on_separation = \"warn\" in [fit.glm].")
        messages.append(text)

    cluster = _cluster_term(design, options["cluster"])
    results, coef, bread, scores, extra = _fit_family(family, X, events, trials, options)
    n_par = X.shape[1]

    converged = bool(extra.pop("converged"))
    huge = [t for t, b in zip(design.terms, coef[:n_par]) if t != "Intercept" and abs(b) > 20]
    if huge and not separation:
        messages.append(
            f"coefficient(s) of {huge!r} exceed 20 on the link scale: probably separation by a "
            "combination of levels; merge sparse levels or use engine 'ml' or 'pymc'"
        )
    if not converged:
        messages.append(
            f"the {family} GLM did not converge in {options['maxiter']} iterations; raise "
            "maxiter in [fit.glm] or simplify the formula"
        )

    if cluster is None:
        cov_full = bread
        cov_type = "nonrobust"
        n_clusters = None
    else:
        ids = cluster.index
        n_clusters = int(cluster.n_levels)
        summed = np.zeros((n_clusters, scores.shape[1]))
        np.add.at(summed, ids, scores)
        meat = summed.T @ summed
        cov_full = bread @ meat @ bread * (n_clusters / (n_clusters - 1))
        cov_type = "cluster"
        if n_clusters < 10:
            messages.append(
                f"cluster-robust standard errors on {n_clusters} {cluster.name} clusters are "
                "unreliable (too few clusters); set cluster = \"none\" in [fit.glm] or use "
                "engine 'ml'"
            )
    coef_cov = cov_full[:n_par, :n_par]

    dispersion = None
    diagnostics: dict[str, Any] = {
        "engine": "glm",
        "family": family,
        "converged": converged,
        "iterations": extra.pop("iterations"),
        "loglik": extra.pop("loglik"),
        "cov_type": cov_type,
        "cluster": None if cluster is None else cluster.name,
        "n_clusters": n_clusters,
        "n_cells": int(design.n_cells),
        "n_trials": float(trials.sum()),
        "n_events": float(events.sum()),
        "library_warnings": extra.pop("library_warnings"),
    }
    if family == "negative_binomial":
        # statsmodels' alpha: variance = mu + alpha mu^2; ours: shape = 1 / alpha.
        alpha = float(extra["alpha"])
        var_alpha = float(cov_full[n_par, n_par])
        se_alpha = float(np.sqrt(var_alpha)) if var_alpha >= 0 else float("nan")
        dispersion = 1.0 / alpha if alpha > 0 else float("inf")
        diagnostics["dispersion_std_error"] = se_alpha / alpha**2 if alpha > 0 else float("nan")
        diagnostics["alpha"] = alpha
        diagnostics["alpha_std_error"] = se_alpha

    for message in messages:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    diagnostics["warnings"] = list(messages)

    return Fit(
        engine="glm",
        family=family,
        terms=tuple(design.terms),
        coef=np.asarray(coef[:n_par], dtype=np.float64),
        coef_cov=np.asarray(coef_cov, dtype=np.float64),
        group_sd=pd.DataFrame({c: pd.Series(dtype=object if c == "term" else float)
                               for c in GROUP_SD_COLUMNS}),
        dispersion=dispersion,
        diagnostics=diagnostics,
        warnings=tuple(messages),
        ci_prob=float(getattr(spec, "ci_prob", 0.95)),
        raw=results,
    )


def _options(spec: Any) -> dict[str, Any]:
    given = dict(getattr(spec, "engine_options", {}).get("glm", {}))
    unknown = sorted(set(given) - set(DEFAULT_OPTIONS))
    if unknown:
        raise SpecError(
            f"unknown option(s) {unknown!r} in [fit.glm]; options are {sorted(DEFAULT_OPTIONS)!r}"
        )
    options = {**DEFAULT_OPTIONS, **given}
    if options["on_separation"] not in ("raise", "warn"):
        raise SpecError(
            f"[fit.glm] on_separation must be 'raise' or 'warn', not {options['on_separation']!r}"
        )
    maxiter = options["maxiter"]
    if not isinstance(maxiter, int) or isinstance(maxiter, bool) or maxiter < 1:
        raise SpecError(f"[fit.glm] maxiter must be a positive integer, not {maxiter!r}")
    return options


def _cluster_term(design: Design, choice: str) -> Any:
    """The group term whose levels are the clusters, or None for conventional errors."""
    if choice == "none" or not design.groups:
        if choice not in ("none", "auto"):
            raise SpecError(
                f"[fit.glm] cluster {choice!r} names a group term, but the model has none; "
                "use cluster = \"none\" or add [model] groups"
            )
        return None
    if choice == "auto":
        # Innermost term of each nested chain: a term that is nobody's parent.
        parents = {g.parent for g in design.groups}
        innermost = [g for g in design.groups if g.name not in parents]
        return max(innermost, key=lambda g: g.n_levels)
    names = [g.name for g in design.groups]
    if choice not in names:
        raise SpecError(
            f"[fit.glm] cluster {choice!r} is not a group term; choose 'auto', 'none' or one "
            f"of {names!r}"
        )
    return design.group(choice)


def _separation(design: Design) -> list[str]:
    """Levels of categorical variables with no events (or, binomial, all events)."""
    if design.data is None:
        return []
    found: list[str] = []
    events = np.asarray(design.events, dtype=np.float64)
    trials = np.asarray(design.trials, dtype=np.float64)
    for var, levels in design.levels.items():
        codes = np.asarray(design.data[var].astype(str))
        for level in levels:
            rows = codes == level
            n_events = float(events[rows].sum())
            n_trials = float(trials[rows].sum())
            if n_events == 0:
                found.append(
                    f"level {level!r} of {var!r} has no events (0 of {n_trials:,.0f} trials)"
                )
            elif design.family == "binomial" and n_events == n_trials:
                found.append(
                    f"level {level!r} of {var!r} has events for every trial "
                    f"({n_events:,.0f} of {n_trials:,.0f})"
                )
    return found


def _glm_facts(results: Any) -> dict[str, Any]:
    return {
        "converged": bool(results.converged),
        "iterations": int(results.fit_history["iteration"]),
        "loglik": float(results.llf),
    }


def _fit_family(
    family: str, X: np.ndarray, events: np.ndarray, trials: np.ndarray, options: dict[str, Any]
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit; return results, estimates, inverse information, per-cell scores and facts."""
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    maxiter = int(options["maxiter"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if family == "binomial":
            endog = np.column_stack([events, trials - events])
            model = sm.GLM(endog, X, family=sm.families.Binomial())
            results = model.fit(maxiter=maxiter)
            beta = np.asarray(results.params)
            mu = trials / (1.0 + np.exp(-(X @ beta)))
            weight = mu * (1.0 - mu / trials)  # n p (1 - p)
            scores = X * (events - mu)[:, None]
            info = X.T @ (X * weight[:, None])
            bread = np.linalg.inv(info)
            facts = _glm_facts(results)
        elif family == "poisson":
            model = sm.GLM(events, X, family=sm.families.Poisson(), offset=np.log(trials))
            results = model.fit(maxiter=maxiter)
            beta = np.asarray(results.params)
            mu = trials * np.exp(X @ beta)
            scores = X * (events - mu)[:, None]
            bread = np.linalg.inv(X.T @ (X * mu[:, None]))
            facts = _glm_facts(results)
        elif family == "negative_binomial":
            model = NegativeBinomial(events, X, loglike_method="nb2", exposure=trials)
            results = model.fit(method="newton", maxiter=maxiter, disp=0)
            beta = np.asarray(results.params)
            scores = np.asarray(model.score_obs(beta))
            bread = np.linalg.inv(-np.asarray(model.hessian(beta)))
            facts = {
                "converged": bool(results.mle_retvals.get("converged", False)),
                "iterations": int(results.mle_retvals.get("iterations", -1)),
                "loglik": float(results.llf),
                "alpha": float(beta[-1]),
            }
        else:
            raise SpecError(
                f"family {family!r} is not known; valid families are 'binomial', 'poisson', "
                "'negative_binomial'"
            )
    # statsmodels warns of "perfect prediction" for any saturated fit (deviance 0), which is
    # not separation; separation is detected per level before the fit and by the size of
    # the coefficients after it. Its messages are kept in the diagnostics.
    facts["library_warnings"] = sorted({str(w.message) for w in caught})
    return results, beta, bread, scores, facts
