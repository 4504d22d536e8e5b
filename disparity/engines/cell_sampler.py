"""NUTS on the hand-written cell density: starting point, centring, progress, InferenceData.

:func:`sample` runs nutpie's NUTS (Hoffman and Gelman 2014, with nutpie's gradient-based
mass-matrix adaptation) on :class:`~disparity.engines.cell_density.CellDensity`:

1. **Mode.** L-BFGS finds the joint posterior mode in the non-centred coordinates (where it
   exists: the log-SD Jacobian keeps it away from zero). The chains start near it, so
   tuning adapts the step size and mass matrix instead of travelling to the typical set.
2. **Centring.** At the mode, the information the data hold about each group effect
   (``sum n p (1 - p)`` over its cells, for the binomial) and its SD give the partial
   centring weight :func:`~disparity.engines.cell_density.centring_weights`, effect by
   effect: schools with many events are sampled nearly centred, schools with few nearly
   non-centred. A model file's ``noncentered.<term>`` fixes a term to 0 or 1 instead.
3. **Sampling.** nutpie calls the compiled density (numba, releasing the GIL) from its own
   threads, one chain per core.

nutpie, numba and scipy are imported by the functions that use them.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from disparity.engines.cell_density import CellDensity, block_keys, centring_weights

#: How often (seconds) a progress line is printed when standard error is not a terminal.
PROGRESS_EVERY_S: float = 10.0


def posterior_mode(density: CellDensity, design: Any = None, *, rounds: int = 8,
                   max_iterations: int = 500) -> np.ndarray:
    """A starting point: conditional modes of the effects with SDs by Laplace-EM.

    The joint mode of a hierarchical posterior is no estimate of its SDs (in centred
    coordinates it sits at SD = 0, in non-centred ones it inflates them), so the SDs are
    found by EM instead: given the SDs, L-BFGS finds the mode of the fixed effects and
    effects; then each SD becomes the root mean square of its effects' modes plus their
    approximate posterior variances ``1 / (I + 1 / sd^2)``; a few rounds settle it.

    Returns ``theta`` in the non-centred coordinates of ``density`` (weights 0).

    Examples
    --------
    >>> import numpy as np
    >>> from disparity.design import Design
    >>> from disparity.engines.cell_density import build_density
    >>> d = Design(family="poisson", X=np.ones((2, 1)), terms=("Intercept",),
    ...            events=np.array([30.0, 50.0]), trials=np.array([1000.0, 1000.0]))
    >>> mode = posterior_mode(build_density(d, priors={"intercept_sd": 2.5}))
    >>> bool(abs(mode[0] - np.log(0.04)) < 0.01)
    True
    """
    from scipy.optimize import minimize

    flat = density.with_weights(np.zeros(density.n_effects))
    centred = density.with_weights(np.ones(density.n_effects))
    nf, t0 = flat.n_fixed, flat.t_start
    free = np.r_[np.arange(nf), np.arange(t0, flat.n_dim)]
    # start with every effect at 0: in the centred coordinates each level's value is its
    # parent's (the intercept for an LA)
    alpha0 = 1.0 if flat.has_alpha else None
    theta = centred.to_theta(flat.fixed_mu, 0.5 * flat.sd_scale, np.zeros(flat.n_effects),
                             alpha0)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        point = theta.copy()
        point[free] = x
        lp, grad = centred.logp_and_grad(point)
        if not np.isfinite(lp):
            return 1e300, np.zeros_like(x)
        return -lp, -grad[free]

    for _ in range(rounds if flat.n_sd else 1):
        result = minimize(objective, theta[free], jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iterations, "maxcor": 20})
        theta[free] = result.x
        if not flat.n_sd:
            break
        u = centred.effects(theta)  # centred: t is each level's value x = m + u
        sd = np.exp(theta[nf:t0])[flat.effect_sd_index]
        information = centred.cell_information(theta)
        if design is not None:
            information = _through_nested_terms(information, sd, density, design)
        variance = 1.0 / (information + 1.0 / sd**2)
        k = flat.effect_sd_index
        new_sd = np.sqrt(np.bincount(k, weights=u**2 + variance, minlength=flat.n_sd)
                         / np.maximum(np.bincount(k, minlength=flat.n_sd), 1))
        new_sd = np.clip(new_sd, 1e-3, 10.0 * flat.sd_scale)
        change = np.max(np.abs(np.log(new_sd) - theta[nf:t0]))
        theta[nf:t0] = np.log(new_sd)
        if change < 0.01:
            break
    u = centred.effects(theta)
    sd = np.exp(theta[nf:t0])
    alpha = float(np.exp(theta[-1])) if flat.has_alpha else None
    return flat.to_theta(theta[:nf], sd, u, alpha)


def choose_weights(density: CellDensity, mode: np.ndarray, design: Any,
                   noncentered: Mapping[str, bool]) -> np.ndarray:
    """Centring weight of every effect from the information at the (non-centred) mode.

    A term named in ``noncentered`` gets 0 (True: non-centred) or 1 (False: centred) for all
    its effects; the others get :func:`centring_weights` level by level.
    """
    flat = density.with_weights(np.zeros(density.n_effects))
    information = flat.cell_information(mode)
    sd = np.exp(mode[flat.n_fixed : flat.t_start])[flat.effect_sd_index]
    information = _through_nested_terms(information, sd, density, design)
    weights = centring_weights(information, sd)
    for block, key in zip(density.blocks, block_keys(design)):
        if key in noncentered:
            weights[block.start : block.start + block.size] = (
                0.0 if noncentered[key] else 1.0)
    return weights


#: A level of a top term (one nested in no other) whose centring weight is at least this is
#: sampled fully centred, in location too (hierarchical centring on the intercept).
LOCATE_FROM_WEIGHT: float = 0.5


def choose_location(density: CellDensity, weights: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Weights and location flags: levels of top terms that the data pin down are centred
    on the intercept.

    Where a level's weight ``w = I sd^2 / (1 + I sd^2)`` is at least
    :data:`LOCATE_FROM_WEIGHT` (the data say more about it than its prior, ``I sd^2 >= 1``)
    and its term is nested in no other, it is sampled as its value ``a + u`` (``w = 1``,
    located): the sum of such effects then no longer trades against the intercept ``a``.
    Partial centring in location (``0 < w < 1``) was tried and slowed the SDs instead, and
    nested terms (schools on their LA) are left centred in scale only for the same reason.

    Examples
    --------
    >>> import numpy as np
    >>> from disparity.design import Design, GroupTerm
    >>> g = GroupTerm(name="la", columns=("la",), index=np.array([0, 1]), levels=("A", "B"))
    >>> d = Design(family="binomial", X=np.ones((2, 1)), terms=("Intercept",),
    ...            events=np.array([5.0, 9.0]), trials=np.array([100.0, 100.0]), groups=(g,))
    >>> from disparity.engines.cell_density import build_density
    >>> density = build_density(d, priors={"intercept_sd": 2.5, "group_sd": 1.0})
    >>> choose_location(density, np.array([0.8, 0.3]))
    (array([1. , 0.3]), array([1., 0.]))
    """
    weights = np.asarray(weights, dtype=float).copy()
    located = ((density.effect_parent == -2) & (weights >= LOCATE_FROM_WEIGHT)).astype(float)
    weights[located == 1.0] = 1.0
    return weights, located


