"""Semantic checks: specs valid key by key that the contract or PyTorch refuses
as a whole (one error line at the key path, exit 2), and custom activations
that used to crash the compiler (x**x)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlpgen.compiler import build
from mlpgen.spec import SpecError

from .test_cli import mlpgen

XOR_DATA = {
    "kind": "inline",
    "x": [[0, 0], [0, 1], [1, 0], [1, 1]],
    "y": [[0], [1], [1], [0]],
}


def spec(tmp_path, layers, loss=None, data=None, **top) -> str:
    doc = {
        "name": "case",
        **top,
        "data": data or XOR_DATA,
        "model": {"layers": layers},
        "loss": loss or {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 2},
    }
    path = tmp_path / "case.json"
    path.write_text(json.dumps(doc))
    return str(path)


def problems(path) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as e:
        build(path)
    return e.value.problems


LIN1 = {"type": "linear", "out": 1}
LIN3 = {"type": "linear", "out": 3}


# ------------------------------------------------------------------ bce


@pytest.mark.parametrize(
    "layers, where",
    [
        ([LIN1], "model.layers[0].type"),
        ([LIN1, {"type": "tanh"}], "model.layers[1].type"),
        ([LIN1, {"type": "sigmoid"}, {"type": "dropout", "p": 0.2}], "model.layers[2].type"),
        ([LIN1, {"type": "activation", "expr": "2 * sigmoid(x)"}], "model.layers[1].type"),
    ],
    ids=["linear", "tanh", "dropout-after-sigmoid", "scaled-sigmoid"],
)  # fmt: skip
def test_bce_needs_a_probability_as_the_model_output(tmp_path, layers, where):
    path = spec(tmp_path, layers, {"type": "bce"})
    [(at, message)] = problems(path)
    assert at == where
    assert message.startswith("bce needs probabilities in [0, 1], but the model ends")
    assert "use bce_with_logits" in message
    r = mlpgen("compile", path, "-o", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {path}: {where}: {message}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "last",
    [{"type": "sigmoid"}, {"type": "activation", "expr": "sigmoid(2 * x)"}],
    ids=["sigmoid", "custom-sigmoid"],
)
def test_bce_after_a_sigmoid_compiles(tmp_path, last):
    build(spec(tmp_path, [LIN1, last], {"type": "bce"}))


def test_bce_after_softmax_compiles(tmp_path):
    data = {"kind": "inline", "x": [[0, 1], [1, 0]], "y": [[0, 1], [1, 0]]}
    build(
        spec(
            tmp_path,
            [{"type": "linear", "out": 2}, {"type": "softmax"}],
            {"type": "bce"},
            data,
        )
    )


# ------------------------------------------------------------------ split


@pytest.mark.parametrize(
    "split, words",
    [
        ({"train": 0.9, "val": 0.1}, "0.1 of 4 samples is 0.4, which rounds down to 0: the val part would be empty"),
        ({"train": 0.75, "val": 0.2, "test": 0.05}, "0.2 of 4 samples is 0.8, which rounds down to 0"),
    ],
    ids=["train-val", "train-val-test"],
)  # fmt: skip
def test_a_split_that_leaves_the_val_part_empty(tmp_path, split, words):
    [(at, message)] = problems(
        spec(tmp_path, [LIN1], data={**XOR_DATA, "split": split})
    )
    assert at == "data.split.val"
    assert message.startswith(words)


def test_a_split_with_every_part_filled_compiles(tmp_path):
    split = {"train": 0.5, "val": 0.25, "test": 0.25}
    build(spec(tmp_path, [LIN1], data={**XOR_DATA, "split": split}))


# ------------------------------------------------------------------ class weights


@pytest.mark.parametrize("loss", ["cross_entropy", "nll"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_class_weights_zero(tmp_path, loss, reduction):
    data = {"kind": "inline", "x": [[0, 1], [1, 0], [1, 1]], "y": [0, 1, 2]}
    layers = [LIN3] + ([{"type": "log_softmax"}] if loss == "nll" else [])
    zero = {"type": loss, "weight": [0, 0.0, 0], "reduction": reduction}
    [(at, message)] = problems(spec(tmp_path, layers, zero, data))
    assert at == "loss.weight"
    assert message.startswith("every class weight is 0")
    build(spec(tmp_path, layers, {**zero, "weight": [0, 1, 0]}, data))


# ------------------------------------------------------------------ standardize


def test_standardize_a_constant_inline_column(tmp_path):
    data = {
        "kind": "inline",
        "x": [[1, 5], [2, 5], [3, 5]],
        "y": [[0], [1], [0]],
        "standardize": True,
    }
    [(at, message)] = problems(spec(tmp_path, [LIN1], data=data))
    assert at == "data.standardize"
    assert message.startswith(
        "column x[:, 1] of x is constant over the data (every value 5)"
    )


def test_standardize_a_column_constant_only_in_the_training_part(tmp_path):
    """Column 1 varies over the data, but not over the rows the split trains on."""
    x = [[float(i), 7.0] for i in range(10)]
    order = np.random.default_rng([0, 0]).permutation(10)
    x[order[-1]][1] = 8.0  # the one row that goes to the test part
    data = {
        "kind": "inline",
        "x": x,
        "y": [[0.0]] * 10,
        "standardize": True,
        "split": {"train": 0.9, "test": 0.1},
    }
    [(at, message)] = problems(spec(tmp_path, [LIN1], data=data))
    assert at == "data.standardize"
    assert (
        "column x[:, 1] of x is constant over the training part (every value 7)"
        in message
    )
    # another seed draws another permutation: a training part where it varies
    path = spec(tmp_path, [LIN1], data=data, seed=3)
    assert np.random.default_rng([3, 0]).permutation(10)[-1] != order[-1]
    build(path)


def test_standardize_a_constant_csv_column_names_it(tmp_path):
    (tmp_path / "t.csv").write_text("width,height,label\n1,2,0\n2,2,1\n3,2,0\n")
    data = {"kind": "file", "path": "t.csv", "target": "label", "standardize": True}
    [(at, message)] = problems(spec(tmp_path, [LIN1], data=data))
    assert at == "data.standardize"
    assert message.startswith("column 'height' (x[:, 1]) of x is constant")


def test_standardize_a_constant_npz_column(tmp_path):
    x = np.column_stack([np.zeros(6), np.arange(6.0)])
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(6.0))
    data = {"kind": "file", "path": "t.npz", "standardize": True}
    [(at, message)] = problems(spec(tmp_path, [LIN1], data=data))
    assert (at, message[:24]) == ("data.standardize", "column x[:, 0] of x is c")


def test_standardize_without_constant_columns_compiles(tmp_path):
    data = {**XOR_DATA, "standardize": True}
    build(spec(tmp_path, [LIN1], data=data))


# ------------------------------------------------------------------ x**x


@pytest.mark.parametrize("expr", ["x**x", "sin(x)**x", "(1 + x**2)**x"])
def test_variable_exponents_are_derived_not_a_traceback(tmp_path, expr):
    path = spec(
        tmp_path,
        [{"type": "linear", "out": 2}, {"type": "activation", "expr": expr}, LIN1],
    )
    for command in ("check", "compile"):
        r = mlpgen(
            command, path, *(["-o", tmp_path / "out"] if command == "compile" else [])
        )
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    source = (tmp_path / "out" / "case" / "numpy_backprop.py").read_text()
    assert "np.log(" in source  # (u**v)′ = u**v·(v′·log u + v·u′/u)


@pytest.mark.slow
def test_x_to_the_x_agrees_with_autograd_where_it_is_defined(tmp_path):
    """After a sigmoid the input is positive: the derived slope matches torch."""
    layers = [
        {"type": "linear", "out": 2},
        {"type": "sigmoid"},
        {"type": "activation", "expr": "x**x"},
        LIN1,
    ]
    r = mlpgen("crosstest", spec(tmp_path, layers), "--epochs", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "agree"
