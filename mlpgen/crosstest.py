"""Run the three generated implementations and compare what they dump."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import status

IMPLEMENTATIONS = ("numpy_backprop", "torch_manual", "torch_module")
# |a − b| <= rtol·|b| + mtol·max|b| + atol, per the contract (generated-code.md)
TOLERANCES = {"float64": (1e-10, 1e-13, 1e-12), "float32": (1e-4, 1e-5, 0.0)}
QUANTITIES = ("x", "y", "out0", "init", "grads0", "step0", "losses", "final")
# Over many steps training can amplify rounding (an adaptive optimizer divides a
# gradient that is zero in exact arithmetic, i.e. rounding noise, by its own
# running size): losses and final/ are then judged against the network's own
# sensitivity to rounding, measured by PERTURBED_RUNS runs of numpy_backprop
# whose gradients are nudged by one unit in the last place at every step; two
# implementations agree when they differ by at most SPREAD_FACTOR times that
# spread (and the contract's tolerance always suffices).
PERTURBED_RUNS = 3
SPREAD_FACTOR = 10.0


def compiled(path) -> tuple[Any, tempfile.TemporaryDirectory, Path]:
    """Compile ``path`` into a scratch folder; returns (program, tmp handle, folder)."""
    from .compiler import build, render, write_atomically

    prog = build(path)
    tmp = tempfile.TemporaryDirectory(prefix="mlpgen-")
    folder = Path(tmp.name) / prog.net.spec.name
    write_atomically(render(prog), folder)
    return prog, tmp, folder


class ScriptFailed(Exception):
    """A generated script exited with a non-zero status (its stderr was shown)."""


def dump(folder: Path, impl: str, out: Path, epochs: int | None = None) -> dict:
    """Run ``impl`` quietly with ``--dump out``; return the archive's arrays.

    A run whose loss stops being a finite number ends with the generated
    script's one-line "error: training diverged: …" (exit status 1) after
    writing its dump: that dump is returned, with the line under the key
    ``diverged``. Any other failure raises ScriptFailed with the script's error.
    """
    cmd = [sys.executable, str(folder / f"{impl}.py"), "--quiet", "--dump", str(out)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    run = subprocess.run(cmd, check=False, capture_output=True, text=True)
    said = [line for line in run.stderr.splitlines() if line.strip()]
    if run.returncode:
        diverged = [line for line in said if "training diverged" in line]
        if run.returncode == 1 and diverged and out.exists():
            with np.load(out) as archive:
                return {**archive, "diverged": diverged[-1]}
        tail = "\n".join(said[-12:]) or "(it printed nothing)"
        raise ScriptFailed(f"{impl}.py exited with status {run.returncode}:\n{tail}")
    with np.load(out) as archive:
        return dict(archive)


def tolerance(b, dtype: str):
    """The contract's element-wise tolerance around the reference values ``b``
    (a non-finite value adds nothing to the scale)."""
    rtol, mtol, atol = TOLERANCES[dtype]
    b = np.asarray(b, dtype=np.float64)
    scale = np.where(np.isfinite(b), np.abs(b), 0.0)
    return rtol * scale + (mtol * scale.max() if scale.size else 0.0) + atol


def violation(a, b, dtype: str, allowed=None) -> tuple[float, float]:
    """(largest |a − b|, largest |a − b| / tolerance): agreement means the second <= 1.

    ``allowed``: an element-wise tolerance of one's own instead of the contract's.
    NaNs in the same places, and infinities of the same sign, count as equal.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    tol = tolerance(b, dtype) if allowed is None else allowed
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / tol)
    return float(diff.max()), float(ratio.max())


def compare(dumps: dict, dtype: str) -> list[tuple[str, str, float, float]]:
    """Rows (quantity, implementation, largest difference, largest diff/tolerance)."""
    ref = dumps["numpy_backprop"]
    rows = []
    for q in QUANTITIES:
        keys = sorted(k for k in ref if k == q or k.startswith(q + "/"))
        for impl in IMPLEMENTATIONS[1:]:
            other = dumps[impl]
            worst_diff, worst_ratio = 0.0, 0.0
            for k in keys:
                if k not in other:
                    worst_diff = worst_ratio = float("inf")
                    continue
                d, r = violation(other[k], ref[k], dtype)
                worst_diff, worst_ratio = max(worst_diff, d), max(worst_ratio, r)
            rows.append((q, impl, worst_diff, worst_ratio))
    return rows


