"""Run the three generated implementations and compare what they dump."""

from __future__ import annotations

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


def dump(folder: Path, impl: str, out: Path, epochs: int | None = None) -> dict:
    cmd = [sys.executable, str(folder / f"{impl}.py"), "--quiet", "--dump", str(out)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    subprocess.run(cmd, check=True)
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


def crosstest(path, epochs: int | None = None) -> int:
    prog, tmp, folder = compiled(path)
    with tmp:
        dumps = {
            impl: dump(folder, impl, Path(tmp.name) / f"{impl}.npz", epochs)
            for impl in IMPLEMENTATIONS
        }
    dtype = prog.net.spec.dtype
    rows = compare(dumps, dtype)
    print(f"{prog.net.spec.name}: {len(dumps['numpy_backprop']['losses'])} steps, {dtype}, "
          "each implementation against numpy_backprop")
    print(f"{'quantity':<9} {'implementation':<14} {'max |diff|':>12} {'diff/tolerance':>15}")
    ok = True
    for q, impl, d, r in rows:
        flag = "" if r <= 1 else "  MISMATCH"
        ok = ok and r <= 1
        print(f"{q:<9} {impl:<14} {d:>12.3e} {r:>15.3e}{flag}")
    print("agree" if ok else "DISAGREE")
    return 0 if ok else 1


def run_one(path, impl: str, epochs: int | None = None) -> int:
    prog, tmp, folder = compiled(path)
    with tmp:
        cmd = [sys.executable, str(folder / f"{impl}.py")]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        return subprocess.run(cmd).returncode
