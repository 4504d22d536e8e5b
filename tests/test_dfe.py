"""Tests of disparity.dfe against the shipped DfE exclusion files.

Oracles: the figures printed in the DfE release "Permanent and fixed-period exclusions in
England: 2016 to 2017" (19 July 2018, updated 6 August 2018; gov.uk statistics page
"permanent-and-fixed-period-exclusions-in-england-2016-to-2017", release text), counts of
raw cells taken with the standard library's csv module, the checksums in data/README.md,
and cross-file identities stated by the publisher's files.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pytest

from disparity.dfe import (
    MARKERS,
    SHIPPED,
    conservation_gaps,
    dfe_cells,
    read_dfe,
    shipped_path,
)
from disparity.errors import ReadError, ValidationError

DATA = Path(__file__).resolve().parent.parent / "data"
COUNTS = ["n_pupils", "n_perm_excl", "n_fixed_excl", "n_one_plus_fixed"]


def rate(events: int, pupils: int) -> Decimal:
    """100 * events / pupils rounded half-up to 2 decimals, as DfE publishes rates."""
    return (Decimal(100 * int(events)) / Decimal(int(pupils))).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP)


@functools.cache
def raw_rows(name: str) -> tuple[dict[str, str], ...]:
    """The shipped file's rows as text, read with the standard library (an independent view)."""
    with gzip.open(shipped_path(name), "rt", encoding="utf-8", newline="") as handle:
        return tuple(csv.DictReader(handle))


@pytest.fixture(scope="module")
def national() -> pd.DataFrame:
    return read_dfe(shipped_path("characteristics_national"))


@pytest.fixture(scope="module")
def la_national() -> pd.DataFrame:
    return read_dfe(shipped_path("characteristics_la_national"))


@pytest.fixture(scope="module")
def geographic() -> pd.DataFrame:
    return read_dfe(shipped_path("geographic"))


# ------------------------------------------------------------------ shipped files
def checksums(block: int) -> dict[str, str]:
    """The sha256sum-format lines of the ``block``-th fenced block of data/README.md."""
    text = (DATA / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.DOTALL)
    lines = re.findall(r"^([0-9a-f]{64})  (\S+)$", blocks[block], flags=re.MULTILINE)
    return {path: digest for digest, path in lines}


def test_shipped_checksums_match_readme() -> None:
    compressed, plain = checksums(0), checksums(1)
    assert len(compressed) == len(SHIPPED) == len(plain) == 6
    for file in SHIPPED.values():
        blob = (DATA / "dfe" / file).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == compressed[f"dfe/{file}"], file
        unpacked = gzip.decompress(blob)
        assert hashlib.sha256(unpacked).hexdigest() == plain[f"dfe/{file[:-3]}"], file


def test_provenance_attrs(national: pd.DataFrame) -> None:
    source = national.attrs["source"]
    assert source["file"] == "exclusions_by_characteristic_national.csv.gz"
    assert source["sha256"] == checksums(0)[f"dfe/{source['file']}"]
    assert source["sha256_uncompressed"] == checksums(1)[f"dfe/{source['file'][:-3]}"]
    assert source["rows"] == 4586  # SOURCES: 4,586 data rows
    assert len(national) == 4586


def test_shipped_path_names_and_errors() -> None:
    file = "exclusions_by_characteristic_national.csv.gz"
    assert shipped_path("national").name == file
    assert shipped_path(file) == shipped_path(file[:-3]) == shipped_path("national")
    with pytest.raises(ReadError, match="valid names are .*'geographic'"):
        shipped_path("nope")


def test_row_counts_of_shipped_files(
    la_national: pd.DataFrame, geographic: pd.DataFrame
) -> None:
    # Row counts stated in data/README.md (from the published files).
    assert len(la_national) == 198_964
    assert len(geographic) == 131_169
    assert (la_national["geographic_level"] == "la").sum() == 194_378
    years = [f"{y}/{str(y + 1)[-2:]}" for y in range(2011, 2017)]
    assert sorted(pd.unique(geographic["year"])) == years
    assert sorted(pd.unique(la_national["year"])) == years


