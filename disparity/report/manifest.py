"""The manifest of a run: what went in, what came out, with SHA-256 hashes and versions.

``manifest.json`` is the only file of a run that may carry a timestamp; every other file is
a function of the inputs and the seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

__all__ = ["sha256_file", "sha256_bytes", "package_versions", "file_hashes", "write_manifest"]

#: Packages whose versions are recorded (where installed).
PACKAGES: tuple[str, ...] = (
    "disparity", "numpy", "pandas", "patsy", "scipy", "statsmodels", "gpboost", "pymc",
    "arviz", "nutpie", "matplotlib",
)
MANIFEST = "manifest.json"


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


def file_hashes(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``[{path, bytes, sha256}]`` of every file under ``run_dir`` but the manifest, sorted."""
    run_dir = Path(run_dir)
    rows = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir).as_posix()
        if rel == MANIFEST:
            continue
        rows.append({"path": rel, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return rows


def write_manifest(run_dir: str | os.PathLike[str], info: Mapping[str, Any]) -> Path:
    """Write ``manifest.json``: ``info``, package versions, a UTC timestamp and file hashes.

    Parameters
    ----------
    run_dir : path
        The run folder; every file in it (but the manifest) is listed with its SHA-256.
    info : mapping
        JSON-serialisable facts about the run (inputs and their hashes, seed, engine...).
        Keys ``packages``, ``created`` and ``files`` are filled here.

    Returns
    -------
    Path
        The manifest's path.
    """
    run_dir = Path(run_dir)
    payload = {
        **dict(info),
        "packages": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": file_hashes(run_dir),
    }
    path = run_dir / MANIFEST
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n",
                    encoding="utf-8")
    return path
