"""Joint draws of a fitted model's parameters, whatever the engine.

Every derived estimand (standardised rate ratios, ICC and median odds ratios, unit effects)
is computed draw by draw from one :class:`Draws` value, so the engines only have to agree
on the :class:`~disparity.engines.base.Fit` surface:

* **Bayesian fits** (``engine="pymc"``) give their posterior draws: the coefficients
  (``Fit.coef_draws``), the group effects and varying-slope deviations (read from the
  posterior in ``Fit.raw``, variables ``effect_<term>`` and ``slope_<variable>_<group>``),
  the SDs (``Fit.sd_draws``) and the negative-binomial shape (``alpha``). When there are
  more draws than asked for, an evenly spaced subset is kept (deterministic thinning).
* **Frequentist fits** (``engine="ml"`` or ``"glm"``) get *parametric* draws, an
  approximation in the spirit of Gelman and Hill's ``arm::sim`` for ``lme4`` fits [1]_:

  - fixed effects ``~ MVN(coef, coef_cov)``;
  - each group effect (and slope deviation) ``~ N(conditional mode, conditional SD)``,
    independently of each other and of the fixed effects;
  - each group SD ``~ exp(N(log sd, se(sd) / sd))`` (the delta-method standard error of
    ``log sd``), or fixed at its estimate where the fit gives no standard error (an SD at
    zero); the negative-binomial shape likewise.

  The approximation ignores the correlation between fixed and random effects and the way
  uncertainty in the SDs widens the conditional distribution of the group effects, so
  intervals for unit-level quantities are somewhat too narrow where units are small and
  the SDs poorly determined; contrasts averaged over many units (standardised rate ratios)
  are dominated by the fixed effects and little affected. Use the Bayesian engine where it
  matters.

References
----------
.. [1] Gelman, A. and Hill, J. (2007). *Data Analysis Using Regression and
   Multilevel/Hierarchical Models*, section 7.2 and chapter 12 (``sim``). Cambridge
   University Press.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from disparity import config
from disparity.design import Design
from disparity.engines.base import Fit
from disparity.errors import DisparityError

#: Engines whose fits carry posterior draws.
BAYESIAN_ENGINES: tuple[str, ...] = ("pymc",)


@dataclass(frozen=True)
class Draws:
    """Joint draws of a model's parameters (``S`` draws).

    Attributes
    ----------
    coef : ndarray, shape (S, p)
        Fixed effects on the link scale, columns in the order of ``terms``.
    group : mapping of str to ndarray, shape (S, n_levels)
        Random intercepts of each group term, columns in the order of the design's levels.
    slopes : mapping of str to ndarray, shape (S, n_levels, k)
        Varying-slope deviations, keyed ``"<variable>|<group>"``; the last axis follows the
        slope term's ``terms``.
    group_sd : mapping of str to ndarray, shape (S,)
        SD of each group term (key: its name) and of each varying slope (key
        ``"<term>|<group>"``), link scale.
    dispersion : ndarray, shape (S,), or None
        Negative-binomial shape (variance ``mu + mu**2 / dispersion``).
    terms : tuple of str
        Fixed-effect names.
    engine : str
        Engine of the fit.
    method : str
        ``"posterior"`` (Bayesian draws), ``"parametric"`` (frequentist approximation) or
        ``"point"`` (one row: the point estimates).
    fixed_sd : tuple of str
        SDs held at their estimate (no standard error was available): their intervals are
        not reported.
    notes : tuple of str
        Plain-English notes on approximations made.

    Examples
    --------
    >>> import numpy as np
    >>> d = Draws(coef=np.zeros((3, 2)), terms=("Intercept", "x"), engine="glm",
    ...           method="parametric")
    >>> d.n_draws
    3
    """

    coef: np.ndarray
    group: Mapping[str, np.ndarray] = field(default_factory=dict)
    slopes: Mapping[str, np.ndarray] = field(default_factory=dict)
    group_sd: Mapping[str, np.ndarray] = field(default_factory=dict)
    dispersion: np.ndarray | None = None
    terms: tuple[str, ...] = ()
    engine: str = ""
    method: str = "parametric"
    fixed_sd: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def n_draws(self) -> int:
        """Number of draws ``S``."""
        return int(self.coef.shape[0])


def is_bayesian(fit: Fit) -> bool:
    """Whether ``fit`` carries posterior draws (and its estimates are posterior summaries).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> f = Fit(engine="glm", family="binomial", terms=("Intercept",), coef=np.zeros(1),
    ...         coef_cov=np.eye(1), group_sd=pd.DataFrame())
    >>> is_bayesian(f)
    False
    """
    return fit.engine in BAYESIAN_ENGINES or fit.coef_draws is not None


def parameter_draws(
    fit: Fit,
    design: Design,
    *,
    n_draws: int = 1000,
    seed: int = config.SEED,
) -> Draws:
    """Joint draws of the fixed effects, group effects, SDs and dispersion of ``fit``.

    Parameters
    ----------
    fit : Fit
        From any engine.
    design : Design
        The design the fit was made from: its group terms give the level order of the
        group-effect columns.
    n_draws : int, default 1000
        Number of draws. For a Bayesian fit, the posterior draws are thinned to this many
        (evenly spaced, so the result does not depend on ``seed``); all are kept when there
        are fewer.
    seed : int
        Seed of the parametric draws of a frequentist fit.

    Returns
    -------
    Draws

    Raises
    ------
    DisparityError
        ``n_draws`` is not positive, or the fit lacks the effects of a group term of the
        design.

    Notes
    -----
    Frequentist fits get parametric draws (see the module notes): fixed effects from
    ``MVN(coef, coef_cov)``; group effects independently from ``N(mode, conditional SD)``;
    SDs log-normal with the delta-method standard error, or fixed at the estimate where
    there is none. This ignores the correlation between fixed and random effects and the
    uncertainty of the SDs in the group effects, like ``arm::sim`` [1]_. A level of the
    design that the fit has no effect for (a new unit) is drawn from ``N(0, sd)``.

    References
    ----------
    .. [1] Gelman, A. and Hill, J. (2007). *Data Analysis Using Regression and
       Multilevel/Hierarchical Models*, Cambridge University Press, sections 7.2 and 12.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from disparity.design import Design
    >>> design = Design(family="binomial", X=np.ones((2, 1)), terms=("Intercept",),
    ...                 events=np.array([1.0, 2.0]), trials=np.array([10.0, 10.0]))
    >>> f = Fit(engine="glm", family="binomial", terms=("Intercept",),
    ...         coef=np.array([-2.0]), coef_cov=np.array([[0.04]]), group_sd=pd.DataFrame())
    >>> d = parameter_draws(f, design, n_draws=500, seed=1)
    >>> d.coef.shape, d.method
    ((500, 1), 'parametric')
    >>> bool(abs(d.coef.std() - 0.2) < 0.02)
    True
    """
    n_draws = int(n_draws)
    if n_draws < 1:
        raise DisparityError(f"n_draws must be at least 1, got {n_draws}")
    _check_terms(fit, design)
    if is_bayesian(fit) and fit.coef_draws is not None:
        return _posterior_draws(fit, design, n_draws)
    return _parametric_draws(fit, design, n_draws, int(seed))


def point_parameters(fit: Fit, design: Design) -> Draws:
    """The point estimates of ``fit`` as a single draw (``method="point"``).

    Fixed effects ``fit.coef``, group effects their conditional modes (posterior means),
    SDs and dispersion their estimates. Used for plug-in estimates of derived quantities.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from disparity.design import Design
    >>> design = Design(family="poisson", X=np.ones((2, 1)), terms=("Intercept",),
    ...                 events=np.array([1.0, 2.0]), trials=np.array([10.0, 10.0]))
    >>> f = Fit(engine="glm", family="poisson", terms=("Intercept",),
    ...         coef=np.array([-2.0]), coef_cov=np.array([[0.04]]), group_sd=pd.DataFrame())
    >>> point_parameters(f, design).coef.tolist()
    [[-2.0]]
    """
    _check_terms(fit, design)
    if _has_random_effects(fit):
        group = {
            g.name: _level_values(fit, g.name, g.levels, "estimate", fill=0.0)[None, :]
            for g in design.groups
        }
        slopes = {}
        for s in design.slopes:
            levels = design.group(s.group).levels
            est = _slope_table(fit, s, levels, "estimate", fill=0.0)
            slopes[_slope_key(s)] = est[None, :, :]
        group_sd = {name: np.array([value]) for name, (value, _) in _sd_estimates(fit).items()}
    else:
        group, slopes, group_sd = _zero_effects(design, 1)
    dispersion = None if fit.dispersion is None else np.array([float(fit.dispersion)])
    return Draws(
        coef=np.asarray(fit.coef, dtype=np.float64)[None, :],
        group=group,
        slopes=slopes,
        group_sd=group_sd,
        dispersion=dispersion,
        terms=tuple(fit.terms),
        engine=fit.engine,
        method="point",
        fixed_sd=tuple(group_sd),
    )


def sd_draws(fit: Fit, *, n_draws: int = 1000, seed: int = config.SEED) -> Draws:
    """Draws of the group and slope SDs (and dispersion) only; no design needed.

    The same draws as :func:`parameter_draws` gives for the SDs of a Bayesian fit; for a
    frequentist fit, log-normal draws with the delta-method standard error (an SD without a
    standard error is held at its estimate and listed in ``fixed_sd``). ``coef`` holds the
    fixed-effect draws (``MVN(coef, coef_cov)`` for frequentist fits).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> sd = pd.DataFrame({"term": ["la"], "estimate": [0.5], "std_error": [0.05],
    ...                    "conf_low": [0.4], "conf_high": [0.6]})
    >>> f = Fit(engine="ml", family="binomial", terms=("Intercept",), coef=np.zeros(1),
    ...         coef_cov=np.eye(1), group_sd=sd)
    >>> d = sd_draws(f, n_draws=2000, seed=3)
    >>> bool(abs(np.median(d.group_sd["la"]) - 0.5) < 0.01)
    True
    """
    n_draws = int(n_draws)
    if n_draws < 1:
        raise DisparityError(f"n_draws must be at least 1, got {n_draws}")
    if is_bayesian(fit) and fit.coef_draws is not None:
        keep = _thin(np.asarray(fit.coef_draws).shape[0], n_draws)
        sds = {k: np.asarray(v, dtype=np.float64).ravel()[keep]
               for k, v in (fit.sd_draws or {}).items() if k != "dispersion"}
        return Draws(coef=np.asarray(fit.coef_draws, dtype=np.float64)[keep], group_sd=sds,
                     dispersion=_posterior_dispersion(fit, keep), terms=tuple(fit.terms),
                     engine=fit.engine, method="posterior")
    rng = np.random.default_rng(int(seed))
    coef = _mvn(rng, fit, n_draws)
    sds, fixed = _lognormal_sds(rng, fit, n_draws)
    dispersion = _lognormal_dispersion(rng, fit, n_draws)
    return Draws(coef=coef, group_sd=sds, dispersion=dispersion, terms=tuple(fit.terms),
                 engine=fit.engine, method="parametric", fixed_sd=fixed)


# --------------------------------------------------------------------------- helpers
def _has_random_effects(fit: Fit) -> bool:
    """Whether ``fit`` estimated random effects (a GLM's clusters are not random effects)."""
    has_sd = fit.group_sd is not None and len(fit.group_sd) > 0
    return bool(has_sd or fit.group_effects or fit.slope_effects)


def _zero_effects(design: Design, n: int) -> tuple[dict[str, np.ndarray],
                                                   dict[str, np.ndarray],
                                                   dict[str, np.ndarray]]:
    """Group effects, slope deviations and SDs all zero: a fit without random effects."""
    group = {g.name: np.zeros((n, g.n_levels)) for g in design.groups}
    slopes = {_slope_key(s): np.zeros((n, design.group(s.group).n_levels, len(s.terms)))
              for s in design.slopes}
    sds = {g.name: np.zeros(n) for g in design.groups}
    for s in design.slopes:
        for term in s.terms:
            sds[f"{term}|{s.group}"] = np.zeros(n)
    return group, slopes, sds


def _check_terms(fit: Fit, design: Design) -> None:
    if tuple(fit.terms) != tuple(design.terms):
        raise DisparityError(
            f"the fit's terms {list(fit.terms)!r} differ from the design's "
            f"{list(design.terms)!r}; pass the design the model was fitted to"
        )


def _thin(total: int, n_draws: int) -> np.ndarray:
    """Indices of ``n_draws`` evenly spaced draws out of ``total`` (all if fewer)."""
    if total <= n_draws:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, n_draws)).astype(np.int64))


