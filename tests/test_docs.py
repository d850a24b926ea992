"""The documentation: its links lead somewhere, and it covers what mlpgen has."""

from __future__ import annotations

import re

import pytest

from mlpgen import cli
from mlpgen.ops import LAYERS, LOSSES
from mlpgen.spec import DATA_KINDS, OPTIMIZERS

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPEC_FORMAT = (ROOT / "docs" / "spec-format.md").read_text(encoding="utf-8")
GENERATED = (ROOT / "docs" / "generated-files.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_relative_link_leads_to_a_file_and_its_section(doc):
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path) if path else doc
        assert file.is_file(), f"{doc.name}: {target}"
        if anchor and file.suffix == ".md":
            headings = re.findall(
                r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.MULTILINE
            )
            slugs = {
                re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-")
                for h in headings
            }
            assert anchor in slugs, f"{doc.name}: {target}"


def test_the_readme_links_both_references():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/spec-format.md)" in readme
    assert "](docs/generated-files.md)" in readme


@pytest.mark.parametrize(
    "registry, what",
    [
        (LAYERS, "layer type"),
        (LOSSES, "loss"),
        (DATA_KINDS, "data kind"),
        (OPTIMIZERS, "optimizer"),
    ],
)
def test_the_spec_reference_covers_every_registered_name(registry, what):
    missing = [name for name in registry if f"`{name}`" not in SPEC_FORMAT]
    assert not missing, f"docs/spec-format.md does not describe the {what}s {missing}"


def test_the_command_line_reference_covers_every_command():
    commands = cli.parser()._subparsers._group_actions[0].choices
    missing = [name for name in commands if f"`mlpgen {name}" not in GENERATED]
    assert not missing, f"docs/generated-files.md does not describe {missing}"


def test_the_sources_table_covers_the_seven_teaching_sources():
    """docs/sources.md: one row per source, each naming the specs that
    reproduce it (their links are checked above) and what still differs."""
    text = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    sources = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    for name in ("Learning PyTorch with Examples", "micrograd", "makemore",
                 "CS231n", "d2l.ai", "MLPClassifier", "network.py"):  # fmt: skip
        assert sum(name in s for s in sources) == 1, name
    for row in rows:
        cells = row.strip("|").split(" | ")
        assert len(cells) == 4 and "](../specs/" in cells[1] and cells[3].strip()