# ------------------------------------------------------------------ published figures
def test_england_2016_17_totals(national: pd.DataFrame, geographic: pd.DataFrame) -> None:
    for frame in (national, geographic):
        total = dfe_cells(frame, year="2016/17").iloc[0]
        # Release text: "7,720 permanent exclusions ... 0.10 per cent of pupils"
        assert total["n_perm_excl"] == 7_720
        assert rate(total["n_perm_excl"], total["n_pupils"]) == Decimal("0.10")
        # Release text: "381,865 fixed period exclusions ... 4.76 per cent"
        assert total["n_fixed_excl"] == 381_865
        assert rate(total["n_fixed_excl"], total["n_pupils"]) == Decimal("4.76")


def test_england_2016_17_rates_by_characteristic(national: pd.DataFrame) -> None:
    def rates(by: str) -> dict[str, Decimal]:
        cells = dfe_cells(national, by=by, year="201617")
        cells = cells[(cells["n_pupils"] > 0) & cells["n_perm_excl"].notna()]
        return {g: rate(e, n) for g, e, n in
                zip(cells[by], cells["n_perm_excl"], cells["n_pupils"])}

    sex = rates("sex")
    # Release text: permanent exclusion rate for boys 0.15%, girls 0.04%.
    assert (sex["male"], sex["female"]) == (Decimal("0.15"), Decimal("0.04"))
    fsm = rates("fsm")
    # Release text: FSM-eligible 0.28% against 0.07% for pupils not eligible.
    assert (fsm["yes"], fsm["no"]) == (Decimal("0.28"), Decimal("0.07"))
    sen = rates("sen")
    # Release text: SEN support 0.35% against 0.06% for pupils with no SEN.
    assert (sen["support"], sen["none"]) == (Decimal("0.35"), Decimal("0.06"))
    # Release text: Black Caribbean pupils 0.28%.
    assert rates("ethnicity")["Black Caribbean"] == Decimal("0.28")


def test_england_2016_17_rates_by_geography(geographic: pd.DataFrame) -> None:
    types = dfe_cells(geographic, year="2016/17", school_type=None)
    secondary = types[types["school_type"] == "State-funded secondary"].iloc[0]
    # Release text: state-funded secondary permanent exclusion rate 0.20%.
    assert rate(secondary["n_perm_excl"], secondary["n_pupils"]) == Decimal("0.20")

    regions = dfe_cells(geographic, unit="region", year="2016/17").set_index("region")

    def region_rate(name: str, count: str) -> Decimal:
        return rate(regions.at[name, count], regions.at[name, "n_pupils"])

    # Release text: highest permanent exclusion rates West Midlands and North West (0.14%),
    # lowest South East (0.06%).
    assert region_rate("West Midlands", "n_perm_excl") == Decimal("0.14")
    assert region_rate("North West", "n_perm_excl") == Decimal("0.14")
    assert region_rate("South East", "n_perm_excl") == Decimal("0.06")
    # Release text: fixed period rate highest in Yorkshire and the Humber (7.22%), lowest in
    # Outer London (3.49%).
    assert region_rate("Yorkshire and the Humber", "n_fixed_excl") == Decimal("7.22")
    assert region_rate("Outer London", "n_fixed_excl") == Decimal("3.49")
    assert len(regions) == 10


def test_published_rate_columns_are_kept(national: pd.DataFrame) -> None:
    total = national[(national["year"] == "2016/17") & (national["characteristic"] == "total")
                     & (national["school_type"] == "Total")].iloc[0]
    # File values (and release): 0.1, 4.76 and 2.29 per cent.
    assert (total["perm_excl_rate"], total["fixed_excl_rate"], total["one_plus_fixed_rate"]) \
        == (0.1, 4.76, 2.29)


