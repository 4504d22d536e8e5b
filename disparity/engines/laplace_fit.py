"""Maximising the Laplace log-likelihood of :class:`~disparity.engines.laplace.LaplaceGLMM`.

Parameters ``t = (beta, sigma, log alpha)`` (``sigma`` the random-effect SDs, free in sign:
the objective is even in each ``sigma_c``, so a zero variance is an interior stationary
point and needs no bound; the SD is ``|sigma_c|``).

1. **Start**: ``beta`` from the pooled GLM of the covariate patterns, every SD 0.5, the
   negative-binomial shape 2.
2. **Whitening**: the curvature at the start, ``beta`` block from the conditional
   information ``X'WX - X'WV H^-1 V'WX`` and the ``sigma`` (and shape) columns by central
   differences of the exact gradient, gives ``t = t0 + L z`` with ``L L' ~ H^-1``. In ``z`` a
   unit is about one standard error, so BFGS starts with a good inverse Hessian and its
   gradient tolerance reads in standard errors.
3. **BFGS** (scipy) on ``z`` with the exact gradient.
4. **Curvature at the optimum** for standard errors: ``"hessian"`` is the Jacobian of the
   exact gradient by central differences in ``z`` (2 P gradient evaluations, each
   re-solving the modes from the optimum in one or two Newton steps), as TMB's
   ``sdreport`` differentiates its automatic gradient; ``"conditional"`` inverts the
   conditional information for ``beta`` and uses differences of the gradient only along
   the variance parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize as sopt

from disparity.engines.laplace import LaplaceGLMM, NotPositiveDefinite

#: Step of the central differences of the gradient, in whitened units (standard errors),
#: for the Hessian (with Richardson extrapolation from ``FD_STEP`` and ``2 FD_STEP``).
FD_STEP = 1e-2


@dataclass
class LaplaceResult:
    beta: np.ndarray
    sigma: np.ndarray          # signed; the SDs are abs(sigma)
    alpha: float | None
    log_likelihood: float
    hessian: np.ndarray        # in t = (beta, sigma, log alpha), active parameters only
    active: np.ndarray         # indices of t in the Hessian
    converged_optimizer: bool
    iterations: int
    evaluations: int
    message: str
    scaled_gradient: np.ndarray
    polish_steps: int = 0      # Newton steps taken after BFGS (:func:`_newton_polish`)
    seconds: dict = field(default_factory=dict)


def _glm_start(model: LaplaceGLMM) -> np.ndarray:
    """Pooled GLM (no random effects) by Newton on covariate patterns."""
    st, cells = model.st, model.cells
    y = np.bincount(st.pattern, weights=cells.events, minlength=st.n_patterns)
    n = np.bincount(st.pattern, weights=cells.trials, minlength=st.n_patterns)
    X = st.rows
    binomial = model.family == "binomial"
    rate = (y.sum() + 0.5) / (n.sum() + 1.0)
    beta = np.zeros(st.p)
    beta[0] = np.log(rate / (1 - rate)) if binomial else np.log(rate)
    if not np.allclose(X[:, 0], 1.0):
        beta[:] = 0.0
    for _ in range(30):
        eta = X @ beta
        if binomial:
            mu = n / (1 + np.exp(-eta))
            w = mu * (1 - mu / np.maximum(n, 1e-300))
        else:
            mu = n * np.exp(eta)
            w = mu
        info = X.T @ ((w + 1e-8 * n)[:, None] * X) + 1e-8 * np.eye(st.p)
        step = np.linalg.solve(info, X.T @ (y - mu))
        step = np.clip(step, -5, 5)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


class _Problem:
    def __init__(self, model: LaplaceGLMM, p: int, K: int, nb: bool) -> None:
        self.model, self.p, self.K, self.nb = model, p, K, nb

    def split(self, t: np.ndarray):
        p, K = self.p, self.K
        alpha = float(np.exp(t[p + K])) if self.nb else None
        return t[:p], t[p : p + K], alpha

    def value_grad(self, t: np.ndarray):
        beta, sigma, alpha = self.split(t)
        f, g = self.model.objective(beta, sigma, alpha)
        if self.nb:
            g = g.copy()  # last entry already in log alpha
        return f, g


def _gradient_differences(model: LaplaceGLMM, prob: "_Problem", t0: np.ndarray,
                          directions: np.ndarray, step: float) -> np.ndarray:
    """Central differences of the exact gradient at ``t0`` along ``directions`` (columns).

    The modes at ``t0 +/- step e`` are predicted to first order, ``u_hat +/- step du/dt e``
    (:meth:`LaplaceGLMM.mode_derivative`); their second-order errors are equal at both
    ends and cancel, so the differences are exact to O(step^2) without any Newton
    iteration at the displaced points.
    """
    beta, sigma, alpha = prob.split(t0)
    model.modes(beta, sigma, alpha)
    u_hat = (model.u_big.copy(), model.u_small.copy())
    slopes = [model.mode_derivative(directions[:, j]) for j in range(directions.shape[1])]
    cols = []
    for j, (db, dm) in enumerate(slopes):
        e = step * directions[:, j]
        ends = []
        for sign in (1.0, -1.0):
            model.u_big = u_hat[0] + sign * step * db
            model.u_small = u_hat[1] + sign * step * dm if dm is not None else u_hat[1]
            b, s_, a = prob.split(t0 + sign * e)
            ends.append(model.objective(b, s_, a, newton=False)[1])
        cols.append((ends[0] - ends[1]) / (2.0 * step))
    model.u_big, model.u_small = u_hat
    return np.column_stack(cols) if cols else np.zeros((len(t0), 0))


def fit_laplace(model: LaplaceGLMM, *, nb: bool, maxit: int = 200, gtol: float = 1e-6,
                se_method: str = "hessian", start: np.ndarray | None = None,
                zero_sd: float = 1e-3) -> LaplaceResult:
    """Maximise the Laplace log-likelihood; curvature at the optimum for standard errors.

    BFGS stops within ``gtol`` standard errors of the maximum, at a point that depends on
    its path (and so on the rounding of the machine). Newton steps from there
    (:func:`_newton_polish`) go on to the maximum itself, to rounding error, so that the
    estimates and the curvature do not depend on the path: the published digits are the
    same on every machine. An SD below ``zero_sd`` is set to zero (a boundary fit).
    """
    clock = time.perf_counter
    t_start = clock()
    st = model.st
    p, K = st.p, st.K
    P = p + K + (1 if nb else 0)
    prob = _Problem(model, p, K, nb)
    if start is None:
        start = np.concatenate([_glm_start(model), np.full(K, 0.5), [np.log(2.0)] if nb else []])
    t0 = np.asarray(start, dtype=float)

    # -- whitening from the curvature at the start
    L = _whitening(model, prob, t0, p)
    seconds = {"start": clock() - t_start}

    last = {"t": None}

    def fz(z: np.ndarray):
        t = t0 + L @ z
        if last["t"] is not None:  # start Newton from the modes predicted to first order
            db, dm = model.mode_derivative(t - last["t"])
            model.u_big = model.u_big + db
            if dm is not None:
                model.u_small = model.u_small + dm
        try:
            f, g = prob.value_grad(t)
        except NotPositiveDefinite:
            last["t"] = None
            return np.inf, np.zeros_like(z)
        last["t"] = t
        if not np.isfinite(f):
            return np.inf, np.zeros_like(z)
        return f, L.T @ g

    t1 = clock()
    res = sopt.minimize(fz, np.zeros(P), jac=True, method="BFGS",
                        options={"gtol": gtol, "maxiter": int(maxit)})
    seconds["optimise"] = clock() - t1
    t_hat = t0 + L @ res.x

    # -- curvature at the optimum, in t, over the active parameters; an SD below zero_sd is
    # a boundary fit and is set to exactly zero (the objective is even in each sigma, so the
    # gradient along it vanishes there)
    t2 = clock()
    singular = np.abs(t_hat[p : p + K]) < zero_sd
    t_hat[p : p + K][singular] = 0.0
    active = np.array([j for j in range(P) if not (p <= j < p + K and singular[j - p])])
    Lw = _whitening_at(model, prob, t_hat, L, active)

    def curvature(t: np.ndarray, method: str) -> np.ndarray:
        """The curvature at ``t``, where the modes are; they are left there."""
        u_at = (model.u_big.copy(), model.u_small.copy())
        if method == "hessian":
            E = np.zeros((P, len(active)))
            E[active] = Lw
            # Richardson: (4 D(h) - D(2h)) / 3 cancels the h^2 error of central differences,
            # so h can be large enough for rounding in the gradient to stay below 1e-10
            near = _gradient_differences(model, prob, t, E, FD_STEP)
            far = _gradient_differences(model, prob, t, E, 2.0 * FD_STEP)
            J = ((4.0 * near - far) / 3.0)[active]  # = H Lw
            H = J @ np.linalg.inv(Lw)
        else:
            H = _hybrid_hessian(model, prob, t, active, p, u_at)
        model.u_big, model.u_small = u_at
        return (H + H.T) / 2.0

    f_hat, g_hat = prob.value_grad(t_hat)  # the modes at t_hat
    t_hat, f_hat, g_hat, polish_steps = _newton_polish(
        prob, t_hat, f_hat, g_hat, active, curvature(t_hat, "conditional"))
    seconds["polish"] = clock() - t2
    t2 = clock()
    u_hat = (model.u_big.copy(), model.u_small.copy())
    beta, sigma, alpha = prob.split(t_hat)
    H = curvature(t_hat, se_method)
    seconds["curvature"] = clock() - t2
    model.u_big, model.u_small = u_hat
    # scaled gradient: |g_j| * se_j from the final curvature
    try:
        cov = np.linalg.inv(H)
        se = np.sqrt(np.abs(np.diag(cov)))
    except np.linalg.LinAlgError:
        se = np.full(len(active), np.nan)
    scaled = np.abs(g_hat[active]) * se
    return LaplaceResult(
        beta=beta, sigma=sigma, alpha=alpha, log_likelihood=-f_hat, hessian=H, active=active,
        converged_optimizer=bool(res.success), iterations=int(res.nit),
        polish_steps=polish_steps,
        evaluations=int(model.evaluations), message=str(res.message), scaled_gradient=scaled,
        seconds=seconds,
    )


#: Newton steps after BFGS: at most this many, and none once a step is below
#: ``POLISH_TOL`` standard errors (rounding error of the gradient).
POLISH_STEPS = 8
POLISH_TOL = 1e-11


def _newton_polish(prob: "_Problem", t: np.ndarray, f: float, g: np.ndarray,
                   active: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, float, np.ndarray,
                                                              int]:
    """Newton steps ``t - H^-1 g`` over the ``active`` parameters with a fixed curvature.

    From a BFGS estimate within about ``1e-6`` standard errors of the maximum, each step
    shrinks the distance by the relative error of ``H`` (about ``1e-2`` for the
    conditional curvature), so a few steps reach the maximum to the rounding error of the
    gradient. A step is kept only if it lowers the objective (within rounding) and the
    gradient; the loop stops when a step is below ``POLISH_TOL`` standard errors. ``f`` and
    ``g`` are the objective and gradient at ``t``, where the modes are. Returns the point,
    its objective and gradient, and the number of steps kept, with the modes at the point.

    Examples
    --------
    A quadratic objective is solved in one step:

    >>> class Quadratic:
    ...     def value_grad(self, t):
    ...         r = t - np.array([1.0, -2.0])
    ...         return 0.5 * float(r @ r), r
    >>> t0 = np.array([1.001, -2.002])
    >>> t, f, g, steps = _newton_polish(Quadratic(), t0, *Quadratic().value_grad(t0),
    ...                                 np.arange(2), np.eye(2))
    >>> t.tolist(), f, steps
    ([1.0, -2.0], 0.0, 1)
    """
    try:
        chol = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return t, f, g, 0  # not at a maximum: nothing to polish (the convergence check says)
    se = np.sqrt(np.diag(np.linalg.inv(H)))
    steps = 0
    moved = False  # whether the modes were last left at a rejected candidate
    for _ in range(POLISH_STEPS):
        ga = g[active]
        step = np.linalg.solve(chol.T, np.linalg.solve(chol, ga))
        size = float(np.max(np.abs(step) / se)) if step.size else 0.0
        if not np.isfinite(size) or size > 1.0:
            break  # far from the maximum: leave it to the convergence check
        candidate = t.copy()
        candidate[active] -= step
        moved = True
        try:
            f_new, g_new = prob.value_grad(candidate)
        except NotPositiveDefinite:
            break
        if not (f_new <= f + 1e-12 * max(1.0, abs(f))
                and np.linalg.norm(g_new[active] * se) < np.linalg.norm(ga * se)):
            break  # at rounding error: this step no longer improves anything
        t, f, g, moved = candidate, f_new, g_new, False
        steps += 1
        if size < POLISH_TOL:
            break
    if moved:
        f, g = prob.value_grad(t)  # the modes back at the returned point
    return t, f, g, steps


def _embed(t_full: np.ndarray, active: np.ndarray, t_active: np.ndarray) -> np.ndarray:
    t = t_full.copy()
    t[active] = t_active
    return t


def _whitening(model, prob, t0, p) -> np.ndarray:
    """``L`` with ``L L'`` an approximate inverse Hessian at ``t0``."""
    beta, sigma, alpha = prob.split(t0)
    eta, der, F, joint, vb, vm = model.modes(beta, sigma, alpha)
    info = model.conditional_information(F, -der.d2, vb, vm)
    P = len(t0)
    H = np.zeros((P, P))
    H[:p, :p] = info
    var_idx = np.arange(p, P)
    E = np.zeros((P, len(var_idx)))
    E[var_idx, np.arange(len(var_idx))] = 1.0
    cols = _gradient_differences(model, prob, t0, E, 1e-4)
    H[:, var_idx] = cols
    H[var_idx, :] = cols.T
    return _inverse_root((H + H.T) / 2.0)


