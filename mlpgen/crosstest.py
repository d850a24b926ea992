"""Run the three generated implementations and compare what they dump."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

IMPLEMENTATIONS = ("numpy_backprop", "torch_manual", "torch_module")
# |a − b| <= rtol·|b| + mtol·max|b| + atol, per the contract (generated-code.md)
TOLERANCES = {"float64": (1e-10, 1e-13, 1e-12), "float32": (1e-4, 1e-5, 0.0)}
QUANTITIES = ("x", "y", "out0", "init", "grads0", "losses", "final")


def compiled(path) -> tuple[object, tempfile.TemporaryDirectory, Path]:
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
    """Run ``impl`` quietly with ``--dump out``; return the archive's arrays."""
    cmd = [sys.executable, str(folder / f"{impl}.py"), "--quiet", "--dump", str(out)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    code = subprocess.run(cmd, check=False).returncode
    if code:
        raise ScriptFailed(f"{impl}.py exited with status {code}")
    with np.load(out) as archive:
        return dict(archive)


def violation(a, b, dtype: str) -> tuple[float, float]:
    """(largest |a − b|, largest |a − b| / tolerance): agreement means the second <= 1."""
    rtol, mtol, atol = TOLERANCES[dtype]
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    diff = np.abs(a - b)
    tol = rtol * np.abs(b) + mtol * np.abs(b).max() + atol
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


def crosstest(path, epochs: int | None = None, plot=None) -> int:
    """Compile, run the three implementations, print the comparison table.

    0 when they agree within the contract's tolerances, 1 when they do not (or
    a script fails). ``plot``: a figure file for the three loss curves.
    """
    prog, tmp, folder = compiled(path)
    spec = prog.net.spec
    with tmp:
        try:
            dumps = dump_all(folder, Path(tmp.name), epochs)
        except ScriptFailed as e:
            print(f"error: {spec.source}: {e}", file=sys.stderr)
            return 1
    rows = compare(dumps, spec.dtype) + loop_rows(dumps, spec.dtype)
    steps = len(dumps["numpy_backprop"]["losses"])
    print(
        f"{spec.name}: {steps} steps, {spec.dtype}, each implementation against numpy_backprop"
    )
    print(
        f"{'quantity':<9} {'implementation':<14} {'max |diff|':>12} {'diff/tolerance':>15}"
    )
    ok = True
    for q, impl, d, r in rows:
        flag = "" if r <= 1 else "  MISMATCH"
        ok = ok and r <= 1
        print(f"{q:<9} {impl:<14} {d:>12.3e} {r:>15.3e}{flag}")
    print("agree" if ok else "DISAGREE")
    if plot:
        plot_parity(plot, spec, dumps)
        print(f"wrote {plot}")
    return 0 if ok else 1


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
    from tqdm import tqdm

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
