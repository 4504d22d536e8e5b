"""Defaults defined once. Functions take these as keyword defaults; nothing mutates them."""

from __future__ import annotations

#: Probability mass of every reported interval unless a caller or model file says otherwise.
CI_PROB: float = 0.95

#: Seed used where a caller gives none (simulation, parametric draws, samplers).
SEED: int = 20170719  # publication date of the 2016/17 exclusions release

#: IDEA "significant disproportionality" minimum sizes (34 CFR 300.647(b)(1)(i)):
#: a risk ratio is calculated only where the group has at least ``MIN_CELL_SIZE`` events
#: ... and at least ``MIN_N_SIZE`` pupils (and likewise for the comparison group).
MIN_N_SIZE: int = 30
MIN_CELL_SIZE: int = 10

#: Disclosure control defaults (GSS practice for pupil counts).
MIN_PUPILS: int = 10
MIN_EVENTS: int = 3

#: GSS symbols used in published tables.
SYMBOL_SUPPRESSED: str = "c"
SYMBOL_NOT_APPLICABLE: str = "z"
SYMBOL_UNAVAILABLE: str = "x"
