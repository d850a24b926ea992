"""Formula comments cannot drift from the lines they annotate.

Every comment of the generated files that states a formula (it has `` = `` or
`` ← `` in it) must be one that ``emit.context`` printed from the expression IR
together with the code line below it: the pair (comment, statement) is looked
up among the IR's pairs. A formula typed into a template, or a comment above
another line than its own, fails here. The IR's pairs are collected
structurally (every ``{"comments", "target", "code"}`` record in the context),
so a new kind of line routed through ``emit._lines`` (the optimizer's, the
loss's) is checked as soon as it is printed that way.

The few formula comments that are not IR lines are listed in ``NOT_IR`` with
the reason; each entry must still match something in the gallery.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from mlpgen.compiler import build
from mlpgen.emit import context

from .conftest import ROOT, SPECS

GALLERY = ROOT / "generated"
FILES = ("numpy_backprop.py", "torch_manual.py", "torch_module.py")

# A comment states a formula when it has an equation or an update in it.
FORMULA = re.compile(r" = | ← ")

# Formula comments that are not printed from the IR, and why. Anything else
# with " = " or " ← " in it must be an IR line's comment, above that line.
NOT_IR = {
    # the initial parameters: the distribution's bounds, in words and fan_in
    r"^\S+ \([\d, ]+\): \w+, .*fan": "init note (emit._init_note)",
    # the data recipes (data.py), above a block of code rather than one line
    r"^A teacher network makes the targets: y = ": "data recipe",
    # the lr schedule's recursion, hand-written in _common.j2 by the loop track
    r"^lr_t = ": "lr schedule (template text)",
}


def ir_pairs(ctx) -> set[tuple[str, str]]:
    """(comment, normalized statement) for every IR-printed line in the context."""
    pairs: set[tuple[str, str]] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if {"comments", "target", "code"} <= node.keys():
                # the line as written ("statement": an in-place update such
                # as p -= lr * g), else target = code
                written = node.get("statement", f"{node['target']} = {node['code']}")
                stmt = normalize(written)
                for c in node["comments"]:
                    pairs.add((c, stmt))
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(ctx)
    return pairs


def normalize(code: str) -> str:
    return ast.unparse(ast.parse(code))


def formula_comments(source: str) -> list[tuple[int, str, str | None]]:
    """(line, comment text, the statement right below its comment block) for every
    own-line comment that states a formula; the statement None when code or a
    blank line does not follow the comment block directly."""
    lines = source.splitlines()
    statements: dict[int, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt):
            statements.setdefault(node.lineno, ast.unparse(node))
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        row = tok.start[0]
        if lines[row - 1].strip() != tok.string:  # a comment at the end of a code line
            continue
        text = tok.string.removeprefix("#").strip()
        if not FORMULA.search(text):
            continue
        below = row + 1
        while below <= len(lines) and lines[below - 1].strip().startswith("#"):
            below += 1
        out.append((row, text, statements.get(below)))
    return out


@pytest.fixture(scope="module")
def pairs():
    cache: dict[str, set[tuple[str, str]]] = {}

    def get(spec: Path) -> set[tuple[str, str]]:
        if spec.stem not in cache:
            cache[spec.stem] = ir_pairs(context(build(spec)))
        return cache[spec.stem]

    return get


def _exempt(text: str) -> str | None:
    return next(
        (why for pattern, why in NOT_IR.items() if re.search(pattern, text)), None
    )


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_formula_comment_is_printed_from_the_ir_with_its_line(spec, pairs):
    known = pairs(spec)
    checked = 0
    wrong = []
    for name in FILES:
        path = GALLERY / spec.stem / name
        for row, text, stmt in formula_comments(path.read_text()):
            if stmt is not None and (text, stmt) in known:
                checked += 1
            elif _exempt(text) is None:
                wrong.append(f"{spec.stem}/{name}:{row}: # {text}\n    above: {stmt}")
    assert not wrong, (
        "formula comments not printed from the IR with their line:\n" + "\n".join(wrong)
    )
    # every gradient line of both manual files was found and checked
    grads = sum(1 for c, _ in known if c.startswith("∂L/∂"))
    assert checked >= grads


def test_the_exemptions_are_still_needed():
    """Each NOT_IR pattern matches a comment of the gallery (else it goes)."""
    texts = [
        text
        for spec in SPECS
        for name in FILES
        for _, text, _ in formula_comments((GALLERY / spec.stem / name).read_text())
    ]
    for pattern in NOT_IR:
        assert any(re.search(pattern, t) for t in texts), pattern


def test_a_drifted_comment_is_caught(pairs):
    """The check itself: a comment edited by hand, or moved above another line, fails."""
    spec = ROOT / "specs" / "xor.yaml"
    source = (GALLERY / "xor" / "numpy_backprop.py").read_text()
    known = pairs(spec)
    good = [(t, s) for _, t, s in formula_comments(source) if (t, s) in known]
    assert (
        "∂L/∂act2 = 2/numel(act2) · (act2 − y)    (N, 1)",
        "d_act2 = 2.0 / act2.size * (act2 - y)",
    ) in good
    drifted = source.replace("d_act2 = 2.0 / act2.size", "d_act2 = 1.0 / act2.size")
    assert (
        "∂L/∂act2 = 2/numel(act2) · (act2 − y)    (N, 1)",
        "d_act2 = 1.0 / act2.size * (act2 - y)",
    ) in [(t, s) for _, t, s in formula_comments(drifted)]
    assert not all(
        (t, s) in known for _, t, s in formula_comments(drifted) if not _exempt(t)
    )
