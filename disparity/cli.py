"""Command line: argument parsing and exit codes only; the work is done by the library.

Every command has ``--help``. Bad input prints a one-paragraph message naming what is
wrong and how to fix it, and exits with status 2, never with a traceback.

Exit codes: 0 success; 2 bad input or request (a :class:`~disparity.errors.DisparityError`);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import DisparityError

COMPARISONS = ("others", "reference", "alternate", "weighted")
KINDS = ("dfe", "pupils", "cells")
ENGINES = ("ml", "pymc", "glm")


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return items


def _write_frame(frame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False, lineterminator="\n")


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
    from .simulate import simulate_pupils

    sim = simulate_pupils(
        n_pupils=args.pupils,
        n_schools=args.schools,
        n_las=args.las,
        n_years=args.years,
        n_trusts=args.trusts,
        seed=args.seed,
    )
    sim.write(args.output, args.truth)
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
    from .validate import validate_cells, validate_pupils

    kind, frame = read_data(args.data, kind=args.kind)
    if kind == "pupils":
        validate_pupils(frame)
    elif kind == "cells":
        validate_cells(frame, allow_missing=True)
    print(f"{args.data}: valid {kind} table, {len(frame):,} rows, {frame.shape[1]} columns")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .fitting import fit_model, write_run
    from .spec import load_spec

    spec = load_spec(args.model)
    if args.engine:
        spec = spec.replace(engine=args.engine)
    fit = fit_model(spec, data=args.data, progress=not args.quiet)
    out = write_run(fit, args.output, spec)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_model

    out = run_model(args.model, args.output, data=args.data, engine=args.engine,
                    progress=not args.quiet)
    print(f"wrote {out / 'report.html'} and {out / 'estimates.csv'}", file=sys.stderr)
    return 0


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
    p.add_argument("--outcome", required=True, help="e.g. perm_excl, fixed_excl, one_plus_fixed")
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
    p.add_argument("--threshold", type=float, default=None, help="risk-ratio flag threshold")
    p.add_argument("--ci-prob", type=float, default=None, help="interval probability (0.95)")
    p.add_argument("-o", "--output", type=Path, default=None, help="CSV or Parquet to write")
    p.set_defaults(func=_cmd_rates)

    p = sub.add_parser("simulate", help="seeded synthetic national pupils with known truth",
                       description="Simulate pupil-years with known fixed and random effects.")
    p.add_argument("--pupils", type=int, default=100_000)
    p.add_argument("--schools", type=int, default=500)
    p.add_argument("--las", type=int, default=20)
    p.add_argument("--years", type=int, default=1)
    p.add_argument("--trusts", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", type=Path, required=True, help="pupils CSV or Parquet")
    p.add_argument("--truth", type=Path, default=None, help="JSON file for the true parameters")
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
                       description="Validate a DfE, pupils or cells file; lists every problem.")
    p.add_argument("data", type=Path)
    p.add_argument("--kind", choices=KINDS, default=None)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("fit", help="fit a model file; write estimates.csv and diagnostics",
                       description="Fit the model described by a TOML model file.")
    p.add_argument("model", type=Path, help="models/NAME.toml")
    p.add_argument("--data", type=Path, default=None, help="override the model file's data path")
    p.add_argument("--engine", choices=ENGINES, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", type=Path, required=True, help="run directory")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("run", help="fit a model file and write estimates, figures and a report",
                       description="Fit the model of a TOML model file, compute adjusted rate "
                       "ratios, unit effects and the adjustment ladder, and write "
                       "estimates.csv, figures, report.md, report.html and manifest.json.")
    p.add_argument("model", type=Path, help="models/NAME.toml")
    p.add_argument("-o", "--output", type=Path, required=True, help="run directory")
    p.add_argument("--data", type=Path, default=None, help="override the model file's data path")
    p.add_argument("--engine", choices=ENGINES, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="re-render report.md/html of a run without refitting",
                       description="Redraw the figures and rewrite report.md and report.html "
                       "of a run directory from its saved files.")
    p.add_argument("run_dir", type=Path, help="a directory written by `disparity run`")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``disparity`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DisparityError as exc:
        print(f"disparity {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("disparity: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