# The training loop's own records, in the dumps of specs that have them: the
# learning rate of every step (train.schedule) and the monitored value of every
# epoch (history/, train.early_stopping). Same tolerances as the rest.
LOOP_QUANTITIES = ("lrs", "history")


def loop_rows(dumps: dict, dtype: str) -> list[tuple[str, str, float, float]]:
    """compare()'s rows for LOOP_QUANTITIES, those the reference dump has."""
    ref = dumps["numpy_backprop"]
    rows = []
    for q in LOOP_QUANTITIES:
        keys = sorted(k for k in ref if k == q or k.startswith(q + "/"))
        if not keys:
            continue
        for impl in IMPLEMENTATIONS[1:]:
            found = [
                violation(dumps[impl][k], ref[k], dtype)
                if k in dumps[impl]
                else (float("inf"),) * 2
                for k in keys
            ]
            rows.append((q, impl, max(d for d, _ in found), max(r for _, r in found)))
    return rows


def dump_all(folder: Path, scratch: Path, epochs: int | None = None) -> dict:
    """Run the three implementations in ``folder``; their archives by name.

    The archives are written to ``scratch``; ScriptFailed when one fails.
    """
    return {
        impl: dump(folder, impl, scratch / f"{impl}.npz", epochs)
        for impl in IMPLEMENTATIONS
    }


def loss_figure(prog, files: dict[str, str | bytes]) -> bytes:
    """The PNG of the learning page (``loss.png``): the three implementations'
    loss curves, from the compiled ``files`` run in a scratch folder."""
    from .compiler import write_atomically

    spec = prog.net.spec
    with tempfile.TemporaryDirectory(prefix="mlpgen-") as tmp:
        folder = Path(tmp, spec.name)
        write_atomically(files, folder)
        dumps = dump_all(folder, Path(tmp))
        plot_parity(Path(tmp, "loss.png"), spec, dumps)
        return Path(tmp, "loss.png").read_bytes()


@dataclass
class Row:
    """One array of the dump, judged: each implementation against numpy_backprop."""

    key: str  # the dump's key: step0/d_fc1, grads0/fc1.weight, losses, …
    label: str  # what it is, for the table: ∂L/∂fc1
    shape: tuple[int, ...]
    diffs: dict[str, tuple[float, float]]  # impl -> (max |diff|, max |diff|/tolerance)
    rule: str = "fixed"  # "fixed" (the contract's tolerance) or "spread" (below)
    spread: float = 0.0  # the largest measured rounding spread, rule "spread"

    @property
    def ok(self) -> bool:
        return all(r <= 1 for _, r in self.diffs.values())


def step_order(prog) -> list[tuple[str, str]]:
    """The first step's arrays in the order the step computes them: (key, label).

    The forward values (x, then each layer's output), then every gradient the
    backward pass computes, from the loss back to the input, the parameters'
    among them where their layer is reached (fan-out parts are summed first).
    """
    order = [(f"step0/{t}", t) for t in prog.tensors]
    for line in prog.backward:
        name = line.target.math.removeprefix("∂L/∂")
        if line.kind in ("loss_grad", "grad", "fanout_sum"):
            order.append((f"step0/d_{name}", line.target.math))
        elif line.kind == "param_grad":
            order.append((f"grads0/{name}", line.target.math))
    return order


