"""Command line: argument parsing and exit codes only; the work is done by the library.

Every command has ``--help``. Bad input prints a one-paragraph message naming what is
wrong and how to fix it, and exits with status 2, never with a traceback.

Exit codes: 0 success; 2 bad input or request (a :class:`~disparity.errors.DisparityError`);
3 a fit did not converge (nothing published; ``--allow-unconverged`` publishes it);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import DisparityError, UnconvergedError

COMPARISONS = ("others", "reference", "alternate", "weighted")
KINDS = ("dfe", "pupils", "cells")
ENGINES = ("ml", "pymc", "glm")


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return items


def _write_frame(frame, out: Path) -> None:
    """A table to a CSV or Parquet file, atomically (a partial file never remains)."""
    from .report.publish import table_bytes, write_file

    write_file(out, table_bytes(frame, out))


# --------------------------------------------------------------------------- commands
def _cmd_rates(args: argparse.Namespace) -> int:
    from .rates import rates_table

    table = rates_table(
        args.data,
        outcome=args.outcome,
        by=args.by,
        unit=args.unit,
        year=args.year,
        reference=args.reference,
        comparison=args.comparison,
        kind=args.kind,
        school_type=args.school_type,
        min_n_size=args.min_n_size,
        min_cell_size=args.min_cell_size,
        threshold=args.threshold,
        ci_prob=args.ci_prob,
    )
    if args.output is None:
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        _write_frame(table, args.output)
        print(f"wrote {len(table):,} rows to {args.output}", file=sys.stderr)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import json

    from .errors import SpecError
    from .report.publish import write_file
    from .simulate import simulate_pupils

    problems = []
    for name, value, low in (("--pupils", args.pupils, 1), ("--schools", args.schools, 1),
                             ("--las", args.las, 1), ("--years", args.years, 1),
                             ("--trusts", args.trusts, 0)):
        if value < low:
            problems.append(f"{name} must be at least {low}, not {value}")
    if not problems and args.schools > args.pupils:
        problems.append(f"--schools ({args.schools:,}) cannot exceed --pupils "
                        f"({args.pupils:,}): every school needs a pupil")
    if not problems and args.las > args.schools:
        problems.append(f"--las ({args.las:,}) cannot exceed --schools ({args.schools:,}): "
                        "every LA needs a school")
    if not 0 <= args.seed <= 2**32 - 1:
        problems.append(f"--seed must be a whole number from 0 to {2**32 - 1}, not {args.seed}")
    if args.output.suffix not in (".parquet", ".csv"):
        problems.append(f"-o {str(args.output)!r} must end .parquet or .csv")
    if problems:
        raise SpecError("disparity simulate: " + "; ".join(problems) + ".")
    sim = simulate_pupils(
        n_pupils=args.pupils,
        n_schools=args.schools,
        n_las=args.las,
        n_years=args.years,
        n_trusts=args.trusts,
        seed=args.seed,
    )
    _write_frame(sim.pupils, args.output)
    if args.truth is not None:
        write_file(args.truth, (json.dumps(sim.truth, indent=1) + "\n").encode("utf-8"))
    print(
        f"wrote {len(sim.pupils):,} pupil-years to {args.output}"
        + (f" and the truth to {args.truth}" if args.truth else ""),
        file=sys.stderr,
    )
    return 0


def _cmd_collapse(args: argparse.Namespace) -> int:
    from .collapse_sql import collapse_source
    from .vocabulary import PUPIL_KEY

    result = collapse_source(args.source, by=args.by, outcomes=args.outcomes, table=args.table,
                             key=PUPIL_KEY, engine=args.engine)
    _write_frame(result.cells, args.output)
    print(
        f"collapsed {result.n_rows:,} pupil-years into {len(result.cells):,} cells "
        f"({result.engine}) -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .read import read_data
    from .validate import validate_model_cells, validate_pupils

    if args.model is not None:  # exactly what `disparity run` checks before it fits
        from .design import build_design
        from .model_data import load_model_data
        from .spec import load_spec

        spec = load_spec(args.model)
        loaded = load_model_data(spec, args.data)
        build_design(spec, loaded.frame)
        print(f"{args.data}: valid data for {args.model}: {len(loaded.frame):,} cells")
        return 0
    kind, frame = read_data(args.data, kind=args.kind)
    if kind == "pupils":
        validate_pupils(frame, **({"outcomes": args.outcomes} if args.outcomes else {}))
    elif kind == "cells":
        counts = [c for c in frame.columns if str(c).startswith("n_") and c != "n_pupils"
                  and not str(c).endswith("_missing")]
        events = (args.outcomes or counts or ["n_perm_excl"])[0]
        validate_model_cells(frame, events=events, trials="n_pupils", family="binomial",
                             allow_missing=True)
    print(f"{args.data}: valid {kind} table, {len(frame):,} rows, {frame.shape[1]} columns")
    return 0


def _run_options(args: argparse.Namespace) -> dict:
    return dict(restricted=args.restricted, force=args.force,
                allow_unconverged=args.allow_unconverged)


def _cmd_fit(args: argparse.Namespace) -> int:
    from .runner import run_model

    out = run_model(_overridden(args), args.output, data=args.data, scope="fit",
                    progress=not args.quiet, **_run_options(args))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_model

    out = run_model(_overridden(args), args.output, data=args.data, progress=not args.quiet,
                    **_run_options(args))
    print(f"wrote {out / 'report.html'} and {out / 'estimates.csv'}", file=sys.stderr)
    return 0


def _overridden(args: argparse.Namespace):
    """The model file's spec with the command line's --engine, --draws, --chains, --seed and
    --ci-prob applied (checked as the model file's own values are)."""
    from .spec import load_spec, spec_overrides

    spec = load_spec(args.model)
    return spec_overrides(spec, engine=args.engine, draws=args.draws, chains=args.chains,
                          seed=args.seed, ci_prob=args.ci_prob)


def _cmd_report(args: argparse.Namespace) -> int:
    from .runner import rerender

    report = rerender(args.run_dir)
    print(f"wrote {report} and {report.with_suffix('.html')}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="disparity",
        description="Measure disproportionality in school exclusions: raw IDEA-style "
        "ratios, hierarchical models and adjusted rate ratios.",
    )
    parser.add_argument("--version", action="version", version=f"disparity {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "rates",
        help="raw risks and risk ratios by group within units (IDEA rules)",
        description="Raw risks, risk ratios (Katz intervals), odds ratios, risk differences "
        "and representation indices of one outcome by one characteristic, within a unit.",
    )
    p.add_argument("data", type=Path, help="a DfE EES file, a pupils table or a cells table")
    p.add_argument("--outcome", required=True,
                   help="pupils with the event: perm_excl, one_plus_fixed (DfE), any_susp")
    p.add_argument("--by", required=True, help="characteristic, e.g. ethnicity, fsm, sen, sex")
    p.add_argument("--unit", default=None, help="unit within which groups are compared: "
                   "region, la, school, year (default: national)")
    p.add_argument("--year", default=None, help="academic year, e.g. 2016/17")
    p.add_argument("--reference", default=None, help='reference group, e.g. "White British"')
    p.add_argument("--comparison", choices=COMPARISONS, default=None,
                   help="others (default), or reference when --reference is given")
    p.add_argument("--kind", choices=KINDS, default=None, help="input kind (default: detected)")
    p.add_argument("--school-type", default="Total", help="DfE files: school type (default Total)")
    p.add_argument("--min-n-size", type=int, default=None, help="IDEA minimum pupils (30)")
    p.add_argument("--min-cell-size", type=int, default=None, help="IDEA minimum events (10)")
    p.add_argument("--threshold", type=float, default=None,
                   help="flag groups whose risk ratio exceeds this (default: none, no flags; "
                   "IDEA leaves the threshold to each State, commonly 2 or 3)")
    p.add_argument("--ci-prob", type=float, default=None, help="interval probability (0.95)")
    p.add_argument("-o", "--output", type=Path, default=None, help="CSV or Parquet to write")
    p.set_defaults(func=_cmd_rates)

    p = sub.add_parser("simulate", help="seeded synthetic national pupils with known truth",
                       description="Simulate pupil-years with known fixed and random effects.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pupils", type=int, default=100_000, help="pupils per year")
    p.add_argument("--schools", type=int, default=500, help="schools (at most --pupils)")
    p.add_argument("--las", type=int, default=20, help="local authorities (at most --schools)")
    p.add_argument("--years", type=int, default=1, help="academic years, from 2016/17 back")
    p.add_argument("--trusts", type=int, default=0,
                   help="academy trusts spanning LAs (0: no trust column)")
    p.add_argument("--seed", type=int, default=1, help="random seed, 0 to 2**32 - 1")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="pupils file to write (.parquet or .csv)")
    p.add_argument("--truth", type=Path, default=None,
                   help="JSON file for the true parameters (optional)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("collapse", help="pupils -> cells (counts per combination)",
                       description="Check a pupils table and collapse it to cells, conserving "
                       "pupils and every event count. Parquet files and databases are "
                       "collapsed where they are (DuckDB, or the database's engine): only the "
                       "cells come back.")
    p.add_argument("source", help="a CSV or Parquet file, a folder or glob of Parquet files "
                   "('years/*.parquet'), duckdb://PATH or another database URL (with --table)")
    p.add_argument("--by", type=_csv_list, required=True, help="comma-separated columns")
    p.add_argument("--outcomes", type=_csv_list, default=None,
                   help="comma-separated outcomes (default: all known outcomes present)")
    p.add_argument("--table", default=None, help="the table of pupil rows in a database")
    p.add_argument("--engine", choices=("auto", "pandas", "engine"), default="auto",
                   help="auto (default): pandas for CSV and small Parquet files, else the "
                   "database engine (DuckDB for Parquet)")
    p.add_argument("-o", "--output", type=Path, required=True, help="cells CSV or Parquet")
    p.set_defaults(func=_cmd_collapse)

    p = sub.add_parser("validate", help="check a data file and report every problem",
                       description="Validate a DfE, pupils or cells file; lists every problem. "
                       "With --model, makes exactly the checks `disparity run` makes of the "
                       "data before it fits.")
    p.add_argument("data", type=Path)
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="the kind of table (default: told from its columns)")
    p.add_argument("--model", type=Path, default=None,
                   help="a model file: check the data as `disparity run` would for it")
    p.add_argument("--outcomes", type=_csv_list, default=None,
                   help="comma-separated outcome columns to check (pupils: e.g. perm_excl; "
                   "cells: e.g. n_perm_excl; default: the known outcomes present)")
    p.set_defaults(func=_cmd_validate)

    for name in ("fit", "run"):
        if name == "fit":
            p = sub.add_parser("fit", help="fit a model file; write estimates.csv and "
                               "diagnostics", description="Fit the model described by a TOML "
                               "model file and publish its estimates (no report).")
        else:
            p = sub.add_parser(
                "run", help="fit a model file and write estimates, figures and a report",
                description="Fit the model of a TOML model file, compute adjusted rate "
                "ratios, unit effects and the adjustment ladder, and publish estimates.csv, "
                "figures, report.md, report.html and manifest.json. Every count, rate and "
                "crude ratio that leaves the run is disclosure-controlled. Exit status 3: the "
                "fit did not converge (nothing published unless --allow-unconverged).")
        p.add_argument("model", type=Path, help="models/NAME.toml")
        p.add_argument("-o", "--output", type=Path, required=True,
                       help="run folder (made if needed; a previous run there is replaced "
                       "whole)")
        p.add_argument("--data", type=Path, default=None,
                       help="override the model file's data path")
        p.add_argument("--engine", choices=ENGINES, default=None,
                       help="override [fit] engine")
        p.add_argument("--draws", type=int, default=None,
                       help="pymc: posterior draws per chain (default: [fit] draws, 1000)")
        p.add_argument("--chains", type=int, default=None,
                       help="pymc: number of chains (default: [fit] chains, 4)")
        p.add_argument("--seed", type=int, default=None,
                       help="random seed, 0 to 2**32 - 1 (default: [fit] seed)")
        p.add_argument("--ci-prob", type=float, default=None,
                       help="interval probability (default: [report] ci_prob, 0.95)")
        p.add_argument("--restricted", action="store_true",
                       help="also write restricted/ (raw counts, cells and the fit) for "
                       "quality assurance; NOT for release")
        p.add_argument("--force", action="store_true",
                       help="replace the folder even if it holds files disparity did not "
                       "write (they are deleted)")
        p.add_argument("--allow-unconverged", action="store_true",
                       help="publish a fit that did not converge (its report opens with a "
                       "warning); without it such a run exits with status 3")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        p.set_defaults(func=_cmd_fit if name == "fit" else _cmd_run)

    p = sub.add_parser("report", help="re-render report.md/html of a run without refitting",
                       description="Check a run folder's files against its manifest, then "
                       "redraw the figures and rewrite report.md and report.html from its "
                       "published tables.")
    p.add_argument("run_dir", type=Path, help="a directory written by `disparity run`")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``disparity`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UnconvergedError as exc:
        print(f"disparity {args.command}: error: {exc}", file=sys.stderr)
        return 3
    except DisparityError as exc:
        print(f"disparity {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system that refuses: full, read-only, missing
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"disparity {args.command}: error: {exc.strerror or exc}{where}; check the "
              "path, the free space and the permissions, then run the command again",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("disparity: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one paragraph
        import os

        if os.environ.get("DISPARITY_DEBUG"):
            raise
        print(f"disparity {args.command}: internal error ({type(exc).__name__}: {exc}). This "
              "is a fault in disparity, not in your input; rerun with DISPARITY_DEBUG=1 for "
              "the details and report them.", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
