"""Simulation study: suppressed counts kept as "1 or 2" (censored) against dropping them.

DfE-shaped data with a known truth: 150 LAs x 18 ethnic groups (England's 2016/17 pupil
shares, LA sizes from 5,000 to 90,000 pupils), permanent exclusion at about 0.1% with true
ethnic effects on the logit scale and LA intercepts with SD 0.5. Every event count of 1 or 2
is published as ``x``, as DfE does. Three fits of each replicate, same model
(``p(n_perm_excl, n_pupils) ~ ethnicity + (1 | la)``):

- ``censored``: the ``x`` cells enter the likelihood as "between 1 and 2";
- ``drop``: the ``x`` cells are left out (``[data] suppressed = "drop"``);
- ``full``: the unsuppressed counts (the best any method could do).

For each ethnic effect and the LA SD: mean bias (estimate - truth) and 95% interval
coverage over replicates, the rare groups (fewer than 1% of pupils) reported apart.

Usage (a slow study; its table goes in the closing note)::

    python benchmarks/censored_study.py --replicates 100 --engine ml
    python benchmarks/censored_study.py --replicates 20 --engine pymc --draws 500 --tune 300
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from disparity.simulate import ETHNICITY_SHARES  # noqa: E402
from disparity.vocabulary import ETHNICITY_LEVELS  # noqa: E402

#: True ethnic effects (logit scale, against White British): roughly the published pattern.
TRUTH = {
    "White British": 0.0, "Irish": -0.2, "Traveller of Irish heritage": 1.4,
    "Gypsy/Roma": 1.2, "Any other White background": -0.6, "White and Black Caribbean": 0.8,
    "White and Black African": 0.1, "White and Asian": -0.2, "Any other Mixed background": 0.2,
    "Indian": -1.6, "Pakistani": -0.9, "Bangladeshi": -1.2, "Any other Asian background": -1.3,
    "Black Caribbean": 0.9, "Black African": -0.3, "Any other Black background": 0.3,
    "Chinese": -1.8, "Any other ethnic group": -0.3, "Unclassified": 0.2,
}
INTERCEPT = -6.9  # about 0.1% for White British
LA_SD = 0.5


def simulate(seed: int, n_las: int = 150) -> pd.DataFrame:
    """One replicate's cells: ``n_perm_excl`` true counts and ``published`` with ``x``."""
    rng = np.random.default_rng(seed)
    levels = [e for e in ETHNICITY_LEVELS if e in TRUTH]
    shares = np.array([ETHNICITY_SHARES[e] for e in levels])
    shares = shares / shares.sum()
    sizes = np.exp(rng.uniform(np.log(5_000), np.log(90_000), n_las)).astype(int)
    la_effect = rng.normal(0, LA_SD, n_las)
    rows = []
    for j in range(n_las):
        mix = rng.dirichlet(400 * shares)  # LAs differ in their ethnic mix
        pupils = rng.multinomial(sizes[j], mix)
        for lv, n in zip(levels, pupils):
            if n == 0:
                continue
            p = 1 / (1 + np.exp(-(INTERCEPT + TRUTH[lv] + la_effect[j])))
            rows.append({"la": f"LA{j:03d}", "ethnicity": lv, "n_pupils": int(n),
                         "n_perm_excl": int(rng.binomial(n, p))})
    cells = pd.DataFrame(rows)
    cells["published"] = np.where(cells.n_perm_excl.isin([1, 2]), "x",
                                  cells.n_perm_excl.astype(str))
    cells.attrs["realised_la_sd"] = float(np.std(la_effect, ddof=1))
    return cells


def fit_three(cells: pd.DataFrame, engine: str, options: dict) -> dict[str, pd.DataFrame]:
    import disparity

    formula = "p(n_perm_excl, n_pupils) ~ ethnicity + (1 | la)"
    ref = {"ethnicity": "White British"}
    full = cells.drop(columns=["published"])
    published = cells.drop(columns=["n_perm_excl"]).rename(
        columns={"published": "n_perm_excl"})
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data, extra in (("full", full, {}), ("censored", published, {}),
                                  ("drop", published, {"suppressed": "drop"})):
            r = disparity.fit(formula, data, engine=engine, reference=ref, scope="fit",
                              **options, **extra)
            out[name] = r.estimates
    return out


def _rows(est: pd.DataFrame) -> pd.DataFrame:
    coef = est[est.estimand == "coefficient"]
    coef = coef[coef.term.str.startswith("ethnicity[T.")].assign(
        parameter=lambda t: t.term.str.slice(len("ethnicity[T."), -1))
    sd = est[est.estimand == "group_sd"].assign(parameter="LA SD")
    return pd.concat([coef, sd])[["parameter", "estimate", "conf_low", "conf_high"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--engine", default="ml", choices=["ml", "pymc"])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", type=Path, default=None, help="write every replicate's rows")
    args = ap.parse_args(argv)
    options = ({"draws": args.draws, "tune": args.tune, "chains": args.chains}
               if args.engine == "pymc" else {})
    rare = {e for e, s in ETHNICITY_SHARES.items()
            if s / sum(ETHNICITY_SHARES.values()) < 0.01}
    rows = []
    start = time.perf_counter()
    for rep in range(args.replicates):
        cells = simulate(args.seed + rep)
        try:
            fits = fit_three(cells, args.engine, {**options, "seed": args.seed + rep})
        except Exception as exc:  # a replicate that cannot be fitted is counted, not hidden
            print(f"replicate {rep}: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
            rows.append({"replicate": rep, "failed": True})
            continue
        for method, est in fits.items():
            t = _rows(est).assign(method=method, replicate=rep, failed=False)
            t["truth"] = [LA_SD if p == "LA SD" else TRUTH[p] for p in t.parameter]
            t["realised"] = [cells.attrs["realised_la_sd"] if p == "LA SD" else np.nan
                             for p in t.parameter]
            rows.append(t)
        print(f"replicate {rep + 1}/{args.replicates}: "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    table = pd.concat([r if isinstance(r, pd.DataFrame) else pd.DataFrame([r])
                       for r in rows], ignore_index=True)
    if args.csv:
        table.to_csv(args.csv, index=False)
    ok = table[table.failed == False]  # noqa: E712
    ok = ok.assign(covered=(ok.conf_low <= ok.truth) & (ok.truth <= ok.conf_high),
                   bias=ok.estimate - ok.truth,
                   group=np.where(ok.parameter == "LA SD", "LA SD",
                                  np.where(ok.parameter.isin(rare), "rare groups",
                                           "other groups")))
    summary = ok.groupby(["group", "method"]).agg(
        coverage=("covered", "mean"), mean_bias=("bias", "mean"),
        n=("covered", "size")).reset_index()
    per = ok[ok.group == "rare groups"].groupby(["parameter", "method"]).agg(
        coverage=("covered", "mean"), mean_bias=("bias", "mean")).reset_index()
    n_fail = int(table.failed.sum()) if "failed" in table else 0
    print(f"\nengine {args.engine}, {args.replicates} replicates ({n_fail} failed), "
          f"{time.perf_counter() - start:.0f} s\n")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nrare groups one by one:")
    print(per.pivot(index="parameter", columns="method", values=["coverage", "mean_bias"])
          .to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
