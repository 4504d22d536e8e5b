"""An attacker of published run folders, written independently of the package's disclosure
control (it imports nothing from ``disparity``).

It reads every file a run folder publishes (the CSV tables, ``report.md``, ``report.html``,
the SVG figures, ``diagnostics.json`` and ``manifest.json``; never ``restricted/``) and tries
to recover each count shown as suppressed (``c``) in three ways:

1. **Arithmetic**: a published rate times its published pupils; an observed share times the
   published total; an observed/expected ratio times its expected events; a crude risk or
   rate ratio inverted with its interval (Katz: ``se^2 = 1/a - 1/n1 + 1/c - 1/n0``) and its
   reference counts; and every number of the report's count tables.
2. **Linear programming** over every published count of every table together: at the level of
   the margins (a total is the sum of its parts: levels, years, units in their parents, the
   pooled remainders), and, where the run is small enough, over the atoms (every combination
   of the model's variables, its finest units and years) so that relations that cross tables
   (unions of groups) are seen too. Events never exceed pupils in a binomial model.
3. **Figure coordinates**: every point drawn in every SVG figure is decoded to data
   coordinates from the axis tick labels and their positions, and compared with the counts of
   the suppressed units.

A suppressed non-zero count is *recovered* when its value is pinned (the feasible range is
narrower than one) or when it is shown to be a small non-zero count (the range lies within
``1 .. threshold - 1``). Zeros are published under the rules, so pinning one is not counted. :func:`attack` returns every recovery with how it was made.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linprog

SYMBOLS = ("c", "x", "z")


@dataclass(frozen=True)
class Recovery:
    key: tuple          # sorted (dimension, level) pairs
    what: str           # "pupils" or "events"
    low: float
    high: float
    how: str


@dataclass
class Knowledge:
    """What the attacker has learnt: per key, known pupils/events, and the hidden ones."""

    known: dict[tuple, dict[str, float]] = field(default_factory=dict)
    hidden: dict[tuple, set[str]] = field(default_factory=dict)
    source: dict[tuple[tuple, str], str] = field(default_factory=dict)

    def learn(self, k: tuple, what: str, value: float, how: str) -> None:
        if not np.isfinite(value):
            return
        if abs(value - round(value)) < 0.05:
            # counts are whole: a product of rounded published figures (a ratio to three
            # digits of its SE times an expected count to four) lands next to one
            value = float(round(value))
        if (k, what) not in self.source:
            self.source[(k, what)] = how
        self.known.setdefault(k, {})[what] = value

    def hide(self, k: tuple, what: str) -> None:
        self.hidden.setdefault(k, set()).add(what)


def _key(parts: dict[str, str]) -> tuple:
    return tuple(sorted((str(a), str(b)) for a, b in parts.items()))


def _num(text: Any) -> float:
    text = str(text).strip()
    if text in ("",) + SYMBOLS:
        return math.nan
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return math.nan


def _files(run: Path) -> dict[str, bytes]:
    manifest = json.loads((run / "manifest.json").read_text())
    names = [f["path"] for f in manifest["files"] if (run / f["path"]).is_file()]
    out = {n: (run / n).read_bytes() for n in names}
    out["manifest.json"] = (run / "manifest.json").read_bytes()
    return out


# --------------------------------------------------------------------------- reading tables
def _cells_keys(files: dict[str, bytes], know: Knowledge) -> list[tuple]:
    t = pd.read_csv(io.BytesIO(files["cells_summary.csv"]), dtype=str, keep_default_na=False)
    keys = []
    for r in t.itertuples():
        parts: dict[str, str] = {}
        if r.margin == "variable" or r.margin == "unit":
            parts[r.by] = r.level
        elif r.margin == "trend":
            parts["year"] = r.year
            if r.by != "all":
                parts[r.by] = r.level
        k = _key(parts)
        keys.append(k)
        for what, text in (("pupils", r.n_pupils), ("events", r.n_events)):
            if text == "c":
                know.hide(k, what)
            else:
                know.learn(k, what, _num(text), "cells_summary.csv")
        rate = _num(r.rate) if "rate" in t.columns else math.nan
        n = _num(r.n_pupils)
        if np.isfinite(rate) and np.isfinite(n):  # rate x pupils
            know.learn(k, "events", rate * n, "rate x pupils (cells_summary.csv)")
    return keys


def _units(files: dict[str, bytes], know: Knowledge) -> None:
    u = pd.read_csv(io.BytesIO(files["unit_effects.csv"]), dtype=str, keep_default_na=False)
    for r in u.itertuples():
        if r.variable:
            parts = {r.group_term: r.unit, r.variable: r.level}
        else:
            parts = {r.group_term: r.unit}
        k = _key(parts)
        n, e = _num(r.n_pupils), _num(r.n_events)
        know.learn(k, "pupils", n, "unit_effects.csv")
        know.learn(k, "events", e, "unit_effects.csv")
        rate = _num(r.observed_rate)
        if np.isfinite(rate) and np.isfinite(n):
            know.learn(k, "events", rate * n, "observed_rate x pupils (unit_effects.csv)")
        if r.estimand == "unit_standardised_ratio":
            ratio, expected = _num(r.estimate), _num(r.expected_events)
            if np.isfinite(ratio) and np.isfinite(expected):
                know.learn(k, "events", ratio * expected, "O/E x E (unit_effects.csv)")


def _katz(rr: float, lo: float, hi: float, c: float, n0: float, n1: float | None,
          z: float) -> float:
    """Events of the compared group from a crude risk ratio, its Katz interval and the
    reference counts (and the group's pupils if known)."""
    p0 = c / n0
    p1 = rr * p0
    if n1 is not None and np.isfinite(n1):
        return p1 * n1
    se2 = ((math.log(hi) - math.log(lo)) / (2 * z)) ** 2
    denom = se2 - 1 / c + 1 / n0
    if denom <= 0:
        return math.nan
    return (1 - p1) / denom


def _estimates(files: dict[str, bytes], know: Knowledge, totals: dict[str, float]) -> None:
    from statistics import NormalDist

    t = pd.read_csv(io.BytesIO(files["estimates.csv"]), dtype=str, keep_default_na=False)
    for r in t.itertuples():
        if not r.variable or "+" in r.variable:
            continue
        k = _key({r.variable: r.level})
        know.learn(k, "pupils", _num(r.n_pupils), "estimates.csv")
        know.learn(k, "events", _num(r.n_events), "estimates.csv")
        rate, n = _num(r.rate), _num(r.n_pupils)
        if r.estimand.startswith("crude") and np.isfinite(rate) and np.isfinite(n):
            know.learn(k, "events", rate * n, "crude rate x pupils (estimates.csv)")
    # crude ratios inverted with their intervals
    z = NormalDist().inv_cdf(0.975)
    for r in t.itertuples():
        if r.estimand not in ("crude_rate_ratio", "ladder_rate_ratio", "rate_ratio"):
            continue
        rr, lo, hi = _num(r.estimate), _num(r.conf_low), _num(r.conf_high)
        if not all(np.isfinite(v) and v > 0 for v in (rr, lo, hi)):
            continue
        ref = know.known.get(_key({r.variable: r.reference}), {})
        mine = _key({r.variable: r.level})
        if "events" not in ref or "pupils" not in ref or ref["events"] <= 0:
            continue
        n1 = know.known.get(mine, {}).get("pupils")
        a = _katz(rr, lo, hi, ref["events"], ref["pupils"], n1, z)
        if r.estimand == "crude_rate_ratio" or n1 is not None:
            know.learn(mine, "events", a, f"{r.estimand} inverted (estimates.csv)")
    # shares times totals
    for r in t.itertuples():
        share = _num(r.estimate)
        if not np.isfinite(share):
            continue
        if r.estimand == "event_share_observed" and "events" in totals:
            know.learn(("union", r.term), "events", share * totals["events"], "share x total")
        if r.estimand == "pupil_share" and "pupils" in totals:
            know.learn(("union", r.term), "pupils", share * totals["pupils"], "share x total")


def _markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            current.append(cells)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _report(files: dict[str, bytes], know: Knowledge, spec: dict[str, Any]) -> None:
    """Count tables of report.md: level, pupils, events, rate per N."""
    md = files.get("report.md", b"").decode()
    variables = {v["name"] for v in spec["variables"]}
    terms = {g["name"] for g in spec["group_terms"]}
    for table in _markdown_tables(md):
        head = table[0]
        if len(head) != 4 or head[2] != "Events" or not head[3].startswith("Per "):
            continue
        per = _num(head[3].split()[1])
        label = head[0].lower()
        by = next((v for v in variables | terms if v.lower() == label
                   or v.replace("_", " ").lower() == label), None)
        for row in table[1:]:
            level = row[0]
            m = re.search(r"\(([^()]*)\)$", level)
            if by in terms and m:
                level = m.group(1)
            k = _key({} if level == "Total" else {by: level}) if by else None
            if k is None:
                continue
            n, e, rate = _num(row[1]), _num(row[2]), _num(row[3])
            for what, text in (("pupils", row[1]), ("events", row[2])):
                if text == "c":
                    know.hide(k, what)
            know.learn(k, "pupils", n, "report.md")
            know.learn(k, "events", e, "report.md")
            if np.isfinite(rate) and np.isfinite(n):
                # a rate to 2 decimals pins the events only within its rounding
                lo_e = (rate - 0.005) / per * n
                hi_e = (rate + 0.005) / per * n
                if math.ceil(lo_e - 1e-9) == math.floor(hi_e + 1e-9):
                    know.learn(k, "events", math.ceil(lo_e - 1e-9), "rate x pupils (report.md)")


def _html(files: dict[str, bytes], know: Knowledge) -> list[float]:
    """Every number in report.html's tables (compared with what the markdown shows)."""
    page = files.get("report.html", b"").decode()
    return [_num(m) for m in re.findall(r'<td class="r">([^<]*)</td>', page)]


# --------------------------------------------------------------------------- linear programs
def _relations(keys: list[tuple], spec: dict[str, Any]) -> list[tuple[tuple, list[tuple]]]:
    """Additive relations the attacker infers from the table structure."""
    present = set(keys)
    dims = {}
    for k in keys:
        for d, v in k:
            dims.setdefault(d, set()).add(v)
    out = []
    parents = {g["name"]: g["parent"] for g in spec["group_terms"]}
    years = sorted(dims.get("year", ()))
    for d, levels in dims.items():
        if d == "year":
            continue
        if parents.get(d) is not None:  # nested units: in their parent
            by_parent: dict[str, list[tuple]] = {}
            for lv in levels:
                by_parent.setdefault(lv.rsplit("/", 1)[0], []).append(_key({d: lv}))
            for p, parts in by_parent.items():
                pk = _key({parents[d]: p})
                if pk in present:
                    out.append((pk, parts))
            continue
        out.append(((), [_key({d: lv}) for lv in sorted(levels)
                         if _key({d: lv}) in present]))
        for lv in levels:
            parts = [_key({d: lv, "year": y}) for y in years]
            if all(p in present for p in parts) and parts:
                out.append((_key({d: lv}), parts))
        for y in years:
            parts = [_key({d: lv, "year": y}) for lv in sorted(levels)]
            if all(p in present for p in parts) and _key({"year": y}) in present:
                out.append((_key({"year": y}), parts))
    if years:
        out.append(((), [_key({"year": y}) for y in years]))
    return out


def _bounds_margins(keys: list[tuple], know: Knowledge, rels: list, binomial: bool
                    ) -> dict[tuple[tuple, str], tuple[float, float]]:
    """LP bounds of every hidden value over the margin-level relations, pupils and events
    solved together (events <= pupils for binomial data)."""
    keys = list(dict.fromkeys([*keys, *(t for t, _ in rels),
                               *(p for _, parts in rels for p in parts)]))
    index = {}
    for k in keys:
        for what in ("pupils", "events"):
            index[(k, what)] = len(index)
    n = len(index)
    a_eq, b_eq = [], []
    for total, parts in rels:
        for what in ("pupils", "events"):
            row = np.zeros(n)
            row[index[(total, what)]] = -1
            for p in parts:
                row[index[(p, what)]] += 1
            a_eq.append(row)
            b_eq.append(0.0)
    for (k, what), i in index.items():
        v = know.known.get(k, {}).get(what)
        if v is not None:
            row = np.zeros(n)
            row[i] = 1
            a_eq.append(row)
            b_eq.append(v)
    a_ub, b_ub = [], []
    if binomial:
        for k in keys:
            row = np.zeros(n)
            row[index[(k, "events")]] = 1
            row[index[(k, "pupils")]] = -1
            a_ub.append(row)
            b_ub.append(0.0)
    out = {}
    for k, whats in know.hidden.items():
        for what in whats:
            if (k, what) not in index or what in know.known.get(k, {}):
                continue
            res = []
            for sign in (1, -1):
                c = np.zeros(n)
                c[index[(k, what)]] = sign
                r = linprog(c, A_eq=np.array(a_eq) if a_eq else None,
                            b_eq=np.array(b_eq) if b_eq else None,
                            A_ub=np.array(a_ub) if a_ub else None,
                            b_ub=np.array(b_ub) if b_ub else None,
                            bounds=(0, None), method="highs")
                res.append(sign * r.fun if r.status == 0 else (np.inf if sign < 0 else 0))
            out[(k, what)] = (res[0], res[1])
    return out


def _bounds_atoms(know: Knowledge, spec: dict[str, Any], unions: dict[str, str],
                  max_atoms: int = 4000) -> dict[tuple[tuple, str], tuple[float, float]] | None:
    """LP bounds over atoms: every combination of the variables' levels, the finest units
    and years, each with unknown pupils and events; every known count is a sum of atoms."""
    dims: dict[str, list[str]] = {}
    for k in list(know.known) + list(know.hidden):
        if k and k[0] == "union":
            continue
        for d, v in k:
            dims.setdefault(d, [])
            if v not in dims[d]:
                dims[d].append(v)
    parents = {g["name"]: g["parent"] for g in spec["group_terms"]}
    unit_dims = [d for d in dims if d in parents]
    finest = [d for d in unit_dims if d not in parents.values()]
    other = [d for d in dims if d not in unit_dims]
    axes = [(d, dims[d]) for d in other] + [(d, dims[d]) for d in finest]
    size = int(np.prod([len(v) for _, v in axes])) if axes else 1
    if size > max_atoms or len(finest) > 1:
        return None
    atoms = [dict(zip([d for d, _ in axes], combo)) for combo in product(*[v for _, v in axes])]
    for a in atoms:  # the parents of a finest unit follow from its label
        for d in finest:
            label, p = a[d], parents[d]
            while p is not None:
                label = label.rsplit("/", 1)[0]
                a[p] = label
                p = parents[p]

    def members(k: tuple) -> np.ndarray:
        want = dict(k)
        return np.array([all(a.get(d) == v for d, v in want.items()) for a in atoms])

    n = len(atoms)
    a_eq, b_eq = [], []
    for k, vals in know.known.items():
        if k and k[0] == "union":
            m = _union_members(unions.get(k[1], ""), atoms)
            if m is None:
                continue
        else:
            m = members(k)
        for j, what in enumerate(("pupils", "events")):
            if what in vals:
                row = np.zeros(2 * n)
                row[j * n:(j + 1) * n] = m
                a_eq.append(row)
                b_eq.append(vals[what])
    a_ub = []
    if spec["family"] == "binomial":
        for i in range(n):
            row = np.zeros(2 * n)
            row[n + i], row[i] = 1, -1
            a_ub.append(row)
    out = {}
    for k, whats in know.hidden.items():
        m = members(k)
        for what in whats:
            if what in know.known.get(k, {}):
                continue
            j = 0 if what == "pupils" else 1
            res = []
            for sign in (1, -1):
                c = np.zeros(2 * n)
                c[j * n:(j + 1) * n] = sign * m
                r = linprog(c, A_eq=np.array(a_eq), b_eq=np.array(b_eq),
                            A_ub=np.array(a_ub) if a_ub else None,
                            b_ub=np.zeros(len(a_ub)) if a_ub else None,
                            bounds=(0, None), method="highs")
                res.append(sign * r.fun if r.status == 0 else (np.inf if sign < 0 else 0))
            out[(k, what)] = (res[0], res[1])
    return out


def _union_members(term: str, atoms: list[dict[str, str]]) -> np.ndarray | None:
    """Atoms in a union of groups written ``"sen in ['a', 'b'] or fsm in ['yes']"``; None when
    it names a column the atoms lack."""
    parts = re.findall(r"(\w+) in \[([^\]]*)\]", term)
    if not parts:
        return None
    out = np.zeros(len(atoms), dtype=bool)
    for col, levels in parts:
        values = re.findall(r"'([^']*)'", levels)
        if not atoms or col not in atoms[0]:
            return None
        out |= np.array([a[col] in values for a in atoms])
    return out


# --------------------------------------------------------------------------- figures
def _svg_points(svg: str) -> tuple[list[tuple[float, float]], dict[str, list[tuple[float,
                                                                                   float]]]]:
    """Scatter points drawn (pixel x, y), and each axis's ticks: (pixel, value)."""
    points = [(float(x), float(y)) for x, y in re.findall(
        r'<use xlink:href="#C\d+_\d+_[0-9a-f]+" x="([-\d.e]+)" y="([-\d.e]+)"', svg)]
    ticks: dict[str, list[tuple[float, float]]] = {"x": [], "y": []}
    pieces = re.split(r'(?=<g id="[xy]tick_\d+">)', svg)
    for piece in pieces[1:]:
        axis = piece[7]
        piece = re.split(r'<g id="(?:[xy]tick_\d+|matplotlib\.axis_\d+|patch_\d+)"', piece[10:],
                         maxsplit=1)[0]
        at = re.search(r'<use xlink:href="#[^"]+" x="([-\d.e]+)" y="([-\d.e]+)"', piece)
        label = re.search(r"<!-- (.*?) -->", piece)
        if not at or not label:
            continue
        value = _tick_value(label.group(1))
        if np.isfinite(value):
            ticks[axis].append((float(at.group(1 if axis == "x" else 2)), value))
    return points, ticks


def _tick_value(text: str) -> float:
    """A tick label as a number: plain (``1,000``, ``2%``, ``0.5``) or mathtext powers of ten
    (``$\\mathdefault{10^{2}}$``, ``$\\mathdefault{2\\times10^{1}}$``)."""
    text = text.replace("\u2212", "-").replace("%", "").strip()
    m = re.search(r"(?:([\d.]+)\\times)?10\^\{(-?[\d.]+)\}", text)
    if m:
        return float(m.group(1) or 1) * 10 ** float(m.group(2))
    return _num(text.strip("$"))


def _decoder(ticks: list[tuple[float, float]]):
    """pixel -> value, linear or logarithmic, whichever fits the ticks."""
    if len(ticks) < 2:
        return None
    px = np.array([t[0] for t in ticks])
    val = np.array([t[1] for t in ticks])
    best = None
    for log in (False, True):
        if log and (val <= 0).any():
            continue
        y = np.log10(val) if log else val
        slope, icpt = np.polyfit(px, y, 1)
        err = np.max(np.abs(slope * px + icpt - y))
        if best is None or err < best[0]:
            best = (err, log, slope, icpt)
    _, log, slope, icpt = best
    return (lambda p: 10 ** (slope * p + icpt)) if log else (lambda p: slope * p + icpt)


def _figure_recoveries(files: dict[str, bytes], truth: dict[tuple, dict[str, float]],
                       know: Knowledge) -> list[Recovery]:
    out = []
    hidden_units = [k for k in know.hidden if k and k[0] != "union"]
    for name, data in files.items():
        if not name.endswith(".svg"):
            continue
        points, ticks = _svg_points(data.decode())
        fx, fy = _decoder(ticks["x"]), _decoder(ticks["y"])
        if fx is None or fy is None:
            continue
        for px, py in points:
            x, y = fx(px), fy(py)
            for k in hidden_units:
                t = truth.get(k)
                if not t or t["pupils"] <= 0:
                    continue
                n, e = t["pupils"], t["events"]
                if abs(x - n) <= 0.01 * n + 0.5 and "events" in know.hidden[k]:
                    for rate_scale in (1.0, 100.0, 1000.0):
                        if abs(y - rate_scale * e / n) <= 1e-3 * max(1.0, rate_scale * e / n):
                            out.append(Recovery(k, "events", e, e, f"point in {name}"))
    return out


# --------------------------------------------------------------------------- the attack
def attack(run: str | Path, truth: dict[tuple, dict[str, float]], *,
           thresholds: dict[str, int]) -> list[Recovery]:
    """Every suppressed count of a run folder the attacker recovers.

    Parameters
    ----------
    run : path
        The run folder (its published files only are read).
    truth : mapping
        The true counts by key (for scoring only: the attack never reads them).
    thresholds : mapping
        ``{"pupils": min_pupils, "events": min_events}``: a range within ``1 .. t - 1`` is a
        disclosure of a small count.
    """
    run = Path(run)
    files = _files(run)
    assert not any(p.startswith("restricted/") for p in files)
    diag = json.loads(files["diagnostics.json"])
    spec = diag["run"]["spec"]
    know = Knowledge()
    keys = _cells_keys(files, know)
    totals = know.known.get((), {})
    for what in ("pupils", "events"):
        v = _num(spec.get(f"n_{what}"))
        if np.isfinite(v):
            know.learn((), what, v, "diagnostics.json")
    _units(files, know)
    _estimates(files, know, totals)
    _report(files, know, spec)
    _html(files, know)
    unions = {}
    est = pd.read_csv(io.BytesIO(files["estimates.csv"]), dtype=str, keep_default_na=False)
    for r in est[est.estimand.isin(["event_share_observed", "pupil_share"])].itertuples():
        unions[r.term] = r.term
        know.learn(("union", r.term), "events", _num(r.n_events), "estimates.csv")

    recoveries: list[Recovery] = []
    # direct learning: a hidden value that some file or arithmetic gives away
    for k, whats in know.hidden.items():
        for what in whats:
            if what in know.known.get(k, {}):
                v = know.known[k][what]
                recoveries.append(Recovery(k, what, v, v, know.source[(k, what)]))
    binomial = spec["family"] == "binomial"
    rels = _relations(keys, spec)
    bounds = _bounds_margins(keys, know, rels, binomial)
    atoms = _bounds_atoms(know, spec, unions)
    if atoms is not None:
        for kw, (lo, hi) in atoms.items():
            if kw in bounds:
                blo, bhi = bounds[kw]
                bounds[kw] = (max(lo, blo), min(hi, bhi))
            else:
                bounds[kw] = (lo, hi)
    for (k, what), (lo, hi) in bounds.items():
        lo_i = math.ceil(lo - 1e-6)
        hi_i = math.floor(hi + 1e-6) if math.isfinite(hi) else math.inf
        t = thresholds[what]
        if hi_i - lo_i < 1 or (lo_i >= 1 and hi_i <= t - 1):
            recoveries.append(Recovery(k, what, lo, hi, "linear programming"))
    recoveries += _figure_recoveries(files, truth, know)
    # keep only true recoveries: the value recovered is the truth, and not zero (zeros are
    # published under the rules, so showing one is not a disclosure)
    out = []
    for r in recoveries:
        t = truth.get(r.key, {}).get(r.what)
        if t is None or t == 0:
            continue
        if r.low - 1e-6 <= t <= r.high + 1e-6:
            out.append(r)
    return out


def truth_of(cells: pd.DataFrame, spec: dict[str, Any], keys: list[tuple], *,
             events: str, trials: str) -> dict[tuple, dict[str, float]]:
    """True pupils and events of each published key, from the modelled cells (the test's
    own oracle: counts by hand with pandas)."""
    columns = {}
    for g in spec["group_terms"]:
        columns[g["name"]] = g["columns"]
    out = {}
    for k in keys:
        m = np.ones(len(cells), dtype=bool)
        remainder = None
        for d, v in k:
            if d in columns:
                cols = columns[d]
                label = cells[cols].astype(str).agg("/".join, axis=1)
                if v.split("/")[-1] == "other":
                    remainder = (d, v)
                    parent = v.rsplit("/", 1)[0] if "/" in v else None
                    if parent is not None:
                        m &= cells[cols[:-1]].astype(str).agg("/".join, axis=1).to_numpy() \
                            == parent
                    continue
                m &= label.to_numpy() == v
            else:
                m &= cells[d].astype(str).to_numpy() == v
        if remainder is not None:  # the pooled units: those not listed by name
            d, v = remainder
            listed = {dict(kk).get(d) for kk in keys if d in dict(kk)}
            label = cells[columns[d]].astype(str).agg("/".join, axis=1)
            m &= ~label.isin(listed).to_numpy()
        out[k] = {"pupils": float(cells.loc[m, trials].sum()),
                  "events": float(cells.loc[m, events].sum())}
    return out
