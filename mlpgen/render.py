"""The forward and backward diagrams of a derived Program: Graphviz DOT, then SVG.

The forward diagram is the network as the spec wrote it: the input ``x``, every
layer (name, type, output shape, forward formula), every parameter under its
state-dict name, the targets and the loss; edges carry tensor shapes.

The backward diagram is the reverse pass exactly as ``autodiff`` derived it:
one node per derived line, labelled with the same formula text as the comment
above that line in the generated code. Solid edges carry gradients (B reads A's
symbol); dashed edges bring in the forward values, parameters, targets and
dropout masks that a rule reuses; fan-out sums are their own nodes, fed by
one part per use.

With the first training step's numbers (``values.Step``), every node also
shows them, as micrograd's ``draw_dot`` does: the forward nodes their value
(``data``) and gradient (``grad``), the backward nodes the gradient they
compute, and a strip beside the backward graph the norm of each weight's
gradient on a log scale, where vanishing and exploding gradients show.

Layout: the graph questions are asked of the networkx graph (``graph.py``).
The trunk that every path goes through is drawn as one straight column, a
layer's parameters beside it; branches keep the spec's order from left to
right; consecutive blocks built alike (Weisfeiler–Lehman hash) are framed as
one group. The layout is measured: top to bottom first, then with formulas
wrapped narrower, then left to right, until the drawing fits MAX_WIDTH (the
narrowest otherwise). Each SVG carries its own legend: the colours, the
arrows and the notation its formulas use (``notation.py``, shared with the
learning page).

The diagrams are built with the graphviz package's ``Digraph`` (its quoting
and escaping) in the Program's order, so the same spec gives byte-identical
files; every label is an HTML-like label whose text is XML-escaped, so no
layer name or description can break out of it. The SVGs come from the real
``dot`` program, run through the package, both at once in the background;
without Graphviz the DOT files are still written and one note says so.
"""

from __future__ import annotations

import functools
import html
import math
import os
import re
import shutil
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import graphviz

from . import graph as G
from . import notation
from .autodiff import (
    Line,
    Program,
    Y,
    loss_comments,
    loss_ctx,
    param,
    shape_str,
    value,
)
from .expr import Expr, Sym, math_text
from .graph import INPUT
from .ops import LOSSES, mask
from .text import one_line
from .values import Stat, Step, num

DIAGRAMS = ("forward", "backward")
MISSING_DOT = (
    "note: Graphviz 'dot' not found: wrote forward.dot and backward.dot only; "
    "install it with 'apt-get install graphviz' to get SVGs"
)

FONT = "Helvetica,Arial,sans-serif"
SMALL = 10  # point size of formulas, numbers and notes inside nodes
WRAP = 56  # characters per formula line inside a node
WRAP_COMPACT = 36  # … in a drawing that came out too wide at first
MUTED = "#555555"
GAP = "&#160;&#160;"  # two non-breaking spaces between parts of a label row
MAX_WIDTH = 1000  # points: a 900 px column then shows 10 pt text at 9 px or more

# one colour per kind of node, shared by both diagrams
VALUE_FILL = "#eeeeee"  # the input, the targets, forward values reused backward
LINEAR_FILL = "#cfe2f3"  # layers with parameters
JOIN_FILL = "#d9d2e9"  # add, concat: several inputs
ACTIVATION_FILL = "#fff2cc"  # everything else
PARAM_FILL = "#d9ead3"
LOSS_FILL = "#f4cccc"
GRAD_FILL = "#fce5cd"
PARAM_GRAD_FILL = "#b6d7a8"
PART_FILL = "#fdf3e7"
SUM_FILL = "#f9cb9c"
INTERMEDIATE_FILL = "#fff8ee"  # a named piece of a rule's formula
GRAD_EDGE = "#b45f06"
DATA_COLOR = "#1c4587"  # the numbers of a value
GRAD_COLOR = "#953800"  # the numbers of a gradient
REPEAT_COLOR = "#6d9eeb"


# ------------------------------------------------------------------ labels


def escape(text: str) -> str:
    """Text inside an HTML-like label: one line, with & < > and quotes as entities."""
    return html.escape(one_line(text), quote=True)


class Left(str):
    """A label row set flush left (the rows of a wrapped formula); others are centred."""


def label(*rows: str) -> str:
    """An HTML-like label of already-escaped rows, one under the other (the
    graphviz package passes a string in ``<…>`` through as HTML).

    In Graphviz the line break after a row sets that row's alignment.
    """
    breaks = [
        '<br align="left"/>' if isinstance(row, Left) else "<br/>" for row in rows
    ]
    if not isinstance(rows[-1], Left):
        breaks[-1] = ""
    return "<" + "".join(row + br for row, br in zip(rows, breaks)) + ">"


