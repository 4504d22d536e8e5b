"""The Laplace-approximate marginal likelihood of a GLMM on cells, with its exact gradient.

The model: cell ``i`` has linear predictor

    eta_i = x_i' beta + sum_c sigma_c z_ic u_{c, level_c(i)},     u ~ N(0, I)

(spherical random effects ``u``; ``z_ic`` is 1 for an intercept, the covariate for a
varying slope; ``b = sigma u``). With ``l_i`` the log-likelihood of cell ``i``
(:mod:`disparity.engines.cell_likelihood`), ``u_hat`` the conditional mode and
``H = I + V' W V`` (``V = Z Lambda``, ``W = -l''`` at the mode) the negative log of the
Laplace approximation is

    f(beta, sigma, alpha) = -sum_i l_i(eta_i) + |u_hat|^2 / 2 + log det H / 2,

the objective of ``lme4::glmer`` (``nAGQ = 1``) and ``glmmTMB`` [1]_ [2]_.

Structure that makes it O(cells)
--------------------------------
Each cell touches one level of every group term. Order the random effects as the *big*
term (the group term with most levels, e.g. school, with its slopes) and the *small* rest
(LA, trust, their slopes: ``m`` effects in all). ``H`` is then

    [ D   C ]     D block-diagonal (one r x r block per school, r = effects per school),
    [ C'  B ]     C sparse (each school links to the few small effects its cells touch),

so ``H`` is factorised exactly by the Schur complement ``S = B - C' D^-1 C`` (dense,
``m x m``): ``log det H = sum log det D_s + log det S``. For nested ``la/school`` this is
the arrow-shaped matrix of a two-level model; crossed terms (trust) only widen ``S``.

Gradient
--------
By the envelope theorem only ``log det H`` needs the implicit derivative of ``u_hat``
(``d u_hat / dt = H^-1 dg/dt``, ``g = V' l' - u``). With ``d_i = v_i' H^-1 v_i`` (the
diagonal of ``V H^-1 V'``, from the block inverse), ``a_i = -l'''_i d_i / 2``,
``s = H^-1 V' a`` and ``delta = V s``, the gradient in ``beta`` is
``X' (-l' + a - W delta)`` and in ``sigma_c``
``sum_i [c_i (-l' + a - W delta)_i + z_ic (W_i h_ic + l'_i s_{c,i})]`` with
``c_i = z_ic u_{c,i}`` and ``h_ic`` the cell's own entry of ``H^-1 v_i``. Few distinct
covariate patterns make ``X beta`` a gather and ``X' r`` a ``bincount``.

References
----------
.. [1] Bates, D., Maechler, M., Bolker, B. and Walker, S. (2015). Fitting linear
   mixed-effects models using lme4. *Journal of Statistical Software* 67(1), 1-48.
.. [2] Kristensen, K., Nielsen, A., Berg, C. W., Skaug, H. and Bell, B. M. (2016). TMB:
   automatic differentiation and Laplace approximation. *Journal of Statistical Software*
   70(5), 1-21.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from disparity.engines.cell_likelihood import CellModel

#: Largest number of small (non-big-term) random effects factorised densely.
MAX_DENSE_EFFECTS = 6000


@dataclass(frozen=True)
class Component:
    """One random-effect component: an intercept of a group term, or one slope column."""

    name: str          # "school", or "<term>|<group>" for a slope
    group: str         # the group term's name
    index: np.ndarray  # level code of each cell
    n_levels: int
    levels: tuple[str, ...]
    x: np.ndarray | None = None  # covariate of a slope; None for an intercept
    term: str | None = None


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of two (n, k) arrays (a fresh array)."""
    if a.shape[1] == 1:
        return a[:, 0] * b[:, 0]
    return np.einsum("ij,ij->i", a, b)


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The curvature ``H`` is not positive definite at these weights."""


def covariate_patterns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``X`` and the pattern of each row (``X == rows[pattern]``).

    Examples
    --------
    >>> import numpy as np
    >>> rows, pattern = covariate_patterns(np.array([[1., 0.], [1., 1.], [1., 0.]]))
    >>> rows.tolist(), pattern.tolist()
    ([[1.0, 0.0], [1.0, 1.0]], [0, 1, 0])
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.shape[1] == 0:
        return X[:1], np.zeros(len(X), dtype=np.int64)
    weights = np.random.default_rng(12345).standard_normal(X.shape[1])
    key = X @ weights
    _, first, pattern = np.unique(key, return_index=True, return_inverse=True)
    rows = X[first]
    if not np.array_equal(rows[pattern], X):  # a hash collision: sort the rows instead
        rows, pattern = np.unique(X, axis=0, return_inverse=True)
    return rows, pattern.ravel().astype(np.int64)


class Structure:
    """Index arrays of one design, computed once: patterns, big term, links to small effects."""

    def __init__(self, X: np.ndarray, components: list[Component]) -> None:
        self.n = len(X)
        self.rows, self.pattern = covariate_patterns(X)
        self.n_patterns = len(self.rows)
        self.p = X.shape[1]
        self.components = components
        K = len(components)
        self.K = K
        groups = list(dict.fromkeys(c.group for c in components))
        n_levels = {c.group: c.n_levels for c in components}
        self.big_group = max(groups, key=lambda g: n_levels[g])
        self.big = [k for k, c in enumerate(components) if c.group == self.big_group]
        self.small = [k for k, c in enumerate(components) if c.group != self.big_group]
        self.r = len(self.big)
        self.n_big = n_levels[self.big_group]
        self.level_big = np.asarray(components[self.big[0]].index, dtype=np.int64)
        self.z = np.column_stack(
            [np.ones(self.n) if c.x is None else np.asarray(c.x, float) for c in components]
        )
        offsets, m = [], 0
        for k in self.small:
            offsets.append(m)
            m += components[k].n_levels
        self.m = m
        if m > MAX_DENSE_EFFECTS:
            raise ValueError(
                f"{m} random effects outside the largest group term ({self.big_group}); at most "
                f"{MAX_DENSE_EFFECTS} can be factorised"
            )
        self.small_offset = np.array(offsets, dtype=np.int64)
        self.levels_of = [np.asarray(c.index, dtype=np.int64) for c in components]
        if self.small:
            cols = np.column_stack(
                [self.levels_of[k] + off for k, off in zip(self.small, offsets)]
            )  # (n, Km): small column of each cell
            self.col = cols
            # links: distinct (big level, small column) pairs
            key = self.level_big[:, None] * m + cols
            uniq, link = np.unique(key.ravel(), return_inverse=True)
            self.link = link.reshape(cols.shape)
            self.link_big = uniq // m
            self.link_col = uniq % m
            L = len(uniq)
            self.n_links = L
            # per big level: its links, padded with the dummy link L (a zero row)
            order = np.argsort(self.link_big, kind="stable")
            counts = np.bincount(self.link_big, minlength=self.n_big)
            self.t = int(counts.max())
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            pos = np.arange(L) - np.repeat(starts, counts)  # position of each sorted link
            padded = np.full((self.n_big, self.t), L, dtype=np.int64)
            padded[self.link_big[order], pos] = order
            self.padded = padded
            link_pos = np.empty(L, dtype=np.int64)
            link_pos[order] = pos
            self.cell_pos = link_pos[self.link]  # (n, Km) position of each cell's links
            self.padded_col = np.append(self.link_col, 0)[padded]  # (n_big, t)
            Km = len(self.small)
            ia, ib = np.triu_indices(Km)
            self.pair_a, self.pair_b = ia, ib
            self.pair_key = cols[:, ia] * m + cols[:, ib]
        self.big_pairs = np.triu_indices(self.r)


@dataclass
class Factor:
    """``H`` factorised at one set of weights (the Schur complement pieces)."""

    Dinv: np.ndarray           # (n_big, r, r)
    logdet: float
    G: np.ndarray | None       # (L + 1, r): D^-1 C per link (last row zero)
    S_cho: tuple | None
    Sinv: np.ndarray | None    # (m, m)


class LaplaceGLMM:
    """Laplace objective and exact gradient of one design; holds the conditional modes.

    Parameters
    ----------
    X : ndarray (cells x p)
    components : list of Component
    cells : CellModel
        The family and counts (with censoring).
    """

    def __init__(self, X: np.ndarray, components: list[Component], cells: CellModel) -> None:
        self.st = Structure(X, components)
        self.cells = cells
        self.family = cells.family
        st = self.st
        self.u_big = np.zeros((st.n_big, st.r))
        self.u_small = np.zeros(st.m)
        self.newton_iterations = 0
        self.evaluations = 0

    # ------------------------------------------------------------------ pieces
    def _v(self, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        st = self.st
        vb = st.z[:, st.big] * sigma[st.big]
        vm = st.z[:, st.small] * sigma[st.small] if st.small else None
        return vb, vm

    def _eta(self, beta, vb, vm, u_big, u_small) -> np.ndarray:
        st = self.st
        eta = (st.rows @ beta)[st.pattern]
        eta += _rowdot(vb, u_big[st.level_big])
        if vm is not None:
            eta += _rowdot(vm, u_small[st.col])
        return eta

    def factor(self, W: np.ndarray, vb: np.ndarray, vm: np.ndarray | None,
               inverse: bool = False) -> Factor:
        """Factorise ``H = I + V' W V``; raises :class:`NotPositiveDefinite`."""
        st = self.st
        r, nb = st.r, st.n_big
        D = np.zeros((nb, r, r))
        for a, b in zip(*st.big_pairs):
            val = np.bincount(st.level_big, weights=W * vb[:, a] * vb[:, b], minlength=nb)
            D[:, a, b] = val
            D[:, b, a] = val
        D[:, np.arange(r), np.arange(r)] += 1.0
        if r == 1:
            d = D[:, 0, 0]
            if not np.all(d > 0):
                raise NotPositiveDefinite("H is not positive definite")
            Dinv = (1.0 / d)[:, None, None]
            logdet = float(np.sum(np.log(d)))
        else:
            try:
                chol = np.linalg.cholesky(D)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefinite(str(exc)) from None
            logdet = float(2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2))))
            Dinv = np.linalg.inv(D)
        if not st.small:
            return Factor(Dinv=Dinv, logdet=logdet, G=None, S_cho=None, Sinv=None)
        m, L = st.m, st.n_links
        C = np.zeros((L + 1, r))
        flat_link = st.link.ravel()
        for a in range(r):
            w = (W * vb[:, a])[:, None] * vm
            C[:L, a] = np.bincount(flat_link, weights=w.ravel(), minlength=L)
        G = np.einsum("lab,lb->la", Dinv[np.append(st.link_big, 0)], C)
        G[L] = 0.0
        Bflat = np.zeros(m * m)
        for q, (a, b) in enumerate(zip(st.pair_a, st.pair_b)):
            w = W * vm[:, a] * vm[:, b]
            part = np.bincount(st.pair_key[:, q], weights=w, minlength=m * m)
            Bflat += part
            if a != b:  # the transposed entry
                Bflat += part.reshape(m, m).T.ravel()
        B = Bflat.reshape(m, m)
        Cp = C[st.padded]  # (n_big, t, r)
        Gp = G[st.padded]
        contrib = np.einsum("sar,sbr->sab", Cp, Gp)
        keys = st.padded_col[:, :, None] * m + st.padded_col[:, None, :]
        B = B - np.bincount(keys.ravel(), weights=contrib.ravel(), minlength=m * m).reshape(m, m)
        B[np.diag_indices(m)] += 1.0
        S = (B + B.T) / 2.0
        try:
            cho = sla.cho_factor(S, lower=True, check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefinite(str(exc)) from None
        logdet += float(2.0 * np.sum(np.log(np.diag(cho[0]))))
        Sinv = sla.cho_solve(cho, np.eye(m), check_finite=False) if inverse else None
        return Factor(Dinv=Dinv, logdet=logdet, G=G, S_cho=cho, Sinv=Sinv)

    def solve(self, F: Factor, rb: np.ndarray, rm: np.ndarray | None):
        """``H^-1 [rb; rm]`` with ``rb`` (n_big, r, ...) and ``rm`` (m, ...)."""
        st = self.st
        extra = rb.shape[2:]
        xb0 = np.einsum("sab,sb...->sa...", F.Dinv, rb)
        if not st.small:
            return xb0, None
        # y = rm - C' D^-1 rb, over links
        Gl = F.G[:-1]  # (L, r)
        contrib = np.einsum("la,la...->l...", Gl, rb[st.link_big])
        y = rm.astype(float).copy()
        if extra:
            k = int(np.prod(extra))
            y2 = y.reshape(st.m, k)
            c2 = contrib.reshape(len(Gl), k)
            for j in range(k):
                y2[:, j] -= np.bincount(st.link_col, weights=c2[:, j], minlength=st.m)
        else:
            y -= np.bincount(st.link_col, weights=contrib, minlength=st.m)
        xm = sla.cho_solve(F.S_cho, y.reshape(st.m, -1), check_finite=False).reshape(y.shape)
        # xb = D^-1 rb - sum_links G_l xm[col_l]
        corr = np.einsum("la,l...->la...", Gl, xm[st.link_col])
        xb = xb0.copy()
        flat = corr.reshape(len(Gl), -1)
        out = xb.reshape(st.n_big, -1)
        for j in range(flat.shape[1]):
            out[:, j] -= np.bincount(st.link_big, weights=flat[:, j], minlength=st.n_big)
        return xb, xm

    def _gradient_u(self, d1: np.ndarray, vb, vm, u_big, u_small):
        """``V' l' - u`` split into big and small parts."""
        st = self.st
        gb = np.column_stack(
            [np.bincount(st.level_big, weights=d1 * vb[:, a], minlength=st.n_big)
             for a in range(st.r)]
        ) - u_big
        gm = None
        if vm is not None:
            gm = np.bincount(st.col.ravel(), weights=(d1[:, None] * vm).ravel(),
                             minlength=st.m) - u_small
        return gb, gm

    # ------------------------------------------------------------------ inner problem
    def modes(self, beta: np.ndarray, sigma: np.ndarray, alpha: float | None,
              tol: float = 1e-10, max_iter: int = 100, newton: bool = True):
        """Newton iterations for the conditional modes from the stored ones.

        Returns the linear predictor, the cell derivatives (order 3), the factor at the
        mode and the joint log-density there. With ``newton=False`` the stored modes are
        taken as they are (a predicted mode, see :meth:`mode_derivative`).
        """
        vb, vm = self._v(sigma)
        ub, um = self.u_big, self.u_small
        eta = self._eta(beta, vb, vm, ub, um)
        der = self.cells.at(eta, alpha, order=3)
        joint = der.value - 0.5 * (np.sum(ub**2) + np.sum(um**2))
        F = None
        for _ in range(max_iter if newton else 0):
            W = -der.d2
            try:
                F = self.factor(W, vb, vm)
            except NotPositiveDefinite:  # far from the mode: a step with clipped weights
                F = None
                Fc = self.factor(np.maximum(W, 0.0), vb, vm)
            gb, gm = self._gradient_u(der.d1, vb, vm, ub, um)
            db, dm = self.solve(F if F is not None else Fc, gb, gm)
            step = max(float(np.max(np.abs(db))) if db.size else 0.0,
                       float(np.max(np.abs(dm))) if dm is not None and dm.size else 0.0)
            self.newton_iterations += 1
            if step < tol and F is not None:
                break  # at the mode: keep this factor (the step is below tol)
            t = 1.0
            while True:
                nb_ = ub + t * db
                nm_ = um + t * dm if dm is not None else um
                eta_new = self._eta(beta, vb, vm, nb_, nm_)
                der_new = self.cells.at(eta_new, alpha, order=3)
                joint_new = der_new.value - 0.5 * (np.sum(nb_**2) + np.sum(nm_**2))
                if np.isfinite(joint_new) and joint_new >= joint - 1e-10 * abs(joint):
                    break
                t /= 2.0
                if t < 1e-8:
                    break
            ub, um, eta, der, joint = nb_, nm_, eta_new, der_new, joint_new
            F = None
            if t < 1e-8:
                break
        self.u_big, self.u_small = ub, um
        if self.family == "negative_binomial":
            der = self.cells.at(eta, alpha, order=3, shape=True)
        if F is None:
            F = self.factor(-der.d2, vb, vm)
        if F.S_cho is not None:
            F.Sinv = sla.cho_solve(F.S_cho, np.eye(self.st.m), check_finite=False)
        self._last = (beta, sigma, alpha, eta, der, F, vb, vm)
        return eta, der, F, joint, vb, vm

    def mode_derivative(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``d u_hat / dt`` along ``direction`` in t = (beta, sigma, log alpha), at the
        last modes: ``H^-1 dg/dt`` with ``g = V' l' - u`` (implicit function theorem)."""
        st = self.st
        beta, sigma, alpha, eta, der, F, vb, vm = self._last
        p, K = st.p, st.K
        e_beta, e_sigma = direction[:p], direction[p : p + K]
        W = -der.d2
        deta = (st.rows @ e_beta)[st.pattern]
        for j, k in enumerate(st.big):
            deta = deta + e_sigma[k] * st.z[:, k] * self.u_big[st.level_big, j]
        for j, k in enumerate(st.small):
            deta = deta + e_sigma[k] * st.z[:, k] * self.u_small[st.col[:, j]]
        wd = W * deta
        score = der.d1.copy()
        if self.family == "negative_binomial" and len(direction) > p + K:
            extra = direction[p + K] * der.d1s
        else:
            extra = 0.0
        rb = np.column_stack([
            np.bincount(st.level_big, weights=(extra - wd) * vb[:, j]
                        + e_sigma[k] * st.z[:, k] * score, minlength=st.n_big)
            for j, k in enumerate(st.big)])
        rm = None
        if vm is not None:
            w = (extra - wd)[:, None] * vm + e_sigma[st.small] * st.z[:, st.small] * score[:, None]
            rm = np.bincount(st.col.ravel(), weights=w.ravel(), minlength=st.m)
        return self.solve(F, rb, rm)

    # ------------------------------------------------------------------ selected inverse
    def cell_solves(self, F: Factor, vb, vm):
        """Each cell's own entries of ``H^-1 v_i``: (n, r) big and (n, Km) small."""
        st = self.st
        s = st.level_big
        Dv = np.einsum("iab,ib->ia", F.Dinv[s], vb) if st.r > 1 else F.Dinv[s, 0, 0][:, None] * vb
        if not st.small:
            return Dv, None
        if st.r == 1 and st.t == 1 and len(st.small) == 1:  # nested intercepts: la/school
            g = F.G[st.padded[s, 0], 0]
            xm = vm[:, 0] - g * vb[:, 0]
            xm *= F.Sinv[st.col[:, 0], st.col[:, 0]]
            return (Dv[:, 0] - g * xm)[:, None], xm[:, None]
        Gp = F.G[st.padded[s]]  # (n, t, r)
        E = -np.einsum("itr,ir->it", Gp, vb)
        rows = np.arange(st.n)
        for c in range(len(st.small)):
            E[rows, st.cell_pos[:, c]] += vm[:, c]  # one position per cell: no repeats
        cols = st.padded_col[s]  # (n, t)
        if st.t == 1:
            xm_t = F.Sinv[cols[:, 0], cols[:, 0]][:, None] * E
        else:
            Sg = F.Sinv[cols[:, :, None], cols[:, None, :]]
            xm_t = np.einsum("iab,ib->ia", Sg, E)
        hb = Dv - np.einsum("itr,it->ir", Gp, xm_t)
        hm = np.take_along_axis(xm_t, st.cell_pos, axis=1)
        return hb, hm

    def diag_inverse(self, F: Factor):
        """Diagonal of ``H^-1``: (n_big, r) and (m,)."""
        st = self.st
        db = np.diagonal(F.Dinv, axis1=1, axis2=2).copy()
        if not st.small:
            return db, None
        Gp = F.G[st.padded]  # (n_big, t, r)
        cols = st.padded_col
        Sg = F.Sinv[cols[:, :, None], cols[:, None, :]]  # (n_big, t, t)
        db += np.einsum("sar,sab,sbr->sr", Gp, Sg, Gp)
        return db, np.diag(F.Sinv).copy()

    # ------------------------------------------------------------------ objective
    def objective(self, beta: np.ndarray, sigma: np.ndarray, alpha: float | None = None,
                  gradient: bool = True, newton: bool = True):
        """Negative Laplace log-likelihood and its gradient in (beta, sigma, log alpha)."""
        self.evaluations += 1
        st = self.st
        eta, der, F, joint, vb, vm = self.modes(beta, sigma, alpha, newton=newton)
        f = -joint + 0.5 * F.logdet
        if not gradient:
            return f, None
        d1, W = der.d1, -der.d2
        hb, hm = self.cell_solves(F, vb, vm)
        dcell = _rowdot(vb, hb)
        if hm is not None:
            dcell += _rowdot(vm, hm)
        a = dcell * der.d3
        a *= -0.5  # a_i = -l3_i d_i / 2 (l3 the third derivative)
        rb = np.column_stack([np.bincount(st.level_big, weights=a * vb[:, j],
                                          minlength=st.n_big) for j in range(st.r)])
        rm = (np.bincount(st.col.ravel(), weights=(a[:, None] * vm).ravel(), minlength=st.m)
              if vm is not None else None)
        sb, sm = self.solve(F, rb, rm)
        delta = _rowdot(vb, sb[st.level_big])
        if vm is not None:
            delta += _rowdot(vm, sm[st.col])
        c = W * delta
        np.subtract(a, c, out=c)
        c -= d1  # c_i = -l'_i + a_i - W_i delta_i
        g_beta = st.rows.T @ np.bincount(st.pattern, weights=c, minlength=st.n_patterns)
        g_sigma = np.zeros(st.K)
        # sum_i [c_i z_ic u_{c,i} + z_ic (W_i h_ic + l'_i s_{c,i})], the u and s terms by level
        for j, k in enumerate(st.big + st.small):
            slope = st.components[k].x is not None
            zc, zd, zw = ((st.z[:, k] * c, st.z[:, k] * d1, st.z[:, k] * W) if slope
                          else (c, d1, W))
            if j < st.r:
                lev, n_lev, u, sv, h = st.level_big, st.n_big, self.u_big[:, j], sb[:, j], hb[:, j]
            else:
                q = j - st.r
                lev, n_lev, u, sv, h = st.col[:, q], st.m, self.u_small, sm, hm[:, q]
            g_sigma[k] = (u @ np.bincount(lev, weights=zc, minlength=n_lev)
                          + sv @ np.bincount(lev, weights=zd, minlength=n_lev) + float(zw @ h))
        grad = [g_beta, g_sigma]
        if self.family == "negative_binomial":
            g_shape = np.sum(-der.ds - 0.5 * der.d2s * dcell + delta * der.d1s)
            grad.append(np.array([g_shape]))
        return f, np.concatenate(grad)

    # ------------------------------------------------------------------ summaries
    def conditional_information(self, F: Factor, W: np.ndarray, vb, vm) -> np.ndarray:
        """``X'WX - X'WV H^-1 V'WX``: information on beta with sigma held fixed."""
        import scipy.sparse as sp

        st = self.st
        wp = np.bincount(st.pattern, weights=W, minlength=st.n_patterns)
        info = st.rows.T @ (wp[:, None] * st.rows)
        VWXb = np.stack(
            [sp.csr_matrix((W * vb[:, a], (st.level_big, st.pattern)),
                           shape=(st.n_big, st.n_patterns)) @ st.rows for a in range(st.r)],
            axis=1,
        )  # (n_big, r, p)
        VWXm = None
        if vm is not None:
            VWXm = sp.csr_matrix(((W[:, None] * vm).ravel(),
                                  (st.col.ravel(), np.repeat(st.pattern, vm.shape[1]))),
                                 shape=(st.m, st.n_patterns)) @ st.rows  # (m, p)
        Yb, Ym = self.solve(F, VWXb, VWXm)
        info = info - np.einsum("sap,saq->pq", VWXb, Yb)
        if VWXm is not None:
            info = info - VWXm.T @ Ym
        return (info + info.T) / 2.0
