"""The spec loader: defaults, YAML 1.2 scalars, safe loading, and the exact error lines.

The second half goes through ``mlpgen check`` with every kind of bad spec:
each case is a spec (mostly the valid BASE with one section replaced) and the
error lines it must produce, without their ``error: FILE: `` prefix: one line
per problem, naming the key path, in document order, with exit status 2.
Independent problems are all reported in one run, the graph's included; a
problem that is only the consequence of another (a layer whose type is
unknown, then the layers reading it) is reported once.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from typing import Literal

import pytest

from mlpgen import ops
from mlpgen.cli import main
from mlpgen.schema import dump
from mlpgen.spec import OPTIMIZERS, Spec, SpecError, load_spec, parse_spec

from .conftest import ROOT

XOR_YAML = """\
mlpgen: 1                 # format version (optional, default 1)
name: xor                 # identifier: [a-z][a-z0-9_]{0,63}; names the output folder
description: 2-5-1 sigmoid MLP on XOR, MSE loss, plain SGD
dtype: float64            # float64 (default) | float32
seed: 0                   # default 0

data:
  kind: inline
  x: [[0, 0], [0, 1], [1, 0], [1, 1]]
  y: [[0], [1], [1], [0]]

model:
  input: 2                # optional: inferred from data; an error if it disagrees
  layers:
    - {name: fc1, type: linear, out: 5, bias: false}
    - {name: act1, type: sigmoid}
    - {name: fc2, type: linear, out: 1, bias: false}
    - {name: act2, type: sigmoid}

loss: {type: mse, reduction: mean}

train:
  optimizer: {type: sgd, lr: 0.6}
  epochs: 5000
  batch_size: full        # full (default) | positive integer
