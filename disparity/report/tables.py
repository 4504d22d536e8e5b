"""Small verbs that turn numbers into table text, and tables into Markdown or HTML.

Each verb does one thing: :func:`format_ratio`, :func:`format_interval`, :func:`format_rate`,
:func:`format_probability` and :func:`format_count` turn one value into text (missing values
become a GSS symbol, never ``nan``); :func:`markdown_table` and :func:`html_table` lay out a
frame of such text. A report is composed from them, so a changed table shows as a text diff.

Counts must pass through disclosure control (:func:`disparity.report.suppress.suppress_table`)
before they are formatted: :func:`format_count` shows the symbol the suppression gave
(``c`` suppressed, ``z`` not applicable, ``x`` not available) instead of the number.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import config

__all__ = [
    "format_ratio",
    "format_interval",
    "format_rate",
    "format_probability",
    "format_count",
    "format_estimate",
    "markdown_table",
    "html_table",
]

#: Symbols a count may carry instead of its value (GSS).
COUNT_SYMBOLS: tuple[str, ...] = (
    config.SYMBOL_SUPPRESSED,
    config.SYMBOL_NOT_APPLICABLE,
    config.SYMBOL_UNAVAILABLE,
)
_ALIGN = {"left": ":---", "right": "---:", "center": ":---:"}


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def format_ratio(value: Any, *, digits: int = 2, missing: str = config.SYMBOL_UNAVAILABLE) -> str:
    """A ratio with ``digits`` decimals (1 means no difference).

    Examples
    --------
    >>> format_ratio(1.2345), format_ratio(float("nan")), format_ratio(-0.001)
    ('1.23', 'x', '0.00')
    """
    if _missing(value):
        return missing
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def format_interval(
    low: Any, high: Any, *, digits: int = 2, missing: str = config.SYMBOL_UNAVAILABLE
) -> str:
    """An interval as ``"low to high"`` (words, not a dash, so negative bounds stay readable).

    Examples
    --------
    >>> format_interval(0.8, 1.25)
    '0.80 to 1.25'
    >>> format_interval(-0.5, 0.25, digits=1)
    '-0.5 to 0.2'
    >>> format_interval(float("nan"), 2.0)
    'x'
    """
    if _missing(low) or _missing(high):
        return missing
    return f"{format_ratio(low, digits=digits)} to {format_ratio(high, digits=digits)}"


def format_rate(
    value: Any, *, per: float = 100.0, digits: int = 2, missing: str = config.SYMBOL_UNAVAILABLE
) -> str:
    """A rate (a proportion, or events per pupil) scaled by ``per`` (100: per 100 pupils).

    Examples
    --------
    >>> format_rate(0.01234), format_rate(0.5, per=1, digits=1)
    ('1.23', '0.5')
    """
    if _missing(value):
        return missing
    return f"{float(value) * per:.{digits}f}"


def format_probability(value: Any, *, missing: str = config.SYMBOL_UNAVAILABLE) -> str:
    """A probability to two decimals, with ``>0.99`` and ``<0.01`` at the ends.

    Examples
    --------
    >>> format_probability(0.5), format_probability(0.999), format_probability(0.0)
    ('0.50', '>0.99', '<0.01')
    """
    if _missing(value):
        return missing
    p = float(value)
    if p > 0.99:
        return ">0.99"
    if p < 0.01:
        return "<0.01"
    return f"{p:.2f}"


def format_count(value: Any, symbol: str = "") -> str:
    """A count with thousands separators, or the symbol disclosure control gave it.

    Parameters
    ----------
    value : int, float or missing
        The count as published (rounded if the rules round).
    symbol : str
        ``""`` to show the value; ``"c"`` (suppressed), ``"z"`` (not applicable) or ``"x"``
        (not available) to show the symbol instead. A missing value with no symbol is ``x``.

    Examples
    --------
    >>> format_count(12345), format_count(2, "c"), format_count(float("nan"))
    ('12,345', 'c', 'x')
    """
    symbol = "" if _missing(symbol) else str(symbol)
    if symbol:
        if symbol not in COUNT_SYMBOLS:
            raise ValueError(
                f"unknown symbol {symbol!r}; valid symbols are {', '.join(COUNT_SYMBOLS)}"
            )
        return symbol
    if _missing(value):
        return config.SYMBOL_UNAVAILABLE
    return f"{int(round(float(value))):,}"


# --------------------------------------------------------------------------- layout
def _layout(
    frame: pd.DataFrame,
    columns: Sequence[str] | None,
    labels: Mapping[str, str] | None,
    align: Mapping[str, str] | None,
) -> tuple[list[str], list[str], list[str], list[list[str]]]:
    columns = list(frame.columns if columns is None else columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing!r} are not in the table; it has {list(frame.columns)!r}")
    labels = dict(labels or {})
    align = dict(align or {})
    bad = {c: a for c, a in align.items() if a not in _ALIGN}
    if bad:
        raise ValueError(f"alignment {bad!r} is not known; valid: {', '.join(_ALIGN)}")
    heads = [labels.get(c, c) for c in columns]
    aligns = [align.get(c, "left") for c in columns]
    body = [["" if _missing(v) else str(v) for v in row]
            for row in frame[columns].itertuples(index=False, name=None)]
    return columns, heads, aligns, body


def markdown_table(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    align: Mapping[str, str] | None = None,
) -> str:
    """A frame of text as a GitHub-flavoured Markdown table (no trailing newline).

    Parameters
    ----------
    frame : DataFrame
        Cells already formatted as text (use the ``format_*`` verbs first).
    columns : sequence of str, optional
        Columns to show, in order (default: all).
    labels : mapping, optional
        Header text per column (default: the column name).
    align : mapping, optional
        ``"left"`` (default), ``"right"`` or ``"center"`` per column.

    Examples
    --------
    >>> t = pd.DataFrame({"group": ["A", "B"], "n": ["10", "c"]})
    >>> print(markdown_table(t, labels={"n": "Pupils"}, align={"n": "right"}))
    | group | Pupils |
    |:---|---:|
    | A | 10 |
    | B | c |
    """
    _, heads, aligns, body = _layout(frame, columns, labels, align)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    lines = [line(heads), "|" + "|".join(_ALIGN[a] for a in aligns) + "|"]
    lines += [line(row) for row in body]
    return "\n".join(lines)


def html_table(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    align: Mapping[str, str] | None = None,
    *,
    caption: str | None = None,
) -> str:
    """A frame of text as an HTML ``<table>`` (text escaped; alignment as classes).

    Examples
    --------
    >>> t = pd.DataFrame({"group": ["A & B"], "n": ["10"]})
    >>> print(html_table(t, align={"n": "right"}))
    <table>
    <thead><tr><th class="l">group</th><th class="r">n</th></tr></thead>
    <tbody>
    <tr><td class="l">A &amp; B</td><td class="r">10</td></tr>
    </tbody>
    </table>
    """
    _, heads, aligns, body = _layout(frame, columns, labels, align)
    cls = {"left": "l", "right": "r", "center": "c"}
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(
        f'<th class="{cls[a]}">{html.escape(h)}</th>' for h, a in zip(heads, aligns)
    ) + "</tr></thead>")
    out.append("<tbody>")
    for row in body:
        out.append("<tr>" + "".join(
            f'<td class="{cls[a]}">{html.escape(v)}</td>' for v, a in zip(row, aligns)
        ) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return "\n".join(out)


def format_estimate(
    estimate: Any,
    low: Any = None,
    high: Any = None,
    *,
    scale: float = 1.0,
    digits: int = 2,
    missing: str = config.SYMBOL_UNAVAILABLE,
) -> str:
    """An estimate with its interval in brackets, all multiplied by ``scale``.

    Examples
    --------
    >>> format_estimate(1.5, 1.2, 1.9)
    '1.50 (1.20 to 1.90)'
    >>> format_estimate(0.012, -0.001, 0.02, scale=100)
    '1.20 (-0.10 to 2.00)'
    >>> format_estimate(2.0)
    '2.00'
    """
    if _missing(estimate):
        return missing
    text = format_ratio(float(estimate) * scale, digits=digits)
    if low is None or high is None or _missing(low) or _missing(high):
        return text
    return f"{text} ({format_interval(float(low) * scale, float(high) * scale, digits=digits)})"
