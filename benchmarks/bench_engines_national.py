"""Seconds and peak memory of each engine on national-scale synthetic data.

Pupils come from the package's own seeded simulator (:func:`disparity.simulate.simulate_pupils`),
are collapsed to cells by ethnicity, SEN, FSM, CIN, sex, school and LA, and fitted as a
binomial model of permanent exclusion, ``ethnicity + sen + fsm + cin + sex`` with ``la/school``
random intercepts (the glm engine: fixed effects with school-clustered errors). Each engine
runs in its own process, so its peak resident memory is its own.

Run::

    .venv/bin/python benchmarks/bench_engines_national.py --pupils 1000000 --schools 3000
    .venv/bin/python benchmarks/bench_engines_national.py --pupils 8000000 --schools 20000 \\
        --engines glm ml

Prints one line per engine: cells, seconds to fit (median over ``--repeats``), peak RSS of the
process, and the estimated LA and school SDs against the simulator's truth.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMULA = "ethnicity + sen + fsm + cin + sex"


def _make_cells(args: argparse.Namespace, path: Path) -> dict:
    from disparity.cells import collapse
    from disparity.simulate import simulate_pupils

    t0 = time.perf_counter()
    sim = simulate_pupils(n_pupils=args.pupils, n_schools=args.schools, n_las=args.las,
                          seed=args.seed)
    t1 = time.perf_counter()
    cells = collapse(sim.pupils, by=["ethnicity", "sen", "fsm", "cin", "sex", "school", "la"],
                     outcomes=["perm_excl"])
    t2 = time.perf_counter()
    cells.to_parquet(path, index=False)
    truth = sim.truth["perm_excl"]["group_sd"]
    return {"simulate_s": t1 - t0, "collapse_s": t2 - t1, "cells": len(cells),
            "truth_sd": truth}


def _fit_once(engine: str, cells_path: str, repeats: int, draws: int, chains: int) -> None:
    """Child process: fit ``repeats`` times and print a JSON line."""
    import warnings

    import pandas as pd

    from disparity.design import build_design
    from disparity.engines import get_engine
    from disparity.spec import ModelSpec

    cells = pd.read_parquet(cells_path)
    spec = ModelSpec(family="binomial", events="n_perm_excl", trials="n_pupils",
                     formula=FORMULA, groups=("la/school",), engine=engine, seed=1,
                     draws=draws, tune=draws, chains=chains)
    design = build_design(spec, cells)
    seconds = []
    fit = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = get_engine(engine).fit(design, spec, progress=False)
        seconds.append(time.perf_counter() - t0)
    sd = {}
    if fit is not None and len(fit.group_sd):
        sd = dict(zip(fit.group_sd["term"], fit.group_sd["estimate"].round(3)))
    print(json.dumps({
        "engine": engine, "seconds": statistics.median(seconds), "repeats": repeats,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "group_sd": {k: float(v) for k, v in sd.items()},
        "warnings": len(caught),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=3_000)
    parser.add_argument("--las", type=int, default=150)
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--engines", nargs="+", default=["glm", "ml", "pymc"])
    parser.add_argument("--repeats", type=int, default=1, help="fits per engine (glm, ml)")
    parser.add_argument("--draws", type=int, default=500, help="pymc: draws and tuning steps")
    parser.add_argument("--chains", type=int, default=2, help="pymc: chains")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "CELLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _fit_once(args.child[0], args.child[1], args.repeats, args.draws, args.chains)
        return

    with tempfile.TemporaryDirectory() as tmp:
        cells_path = Path(tmp) / "cells.parquet"
        made = _make_cells(args, cells_path)
        print(f"{args.pupils:,} pupils, {args.schools:,} schools, {args.las} LAs -> "
              f"{made['cells']:,} cells (simulate {made['simulate_s']:.1f} s, collapse "
              f"{made['collapse_s']:.1f} s); true SDs {made['truth_sd']}")
        for engine in args.engines:
            repeats = 1 if engine == "pymc" else args.repeats
            proc = subprocess.run(
                [sys.executable, __file__, "--child", engine, str(cells_path),
                 "--repeats", str(repeats), "--draws", str(args.draws),
                 "--chains", str(args.chains)],
                capture_output=True, text=True,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(f"{engine}: failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(lines[-1])
            print(f"{engine:5s} {r['seconds']:8.1f} s (median of {r['repeats']})  peak RSS "
                  f"{r['peak_rss_gib']:.2f} GiB  SDs {r['group_sd']}  warnings {r['warnings']}")


if __name__ == "__main__":
    main()
