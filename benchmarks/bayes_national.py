"""The Bayesian engine at national scale, against plain PyMC peers on the same data.

:func:`bayes_rows` fits one cells table with the package's ``pymc`` engine (nutpie on the
compiled cell density) and with the peers, and returns one row per fit: size, step,
engine, wall seconds, peak memory, max r-hat and min bulk ESS over the fixed effects and
SDs, ESS per second, the largest gap between its posterior means and the engine's (in the
peer's posterior SDs), and recovery of the truth (estimate and 95% interval against the
generating value) for each SD and five fixed effects.

Peers:

- ``nutpie_plain``: a plain PyMC model of the same cells (dense ``X @ beta``, non-centred
  LA and school intercepts, the engine's priors), compiled and sampled by nutpie;
- ``pymc_pupils``: the same model on one Bernoulli row per pupil, sampled by PyMC's NUTS.
  It is far too slow to run to the end at national scale, so it is run short (2 chains x
  (100 + 100)) at the size given and its seconds per gradient evaluation are measured; its
  full-run time is extrapolated as that cost x (pupils / pupils measured) x the gradient
  evaluations that ``nutpie_plain`` (the same parameterisation) needed for the full run
  on the same cells (or the engine's, when the plain peer was not run). The row says
  ``extrapolated``.

Each fit runs in a child process (fork), so its peak resident memory is its own.

Run::

    .venv/bin/python benchmarks/bayes_national.py --sizes 100k --peers nutpie_plain pymc_pupils
    .venv/bin/python benchmarks/bayes_national.py --sizes 1M --outcomes perm_excl any_susp
    .venv/bin/python benchmarks/bayes_national.py --sizes 8M --peers

The table goes to standard output; ``--json PATH`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

FORMULA = "ethnicity + sen + fsm + cin + sex"
BY = ["ethnicity", "sen", "fsm", "cin", "sex", "school", "la"]
#: Five fixed effects whose recovery is reported (the others are in the fit).
FIVE = ("Intercept", "sen[T.ehcp]", "fsm[T.yes]", "cin[T.yes]",
        "ethnicity[T.Black Caribbean]")
SIZES = {"100k": (100_000, 500, 150), "1M": (1_000_000, 3_000, 150),
         "8M": (8_000_000, 20_000, 150)}
ENGINES = ("disparity", "nutpie_plain", "pymc_pupils")


def bayes_rows(
    cells: pd.DataFrame,
    truth: Mapping[str, Any],
    *,
    outcome: str = "perm_excl",
    size: str | None = None,
    engines: Sequence[str] = ("disparity", "nutpie_plain"),
    draws: int = 1000,
    tune: int | None = None,
    chains: int = 4,
    target_accept: float | None = None,
    repeats: int = 1,
    seed: int = 1,
    pupils_measured: int = 100_000,
) -> list[dict[str, Any]]:
    """Benchmark rows for the Bayesian engine and its peers on one cells table.

    Parameters
    ----------
    cells : DataFrame
        Cells from :func:`disparity.cells.collapse` with the columns of :data:`BY`,
        ``n_pupils`` and ``n_<outcome>``.
    truth : mapping
        ``Simulation.truth[outcome]``: ``coefficients``, ``group_sd``, ``realised_sd``.
    outcome : str
        ``"perm_excl"`` or ``"any_susp"``.
    size : str, optional
        Label of the size row (default from the cells: pupils / schools / LAs / cells).
    engines : sequence of str
        Any of :data:`ENGINES`.
    draws, tune, chains : int
        The same for every engine (the pupil-row peer is run short and extrapolated).
        ``tune`` None is the engine's default (:func:`disparity.engines.pymc.default_tune`).
    target_accept : float, optional
        None: the engine's default (:func:`disparity.engines.pymc.default_target_accept`).
        The peers get the tune and target_accept that the engine used.
    repeats : int
        Fits per engine; the row gives the median wall time (fits over a minute: run 1).
    seed : int
    pupils_measured : int
        Pupil rows the ``pymc_pupils`` peer is measured on (a random subset of schools'
        pupils is not used: the cells are expanded whole when they hold at most this many
        pupils, otherwise the peer is skipped with a note).

    Returns
    -------
    list of dict
    """
    n_pupils = int(cells["n_pupils"].sum())
    label = size or (f"{n_pupils:,} pupils / {cells['school'].nunique():,} schools / "
                     f"{cells['la'].nunique():,} LAs / {len(cells):,} cells")
    rows: list[dict[str, Any]] = []
    reference = None
    plain_gradients = None
    own_gradients = None
    for engine in engines:
        if engine == "pymc_pupils":
            if n_pupils > pupils_measured:
                rows.append({"size": label, "outcome": outcome, "step": "sample",
                             "engine": engine, "note": f"run at {pupils_measured:,} pupils "
                             "only (see that size's rows)"})
                continue
            result = _in_child(_fit_pupils, cells, outcome, seed)
            gradients = plain_gradients or own_gradients
            per_gradient = result["seconds"] / max(result["gradients"], 1)
            row = {"size": label, "outcome": outcome, "step": "sample", "engine": engine,
                   "wall_s": round(per_gradient * gradients, 1) if gradients else None,
                   "peak_mb": result["peak_mb"],
                   "note": (f"extrapolated: {per_gradient * 1e3:.2f} ms per gradient "
                            f"(measured on {n_pupils:,} pupil rows, 2 chains x (100 + 100), "
                            f"{result['seconds']:.0f} s) x {gradients or 0:,} gradient "
                            "evaluations of the full run; x10 per tenfold pupils"),
                   "ms_per_gradient": round(per_gradient * 1e3, 3)}
            rows.append(row)
            continue
        runs = [_in_child(_fit_cells, cells, outcome, engine, draws, tune, chains, seed + r,
                          target_accept)
                for r in range(repeats)]
        walls = [r["wall_s"] for r in runs]
        run = runs[int(np.argsort(walls)[len(walls) // 2])]
        summary = run["summary"]
        if engine == "disparity":
            reference = summary
            own_gradients = run["gradients"]
            # the peers sample with the settings the engine used
            tune, target_accept = run["tune"], run["target_accept"]
        if engine == "nutpie_plain":
            plain_gradients = run["gradients"]
        row = {
            "size": label, "outcome": outcome, "step": "sample", "engine": engine,
            "wall_s": round(statistics.median(walls), 1),
            "wall_runs": [round(w, 1) for w in walls],
            "peak_mb": max(r["peak_mb"] for r in runs),
            "max_rhat": round(run["max_rhat"], 4),
            "min_ess_bulk": round(run["min_ess_bulk"]),
            "ess_per_s": round(run["min_ess_bulk"] / run["wall_s"], 2),
            "tune": run["tune"],
            "target_accept": run["target_accept"],
            "gradients": run["gradients"],
            "ms_per_gradient": round(1e3 * run["sampling_s"] * min(chains, 2)
                                     / max(run["gradients"], 1), 3),
        }
        if reference is not None and engine != "disparity":
            row["max_mean_gap_in_sd"] = round(_mean_gap(summary, reference), 3)
        row.update(_recovery(summary, truth))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- children
def _in_child(function, *args):
    """Run ``function(*args)`` in a forked child; return its dict with ``peak_mb`` added."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe(duplex=False)

    def target():
        try:
            out = function(*args)
            out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            child.send(out)
        except BaseException as exc:  # reported in the parent
            child.send({"error": repr(exc)})

    process = context.Process(target=target)
    process.start()
    out = parent.recv()
    process.join()
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def _spec(outcome: str, draws: int, tune: int | None, chains: int, seed: int,
          target_accept: float | None = None):
    from disparity.spec import ModelSpec

    return ModelSpec(name="bench", family="binomial", events=f"n_{outcome}",
                     trials="n_pupils", formula=FORMULA, groups=("la/school",),
                     engine="pymc", draws=draws, tune=tune, chains=chains, seed=seed,
                     target_accept=target_accept)


