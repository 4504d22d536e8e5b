"""National-scale benchmark: the ml engine against glmmTMB and lme4 on the same cells.

Pupils come from :func:`disparity.simulate.simulate_pupils` (150 LAs; schools nested in
LAs), are collapsed with :func:`disparity.cells.collapse` by ethnicity, SEN, FSM, CIN, sex,
school and LA, and each outcome is fitted as a binomial GLMM
``ethnicity + sen + fsm + cin + sex + (1 | la) + (1 | la:school)``. Outcomes: suspension
(``any_susp``, a few per cent) and permanent exclusion (``perm_excl``, about 0.1 %). The
shipped DfE LA model (``--dfe``) is fitted too.

Every fit runs in a child process, so its wall time includes starting Python or R and
reading the cells, and its peak resident memory is its own. Steps under a minute are
repeated ``--repeats`` times and the median is printed.

Run (from the repository root; R peers need ``apt-get install r-base-core r-cran-lme4
r-cran-glmmtmb`` and are skipped with a note when ``Rscript`` is absent)::

    python benchmarks/national.py --sizes 100k 1M --dfe
    python benchmarks/national.py --sizes 8M --peers glmmTMB --repeats 1

Prints two tables: steps (size, step, engine, seconds, peak memory, log-likelihood) and
recovery of the truth (estimate and interval against the true value for each SD and five
fixed effects), plus the standard errors of each peer against the ml engine's.

A new engine adds a row by registering a function ``rows(cells, model) -> list[dict]``
in :data:`ENGINES` (see :func:`ml_rows`): ``cells`` is the cells frame, ``model`` a
:class:`BenchModel`; each dict has the keys of :data:`ROW_KEYS`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"100k": (100_000, 500), "1M": (1_000_000, 3_000), "8M": (8_000_000, 20_000)}
N_LAS = 150
OUTCOMES = {"susp": "any_susp", "perm": "perm_excl"}
FORMULA = "ethnicity + sen + fsm + cin + sex"
REFERENCE = {"ethnicity": "White British", "sen": "none", "fsm": "no", "cin": "no",
             "sex": "female"}
#: The five fixed effects whose recovery is printed.
RECOVERY_TERMS = ("ethnicity[T.Black Caribbean]", "ethnicity[T.Gypsy/Roma]",
                  "sen[T.support]", "fsm[T.yes]", "sex[T.male]")
ROW_KEYS = ("engine", "seconds", "peak_mib", "log_likelihood", "converged", "terms", "coef",
            "se", "sd_terms", "sd", "sd_low", "sd_high", "note")
Z95 = 1.959963984540054
#: Seconds after which a glmmTMB fit is stopped (``--peer-timeout``).
PEER_TIMEOUT_S = 600.0


@dataclass
class BenchModel:
    """One model to fit: a spec, its truth (or None) and a label."""

    label: str
    spec: object
    truth: dict | None = None
    size: str = ""
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- children
def _run_child(cmd: list[str], timeout: float) -> tuple[float, float, int, str]:
    """Run ``cmd``; wall seconds, its peak RSS (MiB, by ``/usr/bin/time`` when present),
    return code and the tail of its standard error."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        timer = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] if Path(
            "/usr/bin/time").exists() else []
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(timer + cmd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, cwd=ROOT, timeout=timeout,
                                  env={**os.environ, "OMP_NUM_THREADS": "1",
                                       "OPENBLAS_NUM_THREADS": "1"})
            code, tail = proc.returncode, proc.stderr.decode(errors="replace")[-600:]
        except subprocess.TimeoutExpired:
            code, tail = -9, ""
        wall = time.perf_counter() - t0
        try:
            peak = float(rss_file.read_text().split()[-1]) / 1024.0
        except (OSError, ValueError, IndexError):
            peak = float("nan")
    return wall, peak, code, tail


