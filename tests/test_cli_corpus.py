"""Bad input, table-driven: each case is files, a command, the exit status and a word its
message must contain. No case may print a traceback, and none may touch a file or process
outside the run (formula injection).

Exit 2: bad input or request (one paragraph naming the column, the rows and the fix);
3: a fit that did not converge; 0: input that is accepted (with a note where it was
changed, e.g. spaces stripped around a level).
"""

from __future__ import annotations

import errno
import io
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from disparity.cli import main

ROOT = Path(__file__).resolve().parents[1]
DFE_GEO = ROOT / "data" / "dfe" / "exclusions_by_geographic_level_2011-12_to_2016-17.csv.gz"

GOOD = "sen,la,school,n_pupils,n_perm_excl\n" + "\n".join(
    f"{sen},{la},{la}{s},{n},{e}" for (sen, la, s, n, e) in [
        ("none", "E1", 1, 400, 9), ("support", "E1", 1, 60, 5), ("ehcp", "E1", 1, 20, 4),
        ("none", "E1", 2, 380, 8), ("support", "E1", 2, 55, 6), ("ehcp", "E1", 2, 25, 3),
        ("none", "E2", 3, 420, 12), ("support", "E2", 3, 70, 7), ("ehcp", "E2", 3, 30, 5),
        ("none", "E2", 4, 390, 7), ("support", "E2", 4, 65, 6), ("ehcp", "E2", 4, 22, 4),
    ]) + "\n"


def model(formula: str = "sen", extra: str = "", data: str = "d.csv", groups: str = "[]",
          engine: str = "glm", fit: str = "") -> str:
    return textwrap.dedent(f"""\
        [data]
        path = "{data}"
        [model]
        family = "binomial"
        events = "n_perm_excl"
        trials = "n_pupils"
        formula = "{formula}"
        groups = {groups}
        [fit]
        engine = "{engine}"
        seed = 1
        {fit}
        [report]
        n_draws = 20
        {extra}
        """)


def replace_row(text: str, row: int, column: str, value: str) -> str:
    frame = pd.read_csv(io.StringIO(text), dtype=str)
    frame.loc[row, column] = value
    return frame.to_csv(index=False)


@dataclass
class Case:
    name: str
    args: list[str]
    code: int
    word: str
    files: dict[str, str | bytes | Callable[[Path], None]] = field(default_factory=dict)
    setup: Callable[[Path, pytest.MonkeyPatch], None] | None = None


def _parquet(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path, index=False)


def _regional_la(path: Path) -> None:
    frame = pd.read_csv(DFE_GEO, dtype=str, keep_default_na=False)
    frame = frame[frame.time_period == "201617"]
    la = frame[frame.geographic_level == "Local authority"].new_la_code.iloc[0]
    frame.loc[(frame.geographic_level == "Local authority") & (frame.new_la_code == la),
              "geographic_level"] = "Regional"
    frame.to_csv(path, index=False)


