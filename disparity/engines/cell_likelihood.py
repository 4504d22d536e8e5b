"""Log-likelihood of one cell's count and its derivatives in the linear predictor.

The Laplace engine (:mod:`disparity.engines.laplace`) needs, for every cell ``i`` and its
linear predictor ``eta_i``, the log-likelihood ``l_i`` and its first three derivatives in
``eta`` (the third enters the gradient of the Laplace log-determinant), and, for the
negative binomial, the derivatives of ``l_i``, ``l_i'`` and ``l_i''`` in the log shape
``s = log(alpha)``.

Families (``n`` = trials, ``mu`` the mean):

- binomial, logit link: ``Y ~ Binomial(n, expit(eta))``;
- Poisson, log link with offset ``log n``: ``Y ~ Poisson(n exp(eta))``;
- negative binomial (NB2), log link with offset ``log n``: ``Y ~ NB(mu = n exp(eta),
  alpha)``, variance ``mu + mu^2 / alpha``.

Censored cells: where ``upper > events`` the count is only known to lie in
``[events, upper]`` and the cell contributes ``log sum_{k=lo..hi} P(Y = k | eta)``, the exact
interval-censored likelihood. Its derivatives follow from those of each ``log P(Y = k)`` by
the moments of a mixture: with ``pi_k`` the normalised terms and ``g, h, t`` the first three
eta-derivatives of ``log P(Y = k)``, ``l' = E g``, ``l'' = E(h + g^2) - l'^2`` and
``l''' = E(t + 3 g h + g^3) - 3 l' E(h + g^2) + 2 l'^3``.

Every value includes the normalising constants (``log C(n, y)``, ``-log y!``, the
negative-binomial gamma functions), so log-likelihoods compare with R's ``logLik``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln

FAMILIES = ("binomial", "poisson", "negative_binomial")


@dataclass
class CellDerivatives:
    """Per-cell log-likelihood and derivatives at one linear predictor.

    ``value`` (the summed log-likelihood), ``d1``, ``d2``, ``d3`` (first three derivatives
    in eta); for the negative binomial also ``ds`` (d l / d log alpha), ``d1s`` and ``d2s``
    (d l' / d log alpha, d l'' / d log alpha); ``None`` otherwise or when not asked for.
    """

    value: float
    d1: np.ndarray
    d2: np.ndarray
    d3: np.ndarray | None = None
    ds: np.ndarray | None = None
    d1s: np.ndarray | None = None
    d2s: np.ndarray | None = None
    values: np.ndarray | None = None


def _log1pexp(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _terms(family: str, k: np.ndarray, n: np.ndarray, eta: np.ndarray, alpha: float | None,
           order: int, shape: bool) -> tuple:
    """``log P(Y = k)`` and its derivatives for given counts ``k`` (arrays of one shape)."""
    out_s = (None, None, None)
    if family == "binomial":
        p = _expit(eta)
        q = 1.0 - p
        L = (gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
             + k * eta - n * _log1pexp(eta))
        g = k - n * p
        h = -n * p * q
        t = h * (q - p) if order >= 3 else None
    elif family == "poisson":
        mu = n * np.exp(eta)
        L = k * (eta + np.log(n)) - mu - gammaln(k + 1.0)
        g = k - mu
        h = -mu
        t = -mu if order >= 3 else None
    else:
        a = float(alpha)
        mu = n * np.exp(eta)
        f = a / (a + mu)  # alpha / (alpha + mu)
        e = mu / (a + mu)
        L = (gammaln(k + a) - gammaln(a) - gammaln(k + 1.0) + a * np.log(f)
             + k * np.log(e))
        g = a * (k - mu) / (a + mu)          # = f (k - mu)
        h = -a * mu * (a + k) / (a + mu) ** 2  # = -(k + a) e f
        t = h * (a - mu) / (a + mu) if order >= 3 else None
        if shape:
            # derivatives in s = log(alpha): d/ds = alpha d/dalpha
            la = a * (digamma(k + a) - digamma(a) + np.log(f) + e - k / (a + mu))
            ga = a * (mu * (k - mu) / (a + mu) ** 2)  # alpha * d g / d alpha
            # h = -(k + a) a mu / (a + mu)^2; d h / d alpha
            dh = -mu * ((a + mu) * (k + 2 * a) - 2 * a * (k + a)) / (a + mu) ** 3
            out_s = (la, ga, a * dh)
    return L, g, h, t, out_s


class CellModel:
    """The cells' counts, with the constants of their log-likelihood computed once.

    Parameters
    ----------
    family : {"binomial", "poisson", "negative_binomial"}
    events, trials : ndarray
        Event count (lower end for a censored cell) and trials or exposure of each cell.
    upper : ndarray, optional
        Upper end of each cell's count (equal to ``events`` where observed exactly).

    Examples
    --------
    >>> import numpy as np
    >>> m = CellModel("poisson", np.array([2.0]), np.array([3.0]))
    >>> d = m.at(np.array([0.0]))
    >>> bool(np.isclose(d.value, 2 * np.log(3.0) - 3.0 - np.log(2.0))), d.d1.round(12).tolist()
    (True, [-1.0])
    >>> c = CellModel("poisson", np.array([1.0]), np.array([3.0]), upper=np.array([2.0]))
    >>> bool(np.isclose(c.at(np.array([0.0])).value, np.log(7.5 * np.exp(-3.0))))
    True
    """

    def __init__(self, family: str, events: np.ndarray, trials: np.ndarray,
                 upper: np.ndarray | None = None) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family {family!r}; valid: {FAMILIES}")
        self.family = family
        self.events = np.asarray(events, dtype=np.float64)
        self.trials = np.asarray(trials, dtype=np.float64)
        self.upper = None if upper is None else np.asarray(upper, dtype=np.float64)
        self.censored = (np.flatnonzero(self.upper > self.events) if self.upper is not None
                         else np.zeros(0, dtype=np.int64))
        exact = np.ones(len(self.events), dtype=bool)
        exact[self.censored] = False
        self._exact = exact
        y, n = self.events, self.trials
        if family == "binomial":
            const = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        elif family == "poisson":
            self._log_n = np.log(n)
            const = y * self._log_n - gammaln(y + 1.0)
        else:
            self._log_n = np.log(n)
            const = -gammaln(y + 1.0)
        self._const = float(np.sum(const[exact]))
        self._nb_cache: tuple[float, float] | None = None

    def _sum_exact(self, values: np.ndarray) -> float:
        return float(np.sum(values if not len(self.censored) else values[self._exact]))

    def _nb_gamma(self, alpha: float) -> float:
        """Sum over exact cells of ``lgamma(y + alpha) - lgamma(alpha)`` (cached by alpha)."""
        if self._nb_cache is None or self._nb_cache[0] != alpha:
            y = self.events[self._exact]
            self._nb_cache = (alpha, float(np.sum(gammaln(y + alpha)) - len(y) * gammaln(alpha)))
        return self._nb_cache[1]

    def at(self, eta: np.ndarray, alpha: float | None = None, *, order: int = 2,
           shape: bool = False, value: bool = True, cellwise: bool = False) -> CellDerivatives:
        """Log-likelihood and derivatives at linear predictor ``eta`` (shape ``alpha``).

        ``order`` 2 or 3 is the highest eta-derivative wanted; ``shape`` asks for the
        derivatives in ``log alpha`` (negative binomial); ``cellwise`` also returns each
        cell's log-likelihood without the parameter-free constants of exact cells
        (``values``; their sum is :attr:`constant`).
        """
        y, n = self.events, self.trials
        shape = shape and self.family == "negative_binomial"
        la = ga = ha = t = None
        total = np.nan
        if self.family == "binomial":
            e = np.exp(-np.abs(eta))
            inv = 1.0 / (1.0 + e)
            p = np.where(eta >= 0, inv, e * inv)
            q = 1.0 - p
            g = y - n * p
            h = -n * p * q
            if order >= 3:
                t = h * (q - p)
            if value:
                ll = y * eta - n * (np.maximum(eta, 0.0) + np.log1p(e))
                total = self._sum_exact(ll) + self._const
        elif self.family == "poisson":
            mu = np.exp(eta + self._log_n)
            g = y - mu
            h = -mu
            if order >= 3:
                t = h
            if value:
                ll = y * eta - mu
                total = self._sum_exact(ll) + self._const
        else:
            a = float(alpha)
            mu = np.exp(eta + self._log_n)
            apm = a + mu
            g = a * (y - mu) / apm
            h = -a * mu * (a + y) / apm**2
            if order >= 3:
                t = h * (a - mu) / apm
            log_f = np.log(a / apm)
            if value:
                ll = a * log_f + y * (eta + self._log_n - np.log(apm))
                total = self._sum_exact(ll) + self._const + self._nb_gamma(a)
            if shape:
                la = a * (digamma(y + a) - digamma(a) + log_f + (mu - y) / apm)
                ga = a * mu * (y - mu) / apm**2
                ha = -a * mu * (apm * (y + 2 * a) - 2 * a * (y + a)) / apm**3
        values = None
        if cellwise:
            if self.family == "negative_binomial":
                raise ValueError("cellwise values are not available for the negative binomial")
            values = ll.copy()
        if len(self.censored):
            idx = self.censored
            Lc, g, h, t, la, ga, ha = _censored(
                self.family, eta, y, n, alpha, self.upper, idx, order, shape,
                np.zeros(len(y)), g, h, t, la, ga, ha)
            if value:
                total += float(np.sum(Lc[idx]))
            if cellwise:
                values[idx] = Lc[idx]
        return CellDerivatives(value=total, d1=g, d2=h, d3=t, ds=la, d1s=ga, d2s=ha,
                               values=values)

    @property
    def constant(self) -> float:
        """Sum of the parameter-free constants of the exact cells (binomial, Poisson)."""
        return self._const


def _censored(family, eta, events, trials, alpha, upper, idx, order, shape,
              L, g, h, t, la, ga, ha):
    """Replace the censored cells' entries by the mixture over their range of counts."""
    lo, hi = events[idx], upper[idx]
    width = int(np.max(hi - lo)) + 1
    ks = lo[None, :] + np.arange(width)[:, None]             # (width, m)
    valid = ks <= hi[None, :]
    ks = np.where(valid, ks, lo[None, :])
    n = np.broadcast_to(trials[idx], ks.shape)
    e = np.broadcast_to(eta[idx], ks.shape)
    Lk, gk, hk, tk, (lak, gak, hak) = _terms(family, ks, n, e, alpha, order, shape)
    Lk = np.where(valid, Lk, -np.inf)
    top = np.max(Lk, axis=0)
    w = np.exp(Lk - top)
    total = w.sum(axis=0)
    pi = w / total
    L = L.copy(); g = g.copy(); h = h.copy()
    L[idx] = top + np.log(total)
    m1 = np.sum(pi * gk, axis=0)
    m2 = np.sum(pi * (hk + gk**2), axis=0)
    g[idx] = m1
    h[idx] = m2 - m1**2
    if order >= 3:
        t = t.copy()
        m3 = np.sum(pi * (tk + 3 * gk * hk + gk**3), axis=0)
        t[idx] = m3 - 3 * m1 * m2 + 2 * m1**3
    if shape:
        la = la.copy(); ga = ga.copy(); ha = ha.copy()
        abar = np.sum(pi * lak, axis=0)
        dm1 = np.sum(pi * (gak + gk * lak), axis=0) - m1 * abar
        dm2 = np.sum(pi * (hak + 2 * gk * gak + lak * (hk + gk**2)), axis=0) - m2 * abar
        la[idx] = abar
        ga[idx] = dm1
        ha[idx] = dm2 - 2 * m1 * dm1
    return L, g, h, t, la, ga, ha
