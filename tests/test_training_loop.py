"""The training loop's keys (train.schedule, sampling, clip_grad_norm,
early_stopping): torch-exact in the three implementations, step by step.

Every schedule type, with every optimizer, gives the same learning rate at
every step in the three files (the lr each step used is dumped as ``lrs`` and
compared exactly), and the same losses and parameters within the contract's
tolerances; the written-out schedule and clip are checked against torch's own
classes; the cross-test specs in tests/specs/loop_*.yaml (float64 and
float32) agree; bad pairings are spec errors, pitfalls are warnings.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpgen.compiler import build, render, write_atomically
from mlpgen.crosstest import IMPLEMENTATIONS, compare, loop_rows
from mlpgen.lint import warnings

from .conftest import ROOT, load_module

torch = pytest.importorskip("torch")

LOOP_SPECS = sorted((ROOT / "tests" / "specs").glob("loop_*.yaml"))
_counter = itertools.count()

SCHEDULES = {
    "step": {"type": "step", "step_size": 3, "gamma": 0.5},
    "exponential": {"type": "exponential", "gamma": 0.8},
    "cosine": {"type": "cosine", "t_max": 4, "eta_min": 0.001},
    "linear": {
        "type": "linear",
        "start_factor": 1.0,
        "end_factor": 0.1,
        "total_iters": 7,
    },
}
OPTIMIZERS = {
    "sgd": {"type": "sgd", "lr": 0.1},
    "sgd_momentum": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.1},
    "sgd_nesterov": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    "adam": {"type": "adam", "lr": 0.05, "weight_decay": 0.01},
    "adamw_amsgrad": {"type": "adamw", "lr": 0.05, "amsgrad": True},
    "rmsprop": {"type": "rmsprop", "lr": 0.01, "centered": True, "momentum": 0.5},
}


def tiny(train: dict, dtype: str = "float64", split: dict | None = None) -> dict:
    rng = np.random.default_rng(5)
    data = {
        "kind": "inline",
        "x": rng.standard_normal((12, 3)).round(3).tolist(),
        "y": rng.standard_normal((12, 1)).round(3).tolist(),
    }
    if split:
        data["split"] = split
    return {
        "name": "loop",
        "dtype": dtype,
        "data": data,
        "model": {
            "layers": [
                {"type": "linear", "out": 4},
                {"type": "tanh"},
                {"type": "linear", "out": 1},
            ]
        },
        "loss": {"type": "mse"},
        "train": {"epochs": 4, "batch_size": 5, **train},
    }


def compile_to(spec: dict | Path, tmp: Path) -> tuple[object, Path]:
    if isinstance(spec, dict):
        path = tmp / f"{spec['name']}.json"
        path.write_text(json.dumps(spec))
    else:
        path = spec
    prog = build(path)
    folder = tmp / "out"
    write_atomically(render(prog, draw=False), folder)
    return prog, folder


def run_all(folder: Path) -> dict[str, dict]:
    """Each implementation imported in-process and run with --dump."""
    k = next(_counter)
    dumps = {}
    for impl in IMPLEMENTATIONS:
        module = load_module(folder / f"{impl}.py", f"loop{k}_{impl}")
        path = folder / f"{impl}.npz"
        module.main(["--quiet", "--dump", str(path)])
        with np.load(path) as archive:
            dumps[impl] = dict(archive)
    return dumps


def torch_lrs(schedule: dict, steps: int, lr: float = 0.1) -> list[float]:
    """The lr of each of ``steps`` optimizer steps under torch's own scheduler."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    cls = {
        "step": torch.optim.lr_scheduler.StepLR,
        "exponential": torch.optim.lr_scheduler.ExponentialLR,
        "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
        "linear": torch.optim.lr_scheduler.LinearLR,
    }[schedule["type"]]
    keys = {k: v for k, v in schedule.items() if k not in ("type", "every")}
    if "t_max" in keys:
        keys["T_max"] = keys.pop("t_max")
    sched = cls(opt, **keys)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_every_schedule_with_every_optimizer_matches_torch_step_by_step(
    kind, opt, tmp_path
):
    schedule = {**SCHEDULES[kind], "every": "step"}
    spec = tiny({"optimizer": OPTIMIZERS[opt], "schedule": schedule})
    _, folder = compile_to(spec, tmp_path)
    dumps = run_all(folder)
    lrs = dumps["numpy_backprop"]["lrs"]
    assert len(lrs) == len(dumps["numpy_backprop"]["losses"]) == 4 * 3
    # the lr of every step, exactly torch's (the same floats in the same order)
    expected = torch_lrs(schedule, 12, OPTIMIZERS[opt]["lr"])
    for impl in IMPLEMENTATIONS:
        assert dumps[impl]["lrs"].tolist() == expected, impl
    assert len(set(expected)) > 2  # the schedule changes the lr
    rows = compare(dumps, "float64") + loop_rows(dumps, "float64")
    assert {q for q, *_ in rows} >= {"losses", "final", "lrs"}
    bad = [row for row in rows if row[3] > 1]
    assert not bad, bad


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_the_written_out_schedule_is_torch_over_many_periods(kind, tmp_path):
    """scheduled_lr() against torch's scheduler for 60 steps: several cosine
    periods (the recursion's special step included), past LinearLR's end."""
    spec = tiny({"optimizer": {"type": "sgd", "lr": 0.1}, "schedule": SCHEDULES[kind]})
    _, folder = compile_to(spec, tmp_path)
    for impl in ("numpy_backprop", "torch_manual"):
        module = load_module(folder / f"{impl}.py", f"sched{next(_counter)}")
        lr = 0.1 * SCHEDULES[kind].get("start_factor", 1.0)
        ours = []
        for t in range(1, 61):
            ours.append(lr)
            # ExponentialLR reads only the lr before (no step count)
            lr = (
                module.scheduled_lr(lr, t)
                if kind != "exponential"
                else module.scheduled_lr(lr)
            )
        assert ours == torch_lrs(SCHEDULES[kind], 60), impl


