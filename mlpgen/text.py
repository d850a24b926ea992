"""Escaping spec text for every place it lands: comments, docstrings, Markdown, shell.

Spec strings (descriptions, file names, CSV headers) never become code: each
filter makes the text inert where it is put. All of them start from
``one_line``, which removes what could end a comment or a Markdown block or
make code read differently from what runs: line breaks of every kind Python,
an editor or a browser honours, control characters, and the invisible
bidirectional-override characters of "Trojan Source" attacks. Names that do
reach code (the spec name, layer names) are validated as identifiers by
``spec.py`` instead. (The diagrams escape their labels in ``render.py``,
starting from ``one_line`` too.)
"""

from __future__ import annotations

import re
import shlex

_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")
# C0 and C1 controls but tab, bidirectional marks, embeddings, overrides and
# isolates, the byte-order mark, and the two non-characters XML forbids
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufffe\uffff]"
)


def one_line(text: str) -> str:
    """The text on one line: breaks become spaces, invisible controls go."""
    return _INVISIBLE.sub("", _BREAKS.sub(" ", str(text))).strip()


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


def shell_word(text: str) -> str:
    """Text as one word of a shell command line shown to be copied (quoted if need be)."""
    return shlex.quote(one_line(text))
