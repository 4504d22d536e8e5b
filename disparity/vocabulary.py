"""Canonical column names, category levels and default reference levels, defined once.

Two canonical tables flow through the package (see ``docs/data_dictionary.md``):

*pupils*
    one row per pupil-year, keyed by :data:`PUPIL_KEY`, with the characteristic columns
    below and the outcomes in :data:`PUPIL_OUTCOMES`. Extra columns pass through.
*cells*
    grouping columns, :data:`N_PUPILS` and one event count ``n_<outcome>`` per outcome
    (:func:`events_column`). Cells are the sufficient statistics of binomial and count
    models: fitting them is equivalent to fitting the pupils they came from.

Nothing here is specific to exclusions except the defaults: every function that uses these
names takes the outcome and grouping columns as arguments, so a teacher's table of
``incidence`` out of ``size`` by ``herd`` works as well.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

# --------------------------------------------------------------------------- columns
PUPIL_ID = "pupil_id"
YEAR = "year"
LA = "la"
SCHOOL = "school"
TRUST = "trust"
REGION = "region"
ETHNICITY = "ethnicity"
ETHNICITY_MAJOR = "ethnicity_major"
SEN = "sen"
FSM = "fsm"
CIN = "cin"
SEX = "sex"
NC_YEAR = "nc_year"

#: A pupil-year is identified by these columns together.
PUPIL_KEY: tuple[str, ...] = (PUPIL_ID, YEAR)

#: Institution columns, from the widest to the narrowest.
UNITS: tuple[str, ...] = (REGION, LA, TRUST, SCHOOL)

#: Pupil characteristics with a fixed list of levels.
CHARACTERISTICS: tuple[str, ...] = (ETHNICITY, SEN, FSM, CIN, SEX)

# Outcomes on pupil rows, and their kind: binary (0/1) or count (0, 1, 2, ...).
PERM_EXCL = "perm_excl"
ANY_SUSP = "any_susp"
N_SUSP = "n_susp"
PUPIL_OUTCOMES: Mapping[str, str] = MappingProxyType(
    {PERM_EXCL: "binary", ANY_SUSP: "binary", N_SUSP: "count"}
)

#: Trials column of a cells table.
N_PUPILS = "n_pupils"
#: Prefix of an event-count column in a cells table.
EVENTS_PREFIX = "n_"


def events_column(outcome: str) -> str:
    """Name of the cells column counting events of ``outcome``.

    Examples
    --------
    >>> events_column("perm_excl")
    'n_perm_excl'
    >>> events_column("n_perm_excl")
    'n_perm_excl'
    """
    return outcome if outcome.startswith(EVENTS_PREFIX) else EVENTS_PREFIX + outcome


#: Markers that official tables (GSS and DfE practice) put in place of a number, and what
#: each one means. In a count column they are read as missing with this reason, never as 0.
SUPPRESSION_MARKERS: Mapping[str, str] = MappingProxyType(
    {
        "x": "x: suppressed (1 or 2, or a rate based on one)",
        "c": "c: confidential",
        "z": "z: not applicable",
        ".": ".: not applicable",
        "low": "low: rounds to 0 but is not 0",
        ":": ":: not available",
        "..": "..: not available",
        # the bracketed forms of the GSS's 2021 guidance on symbols in tables
        "[c]": "[c]: confidential",
        "[x]": "[x]: not available",
        "[z]": "[z]: not applicable",
        "[low]": "[low]: rounds to 0 but is not 0",
    }
)


# --------------------------------------------------------------------------- levels
#: DfE minor ethnic groups (the 18 groups of the school census), in DfE order, then the
#: unclassified category. Labels follow DfE's published spelling, normalised.
ETHNICITY_MINOR_TO_MAJOR: Mapping[str, str] = MappingProxyType(
    {
        "White British": "White",
        "Irish": "White",
        "Traveller of Irish heritage": "White",
        "Gypsy/Roma": "White",
        "Any other White background": "White",
        "White and Black Caribbean": "Mixed",
        "White and Black African": "Mixed",
        "White and Asian": "Mixed",
        "Any other Mixed background": "Mixed",
        "Indian": "Asian",
        "Pakistani": "Asian",
        "Bangladeshi": "Asian",
        "Any other Asian background": "Asian",
        "Black Caribbean": "Black",
        "Black African": "Black",
        "Any other Black background": "Black",
        "Chinese": "Chinese",
        "Any other ethnic group": "Any other ethnic group",
        "Unclassified": "Unclassified",
    }
)
ETHNICITY_LEVELS: tuple[str, ...] = tuple(ETHNICITY_MINOR_TO_MAJOR)
ETHNICITY_MAJOR_LEVELS: tuple[str, ...] = tuple(dict.fromkeys(ETHNICITY_MINOR_TO_MAJOR.values()))

SEN_LEVELS: tuple[str, ...] = ("none", "support", "ehcp")
FSM_LEVELS: tuple[str, ...] = ("no", "yes")
CIN_LEVELS: tuple[str, ...] = ("no", "yes")
SEX_LEVELS: tuple[str, ...] = ("female", "male")

#: Valid levels of each characteristic with a fixed list.
LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        ETHNICITY: ETHNICITY_LEVELS,
        ETHNICITY_MAJOR: ETHNICITY_MAJOR_LEVELS,
        SEN: SEN_LEVELS,
        FSM: FSM_LEVELS,
        CIN: CIN_LEVELS,
        SEX: SEX_LEVELS,
    }
)

#: Default reference level of each characteristic: the group every other is compared with.
REFERENCE: Mapping[str, str] = MappingProxyType(
    {
        ETHNICITY: "White British",
        ETHNICITY_MAJOR: "White",
        SEN: "none",
        FSM: "no",
        CIN: "no",
        SEX: "female",
    }
)


def major_group(minor: str) -> str:
    """DfE major ethnic group of a minor group.

    Examples
    --------
    >>> major_group("Black Caribbean")
    'Black'
    """
    try:
        return ETHNICITY_MINOR_TO_MAJOR[minor]
    except KeyError:
        valid = ", ".join(repr(x) for x in ETHNICITY_LEVELS)
        raise KeyError(f"unknown ethnicity {minor!r}; valid groups are {valid}") from None


#: Ending of the column that carries, beside an event count, the largest value a censored
#: count can take (``n_perm_excl_upper``): a DfE ``x`` is "1 or 2", kept as events 1 and
#: upper 2. Where the count is known exactly the two are equal.
UPPER_SUFFIX: str = "_upper"


def upper_column(events: str) -> str:
    """The column of the largest value of a censored event count.

    Examples
    --------
    >>> upper_column("n_perm_excl")
    'n_perm_excl_upper'
    """
    return f"{events}{UPPER_SUFFIX}"
