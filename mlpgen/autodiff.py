"""The reverse pass: from the graph and the op rules to a program of derived lines.

``derive(net)`` walks the graph forward once to write each layer's value, then
backward, in reverse topological order, applying each op's rules (``ops.py``)
to get ∂L/∂(every tensor and parameter). The result is a ``Program``: lists of
``Line``s whose right-hand sides are backend-neutral expressions, each with
the formula and shape that the emitters print above it. Where a tensor feeds
several layers, each consumer's contribution gets its own line and the
gradient is their sum (the multivariable chain rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from .expr import Expr, Sym, math_text
from .graph import INPUT, Layer, Network
from .ops import LOSSES, Ctx, LossCtx, Param

Y = Sym("y")
CLASS_WEIGHT = Sym("CLASS_WEIGHT", "w")
POS_WEIGHT = Sym("POS_WEIGHT", "pw")


def value(name: str) -> Sym:
    """The tensor a layer (or the input ``x``) produces, named as in the spec."""
    return Sym(name)


def grad(name: str) -> Sym:
    """∂L/∂(the tensor ``name``); in code ``d_<name>``."""
    return Sym(f"d_{name}", f"∂L/∂{name}", math_atom=False)


def param(state_name: str) -> Sym:
    return Sym(f'params["{state_name}"]', state_name)


def param_grad(state_name: str) -> Sym:
    return Sym(f'grads["{state_name}"]', f"∂L/∂{state_name}", math_atom=False)


@dataclass(frozen=True)
class Line:
    """``target = expr``, with its comment lines.

    kind: "forward" | "loss_grad" | "grad" | "param_grad" | "fanout_part" | "fanout_sum"
    """

    target: Sym
    expr: Expr
    comments: tuple[str, ...]
    kind: str
    layer: str  # the layer this line belongs to ("" for the loss)
    shape: str


@dataclass(frozen=True)
class ParamInfo:
    state_name: str  # e.g. "fc1.weight"
    layer: Layer
    param: Param


@dataclass(frozen=True)
class Program:
    net: Network
    forward: tuple[Line, ...]
    output: str  # the name of the model output
    saved: tuple[str, ...]  # forward values that the backward pass reads
    loss_value: Expr  # the loss of the model output ``out``
    l2: tuple[ParamInfo, ...]  # parameters in the l2 term
    backward: tuple[Line, ...]
    params: tuple[ParamInfo, ...]


def shape_str(features: int | tuple[int, ...], batch: bool = True) -> str:
    if batch:
        return f"(N, {features})"
    return "(" + ", ".join(str(s) for s in features) + (",)" if len(features) == 1 else ")")


def _ctx(net: Network, layer: Layer) -> Ctx:
    return Ctx(
        xs=[value(s) for s in layer.inputs],
        y=value(layer.name),
        g=grad(layer.name),
        p={p.name: param(layer.param_name(p)) for p in layer.params},
        a=layer.keys,
        in_features=list(layer.in_features),
        out_features=layer.out_features,
    )


def _comment(target: Sym, expr: Expr, shape: str) -> str:
    return f"{math_text(target)} = {math_text(expr)}    {shape}"


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


def derive(net: Network) -> Program:
    spec = net.spec
    loss = LOSSES[spec.loss.type]

    # ---- forward: each layer's value from its inputs
    forward = []
    for layer in net.layers:
        e = layer.op.forward(_ctx(net, layer))
        shape = shape_str(layer.out_features)
        forward.append(
            Line(
                value(layer.name),
                e,
                (_comment(value(layer.name), e, shape),),
                "forward",
                layer.name,
                shape,
            )
        )

    # ---- which tensors need a gradient: those with a parameter upstream
    needs = {INPUT: False}
    for layer in net.layers:
        needs[layer.name] = bool(layer.params) or any(needs[s] for s in layer.inputs)

    params = tuple(
        ParamInfo(layer.param_name(p), layer, p) for layer in net.layers for p in layer.params
    )
    param_info = {pi.state_name: pi for pi in params}
    l2_keys = spec.loss.l2
    l2 = ()
    if l2_keys is not None and l2_keys.coef > 0:
        l2 = tuple(
            pi for pi in params if l2_keys.params == "all" or pi.param.name == "weight"
        )
    l2_names = {pi.state_name for pi in l2}

    # ---- backward: the loss, then the layers in reverse order
    out = net.output
    backward: list[Line] = []
    g_out = loss.grad(loss_ctx(net, value(out.name)))
    loss_formula = math_text(loss.value(loss_ctx(net, value(out.name))))
    backward.append(
        Line(
            grad(out.name),
            g_out,
            (
                f"Grad of: L = {loss_formula}",
                _comment(grad(out.name), g_out, shape_str(out.out_features)),
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
            backward.append(
                Line(
                    grad(layer.name),
                    total,
                    (
                        (
                            f"{layer.name} feeds {users}: a tensor used several times "
                            "gets the sum of the gradients of its uses "
                            "(multivariable chain rule)"
                        ),
                        _comment(grad(layer.name), total, shape),
                    ),
                    "fanout_sum",
                    layer.name,
                    shape,
                )
            )
        c = _ctx(net, layer)
        header = f"Grad of: {layer.name} = {math_text(forward[layer.index].expr)}"
        lines: list[Line] = []
        for pname, e in layer.op.param_grads(c).items():
            state_name = f"{layer.name}.{pname}"
            pinfo = param_info[state_name]
            if state_name in l2_names:
                e = e + (2 * l2_keys.coef) * param(state_name)
            pshape = shape_str(pinfo.param.shape, batch=False)
            lines.append(
                Line(
                    param_grad(state_name),
                    e,
                    (_comment(param_grad(state_name), e, pshape),),
                    "param_grad",
                    layer.name,
                    pshape,
                )
            )
        for src, e in zip(layer.inputs, layer.op.vjp(c)):
            if not needs[src] or e is None:
                continue
            sshape = shape_str(net.features(src))
            if len(net.consumers(src)) > 1:
                target = Sym(f"d_{src}_from_{layer.name}", f"∂L/∂{src} via {layer.name}", math_atom=False)
                kind = "fanout_part"
                parts.setdefault(src, []).append((layer.name, target))
            else:
                target, kind = grad(src), "grad"
            lines.append(
                Line(target, e, (_comment(target, e, sshape),), kind, layer.name, sshape)
            )
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
        backward.extend(lines)

    read = set()
    for line in backward:
        read |= line.expr.symbols()
    names = [INPUT, *(layer.name for layer in net.layers)]
    saved = tuple(n for n in names if n in read)
    if any(s.startswith("masks[") for s in read):
        saved += ("masks",)  # the dropout masks of this step

    loss_value = loss.value(loss_ctx(net, Sym("out")))
    return Program(
        net=net,
        forward=tuple(forward),
        output=out.name,
        saved=saved,
        loss_value=loss_value,
        l2=l2,
        backward=tuple(backward),
        params=params,
    )
