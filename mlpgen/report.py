"""Reports: the layer table of ``mlpgen check``, and loss-curve figures.

The figures (``mlpgen run/crosstest/compare --plot``) import matplotlib only
when drawn, with the Agg backend, so the compile path never pays for it.
"""

from __future__ import annotations

from pathlib import Path

from .autodiff import Program
from .text import one_line

# one style per curve, so that curves lying on top of each other stay visible
LINE_STYLES = (
    {"linestyle": "-", "linewidth": 3.0, "alpha": 0.6},
    {"linestyle": "--", "linewidth": 2.0},
    {"linestyle": ":", "linewidth": 2.0},
    {"linestyle": "-.", "linewidth": 1.5},
)
# a y range wider than this factor is drawn on a log scale
LOG_RANGE = 100.0
# no dates or version strings in the figure files: the same curves, the same bytes
METADATA = {
    ".png": {"Software": None},
    ".svg": {"Date": None, "Creator": None},
    ".pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def layer_table(prog: Program) -> str:
    net = prog.net
    rows = [("layer", "type", "inputs", "output", "parameters", "count")]
    kind = "tokens" if net.tokens else "input"  # integer indices an embedding reads
    rows.append(("x", kind, "", f"(N, {net.input_features})", "", ""))
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
    lines = [f"{net.spec.name}: {one_line(net.spec.description)}".rstrip(": ")]
    for i, r in enumerate(rows):
        cells = [
            c.ljust(w) if j != 5 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"total parameters: {net.param_count}")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _scale_y(ax, arrays) -> None:
    """Log-scale the y axis when the positive values span more than LOG_RANGE."""
    import numpy as np

    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > LOG_RANGE:
        ax.set_yscale("log")


def plot_losses(file, title: str, curves, differences=None, tolerance=None) -> None:
    """Write a figure of loss curves to ``file``.

    curves: [(label, losses per step)], overlaid in distinct line styles.
    differences: optional [(label, |difference| per step)], drawn on a second,
    log-scale panel below, with ``tolerance`` (label, per-step array) as a
    reference line; steps where a difference is exactly 0 leave a gap.
    """
    import numpy as np

    plt = _pyplot()
    panels = 2 if differences else 1
    fig, axes = plt.subplots(
        panels,
        1,
        figsize=(8, 4.5 * panels),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 2][:panels]},
    )
    ax = axes[0][0]
    for i, (label, losses) in enumerate(curves):
        steps = np.arange(1, len(losses) + 1)
        ax.plot(
            steps,
            losses,
            label=label,
            color=f"C{i}",
            **LINE_STYLES[i % len(LINE_STYLES)],
        )
    _scale_y(ax, [c for _, c in curves])
    ax.set_title(title)
    ax.set_ylabel("loss (on each step's batch)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if differences:
        dx = axes[1][0]
        # difference i compares curve i with curve 0: drawn in curve i's color and style
        for i, (label, diff) in enumerate(differences, start=1):
            diff = np.asarray(diff, dtype=float)
            steps = np.arange(1, len(diff) + 1)
            style = {"color": f"C{i}", **LINE_STYLES[i % len(LINE_STYLES)]}
            if np.any(diff > 0):
                dx.plot(steps, np.where(diff > 0, diff, np.nan), label=label, **style)
            else:
                dx.plot(
                    [], [], label=f"{label}: identical (every difference is 0)", **style
                )
        if tolerance is not None:
            label, tol = tolerance
            dx.plot(
                np.arange(1, len(tol) + 1), tol, color="gray", linewidth=1, label=label
            )
        dx.set_yscale("log")
        dx.set_ylabel("|difference|")
        dx.grid(True, alpha=0.3)
        dx.legend(fontsize="small")
    axes[-1][0].set_xlabel("optimizer step")
    fig.tight_layout()
    suffix = Path(file).suffix.lower()
    with plt.rc_context({"svg.hashsalt": "mlpgen"}):
        fig.savefig(file, dpi=120, metadata=METADATA.get(suffix))
    plt.close(fig)
