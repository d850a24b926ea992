"""Escaping spec text for every place it lands: comments, docstrings, Markdown, DOT.

Spec strings (descriptions, file names) never become code: each filter makes
the text inert where it is put. Names that do reach code (the spec name, layer
names) are validated as identifiers by ``spec.py`` instead.
"""

from __future__ import annotations

import re

_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def one_line(text: str) -> str:
    """Line breaks (every kind Python or an editor might honour) become spaces."""
    return _CONTROL.sub("", _BREAKS.sub(" ", str(text))).strip()


def comment(text: str) -> str:
    """Text after ``#``: a single line, so nothing can start a new statement."""
    return one_line(text)


def docstring(text: str) -> str:
    """Text inside a ``\"\"\"`` docstring: one line, backslashes and quotes escaped."""
    return one_line(text).replace("\\", "\\\\").replace('"', '\\"')


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def markdown(text: str) -> str:
    """Plain text in Markdown: HTML and Markdown syntax escaped, one line."""
    t = one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", t)


def table_cell(text: str) -> str:
    """Text in a Markdown table cell (code formulas in backticks keep their look)."""
    return one_line(text).replace("|", "\\|")