# ------------------------------------------------------------------ quirks of the files
def test_thousands_separators_parse(
    national: pd.DataFrame, la_national: pd.DataFrame
) -> None:
    raw = [r for r in raw_rows("characteristics_la_national")
           if r["time_period"] == "201415" and r["characteristic and group"] == "IDACI decile"]
    with_commas = [r for r in raw if "," in r["headcount"]]
    assert len(with_commas) == 10  # SOURCES: 10 rows written like "749,750"
    keys = ["year", "school_type", "characteristic", "group"]

    def idaci(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame[(frame["geographic_level"] == "national") & (frame["year"] == "2014/15")
                     & (frame["characteristic"] == "idaci_decile")]
        return rows[keys + COUNTS].sort_values(keys).reset_index(drop=True)

    left, right = idaci(la_national), idaci(national)
    assert len(left) == len(raw) and len(left) >= 10
    pd.testing.assert_frame_equal(left, right)
    assert (left["n_pupils"] == 749_750).sum() == 1


def test_suppressed_marker_becomes_missing_with_reason(geographic: pd.DataFrame) -> None:
    # SOURCES.md: `x` appears in perm_excl in 11,354 rows and in one_plus_fixed in 26,682.
    # Those are whole-file counts: counted with the csv module, 10,883 and 26,616 of them are
    # school rows, the rest LA (466 and 66) and regional (5 perm_excl) rows.
    raw = raw_rows("geographic")
    assert sum(r["perm_excl"] == "x" for r in raw) == 11_354
    assert sum(r["one_plus_fixed"] == "x" for r in raw) == 26_682
    raw_school_x = sum(r["perm_excl"] == "x" for r in raw if r["geographic_level"] == "School")

    marked = geographic["n_perm_excl_missing"] == MARKERS["x"]
    assert marked.sum() == 11_354
    assert (geographic["n_one_plus_fixed_missing"] == MARKERS["x"]).sum() == 26_682
    school = geographic["geographic_level"] == "school"
    assert (marked & school).sum() == raw_school_x == 10_883
    assert geographic.loc[marked, "n_perm_excl"].isna().all()
    assert geographic.loc[~marked, "n_perm_excl"].notna().all()


def test_la_totals_agree_across_files(
    la_national: pd.DataFrame, geographic: pd.DataFrame
) -> None:
    left = dfe_cells(la_national, unit="la")
    right = dfe_cells(geographic, unit="la")
    merged = left.merge(right, on=["year", "la"], suffixes=("_char", "_geo"), how="outer",
                        validate="one_to_one", indicator=True)
    assert len(merged) == 912  # 152 LAs x 6 years (SOURCES.md)
    assert (merged["_merge"] == "both").all()
    for count in ["n_pupils", "n_perm_excl", "n_fixed_excl"]:
        a, b = merged[f"{count}_char"], merged[f"{count}_geo"]
        assert (a.isna() == b.isna()).all(), count
        assert (a == b).fillna(True).all(), count


def test_special_spellings_unify(la_national: pd.DataFrame) -> None:
    raw = raw_rows("characteristics_la_national")
    spelled = {t for t in (r["school_type"] for r in raw) if t.lower() == "special"}
    assert spelled == {"special", "Special"}
    n_special = sum(r["school_type"].lower() == "special" for r in raw)
    assert set(la_national["school_type"]) == {
        "Total", "State-funded primary", "State-funded secondary", "Special"}
    assert (la_national["school_type"] == "Special").sum() == n_special == 40_724 + 9_442
    # LA special rows are spelled "special" before 2016/17: all years are present.
    special_la = la_national[(la_national["school_type"] == "Special")
                             & (la_national["geographic_level"] == "la")]
    assert special_la["year"].nunique() == 6


def test_label_case_differences_do_not_matter(la_national: pd.DataFrame) -> None:
    raw = raw_rows("characteristics_la_national")
    labels = {r["characteristic"] for r in raw}
    assert {"NC Year Unclassified", "NC Year unclassified"} <= labels
    assert {"SEN Provision No SEN", "SEN provision SEN without statement"} <= labels
    nc_unclassified = sum(r["characteristic"].lower() == "nc year unclassified" for r in raw)
    nc = la_national[la_national["characteristic"] == "nc_year"]
    assert (nc["group"] == "unclassified").sum() == nc_unclassified
    sen = la_national.loc[la_national["characteristic"] == "sen", "group"]
    assert set(sen) == {"none", "support", "ehcp", "unclassified"}


def test_canonical_labels(national: pd.DataFrame) -> None:
    from disparity.vocabulary import ETHNICITY_LEVELS

    def groups(characteristic: str) -> set[str]:
        return set(national.loc[national["characteristic"] == characteristic, "group"])

    assert groups("ethnicity") == set(ETHNICITY_LEVELS)
    assert {"Gypsy/Roma", "Any other Black background", "Any other ethnic group"} \
        <= groups("ethnicity")
    assert groups("ethnicity_major") == {"White", "Mixed", "Asian", "Black", "Minority ethnic"}
    assert groups("sex") == {"male", "female"}
    assert groups("fsm") == groups("fsm_ever6") == {"yes", "no", "unclassified"}
    assert "Black Caribbean|male" in groups("ethnicity_sex")
    assert set(pd.unique(national["geographic_level"])) == {"national"}
    # Each cross-tabulated pair sums to its one-way row in the file (rounded to 5 each:
    # |male + female - both| <= 3 * 2).
    row = dfe_cells(national, by="ethnicity", year="2016/17").set_index("ethnicity")
    cross = dfe_cells(national, by="ethnicity_sex", year="2016/17").set_index("ethnicity_sex")
    both = cross.at["Black Caribbean|male", "n_pupils"] + cross.at[
        "Black Caribbean|female", "n_pupils"]
    assert abs(both - row.at["Black Caribbean", "n_pupils"]) <= 6


# ------------------------------------------------------------------ conservation
def test_la_partitions_are_exact(la_national: pd.DataFrame) -> None:
    for by in ["sex", "fsm", "sen", "age"]:
        gaps = conservation_gaps(la_national, by=by, unit="la", school_type=None)
        checked = gaps[gaps["complete"]]
        assert len(checked) > 0.5 * len(gaps) / 4  # most LA-years have no suppression
        assert (checked["gap"] == 0).all(), by


def test_national_partitions_within_rounding(national: pd.DataFrame) -> None:
    for by in ["sex", "fsm", "sen"]:
        gaps = conservation_gaps(national, by=by, school_type=None)
        checked = gaps[gaps["complete"]]
        # Each of k group counts and the total is off by at most 2 after rounding to 5.
        assert (checked["gap"].abs() <= 2 * (checked["n_groups"] + 1)).all(), by
        assert (checked["gap"] % 5 == 0).all(), by  # all published values are multiples of 5


def test_dfe_cells_shape(la_national: pd.DataFrame) -> None:
    cells = dfe_cells(la_national, by="ethnicity", unit="la", year="2016/17")
    assert list(cells.columns) == [
        "year", "region", "la", "la_name", "ethnicity", *COUNTS,
        *(f"{c}_missing" for c in COUNTS)]
    assert cells["la"].nunique() == 152
    assert set(cells["ethnicity"]) <= set(la_national.loc[
        la_national["characteristic"] == "ethnicity", "group"])
    assert (cells["year"] == "2016/17").all()


def test_conservation_failure_raises(la_national: pd.DataFrame) -> None:
    cells = la_national[(la_national["year"] == "2016/17")
                        & (la_national["characteristic"].isin(["total", "sex"]))].copy()
    first_male = cells.index[(cells["group"] == "male") & cells["n_pupils"].notna()
                             & (cells["geographic_level"] == "la")][0]
    cells.loc[first_male, "n_pupils"] += 1
    with pytest.raises(ValidationError, match="'sex' groups do not sum to the Total row"):
        dfe_cells(cells, by="sex", unit="la", school_type=None)


def test_unknown_by_lists_available(geographic: pd.DataFrame, national: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="available characteristics are 'total'"):
        dfe_cells(geographic, by="ethnicity")
    with pytest.raises(ValidationError, match="'ethnicity', 'ethnicity_major'"):
        dfe_cells(national, by="race")
    with pytest.raises(ValidationError, match="valid units"):
        dfe_cells(national, unit="county")
    with pytest.raises(ValidationError, match="years are"):
        dfe_cells(national, year="2019/20")


# ------------------------------------------------------------------ hand-made files
HEADER = ("time_identifier,time_period,geographic_level,country_code,country_name,"
          "school_type,characteristic_group,characteristic,headcount,perm_excl,"
          "perm_excl_rate,fixed_excl,fixed_excl_rate,one_plus_fixed,one_plus_fixed_rate")


def write(tmp_path: Path, lines: list[str], name: str = "tiny.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def test_markers_bom_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, [
        HEADER,
        "Academic year,201617,National,E92000001,England,Total,Total,Total,"
        '"1,200",c,c,z,z,low,low',
        "Academic year,201617,National,E92000001,England,special,Gender,Gender male,"
        ":,..,..,7,.,0,0",
        "Academic year,201617,National,E92000001,England,Special,Gender,Gender female,"
        "5,x,x,3,60,1,20",
    ])
    frame = read_dfe(path)
    assert frame["n_pupils"].tolist()[0] == 1200 and frame["n_pupils"].isna().tolist() == [
        False, True, False]
    assert frame["n_perm_excl"].isna().all()  # never read as zero
    assert frame["n_perm_excl_missing"].tolist() == [
        "c: confidential", "..: not available", MARKERS["x"]]
    assert frame["n_fixed_excl_missing"].tolist()[0] == "z: not applicable"
    assert frame["n_one_plus_fixed_missing"].tolist()[0] == "low: rounds to 0 but is not 0"
    assert frame["n_pupils_missing"].tolist()[1] == ":: not available"
    assert frame["n_fixed_excl"].tolist()[1:] == [7, 3]
    assert frame["n_one_plus_fixed"].tolist()[1:] == [0, 1]  # a real zero stays zero
    assert frame["fixed_excl_rate"].isna().tolist() == [True, True, False]
    assert frame["school_type"].tolist() == ["Total", "Special", "Special"]
    assert frame["year"].tolist() == ["2016/17"] * 3
    assert str(frame["n_pupils"].dtype) == "Int64"


