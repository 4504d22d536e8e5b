"""The one step that writes a run to disk: disclosure control, then an atomic write.

:func:`publish` turns a :class:`~disparity.result.Result` into the files of a run folder and
writes them. Nothing else in the package writes into a run folder, so everything that
leaves a run passes through here:

1. **Disclosure control** over every table together
   (:func:`disparity.report.disclosure.published_tables`): counts, and every rate, share,
   crude ratio and figure coordinate built on them.
2. **Rendering** of the report and figures from the *published* tables only
   (:func:`disparity.report.render.render_report`), so a figure can show nothing a table
   hides, and ``disparity report DIR`` redraws the same bytes from the same files.
3. **An atomic write.** The files go into a hidden temporary sibling folder, the manifest
   last; the folder then replaces the destination in one rename (an atomic exchange on
   Linux). A killed run leaves the previous folder whole, or no folder, never a mix. A
   second run into the same folder is refused while the first holds its lock. A destination
   holding files disparity did not write is refused unless ``force``.

Raw counts, the modelled cells and the fit itself, which an analyst needs for quality
assurance but which may not be released, are written only on request
(``restricted=True``), into ``restricted/``, which has its own README saying it is not for
release and is listed in the manifest as not publishable.

``diagnostics.json`` holds no timings (they go in ``manifest.json``, the one file with a
timestamp), so every published file but the manifest is a function of the inputs and the
seed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Mapping

import numpy as np
import pandas as pd

from ..errors import DisparityError, ReadError, WriteError
from ..vocabulary import PUPIL_ID

if TYPE_CHECKING:  # pragma: no cover
    from ..result import Result
    from .disclosure import PublishedTables

__all__ = ["publish", "rerender", "verify_run", "claim", "csv_bytes", "json_bytes",
           "table_bytes", "write_file",
           "sha256_bytes", "sha256_file", "package_versions", "MANIFEST", "RESTRICTED"]

MANIFEST = "manifest.json"
RESTRICTED = "restricted"
#: Float format of every CSV written: ten significant digits, stable across platforms.
FLOAT_FORMAT = "%.10g"
#: Packages whose versions are recorded (where installed).
PACKAGES: tuple[str, ...] = (
    "disparity", "numpy", "pandas", "patsy", "scipy", "statsmodels", "numba", "pymc",
    "arviz", "nutpie", "matplotlib",
)
_RESTRICTED_README = (
    "NOT FOR RELEASE.\n\n"
    "This folder holds what an analyst needs to check a run: the observed counts before\n"
    "disclosure control, the cells the model was fitted to, and the fitted model itself.\n"
    "Its counts include values of 1 or 2 and the units too small to list. Keep it inside\n"
    "the secure environment; publish only the files outside this folder. The run's\n"
    "manifest.json lists these files as not publishable.\n"
)


# --------------------------------------------------------------------------- bytes
def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``.

    Examples
    --------
    >>> sha256_bytes(b"abc")[:16]  # FIPS 180-2, appendix B.1
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p) == sha256_bytes(b"abc")
    True
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (those not installed are left out).

    Examples
    --------
    >>> "numpy" in package_versions(("numpy", "surely-not-installed"))
    True
    """
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as strings (JSON has neither), numpy scalars and
    arrays as Python values, paths and sets as text and lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict("records"))
    return str(value)


def json_bytes(value: Any) -> bytes:
    """Deterministic JSON (sorted keys, two-space indent, NaN as ``"NaN"``).

    Examples
    --------
    >>> json_bytes({"b": float("nan"), "a": np.int64(2)})
    b'{\\n  "a": 2,\\n  "b": "NaN"\\n}\\n'
    """
    return (json.dumps(_jsonable(value), indent=2, sort_keys=True, allow_nan=False)
            + "\n").encode("utf-8")


