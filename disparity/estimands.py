"""Estimands derived from a fitted model, draw by draw: standardised rate ratios and rate
differences, ICC and median odds ratios, unit (LA, school) effects, unit-specific rate
ratios, event shares and the adjustment ladder.

Every function here takes a :class:`~disparity.engines.base.Fit` and the
:class:`~disparity.design.Design` it was fitted to, gets joint draws of the parameters from
:func:`disparity.draws.parameter_draws` (posterior draws for the Bayesian engine,
parametric draws for the frequentist ones) and returns a tidy table whose first columns are
:data:`~disparity.engines.base.ESTIMATE_COLUMNS`:

``estimate``
    the *plug-in* value (the estimand computed at the point estimates: coefficients,
    conditional modes, SD estimates) for frequentist fits; the posterior *median* for
    Bayesian fits.
``std_error``
    the standard deviation of the draws.
``conf_low``, ``conf_high``
    equal-tailed quantiles of the draws at ``ci_prob`` (percentile intervals).

Rates are risks (probability of at least one event per pupil) for the binomial family and
events per unit of exposure (per pupil) for the count families.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from disparity import config, vocabulary
from disparity.design import Design, counterfactual_X
from disparity.draws import Draws, is_bayesian, parameter_draws, point_parameters, sd_draws
from disparity.engines.base import ESTIMATE_COLUMNS, Fit
from disparity.errors import DisparityError, DisparityWarning, SpecError
from disparity.settings import GROUP_EFFECTS, STANDARDS
from disparity.vocabulary import YEAR

#: Keys of a ``[[ladder]]`` entry (see :func:`adjustment_ladder`).
LADDER_KEYS: tuple[str, ...] = ("label", "formula", "groups", "slopes", "engine")
#: ``exp(coef) / rate_ratio`` above which :class:`OddsRatioWarning` is raised.
ODDS_RATIO_TOLERANCE: float = 1.1
#: Gauss-Hermite nodes used to integrate the logistic over the random-effect distribution.
N_QUADRATURE: int = 32
#: Above this many cells, the integrated logistic is interpolated from a grid of this step
#: (at most ``_GRID_MAX`` points) instead of integrated cell by cell.
_GRID_MIN_CELLS: int = 2000
_GRID_STEP: float = 0.002
_GRID_MAX: int = 20000
#: Upper bound on draws x cells (x nodes) held in memory at once.
_CHUNK_ELEMENTS: int = 4_000_000

#: Note attached to every row of the adjustment ladder.
MEDIATOR_NOTE: str = (
    "SEN and CIN status may be mediators (on the path from ethnicity to exclusion, e.g. "
    "through identification of needs) rather than confounders: a step that adjusts for them "
    "can remove part of the disparity itself, so read later steps as the disparity not "
    "explained by those characteristics, not as a truer effect"
)


class OddsRatioWarning(DisparityWarning):
    """An odds ratio overstates the corresponding rate (risk) ratio by more than 10%."""


# =========================================================================== prediction
def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise SpecError(
            f"{what} {value!r} is not known; valid choices are "
            + ", ".join(repr(c) for c in choices)
        )
    return value


def _ci(ci_prob: float | None, fit: Fit) -> float:
    prob = float(fit.ci_prob if ci_prob is None else ci_prob)
    if not 0.0 < prob < 1.0:
        raise SpecError(f"ci_prob must lie strictly between 0 and 1, got {prob!r}")
    return prob


def _delta(X: np.ndarray, X_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns where ``X`` differs from ``X_base`` and the differences there.

    A counterfactual level of a main effect differs from the reference rows in one column,
    so only ``n x 1`` is kept per level however many columns the design has.
    """
    cols = np.flatnonzero(np.any(X != X_base, axis=0))
    return cols, np.ascontiguousarray((X - X_base)[:, cols])


def _sd_squared(draws: Draws, name: str, sl: slice) -> np.ndarray:
    sd = draws.group_sd.get(name)
    if sd is None:
        raise DisparityError(
            f"no SD draws for {name!r}; 'integrated' group effects need the SD of every "
            "group and slope term"
        )
    return np.asarray(sd, dtype=np.float64)[sl] ** 2


def _inverse_link_mean(eta: np.ndarray, var: np.ndarray | None, family: str) -> np.ndarray:
    """Mean rate ``E g^-1(eta + sd Z)``, ``Z ~ N(0, 1)``, ``sd^2 = var`` (None: no random part)."""
    from scipy.special import expit

    if var is None:
        return expit(eta) if family == "binomial" else np.exp(eta)
    if family != "binomial":
        return np.exp(eta + var / 2.0)  # the log-normal mean: exact for the log link
    if np.shape(var)[-1] == 1 and eta.shape[-1] > _GRID_MIN_CELLS:
        return _logistic_normal_on_grid(eta, np.asarray(var)[:, 0])
    return _logistic_normal(eta, var)


