"""Tests of disparity.read: file formats, broken files, and telling the kind of a table."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disparity.errors import ReadError, SpecError
from disparity.read import EXTENSIONS, KINDS, detect_kind, read_columns, read_data, read_frame

BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- formats
def test_excel_csv_with_bom_and_crlf(tmp_path):
    # Bytes as Excel's "CSV UTF-8" writes them: byte-order mark, CRLF line ends; the
    # header also has spaces around two names.
    path = tmp_path / "pupils.csv"
    path.write_bytes(
        BOM
        + b"pupil_id , year,la,school,sen,perm_excl\r\n"
        + b"007,2016/17,E09000013,A,none,0\r\n"
        + b"8,2016/17,E09000013,A,support,1\r\n"
    )
    frame = read_frame(path)
    assert list(frame.columns) == ["pupil_id", "year", "la", "school", "sen", "perm_excl"]
    # The identifier keeps its leading zeros, so it stays text; the outcome becomes int64.
    assert frame["pupil_id"].tolist() == ["007", "8"]
    assert frame["year"].tolist() == ["2016/17", "2016/17"]
    assert frame["sen"].tolist() == ["none", "support"]
    assert frame["perm_excl"].dtype == "int64"
    assert frame["perm_excl"].tolist() == [0, 1]
    # No carriage return is left on the last column or in a value.
    assert not any("\r" in c for c in frame.columns)
    assert list(frame.index) == [0, 1]


def test_gzip_csv(tmp_path):
    path = tmp_path / "cells.csv.gz"
    path.write_bytes(gzip.compress(BOM + b"la,n_pupils,n_perm_excl\r\nE1,120,2\r\nE2,80,\r\n"))
    frame = read_frame(path)
    assert frame["la"].tolist() == ["E1", "E2"]
    assert frame["n_pupils"].dtype == "int64"
    # A blank count is missing, so the column is nullable Int64, never zero.
    assert frame["n_perm_excl"].dtype == "Int64"
    assert frame["n_perm_excl"].iloc[0] == 2
    assert frame["n_perm_excl"].isna().tolist() == [False, True]


def test_parquet_round_trip_strips_header(tmp_path):
    original = pd.DataFrame({" herd ": ["a", "b"], "size": [20, 15], "incidence": [3, 0]})
    path = tmp_path / "herds.parquet"
    original.to_parquet(path)
    frame = read_frame(path)
    assert list(frame.columns) == ["herd", "size", "incidence"]
    assert frame["size"].tolist() == [20, 15]
    assert frame["incidence"].tolist() == [3, 0]


def test_excel_padding_is_dropped(tmp_path):
    # Excel can add a trailing empty column (",") and trailing empty rows (",,,").
    path = tmp_path / "padded.csv"
    path.write_bytes(b"herd,size,\r\na,20,\r\nb,15,\r\n,,\r\n,,\r\n")
    frame = read_frame(path)
    assert list(frame.columns) == ["herd", "size"]
    assert frame["herd"].tolist() == ["a", "b"]


def test_numbers_are_read_without_loss(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        "id,big,rate,code,count\n"
        "01,12345678901234567890,0.5,x,1\n"
        "2,1,1.25,7,\n"
    )
    frame = read_frame(path)
    assert frame["id"].tolist() == ["01", "2"]  # leading zero kept
    assert frame["big"].tolist() == ["12345678901234567890", "1"]  # beyond int64: text
    assert frame["rate"].tolist() == [0.5, 1.25]
    assert frame["code"].tolist() == ["x", "7"]  # a suppression marker keeps it text
    assert frame["count"].dtype == "Int64"


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=20),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_integer_columns_round_trip(tmp_path_factory, counts, crlf, bom):
    path = tmp_path_factory.mktemp("rt") / "counts.csv"
    end = "\r\n" if crlf else "\n"
    text = "n_pupils" + end + end.join(str(c) for c in counts) + end
    path.write_bytes((BOM if bom else b"") + text.encode())
    frame = read_frame(path)
    assert frame["n_pupils"].tolist() == counts
    assert frame["n_pupils"].dtype == "int64"


# --------------------------------------------------------------------------- broken files
def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(ReadError, match="file not found") as err:
        read_frame(path)
    assert str(path) in str(err.value)
    assert "Check the spelling" in str(err.value)


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(ReadError, match="it is a folder"):
        read_frame(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(ReadError, match=r"the file is empty \(0 bytes\)") as err:
        read_frame(path)
    assert str(path) in str(err.value)
    assert "header row" in str(err.value)


def test_blank_lines_only(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\r\n\r\n")
    with pytest.raises(ReadError, match="the file is empty"):
        read_frame(path)


@pytest.mark.parametrize("content", [b"a,b\n", BOM + b"la,n_pupils\r\n", b"a,b"])
def test_header_only_file(tmp_path, content):
    path = tmp_path / "header.csv"
    path.write_bytes(content)
    with pytest.raises(ReadError, match="but no data rows") as err:
        read_frame(path)
    assert str(path) in str(err.value)


def test_header_only_parquet(tmp_path):
    path = tmp_path / "header.parquet"
    pd.DataFrame({"la": pd.Series([], dtype="str")}).to_parquet(path)
    with pytest.raises(ReadError, match=r"header \('la'\) but no data rows"):
        read_frame(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    good = tmp_path / "good.parquet"
    pd.DataFrame({"a": range(100)}).to_parquet(good)
    path.write_bytes(good.read_bytes()[:-20])  # cut short: the footer is gone
    with pytest.raises(ReadError, match="as Parquet") as err:
        read_frame(path)
    assert str(path) in str(err.value)
    assert "write it again" in str(err.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * 1000)[:30])
    with pytest.raises(ReadError, match="as CSV") as err:
        read_frame(path)
    assert "export it again" in str(err.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("school,la\nSt Chad\u2019s,E1\n".encode("cp1252"))
    with pytest.raises(ReadError, match="not UTF-8") as err:
        read_frame(path)
    assert "CSV UTF-8" in str(err.value)


def test_unknown_extension_lists_valid_ones(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ReadError, match="unknown file type '.xlsx'") as err:
        read_frame(path)
    for ending in EXTENSIONS:
        assert repr(ending) in str(err.value)


def test_repeated_header_after_stripping(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("la,la ,n_pupils\nE1,E1,3\n")
    with pytest.raises(ReadError, match="names a column more than once \\('la' in columns 1, 2\\)"):
        read_frame(path)


# --------------------------------------------------------------------------- kinds
@pytest.mark.parametrize(
    ("columns", "kind"),
    [
        (["time_identifier", "time_period", "geographic_level", "headcount"], "dfe"),
        (["pupil_id", "year", "la", "school", "perm_excl"], "pupils"),
        # A pupils table holds the count outcome n_susp: still pupils, not cells.
        (["pupil_id", "year", "n_susp"], "pupils"),
        (["la", "sen", "n_pupils", "n_perm_excl"], "cells"),
        (["herd", "size", "n_incidence"], "cells"),
    ],
)
def test_detect_kind(columns, kind):
    assert detect_kind(pd.DataFrame(columns=columns)) == kind


def test_detect_kind_unknown_says_what_each_kind_needs():
    frame = pd.DataFrame(columns=["Pupil_ID", "Year", "School"])
    with pytest.raises(ReadError) as err:
        detect_kind(frame, source="teacher.csv")
    message = str(err.value)
    assert "'teacher.csv'" in message
    for needed in ("'time_period'", "'geographic_level'", "'pupil_id'", "'n_pupils'"):
        assert needed in message
    assert "--kind" in message
    assert "'Pupil_ID' (for 'pupil_id')" in message


def test_read_columns_reads_header_only(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_bytes(BOM + b" la ,n_pupils\r\nE1,3\r\n")
    assert read_columns(path) == ["la", "n_pupils"]


def test_read_data_detects_kind(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("la,n_pupils,n_perm_excl\nE1,120,2\nE2,80,0\n")
    kind, frame = read_data(path)
    assert kind == "cells"
    assert frame["n_pupils"].tolist() == [120, 80]


def test_read_data_given_kind_overrides_detection(tmp_path):
    path = tmp_path / "herds.csv"
    path.write_text("herd,size,incidence\na,20,3\n")
    with pytest.raises(ReadError, match="--kind"):
        read_data(path)
    kind, frame = read_data(path, kind="cells")
    assert kind == "cells"
    assert frame["incidence"].tolist() == [3]


def test_read_data_rejects_unknown_kind(tmp_path):
    with pytest.raises(SpecError, match="unknown kind 'cell'") as err:
        read_data(tmp_path / "x.csv", kind="cell")
    for kind in KINDS:
        assert repr(kind) in str(err.value)


def test_read_data_hands_dfe_files_to_the_dfe_reader(tmp_path, monkeypatch):
    path = tmp_path / "dfe.csv"
    path.write_text("time_period,geographic_level,headcount\n201617,National,100\n")
    calls = []
    sentinel = pd.DataFrame({"year": ["2016/17"]})

    def fake_read_dfe(given):
        calls.append(given)
        return sentinel

    monkeypatch.setattr("disparity.dfe.read_dfe", fake_read_dfe)
    kind, frame = read_data(path)
    assert kind == "dfe"
    assert frame is sentinel
    assert calls == [path]
    kind, frame = read_data(path, kind="dfe")
    assert (kind, len(calls)) == ("dfe", 2)