def csv_bytes(frame: pd.DataFrame, *, pupils: bool = False) -> bytes:
    """A table as deterministic CSV (``%.10g`` floats, ``\\n`` line ends, no index).

    ``pupils=True`` lets a table of pupil rows through: only ``disparity simulate`` and
    ``disparity collapse`` outside any run folder write one.

    Raises
    ------
    DisparityError
        The frame has a ``pupil_id`` column: pupil-level rows never leave a run.

    Examples
    --------
    >>> csv_bytes(pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")]}))
    b'a,b\\n1,0.5\\n2,\\n'
    >>> csv_bytes(pd.DataFrame({"pupil_id": [1]}))
    Traceback (most recent call last):
    ...
    disparity.errors.DisparityError: refusing to write a table with a 'pupil_id' column: ...
    """
    if PUPIL_ID in map(str, frame.columns) and not pupils:
        raise DisparityError(
            f"refusing to write a table with a {PUPIL_ID!r} column: pupil-level rows are "
            "never written to a run folder; collapse them to cells first")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


def table_bytes(frame: pd.DataFrame, path: str | os.PathLike[str]) -> bytes:
    """A table as the bytes of a ``.csv`` or ``.parquet`` file (by the path's ending).

    Examples
    --------
    >>> table_bytes(pd.DataFrame({"a": [1]}), "t.csv")
    b'a\\n1\\n'
    """
    if Path(path).suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return csv_bytes(frame, pupils=True)


