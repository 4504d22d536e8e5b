"""Seconds per fit of each shipped model file with each engine.

For every model in ``models/`` (or those named), the data are loaded once
(:func:`disparity.fitting.load_model_data`: DfE cut, pupils collapsed) and timed, then each
engine fits the design: the median of ``--repeats`` fits for ``glm`` and ``ml``, one run for
``pymc`` (``--draws`` draws and as many tuning steps per chain, ``--chains`` chains, one
process). Convergence warnings are counted, not shown.

Run::

    .venv/bin/python benchmarks/bench_models.py
    .venv/bin/python benchmarks/bench_models.py models/cbpp.toml --engines ml pymc --draws 1000
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

from disparity.design import build_design
from disparity.engines import get_engine
from disparity.errors import ConvergenceWarning, DataWarning, DisparityError
from disparity.fitting import load_model_data
from disparity.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path,
                        default=sorted((ROOT / "models").glob("*.toml")))
    parser.add_argument("--engines", nargs="+", default=["glm", "ml", "pymc"])
    parser.add_argument("--repeats", type=int, default=3, help="glm and ml fits per model")
    parser.add_argument("--draws", type=int, default=500, help="pymc draws (and tune) per chain")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="ml: GPBoost threads (default 1; 0 = the library's default)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

    print(f"{'model':42s} {'engine':6s} {'cells':>8s} {'load s':>7s} {'fit s':>8s}  notes")
    for path in args.models:
        spec = load_spec(path)
        options = dict(spec.engine_options)
        if args.threads:
            options["ml"] = {**options.get("ml", {}), "num_threads": args.threads}
        options["pymc"] = {**options.get("pymc", {}), "cores": 1}
        spec = spec.replace(engine_options=options)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            loaded = load_model_data(spec)
            design = build_design(spec, loaded.frame)
        load_s = time.perf_counter() - start
        for engine in args.engines:
            run = spec.replace(engine=engine)
            if engine == "pymc":
                run = run.replace(draws=args.draws, tune=args.draws, chains=args.chains)
            repeats = 1 if engine == "pymc" else args.repeats
            times, n_warn, note = [], 0, ""
            for _ in range(repeats):
                t = time.perf_counter()
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        get_engine(engine).fit(design, run, progress=False)
                except DisparityError as exc:
                    note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
                    break
                times.append(time.perf_counter() - t)
                n_warn += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
            fit_s = f"{statistics.median(times):8.2f}" if times else "       -"
            if engine == "pymc" and times:
                note = f"{args.chains} chains x {args.draws} draws"
            if n_warn:
                note += f" ({n_warn} convergence warning(s))"
            print(f"{path.stem:42s} {engine:6s} {design.n_cells:8,d} {load_s:7.2f} {fit_s}  "
                  f"{note}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
