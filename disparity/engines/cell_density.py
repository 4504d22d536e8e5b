"""The log posterior density of the hierarchical cell model and its gradient, in numba.

This is the model of :func:`disparity.engines.pymc.build_model`, written out by hand so that
one evaluation costs a few nanoseconds per cell: NUTS needs the density and its gradient
tens of thousands of times, and at national scale (hundreds of thousands of cells) a
general-purpose graph spends most of its time on dense (cells x terms) products and
temporaries. Three facts make it cheap:

- **Covariate patterns.** The fixed-effect rows of a cells table take few distinct values
  (18 ethnic groups x 3 SEN x 2 FSM x 2 CIN x 2 sexes = 432 at most), so ``X beta`` is
  computed once per pattern and gathered, and the gradient of the coefficients is
  ``Z' r`` with ``r`` the per-pattern sum of cell residuals (a scatter-add), not a
  (cells x p) product.
- **One pass over the cells.** The linear predictor, the log-likelihood and its derivative
  with respect to the linear predictor are computed cell by cell and scattered to the
  patterns and group levels in the same loop, with no temporaries.
- **Integer counts.** The negative-binomial term ``lgamma(y + alpha) - lgamma(alpha)`` is
  ``sum_{k < y} log(alpha + k)``, so it is summed over the distinct counts, not the cells.

Parameters (the unconstrained vector ``theta``, in this order)::

    fixed   a, b (intercept at the pupil-weighted covariate means and the other
            coefficients; beta = (a - xbar @ b, b)), or beta without an intercept
    log_sd  one per group term and one per varying-slope column (HalfNormal priors)
    t       one per group level (and per level x slope column): the effect is
            u = sd ** (1 - w) * t - l * w * m, so t ~ Normal(l w m / sd ** (1 - w), sd ** w)
    log_alpha   negative binomial only (Gamma prior)

``w = 0`` is the non-centred parameterisation (``u = sd * z``), ``w = 1`` the centred one;
a ``w`` in between is the partially non-centred form of Papaspiliopoulos, Roberts and
Sköld (2007). ``l`` (0 or 1, ``effect_located``) says whether the level is centred on its
parent in location too: ``m`` is the parent's value ``x = m + u`` (for an LA nested in
nothing, the intercept ``a``; for a school of ``la/school``, its LA's value), so at
``w = l = 1`` the sampled value is the level's own ``x ~ Normal(m, sd)``, the hierarchical
centring of Gelfand, Sahu and Carlin (1995). Every ``(w, l)`` gives the same posterior for
``(beta, sd, u)``; they only change the geometry the sampler sees.
:func:`centring_weights` chooses ``w`` level by level from the information the data hold
about each effect, and :func:`~disparity.engines.cell_sampler.choose_location` centres in
location the levels of top terms that the data pin down: there the intercept and the mean
of the LA effects otherwise trade along a direction the data do not see, a ridge no
diagonal mass matrix follows (at 8 million pupils the intercept's bulk ESS was 9 in 300
draws without it, 305 with it).

A censored cell (its count only known to lie in ``[lo, hi]``) contributes
``log sum_{k=lo..hi} P(Y = k | eta)`` (direct enumeration).

References
----------
Gelfand, A. E., Sahu, S. K. and Carlin, B. P. (1995). Efficient parametrisations for
normal linear mixed models. Biometrika 82(3), 479-488.
Papaspiliopoulos, O., Roberts, G. O. and Sköld, M. (2007). A general framework for the
parametrization of hierarchical models. Statistical Science 22(1), 59-73.
Gorinova, M., Moore, D. and Hoffman, M. (2020). Automatic reparameterisation of
probabilistic programs. ICML 2020 (variationally inferred partial centring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numba
import numpy as np

from disparity.engines.laplace import covariate_patterns

#: Family codes used inside the compiled kernels.
FAMILY_CODE: Mapping[str, int] = {"binomial": 0, "poisson": 1, "negative_binomial": 2}

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class EffectBlock:
    """Where one group term's (or slope term's) effects sit in ``theta`` and in the output.

    Attributes
    ----------
    name : str
        Output name: ``effect_<group>`` or ``slope_<variable>_<group>``.
    sd_name : str
        ``sd_<group>`` or ``slope_sd_<variable>_<group>``.
    start : int
        Offset of the block in the effect vector ``u`` (and of ``t`` in ``theta``, after
        ``t_start``).
    shape : tuple of int
        ``(levels,)`` for a group term, ``(levels, columns)`` for a slope term.
    sd_index : int
        Index of the block's first SD in the SD vector (a slope term has one per column).
    """

    name: str
    sd_name: str
    start: int
    shape: tuple[int, ...]
    sd_index: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class CellDensity:
    """The posterior density of one Design, ready to evaluate.

    Build it with :func:`build_density`. ``logp_and_grad(theta)`` returns the log density
    (with every normalising constant, so it equals PyMC's ``model.logp()`` with the Jacobian
    of the log transforms) and its gradient; :meth:`expand` maps ``theta`` to the model's
    quantities; :meth:`pointwise_log_likelihood` gives one log-likelihood per cell.
    """

    family: str
    n_fixed: int
    n_sd: int
    n_effects: int
    has_alpha: bool
    #: fixed-effect pattern matrix in the sampled parameterisation (patterns x n_fixed)
    Z: np.ndarray
    #: beta = beta_map @ theta_fixed (the reference-level coefficients)
    beta_map: np.ndarray
    fixed_mu: np.ndarray
    fixed_sd: np.ndarray
    sd_scale: np.ndarray
    effect_sd_index: np.ndarray
    weights: np.ndarray
    #: the effect each effect can be centred on: -1 none, -2 the intercept, else an effect
    #: index (a school's LA); parents come before their children in ``effect_order``
    effect_parent: np.ndarray
    effect_order: np.ndarray
    #: 1 where an effect is centred on its parent in location too (``u = ... - w m``), else 0
    effect_located: np.ndarray
    blocks: tuple[EffectBlock, ...]
    alpha_prior: tuple[float, float]
    #: observed (uncensored) cells, sorted for locality
    cells: Mapping[str, np.ndarray] = field(repr=False)
    #: censored cells
    censored: Mapping[str, np.ndarray] = field(repr=False)
    #: the constant of the observed cells' log-likelihood (binomial coefficients, ...)
    constant: float = 0.0
    #: negative binomial: number of observed cells with count > k, k = 0, 1, ...
    count_tail: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def n_dim(self) -> int:
        return self.n_fixed + self.n_sd + self.n_effects + int(self.has_alpha)

    @property
    def t_start(self) -> int:
        return self.n_fixed + self.n_sd

    def with_weights(self, weights: np.ndarray,
                     located: np.ndarray | None = None) -> "CellDensity":
        """The same density with other centring weights (one per effect, in [0, 1]) and,
        optionally, the effects centred on their parents in location (1) or not (0; the
        default)."""
        import dataclasses

        w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, 1.0)
        if w.shape != (self.n_effects,):
            raise ValueError(f"need {self.n_effects} weights, got shape {w.shape}")
        at = np.zeros(self.n_effects) if located is None else np.asarray(located, float)
        if at.shape != (self.n_effects,) or not np.all((at == 0) | (at == 1)):
            raise ValueError(f"located must be {self.n_effects} values of 0 or 1")
        at = np.where(self.effect_parent == -1, 0.0, at)
        return dataclasses.replace(self, weights=np.ascontiguousarray(w),
                                   effect_located=np.ascontiguousarray(at))

    def _args(self) -> tuple:
        c, z = self.cells, self.censored
        return (
            self.Z, self.fixed_mu, self.fixed_sd, self.sd_scale, self.effect_sd_index,
            self.weights, self.n_fixed, self.n_sd, self.n_effects, self.has_alpha,
            self.alpha_prior[0], self.alpha_prior[1], FAMILY_CODE[self.family],
            c["pattern"], c["group_index"], c["slope_index"], c["slope_weight"],
            c["slope_width"], c["trials"], c["events"],
            z["pattern"], z["group_index"], z["slope_index"], z["trials"], z["lo"], z["hi"],
            self.count_tail, self.constant, c["unit_levels"], c["unit_start"],
            c["events_by_pattern"], c["events_by_effect"], self.effect_parent,
            self.effect_order, self.effect_located,
        )

    def logp_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Log posterior density at ``theta`` and its gradient.

        Examples
        --------
        >>> import numpy as np
        >>> from disparity.design import Design
        >>> d = Design(family="poisson", X=np.ones((2, 1)), terms=("Intercept",),
        ...            events=np.array([3.0, 5.0]), trials=np.array([100.0, 120.0]))
        >>> density = build_density(d, priors={"intercept_sd": 2.5, "coef_sd": 1.0})
        >>> lp, grad = density.logp_and_grad(np.array([-3.0]))
        >>> grad.shape
        (1,)
        """
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        grad = np.empty_like(theta)
        lp = _logp_grad(theta, grad, *self._args())
        return float(lp), grad

    def expand(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """The model's quantities at ``theta``: ``beta``, each SD and effect, ``alpha``."""
        theta = np.asarray(theta, dtype=np.float64)
        out: dict[str, np.ndarray] = {"beta": self.beta_map @ theta[: self.n_fixed]}
        log_sd = theta[self.n_fixed : self.t_start]
        sd = np.exp(log_sd)
        u = self.effects(theta)
        for b in self.blocks:
            k = b.shape[1] if len(b.shape) > 1 else None
            out[b.sd_name] = np.asarray(sd[b.sd_index] if k is None
                                        else sd[b.sd_index : b.sd_index + k])
            out[b.name] = u[b.start : b.start + b.size].reshape(b.shape)
        if self.has_alpha:
            out["alpha"] = np.asarray(np.exp(theta[-1]))
        return out

    def effects(self, theta: np.ndarray) -> np.ndarray:
        """The group (and slope) effects ``u = sd ** (1 - w) * t - l w m`` at ``theta``
        (``m`` the centred value of the effect's parent and ``l`` 1 where the effect is
        centred on it in location, see :func:`build_density`)."""
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        u, x, scale = (np.empty(self.n_effects) for _ in range(3))
        _effects_forward(theta, self.n_fixed, self.t_start, self.effect_sd_index, self.weights,
                         self.effect_parent, self.effect_order, self.effect_located, u, x,
                         scale)
        return u

    def to_theta(self, fixed: np.ndarray, sd: np.ndarray, effects: np.ndarray,
                 alpha: float | None = None) -> np.ndarray:
        """``theta`` for given sampled-scale fixed effects, SDs and effects (inverse of expand)."""
        fixed = np.asarray(fixed, dtype=np.float64)
        sd = np.asarray(sd, dtype=np.float64)
        u = np.asarray(effects, dtype=np.float64)
        scale = np.exp((1.0 - self.weights) * np.log(sd)[self.effect_sd_index])
        x = np.empty(self.n_effects)
        t = np.empty(self.n_effects)
        for e in self.effect_order:  # parents first: t = (u + w m) / scale, x = m + u
            p = self.effect_parent[e]
            m = 0.0 if p == -1 else (fixed[0] if p == -2 else x[p])
            x[e] = m + u[e]
            t[e] = (u[e] + self.effect_located[e] * self.weights[e] * m) / scale[e]
        parts = [fixed, np.log(sd), t]
        if self.has_alpha:
            parts.append(np.array([math.log(alpha if alpha is not None else 1.0)]))
        return np.concatenate(parts)

    def cell_information(self, theta: np.ndarray) -> np.ndarray:
        """Fisher information about each effect at ``theta``: sum over its cells of
        ``-d2 loglik / d eta2`` times the squared weight (used to choose centring)."""
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        info = np.zeros(self.n_effects)
        _information(theta, info, *self._args())
        return info

    def pointwise_log_likelihood(self, thetas: np.ndarray) -> np.ndarray:
        """Log-likelihood of every cell (constants included) at each row of ``thetas``.

        Returns an array (draws, cells) in the Design's cell order.
        """
        thetas = np.ascontiguousarray(np.atleast_2d(thetas), dtype=np.float64)
        n_obs = self.cells["trials"].shape[0]
        n_cen = self.censored["trials"].shape[0]
        out = np.empty((thetas.shape[0], n_obs + n_cen))
        _pointwise(thetas, out, self.cells["order"], self.censored["order"],
                   self.cells["log_constant"], *self._args())
        return out


# --------------------------------------------------------------------------- building
def build_density(
    design: Any,
    *,
    priors: Mapping[str, float],
    weights: Mapping[str, float] | np.ndarray | None = None,
) -> CellDensity:
    """The :class:`CellDensity` of ``design`` under ``priors``.

    Parameters
    ----------
    design : Design
        Cells: ``X``, ``events`` (and ``events_upper`` where counts are censored),
        ``trials``, groups and slopes.
    priors : mapping
        ``intercept_sd``, ``coef_sd``, ``group_sd``, ``slope_sd``, ``dispersion_shape``,
        ``dispersion_rate`` (see :data:`disparity.spec.DEFAULT_PRIORS`).
    weights : mapping or array, optional
        Centring weight per group term name (or ``"<variable>|<group>"``), or one per
        effect; default 0 (non-centred) everywhere.

    Returns
    -------
    CellDensity

    Examples
    --------
    >>> import numpy as np
    >>> from disparity.design import Design, GroupTerm
    >>> g = GroupTerm(name="la", columns=("la",), index=np.array([0, 0, 1, 1]),
    ...               levels=("A", "B"))
    >>> d = Design(family="binomial", X=np.array([[1.0, 0], [1, 1], [1, 0], [1, 1]]),
    ...            terms=("Intercept", "sen[T.ehcp]"), events=np.array([1.0, 4, 2, 5]),
    ...            trials=np.array([50.0, 40, 60, 45]), groups=(g,))
    >>> density = build_density(d, priors={"intercept_sd": 2.5, "coef_sd": 1.0,
    ...                                    "group_sd": 1.0})
    >>> density.n_dim  # a, b, log sd_la, two LA effects
    5
    """
    family = str(design.family)
    X = np.asarray(design.X, dtype=np.float64)
    terms = tuple(design.terms)
    events = np.asarray(design.events, dtype=np.float64)
    upper = getattr(design, "events_upper", None)
    upper = events.copy() if upper is None else np.asarray(upper, dtype=np.float64)
    trials = np.asarray(design.trials, dtype=np.float64)
    n_cells, p = X.shape

    # -- fixed effects in the sampled parameterisation: Z = X with centred covariates
    beta_map = np.eye(p)
    fixed_mu = np.zeros(p)
    fixed_sd = np.full(p, float(priors.get("coef_sd", 1.0)))
    Zfull = X.copy()
    if "Intercept" in terms:
        i = terms.index("Intercept")
        others = [j for j in range(p) if j != i]
        centre = (np.average(X[:, others], axis=0, weights=trials) if others
                  else np.zeros(0))
        Zfull = np.column_stack([np.ones(n_cells), X[:, others] - centre])
        # theta_fixed = (a, b); beta[i] = a - centre @ b, beta[others] = b
        beta_map = np.zeros((p, p))
        beta_map[i, 0] = 1.0
        beta_map[i, 1:] = -centre
        for k, j in enumerate(others):
            beta_map[j, k + 1] = 1.0
        fixed_mu = np.zeros(p)
        fixed_mu[0] = crude_link(events, trials, family)
        fixed_sd = np.full(p, float(priors.get("coef_sd", 1.0)))
        fixed_sd[0] = float(priors.get("intercept_sd", 2.5))
    patterns, pattern = covariate_patterns(X)
    first = np.zeros(len(patterns), dtype=np.int64)
    first[pattern[::-1]] = np.arange(n_cells)[::-1]
    Z = np.ascontiguousarray(Zfull[first])

    # -- effects: group intercepts then slopes
    blocks: list[EffectBlock] = []
    sd_scale: list[float] = []
    effect_sd: list[np.ndarray] = []
    group_index = np.zeros((len(design.groups), n_cells), dtype=np.int64)
    start = 0
    for k, g in enumerate(design.groups):
        blocks.append(EffectBlock(f"effect_{g.name}", f"sd_{g.name}", start,
                                  (g.n_levels,), len(sd_scale)))
        effect_sd.append(np.full(g.n_levels, len(sd_scale), dtype=np.int64))
        sd_scale.append(float(priors.get("group_sd", 1.0)))
        group_index[k] = start + np.asarray(g.index, dtype=np.int64)
        start += g.n_levels
    widths = [len(s.columns) for s in design.slopes]
    kmax = max(widths, default=0)
    slope_index = np.zeros((len(design.slopes), n_cells), dtype=np.int64)
    # per pattern: the slope columns' values (raw X), one row of kmax per slope term
    slope_weight = np.zeros((len(patterns), max(len(design.slopes), 1) * max(kmax, 1)))
    for k, s in enumerate(design.slopes):
        g = design.group(s.group)
        key = f"{s.variable}_{s.group}"
        width = len(s.columns)
        blocks.append(EffectBlock(f"slope_{key}", f"slope_sd_{key}", start,
                                  (g.n_levels, width), len(sd_scale)))
        effect_sd.append(np.tile(np.arange(len(sd_scale), len(sd_scale) + width), g.n_levels))
        sd_scale.extend([float(priors.get("slope_sd", 0.5))] * width)
        slope_index[k] = start + width * np.asarray(g.index, dtype=np.int64)
        slope_weight[:, k * kmax : k * kmax + width] = patterns[:, list(s.columns)]
        start += g.n_levels * width
    n_effects = start
    effect_sd_index = (np.concatenate(effect_sd) if effect_sd
                       else np.zeros(0, dtype=np.int64))
    effect_parent, effect_order = _effect_parents(design, blocks, n_effects,
                                                  "Intercept" in terms)

    w = np.zeros(n_effects)
    if isinstance(weights, np.ndarray):
        w = np.asarray(weights, dtype=np.float64).copy()
    elif weights:
        for b, key in zip(blocks, block_keys(design)):
            if key in weights:
                w[b.start : b.start + b.size] = float(weights[key])

    # -- cells: observed exactly vs censored; observed ones sorted by their largest term
    censored = upper > events
    obs = np.flatnonzero(~censored)
    cen = np.flatnonzero(censored)
    unit_levels = np.zeros((len(design.groups), 0), dtype=np.int64)
    unit_start = np.zeros(0, dtype=np.int64)
    if not design.slopes:
        # units: the distinct combinations of group levels (schools, for la/school)
        if design.groups:
            keys, unit = np.unique(group_index[:, obs].T, axis=0, return_inverse=True)
            unit = unit.reshape(-1)
            unit_levels = np.ascontiguousarray(keys.T, dtype=np.int64)
        else:
            unit = np.zeros(obs.size, dtype=np.int64)
            unit_levels = np.zeros((0, 1), dtype=np.int64)
        by = np.lexsort((pattern[obs], unit))
        obs = obs[by]
        counts = np.bincount(unit[by], minlength=unit_levels.shape[1])
        unit_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    elif len(design.groups):
        largest = int(np.argmax([g.n_levels for g in design.groups]))
        obs = obs[np.argsort(group_index[largest, obs], kind="stable")]

    def take(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "order": rows.astype(np.int64),
            "pattern": np.ascontiguousarray(pattern[rows]),
            "group_index": np.ascontiguousarray(group_index[:, rows]),
            "slope_index": np.ascontiguousarray(slope_index[:, rows]),
            "trials": np.ascontiguousarray(trials[rows]),
        }

    cells = take(obs)
    cells["events"] = np.ascontiguousarray(events[obs])
    cells["slope_weight"] = np.ascontiguousarray(slope_weight)
    cells["slope_width"] = np.asarray(widths or [0], dtype=np.int64)
    cells["log_constant"] = _log_constant(family, events[obs], trials[obs])
    cells["unit_levels"] = unit_levels
    cells["unit_start"] = unit_start
    cells["events_by_pattern"] = np.bincount(cells["pattern"], weights=cells["events"],
                                             minlength=len(patterns)).astype(np.float64)
    by_effect = np.zeros(n_effects)
    for row in cells["group_index"]:
        by_effect += np.bincount(row, weights=cells["events"], minlength=n_effects)
    cells["events_by_effect"] = by_effect
    cens = take(cen)
    cens["lo"] = np.ascontiguousarray(events[cen])
    cens["hi"] = np.ascontiguousarray(upper[cen])

    count_tail = np.zeros(0)
    if family == "negative_binomial":
        y = events[obs].astype(np.int64)
        if y.size and y.max() > 0:
            hist = np.bincount(y)
            count_tail = (y.size - np.cumsum(hist))[:-1].astype(np.float64)  # cells with y > k

    return CellDensity(
        family=family,
        n_fixed=p,
        n_sd=len(sd_scale),
        n_effects=n_effects,
        has_alpha=family == "negative_binomial",
        Z=Z,
        beta_map=beta_map,
        fixed_mu=fixed_mu,
        fixed_sd=fixed_sd,
        sd_scale=np.asarray(sd_scale, dtype=np.float64),
        effect_sd_index=np.ascontiguousarray(effect_sd_index, dtype=np.int64),
        weights=np.ascontiguousarray(w),
        effect_parent=effect_parent,
        effect_order=effect_order,
        effect_located=np.zeros(n_effects),
        blocks=tuple(blocks),
        alpha_prior=(float(priors.get("dispersion_shape", 2.0)),
                     float(priors.get("dispersion_rate", 0.1))),
        cells=cells,
        censored=cens,
        constant=float(cells["log_constant"].sum()),
        count_tail=np.ascontiguousarray(count_tail),
    )


def _effect_parents(design: Any, blocks: list[EffectBlock], n_effects: int,
                    intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each effect's parent and an order with parents first.

    A group term nested in another (``school`` in ``la/school``) is centred on its parent's
    level; a term nested in none is centred on the intercept when the model has one (``a``,
    the intercept at the covariate means). Slopes are centred on nothing.
    """
    parent = np.full(n_effects, -1, dtype=np.int64)
    depth = np.zeros(n_effects, dtype=np.int64)
    block = {b.name: b for b in blocks}
    by_name = {g.name: g for g in design.groups}
    for g in design.groups:
        b = block[f"effect_{g.name}"]
        up = by_name.get(g.parent) if getattr(g, "parent", None) else None
        if up is None:
            parent[b.start : b.start + b.size] = -2 if intercept else -1
            continue
        level_of = np.zeros(g.n_levels, dtype=np.int64)
        level_of[np.asarray(g.index)] = np.asarray(up.index)
        parent[b.start : b.start + b.size] = block[f"effect_{up.name}"].start + level_of
        ancestor, d = up, 1
        while ancestor.parent and ancestor.parent in by_name:
            ancestor, d = by_name[ancestor.parent], d + 1
        depth[b.start : b.start + b.size] = d
    order = np.argsort(depth, kind="stable").astype(np.int64)
    return parent, order


def block_keys(design: Any) -> list[str]:
    """The ``noncentered`` key of each effect block: group name, then ``variable|group``."""
    return [g.name for g in design.groups] + [f"{s.variable}|{s.group}" for s in design.slopes]


def crude_link(events: np.ndarray, trials: np.ndarray, family: str) -> float:
    """Link of the crude overall rate, kept finite when there are no events at all.

    Examples
    --------
    >>> round(crude_link(np.array([9.5]), np.array([99.0]), "poisson"), 4)
    -2.3026
    """
    rate = (float(np.sum(events)) + 0.5) / (float(np.sum(trials)) + 1.0)
    if family == "binomial":
        return float(np.log(rate) - np.log1p(-rate))
    return float(np.log(rate))


def _log_constant(family: str, events: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Per-cell constant of the log-likelihood, so the density equals the full log pmf."""
    from scipy.special import gammaln

    if family == "binomial":
        return gammaln(trials + 1) - gammaln(events + 1) - gammaln(trials - events + 1)
    # Poisson and negative binomial with mu = trials * exp(eta): y log(trials) - log y!
    return events * np.log(trials) - gammaln(events + 1)


def centring_weights(information: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Partial-centring weight of each effect: ``I sd^2 / (1 + I sd^2)``.

    For a Normal effect with prior SD ``sd`` and data information ``I`` this weight makes
    the posterior scale of ``t`` free of ``sd`` (to first order), which removes the funnel
    between an SD and its effects: 0 (non-centred) where the data say little about each
    effect, near 1 (centred) where they say a lot.

    Examples
    --------
    >>> centring_weights(np.array([0.0, 1.0, 100.0]), np.array([0.5, 1.0, 1.0])).round(3)
    array([0.  , 0.5 , 0.99])
    """
    v = np.asarray(information, dtype=float) * np.asarray(sd, dtype=float) ** 2
    return v / (1.0 + v)


# --------------------------------------------------------------------------- kernels
_jit = numba.njit(nogil=True, cache=True, error_model="numpy")


@_jit
def _softplus_sigmoid(eta):
    if eta > 0.0:
        e = math.exp(-eta)
        return eta + math.log1p(e), 1.0 / (1.0 + e)
    e = math.exp(eta)
    return math.log1p(e), e / (1.0 + e)


@_jit
def _predictor(c, xb, u, pattern, group_index, slope_index, slope_weight, slope_width):
    p = pattern[c]
    eta = xb[p]
    for g in range(group_index.shape[0]):
        eta += u[group_index[g, c]]
    kmax = slope_weight.shape[1] // max(slope_index.shape[0], 1)
    for s in range(slope_index.shape[0]):
        base = slope_index[s, c]
        for k in range(slope_width[s]):
            x = slope_weight[p, s * kmax + k]
            if x != 0.0:
                eta += x * u[base + k]
    return eta


@_jit
def _scatter(c, r, gxb, gu, pattern, group_index, slope_index, slope_weight, slope_width):
    p = pattern[c]
    gxb[p] += r
    for g in range(group_index.shape[0]):
        gu[group_index[g, c]] += r
    kmax = slope_weight.shape[1] // max(slope_index.shape[0], 1)
    for s in range(slope_index.shape[0]):
        base = slope_index[s, c]
        for k in range(slope_width[s]):
            x = slope_weight[p, s * kmax + k]
            if x != 0.0:
                gu[base + k] += x * r


@_jit
def _effects_forward(theta, n_fixed, t0, effect_sd_index, weights, effect_parent,
                     effect_order, effect_located, u, x, scale):
    """Effects from ``theta``, parents first: ``u = scale t - l w m`` and ``x = m + u``,
    with ``scale = sd^(1 - w)``, ``l`` the effect's ``effect_located`` and ``m`` the
    parent's ``x`` (the intercept ``a`` for parent -2, 0 for none)."""
    for i in range(effect_order.shape[0]):
        e = effect_order[i]
        s = math.exp((1.0 - weights[e]) * theta[n_fixed + effect_sd_index[e]])
        scale[e] = s
        p = effect_parent[e]
        m = 0.0 if p == -1 else (theta[0] if p == -2 else x[p])
        u[e] = s * theta[t0 + e] - effect_located[e] * weights[e] * m
        x[e] = m + u[e]


@_jit
def _censored_cell(family, eta, n, lo, hi, alpha, lgamma_alpha):
    """log sum_{k=lo..hi} P(k | eta) with d/d eta and d/d alpha (weights by enumeration)."""
    if family == 0:
        sp, sig = _softplus_sigmoid(eta)
        top = min(hi, n)
        # log P(k) = lchoose(n, k) + k eta - n softplus(eta)
        m = -np.inf
        k = lo
        while k <= top:
            v = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * eta
            if v > m:
                m = v
            k += 1.0
        total = 0.0
        mean_k = 0.0
        k = lo
        while k <= top:
            v = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * eta
            e = math.exp(v - m)
            total += e
            mean_k += k * e
            k += 1.0
        return m + math.log(total) - n * sp, mean_k / total - n * sig, 0.0
    mu = n * math.exp(eta)
    if family == 1:
        m = -np.inf
        k = lo
        while k <= hi:
            v = k * math.log(mu) - math.lgamma(k + 1)
            if v > m:
                m = v
            k += 1.0
        total = 0.0
        mean_k = 0.0
        k = lo
        while k <= hi:
            e = math.exp(k * math.log(mu) - math.lgamma(k + 1) - m)
            total += e
            mean_k += k * e
            k += 1.0
        return m + math.log(total) - mu, mean_k / total - mu, 0.0
    # negative binomial (mean mu, shape alpha)
    log_am = math.log(alpha + mu)
    log_mu = math.log(mu)
    m = -np.inf
    k = lo
    while k <= hi:
        v = (math.lgamma(k + alpha) - lgamma_alpha - math.lgamma(k + 1)
             - (alpha + k) * log_am + k * log_mu)
        if v > m:
            m = v
        k += 1.0
    total = 0.0
    d_eta = 0.0
    d_alpha = 0.0
    # digamma(k + alpha) - digamma(alpha) = sum_{j < k} 1 / (alpha + j), built up as k grows
    psi = 0.0
    j = 0.0
    while j < lo:
        psi += 1.0 / (alpha + j)
        j += 1.0
    k = lo
    while k <= hi:
        v = (math.lgamma(k + alpha) - lgamma_alpha - math.lgamma(k + 1)
             - (alpha + k) * log_am + k * log_mu)
        e = math.exp(v - m)
        total += e
        d_eta += e * (k - (alpha + k) * mu / (alpha + mu))
        d_alpha += e * (psi + math.log(alpha) + 1.0 - log_am - (alpha + k) / (alpha + mu))
        psi += 1.0 / (alpha + k)
        k += 1.0
    lp = m + math.log(total) + alpha * math.log(alpha)
    return lp, d_eta / total, d_alpha / total


#: Compiler flags of the vectorised binomial pass: reassociation lets the sum over cells
#: run in SIMD lanes (the sum's rounding then differs from the scalar loop's by about 1e-16
#: relative), contraction fuses the polynomial's multiply-adds.
_vector = numba.njit(nogil=True, cache=True, error_model="numpy",
                     fastmath={"reassoc", "contract"})


@_vector
def _binomial_pass(w, eta, trials, events):
    """``-sum n log(1 + w)`` over cells, with ``w = exp(eta)``; ``w`` is overwritten by each
    cell's derivative ``y - n w / (1 + w)``.

    ``log(1 + w) = 2 atanh(w / (2 + w))`` for ``w <= 1`` and ``eta + 2 atanh(1 / (2 w + 1))``
    above, so the atanh argument is at most 1/3 and its series ``atanh t = t sum_k
    t^(2k) / (2k + 1)``, 18 terms, is exact to the last bit (truncation below 1e-18; at
    most 5e-16 relative from rounding, checked against ``log1p`` in the tests). Unlike
    ``math.log`` the loop has no call, so the compiler runs it in SIMD lanes: 2 to 3 times
    faster than the scalar loop on the cells of a national model.
    """
    lp = 0.0
    for c in range(w.shape[0]):
        x = w[c]
        small = x <= 1.0
        t = x / (2.0 + x) if small else 1.0 / (2.0 * x + 1.0)
        t2 = t * t
        p = (((((((((((((((((0.02857142857142857) * t2 + 0.030303030303030304) * t2 + 0.03225806451612903) * t2 + 0.034482758620689655) * t2 + 0.037037037037037035) * t2 + 0.04) * t2 + 0.043478260869565216) * t2 + 0.047619047619047616) * t2 + 0.05263157894736842) * t2 + 0.058823529411764705) * t2 + 0.06666666666666667) * t2 + 0.07692307692307693) * t2 + 0.09090909090909091) * t2 + 0.1111111111111111) * t2 + 0.14285714285714285) * t2 + 0.2) * t2 + 0.3333333333333333) * t2 + 1.0
        n = trials[c]
        lp -= n * (2.0 * t * p + (0.0 if small else eta[c]))
        w[c] = events[c] - n * x / (1.0 + x)
    return lp


def log1p_exp(eta: np.ndarray) -> np.ndarray:
    """``log(1 + exp(eta))`` by the series of :func:`_binomial_pass` (for tests and checks).

    Examples
    --------
    >>> import numpy as np
    >>> eta = np.array([-30.0, -2.0, 0.0, 3.0, 30.0])
    >>> bool(np.allclose(log1p_exp(eta), np.logaddexp(0.0, eta), rtol=1e-15, atol=0))
    True
    """
    eta = np.ascontiguousarray(eta, dtype=np.float64)
    w = np.exp(eta)
    out = np.empty_like(eta)
    ones, zeros = np.ones(1), np.zeros(1)
    for i in range(eta.size):  # one cell at a time: each value on its own
        out[i] = -_binomial_pass(w[i : i + 1], eta[i : i + 1], ones, zeros)
    return out


@_jit
def _observed_by_unit(xb, u, family, alpha, unit_levels, unit_start, pattern, trials, events,
                      gxb, gu):
    """Observed cells grouped by unit (a combination of group levels), sorted by unit.

    ``exp(eta)`` of a cell is ``exp(xb[pattern]) * exp(sum of its unit's effects)``, both
    computed once per pattern and per unit. Returns the non-linear part of the
    log-likelihood (the part linear in eta, sum y eta, comes from the events by pattern and
    by effect), d/d alpha, and False (doing nothing) when a value is too extreme for the
    products to be exact.
    """
    n_patterns = xb.shape[0]
    n_units = unit_start.shape[0] - 1
    top = -np.inf
    for q in range(n_patterns):
        top = max(top, abs(xb[q]))
    unit_sum = np.empty(n_units)
    unit_top = 0.0
    for k in range(n_units):
        acc = 0.0
        for g in range(unit_levels.shape[0]):
            acc += u[unit_levels[g, k]]
        unit_top = max(unit_top, abs(acc))
        unit_sum[k] = acc
    if top + unit_top > 600.0 or not np.isfinite(top + unit_top):
        return 0.0, 0.0, False
    pattern_exp = np.empty(n_patterns)
    for q in range(n_patterns):
        pattern_exp[q] = math.exp(xb[q])
    lp = 0.0
    g_alpha = 0.0
    if family == 0:  # binomial: per unit, gather, one vectorised pass, scatter
        largest = 0
        for k in range(n_units):
            largest = max(largest, unit_start[k + 1] - unit_start[k])
        # small buffers (one unit's cells): a buffer of every cell would be fresh memory,
        # page-faulted in on every call, and cost more than the pass itself
        w = np.empty(largest)
        eta = np.empty(largest)
        for k in range(n_units):
            a, b = unit_start[k], unit_start[k + 1]
            f = math.exp(unit_sum[k])
            s = unit_sum[k]
            for c in range(a, b):
                q = pattern[c]
                w[c - a] = pattern_exp[q] * f
                eta[c - a] = xb[q] + s
            lp += _binomial_pass(w[: b - a], eta[: b - a], trials[a:b], events[a:b])
            r_unit = 0.0
            for c in range(a, b):
                gxb[pattern[c]] += w[c - a]
                r_unit += w[c - a]
            for g in range(unit_levels.shape[0]):
                gu[unit_levels[g, k]] += r_unit
        return lp, 0.0, True
    for k in range(n_units):
        f = math.exp(unit_sum[k])
        r_unit = 0.0
        for c in range(unit_start[k], unit_start[k + 1]):
            q = pattern[c]
            w = pattern_exp[q] * f
            n = trials[c]
            if family == 0:
                b = 1.0 + w
                lp -= n * math.log(b)
                r = events[c] - n * w / b
            elif family == 1:
                mu = n * w
                lp -= mu
                r = events[c] - mu
            else:
                mu = n * w
                b = alpha + mu
                log_b = math.log(b)
                ay = alpha + events[c]
                lp -= ay * log_b
                r = events[c] - ay * mu / b
                g_alpha -= log_b + ay / b
            gxb[q] += r
            r_unit += r
        for g in range(unit_levels.shape[0]):
            gu[unit_levels[g, k]] += r_unit
    return lp, g_alpha, True


@_jit
def _logp_grad(theta, grad, Z, fixed_mu, fixed_sd, sd_scale, effect_sd_index, weights,
                  n_fixed, n_sd, n_effects, has_alpha, alpha_shape, alpha_rate, family,
                  pattern, group_index, slope_index, slope_weight, slope_width, trials,
                  events, c_pattern, c_group_index, c_slope_index, c_trials, c_lo, c_hi,
                  count_tail, constant, unit_levels, unit_start, events_by_pattern,
                  events_by_effect, effect_parent, effect_order, effect_located):
    n_patterns = Z.shape[0]
    t0 = n_fixed + n_sd
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    # fixed part of the predictor, per pattern
    xb = np.zeros(n_patterns)
    for q in range(n_patterns):
        acc = 0.0
        for j in range(n_fixed):
            acc += Z[q, j] * theta[j]
        xb[q] = acc
    # effects u = sd^(1 - w) t - w m
    u = np.empty(n_effects)
    x = np.empty(n_effects)
    scale = np.empty(n_effects)
    _effects_forward(theta, n_fixed, t0, effect_sd_index, weights, effect_parent,
                     effect_order, effect_located, u, x, scale)
    alpha = 1.0
    lgamma_alpha = 0.0
    if has_alpha:
        alpha = math.exp(theta[t0 + n_effects])
        lgamma_alpha = math.lgamma(alpha)
    gxb = np.zeros(n_patterns)
    gu = np.zeros(n_effects)
    lp = constant
    g_alpha = 0.0
    # observed cells: by units (one pass, no per-cell exp) unless a value is extreme
    done = False
    if unit_start.shape[0] > 0:
        v, ga, done = _observed_by_unit(xb, u, family, alpha, unit_levels, unit_start,
                                        pattern, trials, events, gxb, gu)
        if done:
            lp += v
            g_alpha += ga
            for q in range(n_patterns):
                lp += events_by_pattern[q] * xb[q]
            for e in range(n_effects):
                lp += events_by_effect[e] * u[e]
        else:
            for q in range(n_patterns):
                gxb[q] = 0.0
            for e in range(n_effects):
                gu[e] = 0.0
    if not done:
        for c in range(trials.shape[0]):
            eta = _predictor(c, xb, u, pattern, group_index, slope_index, slope_weight,
                             slope_width)
            n = trials[c]
            y = events[c]
            if family == 0:
                sp, sig = _softplus_sigmoid(eta)
                lp += y * eta - n * sp
                r = y - n * sig
            elif family == 1:
                mu = n * math.exp(eta)
                lp += y * eta - mu
                r = y - mu
            else:
                mu = n * math.exp(eta)
                log_am = math.log(alpha + mu)
                lp += y * eta - (alpha + y) * log_am
                r = y - (alpha + y) * mu / (alpha + mu)
                g_alpha += -log_am - (alpha + y) / (alpha + mu)
            _scatter(c, r, gxb, gu, pattern, group_index, slope_index, slope_weight, slope_width)
    if family == 2:
        n_obs = trials.shape[0]
        lp += n_obs * alpha * math.log(alpha)
        g_alpha += n_obs * (math.log(alpha) + 1.0)
        for k in range(count_tail.shape[0]):
            lp += count_tail[k] * math.log(alpha + k)
            g_alpha += count_tail[k] / (alpha + k)
    # censored cells
    for c in range(c_trials.shape[0]):
        eta = _predictor(c, xb, u, c_pattern, c_group_index, c_slope_index, slope_weight,
                         slope_width)
        v, r, ga = _censored_cell(family, eta, c_trials[c], c_lo[c], c_hi[c], alpha,
                                  lgamma_alpha)
        lp += v
        g_alpha += ga
        _scatter(c, r, gxb, gu, c_pattern, c_group_index, c_slope_index, slope_weight,
                 slope_width)
    # chain rule to theta: fixed effects
    for j in range(n_fixed):
        acc = 0.0
        for q in range(n_patterns):
            acc += Z[q, j] * gxb[q]
        d = theta[j] - fixed_mu[j]
        s2 = fixed_sd[j] * fixed_sd[j]
        lp += -0.5 * d * d / s2 - math.log(fixed_sd[j]) - _HALF_LOG_2PI
        grad[j] = acc - d / s2
    # effects and their SDs: u ~ Normal(0, sd) with the Jacobian sd^(1 - w) of t -> u, i.e.
    # t ~ Normal(w m / sd^(1 - w), sd^w); reverse mode through the parents (children first):
    # xbar is d lp / d x (x = m + u, the centred value), passed on to each parent's x
    xbar = np.zeros(n_effects)
    abar = 0.0
    for i in range(n_effects - 1, -1, -1):
        e = effect_order[i]
        k = effect_sd_index[e]
        w = weights[e]
        log_sd = theta[n_fixed + k]
        inv_sd2 = math.exp(-2.0 * log_sd)
        ue = u[e]
        lp += -0.5 * ue * ue * inv_sd2 - w * log_sd - _HALF_LOG_2PI
        d_u = gu[e] - ue * inv_sd2
        total = d_u + xbar[e]
        grad[t0 + e] = scale[e] * total
        grad[n_fixed + k] += ((1.0 - w) * scale[e] * theta[t0 + e] * total
                              + ue * ue * inv_sd2 - w)
        p = effect_parent[e]
        if p != -1:
            lw = effect_located[e] * w
            m_bar = (1.0 - lw) * xbar[e] - lw * d_u
            if p == -2:
                abar += m_bar
            else:
                xbar[p] += m_bar
    if n_effects > 0:
        grad[0] += abar
    # SDs: HalfNormal(sd_scale) with the Jacobian of sd = exp(log_sd)
    for k in range(n_sd):
        log_sd = theta[n_fixed + k]
        sd = math.exp(log_sd)
        s = sd_scale[k]
        lp += _LOG_2 - _HALF_LOG_2PI - math.log(s) - 0.5 * sd * sd / (s * s) + log_sd
        grad[n_fixed + k] += 1.0 - sd * sd / (s * s)
    if has_alpha:
        # Gamma(shape, rate) with the Jacobian of alpha = exp(log_alpha)
        lp += (alpha_shape * math.log(alpha_rate) - math.lgamma(alpha_shape)
               + alpha_shape * math.log(alpha) - alpha_rate * alpha)
        grad[t0 + n_effects] = alpha * g_alpha + alpha_shape - alpha_rate * alpha
    return lp


@_jit
def _information(theta, info, Z, fixed_mu, fixed_sd, sd_scale, effect_sd_index, weights,
                    n_fixed, n_sd, n_effects, has_alpha, alpha_shape, alpha_rate, family,
                    pattern, group_index, slope_index, slope_weight, slope_width, trials,
                    events, c_pattern, c_group_index, c_slope_index, c_trials, c_lo, c_hi,
                    count_tail, constant, unit_levels, unit_start, events_by_pattern,
                    events_by_effect, effect_parent, effect_order, effect_located):
    n_patterns = Z.shape[0]
    t0 = n_fixed + n_sd
    xb = np.zeros(n_patterns)
    for q in range(n_patterns):
        for j in range(n_fixed):
            xb[q] += Z[q, j] * theta[j]
    u, x, scale = np.empty(n_effects), np.empty(n_effects), np.empty(n_effects)
    _effects_forward(theta, n_fixed, t0, effect_sd_index, weights, effect_parent,
                     effect_order, effect_located, u, x, scale)
    alpha = math.exp(theta[t0 + n_effects]) if has_alpha else 1.0
    dummy = np.zeros(n_patterns)
    for c in range(trials.shape[0]):
        eta = _predictor(c, xb, u, pattern, group_index, slope_index, slope_weight,
                         slope_width)
        n = trials[c]
        if family == 0:
            sp, sig = _softplus_sigmoid(eta)
            h = n * sig * (1.0 - sig)
        elif family == 1:
            h = n * math.exp(eta)
        else:
            mu = n * math.exp(eta)
            h = mu * alpha / (alpha + mu)
        _scatter(c, h, dummy, info, pattern, group_index, slope_index, slope_weight,
                 slope_width)
    return 0.0


@_jit
def _pointwise(thetas, out, order, c_order, log_constant, Z, fixed_mu, fixed_sd,
                  sd_scale, effect_sd_index, weights, n_fixed, n_sd, n_effects, has_alpha,
                  alpha_shape, alpha_rate, family, pattern, group_index, slope_index,
                  slope_weight, slope_width, trials, events, c_pattern, c_group_index,
                  c_slope_index, c_trials, c_lo, c_hi, count_tail, constant, unit_levels,
                  unit_start, events_by_pattern, events_by_effect, effect_parent,
                  effect_order, effect_located):
    n_patterns = Z.shape[0]
    t0 = n_fixed + n_sd
    xb = np.zeros(n_patterns)
    u, x, scale = np.empty(n_effects), np.empty(n_effects), np.empty(n_effects)
    for d in range(thetas.shape[0]):
        theta = thetas[d]
        for q in range(n_patterns):
            acc = 0.0
            for j in range(n_fixed):
                acc += Z[q, j] * theta[j]
            xb[q] = acc
        _effects_forward(theta, n_fixed, t0, effect_sd_index, weights, effect_parent,
                         effect_order, effect_located, u, x, scale)
        alpha = math.exp(theta[t0 + n_effects]) if has_alpha else 1.0
        lgamma_alpha = math.lgamma(alpha) if has_alpha else 0.0
        for c in range(trials.shape[0]):
            eta = _predictor(c, xb, u, pattern, group_index, slope_index, slope_weight,
                             slope_width)
            n = trials[c]
            y = events[c]
            if family == 0:
                sp, sig = _softplus_sigmoid(eta)
                v = y * eta - n * sp
            elif family == 1:
                v = y * eta - n * math.exp(eta)
            else:
                mu = n * math.exp(eta)
                v = (y * eta - (alpha + y) * math.log(alpha + mu) + alpha * math.log(alpha)
                     + math.lgamma(y + alpha) - lgamma_alpha)
            out[d, order[c]] = v + log_constant[c]
        for c in range(c_trials.shape[0]):
            eta = _predictor(c, xb, u, c_pattern, c_group_index, c_slope_index,
                             slope_weight, slope_width)
            v, r, ga = _censored_cell(family, eta, c_trials[c], c_lo[c], c_hi[c], alpha,
                                      lgamma_alpha)
            out[d, c_order[c]] = v
    return 0.0


