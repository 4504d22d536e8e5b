"""Bayesian engine: hierarchical binomial, Poisson and negative-binomial models in PyMC.

The likelihood is written on *cells* (events out of trials for each combination of the
covariates and group levels), never on one row per pupil: with categorical covariates the
binomial likelihood on cells equals the Bernoulli likelihood on pupils up to a constant, so
the posterior is the same at a fraction of the cost.

Model, on the link scale (logit for ``binomial``, log for the count families)::

    eta[c] = a + (X[c] - xbar) @ b                      (beta = (a - xbar @ b, b))
             + sum over group terms g of  u_g[level_g(c)]
             + sum over slope terms s of  sum_k X[c, k] * v_s[level_s(c), k]
             (+ log(trials[c]) for the count families: trials are the exposure)

    a ~ Normal(link(crude rate), intercept_sd)   intercept at the pupil-weighted means xbar
    b ~ Normal(0, coef_sd)                       the other fixed effects
    u_g = sd_g * z_g,  z_g ~ Normal(0, 1),  sd_g ~ HalfNormal(group_sd)      (non-centred)
    u_g ~ Normal(0, sd_g)                                                    (centred)
    v_s[:, k] = sd_s[k] * z_s[:, k],        sd_s[k] ~ HalfNormal(slope_sd)
    alpha ~ Gamma(dispersion_shape, dispersion_rate)         (negative binomial only)

Sampling the intercept at the covariate means (as brms and bambi do) removes most of its
posterior correlation with the dummy coefficients; the reported ``beta`` keeps the usual
reference-level intercept. Non-centred group terms suit groups with little data each; for
groups with a lot of data each (large LAs) the centred form
(``noncentered = {la = false}``) usually mixes better.

How it is sampled. With the default sampler (``"auto"``, or ``"nutpie"``) the posterior of
this model is written out by hand in :mod:`disparity.engines.cell_density` (numba: one pass
over the cells, ``X beta`` once per covariate pattern, no dense products) and sampled by
nutpie's NUTS (:mod:`disparity.engines.cell_sampler`), starting at a Laplace-EM mode with
each group effect partially centred according to the information its cells hold. The same
posterior as the PyMC graph of :func:`build_model`, which ``sampler = "pymc"`` (PyMC's NUTS)
and ``"numpyro"`` sample, and ``engine_options.pymc.log_density = "pymc"`` hands to nutpie.

Censored counts (``Design.events_upper``) contribute ``log sum_{k=lo..hi} P(Y = k | eta)``.
The InferenceData carries a ``log_likelihood`` group (one value per cell) for ``az.loo``.

PyMC, PyTensor, nutpie, numba and ArviZ are imported inside the functions so
``import disparity`` stays light.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from disparity.config import CI_PROB
from disparity.design import Design
from disparity.engines.base import Fit
from disparity.errors import ConvergenceWarning, DataWarning, SpecError, ValidationError
from disparity.spec import DEFAULT_PRIORS

#: Samplers a model file may name; ``"auto"`` picks the fastest one installed.
SAMPLERS: tuple[str, ...] = ("auto", "pymc", "nutpie", "numpyro")

#: Families this engine fits.
FAMILIES: tuple[str, ...] = ("binomial", "poisson", "negative_binomial")

#: Convergence thresholds (Vehtari et al. 2021).
MAX_RHAT: float = 1.01
ESS_PER_CHAIN: int = 100
MAX_ESS_REQUIRED: int = 400
MIN_BFMI: float = 0.3

#: Bounds for each group effect (thousands of schools), looser than those of the fixed
#: effects and SDs: of many well-mixed quantities chance puts some above R-hat 1.01.
MAX_RHAT_EFFECT: float = 1.05
MIN_ESS_EFFECT: int = 100


def resolve_sampler(sampler: str = "auto") -> str:
    """Turn a sampler name from a model file into the NUTS implementation to run.

    ``"auto"`` picks the fastest installed: nutpie if it imports (which samples the compiled
    cell density), else numpyro if both jax and numpyro import, else PyMC's own NUTS
    (always available).

    Parameters
    ----------
    sampler : str
        One of :data:`SAMPLERS`.

    Returns
    -------
    str
        ``"pymc"``, ``"nutpie"`` or ``"numpyro"``.

    Raises
    ------
    SpecError
        If the name is unknown, or names a sampler that is not installed.

    Examples
    --------
    >>> resolve_sampler("pymc")
    'pymc'
    >>> resolve_sampler("auto") in {"pymc", "nutpie", "numpyro"}
    True
    """
    name = str(sampler).strip().lower()
    if name not in SAMPLERS:
        raise SpecError(
            f"unknown sampler {sampler!r} in [fit] sampler; valid samplers are "
            f"{', '.join(repr(s) for s in SAMPLERS)} ('auto' picks the fastest installed)."
        )
    if name == "auto":
        if _installed("nutpie"):
            return "nutpie"
        if _installed("jax") and _installed("numpyro"):
            return "numpyro"
        return "pymc"
    if name == "nutpie" and not _installed("nutpie"):
        raise SpecError(
            "sampler 'nutpie' is not installed; install it with `pip install nutpie` "
            "or set sampler = 'auto' (or 'pymc') in the [fit] table."
        )
    if name == "numpyro" and not (_installed("jax") and _installed("numpyro")):
        raise SpecError(
            "sampler 'numpyro' needs jax and numpyro, which are not installed; install them "
            "with `pip install jax numpyro` or set sampler = 'auto' (or 'pymc') in the [fit] table."
        )
    return name


def ess_required(chains: int) -> int:
    """Smallest acceptable bulk and tail effective sample size for ``chains`` chains.

    Vehtari et al. (2021) recommend an ESS of at least 100 per chain, i.e. 400 for the usual
    four chains; we require ``min(400, 100 * chains)`` so short test runs with fewer chains
    are judged on the same per-chain footing.

    Examples
    --------
    >>> ess_required(4), ess_required(2), ess_required(8)
    (400, 200, 400)

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
    Rank-normalization, folding, and localization: an improved R-hat for assessing
    convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    """
    return int(min(MAX_ESS_REQUIRED, ESS_PER_CHAIN * max(int(chains), 1)))


#: Tuning steps per chain when the model sets none: nutpie's own default on the compiled
#: cell density (its adaptation, started at the posterior mode, settles within it), PyMC's
#: on the PyMC graph (its sampler starts away from the mode).
TUNE_NATIVE: int = 300
TUNE_PYMC: int = 1000

#: NUTS's target mean acceptance when the model sets none, and from how many parameters
#: the compiled density uses :data:`TARGET_ACCEPT_LARGE` instead.
TARGET_ACCEPT: float = 0.9
TARGET_ACCEPT_LARGE: float = 0.8
LARGE_MODEL_PARAMETERS: int = 10_000


def default_tune(native: bool) -> int:
    """Tuning steps per chain when ``tune`` is not set.

    Examples
    --------
    >>> default_tune(native=True), default_tune(native=False)
    (300, 1000)
    """
    return TUNE_NATIVE if native else TUNE_PYMC


def default_target_accept(n_parameters: int, *, native: bool) -> float:
    """NUTS's target acceptance when ``target_accept`` is not set.

    0.9 (more conservative than Stan's and PyMC's 0.8: small hierarchical models have
    funnels that a smaller step size crosses without divergences), except for a model of
    at least :data:`LARGE_MODEL_PARAMETERS` parameters on the compiled cell density, which
    gets 0.8. In high dimension the step size that an acceptance rate needs shrinks as
    ``d^(-1/4)`` and the best acceptance falls towards 0.65 (Beskos et al. 2013): on the
    national benchmark (20,150 parameters) 0.9 takes 52 gradients per draw and 0.8 takes
    31, with every fixed effect's and SD's bulk ESS still above 3,000 in 4,000 draws
    (``benchmarks/bayes_national.py``, ``docs/performance.md``); at 3,176 parameters (1M
    pupils) 0.8 cut the SDs' ESS below 400 for permanent exclusion, so smaller models keep 0.9.

    Examples
    --------
    >>> default_target_accept(3_176, native=True), default_target_accept(20_150, native=True)
    (0.9, 0.8)
    >>> default_target_accept(20_150, native=False)
    0.9

    References
    ----------
    Beskos, A., Pillai, N., Roberts, G., Sanz-Serna, J.-M. and Stuart, A. (2013). Optimal
    tuning of the hybrid Monte Carlo algorithm. Bernoulli 19(5A), 1501-1534.
    """
    if native and int(n_parameters) >= LARGE_MODEL_PARAMETERS:
        return TARGET_ACCEPT_LARGE
    return TARGET_ACCEPT


#: This engine fits interval-censored event counts (``Design.events_upper``).
FITS_CENSORED: bool = True


def fit(design: Design, spec: Any, *, progress: bool = True) -> Fit:
    """Fit a hierarchical model to cells by NUTS and summarise the posterior.

    Parameters
    ----------
    design : Design
        Fixed-effect matrix, events, trials (exposure for counts), group and slope terms.
    spec : ModelSpec
        Reads ``family``, ``priors``, ``seed``, ``draws``, ``tune``, ``chains``, ``sampler``,
        ``target_accept``, ``noncentered``, ``engine_options["pymc"]`` and ``ci_prob``.
        ``noncentered[term] = False`` makes group term ``term`` centred, ``True``
        non-centred (for slopes the key is ``"<variable>|<group>"``). Unset, the compiled
        path chooses a partial centring per effect from the data; the PyMC graph is
        non-centred. ``engine_options["pymc"]`` may hold ``cores`` (parallel chains),
        ``min_ess`` (override :func:`ess_required`), ``nuts_sampler_kwargs`` (passed to the
        sampler), ``init_from_ml`` (start PyMC's sampler at a Laplace ML fit),
        ``log_density`` (``"native"``, the default, or ``"pymc"``), ``centring``
        (``"none"``: non-centred everywhere on the compiled path) and
        ``max_log_likelihood_values`` (cells x draws kept in the ``log_likelihood`` group,
        default :data:`MAX_LOG_LIKELIHOOD_VALUES`; past it every k-th draw is kept).
    progress : bool
        Show the sampler's progress bar.

    Returns
    -------
    Fit
        ``coef`` posterior mean, ``coef_cov`` posterior covariance, ``coef_draws`` (draws x p,
        chains stacked), ``sd_draws`` per group term and per ``"<term>|<group>"`` slope,
        ``group_sd`` with equal-tailed intervals at ``spec.ci_prob`` (``std_error`` is the
        posterior SD), ``group_effects`` and ``slope_effects`` (posterior mean and SD),
        ``dispersion`` (posterior mean of alpha, negative binomial), ``raw`` the ArviZ
        InferenceData and ``diagnostics`` (max r-hat, min bulk/tail ESS, divergences, min
        BFMI, sampler, draws, chains, seconds).

    Warns
    -----
    ConvergenceWarning
        When r-hat > 1.01, bulk or tail ESS below :func:`ess_required`, any divergent
        transition, or an E-BFMI below 0.3; the message says what to try.
    DataWarning
        When a fixed-effect level has no events (or only events): its estimate is driven by
        the prior.

    Examples
    --------
    >>> import types, numpy as np
    >>> from disparity.design import Design
    >>> X = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> design = Design(family="binomial", X=X, terms=("Intercept", "sen[T.ehcp]"),
    ...                 events=np.array([20, 60]), trials=np.array([1000, 1000]))
    >>> spec = types.SimpleNamespace(family="binomial", priors={}, seed=1, draws=200,
    ...     tune=200, chains=2, sampler="pymc", target_accept=0.9, noncentered={},
    ...     engine_options={"pymc": {"cores": 1}}, ci_prob=0.95)
    >>> result = fit(design, spec, progress=False)  # doctest: +SKIP
    >>> result.terms  # doctest: +SKIP
    ('Intercept', 'sen[T.ehcp]')

    References
    ----------
    Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
    Betancourt, M. and Girolami, M. (2015). Hamiltonian Monte Carlo for hierarchical models.
    In Current Trends in Bayesian Methodology with Applications (non-centred
    parameterisations).
    Vehtari, A. et al. (2021). Rank-normalization, folding, and localization: an improved
    R-hat for assessing convergence of MCMC. Bayesian Analysis 16(2), 667-718.
    """
    family = _check_family(design, spec)
    _check_cells(design, family)
    options = dict(_engine_options(spec))
    sampler = resolve_sampler(getattr(spec, "sampler", "auto"))
    log_density = str(options.get("log_density", "native")).lower()
    if log_density not in ("native", "pymc"):
        raise SpecError(
            f"[fit.engine_options.pymc] log_density must be 'native' (the compiled cell "
            f"density, sampled by nutpie) or 'pymc' (the PyMC graph), not {log_density!r}."
        )
    native = sampler == "nutpie" and log_density == "native"
    draws = int(getattr(spec, "draws", 1000))
    tune = getattr(spec, "tune", None)
    tune = default_tune(native) if tune is None else int(tune)
    chains = int(getattr(spec, "chains", 4))
    target_accept = getattr(spec, "target_accept", None)
    target_accept = None if target_accept is None else float(target_accept)
    ci_prob = float(getattr(spec, "ci_prob", CI_PROB) or CI_PROB)
    seed = int(getattr(spec, "seed"))
    if draws < 1 or chains < 1 or tune < 0:
        raise SpecError(
            f"draws ({draws}), chains ({chains}) and tune ({tune}) must be positive "
            f"(tune may be 0); the defaults are draws = 1000, tune = {default_tune(native)}, "
            "chains = 4."
        )
    if target_accept is not None and not 0.0 < target_accept < 1.0:
        raise SpecError(f"target_accept must lie strictly between 0 and 1, got {target_accept}.")

    fit_warnings: list[str] = []
    separated = _separated_terms(design, family)
    if separated:
        message = (
            f"{len(separated)} fixed-effect level(s) have "
            f"{'no events (or only events)' if family == 'binomial' else 'no events'}: "
            f"{', '.join(separated[:5])}{' ...' if len(separated) > 5 else ''}. Their "
            "estimates are driven by the prior (Normal(0, coef_sd) on the link scale), not "
            "the data; they stay finite but should not be reported as measured effects. "
            "Merge the level with another or drop it."
        )
        warnings.warn(message, DataWarning, stacklevel=2)
        fit_warnings.append(message)

    notes: list[str] = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        # NumPy overflow warnings from trajectories that diverge during tuning; divergences
        # after tuning are counted and reported by the convergence checks below.
        warnings.simplefilter("ignore", RuntimeWarning)
        if native:
            idata, native_facts = _sample_native(
                design, spec, draws=draws, tune=tune, chains=chains, seed=seed,
                target_accept=target_accept, options=options, progress=progress)
        else:
            if target_accept is None:
                target_accept = default_target_accept(0, native=False)
            idata = _sample_pymc(
                design, spec, sampler=sampler, draws=draws, tune=tune, chains=chains,
                seed=seed, target_accept=target_accept, options=options, progress=progress,
                notes=notes)
            native_facts = {}
    seconds = time.perf_counter() - start
    idata = _without_unconstrained(idata)
    idata, pointwise_facts = _with_log_likelihood(idata, design, spec, options)

    required = int(options.get("min_ess") or ess_required(chains))
    diagnostics = _diagnostics(idata, sampler=sampler, draws=draws, tune=tune, chains=chains,
                               min_ess=required)
    diagnostics["seconds"] = round(float(seconds), 3)
    diagnostics["target_accept"] = native_facts.pop("target_accept", target_accept)
    diagnostics["seed"] = seed
    diagnostics["separated_terms"] = list(separated)
    diagnostics["notes"] = notes
    diagnostics["log_density"] = "native" if native else "pymc"
    diagnostics.update(native_facts)
    diagnostics["log_likelihood"] = pointwise_facts
    diagnostics["ess_required"] = required
    problems = convergence_problems(diagnostics, min_ess=required)
    for message in problems:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    diagnostics["converged"] = not problems
    fit_warnings.extend(problems)
    diagnostics["warnings"] = list(fit_warnings)

    return _summarise(design, spec, idata, family, ci_prob, diagnostics, tuple(fit_warnings))


def _sample_pymc(design: Design, spec: Any, *, sampler: str, draws: int, tune: int,
                 chains: int, seed: int, target_accept: float, options: Mapping[str, Any],
                 progress: bool, notes: list[str]) -> Any:
    """NUTS on the PyMC graph of :func:`build_model` (PyMC's sampler, nutpie or numpyro)."""
    import pymc as pm

    model = build_model(design, spec)
    sample_kwargs: dict[str, Any] = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "target_accept": target_accept,
        "random_seed": seed,
        "progressbar": bool(progress),
        "quiet": not progress,
        "nuts_sampler": sampler,
        "compute_convergence_checks": False,
        "model": model,
        # store model-scale quantities only (nutpie otherwise also keeps log-scale SDs)
        "var_names": [v.name for v in model.free_RVs + model.deterministics],
    }
    if options.get("cores") is not None:
        sample_kwargs["cores"] = int(options["cores"])
    nuts_kwargs = dict(options.get("nuts_sampler_kwargs") or {})
    if sampler == "nutpie":
        nuts_kwargs.setdefault("save_warmup", False)
    if nuts_kwargs:
        sample_kwargs["nuts_sampler_kwargs"] = nuts_kwargs
    if options.get("init_from_ml"):
        if sampler == "pymc":
            sample_kwargs["initvals"] = _initial_values_from_ml(design, spec)
        else:
            notes.append(
                f"init_from_ml applies to the 'pymc' sampler only; ignored for {sampler!r}."
            )
    return pm.sample(**sample_kwargs)


def _sample_native(design: Design, spec: Any, *, draws: int, tune: int, chains: int,
                   seed: int, target_accept: float | None, options: Mapping[str, Any],
                   progress: bool) -> tuple[Any, dict[str, Any]]:
    """nutpie's NUTS on the compiled cell density (:mod:`disparity.engines.cell_density`).

    Starts at the posterior mode, with each group effect's centring weight chosen from the
    information at the mode (:mod:`disparity.engines.cell_sampler`). ``target_accept``
    None is :func:`default_target_accept` of the density's parameters; the value used is
    in the returned facts.
    """
    from disparity.engines import cell_density, cell_sampler

    priors = {**DEFAULT_PRIORS, **dict(getattr(spec, "priors", {}) or {})}
    noncentered = dict(getattr(spec, "noncentered", {}) or {})
    t0 = time.perf_counter()
    flat = cell_density.build_density(design, priors=priors)
    if progress:
        print(
            f"pymc: {design.n_cells:,} cells in {flat.Z.shape[0]:,} covariate patterns, "
            f"{flat.n_dim:,} parameters; finding the posterior mode",
            file=sys.stderr, flush=True,
        )
    if target_accept is None:
        target_accept = default_target_accept(flat.n_dim, native=True)
    t1 = time.perf_counter()
    mode = cell_sampler.posterior_mode(flat, design)
    t2 = time.perf_counter()
    if options.get("centring") == "none":
        weights, located = np.zeros(flat.n_effects), np.zeros(flat.n_effects)
    else:
        weights, located = cell_sampler.choose_location(
            flat, cell_sampler.choose_weights(flat, mode, design, noncentered))
    density = flat.with_weights(weights, located)
    sd = np.exp(mode[flat.n_fixed : flat.t_start])
    alpha = float(np.exp(mode[-1])) if flat.has_alpha else None
    start = density.to_theta(mode[: flat.n_fixed], sd, flat.effects(mode), alpha)
    coords: dict[str, Any] = {"term": list(design.terms)}
    dims: dict[str, tuple[str, ...]] = {"beta": ("term",)}
    for g in design.groups:
        coords[g.name] = list(g.levels)
        dims[f"effect_{g.name}"] = (g.name,)
    for s in design.slopes:
        key, dim = _slope_key(s), _slope_dim(s)
        coords[dim] = list(s.terms)
        dims[f"slope_sd_{key}"] = (dim,)
        dims[f"slope_{key}"] = (s.group, dim)
    cores = int(options.get("cores") or min(chains, os.cpu_count() or 1))
    idata = cell_sampler.sample(
        density, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
        target_accept=target_accept, start=start, coords=coords, dims=dims,
        progress=progress, nuts_kwargs=options.get("nuts_sampler_kwargs"),
    )
    t3 = time.perf_counter()
    _add_observed_data(idata, design)
    centring = {
        key: round(float(weights[b.start : b.start + b.size].mean()), 3)
        for b, key in zip(density.blocks, cell_density.block_keys(design))
    }
    facts = {
        "target_accept": target_accept,
        "n_patterns": int(flat.Z.shape[0]),
        "n_parameters": int(flat.n_dim),
        "n_censored_cells": int(flat.censored["trials"].shape[0]),
        "centring_weight_mean": centring,
        "levels_centred_in_location": {
            key: int(located[b.start : b.start + b.size].sum())
            for b, key in zip(density.blocks, cell_density.block_keys(design))},
        "seconds_setup": round(t1 - t0, 3),
        "seconds_mode": round(t2 - t1, 3),
        "seconds_sampling": round(t3 - t2, 3),
    }
    if "n_steps" in idata.sample_stats:
        facts["gradients_per_draw"] = round(float(idata.sample_stats["n_steps"].mean()), 2)
    return idata, facts


def _add_observed_data(idata: Any, design: Design) -> None:
    """Observed events (and censoring bounds) per cell, as PyMC stores them."""
    import xarray as xr

    data = {"events": ("cell", np.asarray(design.events, dtype=float))}
    upper = getattr(design, "events_upper", None)
    if upper is not None:
        data["events_upper"] = ("cell", np.asarray(upper, dtype=float))
    idata.add_groups({"observed_data": xr.Dataset(
        data, coords={"cell": np.arange(design.n_cells)})})


#: Largest number of pointwise log-likelihood values (cells x kept draws) stored; past it
#: every k-th draw of each chain is kept (a note says so). 5e7 doubles take 400 MB.
MAX_LOG_LIKELIHOOD_VALUES: int = 50_000_000


def _with_log_likelihood(idata: Any, design: Design, spec: Any,
                         options: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Add the ``log_likelihood`` group (one value per cell and kept draw) for ``az.loo``.

    Computed from the posterior draws by the compiled cell density, so both samplers give
    the same pointwise values; a censored cell's value is the log of its interval's mass.
    """
    import xarray as xr

    from disparity.engines import cell_density

    priors = {**DEFAULT_PRIORS, **dict(getattr(spec, "priors", {}) or {})}
    density = cell_density.build_density(design, priors=priors)
    posterior = idata.posterior
    n_chains, n_draws = int(posterior.sizes["chain"]), int(posterior.sizes["draw"])
    budget = int(options.get("max_log_likelihood_values") or MAX_LOG_LIKELIHOOD_VALUES)
    thin = max(1, math.ceil(n_chains * n_draws * design.n_cells / budget))
    kept = np.arange(0, n_draws, thin)
    beta = np.asarray(posterior["beta"].values, dtype=float)[:, kept]
    fixed = np.linalg.solve(density.beta_map, beta.reshape(-1, beta.shape[-1]).T).T
    sd_columns, effect_columns = [], []
    for b in density.blocks:
        sds = np.asarray(posterior[b.sd_name].values, dtype=float)[:, kept]
        sd_columns.append(sds.reshape(n_chains * kept.size, -1))
        effects = np.asarray(posterior[b.name].values, dtype=float)[:, kept]
        effect_columns.append(effects.reshape(n_chains * kept.size, -1))
    parts = [fixed]
    if sd_columns:
        parts.append(np.log(np.concatenate(sd_columns, axis=1)))
        parts.append(np.concatenate(effect_columns, axis=1))  # weights are 0: t = u / sd
        sd_of_effect = np.concatenate(sd_columns, axis=1)[:, density.effect_sd_index]
        parts[-1] = parts[-1] / sd_of_effect
    if density.has_alpha:
        alpha = np.asarray(posterior["alpha"].values, dtype=float)[:, kept]
        parts.append(np.log(alpha.reshape(-1, 1)))
    thetas = np.concatenate(parts, axis=1)
    values = density.pointwise_log_likelihood(thetas).reshape(n_chains, kept.size, -1)
    group = xr.Dataset(
        {"events": (("chain", "draw", "cell"), values)},
        coords={"chain": posterior["chain"].values,
                "draw": posterior["draw"].values[kept],
                "cell": np.arange(design.n_cells)},
    )
    if "log_likelihood" in idata.groups():
        del idata.log_likelihood
    idata.add_groups({"log_likelihood": group})
    facts = {"draws_kept_per_chain": int(kept.size), "thinned_every": int(thin)}
    return idata, facts


def build_model(design: Design, spec: Any) -> Any:
    """Build the PyMC model for ``design`` (cells) without sampling it.

    Coordinates are named after the data: ``term`` (patsy names), one dimension per group
    term named after it (``la``, ``school``) whose coordinates are the level labels, one per
    slope term named ``"<variable>|<group>"`` whose coordinates are the varying terms, and
    ``cell``.

    Parameters
    ----------
    design : Design
    spec : ModelSpec
        Reads ``family``, ``priors`` and ``noncentered``.

    Returns
    -------
    pymc.Model

    Examples
    --------
    >>> import types, numpy as np
    >>> from disparity.design import Design
    >>> design = Design(family="poisson", X=np.ones((2, 1)), terms=("Intercept",),
    ...                 events=np.array([3, 5]), trials=np.array([100.0, 120.0]))
    >>> spec = types.SimpleNamespace(family="poisson", priors={}, noncentered={})
    >>> model = build_model(design, spec)
    >>> sorted(model.named_vars)
    ['beta', 'events']
    """
    import pymc as pm
    import pytensor.tensor as pt

    from disparity.engines.cell_density import crude_link as _crude_link

    family = _check_family(design, spec)
    priors = {**DEFAULT_PRIORS, **dict(getattr(spec, "priors", {}) or {})}
    noncentered = dict(getattr(spec, "noncentered", {}) or {})
    X = np.asarray(design.X, dtype=float)
    events = np.asarray(design.events)
    trials = np.asarray(design.trials, dtype=float)
    terms = tuple(design.terms)

    upper = getattr(design, "events_upper", None)
    censored = (np.zeros(design.n_cells, dtype=bool) if upper is None
                else np.asarray(upper, dtype=float) > events)
    observed = np.flatnonzero(~censored)
    # "cell" numbers the cells observed exactly (all of them, without censoring)
    coords: dict[str, Any] = {"term": list(terms), "cell": observed}
    for g in design.groups:
        coords[g.name] = list(g.levels)
    for s in design.slopes:
        coords[_slope_dim(s)] = list(s.terms)

    centre = covariate_centre(design)
    if centre is not None:
        coords["covariate"] = [t for t in terms if t != "Intercept"]

    with pm.Model(coords=coords) as model:
        if centre is None:
            prior_mu = np.zeros(len(terms))
            prior_sd = np.full(len(terms), float(priors["coef_sd"]))
            if "Intercept" in terms:
                prior_mu[terms.index("Intercept")] = _crude_link(events, trials, family)
                prior_sd[terms.index("Intercept")] = float(priors["intercept_sd"])
            beta = pm.Normal("beta", mu=prior_mu, sigma=prior_sd, dims="term")
            eta = pt.dot(X, beta)
        else:
            # Sample the intercept at the pupil-weighted covariate means: with treatment
            # dummies it is then nearly uncorrelated with the other coefficients, which
            # NUTS's diagonal mass matrix needs; beta (Intercept at the reference levels)
            # is recovered exactly as a deterministic.
            i = terms.index("Intercept")
            others = [j for j in range(len(terms)) if j != i]
            intercept = pm.Normal(
                "intercept_centred",
                mu=_crude_link(events, trials, family),
                sigma=float(priors["intercept_sd"]),
            )
            coef = pm.Normal("coef", 0.0, float(priors["coef_sd"]), dims="covariate")
            beta_values = [None] * len(terms)
            beta_values[i] = intercept - pt.dot(centre, coef)
            for k, j in enumerate(others):
                beta_values[j] = coef[k]
            pm.Deterministic("beta", pt.stack(beta_values), dims="term")
            eta = intercept + pt.dot(X[:, others] - centre, coef)
        for g in design.groups:
            sd = pm.HalfNormal(f"sd_{g.name}", sigma=float(priors["group_sd"]))
            if noncentered.get(g.name, True):
                z = pm.Normal(f"z_{g.name}", 0.0, 1.0, dims=g.name)
                effect = pm.Deterministic(f"effect_{g.name}", sd * z, dims=g.name)
            else:
                effect = pm.Normal(f"effect_{g.name}", 0.0, sd, dims=g.name)
            eta = eta + effect[np.asarray(g.index, dtype=int)]
        for s in design.slopes:
            g = design.group(s.group)
            dim = _slope_dim(s)
            key = _slope_key(s)
            sd = pm.HalfNormal(f"slope_sd_{key}", sigma=float(priors["slope_sd"]), dims=dim)
            if noncentered.get(f"{s.variable}|{s.group}", True):
                z = pm.Normal(f"slope_z_{key}", 0.0, 1.0, dims=(g.name, dim))
                deviation = pm.Deterministic(f"slope_{key}", z * sd, dims=(g.name, dim))
            else:
                deviation = pm.Normal(f"slope_{key}", 0.0, sd, dims=(g.name, dim))
            X_slope = X[:, list(s.columns)]
            eta = eta + (X_slope * deviation[np.asarray(g.index, dtype=int)]).sum(axis=1)
        alpha = None
        if family == "negative_binomial":
            alpha = pm.Gamma(
                "alpha",
                alpha=float(priors.get("dispersion_shape", 2.0)),
                beta=float(priors.get("dispersion_rate", 0.1)),
            )

        def distribution(rows: np.ndarray, eta_rows: Any) -> Any:
            """The family's distribution for cells ``rows`` (any shape) at ``eta_rows``."""
            if family == "binomial":
                return pm.Binomial.dist(n=trials[rows].astype(int), logit_p=eta_rows)
            mu = pt.exp(eta_rows + np.log(trials[rows]))
            if family == "poisson":
                return pm.Poisson.dist(mu=mu)
            return pm.NegativeBinomial.dist(mu=mu, alpha=alpha)

        eta_obs = eta if not censored.any() else eta[observed]
        if family == "binomial":
            pm.Binomial("events", n=trials[observed].astype(int), logit_p=eta_obs,
                        observed=events[observed], dims="cell")
        else:
            mu = pt.exp(eta_obs + np.log(trials[observed]))
            if family == "poisson":
                pm.Poisson("events", mu=mu, observed=events[observed], dims="cell")
            else:
                pm.NegativeBinomial("events", mu=mu, alpha=alpha, observed=events[observed],
                                    dims="cell")
        if censored.any():
            # interval-censored counts: log sum_{k = lo..hi} P(Y = k | eta), by enumeration
            rows = np.flatnonzero(censored)
            lo = events[rows]
            hi = np.asarray(upper, dtype=float)[rows]
            width = int(np.max(hi - lo)) + 1
            ks = lo[:, None] + np.arange(width)[None, :]
            inside = ks <= hi[:, None]
            eta_c = pt.repeat(eta[rows][:, None], width, axis=1)
            rows_2d = np.repeat(rows[:, None], width, axis=1)
            logps = pm.logp(distribution(rows_2d, eta_c), np.where(inside, ks, lo[:, None]))
            logps = pt.where(inside, logps, -np.inf)
            pm.Potential("censored_events", pm.math.logsumexp(logps, axis=1).sum())
    return model


def covariate_centre(design: Design) -> np.ndarray | None:
    """Pupil-weighted means of the non-intercept columns of ``X`` (None without an intercept).

    The Bayesian engine samples the intercept at these means (as brms and bambi do), so the
    ``intercept_sd`` prior, centred on the link of the crude rate, is a prior on the rate of
    an average pupil; ``beta`` is reported with the usual reference-level intercept.

    Examples
    --------
    >>> import numpy as np
    >>> from disparity.design import Design
    >>> d = Design(family="binomial", X=np.array([[1.0, 0.0], [1.0, 1.0]]),
    ...            terms=("Intercept", "sen[T.ehcp]"), events=np.array([1, 2]),
    ...            trials=np.array([30.0, 10.0]))
    >>> covariate_centre(d)
    array([0.25])
    """
    terms = tuple(design.terms)
    if "Intercept" not in terms or len(terms) < 2:
        return None
    others = [j for j, t in enumerate(terms) if t != "Intercept"]
    weights = np.asarray(design.trials, dtype=float)
    return np.average(np.asarray(design.X, dtype=float)[:, others], axis=0, weights=weights)


def convergence_problems(diagnostics: Mapping[str, Any], *, min_ess: int) -> list[str]:
    """Plain-English convergence failures found in a diagnostics dict, with what to try.

    Checks r-hat > 1.01, bulk or tail ESS below ``min_ess``, any divergent transitions and
    E-BFMI below 0.3 (Vehtari et al. 2021; Betancourt 2016). Where ``diagnostics`` splits
    the extremes into ``parameters`` and ``effects`` (as :func:`fit` writes them), the fixed
    effects and SDs are held to those thresholds and each group effect to R-hat at most
    :data:`MAX_RHAT_EFFECT` and ESS at least :data:`MIN_ESS_EFFECT`. Of many well-mixed
    quantities chance puts some above 1.01: in 20,000 independent stationary AR(1) chains
    (4 x 1,000 draws) with a bulk ESS near 1,000, 0.8 % of R-hats exceed 1.01 and the
    largest is 1.017; with an ESS near 400, 36 % exceed it and the largest is 1.042 (smallest
    ESS 122). "Every quantity below 1.01" would fail every national model.

    Examples
    --------
    >>> ok = {"max_rhat": 1.002, "min_ess_bulk": 900.0, "min_ess_tail": 800.0,
    ...       "divergences": 0, "min_bfmi": 0.9}
    >>> convergence_problems(ok, min_ess=400)
    []
    >>> len(convergence_problems({**ok, "divergences": 3}, min_ess=400))
    1
    >>> chance = {"n": 20_000, "n_outside": 160, "max_rhat": 1.017, "min_ess_bulk": 350.0,
    ...           "min_ess_tail": 380.0}
    >>> convergence_problems({**ok, "parameters": ok, "effects": chance}, min_ess=400)
    []
    >>> stuck = {**chance, "max_rhat": 1.2}
    >>> convergence_problems({**ok, "parameters": ok, "effects": stuck}, min_ess=400)[0][:32]
    'Group effects have not all mixed'

    References
    ----------
    Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian
    Monte Carlo. arXiv:1604.00695.
    """
    parameters = diagnostics.get("parameters")
    problems = _mixing_problems(diagnostics if parameters is None else parameters, min_ess)
    effects = diagnostics.get("effects") or {}
    n = int(effects.get("n") or 0)
    if parameters is not None and n:
        outside = int(effects.get("n_outside") or 0)
        rhat = effects.get("max_rhat")
        ess = [v for v in (effects.get("min_ess_bulk"), effects.get("min_ess_tail"))
               if v is not None]
        floor = min(MIN_ESS_EFFECT, min_ess)
        if (rhat is not None and rhat > MAX_RHAT_EFFECT) or any(v < floor for v in ess):
            problems.append(
                f"Group effects have not all mixed: the largest R-hat of the {n:,} effects is "
                f"{_number_or_na(rhat, '.3f')} and the smallest ESS "
                f"{_number_or_na(min(ess) if ess else None, '.0f')} (each must be at most "
                f"{MAX_RHAT_EFFECT} and at least {floor}; {outside:,} are above R-hat "
                f"{MAX_RHAT} or below ESS {min_ess}). Increase tune and draws, or switch the "
                "term with most levels to the other parameterisation ([fit] "
                "noncentered.<term>)."
            )
    problems += _geometry_problems(diagnostics)
    return problems


def _number_or_na(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _mixing_problems(extremes: Mapping[str, Any], min_ess: int) -> list[str]:
    """R-hat and ESS problems of ``max_rhat``, ``min_ess_bulk`` and ``min_ess_tail``."""
    problems: list[str] = []
    rhat = extremes.get("max_rhat")
    if rhat is None or not np.isfinite(rhat):
        problems.append(
            "R-hat could not be computed; run at least 4 chains with several hundred draws each."
        )
    elif rhat > MAX_RHAT:
        problems.append(
            f"R-hat is {rhat:.3f} (above {MAX_RHAT}): the chains have not mixed. Increase tune "
            "and draws (e.g. tune = 2000, draws = 2000), run 4 chains, or give the group SDs "
            "stronger priors."
        )
    bulk = extremes.get("min_ess_bulk")
    tail = extremes.get("min_ess_tail")
    low = [
        f"{label} ESS {value:.0f}"
        for label, value in (("bulk", bulk), ("tail", tail))
        if value is None or not np.isfinite(value) or value < min_ess
    ]
    if low:
        problems.append(
            f"Effective sample size is too small ({', '.join(low)}; need at least {min_ess}): "
            "means and intervals are noisy. Increase draws (and tune), or run more chains."
        )
    return problems


def _geometry_problems(diagnostics: Mapping[str, Any]) -> list[str]:
    """Divergence and E-BFMI problems."""
    problems: list[str] = []
    divergences = int(diagnostics.get("divergences") or 0)
    if divergences > 0:
        problems.append(
            f"{divergences} divergent transition(s) after tuning: the sampler missed part of "
            "the posterior. Raise target_accept (e.g. 0.95 or 0.99); if a group term has many "
            "levels with lots of data each, switch it to the centred form "
            "([fit] noncentered.<term> = false), otherwise keep it non-centred; or give the "
            "group SDs stronger priors."
        )
    bfmi = diagnostics.get("min_bfmi")
    if bfmi is not None and np.isfinite(bfmi) and bfmi < MIN_BFMI:
        problems.append(
            f"E-BFMI is {bfmi:.2f} (below {MIN_BFMI}): the sampler explored the energy "
            "distribution poorly, usually a sign of a hard hierarchical geometry. Try the other "
            "(centred/non-centred) parameterisation of the group terms, stronger priors on the "
            "group SDs, or a longer tune."
        )
    return problems


# --------------------------------------------------------------------------- helpers


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _engine_options(spec: Any) -> Mapping[str, Any]:
    options = getattr(spec, "engine_options", None) or {}
    return options.get("pymc", {}) or {}


def _check_family(design: Design, spec: Any) -> str:
    family = str(getattr(spec, "family", None) or design.family)
    if family not in FAMILIES:
        raise SpecError(
            f"family {family!r} is not fitted by the pymc engine; valid families are "
            f"{', '.join(repr(f) for f in FAMILIES)}."
        )
    if design.family and design.family != family:
        raise SpecError(
            f"the design was built for family {design.family!r} but the spec says {family!r}; "
            "rebuild the design from this spec."
        )
    return family


def _check_cells(design: Design, family: str) -> None:
    events = np.asarray(design.events, dtype=float)
    trials = np.asarray(design.trials, dtype=float)
    checks = [
        ("events", ~np.isfinite(events) | (events < 0) | (events != np.round(events)),
         "events must be whole numbers of at least 0"),
        ("trials", ~np.isfinite(trials) | (trials <= 0),
         "trials (pupils, or exposure for counts) must be positive; drop empty cells"),
    ]
    if family == "binomial":
        checks.append(("events", events > trials, "events cannot exceed trials (pupils)"))
        checks.append(
            ("trials", trials != np.round(trials), "binomial trials must be whole numbers")
        )
    problems = []
    for column, bad, rule in checks:
        if bad.any():
            rows = np.flatnonzero(bad)
            problems.append(
                f"column {column!r}: {rule}; {rows.size} cell(s) fail, first rows "
                f"{rows[:5].tolist()}."
            )
    if not np.all(np.isfinite(np.asarray(design.X, dtype=float))):
        rows = np.flatnonzero(~np.isfinite(np.asarray(design.X, dtype=float)).all(axis=1))
        problems.append(f"design matrix X has missing or infinite values in {rows.size} cell(s), "
                        f"first rows {rows[:5].tolist()}; drop or fill them before fitting.")
    if problems:
        raise ValidationError(problems, what="design cells")


def _separated_terms(design: Design, family: str) -> list[str]:
    """Indicator columns of X whose cells hold no events (or, for binomial, only events)."""
    X = np.asarray(design.X, dtype=float)
    events = np.asarray(design.events, dtype=float)
    trials = np.asarray(design.trials, dtype=float)
    out = []
    for j, term in enumerate(design.terms):
        column = X[:, j]
        if term == "Intercept" or not np.isin(column, (0.0, 1.0)).all() or column.all():
            continue
        on = column == 1.0
        if not on.any():
            continue
        n_events = events[on].sum()
        if n_events == 0 or (family == "binomial" and n_events == trials[on].sum()):
            out.append(term)
    return out


def _slope_dim(s: Any) -> str:
    return f"{s.variable}|{s.group}"


def _slope_key(s: Any) -> str:
    return f"{s.variable}_{s.group}"


def _initial_values_from_ml(design: Design, spec: Any) -> dict[str, Any]:
    """Start values for the PyMC sampler from a Laplace ML fit (engines.ml)."""
    from disparity.engines import ml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml_fit = ml.fit(design, spec, progress=False)
    coef = np.asarray(ml_fit.coef, dtype=float)
    centre = covariate_centre(design)
    if centre is None:
        init: dict[str, Any] = {"beta": coef}
    else:
        i = list(design.terms).index("Intercept")
        rest = np.delete(coef, i)
        init = {"intercept_centred": float(coef[i] + centre @ rest), "coef": rest}
    for _, row in ml_fit.group_sd.iterrows():
        if "|" not in str(row["term"]) and np.isfinite(row["estimate"]):
            init[f"sd_{row['term']}"] = max(float(row["estimate"]), 0.05)
    return init


def _without_unconstrained(idata: Any) -> Any:
    """Drop sampler-space copies (``sd_la_log__``) that nutpie stores beside the model's."""
    posterior = idata.posterior
    drop = [name for name in posterior.data_vars if str(name).endswith("__")]
    if not drop:
        return idata
    posterior = posterior.drop_vars(drop)
    used = {dim for name in posterior.data_vars for dim in posterior[name].dims}
    orphans = [c for c in posterior.coords if c not in used]
    idata.posterior = posterior.drop_vars(orphans)
    return idata


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def is_group_effect(name: str) -> bool:
    """Whether a posterior variable holds group effects (one value per school, LA, ...):
    ``effect_<term>``, ``slope_<key>`` and their standardised ``z_``/``slope_z_`` forms, as
    against the fixed effects ``beta``, the SDs and ``alpha``.

    Examples
    --------
    >>> [is_group_effect(n) for n in ("beta", "sd_school", "effect_school", "z_la",
    ...                               "slope_sd_x_la", "slope_x_la")]
    [False, False, True, True, False, True]
    """
    return (name.startswith(("effect_", "z_", "slope_z_"))
            or (name.startswith("slope_") and not name.startswith("slope_sd_")))


def _convergence_extremes(posterior: Any, min_ess: int = MAX_ESS_REQUIRED) -> dict[str, Any]:
    """Largest rank-normalised R-hat and smallest bulk and tail ESS: over every sampled
    quantity (``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``), over the fixed effects and
    SDs (``parameters``) and over the group effects (``effects``, with ``n`` effects and
    ``n_outside`` of them with R-hat above :data:`MAX_RHAT` or an ESS below ``min_ess``).
    A value that cannot be computed is None.

    Computed for all quantities at once (:mod:`disparity.engines.rhat_ess`; ArviZ's
    per-parameter loop took 14 s for the 3,000 schools of 1M pupils). As in ArviZ, R-hat
    needs 2 chains and both need 4 draws; otherwise they are NaN."""
    from disparity.engines import rhat_ess

    n_chains, n_draws = int(posterior.sizes["chain"]), int(posterior.sizes["draw"])
    columns, effect = [], []
    for v in posterior.data_vars:
        c = np.asarray(posterior[v].values, dtype=float).reshape(n_chains, n_draws, -1)
        if c.shape[2]:
            columns.append(c)
            effect.append(np.full(c.shape[2], is_group_effect(str(v))))
    empty = {"max_rhat": None, "min_ess_bulk": None, "min_ess_tail": None}
    if not columns or n_draws < 4:
        return {**empty, "parameters": dict(empty), "effects": {**empty, "n": 0, "n_outside": 0}}
    draws = np.concatenate(columns, axis=2)
    effect_mask = np.concatenate(effect)

    def extreme(values: np.ndarray, how) -> float | None:
        values = values[np.isfinite(values)]
        return float(how(values)) if values.size else None

    rhat, bulk, tail = rhat_ess.rhat_ess_bulk_tail(draws)
    if n_chains < 2:
        rhat = np.full_like(rhat, np.nan)

    def summary(mask: np.ndarray) -> dict[str, float | None]:
        return {"max_rhat": extreme(rhat[mask], np.max),
                "min_ess_bulk": extreme(bulk[mask], np.min),
                "min_ess_tail": extreme(tail[mask], np.min)}

    with np.errstate(invalid="ignore"):
        outside = ((rhat > MAX_RHAT) | (bulk < min_ess) | (tail < min_ess)) & effect_mask
    return {**summary(np.ones_like(effect_mask)), "parameters": summary(~effect_mask),
            "effects": {**summary(effect_mask), "n": int(effect_mask.sum()),
                        "n_outside": int(outside.sum())}}


def _diagnostics(idata: Any, *, sampler: str, draws: int, tune: int, chains: int,
                 min_ess: int = MAX_ESS_REQUIRED) -> dict[str, Any]:
    import arviz as az

    posterior = idata.posterior
    # r-hat and ESS of every sampled quantity (coefficients, SDs, standardised and actual
    # effects); the group effects are where non-convergence usually shows.
    with warnings.catch_warnings():
        # ArviZ warns (RuntimeWarning) on degenerate inputs such as a single short chain;
        # those cases surface as NaN and are reported below.
        warnings.simplefilter("ignore")
        extremes = _convergence_extremes(posterior, min_ess)
        try:
            bfmi = np.asarray(az.bfmi(idata), dtype=float)
            min_bfmi = float(np.nanmin(bfmi)) if bfmi.size else float("nan")
        except (KeyError, AttributeError, TypeError, ValueError):
            min_bfmi = float("nan")
    stats = idata.sample_stats
    divergences = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    return {
        "sampler": sampler,
        "draws": int(posterior.sizes["draw"]),
        "chains": int(posterior.sizes["chain"]),
        "tune": int(tune),
        **extremes,
        "divergences": divergences,
        "min_bfmi": _finite_or_none(min_bfmi),
    }


def _stacked(posterior: Any, name: str) -> np.ndarray:
    """Draws of a posterior variable with chains stacked: shape (chains * draws, ...)."""
    values = np.asarray(posterior[name].values, dtype=float)
    return values.reshape((-1,) + values.shape[2:])


def _interval(draws: np.ndarray, ci_prob: float) -> tuple[float, float]:
    tail = (1.0 - ci_prob) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def _summarise(
    design: Design,
    spec: Any,
    idata: Any,
    family: str,
    ci_prob: float,
    diagnostics: dict[str, Any],
    fit_warnings: tuple[str, ...],
) -> Fit:
    posterior = idata.posterior
    coef_draws = _stacked(posterior, "beta")
    coef = coef_draws.mean(axis=0)
    coef_cov = np.atleast_2d(np.cov(coef_draws, rowvar=False, ddof=1))

    sd_draws: dict[str, np.ndarray] = {}
    sd_rows = []
    group_effects: dict[str, pd.DataFrame] = {}
    for g in design.groups:
        draws = _stacked(posterior, f"sd_{g.name}")
        sd_draws[g.name] = draws
        sd_rows.append((g.name, draws))
        effect = _stacked(posterior, f"effect_{g.name}")
        group_effects[g.name] = pd.DataFrame(
            {
                "level": list(g.levels),
                "estimate": effect.mean(axis=0),
                "std_error": effect.std(axis=0, ddof=1),
            }
        )
    slope_effects: dict[str, pd.DataFrame] = {}
    for s in design.slopes:
        g = design.group(s.group)
        key = _slope_key(s)
        sds = _stacked(posterior, f"slope_sd_{key}")
        for k, term in enumerate(s.terms):
            name = f"{term}|{s.group}"
            sd_draws[name] = sds[:, k]
            sd_rows.append((name, sds[:, k]))
        deviation = _stacked(posterior, f"slope_{key}")  # (S, levels, k)
        mean = deviation.mean(axis=0)
        sd = deviation.std(axis=0, ddof=1)
        slope_effects[f"{s.variable}|{s.group}"] = pd.DataFrame(
            {
                "level": np.repeat(list(g.levels), len(s.terms)),
                "term": np.tile(list(s.terms), g.n_levels),
                "estimate": mean.ravel(),
                "std_error": sd.ravel(),
            }
        )
    group_sd = pd.DataFrame(
        [
            (name, float(d.mean()), float(d.std(ddof=1)), *_interval(d, ci_prob))
            for name, d in sd_rows
        ],
        columns=["term", "estimate", "std_error", "conf_low", "conf_high"],
    )

    dispersion = None
    if family == "negative_binomial":
        alpha = _stacked(posterior, "alpha")
        dispersion = float(alpha.mean())
        low, high = _interval(alpha, ci_prob)
        diagnostics["dispersion"] = {
            "estimate": dispersion,
            "std_error": float(alpha.std(ddof=1)),
            "conf_low": low,
            "conf_high": high,
        }

    return Fit(
        engine="pymc",
        family=family,
        terms=tuple(design.terms),
        coef=coef,
        coef_cov=coef_cov,
        group_sd=group_sd,
        group_effects=group_effects,
        slope_effects=slope_effects,
        dispersion=dispersion,
        coef_draws=coef_draws,
        sd_draws=sd_draws,
        diagnostics=diagnostics,
        warnings=fit_warnings,
        ci_prob=ci_prob,
        raw=idata,
    )
