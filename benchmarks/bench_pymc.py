"""Time PyMC's own NUTS against nutpie on the same simulated cells.

Simulates pupils in schools within LAs (default 100,000 pupils, 300 schools, 30 LAs) with
known effects, collapses them to cells (ethnicity x SEN x FSM x school), fits the nested
random-intercept binomial model ``ethnicity + sen + fsm``, groups ``la/school``, with each
sampler and prints, per sampler, the median over repeats of the sampling seconds (model
building, compilation and sampling: the whole ``fit``), the smallest bulk ESS and ESS per
second, with the largest R-hat and the divergences.

Usage::

    .venv/bin/python benchmarks/bench_pymc.py [--pupils 100000] [--schools 300] [--las 30]
        [--chains 2] [--tune 500] [--draws 500] [--repeats 1] [--samplers pymc nutpie]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd

from disparity.design import build_design
from disparity.engines import pymc as engine
from disparity.errors import ConvergenceWarning
from disparity.spec import ModelSpec

ETHNICITY = ("White British", "Black Caribbean", "Asian Pakistani", "Mixed", "Other")
ETHNICITY_LOG_ODDS = np.array([0.0, 0.9, -0.3, 0.5, -0.2])
SEN = ("none", "support", "ehcp")
SEN_LOG_ODDS = np.array([0.0, 1.0, 1.6])


def simulate_cells(n_pupils: int, n_schools: int, n_las: int, seed: int) -> pd.DataFrame:
    """Cells of pupils: events out of pupils per ethnicity x SEN x FSM x school."""
    rng = np.random.default_rng(seed)
    la_of_school = rng.integers(0, n_las, n_schools)
    school = rng.integers(0, n_schools, n_pupils)
    eth = rng.choice(len(ETHNICITY), n_pupils, p=[0.65, 0.05, 0.1, 0.08, 0.12])
    sen = rng.choice(len(SEN), n_pupils, p=[0.83, 0.13, 0.04])
    fsm = rng.random(n_pupils) < 0.22
    u_la = rng.normal(0, 0.3, n_las)
    u_school = rng.normal(0, 0.5, n_schools)
    eta = (-5.0 + ETHNICITY_LOG_ODDS[eth] + SEN_LOG_ODDS[sen] + 0.8 * fsm
           + u_la[la_of_school[school]] + u_school[school])
    excluded = rng.random(n_pupils) < 1 / (1 + np.exp(-eta))
    pupils = pd.DataFrame({
        "la": np.char.add("E", la_of_school[school].astype(str)),
        "school": np.char.add("S", school.astype(str)),
        "ethnicity": np.asarray(ETHNICITY)[eth],
        "sen": np.asarray(SEN)[sen],
        "fsm": np.where(fsm, "yes", "no"),
        "n_perm_excl": excluded.astype(int),
    })
    cells = (pupils.groupby(["la", "school", "ethnicity", "sen", "fsm"], observed=True)
             .agg(n_perm_excl=("n_perm_excl", "sum"), n_pupils=("n_perm_excl", "size"))
             .reset_index())
    assert cells["n_pupils"].sum() == n_pupils
    assert cells["n_perm_excl"].sum() == pupils["n_perm_excl"].sum()
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=100_000)
    parser.add_argument("--schools", type=int, default=300)
    parser.add_argument("--las", type=int, default=30)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samplers", nargs="+", default=["pymc", "nutpie"])
    args = parser.parse_args()

    cells = simulate_cells(args.pupils, args.schools, args.las, args.seed)
    spec = ModelSpec(
        name="bench", family="binomial", events="n_perm_excl", trials="n_pupils",
        formula="ethnicity + sen + fsm", groups=("la/school",),
        reference={"ethnicity": "White British", "sen": "none", "fsm": "no"},
        engine="pymc", seed=args.seed, chains=args.chains, tune=args.tune, draws=args.draws,
    )
    design = build_design(spec, cells)
    print(f"{args.pupils:,} pupils, {args.schools} schools, {args.las} LAs -> "
          f"{design.n_cells:,} cells, {len(design.terms)} fixed effects; "
          f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), "
          f"{args.repeats} repeat(s)")
    print(f"{'sampler':8} {'median s':>9} {'sampling s':>10} {'min bulk ESS':>12} "
          f"{'ESS/s':>7} {'max R-hat':>9} {'divergent':>9}")
    for sampler in args.samplers:
        totals, sampling, ess, rhat, div = [], [], [], [], []
        for r in range(args.repeats):
            run = spec.replace(sampler=sampler, seed=args.seed + r)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit = engine.fit(design, run, progress=False)
            totals.append(time.perf_counter() - start)
            d = fit.diagnostics
            sampling.append(d["seconds"])
            ess.append(d["min_ess_bulk"] or float("nan"))
            rhat.append(d["max_rhat"] or float("nan"))
            div.append(d["divergences"])
        median_total = statistics.median(totals)
        median_ess = statistics.median(ess)
        print(f"{sampler:8} {median_total:9.1f} {statistics.median(sampling):10.1f} "
              f"{median_ess:12.0f} {median_ess / median_total:7.2f} {max(rhat):9.3f} "
              f"{max(div):9d}")


if __name__ == "__main__":
    main()