def bold(text: str) -> str:
    return f"<b>{escape(text)}</b>"


def small(text: str, color: str = MUTED, indent: str = "") -> str:
    return f'<font point-size="{SMALL}" color="{color}">{indent}{escape(text)}</font>'


def wrapped(text: str, color: str = "#000000", width: int = WRAP) -> list[str]:
    """A formula as small rows of at most ``width`` characters, broken at spaces; a
    formula that needs several rows is set flush left, continuation rows indented."""
    lines = textwrap.wrap(
        one_line(text), width, break_long_words=False, break_on_hyphens=False
    )
    if len(lines) == 1:
        return [small(lines[0], color)]
    return [
        Left(small(line, color, GAP * 2 if i else "")) for i, line in enumerate(lines)
    ]


def node_id(text: str) -> str:
    """A node id: the spec's names and the code names derived from them
    (``fc1``, ``params["fc1.weight"]``, ``d_fc1``), which the package quotes
    (quotes escaped, DOT keywords quoted). Spec names are identifiers, so no id
    holds a backslash, the one character DOT would not take literally."""
    if "\\" in text:
        raise ValueError(f"a node id with a backslash: {text!r}")
    return text


def data_row(s: Stat | None) -> list[str]:
    """micrograd's ``data``: the first step's value of a tensor."""
    return [] if s is None else [small(f"data {s.short()}", DATA_COLOR)]


def grad_row(s: Stat | None, word: str = "grad") -> list[str]:
    """micrograd's ``grad``: the first step's gradient, its values when few,
    else its norm (the number that shows a gradient vanish or explode)."""
    if s is None:
        return []
    if s.values is not None and len(s.values) <= 4:
        return [small(f"{word} {s.short()}", GRAD_COLOR)]
    return [small(f"{word} ‖·‖ {num(s.norm)}", GRAD_COLOR)]


# ------------------------------------------------------------------ graphs


def _title(prog: Program, what: str, step: Step | None) -> str:
    spec = prog.net.spec
    rows = [bold(f"{spec.name}: {what}")]
    if spec.description:
        rows += [escape(t) for t in textwrap.wrap(one_line(spec.description), 90)]
    if step is not None:
        rows.append(
            small("numbers: the first training step (first batch, before the update)")
        )
    return label(*rows)


def _digraph(name: str, title: str, rankdir: str) -> graphviz.Digraph:
    return graphviz.Digraph(
        name,
        graph_attr={
            "label": title,
            "labelloc": "t",
            "fontname": FONT,
            "fontsize": "13",
            "bgcolor": "white",
            "nodesep": "0.25",
            "ranksep": "0.3",
            "rankdir": rankdir,
            "newrank": "true",
            "ordering": "out",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fontname": FONT,
            "fontsize": "12",
            "margin": "0.08,0.04",
        },
        edge_attr={
            "fontname": FONT,
            "fontsize": "10",
            "fontcolor": MUTED,
            "color": "#666666",
        },
    )


def _node(g, name: str, text: str, **attrs: str) -> None:
    g.node(node_id(name), text, **attrs)


def _edge(g, a: str, b: str, **attrs: str) -> None:
    g.edge(node_id(a), node_id(b), **attrs)


def _same_rank(g, names) -> None:
    with g.subgraph() as s:
        s.attr(rank="same")
        for n in names:
            s.node(node_id(n))


def loss_rows(prog: Program) -> list[str]:
    """L in terms of the output layer's name, as the code's comments state it
    (autodiff.loss_comments): the textbook's formula with the l2 term, then,
    where PyTorch evaluates it another way, that reading as a second row."""
    net = prog.net
    readings = loss_comments(net, loss_ctx(net, value(prog.output)), "L")
    return [readings[0], *(r.removesuffix(",") for r in readings[1:2])]


def _target_shape(prog: Program) -> str:
    """The targets: class indices (N,) or floats (N, k)."""
    if LOSSES[prog.net.spec.loss.type].targets == "class":
        return "(N,)"
    return shape_str(prog.net.output.out_features)


def _loss_constant(prog: Program) -> tuple[Sym, str] | None:
    """The loss's constant weights from the spec (class ``weight`` or
    ``pos_weight``), as the symbol the formulas read and a node label."""
    net = prog.net
    weight = loss_ctx(net, value(prog.output)).weight
    if not isinstance(weight, Sym):
        return None
    key = (
        "weight" if getattr(net.spec.loss, "weight", None) is not None else "pos_weight"
    )
    count = len(getattr(net.spec.loss, key))
    return weight, label(
        bold(math_text(weight)) + GAP + escape(f"({count},)"),
        small(f"loss.{key}, from the spec"),
    )


