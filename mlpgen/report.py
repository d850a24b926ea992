"""Plain-text reports: the layer table of ``mlpgen check``."""

from __future__ import annotations

from .autodiff import Program


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def layer_table(prog: Program) -> str:
    net = prog.net
    rows = [("layer", "type", "inputs", "output", "parameters", "count")]
    rows.append(("x", "input", "", f"(N, {net.input_features})", "", ""))
    for layer in net.layers:
        count = 0
        shapes = []
        for p in layer.params:
            n = 1
            for s in p.shape:
                n *= s
            count += n
            shapes.append(f"{layer.param_name(p)} {_fmt_shape(p.shape)}")
        rows.append(
            (
                layer.name,
                layer.op.name,
                ", ".join(layer.inputs),
                f"(N, {layer.out_features})",
                ", ".join(shapes),
                str(count) if count else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{net.spec.name}: {net.spec.description}".rstrip(": ")]
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j != 5 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"total parameters: {net.param_count}")
    return "\n".join(lines)