def _inverse_root(H: np.ndarray) -> np.ndarray:
    """``L`` with ``L L' = H^-1`` (eigenvalues floored so that it always exists)."""
    vals, vecs = np.linalg.eigh(H)
    top = max(float(np.max(np.abs(vals))), 1e-12)
    vals = np.maximum(np.abs(vals), 1e-8 * top)
    return vecs / np.sqrt(vals)


def _whitening_at(model, prob, t_hat, L, active) -> np.ndarray:
    """Directions for differences at the optimum: the BFGS whitening restricted to ``active``."""
    sub = L[np.ix_(active, active)]
    # a restricted L may be rank-deficient: fall back to a diagonal scale
    if np.linalg.matrix_rank(sub) < len(active):
        sub = np.diag(np.sqrt(np.maximum(np.sum(L[active] ** 2, axis=1), 1e-12)))
    return sub


def _hybrid_hessian(model, prob, t_hat, active, p, u_hat) -> np.ndarray:
    """Conditional information for beta; gradient differences along the variance parameters."""
    beta, sigma, alpha = prob.split(t_hat)
    model.u_big, model.u_small = u_hat[0].copy(), u_hat[1].copy()
    eta, der, F, joint, vb, vm = model.modes(beta, sigma, alpha)
    info = model.conditional_information(F, -der.d2, vb, vm)
    n_act = len(active)
    H = np.zeros((n_act, n_act))
    H[:p, :p] = info
    var_pos = np.arange(p, n_act)
    if len(var_pos):
        E = np.zeros((len(t_hat), len(var_pos)))
        E[active[var_pos], np.arange(len(var_pos))] = 1.0
        cols = _gradient_differences(model, prob, t_hat, E, 1e-4)[active]
        H[:, var_pos] = cols
        H[var_pos, :] = cols.T
    return H