def _logistic_normal(eta: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``E expit(eta + sqrt(var) Z)`` by Gauss-Hermite quadrature."""
    from scipy.special import expit

    nodes, weights = np.polynomial.hermite.hermgauss(N_QUADRATURE)
    sd = np.sqrt(var) * math.sqrt(2.0)
    out = np.zeros(np.broadcast_shapes(eta.shape, np.shape(sd)))
    for t, w in zip(nodes, weights):
        out += w * expit(eta + t * sd)
    return out / math.sqrt(math.pi)


def _logistic_normal_on_grid(eta: np.ndarray, var: np.ndarray) -> np.ndarray:
    """As :func:`_logistic_normal` with one variance per draw (row), for many cells.

    The integral is computed by quadrature on a fine grid of ``eta`` (spacing
    :data:`_GRID_STEP`) and interpolated linearly on the logit scale, where it is nearly a
    straight line; the interpolation error is below 1e-7 relative.
    """
    from scipy.special import expit, logit

    lo, hi = float(eta.min()), float(eta.max())
    n_grid = int(min(_GRID_MAX, max(2, math.ceil((hi - lo) / _GRID_STEP) + 1)))
    grid = np.linspace(lo, hi, n_grid)
    on_grid = logit(_logistic_normal(grid[None, :], var[:, None]))
    out = np.empty_like(eta)
    for i in range(eta.shape[0]):
        out[i] = np.interp(eta[i], grid, on_grid[i])
    return expit(out)


def _weighted_means(draws: Draws, design: Design, X: np.ndarray | list[Any],
                    weights: Any, group_effects: str, rows: np.ndarray | None = None,
                    totals: bool = False) -> Any:
    """Weighted means (or sums) of predicted rates, draw by draw.

    ``X`` is one fixed-effect matrix (all cells) or a list: the first a matrix, the others
    matrices or their :func:`_delta` from the first (counterfactuals). ``weights`` is a (cells in
    ``rows``) x m array or sparse matrix; each column gives one average
    ``sum_c w_c rate_c / sum_c w_c`` (``totals=True``: the sum). Returns a draws x m array,
    or a list of them when ``X`` is a list. The group effects of each chunk of draws are
    gathered once and shared by every counterfactual.
    """
    import scipy.sparse as sp

    many = isinstance(X, list)
    Xs = X if many else [X]
    rows = np.arange(design.n_cells) if rows is None else np.asarray(rows)
    W = sp.csc_matrix(weights) if not sp.issparse(weights) else weights.tocsc()
    WT = W.T.tocsr()
    denom = np.asarray(W.sum(axis=0)).ravel()
    X_full = np.asarray(Xs[0], dtype=np.float64)
    X_base = X_full[rows]
    deltas = []
    for x in Xs[1:]:
        cols, D = x if isinstance(x, tuple) else _delta(np.asarray(x, dtype=np.float64), X_full)
        deltas.append((np.asarray(cols, dtype=int), np.asarray(D)[rows]))
    outs = [np.empty((draws.n_draws, W.shape[1])) for _ in Xs]
    k_total = sum(len(s.columns) for s in design.slopes)
    per = len(rows) * (3 + k_total + (N_QUADRATURE // 8 if group_effects == "integrated" else 0))
    size = max(1, _CHUNK_ELEMENTS // max(per, 1))
    idx = {g.name: np.asarray(g.index)[rows] for g in design.groups}
    has_random = bool(design.groups or design.slopes)
    for start in range(0, draws.n_draws, size):
        sl = slice(start, min(start + size, draws.n_draws))
        coef = draws.coef[sl]
        eta0 = coef @ X_base.T
        devs = []
        if group_effects == "observed":
            for g in design.groups:
                eta0 += draws.group[g.name][sl][:, idx[g.name]]
            for s in design.slopes:
                dev = draws.slopes[f"{s.variable}|{s.group}"][sl][:, idx[s.group], :]
                eta0 += np.einsum("snk,nk->sn", dev, X_base[:, list(s.columns)])
                devs.append((s, dev))
        var0 = None
        if group_effects == "integrated" and has_random:
            var0 = sum((_sd_squared(draws, g.name, sl)[:, None] for g in design.groups),
                       np.zeros((coef.shape[0], 1)))
        for j, out in enumerate(outs):
            eta = eta0
            cols, D = (np.array([], dtype=int), None) if j == 0 else deltas[j - 1]
            if cols.size:
                eta = eta0 + coef[:, cols] @ D.T
                for s, dev in devs:
                    for c_pos, col in enumerate(cols):
                        if col in s.columns:
                            eta = eta + dev[:, :, s.columns.index(col)] * D[:, c_pos][None, :]
            var = var0
            if var0 is not None and design.slopes:
                var = var0
                for s in design.slopes:
                    for k, (col, term) in enumerate(zip(s.columns, s.terms)):
                        x = X_base[:, col].copy()
                        if col in cols:
                            x = x + D[:, list(cols).index(col)]
                        var = var + _sd_squared(draws, f"{term}|{s.group}", sl)[:, None] * x**2
            rates = _inverse_link_mean(eta, var, design.family)
            out[sl] = np.asarray(WT @ rates.T).T
    if not totals:
        with np.errstate(invalid="ignore", divide="ignore"):
            outs = [o / denom[None, :] for o in outs]
    return outs if many else outs[0]


def _summary(values: np.ndarray, point: np.ndarray | None, ci_prob: float,
             bayesian: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, std_error, conf_low, conf_high for each column of ``values`` (S x m)."""
    tail = (1.0 - ci_prob) / 2.0
    # the nan-aware functions are slow on wide arrays; use them only where needed
    finite = not np.isnan(values).any()
    quantile, median, std = ((np.quantile, np.median, np.std) if finite else
                             (np.nanquantile, np.nanmedian, np.nanstd))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = quantile(values, [tail, 1.0 - tail], axis=0)
        se = std(values, axis=0, ddof=1) if values.shape[0] > 1 else np.full(
            values.shape[1], np.nan)
        est = median(values, axis=0) if (bayesian or point is None) else point
    return np.asarray(est, float), np.asarray(se, float), low, high


def _draws_and_point(fit: Fit, design: Design, n_draws: int, seed: int, *,
                     hold_unit_effects: bool = False) -> tuple[Draws, Draws | None, bool]:
    """Draws and (frequentist fits) the point estimates as one draw.

    ``hold_unit_effects``: for a frequentist fit, keep every unit's effect at its conditional
    mode in all draws, so only the fixed effects vary. Population-averaged estimands use
    this: drawing each of thousands of unit effects independently from ``N(mode, SD)`` adds
    no information about an average over units but shifts it (the inverse link is convex
    at low rates: ``E[expit(x + e)] > expit(x)``), which left plug-in estimates at the
    edge of their own intervals. Bayesian draws are joint and are used as they are.
    """
    bayesian = is_bayesian(fit)
    draws = parameter_draws(fit, design, n_draws=n_draws, seed=seed)
    point = None if bayesian else point_parameters(fit, design)
    if hold_unit_effects and point is not None:
        s = draws.coef.shape[0]
        draws = replace(
            draws,
            group={k: np.repeat(point.group[k], s, axis=0) for k in draws.group},
            slopes={k: np.repeat(point.slopes[k], s, axis=0) for k in draws.slopes},
            notes=(*draws.notes, "unit effects held at their conditional modes; intervals "
                                 "reflect the uncertainty of the fixed effects"),
        )
    return draws, point, bayesian


def _categorical(design: Design, variable: str) -> tuple[tuple[str, ...], str]:
    if variable not in design.levels:
        raise SpecError(
            f"variable {variable!r} is not a categorical variable of the model; categorical "
            f"variables are {sorted(design.levels)!r}"
        )
    return tuple(design.levels[variable]), str(design.reference[variable])


def _codes(design: Design, variable: str) -> np.ndarray:
    if design.data is None:
        raise SpecError("this design keeps no data; build it with build_design")
    return design.data[variable].astype(str).to_numpy()


def _term_name(design: Design, variable: str, level: str) -> str:
    name = f"{variable}[T.{level}]"
    if name in design.terms:
        return name
    for term in design.terms:  # C(variable, ...)[T.level] and similar spellings
        if term.endswith(f"[T.{level}]") and variable in term.split("[")[0]:
            return term
    return name


def _frame(rows: list[dict[str, Any]], extra: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS) + list(extra))


# =========================================================================== rate ratios
_RATE_RATIO_EXTRA = ("variable", "level", "reference", "group_effects", "standard", "rate",
                     "rate_reference", "n_draws", "method", "note")


