"""Seeded synthetic national pupils with a known truth.

:func:`simulate_pupils` draws a pupils table in the canonical layout of
:mod:`disparity.vocabulary` (one row per pupil-year) from a hierarchical model whose
parameters are returned with it, named as patsy names the columns of a fitted model
(``"ethnicity[T.Black Caribbean]"``), so a fit can be compared with the truth term by term.

The generative story, in order:

1. **Local authorities** (``LA001`` ...) get a size, a deprivation level and their own
   ethnic composition, drawn from a Dirichlet distribution centred on the national shares
   of 2016/17 (:data:`ETHNICITY_HEADCOUNT_2016_17`).
2. **Schools** (``S00001`` ...) are nested in LAs: each school belongs to exactly one LA.
   About 17 % are secondary (years 7 to 11, about 3.4 times the roll of a primary school),
   the rest primary (reception to year 6). With ``n_trusts > 0`` about 35 % of primary and
   75 % of secondary schools join a multi-academy **trust** (``T0001`` ...); trusts draw most
   of their schools from a home LA and some from anywhere, so trusts span LAs. Other schools
   are standalone: their ``trust`` is missing (not a level: standalone schools do not form one
   big trust) and they get no trust effect; ``truth["trusts"]`` lists each trust's schools.
3. **Pupils** get a school (multinomial over school sizes), a national-curriculum year for
   the school's phase, a sex, an ethnicity from their LA's composition, then FSM
   (logistic in school and pupil deprivation and ethnicity), SEN (multinomial logistic in sex
   and FSM) and CIN (logistic in FSM and SEN). This gives FSM about 15 %, SEN support about
   12 %, EHC plans about 3 % and CIN about 3 %, correlated as in the census.
4. **Outcomes**, each from its own linear predictor

   ``eta = Intercept + ethnicity + sen + fsm + cin + sex [+ nc_year] [+ year]
   + u_la + u_school [+ u_trust] [+ v_la,ethnicity]``

   with ``u_la ~ N(0, sd_la)``, ``u_school ~ N(0, sd_school)``, ``u_trust ~ N(0, sd_trust)``
   (defaults 0.25, 0.6 and 0.3; drawn separately for each of the two linear predictors) and
   optional LA-varying ethnicity deviations ``v ~ N(0, la_varying_ethnicity_sd)``:

   * ``perm_excl ~ Bernoulli(logit^-1(eta_perm))``, about 0.1 % overall;
   * ``any_susp ~ Bernoulli(logit^-1(eta_susp))``, about 2-3 % overall;
   * ``n_susp = 0`` when ``any_susp = 0``; otherwise ``n_susp = 1 + Y`` with
     ``Y ~ NegBin(mean m, dispersion alpha)`` (variance ``m + alpha m^2``) and
     ``m = k (1 + exp(eta_susp)) - 1``. Then ``E[n_susp] = k exp(eta_susp)`` exactly: the
     count follows a log-link mean model with the coefficients of ``any_susp`` and intercept
     ``Intercept + log(k)`` (``k`` = :attr:`Truth.susp_per_suspended`, about 2.1 suspensions
     per suspended pupil as in 2016/17), overdispersed. A Poisson or negative-binomial
     model with offset ``log(n_pupils)`` estimates these log rate ratios consistently; its
     dispersion parameter is not a truth parameter.

The truth's coefficients are conditional on the group effects (subject-specific): a model
without the school and LA terms estimates attenuated odds ratios unless the group SDs are 0.

References
----------
Department for Education (2018). *Permanent and fixed-period exclusions in England:
2016 to 2017*, national tables by pupil characteristic (shares of pupils by ethnicity,
FSM, SEN; rates used to set plausible baselines).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from . import config
from .errors import DisparityError
from .vocabulary import (
    ANY_SUSP,
    CHARACTERISTICS,
    CIN,
    CIN_LEVELS,
    ETHNICITY,
    ETHNICITY_LEVELS,
    FSM,
    FSM_LEVELS,
    LA,
    LEVELS,
    N_SUSP,
    NC_YEAR,
    PERM_EXCL,
    PUPIL_ID,
    REFERENCE,
    SCHOOL,
    SEN,
    SEN_LEVELS,
    SEX,
    SEX_LEVELS,
    TRUST,
    YEAR,
)

__all__ = [
    "ETHNICITY_HEADCOUNT_2016_17",
    "ETHNICITY_SHARES",
    "NC_YEAR_LEVELS",
    "NC_YEAR_EFFECTS",
    "Truth",
    "LaterOutcomes",
    "OffRollingTruth",
    "Simulation",
    "simulate_off_rolling",
    "simulate_pupils",
    "year_label",
]

# --------------------------------------------------------------------------- constants
#: Pupils by DfE minor ethnic group, England, 2016/17 (headcount, rounded to 5 by DfE).
#: Source: DfE "Permanent and fixed-period exclusions in England: 2016 to 2017", underlying
#: data exclusions_by_characteristic_national.csv (time_period 201617, school_type Total,
#: characteristic_group Ethnicity). Shares are these over their total (8,025,085).
ETHNICITY_HEADCOUNT_2016_17: Mapping[str, int] = MappingProxyType(
    {
        "White British": 5439960,
        "Irish": 23295,
        "Traveller of Irish heritage": 5810,
        "Gypsy/Roma": 25565,
        "Any other White background": 489975,
        "White and Black Caribbean": 119645,
        "White and Black African": 59580,
        "White and Asian": 105120,
        "Any other Mixed background": 163470,
        "Indian": 238345,
        "Pakistani": 349980,
        "Bangladeshi": 139075,
        "Any other Asian background": 144520,
        "Black Caribbean": 92595,
        "Black African": 300635,
        "Any other Black background": 59345,
        "Chinese": 35130,
        "Any other ethnic group": 146855,
        "Unclassified": 86185,
    }
)
_ETH_COUNTS = np.array([ETHNICITY_HEADCOUNT_2016_17[e] for e in ETHNICITY_LEVELS], dtype=float)
#: National share of each ethnic group (White British about 0.678), in ETHNICITY_LEVELS order.
ETHNICITY_SHARES: Mapping[str, float] = MappingProxyType(
    dict(zip(ETHNICITY_LEVELS, (_ETH_COUNTS / _ETH_COUNTS.sum()).tolist()))
)

#: National-curriculum years simulated: reception and years 1 to 11.
NC_YEAR_LEVELS: tuple[str, ...] = ("R", *(str(i) for i in range(1, 12)))
_PRIMARY_YEARS = 7  # R..6
_SECONDARY_YEARS = 5  # 7..11

#: Optional nc_year log-odds effects relative to reception (use with Truth.with_nc_year):
#: roughly log(rate in year / rate in reception) of the 2016/17 national rates (DfE, as above).
NC_YEAR_EFFECTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        PERM_EXCL: MappingProxyType(
            dict(zip(NC_YEAR_LEVELS[1:], (0.8, 1.0, 1.3, 1.6, 1.6, 1.6, 2.6, 3.2, 3.5, 3.7, 2.9)))
        ),
        ANY_SUSP: MappingProxyType(
            dict(zip(NC_YEAR_LEVELS[1:], (0.6, 0.8, 1.1, 1.3, 1.5, 1.7, 2.7, 3.1, 3.4, 3.5, 3.1)))
        ),
    }
)

_OUTCOMES_BINARY = (PERM_EXCL, ANY_SUSP)


def _frozen(d: Mapping[str, Mapping[str, float]]) -> Mapping[str, Mapping[str, float]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in d.items()})


_PERM_EFFECTS = {
    ETHNICITY: {
        "Irish": 0.1,
        "Traveller of Irish heritage": 0.9,
        "Gypsy/Roma": 0.9,
        "Any other White background": -0.4,
        "White and Black Caribbean": 0.6,
        "White and Black African": 0.1,
        "White and Asian": -0.1,
        "Any other Mixed background": 0.1,
        "Indian": -1.2,
        "Pakistani": -0.6,
        "Bangladeshi": -0.9,
        "Any other Asian background": -1.0,
        "Black Caribbean": 0.5,
        "Black African": -0.3,
        "Any other Black background": 0.2,
        "Chinese": -1.5,
        "Any other ethnic group": -0.4,
        "Unclassified": 0.4,
    },
    SEN: {"support": 1.2, "ehcp": 1.0},
    FSM: {"yes": 0.9},
    CIN: {"yes": 1.0},
    SEX: {"male": 1.0},
}
_SUSP_EFFECTS = {
    ETHNICITY: {
        "Irish": 0.05,
        "Traveller of Irish heritage": 1.0,
        "Gypsy/Roma": 1.0,
        "Any other White background": -0.4,
        "White and Black Caribbean": 0.5,
        "White and Black African": 0.05,
        "White and Asian": -0.15,
        "Any other Mixed background": 0.0,
        "Indian": -1.1,
        "Pakistani": -0.4,
        "Bangladeshi": -0.6,
        "Any other Asian background": -0.8,
        "Black Caribbean": 0.45,
        "Black African": -0.25,
        "Any other Black background": 0.1,
        "Chinese": -1.4,
        "Any other ethnic group": -0.3,
        "Unclassified": 0.35,
    },
    SEN: {"support": 1.1, "ehcp": 1.0},
    FSM: {"yes": 0.8},
    CIN: {"yes": 0.9},
    SEX: {"male": 0.85},
}


def year_label(start: int) -> str:
    """Academic-year label of the year starting in ``start``.

    Examples
    --------
    >>> year_label(2016)
    '2016/17'
    """
    return f"{start}/{(start + 1) % 100:02d}"


# --------------------------------------------------------------------------- truth
@dataclass(frozen=True)
class Truth:
    """Generating parameters of :func:`simulate_pupils` (change one with ``dataclasses.replace``).

    Attributes
    ----------
    intercept : mapping
        Intercept of each binary outcome's linear predictor (log-odds of the reference
        pupil: White British, no SEN, no FSM, not CIN, female, in the first year, with all
        group effects 0).
    effects : mapping
        ``{outcome: {variable: {level: log-odds ratio vs the reference level}}}``. Levels
        left out have effect 0.
    sd_la, sd_school, sd_trust : float
        Standard deviations of the normal LA, school and trust intercepts (logit scale).
    year_trend : float
        Change in every linear predictor per academic year after the first.
    nc_year : mapping or None
        ``{outcome: {nc_year: effect vs reception}}``; ``None`` for no nc_year effect.
    susp_per_suspended : float
        ``k`` in ``E[n_susp] = k exp(eta_susp)``: suspensions per suspended pupil where
        suspension is rare (2.08 in England, 2016/17). At least 1.
    susp_dispersion : float
        ``alpha`` of the negative-binomial extra suspensions (variance ``m + alpha m^2``).
    ethnicity_concentration : float
        Dirichlet concentration of LA ethnic compositions around the national shares
        (smaller: LAs differ more); ``math.inf`` gives every LA the national shares.

    Examples
    --------
    >>> t = Truth()
    >>> t.effects["perm_excl"]["ethnicity"]["Black Caribbean"]
    0.5
    >>> dataclasses.replace(t, sd_la=0.0, sd_school=0.0).sd_school
    0.0
    """

    intercept: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({PERM_EXCL: -8.35, ANY_SUSP: -4.98})
    )
    effects: Mapping[str, Mapping[str, Mapping[str, float]]] = field(
        default_factory=lambda: MappingProxyType(
            {PERM_EXCL: _frozen(_PERM_EFFECTS), ANY_SUSP: _frozen(_SUSP_EFFECTS)}
        )
    )
    sd_la: float = 0.25
    sd_school: float = 0.6
    sd_trust: float = 0.3
    year_trend: float = 0.05
    nc_year: Mapping[str, Mapping[str, float]] | None = None
    susp_per_suspended: float = 2.08
    susp_dispersion: float = 1.5
    ethnicity_concentration: float = 40.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("sd_la", "sd_school", "sd_trust", "susp_dispersion"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                problems.append(f"{name} must be a finite number >= 0, got {v!r}")
        if not self.susp_per_suspended >= 1:
            problems.append(f"susp_per_suspended must be >= 1, got {self.susp_per_suspended!r}")
        if not self.ethnicity_concentration > 0:
            problems.append("ethnicity_concentration must be > 0 (math.inf for no LA variation)")
        for o in _OUTCOMES_BINARY:
            if o not in self.intercept or o not in self.effects:
                problems.append(f"intercept and effects need an entry for {o!r}")
        valid = {ETHNICITY: ETHNICITY_LEVELS, SEN: SEN_LEVELS, FSM: FSM_LEVELS,
                 CIN: CIN_LEVELS, SEX: SEX_LEVELS}
        for o, by_var in self.effects.items():
            for var, levels in by_var.items():
                if var not in valid:
                    problems.append(
                        f"effects[{o!r}] names variable {var!r}; valid: {', '.join(valid)}"
                    )
                    continue
                bad = [lv for lv in levels if lv not in valid[var]]
                if bad:
                    problems.append(
                        f"effects[{o!r}][{var!r}] has unknown levels {bad}; valid: "
                        f"{', '.join(valid[var])}"
                    )
                if levels.get(REFERENCE[var], 0.0) != 0.0:
                    problems.append(
                        f"effects[{o!r}][{var!r}] gives the reference level "
                        f"{REFERENCE[var]!r} a non-zero effect"
                    )
        if problems:
            raise DisparityError("invalid Truth: " + "; ".join(problems))

    @classmethod
    def with_nc_year(cls, **kwargs: Any) -> "Truth":
        """Truth with :data:`NC_YEAR_EFFECTS`, intercepts lowered to keep overall rates.

        Examples
        --------
        >>> t = Truth.with_nc_year()
        >>> t.nc_year["perm_excl"]["9"]
        3.5
        >>> t.intercept["perm_excl"] < Truth().intercept["perm_excl"]
        True
        """
        base = cls(**kwargs)
        # share of pupils in each nc_year: primary ~58 % over 7 years, secondary ~42 % over 5
        w = np.r_[np.full(_PRIMARY_YEARS, 0.58 / _PRIMARY_YEARS),
                  np.full(_SECONDARY_YEARS, 0.42 / _SECONDARY_YEARS)]
        intercept = {}
        for o in _OUTCOMES_BINARY:
            eff = np.r_[0.0, [NC_YEAR_EFFECTS[o][y] for y in NC_YEAR_LEVELS[1:]]]
            intercept[o] = base.intercept[o] - math.log(float(np.sum(w * np.exp(eff))))
        return dataclasses.replace(
            base, nc_year=NC_YEAR_EFFECTS, intercept=MappingProxyType(intercept)
        )


# --------------------------------------------------------------------------- later outcomes
#: Outcomes after exclusion, drawn for pupils in year 11 with ``later_outcomes``.
GOOD_GCSE = "good_gcse"
NEET_16_17 = "neet_16_17"
#: A pupil's exclusion history in the year (permanent exclusion overrides suspension).
EXCLUSION_HISTORY = "exclusion_history"
EXCLUSION_HISTORY_LEVELS: tuple[str, ...] = ("none", "suspended", "permanent")
#: Placed in alternative provision (AP, a PRU or other AP) during the year.
ALT_PROVISION = "alt_provision"
ALT_PROVISION_LEVELS: tuple[str, ...] = ("no", "yes")
_LATER_LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {**LEVELS, EXCLUSION_HISTORY: EXCLUSION_HISTORY_LEVELS, ALT_PROVISION: ALT_PROVISION_LEVELS}
)
_LATER_REFERENCE: Mapping[str, str] = MappingProxyType(
    {**REFERENCE, EXCLUSION_HISTORY: "none", ALT_PROVISION: "no"}
)

_GCSE_EFFECTS = {
    ETHNICITY: {
        "Irish": 0.2, "Traveller of Irish heritage": -1.6, "Gypsy/Roma": -1.5,
        "White and Black Caribbean": -0.3, "White and Black African": 0.1,
        "White and Asian": 0.3, "Any other Mixed background": 0.1, "Indian": 0.7,
        "Bangladeshi": 0.3, "Any other Asian background": 0.5, "Black Caribbean": -0.3,
        "Black African": 0.2, "Any other Black background": -0.1, "Chinese": 1.2,
        "Any other ethnic group": 0.1, "Unclassified": -0.3,
    },
    SEN: {"support": -1.5, "ehcp": -2.6},
    FSM: {"yes": -0.9},
    CIN: {"yes": -1.1},
    SEX: {"male": -0.3},
    EXCLUSION_HISTORY: {"suspended": -1.0, "permanent": -1.8},
    ALT_PROVISION: {"yes": -1.6},
}
_NEET_EFFECTS = {
    ETHNICITY: {
        "Traveller of Irish heritage": 1.0, "Gypsy/Roma": 1.0, "White and Black Caribbean": 0.2,
        "Indian": -0.8, "Pakistani": -0.3, "Bangladeshi": -0.5,
        "Any other Asian background": -0.6, "Black African": -0.4, "Chinese": -0.9,
        "Any other White background": -0.3,
    },
    SEN: {"support": 0.6, "ehcp": 0.9},
    FSM: {"yes": 0.7},
    CIN: {"yes": 0.9},
    SEX: {"male": 0.15},
    EXCLUSION_HISTORY: {"suspended": 0.6, "permanent": 1.0},
    ALT_PROVISION: {"yes": 1.1},
}


@dataclass(frozen=True)
class LaterOutcomes:
    """How the outcomes after exclusion are drawn (``simulate_pupils(later_outcomes=...)``).

    For every pupil, ``exclusion_history`` is ``"permanent"`` if permanently excluded in the
    year, else ``"suspended"`` if suspended at least once, else ``"none"``; and
    ``alt_provision`` is ``"yes"`` with probability ``ap_after_permanent`` for a permanently
    excluded pupil, else with probability ``expit(ap_intercept + ap_effects . x)`` (``x``:
    suspended, any SEN, FSM, CIN indicators). For pupils in year 11, ``good_gcse`` (a good
    pass in English and maths) and ``neet_16_17`` (not in education, employment or training
    at 16-17) are Bernoulli with logit
    ``intercept + characteristics + exclusion_history + alt_provision + u_la + u_school``,
    ``u ~ N(0, sd)`` drawn separately for each outcome. Other pupils' later outcomes are
    missing.

    In these data the effects are causal by construction. In real data the same model
    estimates associations only: pupils who are excluded or placed in AP differ in ways no
    recorded characteristic captures, and the Timpson Review (2019) found no evidence that
    exclusion causes later harms such as crime.

    Attributes
    ----------
    intercept : mapping
        ``{"good_gcse": ..., "neet_16_17": ...}`` log-odds of the reference pupil.
    effects : mapping
        ``{outcome: {variable: {level: log-odds ratio}}}``; variables are the pupil
        characteristics, ``exclusion_history`` and ``alt_provision``.
    sd_la, sd_school : float
    ap_after_permanent : float
    ap_intercept : float
    ap_effects : mapping
        ``{"suspended": ..., "sen": ..., "fsm": ..., "cin": ...}`` log-odds shifts of AP
        placement for pupils not permanently excluded.

    Examples
    --------
    >>> LaterOutcomes().effects["good_gcse"]["exclusion_history"]["permanent"]
    -1.8
    """

    intercept: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({GOOD_GCSE: 1.2, NEET_16_17: -3.3}))
    effects: Mapping[str, Mapping[str, Mapping[str, float]]] = field(
        default_factory=lambda: MappingProxyType(
            {GOOD_GCSE: _frozen(_GCSE_EFFECTS), NEET_16_17: _frozen(_NEET_EFFECTS)}))
    sd_la: float = 0.15
    sd_school: float = 0.35
    ap_after_permanent: float = 0.9
    ap_intercept: float = -6.0
    ap_effects: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(
            {"suspended": 2.0, SEN: 0.7, FSM: 0.5, CIN: 0.6}))

    def __post_init__(self) -> None:
        problems = []
        for name in ("sd_la", "sd_school"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                problems.append(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 <= self.ap_after_permanent <= 1:
            problems.append(f"ap_after_permanent must lie in [0, 1], got "
                            f"{self.ap_after_permanent!r}")
        for o in (GOOD_GCSE, NEET_16_17):
            if o not in self.intercept or o not in self.effects:
                problems.append(f"intercept and effects need an entry for {o!r}")
                continue
            for var, levels in self.effects[o].items():
                if var not in _LATER_LEVELS:
                    problems.append(f"effects[{o!r}] names variable {var!r}; valid: "
                                    f"{', '.join(_LATER_LEVELS)}")
                    continue
                bad = [lv for lv in levels if lv not in _LATER_LEVELS[var]]
                if bad or levels.get(_LATER_REFERENCE[var], 0.0) != 0.0:
                    problems.append(f"effects[{o!r}][{var!r}]: levels must be among "
                                    f"{', '.join(_LATER_LEVELS[var])}, the reference "
                                    f"{_LATER_REFERENCE[var]!r} with effect 0")
        unknown = [k for k in self.ap_effects if k not in ("suspended", SEN, FSM, CIN)]
        if unknown:
            problems.append(f"ap_effects names {unknown}; valid: suspended, sen, fsm, cin")
        if problems:
            raise DisparityError("invalid LaterOutcomes: " + "; ".join(problems))


def _later_outcomes(later: LaterOutcomes, seed: int, parts: Mapping[str, np.ndarray],
                    school_la: np.ndarray, n_las: int, n_schools: int,
                    ) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Exclusion history, AP placement and year-11 outcomes, from a stream of their own.

    The draws use ``SeedSequence(seed, spawn_key=(1,))``, so the other columns are the same
    as without ``later_outcomes``.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    effects = {o: {LA: rng.normal(0.0, later.sd_la, n_las),
                   SCHOOL: rng.normal(0.0, later.sd_school, n_schools)}
               for o in (GOOD_GCSE, NEET_16_17)}
    perm = parts[PERM_EXCL].astype(bool)
    history = np.where(perm, 2, parts[ANY_SUSP].astype(np.int8)).astype(np.int8)
    x = {"suspended": history == 1, SEN: parts["sen"] > 0, FSM: parts["fsm"] == 1,
         CIN: parts["cin"] == 1}
    eta = np.full(perm.size, later.ap_intercept)
    for k, b in later.ap_effects.items():
        eta += b * x[k]
    u = rng.random(perm.size)
    ap = np.where(perm, u < later.ap_after_permanent, u < _expit(eta)).astype(np.int8)
    codes = {ETHNICITY: parts["eth"], SEN: parts["sen"], FSM: parts["fsm"], CIN: parts["cin"],
             SEX: parts["sex"], EXCLUSION_HISTORY: history, ALT_PROVISION: ap}
    year11 = parts["nc"] == NC_YEAR_LEVELS.index("11")
    school = parts["school"]
    columns: dict[str, Any] = {
        EXCLUSION_HISTORY: pd.Categorical.from_codes(history,
                                                     categories=list(EXCLUSION_HISTORY_LEVELS)),
        ALT_PROVISION: pd.Categorical.from_codes(ap, categories=list(ALT_PROVISION_LEVELS)),
    }
    for o in (GOOD_GCSE, NEET_16_17):
        eta = np.full(int(year11.sum()), float(later.intercept[o]))
        for var, c in codes.items():
            eta += _lookup(_LATER_LEVELS[var], later.effects[o].get(var, {}))[c[year11]]
        eta += effects[o][LA][school_la[school[year11]]] + effects[o][SCHOOL][school[year11]]
        drawn = (rng.random(eta.size) < _expit(eta)).astype(np.int8)
        values = pd.array(np.zeros(perm.size, dtype=np.int8), dtype="Int8")
        values[year11] = drawn
        values[~year11] = pd.NA
        columns[o] = values
    return columns, effects


def _later_truth(later: LaterOutcomes, effects: Mapping[str, Mapping[str, np.ndarray]],
                 n_las: int, n_schools: int) -> dict[str, Any]:
    la_labels = _codes_labels("LA", n_las, 3)
    school_labels = _codes_labels("S", n_schools, 5)
    terms = [ETHNICITY, SEN, FSM, CIN, SEX, EXCLUSION_HISTORY, ALT_PROVISION]
    out: dict[str, Any] = {}
    for o in (GOOD_GCSE, NEET_16_17):
        e = effects[o]
        out[o] = {
            "family": "binomial",
            "link": "logit",
            "population": "pupils in nc_year 11 (missing for every other pupil)",
            "formula": f"{o} ~ " + " + ".join(terms + ["(1 | la)", "(1 | school)"]),
            "coefficients": _patsy_coefficients(later.intercept[o], later.effects[o],
                                                _LATER_LEVELS, _LATER_REFERENCE),
            "group_sd": {LA: float(later.sd_la), SCHOOL: float(later.sd_school)},
            "realised_sd": {k: float(np.std(e[k], ddof=1)) if e[k].size > 1 else None
                            for k in (LA, SCHOOL)},
            "effects": {LA: _effects_json(e[LA], la_labels),
                        SCHOOL: _effects_json(e[SCHOOL], school_labels)},
        }
    out[ALT_PROVISION] = {
        "model": (
            "alt_provision = yes with probability ap_after_permanent for a permanently "
            "excluded pupil, else with probability expit(ap_intercept + ap_effects . x), x = "
            "indicators of suspended (exclusion_history), any SEN, FSM and CIN"),
        "ap_after_permanent": float(later.ap_after_permanent),
        "ap_intercept": float(later.ap_intercept),
        "ap_effects": {k: float(v) for k, v in later.ap_effects.items()},
    }
    out["later_outcomes_note"] = (
        "good_gcse and neet_16_17 depend on exclusion_history and alt_provision through the "
        "coefficients above, so in these synthetic data the adjusted gaps are causal by "
        "construction. In real data a model of the same form estimates associations, not "
        "effects of exclusion: the Timpson Review (2019) found no evidence that exclusion "
        "causes crime."
    )
    return out


# --------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class Simulation:
    """A simulated pupils table and the truth it was drawn from.

    Attributes
    ----------
    pupils : DataFrame
        Canonical pupils table (categorical characteristics, int8 binary outcomes, int32
        ``n_susp``, int64 ``pupil_id`` unique over all rows; years are independent
        cross-sections, so ids are not linked across years).
    truth : dict
        JSON-serialisable: ``seed``, ``arguments``, ``reference`` levels, and for each
        outcome its ``family``, ``link``, patsy-named ``coefficients``, ``group_sd``,
        realised group ``effects`` (``{"la": {code: value}, "school": ..., "trust": ...}``),
        their ``realised_sd`` and, where drawn, ``la_varying`` ethnicity deviations.
    """

    pupils: pd.DataFrame
    truth: dict

    def unit_effects(self, outcome: str, term: str) -> pd.Series:
        """Realised effects of one group term (``"la"``, ``"school"``, ``"trust"``) as a Series.

        Examples
        --------
        >>> sim = simulate_pupils(2_000, n_schools=10, n_las=2, seed=1)
        >>> sim.unit_effects("perm_excl", "la").index.tolist()
        ['LA001', 'LA002']
        """
        try:
            effects = self.truth[outcome]["effects"][term]
        except KeyError:
            terms = list(self.truth.get(outcome, {}).get("effects", {}))
            raise KeyError(
                f"no effects for outcome {outcome!r}, term {term!r}; terms: {terms}"
            ) from None
        return pd.Series(effects, name=f"{outcome}:{term}", dtype=float)

    def write(self, pupils_path: str | Path, truth_path: str | Path) -> None:
        """Write the pupils (``.parquet`` or ``.csv``) and the truth (JSON).

        Examples
        --------
        >>> import tempfile, os
        >>> sim = simulate_pupils(500, n_schools=5, n_las=2, seed=1)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sim.write(os.path.join(d, "pupils.csv"), os.path.join(d, "truth.json"))
        ...     len(pd.read_csv(os.path.join(d, "pupils.csv")))
        500
        """
        pupils_path, truth_path = Path(pupils_path), Path(truth_path)
        if pupils_path.suffix == ".parquet":
            self.pupils.to_parquet(pupils_path, index=False)
        elif pupils_path.suffix == ".csv":
            self.pupils.to_csv(pupils_path, index=False)
        else:
            raise DisparityError(
                f"cannot write pupils to {str(pupils_path)!r}: use a .parquet or .csv name"
            )
        truth_path.write_text(json.dumps(self.truth, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- simulation
#: FSM log-odds shifts by ethnicity (composition only, not part of any outcome model).
_FSM_ETHNICITY_SHIFTS: Mapping[str, float] = MappingProxyType(
    {"Traveller of Irish heritage": 1.6, "Gypsy/Roma": 1.4, "White and Black Caribbean": 0.8,
     "Black Caribbean": 0.6, "Black African": 0.4, "Bangladeshi": 0.5, "Pakistani": 0.3,
     "Any other ethnic group": 0.4, "Indian": -0.9, "Chinese": -0.7,
     "Any other White background": -0.3}
)


class _Places(NamedTuple):
    """LAs and the schools nested in them (schools sorted by LA)."""

    la_weight: np.ndarray
    la_shares: np.ndarray
    school_la: np.ndarray
    secondary: np.ndarray
    size: np.ndarray
    school_dep: np.ndarray


def _draw_places(rng: np.random.Generator, n_las: int, n_schools: int,
                 ethnicity_concentration: float, secondary_share: float = 0.17) -> _Places:
    """LAs (size, deprivation, ethnic composition) and schools nested in them."""
    shares = np.array([ETHNICITY_SHARES[e] for e in ETHNICITY_LEVELS])
    la_weight = rng.lognormal(0.0, 0.5, n_las)
    la_dep = rng.normal(0.0, 0.35, n_las)
    if math.isinf(ethnicity_concentration):
        la_shares = np.tile(shares, (n_las, 1))
    else:
        la_shares = rng.dirichlet(ethnicity_concentration * shares, size=n_las)
        la_shares /= la_shares.sum(axis=1, keepdims=True)
    n_first = min(n_las, n_schools)
    school_la = np.r_[
        np.arange(n_first), rng.choice(n_las, n_schools - n_first, p=la_weight / la_weight.sum())
    ]
    school_la.sort()
    secondary = rng.random(n_schools) < secondary_share
    size = np.where(secondary, 3.4 * rng.lognormal(0.0, 0.35, n_schools),
                    rng.lognormal(0.0, 0.45, n_schools))
    school_dep = la_dep[school_la] + rng.normal(0.0, 0.5, n_schools)
    return _Places(la_weight, la_shares, school_la, secondary, size, school_dep)


def _draw_characteristics(rng: np.random.Generator, school: np.ndarray, la: np.ndarray,
                          school_dep: np.ndarray, la_shares: np.ndarray,
                          fsm_eth: np.ndarray) -> dict[str, np.ndarray]:
    """Sex, ethnicity, FSM, SEN and CIN codes of pupils sorted by school (schools by LA)."""
    n = school.size
    sex = (rng.random(n) < 0.51).astype(np.int8)  # 1 = male
    # ethnicity from the LA's composition
    eth = np.empty(n, dtype=np.int8)
    bounds = np.searchsorted(la, np.arange(la_shares.shape[0] + 1))
    for j in range(la_shares.shape[0]):
        lo, hi = bounds[j], bounds[j + 1]
        if hi > lo:
            eth[lo:hi] = rng.choice(la_shares.shape[1], hi - lo, p=la_shares[j])
    # FSM: school and pupil deprivation, ethnicity
    x = rng.standard_normal(n)
    x += school_dep[school]
    x *= 1.1
    x += -2.25 + fsm_eth[eth]
    fsm = (rng.random(n) < _expit(x)).astype(np.int8)
    # SEN: multinomial logistic in sex and FSM (none / support / ehcp)
    l_sup = np.exp(-2.45 + 0.55 * sex + 0.75 * fsm)
    l_ehc = np.exp(-4.05 + 0.9 * sex + 0.6 * fsm)
    denom = 1.0 + l_sup + l_ehc
    u = rng.random(n) * denom
    sen = ((u > 1.0).astype(np.int8) + (u > 1.0 + l_sup)).astype(np.int8)
    del l_sup, l_ehc, denom, u
    # CIN: FSM and SEN
    x = -4.15 + 1.5 * fsm + 0.9 * (sen > 0)
    cin = (rng.random(n) < _expit(x)).astype(np.int8)
    return {"eth": eth, "sen": sen, "fsm": fsm, "cin": cin, "sex": sex}


def _expit(x: np.ndarray) -> np.ndarray:
    out = np.negative(x)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _lookup(levels: tuple[str, ...], effects: Mapping[str, float]) -> np.ndarray:
    return np.array([float(effects.get(lv, 0.0)) for lv in levels])


def _codes_labels(prefix: str, n: int, width: int) -> list[str]:
    return [f"{prefix}{i:0{width}d}" for i in range(1, n + 1)]


_FSM_ETHNICITY = _lookup(ETHNICITY_LEVELS, _FSM_ETHNICITY_SHIFTS)


def simulate_pupils(
    n_pupils: int = 100_000,
    n_schools: int = 500,
    n_las: int = 20,
    *,
    n_years: int = 1,
    n_trusts: int = 0,
    seed: int = config.SEED,
    truth: Truth | None = None,
    la_varying_ethnicity_sd: float = 0.0,
    first_year: int = 2016,
    later_outcomes: bool | LaterOutcomes = False,
) -> Simulation:
    """Simulate a national pupils table with known hierarchical exclusion models.

    Parameters
    ----------
    n_pupils : int
        Pupils per academic year.
    n_schools : int
        Schools, nested in LAs (every LA gets at least one school when
        ``n_schools >= n_las``).
    n_las : int
        Local authorities.
    n_years : int
        Academic years from ``first_year`` (``"2016/17"``, ...); each year is a fresh
        cross-section of pupils in the same schools, with the same group effects and a linear
        ``year_trend``.
    n_trusts : int
        Multi-academy trusts (0: no ``trust`` column and no trust effect).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same arguments and seed give the same
        frame and truth.
    truth : Truth, optional
        Generating parameters; default :class:`Truth` (``sd_la = 0.25``,
        ``sd_school = 0.6``, ``sd_trust = 0.3`` on the logit scale).
    la_varying_ethnicity_sd : float
        SD of LA-specific deviations of every non-reference ethnicity effect (0: none).
    first_year : int
        Calendar year in which the first academic year starts.
    later_outcomes : bool or LaterOutcomes
        Add ``exclusion_history``, ``alt_provision`` and, for pupils in year 11,
        ``good_gcse`` and ``neet_16_17`` (nullable ``Int8``, missing for other pupils),
        drawn as :class:`LaterOutcomes` says (``True``: its defaults), with their truth
        under the same names. They come from a random stream of their own: every other
        column is the same as without them.

    Returns
    -------
    Simulation
        ``pupils`` and the JSON-serialisable ``truth`` (see the module docstring for the
        model). ``truth[o]["coefficients"]`` is keyed by patsy term names, e.g.
        ``"Intercept"``, ``"ethnicity[T.Black Caribbean]"``, ``"sen[T.support]"``,
        ``"fsm[T.yes]"``, ``"year[T.2017/18]"``.

    Notes
    -----
    Eight million pupils in 20,000 schools take about ten seconds and under 2 GB.

    References
    ----------
    Goldstein, H. (2011). *Multilevel Statistical Models*, 4th ed., chapter 4 (multilevel
    generalised linear models). Wiley.

    Examples
    --------
    >>> sim = simulate_pupils(10_000, n_schools=40, n_las=4, seed=7)
    >>> sim.pupils.shape
    (10000, 13)
    >>> sim.truth["perm_excl"]["coefficients"]["ethnicity[T.Black Caribbean]"]
    0.5
    >>> sim.truth["perm_excl"]["group_sd"]
    {'la': 0.25, 'school': 0.6}
    """
    truth = Truth() if truth is None else truth
    problems = []
    for name, v, low in (("n_pupils", n_pupils, 0), ("n_schools", n_schools, 1),
                         ("n_las", n_las, 1), ("n_years", n_years, 1), ("n_trusts", n_trusts, 0)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            problems.append(f"{name} must be a whole number >= {low}, got {v!r}")
    if not isinstance(later_outcomes, (bool, LaterOutcomes)):
        problems.append(f"later_outcomes must be True, False or a LaterOutcomes, got "
                        f"{later_outcomes!r}")
    if not (la_varying_ethnicity_sd >= 0 and math.isfinite(la_varying_ethnicity_sd)):
        problems.append(f"la_varying_ethnicity_sd must be >= 0, got {la_varying_ethnicity_sd!r}")
    if problems:
        raise DisparityError("simulate_pupils: " + "; ".join(problems))

    rng = np.random.default_rng(seed)
    n_eth = len(ETHNICITY_LEVELS)
    places = _draw_places(rng, n_las, n_schools, truth.ethnicity_concentration)
    la_weight, la_shares, school_la = places.la_weight, places.la_shares, places.school_la
    secondary, size, school_dep = places.secondary, places.size, places.school_dep

    # ---- trusts: a home LA each; members mostly from it, some from anywhere
    school_trust = np.full(n_schools, -1, dtype=np.int64)
    if n_trusts:
        trust_home = rng.choice(n_las, n_trusts, p=la_weight / la_weight.sum())
        joins = rng.random(n_schools) < np.where(secondary, 0.75, 0.35)
        local = rng.random(n_schools) < 0.7
        anywhere = rng.integers(0, n_trusts, n_schools)
        home_trusts = [np.flatnonzero(trust_home == la) for la in range(n_las)]
        pick = rng.random(n_schools)
        for s in np.flatnonzero(joins):
            options = home_trusts[school_la[s]]
            if local[s] and options.size:
                school_trust[s] = options[int(pick[s] * options.size)]
            else:
                school_trust[s] = anywhere[s]

    # ---- group effects of each binary outcome's linear predictor
    years = [year_label(first_year + i) for i in range(n_years)]
    effects: dict[str, dict[str, np.ndarray]] = {}
    for o in _OUTCOMES_BINARY:
        e = {
            LA: rng.normal(0.0, truth.sd_la, n_las),
            SCHOOL: rng.normal(0.0, truth.sd_school, n_schools),
        }
        if n_trusts:
            e[TRUST] = rng.normal(0.0, truth.sd_trust, n_trusts)
        if la_varying_ethnicity_sd > 0:
            v = rng.normal(0.0, la_varying_ethnicity_sd, (n_las, n_eth))
            v[:, ETHNICITY_LEVELS.index(REFERENCE[ETHNICITY])] = 0.0
            e["la_ethnicity"] = v
        effects[o] = e

    fsm_eth = _FSM_ETHNICITY
    coef_arrays = {
        o: {var: _lookup(levels, truth.effects[o].get(var, {}))
            for var, levels in ((ETHNICITY, ETHNICITY_LEVELS), (SEN, SEN_LEVELS),
                                (FSM, FSM_LEVELS), (CIN, CIN_LEVELS), (SEX, SEX_LEVELS))}
        for o in _OUTCOMES_BINARY
    }
    nc_arrays = {
        o: (_lookup(NC_YEAR_LEVELS, truth.nc_year[o]) if truth.nc_year else None)
        for o in _OUTCOMES_BINARY
    }

    frames = []
    for t, _ in enumerate(years):
        frames.append(
            _draw_year(
                rng, t, n_pupils, size, secondary, school_la, school_dep, school_trust,
                la_shares, fsm_eth, truth, coef_arrays, nc_arrays, effects,
            )
        )
    parts = {k: np.concatenate([f[k] for f in frames]) if len(frames) > 1 else frames[0][k]
             for k in frames[0]}
    del frames
    n_rows = parts["school"].size

    data: dict[str, Any] = {
        PUPIL_ID: np.arange(1, n_rows + 1, dtype=np.int64),
        YEAR: pd.Categorical.from_codes(parts["year"], categories=years),
        LA: pd.Categorical.from_codes(school_la[parts["school"]],
                                      categories=_codes_labels("LA", n_las, 3)),
        SCHOOL: pd.Categorical.from_codes(parts["school"],
                                          categories=_codes_labels("S", n_schools, 5)),
    }
    if n_trusts:  # standalone schools (code -1) have a missing trust
        data[TRUST] = pd.Categorical.from_codes(
            school_trust[parts["school"]], categories=_codes_labels("T", n_trusts, 4)
        )
    data[ETHNICITY] = pd.Categorical.from_codes(parts["eth"], categories=list(ETHNICITY_LEVELS))
    data[SEN] = pd.Categorical.from_codes(parts["sen"], categories=list(SEN_LEVELS))
    data[FSM] = pd.Categorical.from_codes(parts["fsm"], categories=list(FSM_LEVELS))
    data[CIN] = pd.Categorical.from_codes(parts["cin"], categories=list(CIN_LEVELS))
    data[SEX] = pd.Categorical.from_codes(parts["sex"], categories=list(SEX_LEVELS))
    data[NC_YEAR] = pd.Categorical.from_codes(parts["nc"], categories=list(NC_YEAR_LEVELS))
    data[PERM_EXCL] = parts[PERM_EXCL]
    data[ANY_SUSP] = parts[ANY_SUSP]
    data[N_SUSP] = parts[N_SUSP]
    later = LaterOutcomes() if later_outcomes is True else later_outcomes or None
    if later is not None:
        more, later_effects = _later_outcomes(later, seed, parts, school_la, n_las, n_schools)
        data.update(more)
    pupils = pd.DataFrame(data, copy=False)

    truth_dict = _truth_dict(
        truth, effects, years, n_las, n_schools, school_trust if n_trusts else None, seed,
        dict(n_pupils=int(n_pupils), n_schools=int(n_schools), n_las=int(n_las),
             n_years=int(n_years), n_trusts=int(n_trusts), seed=int(seed),
             la_varying_ethnicity_sd=float(la_varying_ethnicity_sd),
             first_year=int(first_year)),
        la_varying_ethnicity_sd,
    )
    if later is not None:
        truth_dict["arguments"]["later_outcomes"] = True
        truth_dict["reference"].update({EXCLUSION_HISTORY: "none", ALT_PROVISION: "no"})
        truth_dict.update(_later_truth(later, later_effects, n_las, n_schools))
    return Simulation(pupils=pupils, truth=truth_dict)


def _draw_year(rng, t, n_pupils, size, secondary, school_la, school_dep, school_trust,
               la_shares, fsm_eth, truth, coef_arrays, nc_arrays, effects) -> dict[str, np.ndarray]:
    """One academic year of pupils (arrays of codes and outcomes), sorted by school."""
    n_schools = size.size
    counts = rng.multinomial(n_pupils, size / size.sum())
    school = np.repeat(np.arange(n_schools, dtype=np.int32), counts)
    n = school.size
    sec = secondary[school]
    nc = np.where(sec, _PRIMARY_YEARS + rng.integers(0, _SECONDARY_YEARS, n),
                  rng.integers(0, _PRIMARY_YEARS, n)).astype(np.int8)
    del sec
    la = school_la[school]
    pupil = _draw_characteristics(rng, school, la, school_dep, la_shares, fsm_eth)
    eth, sen, fsm, cin, sex = (pupil[k] for k in ("eth", "sen", "fsm", "cin", "sex"))
    out = {"year": np.full(n, t, dtype=np.int8), "school": school, **pupil, "nc": nc}
    trust = school_trust[school] if (school_trust >= 0).any() else None
    eta_susp = None
    for o in _OUTCOMES_BINARY:
        c = coef_arrays[o]
        eta = c[ETHNICITY][eth]
        eta += c[SEN][sen]
        eta += c[FSM][fsm]
        eta += c[CIN][cin]
        eta += c[SEX][sex]
        eta += truth.intercept[o] + truth.year_trend * t
        if nc_arrays[o] is not None:
            eta += nc_arrays[o][nc]
        e = effects[o]
        eta += e[LA][la]
        eta += e[SCHOOL][school]
        if trust is not None and TRUST in e:
            eta += np.where(trust >= 0, e[TRUST][np.maximum(trust, 0)], 0.0)
        if "la_ethnicity" in e:
            eta += e["la_ethnicity"][la, eth]
        out[o] = (rng.random(n) < _expit(eta)).astype(np.int8)
        if o == ANY_SUSP:
            eta_susp = eta
        del eta

    # n_susp: 0 without a suspension, else 1 + NegBin with mean k (1 + exp(eta)) - 1
    n_susp = out[ANY_SUSP].astype(np.int32)
    hit = np.flatnonzero(n_susp)
    m = truth.susp_per_suspended * (1.0 + np.exp(eta_susp[hit])) - 1.0
    if truth.susp_dispersion > 0:
        r = 1.0 / truth.susp_dispersion
        extra = rng.negative_binomial(r, r / (r + m)) if hit.size else np.zeros(0, int)
    else:
        extra = rng.poisson(m)
    n_susp[hit] += extra.astype(np.int32)
    out[N_SUSP] = n_susp
    return out


def _patsy_coefficients(intercept: float, effects: Mapping[str, Mapping[str, float]],
                        levels: Mapping[str, tuple[str, ...]],
                        reference: Mapping[str, str]) -> dict[str, float]:
    """``{"Intercept": ..., "var[T.level]": ...}`` for the pupil characteristics, then any
    other variable of ``effects`` (in its order), every non-reference level named."""
    coefs = {"Intercept": float(intercept)}
    for var in (ETHNICITY, SEN, FSM, CIN, SEX, *(v for v in effects if v not in CHARACTERISTICS)):
        for lv in levels[var]:
            if lv != reference[var]:
                coefs[f"{var}[T.{lv}]"] = float(effects.get(var, {}).get(lv, 0.0))
    return coefs


def _effects_json(values: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {lab: float(v) for lab, v in zip(labels, values)}


def _truth_dict(truth, effects, years, n_las, n_schools, school_trust, seed, arguments,
                la_varying_ethnicity_sd) -> dict:
    la_labels = _codes_labels("LA", n_las, 3)
    school_labels = _codes_labels("S", n_schools, 5)
    n_trusts = int(arguments["n_trusts"])
    trust_labels = _codes_labels("T", n_trusts, 4)
    reference = {k: REFERENCE[k] for k in (ETHNICITY, SEN, FSM, CIN, SEX)}
    reference[YEAR] = years[0]
    if truth.nc_year:
        reference[NC_YEAR] = NC_YEAR_LEVELS[0]
    terms = [ETHNICITY, SEN, FSM, CIN, SEX]
    if truth.nc_year:
        terms.append(NC_YEAR)
    if len(years) > 1:
        terms.append(YEAR)
    groups = ["(1 | la)", "(1 | school)"] + (["(1 | trust)"] if n_trusts else [])
    if la_varying_ethnicity_sd > 0:
        groups.append("(0 + ethnicity | la)")

    out: dict[str, Any] = {
        "description": (
            "Synthetic pupils from disparity.simulate.simulate_pupils; coefficients are "
            "conditional on the group effects and named as patsy names the columns of a "
            "treatment-coded design with the reference levels below."
        ),
        "seed": int(seed),
        "arguments": arguments,
        "truth_parameters": {
            "sd_la": truth.sd_la, "sd_school": truth.sd_school, "sd_trust": truth.sd_trust,
            "year_trend": truth.year_trend, "susp_per_suspended": truth.susp_per_suspended,
            "susp_dispersion": truth.susp_dispersion,
            "ethnicity_concentration": (None if math.isinf(truth.ethnicity_concentration)
                                        else truth.ethnicity_concentration),
        },
        "reference": reference,
        "years": years,
        "ethnicity_shares_national": dict(ETHNICITY_SHARES),
    }
    if school_trust is not None:
        members: dict[str, list[str]] = {t: [] for t in trust_labels}
        for s, t in enumerate(school_trust):
            if t >= 0:
                members[trust_labels[t]].append(school_labels[s])
        out["trusts"] = {
            "description": (
                "Schools in each multi-academy trust. Every other school is standalone: its "
                "trust is missing (NaN in the pupils' categorical trust column, an empty "
                "field in CSV) and it gets no trust effect; the trust term applies to trust "
                "schools only."
            ),
            "members": members,
            "standalone": [school_labels[s] for s in np.flatnonzero(school_trust < 0)],
        }
    for o in _OUTCOMES_BINARY:
        coefs = _patsy_coefficients(truth.intercept[o], truth.effects[o], LEVELS, REFERENCE)
        if truth.nc_year:
            for lv in NC_YEAR_LEVELS[1:]:
                coefs[f"{NC_YEAR}[T.{lv}]"] = float(truth.nc_year[o].get(lv, 0.0))
        for i, y in enumerate(years[1:], 1):
            coefs[f"{YEAR}[T.{y}]"] = float(truth.year_trend * i)
        group_sd = {LA: float(truth.sd_la), SCHOOL: float(truth.sd_school)}
        e = effects[o]
        realised = {LA: _effects_json(e[LA], la_labels),
                    SCHOOL: _effects_json(e[SCHOOL], school_labels)}
        if n_trusts:
            group_sd[TRUST] = float(truth.sd_trust)
            realised[TRUST] = _effects_json(e[TRUST], trust_labels)
        entry: dict[str, Any] = {
            "family": "binomial",
            "link": "logit",
            "formula": f"{o} ~ " + " + ".join(terms + groups),
            "coefficients": coefs,
            "group_sd": group_sd,
            "realised_sd": {k: float(np.std(e[k], ddof=1)) if e[k].size > 1 else None
                            for k in group_sd},
            "effects": realised,
        }
        if "la_ethnicity" in e:
            entry["la_varying"] = {
                ETHNICITY: {
                    "sd": float(la_varying_ethnicity_sd),
                    "effects": {
                        la: {lv: float(e["la_ethnicity"][i, j])
                             for j, lv in enumerate(ETHNICITY_LEVELS)
                             if lv != REFERENCE[ETHNICITY]}
                        for i, la in enumerate(la_labels)
                    },
                }
            }
        out[o] = entry

    susp = out[ANY_SUSP]
    count_coefs = dict(susp["coefficients"])
    count_coefs["Intercept"] = float(count_coefs["Intercept"] + math.log(truth.susp_per_suspended))
    out[N_SUSP] = {
        "family": "hurdle_negative_binomial",
        "link": "log",
        "model": (
            "n_susp = 0 if any_susp = 0, else 1 + Y with Y ~ NegBin(mean m, variance "
            "m + dispersion m^2), m = susp_per_suspended * (1 + exp(eta_any_susp)) - 1; so "
            "E[n_susp | covariates, group effects] = exp(coefficients . x + group effects) "
            "exactly, with the any_susp linear predictor and Intercept + log(susp_per_suspended)"
        ),
        "formula": susp["formula"].replace(ANY_SUSP, N_SUSP, 1),
        "coefficients": count_coefs,
        "group_sd": dict(susp["group_sd"]),
        "realised_sd": dict(susp["realised_sd"]),
        "effects": susp["effects"],
        "dispersion": float(truth.susp_dispersion),
        "susp_per_suspended": float(truth.susp_per_suspended),
        "shares_linear_predictor_with": ANY_SUSP,
    }
    if "la_varying" in susp:
        out[N_SUSP]["la_varying"] = susp["la_varying"]
    return out


# --------------------------------------------------------------------------- off-rolling
#: Where a Year 10 pupil on roll at the January census was a year later.
DESTINATION = "destination"
DESTINATION_LEVELS: tuple[str, ...] = (
    "on_roll", "other_la", "other_mainstream", "ap_pru", "home_education", "unknown")
#: Destinations of an explained loss (a family move or a move to another mainstream school).
EXPLAINED_DESTINATIONS: tuple[str, ...] = ("other_la", "other_mainstream")
#: Destinations of an unexplained loss: alternative provision or a PRU without a permanent
#: exclusion, elective home education, or not known (Ofsted's concern about off-rolling).
UNEXPLAINED_DESTINATIONS: tuple[str, ...] = ("ap_pru", "home_education", "unknown")
ROLL_LOSS = "roll_loss"
UNEXPLAINED_LOSS = "unexplained_loss"

_OFF_ROLL_EFFECTS = {
    ETHNICITY: {
        "Traveller of Irish heritage": 1.3, "Gypsy/Roma": 1.3, "White and Black Caribbean": 0.3,
        "Black Caribbean": 0.3, "Indian": -0.5, "Pakistani": -0.2, "Bangladeshi": -0.3,
        "Chinese": -0.5, "Any other Asian background": -0.3, "Unclassified": 0.3,
    },
    SEN: {"support": 0.8, "ehcp": 0.5},
    FSM: {"yes": 0.6},
    CIN: {"yes": 1.0},
    SEX: {"male": 0.2},
}


@dataclass(frozen=True)
class OffRollingTruth:
    """Generating parameters of :func:`simulate_off_rolling`.

    Attributes
    ----------
    intercept : float
        Log-odds of an unexplained loss for the reference pupil in an average school.
    effects : mapping
        ``{variable: {level: log-odds ratio}}`` of an unexplained loss.
    sd_la, sd_school : float
        SDs of the LA and school-in-LA effects on the log-odds of an unexplained loss.
    explained_intercept : float
        Log-odds of an explained loss (moving LA or to another mainstream school) among
        pupils without an unexplained loss; ``explained_effects`` shifts it, and LAs differ
        by ``sd_la_explained``.
    explained_effects : mapping
    sd_la_explained : float
    destination_weights : mapping
        Relative weights of the destinations within an unexplained and an explained loss.
    home_education_shift, ap_shift_sen : float
        Log-weight shifts: elective home education for Gypsy/Roma and Traveller of Irish
        heritage pupils, AP or a PRU for pupils with any SEN.
    ethnicity_concentration : float
        As in :class:`Truth`, but 400 by default (40 in :class:`Truth`): with 40, a cohort
        of 70,000 pupils in 40 LAs often has no Traveller of Irish heritage, Irish or
        Chinese pupil with a loss (7 of 20 seeds), and a level with no events has an
        infinite maximum-likelihood coefficient; with 400 and 140,000 pupils, none of 20.

    Examples
    --------
    >>> OffRollingTruth().effects["cin"]["yes"]
    1.0
    """

    intercept: float = -4.9
    effects: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: _frozen(_OFF_ROLL_EFFECTS))
    sd_la: float = 0.2
    sd_school: float = 0.3
    explained_intercept: float = -3.8
    explained_effects: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: _frozen({FSM: {"yes": 0.4}, CIN: {"yes": 0.5}}))
    sd_la_explained: float = 0.2
    destination_weights: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(
            {"ap_pru": 0.35, "home_education": 0.40, "unknown": 0.25,
             "other_la": 0.45, "other_mainstream": 0.55}))
    home_education_shift: float = 1.0
    ap_shift_sen: float = 0.5
    ethnicity_concentration: float = 400.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("sd_la", "sd_school", "sd_la_explained"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                problems.append(f"{name} must be a finite number >= 0, got {v!r}")
        for table in (self.effects, self.explained_effects):
            for var, levels in table.items():
                if var not in CHARACTERISTICS or var == "ethnicity_major":
                    problems.append(f"effects name variable {var!r}; valid: "
                                    f"{', '.join(c for c in CHARACTERISTICS)}")
                    continue
                bad = [lv for lv in levels if lv not in LEVELS[var]]
                if bad or levels.get(REFERENCE[var], 0.0) != 0.0:
                    problems.append(f"effects[{var!r}]: levels must be among "
                                    f"{', '.join(LEVELS[var])}, the reference "
                                    f"{REFERENCE[var]!r} with effect 0")
        needed = set(UNEXPLAINED_DESTINATIONS) | set(EXPLAINED_DESTINATIONS)
        w = self.destination_weights
        if set(w) != needed or not all(v > 0 for v in w.values()):
            problems.append(f"destination_weights needs a positive weight for each of "
                            f"{sorted(needed)}, got {dict(w)!r}")
        if problems:
            raise DisparityError("invalid OffRollingTruth: " + "; ".join(problems))


def simulate_off_rolling(
    n_pupils: int = 70_000,
    n_schools: int = 400,
    n_las: int = 40,
    *,
    n_planted: int = 20,
    planted_effect: float | Sequence[float] = 1.5,
    seed: int = config.SEED,
    truth: OffRollingTruth | None = None,
    year: int = 2016,
) -> Simulation:
    """Simulate a Year 10 to Year 11 cohort in secondary schools, some planted with off-rolling.

    Each pupil is on roll in Year 10 at the January census of ``year`` (academic year
    ``year_label(year)``) and a year later is either still on roll or gone. An
    **unexplained loss** (``unexplained_loss = 1``) is Bernoulli with logit

    ``intercept + ethnicity + sen + fsm + cin + sex + u_la + u_school + planted_school``

    (``u_la ~ N(0, sd_la)``, ``u_school ~ N(0, sd_school)``, ``planted_school`` the excess
    log-odds of the planted schools, 0 elsewhere), and its destination is alternative
    provision or a PRU, elective home education, or unknown. A pupil without one may leave
    for an **explained** reason (another LA, another mainstream school; LA effects only).
    ``roll_loss`` is any loss. So a binomial model of ``unexplained_loss`` with the pupils'
    characteristics and school-in-LA effects is the true model, and the planted schools are
    the ones it should flag.

    Parameters
    ----------
    n_pupils : int
        Pupils on roll in Year 10.
    n_schools, n_las : int
        Secondary schools, nested in LAs.
    n_planted : int
        Schools with excess unexplained loss, drawn at random.
    planted_effect : float or sequence of float
        Their excess log-odds (one for all, or one each).
    seed : int
    truth : OffRollingTruth, optional
    year : int
        Calendar year of the Year 10 census.

    Returns
    -------
    Simulation
        ``pupils``: ``pupil_id``, ``year``, ``la``, ``school``, the characteristics,
        ``nc_year`` (``"10"``), ``destination`` (:data:`DESTINATION_LEVELS`), ``roll_loss``
        and ``unexplained_loss`` (int8). ``truth``: the coefficients of
        ``unexplained_loss`` (patsy names), group SDs, realised LA and school effects, the
        planted schools (``truth["unexplained_loss"]["planted"]``: ``{school: excess}``
        and ``planted_units``: ``{"LA/school": excess}``, as a ``la/school`` group term
        labels them) and the destination model.

    References
    ----------
    Ofsted (2019). *Off-rolling: exploring the issue*; Ofsted found about 300 schools
    with unusually large losses of pupils between Year 10 and Year 11.

    Examples
    --------
    >>> sim = simulate_off_rolling(5_000, n_schools=30, n_las=3, n_planted=2, seed=1)
    >>> sorted(sim.pupils["destination"].cat.categories)[:2]
    ['ap_pru', 'home_education']
    >>> len(sim.truth["unexplained_loss"]["planted"])
    2
    """
    truth = OffRollingTruth() if truth is None else truth
    problems = []
    for name, v, low in (("n_pupils", n_pupils, 1), ("n_schools", n_schools, 2),
                         ("n_las", n_las, 1), ("n_planted", n_planted, 0)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            problems.append(f"{name} must be a whole number >= {low}, got {v!r}")
    if not problems and n_planted > n_schools:
        problems.append(f"n_planted ({n_planted}) exceeds n_schools ({n_schools})")
    effect = np.atleast_1d(np.asarray(planted_effect, dtype=np.float64))
    if effect.size == 1:
        effect = np.full(max(int(n_planted), 0), float(effect[0]))
    if effect.size != n_planted or not np.all(np.isfinite(effect)):
        problems.append(f"planted_effect must be one finite number or {n_planted} of them, "
                        f"got {planted_effect!r}")
    if problems:
        raise DisparityError("simulate_off_rolling: " + "; ".join(problems))

    rng = np.random.default_rng(seed)
    places = _draw_places(rng, n_las, n_schools, truth.ethnicity_concentration,
                          secondary_share=1.0)
    u_la = rng.normal(0.0, truth.sd_la, n_las)
    u_school = rng.normal(0.0, truth.sd_school, n_schools)
    u_la_explained = rng.normal(0.0, truth.sd_la_explained, n_las)
    planted = np.sort(rng.choice(n_schools, int(n_planted), replace=False))
    excess = np.zeros(n_schools)
    excess[planted] = effect

    counts = rng.multinomial(n_pupils, places.size / places.size.sum())
    school = np.repeat(np.arange(n_schools, dtype=np.int32), counts)
    la = places.school_la[school]
    pupil = _draw_characteristics(rng, school, la, places.school_dep, places.la_shares,
                                  _FSM_ETHNICITY)
    codes = {ETHNICITY: pupil["eth"], SEN: pupil["sen"], FSM: pupil["fsm"],
             CIN: pupil["cin"], SEX: pupil["sex"]}

    def linear(intercept: float, effects: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        eta = np.full(school.size, float(intercept))
        for var, c in codes.items():
            eta += _lookup(LEVELS[var], effects.get(var, {}))[c]
        return eta

    eta_u = linear(truth.intercept, truth.effects) + u_la[la] + u_school[school] + excess[school]
    unexplained = rng.random(school.size) < _expit(eta_u)
    eta_e = linear(truth.explained_intercept, truth.explained_effects) + u_la_explained[la]
    explained = ~unexplained & (rng.random(school.size) < _expit(eta_e))

    # destination: a multinomial choice within each kind of loss
    w = truth.destination_weights
    log_w = np.tile(np.log([w[d] for d in UNEXPLAINED_DESTINATIONS]), (school.size, 1))
    traveller = np.isin(pupil["eth"], [ETHNICITY_LEVELS.index("Gypsy/Roma"),
                                       ETHNICITY_LEVELS.index("Traveller of Irish heritage")])
    log_w[:, 1] += truth.home_education_shift * traveller
    log_w[:, 0] += truth.ap_shift_sen * (pupil["sen"] > 0)
    prob = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    u = rng.random(school.size)
    which_u = (u[:, None] > np.cumsum(prob, axis=1)[:, :-1]).sum(axis=1)
    share_la = w["other_la"] / (w["other_la"] + w["other_mainstream"])
    which_e = (rng.random(school.size) >= share_la).astype(np.int64)
    destination = np.zeros(school.size, dtype=np.int8)  # on_roll
    destination[explained] = 1 + which_e[explained]
    destination[unexplained] = 3 + which_u[unexplained]

    label = year_label(year)
    la_labels = _codes_labels("LA", n_las, 3)
    school_labels = _codes_labels("S", n_schools, 5)
    data: dict[str, Any] = {
        PUPIL_ID: np.arange(1, school.size + 1, dtype=np.int64),
        YEAR: pd.Categorical.from_codes(np.zeros(school.size, dtype=np.int8),
                                        categories=[label]),
        LA: pd.Categorical.from_codes(la, categories=la_labels),
        SCHOOL: pd.Categorical.from_codes(school, categories=school_labels),
        ETHNICITY: pd.Categorical.from_codes(pupil["eth"], categories=list(ETHNICITY_LEVELS)),
        SEN: pd.Categorical.from_codes(pupil["sen"], categories=list(SEN_LEVELS)),
        FSM: pd.Categorical.from_codes(pupil["fsm"], categories=list(FSM_LEVELS)),
        CIN: pd.Categorical.from_codes(pupil["cin"], categories=list(CIN_LEVELS)),
        SEX: pd.Categorical.from_codes(pupil["sex"], categories=list(SEX_LEVELS)),
        NC_YEAR: pd.Categorical.from_codes(
            np.full(school.size, NC_YEAR_LEVELS.index("10"), dtype=np.int8),
            categories=list(NC_YEAR_LEVELS)),
        DESTINATION: pd.Categorical.from_codes(destination, categories=list(DESTINATION_LEVELS)),
        ROLL_LOSS: (destination > 0).astype(np.int8),
        UNEXPLAINED_LOSS: unexplained.astype(np.int8),
    }
    pupils = pd.DataFrame(data, copy=False)

    terms = [ETHNICITY, SEN, FSM, CIN, SEX]
    unit = {s: f"{la_labels[places.school_la[s]]}/{school_labels[s]}" for s in planted}
    truth_dict: dict[str, Any] = {
        "description": (
            "Synthetic Year 10 to Year 11 cohort from disparity.simulate.simulate_off_rolling: "
            "unexplained_loss (left for AP or a PRU, elective home education or an unknown "
            "destination) is binomial in the pupils' characteristics with LA and school-in-LA "
            "effects; planted schools have excess log-odds of unexplained loss."
        ),
        "seed": int(seed),
        "arguments": dict(n_pupils=int(n_pupils), n_schools=int(n_schools), n_las=int(n_las),
                          n_planted=int(n_planted), planted_effect=effect.tolist(),
                          seed=int(seed), year=int(year)),
        "reference": {k: REFERENCE[k] for k in terms},
        "years": [label],
        UNEXPLAINED_LOSS: {
            "family": "binomial",
            "link": "logit",
            "formula": (f"{UNEXPLAINED_LOSS} ~ " + " + ".join(terms)
                        + " + (1 | la) + (1 | la:school) + planted excess"),
            "coefficients": _patsy_coefficients(truth.intercept, truth.effects, LEVELS,
                                                REFERENCE),
            "group_sd": {LA: float(truth.sd_la), SCHOOL: float(truth.sd_school)},
            "realised_sd": {LA: float(np.std(u_la, ddof=1)) if n_las > 1 else None,
                            SCHOOL: float(np.std(u_school, ddof=1))},
            "effects": {LA: _effects_json(u_la, la_labels),
                        SCHOOL: _effects_json(u_school, school_labels)},
            "planted": {school_labels[s]: float(excess[s]) for s in planted},
            "planted_units": {unit[s]: float(excess[s]) for s in planted},
            "note": (
                "A school's total effect on the log-odds is effects.school + planted (0 for "
                "schools not planted); realised_sd is of effects.school alone."
            ),
        },
        "explained_loss": {
            "model": (
                "among pupils without an unexplained loss, explained loss ~ Bernoulli(expit("
                "explained_intercept + explained effects + LA effect)); destination other_la "
                "or other_mainstream in the ratio of their weights"),
            "coefficients": _patsy_coefficients(truth.explained_intercept,
                                                truth.explained_effects, LEVELS, REFERENCE),
            "sd_la": float(truth.sd_la_explained),
        },
        "destinations": {
            "levels": list(DESTINATION_LEVELS),
            "unexplained": list(UNEXPLAINED_DESTINATIONS),
            "explained": list(EXPLAINED_DESTINATIONS),
            "weights": {k: float(v) for k, v in truth.destination_weights.items()},
            "home_education_shift_gypsy_roma_traveller": float(truth.home_education_shift),
            "ap_shift_any_sen": float(truth.ap_shift_sen),
        },
    }
    return Simulation(pupils=pupils, truth=truth_dict)