def judge(prog, dumps: dict, dtype: str, spread=None) -> tuple[list[Row], list[Row]]:
    """(the first step's rows in step order, the other quantities' rows).

    ``spread``: a function returning the measured rounding spread of
    ``losses`` and ``final/*`` (called only when the contract's tolerance does
    not hold for them).
    """
    ref = dumps["numpy_backprop"]
    others = [i for i in IMPLEMENTATIONS[1:] if i in dumps]

    def row(key: str, label: str) -> Row:
        diffs = {}
        allowed = None
        floor = terms_floor(prog, ref, key, dtype) if key in ref else 0.0
        if floor:
            allowed = np.maximum(tolerance(ref[key], dtype), floor)
        for impl in others:
            if key not in dumps[impl] or key not in ref:
                diffs[impl] = (float("inf"), float("inf"))
            else:
                diffs[impl] = violation(dumps[impl][key], ref[key], dtype, allowed)
        return Row(key, label, tuple(np.shape(ref.get(key, ()))), diffs)

    step = [row(k, label) for k, label in step_order(prog)]
    listed = {r.key for r in step}
    step += [
        row(k, k) for k in sorted(ref) if k.startswith("step0/") and k not in listed
    ]
    rest = []
    for q in ("x", "y", "out0", "init", "grads0", "losses", "final", *LOOP_QUANTITIES):
        for key in sorted(k for k in ref if k == q or k.startswith(q + "/")):
            if key not in listed:
                rest.append(row(key, key))
    long = [r for r in rest if _drifts(r.key)]
    if spread is not None and any(not r.ok for r in long):
        measured = spread()
        # the state drifts as a whole, along the directions the loss hardly
        # sees: each final/ tensor gets the largest spread of any of them
        state = max(
            (
                float(np.max(v))
                for k, v in measured.items()
                if k.startswith("final/") and v.size
            ),
            default=0.0,
        )
        for r in long:
            if r.key not in measured:
                continue
            s = _envelope(r.key, measured[r.key])
            if r.key.startswith("final/"):
                s = np.full(s.shape, state)
            allowed = np.maximum(tolerance(ref[r.key], dtype), SPREAD_FACTOR * s)
            allowed = np.maximum(allowed, terms_floor(prog, ref, r.key, dtype))
            r.rule, r.spread = "spread", float(np.max(s)) if s.size else 0.0
            r.diffs = {
                impl: violation(dumps[impl][r.key], ref[r.key], dtype, allowed)
                if r.key in dumps[impl]
                else (float("inf"), float("inf"))
                for impl in others
            }
    return step, rest


def terms_floor(prog, ref: dict, key: str, dtype: str) -> float:
    """The absolute part of the tolerance of a sum whose terms can cancel.

    ∂L/∂W and ∂L/∂b sum one term per sample (gᵀ @ x, Σₙ g). Where the terms
    cancel, say a bias whose gradient is zero by symmetry, the sum is rounding
    noise of the size of the terms, not of the result: the contract's
    ``mtol·max|b|`` is then taken over the terms, max|g|·max(1, max|x|), with
    g = ∂L/∂(the layer's output) and x its inputs, from the reference's step0/.
    A batchnorm's running mean is likewise a sum of its inputs (Σₙ xₙ/N every
    step) and its running variance one of squares: on standardized data the
    mean is 0 in exact arithmetic and its computed value pure rounding, so the
    terms are max|x| (max|x|² for the variance).
    """
    if key.startswith("final/") and key.endswith((".running_mean", ".running_var")):
        layer, buffer = key[len("final/") :].rsplit(".", 1)
        x = _largest_input(prog, ref, layer)
        terms = x if buffer == "running_mean" else x * x
        return TOLERANCES[dtype][1] * terms if np.isfinite(terms) else 0.0
    if not key.startswith("grads0/"):
        return 0.0
    layer = key.split("/", 1)[1].rsplit(".", 1)[0]
    g = ref.get(f"step0/d_{layer}")
    if g is None or not any(n.name == layer for n in prog.net.layers):
        return 0.0
    x = _largest_input(prog, ref, layer)
    terms = float(np.max(np.abs(g))) * max(1.0, x) if g.size else 0.0
    return TOLERANCES[dtype][1] * terms if np.isfinite(terms) else 0.0


def _largest_input(prog, ref: dict, layer: str) -> float:
    """max |input| of ``layer`` in the first step (1.0 when none is dumped)."""
    owner = next((n for n in prog.net.layers if n.name == layer), None)
    inputs = [ref.get(f"step0/{i}") for i in owner.inputs] if owner else []
    return max(
        (float(np.max(np.abs(v))) for v in inputs if v is not None and v.size),
        default=1.0,
    )


def _drifts(key: str) -> bool:
    """The quantities that rounding, amplified by training, can move: the loss
    of every step, the final state, and the monitored value of every epoch."""
    return key == "losses" or key.startswith(("final/", "history/"))


