"""Seconds and peak memory of collapsing national pupils from Parquet, DuckDB and Spark.

Usage::

    python benchmarks/bench_collapse_sources.py --data /tmp/disparity-years        # all
    python benchmarks/bench_collapse_sources.py --data DIR --cases cli,years --repeats 3

Pupil files (``pupils_2016.parquet``, ... 8 million pupil-years each, one academic year
each, from :func:`disparity.simulate.simulate_pupils`) are made in ``--data`` where missing.
They are large: keep them outside the repository (``/tmp``).

Every measurement is a fresh process, so its peak resident memory (``ru_maxrss``) is the
whole process's, imports included; seconds are wall-clock, the median of ``--repeats`` runs,
with the peer (pandas or DuckDB) measured in the same run. Cases:

``cli``
    ``disparity collapse pupils_2016.parquet --by ... -o cells.parquet``, the whole command,
    with ``--engine engine`` (DuckDB) and ``--engine pandas`` (the file read into memory).
``crossover``
    the same command on the first 10k ... 1M rows of a year, both engines: where DuckDB's
    start-up stops costing more than it saves.
``years``
    :func:`~disparity.collapse_sql.collapse_source` of 3 and of 5 yearly files (a glob), in
    DuckDB and in pandas (every file read and concatenated, then checked and collapsed);
    conservation is checked against totals read with pyarrow, file by file.
``table``
    a DuckDB database table holding one year (``duckdb://PATH``, ``table="pupils"``).
``spark``
    one year read by Spark in local mode (``spark.read.parquet``) and collapsed through
    Ibis's pyspark backend; the JVM's peak memory is reported beside Python's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BY = "ethnicity,sen,fsm,cin,school,la"
N_PUPILS = 8_000_000

# The child process: run one case, print JSON with its seconds and peak memory.
CHILD = r"""
import json, resource, sys, time
case, args = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
out = {}
if case == "cli":
    from disparity.cli import main
    rc = main(["collapse", args["source"], "--by", args["by"], "--engine", args["engine"],
               "-o", args["output"]])
    assert rc == 0, rc
elif case == "collapse":
    from disparity.collapse_sql import collapse_source
    r = collapse_source(args["source"], args["by"].split(","), engine=args["engine"],
                        table=args.get("table"))
    out = {"totals": r.totals, "cells": len(r.cells), "engine": r.engine}
elif case == "pandas_years":  # every file read into memory, then checked and collapsed
    import glob, pandas as pd
    from disparity.collapse_sql import collapse_source
    frame = pd.concat([pd.read_parquet(f) for f in sorted(glob.glob(args["source"]))],
                      ignore_index=True)
    r = collapse_source(frame, args["by"].split(","))
    out = {"totals": r.totals, "cells": len(r.cells), "engine": r.engine}
elif case == "spark":
    import os
    from pyspark.sql import SparkSession

    def descendants_peak_gib(pid):  # the JVM's VmHWM, read before it exits
        peak = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    with open(f"/proc/{child}/status") as st:
                        for line in st:
                            if line.startswith("VmHWM:"):
                                peak = max(peak, int(line.split()[1]) / 1024**2)
                    peak = max(peak, descendants_peak_gib(child))
        return peak

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", args["driver_memory"]).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t_start = time.perf_counter() - t0
    from disparity.collapse_sql import collapse_source
    t1 = time.perf_counter()
    r = collapse_source(spark.read.parquet(args["source"]), args["by"].split(","))
    out = {"totals": r.totals, "cells": len(r.cells), "engine": r.engine,
           "collapse_seconds": time.perf_counter() - t1, "start_seconds": t_start,
           "jvm_peak_gib": descendants_peak_gib(os.getpid())}
    spark.stop()