def _ml_child(cells_path: str, spec_path: str, out_path: str) -> None:
    """Child process: build the design, fit with ml, write the fit's numbers as JSON."""
    import warnings

    from disparity.design import build_design
    from disparity.engines import ml
    from disparity.spec import ModelSpec

    t0 = time.perf_counter()
    cells = pd.read_parquet(cells_path)
    spec = ModelSpec(**json.loads(Path(spec_path).read_text()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        design = build_design(spec, cells)
        t1 = time.perf_counter()
        fit = ml.fit(design, spec, progress=False)
    t2 = time.perf_counter()
    sd = fit.group_sd
    Path(out_path).write_text(json.dumps({
        "seconds_design": t1 - t0, "seconds_engine": t2 - t1,
        "log_likelihood": fit.diagnostics["log_likelihood"],
        "converged": fit.diagnostics["converged"], "terms": list(fit.terms),
        "coef": fit.coef.tolist(), "se": fit.std_errors.tolist(),
        "sd_terms": sd.term.tolist(), "sd": sd.estimate.tolist(),
        "sd_low": sd.conf_low.tolist(), "sd_high": sd.conf_high.tolist(),
        "log_sd_se": (sd.std_error / sd.estimate).tolist(),
        "warnings": [str(w.message)[:80] for w in caught],
    }))


def _spec_json(spec) -> dict:
    keys = ("family", "events", "trials", "formula", "groups", "slopes", "reference",
            "engine", "engine_options")
    out = {k: getattr(spec, k) for k in keys}
    out["groups"] = list(out["groups"])
    out["slopes"] = dict(out["slopes"])
    out["reference"] = dict(out["reference"])
    out["engine_options"] = {k: dict(v) for k, v in dict(out["engine_options"]).items()}
    return out


def ml_rows(cells: pd.DataFrame, model: BenchModel, *, repeats: int = 3,
            se_method: str = "hessian", nodes: int = 1) -> list[dict]:
    """Fit ``model`` with the ml engine in child processes; one row (median of repeats)."""
    spec = model.spec.replace(engine="ml", engine_options={
        "ml": {"se_method": se_method, "quadrature_nodes": nodes}})
    with tempfile.TemporaryDirectory() as tmp:
        cpath, spath, opath = (Path(tmp) / n for n in ("cells.parquet", "spec.json", "o.json"))
        cells.to_parquet(cpath, index=False)
        spath.write_text(json.dumps(_spec_json(spec)))
        walls, peaks, outs = [], [], []
        for i in range(max(1, repeats)):
            wall, peak, code, tail = _run_child(
                [sys.executable, __file__, "--child-ml", str(cpath), str(spath), str(opath)],
                timeout=1800)
            if code != 0:
                return [_failed("ml", f"exit {code}: {tail}")]
            walls.append(wall)
            peaks.append(peak)
            outs.append(json.loads(opath.read_text()))
            if wall > 60:
                break
    o = outs[-1]
    note = (f"engine {statistics.median(x['seconds_engine'] for x in outs):.2f} s, design "
            f"{statistics.median(x['seconds_design'] for x in outs):.2f} s; SE {se_method}")
    name = f"disparity ml ({se_method})" if nodes == 1 else f"disparity ml (AGHQ {nodes})"
    return [{"engine": name, "seconds": statistics.median(walls),
             "repeats": len(walls), "peak_mib": max(peaks), "note": note, **o}]


def _design_frame(cells: pd.DataFrame, spec) -> tuple[pd.DataFrame, dict]:
    """The design matrix and group codes as plain columns, for R."""
    from disparity.design import build_design
    from disparity.engines.ml import _components

    design = build_design(spec, cells)
    frame = pd.DataFrame(design.X, columns=[f"x{j + 1}" for j in range(design.X.shape[1])])
    frame["events"] = design.events
    frame["trials"] = design.trials
    random = []
    for g in design.groups:
        frame[f"g_{g.name}"] = g.index
    for comp in _components(design):
        slope = None
        if comp.x is not None:
            slope = f"x{design.terms.index(comp.term) + 1}"
        random.append({"name": comp.name, "group": f"g_{comp.group}", "slope": slope})
    info = {"family": design.family, "x": list(frame.columns[: design.X.shape[1]]),
            "terms": list(design.terms), "random": random}
    return frame, info


def r_rows(peer: str, cells: pd.DataFrame, model: BenchModel, *, repeats: int = 3,
           timeout: float = 600) -> list[dict]:
    """Fit ``model`` with an R peer (``glmmTMB``, ``glmer``, ``glmer_bobyqa``) via Rscript."""
    if shutil.which("Rscript") is None:
        return [_failed(peer, "skipped: Rscript not found (apt-get install r-base-core "
                               "r-cran-lme4 r-cran-glmmtmb)")]
    frame, info = _design_frame(cells, model.spec)
    with tempfile.TemporaryDirectory() as tmp:
        cpath, spath, opath = (Path(tmp) / n for n in ("cells.csv", "spec.json", "o.json"))
        frame.to_csv(cpath, index=False)
        spath.write_text(json.dumps(info))
        walls, peaks, outs = [], [], []
        for _ in range(max(1, repeats)):
            wall, peak, code, tail = _run_child(
                ["Rscript", str(ROOT / "benchmarks" / "peers.R"), str(cpath), str(spath),
                 str(opath), peer], timeout=timeout)
            if code != 0:
                why = f"stopped after {timeout:.0f} s" if code == -9 else f"exit {code}: {tail}"
                return [_failed(peer, why)]
            walls.append(wall)
            peaks.append(peak)
            outs.append(json.loads(opath.read_text()))
            if wall > 60:
                break
    o = outs[-1]
    sd = np.asarray(o["sd"], dtype=float)
    names = [r["name"] for r in info["random"]]
    row = {"engine": peer, "seconds": statistics.median(walls), "repeats": len(walls),
           "peak_mib": max(peaks), "log_likelihood": o["log_likelihood"],
           "converged": o["converged"], "terms": info["terms"], "coef": o["coef"],
           "se": o["se"], "sd_terms": names, "sd": sd.tolist(),
           "note": f"fit call {statistics.median(x['seconds'] for x in outs):.2f} s"}
    if "log_sd_se" in o:
        lse = np.asarray(o["log_sd_se"], dtype=float)
        row.update(sd_low=(sd * np.exp(-Z95 * lse)).tolist(),
                   sd_high=(sd * np.exp(Z95 * lse)).tolist(), log_sd_se=lse.tolist())
    if "se_conditional" in o:
        row["se_conditional"] = o["se_conditional"]
    if o.get("messages"):
        row["note"] += "; " + "; ".join(o["messages"])[:120]
    return [row]


def _failed(engine: str, why: str) -> dict:
    return {"engine": engine, "seconds": float("nan"), "peak_mib": float("nan"), "note": why}


#: Engines that give rows: name -> function(cells, model, repeats=...) -> list of rows.
ENGINES: dict[str, Callable[..., list[dict]]] = {
    "ml": ml_rows,
    "ml_conditional": lambda c, m, repeats=3: ml_rows(c, m, repeats=repeats,
                                                      se_method="conditional"),
    "ml_aghq": lambda c, m, repeats=3: ml_rows(c, m, repeats=repeats, nodes=9),
    "glmmTMB": lambda c, m, repeats=3: r_rows("glmmTMB", c, m, repeats=repeats,
                                              timeout=PEER_TIMEOUT_S),
    "glmer": lambda c, m, repeats=3: r_rows("glmer", c, m, repeats=repeats, timeout=120),
    "glmer_bobyqa": lambda c, m, repeats=3: r_rows("glmer_bobyqa", c, m, repeats=repeats),
}


# --------------------------------------------------------------------------- data
def _timed(fn, repeats: int):
    """Result of ``fn()`` and the median seconds of up to ``repeats`` runs (one if > 60 s)."""
    import resource

    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > 60:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out, statistics.median(times), len(times), peak


def simulated_models(size: str, outcomes: list[str], repeats: int, seed: int,
                     steps: list[dict], cli: bool = False,
                     cli_engines: tuple[str, ...] = ("ml",)
                     ) -> list[tuple[pd.DataFrame, BenchModel]]:
    from disparity.cells import collapse
    from disparity.simulate import simulate_pupils
    from disparity.spec import ModelSpec

    n, n_schools = SIZES[size]
    sim, sec, reps, peak = _timed(
        lambda: simulate_pupils(n, n_schools=n_schools, n_las=N_LAS, seed=seed), repeats)
    steps.append({"size": size, "step": "simulate", "engine": "disparity", "seconds": sec,
                  "repeats": reps, "peak_mib": peak})
    if cli:
        cli_steps(sim.pupils, size, outcomes, repeats, steps, cli_engines)
    names = [OUTCOMES[o] for o in outcomes]
    cells, sec, reps, peak = _timed(
        lambda: collapse(sim.pupils, by=["ethnicity", "sen", "fsm", "cin", "sex", "school",
                                         "la"], outcomes=names), repeats)
    steps.append({"size": size, "step": "collapse", "engine": "disparity", "seconds": sec,
                  "repeats": reps, "peak_mib": peak})
    out = []
    for o in outcomes:
        name = OUTCOMES[o]
        spec = ModelSpec(name=f"{size} {o}", family="binomial", events=f"n_{name}",
                         trials="n_pupils", formula=FORMULA, groups=("la/school",),
                         reference=REFERENCE, engine="ml")
        keep = cells[["ethnicity", "sen", "fsm", "cin", "sex", "school", "la", "n_pupils",
                      f"n_{name}"]]
        label = (f"{size} pupils / {n_schools:,} schools / {N_LAS} LAs / {len(keep):,} cells, "
                 f"{name} ({keep[f'n_{name}'].sum() / keep['n_pupils'].sum():.2%})")
        out.append((keep, BenchModel(label=label, spec=spec, truth=sim.truth[name],
                                     size=size)))
    sim = None  # free the pupils before the fits
    return out


CLI_MODEL = """[data]
path = "{path}"
kind = "pupils"

[model]
family = "binomial"
events = "n_{outcome}"
trials = "n_pupils"
formula = "{formula}"
groups = ["la/school"]

[model.reference]
ethnicity = "White British"

[fit]
engine = "{engine}"
"""


def cli_steps(pupils: pd.DataFrame, size: str, outcomes: list[str], repeats: int,
              steps: list[dict], engines: tuple[str, ...] = ("ml",)) -> None:
    """``disparity fit`` as a whole process on a pupils file: read, collapse, design, fit,
    write the run folder (median of ``repeats`` runs when under a minute), with each of
    ``engines`` at its default options. A Bayesian run's note gives the convergence figures
    of its ``diagnostics.json`` (over every sampled quantity, group effects included)."""
    exe = shutil.which("disparity") or str(Path(sys.executable).with_name("disparity"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pupils.parquet"
        pupils.to_parquet(data, index=False)
        for o, engine in ((o, e) for o in outcomes for e in engines):
            model = Path(tmp) / f"{o}_{engine}.toml"
            model.write_text(CLI_MODEL.format(path=data, outcome=OUTCOMES[o], formula=FORMULA,
                                              engine=engine))
            walls, peaks, note = [], [], ""
            for k in range(max(1, repeats)):
                run = Path(tmp) / f"run{o}{engine}{k}"
                wall, peak, code, tail = _run_child(
                    [exe, "fit", str(model), "--quiet", "-o", str(run)], timeout=1800)
                if code != 0:
                    note = f"exit {code}: {tail[-200:]}"
                    break
                walls.append(wall)
                peaks.append(peak)
                note = _convergence_note(run)
                if wall > 60:
                    break
            steps.append({"size": size, "step": f"disparity fit (whole process), {OUTCOMES[o]}",
                          "engine": f"disparity {engine} (default options)",
                          "seconds": statistics.median(walls) if walls else float("nan"),
                          "repeats": len(walls), "peak_mib": max(peaks) if peaks else float("nan"),
                          "note": note})


def _convergence_note(run: Path) -> str:
    """``max r-hat 1.004, min bulk ESS 901, ...`` from a Bayesian run's diagnostics.json
    ('' for other engines)."""
    try:
        d = json.loads((run / "diagnostics.json").read_text())
    except (OSError, ValueError):
        return ""
    d = d.get("diagnostics", {})
    if "max_rhat" not in d:
        return ""
    return (f"max r-hat {_fmt(d['max_rhat'], '.3f')}, min bulk ESS "
            f"{_fmt(d.get('min_ess_bulk'), '.0f')}, min tail ESS "
            f"{_fmt(d.get('min_ess_tail'), '.0f')}, {d.get('divergences', 0)} divergences "
            f"(every sampled quantity); tune {d.get('tune')}, target_accept "
            f"{d.get('target_accept')}, {d.get('gradients_per_draw')} gradients per draw")


def dfe_model() -> tuple[pd.DataFrame, BenchModel]:
    import warnings

    from disparity.fitting import load_model_data
    from disparity.spec import load_spec

    spec = load_spec(ROOT / "models" / "dfe_perm_excl_ethnicity_la_2016-17.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = load_model_data(spec).frame
    label = f"shipped DfE LA model, {len(cells):,} cells"
    return cells, BenchModel(label=label, spec=spec, size="DfE")


# --------------------------------------------------------------------------- tables
def _fmt(x, spec=".2f") -> str:
    try:
        return "" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def _floats(x) -> np.ndarray:
    """Numbers as floats, NaN for what R wrote as text."""
    return pd.to_numeric(pd.Series(list(x)), errors="coerce").to_numpy(dtype=float)


def _number(x) -> float | None:
    """A float, or None for what R wrote as text (NA, Inf) or left out."""
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def print_tables(steps: list[dict], fits: list[tuple[BenchModel, list[dict]]]) -> None:
    print("\n## Steps\n")
    print("| size | step | engine | wall s (median) | runs | peak MiB | log-likelihood | "
          "converged | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        print(f"| {s['size']} | {s['step']} | {s['engine']} | {_fmt(s['seconds'])} | "
              f"{s.get('repeats', '')} | {_fmt(s['peak_mib'], '.0f')} | | | "
              f"{s.get('note', '')} |")
    for model, rows in fits:
        ref = next((r for r in rows if r["engine"].startswith("disparity ml")
                    and "log_likelihood" in r), None)
        for r in rows:
            ll = _number(r.get("log_likelihood"))
            diff = ""
            if ll is not None and ref is not None and r is not ref:
                diff = f" ({ll - ref['log_likelihood']:+.4f} vs ml)"
            print(f"| {model.label} | fit | {r['engine']} | {_fmt(r['seconds'])} | "
                  f"{r.get('repeats', '')} | {_fmt(r['peak_mib'], '.0f')} | "
                  f"{_fmt(ll, '.4f')}{diff} | {r.get('converged', '')} | {r.get('note', '')} |")
    print("\n## Recovery of the truth (estimate [95% interval] vs truth)\n")
    print("| model | engine | parameter | truth | estimate | interval | covers |")
    print("|---|---|---|---|---|---|---|")
    for model, rows in fits:
        if model.truth is None:
            continue
        for r in rows:
            if "coef" not in r:
                continue
            for name, est, lo, hi in zip(r["sd_terms"], _floats(r["sd"]),
                                         _floats(r.get("sd_low", [np.nan] * 9)),
                                         _floats(r.get("sd_high", [np.nan] * 9))):
                truth = model.truth["group_sd"].get(name)
                covers = "" if np.isnan(lo) else ("yes" if lo <= truth <= hi else "**no**")
                print(f"| {model.label} | {r['engine']} | SD {name} | {truth} | "
                      f"{est:.3f} | {_fmt(lo, '.3f')} to {_fmt(hi, '.3f')} | {covers} |")
            for term in RECOVERY_TERMS:
                if term not in r["terms"]:
                    continue
                j = r["terms"].index(term)
                est, se = _floats(r["coef"])[j], _floats(r["se"])[j]
                truth = model.truth["coefficients"][term]
                lo, hi = est - Z95 * se, est + Z95 * se
                covers = "yes" if lo <= truth <= hi else "**no**"
                print(f"| {model.label} | {r['engine']} | {term} | {truth} | {est:.3f} | "
                      f"{lo:.3f} to {hi:.3f} | {covers} |")
    print("\n## Standard errors against the ml engine's (largest relative difference)\n")
    print("| model | peer | fixed effects (hessian) | fixed effects (conditional) | "
          "log SDs | largest coefficient difference / SE |")
    print("|---|---|---|---|---|---|")
    for model, rows in fits:
        ml_h = next((r for r in rows if r["engine"] == "disparity ml (hessian)"
                     and "se" in r), None)
        ml_c = next((r for r in rows if r["engine"] == "disparity ml (conditional)"
                     and "se" in r), None)
        for r in rows:
            if r["engine"].startswith("disparity") or "se" not in r:
                continue
            cells_ = [model.label, r["engine"]]
            for mine, key in ((ml_h, "se"), (ml_c, "se_conditional" if "se_conditional" in r
                                             else None)):
                if mine is None or key is None:
                    cells_.append("")
                    continue
                a, b = _floats(mine["se"]), _floats(r[key])
                cells_.append(f"{np.max(np.abs(a / b - 1)):.2%}")
            if ml_h is not None and "log_sd_se" in r:
                a, b = _floats(ml_h["log_sd_se"]), _floats(r["log_sd_se"])
                cells_.append(f"{np.nanmax(np.abs(a / b - 1)):.2%}")
            else:
                cells_.append("")
            if ml_h is not None:
                dz = np.abs(_floats(ml_h["coef"]) - _floats(r["coef"])) / _floats(ml_h["se"])
                cells_.append(f"{np.max(dz):.1e}")
            else:
                cells_.append("")
            print("| " + " | ".join(cells_) + " |")


def _set_peer_timeout(seconds: float) -> None:
    global PEER_TIMEOUT_S
    PEER_TIMEOUT_S = float(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["100k", "1M"], choices=list(SIZES))
    parser.add_argument("--outcomes", nargs="*", default=["susp", "perm"],
                        choices=list(OUTCOMES))
    parser.add_argument("--dfe", action="store_true", help="also the shipped DfE LA model")
    parser.add_argument("--engines", nargs="*", default=["ml", "ml_conditional", "ml_aghq",
                                                         "glmmTMB", "glmer"],
                        choices=list(ENGINES))
    parser.add_argument("--peer-sizes", nargs="*", default=["DfE", "100k", "1M"],
                        help="sizes at which the R peers run (they take minutes at 8M)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-timeout", type=float, default=PEER_TIMEOUT_S,
                        help="seconds after which a glmmTMB fit is stopped (default 600)")
    parser.add_argument("--cli", action="store_true",
                        help="also time `disparity fit` as a whole process on a pupils file")
    parser.add_argument("--cli-engines", nargs="+", default=["ml"], choices=["ml", "pymc"],
                        help="engines of the --cli runs (default ml)")
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    _set_peer_timeout(args.peer_timeout)

    steps: list[dict] = []
    fits: list[tuple[BenchModel, list[dict]]] = []
    todo: list[tuple[pd.DataFrame, BenchModel]] = []
    if args.dfe:
        todo.append(dfe_model())
    for size in args.sizes:
        todo.extend(simulated_models(size, args.outcomes, args.repeats, args.seed, steps,
                                     cli=args.cli, cli_engines=tuple(args.cli_engines)))
    for cells, model in todo:
        rows = []
        for name in args.engines:
            if not name.startswith("ml") and model.size not in args.peer_sizes:
                rows.append(_failed(name, f"not run at {model.size} (--peer-sizes)"))
                continue
            if name == "ml_aghq" and model.size == "DfE":
                rows.append(_failed(name, "not applicable: quadrature needs intercepts only"))
                continue
            if name == "ml_aghq" and (model.size == "8M" or "perm" not in model.spec.events):
                rows.append(_failed(name, "not run: quadrature is for the sparse outcome, up "
                                          "to 1M pupils here (see variance_coverage.py)"))
                continue
            if name == "glmer" and model.size not in ("DfE", "100k"):
                rows.append(_failed(name, "not run: over 15 min at 1M pupils (issue 10)"))
                continue
            print(f"fitting {model.label} with {name}", file=sys.stderr, flush=True)
            rows.extend(ENGINES[name](cells, model, repeats=args.repeats))
        fits.append((model, rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"steps": steps, "fits": [{"model": m.label, "rows": r} for m, r in fits]},
            default=str, indent=1))
    print_tables(steps, fits)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-ml":
        _ml_child(*sys.argv[2:5])
    else:
        main()