def _envelope(key: str, spread):
    """The spread as a bound: the measured differences are a sample of what
    rounding does, noisy from element to element, so ``losses`` takes the
    largest spread of any step so far (once rounding has been amplified, it
    stays so) and a ``final/`` tensor the largest of its elements (``judge``
    then takes the largest over all of final/)."""
    spread = np.asarray(spread, dtype=np.float64)
    if spread.size == 0:
        return spread
    if key == "losses" or key.startswith("history/"):
        return np.maximum.accumulate(spread)
    return np.full(spread.shape, spread.max())


def rounding_spread(folder: Path, scratch: Path, epochs: int | None = None) -> dict:
    """How far ``losses`` and ``final/*`` move when numpy_backprop's gradients are
    nudged by one unit in the last place (up or down at random) at every step:
    the element-wise largest difference between the unperturbed run and
    PERTURBED_RUNS perturbed ones, and between the perturbed runs."""
    seeds = [None, *range(1, PERTURBED_RUNS + 1)]
    runs = [_run_perturbed(folder, scratch, seed, epochs) for seed in seeds]
    out = {}
    for key in runs[0]:
        if not _drifts(key):
            continue
        values = [np.asarray(r[key], dtype=np.float64) for r in runs if key in r]
        if any(v.shape != values[0].shape for v in values):
            out[key] = np.full(values[0].shape, np.inf)
            continue
        spread = np.zeros(values[0].shape)
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                with np.errstate(invalid="ignore"):
                    d = np.abs(a - b)
                spread = np.maximum(spread, np.where(np.isnan(d), np.inf, d))
        out[key] = spread
    return out


def _run_perturbed(folder: Path, scratch: Path, seed: int | None, epochs) -> dict:
    """numpy_backprop.py run here, its gradients nudged by one ulp when ``seed``."""
    import importlib.util

    name = f"_mlpgen_spread_{seed}"
    spec = importlib.util.spec_from_file_location(name, folder / "numpy_backprop.py")
    assert spec is not None and spec.loader is not None
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if seed is not None:
        rng = np.random.default_rng(seed)
        inner = module.backward

        def nudge(a):
            """Each element one ulp up or down, at random (floats only)."""
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                return a
            up = np.nextafter(a, np.inf).astype(a.dtype)
            down = np.nextafter(a, -np.inf).astype(a.dtype)
            return np.where(rng.random(a.shape) < 0.5, up, down)

        def backward(*args):
            # every value the backward pass reads (its cache of the forward
            # values, the parameters when it takes them) and the gradients it
            # returns: a gradient that is zero in exact arithmetic is a sum of
            # rounding errors, which changes wholly when its terms change
            args = tuple(
                {k: nudge(v) for k, v in a.items()} if isinstance(a, dict) else a
                for a in args
            )
            grads, tensor_grads = inner(*args)
            return {k: nudge(g) for k, g in grads.items()}, tensor_grads

        forward = module.forward

        def nudged_forward(*args, **kwargs):
            # the forward pass's output and every value it keeps, as another
            # implementation's own rounding would leave them
            out, cache = forward(*args, **kwargs)
            return nudge(out), {k: nudge(v) for k, v in cache.items()}

        module.backward = backward
        module.forward = nudged_forward
    out = scratch / f"spread_{seed}.npz"
    argv = ["--quiet", "--dump", str(out)]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    with np.errstate(all="ignore"):
        try:
            module.main(argv)
        except SystemExit:  # diverged: the dump was written first
            pass
    with np.load(out) as archive:
        return dict(archive)


def _assignment(path: Path, function: str, target: str) -> tuple[int, str] | None:
    """(line number, text) of the last statement of ``function`` in ``path``
    that assigns ``target`` (a variable, or ``grads["fc1.weight"]``)."""
    import ast

    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError):
        return None
    lines = text.splitlines()
    found = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for stmt in ast.walk(node):
                targets: list[ast.expr] = []
                if isinstance(stmt, ast.Assign):
                    targets = stmt.targets
                elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
                    targets = [stmt.target]
                hit = any(ast.unparse(t) == target for t in targets)
                if (
                    hit
                    and isinstance(stmt, ast.stmt)
                    and (found is None or stmt.lineno > found[0])
                ):
                    found = (stmt.lineno, lines[stmt.lineno - 1].strip())
    return found


