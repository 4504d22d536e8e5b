"""Open a pupils table where it lives, as a lazy table of an engine (DuckDB, Spark, SQL).

A *source* is any of:

* a Parquet file, a folder of Parquet files, or a glob (``"years/*.parquet"``), read by an
  embedded DuckDB with no server;
* a DuckDB database, ``"duckdb://PATH"``, with a table name;
* any other Ibis backend URL (``"postgres://user@host/db"``, ...), with a table name;
* an Ibis table, or a PySpark DataFrame (queried through Ibis's pyspark backend).

:func:`open_source` returns a :class:`Source`: an Ibis table whose queries run in the engine,
so that only aggregates (counts, sums, the first few offending rows of a check) ever come
back to Python. DuckDB, Ibis and PySpark are imported here, inside the functions, so that
``import disparity`` stays light.

Rows of Parquet files have an order (row ``i`` of a file, counted from 1 after the header,
as :func:`disparity.read.read_frame` numbers them), and messages name rows by it. Rows of a
database table have no order; messages name them by their key (``pupil_id``, ``year``).
"""

from __future__ import annotations

import glob as globbing
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from disparity.errors import ReadError, SpecError

__all__ = ["Source", "open_source", "source_columns", "is_parquet_path", "parquet_files",
           "DUCKDB_SETTINGS"]

#: Settings of the embedded DuckDB. ``memory_limit`` bounds the memory of a query
#: whatever the number of rows (DuckDB spills to ``temp_directory`` beyond it), so a
#: collapse of 40 million rows peaks near the memory of one of a million; threads are left
#: to DuckDB (one per core).
DUCKDB_SETTINGS: dict[str, Any] = {"memory_limit": "500MB", "preserve_insertion_order": False}

#: Rows per Parquet file addressable by the row number of :attr:`Source.numbered` (2**40).
_ROW_BITS = 40
_PARQUET_ENDINGS = (".parquet", ".pq")


@dataclass(frozen=True)
class Source:
    """A pupils table opened in an engine.

    Attributes
    ----------
    table : ibis.Table
        The rows, lazily: every query on it runs in the engine.
    label : str
        How messages name the source (``"'years/*.parquet' (3 files)"``).
    engine : str
        The engine's name (``"duckdb"``, ``"pyspark"``, ``"postgres"``, ...).
    files : tuple of str
        The Parquet files read, in the order their rows are numbered (empty for a table).
    numbered : callable or None
        Where rows have an order (Parquet files): returns the table with an int64 column
        :data:`ROW` that orders the rows (file, then row within the file). ``None`` for a
        database table, whose rows have no order.
    close : callable
        Releases what opening took (temporary views, the spill folder).
    """

    table: Any
    label: str
    engine: str
    files: tuple[str, ...] = ()
    numbered: Callable[[], Any] | None = None
    close: Callable[[], None] = field(default=lambda: None, repr=False)

    def row_label(self, row: int) -> str:
        """Name of the row whose :data:`ROW` value is ``row``: ``"12"`` or ``"2017.parquet:12"``."""
        index, within = row >> _ROW_BITS, (row & ((1 << _ROW_BITS) - 1)) + 1
        if len(self.files) <= 1:
            return f"{within:,}"
        return f"{_short_names(self.files)[index]}:{within:,}"

    @property
    def row_order(self) -> str:
        """What "row" means in this source's messages."""
        if self.numbered is None:
            return "a database table has no row order, so rows are named by their key"
        if len(self.files) > 1:
            return "rows named file:row, counted from 1 = first data row of each file"
        return "rows numbered from 1 = first data row"


#: Name of the row-order column of :attr:`Source.numbered`.
ROW = "__disparity_row"