def _loss_node(g, prog: Program, step: Step | None) -> None:
    rows = [row for text in loss_rows(prog) for row in wrapped(text)]
    if step is not None:
        rows.append(small(f"data L = {num(step.loss)}", DATA_COLOR))
    g.node(
        "loss",
        label(bold("loss") + GAP + escape(prog.net.spec.loss.type), *rows),
        fillcolor=LOSS_FILL,
    )


def _layer_fill(layer) -> str:
    if layer.params:
        return LINEAR_FILL
    if len(layer.inputs) > 1:
        return JOIN_FILL
    return ACTIVATION_FILL


class Layout:
    """What the graph says about how to draw it (asked of the networkx graph).

    spine: the tensors every path goes through, drawn as one straight column;
    group: the column (Graphviz ``group``) of every tensor, one per chain of a
    branch; repeats: runs of blocks built alike; compact: formulas wrapped
    narrower, forward values placed freely; rankdir: TB or LR.
    """

    def __init__(self, prog: Program, compact: bool = False, rankdir: str = "TB"):
        net = prog.net
        self.prog = prog
        # compact and LR: the next tries when a drawing came out wider than MAX_WIDTH
        self.compact = compact
        self.rankdir = rankdir
        self.wrap = WRAP_COMPACT if compact else WRAP
        self.spine = set(G.spine(net))
        self.group: dict[str, str] = {}
        for name in G.topological_order(net):
            preds = list(net.graph.predecessors(name))
            if name in self.spine:
                self.group[name] = "spine"
            elif (
                len(preds) == 1
                and preds[0] not in self.spine
                and net.graph.out_degree(preds[0]) == 1
            ):
                self.group[name] = self.group[preds[0]]  # the chain of a branch goes on
            else:
                self.group[name] = f"branch_{name}"
        self.repeats = G.repeated_blocks(net)
        self._repeat: dict[str, int] = {}  # layer -> the first repeat holding it
        for i, r in enumerate(self.repeats):
            for n in r.layers:
                self._repeat.setdefault(n, i)

    def repeat_of(self, layer: str) -> int | None:
        return self._repeat.get(layer)


def _repeat_label(prog: Program, layout: Layout, i: int) -> str:
    r = layout.repeats[i]
    first = r.blocks[0].layers
    kinds = " → ".join(
        f"{prog.net.layer(n).op.name} {shape_str(prog.net.layer(n).out_features)}"
        for n in first
    )
    return label(
        small(
            f"{len(r.blocks)} blocks built alike ({r.blocks[0].layers[0]} … "
            f"{r.blocks[-1].layers[-1]}): {kinds}",
            REPEAT_COLOR,
        )
    )


def _clusters(g, prog: Program, layout: Layout):
    """One subgraph per repeated run (None for the rest): where each layer's nodes go."""
    subs = {}
    for i in range(len(layout.repeats)):
        sub = graphviz.Digraph(name=f"cluster_repeat{i}")
        sub.attr(
            label=_repeat_label(prog, layout, i),
            labeljust="l",
            style="rounded,dashed",
            color=REPEAT_COLOR,
            fontname=FONT,
        )
        subs[i] = sub
    return subs


def _target(g, subs, layout: Layout, layer: str | None):
    i = layout.repeat_of(layer) if layer else None
    return g if i is None else subs[i]


def forward_dot(prog: Program, step: Step | None = None) -> str:
    return forward_graph(prog, step).source


def backward_dot(prog: Program, step: Step | None = None) -> str:
    return backward_graph(prog, step).source


def forward_formulas(prog: Program) -> dict[str, list[str]]:
    """Per layer, the formula of its output; where training and evaluation
    differ (dropout, batchnorm), the training one, then the evaluation one."""
    out: dict[str, list[str]] = {}
    named: dict[str, int] = {}
    for ln in prog.forward:
        if ln.kind == "intermediate" and ln.mode != "eval":
            named[ln.layer] = named.get(ln.layer, 0) + 1
    for ln in prog.forward:
        if ln.kind == "forward" and named.get(ln.layer, 0) > 1:
            # a rule of several named pieces (batchnorm's μ, σ², x̂): its formula
            # in one line, which says what changes in evaluation
            out.setdefault(ln.layer, []).append(prog.net.layer(ln.layer).op.formula)
        if ln.kind == "forward":
            text = f"{math_text(ln.target)} = {math_text(ln.expr)}"
            out.setdefault(ln.layer, []).append(
                "in evaluation: " + text if ln.mode == "eval" else text
            )
    return out


