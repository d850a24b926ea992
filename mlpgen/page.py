"""The learning page (README.md), the spec's copy, and the explorer (index.html).

``readme_context`` hands README.md.j2 what it shows beyond ``emit.context``:
the spec (copied into the output folder, its leading comment as the page's
introduction), the ``mlpgen check`` warnings, the rules used, the notation
legend, the first step's numbers, and the figures and results that
``compile --plot`` made (or how to get them).

``explorer`` writes index.html: one self-contained file (inline SVG, CSS and
JavaScript, no network) in which selecting a node of the forward or backward
graph shows its formula, its first-step value and gradient, and highlights
the lines that compute it in numpy_backprop.py, torch_manual.py and
torch_module.py side by side. Which lines those are is found in the formatted
text (``line_map``): each derived line sits under the very comment the
Program printed above it, and ``ast`` gives each statement's extent.
"""

from __future__ import annotations

import ast
import bisect
import functools
import json
import re
from pathlib import Path

from . import graph as G
from . import notation
from .autodiff import Line, Program, param
from .expr import math_text
from .graph import INPUT
from .lint import warnings
from .ops import LAYERS, LOSSES
from .render import line_stat, line_tensor, loss_rows
from .spec import class_name
from .text import one_line
from .values import Step, num

IMPLEMENTATIONS = ("numpy_backprop.py", "torch_manual.py", "torch_module.py")


# ------------------------------------------------------------------ the spec


def spec_copy(prog: Program) -> tuple[str, str] | None:
    """(file name, text) of the spec to put beside the generated files, or None
    when it was not read from a file. A data file's path is rewritten to the
    copy of the data that lies beside it, so that the commands on the page
    work from the page's folder."""
    spec = prog.net.spec
    try:
        text = Path(spec.source).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    data_file = prog.net.data.file
    if data_file is not None and data_file.source != data_file.name:
        pattern = re.compile(
            r"""(["']?path["']?\s*:\s*)(["']?)"""
            + re.escape(data_file.source)
            + r"""\2(?=\s*[,}\n#]|\s*$)"""
        )
        text, count = pattern.subn(
            lambda m: m.group(1) + m.group(2) + data_file.name + m.group(2), text
        )
        if count != 1:
            return None  # not sure where the path is: better no copy than a wrong one
    return Path(spec.source).name, text


def intro(text: str | None) -> list[str]:
    """The spec's leading comment (its ``#`` lines before the first key), as
    paragraphs of plain text."""
    if text is None:
        return []
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if stripped:
                break
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        body = stripped.lstrip("#").strip()
        if body:
            current.append(body)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return [one_line(p) for p in paragraphs]


# ------------------------------------------------------------------ README


def _optimizer_constants(prog: Program):
    from .emit import _optimizer

    return _optimizer(prog.net.spec)["constants"]


def _update_symbols(prog: Program) -> list[dict]:
    from .emit import update_symbols

    return update_symbols(prog.net.spec)


def formula_texts(prog: Program) -> list[str]:
    """Every formula the page prints: forward, loss, backward, rules."""
    net = prog.net
    texts = [f"{math_text(ln.target)} = {math_text(ln.expr)}" for ln in prog.forward]
    texts += [f"{math_text(ln.target)} = {math_text(ln.expr)}" for ln in prog.backward]
    texts += loss_rows(prog)
    for t in dict.fromkeys(layer.op.name for layer in net.layers):
        texts += [LAYERS[t].formula, LAYERS[t].derivative]
    loss = LOSSES[net.spec.loss.type]
    texts += [loss.formula, loss.derivative]
    return texts


def _norm_rows(prog: Program, step: Step | None) -> list[dict]:
    """Per parameter: the norms of it and of its first-step gradient, and their ratio."""
    if step is None:
        return []
    rows = []
    for pi in prog.params:
        p, g = step.params.get(pi.state_name), step.grads.get(pi.state_name)
        if p is None or g is None:
            continue
        ratio = g.norm / p.norm if p.norm else float("inf")
        rows.append(
            {
                "name": pi.state_name,
                "norm": num(p.norm),
                "grad": num(g.norm),
                "ratio": num(ratio),
            }
        )
    return rows