def _foreign(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("mine")


def _read_only(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    mp.setattr(tempfile, "mkdtemp", refuse)


def _full_disk(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    import os

    from disparity.report import publish

    real = os.fsync
    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 3:  # a few files written, then the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    mp.setattr(publish.os, "fsync", fsync)


def _held_lock(tmp: Path, mp: pytest.MonkeyPatch) -> None:
    """Another run holds the folder's lock (a second open file description in this process
    conflicts with it exactly as another process would)."""
    import fcntl

    handle = open(tmp / ".run.lock", "a+")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(handle)


_HELD: list = []

#: An optimiser stopped after one iteration: a fit that did not converge.
UNCONVERGED = model(engine="ml", groups='["la/school"]', fit="[fit.ml]\nmaxit = 1")

CASES = [
    # -- formula injection: refused before anything is evaluated
    Case("formula-os-system", ["run", "{m.toml}", "-o", "{run}"], 2, "reserved",
         {"d.csv": GOOD, "m.toml": model("sen + I(0*__import__('os').system('touch {OWNED}'))")}),
    Case("formula-open-file", ["run", "{m.toml}", "-o", "{run}"], 2, "attribute access",
         {"d.csv": GOOD, "m.toml": model("C(sen, levels=open('/etc/passwd').read().split())")}),
    Case("formula-np-log", ["fit", "{m.toml}", "-o", "{run}"], 2, "attribute access",
         {"d.csv": GOOD, "m.toml": model("sen + np.log(n_pupils)")}),
    Case("formula-eval", ["fit", "{m.toml}", "-o", "{run}"], 2, "not allowed",
         {"d.csv": GOOD, "m.toml": model("sen + eval(sen)")}),
    Case("formula-semicolon", ["fit", "{m.toml}", "-o", "{run}"], 2, "not allowed",
         {"d.csv": GOOD, "m.toml": model("sen; import os")}),
    Case("formula-dunder", ["fit", "{m.toml}", "-o", "{run}"], 2, "reserved",
         {"d.csv": GOOD, "m.toml": model("sen + __class__")}),
    Case("formula-string", ["fit", "{m.toml}", "-o", "{run}"], 2, "level name",
         {"d.csv": GOOD, "m.toml": model("sen + 'x'")}),
    Case("formula-number", ["fit", "{m.toml}", "-o", "{run}"], 2, "0 or 1",
         {"d.csv": GOOD, "m.toml": model("sen + 2")}),
    Case("formula-unclosed", ["fit", "{m.toml}", "-o", "{run}"], 2, "expected",
         {"d.csv": GOOD, "m.toml": model("(sen")}),
    Case("formula-unknown-column", ["fit", "{m.toml}", "-o", "{run}"], 2, "not in the data",
         {"d.csv": GOOD, "m.toml": model("sen + lambda")}),
    Case("formula-correlated-slopes", ["fit", "{m.toml}", "-o", "{run}"], 2, "||",
         {"d.csv": GOOD, "m.toml": model("sen + (1 + sen | la)")}),
    Case("ladder-injection", ["run", "{m.toml}", "-o", "{run}"], 2, "reserved",
         {"d.csv": GOOD, "m.toml": model(extra="[[ladder]]\nlabel = 'a'\n"
                                         "formula = \"I(__import__('os'))\"\ngroups = []")}),
    # -- counts
    Case("validate-inf", ["validate", "{d.csv}"], 2, "infinite",
         {"d.csv": replace_row(GOOD, 0, "n_perm_excl", "inf")}),
    Case("run-inf", ["run", "{m.toml}", "-o", "{run}"], 2, "infinite",
         {"d.csv": replace_row(GOOD, 0, "n_perm_excl", "inf"), "m.toml": model()}),
    Case("validate-1e300", ["validate", "{d.csv}"], 2, "above 1,000,000,000",
         {"d.csv": replace_row(GOOD, 0, "n_pupils", "1e300")}),
    Case("run-1e300", ["run", "{m.toml}", "-o", "{run}"], 2, "above 1,000,000,000",
         {"d.csv": replace_row(GOOD, 0, "n_pupils", "1e300"), "m.toml": model()}),
    Case("validate-2-pow-63", ["validate", "{d.csv}"], 2, "above 1,000,000,000",
         {"d.csv": replace_row(GOOD, 0, "n_pupils", str(2**63))}),
    Case("validate-bool", ["validate", "{d.parquet}"], 2, "True/False",
         {"d.parquet": _parquet(pd.DataFrame({"sen": ["none", "ehcp"], "n_pupils": [10, 12],
                                              "n_perm_excl": [True, False]}))}),
    Case("validate-float32-1e30", ["validate", "{d.parquet}"], 2, "above 1,000,000,000",
         {"d.parquet": _parquet(pd.DataFrame({"sen": ["none", "ehcp"],
                                              "n_pupils": np.array([1e30, 10], "float32"),
                                              "n_perm_excl": [1, 2]}))}),
    Case("validate-negative", ["validate", "{d.csv}"], 2, "negative",
         {"d.csv": replace_row(GOOD, 2, "n_perm_excl", "-1")}),
    Case("validate-fraction", ["validate", "{d.csv}"], 2, "not whole",
         {"d.csv": replace_row(GOOD, 2, "n_perm_excl", "1.5")}),
    Case("validate-text-count", ["validate", "{d.csv}"], 2, "not numbers",
         {"d.csv": replace_row(GOOD, 2, "n_perm_excl", "three")}),
    Case("run-events-above-pupils", ["run", "{m.toml}", "-o", "{run}"], 2, "more events",
         {"d.csv": replace_row(GOOD, 2, "n_perm_excl", "21"), "m.toml": model()}),
    Case("run-events-without-pupils", ["run", "{m.toml}", "-o", "{run}"], 2, "events but",
         {"d.csv": replace_row(GOOD, 2, "n_pupils", "0"), "m.toml": model()}),
    Case("validate-duplicated-cells", ["validate", "{d.csv}"], 2, "repeat",
         {"d.csv": GOOD + "none,E1,E11,400,9\n"}),
    Case("run-duplicated-cells", ["run", "{m.toml}", "-o", "{run}"], 2, "repeat",
         {"d.csv": GOOD + "none,E1,E11,400,9\n", "m.toml": model()}),
    Case("run-trailing-space-level", ["run", "{m.toml}", "-o", "{run}"], 0, "stripped",
         {"d.csv": replace_row(GOOD, 0, "sen", "none "), "m.toml": model()}),
    Case("validate-trailing-space-level", ["validate", "{d.csv}"], 0, "stripped",
         {"d.csv": replace_row(GOOD, 0, "sen", "none ")}),
    Case("validate-duplicated-header", ["validate", "{d.csv}"], 2, "more than once",
         {"d.csv": "sen,n_pupils,n_pupils,n_perm_excl\nnone,10,10,1\n"}),
    Case("run-duplicated-header", ["run", "{m.toml}", "-o", "{run}"], 2, "more than once",
         {"d.csv": "sen,n_pupils,n_pupils,n_perm_excl\nnone,10,10,1\n", "m.toml": model()}),
    Case("validate-unknown-sen-level", ["validate", "{d.csv}"], 2, "Valid levels",
         {"d.csv": replace_row(GOOD, 1, "sen", "maybe")}),
    Case("run-unknown-sen-level", ["run", "{m.toml}", "-o", "{run}"], 2, "Valid levels",
         {"d.csv": replace_row(GOOD, 1, "sen", "maybe"), "m.toml": model()}),
    Case("validate-own-column-free", ["validate", "{d.csv}"], 0, "valid",
         {"d.csv": "herd,n_pupils,n_perm_excl\nanything,10,1\nelse,12,2\n"}),
    Case("validate-school-in-two-las", ["validate", "{d.csv}"], 2, "more than one la",
         {"d.csv": replace_row(GOOD, 3, "la", "E2")}),
    Case("run-school-in-two-las", ["run", "{m.toml}", "-o", "{run}"], 2, "more than one la",
         {"d.csv": replace_row(GOOD, 3, "la", "E2"), "m.toml": model(groups='["la/school"]')}),
    Case("validate-missing-level", ["validate", "{d.csv}"], 2, "missing values",
         {"d.csv": replace_row(GOOD, 4, "sen", "")}),
    Case("validate-rows-from-1", ["validate", "{d.csv}"], 2, "row 5 of 12",
         {"d.csv": replace_row(GOOD, 4, "n_perm_excl", "-3")}),
    Case("run-rows-from-1", ["run", "{m.toml}", "-o", "{run}"], 2, "row 5 of 12",
         {"d.csv": replace_row(GOOD, 4, "n_perm_excl", "-3"), "m.toml": model()}),
    Case("validate-model-agrees-with-run", ["validate", "{d.csv}", "--model", "{m.toml}"], 2,
         "more events", {"d.csv": replace_row(GOOD, 2, "n_perm_excl", "21"), "m.toml": model()}),
    # -- files
    Case("empty-file", ["validate", "{d.csv}"], 2, "empty", {"d.csv": ""}),
    Case("header-only", ["validate", "{d.csv}"], 2, "no data rows",
         {"d.csv": "sen,n_pupils,n_perm_excl\n"}),
    Case("not-utf8", ["validate", "{d.csv}"], 2, "UTF-8",
         {"d.csv": "sen,n_pupils,n_perm_excl\nn\xe9,10,1\n".encode("latin-1")}),
    Case("missing-file", ["validate", "{nowhere.csv}"], 2, "not found", {}),
    Case("corrupt-parquet", ["validate", "{d.parquet}"], 2, "Parquet",
         {"d.parquet": b"PAR1 this is not parquet"}),
    Case("dfe-la-labelled-regional", ["validate", "{d.csv}"], 2, "geographic_level",
         {"d.csv": _regional_la}),
    # -- outputs
    Case("run-output-is-a-file", ["run", "{m.toml}", "-o", "{d.csv}"], 2, "is a file",
         {"d.csv": GOOD, "m.toml": model()}),
    Case("rates-output-is-a-folder", ["rates", str(ROOT / "data" / "dfe" /
                                                  "exclusions_by_characteristic_national.csv.gz"),
                                      "--outcome", "perm_excl", "--by", "sen", "--year",
                                      "2016/17", "-o", "{dir}"], 2, "is a folder",
         {"dir": lambda p: p.mkdir()}),
    Case("collapse-output-is-a-folder", ["collapse", "{p.csv}", "--by", "sen", "--outcomes",
                                         "perm_excl", "-o", "{dir}"],
         2, "is a folder", {"p.csv": "pupil_id,year,la,school,sen,perm_excl\n1,2016/17,E1,S1,"
                            "none,0\n2,2016/17,E1,S1,ehcp,1\n", "dir": lambda p: p.mkdir()}),
    Case("run-into-foreign-folder", ["run", "{m.toml}", "-o", "{run}"], 2, "--force",
         {"d.csv": GOOD, "m.toml": model(), "run": _foreign}),
    Case("run-into-foreign-folder-forced", ["run", "{m.toml}", "-o", "{run}", "--force"], 0,
         "wrote", {"d.csv": GOOD, "m.toml": model(), "run": _foreign}),
    Case("run-read-only", ["run", "{m.toml}", "-o", "{run}"], 2, "read-only",
         {"d.csv": GOOD, "m.toml": model()}, _read_only),
    Case("run-disk-full", ["run", "{m.toml}", "-o", "{run}"], 2, "disk is full",
         {"d.csv": GOOD, "m.toml": model()}, _full_disk),
    Case("run-folder-locked", ["run", "{m.toml}", "-o", "{run}"], 2, "another disparity run",
         {"d.csv": GOOD, "m.toml": model()}, _held_lock),
    Case("run-output-parent-is-a-file", ["run", "{m.toml}", "-o", "{d.csv}/run"], 2,
         "which is a file", {"d.csv": GOOD, "m.toml": model()}),
    Case("rates-count-is-not-a-risk", ["rates", str(ROOT / "data" / "dfe" /
                                           "exclusions_by_characteristic_national.csv.gz"),
                                       "--outcome", "fixed_excl", "--by", "sen"], 2,
         "one_plus_fixed", {}),
    # -- simulate
    Case("simulate-no-pupils", ["simulate", "--pupils", "0", "-o", "{p.parquet}"], 2,
         "--pupils must be at least 1", {}),
    Case("simulate-without-truth", ["simulate", "--pupils", "300", "--schools", "6", "--las",
                                    "2", "-o", "{p.parquet}"], 0, "wrote 300", {}),
    Case("simulate-more-schools-than-pupils", ["simulate", "--pupils", "5", "--schools", "9",
                                               "-o", "{p.parquet}"], 2, "cannot exceed", {}),
    Case("simulate-bad-seed", ["simulate", "--seed", "-1", "-o", "{p.parquet}"], 2, "seed", {}),
    Case("simulate-bad-suffix", ["simulate", "-o", "{p.txt}"], 2, ".parquet or .csv", {}),
    # -- model files and options
    Case("seed-negative", ["fit", "{m.toml}", "-o", "{run}"], 2, "seed must be a whole number",
         {"d.csv": GOOD, "m.toml": model().replace("seed = 1", "seed = -1")}),
    Case("seed-too-big", ["fit", "{m.toml}", "-o", "{run}"], 2, "seed must be a whole number",
         {"d.csv": GOOD, "m.toml": model().replace("seed = 1", f"seed = {2**40}")}),
    Case("seed-option-too-big", ["fit", "{m.toml}", "-o", "{run}", "--seed", str(2**40)], 2,
         "--seed", {"d.csv": GOOD, "m.toml": model()}),
    Case("ci-prob-option", ["fit", "{m.toml}", "-o", "{run}", "--ci-prob", "1.5"], 2,
         "--ci-prob", {"d.csv": GOOD, "m.toml": model()}),
    Case("draws-option", ["fit", "{m.toml}", "-o", "{run}", "--draws", "0"], 2, "--draws",
         {"d.csv": GOOD, "m.toml": model()}),
    Case("unknown-engine", ["fit", "{m.toml}", "-o", "{run}"], 2, "valid engines",
         {"d.csv": GOOD, "m.toml": model(engine="lme4")}),
    Case("misspelt-key", ["fit", "{m.toml}", "-o", "{run}"], 2, "did you mean",
         {"d.csv": GOOD, "m.toml": model().replace("trials =", "trails =")}),
    Case("bad-toml", ["fit", "{m.toml}", "-o", "{run}"], 2, "not valid TOML",
         {"d.csv": GOOD, "m.toml": "[model\nfamily = 'binomial'\n"}),
    Case("missing-model-file", ["fit", "{none.toml}", "-o", "{run}"], 2, "not found", {}),
    Case("family-misspelt", ["fit", "{m.toml}", "-o", "{run}"], 2, "did you mean 'binomial'",
         {"d.csv": GOOD, "m.toml": model().replace('"binomial"', '"binomal"')}),
    Case("reference-not-in-data", ["fit", "{m.toml}", "-o", "{run}"], 2, "reference level",
         {"d.csv": GOOD, "m.toml": model().replace("[fit]",
                                                   '[model.reference]\nsen = "SEN"\n[fit]')}),
    Case("year-not-in-data", ["fit", "{m.toml}", "-o", "{run}"], 2, "year",
         {"d.csv": GOOD, "m.toml": model().replace('path = "d.csv"',
                                                   'path = "d.csv"\nyear = "2015/16"')}),
    Case("suppression-key-misspelt", ["run", "{m.toml}", "-o", "{run}"], 2, "min_pupils",
         {"d.csv": GOOD, "m.toml": model(extra="[report.suppression]\nmin_pupil = 5")}),
    Case("no-data-path", ["fit", "{m.toml}", "-o", "{run}"], 2, "no [data] path",
         {"m.toml": model().replace('[data]\npath = "d.csv"\n', "")}),
    # -- convergence
    Case("unconverged-exit-3", ["run", "{m.toml}", "-o", "{run}"], 3, "did not converge",
         {"d.csv": GOOD, "m.toml": UNCONVERGED}),
    # -- report
    Case("report-not-a-folder", ["report", "{nowhere}"], 2, "not a folder", {}),
    Case("report-not-a-run", ["report", "{dir}"], 2, "manifest", {"dir": lambda p: p.mkdir()}),
]


def _fill(text: str, tmp: Path) -> str:
    import re

    return re.sub(r"\{([A-Za-z0-9_.]+)\}", lambda m: str(tmp / m.group(1)), text)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch, capsys):
    for name, content in case.files.items():
        path = tmp_path / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, tmp_path) if name.endswith(".toml") else content)
    if case.setup is not None:
        case.setup(tmp_path, monkeypatch)
    args = [_fill(a, tmp_path) for a in case.args]
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = main(args)
    finally:
        for handle in _HELD:
            handle.close()
        _HELD.clear()
    out = capsys.readouterr()
    text = out.err + out.out
    assert "Traceback" not in text
    assert code == case.code, text
    text += "\n".join(str(w.message) for w in caught)
    assert case.word in text, text
    assert not (tmp_path / "OWNED").exists()  # nothing in a model file was executed
    if case.code != 0 and "run" in case.args[0:1]:
        run = tmp_path / "run"
        assert not run.exists() or (run / "notes.txt").exists(), "a failed run left a folder"
        leftovers = [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]
        assert leftovers == []


def test_corpus_is_large():
    assert len(CASES) >= 60


def test_unconverged_run_can_be_published_with_a_warning(tmp_path: Path, capsys):
    (tmp_path / "d.csv").write_text(GOOD)
    (tmp_path / "m.toml").write_text(UNCONVERGED)
    with pytest.warns(Warning):
        code = main(["run", str(tmp_path / "m.toml"), "-o", str(tmp_path / "run"),
                     "--allow-unconverged", "--quiet"])
    assert code == 0
    report = (tmp_path / "run" / "report.md").read_text()
    first = report.split("\n\n")[1]
    assert first.startswith("**Warning: the fit did not converge.**")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["diagnostics"]["converged"] is False
