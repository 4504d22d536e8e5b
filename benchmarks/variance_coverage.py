"""Coverage of the group SDs' 95% intervals at a 0.1% event rate: Laplace against quadrature.

Each replicate simulates pupils with :func:`disparity.simulate.simulate_pupils` (150 LAs,
schools nested in LAs, the permanent-exclusion outcome at about 0.1%, true LA SD 0.25 and
school SD 0.6), collapses them with :func:`disparity.cells.collapse` and fits
``sen + fsm + (1 | la) + (1 | la:school)`` with the ml engine twice: the Laplace
approximation (``quadrature_nodes = 1``, the default) and nested adaptive Gauss-Hermite
quadrature (``quadrature_nodes = 9``). The simulated truth has effects of SEN and FSM
only (the other characteristics' effects set to 0, the intercept raised to keep the rate),
so the fitted formula is the generating model and its SDs are the truth's.

Run (about 10-20 s a replicate at 1M pupils on one core)::

    python benchmarks/variance_coverage.py --replicates 50 --pupils 1000000 --schools 3000

Prints, for each method and SD: the mean estimate, its bias, the empirical SD of the
estimates, the mean standard error and the coverage of the 95% interval of the generating
SD (with its Monte Carlo standard error), and the same coverage of each replicate's realised
SD.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from types import MappingProxyType

import pandas as pd

METHODS = {"Laplace": 1, "AGHQ (9 nodes)": 9}


def _truth():
    from disparity.simulate import Truth

    default = Truth()
    # -7.68 gives the default truth's permanent-exclusion rate (0.095% at 1M pupils, seed 1)
    # with SEN and FSM as the only characteristics that matter
    return dataclasses.replace(
        default,
        intercept=MappingProxyType({"perm_excl": -7.68,
                                    "any_susp": default.intercept["any_susp"]}),
        effects=MappingProxyType({
            "perm_excl": {"sen": {"support": 1.2, "ehcp": 1.0}, "fsm": {"yes": 0.9}},
            "any_susp": default.effects["any_susp"]}),
    )


def replicate(seed: int, n_pupils: int, n_schools: int, n_las: int) -> list[dict]:
    from disparity.cells import collapse
    from disparity.design import build_design
    from disparity.engines import ml
    from disparity.simulate import simulate_pupils
    from disparity.spec import ModelSpec

    sim = simulate_pupils(n_pupils, n_schools=n_schools, n_las=n_las, seed=seed,
                          truth=_truth())
    cells = collapse(sim.pupils, by=["sen", "fsm", "school", "la"], outcomes=["perm_excl"])
    truth = sim.truth["perm_excl"]
    rows = []
    for method, nodes in METHODS.items():
        spec = ModelSpec(family="binomial", events="n_perm_excl", trials="n_pupils",
                         formula="sen + fsm", groups=("la/school",), engine="ml",
                         reference={"sen": "none", "fsm": "no"},
                         engine_options={"ml": {"quadrature_nodes": nodes}})
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ml.fit(build_design(spec, cells), spec, progress=False)
        seconds = time.perf_counter() - t0
        for r in fit.group_sd.itertuples():
            rows.append({
                "seed": seed, "method": method, "term": r.term, "estimate": r.estimate,
                "std_error": r.std_error, "low": r.conf_low, "high": r.conf_high,
                "truth": truth["group_sd"][r.term], "realised": truth["realised_sd"][r.term],
                "events": int(cells.n_perm_excl.sum()), "seconds": seconds,
                "converged": fit.diagnostics["converged"],
            })
    return rows


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (method, term), g in frame.groupby(["method", "term"], sort=False):
        cover = ((g.low <= g.truth) & (g.truth <= g.high)).mean()
        cover_r = ((g.low <= g.realised) & (g.realised <= g.high)).mean()
        n = len(g)
        out.append({
            "method": method, "SD": term, "truth": g.truth.iloc[0], "replicates": n,
            "mean estimate": g.estimate.mean(), "bias": g.estimate.mean() - g.truth.iloc[0],
            "SD of estimates": g.estimate.std(), "mean SE": g.std_error.mean(),
            "coverage": cover, "MC SE": math.sqrt(max(cover * (1 - cover), 1e-12) / n),
            "coverage (realised SD)": cover_r, "not converged": int((~g.converged).sum()),
            "median s": g.seconds.median(),
        })
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--pupils", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=3_000)
    parser.add_argument("--las", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--csv", help="also write every replicate's rows here")
    args = parser.parse_args(argv)
    rows = []
    for k in range(args.replicates):
        rows.extend(replicate(args.seed + k, args.pupils, args.schools, args.las))
        print(f"replicate {k + 1}/{args.replicates} done", file=sys.stderr, flush=True)
        if args.csv:
            pd.DataFrame(rows).to_csv(args.csv, index=False)
    frame = pd.DataFrame(rows)
    table = summarise(frame)
    print(f"\n{args.replicates} replicates, {args.pupils:,} pupils, {args.schools:,} schools, "
          f"{args.las} LAs; events per replicate: median {int(frame.events.median()):,}\n")
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
              + " |")


if __name__ == "__main__":
    main()
