"""Report composition: formatting verbs, table layout, documents, and suppressed count tables."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from disparity.report import document as doc
from disparity.report.tables import (
    format_count,
    format_estimate,
    format_interval,
    format_probability,
    format_rate,
    format_ratio,
    html_table,
    markdown_table,
)
from disparity.runner import run_model


# --------------------------------------------------------------------------- verbs
def test_format_ratio_and_interval_round_half_even_free_cases():
    assert format_ratio(1.2349) == "1.23"
    assert format_ratio(0.205817, digits=3) == "0.206"
    assert format_ratio(math.nan) == "x"
    assert format_ratio(None, missing="z") == "z"
    assert format_ratio(-0.001) == "0.00"  # no negative zero
    assert format_interval(0.2201, 0.6067) == "0.22 to 0.61"
    assert format_interval(-0.18253, -0.04113) == "-0.18 to -0.04"
    assert format_interval(1.0, math.nan) == "x"


def test_format_estimate_scales_estimate_and_interval():
    # a risk difference of -0.1096 (-0.1825 to -0.0411) per 100 pupils, by hand
    assert format_estimate(-0.1096, -0.1825, -0.0411, scale=100) == "-10.96 (-18.25 to -4.11)"
    assert format_estimate(2.5, math.nan, 3.0) == "2.50"
    assert format_estimate(math.nan) == "x"


def test_format_count_honours_suppression_symbols():
    assert format_count(1234567) == "1,234,567"
    assert format_count(12.0) == "12"
    assert format_count(2, "c") == "c"  # the value is never shown under a symbol
    assert format_count(0, "z") == "z"
    assert format_count(pd.NA, "x") == "x"
    assert format_count(math.nan) == "x"  # missing without a symbol: not available
    assert format_count(5, pd.NA) == "5"
    with pytest.raises(ValueError, match="unknown symbol"):
        format_count(5, "low")


def test_format_rate_and_probability():
    assert format_rate(0.011764) == "1.18"  # per 100
    assert format_rate(0.5, per=1, digits=1) == "0.5"
    assert format_probability(0.996) == ">0.99"
    assert format_probability(0.004) == "<0.01"
    assert format_probability(0.4449) == "0.44"


# --------------------------------------------------------------------------- layout
def test_markdown_table_snapshot():
    frame = pd.DataFrame({
        "level": ["none (reference)", "ehcp | plan"],
        "ratio": [format_estimate(1.0), format_estimate(2.5, 1.6, 3.9)],
        "pupils": [format_count(1000), format_count(8, "c")],
    })
    text = markdown_table(frame, columns=["level", "pupils", "ratio"],
                          labels={"level": "SEN", "pupils": "Pupils", "ratio": "Risk ratio"},
                          align={"pupils": "right", "ratio": "right"})
    assert text == textwrap.dedent("""\
        | SEN | Pupils | Risk ratio |
        |:---|---:|---:|
        | none (reference) | 1,000 | 1.00 |
        | ehcp \\| plan | c | 2.50 (1.60 to 3.90) |""")


def test_markdown_table_rejects_unknown_column_and_alignment():
    frame = pd.DataFrame({"a": ["1"]})
    with pytest.raises(KeyError, match="'b'"):
        markdown_table(frame, columns=["b"])
    with pytest.raises(ValueError, match="valid: left, right, center"):
        markdown_table(frame, align={"a": "middle"})


def test_html_table_escapes_text_and_aligns():
    frame = pd.DataFrame({"unit": ["<A&B>"], "n": ["12"]})
    text = html_table(frame, labels={"n": "Pupils"}, align={"n": "right"}, caption="Counts")
    assert "<caption>Counts</caption>" in text
    assert '<td class="l">&lt;A&amp;B&gt;</td><td class="r">12</td>' in text
    assert '<th class="r">Pupils</th>' in text


def test_documents_link_figures_in_markdown_and_embed_them_in_html(tmp_path: Path):
    png = tmp_path / "figures" / "f.png"
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG fake")
    blocks = [doc.Heading("Results"), doc.Paragraph("Ratios of `sen`."),
              doc.Figure("figures/f.png", alt="A figure", caption="Caption.")]
    md = doc.to_markdown(blocks, title="T")
    assert md == ("# T\n\n## Results\n\nRatios of `sen`.\n\n"
                  "![A figure](figures/f.png)\n\n*Caption.*\n")
    page = doc.to_html(blocks, title="T", images=tmp_path)
    assert "<code>sen</code>" in page
    # base64 of the bytes written above (RFC 4648): self-contained, no file link
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page
    assert "figures/f.png" not in page


# --------------------------------------------------------------------------- suppression
def _tiny_model(tmp_path: Path, extra: str = "") -> Path:
    cells = pd.DataFrame({
        "sen": ["none", "support", "ehcp"],
        "n_perm_excl": [20, 10, 1],
        "n_pupils": [1000, 200, 50],
    })
    cells.to_csv(tmp_path / "cells.csv", index=False)
    model = tmp_path / "tiny.toml"
    model.write_text(textwrap.dedent("""\
        [data]
        path = "cells.csv"
        [model]
        family = "binomial"
        events = "n_perm_excl"
        trials = "n_pupils"
        formula = "sen"
        [model.reference]
        sen = "none"
        [fit]
        engine = "glm"
        seed = 3
        [report]
        n_draws = 200
        """) + extra)
    return model


def test_count_table_in_report_is_suppressed(tmp_path: Path):
    out = run_model(_tiny_model(tmp_path), tmp_path / "run", progress=False)
    md = (out / "report.md").read_text(encoding="utf-8")
    # ehcp has 1 event (< min_events 3): suppressed (primary). With the total published it
    # could be recovered as 31 - 20 - 10, so the smallest other event count (support, 10)
    # is suppressed too (secondary). Rates follow their events. Pupils are all >= 10.
    expected = textwrap.dedent("""\
        | SEN | Pupils | Events | Per 100 pupils |
        |:---|---:|---:|---:|
        | none | 1,000 | 20 | 2.00 |
        | support | 200 | c | c |
        | ehcp | 50 | c | c |
        | Total | 1,250 | 31 | 2.48 |""")
    assert expected in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert re.search(r'<td class="l">ehcp</td><td class="r">50</td><td class="r">c</td>', html)


def test_suppression_thresholds_come_from_the_model_file(tmp_path: Path):
    model = _tiny_model(tmp_path, "[report.suppression]\nmin_events = 1\nround_to = 5\n")
    out = run_model(model, tmp_path / "run", progress=False)
    md = (out / "report.md").read_text(encoding="utf-8")
    # nothing is below the thresholds now; counts are rounded to 5 (halves up: 1 -> 0,
    # 31 -> 30), rates from the unrounded counts (1/50 = 2.00 per 100)
    assert "| ehcp | 50 | 0 | 2.00 |" in md
    assert "| Total | 1,250 | 30 | 2.48 |" in md
    assert "rounded to the nearest 5" in md
