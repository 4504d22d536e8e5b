"""The publish stage: the only writer of run folders.

Folders are replaced whole and atomically (a run killed at any moment leaves the previous
folder whole, or none), a second run into a held folder is refused, files disparity did not
write are kept unless ``force``, the manifest lists exactly the files with their hashes, and
``restricted/`` appears only on request and is listed as not publishable.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disparity.errors import WriteError
from disparity.report.publish import (MANIFEST, claim, publish, run_files, verify_run,
                                      write_folder)
from disparity.runner import fit_result

ROOT = Path(__file__).resolve().parents[2]
CBPP = ROOT / "models" / "cbpp.toml"


@pytest.fixture(scope="module")
def cbpp_fit():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_result(CBPP, engine="glm", scope="fit", progress=False)


def _consistent(folder: Path) -> bool:
    """The folder's manifest lists exactly its files, each with its hash."""
    manifest = json.loads((folder / MANIFEST).read_text())
    listed = {f["path"]: f["sha256"] for f in [*manifest["files"], *manifest["restricted"]]}
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                     if p.is_file() and p.name != MANIFEST)
    if sorted(listed) != present:
        return False
    return all(hashlib.sha256((folder / p).read_bytes()).hexdigest() == h
               for p, h in listed.items())


def test_fit_scope_publishes_estimates_and_no_report(cbpp_fit, tmp_path):
    out = publish(cbpp_fit, tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == [
        "cells_summary.csv", "diagnostics.json", "estimates.csv", "manifest.json",
        "unit_effects.csv"]
    text = (out / "estimates.csv").read_text()
    # log(61 / 217) = -1.269023489 with SE 0.2847: published to the third significant
    # digit of its SE (disparity.report.precision), interval -1.269 -/+ 1.96 x 0.2847
    assert "coefficient,Intercept,-1.269,0.285,-1.827,-0.711," in text
    assert "\r\n" not in text
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["model"] == "cbpp" and diagnostics["engine"] == "glm"
    assert diagnostics["diagnostics"]["n_clusters"] == 15
    assert "seconds" not in json.dumps(diagnostics)  # timings only in the manifest
    assert _consistent(out)


def test_publishing_twice_gives_the_same_bytes(cbpp_fit, tmp_path):
    a, b = publish(cbpp_fit, tmp_path / "a"), publish(cbpp_fit, tmp_path / "b")
    for name in ("estimates.csv", "diagnostics.json", "cells_summary.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    publish(cbpp_fit, a)  # replacing a run with the same result changes nothing either
    assert (a / "estimates.csv").read_bytes() == (b / "estimates.csv").read_bytes()


class FakePosterior:
    """Stands in for ArviZ InferenceData: has to_netcdf, cannot be pickled."""

    def to_netcdf(self, path: str) -> str:
        Path(path).write_text("netcdf stand-in")
        return path

    def __reduce__(self):
        raise TypeError("not picklable")


def test_restricted_folder_only_on_request(cbpp_fit, tmp_path):
    plain = publish(cbpp_fit, tmp_path / "plain")
    assert not (plain / "restricted").exists()
    bayes = replace(cbpp_fit, fit=replace(cbpp_fit.fit, engine="pymc", raw=FakePosterior()))
    out = publish(bayes, tmp_path / "qa", restricted=True)
    restricted = out / "restricted"
    assert (restricted / "README.txt").read_text().startswith("NOT FOR RELEASE")
    assert (restricted / "posterior.nc").read_text() == "netcdf stand-in"
    assert pickle.loads((restricted / "fit.pkl").read_bytes()).raw is None
    raw = pd.read_csv(restricted / "cells.csv")
    assert raw.incidence.sum() == 99 and raw["size"].sum() == 842
    manifest = json.loads((out / MANIFEST).read_text())
    assert {f["path"] for f in manifest["restricted"]} >= {"restricted/fit.pkl",
                                                          "restricted/README.txt"}
    assert not any(f["path"].startswith("restricted/") for f in manifest["files"])
    assert all(not f["publishable"] for f in manifest["restricted"])


def test_a_previous_run_is_replaced_whole(cbpp_fit, tmp_path):
    out = publish(cbpp_fit, tmp_path / "run", restricted=True)
    publish(cbpp_fit, out)  # without restricted/: the old one must not linger
    assert not (out / "restricted").exists()
    assert _consistent(out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no lock or partial left behind


def test_foreign_files_are_kept_unless_forced(cbpp_fit, tmp_path):
    out = publish(cbpp_fit, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(WriteError, match="notes.txt"):
        publish(cbpp_fit, out)
    assert (out / "notes.txt").read_text() == "mine"
    publish(cbpp_fit, out, force=True)
    assert not (out / "notes.txt").exists() and _consistent(out)


def test_a_held_folder_is_refused(cbpp_fit, tmp_path):
    code = ("import fcntl, sys, time; h = open(sys.argv[1], 'a+'); "
            "fcntl.flock(h.fileno(), fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)")
    other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".run.lock")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(WriteError, match="another disparity run"):
            publish(cbpp_fit, tmp_path / "run")
        assert not (tmp_path / "run").exists()
    finally:
        other.kill()
        other.wait()
        other.stdout.close()
    publish(cbpp_fit, tmp_path / "run")  # free again


def test_a_failed_write_leaves_the_previous_folder(cbpp_fit, tmp_path, monkeypatch):
    import errno

    from disparity.report import publish as module

    out = publish(cbpp_fit, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(module.os, "fsync", fsync)
    with pytest.raises(WriteError, match="disk is full"):
        publish(cbpp_fit, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_verify_run_names_a_changed_file(cbpp_fit, tmp_path):
    from disparity.errors import ReadError

    out = publish(cbpp_fit, tmp_path / "run")
    assert set(verify_run(out)) == {"estimates.csv", "unit_effects.csv", "cells_summary.csv",
                                    "diagnostics.json"}
    (out / "estimates.csv").write_text("estimand\n")
    with pytest.raises(ReadError, match="'estimates.csv'.*differs"):
        verify_run(out)


KILLED = """
import sys, warnings
warnings.simplefilter("ignore")
from disparity.runner import run_model
run_model(sys.argv[1], sys.argv[2], engine="glm", progress=False)
print("done", flush=True)
"""


def test_killing_a_rerun_at_any_moment_leaves_a_consistent_folder(tmp_path):
    """A rerun into a folder holding a previous run, killed (SIGKILL) at moments spread over
    its whole length, never leaves a folder whose manifest does not match its files."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-c", KILLED, str(CBPP), str(out)], check=True, env=env,
                   capture_output=True)
    # the length of a warm rerun (the first run may also compile caches, and take longer)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", KILLED, str(CBPP), str(out)], check=True, env=env,
                   capture_output=True)
    length = time.perf_counter() - start
    assert _consistent(out)
    first = (out / MANIFEST).read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"killed": 0, "finished": 0}
    for fraction in [*np.linspace(0.3, 1.0, 8), *rng.uniform(0.5, 1.0, 4)]:
        proc = subprocess.Popen([sys.executable, "-c", KILLED, str(CBPP), str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(fraction * length)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes["finished" if proc.returncode == 0 else "killed"] += 1
        assert out.is_dir(), "the previous folder was lost"
        assert _consistent(out)
        assert not [p for p in out.rglob("*") if ".partial-" in p.name]
    assert outcomes["killed"] >= 4
    assert first  # the first run's manifest was there to be replaced


def test_write_folder_swaps_in_one_step(tmp_path):
    out = tmp_path / "run"
    write_folder(out, {"a.txt": b"1"}, b'{"files": []}\n')
    write_folder(out, {"b.txt": b"2"}, b'{"files": []}\n')
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", MANIFEST]


def test_claim_refuses_a_file(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(WriteError, match="is a file"):
        with claim(tmp_path / "x"):
            pass


def test_run_files_hold_no_pupil_rows(cbpp_fit):
    files = run_files(cbpp_fit, restricted=True)
    for name, data in files.items():
        if name.endswith(".csv"):
            assert b"pupil_id" not in data.split(b"\n", 1)[0], name
