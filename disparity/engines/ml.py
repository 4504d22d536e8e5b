"""The ``ml`` engine: hierarchical GLMMs by Laplace-approximate maximum likelihood.

Binomial (logit link), Poisson and negative-binomial (log link, ``log(trials)`` offset)
models with random intercepts for every group term and, optionally, varying slopes, fitted
from cells (aggregated counts) with GPBoost [1]_, which maximises the Laplace approximation
of the marginal likelihood as R's ``lme4::glmer`` does [2]_.

How the numbers are made
------------------------
- **Fixed effects**: the GPBoost estimates.
- **Fixed-effect covariance** (option ``se_method``):

  ``"hessian"``
      the inverse of a finite-difference Hessian of the Laplace log-likelihood in the fixed
      effects, the log group SDs (and the log negative-binomial shape), as ``lme4`` does by
      default. It propagates the uncertainty of the variance parameters. It costs about
      ``2 m^2`` likelihood evaluations for ``m`` parameters.
  ``"conditional"``
      ``(X'WX - X'WZ (Z'WZ + G^-1)^-1 Z'WX)^-1`` at the conditional modes, i.e. the inverse
      Fisher information of the fixed effects with the variance parameters held at their
      estimates (``lme4``'s ``use.hessian = FALSE``). ``W`` holds the GLM working weights
      (binomial ``n p (1 - p)``, Poisson ``mu``, negative binomial ``mu r / (mu + r)``).
      Cheap at national scale; it ignores the variance parameters' own uncertainty, which
      matters little for contrasts (odds and rate ratios) and most for the intercept.
  ``"auto"`` (default)
      ``"hessian"`` for small problems (``cells * m^2 <= 2e7``), otherwise ``"conditional"``.

- **Group SDs**: ``sigma`` from the variance estimate. Its standard error is by the delta
  method from the standard error of ``log sigma`` (Hessian method) or of the variance
  (GPBoost's, conditional method): ``se(sigma) = sigma * se(log sigma)``. The interval is
  Wald on the log scale, ``exp(log sigma +/- z se(log sigma))``, which stays positive and is
  closer to a profile interval than a Wald interval on ``sigma``. A term estimated at (near)
  zero gets no interval and a warning.
- **Group effects**: conditional modes and conditional (posterior) variances from GPBoost,
  one row per level.
- **Varying slopes**: GPBoost random coefficients, independent of the intercepts and of each
  other (no correlation parameters, unlike ``lme4``'s ``(x | g)``; like ``(x || g)``).
- **Convergence**: GPBoost's convergence status and iteration count, plus a
  finite-difference gradient of the log-likelihood at the estimate scaled by the standard
  errors (roughly how many standard errors one Newton step would still move each
  parameter); a fit with a scaled gradient above ``gradient_tol`` is reported as not
  converged. ``check_gradient="auto"`` checks every parameter on small problems
  (``cells * m <= 1e6``) and only the variance parameters (and the negative-binomial shape),
  the ones that stop early at national scale, on larger ones (``2 m`` or ``2 k``
  likelihood evaluations); ``"all"``, ``"variance"`` or ``False`` choose.

Options are read from ``spec.engine_options["ml"]`` (the ``[fit.ml]`` table); see
:data:`DEFAULT_OPTIONS`. Other GPBoost optimiser parameters (``lr_cov``, ``m_lbfgs``,
``delta_conv_mode_finding``, ...) are passed through.

References
----------
.. [1] Sigrist, F. (2022). Gaussian Process Boosting. *Journal of Machine Learning
   Research* 23(232), 1-46; GPBoost documentation, https://gpboost.readthedocs.io.
.. [2] Bates, D., Maechler, M., Bolker, B. and Walker, S. (2015). Fitting linear
   mixed-effects models using lme4. *Journal of Statistical Software* 67(1), 1-48.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from disparity.design import Design
from disparity.engines.base import Fit
from disparity.errors import ConvergenceWarning, FitError, SpecError

#: Defaults of the ``[fit.ml]`` options. ``delta_rel_conv`` is far tighter than GPBoost's
#: own default (1e-6), which stopped a national-scale fit (8M pupils) with an LA SD of 0.70
#: against a true 0.25. ``num_threads`` is 1: on a busy 2-core machine GPBoost's default
#: (all cores) ran 30-40 times slower than one thread, and one thread makes the arithmetic,
#: and so ``estimates.csv``, the same from run to run. Set it higher for national data on
#: an idle many-core machine.
DEFAULT_OPTIONS: dict[str, Any] = {
    "delta_rel_conv": 1e-10,
    "maxit": 1000,
    "optimizer_cov": "lbfgs",
    "max_num_restarts_lbfgs": 2,
    "cold_restart_lbfgs": False,
    "matrix_inversion_method": "cholesky",
    "num_threads": 1,
    "se_method": "auto",
    "check_gradient": "auto",
    "gradient_tol": 0.01,
}

#: Options this engine uses itself; every other key goes to GPBoost's optimiser.
_OWN_OPTIONS = ("matrix_inversion_method", "num_threads", "se_method", "check_gradient",
                "gradient_tol")
_SE_METHODS = ("auto", "hessian", "conditional")
_LIKELIHOODS = {
    "binomial": "binomial_logit",
    "poisson": "poisson",
    "negative_binomial": "negative_binomial",
}
#: A variance below this (an SD below 0.001 on the link scale) is treated as zero: a
#: boundary, or "singular", fit (lme4's isSingular uses 1e-4 on its relative SD scale).
_ZERO_VARIANCE = 1e-6
#: ``cells * m^2`` up to which ``se_method="auto"`` uses the Hessian.
_HESSIAN_BUDGET = 2e7
#: ``cells * m`` up to which ``check_gradient="auto"`` checks every parameter; above it only
#: the variance parameters (and the negative-binomial shape) are checked.
_GRADIENT_BUDGET = 1e6
#: Finite-difference step, in standard errors of each parameter.
_FD_STEP = 0.1


@dataclass(frozen=True)
class _Component:
    """One random-effect component: an intercept, or a slope of one X column."""

    name: str          # "school", or "<term>|<group>" for a slope
    group: str         # the group term's name
    index: np.ndarray  # level code of each cell
    n_levels: int
    levels: tuple[str, ...]
    x: np.ndarray | None = None  # covariate of a slope; None for an intercept
    term: str | None = None


def fit(design: Design, spec: Any, *, progress: bool = True) -> Fit:
    """Fit a hierarchical GLMM by Laplace-approximate maximum likelihood (GPBoost).

    Parameters
    ----------
    design : Design
        Fixed-effect matrix, events, trials and group (and slope) terms of the cells.
    spec : ModelSpec
        Reads ``family``, ``ci_prob`` and the ``engine_options["ml"]`` table.
    progress : bool, default True
        Print a line to standard error when the fit starts and ends.

    Returns
    -------
    Fit
        ``engine="ml"``: fixed effects and their covariance, group SDs with standard errors
        and log-scale Wald intervals, conditional modes of the group effects with their
        conditional standard deviations, the negative-binomial shape, diagnostics.

    Raises
    ------
    SpecError
        Unknown family or ``[fit.ml]`` option.
    FitError
        No group terms, negative counts, or GPBoost failed.

    Warns
    -----
    ConvergenceWarning
        The optimiser did not converge, or a group SD was estimated at zero; the message
        says what to try.

    Notes
    -----
    The Laplace approximation to the marginal likelihood integrates the group effects out
    around their conditional modes [1]_; it is the default of ``lme4::glmer`` [2]_. With
    categorical covariates the binomial likelihood of cells equals the Bernoulli likelihood
    of the pupils in them up to a constant, so the estimates are those of a pupil-level fit.

    References
    ----------
    .. [1] Sigrist, F. (2022). Gaussian Process Boosting. *JMLR* 23(232), 1-46.
    .. [2] Bates, D. et al. (2015). Fitting linear mixed-effects models using lme4.
       *Journal of Statistical Software* 67(1).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from disparity.spec import ModelSpec
    >>> from disparity.design import build_design
    >>> rng = np.random.default_rng(1)
    >>> school = np.repeat([f"s{i}" for i in range(12)], 2)
    >>> cells = pd.DataFrame({"school": school, "sen": ["none", "ehcp"] * 12,
    ...                       "n_pupils": 200})
    >>> school_effect = np.repeat(rng.normal(0, 0.5, 12), 2)
    >>> logit = np.where(cells.sen == "ehcp", -2.0, -3.5) + school_effect
    >>> cells["n_perm_excl"] = rng.binomial(200, 1 / (1 + np.exp(-logit)))
    >>> spec = ModelSpec(formula="sen", groups=("school",), engine="ml")
    >>> f = fit(build_design(spec, cells), spec, progress=False)
    >>> f.terms, f.group_sd.term.tolist(), len(f.group_effects["school"])
    (('Intercept', 'sen[T.ehcp]'), ['school'], 12)
    >>> bool(abs(f.coef[1] - 1.5) < 3 * f.std_errors[1])  # true log odds ratio 1.5
    True
    """
    import gpboost as gpb

    family = design.family
    if family not in _LIKELIHOODS:
        raise SpecError(
            f"family {family!r} is not supported by the ml engine; "
            f"valid families are {', '.join(map(repr, _LIKELIHOODS))}"
        )
    options = _options(spec)
    ci_prob = float(getattr(spec, "ci_prob", 0.95))
    if not design.groups:
        raise FitError(
            "the ml engine fits random effects but the model has no group terms; add "
            "[model] groups (e.g. groups = [\"la/school\"]) or use engine = \"glm\""
        )
    y, weights, offset = _response(design)
    components = _components(design)
    X = np.ascontiguousarray(design.X, dtype=np.float64)

    model_kw: dict[str, Any] = dict(
        likelihood=_LIKELIHOODS[family],
        group_data=np.column_stack([g.index for g in design.groups]).astype(np.int64),
        matrix_inversion_method=options["matrix_inversion_method"],
        weights=weights,
    )
    if options["num_threads"] is not None:
        model_kw["num_parallel_threads"] = int(options["num_threads"])
    if design.slopes:
        names = [g.name for g in design.groups]
        slope_cols = [c for s in design.slopes for c in s.columns]
        model_kw["group_rand_coef_data"] = X[:, slope_cols]
        model_kw["ind_effect_group_rand_coef"] = [
            names.index(s.group) + 1 for s in design.slopes for _ in s.columns
        ]
    optim = {k: v for k, v in options.items() if k not in _OWN_OPTIONS}

    if progress:
        print(
            f"ml: fitting {family} GLMM to {design.n_cells:,} cells, "
            f"{len(design.terms)} fixed effects, group terms "
            + ", ".join(f"{c.name} ({c.n_levels:,})" for c in components),
            file=sys.stderr,
        )
    start = time.perf_counter()
    messages: list[str] = []
    with _captured_gpboost_log(gpb, messages):
        try:
            model = gpb.GPModel(**model_kw)
            model.fit(y=y, X=X, params=optim, offset=offset)
        except Exception as exc:  # GPBoostError and ValueError from the library
            raise FitError(
                f"GPBoost could not fit the {family} model to {design.n_cells} cells: {exc}"
            ) from exc
        seconds_fit = time.perf_counter() - start

        coef = np.asarray(model.get_coef(format_pandas=False), dtype=float).ravel()
        cov = np.asarray(model.get_cov_pars(std_err=True, format_pandas=False), dtype=float)
        variances, variances_se = cov[0].copy(), cov[1].copy()
        shape = shape_se = None
        if family == "negative_binomial":
            aux = np.asarray(model.get_aux_pars(std_err=True, format_pandas=False), float)
            shape, shape_se = float(aux[0, 0]), float(aux[1, 0])
        gp_coef_se = np.asarray(
            model.get_coef(std_err=True, format_pandas=False), dtype=float
        )[1]
        re = model.predict_training_data_random_effects(predict_var=True).to_numpy()
        status, iterations = _status(model)
        neg_loglik = float(model.get_current_neg_log_likelihood())

        if len(variances) != len(components) or re.shape[1] != 2 * len(components):
            raise FitError(
                f"GPBoost returned {len(variances)} variance parameters for "
                f"{len(components)} random-effect components; this is a bug, please report it"
            )

        singular = [c.name for c, v in zip(components, variances) if v < _ZERO_VARIANCE]
        modes = re[:, : len(components)]
        eta = X @ coef + (offset if offset is not None else 0.0)
        for j, comp in enumerate(components):
            eta = eta + modes[:, j] * (1.0 if comp.x is None else comp.x)
        W = _working_weights(family, eta, weights, shape)

        p = X.shape[1]
        active = [j for j, c in enumerate(components) if variances[j] >= _ZERO_VARIANCE]
        n_par = p + len(active) + (1 if shape is not None else 0)
        se_method = options["se_method"]
        if se_method == "auto":
            se_method = "hessian" if design.n_cells * n_par**2 <= _HESSIAN_BUDGET else "conditional"
        cond_cov = _conditional_covariance(X, W, components, variances)

        # parameter vector for finite differences: beta, log sigma (active), log shape
        theta = np.concatenate(
            [coef, 0.5 * np.log(variances[active]),
             [math.log(shape)] if shape is not None else []]
        )
        log_sd_se0 = variances_se[active] / (2.0 * variances[active])
        scales = np.concatenate(
            [np.sqrt(np.diag(cond_cov)), np.where(np.isfinite(log_sd_se0), log_sd_se0, 0.1),
             [shape_se / shape] if shape is not None else []]
        )
        scales = np.where(np.isfinite(scales) & (scales > 0), scales, 0.1)
        nll = _LaplaceNLL(model, y, X, offset, variances, active, p, shape is not None)

        log_sd_se = np.full(len(components), np.nan)
        log_sd_se[active] = log_sd_se0
        hessian_ok = False
        if se_method == "hessian":
            H = _fd_hessian(nll, theta, _FD_STEP * scales)
            try:
                full_cov = np.linalg.inv(H)
                ok = np.all(np.diag(full_cov) > 0)
            except np.linalg.LinAlgError:
                ok = False
            if ok:
                hessian_ok = True
                coef_cov = _symmetric(full_cov[:p, :p])
                log_sd_se[active] = np.sqrt(np.diag(full_cov)[p : p + len(active)])
                if shape is not None:
                    shape_se = shape * math.sqrt(full_cov[-1, -1])
            else:
                coef_cov = cond_cov
                se_method = "conditional"
                messages.append(
                    "[ml] the finite-difference Hessian was not positive definite; the "
                    "conditional covariance was used instead"
                )
        else:
            coef_cov = cond_cov

        scaled_gradient = None
        check = options["check_gradient"]
        if check == "auto":
            check = "all" if design.n_cells * n_par <= _GRADIENT_BUDGET else "variance"
        elif check is True:
            check = "all"
        checked = list(range(n_par)) if check == "all" else list(range(p, n_par))
        if check and checked:
            g = _fd_gradient(nll, theta, _FD_STEP * scales, checked)
            scaled_gradient = np.abs(g * scales)[checked]
        nll(theta)  # leave GPBoost's state (modes) at the estimate
    seconds = time.perf_counter() - start

    # ------------------------------------------------------------------ tables
    z = _normal_quantile(0.5 + ci_prob / 2.0)
    sd_rows = []
    for j, comp in enumerate(components):
        sd = math.sqrt(max(variances[j], 0.0))
        if comp.name in singular or not np.isfinite(log_sd_se[j]):
            se, lo, hi = (np.nan, 0.0, np.nan) if comp.name in singular else (np.nan,) * 3
        else:
            se = sd * log_sd_se[j]
            lo, hi = float(sd * np.exp(-z * log_sd_se[j])), float(sd * np.exp(z * log_sd_se[j]))
        sd_rows.append({"term": comp.name, "estimate": sd, "std_error": se,
                        "conf_low": lo, "conf_high": hi})
    group_sd = pd.DataFrame(sd_rows, columns=["term", "estimate", "std_error", "conf_low",
                                              "conf_high"])

    group_effects: dict[str, pd.DataFrame] = {}
    slope_parts: dict[str, list[pd.DataFrame]] = {}
    for j, comp in enumerate(components):
        est, var = _per_level(comp, re[:, j], re[:, len(components) + j], variances[j])
        frame = pd.DataFrame({"level": list(comp.levels), "estimate": est,
                              "std_error": np.sqrt(np.maximum(var, 0.0))})
        if comp.x is None:
            group_effects[comp.group] = frame
        else:
            frame.insert(1, "term", comp.term)
            slope_parts.setdefault(f"{_slope_variable(design, comp)}|{comp.group}", []).append(
                frame
            )
    slope_effects = {k: pd.concat(v, ignore_index=True) for k, v in slope_parts.items()}

    # ------------------------------------------------------------------ diagnostics
    notes: list[str] = []
    hit_max = iterations >= int(options["maxit"])
    grad_bad = scaled_gradient is not None and float(np.max(scaled_gradient)) > float(
        options["gradient_tol"]
    )
    converged = status == 0 and not hit_max and not grad_bad
    names = list(design.terms) + [f"log_sd[{components[j].name}]" for j in active] + (
        ["log_shape"] if shape is not None else []
    )
    names = [names[i] for i in checked] if scaled_gradient is not None else names
    if not converged:
        why = []
        if hit_max:
            why.append(f"it stopped at the iteration limit (maxit = {options['maxit']})")
        if status == 2:
            why.append("the optimiser's line search failed before the likelihood stopped "
                       "improving")
        if status == 1 and not hit_max:
            why.append("GPBoost reports no convergence within its iteration limit")
        if grad_bad:
            worst = int(np.argmax(scaled_gradient))
            why.append(
                f"the log-likelihood is not flat at the estimate: one more Newton step would "
                f"move {names[worst]} by about {scaled_gradient[worst]:.2g} standard errors "
                f"(tolerance {options['gradient_tol']})"
            )
        notes.append(
            "The ml fit did not converge: " + "; ".join(why) + ". Estimates, especially the "
            "group SDs, may be wrong. Try a larger [fit.ml] maxit, a smaller delta_rel_conv "
            "(e.g. 1e-12), max_num_restarts_lbfgs = 5, or optimizer_cov = \"nelder_mead\"; "
            "or check the model against engine = \"pymc\"."
        )
    for name in singular:
        notes.append(
            f"The {name} SD was estimated at (near) zero: the data show no variation between "
            f"{name} levels beyond what the other terms explain (a boundary, or singular, "
            "fit). Its standard error and upper limit are not available; consider dropping "
            f"the {name} term, or use engine = \"pymc\" for an interval."
        )
    for note in notes:
        warnings.warn(note, ConvergenceWarning, stacklevel=2)

    diagnostics: dict[str, Any] = {
        "converged": bool(converged),
        "convergence_status": int(status),
        "iterations": int(iterations),
        "max_iterations": int(options["maxit"]),
        "log_likelihood": -neg_loglik,
        "optimizer": str(options["optimizer_cov"]),
        "tolerance": float(options["delta_rel_conv"]),
        "max_scaled_gradient": (
            float(np.max(scaled_gradient)) if scaled_gradient is not None else None
        ),
        "scaled_gradient": (
            {n: float(v) for n, v in zip(names, scaled_gradient)}
            if scaled_gradient is not None else None
        ),
        "gradient_tol": float(options["gradient_tol"]),
        "gradient_checked": check if check else "none",
        "coef_cov_method": se_method if (se_method != "hessian" or hessian_ok) else
        "conditional",
        "gpboost_coef_std_error": {t: float(s) for t, s in zip(design.terms, gp_coef_se)},
        "singular_terms": singular,
        "dispersion_std_error": float(shape_se) if shape_se is not None else None,
        "n_cells": int(design.n_cells),
        "n_levels": {c.name: int(c.n_levels) for c in components},
        "seconds_optimizer": round(seconds_fit, 3),
        "seconds": round(seconds, 3),
        "gpboost_version": str(getattr(gpb, "__version__", "unknown")),
        "optimizer_messages": messages,
    }
    if progress:
        print(
            f"ml: {'converged' if converged else 'NOT converged'} after {iterations} "
            f"iterations in {seconds:.1f} s; log-likelihood {-neg_loglik:.4f}",
            file=sys.stderr,
        )
    return Fit(
        engine="ml",
        family=family,
        terms=tuple(design.terms),
        coef=coef,
        coef_cov=coef_cov,
        group_sd=group_sd,
        group_effects=group_effects,
        slope_effects=slope_effects,
        dispersion=shape,
        diagnostics=diagnostics,
        warnings=tuple(notes),
        ci_prob=ci_prob,
        raw=model,
    )


# --------------------------------------------------------------------------- helpers
def _options(spec: Any) -> dict[str, Any]:
    """``DEFAULT_OPTIONS`` updated with ``spec.engine_options["ml"]``, checked."""
    given = dict((getattr(spec, "engine_options", None) or {}).get("ml", {}) or {})
    valid_gpboost = set(_gpboost_optim_keys())
    valid = set(DEFAULT_OPTIONS) | valid_gpboost
    unknown = sorted(k for k in given if k not in valid)
    if unknown:
        raise SpecError(
            f"[fit.ml] option(s) {unknown} are not known; valid options are "
            + ", ".join(sorted(valid))
        )
    options = {**DEFAULT_OPTIONS, **given}
    if options["se_method"] not in _SE_METHODS:
        raise SpecError(
            f"[fit.ml] se_method {options['se_method']!r} is not known; valid choices are "
            + ", ".join(map(repr, _SE_METHODS))
        )
    if options["check_gradient"] not in ("auto", "all", "variance", True, False):
        raise SpecError(
            f"[fit.ml] check_gradient {options['check_gradient']!r} is not known; valid "
            "choices are 'auto', 'all', 'variance', true, false"
        )
    if int(options["maxit"]) < 1:
        raise SpecError(f"[fit.ml] maxit must be at least 1, got {options['maxit']!r}")
    return options


def _gpboost_optim_keys() -> tuple[str, ...]:
    """Names of GPBoost's optimiser parameters (``GPModel.params``)."""
    import gpboost as gpb

    with _captured_gpboost_log(gpb, []):
        probe = gpb.GPModel(group_data=np.array([0, 0, 1, 1]), likelihood="poisson")
    return tuple(probe.params)