def _input_shape(net) -> str:
    """x's shape, and for token inputs what its integers index."""
    if not net.tokens:
        return shape_str(net.input_features)
    vocab = min(layer.keys.vocab for layer in net.layers if layer.op.reads_tokens)
    return f"(N, {net.tokens}) integers in [0, {vocab})"


def _embedding_row(layer) -> list[str]:
    """An embedding's output, (N, T·dim): the T looked-up rows side by side."""
    if not layer.op.reads_tokens:
        return []
    tokens = layer.in_features[0]
    return [
        small(
            f"{tokens} rows of {layer.keys.dim} side by side: "
            f"{tokens} × {layer.keys.dim} = {layer.out_features}"
        )
    ]


def forward_graph(
    prog: Program, step: Step | None = None, compact: bool = False, rankdir: str = "TB"
) -> graphviz.Digraph:
    """The forward graph: input, layers, parameters, targets and loss."""
    net = prog.net
    layout = Layout(prog, compact, rankdir)
    g = _digraph("forward", _title(prog, "forward pass", step), layout.rankdir)
    subs = _clusters(g, prog, layout)
    tensors = step.tensors if step else {}
    tgrads = step.tensor_grads if step else {}
    _node(
        g,
        INPUT,
        label(
            bold(INPUT) + GAP + escape("token indices" if net.tokens else "input"),
            escape(_input_shape(net)),
            *data_row(tensors.get(INPUT)),
        ),
        shape="ellipse",
        style="filled",
        fillcolor=VALUE_FILL,
        group="spine",
    )
    formulas = forward_formulas(prog)
    for layer in net.layers:
        where = _target(g, subs, layout, layer.name)
        beside = []
        for p in layer.params:
            state_name = layer.param_name(p)
            pid = param(state_name).code
            rows = [bold(state_name), escape(shape_str(p.shape, batch=False))]
            if step is not None:
                rows += grad_row(step.grads.get(state_name))
            _node(where, pid, label(*rows), style="filled", fillcolor=PARAM_FILL)
            beside.append(pid)
        _node(
            where,
            layer.name,
            label(
                bold(layer.name)
                + GAP
                + escape(layer.op.name)
                + GAP
                + escape(shape_str(layer.out_features)),
                *(
                    row
                    for f in formulas[layer.name]
                    for row in wrapped(f, MUTED, layout.wrap)
                ),
                *_embedding_row(layer),
                *data_row(tensors.get(layer.name)),
                *grad_row(tgrads.get(layer.name)),
            ),
            fillcolor=_layer_fill(layer),
            group=layout.group[layer.name],
        )
        offset = 0
        for position, src in enumerate(layer.inputs):
            features = net.features(src)
            text = shape_str(features)
            if layer.op.name == "concat":
                text += f" → cols {offset}:{offset + features}"
            elif layer.op.reads_tokens:
                text += " integers"
            elif len(layer.inputs) > 1:
                text += f" (input {position + 1})"
            offset += features
            _edge(g, src, layer.name, label=text, weight="4")
        trunk = layer.name in layout.spine
        for i, pid in enumerate(beside):
            if trunk and i:
                # beside the trunk: the weight on its left, the others on its
                # right (drawn from the layer, pointing back at it)
                _edge(g, layer.name, pid, style="dashed", dir="back")
            else:
                _edge(g, pid, layer.name, style="dashed")
        if beside and trunk:
            _same_rank(where, [*beside, layer.name])
    for sub in subs.values():
        g.subgraph(sub)
    y_rows = [bold(Y.code) + GAP + escape("targets"), escape(_target_shape(prog))]
    _node(
        g, Y.code, label(*y_rows), shape="ellipse", style="filled", fillcolor=VALUE_FILL
    )
    _loss_node(g, prog, step)
    _edge(g, prog.output, "loss", label=shape_str(net.output.out_features), weight="4")
    _edge(g, Y.code, "loss", label=_target_shape(prog))
    _same_rank(g, [prog.output, Y.code])
    constant = _loss_constant(prog)
    if constant is not None:
        weight, text = constant
        _node(g, weight.code, text, style="filled", fillcolor=VALUE_FILL)
        _edge(g, weight.code, "loss", style="dashed")
        _same_rank(g, [prog.output, weight.code])
    texts = [*(f for fs in formulas.values() for f in fs), *loss_rows(prog)]
    fills = {_layer_fill(layer) for layer in net.layers}
    key = [(f, t) for f, t in FORWARD_KEY if f in fills or f not in LAYER_FILLS]
    _legend(g, "loss", key, texts, prog, step)
    return g


