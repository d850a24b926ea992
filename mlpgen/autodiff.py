"""The reverse pass: from the graph and the op rules to a program of derived lines.

``derive(net)`` walks the graph forward once to write each layer's value, then
backward, in reverse topological order, applying each op's rules (``ops.py``)
to get ∂L/∂(every tensor and parameter). The result is a ``Program``: lists of
``Line``s whose right-hand sides are backend-neutral expressions, each with
the formula and shape that the emitters print above it. Where a tensor feeds
several layers, each consumer's contribution gets its own line and the
gradient is their sum (the multivariable chain rule).

The forward pass is derived twice, in training and in evaluation mode; lines
that differ (dropout's mask, batchnorm's batch statistics against its running
ones) are marked with their mode, the rest is shared. Rules that need several
lines name their pieces (``Ctx.let``); layer state that is not a parameter
(buffers) is updated by ``Ctx.update`` lines in training mode.

Every name in the generated code comes from ``Names``: a tensor's variable is
its spec name unless the generated code uses that name itself (a layer called
``sum`` is the variable ``sum_``, as torch.fx renames); formulas, diagrams,
dump keys and ``state_dict()`` keys keep the spec's names.
"""

from __future__ import annotations

import builtins
import keyword
import textwrap
from dataclasses import dataclass, field

from .expr import Expr, Sym, math_text
from .graph import INPUT, Layer, Network
from .ops import LOSSES, Buffer, Ctx, Local, LossCtx, Param
from .spec import GENERATED_NAMES, class_name

Y = Sym("y")
CLASS_WEIGHT = Sym("CLASS_WEIGHT", "w")
POS_WEIGHT = Sym("POS_WEIGHT", "pw")
NONE = Sym("None", "none")


def value(name: str, code: str | None = None) -> Sym:
    """The tensor a layer (or the input ``x``) produces, named as in the spec."""
    return Sym(code or name, name)


def grad(name: str, code: str | None = None) -> Sym:
    """∂L/∂(the tensor ``name``); in code ``d_<name>``."""
    return Sym(code or f"d_{name}", f"∂L/∂{name}", math_atom=False)


def param(state_name: str) -> Sym:
    return Sym(f'params["{state_name}"]', state_name)


def param_grad(state_name: str) -> Sym:
    return Sym(f'grads["{state_name}"]', f"∂L/∂{state_name}", math_atom=False)


def buffer(state_name: str) -> Sym:
    return Sym(f'buffers["{state_name}"]', state_name)


class Names:
    """The variable names of one generated program, none used twice.

    The generated files use names of their own (imports, constants, helper
    functions, the variables of the training loop: ``spec.GENERATED_NAMES``),
    Python's builtins and keywords, and the model class's name; a tensor or
    intermediate whose natural name is one of them, or already given, gets an
    underscore appended until it is free.
    """

    def __init__(self, net: Network):
        self.taken = (
            set(GENERATED_NAMES)
            | set(keyword.kwlist)
            | {n for n in dir(builtins) if not n.startswith("_")}
            | {class_name(net.spec.name)}
        )
        # the small nn.Module class a layer's submodule needs in torch_module.py
        self.classes: dict[str, str] = {
            layer.name: self.fresh(layer.op.class_name(layer.name))
            for layer in net.layers
            if layer.op.module_class is not None
        }
        # the loss's own nn.Module, where PyTorch has no class for it (hinge)
        loss = LOSSES[net.spec.loss.type]
        self.loss_class = (
            self.fresh(loss.class_name) if loss.module_class is not None else ""
        )
        self.tensors: dict[str, str] = {}  # spec name -> variable
        self.grads: dict[str, str] = {}  # spec name -> variable of ∂L/∂it
        self.locals: dict[tuple[str, str], str] = {}  # (layer, name) -> variable
        for name in [INPUT, *(layer.name for layer in net.layers)]:
            self.tensors[name] = INPUT if name == INPUT else self.fresh(name)
        for name in self.tensors:
            self.grads[name] = self.fresh(f"d_{name}")

    def fresh(self, base: str) -> str:
        name = base
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name

    def local(self, layer: str, name: str) -> str:
        key = (layer, name)
        if key not in self.locals:
            self.locals[key] = self.fresh(f"{layer}_{name}")
        return self.locals[key]

    def value(self, tensor: str) -> Sym:
        return value(tensor, self.tensors[tensor])

    def grad(self, tensor: str) -> Sym:
        return grad(tensor, self.grads[tensor])


