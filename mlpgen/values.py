"""The numbers of the first training step, for the diagrams, the page and the explorer.

At compile time the freshly rendered ``numpy_backprop.py`` is run in this
process (NumPy only, no torch; a few milliseconds): its ``first_step`` gives
every tensor of the forward pass, every gradient the backward pass computes,
every parameter gradient and the loss, for the first batch of the first
step, exactly as the script computes them. Each array is summarised here as
a ``Stat``: its shape, norm and range, all its values when it is small, and a
small heat map when it is large. Every number leaves this module as text of a
fixed precision (``num``), so that the files made from it are the same bytes
for the same spec.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .text import one_line

FULL = 64  # a tensor of at most this many numbers is shown whole (the explorer)
HEAT_ROWS, HEAT_COLS = 8, 32  # the corner of a larger tensor drawn as a heat map
DIGITS = 3  # significant digits of every number shown
NOISE = 1e-13  # relative to an array's largest magnitude: rounding noise, shown as 0


def num(v: float) -> str:
    """A number with DIGITS significant digits, the minus sign and a short exponent:
    ``−0.0123``, ``7.7e−6``, ``0``."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v == 0:
        return "0"
    text = f"{v:.{DIGITS}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text.replace("-", "−")


@dataclass(frozen=True)
class Stat:
    """One array of the first step, summarised."""

    shape: tuple[int, ...]
    norm: float  # the Frobenius (root of the sum of squares) norm
    min: float
    mean: float
    max: float
    values: tuple[float, ...] | None  # row-major, when at most FULL numbers
    heat: tuple[tuple[float, ...], ...] | None  # the top-left corner, otherwise

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def shape_text(self) -> str:
        return (
            "("
            + ", ".join(map(str, self.shape))
            + ("," if len(self.shape) == 1 else "")
            + ")"
        )

    def short(self, small: int = 4) -> str:
        """One line for a diagram node: every value when there are at most
        ``small``, else the range and the mean."""
        if self.values is not None and len(self.values) <= small:
            return "[" + ", ".join(num(v) for v in self.values) + "]"
        return f"{num(self.min)} … {num(self.max)}, mean {num(self.mean)}"

    def json(self) -> dict:
        """For the explorer: every number as fixed-precision text."""
        out = {
            "shape": list(self.shape),
            "norm": num(self.norm),
            "min": num(self.min),
            "mean": num(self.mean),
            "max": num(self.max),
        }
        cols = self.shape[-1] if len(self.shape) > 1 else max(1, self.numel)
        if self.values is not None:
            out["values"] = _rows(self.values, cols)
        if self.heat is not None:
            out["heat"] = [[num(v) for v in row] for row in self.heat]
        return out


def _rows(values, cols: int) -> list[list[str]]:
    flat = [num(v) for v in values]
    return [flat[i : i + cols] for i in range(0, len(flat), cols)] or [[]]