# ------------------------------------------------------------------ backward


def symbols_in_order(e: Expr) -> list[Sym]:
    """The symbols an expression reads, each once, in the order they are printed."""
    out: list[Sym] = []
    stack = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, Sym) and node not in out:
            out.append(node)
        stack.extend(reversed(node.children()))
    return out


def _forward_values(prog: Program) -> dict[str, tuple[str, str]]:
    """Code name -> (label, fill) of every forward quantity a gradient rule may read."""
    net = prog.net
    values = {
        INPUT: (label(bold(INPUT), escape(_input_shape(net))), VALUE_FILL),
        Y.code: (
            label(bold(Y.code) + GAP + escape("targets"), escape(_target_shape(prog))),
            VALUE_FILL,
        ),
    }
    for layer in net.layers:
        shape = escape(shape_str(layer.out_features))
        values[layer.name] = (label(bold(layer.name), shape), VALUE_FILL)
        if layer.op.name == "dropout":
            m = mask(layer.name)
            values[m.code] = (
                label(bold(math_text(m)), shape, small("this step's dropout mask")),
                VALUE_FILL,
            )
    # the other intermediates a rule reads (batchnorm's x̂ and 1/√(σ² + ε), …),
    # by name and shape (the page's notation says what they are)
    for line in prog.forward:
        code = line.target.code
        if line.kind != "intermediate" or line.mode == "eval" or code in values:
            continue
        values[code] = (
            label(bold(math_text(line.target)), escape(line.shape)),
            VALUE_FILL,
        )
    for pi in prog.params:
        shape = escape(shape_str(pi.param.shape, batch=False))
        values[param(pi.state_name).code] = (
            label(bold(pi.state_name), shape),
            PARAM_FILL,
        )
    constant = _loss_constant(prog)
    if constant is not None:
        weight, text = constant
        values[weight.code] = (text, VALUE_FILL)
    for sym, _, why in LOSSES[net.spec.loss.type].constants:
        values[sym.code] = (label(bold(math_text(sym)), small(why)), VALUE_FILL)
    return values


def _note(line: Line, prog: Program) -> str:
    """Which rule gave the line: the layer whose derivative rule it applies."""
    if line.kind == "loss_grad":
        return f"rule of the loss: {prog.net.spec.loss.type}"
    if line.kind == "fanout_sum":
        return "sum over its uses (multivariable chain rule)"
    return f"rule of {line.layer}: {prog.net.layer(line.layer).op.name}"


_STYLE = {
    "loss_grad": {"fillcolor": LOSS_FILL},
    "grad": {"fillcolor": GRAD_FILL},
    "param_grad": {"fillcolor": PARAM_GRAD_FILL, "style": "filled,bold"},
    "fanout_part": {"fillcolor": PART_FILL, "style": "rounded,filled,dashed"},
    "fanout_sum": {"fillcolor": SUM_FILL, "style": "rounded,filled,bold"},
    "grad_intermediate": {
        "fillcolor": INTERMEDIATE_FILL,
        "style": "rounded,filled,dashed",
    },
}


def line_tensor(prog: Program, line: Line) -> str | None:
    """The tensor or parameter a backward line is the gradient of: the spec name
    of a tensor (``fc1``), or a parameter's state name (``fc1.weight``); a
    fan-out part is a part of its tensor's gradient; an intermediate of a
    rule (``grad_intermediate``) is no tensor's gradient (None)."""
    code = line.target.code
    if line.kind == "param_grad":
        return code[len('grads["') : -2]
    if line.kind == "fanout_part":
        return line.target.math[len("∂L/∂") :].rsplit(" via ", 1)[0]
    if line.kind == "grad_intermediate":
        return None
    return _grad_owners(prog.names).get(code)


@functools.lru_cache(maxsize=8)
def _grad_owners(names) -> dict[str, str]:
    """Variable of ∂L/∂tensor -> the tensor's spec name (asked once per line)."""
    return {var: name for name, var in names.grads.items()}


def line_stat(prog: Program, line: Line, step: Step | None) -> Stat | None:
    """The first step's value of the gradient a line computes (parts and a
    rule's intermediates: none, they are not in the dump)."""
    tensor = line_tensor(prog, line)
    if step is None or tensor is None or line.kind == "fanout_part":
        return None
    if line.kind == "param_grad":
        return step.grads.get(tensor)
    return step.tensor_grads.get(tensor)


