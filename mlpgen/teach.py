"""The teaching files (``mlpgen compile --exercise / --ladder / --notebook``) and
the derivations of the learning page.

- ``--exercise``: ``exercise.py``, numpy_backprop.py with every line of
  ``backward()`` left for the learner to write, and ``grade.py``, which grades
  each line of a learner's backward pass against the derived one.
- ``--ladder``: the rungs of "Learning PyTorch with Examples" between
  torch_manual.py and torch_module.py: ``torch_autograd.py``, ``torch_nn.py``,
  ``torch_optim.py``, and on the learning page the differences between
  consecutive rungs.
- ``--notebook``: ``numpy_backprop.ipynb``, numpy_backprop.py cut into cells
  at its functions, with the values of one step and the formulas in LaTeX,
  executed (``notebook.py``).

Every file is printed by a template from the same Program and the same
templates as the three implementations: the exercise and the rungs extend
``_manual.j2`` and ``torch_module.py.j2`` (their blocks mark what a rung
changes), so what the main files learn the teaching files learn too. This
module computes what those templates print, and checks what only the ladder
cannot take (a layer named like a method of nn.Sequential).
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass

from .autodiff import Program
from .expr import FUNCS, Sym, math_text, numpy_code
from .graph import INPUT
from .ops import ELEMENTWISE_DERIVATION, L2_DERIVATION, LAYERS, LOSSES
from .spec import SpecError

EXERCISE_LEVELS = ("guided", "hard")
LADDER = ("torch_autograd.py", "torch_nn.py", "torch_optim.py")
EXERCISE = ("exercise.py", "grade.py")
NOTEBOOK = "numpy_backprop.ipynb"

# The public methods nn.Sequential and nn.ModuleDict add to nn.Module's (torch
# 2.13; the compile path never imports torch, a test compares them with
# torch's): the ladder's torch_optim.py and torch_nn.py hold the layers in one
# of them, under the layers' names, which must not hide a method.
SEQUENTIAL_ATTRIBUTES = frozenset({"append", "extend", "insert", "pop"})
MODULE_DICT_ATTRIBUTES = frozenset(
    {"clear", "items", "keys", "pop", "update", "values"}
)


class NotebookFailed(Exception):
    """The notebook did not run to its end in a fresh kernel (the cell and its
    error are in the message)."""


@dataclass(frozen=True)
class Teaching:
    """Which teaching files a compile writes (the flags of ``mlpgen compile``)."""

    exercise: str | None = None  # None, "guided" (formulas kept) or "hard"
    ladder: bool = False
    notebook: bool = False

    def templates(self) -> tuple[str, ...]:
        """The files printed by a template of their own (``NAME.j2``)."""
        return (LADDER if self.ladder else ()) + (EXERCISE if self.exercise else ())


# ------------------------------------------------------------------ checks


def is_chain(prog: Program) -> bool:
    """Each layer reads the one before it (the first reads x): an nn.Sequential."""
    previous = INPUT
    for layer in prog.net.layers:
        if list(layer.inputs) != [previous]:
            return False
        previous = layer.name
    return True


def check(prog: Program, teaching: Teaching) -> None:
    """SpecError for what the teaching files cannot take."""
    if not teaching.ladder:
        return
    chain = is_chain(prog)
    container = "nn.Sequential" if chain else "nn.ModuleDict"
    taken = SEQUENTIAL_ATTRIBUTES if chain else MODULE_DICT_ATTRIBUTES
    problems = [
        (
            f"model.layers[{i}].name",
            (
                f"'{layer.name}' is a method of {container}, which holds the "
                "layers in the ladder's torch_nn.py and torch_optim.py (--ladder); "
                "choose another name"
            ),
        )
        for i, layer in enumerate(prog.net.layers)
        if layer.name in taken
    ]
    if problems:
        raise SpecError(prog.net.spec.source, problems)


# ------------------------------------------------------------------ context


def context(prog: Program, teaching: Teaching, base: dict) -> dict:
    """What the teaching templates and the learning page's includes print
    (``base``: the context of the three implementations, ``emit.context``)."""
    ctx = {
        "teaching": {
            "exercise": teaching.exercise,
            "ladder": teaching.ladder,
            "notebook": teaching.notebook,
        },
        "derivations": derivations(prog),
        "ladder_steps": [],  # filled in by ladder_steps() once the rungs are formatted
    }
    if teaching.exercise:
        ctx["exercise"] = _exercise(prog, teaching.exercise)
        ctx["grade"] = _grade(prog)
    if teaching.ladder:
        ctx["ladder"] = _ladder(prog, base)
    return ctx


def derivations(prog: Program) -> dict:
    """The derivation of each rule the network uses, in the order of first use."""
    net = prog.net
    types = list(dict.fromkeys(layer.op.name for layer in net.layers))
    loss = LOSSES[net.spec.loss.type]
    ops = [
        {
            "name": t,
            "formula": LAYERS[t].formula,
            "derivative": LAYERS[t].derivative,
            "lines": LAYERS[t].derivation.splitlines()
            + (_custom_lines(prog) if t == "activation" else []),
        }
        for t in types
    ]
    elementwise = [t for t in types if LAYERS[t].elementwise and t not in ("dropout",)]
    return {
        "elementwise": elementwise,
        "elementwise_text": ELEMENTWISE_DERIVATION,
        "ops": ops,
        "loss": {
            "name": loss.name,
            "formula": loss.formula,
            "derivative": loss.derivative,
            "lines": loss.derivation.splitlines(),
        },
        "l2": L2_DERIVATION if prog.l2 else None,
    }


def _custom_lines(prog: Program) -> list[str]:
    """Each custom activation's f and f′ as the generated code computes them
    (simplified, shared pieces once), and where the formula as written overflows."""
    from . import cas  # sympy: only specs with an activation layer get here

    dtype = prog.net.spec.dtype
    lines = []
    for layer in prog.net.layers:
        if layer.op.name != "activation":
            continue
        text = layer.keys.expr
        f = math_text(cas.forward_ir(text, Sym("x")))
        lines.append(
            f"`{layer.name}`: f(x) = {f}; sympy derives {cas.shared_math(text)} "
            "(the shortest of the chain rule's form, factored and over one "
            "denominator; where the whole f reappears, the saved output y = f(x) "
            "is read instead)."
        )
        at = cas.overflow(text, dtype)
        if at:
            where = min(at.values(), key=abs)
            what = (
                "f(x) and f′(x) are"
                if set(at) == {"f", "f′"}
                else ("f(x) is" if "f" in at else "f′(x) is")
            )
            finite = "" if "f" in at else ", though f(x) itself stays finite"
            number = f"{where:.4g}".replace("-", "−")
            side = "upward" if where > 0 else "downward"
            lines.append(
                f"The formula as written overflows in {dtype}: {what} ∞ or nan "
                f"from x ≈ {number} {side} (a step of it overflows to ∞ there"
                f"{finite}). torch_module.py's autograd works through the same "
                "formula and gives the same ∞ or nan from the same input, so the "
                "three files still agree there."
            )
        if cas.writes_softplus_out(text):
            lines.append(
                "Written with softplus(u) in place of log(1 + exp(u)), it would not "
                "overflow: softplus computes the same number without forming "
                "exp(u), as torch does (and is u itself above 20)."
            )
    return lines


def _exercise(prog: Program, level: str) -> dict:
    """backward()'s lines as blanks: each keeps its "Grad of:" header, and its
    formula (level "guided") or only its shape (level "hard")."""
    lines = []
    for line in prog.backward:
        if level == "guided":
            comments = list(line.comments)
        else:
            comments = [c for c in line.comments if c.startswith("Grad of: ")]
            name = math_text(line.target)
            comments.append(f"{name}: shape {line.shape}" if line.shape else name)
        lines.append({"comments": comments, "target": numpy_code(line.target)})
    saved = prog.saved if level == "guided" else prog.cache
    unpack = ", ".join(code for _, code in saved) + ("," if len(saved) == 1 else "")
    unpack += " = " + ", ".join(f'cache["{key}"]' for key, _ in saved)
    return {"level": level, "lines": lines, "unpack": unpack}


def _grade(prog: Program) -> dict:
    """grade.py's table of backward()'s lines: what each assigns (as code), the
    gradient it is (as math) and the formula it should compute."""
    rows = [
        (numpy_code(line.target), math_text(line.target), math_text(line.expr))
        for line in prog.backward
    ]
    return {"lines": [tuple(repr(text) for text in row) for row in rows]}


def _ladder(prog: Program, base: dict) -> dict:
    """The model of torch_nn.py and torch_optim.py, without a Module subclass:
    an nn.Sequential of the layers for a chain (the layers' constructors are
    torch_module.py's, ``module.inits``), else an nn.ModuleDict and a plain
    function forward(model, x) that wires them, call by call."""
    names = prog.names
    calls = [
        (
            names.tensors[layer.name],
            f'model["{layer.name}"]('
            + ", ".join(names.tensors[s] for s in layer.inputs)
            + ")",
        )
        for layer in prog.net.layers
    ]
    floats = {
        f'buffers["{bi.state_name}"]'
        for bi in prog.buffers
        if bi.buffer.dtype == "float"
    }
    fns = prog.loss_value.calls()
    for line in prog.forward:
        fns |= line.expr.calls()
    return {
        "chain": is_chain(prog),
        "calls": calls,
        "code": {
            "torch": {
                **base["code"]["torch"],
                "forward": _autograd_forward(base["code"]["torch"]["forward"], floats),
            }
        },
        # torch_autograd.py has no backward(): torch.nn.functional only if the
        # forward pass or the loss reads it
        "functional": any("F." in FUNCS[f].torch for f in fns),
    }


def _autograd_forward(blocks: list[dict], buffers: set[str]) -> list[dict]:
    """torch_manual.py's forward blocks as torch_autograd.py prints them.

    A buffer's update (batchnorm's running statistics, of ``buffers``: the
    float ones) reads the batch statistics, which autograd tracks: .detach()
    keeps the buffer out of the graph, as nn.BatchNorm1d updates its buffers
    without one. A layer that returns its input itself (identity) gets a view
    of it, a tensor of its own, so that the dump's ∂L/∂(that layer) is its own
    and not the sum over every use of its input (torch_module.py's hooks do
    the same)."""
    out = []
    for block in blocks:
        block = dict(block)
        for key in ("lines", "train", "eval"):
            if key not in block:
                continue
            lines = []
            for line in block[key]:
                code = line["code"]
                if line["target"] in buffers:
                    note, code = (
                        "not part of the graph: .detach()",
                        f"({code}).detach()",
                    )
                elif key != "eval" and re.fullmatch(r"[A-Za-z_]\w*", code):
                    note = "a view: a tensor of its own, whose gradient autograd keeps apart"
                    code = f"{code}.view_as({code})"
                else:
                    lines.append(line)
                    continue
                lines.append(
                    {**line, "comments": [*line["comments"], note], "code": code}
                )
            block[key] = lines
        out.append(block)
    return out


# ------------------------------------------------------------------ the ladder, on the page

RUNGS = (
    ("numpy_backprop.py", "NumPy"),
    ("torch_manual.py", "PyTorch tensors"),
    ("torch_autograd.py", "autograd"),
    ("torch_nn.py", "nn"),
    ("torch_optim.py", "optim"),
    ("torch_module.py", "nn.Module"),
)

# what changes at each rung, and why: the tutorial's story, said once for every network
WHY = {
    "torch_manual.py": (
        "NumPy arrays become PyTorch tensors: the same forward and backward "
        "lines, with torch's functions. Nothing else changes; tensors could "
        "now run on a GPU, but the gradients are still derived by hand."
    ),
    "torch_autograd.py": (
        "The derived backward() is gone. The parameters are tensors that require "
        "gradients, so autograd records every operation of the forward pass, "
        "and loss.backward() fills p.grad with ∂L/∂p. The update is still "
        "written out, under torch.no_grad() so that it is not recorded, and "
        "p.grad is cleared before the next step because backward() adds into it."
    ),
    "torch_nn.py": (
        "The layers become nn modules and the loss an nn loss: the "
        "parameters live in the layers, named as before, and the forward "
        "pass is the model called on x. The update is still written out, now "
        "over model.named_parameters()."
    ),
    "torch_optim.py": (
        "The update becomes torch.optim: the optimizer keeps its own state "
        "and applies the same formulas in optimizer.step(); "
        "optimizer.zero_grad() clears the gradients."
    ),
    "torch_module.py": (
        "The model becomes a subclass of nn.Module: the layers are attributes "
        "set in __init__, and the wiring is its forward() method, which "
        "model(x) calls. Nothing is computed differently."
    ),
}

# where the lesson of a generated file ends and its plumbing begins
PLUMBING = re.compile(r"^# -{20,}\n# Running this file", re.MULTILINE)


def lesson(text: str) -> list[str]:
    """The lines of a generated file that teach: without the module docstring
    and without the plumbing at the end (the command line and the dump)."""
    end = PLUMBING.search(text)
    body = text[: end.start()] if end else text
    if body.startswith('"""'):
        body = body[body.index('"""', 3) + 3 :]
    return body.strip("\n").splitlines()


def ladder_steps(files: dict[str, str | bytes]) -> list[dict]:
    """Each rung against the one before it: what changed and why, as a unified
    diff of their lessons (formatted files, so the lines are the files')."""
    steps = []
    for (before, _), (after, title) in itertools.pairwise(RUNGS):
        diff = difflib.unified_diff(
            lesson(str(files[before])),
            lesson(str(files[after])),
            before,
            after,
            n=1,
            lineterm="",
        )
        steps.append(
            {
                "file": after,
                "title": title,
                "before": before,
                "why": WHY[after],
                "diff": "\n".join(diff),
            }
        )
    return steps