def _trend(prog: Program, step: Step | None) -> str | None:
    """One sentence on how the weights' gradient norms change from the first
    layer to the last: vanishing or exploding gradients, when they are."""
    if step is None:
        return None
    # along the trunk only: across branches, first and last say nothing of depth
    trunk = set(G.spine(prog.net))
    names = [
        pi.state_name
        for pi in prog.params
        if pi.param.name == "weight" and pi.layer.name in trunk
    ]
    names = [n for n in names if n in step.grads]
    if len(names) < 3:
        return None
    first, last = step.grads[names[0]].norm, step.grads[names[-1]].norm
    if not (first > 0 and last > 0):
        return None
    ratio = last / first
    said = (
        f"From `{names[-1]}` back to `{names[0]}`, ‖∂L/∂W‖ goes from {num(last)} "
        f"to {num(first)}"
    )
    why = (
        "each layer's backward step multiplies the gradient by that layer's "
        "weights and by the derivative of its activation"
    )
    if ratio >= 100:
        return (
            f"{said}: {num(ratio)} times smaller. {why[0].upper() + why[1:]}, and "
            "here the product shrinks on the way back to the input, so the first "
            "layers barely learn: vanishing gradients."
        )
    if ratio <= 0.01:
        return (
            f"{said}: {num(1 / ratio)} times larger. {why[0].upper() + why[1:]}, and "
            "here the product grows on the way back to the input: exploding gradients."
        )
    return f"{said} ({why}); no vanishing or exploding gradient here."


def readme_context(
    prog: Program, step: Step | None = None, results=None, present=()
) -> dict:
    """What README.md.j2 needs beyond ``emit.context``. ``present``: the names
    of the files in the output folder (the page links only to those)."""
    from .results import page as results_page
    from .results import planned_figures

    net = prog.net
    types = list(dict.fromkeys(layer.op.name for layer in net.layers))
    loss = LOSSES[net.spec.loss.type]
    copy = spec_copy(prog)
    texts = formula_texts(prog)
    repeats = G.repeated_blocks(net)
    page_results = results_page(results)
    if page_results is not None:
        page_results["parts"] = list(results.points)
    return {
        "rules": [
            {
                "type": t,
                "formula": LAYERS[t].formula,
                "derivative": LAYERS[t].derivative,
            }
            for t in types
        ],
        "loss_rule": {
            "type": loss.name,
            "formula": loss.formula,
            "derivative": loss.derivative,
        },
        "loss_formula_named": "; ".join(loss_rows(prog)),
        "spec_copy": copy[0] if copy else None,
        "spec_text": copy[1].rstrip("\n") if copy else None,
        "intro": intro(copy[1] if copy else None),
        "warnings": [f"{path}: {message}" for path, message in warnings(prog)],
        "notation": notation.used(texts),
        "constants": notation.constants(prog, _optimizer_constants(prog)),
        "update_symbols": _update_symbols(prog),
        "step": None if step is None else {"loss": num(step.loss)},
        "norms": _norm_rows(prog, step),
        "trend": _trend(prog, step),
        "repeats": "; ".join(
            f"the {len(r.blocks)} blocks {r.blocks[0].layers[0]} … "
            f"{r.blocks[-1].layers[-1]}, built alike"
            for r in repeats
        ),
        "results": page_results,
        "planned": planned_figures(prog),
        "present": set(present),
    }


# ------------------------------------------------------------------ lines


def _end(node: ast.stmt) -> int:
    """The last line of a statement (Python 3.8+ always sets it)."""
    return node.end_lineno or node.lineno


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> tuple[ast.Module, dict[int, int]]:
    """A generated file's syntax tree and its statements' spans, once per text
    (the page and the explorer ask the same file several times)."""
    tree = ast.parse(text)
    return tree, _statements(tree)