def rate_ratios(
    fit: Fit,
    design: Design,
    variable: str,
    *,
    group_effects: str = "observed",
    standard: str = "all",
    ci_prob: float | None = None,
    n_draws: int = 1000,
    seed: int = config.SEED,
) -> pd.DataFrame:
    """Adjusted rate ratios and rate differences by marginal standardisation.

    For each non-reference level ``g`` of ``variable``: every cell of the standard
    population is set to ``g`` (:func:`~disparity.design.counterfactual_X`) and then to the
    reference level, the rate of every cell is predicted, and the two predictions are
    averaged with the cells' trials (pupils) as weights. The ratio of the two averages is the
    standardised rate ratio, their difference the rate difference. Both are computed draw by
    draw, so the intervals carry the uncertainty of every parameter [1]_ [2]_.

    Parameters
    ----------
    fit : Fit
    design : Design
        The design ``fit`` was fitted to.
    variable : str
        A categorical formula variable (``"ethnicity"``).
    group_effects : {"observed", "conditional", "integrated"}
        How the random effects enter the predictions:

        ``"observed"`` (default)
            each cell at its own units' effects (conditional modes, or posterior draws):
            the rate ratio for these pupils in their own schools and LAs;
        ``"conditional"``
            group effects at zero: a typical (median) school and LA;
        ``"integrated"``
            averaged over the random-effect distribution, ``N(0, sd^2)`` of each term
            (32-node Gauss-Hermite quadrature for the logit link; the exact log-normal
            mean for the log link): a new, randomly drawn school and LA.
    standard : {"all", "group"}
        ``"all"``: every cell is standardised (the whole population, average treatment
        effect); ``"group"``: only the cells whose observed level is ``g`` (the group's own
        pupils, like an effect on the treated). With ``"group"`` each level has its own
        standard population, so rows are not comparable with each other.
    ci_prob : float, optional
        Interval probability; default ``fit.ci_prob``.
    n_draws : int, default 1000
    seed : int

    Returns
    -------
    DataFrame
        Two rows per non-reference level: ``estimand`` ``"rate_ratio"`` and
        ``"rate_difference"``, ``term`` like ``"ethnicity[T.Black Caribbean]"``; the
        columns of :data:`~disparity.engines.base.ESTIMATE_COLUMNS`, then ``variable``,
        ``level``, ``reference``, ``group_effects``, ``standard``, ``rate`` and
        ``rate_reference`` (the two standardised rates, point estimates), ``n_draws``,
        ``method`` (``"posterior"`` or ``"parametric"``) and ``note``.

    Warns
    -----
    OddsRatioWarning
        Binomial family, where the odds ratio ``exp(coef)`` of a level is further from 1
        than its standardised risk ratio by a factor above 1.1 (``exp(coef) / rr > 1.1`` for
        a ratio above 1, ``rr / exp(coef) > 1.1`` below 1): the odds ratio should not be
        read as a risk ratio. The row's ``note`` says so too.

    Notes
    -----
    ``estimate`` is the plug-in value (the ratio at the point estimates) for frequentist
    fits and the posterior median for Bayesian fits; intervals are equal-tailed quantiles
    of the draws. For a log-link model without interactions involving ``variable`` the
    ratio equals ``exp(coef)`` whatever the standard or the group effects, because the
    factor ``exp(coef)`` multiplies every cell's rate; for the logit link it does not, and
    the standardised risk ratio is closer to 1 than the odds ratio when events are common.

    References
    ----------
    .. [1] Muller, C. J. and MacLehose, R. F. (2014). Estimating predicted probabilities
       from logistic regression: different methods correspond to different target
       populations. *International Journal of Epidemiology* 43(3), 962-970.
    .. [2] Localio, A. R., Margolis, D. J. and Berlin, J. A. (2007). Relative risks and
       confidence intervals were easily computed indirectly from multivariable logistic
       regression. *Journal of Clinical Epidemiology* 60(9), 874-882.

    Examples
    --------
    >>> import pandas as pd
    >>> from disparity.design import build_design
    >>> from disparity.engines import glm
    >>> from disparity.spec import ModelSpec
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp"], "n_perm_excl": [10, 20],
    ...                       "n_pupils": [1000, 200]})
    >>> spec = ModelSpec(formula="sen", engine="glm", reference={"sen": "none"})
    >>> design = build_design(spec, cells)
    >>> table = rate_ratios(glm.fit(design, spec), design, "sen")
    >>> round(float(table.estimate.iloc[0]), 6)  # (20/200) / (10/1000), saturated model
    10.0
    """
    _check_choice(group_effects, GROUP_EFFECTS, "group_effects")
    _check_choice(standard, STANDARDS, "standard")
    prob = _ci(ci_prob, fit)
    levels, reference = _categorical(design, variable)
    codes = _codes(design, variable)
    draws, point, bayesian = _draws_and_point(fit, design, n_draws, seed,
                                              hold_unit_effects=True)
    trials = np.asarray(design.trials, dtype=np.float64)
    X_ref = counterfactual_X(design, variable, reference)

    rows: list[dict[str, Any]] = []
    distorted: list[str] = []
    targets = [lv for lv in levels if lv != reference]
    deltas = {lv: _delta(counterfactual_X(design, variable, lv), X_ref) for lv in targets}
    rates: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}
    if standard == "all":
        w = trials[:, None]
        Xs = [X_ref] + [deltas[lv] for lv in targets]
        out = _weighted_means(draws, design, Xs, w, group_effects)
        pts = _weighted_means(point, design, Xs, w, group_effects) if point is not None else None
        for i, lv in enumerate(targets, 1):
            p = (pts[i][0, 0], pts[0][0, 0]) if pts is not None else (np.nan, np.nan)
            rates[lv] = (out[i][:, 0], out[0][:, 0], *p)
    else:
        for lv in targets:
            cells = np.flatnonzero(codes == lv)
            w = trials[cells][:, None]
            Xs = [X_ref, deltas[lv]]
            out = _weighted_means(draws, design, Xs, w, group_effects, rows=cells)
            pts = (_weighted_means(point, design, Xs, w, group_effects, rows=cells)
                   if point is not None else None)
            p = (pts[1][0, 0], pts[0][0, 0]) if pts is not None else (np.nan, np.nan)
            rates[lv] = (out[1][:, 0], out[0][:, 0], *p)
    for level in targets:
        r1, r0, p1, p0 = rates[level]
        if point is None:
            p1, p0 = float(np.median(r1)), float(np.median(r0))
        term = _term_name(design, variable, level)
        values = np.column_stack([r1 / r0, r1 - r0])
        pt = None if point is None else np.array([p1 / p0, p1 - p0])
        est, se, low, high = _summary(values, pt, prob, bayesian)
        note = ""
        if design.family == "binomial" and term in fit.terms:
            odds_ratio = float(np.exp(fit.coef[list(fit.terms).index(term)]))
            rr = float(est[0])
            factor = odds_ratio / rr if rr >= 1.0 else rr / odds_ratio
            if np.isfinite(factor) and factor > ODDS_RATIO_TOLERANCE:
                note = (
                    f"the odds ratio ({odds_ratio:.3g}) overstates this risk ratio "
                    f"({rr:.3g}) by a factor of {factor:.3g}; do not read the odds ratio as "
                    "a risk ratio"
                )
                distorted.append(f"{term}: OR {odds_ratio:.3g} vs RR {rr:.3g}")
        for k, estimand in enumerate(("rate_ratio", "rate_difference")):
            rows.append({
                "estimand": estimand, "term": term, "estimate": float(est[k]),
                "std_error": float(se[k]), "conf_low": float(low[k]),
                "conf_high": float(high[k]), "ci_prob": prob, "engine": fit.engine,
                "variable": variable, "level": level, "reference": reference,
                "group_effects": group_effects, "standard": standard, "rate": float(p1),
                "rate_reference": float(p0), "n_draws": draws.n_draws, "method": draws.method,
                "note": note,
            })
    if distorted:
        warnings.warn(
            f"odds ratios overstate the standardised risk ratios of {variable!r} by more than "
            f"{ODDS_RATIO_TOLERANCE - 1:.0%} (events are common): "
            + "; ".join(distorted[:5]) + ("; ..." if len(distorted) > 5 else "")
            + ". Report the risk ratios.",
            OddsRatioWarning,
            stacklevel=2,
        )
    return _frame(rows, _RATE_RATIO_EXTRA)


