"""mlpgen check as a linter: the cost of one training step, and the warnings."""

from __future__ import annotations

import json

import pytest

from mlpgen import lint
from mlpgen.compiler import build
from mlpgen.spec import SpecError

from .conftest import ROOT
from .test_cli import mlpgen

XOR = ROOT / "specs" / "xor.yaml"


def write_spec(tmp_path, layers, loss, optimizer=None, classes=3, **top) -> str:
    """A minimal spec on random data: class targets for class losses, else floats."""
    outputs = [layer["out"] for layer in layers if "out" in layer][-1]
    classification = loss["type"] in ("cross_entropy", "nll")
    data = {"kind": "random", "n": 8}
    data.update({"classes": classes} if classification else {"outputs": outputs})
    spec = {
        "name": "lint_case",
        **top,
        "data": data,
        "model": {"input": 2, "layers": layers},
        "loss": loss,
        "train": {"optimizer": optimizer or {"type": "sgd", "lr": 0.1}, "epochs": 1},
    }
    path = tmp_path / "case.json"
    path.write_text(json.dumps(spec))
    return str(path)


LINEAR3 = {"type": "linear", "out": 3}
LINEAR1 = {"type": "linear", "out": 1}

# (layers, loss, optimizer, top-level keys, the key path warned about, words of the why)
CASES = {
    "softmax before cross_entropy": (
        [LINEAR3, {"type": "softmax"}], {"type": "cross_entropy"}, None, {},
        "model.layers[1] (softmax1)", "softmax applied twice",
    ),
    "log_softmax before cross_entropy": (
        [LINEAR3, {"type": "log_softmax"}], {"type": "cross_entropy"}, None, {},
        "model.layers[1] (log_softmax1)", "harmless",
    ),
    "sigmoid before bce_with_logits": (
        [LINEAR1, {"type": "sigmoid"}], {"type": "bce_with_logits"}, None, {},
        "model.layers[1] (sigmoid1)", "which applies sigmoid itself",
    ),
    "nll without log_softmax": (
        [LINEAR3], {"type": "nll"}, None, {},
        "model.layers[0] (linear1)", "nll expects log-probabilities",
    ),
    "bce without sigmoid": (
        [LINEAR1], {"type": "bce"}, None, {},
        "model.layers[0] (linear1)", "bce expects probabilities",
    ),
    "class weights with mean": (
        [LINEAR3], {"type": "cross_entropy", "weight": [1, 2, 3]}, None, {},
        "loss.weight", "divides by Σ w[y_i]",
    ),
    "adam with weight_decay": (
        [LINEAR1], {"type": "mse"}, {"type": "adam", "lr": 0.01, "weight_decay": 0.1}, {},
        "train.optimizer.weight_decay", "adamw was likely meant",
    ),
    "dampening without momentum": (
        [LINEAR1], {"type": "mse"}, {"type": "sgd", "lr": 0.1, "dampening": 0.5}, {},
        "train.optimizer.dampening", "no effect",
    ),
    "mse mean over several columns": (
        [LINEAR3], {"type": "mse"}, None, {},
        "loss.reduction", "averages over all N·3 elements",
    ),
    "float32": (
        [LINEAR1], {"type": "mse"}, None, {"dtype": "float32"},
        "dtype", "about 1e-4",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_each_warning_fires_alone_on_its_minimal_spec(tmp_path, case):
    layers, loss, optimizer, top, path, why = CASES[case]
    spec = write_spec(tmp_path, layers, loss, optimizer, **top)
    found = lint.warnings(build(spec))
    assert [p for p, _ in found] == [path]
    assert why in found[0][1]


def test_the_fixed_specs_do_not_warn(tmp_path):
    """The same minimal specs, written the way that was meant, are quiet."""
    fixed = [
        ([LINEAR3], {"type": "cross_entropy"}, None),
        ([LINEAR3, {"type": "log_softmax"}], {"type": "nll"}, None),
        ([LINEAR1], {"type": "bce_with_logits"}, None),
        ([LINEAR1, {"type": "sigmoid"}], {"type": "bce"}, None),
        (
            [LINEAR3],
            {"type": "cross_entropy", "weight": [1, 2, 3], "reduction": "sum"},
            None,
        ),
        (
            [LINEAR1],
            {"type": "mse"},
            {"type": "adamw", "lr": 0.01, "weight_decay": 0.1},
        ),
        (
            [LINEAR1],
            {"type": "mse"},
            {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.5},
        ),
        ([LINEAR3], {"type": "mse", "reduction": "sum"}, None),
    ]
    for i, (layers, loss, optimizer) in enumerate(fixed):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert (
            lint.warnings(build(write_spec(folder, layers, loss, optimizer))) == []
        ), loss


def test_nesterov_with_dampening_is_already_a_spec_error(tmp_path):
    """Why the linter warns on dampening without momentum instead."""
    opt = {
        "type": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0.5,
        "nesterov": True,
    }
    with pytest.raises(SpecError):
        build(write_spec(tmp_path, [LINEAR1], {"type": "mse"}, opt))


def test_xor_is_quiet_and_its_step_costs_are_counted_by_hand():
    prog = build(XOR)
    assert lint.warnings(prog) == []
    n = 4  # the four XOR rows: one full-batch step
    fc1 = (
        2 * n * 2 * 5 + 2 * n * 2 * 5
    )  # x @ Wᵀ; ∂W = gᵀ @ x (no ∂x: x needs no gradient)
    act1 = n * 5 + n * 5  # σ forward, σ′ backward
    fc2 = 2 * n * 5 * 1 + 2 * (2 * n * 5 * 1)  # forward; ∂W and ∂act1
    act2 = n * 1 + n * 1
    assert fc1 + act1 + fc2 + act2 == 328
    assert lint.step_flops(prog, lint.batch_rows(prog.net)) == 328
    costs = {c.name: c for c in lint.costs(prog, n)}
    assert (costs["fc1"].forward, costs["fc1"].backward) == (80, 80)
    assert (costs["fc2"].forward, costs["fc2"].backward) == (40, 80)
    # the backward pass keeps x, act1 and act2 (σ′ from the saved output): N·features·8 bytes
    assert {k: c.saved for k, c in costs.items() if c.saved} == {
        "x": 64,
        "act1": 160,
        "act2": 32,
    }


def test_float32_halves_the_saved_bytes_and_minibatches_set_n(tmp_path):
    spec = write_spec(tmp_path, [{"type": "linear", "out": 4}, {"type": "relu"}, LINEAR1],
                      {"type": "mse"}, dtype="float32")  # fmt: skip
    data = json.loads((tmp_path / "case.json").read_text())
    data["train"]["batch_size"] = 3
    (tmp_path / "case.json").write_text(json.dumps(data))
    prog = build(spec)
    assert lint.batch_rows(prog.net) == 3
    saved = {c.name: c.saved for c in lint.costs(prog, 3) if c.saved}
    # x for linear1's ∂W; relu1 for relu′ and linear2's ∂W; linear2 for the loss's 2(ŷ − y)
    assert saved == {"x": 3 * 2 * 4, "relu1": 3 * 4 * 4, "linear2": 3 * 1 * 4}


def test_check_prints_costs_and_warnings_and_exits_0(tmp_path):
    spec = write_spec(
        tmp_path, [LINEAR3, {"type": "softmax"}], {"type": "cross_entropy"}
    )
    r = mlpgen("check", spec)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # linear 2 -> 3 at N = 8: 96 forward, 96 for ∂W; softmax 24 each way
    assert (
        "one training step at N = 8, the full training batch, float64: 240 FLOPs"
        in lines
    )
    assert any(
        line.startswith("FLOPs counted: linear 2·N·in·out forward") for line in lines
    )
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"warning: {spec}: model.layers[1] (softmax1): softmax right"
    )


def test_check_of_xor_prints_no_warning():
    r = mlpgen("check", XOR)
    assert r.returncode == 0, r.stderr
    assert "warning:" not in r.stdout + r.stderr
    assert (
        "one training step at N = 4, the full training batch, float64: 328 FLOPs"
        in r.stdout
    )
