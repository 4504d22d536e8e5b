"""Read pupils and cells tables from CSV or Parquet, and tell which kind a table is.

Reading is kept apart from validation: :func:`read_frame` returns the table as it is in the
file (header names stripped of surrounding spaces, numbers recognised without loss), and
:mod:`disparity.validate` then checks it. DfE open-data files are read by
:func:`disparity.dfe.read_dfe`, which :func:`read_data` calls when a file is of that kind.

Supported files, chosen by the file name's ending:

* ``.csv`` and gzip-compressed ``.csv.gz``: UTF-8, with or without the byte-order mark
  that Excel writes ("CSV UTF-8"), with Unix (LF) or Windows (CRLF) line ends;
* ``.parquet`` and ``.pq``.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Iterable

import pandas as pd

from disparity.errors import ReadError, SpecError
from disparity.vocabulary import EVENTS_PREFIX, N_PUPILS, PUPIL_ID

#: File name endings :func:`read_frame` understands, and the format each one means.
EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

#: Kinds of table :func:`read_data` returns.
KINDS: tuple[str, ...] = ("pupils", "cells", "dfe")

#: Columns that mark a DfE open-data (Explore Education Statistics) file.
DFE_MARKERS: tuple[str, ...] = ("time_period", "geographic_level")

_INTEGER = r"[+-]?\d+"
_LEADING_ZERO = r"[+-]?0\d+"


def _format_of(path: Path) -> str:
    """Format of ``path`` from its name's ending; raise :class:`ReadError` if unknown."""
    name = path.name.lower()
    # Longest ending first, so that ".csv.gz" wins over a bare ".gz".
    for ending in sorted(EXTENSIONS, key=len, reverse=True):
        if name.endswith(ending):
            return EXTENSIONS[ending]
    valid = ", ".join(repr(e) for e in EXTENSIONS)
    raise ReadError(
        f"cannot read {str(path)!r}: unknown file type {''.join(path.suffixes) or '(none)'!r}. "
        f"Valid endings: {valid}. Save the table as CSV (in Excel: 'CSV UTF-8') or Parquet "
        "and give the file one of these endings."
    )


def _check_exists(path: Path) -> None:
    if path.is_dir():
        raise ReadError(
            f"cannot read {str(path)!r}: it is a folder, not a file. Give the path of a "
            "single CSV or Parquet file."
        )
    if not path.exists():
        where = "" if path.is_absolute() else f" (looked for {str(path.absolute())!r})"
        raise ReadError(
            f"file not found: {str(path)!r}{where}. Check the spelling and the folder, or "
            "give an absolute path."
        )


def _check_not_empty_file(path: Path) -> None:
    if path.stat().st_size == 0:
        raise ReadError(
            f"cannot read {str(path)!r}: the file is empty (0 bytes). Export the table "
            "again with a header row of column names and at least one data row."
        )