# =========================================================================== ICC and MOR
_ICC_EXTRA = ("variance", "n_draws", "method", "note")
#: Phi^-1(0.75), the upper quartile of the standard normal.
_Z75 = 0.6744897501960817


def icc_mor(
    fit: Fit,
    *,
    ci_prob: float | None = None,
    n_draws: int = 1000,
    seed: int = config.SEED,
) -> pd.DataFrame:
    """Intraclass correlations and median odds (rate) ratios of the group terms.

    For each random-intercept term with SD ``sigma`` (and for all of them together,
    ``term="total"``, with ``sigma^2`` the sum of their variances):

    - ``icc`` (binomial only): the share of the latent-scale variance due to the term,
      ``sigma^2 / (sum of all group variances + pi^2 / 3)``, where ``pi^2 / 3`` is the
      variance of the standard logistic distribution [1]_; for ``total``, the correlation
      of the latent propensities of two pupils who share every unit.
    - ``median_odds_ratio`` (binomial) or ``median_rate_ratio`` (log link): the median of
      the ratio of the rates of two otherwise identical pupils in two randomly chosen units,
      ``exp(sqrt(2 sigma^2) * Phi^-1(0.75))`` [2]_.

    Varying slopes are left out: their contribution depends on the covariate.

    Parameters
    ----------
    fit : Fit
    ci_prob : float, optional
        Default ``fit.ci_prob``.
    n_draws : int, default 1000
    seed : int

    Returns
    -------
    DataFrame
        :data:`~disparity.engines.base.ESTIMATE_COLUMNS` plus ``variance`` (the point
        estimate of ``sigma^2``), ``n_draws``, ``method`` and ``note``. Intervals come from
        the SD draws (posterior, or log-normal with the delta-method standard error); they
        are missing where an SD has no standard error (estimated at zero).

    References
    ----------
    .. [1] Snijders, T. A. B. and Bosker, R. J. (2012). *Multilevel Analysis*, 2nd ed.,
       section 17.2.5. Sage.
    .. [2] Larsen, K. and Merlo, J. (2005). Appropriate assessment of neighborhood effects
       on individual health: integrating random and fixed effects in multilevel logistic
       regression. *American Journal of Epidemiology* 161(1), 81-88.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> sd = pd.DataFrame({"term": ["school"], "estimate": [0.6], "std_error": [0.05],
    ...                    "conf_low": [0.5], "conf_high": [0.7]})
    >>> f = Fit(engine="ml", family="binomial", terms=("Intercept",), coef=np.zeros(1),
    ...         coef_cov=np.eye(1), group_sd=sd)
    >>> t = icc_mor(f).set_index(["estimand", "term"])
    >>> round(float(t.loc[("median_odds_ratio", "school"), "estimate"]), 4)
    1.7724
    """
    prob = _ci(ci_prob, fit)
    draws = sd_draws(fit, n_draws=n_draws, seed=seed)
    bayesian = is_bayesian(fit)
    point_sd = {}
    if fit.group_sd is not None and len(fit.group_sd):
        point_sd = {str(r["term"]): float(r["estimate"]) for r in fit.group_sd.to_dict("records")}
    terms = [t for t in draws.group_sd if "|" not in t]
    rows: list[dict[str, Any]] = []
    if not terms:
        return _frame(rows, _ICC_EXTRA)
    var_draws = {t: np.asarray(draws.group_sd[t], dtype=np.float64) ** 2 for t in terms}
    var_point = {t: point_sd.get(t, float(np.median(np.sqrt(var_draws[t])))) ** 2
                 for t in terms}
    total_draws = sum(var_draws.values())
    total_point = sum(var_point.values())
    logistic_var = math.pi**2 / 3.0
    ratio_name = "median_odds_ratio" if fit.family == "binomial" else "median_rate_ratio"

    def add(estimand: str, term: str, values: np.ndarray, pt: float, variance: float,
            fixed: bool, note: str) -> None:
        est, se, low, high = _summary(values[:, None], np.array([pt]), prob, bayesian)
        if fixed:
            se, low, high = [np.array([np.nan])] * 3
        rows.append({
            "estimand": estimand, "term": term, "estimate": float(est[0]),
            "std_error": float(se[0]), "conf_low": float(low[0]), "conf_high": float(high[0]),
            "ci_prob": prob, "engine": fit.engine, "variance": variance,
            "n_draws": draws.n_draws, "method": draws.method, "note": note,
        })

    entries = [(t, var_draws[t], var_point[t], t in draws.fixed_sd) for t in terms]
    entries.append(("total", total_draws, total_point,
                    all(t in draws.fixed_sd for t in terms)))
    for term, v, vp, fixed in entries:
        note = "SD without a standard error (at zero): no interval" if fixed else ""
        if fit.family == "binomial":
            add("icc", term, v / (total_draws + logistic_var), vp / (total_point + logistic_var),
                vp, fixed, note)
        add(ratio_name, term, np.exp(np.sqrt(2.0 * v) * _Z75),
            math.exp(math.sqrt(2.0 * vp) * _Z75), vp, fixed, note)
    return _frame(rows, _ICC_EXTRA)


