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

The DOT text is built from plain strings in the Program's order, so the same
spec gives byte-identical files. Every id is quoted and every label is an
HTML-like label whose text is XML-escaped: no layer name or description can
break out of it. The SVGs come from the real ``dot`` program, both run at
once; without Graphviz the DOT files are still written and one note says so.
"""

from __future__ import annotations

import functools
import html
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from .autodiff import Line, Program, Y, loss_ctx, param, shape_str, value
from .expr import Expr, Sym, math_text
from .graph import INPUT
from .ops import LAYERS, LOSSES, mask
from .text import one_line

DIAGRAMS = ("forward", "backward")
MISSING_DOT = (
    "note: Graphviz 'dot' not found: wrote forward.dot and backward.dot only; "
    "install it with 'apt-get install graphviz' to get SVGs"
)

FONT = "Helvetica,Arial,sans-serif"
SMALL = 10  # point size of formulas and notes inside nodes
WRAP = 64  # characters per formula line inside a node
MUTED = "#555555"
GAP = "&#160;&#160;"  # two non-breaking spaces between parts of a label row

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
GRAD_EDGE = "#b45f06"


# ------------------------------------------------------------------ DOT text


class Html(str):
    """An HTML-like label, written ``<...>`` in DOT instead of quoted."""


def quote(text: str) -> str:
    """A DOT double-quoted string: one line, backslashes and quotes escaped."""
    return '"' + one_line(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape(text: str) -> str:
    """Text inside an HTML-like label: one line, with & < > and quotes as entities."""
    return html.escape(one_line(text), quote=True)


class Left(str):
    """A label row set flush left (the rows of a wrapped formula); others are centred."""


def label(*rows: str) -> Html:
    """An HTML-like label of already-escaped rows, one under the other.

    In Graphviz the line break after a row sets that row's alignment.
    """
    breaks = [
        '<br align="left"/>' if isinstance(row, Left) else "<br/>" for row in rows
    ]
    if not isinstance(rows[-1], Left):
        breaks[-1] = ""
    return Html("<" + "".join(row + br for row, br in zip(rows, breaks)) + ">")


def bold(text: str) -> str:
    return f"<b>{escape(text)}</b>"


def small(text: str, color: str = MUTED, indent: str = "") -> str:
    return f'<font point-size="{SMALL}" color="{color}">{indent}{escape(text)}</font>'


def wrapped(text: str, color: str = "#000000") -> list[str]:
    """A formula as small rows of at most WRAP characters, broken at spaces; a
    formula that needs several rows is set flush left, continuation rows indented."""
    lines = textwrap.wrap(
        one_line(text), WRAP, break_long_words=False, break_on_hyphens=False
    )
    if len(lines) == 1:
        return [small(lines[0], color)]
    return [
        Left(small(line, color, GAP * 2 if i else "")) for i, line in enumerate(lines)
    ]


def _attrs(attrs: dict[str, str]) -> str:
    if not attrs:
        return ""
    items = (f"{k}={v if isinstance(v, Html) else quote(v)}" for k, v in attrs.items())
    return " [" + ", ".join(items) + "]"


class Digraph:
    """A DOT digraph written line by line, in the order the calls are made."""

    def __init__(self, name: str, title: Html, **attrs: str):
        self.lines = [
            f"digraph {quote(name)} {{",
            "  graph"
            + _attrs(
                {
                    "label": title,
                    "labelloc": "t",
                    "fontname": FONT,
                    "fontsize": "13",
                    "bgcolor": "white",
                    "nodesep": "0.3",
                    "ranksep": "0.35",
                    **attrs,
                }
            ),
            "  node"
            + _attrs(
                {
                    "shape": "box",
                    "style": "rounded,filled",
                    "fontname": FONT,
                    "fontsize": "12",
                }
            ),
            "  edge"
            + _attrs(
                {
                    "fontname": FONT,
                    "fontsize": "10",
                    "fontcolor": MUTED,
                    "color": "#666666",
                }
            ),
        ]
        self.ids: set[str] = set()

    def node(self, node_id: str, text: Html, **attrs: str) -> None:
        self.ids.add(node_id)
        self.lines.append(f"  {quote(node_id)}" + _attrs({"label": text, **attrs}))

    def edge(self, a: str, b: str, **attrs: str) -> None:
        self.lines.append(f"  {quote(a)} -> {quote(b)}" + _attrs(attrs))

    def same_rank(self, *ids: str) -> None:
        self.lines.append(
            "  { rank=same; " + " ".join(quote(i) + ";" for i in ids) + " }"
        )

    def text(self) -> str:
        return "\n".join([*self.lines, "}"]) + "\n"


def _title(prog: Program, what: str) -> Html:
    spec = prog.net.spec
    rows = [bold(f"{spec.name}: {what}")]
    if spec.description:
        rows += [escape(t) for t in textwrap.wrap(one_line(spec.description), 90)]
    return label(*rows)


def loss_rows(prog: Program) -> list[str]:
    """L in terms of the output layer's name; the l2 term, if any, as a second row."""
    net = prog.net
    loss = LOSSES[net.spec.loss.type]
    rows = ["L = " + math_text(loss.value(loss_ctx(net, value(prog.output))))]
    if prog.l2:
        l2 = net.spec.loss.l2
        which = "all parameters" if l2.params == "all" else "the weights"
        rows.append(f"+ {l2.coef}·Σ p² over {which}")
    return rows


