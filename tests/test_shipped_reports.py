"""The shipped reports are reproducible: rerunning a shipped model gives the committed bytes.

This is the reviewers' contract: ``reports/<name>/estimates.csv`` and ``report.md`` are
exactly what ``disparity run models/<name>.toml`` writes from the shipped data and seed.
The oracle is the committed file itself. Only the models that run in seconds are rerun
here; ``reports/reproduce.sh`` reruns every shipped model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from disparity.runner import run_model

ROOT = Path(__file__).resolve().parents[1]

#: Shipped models whose run takes under about 30 s (reports/README.md gives the times).
FAST = ("cbpp", "dfe_perm_excl_ethnicity_la_2016-17", "dfe_fixed_excl_fsm_trend",
        "dfe_fixed_excl_sen_trend")


@pytest.fixture(scope="module", params=FAST)
def rerun(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    out = tmp_path_factory.mktemp(name.replace("-", "_")) / name
    with warnings.catch_warnings():
        # the runs' expected warnings (suppressed DfE cells dropped, odds ratios that
        # overstate risk ratios) are part of the committed report; here only bytes matter
        warnings.simplefilter("ignore")
        run_model(ROOT / "models" / f"{name}.toml", out, progress=False, restricted=True)
    return name, out


def test_estimates_are_byte_identical_to_the_committed_ones(rerun):
    name, out = rerun
    committed = ROOT / "reports" / name / "estimates.csv"
    assert (out / "estimates.csv").read_bytes() == committed.read_bytes(), (
        f"reports/{name}/estimates.csv differs from a fresh run; rerun "
        f"`disparity run models/{name}.toml -o reports/{name}` and review the diff")


def test_report_is_byte_identical_to_the_committed_one(rerun):
    name, out = rerun
    committed = ROOT / "reports" / name / "report.md"
    assert (out / "report.md").read_bytes() == committed.read_bytes(), (
        f"reports/{name}/report.md differs from a fresh run")


def test_every_shipped_model_has_a_report():
    models = sorted(p.stem for p in (ROOT / "models").glob("*.toml"))
    missing = [m for m in models if not (ROOT / "reports" / m / "estimates.csv").is_file()]
    assert not missing, f"models without a committed report: {missing}"
    assert set(FAST) <= set(models)


def test_committed_report_leaks_nothing(rerun):
    """The disclosure attack (tests/report/attacker.py) on the committed folder itself, its
    SVG figures included; the truth comes from the rerun's restricted cells."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "report"))
    import attacker
    from test_attack import _truth

    name, out = rerun
    truth = _truth(out)
    committed = ROOT / "reports" / name
    assert attacker.attack(committed, truth, thresholds={"pupils": 10, "events": 3}) == []