# =========================================================================== FDR
def bh_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values).

    ``q_(i) = min over j >= i of m p_(j) / j`` for the sorted p-values, capped at 1;
    rejecting every hypothesis with ``q <= alpha`` is the step-up procedure that controls
    the false discovery rate at ``alpha`` for independent (or positively dependent) tests [1]_.
    Missing p-values stay missing and do not count in ``m``.

    References
    ----------
    .. [1] Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate: a
       practical and powerful approach to multiple testing. *Journal of the Royal
       Statistical Society B* 57(1), 289-300.

    Examples
    --------
    >>> bh_adjust([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def bayes_fdr(error_probs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bayesian FDR "q-values" from posterior error probabilities.

    Sort the units by their posterior probability of *not* exceeding the threshold; a
    unit's value is the mean of those probabilities over it and every unit ranked before it:
    the expected share of false discoveries if the list is cut there. Flagging the units
    with a value at most ``alpha`` controls the posterior expected FDR at ``alpha`` [1]_.

    References
    ----------
    .. [1] Newton, M. A., Noueiry, A., Sarkar, D. and Ahlquist, P. (2004). Detecting
       differential gene expression with a semiparametric hierarchical mixture method.
       *Biostatistics* 5(2), 155-176.

    Examples
    --------
    >>> bayes_fdr([0.02, 0.5, 0.04]).round(3).tolist()
    [0.02, 0.187, 0.03]
    """
    e = np.asarray(error_probs, dtype=np.float64)
    q = np.full(e.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(e))
    if ok.size == 0:
        return q
    order = ok[np.argsort(e[ok], kind="stable")]
    q[order] = np.cumsum(e[order]) / np.arange(1, ok.size + 1)
    return q


# =========================================================================== unit effects
_UNIT_EXTRA = ("group_term", "level", "n_pupils", "n_events", "observed_rate",
               "prob_exceeds", "threshold", "p_value", "q_value", "flag_fdr", "fdr",
               "n_draws", "method")


def _unit_weights(index: np.ndarray, n_levels: int, weights: np.ndarray) -> Any:
    import scipy.sparse as sp

    n = len(index)
    return sp.csc_matrix((weights, (np.arange(n), index)), shape=(n, n_levels))


def unit_effects(
    fit: Fit,
    design: Design,
    term: str,
    *,
    threshold: float = 1.0,
    fdr: float = 0.05,
    ci_prob: float | None = None,
    n_draws: int = 1000,
    seed: int = config.SEED,
) -> pd.DataFrame:
    """Shrunken unit rates and unit effects of one group term, with exceedance flags.

    Two rows per level of group term ``term`` (an LA, a school):

    ``unit_rate``
        the unit's predicted rate for its own cells (its pupils as they are, at the fitted
        fixed effects and their own group effects): a shrunken, model-based rate.
    ``unit_ratio``
        ``exp(u)``, the unit's multiplicative effect on the odds (binomial) or rate (log
        link) relative to an average unit with the same pupils. For a nested term
        (schools in LAs) it is relative to the school's own LA.

    Parameters
    ----------
    fit : Fit
    design : Design
    term : str
        A group term of the design (``"la"``, ``"school"``).
    threshold : float, default 1
        ``prob_exceeds`` is the probability that ``exp(u) > threshold``.
    fdr : float, default 0.05
        False discovery rate of ``flag_fdr``.
    ci_prob, n_draws, seed
        As in :func:`rate_ratios`.

    Returns
    -------
    DataFrame
        :data:`~disparity.engines.base.ESTIMATE_COLUMNS` (``term`` is the level label) plus
        ``group_term``, ``level``, ``n_pupils`` (trials), ``n_events``, ``observed_rate``
        (events / trials), ``prob_exceeds``, ``threshold``, ``p_value``, ``q_value``,
        ``flag_fdr``, ``fdr``, ``n_draws``, ``method``.

    Notes
    -----
    *Frequentist fits*: ``prob_exceeds = Phi((mode - log threshold) / conditional SD)``,
    the approximate (empirical-Bayes) probability that the effect exceeds the threshold
    given the data and the estimated SDs; ``p_value = 1 - prob_exceeds`` is the one-sided
    p-value of ``u <= log(threshold)`` from the conditional mode and its SE, and
    ``q_value`` its Benjamini-Hochberg adjustment [1]_ (:func:`bh_adjust`).
    *Bayesian fits*: ``prob_exceeds`` is the share of posterior draws with
    ``exp(u) > threshold``; ``p_value`` holds the posterior error probability
    ``1 - prob_exceeds`` and ``q_value`` the Bayesian FDR of :func:`bayes_fdr` [2]_.
    In both, ``flag_fdr`` is ``q_value <= fdr``. Conditional modes are shrunk towards zero,
    so these flags are conservative for small units.

    References
    ----------
    .. [1] Benjamini, Y. and Hochberg, Y. (1995). *JRSS B* 57(1), 289-300.
    .. [2] Newton, M. A. et al. (2004). *Biostatistics* 5(2), 155-176.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from disparity.design import Design, GroupTerm
    >>> g = GroupTerm(name="school", columns=("school",), index=np.array([0, 1]),
    ...               levels=("A", "B"))
    >>> design = Design(family="binomial", X=np.ones((2, 1)), terms=("Intercept",),
    ...                 events=np.array([5.0, 20.0]), trials=np.array([100.0, 100.0]),
    ...                 groups=(g,))
    >>> effects = pd.DataFrame({"level": ["A", "B"], "estimate": [-0.5, 0.5],
    ...                         "std_error": [0.2, 0.2]})
    >>> f = Fit(engine="ml", family="binomial", terms=("Intercept",), coef=np.array([-2.0]),
    ...         coef_cov=np.array([[0.01]]), group_sd=pd.DataFrame(),
    ...         group_effects={"school": effects})
    >>> t = unit_effects(f, design, "school")
    >>> t[t.estimand == "unit_ratio"].flag_fdr.tolist()
    [False, True]
    """
    prob = _ci(ci_prob, fit)
    g = _group(design, term)
    if not threshold > 0:
        raise SpecError(f"threshold must be a positive ratio, got {threshold!r}")
    if not 0.0 < fdr < 1.0:
        raise SpecError(f"fdr must lie strictly between 0 and 1, got {fdr!r}")
    draws, point, bayesian = _draws_and_point(fit, design, n_draws, seed)
    index = np.asarray(g.index)
    trials = np.asarray(design.trials, dtype=np.float64)
    events = np.asarray(design.events, dtype=np.float64)
    n_pupils = np.bincount(index, weights=trials, minlength=g.n_levels)
    n_events = np.bincount(index, weights=events, minlength=g.n_levels)
    W = _unit_weights(index, g.n_levels, trials)
    rate = _weighted_means(draws, design, design.X, W, "observed")
    u = draws.group[g.name]
    ratio = np.exp(u)
    log_t = math.log(threshold)
    if bayesian:
        prob_exceeds = (u > log_t).mean(axis=0)
        p_value = 1.0 - prob_exceeds
        q_value = bayes_fdr(p_value)
        rate_pt = ratio_pt = None
    else:
        from scipy.stats import norm

        table = fit.group_effects[g.name]
        lookup = table.assign(level=table["level"].astype(str)).set_index("level")
        mode = lookup["estimate"].reindex(list(g.levels)).to_numpy(np.float64)
        se = lookup["std_error"].reindex(list(g.levels)).to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (mode - log_t) / se
        z = np.where(se > 0, z, np.where(mode > log_t, np.inf, -np.inf))
        prob_exceeds = norm.cdf(z)
        p_value = norm.sf(z)
        q_value = bh_adjust(p_value)
        rate_pt = _weighted_means(point, design, design.X, W, "observed")[0]
        ratio_pt = np.exp(point.group[g.name][0])
    flag = np.asarray(q_value <= fdr)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed_rate = n_events / n_pupils
    rows: list[dict[str, Any]] = []
    summaries = {
        "unit_rate": _summary(rate, rate_pt, prob, bayesian),
        "unit_ratio": _summary(ratio, ratio_pt, prob, bayesian),
    }
    for i, level in enumerate(g.levels):
        for estimand, (est, sd, low, high) in summaries.items():
            rows.append({
                "estimand": estimand, "term": level, "estimate": float(est[i]),
                "std_error": float(sd[i]), "conf_low": float(low[i]),
                "conf_high": float(high[i]), "ci_prob": prob, "engine": fit.engine,
                "group_term": g.name, "level": level, "n_pupils": float(n_pupils[i]),
                "n_events": float(n_events[i]), "observed_rate": float(observed_rate[i]),
                "prob_exceeds": float(prob_exceeds[i]), "threshold": float(threshold),
                "p_value": float(p_value[i]), "q_value": float(q_value[i]),
                "flag_fdr": bool(flag[i]), "fdr": float(fdr), "n_draws": draws.n_draws,
                "method": draws.method,
            })
    return _frame(rows, _UNIT_EXTRA)


def _group(design: Design, term: str) -> Any:
    names = [g.name for g in design.groups]
    if term not in names:
        raise SpecError(f"{term!r} is not a group term of the model; group terms are {names!r}")
    return design.group(term)


# =========================================================================== unit rate ratios
_UNIT_RR_EXTRA = ("group_term", "unit", "variable", "level", "reference", "n_pupils_level",
                  "n_draws", "method")


def unit_rate_ratios(
    fit: Fit,
    design: Design,
    variable: str,
    term: str,
    *,
    marginal: bool = True,
    ci_prob: float | None = None,
    n_draws: int = 1000,
    seed: int = config.SEED,
) -> pd.DataFrame:
    """Unit-specific (shrunken) ratios of ``variable``'s levels where its effects vary by unit.

    Needs varying slopes of ``variable`` by group term ``term`` (``[model] slopes``). For
    each unit and each non-reference level:

    ``unit_odds_ratio`` (binomial) / ``unit_rate_ratio`` (log link)
        ``exp(fixed effect + the unit's slope deviation)``: the conditional ratio in that
        unit on the link scale.
    ``unit_marginal_rate_ratio`` (``marginal=True``)
        the standardised rate (risk) ratio over the unit's own cells, as
        :func:`rate_ratios` with observed group effects and ``standard="all"``, restricted
        to the unit's pupils.

    Parameters
    ----------
    fit : Fit
    design : Design
    variable : str
        The slope variable (``"ethnicity"``).
    term : str
        The group term its effects vary by (``"la"``).
    marginal : bool, default True
    ci_prob, n_draws, seed
        As in :func:`rate_ratios`.

    Returns
    -------
    DataFrame
        :data:`~disparity.engines.base.ESTIMATE_COLUMNS` (``term`` is the coefficient name,
        e.g. ``"ethnicity[T.Black Caribbean]"``) plus ``group_term``, ``unit``,
        ``variable``, ``level``, ``reference``, ``n_pupils_level`` (the unit's trials at
        that level: how much the unit's own data say), ``n_draws``, ``method``.

    References
    ----------
    Gelman, A. and Hill, J. (2007). *Data Analysis Using Regression and
    Multilevel/Hierarchical Models*, chapter 13 (varying slopes). Cambridge University Press.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from disparity.design import Design, GroupTerm, SlopeTerm
    >>> g = GroupTerm(name="la", columns=("la",), index=np.array([0, 0, 1, 1]),
    ...               levels=("L1", "L2"))
    >>> s = SlopeTerm(group="la", variable="sen", columns=(1,), terms=("sen[T.ehcp]",))
    >>> data = pd.DataFrame({"sen": pd.Categorical(["none", "ehcp"] * 2,
    ...                                            categories=["none", "ehcp"])})
    >>> design = Design(family="binomial", X=np.array([[1., 0.], [1., 1.]] * 2),
    ...                 terms=("Intercept", "sen[T.ehcp]"), events=np.ones(4),
    ...                 trials=np.full(4, 50.0), groups=(g,), slopes=(s,), data=data,
    ...                 levels={"sen": ("none", "ehcp")}, reference={"sen": "none"})
    >>> zero = pd.DataFrame({"level": ["L1", "L2"], "estimate": 0.0, "std_error": 0.1})
    >>> dev = pd.DataFrame({"level": ["L1", "L2"], "term": "sen[T.ehcp]",
    ...                     "estimate": [-0.2, 0.2], "std_error": 0.1})
    >>> f = Fit(engine="ml", family="binomial", terms=design.terms,
    ...         coef=np.array([-3.0, 1.0]), coef_cov=np.eye(2) * 0.01,
    ...         group_sd=pd.DataFrame(), group_effects={"la": zero},
    ...         slope_effects={"sen|la": dev})
    >>> t = unit_rate_ratios(f, design, "sen", "la", marginal=False)
    >>> t.estimate.round(4).tolist()  # exp(1 - 0.2), exp(1 + 0.2)
    [2.2255, 3.3201]
    """
    prob = _ci(ci_prob, fit)
    g = _group(design, term)
    slope = next((s for s in design.slopes if s.variable == variable and s.group == term), None)
    if slope is None:
        have = [f"{s.variable} by {s.group}" for s in design.slopes] or ["none"]
        raise SpecError(
            f"the model has no varying slopes of {variable!r} by {term!r} (slopes: "
            f"{', '.join(have)}); add slopes = {{ {variable} = \"{term}\" }} to [model]"
        )
    levels, reference = _categorical(design, variable)
    codes = _codes(design, variable)
    draws, point, bayesian = _draws_and_point(fit, design, n_draws, seed)
    index = np.asarray(g.index)
    trials = np.asarray(design.trials, dtype=np.float64)
    level_of = {_term_name(design, variable, lv): lv for lv in levels if lv != reference}
    key = f"{variable}|{term}"
    link_name = "unit_odds_ratio" if design.family == "binomial" else "unit_rate_ratio"
    W = _unit_weights(index, g.n_levels, trials)
    marginal_rr: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if marginal:
        X_ref = counterfactual_X(design, variable, reference)
        targets = [level_of.get(t, t) for t in slope.terms]
        targets = [lv for lv in targets if lv in levels]
        Xs = [X_ref] + [_delta(counterfactual_X(design, variable, lv), X_ref) for lv in targets]
        out = _weighted_means(draws, design, Xs, W, "observed")
        pts = _weighted_means(point, design, Xs, W, "observed") if point is not None else None
        for i, lv in enumerate(targets, 1):
            marginal_rr[lv] = (out[i] / out[0],
                               None if pts is None else pts[i][0] / pts[0][0])
    rows: list[dict[str, Any]] = []
    for k, (col, coef_term) in enumerate(zip(slope.columns, slope.terms)):
        level = level_of.get(coef_term, coef_term)
        n_level = np.bincount(index, weights=trials * (codes == level), minlength=g.n_levels)
        blocks = []
        link = np.exp(draws.coef[:, col][:, None] + draws.slopes[key][:, :, k])
        link_pt = None
        if point is not None:
            link_pt = np.exp(point.coef[0, col] + point.slopes[key][0, :, k])
        blocks.append((link_name, _summary(link, link_pt, prob, bayesian)))
        if level in marginal_rr:
            ratio, pt = marginal_rr[level]
            blocks.append(("unit_marginal_rate_ratio", _summary(ratio, pt, prob, bayesian)))
        for estimand, (est, sd, low, high) in blocks:
            for i, unit in enumerate(g.levels):
                rows.append({
                    "estimand": estimand, "term": coef_term, "estimate": float(est[i]),
                    "std_error": float(sd[i]), "conf_low": float(low[i]),
                    "conf_high": float(high[i]), "ci_prob": prob, "engine": fit.engine,
                    "group_term": g.name, "unit": unit, "variable": variable,
                    "level": level, "reference": reference,
                    "n_pupils_level": float(n_level[i]), "n_draws": draws.n_draws,
                    "method": draws.method,
                })
    return _frame(rows, _UNIT_RR_EXTRA)


# =========================================================================== event shares
_SHARE_EXTRA = ("group_effects", "n_events", "n_pupils", "n_draws", "method")


def _mask(frame: pd.DataFrame, where: str | Mapping[str, Any], what: str) -> np.ndarray:
    if isinstance(where, str):
        from disparity.formula import parse_filter

        return parse_filter(where).mask(frame)
    mask = np.zeros(len(frame), dtype=bool)
    missing = [c for c in where if c not in frame.columns]
    if missing:
        raise SpecError(
            f"column(s) {missing!r} named in the event-share groups are not in the {what}; "
            f"columns are {list(map(str, frame.columns))!r}"
        )
    for column, values in where.items():
        vals = [values] if isinstance(values, (str, int, float, bool)) else list(values)
        mask |= frame[column].astype(str).isin([str(v) for v in vals]).to_numpy()
    return mask


def _describe(where: str | Mapping[str, Any]) -> str:
    if isinstance(where, str):
        return where
    parts = []
    for column, values in where.items():
        vals = [values] if isinstance(values, (str, int, float, bool)) else list(values)
        parts.append(f"{column} in {[str(v) for v in vals]!r}")
    return " or ".join(parts)


def event_shares(
    cells: pd.DataFrame,
    fit: Fit,
    design: Design,
    where: str | Mapping[str, Any],
    *,
    events: str = vocabulary.events_column(vocabulary.PERM_EXCL),
    trials: str = vocabulary.N_PUPILS,
    group_effects: str = "observed",
    ci_prob: float | None = None,
    n_draws: int = 1000,
    seed: int = config.SEED,
) -> pd.DataFrame:
    """Share of events falling on pupils in a set of (overlapping) groups.

    Parameters
    ----------
    cells : DataFrame
        The cells table (one row per combination); the observed shares come from it.
    fit : Fit
    design : Design
        The design ``fit`` was fitted to; the expected share comes from its cells.
    where : str or mapping
        The pupils counted: a filter (:func:`disparity.formula.parse_filter`; parsed, never
        evaluated as Python) on the rows
        (``"sen != 'none' or cin == 'yes' or fsm == 'yes'"``; on the design's data,
        categorical variables are text), or a mapping ``{column: level or levels}`` meaning
        any of them (``{"sen": ["sen_support", "ehcp"], "cin": "yes", "fsm": "yes"}``).
    events, trials : str
        Columns of ``cells`` (the model's ``spec.events`` and ``spec.trials``).
    group_effects : {"observed", "conditional", "integrated"}
        As in :func:`rate_ratios`.
    ci_prob, n_draws, seed
        As in :func:`rate_ratios`.

    Returns
    -------
    DataFrame
        Three rows, ``term`` the description of ``where``:

        ``event_share_observed``
            events in those cells / all events of ``cells`` (no interval);
        ``pupil_share``
            their trials (pupils) / all trials (no interval);
        ``event_share_expected``
            the model's expected events in those cells / its expected events in all cells
            (``trials x predicted rate`` summed), with an interval from the draws.

        plus ``group_effects``, ``n_events`` and ``n_pupils`` (the numerators, observed
        rows), ``n_draws``, ``method``.

    Notes
    -----
    For a GLM with an intercept and the canonical link, the fitted events of every level of
    a factor in the formula equal the observed ones (the score equations), so the
    expected share of a union of levels of one factor equals the observed share; a gap
    between the two for other groupings shows what the model does not reproduce.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"sen": ["none", "ehcp", "none", "ehcp"],
    ...                       "fsm": ["no", "no", "yes", "yes"],
    ...                       "n_perm_excl": [2, 3, 4, 1], "n_pupils": [100, 10, 50, 5]})
    >>> from disparity.spec import ModelSpec
    >>> from disparity.design import build_design
    >>> from disparity.engines import glm
    >>> spec = ModelSpec(formula="sen + fsm", engine="glm")
    >>> design = build_design(spec, cells)
    >>> t = event_shares(cells, glm.fit(design, spec), design, {"sen": "ehcp", "fsm": "yes"})
    >>> float(t.set_index("estimand").loc["event_share_observed", "estimate"])  # (3+4+1)/10
    0.8
    """
    _check_choice(group_effects, GROUP_EFFECTS, "group_effects")
    prob = _ci(ci_prob, fit)
    for column in (events, trials):
        if column not in cells.columns:
            raise SpecError(
                f"column {column!r} is not in the cells; pass events= and trials= (the "
                f"model's events and trials columns); columns are {list(map(str, cells.columns))!r}"
            )
    if design.data is None:
        raise SpecError("this design keeps no data; build it with build_design")
    mask_obs = _mask(cells, where, "cells")
    mask_model = _mask(design.data, where, "design's data")
    ev = cells[events].to_numpy(dtype=np.float64)
    tr = cells[trials].to_numpy(dtype=np.float64)
    term = _describe(where)
    draws, _, bayesian = _draws_and_point(fit, design, n_draws, seed, hold_unit_effects=True)
    w = np.asarray(design.trials, dtype=np.float64)
    W = np.column_stack([w * mask_model, w])
    sums = _weighted_means(draws, design, design.X, W, group_effects, totals=True)
    share = sums[:, 0] / sums[:, 1]
    pt = None
    if not bayesian:
        p = _weighted_means(point_parameters(fit, design), design, design.X, W, group_effects,
                            totals=True)[0]
        pt = np.array([p[0] / p[1]])
    est, se, low, high = _summary(share[:, None], pt, prob, bayesian)
    base = {"ci_prob": prob, "engine": fit.engine, "group_effects": group_effects,
            "n_draws": draws.n_draws, "method": draws.method}
    nan = float("nan")
    rows = [
        {"estimand": "event_share_observed", "term": term,
         "estimate": float(ev[mask_obs].sum() / ev.sum()), "std_error": nan, "conf_low": nan,
         "conf_high": nan, **base, "n_events": float(ev[mask_obs].sum()),
         "n_pupils": float(tr[mask_obs].sum())},
        {"estimand": "pupil_share", "term": term,
         "estimate": float(tr[mask_obs].sum() / tr.sum()), "std_error": nan, "conf_low": nan,
         "conf_high": nan, **base, "n_events": float(ev[mask_obs].sum()),
         "n_pupils": float(tr[mask_obs].sum())},
        {"estimand": "event_share_expected", "term": term, "estimate": float(est[0]),
         "std_error": float(se[0]), "conf_low": float(low[0]), "conf_high": float(high[0]),
         **base, "n_events": nan, "n_pupils": float(w[mask_model].sum())},
    ]
    return _frame(rows, _SHARE_EXTRA)


# =========================================================================== ladder
LADDER_COLUMNS: tuple[str, ...] = (
    "step", "step_label", "formula", "groups", "engine", "term", "level", "estimate",
    "std_error", "conf_low", "conf_high", "ci_prob", "group_effects", "standard", "note",
)


def _ladder_steps(spec: Any, steps: Sequence[Mapping[str, Any]] | None,
                  variable: str) -> list[dict[str, Any]]:
    from disparity.spec import formula_variables, group_term_names

    raw = list(spec.ladder if steps is None else steps)
    if not raw:
        raise SpecError(
            "no ladder steps: add [[ladder]] entries to the model file, each with a label and "
            "a formula, e.g.\n[[ladder]]\nlabel = \"ethnicity only\"\nformula = \"ethnicity\""
        )
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(raw, 1):
        where = f"[[ladder]] entry {i}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} is not a table (got {type(entry).__name__})")
            continue
        unknown = [k for k in entry if k not in LADDER_KEYS]
        if unknown:
            problems.append(f"{where} has unknown key(s) {unknown!r}; valid keys are "
                            f"{list(LADDER_KEYS)!r}")
        formula = entry.get("formula")
        if not isinstance(formula, str) or not formula.strip():
            problems.append(f"{where} needs a formula (a string such as \"ethnicity + sen\")")
            continue
        label = entry.get("label", formula)
        if not isinstance(label, str):
            problems.append(f"{where}: label must be a string, got {label!r}")
            continue
        try:
            variables = formula_variables(formula)
        except SpecError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if variable not in variables:
            problems.append(
                f"{where} ({label!r}): formula {formula!r} does not contain {variable!r}, "
                "whose rate ratios the ladder follows; add it"
            )
        groups = entry.get("groups", tuple(spec.groups))
        if isinstance(groups, str) or not all(isinstance(x, str) for x in groups):
            problems.append(f"{where}: groups must be a list of strings such as [\"la/school\"]")
            continue
        groups = tuple(groups)
        if "slopes" in entry:
            slopes = dict(entry["slopes"])
        else:
            names = set(group_term_names(groups))
            slopes = {v: g for v, g in spec.slopes.items() if v in variables and g in names}
        engine = entry.get("engine", spec.engine)
        if "engine" not in entry and engine == "ml" and not groups:
            engine = "glm"
        out.append({"label": label, "formula": formula, "groups": groups, "slopes": slopes,
                    "engine": engine})
    if problems:
        raise SpecError("the adjustment ladder has problems:\n"
                        + "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1)))
    return out


def adjustment_ladder(
    spec: Any,
    cells: pd.DataFrame,
    variable: str,
    steps: Sequence[Mapping[str, Any]] | None = None,
    *,
    group_effects: str = "observed",
    standard: str = "all",
    ci_prob: float | None = None,
    n_draws: int = 1000,
    seed: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Rate ratios of ``variable`` as adjustment is added step by step.

    Each step is fitted as ``spec.replace(formula=..., groups=..., slopes=..., engine=...)``
    and summarised by :func:`rate_ratios`; the table shows how the disparity changes as
    characteristics and units are added.

    Parameters
    ----------
    spec : ModelSpec
        The base model: family, events, trials, reference levels, priors, engine settings.
    cells : DataFrame
    variable : str
        The categorical variable whose rate ratios are followed (``"ethnicity"``); every
        step's formula must contain it.
    steps : sequence of mappings, optional
        Default ``spec.ladder`` (the model file's ``[[ladder]]`` entries). Keys:

        ``label`` (str)
            the step's name in the table (default: its formula);
        ``formula`` (str, required)
            the fixed effects of the step, e.g. ``"ethnicity + sen + fsm"``;
        ``groups`` (list of str, optional)
            its group terms as in ``[model] groups`` (default: the spec's; ``[]`` for none);
        ``slopes`` (table, optional)
            its varying slopes (default: the spec's slopes whose variable is in the step's
            formula and whose group term is in its groups);
        ``engine`` (str, optional)
            default the spec's; a step without groups whose engine would be ``"ml"`` is
            fitted with ``"glm"`` (the same maximum-likelihood fit without random effects).
    group_effects, standard, ci_prob, n_draws
        As in :func:`rate_ratios`.
    seed : int, optional
        Default ``spec.seed``.
    progress : bool
        Passed to the engines.

    Returns
    -------
    DataFrame
        One row per step and non-reference level, columns :data:`LADDER_COLUMNS`:
        ``step`` (1, 2, ...), ``step_label``, ``formula``, ``groups`` (as written, joined by
        ``" + "``), ``engine``, ``term``, ``level``, ``estimate``, ``std_error``,
        ``conf_low``, ``conf_high``, ``ci_prob``, ``group_effects``, ``standard`` and a
        ``note`` that SEN and CIN may be mediators rather than confounders
        (:data:`MEDIATOR_NOTE`).

    Examples
    --------
    >>> import pandas as pd
    >>> from disparity.spec import ModelSpec
    >>> cells = pd.DataFrame({"ethnicity": ["White British", "Black Caribbean"] * 2,
    ...                       "sen": ["none", "none", "ehcp", "ehcp"],
    ...                       "n_perm_excl": [10, 6, 8, 9], "n_pupils": [1000, 200, 100, 60]})
    >>> spec = ModelSpec(formula="ethnicity + sen", engine="glm")
    >>> steps = [{"label": "crude", "formula": "ethnicity"},
    ...          {"label": "+ SEN", "formula": "ethnicity + sen"}]
    >>> t = adjustment_ladder(spec, cells, "ethnicity", steps, n_draws=200)  # doctest: +SKIP
    >>> t.step_label.tolist()  # doctest: +SKIP
    ['crude', '+ SEN']
    """
    from disparity.design import build_design
    from disparity.engines import get_engine

    _check_choice(group_effects, GROUP_EFFECTS, "group_effects")
    _check_choice(standard, STANDARDS, "standard")
    parsed = _ladder_steps(spec, steps, variable)
    seed = int(spec.seed if seed is None else seed)
    rows: list[dict[str, Any]] = []
    for number, step in enumerate(parsed, 1):
        step_spec = spec.replace(formula=step["formula"], groups=step["groups"],
                                 slopes=step["slopes"], engine=step["engine"])
        design = build_design(step_spec, cells)
        fit = get_engine(step["engine"]).fit(design, step_spec, progress=progress)
        table = rate_ratios(fit, design, variable, group_effects=group_effects,
                            standard=standard, ci_prob=ci_prob, n_draws=n_draws, seed=seed)
        for record in table[table["estimand"] == "rate_ratio"].to_dict("records"):
            rows.append({
                "step": number, "step_label": step["label"], "formula": step["formula"],
                "groups": " + ".join(step["groups"]), "engine": step["engine"],
                "term": record["term"], "level": record["level"],
                "estimate": record["estimate"], "std_error": record["std_error"],
                "conf_low": record["conf_low"], "conf_high": record["conf_high"],
                "ci_prob": record["ci_prob"], "group_effects": group_effects,
                "standard": standard, "note": MEDIATOR_NOTE,
            })
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))


