"""Rank-normalised split R-hat and bulk and tail ESS, vectorised over parameters.

The convergence statistics of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021), as
ArviZ and Stan compute them, for many parameters at once: at national scale a posterior
has tens of thousands of school effects, and computing the statistics one parameter at a
time (ArviZ's loop) took longer than sampling them. Here every step is an array operation
over the parameter axis: ranks by one sort per parameter, autocovariances by one FFT, and
Geyer's initial positive and monotone sequences by cumulative operations, in blocks of
parameters so that memory stays bounded.

Each function takes draws shaped ``(chains, draws, parameters)`` and returns one value per
parameter. ``tests/engines/test_rhat_ess.py`` checks them against ArviZ's own functions.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. *Bayesian Analysis* 16(2), 667-718.
Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4),
473-483.
"""

from __future__ import annotations

import numpy as np

#: Parameters handled at once (bounds the temporaries: block x chains x draws doubles).
BLOCK = 512


def _blocks(draws: np.ndarray, statistic) -> np.ndarray:
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3:
        raise ValueError(f"draws must be (chains, draws, parameters), got shape {draws.shape}")
    k = draws.shape[2]
    out = None
    for start in range(0, k, BLOCK):
        part = statistic(draws[:, :, start : start + BLOCK])
        if out is None:  # one value per parameter, or a stack of them
            out = np.empty(part.shape[:-1] + (k,))
        out[..., start : start + BLOCK] = part
    return out if out is not None else np.empty(0)


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain's first and last halves as separate chains (the middle draw of an odd
    number is dropped)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (ties averaged), ``Phi^-1((r - 3/8) / (S + 1/4))``."""
    from scipy import special

    chains, n, k = x.shape
    size = chains * n
    rows = np.ascontiguousarray(x.reshape(size, k).T)  # one parameter per row
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    # average rank of each run of equal values: (first + last position) / 2 + 1
    position = np.arange(size, dtype=np.float64)[None, :]
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(rows.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0.0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, size)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(rows)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    z = special.ndtri((ranks - 0.375) / (size + 0.25))
    return np.ascontiguousarray(z.T).reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    """Classic R-hat of (chains, draws, k) draws."""
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant parameter: NaN
        return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of (chains, draws, k) draws: Geyer's initial monotone sequence estimator."""
    chains, n, k = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n, k)
    rho[0] = 1.0
    # pairs (rho_2j, rho_2j+1), j = 0 .. last: pair j >= 1 is looked at while 2j - 1 < n - 3
    last = max((n - 3) // 2, 0)
    even = rho[0 : 2 * last + 1 : 2]
    odd = rho[1 : 2 * last + 2 : 2]
    pairs = even + odd
    # the first pair j >= 1 whose sum is not positive ends the positive sequence
    failing = pairs[1:] <= 0.0
    stop = np.where(failing.any(axis=0), failing.argmax(axis=0) + 1, last)  # J
    index = np.arange(pairs.shape[0])[:, None]
    kept = index < stop[None, :]
    # monotone: each kept pair no larger than the one before
    monotone = np.minimum.accumulate(np.where(kept, pairs, np.inf), axis=0)
    total = np.where(kept, monotone, 0.0).sum(axis=0)
    even_at_stop = np.take_along_axis(even, stop[None, :], axis=0)[0]
    ended = failing.any(axis=0)
    tail = np.where(ended, np.maximum(even_at_stop, 0.0), even_at_stop)
    tau = -1.0 + 2.0 * total + tail
    draws = chains * n
    tau = np.maximum(tau, 1.0 / np.log10(draws))
    ess = draws / tau
    constant = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(float).resolution
    ess = np.where(constant, float(draws), ess)
    return np.where(np.isnan(rho).any(axis=0) & ~constant, np.nan, ess)


def rhat_ess_bulk_tail(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rhat`, :func:`ess_bulk` and :func:`ess_tail` together (the split chains'
    normal scores, the costly part, computed once)."""
    def statistic(x: np.ndarray) -> np.ndarray:
        split = _split(x)
        z = _z_scale(split)
        return np.stack([_rank_rhat(split, z), _ess(z), _tail(x)])

    out = _blocks(draws, statistic)
    if out.ndim == 1:  # no parameters
        return out, out.copy(), out.copy()
    return out[0], out[1], out[2]


def _rank_rhat(split: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The larger of the bulk R-hat (of ``z``, the split chains' normal scores) and the
    folded one (of the scores of the distances from the median)."""
    median = np.median(split.reshape(-1, split.shape[2]), axis=0)
    return np.maximum(_rhat(z), _rhat(_z_scale(np.abs(split - median))))


def _tail(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, x.shape[2])
    low, high = np.quantile(flat, [0.05, 0.95], axis=0)
    return np.minimum(_ess(_split((x <= low).astype(float))),
                      _ess(_split((x <= high).astype(float))))


def rhat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat: the larger of the bulk and the folded (tail) R-hat.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((4, 500, 3))
    >>> bool(np.all(np.abs(rhat(x) - 1) < 0.01))
    True
    """
    def statistic(x: np.ndarray) -> np.ndarray:
        split = _split(x)
        return _rank_rhat(split, _z_scale(split))

    return _blocks(draws, statistic)


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size: the ESS of the split chains' normal scores.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((4, 500, 2))
    >>> bool(np.all(ess_bulk(x) > 1500))
    True
    """
    return _blocks(draws, lambda x: _ess(_z_scale(_split(x))))


def ess_tail(draws: np.ndarray) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the indicators of the 5 % and 95 %
    quantiles.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((4, 500, 2))
    >>> bool(np.all(ess_tail(x) > 1000))
    True
    """
    return _blocks(draws, _tail)
