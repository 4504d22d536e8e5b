"""The command line: each command on real shipped data or simulated pupils, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from disparity.cli import main
from disparity.vocabulary import events_column

ROOT = Path(__file__).resolve().parents[1]
NATIONAL = ROOT / "data" / "dfe" / "exclusions_by_characteristic_national.csv.gz"
LA_FILE = ROOT / "data" / "dfe" / "exclusions_by_characteristic_la_national.csv.gz"


def test_rates_on_shipped_dfe_file_matches_hand_arithmetic(tmp_path):
    out = tmp_path / "rates.csv"
    assert main(["rates", str(NATIONAL), "--outcome", "perm_excl", "--by", "ethnicity",
                 "--year", "2016/17", "-o", str(out)]) == 0
    table = pd.read_csv(out)
    row = table[table["group"] == "Black Caribbean"].iloc[0]
    # DfE 2016/17 national file: Black Caribbean 260 of 92,595; England total 7,720 of
    # 8,025,075. Others are the published total minus the group.
    assert row["comparison_events"] == 7720 - 260
    assert row["comparison_pupils"] == 8025075 - 92595
    assert row["risk_ratio"] == pytest.approx((260 / 92595) / (7460 / 7932480), rel=1e-9)
    assert row["status"] == "calculated"
    # Chinese pupils' count is suppressed ('x') in the file: not computed, not zero.
    chinese = table[table["group"] == "Chinese"].iloc[0]
    assert chinese["status"] == "not_calculated:suppressed" and pd.isna(chinese["n_events"])


def test_rates_reference_comparison_by_la(tmp_path):
    out = tmp_path / "la.csv"
    assert main(["rates", str(LA_FILE), "--outcome", "perm_excl", "--by", "ethnicity",
                 "--unit", "la", "--year", "201617", "--reference", "White British",
                 "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["la"].nunique() == 152  # SOURCES.md: 152 LAs each year
    assert set(table["comparison"]) == {"reference: White British"}
    wb = table[table["group"] == "White British"]
    assert (wb["status"] == "not_calculated:reference").all()


def test_simulate_collapse_validate_round_trip(tmp_path, capsys):
    pupils, truth, cells = tmp_path / "p.parquet", tmp_path / "t.json", tmp_path / "c.csv"
    assert main(["simulate", "--pupils", "5000", "--schools", "40", "--las", "4",
                 "--seed", "7", "-o", str(pupils), "--truth", str(truth)]) == 0
    assert json.loads(truth.read_text())["seed"] == 7
    assert main(["collapse", str(pupils), "--by", "ethnicity,sen,fsm,cin,school,la",
                 "-o", str(cells)]) == 0
    frame, collapsed = pd.read_parquet(pupils), pd.read_csv(cells)
    assert collapsed["n_pupils"].sum() == len(frame) == 5000
    for outcome in ("perm_excl", "any_susp", "n_susp"):
        assert collapsed[events_column(outcome)].sum() == frame[outcome].sum()
    assert main(["validate", str(cells)]) == 0
    assert main(["validate", str(pupils)]) == 0
    assert "valid pupils table, 5,000 rows" in capsys.readouterr().out


def test_bad_input_prints_one_message_and_exits_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("pupil_id,year,la,school,sen,perm_excl\n1,2016/17,A,S1,SEN support,2\n")
    proc = subprocess.run([sys.executable, "-m", "disparity", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "'sen'" in proc.stderr and "'perm_excl'" in proc.stderr


def test_missing_file_and_unknown_characteristic(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main(["rates", str(NATIONAL), "--outcome", "perm_excl", "--by", "religion"]) == 2
    assert "ethnicity" in capsys.readouterr().err  # lists what the file has


@pytest.mark.parametrize("command", ["rates", "simulate", "collapse", "validate", "fit"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: disparity" in capsys.readouterr().out


def test_rates_by_la_carry_la_names(tmp_path):
    out = tmp_path / "la.csv"
    assert main(["rates", str(LA_FILE), "--outcome", "perm_excl", "--by", "sen", "--unit",
                 "la", "--year", "2016/17", "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:2]) == ["la", "la_name"]
    # the shipped file: E08000002 is Bury
    assert set(table.loc[table.la == "E08000002", "la_name"]) == {"Bury"}