def _statements(tree: ast.AST) -> dict[int, int]:
    """First line -> last line of every statement (1-based), at any depth."""
    spans: dict[int, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            spans.setdefault(node.lineno, _end(node))
    return spans


def _function(
    tree: ast.AST, name: str, cls: str | None = None
) -> ast.FunctionDef | None:
    for node in ast.walk(tree):
        if cls is not None and isinstance(node, ast.ClassDef) and node.name == cls:
            return _function(node, name)
        if cls is None and isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


class _Comments:
    """Where each comment line of a text is: one pass over the text, then each
    question a lookup (a page for a network of a thousand layers asks thousands)."""

    def __init__(self, lines: list[str]):
        self.at: dict[str, list[int]] = {}
        for i, line in enumerate(lines):
            text = line.strip()
            if text.startswith("#"):
                self.at.setdefault(text, []).append(i)

    def find(self, comment: str, start: int, stop: int) -> int | None:
        """The index of the line ``# comment`` in lines[start:stop], or None."""
        found = self.at.get("# " + one_line(comment), [])
        i = bisect.bisect_left(found, start)
        return found[i] if i < len(found) and found[i] < stop else None


def _manual_lines(prog: Program, text: str) -> dict[str, list[tuple[int, int]]]:
    """numpy_backprop.py or torch_manual.py: node id -> line ranges (1-based,
    inclusive), found under the comments the Program printed."""
    tree, spans = _parsed(text)
    lines = text.splitlines()
    comments = _Comments(lines)
    out: dict[str, list[tuple[int, int]]] = {}

    def block(line: Line, fn: ast.FunctionDef | None) -> tuple[int, int] | None:
        if fn is None:
            return None
        last = comments.find(line.comments[-1], fn.lineno, _end(fn))
        if last is None or last + 2 not in spans:
            return None
        first = last
        for c in reversed(line.comments[:-1]):
            if first > 0 and lines[first - 1].strip() == "# " + one_line(c):
                first -= 1
        return (first + 1, spans[last + 2])

    forward, backward = _function(tree, "forward"), _function(tree, "backward")
    for line in prog.forward:
        span = block(line, forward)
        if span:
            out.setdefault(line.layer, []).append(span)
    for line in prog.backward:
        span = block(line, backward)
        if span:
            out.setdefault(line.target.code, []).append(span)
            owner = line.layer or "loss"
            out.setdefault(f"{owner}#backward", []).append(span)
    loss_fn = _function(tree, "loss_fn")
    if loss_fn is not None:
        out.setdefault("loss", []).append((loss_fn.lineno, _end(loss_fn)))
    init = _function(tree, "init_params")
    if init is not None:
        # the line index of each '"name": …' entry of init_params' dict
        entries: dict[str, list[int]] = {}
        for i in range(init.lineno - 1, _end(init)):
            head, colon, _ = lines[i].strip().partition(":")
            if colon and head.startswith('"'):
                entries.setdefault(head, []).append(i)
        for pi in prog.params:
            for i in entries.get(f'"{pi.state_name}"', []):
                end = i + 1
                while end < _end(init) and not lines[end - 1].rstrip().endswith(","):
                    end += 1
                start = i
                if start > 0 and lines[start - 1].strip().startswith(
                    "# " + pi.state_name + " "
                ):
                    start -= 1
                out.setdefault(param(pi.state_name).code, []).append((start + 1, end))
    load = _function(tree, "load_data")
    if load is not None:
        out.setdefault(INPUT, []).append((load.lineno, _end(load)))
        out.setdefault("y", []).append((load.lineno, _end(load)))
    return out


def _module_lines(prog: Program, text: str) -> dict[str, list[tuple[int, int]]]:
    """torch_module.py: each layer's ``self.<name> = …`` in ``__init__`` and
    the line of ``forward`` that computes it; the loss's criterion and
    loss_fn; the ``loss.backward()`` that autograd runs for every gradient."""
    tree, _ = _parsed(text)
    out: dict[str, list[tuple[int, int]]] = {}
    code_name = getattr(prog, "code_name", lambda name: name)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    # the model: the class named after the spec (others are helper modules)
    cls = next((c for c in classes if c.name == class_name(prog.net.spec.name)), None)
    names = {layer.name for layer in prog.net.layers}
    by_variable: dict[str, list[str]] = {}  # forward's variable -> its layers
    for layer in prog.net.layers:
        by_variable.setdefault(code_name(layer.name), []).append(layer.name)
    if cls is not None:
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            for stmt in ast.walk(fn):
                if not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                    continue
                targets = (
                    stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                )
                for t in targets:
                    if (
                        fn.name == "__init__"
                        and isinstance(t, ast.Attribute)
                        and t.attr in names
                    ):
                        out.setdefault(t.attr, []).append((stmt.lineno, _end(stmt)))
                    if fn.name == "forward" and isinstance(t, ast.Name):
                        for owner in by_variable.get(t.id, []):
                            out.setdefault(owner, []).append((stmt.lineno, _end(stmt)))
    backward_call = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "criterion" for t in node.targets
        ):
            out.setdefault("loss", []).append((node.lineno, _end(node)))
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "backward"
        ):
            backward_call = (node.lineno, _end(node))
    loss_fn = _function(tree, "loss_fn")
    if loss_fn is not None:
        out.setdefault("loss", []).append((loss_fn.lineno, _end(loss_fn)))
    load = _function(tree, "load_data")
    if load is not None:
        out.setdefault(INPUT, []).append((load.lineno, _end(load)))
        out.setdefault("y", []).append((load.lineno, _end(load)))
    if backward_call is not None:
        out["#backward"] = [backward_call]
    return out


