"""Precision and recall of the FDR flags of schools with unusual unexplained roll loss.

Each replicate draws a Year 10 -> Year 11 cohort with
:func:`disparity.simulate.simulate_off_rolling` (a new seed; ``--planted`` schools with
excess log-odds of unexplained loss equal to the effect size), fits the model of
``models/synthetic_off_rolling.toml`` (binomial, pupils' characteristics, ``la/school``
random intercepts) with the ml engine (:func:`disparity.fitting.fit_model`, design from
:func:`disparity.design.build_design`), and flags schools with
:func:`disparity.estimands.unit_effects` (one-sided test of a school effect above its LA's
average, Benjamini-Hochberg at ``--fdr``). Against the planted schools:

- precision = flagged planted schools / flagged schools, pooled over replicates
  (``precision_min``: the lowest of the replicates that flag any school);
- recall = flagged planted schools / planted schools, pooled (``recall_min``,
  ``recall_max``: over replicates).

``unconverged`` counts fits with a :class:`~disparity.errors.ConvergenceWarning` (kept);
``separated`` counts cohorts in which a level of a formula variable (a rare ethnic group)
had no loss at all, whose maximum-likelihood coefficient is then infinite.

A flagged school that was not planted is a false discovery even if its own (unplanted)
school effect is high: the flags are judged against the planted truth only.

Run (about 30 s a fit on one core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/off_rolling_study.py \\
        --effects 1.0 1.5 2.0 2.5 --seeds 5 --pupils 70000

``--pupils 140000`` doubles each school's cohort (two years of Year 10 pupils pooled);
``--concentration 40`` gives the LAs the more varied ethnic compositions of
:class:`disparity.simulate.Truth` (rare groups then often have no loss at all).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from disparity.design import build_design
from disparity.errors import ConvergenceWarning, DataWarning
from disparity.estimands import unit_effects
from disparity.fitting import fit_model, load_model_data
from disparity.simulate import OffRollingTruth, simulate_off_rolling
from disparity.spec import load_spec

MODEL = Path(__file__).resolve().parents[1] / "models" / "synthetic_off_rolling.toml"


def replicate(spec, args: argparse.Namespace, effect: float, seed: int) -> dict:
    """Simulate, fit and flag once; counts of flags against the planted schools."""
    truth = OffRollingTruth(ethnicity_concentration=args.concentration)
    sim = simulate_off_rolling(args.pupils, n_schools=args.schools, n_las=args.las,
                               n_planted=args.planted, planted_effect=effect, seed=seed,
                               truth=truth)
    separated = _separated_levels(sim.pupils, spec)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", DataWarning)
        warnings.simplefilter("always", ConvergenceWarning)
        cells = load_model_data(spec, sim.pupils).frame
        design = build_design(spec, cells)
        fit = fit_model(spec, cells, progress=False)
    seconds = time.perf_counter() - start
    unconverged = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    named = sorted({m.split(" would move ")[1].split(" by about ")[0] for m in unconverged
                    if " would move " in m})
    units = unit_effects(fit, design, "school", fdr=args.fdr)
    units = units[units["estimand"] == "unit_ratio"]
    planted = set(sim.truth["unexplained_loss"]["planted_units"])
    flagged = set(units.loc[units["flag_fdr"], "level"])
    school_sd = fit.group_sd.set_index("term").loc["school", "estimate"]
    return dict(effect=effect, seed=seed, pupils=args.pupils, flagged=len(flagged),
                true_positives=len(flagged & planted), planted=len(planted),
                school_sd=float(school_sd), unconverged=bool(unconverged),
                unconverged_at=";".join(named), separated=";".join(separated),
                seconds=seconds)


def _separated_levels(pupils: pd.DataFrame, spec) -> list[str]:
    """Levels of the formula's variables whose pupils have no loss (or only losses)."""
    from disparity.spec import formula_variables

    out = []
    for var in formula_variables(spec.formula):
        g = pupils.groupby(var, observed=True)["unexplained_loss"].agg(["sum", "size"])
        out += [f"{var}={lv}" for lv in g.index[(g["sum"] == 0) | (g["sum"] == g["size"])]]
    return out


def summarise(records: pd.DataFrame) -> pd.DataFrame:
    """Per effect size: pooled precision and recall, and their spread over replicates."""
    rows = []
    for (pupils, effect), g in records.groupby(["pupils", "effect"], sort=True):
        flagged, tp, planted = g["flagged"].sum(), g["true_positives"].sum(), g["planted"].sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = (g["true_positives"] / g["flagged"]).to_numpy(float)
        rec = (g["true_positives"] / g["planted"]).to_numpy(float)
        rows.append({
            "pupils": int(pupils), "effect": float(effect),
            "odds_ratio": float(np.exp(effect)), "replicates": len(g),
            "flagged_per_replicate": flagged / len(g),
            "precision": tp / flagged if flagged else float("nan"),
            "precision_min": float(np.nanmin(prec)) if np.isfinite(prec).any() else float("nan"),
            "recall": tp / planted, "recall_min": float(rec.min()),
            "recall_max": float(rec.max()),
            "school_sd_fitted": float(g["school_sd"].mean()),
            "unconverged": int(g["unconverged"].sum()),
            "separated": int((g["separated"] != "").sum()),
            "seconds_per_fit": float(g["seconds"].median()),
        })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--effects", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5])
    parser.add_argument("--seeds", type=int, default=5, help="replicates per effect size")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--pupils", type=int, nargs="+", default=[70_000])
    parser.add_argument("--schools", type=int, default=400)
    parser.add_argument("--las", type=int, default=40)
    parser.add_argument("--planted", type=int, default=20)
    parser.add_argument("--concentration", type=float, default=400.0,
                        help="Dirichlet concentration of LA ethnic compositions")
    parser.add_argument("--fdr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="ml: GPBoost threads")
    args = parser.parse_args(argv)

    base = load_spec(MODEL)
    spec = base.replace(engine="ml", engine_options={"ml": {"num_threads": args.threads}})
    records = []
    for pupils in args.pupils:
        args_p = argparse.Namespace(**{**vars(args), "pupils": pupils})
        for effect in args.effects:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                rec = replicate(spec, args_p, effect, seed)
                records.append(rec)
                note = (f", not converged at {rec['unconverged_at'] or '?'}"
                        if rec["unconverged"] else "")
                note += f", no-event levels {rec['separated']}" if rec["separated"] else ""
                print(f"pupils {pupils:,} effect {effect:g} seed {seed}: flagged "
                      f"{rec['flagged']}, true {rec['true_positives']} of {rec['planted']} "
                      f"({rec['seconds']:.0f} s{note})", file=sys.stderr, flush=True)
    table = summarise(pd.DataFrame(records))
    print(f"Off-rolling flags: {args.schools} schools in {args.las} LAs, {args.planted} "
          f"planted, BH FDR {args.fdr}, ml engine, {args.seeds} seeds per row, ethnicity "
          f"concentration {args.concentration:g}\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