def test_an_epoch_schedule_steps_once_per_epoch(tmp_path):
    schedule = {"type": "exponential", "gamma": 0.5}  # every: epoch, the default
    spec = tiny({"optimizer": {"type": "sgd", "lr": 0.4}, "schedule": schedule})
    _, folder = compile_to(spec, tmp_path)
    dumps = run_all(folder)
    # 3 batches per epoch (12 rows, batch_size 5), 4 epochs
    expected = [0.4] * 3 + [0.2] * 3 + [0.1] * 3 + [0.05] * 3
    for impl in IMPLEMENTATIONS:
        assert dumps[impl]["lrs"].tolist() == expected


def test_the_written_out_clip_is_clip_grad_norm(tmp_path):
    spec = tiny({"optimizer": {"type": "sgd", "lr": 0.1}, "clip_grad_norm": 0.5})
    _, folder = compile_to(spec, tmp_path)
    nb = load_module(folder / "numpy_backprop.py", f"clip{next(_counter)}")
    tm = load_module(folder / "torch_manual.py", f"clip{next(_counter)}")
    rng = np.random.default_rng(0)
    for scale in (0.01, 0.3, 5.0):  # below, near and above max_norm
        grads = {
            "a": scale * rng.standard_normal((3, 4)),
            "b": scale * rng.standard_normal(4),
        }
        params = [torch.zeros(g.shape, dtype=torch.float64) for g in grads.values()]
        for p, g in zip(params, grads.values()):
            p.grad = torch.from_numpy(g.copy())
        norm = torch.nn.utils.clip_grad_norm_(params, 0.5)
        ours = nb.clip_grad_norm(grads)
        theirs = tm.clip_grad_norm({k: torch.from_numpy(g) for k, g in grads.items()})
        total = np.sqrt(sum((g**2).sum() for g in grads.values()))
        assert np.isclose(total, norm.item(), rtol=1e-14)
        for p, name in zip(params, grads):
            np.testing.assert_allclose(ours[name], p.grad.numpy(), rtol=1e-14, atol=0)
            np.testing.assert_allclose(theirs[name].numpy(), p.grad.numpy(), rtol=1e-14)
        clipped = np.sqrt(sum((g**2).sum() for g in ours.values()))
        assert clipped <= 0.5 + 1e-12 and (scale > 0.1 or clipped == total)


def test_sampling_with_replacement_draws_from_the_shuffle_stream(tmp_path):
    spec = tiny(
        {
            "optimizer": {"type": "sgd", "lr": 0.1},
            "sampling": "with_replacement",
            "batch_size": 5,
        }
    )
    _, folder = compile_to(spec, tmp_path)
    dumps = run_all(folder)
    # an epoch is 12 // 5 = 2 draws
    assert len(dumps["numpy_backprop"]["losses"]) == 4 * 2
    rows = np.random.default_rng([0, 2]).integers(0, 12, 5)
    np.testing.assert_array_equal(
        dumps["numpy_backprop"]["step0/x"], dumps["numpy_backprop"]["x"][rows]
    )
    bad = [row for row in compare(dumps, "float64") if row[3] > 1]
    assert not bad, bad