def line_map(prog: Program, texts: dict[str, str]) -> dict[str, dict[str, list]]:
    """For every node of both diagrams: file -> line ranges (1-based, inclusive)
    that compute it, in the three implementations.

    A layer maps to its forward line(s); a gradient to its derived line (and,
    in torch_module.py, where autograd derives it: the layer's forward line
    and ``loss.backward()``); a parameter to its initialisation; the loss to
    its function.
    """
    per_file = {
        "numpy_backprop.py": _manual_lines(prog, texts["numpy_backprop.py"]),
        "torch_manual.py": _manual_lines(prog, texts["torch_manual.py"]),
        "torch_module.py": _module_lines(prog, texts["torch_module.py"]),
    }
    module = per_file["torch_module.py"]
    nodes: dict[str, dict[str, list]] = {}

    def add(node: str, file: str, spans) -> None:
        if spans:
            entry = nodes.setdefault(node, {f: [] for f in IMPLEMENTATIONS})
            for span in spans:
                if list(span) not in entry[file]:
                    entry[file].append(list(span))

    for node in [INPUT, "y", "loss", *(layer.name for layer in prog.net.layers)]:
        for file in IMPLEMENTATIONS:
            add(node, file, per_file[file].get(node, []))
    for pi in prog.params:
        code = param(pi.state_name).code
        for file in IMPLEMENTATIONS[:2]:
            add(code, file, per_file[file].get(code, []))
        add(code, "torch_module.py", module.get(pi.layer.name, [])[:1])
    for line in prog.backward:
        code = line.target.code
        for file in IMPLEMENTATIONS[:2]:
            add(code, file, per_file[file].get(code, []))
        owner = line.layer or "loss"
        add(
            code,
            "torch_module.py",
            module.get(owner, [])[-1:] + module.get("#backward", []),
        )
    return nodes


# ------------------------------------------------------------------ explorer