def _through_nested_terms(information: np.ndarray, sd: np.ndarray, density: CellDensity,
                          design: Any) -> np.ndarray:
    """Information about a parent term's effects (LAs) once its nested term (schools) is in.

    The cells inform ``u_la + u_school``; given the schools, an LA effect sees each school's
    effect as one observation with variance ``sd_school^2 + 1 / I_school``, so its
    information is the sum of the reciprocals over its schools, not its cells' information.
    """
    information = information.copy()
    block = {b.name: b for b in density.blocks}
    by_name = {g.name: g for g in design.groups}
    for child in design.groups:
        parent = by_name.get(child.parent) if child.parent else None
        if parent is None:
            continue
        cb, pb = block[f"effect_{child.name}"], block[f"effect_{parent.name}"]
        child_info = information[cb.start : cb.start + cb.size]
        child_sd = sd[cb.start : cb.start + cb.size]
        parent_of = np.zeros(child.n_levels, dtype=np.int64)
        parent_of[np.asarray(child.index)] = np.asarray(parent.index)
        with np.errstate(divide="ignore"):
            seen = np.where(child_info > 0, 1.0 / (child_sd**2 + 1.0 / child_info), 0.0)
        information[pb.start : pb.start + pb.size] = np.bincount(
            parent_of, weights=seen, minlength=parent.n_levels)
    return information