@dataclass(frozen=True)
class Line:
    """``target = expr``, with its comment lines.

    kind: "forward" | "intermediate" | "buffer_update" (the forward pass);
    "loss_grad" | "grad" | "grad_intermediate" | "param_grad" | "fanout_part" |
    "fanout_sum" (the backward pass).
    mode: forward lines only: "both", or "train"/"eval" where the two passes differ.
    """

    target: Sym
    expr: Expr
    comments: tuple[str, ...]
    kind: str
    layer: str  # the layer this line belongs to ("" for the loss)
    shape: str
    mode: str = "both"


@dataclass(frozen=True)
class ParamInfo:
    state_name: str  # e.g. "fc1.weight"
    layer: Layer
    param: Param


@dataclass(frozen=True)
class BufferInfo:
    state_name: str  # e.g. "bn1.running_mean"
    layer: Layer
    buffer: Buffer


@dataclass(frozen=True)
class Program:
    net: Network
    forward: tuple[Line, ...]
    output: str  # the name of the model output
    loss_value: Expr  # the loss of the model output ``out``
    l2: tuple[ParamInfo, ...]  # parameters in the l2 term
    backward: tuple[Line, ...]
    params: tuple[ParamInfo, ...]
    buffers: tuple[BufferInfo, ...]
    names: Names
    # what forward() caches: (cache key, variable), every tensor and intermediate
    cache: tuple[tuple[str, str], ...]
    # the cached values backward() reads: (cache key, variable)
    saved: tuple[tuple[str, str], ...]
    # the tensors whose gradient backward() computes, in backward order: (spec name, variable)
    tensor_grads: tuple[tuple[str, str], ...]
    modal: bool  # some forward line differs between training and evaluation
    dropout: bool  # forward draws dropout masks
    locals_: dict[str, str] = field(default_factory=dict)  # variable -> cache key

    def code_name(self, tensor: str) -> str:
        """The variable of a tensor (``x`` or a layer) in the generated code."""
        return self.names.tensors[tensor]

    @property
    def tensors(self) -> tuple[str, ...]:
        """``x`` and every layer output, in forward order (the dump's step0/ values)."""
        return tuple(self.names.tensors)


def shape_str(features: int | tuple, batch: bool = True) -> str:
    if batch:
        return f"(N, {features})"
    sizes = features if isinstance(features, tuple) else (features,)
    return "(" + ", ".join(str(s) for s in sizes) + (",)" if len(sizes) == 1 else ")")


def _comment(target: Sym, expr: Expr, shape: str) -> str:
    return f"{math_text(target)} = {math_text(expr)}    {shape}"


def _ctx(net: Network, layer: Layer, names: Names, training: bool = True) -> Ctx:
    def name_local(name: str, math: str | None) -> Sym:
        return Sym(names.local(layer.name, name), math or f"{layer.name}.{name}")

    return Ctx(
        xs=[names.value(s) for s in layer.inputs],
        y=names.value(layer.name),
        g=names.grad(layer.name),
        p={p.name: param(layer.param_name(p)) for p in layer.params},
        a=layer.keys,
        in_features=list(layer.in_features),
        out_features=layer.out_features,
        b={b.name: buffer(f"{layer.name}.{b.name}") for b in layer.buffers},
        training=training,
        layer=layer.name,
        name_local=name_local,
        tokens=net.tokens if INPUT in layer.inputs else None,
    )


def loss_ctx(net: Network, out: Expr) -> LossCtx:
    spec = net.spec
    weight = None
    if getattr(spec.loss, "weight", None) is not None:
        weight = CLASS_WEIGHT
    elif getattr(spec.loss, "pos_weight", None) is not None:
        weight = POS_WEIGHT
    return LossCtx(
        out=out, y=Y, a=spec.loss, outputs=net.output.out_features, weight=weight
    )