def test_gzip_input_reads_the_same(tmp_path: Path) -> None:
    plain = write(tmp_path, [HEADER, "Academic year,201617,National,E92000001,England,"
                             "Total,Total,Total,10,1,10,2,20,2,20"])
    packed = tmp_path / "tiny.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(read_dfe(plain), read_dfe(packed))


def test_unknown_marker_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [
        HEADER,
        "Academic year,201617,National,E92000001,England,Total,Total,Total,10,1,1,2,2,2,2",
        "Academic year,201617,National,E92000001,England,Total,Total,Total,10,n/a,1,2,2,2,2",
        "Academic year,201617,National,E92000001,England,Total,Total,Total,10,-3,1,2,2,2,2",
    ])
    with pytest.raises(ValidationError) as info:
        read_dfe(path)
    message = str(info.value)
    assert "column 'perm_excl': 2 rows" in message
    assert "file lines 3, 4" in message and "'n/a'" in message and "'-3'" in message


def test_unknown_label_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [
        HEADER,
        "Academic year,201617,National,E92000001,England,Total,Gender,Gender other,"
        "10,1,1,2,2,2,2",
        "Academic year,201617,National,E92000001,England,Total,Ethnicity,"
        "Ethnicity Minor Martian,10,1,1,2,2,2,2",
        "Academic year,201617,Ward,E92000001,England,Primary,Total,Total,10,1,1,2,2,2,2",
    ])
    with pytest.raises(ValidationError) as info:
        read_dfe(path)
    message = str(info.value)
    assert "'Gender' / 'Gender other'" in message
    assert "'Ethnicity' / 'Ethnicity Minor Martian'" in message
    assert "geographic_level" in message and "'Ward'" in message
    assert "school_type" in message and "'Primary'" in message