"""

XOR = {
    "name": "xor",
    "description": "2-5-1 sigmoid MLP on XOR, MSE loss, plain SGD",
    "data": {
        "kind": "inline",
        "x": [[0, 0], [0, 1], [1, 0], [1, 1]],
        "y": [[0], [1], [1], [0]],
    },
    "model": {
        "input": 2,
        "layers": [
            {"name": "fc1", "type": "linear", "out": 5, "bias": False},
            {"name": "act1", "type": "sigmoid"},
            {"name": "fc2", "type": "linear", "out": 1, "bias": False},
            {"name": "act2", "type": "sigmoid"},
        ],
    },
    "loss": {"type": "mse"},
    "train": {"optimizer": {"type": "sgd", "lr": 0.6}, "epochs": 5000},
}


def xor(changes: dict | None = None) -> dict:
    """A copy of XOR with ``changes``: {dotted path: value}, list indices as numbers."""
    data = copy.deepcopy(XOR)
    for path, value in (changes or {}).items():
        put(data, path, value)
    return data


def put(data, path: str, value) -> None:
    """Set (or with ``...``, delete) the key at a dotted path such as model.layers.2.out."""
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parents:
        data = data[part]
    if value is ...:
        del data[last]
    else:
        data[last] = value


def lines(data) -> list[str]:
    """The error lines parse_spec reports for ``data`` (file name s.yaml)."""
    with pytest.raises(SpecError) as e:
        parse_spec(data, "s.yaml")
    return e.value.lines()


def file_lines(path) -> list[str]:
    """The error lines load_spec reports, with the file shown as F."""
    with pytest.raises(SpecError) as e:
        load_spec(path)
    return [line.replace(str(path), "F") for line in e.value.lines()]


# ------------------------------------------------------------------ good specs


def test_contract_xor_example_parses_with_defaults(tmp_path):
    path = tmp_path / "xor.yaml"
    path.write_text(XOR_YAML)
    spec = load_spec(path)
    assert isinstance(spec, Spec)
    assert (spec.mlpgen, spec.name, spec.dtype, spec.seed) == (1, "xor", "float64", 0)
    assert spec.description == "2-5-1 sigmoid MLP on XOR, MSE loss, plain SGD"
    assert spec.source == str(path)
    assert spec.base_dir == str(tmp_path)
    assert spec.data.kind == "inline"
    assert spec.data.x == [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    assert spec.data.y == [[0.0], [1.0], [1.0], [0.0]]
    assert spec.data.split is None and spec.data.standardize is False
    assert spec.model.input == 2
    assert [(layer.name, layer.type) for layer in spec.model.layers] == [
        ("fc1", "linear"),
        ("act1", "sigmoid"),
        ("fc2", "linear"),
        ("act2", "sigmoid"),
    ]
    fc1 = spec.model.layers[0]
    assert fc1.inputs is None
    assert isinstance(fc1.keys, ops.LinearKeys)
    assert (fc1.keys.out, fc1.keys.bias) == (5, False)
    assert fc1.keys.init == ops.DEFAULT_INIT
    assert isinstance(spec.model.layers[1].keys, ops.LAYERS["sigmoid"].Keys)
    assert isinstance(spec.loss, ops.MseKeys)
    assert (spec.loss.reduction, spec.loss.scale, spec.loss.l2) == ("mean", 1.0, None)
    opt = spec.train.optimizer
    assert opt == OPTIMIZERS["sgd"](type="sgd", lr=0.6)
    assert (opt.momentum, opt.dampening, opt.nesterov, opt.weight_decay) == (
        0,
        0,
        False,
        0,
    )
    assert spec.train.epochs == 5000
    assert spec.train.batch_size == "full"
    assert spec.train.shuffle is False
    assert spec.train.metrics == ()
    assert spec.train.log_every is None


def test_default_layer_names_count_per_type():
    layers = [
        {"type": "linear", "out": 5},
        {"type": "relu"},
        {"type": "linear", "out": 1},
    ]
    spec = parse_spec(xor({"model.layers": layers}))
    assert [layer.name for layer in spec.model.layers] == [
        "linear1",
        "relu1",
        "linear2",
    ]


def test_given_names_count_towards_the_default_numbering():
    layers = [
        {"name": "hidden", "type": "linear", "out": 5},
        {"type": "relu"},
        {"type": "linear", "out": 1},
    ]
    spec = parse_spec(xor({"model.layers": layers}))
    assert [layer.name for layer in spec.model.layers] == ["hidden", "relu1", "linear2"]


def test_yaml_numbers_are_yaml_1_2(tmp_path):
    text = XOR_YAML.replace(
        "{type: sgd, lr: 0.6}", "{type: sgd, lr: 1e-5, momentum: .5}"
    )
    text = text.replace("epochs: 5000", "epochs: 010")
    path = tmp_path / "xor.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.train.optimizer.lr == 1e-05
    assert type(spec.train.optimizer.lr) is float
    assert spec.train.optimizer.momentum == 0.5
    assert spec.train.epochs == 10  # decimal, not YAML 1.1 octal


@pytest.mark.parametrize(
    "scalar, value",
    [
        ("1e-5", 1e-5),
        ("1.0e+3", 1000.0),
        (".5", 0.5),
        ("-2E4", -20000.0),
        ("3", 3),
        ("0x1F", 31),
        ("0o17", 15),
        ("true", True),
        ("True", True),
        ("FALSE", False),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("null", None),
        ("~", None),
        ("2020-01-01", "2020-01-01"),
        ("1_000", "1_000"),
        ('"1e-5"', "1e-5"),
    ],
)
def test_yaml_scalars(tmp_path, scalar, value):
    # description takes any string and reports any other value as the user wrote it
    path = tmp_path / "s.yaml"
    old = "description: 2-5-1 sigmoid MLP on XOR, MSE loss, plain SGD"
    path.write_text(XOR_YAML.replace(old, f"description: {scalar}"))
    if isinstance(value, str):
        assert load_spec(path).description == value
    else:
        shown = {True: "true", False: "false", None: "null"}.get(value, repr(value))
        assert file_lines(path) == [
            f"error: F: description: must be a string, got {shown}"
        ]


def test_json_spec_is_the_same_spec(tmp_path):
    yaml_path, json_path = tmp_path / "xor.yaml", tmp_path / "xor.json"
    yaml_path.write_text(XOR_YAML)
    json_path.write_text(json.dumps(XOR, indent=2))
    from_yaml, from_json = load_spec(yaml_path), load_spec(json_path)
    dumped = dump(from_json)
    assert dumped == dump(from_yaml)
    assert dumped["model"]["layers"][0]["keys"]["out"] == 5
    assert dumped["loss"] == {
        "type": "mse",
        "reduction": "mean",
        "scale": 1.0,
        "l2": None,
    }
    assert from_json.source == str(json_path)
    assert "source" not in dumped


def test_spec_is_frozen():
    spec = parse_spec(xor())
    with pytest.raises(AttributeError):
        spec.name = "other"
    with pytest.raises(AttributeError):
        spec.train.epochs = 1
    assert spec == parse_spec(xor())
    assert hash(spec.train.optimizer) == hash(parse_spec(xor()).train.optimizer)


def test_parse_spec_defaults_and_no_file_system():
    data = xor({"data": {"kind": "file", "path": "no/such/file.csv", "target": "y"}})
    spec = parse_spec(data)
    assert (spec.source, spec.base_dir) == ("<spec>", ".")
    assert spec.data.path == "no/such/file.csv"


def test_every_data_kind_and_optimizer():
    spec = parse_spec(
        xor(
            {
                "data": {
                    "kind": "spiral",
                    "n_per_class": 10,
                    "classes": 3,
                    "split": {"train": 0.7, "val": 0.15, "test": 0.15},
                    "standardize": True,
                },
                "train.optimizer": {"type": "adamw", "lr": 1e-3, "betas": [0.8, 0.9]},
                "train.metrics": ["accuracy"],
                "train.batch_size": 2,
            }
        )
    )
    assert spec.data.noise == 0.2
    assert (spec.data.split.train, spec.data.split.val) == (0.7, 0.15)
    assert spec.train.optimizer.betas == (0.8, 0.9)
    assert spec.train.optimizer.weight_decay == 0.01  # AdamW's default
    assert spec.train.metrics == ("accuracy",)
    assert spec.train.batch_size == 2
    adam = parse_spec(
        xor({"train.optimizer": {"type": "adam", "lr": 1}})
    ).train.optimizer
    assert (adam.betas, adam.eps, adam.weight_decay, adam.amsgrad) == (
        (0.9, 0.999),
        1e-8,
        0,
        False,
    )
    rms = parse_spec(
        xor({"train.optimizer": {"type": "rmsprop", "lr": 1}})
    ).train.optimizer
    assert (rms.alpha, rms.eps, rms.momentum, rms.centered) == (0.99, 1e-8, 0, False)
    random = parse_spec(xor({"data": {"kind": "random", "n": 8, "classes": 3}})).data
    assert (random.n, random.classes, random.outputs) == (8, 3, None)
    labels = parse_spec(xor({"data.y": [0, 1, 1, 0]})).data.y
    assert labels == [0, 1, 1, 0]
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop"}


def test_losses_dispatch_through_the_registry(monkeypatch):
    class HuberKeys(ops.LossKeys):
        type: Literal["huber"]
        delta: float = 1.0

    huber = dataclasses.replace(ops.LOSSES["mse"], name="huber", Keys=HuberKeys)
    monkeypatch.setitem(ops.LOSSES, "huber", huber)
    spec = parse_spec(xor({"loss": {"type": "huber", "delta": 2}}))
    assert isinstance(spec.loss, HuberKeys) and spec.loss.delta == 2.0
    assert lines(xor({"loss": {"type": "hubr"}})) == [
        "error: s.yaml: loss.type: unknown loss 'hubr' (did you mean 'huber'?)"
    ]


# ------------------------------------------------------------------ error lines


@pytest.mark.parametrize(
    "changes, line",
    [
        (
            {"model.layers.2.out": -3},
            "model.layers[2].out: must be a positive integer, got -3",
        ),
        (
            {"model.layers.2.out": 5.0},
            "model.layers[2].out: must be a positive integer, got 5.0",
        ),
        (
            {"model.layers.2.out": "5"},
            "model.layers[2].out: must be a positive integer, got '5'",
        ),
        ({"train.optimizer.lr": 0}, "train.optimizer.lr: must be > 0, got 0"),
        (
            {"train.optimizer.lr": "0.1"},
            "train.optimizer.lr: must be a positive number, got '0.1'",
        ),
        (
            {"model.layers.2.bais": True},
            "model.layers[2].bais: unknown key (did you mean 'bias'?)",
        ),
        ({"loss.type": "mse2"}, "loss.type: unknown loss 'mse2' (did you mean 'mse'?)"),
        (
            {"loss.reduction": "avg"},
            "loss.reduction: must be one of 'mean', 'sum', got 'avg'",
        ),
        ({"loss.l2": {"coef": -1}}, "loss.l2.coef: must be >= 0, got -1"),
        ({"loss": "mse"}, "loss: must be a mapping with a type, got 'mse'"),
        ({"train.epochs": ...}, "train.epochs: required key missing"),
        (
            {"model.layers.0.bias": "yes"},
            "model.layers[0].bias: must be true or false, got 'yes'",
        ),
        (
            {"model.layers.0.init": {"scheme": "uniform", "lo": 1}},
            "model.layers[0].init.lo: unknown key (did you mean 'low'?)",
        ),
        (
            {"model.layers.0.init": {"scheme": "xavier_uniform", "gain": "foo"}},
            (
                "model.layers[0].init.gain: must be a positive number or one of 'linear', "
                "'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu', 'selu', got 'foo'"
            ),
        ),
        (
            {"model.layers.0.init": "unifrom"},
            "model.layers[0].init: unknown init scheme 'unifrom' (did you mean 'uniform'?)",
        ),
        (
            {"model.layers.0.init": {"scheme": "unifrom"}},
            "model.layers[0].init.scheme: unknown init scheme 'unifrom' (did you mean 'uniform'?)",
        ),
        (
            {"model.layers.0.init": {"low": 0}},
            "model.layers[0].init.scheme: required key missing",
        ),
        (
            {"model.layers.0.init": "constant"},
            "model.layers[0].init.value: required key missing",
        ),
        (
            {"model.layers.1.type": "rleu"},
            "model.layers[1].type: unknown layer type 'rleu' (did you mean 'relu'?)",
        ),
        ({"model.layers.1.type": ...}, "model.layers[1].type: required key missing"),
        (
            {"model.layers.1": 5},
            "model.layers[1]: must be a mapping with a type, got 5",
        ),
        (
            {"model.layers.1.inputs": []},
            "model.layers[1].inputs: must have at least 1 item, got 0",
        ),
        (
            {"model.layers.1.inputs": "fc1"},
            "model.layers[1].inputs: must be a list of strings, got 'fc1'",
        ),
        (
            {"model.layers.1.name": "x"},
            "model.layers[1].name: 'x' is the network's input; choose another name",
        ),
        (
            {"model.layers.1.name": "d_fc1"},
            (
                "model.layers[1].name: 'd_fc1' reads as the gradient of layer 'fc1' (the "
                "dump names ∂L/∂fc1 step0/d_fc1); choose another name"
            ),
        ),
        (
            {"model.layers.1.name": "lambda"},
            "model.layers[1].name: 'lambda' is a Python keyword; choose another name",
        ),
        (
            {"model.layers.1.name": "1st"},
            (
                "model.layers[1].name: must be an identifier (a letter or _, then letters, digits or _; "
                "at most 64 characters), got '1st'"
            ),
        ),
        (
            {"model.layers.1.name": "fc1"},
            "model.layers[1].name: 'fc1' is already the name of model.layers[0]",
        ),
        ({"model.layers": []}, "model.layers: must have at least one layer"),
        ({"model.input": 0}, "model.input: must be a positive integer, got 0"),
        ({"model.inptu": 2}, "model.inptu: unknown key (did you mean 'input'?)"),
        (
            {"name": "Xor"},
            "name: must be a lowercase identifier (a-z, then a-z, 0-9 or _; at most 64 characters), got 'Xor'",
        ),
        ({"name": "class"}, "name: 'class' is a Python keyword; choose another name"),
        ({"name": ...}, "name: required key missing"),
        ({"mlpgen": 2}, "mlpgen: must be 1, got 2"),
        ({"mlpgen": True}, "mlpgen: must be 1, got true"),
        (
            {"dtype": "float16"},
            "dtype: must be one of 'float64', 'float32', got 'float16' (did you mean 'float64'?)",
        ),
        ({"seed": -1}, "seed: must be >= 0, got -1"),
        ({"trian": {}}, "trian: unknown key (did you mean 'train'?)"),
        (
            {"source": "x.yaml"},
            "source: unknown key (expected one of: mlpgen, name, description, dtype, seed, data, model, loss, train)",
        ),
        (
            {"data.kind": "inlin"},
            "data.kind: unknown data kind 'inlin' (did you mean 'inline'?)",
        ),
        ({"data.kind": ...}, "data.kind: required key missing"),
        ({"data.x.3": [1, 1, 1]}, "data.x[3]: has 3 values, the first row has 2"),
        ({"data.x.1.0": "a"}, "data.x[1][0]: must be a number, got 'a'"),
        ({"data.x": []}, "data.x: must have at least one row"),
        ({"data.y": [[0], [1], [1]]}, "data.y: has 3 rows, x has 4"),
        ({"data.y.3": 0}, "data.y[3]: must be a list of numbers, got 0"),
        ({"data.y": [0, 1, 1, [0]]}, "data.y[3]: must be a number, got [0]"),
        (
            {"data.split": {"train": 0.5, "val": 0.4}},
            "data.split: train + val + test must add up to 1, got 0.9",
        ),
        (
            {"data.split": {"train": 0, "val": 1}},
            "data.split.train: must be > 0, got 0",
        ),
        (
            {"data": {"kind": "random", "n": 4, "outputs": 1, "classes": 2}},
            "data.classes: give outputs (float targets) or classes (class labels), not both",
        ),
        (
            {"data": {"kind": "random", "n": 4}},
            "data: needs outputs (float targets) or classes (class labels)",
        ),
        (
            {"data": {"kind": "spiral", "n_per_class": 4, "classes": 1}},
            "data.classes: must be >= 2, got 1",
        ),
        (
            {"data": {"kind": "file", "path": "a.csv"}},
            "data.target: required for a .csv file (a column name or index)",
        ),
        (
            {"data": {"kind": "file", "path": "a.npz", "target": 1.5}},
            "data.target: must be a string or an integer >= 0, got 1.5",
        ),
        (
            {"train.optimizer.type": "sgdd"},
            "train.optimizer.type: unknown optimizer 'sgdd' (did you mean 'sgd'?)",
        ),
        ({"train.optimizer": "sgd"}, "train.optimizer: must be a mapping, got 'sgd'"),
        (
            {"train.optimizer.nesterov": True},
            "train.optimizer.nesterov: needs momentum > 0 and dampening 0 (as in torch.optim.SGD)",
        ),
        (
            {"train.optimizer": {"type": "adam", "lr": 1, "betas": [0.9]}},
            "train.optimizer.betas: must be a list of 2 numbers >= 0 and < 1, got [0.9]",
        ),
        (
            {"train.optimizer": {"type": "adam", "lr": 1, "betas": [0.9, 1]}},
            "train.optimizer.betas[1]: must be < 1, got 1",
        ),
        (
            {"train.optimizer": {"type": "rmsprop", "lr": 1, "alpha": 2}},
            "train.optimizer.alpha: must be <= 1, got 2",
        ),
        (
            {"train.batch_size": 0},
            "train.batch_size: must be 'full' or a positive integer, got 0",
        ),
        (
            {"train.batch_size": "all"},
            "train.batch_size: must be 'full' or a positive integer, got 'all'",
        ),
        ({"train.metrics": ["acc"]}, "train.metrics[0]: must be 'accuracy', got 'acc'"),
        ({"train.shuffle": "on"}, "train.shuffle: must be true or false, got 'on'"),
        ({"train.log_every": 0}, "train.log_every: must be a positive integer, got 0"),
        (
            {"train.optimizer.lr": float("nan")},
            "train.optimizer.lr: must be a finite number, got nan",
        ),
        (
            {"data.x.0.1": float("inf")},
            "data.x[0][1]: must be a finite number, got inf",
        ),
    ],
)
def test_error_line(changes, line):
    assert lines(xor(changes)) == [f"error: s.yaml: {line}"]


def test_default_name_clash_is_reported_on_the_layer():
    layers = [
        {"name": "relu1", "type": "linear", "out": 5},
        {"type": "relu"},
    ]
    assert lines(xor({"model.layers": layers})) == [
        (
            "error: s.yaml: model.layers[1]: its default name 'relu1' is already the name "
            "of model.layers[0]; give this layer a name"
        )
    ]


def test_all_independent_problems_in_one_error_in_document_order():
    data = xor(
        {
            "seed": -1,
            "data.x.3": [1, 1, 1],
            "model.layers.0.bias": "yes",
            "model.layers.2.out": -3,
            "model.layers.3.type": "sigmod",
            "loss.type": "mse2",
            "train.optimizer.lr": 0,
            "train.epochs": ...,
        }
    )
    assert lines(data) == [
        "error: s.yaml: data.x[3]: has 3 values, the first row has 2",
        "error: s.yaml: model.layers[0].bias: must be true or false, got 'yes'",
        "error: s.yaml: model.layers[2].out: must be a positive integer, got -3",
        "error: s.yaml: model.layers[3].type: unknown layer type 'sigmod' (did you mean 'sigmoid'?)",
        "error: s.yaml: loss.type: unknown loss 'mse2' (did you mean 'mse'?)",
        "error: s.yaml: train.optimizer.lr: must be > 0, got 0",
        "error: s.yaml: train.epochs: required key missing",
        "error: s.yaml: seed: must be >= 0, got -1",
    ]


def test_contract_bad_spec(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\n"
        "data: {kind: inline, x: [[0, 0], [1, 1]], y: [[0], [1]]}\n"
        "model:\n"
        "  layers:\n"
        "    - {type: linear, out: 4}\n"
        "    - {type: relu}\n"
        "    - {type: linear, out: -3}\n"
        "loss: {type: mse}\n"
        "train: {optimizer: {type: sgd, lr: 0}, epochs: 10}\n"
    )
    assert file_lines(path) == [
        "error: F: model.layers[2].out: must be a positive integer, got -3",
        "error: F: train.optimizer.lr: must be > 0, got 0",
    ]


def test_spec_error_lines():
    error = SpecError("a.yaml", [("", "could not read"), ("model.input", "bad")])
    assert error.lines() == [
        "error: a.yaml: could not read",
        "error: a.yaml: model.input: bad",
    ]
    assert (
        str(error) == "error: a.yaml: could not read\nerror: a.yaml: model.input: bad"
    )
    assert (error.file, error.problems) == (
        "a.yaml",
        [("", "could not read"), ("model.input", "bad")],
    )


# ------------------------------------------------------------------ loading files


def test_python_object_tags_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f'name: evil\nseed: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    assert file_lines(path) == [
        (
            "error: F: line 2, column 7: tags that construct objects are not allowed "
            "in a spec: !!python/object/apply:os.system"
        )
    ]
    assert not marker.exists()
    path.write_text("!!python/object/new:subprocess.Popen [[touch, ran]]\n")
    assert len(file_lines(path)) == 1
    assert not (tmp_path / "ran").exists()


def test_duplicate_yaml_keys(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        XOR_YAML.replace("  epochs: 5000\n", "  epochs: 5000\n  epochs: 10\n")
    )
    assert file_lines(path) == [
        "error: F: line 25, column 3: duplicate key 'epochs' (first on line 24)"
    ]
    path.write_text("name: a\nmodel: {input: 2, 'input': 3}\n")
    assert file_lines(path) == [
        "error: F: line 2, column 19: duplicate key 'input' (first on line 2)"
    ]


def test_yaml_merge_keys_may_override(tmp_path):
    path = tmp_path / "merge.yaml"
    text = XOR_YAML.replace(
        "  optimizer: {type: sgd, lr: 0.6}",
        "  optimizer:\n    <<: &base {type: sgd, lr: 0.6}\n    lr: 0.3",
    )
    path.write_text(text)
    assert load_spec(path).train.optimizer.lr == 0.3


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: xor\ndata: {kind: inline\nmodel: [\n")
    (line,) = file_lines(path)
    assert re.fullmatch(
        r"error: F: line \d+, column \d+: could not parse YAML: .+", line
    )
    path.write_text("name: [")
    assert file_lines(path) == [
        (
            "error: F: line 1, column 8: could not parse YAML: expected the node content, "
            "but found '<stream end>' (while parsing a flow node)"
        )
    ]


def test_bad_json_has_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "name": "xor",\n  "seed": 0\n  "dtype": "float64"\n}\n')
    assert file_lines(path) == [
        "error: F: line 4, column 3: could not parse JSON: Expecting ',' delimiter"
    ]


def test_json_duplicate_keys_and_nan(tmp_path):
    path = tmp_path / "dup.json"
    data = json.dumps(XOR).replace('"lr": 0.6', '"lr": 0.6, "lr": 0.7')
    path.write_text(data)
    assert file_lines(path) == ["error: F: train.optimizer.lr: duplicate key"]
    path.write_text(json.dumps(XOR).replace('"lr": 0.6', '"lr": NaN'))
    assert file_lines(path) == [
        "error: F: train.optimizer.lr: must be a finite number, got nan"
    ]


@pytest.mark.parametrize(
    "name, content, line",
    [
        (
            "s.yaml",
            b"- 1\n- 2\n",
            "the spec must be a mapping of keys (name, data, ...), got [1, 2]",
        ),
        (
            "s.json",
            b"[1, 2]",
            "the spec must be a mapping of keys (name, data, ...), got [1, 2]",
        ),
        ("s.yaml", b"# nothing\n", "the spec is empty"),
        ("s.yaml", b"name: a\n\xff\n", "line 2: not UTF-8 text (byte 0xff)"),
        (
            "s.yaml",
            b"name: \x07\n",
            (
                "line 1: could not parse YAML: unacceptable character #x0007: "
                "special characters are not allowed"
            ),
        ),
        (
            "s.yaml",
            b"name: a\n---\nname: b\n",
            (
                "line 2, column 1: could not parse YAML: but found another "
                "document (expected a single document in the stream "
                "started at line 1, column 1)"
            ),
        ),
        ("s.txt", XOR_YAML.encode(), "a spec is a .yaml, .yml or .json file"),
        (
            "s.yaml",
            b"x: " + b"[" * 10000 + b"]" * 10000,
            "the spec is nested too deeply",
        ),
    ],
)
def test_unloadable_files(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_bytes(content)
    assert file_lines(path) == [f"error: F: {line}"]


def test_unreadable_files(tmp_path):
    assert file_lines(tmp_path / "missing.yaml") == [
        "error: F: cannot read the file: No such file or directory"
    ]
    (tmp_path / "dir.yml").mkdir()
    assert file_lines(tmp_path / "dir.yml") == [
        "error: F: cannot read the file: Is a directory"
    ]


def test_utf8_bom_and_yml_suffix(tmp_path):
    path = tmp_path / "xor.YML"
    path.write_bytes(b"\xef\xbb\xbf" + XOR_YAML.encode())
    assert load_spec(path).name == "xor"


# ------------------------------------------------------------------ mlpgen check, case by case

BASE = {
    "name": "name: t",
    "data": "data: {kind: inline, x: [[0, 0], [0, 1], [1, 0], [1, 1]], "
    "y: [[0], [1], [1], [0]]}",
    "model": "model:\n  layers:\n    - {name: fc1, type: linear, out: 3}\n"
    "    - {name: act, type: tanh}\n    - {name: fc2, type: linear, out: 1}",
    "loss": "loss: {type: mse}",
    "train": "train: {optimizer: {type: sgd, lr: 0.1}, epochs: 10}",
}
XOR_Y = "x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [[0], [1], [1], [0]]"


def spec(extra: str = "", **sections: str) -> str:
    """BASE with some sections replaced ("" drops one), then ``extra`` lines."""
    parts = {**BASE, **sections}
    return "\n".join(text for text in parts.values() if text) + "\n" + extra


def layers(*items: str) -> str:
    """A model section with these layers, one flow mapping each."""
    return "model:\n  layers:\n" + "\n".join(f"    - {item}" for item in items)


def sgd(extra: str = "", lr: str = "0.1", epochs: str = "10") -> str:
    """A train section with SGD; ``extra`` adds keys to it."""
    return f"train: {{optimizer: {{type: sgd, lr: {lr}}}, epochs: {epochs}{extra}}}"


def optimizer(keys: str) -> str:
    return f"train: {{optimizer: {{{keys}}}, epochs: 10}}"


IDENTIFIER = (
    "an identifier (a letter or _, then letters, digits or _; at most 64 characters)"
)
LOWERCASE = "a lowercase identifier (a-z, then a-z, 0-9 or _; at most 64 characters)"
TOP_KEYS = "mlpgen, name, description, dtype, seed, data, model, loss, train"
MISSING_SECTIONS = [
    "data: required key missing",
    "model: required key missing",
    "loss: required key missing",
    "train: required key missing",
]

CASES = {
    # ---------------------------------------------------------------- syntax
    "yaml-syntax": (
        spec(train="train: {optimizer: {type: sgd, lr: 0.1}, epochs: 10"),
        [
            (
                "line 10, column 1: could not parse YAML: expected ',' or '}', but got "
                "'<stream end>' (while parsing a flow mapping started at line 9, column 8)"
            )
        ],
    ),
    "yaml-indentation": (
        "name: t\n  data: 1\n",
        ["line 2, column 7: could not parse YAML: mapping values are not allowed here"],
    ),
    "yaml-tab": (
        "name: t\n\tdata: 1\n",
        [
            (
                "line 2, column 1: could not parse YAML: found character '\\t' that "
                "cannot start any token (while scanning for the next token)"
            )
        ],
    ),
    "yaml-duplicate-key": (
        spec("name: u\n"),
        ["line 10, column 1: duplicate key 'name' (first on line 1)"],
    ),
    "yaml-object-tag": (
        "!!python/object/apply:os.system ['echo hi']\n",
        [
            (
                "line 1, column 1: tags that construct objects are not allowed in a "
                "spec: !!python/object/apply:os.system"
            )
        ],
    ),
    "yaml-binary-tag": (
        spec("description: !!binary aGk=\n"),
        [
            (
                "line 10, column 14: tags that construct objects are not allowed in a "
                "spec: !!binary"
            )
        ],
    ),
    "not-utf8": (
        b"name: t\ndescription: \xff\n",
        ["line 2: not UTF-8 text (byte 0xff)"],
    ),
    "empty": ("", ["the spec is empty"]),
    "list": (
        "- 1\n- 2\n",
        ["the spec must be a mapping of keys (name, data, ...), got [1, 2]"],
    ),
    "scalar": (
        "hello\n",
        ["the spec must be a mapping of keys (name, data, ...), got 'hello'"],
    ),
    "nested-too-deeply": (
        "name: " + "[" * 5000 + "]" * 5000 + "\n",
        ["the spec is nested too deeply"],
    ),
    "self-containing": (
        "a: &a [*a]\n",
        ["the spec contains itself (a YAML alias inside its own anchor)"],
    ),
    # ---------------------------------------------------------------- types
    "name-not-a-string": (spec(name="name: 3"), [f"name: must be {LOWERCASE}, got 3"]),
    "name-upper-case": (
        spec(name="name: Xor"),
        [f"name: must be {LOWERCASE}, got 'Xor'"],
    ),
    "name-a-path": (
        spec(name="name: ../../etc"),
        [f"name: must be {LOWERCASE}, got '../../etc'"],
    ),
    "name-keyword": (
        spec(name="name: class"),
        ["name: 'class' is a Python keyword; choose another name"],
    ),
    "name-model-class-clash": (
        spec(name="name: dropout"),
        [
            (
                "name: 'dropout' would name the model class Dropout, which the generated "
                "code already uses; choose another name"
            )
        ],
    ),
    "epochs-a-word": (
        spec(train=sgd(epochs="ten")),
        ["train.epochs: must be a positive integer, got 'ten'"],
    ),
    "layers-a-mapping": (
        spec(model="model: {layers: {type: linear}}"),
        ["model.layers: must be a list of layers, got {'type': 'linear'}"],
    ),
    "layer-a-string": (
        spec(model=layers("linear", "{type: linear, out: 1}")),
        ["model.layers[0]: must be a mapping with a type, got 'linear'"],
    ),
    "out-a-float": (
        spec(model=layers("{type: linear, out: 2.5}")),
        ["model.layers[0].out: must be a positive integer, got 2.5"],
    ),
    "bias-yes": (
        spec(model=layers("{type: linear, out: 1, bias: yes}")),
        ["model.layers[0].bias: must be true or false, got 'yes'"],
    ),
    "lr-a-word": (
        spec(train=sgd(lr="fast")),
        ["train.optimizer.lr: must be a positive number, got 'fast'"],
    ),
    "ragged-x": (
        spec(
            data="data: {kind: inline, x: [[0, 0], [0], [1, 0], [1, 1]], y: [[0], [1], [1], [0]]}"
        ),
        ["data.x[1]: has 1 value, the first row has 2"],
    ),
    "x-and-y-lengths": (
        spec(
            data="data: {kind: inline, x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [[0], [1], [1]]}"
        ),
        ["data.y: has 3 rows, x has 4"],
    ),
    "x-a-word": (
        spec(
            data="data: {kind: inline, x: [[a, 0], [0, 1], [1, 0], [1, 1]], y: [[0], [1], [1], [0]]}"
        ),
        ["data.x[0][0]: must be a number, got 'a'"],
    ),
    "dtype": (
        spec("dtype: float16\n"),
        [
            "dtype: must be one of 'float64', 'float32', got 'float16' (did you mean 'float64'?)"
        ],
    ),
    "inputs-a-string": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 2, inputs: x}",
                "{name: b, type: linear, out: 1}",
            )
        ),
        ["model.layers[0].inputs: must be a list of strings, got 'x'"],
    ),
    "lone-surrogate": (
        spec('description: "\\ud800"\n'),
        ["description: must be Unicode text, got the lone surrogate \\ud800"],
    ),
    "odd-key": (
        spec('"a b\\nc": 1\n'),
        [f"'a b\\nc': unknown key (expected one of: {TOP_KEYS})"],
    ),
    # ---------------------------------------------------------------- ranges
    "out-negative": (
        spec(model=layers("{type: linear, out: -3}")),
        ["model.layers[0].out: must be a positive integer, got -3"],
    ),
    "dropout-p-1": (
        spec(model=layers("{type: dropout, p: 1}", "{type: linear, out: 1}")),
        ["model.layers[0].p: must be < 1, got 1"],
    ),
    "dropout-p-negative": (
        spec(model=layers("{type: dropout, p: -0.1}", "{type: linear, out: 1}")),
        ["model.layers[0].p: must be >= 0, got -0.1"],
    ),
    "lr-0": (spec(train=sgd(lr="0")), ["train.optimizer.lr: must be > 0, got 0"]),
    "lr-negative": (
        spec(train=optimizer("type: adam, lr: -1e-3")),
        ["train.optimizer.lr: must be > 0, got -0.001"],
    ),
    "lr-nan": (
        spec(train=sgd(lr=".nan")),
        ["train.optimizer.lr: must be a finite number, got nan"],
    ),
    "x-infinite": (
        spec(
            data="data: {kind: inline, x: [[0, .inf], [0, 1], [1, 0], [1, 1]], y: [[0], [1], [1], [0]]}"
        ),
        ["data.x[0][1]: must be a finite number, got inf"],
    ),
    "epochs-0": (
        spec(train=sgd(epochs="0")),
        ["train.epochs: must be a positive integer, got 0"],
    ),
    "batch-size-0": (
        spec(train=sgd(", batch_size: 0")),
        ["train.batch_size: must be 'full' or a positive integer, got 0"],
    ),
    "split-sum": (
        spec(data=f"data: {{kind: inline, {XOR_Y}, split: {{train: 0.5, val: 0.2}}}}"),
        ["data.split: train + val + test must add up to 1, got 0.7"],
    ),
    "seed-negative": (spec("seed: -1\n"), ["seed: must be >= 0, got -1"]),
    "beta-1": (
        spec(train=optimizer("type: adam, lr: 0.1, betas: [0.9, 1.0]")),
        ["train.optimizer.betas[1]: must be < 1, got 1.0"],
    ),
    "betas-one": (
        spec(train=optimizer("type: adam, lr: 0.1, betas: [0.9]")),
        ["train.optimizer.betas: must be a list of 2 numbers >= 0 and < 1, got [0.9]"],
    ),
    "momentum-negative": (
        spec(train=optimizer("type: sgd, lr: 0.1, momentum: -1")),
        ["train.optimizer.momentum: must be >= 0, got -1"],
    ),
    "nesterov-without-momentum": (
        spec(train=optimizer("type: sgd, lr: 0.1, nesterov: true")),
        [
            "train.optimizer.nesterov: needs momentum > 0 and dampening 0 (as in torch.optim.SGD)"
        ],
    ),
    "classes-1": (
        spec(
            data="data: {kind: random, n: 10, classes: 1}",
            model="model: {input: 2, layers: [{type: linear, out: 2}]}",
            loss="loss: {type: cross_entropy}",
        ),
        ["data.classes: must be >= 2, got 1"],
    ),
    "noise-negative": (
        spec(
            data="data: {kind: spiral, n_per_class: 5, classes: 3, noise: -0.1}",
            loss="loss: {type: cross_entropy}",
        ),
        ["data.noise: must be >= 0, got -0.1"],
    ),
    # ---------------------------------------------------------------- unknown keys and types
    "unknown-top-key-close": (
        spec("descripton: hello\n"),
        ["descripton: unknown key (did you mean 'description'?)"],
    ),
    "unknown-top-key": (
        spec("zzzz: 10\n"),
        [f"zzzz: unknown key (expected one of: {TOP_KEYS})"],
    ),
    "unknown-layer-key": (
        spec(model=layers("{type: linear, out: 1, bais: false}")),
        ["model.layers[0].bais: unknown key (did you mean 'bias'?)"],
    ),
    "key-of-another-layer-type": (
        spec(model=layers("{type: relu, out: 3}", "{type: linear, out: 1}")),
        ["model.layers[0].out: unknown key (expected one of: name, type, inputs)"],
    ),
    "unknown-layer-type": (
        spec(
            model=layers(
                "{type: linaer, out: 3}", "{type: relu}", "{type: linear, out: 1}"
            )
        ),
        ["model.layers[0].type: unknown layer type 'linaer' (did you mean 'linear'?)"],
    ),
    "unknown-layer-type-read-by-default-name": (
        spec(
            model=layers(
                "{type: linaer, out: 3}",
                "{type: relu, inputs: [linaer1]}",
                "{type: linear, out: 1}",
            )
        ),
        ["model.layers[0].type: unknown layer type 'linaer' (did you mean 'linear'?)"],
    ),
    "unknown-layer-type-read-by-name": (
        spec(
            model=layers(
                "{name: h, type: Linear, out: 3}",
                "{name: a, type: relu, inputs: [h]}",
                "{type: linear, out: 1}",
            )
        ),
        ["model.layers[0].type: unknown layer type 'Linear' (did you mean 'linear'?)"],
    ),
    "layer-type-missing": (
        spec(model=layers("{out: 3}", "{type: linear, out: 1}")),
        ["model.layers[0].type: required key missing"],
    ),
    "layer-type-a-number": (
        spec(model=layers("{type: 3}", "{type: linear, out: 1}")),
        [
            (
                "model.layers[0].type: unknown layer type 3 (expected one of: linear, identity, "
                "sigmoid, tanh, relu, leaky_relu, elu, gelu, silu, softplus, softmax, "
                "log_softmax, dropout, add, concat, activation, batchnorm, layernorm, embedding)"
            )
        ],
    ),
    "unknown-loss": (
        spec(loss="loss: {type: MSE}"),
        ["loss.type: unknown loss 'MSE' (did you mean 'mse'?)"],
    ),
    "loss-type-missing": (
        spec(loss="loss: {reduction: sum}"),
        ["loss.type: required key missing"],
    ),
    "unknown-loss-key": (
        spec(loss="loss: {type: mse, reduce: sum}"),
        ["loss.reduce: unknown key (did you mean 'reduction'?)"],
    ),
    "unknown-reduction": (
        spec(loss="loss: {type: mse, reduction: avg}"),
        ["loss.reduction: must be one of 'mean', 'sum', got 'avg'"],
    ),
    "unknown-optimizer": (
        spec(train=optimizer("type: adma, lr: 0.1")),
        ["train.optimizer.type: unknown optimizer 'adma' (did you mean 'adam'?)"],
    ),
    "unknown-optimizer-key": (
        spec(train=optimizer("type: adam, lr: 0.1, beta: [0.9, 0.99]")),
        ["train.optimizer.beta: unknown key (did you mean 'betas'?)"],
    ),
    "unknown-data-kind": (
        spec(data="data: {kind: inlne, x: [[0, 0]], y: [[0]]}"),
        ["data.kind: unknown data kind 'inlne' (did you mean 'inline'?)"],
    ),
    "unknown-init-scheme": (
        spec(model=layers("{type: linear, out: 1, init: xavier}")),
        [
            "model.layers[0].init: unknown init scheme 'xavier' (did you mean 'xavier_normal'?)"
        ],
    ),
    "unknown-init-key": (
        spec(model=layers("{type: linear, out: 1, init: {scheme: normal, sd: 2}}")),
        ["model.layers[0].init.sd: unknown key (did you mean 'std'?)"],
    ),
    "unknown-metric": (
        spec(train=sgd(", metrics: [acc]")),
        ["train.metrics[0]: must be 'accuracy', got 'acc'"],
    ),
    # ---------------------------------------------------------------- names
    "duplicate-name": (
        spec(
            model=layers(
                "{name: h, type: linear, out: 3}",
                "{name: h, type: tanh}",
                "{type: linear, out: 1}",
            )
        ),
        ["model.layers[1].name: 'h' is already the name of model.layers[0]"],
    ),
    "default-name-taken": (
        spec(
            model=layers(
                "{name: linear2, type: linear, out: 3}",
                "{type: tanh}",
                "{type: linear, out: 1}",
            )
        ),
        [
            "model.layers[2]: its default name 'linear2' is already the name of model.layers[0]; give this layer a name"
        ],
    ),
    "name-reserved": (
        spec(model=layers("{name: x, type: linear, out: 1}")),
        ["model.layers[0].name: 'x' is the network's input; choose another name"],
    ),
    "name-of-a-gradient": (
        spec(
            model=layers(
                "{name: h, type: linear, out: 2}", "{name: d_h, type: linear, out: 1}"
            )
        ),
        [
            (
                "model.layers[1].name: 'd_h' reads as the gradient of layer 'h' (the dump "
                "names ∂L/∂h step0/d_h); choose another name"
            )
        ],
    ),
    "name-private": (
        spec(model=layers("{name: _modules, type: linear, out: 1}")),
        [
            "model.layers[0].name: '_modules' starts with _, which is reserved for Python and nn.Module internals"
        ],
    ),
    "name-a-keyword": (
        spec(model=layers("{name: lambda, type: linear, out: 1}")),
        ["model.layers[0].name: 'lambda' is a Python keyword; choose another name"],
    ),
    "name-an-nn-module-attribute": (
        spec(model=layers("{name: to, type: linear, out: 1}")),
        [
            (
                "model.layers[0].name: 'to' is an attribute of torch.nn.Module, which the "
                "layer would hide in torch_module.py (PyTorch refuses it as a submodule "
                "name); choose another name"
            )
        ],
    ),
    "name-not-an-identifier": (
        spec(model=layers("{name: h-1, type: linear, out: 1}")),
        [f"model.layers[0].name: must be {IDENTIFIER}, got 'h-1'"],
    ),
    # ---------------------------------------------------------------- the graph
    "forward-reference": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 3, inputs: [b]}",
                "{name: b, type: linear, out: 1}",
            )
        ),
        [
            "model.layers[0].inputs[0]: 'b' is defined later: inputs must name earlier layers"
        ],
    ),
    "cycle": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 3, inputs: [a]}",
                "{name: b, type: linear, out: 1}",
            )
        ),
        ["model.layers[0].inputs[0]: 'a' is the layer itself: a cycle"],
    ),
    "unknown-input": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 3, inputs: [inptu]}",
                "{name: b, type: linear, out: 1}",
            )
        ),
        ["model.layers[0].inputs[0]: no layer named 'inptu' (nor the input 'x')"],
    ),
    "same-input-twice": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 2}",
                "{name: b, type: add, inputs: [a, a]}",
                "{name: c, type: linear, out: 1}",
            )
        ),
        ["model.layers[1].inputs: names the same input twice"],
    ),
    "add-of-one": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 2}",
                "{name: b, type: add}",
                "{name: c, type: linear, out: 1}",
            )
        ),
        ["model.layers[1].inputs: add takes at least 2 input(s), got 1"],
    ),
    "linear-of-two": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 2}",
                "{name: b, type: linear, out: 1, inputs: [a, x]}",
            )
        ),
        ["model.layers[1].inputs: linear takes exactly 1 input(s), got 2"],
    ),
    "no-inputs": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 2, inputs: []}",
                "{name: b, type: linear, out: 1}",
            )
        ),
        ["model.layers[0].inputs: must have at least 1 item, got 0"],
    ),
    "unused-output": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 3}",
                "{name: b, type: linear, out: 1, inputs: [x]}",
            )
        ),
        ["model.layers[0]: the output of 'a' is never used"],
    ),
    "no-layers": (
        spec(model="model: {layers: []}"),
        ["model.layers: must have at least one layer"],
    ),
    "no-layers-key": (spec(model="model: {}"), ["model.layers: required key missing"]),
    "model-null": (spec(model="model:"), ["model: must be a mapping, got null"]),
    "model-missing": (spec(model=""), ["model: required key missing"]),
    "only-a-name": ("name: t\n", MISSING_SECTIONS),
    # ---------------------------------------------------------------- shapes and targets
    "add-shapes": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 3}",
                "{name: s, type: add, inputs: [a, x]}",
                "{name: b, type: linear, out: 1}",
            )
        ),
        ["model.layers[1].inputs: add needs inputs of one shape, got features [3, 2]"],
    ),
    "outputs-and-targets": (
        spec(model=layers("{name: a, type: linear, out: 2}")),
        [
            "model.layers[0]: the model outputs 2 values per sample, but the targets have 1"
        ],
    ),
    "input-and-data": (
        spec(model="model: {input: 3, layers: [{type: linear, out: 1}]}"),
        ["model.input: is 3, but the data has 2 features"],
    ),
    "input-needed": (
        spec(
            data="data: {kind: random, n: 5, outputs: 1}",
            model=layers("{name: a, type: linear, out: 1}"),
        ),
        ["model.input: required for this data kind (the number of features)"],
    ),
    "too-few-classes": (
        spec(
            model=layers("{name: a, type: linear, out: 1}"),
            loss="loss: {type: cross_entropy}",
        ),
        [
            "model.layers[0]: the model outputs 1 class score, but the data has 2 classes"
        ],
    ),
    "class-index-not-an-integer": (
        spec(
            data="data: {kind: inline, x: [[0, 0], [0, 1]], y: [[0.5], [1]]}",
            model=layers("{name: a, type: linear, out: 2}"),
            loss="loss: {type: cross_entropy}",
        ),
        ["data.y[0]: cross_entropy needs a class index (an integer >= 0), got [0.5]"],
    ),
    "class-weights": (
        spec(
            model=layers("{name: a, type: linear, out: 2}"),
            loss="loss: {type: cross_entropy, weight: [1, 2, 3]}",
        ),
        ["loss.weight: needs one weight per class (2), got 3"],
    ),
    "pos-weights": (
        spec(
            model=layers("{name: a, type: linear, out: 1}"),
            loss="loss: {type: bce_with_logits, pos_weight: [1, 2]}",
        ),
        ["loss.pos_weight: needs one weight per output (1) or a single one, got 2"],
    ),
    "hinge-on-three-classes": (
        spec(
            data="data: {kind: spiral, n_per_class: 5, classes: 3}",
            model=layers("{name: a, type: linear, out: 1}"),
            loss="loss: {type: hinge}",
        ),
        [
            (
                "data.classes: hinge takes two classes (±1 targets), the data has 3: "
                "use classes: 2, or cross_entropy for more classes"
            )
        ],
    ),
    "bce-with-logits-on-random-classes": (
        spec(
            data="data: {kind: random, n: 5, classes: 3}",
            model="model: {input: 2, layers: [{type: linear, out: 1}]}",
            loss="loss: {type: bce_with_logits}",
        ),
        [
            (
                "data.classes: bce_with_logits takes two classes (0/1 targets), the data "
                "has 3: use classes: 2, or cross_entropy for more classes"
            )
        ],
    ),
    # ---------------------------------------------------------------- limits
    "units-10e13": (
        spec(model=layers("{name: a, type: linear, out: 10000000000000}")),
        [
            "model.layers[0].out: must be at most 1,000,000 (mlpgen's limit on features), got 10000000000000"
        ],
    ),
    "epochs-10e9": (
        spec(train=sgd(epochs="1000000000")),
        [
            "train.epochs: must be at most 10,000,000 (mlpgen's limit on epochs), got 1000000000"
        ],
    ),
    "samples-10e12": (
        spec(
            data="data: {kind: random, n: 1000000000000, outputs: 1}",
            model="model: {input: 2, layers: [{type: linear, out: 1}]}",
        ),
        [
            "data.n: must be at most 10,000,000 (mlpgen's limit on samples), got 1000000000000"
        ],
    ),
    "input-features": (
        spec(
            data="data: {kind: random, n: 10, outputs: 1}",
            model="model: {input: 2000000, layers: [{type: linear, out: 1}]}",
        ),
        [
            "model.input: must be at most 1,000,000 (mlpgen's limit on features), got 2000000"
        ],
    ),
    "batch-size": (
        spec(train=sgd(", batch_size: 100000000")),
        [
            "train.batch_size: must be at most 10,000,000 (mlpgen's limit on samples), got 100000000"
        ],
    ),
    "parameters": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 20000}",
                "{name: b, type: linear, out: 20000}",
                "{name: c, type: linear, out: 1}",
            )
        ),
        [
            (
                "model.layers[1]: has 400,020,000 parameters (400,100,001 in the network), "
                "more than mlpgen's limit of 100,000,000"
            )
        ],
    ),
    "concatenated-features": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 600000, bias: false}",
                "{name: a2, type: identity, inputs: [a]}",
                "{name: b, type: concat, inputs: [a, a2]}",
                "{name: c, type: linear, out: 1, bias: false}",
            )
        ),
        [
            "model.layers[2]: outputs 1,200,000 features, more than mlpgen's limit of 1,000,000"
        ],
    ),
    "spiral-samples": (
        spec(
            data="data: {kind: spiral, n_per_class: 10000000, classes: 1000}",
            model=layers("{name: a, type: linear, out: 1000}"),
            loss="loss: {type: cross_entropy}",
        ),
        ["data: has 10,000,000,000 samples, more than mlpgen's limit of 10,000,000"],
    ),
    "data-numbers": (
        spec(
            data="data: {kind: random, n: 10000000, outputs: 1}",
            model="model: {input: 100, layers: [{type: linear, out: 1}]}",
        ),
        [
            "data: holds 1,010,000,000 numbers (10,000,000 samples × 101), more than mlpgen's limit of 100,000,000"
        ],
    ),
    "batch-values": (
        spec(
            data="data: {kind: random, n: 1000000, outputs: 1}",
            model="model: {input: 10, layers: [{type: linear, out: 200}, {type: relu}, {type: linear, out: 1}]}",
        ),
        [
            (
                "train.batch_size: a batch of 1,000,000 samples holds 411,000,000 values in the "
                "network's tensors (411 per sample), more than mlpgen's limit of 100,000,000: "
                "use a smaller batch_size"
            )
        ],
    ),
    "optimizer-steps": (
        spec(
            data="data: {kind: random, n: 1000, outputs: 1}",
            model="model: {input: 2, layers: [{type: linear, out: 1}]}",
            train=sgd(", batch_size: 10", epochs="1000000"),
        ),
        [
            (
                "train.epochs: 1,000,000 epochs of 100 batches make 100,000,000 optimizer "
                "steps, more than mlpgen's limit of 10,000,000"
            )
        ],
    ),
    "alias-bomb": (
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n"
            for a, b in zip("abcdefgh", "bcdefghi")
        ),
        [
            (
                "the spec holds 490,329,055 values (YAML aliases expanded), more than "
                "mlpgen's limit of 1,000,000"
            )
        ],
    ),
    # ---------------------------------------------------------------- several at once
    "independent-problems": (
        "name: T\nseed: -1\n"
        + spec(
            name="",
            model=layers(
                "{name: a, type: linear, out: -3}", "{name: s, type: relu, inputs: [a]}"
            ),
            train=sgd(lr="0", epochs="0"),
        ),
        [
            f"name: must be {LOWERCASE}, got 'T'",
            "seed: must be >= 0, got -1",
            "model.layers[0].out: must be a positive integer, got -3",
            "train.optimizer.lr: must be > 0, got 0",
            "train.epochs: must be a positive integer, got 0",
        ],
    ),
    "graph-problems-join-the-others": (
        "name: T\n"
        + spec(
            name="",
            model=layers(
                "{name: a, type: linear, out: 3, inputs: [b]}",
                "{name: b, type: linear, out: 3, inputs: [nope]}",
                "{name: c, type: linear, out: 3, inputs: [x]}",
                "{name: s, type: add, inputs: [c, x]}",
            ),
            train=sgd(lr="0"),
        ),
        [
            f"name: must be {LOWERCASE}, got 'T'",
            "model.layers[0].inputs[0]: 'b' is defined later: inputs must name earlier layers",
            "model.layers[1].inputs[0]: no layer named 'nope' (nor the input 'x')",
            "model.layers[3].inputs: add needs inputs of one shape, got features [3, 2]",
            "train.optimizer.lr: must be > 0, got 0",
        ],
    ),
    "graph-problems-without-train": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 3, inputs: [b]}",
                "{name: b, type: linear, out: 1}",
            ),
            train="",
        ),
        [
            "model.layers[0].inputs[0]: 'b' is defined later: inputs must name earlier layers",
            "train: required key missing",
        ],
    ),
    "loss-problems-join-the-others": (
        spec(
            model=layers(
                "{name: a, type: linear, out: 4}", "{name: c, type: linear, out: 3}"
            ),
            loss="loss: {type: bce_with_logits, pos_weight: [1, 2]}",
            train=sgd(", shuffle: maybe"),
        ),
        [
            "model.layers[1]: the model outputs 3 values per sample, but the targets have 1",
            "loss.pos_weight: needs one weight per output (3) or a single one, got 2",
            "train.shuffle: must be true or false, got 'maybe'",
        ],
    ),
}


def check(tmp_path, capsys, text, suffix=".yaml"):
    """``mlpgen check`` on ``text`` in-process: (status, stderr lines unprefixed)."""
    path = tmp_path / f"spec{suffix}"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    status = main(["check", str(path)])
    err = capsys.readouterr().err.splitlines()
    prefix = f"error: {path}: "
    assert all(line.startswith(prefix) for line in err), err
    return status, [line[len(prefix) :] for line in err]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_lines(case, tmp_path, capsys):
    text, expected = CASES[case]
    status, got = check(tmp_path, capsys, text)
    assert got == expected
    assert status == 2


def test_the_base_spec_is_valid(tmp_path, capsys):
    assert check(tmp_path, capsys, spec()) == (0, [])


@pytest.mark.parametrize(
    "text, line",
    [
        (
            '{"name": "t",\n "data": }',
            "line 2, column 10: could not parse JSON: Expecting value",
        ),
        ('{"name": "t", "name": "u"}', "name: duplicate key"),
        (
            '{"name": "t", "seed": NaN, "data": 1}',
            "seed: must be a finite number, got nan",
        ),
        (
            '{"name": "t", "seed": 1' + "0" * 5000 + "}",
            "could not parse JSON: Exceeds the limit (4300 digits) for integer string conversion",
        ),
    ],
)
def test_bad_json(tmp_path, capsys, text, line):
    status, got = check(tmp_path, capsys, text, ".json")
    assert status == 2
    assert got[0] == line


def test_file_problems(tmp_path, capsys):
    got = check(tmp_path, capsys, "name: t", ".txt")
    assert got == (2, ["a spec is a .yaml, .yml or .json file"])
    status = main(["check", str(tmp_path / "missing.yaml")])
    assert status == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: {tmp_path / 'missing.yaml'}: cannot read the file: No such file or directory\n"
    )


def test_file_size_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mlpgen.spec.MAX_SPEC_BYTES", 100)
    got = check(tmp_path, capsys, spec())
    assert got == (2, ["the file is larger than mlpgen's limit of 100 bytes"])


def test_parse_spec_takes_data_and_reports_every_problem():
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "t", "data": {"kind": "inline"}, "dtype": 64}, "mem")
    assert e.value.lines() == [
        "error: mem: data.x: required key missing",
        "error: mem: data.y: required key missing",
        "error: mem: dtype: must be one of 'float64', 'float32', got 64",
        "error: mem: model: required key missing",
        "error: mem: loss: required key missing",
        "error: mem: train: required key missing",
    ]


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path, capsys):
    path = tmp_path / "a\nb.yaml"
    path.write_text("name: 3\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: {str(path)!r}: name: must be {LOWERCASE}, got 3"


def test_command_line_exit_status_no_traceback_nothing_written(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(CASES["graph-problems-join-the-others"][0])
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "mlpgen", "compile", str(path), "-o", str(out)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 5
    assert r.stdout == ""
    assert not out.exists()
