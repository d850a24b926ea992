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
    if loss["type"] == "hinge":
        data = {"kind": "random", "n": 8, "classes": 2}
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
    "adam with eps 0": (
        [LINEAR1], {"type": "mse"}, {"type": "adam", "lr": 0.01, "eps": 0}, {},
        "train.optimizer.eps", "0/0 is NaN",
    ),
    "adamw with eps 0": (
        [LINEAR1], {"type": "mse"}, {"type": "adamw", "lr": 0.01, "eps": 0}, {},
        "train.optimizer.eps", "eps 0 with adamw",
    ),
    "rmsprop with eps 0": (
        [LINEAR1], {"type": "mse"}, {"type": "rmsprop", "lr": 0.01, "eps": 0}, {},
        "train.optimizer.eps", "eps 0 with rmsprop",
    ),
    "sgd momentum 1": (
        [LINEAR1], {"type": "mse"}, {"type": "sgd", "lr": 0.1, "momentum": 1}, {},
        "train.optimizer.momentum", "momentum 1 >= 1: the momentum buffer never forgets",
    ),
    "rmsprop momentum above 1": (
        [LINEAR1], {"type": "mse"}, {"type": "rmsprop", "lr": 0.01, "momentum": 1.5}, {},
        "train.optimizer.momentum", "grow without bound",
    ),
    "rmsprop alpha 1": (
        [LINEAR1], {"type": "mse"}, {"type": "rmsprop", "lr": 0.01, "alpha": 1}, {},
        "train.optimizer.alpha", "every step is lr·g/eps",
    ),
    "dampening above 1": (
        [LINEAR1], {"type": "mse"}, {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 1.5}, {},
        "train.optimizer.dampening", "moves against the gradient",
    ),
    "negative dampening": (
        [LINEAR1], {"type": "mse"}, {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": -0.5}, {},
        "train.optimizer.dampening", "each gradient is amplified",
    ),
    "dropout as the output": (
        [LINEAR1, {"type": "dropout"}], {"type": "mse"}, None, {},
        "model.layers[1]", "dropout right before the loss (dropout1 is the model output)",
    ),
    "dropout before the output activation": (
        [LINEAR1, {"type": "dropout"}, {"type": "sigmoid"}], {"type": "bce"}, None, {},
        "model.layers[1]", "(dropout1 feeds only sigmoid1)",
    ),
    "log of a linear output": (
        [LINEAR3, {"type": "activation", "expr": "log(x)"}, LINEAR1], {"type": "mse"}, None, {},
        "model.layers[1].expr", "'log(x)' is undefined for x <= 0 (log of a number <= 0), and its input (linear1)",
    ),
    "x**x": (
        [LINEAR3, {"type": "activation", "expr": "x**x"}, LINEAR1], {"type": "mse"}, None, {},
        "model.layers[1].expr", "undefined for x <= 0 (a power with a variable exponent",
    ),
    "1/x after relu": (
        [LINEAR3, {"type": "relu"}, {"type": "activation", "expr": "1/x"}, LINEAR1], {"type": "mse"}, None, {},
        "model.layers[2].expr", "undefined for x = 0 (division by zero), and its input (relu1)",
    ),
    "sqrt": (
        [LINEAR3, {"type": "activation", "expr": "sqrt(x)"}, LINEAR1], {"type": "mse"}, None, {},
        "model.layers[1].expr", "for x <= 0 (sqrt of a negative number",
    ),
    "label smoothing with class weights": (
        [LINEAR3], {"type": "cross_entropy", "weight": [1, 2, 3], "reduction": "sum", "label_smoothing": 0.1}, None, {},
        "loss.label_smoothing", "torch weights the smoothing term by class too",
    ),
    "hinge after relu": (
        [LINEAR1, {"type": "relu"}], {"type": "hinge"}, None, {},
        "model.layers[1]", "every −1 row stays wrong",
    ),
    "hinge after tanh": (
        [LINEAR1, {"type": "tanh"}], {"type": "hinge"}, None, {},
        "model.layers[1]", "no row ever reaches the margin",
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
        ([LINEAR3, {"type": "tanh"}, LINEAR1], {"type": "hinge"}, None),
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
        ([LINEAR1], {"type": "mse"}, {"type": "adam", "lr": 0.01, "eps": 1e-8}),
        ([LINEAR1], {"type": "mse"}, {"type": "sgd", "lr": 0.1, "momentum": 0.99}),
        ([LINEAR1], {"type": "mse"}, {"type": "rmsprop", "lr": 0.01, "alpha": 0.9}),
        (
            [LINEAR3, {"type": "dropout"}, LINEAR1],  # a classifier head
            {"type": "mse"},
            None,
        ),
        (
            [
                LINEAR3,
                {"type": "sigmoid"},
                {"type": "activation", "expr": "log(x)"},
                LINEAR1,
            ],
            {"type": "mse"},
            None,
        ),
        (
            [
                LINEAR3,
                {"type": "relu"},
                {"type": "activation", "expr": "x**1.5"},
                LINEAR1,
            ],
            {"type": "mse"},
            None,
        ),
        (
            [
                LINEAR3,
                {"type": "activation", "expr": "x * tanh(log(1 + exp(x)))"},
                LINEAR1,
            ],
            {"type": "mse"},
            None,
        ),
        (
            [LINEAR3, {"type": "activation", "expr": "1 / (1 + x**2)"}, LINEAR1],
            {"type": "mse"},
            None,
        ),
    ]
    for i, (layers, loss, optimizer) in enumerate(fixed):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert (
            lint.warnings(build(write_spec(folder, layers, loss, optimizer))) == []
        ), loss


def test_cross_entropy_on_a_single_class_warns(tmp_path):
    """Only reachable with data of one class (random data has at least 2)."""
    spec = {
        "name": "one_class",
        "data": {"kind": "inline", "x": [[0, 1], [1, 0]], "y": [0, 0]},
        "model": {"layers": [LINEAR1]},
        "loss": {"type": "cross_entropy"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
    }
    path = tmp_path / "one.json"
    path.write_text(json.dumps(spec))
    [(where, message)] = lint.warnings(build(path))
    assert where == "model.layers[0]"
    assert "cross_entropy on one output column" in message


def test_a_data_file_outside_the_spec_folder_warns(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0.5\n3,4,1.5\n")
    inside, outside = tmp_path / "in", tmp_path / "in" / "deeper"
    outside.mkdir(parents=True)
    (inside / "t.csv").write_text("a,b,y\n1,2,0.5\n3,4,1.5\n")
    for folder, path, warned in [
        (inside, "t.csv", False),
        (outside, "../t.csv", True),
        (inside, str(tmp_path / "t.csv"), True),
    ]:
        spec = {
            "name": "file_data",
            "data": {"kind": "file", "path": path, "target": "y"},
            "model": {"layers": [LINEAR1]},
            "loss": {"type": "mse"},
            "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
        }
        (folder / "s.json").write_text(json.dumps(spec))
        found = lint.warnings(build(folder / "s.json"))
        assert [p for p, _ in found] == (["data.path"] if warned else []), path
        if warned:
            assert "is outside the spec's folder" in found[0][1]


def test_compile_prints_the_warnings_on_stderr_and_exits_0(tmp_path):
    spec = write_spec(
        tmp_path, [LINEAR1], {"type": "mse"}, {"type": "adam", "lr": 0.1, "eps": 0}
    )
    r = mlpgen("compile", spec, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"warning: {spec}: train.optimizer.eps: " + lint.warnings(build(spec))[0][1]
    ]
    assert r.stdout.splitlines() == [f"wrote {tmp_path / 'out' / 'lint_case'}/"]


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
