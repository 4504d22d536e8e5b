"""A report as a list of blocks, written once as Markdown and once as self-contained HTML.

Blocks are values: :class:`Heading`, :class:`Paragraph`, :class:`Bullets`, :class:`Table`
(text already formatted with :mod:`disparity.report.tables`) and :class:`Figure` (a PNG
beside the report). :func:`to_markdown` links figures by relative path;
:func:`to_html` embeds each PNG as a base64 ``data:`` URI, so the HTML file stands alone.
Inline markup is limited to ``code`` spans in backticks, which both writers understand.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

import pandas as pd

from .tables import html_table, markdown_table

__all__ = ["Heading", "Paragraph", "Bullets", "Table", "Figure", "to_markdown", "to_html"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    columns: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    align: Mapping[str, str] = field(default_factory=dict)
    caption: str = ""
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """A figure saved beside the report: ``path`` is the PNG, relative to the report."""

    path: str
    alt: str
    caption: str = ""


Block = Union[Heading, Paragraph, Bullets, Table, Figure]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #3b6ea8; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem;
        font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e3e3e3; vertical-align: top; }
thead th { border-bottom: 2px solid #999; background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fbfbfb; }
.l { text-align: left; } .r { text-align: right; } .c { text-align: center; }
.note { font-size: .85rem; color: #555; margin-top: -.3rem; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: .88rem; color: #444; }
code { background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; font-size: .9em; }
""".strip()

_CODE = re.compile(r"`([^`]+)`")


def _inline_html(text: str) -> str:
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))


def to_markdown(blocks: Sequence[Block], *, title: str) -> str:
    """The report as Markdown (figures as relative image links); ends with a newline.

    Examples
    --------
    >>> print(to_markdown([Paragraph("Rates by `sen`.")], title="Report"), end="")
    # Report
    <BLANKLINE>
    Rates by `sen`.
    """
    parts = [f"# {title}"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            text = markdown_table(block.frame, block.columns, block.labels, block.align)
            if block.caption:
                text = f"**{block.caption}**\n\n{text}"
            if block.note:
                text += f"\n\n*{block.note}*"
            parts.append(text)
        elif isinstance(block, Figure):
            text = f"![{block.alt}]({block.path})"
            if block.caption:
                text += f"\n\n*{block.caption}*"
            parts.append(text)
        else:  # pragma: no cover - the Block union is closed
            raise TypeError(f"not a report block: {block!r}")
    return "\n\n".join(parts) + "\n"


def to_html(blocks: Sequence[Block], *, title: str,
            images: Mapping[str, bytes] | str | Path) -> str:
    """The report as one self-contained HTML page, its PNG figures embedded as data URIs.

    ``images`` maps each figure's path to its PNG bytes (or is a folder to read them from).

    Examples
    --------
    >>> page = to_html([Heading("Methods"), Paragraph("A & B")], title="Report", images={})
    >>> "<h2>Methods</h2>" in page and "A &amp; B" in page
    True
    """
    body = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline_html(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            body.append(html_table(block.frame, block.columns, block.labels, block.align,
                                   caption=block.caption or None))
            if block.note:
                body.append(f'<p class="note">{_inline_html(block.note)}</p>')
        elif isinstance(block, Figure):
            png = (images[block.path] if isinstance(images, Mapping)
                   else (Path(images) / block.path).read_bytes())
            data = base64.b64encode(png).decode("ascii")
            caption = (f"<figcaption>{_inline_html(block.caption)}</figcaption>"
                       if block.caption else "")
            body.append(f'<figure><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(block.alt)}">{caption}</figure>')
        else:  # pragma: no cover
            raise TypeError(f"not a report block: {block!r}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )
