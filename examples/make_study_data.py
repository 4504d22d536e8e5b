"""Make the synthetic files of the off-rolling, trust and outcomes-after-exclusion models.

The data are simulated, not real. Each file is written beside the truth that generated it
(``truth_<name>.json``), so that a fit of its model file can be checked against the values
that made the data:

``pupils_off_rolling.parquet`` (``models/synthetic_off_rolling.toml``)
    :func:`disparity.simulate.simulate_off_rolling`: 140,000 pupils on roll in Year 10 in
    400 secondary schools in 40 LAs (350 a school, about two years of a typical school's
    Year 10), each still on roll a year later or gone (with a destination); 20 schools
    planted with excess log-odds of unexplained loss of ``PLANTED_EFFECT``.
``pupils_trusts.parquet`` (``models/synthetic_trusts.toml``)
    :func:`disparity.simulate.simulate_pupils` with 60 multi-academy trusts: 200,000 pupils
    in 800 schools in 50 LAs; standalone schools have a missing trust.
``pupils_outcomes.parquet`` (``models/synthetic_outcomes_after_exclusion.toml``)
    :func:`disparity.simulate.simulate_pupils` with ``later_outcomes`` and national-
    curriculum year effects, 1,000,000 pupils in 1,000 schools in 60 LAs, of which only the
    pupils in Year 11 are kept (they alone have ``good_gcse`` and ``neet_16_17``). As in
    ``examples/make_synthetic_data.py`` the permanent-exclusion intercept is raised (by
    ``log(10)``, about ten times the national rate) so a small file has enough
    permanently excluded pupils; LA ethnic compositions vary less than by default
    (``ETHNICITY_CONCENTRATION``).

Run from the repository root::

    python examples/make_study_data.py                     # all three, into data/synthetic/
    python examples/make_study_data.py --only off_rolling --out /tmp/synthetic

The same arguments and seeds always give the same files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from types import MappingProxyType

from disparity.simulate import Simulation, Truth, simulate_off_rolling, simulate_pupils
from disparity.vocabulary import PERM_EXCL

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"off_rolling": 20170119, "trusts": 20170120, "outcomes": 20170121}
PLANTED_EFFECT = 2.0
#: LA ethnic compositions closer to the national one than the simulator's default (40), so
#: that every ethnic group has pupils with and without each outcome (a group without
#: events has an infinite maximum-likelihood coefficient, and the fit does not converge).
ETHNICITY_CONCENTRATION = 400.0


def off_rolling(seed: int) -> Simulation:
    return simulate_off_rolling(140_000, n_schools=400, n_las=40, n_planted=20,
                                planted_effect=PLANTED_EFFECT, seed=seed)


def trusts(seed: int) -> Simulation:
    return simulate_pupils(200_000, n_schools=800, n_las=50, n_trusts=60, seed=seed)


def outcomes(seed: int) -> Simulation:
    base = Truth.with_nc_year(ethnicity_concentration=ETHNICITY_CONCENTRATION)
    intercept = dict(base.intercept)
    intercept[PERM_EXCL] += math.log(10.0)
    truth = dataclasses.replace(base, intercept=MappingProxyType(intercept))
    sim = simulate_pupils(1_000_000, n_schools=1_000, n_las=60, seed=seed, truth=truth,
                          later_outcomes=True)
    year11 = sim.pupils[sim.pupils["nc_year"] == "11"].reset_index(drop=True)
    return Simulation(pupils=year11, truth=sim.truth)


MAKERS = {"off_rolling": off_rolling, "trusts": trusts, "outcomes": outcomes}
NOTES = {
    "off_rolling": f"every planted school has excess log-odds {PLANTED_EFFECT} of unexplained "
                   "loss",
    "trusts": "standalone schools have a missing trust and no trust effect",
    "outcomes": "only the pupils in Year 11 are kept; the perm_excl intercept is raised by "
                "log(10) above Truth.with_nc_year(ethnicity_concentration=400)",
}


def write(name: str, sim: Simulation, out: Path, seed: int) -> None:
    """``pupils_<name>.parquet`` (zstd) and ``truth_<name>.json`` with a provenance note."""
    out.mkdir(parents=True, exist_ok=True)
    pupils_path, truth_path = out / f"pupils_{name}.parquet", out / f"truth_{name}.json"
    sim.pupils.to_parquet(pupils_path, index=False, compression="zstd")
    truth = dict(sim.truth)
    truth["note"] = (f"Synthetic data, not real pupils. Made by examples/make_study_data.py "
                     f"(seed {seed}); {NOTES[name]}.")
    truth_path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    print(f"{pupils_path}: {len(sim.pupils):,} rows, "
          f"{pupils_path.stat().st_size / 1e6:.2f} MB; {truth_path.name}: "
          f"{truth_path.stat().st_size / 1e3:.0f} kB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "synthetic")
    parser.add_argument("--only", choices=sorted(MAKERS), nargs="+", default=sorted(MAKERS))
    args = parser.parse_args(argv)
    for name in args.only:
        write(name, MAKERS[name](SEEDS[name]), args.out, SEEDS[name])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
