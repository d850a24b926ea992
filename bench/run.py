"""How fast is the code mlpgen generates, and how fast is mlpgen itself?

    python bench/run.py [--repeats N] [--skip-compile] [--only CASE]

One process, one run. The networks are compiled into a scratch folder and the
generated files imported with importlib; only ``train(...)`` is timed (quiet),
never imports, data loading or initialisation, and every implementation gets
one untimed warm-up call. Repeats are interleaved (one run of each
implementation per round) so that a noisy neighbour slows all of them alike;
times are medians over the rounds, ratios medians of the ratios within a
round, and the wide network's share of the matmul peak is taken against the
peak measured just before and after each run. Compile times are wall times of
a fresh ``python -m mlpgen compile`` process, as a user sees them.

The hand-written baselines are in ``bench/reference_numpy.py``; before timing,
each case checks that all implementations reach the same losses and weights.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # mlpgen itself, without installing it
sys.path.insert(0, str(ROOT / "bench"))

import reference_numpy

from mlpgen.compiler import compile_spec

IMPLS = ("reference", "numpy_backprop", "torch_manual", "torch_module")
# the contract's agreement tolerances (generated-code.md): rtol, tolerance × max|b|
TOL = {"float64": (1e-10, 1e-13), "float32": (1e-4, 1e-5)}


# ------------------------------------------------------------------ the specs


def dtype_variant(name: str, dtype: str, folder: Path) -> Path:
    """specs/NAME.yaml renamed NAME_DTYPE, with ``dtype: DTYPE``, written to ``folder``."""
    text = (ROOT / "specs" / f"{name}.yaml").read_text(encoding="utf-8")
    header = f"name: {name}\n"
    assert header in text and "dtype:" not in text, f"specs/{name}.yaml changed shape"
    text = text.replace(header, f"name: {name}_{dtype}\ndtype: {dtype}\n")
    path = folder / f"{name}_{dtype}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def wide_spec(dtype: str) -> dict:
    """512 × 1024 → 1024 ReLU → 10: big enough that the matmuls are all the time."""
    return {
        "name": f"wide_{dtype}",
        "description": "512x1024 -> 1024 ReLU -> 10, summed MSE, SGD",
        "dtype": dtype,
        "data": {"kind": "random", "n": 512, "outputs": 10},
        "model": {
            "input": 1024,
            "layers": [
                {"name": "fc1", "type": "linear", "out": 1024, "bias": False},
                {"name": "relu1", "type": "relu"},
                {"name": "fc2", "type": "linear", "out": 10, "bias": False},
            ],
        },
        "loss": {"type": "mse", "reduction": "sum"},
        "train": {"optimizer": {"type": "sgd", "lr": 1e-5}, "epochs": 50},
    }


def chain_spec(n_layers: int) -> dict:
    """A chain of ``n_layers`` layers: linear, tanh, linear, tanh, ... (8 wide)."""
    layers = []
    for i in range(n_layers // 2):
        layers += [{"type": "linear", "out": 8}, {"type": "tanh"}]
    return {
        "name": f"chain{n_layers}",
        "data": {"kind": "random", "n": 32, "outputs": 8},
        "model": {"input": 8, "layers": layers},
        "loss": {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
    }


def write_spec(spec: dict, folder: Path) -> Path:
    path = folder / f"{spec['name']}.json"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return path


# ------------------------------------------------------ running the programs


def load_module(path: Path):
    """Import a generated file under a unique module name."""
    name = f"bench_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def module_class(module):
    """The generated nn.Module subclass of a torch_module.py."""
    import torch

    return next(
        v
        for k, v in vars(module).items()
        if isinstance(v, type)
        and issubclass(v, torch.nn.Module)
        and v.__module__ == module.__name__
        and k != "Dropout"
    )


class Case:
    """One network: its four implementations, each a ``run(steps)`` callable
    that sets up fresh parameters, then returns (seconds in train, losses, weights)."""

    def __init__(self, title: str, spec_path: Path, out_root: Path, reference):
        self.title = title
        folder = compile_spec(spec_path, out_root)
        self.mods = {impl: load_module(folder / f"{impl}.py") for impl in IMPLS[1:]}
        self.np_mod = self.mods["numpy_backprop"]
        self.dtype = np.dtype(self.np_mod.DTYPE).name
        self.reference = reference

    def run(self, impl: str, steps: int) -> tuple[float, list, dict]:
        mod = self.mods.get(impl, self.np_mod)
        data = mod.load_data(mod.SEED)
        params = mod.init_params(mod.SEED)
        if impl == "reference":
            x, y = data["train"]
            weights = {k: w.T.copy() for k, w in params.items()}  # stored (in, out)
            lr = float(self.np_mod.LR)
            start = time.perf_counter()
            losses = self.reference(x, y, *weights.values(), lr, steps)
            seconds = time.perf_counter() - start
            return seconds, losses, {k: w.T for k, w in weights.items()}
        if impl == "torch_module":
            model = module_class(mod)().to(mod.DTYPE)
            model.load_state_dict(params)
            start = time.perf_counter()
            losses, _ = mod.train(model, data, steps, mod.SEED, quiet=True)
            seconds = time.perf_counter() - start
            final = {k: p.detach().numpy() for k, p in model.named_parameters()}
            return seconds, losses, final
        start = time.perf_counter()
        losses, _ = mod.train(params, data, steps, mod.SEED, quiet=True)
        seconds = time.perf_counter() - start
        return seconds, losses, {k: np.asarray(p) for k, p in params.items()}

    def check_agreement(self, steps: int) -> float:
        """Every implementation against numpy_backprop on losses and final weights,
        in units of the contract's tolerance (<= 1 means they agree); the worst."""
        rtol, mtol = TOL[self.dtype]
        results = {impl: self.run(impl, steps) for impl in IMPLS}
        _, ref_losses, ref_final = results["numpy_backprop"]
        worst = 0.0
        for _, losses, final in results.values():
            pairs = [(losses, ref_losses)] + [
                (final[k], ref_final[k]) for k in ref_final
            ]
            for a, b in pairs:
                a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
                tol = rtol * np.abs(b) + mtol * np.abs(b).max() + 1e-300
                worst = max(worst, float((np.abs(a - b) / tol).max()))
        if worst > 1:
            raise SystemExit(
                f"{self.title}: the implementations disagree ({worst:.3g}× tolerance)"
            )
        return worst

    def time(self, steps: int, repeats: int, peak_dtype: str | None = None):
        """Seconds of ``train`` per implementation, one list per implementation,
        repeats interleaved (one run of each per round).

        With ``peak_dtype``, the matmul peak is measured just before and just
        after every timed run, so that a machine that slows down or speeds up
        moves both alike; the second result holds their means, run by run.
        """
        for impl in IMPLS:
            self.run(impl, max(1, steps // 10))  # warm-up: first calls, caches
        times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        peaks: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        for _ in range(repeats):
            for impl in IMPLS:
                before = matmul_peak(peak_dtype) if peak_dtype else 0.0
                times[impl].append(self.run(impl, steps)[0])
                after = matmul_peak(peak_dtype) if peak_dtype else 0.0
                peaks[impl].append((before + after) / 2)
        return times, peaks


def matmul_flops(spec: dict) -> int:
    """FLOPs of the matmuls of one training step of a chain of linear layers:
    forward x@Wᵀ, the weight gradient gᵀ@x, and the input gradient g@W for every
    linear layer but the first (x needs none); 2 FLOPs per multiply-add."""
    n, features, flops, first = spec["data"]["n"], spec["model"]["input"], 0, True
    for layer in spec["model"]["layers"]:
        if layer["type"] == "linear":
            mac = n * features * layer["out"]
            flops += 2 * mac * (2 if first else 3)
            features, first = layer["out"], False
    return flops


def matmul_peak(dtype: str, size: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of NumPy's size³ matmul, the median of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


# ------------------------------------------------------------ compile times


def compile_seconds(
    spec_path: Path, out_root: Path, repeats: int, env=None
) -> list[float]:
    """Wall times of fresh ``python -m mlpgen compile`` processes."""
    cmd = [
        sys.executable,
        "-m",
        "mlpgen",
        "compile",
        str(spec_path),
        "-o",
        str(out_root),
    ]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return times


def compile_imports_torch(spec_path: Path, out_root: Path) -> bool:
    """Whether ``mlpgen compile`` imports torch (it must not)."""
    code = (
        "import sys; from mlpgen.cli import main; "
        f"main(['compile', {str(spec_path)!r}, '-o', {str(out_root)!r}]); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()[-1] == "True"


# ------------------------------------------------------------------ printing


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = "unknown BLAS"
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{info['name']} {info['version']}"
    except (TypeError, KeyError):
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )


def ratio(times: dict, a: str, b: str) -> float:
    """The median over rounds of time(a) / time(b) in the same round: runs close
    in time are compared, so a slowdown lasting a few rounds cancels out."""
    return statistics.median(ta / tb for ta, tb in zip(times[a], times[b]))


def print_case(case: Case, steps: int, times: dict, flops: int = 0, peaks=None) -> None:
    """The table of one case: medians, per step, the ratio to the reference, and
    with ``flops`` the matmul GFLOP/s and its share of the same round's peak."""
    med = {impl: statistics.median(t) for impl, t in times.items()}
    print(f"\n{case.title}")
    head = f"  {'implementation':<16}{'train [ms]':>11}{'per step [µs]':>15}{'vs reference':>14}"
    if flops:
        head += f"{'GFLOP/s':>9}{'of peak':>9}"
    print(head)
    for impl in IMPLS:
        t = med[impl]
        row = f"  {impl:<16}{t * 1e3:>11.1f}{t / steps * 1e6:>15.1f}{ratio(times, impl, 'reference'):>13.2f}×"
        if flops:
            row += f"{flops * steps / t / 1e9:>9.1f}{share(times[impl], steps, flops, peaks[impl]):>9.0%}"
        print(row)


def share(times: list[float], steps: int, flops: int, peaks: list[float]) -> float:
    """The median over runs of (GFLOP/s reached) / (the peak around that run)."""
    return statistics.median(
        flops * steps / t / 1e9 / peak for t, peak in zip(times, peaks)
    )


def bench_xor(out: Path, repeats: int) -> list:
    xor = Case(
        "XOR 2-5-1 sigmoid, MSE, 5000 full-batch SGD epochs, float64",
        ROOT / "specs" / "xor.yaml",
        out,
        reference_numpy.train_xor,
    )
    xor.check_agreement(5000)
    times = xor.time(5000, repeats)[0]
    print_case(xor, 5000, times)
    gen = ratio(times, "numpy_backprop", "reference")
    manual = ratio(times, "torch_module", "torch_manual")
    print(f"  torch_module / torch_manual: {manual:.2f}×")
    return [
        ("XOR: numpy_backprop ≤ 0.9× the reference's time", gen <= 0.9, f"{gen:.2f}×"),
        (
            "XOR: torch_manual ≥ 3× faster than torch_module",
            manual >= 3,
            f"{manual:.2f}×",
        ),
    ]


def bench_regression(specs: Path, out: Path, repeats: int) -> list:
    targets = []
    for dtype in ("float64", "float32"):
        case = Case(
            f"regression 64×1000 → 100 ReLU → 10, summed MSE, 500 SGD steps, {dtype}",
            dtype_variant("regression", dtype, specs),
            out,
            reference_numpy.train_two_layer,
        )
        case.check_agreement(500)
        times = case.time(500, repeats)[0]
        print_case(case, 500, times)
        if dtype == "float64":
            r = ratio(times, "numpy_backprop", "reference")
            targets.append(
                (
                    "regression: numpy_backprop ≤ 1.0× the reference's time",
                    r <= 1.0,
                    f"{r:.2f}×",
                )
            )
    return targets


def bench_wide(specs: Path, out: Path, repeats: int, note: str = "") -> list:
    targets = []
    for dtype in ("float64", "float32"):
        spec = wide_spec(dtype)
        flops = matmul_flops(spec)
        case = Case(
            f"wide 512×1024 → 1024 ReLU → 10, 50 SGD steps, {dtype} "
            f"({flops / 1e9:.2f} GFLOP of matmuls per step){note}",
            write_spec(spec, specs),
            out,
            reference_numpy.train_two_layer,
        )
        case.check_agreement(5)
        times, peaks = case.time(50, repeats, peak_dtype=dtype)
        print_case(case, 50, times, flops, peaks)
        every = [p for impl in IMPLS for p in peaks[impl]]
        print(
            f"  NumPy 1024³ {dtype} matmul peak, measured around each run: "
            f"median {statistics.median(every):.1f} GFLOP/s"
        )
        frac = share(times["numpy_backprop"], 50, flops, peaks["numpy_backprop"])
        if note:
            print(f"  numpy_backprop: {frac:.0%} of the peak")
            continue
        targets.append(
            (
                f"wide {dtype}: numpy_backprop ≥ 85% of the matmul peak",
                frac >= 0.85,
                f"{frac:.0%}",
            )
        )
    return targets


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse instead of handing it
    back to the kernel (and then faulting fresh zeroed pages in on every step).
    For the rest of this process; False where malloc is not glibc's."""
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(
            libc.mallopt(m_mmap_threshold, 32 << 20)
            and libc.mallopt(m_trim_threshold, 1 << 30)
        )
    except (OSError, AttributeError):
        return False


def bench_compile(specs: Path, out: Path, repeats: int) -> list:
    xor_spec = ROOT / "specs" / "xor.yaml"
    no_dot = {**os.environ, "PATH": str(specs / "no-graphviz-here")}
    svg = compile_seconds(xor_spec, out, repeats)
    dot_only = compile_seconds(xor_spec, out, repeats, env=no_dot)
    torch_imported = compile_imports_torch(xor_spec, out)
    startup = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        startup.append(time.perf_counter() - start)
    print(
        "\nmlpgen compile: wall time of a fresh `python -m mlpgen compile` (median, min)"
    )
    print(f"  specs/xor.yaml, all files, SVG diagrams        {fmt(svg)}")
    print(f"  specs/xor.yaml, no Graphviz (DOT text only)    {fmt(dot_only)}")
    print(f"  for comparison, `python -c pass`               {fmt(startup)}")
    print(f"  imports torch: {'YES' if torch_imported else 'no'}")
    print(f"  {'chain (linear, tanh, ...)':<27}{'SVG diagrams':>21}{'DOT only':>21}")
    chain = {}
    for n in (10, 100, 500, 1000):
        path = write_spec(chain_spec(n), specs)
        reps = repeats if n <= 100 else max(1, repeats // 3)
        chain[n] = (
            compile_seconds(path, out, reps),
            compile_seconds(path, out, reps, env=no_dot),
        )
        print(f"  {n:>5} layers{'':<15}{fmt(chain[n][0]):>21}{fmt(chain[n][1]):>21}")
    # the cost of one more layer, between 100 and 500 layers and between 500 and 1000
    slopes = [
        (statistics.median(chain[b][k]) - statistics.median(chain[a][k])) / (b - a)
        for k in (0, 1)
        for a, b in ((100, 500), (500, 1000))
    ]
    print(
        "  per added layer, 100→500 and 500→1000 layers: "
        f"SVG {slopes[0] * 1e3:.1f} and {slopes[1] * 1e3:.1f} ms, "
        f"DOT only {slopes[2] * 1e3:.1f} and {slopes[3] * 1e3:.1f} ms"
    )
    growth = slopes[3] / slopes[2]
    t500 = statistics.median(chain[500][0])
    return [
        (
            "compile specs/xor.yaml ≤ 0.5 s with diagrams",
            statistics.median(svg) <= 0.5,
            fmt(svg),
        ),
        (
            "compile never imports torch",
            not torch_imported,
            "yes" if torch_imported else "no",
        ),
        ("compile a 500-layer chain ≤ 5 s (with diagrams)", t500 <= 5, f"{t500:.2f} s"),
        (
            "compile time linear (DOT only: ms per layer 500→1000 ≤ 1.5× 100→500)",
            growth <= 1.5,
            f"{growth:.2f}×",
        ),
    ]


# -------------------------------------------------------------- crosstest


def timed_process(cmd: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a fresh process; SystemExit when it fails
    with a status other than crosstest's 0 (agree) or 1 (disagree)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return seconds, done.stdout


def bench_crosstest(out: Path, repeats: int) -> list:
    """What ``mlpgen crosstest`` costs, against the plain runs it is made of.

    Per spec, in interleaved rounds: a fresh ``python -m mlpgen crosstest``;
    the three generated programs run one after the other as crosstest runs
    them (``--quiet --dump``, each a fresh process), which is the bulk of
    crosstest's work without compiling, comparing or the rounding spread; and
    a fresh ``python -m mlpgen compile``. Apart, in this process, the rounding
    spread alone (``crosstest.rounding_spread``: PERTURBED_RUNS + 1 runs of
    numpy_backprop), which crosstest measures only when losses or final/
    exceed the contract's fixed tolerance.
    """
    from mlpgen import crosstest

    targets = []
    print(
        "\nmlpgen crosstest: wall time of fresh processes (median, min); "
        "ratios are medians of the rounds' ratios"
    )
    for name, what in (
        ("xor", "2-5-1 sigmoid, 5000 SGD steps, float64"),
        ("polynomial", "Linear(3, 1) on (x, x², x³), 2000 RMSprop steps, float64"),
    ):
        spec = ROOT / "specs" / f"{name}.yaml"
        folder = compile_spec(spec, out)
        dumps = Path(out, f"{name}-dumps")
        dumps.mkdir(exist_ok=True)
        check = [sys.executable, "-m", "mlpgen", "crosstest", str(spec)]
        compile_cmd = [sys.executable, "-m", "mlpgen", "compile", str(spec)]
        compile_cmd += ["-o", str(Path(out, f"{name}-compiled"))]
        runs = [
            [sys.executable, str(folder / f"{impl}.py"), "--quiet"]
            + ["--dump", str(dumps / f"{impl}.npz")]
            for impl in crosstest.IMPLEMENTATIONS
        ]
        times: dict[str, list[float]] = {"crosstest": [], "three": [], "compile": []}
        said = ""
        timed_process(check)  # warm-up: the OS's file cache, Python's bytecode
        for _ in range(repeats):
            seconds, said = timed_process(check)
            times["crosstest"].append(seconds)
            times["three"].append(sum(timed_process(cmd)[0] for cmd in runs))
            times["compile"].append(timed_process(compile_cmd)[0])
        if not said.rstrip().endswith("agree"):
            raise SystemExit(f"crosstest {name}: the implementations disagree\n{said}")
        spread_used = "rounding spread ×" in said
        spread = []
        for _ in range(max(1, repeats // 2)):
            start = time.perf_counter()
            crosstest.rounding_spread(folder, dumps)
            spread.append(time.perf_counter() - start)
        over_three = ratio(times, "crosstest", "three")
        base = statistics.median(
            c + t for c, t in zip(times["compile"], times["three"])
        )
        print(f"  specs/{name}.yaml: {what}")
        print(
            f"    crosstest                                   {fmt(times['crosstest'])}"
        )
        print(f"    the three programs, one after the other     {fmt(times['three'])}")
        print(
            f"    compile                                     {fmt(times['compile'])}"
        )
        print(
            f"    rounding spread ({crosstest.PERTURBED_RUNS + 1} numpy_backprop runs, "
            f"in-process)  {fmt(spread)}"
            + ("" if spread_used else "  (not needed here: crosstest skips it)")
        )
        print(
            f"    crosstest / the three programs: {over_three:.2f}×; "
            f"/ (compile + the three): {statistics.median(times['crosstest']) / base:.2f}×; "
            f"rule for losses/final: {'rounding spread' if spread_used else 'fixed tolerance'}"
        )
        targets.append(
            (
                f"crosstest {name} ≤ 2× the three programs' plain runs",
                over_three <= 2,
                f"{over_three:.2f}×",
            )
        )
    return targets


def load() -> str:
    """The 1, 5 and 15-minute load averages: other work on the machine skews timings."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def fmt(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.2f} s ({min(seconds):.2f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--repeats", type=int, default=7, help="timed runs of each (default 7)"
    )
    ap.add_argument(
        "--skip-compile", action="store_true", help="time the generated code only"
    )
    ap.add_argument(
        "--only",
        choices=("xor", "regression", "wide", "compile", "crosstest"),
        action="append",
        help="run this case only (may be repeated; default: all)",
    )
    args = ap.parse_args(argv)
    rep = args.repeats
    cases = set(args.only or ("xor", "regression", "wide", "compile", "crosstest"))
    if args.skip_compile:
        cases.discard("compile")

    print(machine())
    print(f"load average at the start: {load()}")
    with tempfile.TemporaryDirectory(prefix="mlpgen-bench-") as tmp:
        specs, out = Path(tmp, "specs"), Path(tmp, "out")
        specs.mkdir()
        targets = []
        if "xor" in cases:
            targets += bench_xor(out, rep)
        if "regression" in cases:
            targets += bench_regression(specs, out, rep)
        if "wide" in cases:
            targets += bench_wide(specs, out, max(3, rep // 2))
        if "compile" in cases:
            targets += bench_compile(specs, out, rep)
        if "crosstest" in cases:
            targets += bench_crosstest(out, max(3, rep // 2))
        # Last, as it changes malloc for the rest of the process: how much of
        # the wide network's time beyond the matmuls is page faults.
        if "wide" in cases and keep_freed_memory():
            note = ", malloc keeping freed memory"
            bench_wide(specs, out, max(3, rep // 2), note)

    print(f"\nload average at the end: {load()}")
    print("\ntargets")
    for what, ok, value in targets:
        print(f"  {'met' if ok else 'MISSED':<8}{what:<74}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