def _group(line: Line, layout: Layout) -> dict[str, str]:
    """The column of a backward line: the gradient of a tensor goes in its
    tensor's column, a fan-out part in the column of the edge it flows back
    along; parameter gradients hang beside."""
    if line.kind in ("param_grad", "grad_intermediate"):
        return {}
    tensor = line_tensor(layout.prog, line)
    if line.kind == "fanout_part":
        both = tensor in layout.spine and line.layer in layout.spine
        return {"group": "spine" if both else layout.group[line.layer]}
    if tensor not in layout.group:
        return {}
    return {"group": layout.group[tensor]}


def backward_graph(
    prog: Program, step: Step | None = None, compact: bool = False, rankdir: str = "TB"
) -> graphviz.Digraph:
    """The backward graph: one node per derived line, gradients flowing down."""
    layout = Layout(prog, compact, rankdir)
    g = _digraph(
        "backward", _title(prog, "backward pass, as derived", step), layout.rankdir
    )
    subs = _clusters(g, prog, layout)
    _loss_node(g, prog, step)
    targets = {line.target.code for line in prog.backward}
    for line in prog.backward:
        where = _target(g, subs, layout, line.layer)
        _node(
            where,
            line.target.code,
            label(
                bold(math_text(line.target)) + GAP + escape(line.shape),
                *wrapped("= " + math_text(line.expr), width=layout.wrap),
                small(_note(line, prog)),
                *grad_row(line_stat(prog, line, step), "grad"),
            ),
            **_STYLE[line.kind],
            **_group(line, layout),
        )
    _edge(
        g,
        "loss",
        prog.backward[0].target.code,
        color=GRAD_EDGE,
        penwidth="1.6",
        weight="4",
    )
    values = _forward_values(prog)
    drawn: set[str] = set()
    for line in prog.backward:
        for sym in symbols_in_order(line.expr):
            if sym.code in targets:
                attrs = {"color": GRAD_EDGE, "penwidth": "1.6"}
                if line.kind == "fanout_sum":
                    attrs["label"] = "+"
                if _group(line, layout).get("group") == "spine":
                    attrs["weight"] = "4"
                _edge(g, sym.code, line.target.code, **attrs)
            elif sym.code in values:
                if sym.code not in drawn:
                    drawn.add(sym.code)
                    text, fill = values[sym.code]
                    _node(
                        g,
                        sym.code,
                        text,
                        style="filled",
                        fillcolor=fill,
                        fontcolor=MUTED,
                        color="#999999",
                    )
                    if not layout.compact:
                        # beside the first line that reads it, not ranks away
                        _same_rank(g, [line.target.code, sym.code])
                _edge(
                    g,
                    sym.code,
                    line.target.code,
                    style="dashed",
                    color="#999999",
                    arrowhead="empty",
                    weight="0",
                )
    for sub in subs.values():
        g.subgraph(sub)
    texts = ["= " + math_text(line.expr) for line in prog.backward]
    texts += [math_text(line.target) for line in prog.backward]
    if step is not None and _weights(prog):
        g.node(
            "strip",
            _norm_strip(prog, step),
            shape="box",
            style="rounded",
            color="#bbbbbb",
            margin="0.1",
        )
        _same_rank(g, ["loss", "strip"])
    fills = {_STYLE[line.kind]["fillcolor"] for line in prog.backward} | {LOSS_FILL}
    fills |= {fill for code, (_, fill) in values.items() if code in drawn}
    key = [(f, t) for f, t in BACKWARD_KEY if f in fills]
    _legend(g, prog.backward[-1].target.code, key, texts, prog, step)
    return g


# ------------------------------------------------------------------ legend


LAYER_FILLS = (LINEAR_FILL, JOIN_FILL, ACTIVATION_FILL)  # listed when a layer has one
FORWARD_KEY = (
    (LINEAR_FILL, "a layer with parameters"),
    (JOIN_FILL, "a layer that joins several inputs"),
    (ACTIVATION_FILL, "a function applied element by element or per row"),
    (PARAM_FILL, "a parameter, under its state_dict() name"),
    (VALUE_FILL, "the input x, the targets y"),
    (LOSS_FILL, "the loss"),
)
BACKWARD_KEY = (
    (LOSS_FILL, "the loss, and its gradient with respect to the output"),
    (GRAD_FILL, "∂L/∂(a tensor)"),
    (PARAM_GRAD_FILL, "∂L/∂(a parameter): what the optimizer reads"),
    (PART_FILL, "one use's part of the gradient of a tensor used several times"),
    (SUM_FILL, "their sum (multivariable chain rule)"),
    (INTERMEDIATE_FILL, "a piece of a rule's formula, named and computed once"),
    (VALUE_FILL, "a forward value the rule reads, saved by the forward pass"),
    (PARAM_FILL, "a parameter the rule reads"),
)
ARROWS = {
    "forward": ("solid arrow: a tensor, with its shape; dashed: a parameter",),
    "backward": ("solid arrow: a gradient; dashed: a forward value the rule reuses",),
}
LEGEND_WRAP = 46