def fit_quadrature(quad, laplace: LaplaceResult, *, maxit: int = 200,
                   gtol: float = 1e-6, rounds: int = 30) -> LaplaceResult:
    """Refine a Laplace fit of a nested random-intercept model by adaptive quadrature.

    ``quad`` is a :class:`~disparity.engines.quadrature.NestedQuadrature`. Each round places
    the nodes at the current estimate and maximises the fixed-node rule by BFGS (exact
    gradient), in coordinates whitened by the Laplace Hessian, from the Laplace estimate at
    first; rounds stop when the estimate moves less than 1e-4 standard errors. The Hessian
    at the optimum is the Jacobian of the fixed-node gradient by central differences.
    """
    clock = time.perf_counter
    t_start = clock()
    p = len(laplace.beta)
    t = np.concatenate([laplace.beta, np.abs(laplace.sigma)])
    P = len(t)
    full_H = np.zeros((P, P))
    act = laplace.active
    full_H[np.ix_(act, act)] = laplace.hessian
    for j in range(P):  # a singular SD gets a unit curvature to start from
        if j not in act:
            full_H[j, j] = 1.0
    L = _inverse_root(full_H)
    Linv = np.linalg.pinv(L)

    def split(tt: np.ndarray):
        sig = tt[p:]
        return (tt[:p], float(sig[0]), float(sig[1])) if quad.two_level else (
            tt[:p], 0.0, float(sig[0]))

    def value_grad(tt: np.ndarray):
        f, g = quad.objective_fixed(*split(tt))
        return f, (g if quad.two_level else np.concatenate([g[:p], g[p:]]))

    iterations, moved, success, message = 0, np.inf, False, ""
    for _ in range(rounds):
        quad.adapt(*split(t))
        t_round = t.copy()

        def fz(z: np.ndarray):
            f, g = value_grad(t_round + L @ z)
            if not np.isfinite(f):
                return np.inf, np.zeros_like(z)
            return f, L.T @ g

        res = sopt.minimize(fz, np.zeros(P), jac=True, method="BFGS",
                            options={"gtol": gtol, "maxiter": int(maxit)})
        iterations += int(res.nit)
        success, message = bool(res.success), str(res.message)
        t = t_round + L @ res.x
        moved = float(np.max(np.abs(Linv @ (t - t_round))))
        if moved < 1e-4 or iterations >= maxit:
            break
    quad.adapt(*split(t))  # nodes adapted to the estimate: the reported likelihood
    seconds = {"optimise_quadrature": clock() - t_start}
    f_hat, g_hat = value_grad(t)
    t2 = clock()
    active = np.array([j for j in range(P) if j < p or abs(t[j]) >= 1e-3])
    Lw = _whitening_at(None, None, t, L, active)
    cols = []
    for j in range(len(active)):
        e = np.zeros(P)
        e[active] = FD_STEP * Lw[:, j]
        cols.append((value_grad(t + e)[1] - value_grad(t - e)[1])[active] / (2.0 * FD_STEP))
    H = np.column_stack(cols) @ np.linalg.inv(Lw)
    H = (H + H.T) / 2.0
    seconds["curvature_quadrature"] = clock() - t2
    try:
        se = np.sqrt(np.abs(np.diag(np.linalg.inv(H))))
    except np.linalg.LinAlgError:
        se = np.full(len(active), np.nan)
    return LaplaceResult(
        beta=t[:p], sigma=t[p:], alpha=None, log_likelihood=-f_hat, hessian=H,
        active=active, converged_optimizer=success and moved < 1e-4, iterations=iterations,
        evaluations=int(quad.evaluations), message=message,
        scaled_gradient=np.abs(g_hat[active]) * se, seconds=seconds,
    )