def _response(design: Design) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """GPBoost response, weights and offset: proportions and trials, or counts and log exposure."""
    events = np.asarray(design.events, dtype=np.float64)
    trials = np.asarray(design.trials, dtype=np.float64)
    problems = []
    for label, bad in (
        ("negative or missing events", ~(events >= 0)),
        ("zero, negative or missing trials", ~(trials > 0)),
    ):
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            problems.append(f"{int(bad.sum())} cell(s) with {label} (first rows {rows})")
    if design.family == "binomial":
        bad = events > trials
        if bad.any():
            problems.append(
                f"{int(bad.sum())} cell(s) with more events than trials "
                f"(first rows {np.flatnonzero(bad)[:5].tolist()})"
            )
    if problems:
        raise FitError(
            "the ml engine cannot fit these cells: " + "; ".join(problems)
            + ". Fix or drop those rows (build_design drops cells with zero trials)."
        )
    if design.family == "binomial":
        return events / trials, trials, None
    return events, None, np.log(trials)


def _components(design: Design) -> list[_Component]:
    """Random-effect components in GPBoost's order: intercepts, then slope columns."""
    comps = [
        _Component(name=g.name, group=g.name, index=np.asarray(g.index), n_levels=g.n_levels,
                   levels=tuple(g.levels))
        for g in design.groups
    ]
    for s in design.slopes:
        try:
            g = design.group(s.group)
        except KeyError:
            raise SpecError(
                f"slope of {s.variable!r} varies by {s.group!r}, which is not a group term; "
                f"group terms are {[t.name for t in design.groups]}"
            ) from None
        for col, term in zip(s.columns, s.terms):
            comps.append(
                _Component(name=f"{term}|{g.name}", group=g.name, index=np.asarray(g.index),
                           n_levels=g.n_levels, levels=tuple(g.levels),
                           x=np.asarray(design.X[:, col], dtype=np.float64), term=term)
            )
    return comps