def _slope_key(s: Any) -> str:
    return f"{s.variable}|{s.group}"


def _stacked(posterior: Any, name: str) -> np.ndarray:
    values = np.asarray(posterior[name].values, dtype=np.float64)
    return values.reshape((-1,) + values.shape[2:])


def _reorder(values: np.ndarray, have: list[str], want: tuple[str, ...], what: str,
             axis: int = 1) -> np.ndarray:
    """Reorder ``values`` along ``axis`` from labels ``have`` to labels ``want``."""
    position = {str(label): i for i, label in enumerate(have)}
    missing = [lv for lv in want if str(lv) not in position]
    if missing:
        raise DisparityError(
            f"the posterior has no {what} for level(s) {missing[:5]!r} of the design "
            f"({len(missing)} in all); pass the design the model was fitted to"
        )
    return np.take(values, [position[str(lv)] for lv in want], axis=axis)


def _posterior_dispersion(fit: Fit, keep: np.ndarray) -> np.ndarray | None:
    if fit.family != "negative_binomial":
        return None
    if fit.sd_draws and "dispersion" in fit.sd_draws:
        return np.asarray(fit.sd_draws["dispersion"], dtype=np.float64).ravel()[keep]
    posterior = getattr(fit.raw, "posterior", None)
    if posterior is not None and "alpha" in posterior:
        return _stacked(posterior, "alpha")[keep]
    if fit.dispersion is None:
        return None
    return np.full(len(keep), float(fit.dispersion))


