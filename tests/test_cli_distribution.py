"""`disparity distribution` on the shipped DfE school rows: the Timpson Review's 2016/17
figures for mainstream schools (85% excluded no pupil permanently, 0.2% more than 10), the
published band table under disclosure control, and the chart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from disparity.cli import main

ROOT = Path(__file__).resolve().parents[1]
DFE_GEO = ROOT / "data" / "dfe" / "exclusions_by_geographic_level_2011-12_to_2016-17.csv.gz"


def test_mainstream_2016_17_from_the_command_line(tmp_path: Path, capsys):
    out, plot, report = tmp_path / "dist.csv", tmp_path / "fig" / "dist.png", tmp_path / "d.md"
    code = main(["distribution", str(DFE_GEO), "--outcome", "perm_excl", "--year", "2016/17",
                 "--school-type", "State-funded primary,State-funded secondary",
                 "-o", str(out), "--plot", str(plot), "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 0, err
    t = pd.read_csv(out, dtype=str).set_index("band")
    assert list(t.index) == ["0", "1-2", "3-5", "6-10", "more than 10"]
    assert t["n_schools"].tolist() == ["17285", "2015", "663", "278", "47"]
    # Timpson Review (2019): 85% and 0.2% of mainstream schools
    assert round(100 * float(t.loc["0", "share"])) == 85
    assert round(100 * float(t.loc["more than 10", "share"]), 1) == 0.2
    assert f"{100 * float(t.loc['0', 'share']):.2f}" == "85.20"
    assert f"{100 * float(t.loc['more than 10', 'share']):.2f}" == "0.23"
    # band 1-2 holds every x: its events are not available, the range narrowed by LA totals
    assert t.loc["1-2", ["n_events", "n_events_min", "n_events_max"]].tolist() \
        == ["x", "2560", "2583"]
    assert t.loc[["3-5", "6-10", "more than 10"], "n_events"].tolist() == ["2450", "2014", "612"]
    # equal risk expects under one school above 10; the school SD model about a hundred
    assert float(t.loc["more than 10", "expected_same_risk"]) < 1
    assert 50 < float(t.loc["more than 10", "expected_school_sd"]) < 200
    assert float(t["dispersion_p_value"].iloc[0]) < 1e-100 and t["dispersion_df"].iloc[0] == "2"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "school SD" in err and "Traceback" not in err and "p < 1e-300" in err
    text = report.read_text()
    assert "| 0 | 17,285 | 85.2% | 0 |" in text
    assert "| more than 10 | 47 | 0.2% | 612 |" in text
    assert "| 1-2 | 2,015 | 9.9% | x |" in text and "](fig/dist.png)" in text


@pytest.mark.parametrize("rows, args, word", [
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,-3\n", [], "rows 2 ('-3')"),
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,3\n", ["--outcome", "fixed_excl"],
     "n_fixed_excl"),
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,3\n", ["--year", "2016/17"], "'year'"),
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,3\n", ["-o", "{tmp}/d.txt"], ".csv"),
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,3\n", ["--plot", "{tmp}/d.pdf"], ".png"),
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,3\n", ["--report", "{tmp}/d.txt"], ".md"),
    ("school,n_pupils,n_perm_excl\na,100,0\nb,200,3\n", ["-o", "{tmp}/d.csv"], "folder"),
    ("pupil_id,school,perm_excl\n1,a,0\n2,b,1\n", [], "pupil rows"),
    (None, [], "file not found"),
])
def test_bad_input_exits_2_with_one_paragraph(tmp_path: Path, capsys, rows, args, word):
    data = tmp_path / "schools.csv"
    if rows is not None:
        data.write_text(rows)
    if word == "folder":
        (tmp_path / "d.csv").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    defaults = {"--outcome": "perm_excl", "--year": "all", "--school-type": "all",
                "-o": str(tmp_path / "dist.csv")}
    for flag in args[::2]:
        defaults.pop(flag, None)
    argv = ["distribution", str(data), *args,
            *[x for kv in defaults.items() for x in kv]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert word in err and "Traceback" not in err
    assert err.count("\n") <= 3
    assert not (tmp_path / "dist.csv").exists()