def stat(a) -> Stat:
    """Summarise one array (any NumPy array or scalar)."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    flat = a.reshape(-1)
    if flat.size == 0:
        return Stat(a.shape, 0.0, 0.0, 0.0, 0.0, (), None)
    with np.errstate(all="ignore"):
        norm = float(np.sqrt(np.sum(flat * flat)))
        mean = float(flat.mean())
        floor = NOISE * float(np.max(np.abs(flat)))

    def clean(v) -> float:
        """Rounding noise shown as 0: a number this far below the array's largest
        (the mean of a softmax gradient, zero in exact arithmetic, is ±1e−19 or
        so) differs between machines in its last bits, and the page must be the
        same bytes on every machine."""
        return 0.0 if abs(v) <= floor else float(v)

    values = heat = None
    if flat.size <= FULL:
        values = tuple(clean(v) for v in flat)
    else:
        corner = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
        heat = tuple(
            tuple(clean(v) for v in row[:HEAT_COLS]) for row in corner[:HEAT_ROWS]
        )
    return Stat(
        tuple(int(s) for s in a.shape),
        norm,
        clean(flat.min()),
        clean(mean),
        clean(flat.max()),
        values,
        heat,
    )


@dataclass(frozen=True)
class Step:
    """The first training step: loss, tensors and gradients, summarised.

    tensors: ``x`` and every layer output, by spec name.
    tensor_grads: ∂L/∂tensor for every tensor whose gradient the backward pass
    computes, by spec name. params: the initial parameters; grads: ∂L/∂p, both
    by state-dict name.
    """

    loss: float
    tensors: dict[str, Stat]
    tensor_grads: dict[str, Stat]
    params: dict[str, Stat]
    grads: dict[str, Stat]


def load_module(text: str, folder: Path, name: str = "numpy_backprop"):
    """Run a generated file's text as a module whose ``__file__`` is in ``folder``
    (where a data file it reads lies), without writing the file."""
    module = types.ModuleType(f"_mlpgen_{name}")
    module.__file__ = str(folder / f"{name}.py")
    sys.modules[module.__name__] = module  # dataclasses and pickling look it up
    try:
        exec(compile(text, module.__file__, "exec"), module.__dict__)  # noqa: S102 (our own output)
    finally:
        del sys.modules[module.__name__]
    return module


class NoFirstStep(Exception):
    """The generated file defines no ``first_step`` (made before the core API had it)."""


def call_first_step(module):
    """The core API's ``first_step``, called as the generated files define it:
    ``first_step(params, [buffers,] data)`` → ``(tensors, tensor_grads, grads,
    loss)``, on copies; returns the initial parameters too."""
    if not hasattr(module, "first_step"):
        raise NoFirstStep
    params = module.init_params()
    data = module.load_data()
    args = [params]
    if hasattr(module, "init_buffers"):
        args.append(module.init_buffers())
    tensors, tensor_grads, grads, loss = module.first_step(*args, data)
    return params, tensors, tensor_grads, grads, loss


def first_step(numpy_text: str, data_file=None) -> Step:
    """Run the first training step of a rendered ``numpy_backprop.py``.

    ``data_file``: the spec's data file (``name`` and ``content``), put next to
    the script as the compile puts it. Errors of the generated code propagate;
    the caller decides what a missing number means.
    """
    with contextlib.ExitStack() as stack:
        folder = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="mlpgen-step-"))
        )
        if data_file is not None:
            (folder / data_file.name).write_bytes(data_file.content)
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        module = load_module(numpy_text, folder)
        params, tensors, tensor_grads, grads, loss = call_first_step(module)
    return Step(
        float(loss),
        {k: stat(v) for k, v in tensors.items()},
        {k: stat(v) for k, v in tensor_grads.items()},
        {k: stat(v) for k, v in params.items()},
        {k: stat(v) for k, v in grads.items()},
    )


def _attempt(numpy_text: str, data_file=None) -> tuple[Step | None, str | None]:
    """``first_step``, or None and the note that says why there are no numbers."""
    try:
        return first_step(numpy_text, data_file), None
    except NoFirstStep:
        return None, None
    except Exception as e:  # noqa: BLE001 (the generated code's own error, whatever it is)
        return None, (
            "note: the first training step failed "
            f"({type(e).__name__}: {one_line(str(e))[:200]}): no numbers on the diagrams"
        )


def _noted(result: tuple[Step | None, str | None]) -> Step | None:
    step, message = result
    if message is not None:
        from .render import note

        note(message)
    return step


def try_first_step(numpy_text: str, data_file=None) -> Step | None:
    """``first_step``, or None with a one-line note when the generated code
    cannot run it: the diagrams and the page then go without numbers."""
    return _noted(_attempt(numpy_text, data_file))


CHILD_FAILED = "note: the first training step failed: no numbers on the diagrams"


def start_first_step(numpy_text: str, data_file=None) -> Callable[[], Step | None]:
    """``try_first_step`` in a forked process, so that NumPy's import and the
    step run on another core while this process imports and draws (the compile's
    wall time); returns the function that waits for its Step.

    Where there is no ``fork`` (Windows), or other threads run (a fork copies
    only the calling thread), the step runs here, at once. The Step is plain
    Python (floats and tuples), pickled back through a pipe; the child prints
    nothing: its note comes back with the result and is printed here.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        result = _attempt(numpy_text, data_file)
        return lambda: _noted(result)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the step, send it, leave without cleanup
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as pipe:
                pickle.dump(_attempt(numpy_text, data_file), pipe)
            code = 0
        finally:
            os._exit(code)
    os.close(write)

    def wait() -> Step | None:
        with os.fdopen(read, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status or not payload:  # the child died before it could answer
            return _noted((None, CHILD_FAILED))
        return _noted(pickle.loads(payload))  # our own child's bytes

    return wait


def step_of(prog) -> Step | None:
    """The first step of a Program's NumPy implementation, rendered for the purpose."""
    from .emit import context, environment

    text = environment().get_template("numpy_backprop.py.j2").render(context(prog))
    return try_first_step(text, prog.net.data.file)
