"""The ``ml`` engine: hierarchical GLMMs by Laplace-approximate maximum likelihood.

Binomial (logit link), Poisson and negative-binomial (log link, ``log(trials)`` offset)
models with random intercepts for every group term (nested or crossed) and, optionally,
independent varying slopes (``(x || g)``), fitted from cells (aggregated counts). The
objective is the Laplace approximation of the marginal likelihood, the one ``lme4::glmer``
(``nAGQ = 1``) and ``glmmTMB`` maximise [1]_ [2]_; the numerics are the package's own
(:mod:`disparity.engines.laplace`): an exact block (Schur-complement) factorisation of the
random-effect curvature and the exact gradient of the Laplace objective, in O(cells).

Censored cells (``design.events_upper``) enter with their exact interval likelihood
``log sum_{k=lo..hi} P(Y = k | eta)``, inside the Laplace approximation too.

How the numbers are made
------------------------
- **Fixed effects and SDs**: BFGS on the Laplace log-likelihood with its exact gradient,
  in coordinates whitened by the curvature at the start (one unit is about one standard
  error), to a gradient below ``tolerance`` standard errors.
- **Standard errors** (option ``se_method``):

  ``"hessian"``
      the inverse of the Hessian of the Laplace log-likelihood in the fixed effects, the
      SDs and the log negative-binomial shape: the Jacobian of the exact gradient, taken by
      central differences (``2 P`` gradient evaluations, as TMB's ``sdreport`` does with its
      automatic gradient). It propagates the uncertainty of the variance parameters into
      the fixed effects (``glmmTMB``'s standard errors).
  ``"conditional"``
      ``(X'WX - X'WZ (Z'WZ + G^-1)^-1 Z'WX)^-1`` at the conditional modes: the inverse
      information of the fixed effects with the variance parameters held at their
      estimates (``lme4``'s ``vcov(fit, use.hessian = FALSE)``). It ignores the variance
      parameters' own uncertainty, which matters little for contrasts (odds and rate ratios)
      and most for the intercept. The SDs' standard errors still come from the Hessian, with
      its fixed-effect block replaced by that information.
  ``"auto"`` (default)
      ``"hessian"`` while ``cells x parameters`` is at most :data:`HESSIAN_BUDGET` (2e7:
      every model up to about a million pupils with the national formula), otherwise
      ``"conditional"``.

- **Group SDs**: ``|sigma|``; the interval is Wald on the log scale,
  ``exp(log sigma +/- z se(log sigma))``, and ``se(sigma) = sigma se(log sigma)``. A term
  estimated at (near) zero (below 0.001) gets no interval and a warning.
- **Group effects**: conditional modes ``sigma u_hat`` and conditional standard deviations
  ``sigma sqrt(diag H^-1)`` (``lme4``'s ``condVar``), one row per level.
- **Convergence**: BFGS's status, the iteration limit ``maxit`` and the gradient at the
  estimate scaled by the standard errors (roughly how many standard errors one Newton step
  would still move each parameter); above ``gradient_tol`` the fit is not converged.

Options are read from ``spec.engine_options["ml"]`` (the ``[fit.ml]`` table); see
:data:`DEFAULT_OPTIONS`.

References
----------
.. [1] Bates, D., Maechler, M., Bolker, B. and Walker, S. (2015). Fitting linear
   mixed-effects models using lme4. *Journal of Statistical Software* 67(1), 1-48.
.. [2] Brooks, M. E. et al. (2017). glmmTMB balances speed and flexibility among packages
   for zero-inflated generalized linear mixed modeling. *The R Journal* 9(2), 378-400.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from disparity.design import Design
from disparity.engines.base import Fit
from disparity.errors import ConvergenceWarning, FitError, SpecError

#: Defaults of the ``[fit.ml]`` options: ``maxit`` BFGS iterations; ``tolerance`` the BFGS
#: gradient tolerance in standard-error units; ``se_method`` as in the module docstring;
#: ``gradient_tol`` the largest scaled gradient of a converged fit; ``num_threads`` threads
#: of the dense linear algebra (one: the machine is shared, and one thread makes the
#: arithmetic the same from run to run); ``quadrature_nodes`` 1 for the Laplace
#: approximation, more (e.g. 9) for adaptive Gauss-Hermite quadrature of nested random
#: intercepts (lme4's ``nAGQ``, at both levels of ``la/school``).
DEFAULT_OPTIONS: dict[str, Any] = {
    "maxit": 200,
    "tolerance": 1e-6,
    "se_method": "auto",
    "gradient_tol": 0.01,
    "num_threads": 1,
    "quadrature_nodes": 1,
}
_SE_METHODS = ("auto", "hessian", "conditional")
#: ``cells * parameters`` up to which ``se_method = "auto"`` takes the Hessian (about 20 s
#: of central differences at 2e7 on one core); above it, the conditional covariance.
HESSIAN_BUDGET = 2e7
_FAMILIES = ("binomial", "poisson", "negative_binomial")
#: An SD below this on the link scale is treated as zero: a boundary, or "singular", fit.
_ZERO_SD = 1e-3
#: Mean events per level of a group term below which the Laplace approximation is known to
#: misjudge the variance components (sparse counts in small clusters, Breslow and Lin 1995).
#: Measured (docs/performance.md): at 0.3 events per school Laplace put the school SD at
#: 0.8-1.0 against a true 0.6 where quadrature gave 0.5-0.7; at 2.7 events per school the
#: two agreed within half a standard error.
SPARSE_EVENTS_PER_LEVEL = 2.0


#: This engine fits interval-censored event counts (``Design.events_upper``).
FITS_CENSORED: bool = True


def fit(design: Design, spec: Any, *, progress: bool = True) -> Fit:
    """Fit a hierarchical GLMM by Laplace-approximate maximum likelihood.

    Parameters
    ----------
    design : Design
        Fixed-effect matrix, events (and ``events_upper`` for censored cells), trials and
        group (and slope) terms of the cells.
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
        No group terms, impossible counts, or too many random effects outside the largest
        group term to factorise.

    Warns
    -----
    ConvergenceWarning
        The optimiser did not converge, a group SD was estimated at zero, or the events are
        too sparse for the Laplace approximation's variance components; the message says what
        to try.

    Notes
    -----
    With categorical covariates the binomial likelihood of cells equals the Bernoulli
    likelihood of the pupils in them up to a constant, so the estimates are those of a
    pupil-level fit.

    References
    ----------
    .. [1] Bates, D. et al. (2015). Fitting linear mixed-effects models using lme4.
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
    from disparity.engines.cell_likelihood import CellModel
    from disparity.engines.laplace import MAX_DENSE_EFFECTS, LaplaceGLMM
    from disparity.engines.laplace_fit import fit_laplace

    family = design.family
    if family not in _FAMILIES:
        raise SpecError(
            f"family {family!r} is not supported by the ml engine; "
            f"valid families are {', '.join(map(repr, _FAMILIES))}"
        )
    options = _options(spec)
    if options["se_method"] == "auto":
        n_par = design.X.shape[1] + len(design.groups) + sum(len(s.columns) for s in design.slopes)
        options["se_method"] = ("hessian" if design.n_cells * n_par <= HESSIAN_BUDGET
                                else "conditional")
    ci_prob = float(getattr(spec, "ci_prob", 0.95))
    if not design.groups:
        raise FitError(
            "the ml engine fits random effects but the model has no group terms; add "
            "[model] groups (e.g. groups = [\"la/school\"]) or use engine = \"glm\""
        )
    events, trials, upper = _counts(design)
    components = _components(design)
    X = np.ascontiguousarray(design.X, dtype=np.float64)
    if progress:
        print(
            f"ml: fitting {family} GLMM to {design.n_cells:,} cells, "
            f"{len(design.terms)} fixed effects, random effects "
            + ", ".join(f"{c.name} ({c.n_levels:,})" for c in components),
            file=sys.stderr,
        )
    start = time.perf_counter()
    with _threads(options["num_threads"]):
        try:
            model = LaplaceGLMM(X, components, CellModel(family, events, trials, upper))
        except ValueError as exc:
            raise FitError(
                f"the ml engine cannot fit this model: {exc}. Use fewer levels in the crossed "
                f"group terms (at most {MAX_DENSE_EFFECTS} random effects outside the largest "
                "term), or engine = \"pymc\"."
            ) from None
        result = fit_laplace(model, nb=family == "negative_binomial", maxit=options["maxit"],
                             gtol=options["tolerance"], se_method=options["se_method"])
        laplace_log_likelihood = result.log_likelihood
        nodes = int(options["quadrature_nodes"])
        if nodes > 1:
            result = _refine_by_quadrature(design, model, result, nodes, options)
        summaries = _level_summaries(model, result)
    seconds = time.perf_counter() - start

    p, K = len(design.terms), len(components)
    sd = np.abs(result.sigma)
    singular = [c.name for c, s in zip(components, sd) if s < _ZERO_SD]
    cov_t = _symmetric(np.linalg.pinv(result.hessian))
    act = list(result.active)
    coef_cov = cov_t[:p, :p]
    log_sd_se = np.full(K, np.nan)
    for k in range(K):
        if p + k in act:
            j = act.index(p + k)
            log_sd_se[k] = math.sqrt(max(cov_t[j, j], 0.0)) / sd[k]
    shape = shape_se = None
    if family == "negative_binomial":
        shape = float(result.alpha)
        j = act.index(p + K)
        shape_se = shape * math.sqrt(max(cov_t[j, j], 0.0))
    if options["se_method"] == "conditional" and nodes == 1:
        coef_cov = summaries["conditional_cov"]

    # ------------------------------------------------------------------ tables
    z = _normal_quantile(0.5 + ci_prob / 2.0)
    sd_rows = []
    for k, comp in enumerate(components):
        s = float(sd[k])
        if comp.name in singular:
            se, lo, hi = np.nan, 0.0, np.nan
        elif not np.isfinite(log_sd_se[k]):
            se = lo = hi = np.nan
        else:
            se = s * log_sd_se[k]
            lo, hi = s * math.exp(-z * log_sd_se[k]), s * math.exp(z * log_sd_se[k])
        sd_rows.append({"term": comp.name, "estimate": s, "std_error": se,
                        "conf_low": lo, "conf_high": hi})
    group_sd = pd.DataFrame(sd_rows, columns=["term", "estimate", "std_error", "conf_low",
                                              "conf_high"])
    group_effects: dict[str, pd.DataFrame] = {}
    slope_parts: dict[str, list[pd.DataFrame]] = {}
    for k, comp in enumerate(components):
        est, var = summaries["modes"][k], summaries["variances"][k]
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
    names = list(design.terms) + [f"sd[{c.name}]" for c in components] + (
        ["log_shape"] if shape is not None else [])
    names = [names[j] for j in act]
    scaled = result.scaled_gradient
    hit_max = result.iterations >= int(options["maxit"])
    grad_bad = bool(np.any(~np.isfinite(scaled))) or float(np.max(scaled, initial=0.0)) > float(
        options["gradient_tol"])
    converged = not hit_max and not grad_bad
    notes: list[str] = []
    if not converged:
        why = []
        if hit_max:
            why.append(f"it stopped at the iteration limit (maxit = {options['maxit']})")
        if grad_bad:
            worst = int(np.nanargmax(np.where(np.isfinite(scaled), scaled, np.inf)))
            why.append(
                f"the log-likelihood is not flat at the estimate: one more Newton step would "
                f"move {names[worst]} by about {scaled[worst]:.2g} standard errors "
                f"(tolerance {options['gradient_tol']})"
            )
        notes.append(
            "The ml fit did not converge: " + "; ".join(why) + ". Estimates, especially the "
            "group SDs, may be wrong. Try a larger [fit.ml] maxit, or check the model against "
            "engine = \"pymc\"."
        )
    for name in singular:
        notes.append(
            f"The {name} SD was estimated at (near) zero: the data show no variation between "
            f"{name} levels beyond what the other terms explain (a boundary, or singular, "
            "fit). Its standard error and upper limit are not available; consider dropping "
            f"the {name} term, or use engine = \"pymc\" for an interval."
        )
    sparse = _sparse_events(design, events, upper)
    if sparse and nodes == 1:
        name, per_level = sparse
        notes.append(
            f"There are only {per_level:.2g} events per {name} on average. With so few events "
            "per group the Laplace approximation used by the ml engine (as by lme4 and "
            "glmmTMB) is known to misjudge the group SDs: it can overstate some and "
            "understate others, and their intervals can miss the truth. The fixed effects "
            "(odds and rate ratios) are less affected. Treat the group SDs, and anything "
            "built on them, as unreliable: for nested random intercepts set [fit.ml] "
            "quadrature_nodes = 9 (adaptive Gauss-Hermite quadrature), or fit the model with "
            "engine = \"pymc\"."
        )
    for note in notes:
        warnings.warn(note, ConvergenceWarning, stacklevel=2)

    diagnostics: dict[str, Any] = {
        "converged": bool(converged),
        "iterations": int(result.iterations),
        "newton_polish_steps": int(result.polish_steps),
        "max_iterations": int(options["maxit"]),
        "function_evaluations": int(result.evaluations),
        "newton_iterations": int(model.newton_iterations),
        "optimizer": "BFGS (exact Laplace gradient)" if nodes == 1 else
        f"BFGS (Laplace, then adaptive Gauss-Hermite quadrature with {nodes} nodes)",
        "approximation": "laplace" if nodes == 1 else f"adaptive Gauss-Hermite ({nodes} nodes)",
        "laplace_log_likelihood": float(laplace_log_likelihood),
        "optimizer_message": result.message,
        "log_likelihood": float(result.log_likelihood),
        "tolerance": float(options["tolerance"]),
        "max_scaled_gradient": float(np.max(scaled, initial=0.0)),
        "scaled_gradient": {n: float(v) for n, v in zip(names, scaled)},
        "gradient_tol": float(options["gradient_tol"]),
        "cov_type": options["se_method"] if nodes == 1 else "hessian",
        "singular_terms": singular,
        "sparse_events": None if not sparse else {"term": sparse[0],
                                                  "events_per_level": float(sparse[1])},
        "dispersion_std_error": float(shape_se) if shape_se is not None else None,
        "n_cells": int(design.n_cells),
        "n_censored_cells": int(len(model.cells.censored)),
        "n_covariate_patterns": int(model.st.n_patterns),
        "n_levels": {c.name: int(c.n_levels) for c in components},
        "seconds_by_step": {k: round(v, 3) for k, v in result.seconds.items()},
        "seconds": round(seconds, 3),
    }
    if progress:
        print(
            f"ml: {'converged' if converged else 'NOT converged'} after {result.iterations} "
            f"iterations in {seconds:.1f} s; log-likelihood {result.log_likelihood:.4f}",
            file=sys.stderr,
        )
    return Fit(
        engine="ml",
        family=family,
        terms=tuple(design.terms),
        coef=np.asarray(result.beta, dtype=float),
        coef_cov=_symmetric(np.asarray(coef_cov, dtype=float)),
        group_sd=group_sd,
        group_effects=group_effects,
        slope_effects=slope_effects,
        dispersion=shape,
        diagnostics=diagnostics,
        warnings=tuple(notes),
        ci_prob=ci_prob,
        raw=result,
    )