def is_parquet_path(source: Any) -> bool:
    """Whether ``source`` names Parquet files (a file, a folder or a glob), not a URL."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    text = os.fspath(source)
    if "://" in text:
        return False
    return (
        text.lower().endswith(_PARQUET_ENDINGS)
        or Path(text).is_dir()
        or any(ch in text for ch in "*?[")
    )


def _short_names(files: Sequence[str]) -> list[str]:
    """The shortest distinct names of ``files``: their base names if those differ."""
    names = [os.path.basename(f) for f in files]
    return names if len(set(names)) == len(names) else list(files)


def parquet_files(text: str) -> list[str]:
    """The Parquet files of a file, folder or glob, sorted; raise if there are none."""
    path = Path(text)
    if path.is_dir():
        files = [str(p) for p in sorted(path.rglob("*")) if p.name.lower().endswith(_PARQUET_ENDINGS)]
        where = f"the folder {text!r} holds no .parquet files"
    elif any(ch in text for ch in "*?["):
        files = sorted(globbing.glob(text, recursive=True))
        files = [f for f in files if os.path.isfile(f)]
        where = f"no file matches {text!r}"
    else:
        if not path.exists():
            where = "" if path.is_absolute() else f" (looked for {str(path.absolute())!r})"
            raise ReadError(
                f"file not found: {text!r}{where}. Check the spelling and the folder, or "
                "give an absolute path."
            )
        files, where = [text], ""
    if not files:
        raise ReadError(
            f"cannot read {text!r}: {where}. Give a Parquet file, a folder of them or a glob "
            "such as 'years/*.parquet'."
        )
    return files


def _duckdb(database: str = ":memory:", *, read_only: bool = False) -> tuple[Any, Callable]:
    """An Ibis DuckDB connection with :data:`DUCKDB_SETTINGS` and a spill folder of its own."""
    import shutil

    import ibis

    spill = tempfile.mkdtemp(prefix="disparity-duckdb-")
    try:
        con = ibis.duckdb.connect(database, read_only=read_only, temp_directory=spill,
                                  **DUCKDB_SETTINGS)
    except Exception as exc:  # duckdb.IOException and friends: no file, locked, not DuckDB
        shutil.rmtree(spill, ignore_errors=True)
        raise ReadError(f"cannot open the DuckDB database {database!r}: {exc}") from None

    def close() -> None:
        con.disconnect()
        shutil.rmtree(spill, ignore_errors=True)

    return con, close


def _open_parquet(text: str) -> Source:
    files = parquet_files(text)
    con, close = _duckdb()
    options = {"union_by_name": True} if len(files) > 1 else {}
    try:
        table = con.read_parquet(files, **options)
        table.schema()
    except Exception as exc:
        close()
        raise ReadError(
            f"cannot read {text!r} as Parquet: {exc}. Check that every file is a Parquet "
            "file (written by pandas, pyarrow, Spark or DuckDB)."
        ) from None

    def numbered() -> Any:
        import ibis

        t = con.read_parquet(files, file_row_number=True, filename=True, **options)
        if len(files) > 1:
            index = t.filename.cases(*[(f, i) for i, f in enumerate(files)])
        else:
            index = ibis.literal(0)
        row = index.cast("int64") * (1 << _ROW_BITS) + t.file_row_number.cast("int64")
        return t.mutate(**{ROW: row}).drop("filename", "file_row_number")

    label = f"{text!r}" + (f" ({len(files)} files)" if len(files) > 1 else "")
    return Source(table=table, label=label, engine="duckdb", files=tuple(files),
                  numbered=numbered, close=close)


def _open_url(url: str, table: str | None) -> Source:
    import ibis

    scheme = url.split("://", 1)[0].lower()
    if scheme == "duckdb":
        path = url.split("://", 1)[1]
        if not path or not Path(path).exists():
            raise ReadError(
                f"cannot open {url!r}: no DuckDB database at {path!r}. Give "
                "'duckdb://PATH' with the path of an existing database file."
            )
        con, close = _duckdb(path, read_only=True)
    else:
        try:
            con = ibis.connect(url)
        except Exception as exc:  # no such backend installed, unreachable server, bad URL
            raise ReadError(
                f"cannot connect to {url!r}: {exc}. Check the URL, and that the Ibis backend "
                f"for {scheme!r} is installed (pip install 'ibis-framework[{scheme}]')."
            ) from None
        close = con.disconnect
    try:
        names = list(con.list_tables())
    except Exception:  # some backends cannot list tables; the table lookup below says why
        names = []
    if table is None:
        close()
        listed = ", ".join(map(repr, names[:20])) + (", ..." if len(names) > 20 else "")
        raise SpecError(
            f"{url!r} is a database: name the table of pupil rows with --table (Python: "
            f"table=). Its tables: {listed or 'none found'}."
        )
    try:
        expr = con.table(table)
    except Exception as exc:
        close()
        listed = ", ".join(map(repr, names[:20])) + (", ..." if len(names) > 20 else "")
        raise ReadError(
            f"{url!r} has no table {table!r} ({exc}). Its tables: {listed or 'none found'}."
        ) from None
    return Source(table=expr, label=f"{url!r} table {table!r}", engine=con.name, close=close)


def _open_spark(frame: Any) -> Source:
    import uuid

    import ibis

    session = frame.sparkSession
    name = f"disparity_pupils_{uuid.uuid4().hex}"
    frame.createOrReplaceTempView(name)
    con = ibis.pyspark.connect(session)

    def close() -> None:
        session.catalog.dropTempView(name)

    return Source(table=con.table(name), label="the PySpark DataFrame", engine="pyspark",
                  close=close)


def _kind_of_object(source: Any) -> str | None:
    module = type(source).__module__
    if module.startswith("ibis.") and hasattr(source, "schema") and hasattr(source, "group_by"):
        return "ibis"
    if module.startswith("pyspark.") and hasattr(source, "sparkSession"):
        return "spark"
    return None


def open_source(source: Any, *, table: str | None = None) -> Source:
    """Open ``source`` as a lazy table of the engine where the rows are.

    Parameters
    ----------
    source : str, path, ibis.Table or pyspark.sql.DataFrame
        A Parquet file, folder or glob; ``"duckdb://PATH"``; any Ibis backend URL; an Ibis
        table; or a PySpark DataFrame.
    table : str, optional
        The table of pupil rows, for a database URL.

    Returns
    -------
    Source
        Call ``source.close()`` when done.

    Raises
    ------
    ReadError
        No such file, database or table; unreadable files.
    SpecError
        A database URL without ``table``, or ``table`` given for files or frames.

    Examples
    --------
    >>> import pathlib, tempfile, pandas as pd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pupils.parquet"
    >>> pd.DataFrame({"sen": ["none", "ehcp"], "perm_excl": [0, 1]}).to_parquet(path)
    >>> src = open_source(path)
    >>> src.engine, list(src.table.columns)
    ('duckdb', ['sen', 'perm_excl'])
    >>> src.close()
    """
    kind = _kind_of_object(source)
    if (kind is not None or is_parquet_path(source)) and table is not None:
        raise SpecError(
            f"table={table!r} applies to a database URL (duckdb://PATH, postgres://...), "
            "not to Parquet files or a table object; leave it out."
        )
    if kind == "ibis":
        return Source(table=source, label="the Ibis table", engine=_backend_name(source))
    if kind == "spark":
        return _open_spark(source)
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError(
            f"cannot collapse a {type(source).__name__}: give a pandas DataFrame, a Parquet "
            "file, folder or glob, 'duckdb://PATH' with a table, an Ibis backend URL with a "
            "table, an Ibis table or a PySpark DataFrame."
        )
    text = os.fspath(source)
    if "://" in text:
        return _open_url(text, table)
    if is_parquet_path(text):
        return _open_parquet(text)
    raise ReadError(
        f"cannot collapse {text!r} in a database engine: it is neither Parquet (a '.parquet' "
        "file, a folder or a glob) nor a URL such as 'duckdb://PATH'."
    )


def _backend_name(table: Any) -> str:
    try:
        return table.get_backend().name
    except Exception:  # an unbound table: compiled only, never run
        return "ibis"


def source_columns(source: Any, *, table: str | None = None) -> list[str]:
    """Column names of a source, read from its schema alone (no rows are read).

    Examples
    --------
    >>> import pathlib, tempfile, pandas as pd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pupils.parquet"
    >>> pd.DataFrame({"sen": ["none"], "perm_excl": [0]}).to_parquet(path)
    >>> source_columns(path)
    ['sen', 'perm_excl']
    """
    src = open_source(source, table=table)
    try:
        return [str(c) for c in src.table.columns]
    finally:
        src.close()