def _local_shape(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _local_line(local: Local, layer: str, kind: str) -> Line:
    shape = _local_shape(local.shape) if local.shape else ""
    comments = []
    if local.note:
        comments.append(f"{math_text(local.target)}: {local.note}")
    text = f"{math_text(local.target)} = {math_text(local.expr)}"
    if kind == "buffer_update":
        text = f"{math_text(local.target)} ← {math_text(local.expr)}"
    comments.append(f"{text}    {shape}" if shape else text)
    return Line(local.target, local.expr, tuple(comments), kind, layer, shape)


def _forward_pass(
    net: Network, layer: Layer, names: Names, training: bool
) -> list[Line]:
    """One layer's forward lines in one mode: its intermediates, then its value."""
    c = _ctx(net, layer, names, training)
    e = layer.op.forward(c)
    lines = [
        _local_line(
            local,
            layer.name,
            "intermediate" if local.kind == "let" else "buffer_update",
        )
        for local in c.lines
    ]
    shape = shape_str(layer.out_features)
    target = names.value(layer.name)
    comments = (_comment(target, e, shape),)
    if layer.op.textbook is not None:
        comments = _readings(target, layer.op.textbook(c), e, shape, layer.op.why)
    lines.append(Line(target, e, comments, "forward", layer.name, shape))
    return lines


def _readings(target: Sym, book: Expr, e: Expr, shape: str, why: str) -> tuple:
    """The textbook's formula, then how the line below evaluates it."""
    return (
        _comment(target, book, shape),
        *textwrap.wrap(f"PyTorch evaluates it as {math_text(e)}, taking {why}", 76),
    )


def _same(a: Line, b: Line) -> bool:
    return a.target == b.target and a.expr == b.expr and a.kind == b.kind


def _modes(train: list[Line], evaluate: list[Line]) -> list[Line]:
    """One layer's lines of both passes: what they share once, the rest marked
    with its mode (the common beginning and end are shared)."""
    if len(train) == len(evaluate) and all(map(_same, train, evaluate)):
        return train
    head = 0
    while head < min(len(train), len(evaluate)) and _same(train[head], evaluate[head]):
        head += 1
    tail = 0
    while tail < min(len(train), len(evaluate)) - head and _same(
        train[-1 - tail], evaluate[-1 - tail]
    ):
        tail += 1
    t_mid = train[head : len(train) - tail]
    e_mid = evaluate[head : len(evaluate) - tail]
    # an intermediate of training only is None in evaluation (as CS231n's
    # dropout_forward sets mask = None in test mode), so that the cache can
    # always name it
    defined = {line.target for line in e_mid}
    e_mid = [
        Line(
            line.target,
            NONE,
            (f"{math_text(line.target)}: none in evaluation",),
            "intermediate",
            line.layer,
            "",
        )
        for line in t_mid
        if line.kind == "intermediate" and line.target not in defined
    ] + e_mid
    mark = lambda lines, mode: [
        Line(ln.target, ln.expr, ln.comments, ln.kind, ln.layer, ln.shape, mode)
        for ln in lines
    ]
    return [
        *train[:head],
        *mark(t_mid, "train"),
        *mark(e_mid, "eval"),
        *train[len(train) - tail :],
    ]


def derive(net: Network) -> Program:
    spec = net.spec
    loss = LOSSES[spec.loss.type]
    names = Names(net)

    # ---- forward: each layer's value from its inputs, in both modes
    forward: list[Line] = []
    value_of: dict[str, Expr] = {}  # each layer's value in training mode
    for layer in net.layers:
        train = _forward_pass(net, layer, names, True)
        value_of[layer.name] = train[-1].expr
        if layer.op.textbook is not None:  # the "Grad of:" header's formula
            value_of[layer.name] = layer.op.textbook(
                _ctx(net, layer, names, training=True)
            )
        forward += _modes(train, _forward_pass(net, layer, names, False))
    modal = any(line.mode != "both" for line in forward)

    # ---- which tensors need a gradient: those with a parameter upstream
    needs = {INPUT: False}
    for layer in net.layers:
        needs[layer.name] = bool(layer.params) or any(needs[s] for s in layer.inputs)

    params = tuple(
        ParamInfo(layer.param_name(p), layer, p)
        for layer in net.layers
        for p in layer.params
    )
    buffers = tuple(
        BufferInfo(f"{layer.name}.{b.name}", layer, b)
        for layer in net.layers
        for b in layer.buffers
    )
    param_info = {pi.state_name: pi for pi in params}
    l2_keys = spec.loss.l2
    l2: tuple[ParamInfo, ...] = ()
    if l2_keys is not None and l2_keys.coef > 0:
        l2 = tuple(
            pi for pi in params if l2_keys.params == "all" or pi.param.name == "weight"
        )

    # ---- backward: the loss, then the layers in reverse order
    out = net.output
    backward: list[Line] = []
    lctx = loss_ctx(net, names.value(out.name))
    g_out = loss.grad(lctx)
    backward.append(
        Line(
            names.grad(out.name),
            g_out,
            (
                *loss_comments(net, lctx, "L", grad=True),
                *grad_readings(net, lctx, names.grad(out.name)),
                _comment(names.grad(out.name), g_out, shape_str(out.out_features)),
            ),
            "loss_grad",
            "",
            shape_str(out.out_features),
        )
    )
    parts: dict[str, list[tuple[str, Sym]]] = {}  # tensor -> [(consumer, part symbol)]
    for layer in reversed(net.layers):
        if not needs[layer.name]:
            continue
        shape = shape_str(layer.out_features)
        pieces = parts.get(layer.name, [])
        if len(pieces) > 1:
            total = pieces[0][1]
            for _, sym in pieces[1:]:
                total = total + sym
            users = ", ".join(c for c, _ in pieces)
            target = names.grad(layer.name)
            backward.append(
                Line(
                    target,
                    total,
                    (
                        (
                            f"{layer.name} feeds {users}: a tensor used several times "
                            "gets the sum of the gradients of its uses "
                            "(multivariable chain rule)"
                        ),
                        _comment(target, total, shape),
                    ),
                    "fanout_sum",
                    layer.name,
                    shape,
                )
            )
        header = f"Grad of: {layer.name} = {math_text(value_of[layer.name])}"
        in_l2 = [pi.state_name for pi in l2 if pi.layer is layer]
        if in_l2 and spec.loss.l2 is not None:  # 2·coef·p joins these lines
            coef = show_number(spec.loss.l2.coef)
            header += ", and of the l2 term " + " + ".join(
                f"{coef}·Σ {name}²" for name in in_l2
            )
        backward += _layer_backward(
            net, layer, names, needs, parts, header, _param_grad_lines(param_info, l2)
        )

    backward = _without_unread(backward)
    locals_ = {code: f"{layer}.{name}" for (layer, name), code in names.locals.items()}
    read: set[str] = set()
    for line in backward:
        read |= line.expr.symbols()
    cache = [(t, names.tensors[t]) for t in names.tensors]
    cache += [
        (locals_[line.target.code], line.target.code)
        for line in forward
        if line.kind == "intermediate" and line.mode != "eval"
    ]
    saved = tuple((key, code) for key, code in cache if code in read)
    tensor_grads = tuple(
        (line.target.math.removeprefix("∂L/∂"), line.target.code)
        for line in backward
        if line.kind in ("loss_grad", "grad", "fanout_sum")
    )

    return Program(
        net=net,
        forward=tuple(forward),
        output=out.name,
        loss_value=loss.value(loss_ctx(net, Sym("out"))),
        l2=l2,
        backward=tuple(backward),
        params=params,
        buffers=buffers,
        names=names,
        cache=tuple(cache),
        saved=saved,
        tensor_grads=tensor_grads,
        modal=modal,
        dropout=any(layer.op.name == "dropout" for layer in net.layers),
        locals_=locals_,
    )


def show_number(v: float) -> str:
    """A spec's number as the comments write it (0.0001, not 1e-04)."""
    return repr(float(v)).replace("-", "−")


def l2_text(net: Network) -> str:
    """`` + coef·Σ p² over …``: the l2 term as the formulas write it, or ""."""
    l2 = net.spec.loss.l2
    if l2 is None or l2.coef <= 0:
        return ""
    which = "all parameters" if l2.params == "all" else "the weights"
    return f" + {show_number(l2.coef)}·Σ p² over {which}"


def loss_comments(
    net: Network, lctx: LossCtx, name: str, grad: bool = False
) -> list[str]:
    """The loss in two readings where they differ: the textbook's formula, then
    "PyTorch evaluates it as …, because …", both printed from the IR (with the
    l2 term). ``grad``: the header of the loss's gradient line ("Grad of: L = …")."""
    loss = LOSSES[net.spec.loss.type]
    value = math_text(loss.value(lctx))
    book = loss.textbook(lctx) if loss.textbook is not None else None
    head = "Grad of: " if grad else ""
    if book is None:
        return [f"{head}{name} = {value}{l2_text(net)}"]
    term = "the loss term" if l2_text(net) else "it"
    return [
        f"{head}{name} = {math_text(book)}{l2_text(net)}",
        f"PyTorch evaluates {term} as {value},",
        *_wrapped(f"because {loss.why}"),
    ]


def _wrapped(text: str) -> list[str]:
    """A sentence of a comment, as lines of at most 80 characters."""
    return textwrap.wrap(text, 80, break_long_words=False, break_on_hyphens=False)


def grad_readings(net: Network, lctx: LossCtx, target: Sym) -> list[str]:
    """The textbook's gradient of the loss, where PyTorch computes another form."""
    loss = LOSSES[net.spec.loss.type]
    if loss.textbook_grad is None:
        return []
    book = loss.textbook_grad(lctx)
    return [
        f"the textbook's: {math_text(target)} = {math_text(book)};",
        *_wrapped(f"PyTorch computes it as below, because {loss.grad_why}"),
    ]


def _param_grad_lines(param_info: dict[str, ParamInfo], l2: tuple[ParamInfo, ...]):
    """A function making the line of ∂L/∂p from the rule's expression: the l2
    term's 2·coef·p joins the rule where p is in it."""
    coef = {pi.state_name: pi.layer for pi in l2}

    def line(state_name: str, e: Expr, coef2: float | None) -> Line:
        pinfo = param_info[state_name]
        notes: tuple[str, ...] = ()
        if coef2 is not None and state_name in coef:
            term = coef2 * param(state_name)
            e = e + term
            notes = (
                (
                    f"the L2 term {coef2 / 2:g}·Σ {state_name}² of L adds its "
                    f"gradient {math_text(term)}"
                ),
            )
        pshape = shape_str(pinfo.param.shape, batch=False)
        target = param_grad(state_name)
        return Line(
            target,
            e,
            (*notes, _comment(target, e, pshape)),
            "param_grad",
            pinfo.layer.name,
            pshape,
        )

    return line


def _without_unread(lines: list[Line]) -> list[Line]:
    """The backward lines without intermediates that no later line reads."""
    keep = list(lines)
    while True:
        read: set[str] = set()
        for line in keep:
            read |= line.expr.symbols()
        unread = [
            line
            for line in keep
            if line.kind == "grad_intermediate" and line.target.code not in read
        ]
        if not unread:
            return keep
        keep = [line for line in keep if line not in unread]


def _layer_backward(net, layer, names, needs, parts, header, param_line) -> list[Line]:
    """One layer's backward lines: the intermediates its rules name, ∂L/∂(each
    parameter), ∂L/∂(each input that needs it), in that order."""
    c = _ctx(net, layer, names)
    lines: list[Line] = []
    coef2 = 2 * net.spec.loss.l2.coef if net.spec.loss.l2 is not None else None

    done: set[Sym] = set()  # a piece both rules name (batchnorm's Σₙ g) is one line

    def intermediates() -> None:
        for local in c.lines:
            if local.target not in done:
                done.add(local.target)
                lines.append(_local_line(local, layer.name, "grad_intermediate"))
        c.lines.clear()

    pgrads = layer.op.param_grads(c)
    intermediates()
    for pname, e in pgrads.items():
        lines.append(param_line(f"{layer.name}.{pname}", e, coef2))
    if any(needs[src] for src in layer.inputs):
        vjps = layer.op.vjp(c)
        intermediates()
        for src, e in zip(layer.inputs, vjps):
            if not needs[src] or e is None:
                continue
            sshape = shape_str(net.features(src))
            if len(net.consumers(src)) > 1:
                target = Sym(
                    names.fresh(f"d_{src}_from_{layer.name}"),
                    f"∂L/∂{src} via {layer.name}",
                    math_atom=False,
                )
                kind = "fanout_part"
                parts.setdefault(src, []).append((layer.name, target))
            else:
                target, kind = names.grad(src), "grad"
            comments = (_comment(target, e, sshape),)
            if layer.op.textbook_vjp is not None:
                book = layer.op.textbook_vjp(c)
                comments = _readings(target, book, e, sshape, layer.op.why)
            lines.append(Line(target, e, comments, kind, layer.name, sshape))
    if lines:
        first = lines[0]
        lines[0] = Line(
            first.target,
            first.expr,
            (header, *first.comments),
            first.kind,
            first.layer,
            first.shape,
        )
    return lines