@pytest.mark.parametrize("path", LOOP_SPECS, ids=lambda p: p.stem)
def test_the_training_loop_specs_agree(path, tmp_path):
    prog, folder = compile_to(path, tmp_path)
    dtype = prog.net.spec.dtype
    dumps = run_all(folder)
    rows = compare(dumps, dtype) + loop_rows(dumps, dtype)
    bad = [row for row in rows if row[3] > 1]
    assert not bad, bad
    train = prog.net.spec.train
    ref = dumps["numpy_backprop"]
    if train.schedule is not None:
        assert np.ptp(ref["lrs"]) > 0
    if train.clip_grad_norm is not None:  # the clip is active at the first step
        norm = np.sqrt(
            sum((v**2).sum() for k, v in ref.items() if k.startswith("grads0/"))
        )
        assert norm > train.clip_grad_norm
    if train.early_stopping is not None:
        history = ref["history/val_loss"]
        stop = train.early_stopping
        # the rule: an epoch improves when it beats the best by more than min_delta
        low, best, stale = np.inf, -1, 0
        for i, value in enumerate(history):
            if low - value > stop.min_delta:
                low, best, stale = value, i, 0
            else:
                stale += 1
        assert stale == stop.patience  # it stopped early, at the first chance
        assert len(history) < train.epochs
        assert best < int(np.argmin(history))  # min_delta at work
        # the restored parameters give the best val loss again
        nb = load_module(folder / "numpy_backprop.py", f"es{next(_counter)}")
        final = {k[6:]: v for k, v in ref.items() if k.startswith("final/")}
        x, y = nb.load_data()["val"]
        val = float(
            nb.loss_fn(nb.forward(final, x.astype(final["fc1.weight"].dtype))[0], y)
        )
        assert val == pytest.approx(
            history[best], rel=1e-5 if dtype == "float32" else 1e-12
        )


def check(spec: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-m", "mlpgen", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    "train, split, path, words",
    [
        (
            {"schedule": {"type": "step", "step_size": 2, "t_max": 3}},
            None,
            "train.schedule.t_max",
            "unknown key",
        ),
        ({"schedule": {"type": "step"}}, None, "train.schedule.step_size", "required"),
        (
            {"schedule": {"type": "linear", "start_factor": 0}},
            None,
            "train.schedule.start_factor",
            "> 0",
        ),
        ({"schedule": {"type": "cyclic"}}, None, "train.schedule.type", "cyclic"),
        (
            {"schedule": {"type": "cosine", "t_max": 2, "every": "batch"}},
            None,
            "train.schedule.every",
            "batch",
        ),
        ({"early_stopping": {}}, None, "train.early_stopping.monitor", "val part"),
        (
            {"early_stopping": {"monitor": "val_accuracy"}},
            {"train": 0.5, "val": 0.5},
            "train.early_stopping.monitor",
            "metrics",
        ),
        (
            {"sampling": "with_replacement", "shuffle": True},
            None,
            "train.shuffle",
            "with_replacement",
        ),
        ({"clip_grad_norm": 0}, None, "train.clip_grad_norm", "> 0"),
        (
            {"early_stopping": {"patience": 0}},
            {"train": 0.5, "val": 0.5},
            "train.early_stopping.patience",
            "positive",
        ),
    ],
)
def test_impossible_training_keys_are_spec_errors(train, split, path, words, tmp_path):
    spec = tiny({"optimizer": {"type": "sgd", "lr": 0.1}, **train}, split=split)
    result = check(spec, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert f": {path}: " in lines[0] and words in lines[0], lines[0]


def test_warnings_of_the_training_loop(tmp_path):
    path = tmp_path / "w.json"
    spec = tiny(
        {
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "schedule": {"type": "exponential", "gamma": 0.9},
            "early_stopping": {"monitor": "train_loss"},
        }
    )
    path.write_text(json.dumps(spec))
    found = dict(warnings(build(path)))
    assert "velocity form" in found["train.schedule"]
    assert "val part" in found["train.early_stopping.monitor"]
    spec["train"]["optimizer"] = {"type": "adam", "lr": 0.1}
    del spec["train"]["early_stopping"]
    path.write_text(json.dumps(spec))
    assert not dict(warnings(build(path)))


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
@pytest.mark.parametrize("batch_size", ["full", 5])
@pytest.mark.parametrize("every", ["step", "epoch"])
def test_the_schedule_code_has_no_unused_step_count(kind, batch_size, every, tmp_path):
    """The written-out schedule takes the step count t only where its formula
    reads it (ExponentialLR multiplies the lr before), and a full batch, one
    step per epoch, counts its steps by the epoch: no argument, counter or
    loop index a learner would wonder about (ruff's ARG and SIM113 clean), and
    the lr of every step still torch's."""
    schedule = {**SCHEDULES[kind], "every": every}
    spec = tiny({"optimizer": OPTIMIZERS["sgd_momentum"], "schedule": schedule})
    spec["train"]["batch_size"] = batch_size
    _, folder = compile_to(spec, tmp_path)
    files = [str(folder / f"{impl}.py") for impl in IMPLEMENTATIONS]
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select",
         "F,E9,ARG,SIM113", *files],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout
    source = (folder / "numpy_backprop.py").read_text()
    reads_t = kind != "exponential"
    assert ("def scheduled_lr(lr, t):" in source) == reads_t
    assert ("t += 1" in source) == (reads_t and every == "step" and batch_size == 5)
    steps = 4 * (1 if batch_size == "full" else 3)
    lrs = run_all(folder)["numpy_backprop"]["lrs"].tolist()
    if every == "step":
        assert lrs == torch_lrs(schedule, steps, 0.1)
    else:  # stepped once per epoch: every step of an epoch uses the same lr
        per_epoch = steps // 4
        assert lrs == [
            lr for lr in torch_lrs(schedule, 4, 0.1) for _ in range(per_epoch)
        ]
