"""Coverage of the 95 % intervals of a hierarchical engine on simulated pupils.

Each replicate draws a fresh pupils table from :func:`disparity.simulate.simulate_pupils`
(the same truth, a new seed), collapses it to cells by the model's columns, fits a binomial
GLMM of ``any_susp`` (one or more suspensions, about 3 % of pupils: permanent exclusion,
about 0.1 %, is too rare at this size) with ``la/school`` random intercepts, and records
whether each interval covers the true value:

- the fixed effects (log odds ratios) against the generating coefficients;
- the LA and school SDs against both the generating SD (``Truth.sd_la``, ``sd_school``)
  and the realised SD (the SD of the effects actually drawn in that replicate).

It prints, per parameter: the truth, the coverage (%), its Monte Carlo standard error
``sqrt(p (1 - p) / R)``, the mean bias (estimate - truth), the mean standard error and the
SD of the estimates across replicates (a calibrated standard error matches it).

Run::

    .venv/bin/python benchmarks/coverage_study.py --replicates 100              # ml
    .venv/bin/python benchmarks/coverage_study.py --engine pymc --replicates 20 \\
        --draws 500 --tune 500 --chains 2

With 100 replicates a coverage of 95 % has a Monte Carlo SE of about 2.2 points.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import numpy as np
import pandas as pd

from disparity.design import build_design
from disparity.engines import get_engine
from disparity.errors import ConvergenceWarning, DataWarning
from disparity.estimates import estimates
from disparity.fitting import load_model_data
from disparity.simulate import simulate_pupils
from disparity.spec import ModelSpec


def _spec(args: argparse.Namespace) -> ModelSpec:
    options = {"ml": {"num_threads": args.threads}, "pymc": {"cores": 1}}
    return ModelSpec(
        name="coverage", family="binomial", events="n_any_susp", trials="n_pupils",
        formula=args.formula, groups=("la/school",), engine=args.engine, seed=args.seed,
        draws=args.draws, tune=args.tune, chains=args.chains, sampler=args.sampler,
        engine_options=options, ci_prob=0.95,
        reference={"sen": "none", "fsm": "no", "cin": "no", "sex": "female"},
    )


def replicate(r: int, args: argparse.Namespace, spec: ModelSpec) -> list[dict]:
    """Fit one simulated data set; one record per parameter."""
    sim = simulate_pupils(args.pupils, n_schools=args.schools, n_las=args.las,
                          seed=args.seed + r)
    truth = sim.truth["any_susp"]
    cells = load_model_data(spec, sim.pupils).frame
    design = build_design(spec, cells)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("always", DataWarning)
        fit = get_engine(spec.engine).fit(design, spec.replace(seed=args.seed + r),
                                          progress=False)
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    table = estimates(fit, ci_prob=0.95)
    rows = []
    coefs = table[table["estimand"] == "coefficient"]
    for row in coefs.itertuples():
        rows.append(dict(replicate=r, parameter=row.term, kind="coefficient",
                         truth=truth["coefficients"][row.term], estimate=row.estimate,
                         std_error=row.std_error, low=row.conf_low, high=row.conf_high,
                         warned=n_warn > 0))
    sds = table[table["estimand"] == "group_sd"]
    for row in sds.itertuples():
        for which, value in (("generating", truth["group_sd"][row.term]),
                             ("realised", truth["realised_sd"][row.term])):
            rows.append(dict(replicate=r, parameter=f"sd[{row.term}] vs {which}",
                             kind="group_sd", truth=value, estimate=row.estimate,
                             std_error=row.std_error, low=row.conf_low, high=row.conf_high,
                             warned=n_warn > 0))
    return rows


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """Coverage table: one row per parameter."""
    out = []
    for parameter, g in records.groupby("parameter", sort=False):
        covered = ((g["low"] <= g["truth"]) & (g["truth"] <= g["high"])).to_numpy()
        n = int(np.isfinite(g["low"]).sum())
        p = float(covered.mean())
        bias = g["estimate"] - g["truth"]
        out.append(dict(
            parameter=parameter, truth=float(g["truth"].mean()), n=n,
            coverage_pct=100 * p, mc_se_pct=100 * math.sqrt(p * (1 - p) / max(len(g), 1)),
            mean_bias=float(bias.mean()), mc_se_bias=float(bias.std(ddof=1) / math.sqrt(len(g)))
            if len(g) > 1 else float("nan"),
            mean_se=float(g["std_error"].mean()), sd_estimates=float(g["estimate"].std(ddof=1))
            if len(g) > 1 else float("nan"),
        ))
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--engine", choices=("ml", "pymc"), default="ml")
    parser.add_argument("--pupils", type=int, default=60_000)
    parser.add_argument("--schools", type=int, default=300)
    parser.add_argument("--las", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1000)
    # The formula must hold every covariate the simulator uses: leaving ethnicity out shifts
    # the intercept by the average ethnicity effect (-0.07 here), which is not a bias of the
    # engine.
    parser.add_argument("--formula", default="ethnicity + sen + fsm + cin + sex")
    parser.add_argument("--threads", type=int, default=1, help="ml: GPBoost threads")
    parser.add_argument("--draws", type=int, default=500, help="pymc: draws per chain")
    parser.add_argument("--tune", type=int, default=500, help="pymc: tuning steps")
    parser.add_argument("--chains", type=int, default=2, help="pymc: chains")
    parser.add_argument("--sampler", default="pymc", help="pymc: sampler")
    parser.add_argument("--records", default=None, help="write every replicate's rows (CSV)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    spec = _spec(args)
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    records: list[dict] = []
    failures: list[str] = []
    seconds: list[float] = []
    for r in tqdm(range(args.replicates), desc=f"{args.engine} replicates", file=sys.stderr):
        start = time.perf_counter()
        try:
            records.extend(replicate(r, args, spec))
        except Exception as exc:  # a failed fit is counted and reported, not fatal
            failures.append(f"replicate {r}: {type(exc).__name__}: {exc}"[:300])
        seconds.append(time.perf_counter() - start)
    frame = pd.DataFrame(records)
    if args.records:
        frame.to_csv(args.records, index=False)
    print(f"engine {args.engine}; {args.replicates} replicates of {args.pupils:,} pupils, "
          f"{args.schools} schools, {args.las} LAs; outcome any_susp; formula "
          f"{args.formula!r} + (1 | la) + (1 | la:school); seeds {args.seed}.."
          f"{args.seed + args.replicates - 1}")
    if args.engine == "pymc":
        print(f"pymc: {args.chains} chains x {args.draws} draws ({args.tune} tuning), "
              f"sampler {args.sampler}")
    print(f"seconds per replicate: median {np.median(seconds):.1f}, total {sum(seconds):.0f}")
    if not frame.empty:
        warned = frame.groupby("replicate")["warned"].first()
        print(f"fits with a convergence warning: {int(warned.sum())} of {len(warned)}")
        table = summarise(frame)
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"failed fits: {len(failures)}")
    for line in failures[:10]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