def _slope_variable(design: Design, comp: _Component) -> str:
    for s in design.slopes:
        if s.group == comp.group and comp.term in s.terms:
            return s.variable
    return str(comp.term)


def _status(model: Any) -> tuple[int, int]:
    """GPBoost's convergence status (0 converged, 1 iteration limit, 2 line search) and
    iteration count; these are not public API, so missing ones read as converged / 0."""
    try:
        status = int(model._get_convergence_status())
    except AttributeError:  # pragma: no cover - older GPBoost
        status = 0
    try:
        iterations = int(model._get_num_optim_iter())
    except AttributeError:  # pragma: no cover
        iterations = 0
    return status, iterations


def _working_weights(
    family: str, eta: np.ndarray, trials: np.ndarray | None, shape: float | None
) -> np.ndarray:
    """GLM working (Fisher) weights on the link scale at linear predictor ``eta``."""
    if family == "binomial":
        prob = 1.0 / (1.0 + np.exp(-eta))
        return trials * prob * (1.0 - prob)
    mu = np.exp(eta)
    if family == "poisson":
        return mu
    return mu * shape / (mu + shape)


def _conditional_covariance(
    X: np.ndarray, W: np.ndarray, components: list[_Component], variances: np.ndarray
) -> np.ndarray:
    """``(X'WX - X'WZ (Z'WZ + G^-1)^-1 Z'WX)^-1``; zero-variance components are left out."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    C = X.T @ (W[:, None] * X)
    blocks, precisions = [], []
    n = X.shape[0]
    rows = np.arange(n)
    for comp, var in zip(components, variances):
        if var < _ZERO_VARIANCE:
            continue
        values = np.ones(n) if comp.x is None else comp.x
        blocks.append(sp.csr_matrix((values, (rows, comp.index)), shape=(n, comp.n_levels)))
        precisions.append(np.full(comp.n_levels, 1.0 / var))
    if blocks:
        Z = sp.hstack(blocks, format="csr")
        ZtW = Z.T.multiply(W[None, :]).tocsr()
        A = (ZtW @ Z + sp.diags(np.concatenate(precisions))).tocsc()
        B = np.asarray(ZtW @ X)
        C = C - B.T @ splu(A).solve(B)
    return _symmetric(np.linalg.inv(_symmetric(C)))


class _LaplaceNLL:
    """Negative Laplace log-likelihood at (beta, log sigma of active components, log shape)."""

    def __init__(self, model, y, X, offset, variances, active, p, has_shape):
        self.model, self.y, self.X, self.p = model, y, X, p
        self.offset = offset if offset is not None else 0.0
        self.variances, self.active, self.has_shape = variances, active, has_shape

    def __call__(self, theta: np.ndarray) -> float:
        beta = theta[: self.p]
        var = self.variances.copy()
        k = len(self.active)
        var[self.active] = np.exp(2.0 * theta[self.p : self.p + k])
        aux = np.array([math.exp(theta[-1])]) if self.has_shape else None
        fe = np.ascontiguousarray(self.X @ beta + self.offset, dtype=np.float64)
        return float(self.model.neg_log_likelihood(var, self.y, fixed_effects=fe, aux_pars=aux))


def _fd_gradient(f, x: np.ndarray, h: np.ndarray, which: list[int]) -> np.ndarray:
    """Central-difference gradient of ``f`` at ``x`` with steps ``h`` (entries ``which``;
    the others are NaN)."""
    g = np.full_like(x, np.nan)
    for i in which:
        e = np.zeros_like(x)
        e[i] = h[i]
        g[i] = (f(x + e) - f(x - e)) / (2.0 * h[i])
    return g


def _fd_hessian(f, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of ``f`` at ``x`` with steps ``h``."""
    m = len(x)
    f0 = f(x)
    H = np.empty((m, m))
    steps = [np.eye(m)[i] * h[i] for i in range(m)]
    for i in range(m):
        H[i, i] = (f(x + steps[i]) - 2.0 * f0 + f(x - steps[i])) / h[i] ** 2
        for j in range(i):
            a, b = steps[i], steps[j]
            H[i, j] = H[j, i] = (
                f(x + a + b) - f(x + a - b) - f(x - a + b) + f(x - a - b)
            ) / (4.0 * h[i] * h[j])
    return H