def _target_shape(prog: Program) -> str:
    """The targets: class indices (N,) or floats (N, k)."""
    if LOSSES[prog.net.spec.loss.type].targets == "class":
        return "(N,)"
    return shape_str(prog.net.output.out_features)


def _loss_constant(prog: Program) -> tuple[Sym, Html] | None:
    """The loss's constant weights from the spec (class ``weight`` or
    ``pos_weight``), as the symbol the formulas read and a node label."""
    net = prog.net
    weight = loss_ctx(net, value(prog.output)).weight
    if weight is None:
        return None
    key = "weight" if getattr(net.spec.loss, "weight", None) is not None else "pos_weight"
    count = len(getattr(net.spec.loss, key))
    return weight, label(
        bold(math_text(weight)) + GAP + escape(f"({count},)"),
        small(f"loss.{key}, from the spec"),
    )


def _loss_node(g: Digraph, prog: Program) -> None:
    g.node(
        "loss",
        label(
            bold("loss") + GAP + escape(prog.net.spec.loss.type),
            *(row for text in loss_rows(prog) for row in wrapped(text)),
        ),
        fillcolor=LOSS_FILL,
    )


def _layer_fill(layer) -> str:
    if layer.params:
        return LINEAR_FILL
    if len(layer.inputs) > 1:
        return JOIN_FILL
    return ACTIVATION_FILL


def forward_dot(prog: Program) -> str:
    """The forward graph: input, layers, parameters, targets and loss."""
    net = prog.net
    g = Digraph("forward", _title(prog, "forward pass"))
    g.node(
        INPUT,
        label(
            bold(INPUT) + GAP + escape("input"), escape(shape_str(net.input_features))
        ),
        shape="ellipse",
        style="filled",
        fillcolor=VALUE_FILL,
    )
    formulas = {
        ln.layer: f"{math_text(ln.target)} = {math_text(ln.expr)}"
        for ln in prog.forward
    }
    for layer in net.layers:
        g.node(
            layer.name,
            label(
                bold(layer.name)
                + GAP
                + escape(layer.op.name)
                + GAP
                + escape(shape_str(layer.out_features)),
                *wrapped(formulas[layer.name], MUTED),
            ),
            fillcolor=_layer_fill(layer),
        )
        offset = 0
        for position, src in enumerate(layer.inputs):
            features = net.features(src)
            text = shape_str(features)
            if layer.op.name == "concat":
                text += f" → cols {offset}:{offset + features}"
            elif len(layer.inputs) > 1:
                text += f" (input {position + 1})"
            offset += features
            g.edge(src, layer.name, label=text)
        for p in layer.params:
            state_name = layer.param_name(p)
            pid = param(state_name).code
            g.node(
                pid,
                label(bold(state_name), escape(shape_str(p.shape, batch=False))),
                style="filled",
                fillcolor=PARAM_FILL,
            )
            g.edge(pid, layer.name, style="dashed")
    g.node(
        Y.code,
        label(bold(Y.code) + GAP + escape("targets"), escape(_target_shape(prog))),
        shape="ellipse",
        style="filled",
        fillcolor=VALUE_FILL,
    )
    _loss_node(g, prog)
    g.edge(prog.output, "loss", label=shape_str(net.output.out_features))
    g.edge(Y.code, "loss", label=_target_shape(prog))
    g.same_rank(Y.code, prog.output)
    constant = _loss_constant(prog)
    if constant is not None:
        weight, text = constant
        g.node(weight.code, text, style="filled", fillcolor=VALUE_FILL)
        g.edge(weight.code, "loss", style="dashed")
        g.same_rank(weight.code, prog.output)
    return g.text()


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


def _forward_values(prog: Program) -> dict[str, tuple[Html, str]]:
    """Code name -> (label, fill) of every forward quantity a gradient rule may read."""
    net = prog.net
    values = {
        INPUT: (label(bold(INPUT), escape(shape_str(net.input_features))), VALUE_FILL),
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
}