def sample(
    density: CellDensity,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    seed: int,
    target_accept: float,
    start: np.ndarray,
    coords: Mapping[str, Any],
    dims: Mapping[str, tuple[str, ...]],
    progress: bool,
    nuts_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Draw from ``density`` with nutpie's NUTS; returns ArviZ InferenceData (posterior,
    sample_stats) whose variables are those of :meth:`CellDensity.expand`.

    ``start`` is a point in ``density``'s coordinates; chain ``c`` starts there, moved by a
    seeded jitter of 0.1 in each coordinate.
    """
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc

    example = density.expand(start)
    names = list(example)
    shapes = [tuple(np.shape(v)) for v in example.values()]
    counter = _DrawCounter(chains * (tune + draws))

    def make_logp_fn():
        def logp(x, **_):
            return density.logp_and_grad(x)

        return logp

    def make_expand_fn(seed1, seed2, chain):
        def expand(x, **_):
            counter.add()
            return density.expand(x)

        return expand

    def make_initial_point(chain_seed):
        rng = np.random.default_rng([int(seed), int(chain_seed) % (2**32)])
        return start + rng.uniform(-0.1, 0.1, size=start.shape)

    model = from_pyfunc(
        density.n_dim,
        make_logp_fn,
        make_expand_fn,
        [np.dtype("float64")] * len(names),
        shapes,
        names,
        coords={k: list(v) for k, v in coords.items()},
        dims={k: tuple(v) for k, v in dims.items() if k in names},
        make_initial_point_fn=make_initial_point,
    )
    kwargs = {"save_warmup": False, **dict(nuts_kwargs or {})}
    reporter = _Progress(counter, enabled=progress)
    # The progress thread only reads the counter: asking nutpie whether it has finished
    # holds the GIL long enough to stall the chains' callbacks, so the main thread blocks
    # in nutpie (which releases the GIL) instead.
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(0.5):
            reporter.update()

    thread = threading.Thread(target=report, name="pymc-progress", daemon=True)
    thread.start()
    try:
        return nutpie.sample(
            model, draws=draws, tune=tune, chains=chains, cores=max(1, min(cores, chains)),
            seed=int(seed), target_accept=float(target_accept), init_mean=start,
            progress_bar=False, **kwargs,
        )
    finally:
        stop.set()
        thread.join()
        reporter.close()


class _DrawCounter:
    """Counts draws (tuning included) as nutpie expands them, from its worker threads."""

    def __init__(self, total: int) -> None:
        self.total = int(total)
        self.done = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.done += 1


class _Progress:
    """A tqdm bar on a terminal; otherwise a line every :data:`PROGRESS_EVERY_S` seconds."""

    def __init__(self, counter: _DrawCounter, *, enabled: bool) -> None:
        self.counter = counter
        self.enabled = enabled
        self.start = time.perf_counter()
        self.last_line = self.start
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=counter.total, desc="pymc: sampling", unit="draw",
                            file=sys.stderr)

    def update(self) -> None:
        if not self.enabled:
            return
        done = min(self.counter.done, self.counter.total)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        now = time.perf_counter()
        if now - self.last_line >= PROGRESS_EVERY_S:
            self.last_line = now
            print(self.line(done, now - self.start), file=sys.stderr, flush=True)

    def line(self, done: int, elapsed: float) -> str:
        """One progress line, e.g. ``pymc: 1,200 of 8,000 draws (15%), 32 s, about 3 min left``."""
        total = max(self.counter.total, 1)
        share = done / total
        left = elapsed * (1 - share) / share if share > 0 else math.nan
        eta = "" if not np.isfinite(left) else f", about {_duration(left)} left"
        return (f"pymc: {done:,} of {total:,} draws ({100 * share:.0f}%, tuning included), "
                f"{_duration(elapsed)}{eta}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.counter.total - self.bar.n)
            self.bar.close()
        elif self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"pymc: sampled {self.counter.total:,} draws in {_duration(elapsed)}",
                  file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1 h 5 min``.

    Examples
    --------
    >>> _duration(42.4), _duration(185), _duration(3900)
    ('42 s', '3 min', '1 h 5 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