def _strip_svg(svg: str) -> str:
    """An SVG document as an element to put inline: no XML declaration, doctype
    or comments."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else ""
    return re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL).strip()


def _node_entries(prog: Program, step: Step | None) -> dict[str, dict]:
    """Every node of both diagrams: its title, formulas, and numbers."""
    net = prog.net
    tensors = step.tensors if step else {}
    tgrads = step.tensor_grads if step else {}
    pgrads = step.grads if step else {}
    pvals = step.params if step else {}
    g = net.graph
    nodes: dict[str, dict] = {}

    def stats(value=None, grad=None):
        out = {}
        if value is not None:
            out["value"] = value.json()
        if grad is not None:
            out["grad"] = grad.json()
        return out

    nodes[INPUT] = {
        "title": "x: the input",
        "kind": "input",
        "formulas": [],
        "reads": [],
        "readby": list(g.successors(INPUT)),
        **stats(tensors.get(INPUT)),
    }
    nodes["y"] = {
        "title": "y: the targets",
        "kind": "targets",
        "formulas": [],
        "reads": [],
        "readby": ["loss"],
    }
    forward: dict[str, list[str]] = {}
    for ln in prog.forward:
        mode = {"train": "in training: ", "eval": "in evaluation: "}.get(ln.mode, "")
        forward.setdefault(ln.layer, []).append(
            f"{mode}{math_text(ln.target)} = {math_text(ln.expr)}"
        )
    backward_of: dict[str, list[str]] = {}
    for line in prog.backward:
        backward_of.setdefault(line.layer or "loss", []).append(
            f"{math_text(line.target)} = {math_text(line.expr)}"
        )
    for layer in net.layers:
        nodes[layer.name] = {
            "title": f"{layer.name}: {layer.op.name}, (N, {layer.out_features})",
            "kind": "layer",
            "formulas": forward[layer.name],
            "backward": backward_of.get(layer.name, []),
            "rule": [LAYERS[layer.op.name].formula, LAYERS[layer.op.name].derivative],
            "reads": list(layer.inputs),
            "readby": list(g.successors(layer.name)) or ["loss"],
            **stats(tensors.get(layer.name), tgrads.get(layer.name)),
        }
    for pi in prog.params:
        nodes[param(pi.state_name).code] = {
            "title": f"{pi.state_name}: a parameter, {pi.param.shape}",
            "kind": "parameter",
            "formulas": [],
            "reads": [],
            "readby": [pi.layer.name],
            **stats(pvals.get(pi.state_name), pgrads.get(pi.state_name)),
        }
    loss = LOSSES[net.spec.loss.type]
    nodes["loss"] = {
        "title": f"loss: {loss.name}",
        "kind": "loss",
        "formulas": loss_rows(prog),
        "backward": backward_of.get("loss", []),
        "rule": [loss.formula, loss.derivative],
        "reads": [prog.output, "y"],
        "readby": [],
        **({"loss": num(step.loss)} if step else {}),
    }
    for line in prog.backward:
        tensor = line_tensor(prog, line)
        nodes[line.target.code] = {
            "title": f"{math_text(line.target)}  {line.shape}",
            "kind": line.kind,
            "formulas": [f"{math_text(line.target)} = {math_text(line.expr)}"],
            "layer": line.layer or "loss",
            "tensor": tensor,
            "reads": [],
            "readby": [],
            **stats(grad=line_stat(prog, line, step)),
        }
    return nodes


def related_lines(prog: Program, texts: dict[str, str]) -> dict[str, dict[str, list]]:
    """For each layer (and the loss): the lines of its backward step in the two
    manual files, shown beside its forward lines in a lighter colour."""
    out: dict[str, dict[str, list]] = {}
    for file in IMPLEMENTATIONS[:2]:
        spans = _manual_lines(prog, texts[file])
        for owner in ["loss", *(layer.name for layer in prog.net.layers)]:
            found = [list(s) for s in spans.get(f"{owner}#backward", [])]
            if found:
                out.setdefault(owner, {f: [] for f in IMPLEMENTATIONS})[file] = found
    return out


def explorer_data(prog: Program, texts: dict[str, str], step: Step | None) -> dict:
    nodes = _node_entries(prog, step)
    for node, spans in line_map(prog, texts).items():
        if node in nodes:
            nodes[node]["lines"] = spans
    for node, spans in related_lines(prog, texts).items():
        nodes[node]["related"] = spans
    # backward diagrams also draw forward values under their code names
    return {
        "name": prog.net.spec.name,
        "nodes": nodes,
        "graph": G.node_link(prog.net),
        "code": {f: texts[f] for f in IMPLEMENTATIONS},
        "loss": num(step.loss) if step else None,
    }


def script_json(data) -> str:
    """JSON to put inside a <script> element: nothing in it can close the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer(prog: Program, files: dict, step: Step | None) -> str:
    """index.html: the explorer of this network (see the module's docstring)."""
    from .emit import environment

    data = explorer_data(prog, files, step)
    svgs = {
        name: _strip_svg(files[f"{name}.svg"])
        for name in ("forward", "backward")
        if f"{name}.svg" in files
    }
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            name=prog.net.spec.name,
            description=one_line(prog.net.spec.description or prog.net.spec.name),
            svgs=svgs,
            data=script_json(data),
            has_readme="README.md" in files,
        )
    )
