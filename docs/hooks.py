"""MkDocs hook: tidy the Sphinx roles of the numpydoc docstrings in the API pages.

The docstrings are written for numpydoc, whose cross-references are Sphinx roles
(``:func:`collapse```, ``:class:`~disparity.result.Result```) and citations (``[1]_``).
mkdocstrings renders the role's target as code but leaves the role name in front of it;
this hook drops the role name (and a leading ``~``, keeping the last dotted part, as Sphinx
does) and the citation underscore, after each page is converted to HTML.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|data|mod|meth|attr|exc|obj|const):<code>(~?)([^<]*)</code>")
_CITATION = re.compile(r"(\[\d+\])_")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **_: object) -> str:
    """Drop Sphinx role names and citation underscores from a rendered page."""
    return _CITATION.sub(r"\1", _ROLE.sub(_code, html))