# --------------------------------------------------------------------------- helpers
def _options(spec: Any) -> dict[str, Any]:
    """``DEFAULT_OPTIONS`` updated with ``spec.engine_options["ml"]``, checked."""
    given = dict((getattr(spec, "engine_options", None) or {}).get("ml", {}) or {})
    unknown = sorted(k for k in given if k not in DEFAULT_OPTIONS)
    if unknown:
        raise SpecError(
            f"[fit.ml] option(s) {unknown} are not known; valid options are "
            + ", ".join(sorted(DEFAULT_OPTIONS))
        )
    options = {**DEFAULT_OPTIONS, **given}
    if options["se_method"] not in _SE_METHODS:
        raise SpecError(
            f"[fit.ml] se_method {options['se_method']!r} is not known; valid choices are "
            + ", ".join(map(repr, _SE_METHODS))
        )
    if int(options["maxit"]) < 1:
        raise SpecError(f"[fit.ml] maxit must be at least 1, got {options['maxit']!r}")
    if int(options["quadrature_nodes"]) < 1:
        raise SpecError("[fit.ml] quadrature_nodes must be at least 1 (1 is the Laplace "
                        f"approximation), got {options['quadrature_nodes']!r}")
    if not float(options["tolerance"]) > 0:
        raise SpecError(f"[fit.ml] tolerance must be > 0, got {options['tolerance']!r}")
    return options


def _counts(design: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Events, trials and (for censored cells) upper counts, checked."""
    events = np.asarray(design.events, dtype=np.float64)
    trials = np.asarray(design.trials, dtype=np.float64)
    upper = getattr(design, "events_upper", None)
    problems = []
    for label, bad in (
        ("negative or missing events", ~(events >= 0)),
        ("zero, negative or missing trials", ~(trials > 0)),
    ):
        if bad.any():
            rows = (np.flatnonzero(bad)[:5] + 1).tolist()
            problems.append(f"{int(bad.sum())} cell(s) with {label} (rows {rows})")
    if upper is not None:
        upper = np.asarray(upper, dtype=np.float64)
        if upper.shape != events.shape:
            problems.append(
                f"events_upper has {upper.size} values for {events.size} cells; give one "
                "per cell (equal to events where the count is exact)"
            )
        else:
            bad = ~(upper >= events) | (upper != np.round(upper))
            if bad.any():
                rows = (np.flatnonzero(bad)[:5] + 1).tolist()
                problems.append(
                    f"{int(bad.sum())} cell(s) whose events_upper is below events or not a "
                    f"whole number (rows {rows})"
                )
    top = upper if upper is not None and upper.shape == events.shape else events
    if design.family == "binomial":
        bad = top > trials
        if bad.any():
            problems.append(
                f"{int(bad.sum())} cell(s) with more events than trials "
                f"(rows {(np.flatnonzero(bad)[:5] + 1).tolist()})"
            )
    if problems:
        raise FitError(
            "the ml engine cannot fit these cells: " + "; ".join(problems)
            + ". Fix or drop those rows (build_design drops cells with zero trials)."
        )
    if upper is not None and not np.any(upper > events):
        upper = None
    return events, trials, upper


def _components(design: Design) -> list:
    """Random-effect components: intercepts of every group term, then slope columns."""
    from disparity.engines.laplace import Component

    comps = [
        Component(name=g.name, group=g.name, index=np.asarray(g.index), n_levels=g.n_levels,
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
                Component(name=f"{term}|{g.name}", group=g.name, index=np.asarray(g.index),
                          n_levels=g.n_levels, levels=tuple(g.levels),
                          x=np.asarray(design.X[:, col], dtype=np.float64), term=term)
            )
    return comps


def _slope_variable(design: Design, comp) -> str:
    for s in design.slopes:
        if s.group == comp.group and comp.term in s.terms:
            return s.variable
    return str(comp.term)


def _refine_by_quadrature(design: Design, model, result, nodes: int, options):
    """Re-maximise by nested adaptive Gauss-Hermite quadrature (intercept-only models)."""
    from disparity.engines.laplace_fit import fit_quadrature
    from disparity.engines.quadrature import NestedQuadrature

    groups = design.groups
    nested = len(groups) == 2 and groups[1].parent == groups[0].name
    if design.slopes or design.family == "negative_binomial" or not (len(groups) == 1
                                                                     or nested):
        raise SpecError(
            "[fit.ml] quadrature_nodes > 1 needs a binomial or Poisson model whose random "
            "effects are intercepts of one group term or of two nested terms (e.g. groups = "
            "[\"la/school\"]) with no varying slopes; this model has "
            f"{len(groups)} group term(s), {len(design.slopes)} slope term(s) and family "
            f"{design.family!r}. Use quadrature_nodes = 1 (Laplace) or engine = \"pymc\"."
        )
    inner = groups[-1].index
    outer = groups[0].index if nested else None
    quad = NestedQuadrature(design.X, inner, outer, model.cells, nodes, nodes)
    refined = fit_quadrature(quad, result, maxit=options["maxit"], gtol=options["tolerance"])
    refined.seconds = {**result.seconds, **refined.seconds}
    return refined


def _level_summaries(model, result) -> dict[str, Any]:
    """Conditional modes and variances of every component's levels; conditional covariance."""
    st = model.st
    beta, sigma, alpha = result.beta, result.sigma, result.alpha
    eta, der, F, joint, vb, vm = model.modes(beta, sigma, alpha)
    db, dm = model.diag_inverse(F)
    modes, variances = {}, {}
    for j, k in enumerate(st.big):
        modes[k] = sigma[k] * model.u_big[:, j]
        variances[k] = sigma[k] ** 2 * db[:, j]
    for j, k in enumerate(st.small):
        off, n = st.small_offset[j], st.components[k].n_levels
        modes[k] = sigma[k] * model.u_small[off: off + n]
        variances[k] = sigma[k] ** 2 * dm[off: off + n]
    info = model.conditional_information(F, -der.d2, vb, vm)
    return {"modes": modes, "variances": variances,
            "conditional_cov": _symmetric(np.linalg.inv(info))}


def _sparse_events(design: Design, events: np.ndarray,
                   upper: np.ndarray | None) -> tuple[str, float] | None:
    """The group term with the fewest events per level, when below the sparse threshold."""
    if design.family not in ("binomial", "poisson", "negative_binomial"):
        return None
    total = float(np.sum(events if upper is None else (events + upper) / 2.0))
    worst = None
    for g in design.groups:
        per = total / g.n_levels
        if per < SPARSE_EVENTS_PER_LEVEL and (worst is None or per < worst[1]):
            worst = (g.name, per)
    return worst


class _threads:
    """Cap BLAS threads for the fit (threadpoolctl when installed)."""

    def __init__(self, n: Any) -> None:
        self.n = None if n is None else int(n)
        self.ctx = None

    def __enter__(self) -> _threads:
        if self.n is not None:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - optional
                return self
            self.ctx = threadpool_limits(limits=self.n)
            self.ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def _symmetric(a: np.ndarray) -> np.ndarray:
    return (a + a.T) / 2.0


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(q))
