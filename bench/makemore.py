"""The makemore-sized benchmark: embedding, linear, batchnorm, tanh, linear.

    python bench/makemore.py [--repeats N] [--steps S]

makemore part 4's MLP at the size of the lecture's earlier parts: 3 characters
of context looked up in a 27 × 10 embedding, 30 → 200 linear (no bias),
batchnorm, tanh, 200 → 27, cross-entropy, SGD on batches of 32, float32, on
the names of specs/data/names.npz. The three generated files are compiled
into a scratch folder and imported; only ``train(...)`` is timed (quiet), after
one untimed warm-up, with the rounds interleaved (one run of each file per
round) and the median per step reported. Before timing, the three are run
for the same steps and must agree on the losses and the final state within
the contract's float32 tolerance, so that they provably do the same work.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlpgen.compiler import compile_spec

IMPLS = ("numpy_backprop", "torch_manual", "torch_module")
TARGET = 1.2  # numpy_backprop's time per step at most this × torch_module's


def spec(epochs: int) -> dict:
    return {
        "name": "makemore_bench",
        "description": "embedding 27x10 over 3 tokens -> 200 batchnorm tanh -> 27, float32",
        "dtype": "float32",
        "data": {"kind": "file", "path": str(ROOT / "specs" / "data" / "names.npz")},
        "model": {
            "input": {"tokens": 3, "vocab": 27},
            "layers": [
                {"name": "emb", "type": "embedding", "vocab": 27, "dim": 10},
                {
                    "name": "fc1",
                    "type": "linear",
                    "out": 200,
                    "bias": False,
                    "init": {"scheme": "kaiming_normal", "nonlinearity": "tanh"},
                },
                {"name": "bn", "type": "batchnorm"},
                {"name": "h", "type": "tanh"},
                {"name": "logits", "type": "linear", "out": 27},
            ],
        },
        "loss": {"type": "cross_entropy"},
        "train": {
            "optimizer": {"type": "sgd", "lr": 0.1},
            "epochs": epochs,
            "batch_size": 32,
        },
    }


def load(path: Path):
    name = f"bench_makemore_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def run(mod, impl: str, epochs: int):
    """(seconds in train, losses, final state as float64 arrays)."""
    data = mod.load_data()
    params = mod.init_params(mod.SEED)
    if impl == "torch_module":
        cls = next(
            v
            for k, v in vars(mod).items()
            if isinstance(v, type)
            and v.__module__ == mod.__name__
            and hasattr(v, "forward")
            and k.lower() == "makemorebench"
        )
        model = cls().to(mod.DTYPE)
        model.load_state_dict({**model.state_dict(), **params})
        start = time.perf_counter()
        result = mod.train(model, data, epochs, quiet=True)
        seconds = time.perf_counter() - start
        state = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    else:
        buffers = mod.init_buffers()
        start = time.perf_counter()
        result = mod.train(params, buffers, data, epochs, quiet=True)
        seconds = time.perf_counter() - start
        state = {
            k: np.asarray(v, dtype=np.float64) for k, v in {**params, **buffers}.items()
        }
    losses = result[0] if isinstance(result, tuple) else result
    return seconds, np.asarray(losses, dtype=np.float64), state


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10, help="35 steps each")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlpgen-bench-") as tmp:
        path = Path(tmp) / "makemore_bench.json"
        path.write_text(json.dumps(spec(args.epochs)))
        folder = compile_spec(path, Path(tmp) / "out")
        mods = {impl: load(folder / f"{impl}.py") for impl in IMPLS}
        results = {impl: run(mods[impl], impl, 2) for impl in IMPLS}
        _, ref_losses, ref_state = results["numpy_backprop"]
        worst = 0.0
        for _, losses, state in results.values():
            for a, b in [(losses, ref_losses)] + [
                (state[k], ref_state[k]) for k in ref_state
            ]:
                tol = 1e-4 * np.abs(b) + 1e-5 * np.abs(b).max() + 1e-30
                worst = max(worst, float((np.abs(a - b) / tol).max()))
        if worst > 1:
            raise SystemExit(f"the implementations disagree ({worst:.3g}× tolerance)")
        steps = len(ref_losses) // 2 * args.epochs
        times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        for _ in range(args.repeats):
            for impl in IMPLS:
                times[impl].append(run(mods[impl], impl, args.epochs)[0])
    load_avg = os.getloadavg()[0]
    print(
        f"makemore-sized MLP: batch 32, embedding 27×10 over 3 tokens, 30 → 200 "
        f"batchnorm tanh → 27, SGD, float32; {steps} steps, {args.repeats} rounds, "
        f"load average {load_avg:.2f}; agreement {worst:.2g}× the tolerance"
    )
    print(f"  {'implementation':<16}{'per step [µs]':>15}{'vs torch_module':>17}")
    med = {impl: statistics.median(t) / steps for impl, t in times.items()}
    ratios = {
        impl: statistics.median(
            a / b for a, b in zip(times[impl], times["torch_module"])
        )
        for impl in IMPLS
    }
    for impl in IMPLS:
        print(f"  {impl:<16}{med[impl] * 1e6:>15.1f}{ratios[impl]:>16.2f}×")
    ok = ratios["numpy_backprop"] <= TARGET
    print(
        f"target: numpy_backprop ≤ {TARGET}× torch_module's time per step: "
        f"{'met' if ok else 'NOT met'} ({ratios['numpy_backprop']:.2f}×)"
    )


if __name__ == "__main__":
    main()