def _posterior_draws(fit: Fit, design: Design, n_draws: int) -> Draws:
    coef_all = np.asarray(fit.coef_draws, dtype=np.float64)
    keep = _thin(coef_all.shape[0], n_draws)
    posterior = getattr(fit.raw, "posterior", None)
    notes: list[str] = []
    group: dict[str, np.ndarray] = {}
    for g in design.groups:
        name = f"effect_{g.name}"
        if posterior is not None and name in posterior:
            values = _stacked(posterior, name)
            have = [str(v) for v in posterior[name].coords[g.name].values]
            group[g.name] = _reorder(values, have, g.levels, f"{g.name} effects")[keep]
        else:
            group[g.name] = _normal_from_table(fit, g.name, g.levels, len(keep), keep)
            notes.append(
                f"the fit holds no posterior draws of the {g.name} effects (raw posterior "
                "missing); a normal with their posterior mean and SD was used"
            )
    slopes: dict[str, np.ndarray] = {}
    for s in design.slopes:
        levels = design.group(s.group).levels
        name = f"slope_{s.variable}_{s.group}"
        if posterior is not None and name in posterior:
            values = _stacked(posterior, name)  # (S, levels, k)
            da = posterior[name]
            have = [str(v) for v in da.coords[s.group].values]
            values = _reorder(values, have, levels, f"{s.variable} slopes")
            dim = _slope_key(s)
            if dim in da.coords:
                have_terms = [str(v) for v in da.coords[dim].values]
                values = _reorder(values, have_terms, s.terms, f"{s.variable} slope terms",
                                  axis=2)
            slopes[_slope_key(s)] = values[keep]
        else:
            est = _slope_table(fit, s, levels, "estimate", fill=0.0)
            se = _slope_table(fit, s, levels, "std_error", fill=0.0)
            z = _seeded_normal(len(keep), est.shape, keep)
            slopes[_slope_key(s)] = est[None] + se[None] * z
            notes.append(
                f"the fit holds no posterior draws of the {s.variable} slopes by {s.group}; a "
                "normal with their posterior mean and SD was used"
            )
    group_sd = {k: np.asarray(v, dtype=np.float64).ravel()[keep]
                for k, v in (fit.sd_draws or {}).items() if k != "dispersion"}
    return Draws(
        coef=coef_all[keep],
        group=group,
        slopes=slopes,
        group_sd=group_sd,
        dispersion=_posterior_dispersion(fit, keep),
        terms=tuple(fit.terms),
        engine=fit.engine,
        method="posterior",
        notes=tuple(notes),
    )