def _cell(text: str, color: str = "#000000", align: str = "left") -> str:
    rows = textwrap.wrap(one_line(text), LEGEND_WRAP, break_on_hyphens=False) or [""]
    body = '<br align="left"/>'.join(escape(r) for r in rows) + '<br align="left"/>'
    return f'<td align="{align}" balign="left"><font point-size="{SMALL}" color="{color}">{body}</font></td>'


def legend_table(key, texts, prog: Program, step: Step | None, which: str) -> str:
    """The legend as an HTML-like table: colours, arrows, the notation its
    formulas use and the numbers."""
    rows = [f'<tr><td colspan="2" align="left"><b>{escape("Legend")}</b></td></tr>']
    for fill, text in key:
        rows.append(
            f'<tr><td bgcolor="{fill}" width="18" height="10" fixedsize="true"></td>{_cell(text)}</tr>'
        )
    for text in ARROWS[which]:
        rows.append(f"<tr><td></td>{_cell(text)}</tr>")
    if step is not None:
        rows.append(
            f"<tr><td>{escape('data')}</td>{_cell('the value of the first step (values when few, else range and mean)', DATA_COLOR)}</tr>"
        )
        rows.append(
            f"<tr><td>{escape('grad')}</td>{_cell('its gradient ∂L/∂(it), values when few, else ‖·‖: the norm √(Σ g²)', GRAD_COLOR)}</tr>"
        )
    for sym in notation.used(texts):
        rows.append(
            f'<tr><td align="left">{escape(sym.symbol)}</td>{_cell(sym.meaning)}</tr>'
        )
    return (
        '<<table border="0" cellborder="0" cellspacing="2" cellpadding="1">'
        + "".join(rows)
        + "</table>>"
    )


def _legend(g, after: str, key, texts, prog, step) -> None:
    """The legend, below the last node."""
    g.node(
        "legend",
        legend_table(key, texts, prog, step, g.name),
        shape="box",
        style="rounded",
        color="#bbbbbb",
        margin="0.1",
    )
    with g.subgraph() as s:
        s.attr(rank="sink")
        s.node("legend")
    g.edge(node_id(after), "legend", style="invis")


STRIP_BARS = 24  # characters of the longest bar


def _weights(prog: Program) -> list[str]:
    names = [pi.state_name for pi in prog.params if pi.param.name == "weight"]
    return names or [pi.state_name for pi in prog.params]


def strip_bars(norms: list[float]) -> tuple[list[int], float]:
    """Bar lengths (in characters, 1 to STRIP_BARS) of norms on a log scale,
    and the decades that one character stands for. A norm that is 0 or not
    finite gets 0."""
    positive = [v for v in norms if v > 0 and math.isfinite(v)]
    if not positive:
        return [0] * len(norms), 1.0
    lo, hi = math.log10(min(positive)), math.log10(max(positive))
    span = max(hi - lo, 1.0)  # at least one decade across the strip
    per_char = span / (STRIP_BARS - 1)
    bars = [
        1 + round((math.log10(v) - lo) / per_char) if v > 0 and math.isfinite(v) else 0
        for v in norms
    ]
    return bars, per_char


def _norm_strip(prog: Program, step: Step) -> str:
    """‖∂L/∂W‖ of each weight, in spec order, as bars on a log scale."""
    names = [n for n in _weights(prog) if n in step.grads]
    norms = [step.grads[n].norm for n in names]
    bars, per_char = strip_bars(norms)
    rows = [
        f'<tr><td colspan="3" align="left"><b>{escape("‖∂L/∂W‖ at the first step")}</b></td></tr>',
        f'<tr><td colspan="3" align="left">{small(f"log scale: each ▇ more is ×{10**per_char:.3g}")}</td></tr>',
    ]
    for name, v, n in zip(names, norms, bars):
        bar = f'<font point-size="{SMALL}" color="{GRAD_EDGE}">{"▇" * n or "·"}</font>'
        rows.append(
            f'<tr><td align="left">{small(name, "#000000")}</td>'
            f'<td align="left">{bar}</td>'
            f'<td align="right">{small(num(v), GRAD_COLOR)}</td></tr>'
        )
    return (
        '<<table border="0" cellborder="0" cellspacing="1" cellpadding="1">'
        + "".join(rows)
        + "</table>>"
    )