def _strip_header(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    names = [str(c).strip() for c in frame.columns]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    repeated = [n for n, k in seen.items() if k > 1]
    if repeated:
        shown = ", ".join(repr(n) for n in repeated)
        raise ReadError(
            f"cannot read {str(path)!r}: column names {shown} appear more than once once "
            "spaces around them are removed. Give every column a distinct name."
        )
    return frame.set_axis(names, axis=1)


def _numbers_without_loss(column: pd.Series) -> pd.Series:
    """Convert a column read as text to numbers where that loses nothing.

    Whole numbers become ``int64`` (``Int64`` where some are missing); other numbers become
    ``float64``. A column stays text if any value is not a number, or if a whole number has
    leading zeros (``"007"``: an identifier, whose zeros would be lost).
    """
    text = column.dropna()
    if text.empty:
        return column
    # Patterns are tested on the distinct values only: text columns repeat a few labels.
    distinct = pd.Series(text.unique(), dtype=column.dtype)
    if distinct.str.fullmatch(_INTEGER).all():
        if distinct.str.fullmatch(_LEADING_ZERO).any():
            return column
        numbers = pd.to_numeric(text)
        if numbers.dtype.kind != "i":
            return column  # beyond int64: keep the digits as text
        if len(text) < len(column):
            return numbers.astype("Int64").reindex(column.index)
        return numbers.astype("int64")
    if pd.to_numeric(distinct, errors="coerce").isna().any():
        return column
    return pd.to_numeric(column, errors="coerce").astype("float64")


def _csv_header(path: Path) -> list[str]:
    """The header row as written (pandas renames a repeated name to ``name.1``)."""
    import csv
    import gzip
    import io

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as raw:
            first = raw.readline()
    except (OSError, EOFError, zlib.error):
        return []
    text = first.decode("utf-8-sig", errors="replace")
    return next(csv.reader(io.StringIO(text)), [])


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    header = [h.strip() for h in _csv_header(path)]
    repeated = [h for h in dict.fromkeys(header) if header.count(h) > 1 and h]
    if repeated:
        where = "; ".join(f"{h!r} in columns "
                          + ", ".join(str(i + 1) for i, x in enumerate(header) if x == h)
                          for h in repeated)
        raise ReadError(
            f"cannot read {str(path)!r}: the header names a column more than once ({where}). "
            "Each column needs its own name: rename or remove the repeats and export the "
            "table again.")
    try:
        return pd.read_csv(
            path,
            dtype=str,
            encoding="utf-8-sig",
            compression="infer",
            **kwargs,
        )
    except pd.errors.EmptyDataError:
        raise ReadError(
            f"cannot read {str(path)!r}: the file is empty (no header row, no data). "
            "Export the table again with a header row of column names and at least one row."
        ) from None
    except UnicodeDecodeError as err:
        raise ReadError(
            f"cannot read {str(path)!r}: it is not UTF-8 text (byte {err.start:,} cannot be "
            "decoded). In Excel save it as 'CSV UTF-8 (Comma delimited)'; or convert it, "
            "e.g. `iconv -f cp1252 -t utf-8`. If it is a Parquet file, name it '.parquet'."
        ) from None
    except (pd.errors.ParserError, OSError, EOFError, zlib.error, ValueError) as err:
        raise ReadError(
            f"cannot read {str(path)!r} as CSV: {str(err).rstrip('.')}. Check that the file "
            "is a complete, comma-separated table (a '.csv.gz' file must be "
            "gzip-compressed CSV); export it again if it was cut short."
        ) from None


def _read_parquet(path: Path, columns_only: bool = False) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if columns_only:
            schema = pq.read_schema(path)
            return pd.DataFrame(columns=list(schema.names))
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ReadError(
            f"cannot read {str(path)!r} as Parquet: {str(err).rstrip('.')}. The file is "
            "damaged or not Parquet: write it again (e.g. `frame.to_parquet(path)`), or, "
            "if it is CSV, name it '.csv'."
        ) from None


def _drop_excel_padding(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop the wholly empty ``Unnamed: k`` columns and trailing empty rows Excel can add."""
    padding = [
        c for c in frame.columns if str(c).startswith("Unnamed: ") and frame[c].isna().all()
    ]
    if padding:
        frame = frame.drop(columns=padding)
    filled = frame.notna().any(axis=1).to_numpy()
    if filled.any() and not filled[-1]:
        last = int(filled.nonzero()[0][-1])
        frame = frame.iloc[: last + 1]
    return frame


def read_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV or Parquet table, as it is in the file.

    Parameters
    ----------
    path : str or path-like
        A ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file. CSV must be UTF-8; a
        byte-order mark (Excel's "CSV UTF-8") and Windows line ends are accepted.

    Returns
    -------
    pandas.DataFrame
        One row per data row of the file, in file order, with a fresh ``RangeIndex`` (so
        data row ``i`` of the file, counting from 1 after the header, is index ``i - 1``).
        Header names are stripped of surrounding spaces. CSV columns whose every value is a
        number become ``int64`` (``Int64`` where some are missing) or ``float64``; whole
        numbers with leading zeros (``"007"``) and anything else stay text. Wholly empty
        ``Unnamed: k`` columns and trailing empty rows, which Excel can add, are dropped.
        Parquet columns keep their stored types.

    Raises
    ------
    ReadError
        If the file is missing, of an unknown type, unreadable or damaged, empty, or has a
        header but no data rows. The message names the file and the fix.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "herds.csv"
    >>> _ = path.write_bytes(b"\\xef\\xbb\\xbfherd , size,incidence\\r\\nA,20,3\\r\\nB,15,0\\r\\n")
    >>> frame = read_frame(path)
    >>> list(frame.columns)
    ['herd', 'size', 'incidence']
    >>> frame["size"].tolist()
    [20, 15]
    """
    path = Path(path)
    _check_exists(path)
    kind = _format_of(path)
    _check_not_empty_file(path)
    if kind == "csv":
        frame = _read_csv(path)
    else:
        frame = _read_parquet(path)
    frame = _strip_header(frame, path)
    if kind == "csv":
        frame = _drop_excel_padding(frame)
        frame = frame.apply(_numbers_without_loss) if len(frame) else frame
    if len(frame) == 0:
        shown = ", ".join(repr(c) for c in list(frame.columns)[:10])
        raise ReadError(
            f"cannot read {str(path)!r}: it has a header ({shown}"
            f"{', ...' if frame.shape[1] > 10 else ''}) but no data rows. Export the table "
            "again with its rows, or check that the right file was given."
        )
    return frame.reset_index(drop=True)


def read_columns(path: str | os.PathLike[str]) -> list[str]:
    """Column names of a CSV or Parquet file, read from its header alone.

    Header names are stripped of surrounding spaces, as in :func:`read_frame`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "herds.csv"
    >>> _ = path.write_text("herd,size,incidence\\nA,20,3\\n")
    >>> read_columns(path)
    ['herd', 'size', 'incidence']
    """
    path = Path(path)
    _check_exists(path)
    kind = _format_of(path)
    _check_not_empty_file(path)
    header = _read_csv(path, nrows=0) if kind == "csv" else _read_parquet(path, True)
    return list(_strip_header(header, path).columns)


def _kind_of(columns: Iterable[str]) -> str | None:
    names = set(columns)
    if all(m in names for m in DFE_MARKERS):
        return "dfe"
    # Pupils before cells: a pupils table may hold the count outcome "n_susp".
    if PUPIL_ID in names:
        return "pupils"
    if N_PUPILS in names or any(str(c).startswith(EVENTS_PREFIX) for c in names):
        return "cells"
    return None


def detect_kind(frame: pd.DataFrame, *, source: str | None = None) -> str:
    """Tell which kind of table ``frame`` is from its column names.

    The rules, in order: ``"dfe"`` if it has both ``time_period`` and ``geographic_level``
    (DfE open data); ``"pupils"`` if it has ``pupil_id``; ``"cells"`` if it has
    ``n_pupils`` or any column starting ``n_`` (event counts).

    Parameters
    ----------
    frame : pandas.DataFrame
        The table (only its column names are used).
    source : str, optional
        Where the table came from, for the error message.

    Returns
    -------
    str
        One of :data:`KINDS`.

    Raises
    ------
    ReadError
        If no rule applies; the message lists the columns each kind needs and suggests
        ``--kind`` (``kind=`` in Python).

    Examples
    --------
    >>> import pandas as pd
    >>> detect_kind(pd.DataFrame(columns=["pupil_id", "year", "school", "n_susp"]))
    'pupils'
    >>> detect_kind(pd.DataFrame(columns=["la", "n_pupils", "n_perm_excl"]))
    'cells'
    """
    columns = [str(c) for c in frame.columns]
    kind = _kind_of(columns)
    if kind is not None:
        return kind
    where = f"{source!r}" if source else "the table"
    shown = ", ".join(repr(c) for c in columns[:15]) + (", ..." if len(columns) > 15 else "")
    wanted = [*DFE_MARKERS, PUPIL_ID, N_PUPILS]
    lower = {c.lower().replace(" ", "_"): c for c in columns}
    near = [f"{lower[w]!r} (for {w!r})" for w in wanted if w in lower and lower[w] != w]
    hint = f" Columns that differ only in case or spacing: {', '.join(near)}." if near else ""
    raise ReadError(
        f"cannot tell what kind of table {where} is from its columns ({shown or 'none'}). "
        "Expected one of: 'dfe' (DfE open data: columns 'time_period' and "
        "'geographic_level'); 'pupils' (one row per pupil-year: a 'pupil_id' column); "
        "'cells' (counts: 'n_pupils' and event counts named 'n_<outcome>')."
        f"{hint} Rename the columns, or say the kind with --kind (kind= in Python)."
    )


def read_data(
    path: str | os.PathLike[str], kind: str | None = None
) -> tuple[str, pd.DataFrame]:
    """Read a pupils, cells or DfE file, telling its kind from its columns if not given.

    Parameters
    ----------
    path : str or path-like
        File to read (see :func:`read_frame` for the formats).
    kind : {"pupils", "cells", "dfe"}, optional
        Kind of table; by default told from the header by :func:`detect_kind`.

    Returns
    -------
    (str, pandas.DataFrame)
        The kind and the table. Pupils and cells tables are returned as read (validate them
        with :func:`disparity.validate.validate_pupils` or
        :func:`disparity.validate.validate_cells`); DfE files are read by
        :func:`disparity.dfe.read_dfe`.

    Raises
    ------
    SpecError
        If ``kind`` is not one of :data:`KINDS`.
    ReadError
        If the file cannot be read or its kind cannot be told.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cells.csv"
    >>> _ = path.write_text("la,n_pupils,n_perm_excl\\nE09000013,120,1\\n")
    >>> kind, frame = read_data(path)
    >>> kind, len(frame)
    ('cells', 1)
    """
    if kind is not None and kind not in KINDS:
        valid = ", ".join(repr(k) for k in KINDS)
        raise SpecError(f"unknown kind {kind!r}. Valid kinds: {valid}.")
    if kind is None:
        header = pd.DataFrame(columns=read_columns(path))
        kind = detect_kind(header, source=str(path))
    if kind == "dfe":
        from disparity.dfe import read_dfe

        return kind, read_dfe(path)
    return kind, read_frame(path)