def test_not_an_ees_file(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("pupil_id,year,ethnicity\n1,2016/17,Irish\n", encoding="utf-8")
    with pytest.raises(ReadError, match="not a DfE EES exclusions file.*'headcount'"):
        read_dfe(path)
    with pytest.raises(ReadError, match="cannot read"):
        read_dfe(tmp_path / "absent.csv")
    with pytest.raises(ReadError, match="empty"):
        read_dfe(write(tmp_path, [""], name="empty.csv"))


def test_geographic_file_rows_are_total(geographic: pd.DataFrame) -> None:
    assert set(geographic["characteristic"]) == {"total"}
    assert set(geographic["group"]) == {"Total"}
    levels = geographic.groupby("geographic_level").size().to_dict()
    # data/README.md: per year 4 national, 40 regional, 604 LA rows, over 6 years.
    assert (levels["national"], levels["regional"], levels["la"]) == (24, 240, 3_624)
    schools = geographic[geographic["geographic_level"] == "school"]
    assert schools["school"].notna().all()
    assert geographic.loc[geographic["geographic_level"] != "school", "school"].isna().all()
    # Regions rounded to 5 sum to England within 2 * (10 + 1) (sum of rounded counts).
    regions = dfe_cells(geographic, unit="region", year="2016/17")
    assert abs(int(regions["n_perm_excl"].sum()) - 7_720) <= 22


def test_single_suppressed_headcount(geographic: pd.DataFrame) -> None:
    raw = raw_rows("geographic")
    headcount_x = [r for r in raw if r["headcount"] == "x"]
    assert len(headcount_x) == 1  # SOURCES.md: one headcount is `x`
    assert geographic["n_pupils"].isna().sum() == 1
