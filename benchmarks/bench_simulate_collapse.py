"""Time and memory of simulating national pupils and collapsing them to cells.

Usage::

    python benchmarks/bench_simulate_collapse.py   # 8M pupils, 20,000 schools, 150 LAs
    python benchmarks/bench_simulate_collapse.py --n-pupils 1000000 --repeats 3

Prints, for ``simulate_pupils`` and for ``collapse`` by ethnicity, sen, fsm, cin, school, la:
rows in and out, seconds (median of ``--repeats`` runs) and the process's peak resident
memory so far (``resource.getrusage``; the simulation figure is the peak after simulating,
the collapse figure the peak after collapsing, so it includes the pupils table).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time


def _peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":  # bytes on macOS
        kib /= 1024
    return kib / 1024**2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pupils", type=int, default=8_000_000)
    parser.add_argument("--n-schools", type=int, default=20_000)
    parser.add_argument("--n-las", type=int, default=150)
    parser.add_argument("--n-trusts", type=int, default=0)
    parser.add_argument("--n-years", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each step; the median time is printed")
    parser.add_argument("--by", default="ethnicity,sen,fsm,cin,school,la")
    args = parser.parse_args(argv)

    from disparity import config
    from disparity.cells import collapse
    from disparity.simulate import simulate_pupils

    seed = config.SEED if args.seed is None else args.seed
    by = args.by.split(",")

    times, sim = [], None
    for _ in range(args.repeats):
        del sim
        t0 = time.perf_counter()
        sim = simulate_pupils(args.n_pupils, args.n_schools, args.n_las, n_years=args.n_years,
                              n_trusts=args.n_trusts, seed=seed)
        times.append(time.perf_counter() - t0)
    pupils = sim.pupils
    mem = pupils.memory_usage(deep=True).sum() / 1024**3
    print(f"simulate_pupils: {len(pupils):,} rows x {pupils.shape[1]} columns "
          f"({mem:.2f} GiB in memory); {args.n_schools:,} schools, {args.n_las} LAs, "
          f"{args.n_years} year(s)")
    print(f"  seconds (median of {args.repeats}): {statistics.median(times):.2f}")
    print(f"  peak RSS so far: {_peak_rss_gib():.2f} GiB")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        cells = collapse(pupils, by)
        times.append(time.perf_counter() - t0)
    print(f"collapse by {','.join(by)}: {len(pupils):,} pupils -> {len(cells):,} cells")
    print(f"  seconds (median of {args.repeats}): {statistics.median(times):.2f}")
    print(f"  peak RSS so far: {_peak_rss_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
