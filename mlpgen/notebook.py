"""numpy_backprop.ipynb (``mlpgen compile --notebook``): numpy_backprop.py as a
Jupyter notebook, executed so that its outputs are kept.

The code cells are numpy_backprop.py itself, cut at its top-level functions
(the formatted file that compile writes, so the two never drift apart): the
lesson part, without the command line and the dump at its end. Between them
come Markdown cells with the formulas in LaTeX (the same Program, printed by
``expr.latex_text``) and code cells that run one training step and show its
values: the data, the initial parameters, every tensor of the forward pass,
every gradient of the backward pass; then the training loop and its curve.

The notebook is written with nbformat (version 4) and run top to bottom in a
fresh kernel with nbclient, in a scratch copy of the output folder. The same
spec gives the same bytes: cell ids are numbered, no timings are recorded,
and the kernel's description is reduced to its name.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tempfile
from pathlib import Path

from .autodiff import Program, loss_ctx, value
from .expr import latex_text
from .ops import LOSSES
from .teach import NotebookFailed
from .text import markdown

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}
CELL_TIMEOUT = 600  # seconds: the training cell of a large network

# where each function of numpy_backprop.py goes: the section it opens
SECTIONS = {
    "load_data": "data",
    "batches": "data",
    "init_params": "params",
    "init_buffers": "params",
    "forward": "forward",
    "loss_fn": "loss",
    "backward": "backward",
    "init_optimizer": "update",
    "optimizer_step": "update",
    "scheduled_lr": "update",
    "clip_grad_norm": "update",
    "monitored": "train",
    "train": "train",
    "report": "train",
}
ORDER = (
    "setup",
    "data",
    "params",
    "helpers",
    "forward",
    "loss",
    "backward",
    "update",
    "train",
)
PLUMBING = re.compile(r"^# -{20,}\n# Running this file", re.MULTILINE)


# ------------------------------------------------------------------ the file, cut


def pieces(text: str) -> dict[str, list[str]]:
    """numpy_backprop.py's lesson, cut at its top-level functions and sorted
    into sections: what comes before the first function (the imports and
    constants) is "setup", each function goes to its section (a function the
    table does not know is a helper), in file order."""
    end = PLUMBING.search(text)
    lesson = text[: end.start()] if end else text
    lines = lesson.splitlines()
    out: dict[str, list[str]] = {section: [] for section in ORDER}
    start = 1
    for node in ast.parse(lesson).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            # the module docstring: the first Markdown cell says it
            start = (node.end_lineno or node.lineno) + 1
            continue
        first = min(
            [node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]
        )
        while first > 1 and lines[first - 2].startswith("#"):
            first -= 1  # the comment above a statement belongs to it
        source = "\n".join(lines[first - 1 : node.end_lineno])
        if isinstance(node, ast.FunctionDef):
            if not out["setup"] and not any(out.values()):
                out["setup"] = ["\n".join(lines[start - 1 : first - 1]).strip("\n")]
            out[SECTIONS.get(node.name, "helpers")].append(source)
        elif any(out.values()):
            out["helpers"].append(source)  # a statement between functions
    return out


def _notebook_paths(source: str, data_file: str | None) -> str:
    """The script finds its data file next to itself (``__file__``); a notebook
    has no ``__file__``, and Jupyter runs it in its own folder."""
    if data_file is None:
        return source
    return source.replace(
        "pathlib.Path(__file__).resolve().parent /",
        "pathlib.Path.cwd() /",  # this notebook's folder, where Jupyter runs it
    )


# ------------------------------------------------------------------ the cells


def _math_block(rows: list[str]) -> str:
    body = " \\\\\n".join(rows)
    return f"$$\n\\begin{{aligned}}\n{body}\n\\end{{aligned}}\n$$"


def _equation(target, expr) -> str:
    return f"{latex_text(target)} &= {latex_text(expr)}"


def cells(prog: Program, files: dict, ctx: dict) -> list[tuple[str, str]]:
    """(kind, source) of every cell, kind "markdown" or "code"."""
    net = prog.net
    data_file = net.data.file.name if net.data.file is not None else None
    code = pieces(_notebook_paths(str(files["numpy_backprop.py"]), data_file))
    sig = ctx["signatures"]
    b_arg = "buffers, " if prog.buffers else ""
    l2 = ", params" if ctx["l2"] else ""
    out: list[tuple[str, str]] = []

    def md(text: str) -> None:
        out.append(("markdown", text.strip("\n")))

    def py(text: str) -> None:
        out.append(("code", text.strip("\n")))

    md(
        f"# {markdown(net.spec.name)}: {markdown(net.spec.description or net.spec.name)}\n\n"
        "`numpy_backprop.py` as a notebook: the network in NumPy with its backward "
        "pass written out, each gradient line under the formula it computes, "
        "derived by mlpgen from the network's graph. The code cells are the file's "
        "own functions, in order; between them, the formulas, and one training "
        "step run cell by cell so that every tensor and every gradient can be "
        "looked at. Run the cells from the top.\n\n"
        f"Generated by mlpgen from {markdown(Path(net.spec.source).name)}."
    )
    md(
        "## Setup\n\nThe imports and the constants of the file: the seed, the "
        "training settings, the optimizer's hyperparameters."
    )
    for source in code["setup"]:
        py(source)
    py("np.set_printoptions(precision=4, suppress=True, threshold=60, edgeitems=3)")

    md(
        "## The data\n\n`load_data()` gives each part of the data as an `(x, y)` "
        "pair; a training epoch cuts the training part into batches."
    )
    for source in code["data"]:
        py(source)
    batch = "xb, yb = x, y  # one batch: all of the training data"
    if ctx["batch_size"] or ctx["shuffle"] or ctx["replacement"]:
        rng = "np.random.default_rng([SEED, 2])" if ctx["shuffle_rng"] else ""
        batch = f"xb, yb = next(batches(x, y{', ' + rng if rng else ''}))  # the first batch"
    data_call = "load_data()"
    py(
        f"data = {data_call}\n"
        "for part, (xs, ys) in data.items():\n"
        '    print(f"{part:<5}  x {xs.shape}  y {ys.shape}")\n'
        'x, y = data["train"]\n'
        f"{batch}\n"
        "xb[:5], yb[:5]"
    )

    rows = "\n".join(
        f"| `{r['name']}` | {r['type']} | {r['inputs']} | {r['shape']} | {r['params']} |"
        for r in ctx["layer_table"]
    )
    md(
        "## The parameters\n\n"
        "| layer | type | inputs | output | parameters |\n|---|---|---|---|---|\n"
        f"{rows}\n\n{ctx['param_count']} parameters in all, each drawn from the "
        "init stream as PyTorch's initialisation would draw it."
    )
    for source in code["params"]:
        py(source)
    shown = "params = init_params()\n"
    if prog.buffers:
        shown += "buffers = init_buffers()\n"
    py(shown + "{name: p.shape for name, p in params.items()}")

    if code["helpers"]:
        md(
            "## Helpers\n\nWhat NumPy does not have, written out in its numerically "
            "stable form."
        )
        for source in code["helpers"]:
            py(source)

    forward = [
        _equation(ln.target, ln.expr)
        for ln in prog.forward
        if ln.mode != "eval" and ln.kind != "buffer_update"
    ]
    md(
        "## The forward pass\n\nIn training mode, layer by layer (N is the batch "
        "size, $\\odot$ the element-wise product, juxtaposition the matrix "
        "product):\n\n" + _math_block(forward)
    )
    for source in code["forward"]:
        py(source)
    dropout = ""
    if prog.dropout:
        dropout = "\ndropout_rng = np.random.default_rng([SEED, 3])  # the first masks"
    py(
        f"# the first training step: training mode, the first batch{dropout}\n"
        f"out, cache = forward({sig['head']}xb{sig['train_tail']})\n"
        "for name, value in cache.items():\n"
        '    print(f"{name} {value.shape}:\\n{value}\\n")'
    )

    loss = LOSSES[net.spec.loss.type]
    loss_math = latex_text(loss.value(loss_ctx(net, value(prog.output))))
    l2_text = ""
    l2_keys = net.spec.loss.l2
    if prog.l2 and l2_keys is not None:
        which = "all parameters" if l2_keys.params == "all" else "the weights"
        l2_text = f" + {l2_keys.coef} \\sum p^2 \\quad \\text{{(over {which})}}"
    md(f"## The loss\n\n$$L = {loss_math}{l2_text}$$")
    for source in code["loss"]:
        py(source)
    py(f"loss = loss_fn(out, yb{l2})\nloss")

    backward = [_equation(ln.target, ln.expr) for ln in prog.backward]
    md(
        "## The backward pass\n\nFrom the loss back to the input, one derived "
        "line per gradient; $\\frac{\\partial L}{\\partial h}$ has the shape of "
        "$h$. A tensor used by several layers gets one part per use and their "
        "sum (the multivariable chain rule).\n\n" + _math_block(backward)
    )
    for source in code["backward"]:
        py(source)
    py(
        f"grads, tensor_grads = backward({ctx['signatures']['backward']}, yb)\n"
        "for name, g in tensor_grads.items():\n"
        '    print(f"∂L/∂{name} {g.shape}:\\n{g}\\n")\n'
        "for name, g in grads.items():\n"
        '    print(f"∂L/∂{name} {g.shape}:\\n{g}\\n")'
    )

    md(
        f"## The update\n\n`torch.optim.{ctx['opt']['torch_class']}"
        f"({ctx['opt']['signature']})`, its formulas written out in the same order."
    )
    for source in code["update"]:
        py(source)

    md(
        "## Training\n\nEvery step: the forward pass on a batch, the loss, the "
        "backward pass and the update; the loss of every step is kept. Then the "
        "loss on each part of the data, in evaluation mode."
    )
    for source in code["train"]:
        py(source)
    seed = ", seed=SEED" if ctx["seeded"] else ""
    py(
        "params = init_params()\n"
        + ("buffers = init_buffers()\n" if prog.buffers else "")
        + f"{ctx['returned']} = train(params, {b_arg}data, epochs=EPOCHS{seed})\n"
        f"report(params, {b_arg}data)"
    )
    py(
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n\n"
        "plt.plot(losses)\n"
        'plt.xlabel("step")\n'
        'plt.ylabel("loss")\n'
        f'plt.title("{net.spec.name}: the loss of every training step")\n'
        "plt.show()"
    )
    return out


# ------------------------------------------------------------------ the notebook


def notebook(prog: Program, files: dict, ctx: dict) -> bytes:
    """The notebook's bytes, executed in a fresh kernel; NotebookFailed when a
    cell fails (or the kernel cannot start)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    for i, (kind, source) in enumerate(cells(prog, files, ctx)):
        make = (
            nbformat.v4.new_markdown_cell
            if kind == "markdown"
            else nbformat.v4.new_code_cell
        )
        nb.cells.append(make(source, id=f"cell-{i:02d}"))
    nbformat.validate(nb)

    with tempfile.TemporaryDirectory(prefix="mlpgen-nb-") as tmp:
        data_file = prog.net.data.file
        if data_file is not None:  # load_data() reads it from the notebook's folder
            Path(tmp, data_file.name).write_bytes(data_file.content)
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name=KERNEL["name"],
            record_timing=False,
            coalesce_streams=True,  # one output per stream, however the kernel flushed it
            resources={"metadata": {"path": tmp}},
        )
        try:
            # the kernel's own notes on its stderr (its transport) are no output of ours
            client.execute(stderr=subprocess.DEVNULL)
        except CellExecutionError as e:
            raise NotebookFailed(f"numpy_backprop.ipynb: a cell failed:\n{e}") from None
        except Exception as e:  # noqa: BLE001 - the kernel did not start or died
            raise NotebookFailed(
                f"numpy_backprop.ipynb: {type(e).__name__}: {e}"
            ) from None
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.validate(nb)
    return (nbformat.writes(nb) + "\n").encode("utf-8")