def _fit_cells(cells, outcome, engine, draws, tune, chains, seed,
               target_accept=None) -> dict[str, Any]:
    from disparity.design import build_design
    from disparity.engines.pymc import default_target_accept, default_tune

    if engine != "disparity":  # a peer run without the engine: its small-model defaults
        tune = default_tune(native=True) if tune is None else tune
        target_accept = (default_target_accept(0, native=False) if target_accept is None
                         else target_accept)
    spec = _spec(outcome, draws, tune, chains, seed, target_accept)
    design = build_design(spec, cells)
    start = time.perf_counter()
    if engine == "disparity":
        from disparity.engines import pymc as bayes

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bayes.fit(design, spec, progress=False)
        idata = fit.raw
        sampling = fit.diagnostics.get("seconds_sampling", fit.diagnostics["seconds"])
        tune, target_accept = fit.diagnostics["tune"], fit.diagnostics["target_accept"]
    else:
        idata, sampling = _plain_nutpie(design, spec)
    wall = time.perf_counter() - start
    summary, max_rhat, min_ess = _summary(idata, design)
    return {"wall_s": wall, "sampling_s": sampling, "summary": summary,
            "tune": tune, "target_accept": target_accept,
            "max_rhat": max_rhat, "min_ess_bulk": min_ess,
            "gradients": int(idata.sample_stats["n_steps"].sum()) * (tune + draws) // draws}


def _plain_model(X, events, trials, la, school, n_la, n_school, crude, terms):
    """The 15-line PyMC model a statistician would write for these cells."""
    import pymc as pm

    with pm.Model(coords={"term": terms}) as model:
        beta = pm.Normal("beta", mu=np.r_[crude, np.zeros(X.shape[1] - 1)],
                         sigma=np.r_[2.5, np.ones(X.shape[1] - 1)], dims="term")
        sd_la = pm.HalfNormal("sd_la", 1.0)
        sd_school = pm.HalfNormal("sd_school", 1.0)
        z_la = pm.Normal("z_la", 0.0, 1.0, shape=n_la)
        z_school = pm.Normal("z_school", 0.0, 1.0, shape=n_school)
        eta = pm.math.dot(X, beta) + sd_la * z_la[la] + sd_school * z_school[school]
        pm.Binomial("y", n=trials, logit_p=eta, observed=events)
    return model


def _plain_nutpie(design, spec) -> tuple[Any, float]:
    import nutpie

    from disparity.engines.cell_density import crude_link

    la, school = design.group("la"), design.group("school")
    model = _plain_model(design.X, design.events.astype(int), design.trials.astype(int),
                         la.index, school.index, la.n_levels, school.n_levels,
                         crude_link(design.events, design.trials, "binomial"),
                         list(design.terms))
    compiled = nutpie.compile_pymc_model(model)
    start = time.perf_counter()
    idata = nutpie.sample(compiled, draws=spec.draws, tune=spec.tune, chains=spec.chains,
                          cores=2, seed=spec.seed, progress_bar=False, save_warmup=False,
                          target_accept=spec.target_accept)
    return idata, time.perf_counter() - start


def _pupil_model(cells, outcome, seed):
    """The pupil-row peer: one Bernoulli row per pupil of ``cells``, and its PyMC model."""
    from disparity.cells import expand
    from disparity.design import build_design
    from disparity.engines.cell_density import crude_link

    pupils = expand(cells, [outcome])
    pupils["n_pupils"] = 1
    pupils = pupils.rename(columns={outcome: f"n_{outcome}"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = build_design(_spec(outcome, 100, 100, 2, seed), pupils)
        la, school = design.group("la"), design.group("school")
        model = _plain_model(design.X, design.events.astype(int), design.trials.astype(int),
                             la.index, school.index, la.n_levels, school.n_levels,
                             crude_link(design.events, design.trials, "binomial"),
                             list(design.terms))
    return design, model


def _fit_pupils(cells, outcome, seed) -> dict[str, Any]:
    import pymc as pm

    _, model = _pupil_model(cells, outcome, seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(draws=100, tune=100, chains=2, cores=1, random_seed=seed,
                          progressbar=False, model=model, compute_convergence_checks=False,
                          discard_tuned_samples=False)
    seconds = time.perf_counter() - start
    stats = idata.sample_stats
    gradients = int(stats["n_steps"].sum())
    if "warmup_sample_stats" in idata.groups():
        gradients += int(idata.warmup_sample_stats["n_steps"].sum())
    return {"seconds": seconds, "gradients": gradients}


def pupil_gradient_ms(cells: pd.DataFrame, outcome: str, repeats: int = 10) -> dict[str, Any]:
    """Median milliseconds of one log-density and gradient of the ``pymc_pupils`` peer's
    model (one Bernoulli row per pupil; PyMC's ``logp_dlogp_function``) on all of
    ``cells``' pupils, for when its full run is out of reach."""
    design, model = _pupil_model(cells, outcome, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        function = model.logp_dlogp_function(ravel_inputs=True)
    function.set_extra_values({})
    point = model.initial_point()
    # the function's inputs: the continuous value variables, raveled in model order
    x = np.concatenate([np.ravel(point[v.name])
                        for v in model.continuous_value_vars]).astype(float)
    function(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(x)
        times.append(time.perf_counter() - start)
    return {"pupil_rows": int(design.n_cells), "ms_per_gradient":
            round(1e3 * statistics.median(times), 2)}


# --------------------------------------------------------------------------- summaries
def _summary(idata, design) -> tuple[dict[str, tuple[float, float, float, float]], float, float]:
    """Posterior mean, SD and 95% interval of beta and the SDs; max r-hat, min bulk ESS."""
    import arviz as az

    post = idata.posterior
    out: dict[str, tuple[float, float, float, float]] = {}
    beta = post["beta"].values.reshape(-1, len(design.terms))
    for j, term in enumerate(design.terms):
        d = beta[:, j]
        out[term] = (float(d.mean()), float(d.std()), *np.quantile(d, [0.025, 0.975]))
    for name in ("la", "school"):
        d = post[f"sd_{name}"].values.ravel()
        out[f"sd_{name}"] = (float(d.mean()), float(d.std()), *np.quantile(d, [0.025, 0.975]))
    keep = post[["beta", "sd_la", "sd_school"]]
    rhat = az.rhat(keep)
    ess = az.ess(keep, method="bulk")
    return (out, max(float(rhat[v].max()) for v in rhat.data_vars),
            min(float(ess[v].min()) for v in ess.data_vars))


def _mean_gap(summary, reference) -> float:
    """Largest |mean - engine's mean| / this fit's posterior SD over beta and the SDs."""
    return max(abs(summary[k][0] - reference[k][0]) / summary[k][1] for k in reference)


def _recovery(summary, truth) -> dict[str, str]:
    out = {}
    for name in ("la", "school"):
        mean, _, low, high = summary[f"sd_{name}"]
        value = truth["group_sd"][name]
        out[f"sd_{name}"] = f"{mean:.3f} [{low:.3f}, {high:.3f}] vs {value:g}"
    for term in FIVE:
        if term in summary:
            mean, _, low, high = summary[term]
            value = truth["coefficients"][term]
            out[term] = f"{mean:.2f} [{low:.2f}, {high:.2f}] vs {value:g}"
    return out


def simulate_cells(size: str, seed: int = 2024) -> tuple[pd.DataFrame, Mapping[str, Any]]:
    """Simulated pupils of a size in :data:`SIZES`, collapsed to cells, and the truth."""
    from disparity.cells import collapse
    from disparity.simulate import simulate_pupils

    n_pupils, n_schools, n_las = SIZES[size]
    sim = simulate_pupils(n_pupils, n_schools=n_schools, n_las=n_las, seed=seed)
    cells = collapse(sim.pupils, by=BY, outcomes=["perm_excl", "any_susp"])
    return cells, sim.truth


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["100k"], choices=list(SIZES))
    parser.add_argument("--outcomes", nargs="+", default=["any_susp", "perm_excl"],
                        choices=["any_susp", "perm_excl"])
    parser.add_argument("--peers", nargs="*", default=["nutpie_plain", "pymc_pupils"],
                        choices=list(ENGINES[1:]))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=None,
                        help="tuning steps per chain (default: the engine's default)")
    parser.add_argument("--target-accept", type=float, default=None,
                        help="NUTS target acceptance (default: the engine's default)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--pupil-gradient", action="store_true",
                        help="only time one gradient of the pupil-row peer at each size")
    args = parser.parse_args(argv)
    if args.pupil_gradient:
        for size in args.sizes:
            cells, _ = simulate_cells(size)
            for outcome in args.outcomes:
                print(size, outcome, pupil_gradient_ms(cells, outcome), flush=True)
        return
    rows = []
    for size in args.sizes:
        cells, truth = simulate_cells(size)
        for outcome in args.outcomes:
            rows += bayes_rows(cells, truth[outcome], outcome=outcome,
                               engines=["disparity", *args.peers], draws=args.draws,
                               tune=args.tune, chains=args.chains, repeats=args.repeats,
                               seed=args.seed, target_accept=args.target_accept)
            print(pd.DataFrame(rows[-1 - len(args.peers):]).to_string(index=False),
                  flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.to_string(index=False))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1, default=str)


if __name__ == "__main__":
    sys.exit(main())
