"""Make ``pupils_chain.parquet`` and ``truth_chain.json``: synthetic secondary pupils in
which permanent exclusion is a second stage after suspension (NOT real data).

``disparity.simulate.simulate_pupils(1_000_000, n_schools=600, n_las=40, seed=20170122,
truth=Truth.with_nc_year(ethnicity_concentration=400), escalation=True)``, keeping the
pupils of years 7 to 11. Stage 1 (any suspension, among all pupils) follows the truth's
``any_susp`` coefficients; stage 2 (permanent exclusion, among suspended pupils) follows
``escalation``: a pupil is permanently excluded only after a suspension, with log-odds of
escalation that depend on the pupil's ethnicity, SEN, FSM, CIN and sex and a school
effect. Run from the repository root::

    python data/synthetic/make_chain_data.py
"""

from __future__ import annotations

import json
from pathlib import Path

from disparity.simulate import Truth, simulate_pupils

OUT = Path(__file__).resolve().parent
SEED = 20170122
SECONDARY = ("7", "8", "9", "10", "11")


def main() -> int:
    truth = Truth.with_nc_year(ethnicity_concentration=400.0)
    sim = simulate_pupils(1_000_000, n_schools=600, n_las=40, seed=SEED, truth=truth,
                          escalation=True)
    pupils = sim.pupils[sim.pupils["nc_year"].isin(SECONDARY)].reset_index(drop=True)
    pupils["nc_year"] = pupils["nc_year"].cat.remove_unused_categories()
    path = OUT / "pupils_chain.parquet"
    pupils.to_parquet(path, index=False, compression="zstd")
    out = dict(sim.truth)
    out["note"] = (f"Synthetic data, not real pupils. Made by data/synthetic/make_chain_data.py "
                   f"(seed {SEED}); only the pupils of years 7 to 11 are kept.")
    (OUT / "truth_chain.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"{path}: {len(pupils):,} rows, {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