def first_difference(prog, folder: Path, step: list[Row]) -> list[str]:
    """Lines that name where the first step first differs: the tensor, which
    implementation is out of line, and the generated line that computes it."""
    bad = next((r for r in step if not r.ok), None)
    if bad is None:
        return []
    manual_ok = bad.diffs.get("torch_manual", (0, 0))[1] <= 1
    module_ok = bad.diffs.get("torch_module", (0, 0))[1] <= 1
    if manual_ok and not module_ok:
        files = ["numpy_backprop.py", "torch_manual.py"]
        why = (
            "numpy_backprop.py and torch_manual.py agree with each other but not "
            "with autograd (torch_module.py): the derived line is wrong"
        )
    elif module_ok and not manual_ok:
        files, why = ["torch_manual.py"], "torch_manual.py alone differs"
    else:
        files, why = ["numpy_backprop.py"], "numpy_backprop.py differs from both others"
    name = bad.key.split("/", 1)[1]
    if bad.key.startswith("grads0/"):
        function, target = "backward", f'grads["{name}"]'
    elif name.startswith("d_") and name not in prog.tensors:
        tensor = name[2:]
        grads = dict(prog.tensor_grads)
        function, target = "backward", grads.get(tensor, name)
    else:
        function, target = (
            "forward",
            prog.code_name(name) if name in prog.tensors else name,
        )
    out = [f"first difference: {bad.label} {shape_text(bad.shape)} ({why})"]
    for file in files:
        where = _assignment(folder / file, function, target)
        if where is not None:
            out.append(f"  {file}:{where[0]}: {where[1]}")
    return out


