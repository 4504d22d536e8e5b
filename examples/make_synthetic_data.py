"""Make the synthetic national-like pupils file shipped in ``data/synthetic/``.

The data are simulated, not real: :func:`disparity.simulate.simulate_pupils` draws pupils
in schools nested in local authorities from a hierarchical model whose parameters (the
truth) are written beside them, so a fit of ``models/synthetic_national.toml`` can be
checked against the values that generated the data.

One change from the simulator's default :class:`~disparity.simulate.Truth`: the intercept
of ``perm_excl`` is raised from -8.35 to -6.0 (about ten times the national rate of
permanent exclusion, about 1 % instead of 0.1 %), so that a file small enough to ship
(300,000 pupils) has events in every ethnic group. Every other parameter (effects, group
SDs) is the simulator's default.

Run from the repository root::

    python examples/make_synthetic_data.py            # writes data/synthetic/
    python examples/make_synthetic_data.py --out /tmp/synthetic --pupils 100000

The same arguments and seed always give the same files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from types import MappingProxyType

from disparity.simulate import Truth, simulate_pupils
from disparity.vocabulary import ANY_SUSP, PERM_EXCL

ROOT = Path(__file__).resolve().parents[1]
SEED = 20170901
PERM_EXCL_INTERCEPT = -6.0


def synthetic_truth() -> Truth:
    """The simulator's default truth with the permanent-exclusion intercept raised."""
    base = Truth()
    intercept = MappingProxyType({PERM_EXCL: PERM_EXCL_INTERCEPT,
                                  ANY_SUSP: base.intercept[ANY_SUSP]})
    return dataclasses.replace(base, intercept=intercept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "synthetic")
    parser.add_argument("--pupils", type=int, default=300_000)
    parser.add_argument("--schools", type=int, default=1_000)
    parser.add_argument("--las", type=int, default=60)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)

    sim = simulate_pupils(args.pupils, n_schools=args.schools, n_las=args.las,
                          seed=args.seed, truth=synthetic_truth())
    args.out.mkdir(parents=True, exist_ok=True)
    pupils_path = args.out / "pupils_national.parquet"
    truth_path = args.out / "truth_national.json"
    # zstd keeps the file about half the size of the default (snappy) compression.
    sim.pupils.to_parquet(pupils_path, index=False, compression="zstd")
    truth = dict(sim.truth)
    truth["note"] = (
        "Synthetic data, not real pupils. Made by examples/make_synthetic_data.py with "
        f"disparity.simulate.simulate_pupils (seed {args.seed}); the perm_excl intercept is "
        f"{PERM_EXCL_INTERCEPT} instead of the simulator's default -8.35."
    )
    truth_path.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    p = sim.pupils
    print(f"{pupils_path}: {len(p):,} pupils, {p[PERM_EXCL].sum():,} permanent exclusions, "
          f"{p[ANY_SUSP].sum():,} suspended pupils, {pupils_path.stat().st_size / 1e6:.2f} MB")
    print(f"{truth_path}: {truth_path.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