# --------------------------------------------------------------------------- by year
def _year_design(design: Any, year: str) -> Any:
    """The cells of one year of ``design`` (same columns, units and levels; fewer rows)."""
    keep = np.flatnonzero(design.data[YEAR].astype(str).to_numpy() == str(year))
    groups = tuple(replace(g, index=np.asarray(g.index)[keep]) for g in design.groups)
    return replace(design, X=np.asarray(design.X)[keep], events=np.asarray(design.events)[keep],
                   trials=np.asarray(design.trials)[keep], groups=groups,
                   data=design.data.iloc[keep].reset_index(drop=True))


def interacts_with_year(design: Any, variable: str) -> bool:
    """Whether the formula lets ``variable``'s effect differ by year (``variable * year``)."""
    if variable == YEAR or YEAR not in design.levels:
        return False
    return any(":" in term and f"{variable}[" in term and f"{YEAR}[" in term
               for term in design.terms)


def rate_ratios_by_year(fit: Fit, design: Design, variable: str, *,
                        group_effects: str = "observed", standard: str = "all",
                        **common: Any) -> pd.DataFrame:
    """Standardised rate ratios of ``variable`` within each year, when it interacts with year.

    Each year's ratio is :func:`rate_ratios` over that year's cells only, so with a log link
    and no other covariates it equals ``exp(b_level + b_level:year)``. Rows are those of
    :func:`rate_ratios` with ``estimand`` ending ``_by_year`` and a ``year`` column.
    """
    parts = []
    for year in design.levels[YEAR]:
        rr = rate_ratios(fit, _year_design(design, year), variable,
                         group_effects=group_effects, standard=standard, **common)
        parts.append(rr.assign(estimand=rr["estimand"] + "_by_year", year=str(year)))
    return pd.concat(parts, ignore_index=True)