def shape_text(shape: tuple[int, ...]) -> str:
    return (
        "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def _row_text(r: Row, others: list[str]) -> str:
    cells = "".join(f" {r.diffs[i][0]:>12.3e}" for i in others)
    return f"{r.label:<28.28} {shape_text(r.shape):>12} {cells}  {'ok' if r.ok else 'DIFFERS'}"


def print_report(
    prog, folder: Path, dumps: dict, step: list[Row], rest: list[Row]
) -> bool:
    """The report of ``crosstest``; True when the implementations agree."""
    spec = prog.net.spec
    ref = dumps["numpy_backprop"]
    others = [i for i in IMPLEMENTATIONS[1:] if i in dumps]
    steps = len(ref["losses"])
    print(
        f"{spec.name}: {steps} steps, {spec.dtype}, each implementation against numpy_backprop"
    )
    print()
    print(
        "the first step, every tensor and gradient in the order the step computes them:"
    )
    head = "".join(f" {i:>12.12}" for i in others)
    print(f"{'tensor':<28} {'shape':>12} {head}")
    shown = (
        step
        if len(step) <= 60
        else [r for i, r in enumerate(step) if i < 20 or not r.ok]
    )
    for r in shown:
        print(_row_text(r, others))
    if len(shown) < len(step):
        print(f"… and {len(step) - len(shown)} more, all within tolerance")
    for line in first_difference(prog, folder, step):
        print(line)
    print()
    print("every other quantity of the dump:")
    print(
        f"{'quantity':<9} {'implementation':<14} {'max |diff|':>12} {'diff/tolerance':>15}  rule"
    )
    groups: dict[str, list[Row]] = {}
    for r in rest:
        groups.setdefault(r.key.split("/", 1)[0], []).append(r)
    for q, rows in groups.items():
        for impl in others:
            d = max(r.diffs[impl][0] for r in rows)
            ratio = max(r.diffs[impl][1] for r in rows)
            spread = [r for r in rows if r.rule == "spread"]
            rule = "contract's tolerance"
            if spread:
                rule = f"rounding spread ×{SPREAD_FACTOR:g}, spread up to {max(r.spread for r in spread):.3e}"
            flag = "" if ratio <= 1 else "  MISMATCH"
            print(f"{q:<9} {impl:<14} {d:>12.3e} {ratio:>15.3e}  {rule}{flag}")
    if any(r.rule == "spread" for r in rest):
        print(
            f"note: losses and final/ exceed the contract's fixed tolerance; they are judged "
            f"against the network's own sensitivity to rounding ({PERTURBED_RUNS} runs of "
            "numpy_backprop with every gradient nudged by one ulp per step)"
        )
    said = {impl: d["diverged"] for impl, d in dumps.items() if "diverged" in d}
    if said:
        first = next(iter(said.values()))
        where = first.split("training diverged:", 1)[-1].strip()
        print(
            f"note: training diverged ({where}) in {', '.join(said)}: "
            "the dumps hold the steps up to there, and are compared as they are"
        )
    ok = all(r.ok for r in step) and all(r.ok for r in rest)
    print("agree" if ok else "DISAGREE")
    return ok


def crosstest(path, epochs: int | None = None, plot=None) -> int:
    """Compile, run the three implementations, print the comparison.

    0 when they agree (the first step within the contract's tolerance, tensor
    by tensor; losses and final/ within it, or within the measured rounding
    spread), 1 when they do not, 3 when an implementation fails to run (its
    error is shown). ``plot``: a figure file for the three loss curves.
    """
    prog, tmp, folder = compiled(path)
    spec = prog.net.spec
    with tmp:
        scratch = Path(tmp.name)
        try:
            dumps = dump_all(folder, scratch, epochs)
        except ScriptFailed as e:
            print(f"error: {spec.source}: {e}", file=sys.stderr)
            return status.IMPL_FAILED
        step, rest = judge(
            prog, dumps, spec.dtype, lambda: rounding_spread(folder, scratch, epochs)
        )
        ok = print_report(prog, folder, dumps, step, rest)
    if plot:
        plot_parity(plot, spec, dumps)
        print(f"wrote {plot}")
    return status.OK if ok else status.FAILED


def plot_parity(file, spec, dumps: dict) -> None:
    """The three loss curves overlaid, and |difference| from numpy_backprop per step."""
    from .report import plot_losses

    ref = dumps["numpy_backprop"]["losses"]
    rtol, mtol, atol = TOLERANCES[spec.dtype]
    tolerance = rtol * np.abs(ref) + mtol * np.abs(ref).max() + atol
    plot_losses(
        file,
        f"{spec.name}: the three implementations, {spec.dtype}",
        [(impl, dumps[impl]["losses"]) for impl in IMPLEMENTATIONS],
        differences=[
            (f"|{impl} − numpy_backprop|", np.abs(dumps[impl]["losses"] - ref))
            for impl in IMPLEMENTATIONS[1:]
        ],
        tolerance=("tolerance (the contract's)", tolerance),
    )


# a generated script's progress line: "epoch  500/5000  loss 0.246620"
PROGRESS = re.compile(r"^epoch\s+(\d+)/(\d+)\s+loss\s+(\S+)")


def run_one(path, impl: str, epochs: int | None = None, plot=None) -> int:
    """Train one implementation with a progress bar; pass its final report through.

    The generated script runs unbuffered in a subprocess; its progress lines
    advance the bar, every other line is printed. ``plot``: a figure file for
    the loss of every step (from the script's ``--dump``). 0, or 1 when the
    script fails.
    """
    from tqdm import tqdm  # type: ignore[import-untyped]

    prog, tmp, folder = compiled(path)
    spec = prog.net.spec
    with tmp:
        archive = Path(tmp.name) / "dump.npz"
        cmd = [sys.executable, "-u", str(folder / f"{impl}.py")]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        if plot:
            cmd += ["--dump", str(archive)]
        total = epochs or spec.train.epochs
        # disable=None: no bar when stderr is not a terminal (logs, CI)
        bar = tqdm(total=total, desc=f"{spec.name} {impl}", unit="epoch", disable=None)
        with bar, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                m = PROGRESS.match(line)
                if m:
                    bar.set_postfix_str(f"loss {m[3]}", refresh=False)
                    bar.update(int(m[1]) - bar.n)
                    continue
                if bar.n == total:
                    bar.close()  # training is over: the bar stays, complete, above
                tqdm.write(line.rstrip("\n"), file=sys.stdout)
        if proc.returncode:
            print(
                f"error: {spec.source}: {impl}.py exited with status {proc.returncode}",
                file=sys.stderr,
            )
            return 1
        if plot:
            from .report import plot_losses

            with np.load(archive) as arrays:
                losses = arrays["losses"]
            plot_losses(plot, f"{spec.name}: {impl}, {spec.dtype}", [(impl, losses)])
            print(f"wrote {plot}")
    return 0
