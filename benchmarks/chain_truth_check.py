"""The shipped stage chain against the simulator's truth.

For each ethnic group and each row of ``reports/synthetic_chain/chain.csv``, the true
standardised risk ratio of the stage's pupils: every pupil of the stage is given the group
and then White British, with every other characteristic, school and LA as it is, and the
mean true probabilities (``truth_chain.json``: ``any_susp`` for stage 1, ``escalation`` for
stage 2, their product for the overall rows) are compared. Prints the table and how many
intervals cover the truth.

Run from the repository root (a few seconds)::

    .venv/bin/python benchmarks/chain_truth_check.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]


def linear(coefs: dict, frame: pd.DataFrame, ethnicity: str) -> np.ndarray:
    """The truth's linear predictor (no group effects) with every pupil in ``ethnicity``."""
    out = np.full(len(frame), float(coefs["Intercept"]))
    for term, value in coefs.items():
        if "[T." not in term:
            continue
        var, level = term.split("[T.")
        level = level[:-1]
        if var == "ethnicity":
            out += value if level == ethnicity else 0.0
        else:
            out += np.where(frame[var].astype(str) == level, value, 0.0)
    return out


def main() -> int:
    pupils = pd.read_parquet(ROOT / "data" / "synthetic" / "pupils_chain.parquet")
    truth = json.loads((ROOT / "data" / "synthetic" / "truth_chain.json").read_text())
    chain = pd.read_csv(ROOT / "reports" / "synthetic_chain" / "chain.csv")
    s1, s2 = truth["any_susp"], truth["escalation"]
    u1 = (pupils["la"].astype(str).map(s1["effects"]["la"]).to_numpy()
          + pupils["school"].astype(str).map(s1["effects"]["school"]).to_numpy())
    u2 = pupils["school"].astype(str).map(s2["effects"]["school"]).to_numpy()
    suspended = (pupils["n_susp"] >= 1).to_numpy()
    reference = truth["reference"]["ethnicity"]

    def risk(stage: int, ethnicity: str) -> float:
        p1 = expit(linear(s1["coefficients"], pupils, ethnicity) + u1)
        p2 = expit(linear(s2["coefficients"], pupils, ethnicity) + u2)
        if stage == 1:
            return float(p1.mean())
        if stage == 2:
            return float(p2[suspended].mean())
        return float((p1 * p2).mean())

    rows = []
    for r in chain.itertuples():
        stage = min(int(r.step), 3)
        true = risk(stage, r.level) / risk(stage, reference)
        rows.append({"step": r.step_label, "level": r.level, "truth": true,
                     "estimate": r.estimate, "conf_low": r.conf_low, "conf_high": r.conf_high,
                     "covered": r.conf_low <= true <= r.conf_high})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.round(3).to_string(index=False))
    print()
    print(table.groupby("step", sort=False)["covered"].agg(["sum", "size"]).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
