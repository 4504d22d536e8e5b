"""Read DfE exclusion statistics published on Explore Education Statistics (EES).

Three layouts of the "Permanent and fixed-period exclusions in England" underlying data
are understood:

* characteristics by LA and nation (header ``characteristic and group``);
* characteristics, national only (header ``characteristic_group``);
* geography: nation, region, LA and school, with no pupil characteristics.

:func:`read_dfe` turns any of them into one long tidy frame with canonical names;
:func:`dfe_cells` cuts a cells table (events out of pupils per group) from that frame for one
characteristic at one geographic level, after checking that the groups add up to the unit's
total; :func:`conservation_gaps` shows those sums for inspection.

Counts that the publisher suppressed or could not give are written in the files as markers
(``x``, ``c``, ``z``, ``low``, ``:``, ``..``, ``.``). They become missing values, and a
companion column ``<count>_missing`` says why; a marker is never read as zero.

The reader keeps every published count as it is: national and regional counts are rounded
to the nearest 5 by the publisher, LA and school counts are not.

References
----------
Department for Education (2018). *Permanent and fixed-period exclusions in England:
2016 to 2017* (National Statistics, updated 6 August 2018). Open Government Licence v3.0.

Government Statistical Service (2021). *Symbols in tables, definitions and guidance*.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from disparity import vocabulary as voc
from disparity.errors import ReadError, ValidationError

__all__ = [
    "COUNT_COLUMNS",
    "MARKERS",
    "PARTITIONS",
    "SHIPPED",
    "conservation_gaps",
    "dfe_cells",
    "read_dfe",
    "shipped_path",
]

# --------------------------------------------------------------------------- constants
#: Markers used in EES files for a value that is not given, and what each one means.
MARKERS: dict[str, str] = {**voc.SUPPRESSION_MARKERS, "": "blank: no value in the file"}

#: Source count column -> canonical count column.
COUNT_COLUMNS: dict[str, str] = {
    "headcount": voc.N_PUPILS,
    "perm_excl": "n_perm_excl",
    "fixed_excl": "n_fixed_excl",
    "one_plus_fixed": "n_one_plus_fixed",
}
_RATE_COLUMNS: tuple[str, ...] = ("perm_excl_rate", "fixed_excl_rate", "one_plus_fixed_rate")

_REQUIRED: tuple[str, ...] = ("time_period", "geographic_level", "school_type", *COUNT_COLUMNS)
_GROUP_HEADERS: tuple[str, ...] = ("characteristic_group", "characteristic and group")

_LEVELS: dict[str, str] = {
    "national": "national",
    "regional": "regional",
    "region": "regional",
    "local authority": "la",
    "la": "la",
    "school": "school",
}
_SCHOOL_TYPES: dict[str, str] = {
    "total": "Total",
    "state-funded primary": "State-funded primary",
    "state-funded secondary": "State-funded secondary",
    "special": "Special",
}

#: Unit name accepted by :func:`dfe_cells` -> canonical geographic level.
_UNITS: dict[str, str] = {"national": "national", voc.REGION: "regional", voc.LA: "la",
                          voc.SCHOOL: "school"}
#: Columns that identify a unit at each geographic level.
_UNIT_COLUMNS: dict[str, tuple[str, ...]] = {
    "national": (),
    "regional": (voc.REGION,),
    "la": (voc.REGION, voc.LA, "la_name"),
    "school": (voc.REGION, voc.LA, "la_name", voc.SCHOOL),
}

_OUT_COLUMNS: tuple[str, ...] = (
    voc.YEAR, "geographic_level", voc.REGION, voc.LA, "la_name", "old_la_code", voc.SCHOOL,
    "school_type", "characteristic", "group",
    *COUNT_COLUMNS.values(), *(f"{c}_missing" for c in COUNT_COLUMNS.values()), *_RATE_COLUMNS,
)

_COUNT_RE = r"[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+"
_RATE_RE = r"-?[0-9]+(?:\.[0-9]*)?|-?\.[0-9]+"

#: Files shipped under ``data/dfe`` beside the package: short name -> file name.
SHIPPED: dict[str, str] = {
    "characteristics_la_national": "exclusions_by_characteristic_la_national.csv.gz",
    "characteristics_national": "exclusions_by_characteristic_national.csv.gz",
    "geographic": "exclusions_by_geographic_level_2011-12_to_2016-17.csv.gz",
    "characteristics_la_national_meta": "exclusions_by_characteristic_la_national.meta.csv.gz",
    "characteristics_national_meta": "exclusions_by_characteristic_national.meta.csv.gz",
    "geographic_meta": "exclusions_by_geographic_level_2011-12_to_2016-17.meta.csv.gz",
}


def shipped_path(name: str) -> Path:
    """Path of a DfE file shipped with the repository under ``data/dfe``.

    Parameters
    ----------
    name : str
        A short name (a key of :data:`SHIPPED`, e.g. ``"geographic"``) or a file name,
        with or without the ``.gz`` suffix.

    Returns
    -------
    pathlib.Path
        The gzip-compressed file.

    Raises
    ------
    ReadError
        If the name is unknown or the file is not there (``data/`` is not part of an
        installed wheel: use a source checkout).

    Examples
    --------
    >>> shipped_path("national").name
    'exclusions_by_characteristic_national.csv.gz'
    """
    folder = Path(__file__).resolve().parent.parent / "data" / "dfe"
    files = set(SHIPPED.values())
    if name in SHIPPED:
        file = SHIPPED[name]
    elif name in files:
        file = name
    elif name + ".gz" in files:
        file = name + ".gz"
    elif "characteristics_" + name in SHIPPED:
        file = SHIPPED["characteristics_" + name]
    else:
        valid = ", ".join(repr(k) for k in SHIPPED)
        raise ReadError(f"no shipped DfE file is called {name!r}; valid names are {valid} "
                        "or their file names")
    path = folder / file
    if not path.is_file():
        raise ReadError(f"shipped DfE file {path} is missing; the data/ folder sits beside "
                        "the package in a source checkout of the repository (it is not "
                        "installed with the wheel): run from a checkout, or pass the path "
                        "of a downloaded copy to read_dfe")
    return path


# --------------------------------------------------------------------------- reading
def _lines(mask: np.ndarray, limit: int = 5) -> str:
    """File line numbers (the header is line 1) of the first rows where ``mask`` holds."""
    idx = np.flatnonzero(mask)[:limit] + 2
    more = " ..." if int(mask.sum()) > limit else ""
    return ", ".join(str(i) for i in idx) + more


class _Column:
    """A text column encoded as codes into its distinct values (parsed once each)."""

    def __init__(self, codes: np.ndarray, uniques: list[str]) -> None:
        self.codes = codes
        self.uniques = uniques

    def rows_with(self, bad: Iterable[int]) -> np.ndarray:
        return np.isin(self.codes, np.fromiter(bad, dtype=np.int64))

    def take(self, values: list[object]) -> pd.Series:
        """Per-row values of a per-unique list; None becomes missing."""
        import pyarrow as pa

        return pa.array(values, type=pa.string()).take(self.codes).to_pandas()

    def take_numbers(self, values: np.ndarray) -> np.ndarray:
        return values[self.codes]


def _encode(table: object, name: str) -> _Column:
    import pyarrow.compute as pc

    column = table.column(name)  # type: ignore[attr-defined]
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return _Column(codes, encoded.dictionary.to_pylist())


def _constant(n: int, value: str | None) -> _Column:
    return _Column(np.zeros(n, dtype=np.int64), [value if value is not None else ""])


def _report_bad(
    column: _Column, name: str, bad: list[int], what: str, problems: list[str]
) -> None:
    if not bad:
        return
    mask = column.rows_with(bad)
    values = ", ".join(repr(column.uniques[i]) for i in bad[:6])
    problems.append(
        f"column {name!r}: {int(mask.sum())} rows hold {what} (file lines {_lines(mask)}; "
        f"values {values})."
    )


def _parse_numbers(
    column: _Column, name: str, problems: list[str], *, count: bool
) -> tuple[np.ndarray, list[str | None]]:
    """Parse a count or rate column: (values with NaN where missing, reason per unique)."""
    pattern = re.compile(_COUNT_RE if count else _RATE_RE)
    values = np.full(len(column.uniques), np.nan)
    reasons: list[str | None] = [None] * len(column.uniques)
    bad: list[int] = []
    for i, text in enumerate(column.uniques):
        text = text.strip()
        if pattern.fullmatch(text):
            values[i] = float(text.replace(",", "")) if count else float(text)
        elif text in MARKERS:
            reasons[i] = MARKERS[text]
        else:
            bad.append(i)
    kind = "counts (whole numbers)" if count else "rates (decimal numbers)"
    markers = ", ".join(repr(m) for m in MARKERS if m)
    _report_bad(column, name, bad,
                f"values that are neither {kind} nor known markers ({markers}); correct or "
                "blank these cells, or ask the publisher what they mean", problems)
    return values, reasons


def _year(column: _Column, problems: list[str]) -> pd.Series:
    """``201617`` -> ``2016/17``; anything else is a problem."""
    out: list[str | None] = []
    bad: list[int] = []
    for i, text in enumerate(column.uniques):
        m = re.fullmatch(r"(\d{4})(\d{2})", text.strip())
        if m and (int(m.group(1)) + 1) % 100 == int(m.group(2)):
            out.append(f"{m.group(1)}/{m.group(2)}")
        else:
            out.append(None)
            bad.append(i)
    _report_bad(column, "time_period", bad,
                "values that are not an academic year written YYYYYY such as 201617", problems)
    return column.take(out)


def _canonical(
    column: _Column, name: str, mapping: dict[str, str], problems: list[str]
) -> pd.Series:
    """Map labels case-insensitively onto canonical values; unknown labels are a problem."""
    out = [mapping.get(text.strip().lower()) for text in column.uniques]
    bad = [i for i, v in enumerate(out) if v is None]
    valid = ", ".join(repr(v) for v in dict.fromkeys(mapping.values()))
    _report_bad(column, name, bad,
                f"unknown values; understood values are {valid} (any letter case)", problems)
    return column.take(out)


def _text_or_na(column: _Column) -> pd.Series:
    """Identifier text, with blanks and ``NA`` as missing."""
    stripped = [text.strip() for text in column.uniques]
    return column.take([t if t not in ("", "NA") else None for t in stripped])


# ------------------------------------------------------------------ characteristics
_ETHNICITY_BY_KEY: dict[str, str] = {lvl.lower(): lvl for lvl in voc.ETHNICITY_LEVELS}
_ETHNICITY_BY_KEY.update({"gypsy roma": "Gypsy/Roma", "gypsy / roma": "Gypsy/Roma"})
_MAJOR_BY_KEY: dict[str, str] = {lvl.lower(): lvl for lvl in voc.ETHNICITY_MAJOR_LEVELS}
_FSM = {"eligible": "yes", "noteligible": "no", "not eligible": "no", "unclassified":
        "unclassified"}
_FSM6 = {"fsm eligible in last 6 years": "yes", "fsm not eligible in last 6 years": "no",
         "fsm unclassified in last 6 years": "unclassified"}
_SEN = {"no sen": "none", "sen without statement": "support", "sen support": "support",
        "sen with statement ehc": "ehcp", "ehc plan": "ehcp", "statement or ehc plan": "ehcp",
        "unclassified": "unclassified"}
_NC_WORDS = {"nursery": "Nursery", "reception": "Reception", "not followed": "Not followed",
             "unclassified": "unclassified"}


def _rest(label: str, prefix: str) -> str | None:
    """Text after ``prefix`` (matched without regard to case), or None."""
    if label.lower().startswith(prefix + " "):
        return label[len(prefix) + 1:]
    return None


def _one_way(base: str, label: str) -> tuple[str, str] | None:
    """(characteristic, group) of a one-way label, or None when not understood."""
    low = label.lower()
    if base == "total":
        return ("total", "Total") if low == "total" else None
    if base == "gender":
        rest = _rest(label, "gender")
        return (voc.SEX, rest.lower()) if rest and rest.lower() in voc.SEX_LEVELS else None
    if base == "age":
        rest = _rest(label, "age")
        if rest is None:
            return None
        rest = rest.lower()
        ok = rest == "unclassified" or re.fullmatch(r"\d+(?: and (?:under|over))?", rest)
        return ("age", rest) if ok else None
    if base == "nc year":
        rest = _rest(label, "nc year")
        if rest is None:
            return None
        if rest.lower() in _NC_WORDS:
            return (voc.NC_YEAR, _NC_WORDS[rest.lower()])
        rest = rest.lower()
        return (voc.NC_YEAR, rest) if re.fullmatch(r"\d+(?: and (?:below|above))?", rest) \
            else None
    if base == "ethnicity":
        if low == "ethnicity unclassified":
            return (voc.ETHNICITY, "Unclassified")
        if low == "ethnicity minority ethnic pupil":
            return (voc.ETHNICITY_MAJOR, "Minority ethnic")
        rest = _rest(label, "ethnicity minor")
        if rest is not None:
            lvl = _ETHNICITY_BY_KEY.get(rest.lower())
            return (voc.ETHNICITY, lvl) if lvl else None
        rest = _rest(label, "ethnicity major")
        if rest is not None:
            m = re.fullmatch(r"(.+) total", rest.lower())
            lvl = _MAJOR_BY_KEY.get(m.group(1)) if m else None
            return (voc.ETHNICITY_MAJOR, lvl) if lvl else None
        return None
    if base == "fsm eligible":
        rest = _rest(label, "fsm")
        return (voc.FSM, _FSM[rest.lower()]) if rest and rest.lower() in _FSM else None
    if base == "fsm eligible in last 6 years":
        return ("fsm_ever6", _FSM6[low]) if low in _FSM6 else None
    if base == "sen provision":
        rest = _rest(label, "sen provision")
        return (voc.SEN, _SEN[rest.lower()]) if rest and rest.lower() in _SEN else None
    if base == "sen primary need":
        rest = _rest(label, "sen primary need")
        return ("sen_primary_need", rest) if rest else None
    if base == "idaci decile":
        rest = _rest(label, "idaci decile")
        if rest is None:
            return None
        return ("idaci_decile", "unclassified" if rest.lower() == "unclassified" else rest)
    return None


def _characteristic(group_source: str, label: str) -> tuple[str, str] | None:
    """(characteristic, group) of a source (group, label) pair; None when not understood.

    A "... and gender" group is a cross-tabulation with sex: its label ends in
    ``Male``/``Female`` and becomes characteristic ``<base>_sex``, group ``<group>|<sex>``.
    """
    base = " ".join(group_source.split()).lower()
    label = " ".join(label.split())
    if base.endswith(" and gender"):
        base = base[: -len(" and gender")]
        m = re.fullmatch(r"(.+) (male|female)", label, flags=re.IGNORECASE)
        if not m:
            return None
        one = _one_way(base, m.group(1))
        if one is None:
            return None
        return f"{one[0]}_{voc.SEX}", f"{one[1]}|{m.group(2).lower()}"
    return _one_way(base, label)


def _characteristics(
    group_source: _Column, label: _Column, group_header: str, problems: list[str]
) -> tuple[pd.Series, pd.Series]:
    """Canonical (characteristic, group) per row from the source group and label columns."""
    pair_codes, pair_index = np.unique(
        group_source.codes * len(label.uniques) + label.codes, return_inverse=True)
    pairs = _Column(pair_index.reshape(-1).astype(np.int64), [""] * len(pair_codes))
    chars: list[str | None] = []
    groups: list[str | None] = []
    unknown: list[int] = []
    shown: list[str] = []
    for i, code in enumerate(pair_codes):
        g = group_source.uniques[int(code) // len(label.uniques)]
        lab = label.uniques[int(code) % len(label.uniques)]
        parsed = _characteristic(g, lab)
        if parsed is None:
            unknown.append(i)
            shown.append(f"{g!r} / {lab!r}")
            parsed = (None, None)  # type: ignore[assignment]
        chars.append(parsed[0])
        groups.append(parsed[1])
    if unknown:
        mask = pairs.rows_with(unknown)
        problems.append(
            f"columns {group_header!r} / 'characteristic': {len(unknown)} unknown "
            f"characteristic labels in {int(mask.sum())} rows (file lines {_lines(mask)}): "
            f"{'; '.join(shown[:8])}. Understood groups are Total, Gender, Age, NC year, "
            "Ethnicity, FSM eligible, FSM eligible in last 6 years, SEN provision, SEN "
            "primary need, IDACI decile and their '... and gender' cross-tabulations, with "
            "the labels DfE uses for them (any letter case); if this is a new DfE label, add "
            "it to disparity/dfe.py."
        )
    return pairs.take(chars), pairs.take(groups)


def _read_bytes(path: Path) -> tuple[bytes, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read DfE file {path}: {exc.strerror or exc}; check the "
                        "path (shipped copies: disparity.dfe.shipped_path)") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return raw, gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ReadError(f"{path} looks gzip-compressed but cannot be decompressed "
                            f"({exc}); download it again") from exc
    return raw, raw


def _parse_csv(path: Path, data: bytes) -> object:
    """Every column of a CSV as text (no type guessing, no missing-value guessing)."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        first = data[: data.find(b"\n") if b"\n" in data else len(data)].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"{path.name} is not UTF-8 text ({exc}); EES files are UTF-8") from exc
    header = next(csv.reader([first.rstrip("\r")]), [])
    if not header:
        raise ReadError(f"{path.name} is empty; expected a DfE EES exclusions CSV file")
    try:
        return pa_csv.read_csv(
            io.BytesIO(data),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ReadError(f"{path.name} could not be parsed as a CSV file: {exc}") from exc


def read_dfe(path: str | Path) -> pd.DataFrame:
    """Read a DfE EES exclusions file (plain CSV or ``.csv.gz``) into a long tidy frame.

    Parameters
    ----------
    path : str or pathlib.Path
        One of the EES "Permanent and fixed-period exclusions" underlying data files:
        characteristics by LA and nation, characteristics nationally, or the geographic
        file (nation, region, LA, school). Use :func:`shipped_path` for the copies shipped
        with the repository.

    Returns
    -------
    pandas.DataFrame
        One row per source row, with columns

        ``year``
            academic year, ``"2016/17"``.
        ``geographic_level``
            ``"national"``, ``"regional"``, ``"la"`` or ``"school"``.
        ``region``, ``la``, ``la_name``, ``old_la_code``, ``school``
            region name, LA code (``E06``-``E10``), LA name, 3-digit DfE LA number and
            LA-establishment number (school rows only); missing where not applicable.
        ``school_type``
            ``"Total"``, ``"State-funded primary"``, ``"State-funded secondary"`` or
            ``"Special"``.
        ``characteristic``, ``group``
            the pupil characteristic (``"total"``, ``"sex"``, ``"ethnicity"``,
            ``"ethnicity_major"``, ``"fsm"``, ``"fsm_ever6"``, ``"sen"``,
            ``"sen_primary_need"``, ``"age"``, ``"nc_year"``, ``"idaci_decile"`` and the
            cross-tabulations ``"<characteristic>_sex"``) and the group within it, with
            canonical labels (:mod:`disparity.vocabulary`); cross-tabulated groups are
            written ``"Black Caribbean|male"``. The geographic file has only
            ``"total"``/``"Total"``.
        ``n_pupils``, ``n_perm_excl``, ``n_fixed_excl``, ``n_one_plus_fixed``
            headcount and event counts (nullable ``Int64``), as published: national and
            regional counts are rounded to the nearest 5.
        ``<count>_missing``
            why the count is missing (the marker and its meaning), else missing.
        ``perm_excl_rate``, ``fixed_excl_rate``, ``one_plus_fixed_rate``
            the published rates (percent, float), missing where marked.

        ``frame.attrs["source"]`` holds the file name, kind, SHA-256 of the file as read
        and of its decompressed bytes, and the number of rows.

    Raises
    ------
    ReadError
        If the file cannot be read or is not an EES exclusions file.
    ValidationError
        Listing every unknown value: markers other than ``x c z low : .. .``, unknown
        geographic levels, school types, characteristic labels or years.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> text = (
    ...     "time_period,geographic_level,school_type,characteristic_group,characteristic,"
    ...     "headcount,perm_excl,perm_excl_rate,fixed_excl,fixed_excl_rate,"
    ...     "one_plus_fixed,one_plus_fixed_rate\\n"
    ...     "201617,National,Total,Total,Total,\\"1,000\\",5,0.5,x,x,20,2\\n"
    ...     "201617,National,Total,Gender,Gender male,600,4,0.67,x,x,15,2.5\\n")
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.csv"
    >>> _ = path.write_text(text)
    >>> frame = read_dfe(path)
    >>> frame[["year", "characteristic", "group", "n_pupils", "n_fixed_excl"]]
          year characteristic  group  n_pupils  n_fixed_excl
    0  2016/17          total  Total      1000          <NA>
    1  2016/17            sex   male       600          <NA>
    >>> frame["n_fixed_excl_missing"].iloc[0]
    'x: suppressed (1 or 2, or a rate based on one)'

    References
    ----------
    Department for Education (2018). *Permanent and fixed-period exclusions in England:
    2016 to 2017*, underlying data and methodology.
    """
    path = Path(path)
    stored, data = _read_bytes(path)
    table = _parse_csv(path, data)
    names = {str(c).strip().lower(): c for c in table.column_names}

    group_header = next((h for h in _GROUP_HEADERS if h in names), None)
    missing = [c for c in _REQUIRED if c not in names]
    if group_header is not None and "characteristic" not in names:
        missing.append("characteristic")
    if missing:
        found = ", ".join(repr(c) for c in list(names)[:25])
        raise ReadError(
            f"{path.name} is not a DfE EES exclusions file: columns {missing} are missing. "
            f"Expected {list(_REQUIRED)}, plus either 'characteristic_group' or "
            f"'characteristic and group' and 'characteristic' for a characteristics file, "
            f"and optionally region_name, new_la_code, old_la_code, la_name, laestab and "
            f"the rate columns {list(_RATE_COLUMNS)}. Found: {found}."
        )
    n = table.num_rows

    def col(name: str) -> _Column:
        return _encode(table, names[name]) if name in names else _constant(n, None)

    problems: list[str] = []
    out: dict[str, object] = {}
    out[voc.YEAR] = _year(col("time_period"), problems)
    level = _canonical(col("geographic_level"), "geographic_level", _LEVELS, problems)
    out["geographic_level"] = level
    out[voc.REGION] = _text_or_na(col("region_name"))
    out[voc.LA] = _text_or_na(col("new_la_code"))
    out["la_name"] = _text_or_na(col("la_name"))
    out["old_la_code"] = _text_or_na(col("old_la_code"))
    out[voc.SCHOOL] = _text_or_na(col("laestab")).where(level == "school")
    out["school_type"] = _canonical(col("school_type"), "school_type", _SCHOOL_TYPES, problems)
    if group_header is None:
        out["characteristic"] = _constant(n, "total").take(["total"])
        out["group"] = _constant(n, "Total").take(["Total"])
        kind = "geographic"
    else:
        out["characteristic"], out["group"] = _characteristics(
            col(group_header), col("characteristic"), group_header, problems)
        kind = "characteristics"
    reasons = {}
    for source, name in COUNT_COLUMNS.items():
        column = col(source)
        values, reason = _parse_numbers(column, source, problems, count=True)
        out[name] = pd.array(column.take_numbers(values), dtype="Int64")
        reasons[f"{name}_missing"] = column.take(reason)
    out.update(reasons)
    for rate in _RATE_COLUMNS:
        if rate in names:
            column = col(rate)
            values, _ = _parse_numbers(column, rate, problems, count=False)
            out[rate] = column.take_numbers(values)
        else:
            out[rate] = np.full(n, np.nan)
    if not problems:
        _check_levels_match_codes(level, out[voc.LA], out[voc.REGION],
                                  _text_or_na(col("laestab")), problems)
    if problems:
        raise ValidationError(problems, what=f"DfE file {path.name}")

    frame = pd.DataFrame(out, columns=list(_OUT_COLUMNS))
    frame.attrs["source"] = {
        "file": path.name,
        "kind": kind,
        "sha256": hashlib.sha256(stored).hexdigest(),
        "sha256_uncompressed": hashlib.sha256(data).hexdigest(),
        "rows": n,
    }
    return frame


def _check_levels_match_codes(level: pd.Series, la: pd.Series, region: pd.Series,
                              school: pd.Series, problems: list[str]) -> None:
    """Rows whose geographic level contradicts the codes they carry: an LA code on a
    national or regional row (that LA would vanish from every LA table), a local-authority
    row with no LA code, a school row with no school number."""
    level = pd.Series(np.asarray(level, dtype=object))
    la, region = pd.Series(np.asarray(la, dtype=object)), pd.Series(np.asarray(region,
                                                                              dtype=object))
    school = pd.Series(np.asarray(school, dtype=object))
    checks = (
        (level.isin(["national", "regional"]) & la.notna(),
         "carry an LA code but say they are national or regional rows",
         "set geographic_level to 'Local authority' on those rows, or clear the LA code"),
        ((level == "la") & la.isna(), "are local-authority rows without an LA code",
         "fill in new_la_code, or correct geographic_level"),
        ((level == "school") & school.isna(), "are school rows without a school number",
         "fill in laestab, or correct geographic_level"),
    )
    for mask, what, fix in checks:
        mask = mask.to_numpy(dtype=bool)
        k = int(mask.sum())
        if k:
            rows = np.flatnonzero(mask)[:5] + 1
            codes = ", ".join(repr(c) for c in dict.fromkeys(la[mask].dropna().astype(str)))
            problems.append(
                f"column 'geographic_level': {k:,} row(s) {what} (data rows "
                f"{', '.join(map(str, rows))}{', ...' if k > 5 else ''}"
                + (f"; LA codes {codes}" if codes else "") + f"). Fix: {fix}.")


# --------------------------------------------------------------------------- cells
#: How the groups of each characteristic relate to the unit's Total row, checked by
#: :func:`dfe_cells`: ``"equal"`` where the groups partition all pupils (their sum is the
#: total); ``"at_most"`` where they cover part of them (sum <= total). A characteristic not
#: listed (cross-tabulations, ``ethnicity_major``) is not checked.
#:
#: Checked against the shipped files (see ``data/README.md``): at LA level ``sex``,
#: ``fsm``, ``sen`` and ``age`` add up exactly for every count in every LA-year where no
#: count is suppressed. The ethnicity breakdown leaves out pupils aged 4 and under (its
#: headcount is the total less the "Age 4 and under" row in most LA-years) and NC-year
#: headcounts fall short of the total in some LA-years, so those two are ``"at_most"``;
#: IDACI decile and SEN primary need are partial breakdowns too.
PARTITIONS: dict[str, str] = {
    "total": "equal",
    voc.SEX: "equal",
    voc.FSM: "equal",
    "fsm_ever6": "equal",
    voc.SEN: "equal",
    "age": "equal",
    voc.ETHNICITY: "at_most",
    voc.NC_YEAR: "at_most",
    "idaci_decile": "at_most",
    "sen_primary_need": "at_most",
}

#: Largest error of a count rounded to the nearest 5 (an integer moves by at most 2).
ROUNDING_ERROR: int = 2


def _year_key(year: str | int) -> str:
    text = str(year).strip()
    m = re.fullmatch(r"(\d{4})/?(\d{2})", text)
    if not m:
        raise ValidationError(
            [f"year {year!r} is not an academic year; write '2016/17' or '201617'."],
            what="dfe_cells request")
    return f"{m.group(1)}/{m.group(2)}"


def _select(
    frame: pd.DataFrame, *, by: str | None, unit: str | None, year: str | int | None,
    school_type: str | None, geographic_level: str | None,
) -> tuple[pd.DataFrame, str, str, tuple[str, ...]]:
    """Rows of one characteristic at one level; returns (rows, characteristic, level, keys)."""
    needed = {"characteristic", "group", "geographic_level", "school_type", voc.YEAR}
    absent = sorted(needed - set(frame.columns))
    if absent:
        raise ValidationError([f"columns {absent} are missing; pass the frame returned by "
                               "read_dfe."], what="dfe_cells input")
    characteristic = "total" if by is None else by
    available = sorted(pd.unique(frame["characteristic"]))
    if characteristic not in available:
        raise ValidationError(
            [f"characteristic {by!r} is not in this file; available characteristics are "
             f"{', '.join(repr(c) for c in available)}."], what="dfe_cells request")
    if unit is not None and unit not in _UNITS:
        raise ValidationError(
            [f"unit {unit!r} is unknown; valid units are None, "
             f"{', '.join(repr(u) for u in _UNITS)}."], what="dfe_cells request")
    level = _UNITS[unit] if unit is not None else None
    if geographic_level is not None:
        given = _LEVELS.get(geographic_level.strip().lower())
        if given is None:
            raise ValidationError(
                [f"geographic_level {geographic_level!r} is unknown; valid levels are "
                 "'national', 'regional', 'la', 'school'."], what="dfe_cells request")
        if level is not None and level != given:
            raise ValidationError(
                [f"unit {unit!r} means geographic level {level!r}, but geographic_level "
                 f"{geographic_level!r} was given; pass one of them."],
                what="dfe_cells request")
        level = given
    level = level or "national"

    rows = frame[(frame["characteristic"] == characteristic)
                 & (frame["geographic_level"] == level)]
    if rows.empty:
        here = sorted(pd.unique(frame.loc[frame["characteristic"] == characteristic,
                                          "geographic_level"]))
        raise ValidationError(
            [f"characteristic {characteristic!r} has no rows at geographic level {level!r}; "
             f"it is published at {here}."], what="dfe_cells request")
    if year is not None:
        key = _year_key(year)
        years = sorted(pd.unique(rows[voc.YEAR]))
        if key not in years:
            raise ValidationError([f"year {key!r} is not in the file; years are {years}."],
                                  what="dfe_cells request")
        rows = rows[rows[voc.YEAR] == key]
    if school_type is not None:
        st = _SCHOOL_TYPES.get(school_type.strip().lower())
        if st is None:
            raise ValidationError(
                [f"school_type {school_type!r} is unknown; valid types are "
                 f"{', '.join(repr(v) for v in _SCHOOL_TYPES.values())} or None (all)."],
                what="dfe_cells request")
        # A school row is the school's own total: 'Total' keeps every school.
        if not (level == "school" and st == "Total"):
            rows = rows[rows["school_type"] == st]
    keys = (voc.YEAR, *_UNIT_COLUMNS[level])
    if school_type is None or level == "school":
        keys = (*keys, "school_type")
    return rows, characteristic, level, keys


def conservation_gaps(
    frame: pd.DataFrame, *, by: str, unit: str | None = None, year: str | int | None = None,
    school_type: str | None = "Total", geographic_level: str | None = None,
) -> pd.DataFrame:
    """Sum of a characteristic's groups against the unit's Total row, per unit-year.

    Parameters
    ----------
    frame : pandas.DataFrame
        A frame from :func:`read_dfe`.
    by, unit, year, school_type, geographic_level
        As in :func:`dfe_cells`.

    Returns
    -------
    pandas.DataFrame
        One row per unit-year (and school type) and count: ``count``, ``groups_sum``,
        ``total``, ``gap`` (``groups_sum - total``), ``n_groups`` and ``complete``
        (False where a group or the total is missing, so the gap says nothing).

    Examples
    --------
    >>> frame = pd.DataFrame({
    ...     "year": "2016/17", "geographic_level": "la", "la": "E1", "region": "R",
    ...     "la_name": "A", "school_type": "Total",
    ...     "characteristic": ["total", "sex", "sex"], "group": ["Total", "male", "female"],
    ...     "n_pupils": pd.array([10, 6, 4], dtype="Int64")})
    >>> conservation_gaps(frame, by="sex", unit="la")[["count", "groups_sum", "total", "gap"]]
          count  groups_sum  total  gap
    0  n_pupils          10     10    0
    """
    rows, _, level, keys = _select(frame, by=by, unit=unit, year=year,
                                   school_type=school_type, geographic_level=geographic_level)
    totals, _, _, _ = _select(frame, by=None, unit=unit, year=year, school_type=school_type,
                              geographic_level=geographic_level)
    keys = list(keys)
    counts = [c for c in COUNT_COLUMNS.values() if c in frame.columns]
    parts = []
    for count in counts:
        grouped = rows.groupby(keys, dropna=False, sort=True)[count]
        part = pd.DataFrame({
            "groups_sum": grouped.sum(),
            "groups_missing": rows[count].isna().groupby(
                [rows[k] for k in keys], dropna=False, sort=True).any(),
            "n_groups": grouped.size(),
        })
        total = totals.set_index(keys)[count]
        total = total[~total.index.duplicated(keep=False)]
        part["total"] = total.reindex(part.index)
        part["complete"] = ~part["groups_missing"] & part["total"].notna()
        part["gap"] = (part["groups_sum"] - part["total"]).astype("Int64")
        part["count"] = count
        parts.append(part.reset_index())
    out = pd.concat(parts, ignore_index=True)
    out["geographic_level"] = level
    return out[[*keys, "geographic_level", "count", "groups_sum", "total", "gap", "n_groups",
                "complete"]]


def _check_conservation(gaps: pd.DataFrame, characteristic: str, level: str) -> None:
    relation = PARTITIONS.get(characteristic)
    if relation is None or level == "school" or gaps.empty:
        return
    checked = gaps[gaps["complete"]]
    if level in ("national", "regional"):
        tolerance = ROUNDING_ERROR * (checked["n_groups"] + 1)
    else:
        tolerance = pd.Series(0, index=checked.index)
    gap = checked["gap"].astype("float64")
    if relation == "equal":
        bad = gap.abs() > tolerance
    else:
        bad = gap > tolerance
    if bad.any():
        worst = checked[bad].head(5)
        shown = "; ".join(
            ", ".join(f"{k}={worst.at[i, k]}" for k in worst.columns
                      if k not in ("n_groups", "complete", "geographic_level"))
            for i in worst.index)
        rule = ("sum to" if relation == "equal" else "sum to at most")
        allowed = ("exactly" if level not in ("national", "regional")
                   else "within the rounding of counts to the nearest 5")
        raise ValidationError(
            [f"the {characteristic!r} groups do not {rule} the Total row {allowed} in "
             f"{int(bad.sum())} unit-year counts at level {level!r}: {shown}. The file may "
             "be cut (rows lost) or changed; compare it with the published file "
             "(data/README.md gives checksums)."], what="DfE cells")


def dfe_cells(
    frame: pd.DataFrame,
    *,
    by: str | None = None,
    unit: str | None = None,
    year: str | int | None = None,
    school_type: str | None = "Total",
    geographic_level: str | None = None,
) -> pd.DataFrame:
    """A cells table of one characteristic at one geographic level from :func:`read_dfe`.

    Parameters
    ----------
    frame : pandas.DataFrame
        A frame from :func:`read_dfe`.
    by : str, optional
        Characteristic whose groups make the rows (``"ethnicity"``, ``"sex"``, ``"fsm"``,
        ...); the ``group`` column is renamed to it. None: the Total rows, without a group
        column.
    unit : {None, "national", "region", "la", "school"}
        Geographic unit of the rows; None means national.
    year : str or int, optional
        Keep one academic year, ``"2016/17"`` or ``"201617"``.
    school_type : str or None, default "Total"
        ``"Total"``, ``"State-funded primary"``, ``"State-funded secondary"``, ``"Special"``
        (any letter case), or None for all types (a ``school_type`` column is kept). School
        rows carry their own phase: at school level ``"Total"`` keeps every school.
    geographic_level : str, optional
        The level by its file name (``"national"``, ``"regional"``, ``"la"``,
        ``"school"``), as an alternative to ``unit``.

    Returns
    -------
    pandas.DataFrame
        ``year``, the unit columns (``region``; ``la``, ``la_name``; ``school``), the
        ``by`` column, ``n_pupils``, ``n_perm_excl``, ``n_fixed_excl``,
        ``n_one_plus_fixed`` and their ``*_missing`` reason columns. Groups the publisher
        left out of a unit (no pupils) have no row.

    Raises
    ------
    ValidationError
        For an unknown characteristic (the message lists those in the file), unit, year
        or school type, or when the groups of a characteristic in :data:`PARTITIONS` do
        not add up to the unit's Total row where no count is missing: exactly at LA level
        (unrounded counts) and within ``2 * (groups + 1)`` at national and regional level,
        where every published count is rounded to the nearest 5 and so is off by at most 2.

    Examples
    --------
    >>> frame = pd.DataFrame({
    ...     "year": "2016/17", "geographic_level": "national", "region": pd.NA, "la": pd.NA,
    ...     "la_name": pd.NA, "school": pd.NA, "school_type": "Total",
    ...     "characteristic": ["total", "sex", "sex"], "group": ["Total", "male", "female"],
    ...     "n_pupils": pd.array([100, 60, 40], dtype="Int64"),
    ...     "n_perm_excl": pd.array([10, 5, 5], dtype="Int64")})
    >>> dfe_cells(frame, by="sex")
          year     sex  n_pupils  n_perm_excl
    0  2016/17    male        60            5
    1  2016/17  female        40            5
    """
    rows, characteristic, level, keys = _select(
        frame, by=by, unit=unit, year=year, school_type=school_type,
        geographic_level=geographic_level)
    if characteristic != "total":
        gaps = conservation_gaps(frame, by=characteristic, unit=unit, year=year,
                                 school_type=school_type, geographic_level=geographic_level)
        _check_conservation(gaps, characteristic, level)
    counts = [c for c in COUNT_COLUMNS.values() if c in rows.columns]
    missing = [f"{c}_missing" for c in counts if f"{c}_missing" in rows.columns]
    columns = list(keys)
    if characteristic != "total":
        columns.append("group")
    out = rows[columns + counts + missing].reset_index(drop=True)
    if characteristic != "total":
        out = out.rename(columns={"group": characteristic})
    out.attrs = dict(frame.attrs)
    return out