def _per_level(
    comp: _Component, mode: np.ndarray, var: np.ndarray, variance: float
) -> tuple[np.ndarray, np.ndarray]:
    """One value per level from per-cell columns; a level with no cells gets the prior."""
    est = np.zeros(comp.n_levels)
    cvar = np.full(comp.n_levels, max(variance, 0.0))
    codes, first = np.unique(comp.index, return_index=True)
    est[codes] = mode[first]
    cvar[codes] = var[first]
    return est, cvar


def _symmetric(a: np.ndarray) -> np.ndarray:
    return (a + a.T) / 2.0


def _normal_quantile(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


class _captured_gpboost_log:
    """Route GPBoost's log lines into ``messages`` (warnings kept) for the fit's duration."""

    def __init__(self, gpb: Any, messages: list[str]) -> None:
        self.basic = getattr(gpb, "basic", None)
        self.messages = messages

    def __enter__(self) -> _captured_gpboost_log:
        if self.basic is not None and hasattr(self.basic, "_LOGGER"):
            self.saved = self.basic._LOGGER
            self.basic._LOGGER = self
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.basic is not None and hasattr(self, "saved"):
            self.basic._LOGGER = self.saved

    def info(self, msg: str) -> None:
        text = str(msg).strip()
        if "[Warning]" in text or "[Fatal]" in text:
            self.messages.append(text.replace("[GPBoost] ", ""))

    def warning(self, msg: str) -> None:
        self.messages.append(str(msg).strip())