out["seconds"] = time.perf_counter() - t0
out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
out["children_peak_gib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
print("RESULT " + json.dumps(out))
"""


def _run(case: str, args: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, case, json.dumps(args)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{case} {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][7:])
    out["process_seconds"] = wall  # interpreter start to exit
    return out


def _median(case: str, args: dict, repeats: int) -> dict:
    runs = [_run(case, args) for _ in range(repeats)]
    out = dict(runs[-1])
    for key in ("seconds", "process_seconds", "collapse_seconds"):
        if key in out:
            out[key] = statistics.median(r[key] for r in runs)
    out["peak_gib"] = max(r["peak_gib"] for r in runs)
    out["children_peak_gib"] = max(r["children_peak_gib"] for r in runs)
    return out


def _make_years(folder: Path, n_years: int, n_pupils: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"pupils_{2016 + k}.parquet" for k in range(n_years)]
    for k, path in enumerate(files):
        if path.exists():
            continue
        from disparity.simulate import simulate_pupils

        print(f"simulating {path} ...", file=sys.stderr)
        sim = simulate_pupils(n_pupils, 20_000, 150, seed=1 + k, first_year=2016 + k)
        sim.pupils.to_parquet(path, index=False)
        del sim
    return files


def _true_totals(files: list[Path]) -> dict:
    """Pupils and events of the files, read column by column with pyarrow (the oracle)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    totals = {"n_pupils": 0, "n_perm_excl": 0, "n_any_susp": 0, "n_susp": 0}
    for f in files:
        table = pq.read_table(f, columns=["perm_excl", "any_susp", "n_susp"])
        totals["n_pupils"] += table.num_rows
        totals["n_perm_excl"] += pc.sum(table["perm_excl"]).as_py()
        totals["n_any_susp"] += pc.sum(table["any_susp"]).as_py()
        totals["n_susp"] += pc.sum(table["n_susp"]).as_py()
    return totals


def _row(what: str, rows: int, r: dict, conserved: str = "") -> str:
    extra = f" (JVM {r['jvm_peak_gib']:.2f})" if r.get("engine") == "pyspark" else ""
    return (f"| {what} | {rows:,} | {r['process_seconds']:.1f} | {r['seconds']:.1f} | "
            f"{r['peak_gib']:.2f}{extra} | {conserved} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "disparity-years")
    parser.add_argument("--cases", default="cli,crossover,years,table,spark")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--years", default="3,5", help="numbers of yearly files collapsed")
    parser.add_argument("--pandas-years", default="3", help="numbers of years also collapsed "
                        "in pandas (every row in memory: about 2 GB per year)")
    parser.add_argument("--spark-driver-memory", default="4g")
    parser.add_argument("--n-pupils", type=int, default=N_PUPILS,
                        help="pupils per year of the files made where missing")
    args = parser.parse_args(argv)
    cases = set(args.cases.split(","))
    years = [int(y) for y in args.years.split(",")]
    files = _make_years(args.data, max(years) if "years" in cases else 1, args.n_pupils)
    import pyarrow.parquet as pq

    n_year = pq.read_metadata(files[0]).num_rows
    first = str(files[0])
    work = Path(tempfile.mkdtemp(prefix="disparity-bench-"))
    print("| case | pupil rows | process s | in-process s | peak GiB | conserved |")
    print("|---|---:|---:|---:|---:|---|")

    if "cli" in cases:
        for engine in ("engine", "pandas"):
            r = _median("cli", {"source": first, "by": BY, "engine": engine,
                                "output": str(work / "cells.parquet")}, args.repeats)
            print(_row(f"`disparity collapse` 1 year, {engine}", n_year, r), flush=True)

    if "crossover" in cases:
        whole = pq.read_table(first)
        for n in (n for n in (10_000, 30_000, 100_000, 300_000, 1_000_000) if n < n_year):
            path = work / f"first_{n}.parquet"
            pq.write_table(whole.slice(0, n), path)
            for engine in ("engine", "pandas"):
                r = _median("cli", {"source": str(path), "by": BY, "engine": engine,
                                    "output": str(work / "cells.parquet")}, args.repeats)
                print(_row(f"crossover: `disparity collapse`, {engine}", n, r), flush=True)
        del whole

    if "years" in cases:
        for k in years:
            glob = str(args.data / "pupils_*.parquet") if k == len(files) else None
            if glob is None:  # a folder with only the first k years
                sub = work / f"years_{k}"
                sub.mkdir(exist_ok=True)
                for f in files[:k]:
                    link = sub / f.name
                    if not link.exists():
                        link.symlink_to(f)
                glob = str(sub / "*.parquet")
            truth = _true_totals(files[:k])
            r = _median("collapse", {"source": glob, "by": BY, "engine": "engine"}, args.repeats)
            ok = "yes" if r["totals"] == truth else f"NO: {r['totals']} vs {truth}"
            print(_row(f"{k} years from Parquet, DuckDB", truth["n_pupils"], r, ok), flush=True)
            if str(k) in args.pandas_years.split(","):
                r = _median("pandas_years", {"source": glob, "by": BY}, 1)
                ok = "yes" if r["totals"] == truth else f"NO: {r['totals']} vs {truth}"
                print(_row(f"{k} years, pandas (1 run)", truth["n_pupils"], r, ok), flush=True)

    if "table" in cases:
        import duckdb

        db = work / "npd.duckdb"
        con = duckdb.connect(str(db))
        con.execute(f"CREATE TABLE pupils AS SELECT * FROM read_parquet('{first}')")
        con.close()
        truth = _true_totals(files[:1])
        r = _median("collapse", {"source": f"duckdb://{db}", "table": "pupils", "by": BY,
                                 "engine": "auto"}, args.repeats)
        ok = "yes" if r["totals"] == truth else f"NO: {r['totals']} vs {truth}"
        print(_row("DuckDB table (`duckdb://`, 1 year)", n_year, r, ok), flush=True)
        db.unlink()

    if "spark" in cases:
        truth = _true_totals(files[:1])
        r = _median("spark", {"source": first, "by": BY,
                              "driver_memory": args.spark_driver_memory}, 1)
        ok = "yes" if r["totals"] == truth else f"NO: {r['totals']} vs {truth}"
        print(_row(f"Spark local[2] (1 run; start {r['start_seconds']:.0f} s, collapse "
                   f"{r['collapse_seconds']:.0f} s)", n_year, r, ok), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