def _seeded_normal(n: int, shape: tuple[int, ...], keep: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(config.SEED + int(keep.size))
    return rng.standard_normal((n, *shape))


def _normal_from_table(fit: Fit, name: str, levels: tuple[str, ...], n: int,
                       keep: np.ndarray) -> np.ndarray:
    est = _level_values(fit, name, levels, "estimate", fill=0.0)
    se = _level_values(fit, name, levels, "std_error", fill=0.0)
    return est[None, :] + se[None, :] * _seeded_normal(n, est.shape, keep)


def _level_values(fit: Fit, name: str, levels: tuple[str, ...], column: str,
                  fill: float) -> np.ndarray:
    """One value per design level from ``fit.group_effects[name]``; ``fill`` where absent."""
    table = fit.group_effects.get(name)
    if table is None:
        raise DisparityError(
            f"the {fit.engine} fit has no effects for group term {name!r}; it has "
            f"{sorted(fit.group_effects)!r}. Pass the design the model was fitted to."
        )
    lookup = pd.Series(np.asarray(table[column], dtype=np.float64),
                       index=[str(v) for v in table["level"]])
    return lookup.reindex([str(lv) for lv in levels]).fillna(fill).to_numpy(np.float64)


def _slope_table(fit: Fit, s: Any, levels: tuple[str, ...], column: str,
                 fill: float) -> np.ndarray:
    """Slope deviations as a (levels, k) array from ``fit.slope_effects``."""
    key = _slope_key(s)
    table = fit.slope_effects.get(key)
    if table is None:
        raise DisparityError(
            f"the {fit.engine} fit has no varying slopes {key!r}; it has "
            f"{sorted(fit.slope_effects)!r}. Pass the design the model was fitted to."
        )
    wide = table.assign(level=table["level"].astype(str), term=table["term"].astype(str))
    wide = wide.pivot(index="level", columns="term", values=column)
    wide = wide.reindex(index=[str(lv) for lv in levels], columns=list(s.terms))
    return wide.fillna(fill).to_numpy(np.float64)


def _sd_estimates(fit: Fit) -> dict[str, tuple[float, float]]:
    """``{term: (estimate, std_error)}`` from ``fit.group_sd``."""
    table = fit.group_sd
    if table is None or len(table) == 0:
        return {}
    out = {}
    for record in table.to_dict("records"):
        est = float(record.get("estimate", np.nan))
        se = float(record.get("std_error", np.nan))
        out[str(record["term"])] = (est, se)
    return out


def _mvn(rng: np.random.Generator, fit: Fit, n_draws: int) -> np.ndarray:
    coef = np.asarray(fit.coef, dtype=np.float64)
    cov = np.asarray(fit.coef_cov, dtype=np.float64)
    cov = (cov + cov.T) / 2.0
    # the symmetric square root: tolerates a covariance that is only semi-definite, and
    # unlike the eigenvectors themselves (signs, rotations within near-equal eigenvalues,
    # which differ between LAPACK builds) it is unique and continuous in the covariance,
    # so the same seed gives the same draws on every machine
    values, vectors = np.linalg.eigh(cov)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return coef[None, :] + rng.standard_normal((n_draws, coef.size)) @ root


def _lognormal(rng: np.random.Generator, est: float, se: float, n_draws: int) -> np.ndarray | None:
    """Log-normal draws with median ``est`` and delta-method log-scale SD ``se / est``."""
    if not (np.isfinite(est) and np.isfinite(se) and est > 0 and se > 0):
        return None
    return est * np.exp(rng.standard_normal(n_draws) * (se / est))


def _lognormal_sds(rng: np.random.Generator, fit: Fit,
                   n_draws: int) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    sds: dict[str, np.ndarray] = {}
    fixed: list[str] = []
    for term, (est, se) in _sd_estimates(fit).items():
        values = _lognormal(rng, est, se, n_draws)
        if values is None:
            values = np.full(n_draws, max(est, 0.0) if np.isfinite(est) else 0.0)
            fixed.append(term)
        sds[term] = values
    return sds, tuple(fixed)


def _lognormal_dispersion(rng: np.random.Generator, fit: Fit, n_draws: int) -> np.ndarray | None:
    if fit.dispersion is None:
        return None
    est = float(fit.dispersion)
    se = fit.diagnostics.get("dispersion_std_error") if fit.diagnostics else None
    values = _lognormal(rng, est, float(se) if se is not None else np.nan, n_draws)
    return np.full(n_draws, est) if values is None else values


def _parametric_draws(fit: Fit, design: Design, n_draws: int, seed: int) -> Draws:
    rng = np.random.default_rng(seed)
    coef = _mvn(rng, fit, n_draws)
    sds, fixed = _lognormal_sds(rng, fit, n_draws)
    dispersion = _lognormal_dispersion(rng, fit, n_draws)
    notes: list[str] = []
    if not _has_random_effects(fit):
        group, slopes, zero_sds = _zero_effects(design, n_draws)
        if design.groups or design.slopes:
            notes.append(
                f"the {fit.engine} fit has no random effects: group effects and SDs are zero"
            )
        return Draws(coef=coef, group=group, slopes=slopes, group_sd={**zero_sds, **sds},
                     dispersion=dispersion, terms=tuple(fit.terms), engine=fit.engine,
                     method="parametric", fixed_sd=tuple(zero_sds), notes=tuple(notes))
    group: dict[str, np.ndarray] = {}
    for g in design.groups:
        table = fit.group_effects.get(g.name)
        if table is None:
            raise DisparityError(
                f"the {fit.engine} fit has no effects for group term {g.name!r} of the design "
                f"(it has {sorted(fit.group_effects)!r}); pass the design the model was "
                "fitted to"
            )
        known = set(map(str, table["level"]))
        new = np.array([str(lv) not in known for lv in g.levels])
        est = _level_values(fit, g.name, g.levels, "estimate", fill=0.0)
        se = _level_values(fit, g.name, g.levels, "std_error", fill=0.0)
        z = rng.standard_normal((n_draws, g.n_levels))
        values = est[None, :] + se[None, :] * z
        if new.any():
            sd = sds.get(g.name, np.zeros(n_draws))
            values[:, new] = sd[:, None] * z[:, new]
            notes.append(
                f"{int(new.sum())} {g.name} level(s) of the design have no fitted effect; "
                f"they were drawn from N(0, sd_{g.name})"
            )
        group[g.name] = values
    slopes: dict[str, np.ndarray] = {}
    for s in design.slopes:
        levels = design.group(s.group).levels
        est = _slope_table(fit, s, levels, "estimate", fill=0.0)
        se = _slope_table(fit, s, levels, "std_error", fill=0.0)
        slopes[_slope_key(s)] = est[None] + se[None] * rng.standard_normal((n_draws, *est.shape))
    notes.append(
        "parametric draws: fixed effects MVN(coef, coef_cov); group effects independent "
        "N(conditional mode, conditional SD); SDs log-normal (delta method) or fixed"
    )
    return Draws(
        coef=coef,
        group=group,
        slopes=slopes,
        group_sd=sds,
        dispersion=dispersion,
        terms=tuple(fit.terms),
        engine=fit.engine,
        method="parametric",
        fixed_sd=fixed,
        notes=tuple(notes),
    )