def backward_dot(prog: Program) -> str:
    """The backward graph: one node per derived line, gradients flowing down."""
    g = Digraph("backward", _title(prog, "backward pass, as derived"))
    _loss_node(g, prog)
    targets = {line.target.code for line in prog.backward}
    for line in prog.backward:
        g.node(
            line.target.code,
            label(
                bold(math_text(line.target)) + GAP + escape(line.shape),
                *wrapped("= " + math_text(line.expr)),
                small(_note(line, prog)),
            ),
            **_STYLE[line.kind],
        )
    g.edge("loss", prog.backward[0].target.code, color=GRAD_EDGE, penwidth="1.6")
    values = _forward_values(prog)
    for line in prog.backward:
        for sym in symbols_in_order(line.expr):
            if sym.code in targets:
                attrs = {"color": GRAD_EDGE, "penwidth": "1.6"}
                if line.kind == "fanout_sum":
                    attrs["label"] = "+"
                g.edge(sym.code, line.target.code, **attrs)
            elif sym.code in values:
                if sym.code not in g.ids:
                    text, fill = values[sym.code]
                    g.node(
                        sym.code,
                        text,
                        style="filled",
                        fillcolor=fill,
                        fontcolor=MUTED,
                        color="#999999",
                    )
                g.edge(
                    sym.code,
                    line.target.code,
                    style="dashed",
                    color="#999999",
                    arrowhead="empty",
                )
    return g.text()


# ---------------------------------------------------------------------- SVG


def find_dot() -> str | None:
    """The Graphviz ``dot`` program on PATH, or None."""
    return shutil.which("dot")


@functools.cache
def note(message: str) -> None:
    """Print a one-line note to stderr, once per process for the same message."""
    print(message, file=sys.stderr)


class Drawing:
    """The diagrams of one Program: the DOT sources at once, their SVGs drawn by
    ``dot`` in the background (both at the same time).

    Start it before other slow work, then ``files()`` waits for the SVGs. Without
    Graphviz, or when ``dot`` fails, ``files()`` has the DOT sources only and a
    one-line note goes to stderr.
    """

    def __init__(self, prog: Program):
        self.sources = {
            "forward.dot": forward_dot(prog),
            "backward.dot": backward_dot(prog),
        }
        self._procs: list[tuple[str, Path, subprocess.Popen]] = []
        dot = find_dot()
        if dot is None:
            note(MISSING_DOT)
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="mlpgen-dot-")
        for name, text in self.sources.items():
            src = Path(self._tmp.name, name)
            src.write_text(text, encoding="utf-8")
            out = src.with_suffix(".svg")
            cmd = [dot, "-Tsvg", str(src), "-o", str(out)]
            self._procs.append(
                (name, out, subprocess.Popen(cmd, stderr=subprocess.PIPE))
            )

    def files(self) -> dict[str, str]:
        """forward.dot and backward.dot, and their SVGs when ``dot`` made them."""
        if not self._procs:
            return dict(self.sources)
        try:
            failed = []
            for name, _, proc in self._procs:
                _, err = proc.communicate()
                if proc.returncode:
                    reason = one_line(err.decode("utf-8", "replace"))[:200]
                    failed.append(
                        f"{name} ({reason or f'exit status {proc.returncode}'})"
                    )
            if failed:
                note(
                    f"note: Graphviz 'dot' failed on {', '.join(failed)}: wrote the .dot files only"
                )
                return dict(self.sources)
            svgs = {
                out.name: out.read_text(encoding="utf-8") for _, out, _ in self._procs
            }
            return {**self.sources, **svgs}
        finally:
            self._tmp.cleanup()


def diagram_files(prog: Program) -> dict[str, str]:
    """forward.dot and backward.dot, and their SVGs when Graphviz is installed."""
    return Drawing(prog).files()


def write_diagrams(prog: Program, folder: Path | str) -> dict[str, str]:
    """Write the diagrams into ``folder``, leaving its other files alone.

    Each file is replaced atomically; an SVG that could not be made this time
    is removed rather than left beside a DOT source it no longer matches.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = diagram_files(prog)
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, folder / name)
    for name in DIAGRAMS:
        if f"{name}.svg" not in files:
            (folder / f"{name}.svg").unlink(missing_ok=True)
    return files


# ------------------------------------------------------------------- README


def readme_context(prog: Program) -> dict:
    """What README.md.j2 needs beyond ``emit.context``: the rules used and the diagrams."""
    net = prog.net
    types = list(dict.fromkeys(layer.op.name for layer in net.layers))
    loss = LOSSES[net.spec.loss.type]
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
        "loss_formula_named": " ".join(loss_rows(prog)),
    }
