"""Time the ``ml`` engine on simulated national-scale cells and compare its SDs with the truth.

Pupils are simulated with numpy (ethnicity, SEN, FSM, CIN, sex; schools within LAs; known
fixed effects and LA / school SDs), collapsed to cells, and fitted as a binomial GLMM of
permanent exclusion with ``la/school`` random intercepts.

Run::

    .venv/bin/python benchmarks/bench_ml.py                       # 1M pupils, 3,000 schools
    .venv/bin/python benchmarks/bench_ml.py --pupils 8000000 --schools 20000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from disparity import vocabulary as v

#: True log-odds effects (reference levels have 0) and SDs used by the simulation.
ETHNICITY_EFFECTS = {
    "White British": 0.0, "Irish": -0.2, "Traveller of Irish heritage": 1.2,
    "Gypsy/Roma": 1.0, "White and Black Caribbean": 0.8, "Black Caribbean": 0.5,
    "Black African": -0.4, "Indian": -1.2, "Pakistani": -0.5, "Bangladeshi": -0.9,
    "Chinese": -1.5,
}
ETHNICITY_SHARES = np.array([70, 1, 0.3, 0.5, 2, 1.5, 4, 3, 4.5, 2, 1.2])
SEN_EFFECTS = {"none": 0.0, "support": 1.0, "ehcp": 0.7}
FSM_EFFECT, CIN_EFFECT, MALE_EFFECT = 0.9, 0.8, 0.6
INTERCEPT = -7.0
LA_SD, SCHOOL_SD = 0.25, 0.60


def simulate_cells(n_pupils: int, n_schools: int, n_las: int, seed: int) -> pd.DataFrame:
    """Simulated pupils collapsed to cells (one row per school x characteristics)."""
    rng = np.random.default_rng(seed)
    school_la = np.sort(rng.integers(0, n_las, n_schools))
    school_la[:n_las] = np.arange(n_las)  # every LA has a school
    size = rng.gamma(2.0, 1.0, n_schools)
    school = rng.choice(n_schools, n_pupils, p=size / size.sum())
    la_eff = rng.normal(0, LA_SD, n_las)
    school_eff = rng.normal(0, SCHOOL_SD, n_schools)
    eth_names = list(ETHNICITY_EFFECTS)
    eth = rng.choice(len(eth_names), n_pupils, p=ETHNICITY_SHARES / ETHNICITY_SHARES.sum())
    sen = rng.choice(3, n_pupils, p=[0.83, 0.13, 0.04])
    fsm = (rng.random(n_pupils) < 0.22).astype(np.int8)
    cin = (rng.random(n_pupils) < 0.03).astype(np.int8)
    male = (rng.random(n_pupils) < 0.51).astype(np.int8)
    eta = (INTERCEPT + np.array(list(ETHNICITY_EFFECTS.values()))[eth]
           + np.array(list(SEN_EFFECTS.values()))[sen] + FSM_EFFECT * fsm + CIN_EFFECT * cin
           + MALE_EFFECT * male + la_eff[school_la[school]] + school_eff[school])
    excluded = rng.random(n_pupils) < 1.0 / (1.0 + np.exp(-eta))
    pupils = pd.DataFrame({"school": school.astype(np.int32), "eth": eth.astype(np.int8),
                           "sen": sen.astype(np.int8), "fsm": fsm, "cin": cin, "male": male,
                           "y": excluded.astype(np.int32)})
    cells = (pupils.groupby(["school", "eth", "sen", "fsm", "cin", "male"], observed=True)
             .y.agg(["sum", "size"]).reset_index())
    del pupils
    out = pd.DataFrame({
        v.LA: [f"LA{x:03d}" for x in school_la[cells.school.to_numpy()]],
        v.SCHOOL: [f"S{x:05d}" for x in cells.school.to_numpy()],
        v.ETHNICITY: np.array(eth_names, dtype=object)[cells.eth.to_numpy()],
        v.SEN: np.array(v.SEN_LEVELS, dtype=object)[cells.sen.to_numpy()],
        v.FSM: np.array(["no", "yes"], dtype=object)[cells.fsm.to_numpy()],
        v.CIN: np.array(["no", "yes"], dtype=object)[cells.cin.to_numpy()],
        v.SEX: np.array(["female", "male"], dtype=object)[cells.male.to_numpy()],
        "n_perm_excl": cells["sum"].to_numpy(),
        v.N_PUPILS: cells["size"].to_numpy(),
    })
    # the SDs of the effects actually drawn, which a fit can at best recover
    out.attrs["realised_sd"] = {"la": float(la_eff.std(ddof=1)),
                                "school": float(school_eff.std(ddof=1))}
    return out


def main() -> None:
    from disparity.design import build_design
    from disparity.engines import ml
    from disparity.spec import ModelSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=3_000)
    parser.add_argument("--las", type=int, default=150)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--tol", type=float, default=None, help="[fit.ml] tolerance")
    args = parser.parse_args()

    t0 = time.perf_counter()
    cells = simulate_cells(args.pupils, args.schools, args.las, args.seed)
    t_sim = time.perf_counter() - t0
    options: dict = {}
    if args.tol is not None:
        options["tolerance"] = args.tol
    spec = ModelSpec(family="binomial", events="n_perm_excl", trials=v.N_PUPILS,
                     formula="ethnicity + sen + fsm + cin + sex", groups=("la/school",),
                     engine="ml", engine_options={"ml": options})
    t1 = time.perf_counter()
    design = build_design(spec, cells)
    t_design = time.perf_counter() - t1
    t2 = time.perf_counter()
    fit = ml.fit(design, spec, progress=True)
    t_fit = time.perf_counter() - t2
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    d = fit.diagnostics
    print(f"pupils {args.pupils:,}  schools {args.schools:,}  LAs {args.las}  "
          f"cells {design.n_cells:,}  fixed effects {len(design.terms)}")
    print(f"seconds: simulate {t_sim:.1f}  design {t_design:.1f}  fit {t_fit:.1f} "
          f"(steps {d['seconds_by_step']})  peak RSS {rss_gib:.2f} GiB")
    print(f"converged {d['converged']}  iterations {d['iterations']}  "
          f"max scaled gradient {d['max_scaled_gradient']}  coef_cov {d['cov_type']}")
    truth_sd = {"la": LA_SD, "school": SCHOOL_SD}
    for row in fit.group_sd.itertuples():
        print(f"SD {row.term:7s} {row.estimate:.3f} [{row.conf_low:.3f}, {row.conf_high:.3f}]"
              f"  truth {truth_sd[row.term]:.3f}  realised "
              f"{cells.attrs['realised_sd'][row.term]:.3f}")
    truth = {"sen[T.support]": SEN_EFFECTS["support"], "sen[T.ehcp]": SEN_EFFECTS["ehcp"],
             "fsm[T.yes]": FSM_EFFECT, "cin[T.yes]": CIN_EFFECT, "sex[T.male]": MALE_EFFECT,
             **{f"ethnicity[T.{k}]": b for k, b in ETHNICITY_EFFECTS.items()}}
    z = [(fit.coef[i] - truth[t]) / fit.std_errors[i]
         for i, t in enumerate(fit.terms) if t in truth]
    print(f"fixed effects: max |estimate - truth| / SE = {np.max(np.abs(z)):.2f} "
          f"over {len(z)} terms")


if __name__ == "__main__":
    main()