def _write_synced(handle: BinaryIO, data: bytes) -> None:
    """Write ``data`` to an open binary file and force it to disk before returning."""
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def write_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write one output file atomically: a temporary sibling, then a rename, so a killed
    or failed write never leaves a partial file.

    Raises
    ------
    WriteError
        ``path`` is a folder, or the disk is full, read-only or not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"-o {str(path)!r} is a folder; give the name of the file to write")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:
            _write_synced(handle, data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path


# --------------------------------------------------------------------------- the run's files
def _diagnostics(result: Result, tables: PublishedTables) -> dict[str, Any]:
    """``diagnostics.json``: the engine's diagnostics and the facts the report is drawn from
    (no timings: those go in the manifest)."""
    fit = result.fit
    engine_diag = {k: v for k, v in dict(fit.diagnostics).items() if "seconds" not in k}
    facts = result.facts()
    total = tables.cells_summary[tables.cells_summary.margin == "total"]
    facts["n_pupils"] = _published_number(total.n_pupils.iloc[0])
    facts["n_events"] = _published_number(total.n_events.iloc[0])
    data_facts = dict(result.data.summary())
    model_file = result.model_file
    run = {
        "model_file": {"display": None if model_file is None else Path(model_file).name,
                       "sha256": _hash_or_none(model_file)},
        "data": {**data_facts, "display": _data_display(result),
                 "sha256": _data_hash(result)},
        "spec": facts,
        "report": result.settings.to_dict(),
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "disclosure_notes": list(tables.notes),
        "package_version": _version(),
    }
    return {
        "model": result.spec.name,
        "engine": fit.engine,
        "family": fit.family,
        "terms": list(fit.terms),
        "ci_prob": result.settings.ci_prob,
        "diagnostics": {**engine_diag, "data": data_facts},
        "warnings": list(fit.warnings),
        "scope": result.scope,
        "run": run,
    }


def _published_number(text: str) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text  # a symbol: the total itself is suppressed
    return int(value) if value.is_integer() else value


def _version() -> str:
    from .. import __version__

    return __version__


def _hash_or_none(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None and Path(path).is_file() else None


def _data_display(result: Result) -> str | None:
    source = result.data.source
    if source is None:
        return "a data frame passed in memory"
    model_file = result.model_file
    if model_file is not None:
        try:
            return Path(os.path.relpath(Path(source).resolve(),
                                        Path(model_file).resolve().parent)).as_posix()
        except ValueError:  # another drive
            pass
    return Path(source).name


def _data_hash(result: Result) -> str | None:
    source = result.data.source
    if source is not None and Path(source).is_file():
        return sha256_file(source)
    return sha256_bytes(csv_bytes(result.data.frame))


def _restricted_files(result: Result) -> dict[str, bytes]:
    """Raw counts, the modelled cells and the fit: for quality assurance, not for release."""
    files = {f"{RESTRICTED}/README.txt": _RESTRICTED_README.encode("utf-8"),
             f"{RESTRICTED}/cells_summary.csv": csv_bytes(result.cells_summary),
             f"{RESTRICTED}/unit_effects.csv": csv_bytes(result.units),
             f"{RESTRICTED}/estimates.csv": csv_bytes(result.estimates),
             f"{RESTRICTED}/cells.csv": csv_bytes(result.data.frame)}
    fit = result.fit
    raw = fit.raw
    if fit.engine == "pymc" and raw is not None and hasattr(raw, "to_netcdf"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "posterior.nc"
            raw.to_netcdf(str(path))
            files[f"{RESTRICTED}/posterior.nc"] = path.read_bytes()
        fit = replace(fit, raw=None)
    try:
        files[f"{RESTRICTED}/fit.pkl"] = pickle.dumps(fit, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # raw engine objects may hold handles that cannot be pickled
        files[f"{RESTRICTED}/fit.pkl"] = pickle.dumps(replace(fit, raw=None),
                                                      protocol=pickle.HIGHEST_PROTOCOL)
    return files


def published_files(result: Result) -> dict[str, bytes]:
    """The published tables of a result (``estimates.csv``, ``unit_effects.csv``,
    ``cells_summary.csv``, and ``chain.csv`` for a stage chain) and ``diagnostics.json``,
    after disclosure control."""
    from ..chain import CHAIN_ESTIMAND, chain_table
    from .disclosure import published_tables

    tables = published_tables(result)
    files = {
        "estimates.csv": csv_bytes(tables.estimates),
        "unit_effects.csv": csv_bytes(tables.unit_effects),
        "cells_summary.csv": csv_bytes(tables.cells_summary),
        "diagnostics.json": json_bytes(_diagnostics(result, tables)),
    }
    if (tables.estimates["estimand"] == CHAIN_ESTIMAND).any():
        files["chain.csv"] = csv_bytes(chain_table(tables.estimates))
    return files


def run_files(result: Result, *, restricted: bool = False) -> dict[str, bytes]:
    """Every file of a result's run folder but the manifest, by relative path.

    The published ones are disclosure-controlled; the report and figures are drawn from
    the published tables after they have been turned into bytes and read back, exactly as
    ``disparity report`` will read them.
    """
    from .render import read_tables, render_report

    files = published_files(result)
    if result.scope == "run":
        files.update(render_report(read_tables(files)))
    if restricted:
        files.update(_restricted_files(result))
    return files


def _manifest(files: Mapping[str, bytes], info: Mapping[str, Any]) -> bytes:
    listed = [{"path": p, "bytes": len(b), "sha256": sha256_bytes(b),
               "publishable": not p.startswith(f"{RESTRICTED}/")}
              for p, b in sorted(files.items())]
    payload = {
        **dict(info),
        "packages": package_versions(),
        "created": info.get("created") or datetime.now(timezone.utc).isoformat(
            timespec="seconds"),
        "files": [f for f in listed if f["publishable"]],
        "restricted": [f for f in listed if not f["publishable"]],
    }
    return json_bytes(payload)


def _manifest_info(result: Result, files: Mapping[str, bytes]) -> dict[str, Any]:
    diag = json.loads(files["diagnostics.json"])
    run = diag["run"]
    fit_diag = diag.get("diagnostics", {})
    keys = ("converged", "iterations", "max_rhat", "min_ess_bulk", "min_ess_tail",
            "divergences", "singular_terms")
    return {
        "disparity": "run folder",
        "model": result.spec.name,
        "scope": result.scope,
        "model_file": run["model_file"],
        "data": {k: run["data"].get(k) for k in ("display", "sha256", "kind", "n_cells",
                                                 "n_rows_read")},
        "engine": result.fit.engine,
        "seed": int(result.spec.seed),
        "sampler": run["spec"]["sampler"],
        "report": run["report"],
        "diagnostics": {k: fit_diag[k] for k in keys if k in fit_diag},
        "warnings": run["warnings"],
        "disparity_version": run["package_version"],
        "seconds": {**dict(result.timings),
                    **{f"engine {k}": v for k, v in result.fit.diagnostics.items()
                       if "seconds" in k}},
    }


# --------------------------------------------------------------------------- the folder
_HELD: set[str] = set()


def _lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.lock"


@contextlib.contextmanager
def claim(out_dir: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Hold a run folder for the length of a run: check it may be written, and lock it.

    Raises
    ------
    WriteError
        ``out_dir`` is a file; or holds files disparity did not write (unless ``force``);
        or another run holds it; or its parent cannot be written.
    """
    import fcntl

    out_dir = Path(out_dir)
    resolved = str(out_dir.resolve())
    if resolved in _HELD:  # this process already holds it (publish inside a run)
        yield out_dir
        return
    if not out_dir.is_dir():
        _check_destination(out_dir, force)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        handle = open(_lock_path(out_dir), "a+")
    except OSError as exc:
        raise _write_error(out_dir, exc) from None
    busy = WriteError(
        f"another disparity run is writing to {str(out_dir)!r} (its lock "
        f"{_lock_path(out_dir).name!r} is held); wait for it to finish, or write to another "
        "folder with -o")
    held = False
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the lock file may have been removed by a run that just finished
            if os.fstat(handle.fileno()).st_ino != os.stat(_lock_path(out_dir)).st_ino:
                raise OSError
            held = True
        except OSError:
            raise busy from None
        _check_destination(out_dir, force)
        _HELD.add(resolved)
        _clean_leftovers(out_dir)
        yield out_dir
    finally:
        if held:
            _HELD.discard(resolved)
            with contextlib.suppress(OSError):
                os.unlink(_lock_path(out_dir))
        handle.close()


def _leftovers(out_dir: Path) -> list[Path]:
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir()
            if p.name.startswith((f".{out_dir.name}.partial-", f".{out_dir.name}.old-"))]


def _clean_leftovers(out_dir: Path) -> None:
    """Remove the half-written folders of killed runs (only while holding the lock)."""
    for p in _leftovers(out_dir):
        shutil.rmtree(p, ignore_errors=True)


def _listed_files(manifest: Mapping[str, Any]) -> set[str]:
    return {f["path"] for key in ("files", "restricted") for f in manifest.get(key, [])
            if isinstance(f, Mapping) and "path" in f}


def _read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and "files" in manifest else None


def _files_under(run_dir: Path) -> list[str]:
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if not p.is_dir())


def _check_destination(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise WriteError(f"-o {str(out_dir)!r} is a file, not a folder; give the name of a "
                         "folder for the run (it is made if it does not exist)")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise WriteError(f"-o {str(out_dir)!r} is inside {str(parent)!r}, which is a "
                                 "file, not a folder; choose another place for the run")
            break
    if not out_dir.is_dir() or force:
        return
    present = _files_under(out_dir)
    if not present:
        return
    manifest = _read_manifest(out_dir)
    known = _listed_files(manifest) | {MANIFEST} if manifest is not None else set()
    foreign = [p for p in present if p not in known]
    if foreign:
        shown = ", ".join(repr(p) for p in foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        what = ("files that its manifest does not list" if manifest is not None
                else "files but no disparity manifest")
        raise WriteError(
            f"{str(out_dir)!r} holds {what} ({shown}); a run replaces its folder whole, so "
            "it would delete them. Choose another folder with -o, move those files, or "
            "pass --force to replace the folder anyway")


def _write_error(where: Path, exc: OSError) -> WriteError:
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded",
              errno.EPERM: "permission denied"}.get(exc.errno, exc.strerror or str(exc))
    return WriteError(f"could not write {str(where)!r}: {reason}; nothing was changed there. "
                      "Free some space or choose a writable place with -o")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return ok == 0


def write_folder(out_dir: Path, files: Mapping[str, bytes], manifest: bytes) -> Path:
    """Write ``files`` and then ``manifest.json`` into a temporary sibling of ``out_dir`` and
    replace ``out_dir`` with it in one step."""
    out_dir = Path(out_dir)
    tmp = None
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                _write_synced(handle, data)
        with open(tmp / MANIFEST, "wb") as handle:
            _write_synced(handle, manifest)
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            if _exchange(tmp, out_dir):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
            else:
                old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
                os.rename(out_dir, old)
                os.rename(tmp, out_dir)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
        tmp = None
    except OSError as exc:
        raise _write_error(out_dir, exc) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def publish(result: Result, out_dir: str | os.PathLike[str], *, restricted: bool = False,
            force: bool = False) -> Path:
    """Write a result's run folder: disclosure control, the report, an atomic replace.

    Parameters
    ----------
    result : disparity.result.Result
    out_dir : path
        The run folder. Made if needed; a previous run there is replaced whole.
    restricted : bool
        Also write ``restricted/`` (raw counts, cells, the fit), not for release.
    force : bool
        Replace ``out_dir`` even if it holds files disparity did not write.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    WriteError
        The folder cannot be written (see :func:`claim`), or the disk is full or read-only
        (the destination is then left as it was).
    """
    out_dir = Path(out_dir)
    with claim(out_dir, force=force):
        files = run_files(result, restricted=restricted)
        manifest = _manifest(files, _manifest_info(result, files))
        return write_folder(out_dir, files, manifest)


# --------------------------------------------------------------------------- re-rendering
def verify_run(run_dir: str | os.PathLike[str]) -> dict[str, bytes]:
    """The files of a run folder, after checking each against the manifest's SHA-256.

    Raises
    ------
    ReadError
        Not a run folder; a listed file is missing or differs from its hash (the message
        names it); or a file is there that the manifest does not list.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReadError(f"{str(run_dir)!r} is not a folder; give the folder a run was written "
                        "to with -o")
    manifest = _read_manifest(run_dir)
    if manifest is None:
        raise ReadError(f"{str(run_dir)!r} has no readable {MANIFEST}: it is not a folder "
                        "written by `disparity run`, or the run did not finish; run the model "
                        "again")
    files: dict[str, bytes] = {}
    for entry in [*manifest.get("files", []), *manifest.get("restricted", [])]:
        rel = entry["path"]
        path = run_dir / rel
        if not path.is_file():
            raise ReadError(f"{rel!r} is listed in {MANIFEST} but missing from "
                            f"{str(run_dir)!r}; the folder was changed after the run: run the "
                            "model again")
        data = path.read_bytes()
        if sha256_bytes(data) != entry["sha256"]:
            raise ReadError(f"{rel!r} in {str(run_dir)!r} differs from the file the run wrote "
                            f"(its SHA-256 does not match {MANIFEST}); it was changed or "
                            "truncated: run the model again rather than re-render it")
        files[rel] = data
    extra = [p for p in _files_under(run_dir) if p not in files and p != MANIFEST]
    if extra:
        raise ReadError(f"{str(run_dir)!r} holds {', '.join(map(repr, extra[:5]))}, which the "
                        f"run did not write ({MANIFEST} does not list it); move it out of the "
                        "run folder")
    return files


def rerender(run_dir: str | os.PathLike[str]) -> Path:
    """Redraw the figures and rewrite the report of a run folder from its published tables.

    The files are first checked against the manifest (:func:`verify_run`); nothing is
    refitted, so the report has the same bytes as the one the run wrote. The folder is
    replaced atomically, with a manifest that records when it was re-rendered.

    Returns
    -------
    Path
        The path of ``report.md``.
    """
    from .render import read_tables, render_report

    run_dir = Path(run_dir)
    with claim(run_dir):
        files = verify_run(run_dir)
        manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("scope", "run") != "run":
            raise ReadError(f"{str(run_dir)!r} was written by `disparity fit`, which makes no "
                            "report; run `disparity run MODEL.toml -o DIR`")
        keep = {p: b for p, b in files.items()
                if not (p.startswith("figures/") or p in ("report.md", "report.html"))}
        keep.update(render_report(read_tables(keep)))
        info = {k: v for k, v in manifest.items()
                if k not in ("files", "restricted", "packages")}
        info["rerendered"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_folder(run_dir, keep, _manifest(keep, info))
    return run_dir / "report.md"