# ---------------------------------------------------------------------- SVG


def find_dot() -> str | None:
    """The Graphviz ``dot`` program on PATH, or None."""
    return shutil.which("dot")


@functools.cache
def note(message: str) -> None:
    """Print a one-line note to stderr, once per process for the same message."""
    print(message, file=sys.stderr)


def _svg(g: graphviz.Digraph) -> str:
    """The SVG that ``dot`` draws of a graph (the graphviz package runs it)."""
    return g.pipe(format="svg", encoding="utf-8", quiet=True)


def svg_width(svg: str) -> float:
    """The width of an SVG that dot drew, in points."""
    m = re.search(r'<svg width="([0-9.]+)pt"', svg)
    return float(m.group(1)) if m else 0.0


# the layouts tried in turn until one fits MAX_WIDTH: (compact, rankdir)
TRIES = ((False, "TB"), (True, "TB"), (False, "LR"), (True, "LR"))


def _draw(build) -> tuple[str, str]:
    """(DOT source, SVG) of the first of TRIES whose drawing fits MAX_WIDTH,
    else of the narrowest: the rank direction is chosen by measuring."""
    best: tuple[float, str, str] | None = None
    for compact, rankdir in TRIES:
        g = build(compact, rankdir)
        svg = _svg(g)
        width = svg_width(svg)
        if best is None or width < best[0]:
            best = (width, g.source, svg)
        if width <= MAX_WIDTH:
            break
    assert best is not None
    return best[1], best[2]


class Drawing:
    """The diagrams of one Program: the DOT sources, their SVGs drawn by ``dot``
    in the background (both at the same time).

    Start it before other slow work, then ``files()`` waits for the SVGs. Without
    Graphviz, or when ``dot`` fails, ``files()`` has the DOT sources only and a
    one-line note goes to stderr.
    """

    def __init__(self, prog: Program, step: Step | None = None):
        self._builders = {
            "forward": functools.partial(forward_graph, prog, step),
            "backward": functools.partial(backward_graph, prog, step),
        }
        self._pool = None
        self._jobs = {}
        if find_dot() is None:
            note(MISSING_DOT)
            return
        self._pool = ThreadPoolExecutor(len(self._builders))
        self._jobs = {
            name: self._pool.submit(_draw, build)
            for name, build in self._builders.items()
        }

    def _sources(self) -> dict[str, str]:
        return {
            f"{name}.dot": build(*TRIES[0]).source
            for name, build in self._builders.items()
        }

    def files(self) -> dict[str, str]:
        """forward.dot and backward.dot, and their SVGs when ``dot`` made them."""
        if self._pool is None:
            return self._sources()
        try:
            out, failed = {}, []
            for name, job in self._jobs.items():
                try:
                    out[f"{name}.dot"], out[f"{name}.svg"] = job.result()
                except graphviz.CalledProcessError as e:
                    err = (
                        e.stderr.decode("utf-8", "replace")
                        if isinstance(e.stderr, bytes)
                        else e.stderr or ""
                    )
                    reason = one_line(err)[:200] or f"exit status {e.returncode}"
                    failed.append(f"{name}.dot ({reason})")
                except (graphviz.ExecutableNotFound, OSError) as e:
                    failed.append(f"{name}.dot ({one_line(str(e))[:200]})")
            if failed:
                note(
                    f"note: Graphviz 'dot' failed on {', '.join(failed)}: wrote the .dot files only"
                )
                return self._sources()
            return {
                k: out[k]
                for k in ("forward.dot", "backward.dot", "forward.svg", "backward.svg")
            }
        finally:
            self._pool.shutdown()


def diagram_files(prog: Program, step: Step | None = None) -> dict[str, str]:
    """forward.dot and backward.dot, and their SVGs when Graphviz is installed."""
    return Drawing(prog, step).files()


def write_diagrams(
    prog: Program, folder: Path | str, step: Step | None = None
) -> dict[str, str]:
    """Write the diagrams into ``folder``, leaving its other files alone.

    Each file is replaced atomically; an SVG that could not be made this time
    is removed rather than left beside a DOT source it no longer matches.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = diagram_files(prog, step)
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, folder / name)
    for name in DIAGRAMS:
        if f"{name}.svg" not in files:
            (folder / f"{name}.svg").unlink(missing_ok=True)
    return files
