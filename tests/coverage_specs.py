"""Specs that between them reach every branch of the templates.

The gallery in specs/ shows the format off; these exist to exercise what the
gallery may not: every optimizer option, dropout with shuffled minibatches,
class and positive weights, both L2 variants, a three-way split. The name
audit (test_hostile.py) and the lint check (test_quality.py) compile them
beside the gallery. Each is a plain dict, written out as JSON by ``write``.
"""

from __future__ import annotations

import json
from pathlib import Path

XOR_DATA = {
    "kind": "inline",
    "x": [[0, 0], [0, 1], [1, 0], [1, 1]],
    "y": [[0], [1], [1], [0]],
}

COVERAGE = {
    "cov_adam": {
        "name": "cov_adam",
        "description": "Adam with AMSGrad and weight decay, dropout, shuffled minibatches",
        "data": {
            "kind": "random",
            "n": 40,
            "classes": 3,
            "split": {"train": 0.5, "val": 0.25, "test": 0.25},
            "standardize": True,
        },
        "model": {
            "input": 4,
            "layers": [
                {"name": "fc1", "type": "linear", "out": 6, "init": "xavier_normal"},
                {"name": "act1", "type": "silu"},
                {"name": "drop", "type": "dropout", "p": 0.25},
                {"name": "fc2", "type": "linear", "out": 3, "bias": False},
            ],
        },
        "loss": {
            "type": "cross_entropy",
            "weight": [1.0, 2.0, 0.5],
            "label_smoothing": 0.1,
            "l2": {"coef": 0.001, "params": "weights"},
        },
        "train": {
            "optimizer": {
                "type": "adam",
                "lr": 0.01,
                "amsgrad": True,
                "weight_decay": 0.01,
            },
            "epochs": 3,
            "batch_size": 8,
            "shuffle": True,
            "metrics": ["accuracy"],
            "log_every": 1,
        },
    },
    "cov_rmsprop": {
        "name": "cov_rmsprop",
        "description": "RMSprop, centered, with momentum; BCE with logits and pos_weight",
        "data": XOR_DATA,
        "model": {
            "layers": [
                {"name": "fc1", "type": "linear", "out": 5, "init": "kaiming_normal"},
                {"name": "act1", "type": "elu", "alpha": 0.5},
                {"name": "fc2", "type": "linear", "out": 1},
            ]
        },
        "loss": {"type": "bce_with_logits", "pos_weight": [2.0], "reduction": "sum"},
        "train": {
            "optimizer": {
                "type": "rmsprop",
                "lr": 0.01,
                "centered": True,
                "momentum": 0.9,
                "weight_decay": 0.001,
            },
            "epochs": 3,
            "shuffle": True,
            "metrics": ["accuracy"],
        },
    },
    "cov_sgd": {
        "name": "cov_sgd",
        "description": "SGD with dampened momentum and weight decay; sigmoid and BCE; L2",
        "data": XOR_DATA,
        "model": {
            "layers": [
                {"name": "fc1", "type": "linear", "out": 4, "init": "uniform"},
                {"name": "act1", "type": "tanh"},
                {"name": "skip", "type": "linear", "out": 4, "inputs": ["x"]},
                {"name": "sum1", "type": "add", "inputs": ["act1", "skip"]},
                {"name": "both", "type": "concat", "inputs": ["sum1", "x"]},
                {"name": "fc2", "type": "linear", "out": 1, "bias_init": "zeros"},
                {"name": "prob", "type": "sigmoid"},
            ]
        },
        "loss": {"type": "bce", "l2": {"coef": 0.0001}},
        "train": {
            "optimizer": {
                "type": "sgd",
                "lr": 0.1,
                "momentum": 0.5,
                "dampening": 0.1,
                "weight_decay": 0.001,
            },
            "epochs": 3,
            "batch_size": 3,
        },
    },
    "cov_softmax": {
        "name": "cov_softmax",
        "description": "float32 regression through softmax and a summed, scaled MSE; AdamW",
        "dtype": "float32",
        "data": {"kind": "random", "n": 16, "outputs": 3},
        "model": {
            "input": 2,
            "layers": [
                {"name": "fc1", "type": "linear", "out": 5},
                {"name": "act1", "type": "gelu", "approximate": "tanh"},
                {"name": "fc2", "type": "linear", "out": 5},
                {"name": "act2", "type": "softplus"},
                {"name": "act3", "type": "leaky_relu", "negative_slope": 0.2},
                {"name": "act4", "type": "relu"},
                {"name": "fc3", "type": "linear", "out": 3},
                {"name": "probs", "type": "softmax"},
            ],
        },
        "loss": {"type": "mse", "reduction": "sum", "scale": 0.5},
        "train": {
            "optimizer": {"type": "adamw", "lr": 0.01},
            "epochs": 3,
            "batch_size": 5,
        },
    },
    "cov_nll": {
        "name": "cov_nll",
        "description": "log_softmax and weighted NLL, summed, on spiral data",
        "data": {"kind": "spiral", "n_per_class": 6, "classes": 3, "noise": 0.1},
        "model": {
            "layers": [
                {"name": "fc1", "type": "linear", "out": 4},
                {"name": "act1", "type": "identity"},
                {"name": "fc2", "type": "linear", "out": 3},
                {"name": "logp", "type": "log_softmax"},
            ]
        },
        "loss": {"type": "nll", "weight": [1.0, 0.5, 2.0], "reduction": "sum"},
        "train": {
            "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True},
            "epochs": 3,
        },
    },
    "cov_loop": {
        "name": "cov_loop",
        "description": "the training loop's keys together: a cosine schedule every step, "
        "draws with replacement, gradient clipping, early stopping on the val accuracy",
        "data": {
            "kind": "random",
            "n": 40,
            "classes": 3,
            "split": {"train": 0.5, "val": 0.5},
        },
        "model": {
            "input": 3,
            "layers": [
                {"name": "fc1", "type": "linear", "out": 5},
                {"name": "act1", "type": "relu"},
                {"name": "fc2", "type": "linear", "out": 3},
            ],
        },
        "loss": {"type": "cross_entropy", "l2": {"coef": 0.001}},
        "train": {
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "epochs": 6,
            "batch_size": 8,
            "sampling": "with_replacement",
            "schedule": {"type": "cosine", "t_max": 5, "every": "step"},
            "clip_grad_norm": 1.0,
            "early_stopping": {"monitor": "val_accuracy", "patience": 2},
            "metrics": ["accuracy"],
        },
    },
    "cov_loop_linear": {
        "name": "cov_loop_linear",
        "description": "LinearLR every epoch with Adam, early stopping on the train loss, "
        "nothing restored",
        "data": XOR_DATA,
        "model": {
            "layers": [
                {"name": "fc1", "type": "linear", "out": 4},
                {"name": "act1", "type": "tanh"},
                {"name": "fc2", "type": "linear", "out": 1},
            ],
        },
        "loss": {"type": "mse"},
        "train": {
            "optimizer": {"type": "adam", "lr": 0.05},
            "epochs": 20,
            "schedule": {"type": "linear", "end_factor": 0.5, "total_iters": 10},
            "early_stopping": {
                "monitor": "train_loss",
                "patience": 3,
                "min_delta": 0.01,
                "restore_best": False,
            },
        },
    },
}


def write(folder: Path, spec: dict, name: str | None = None) -> Path:
    """Write ``spec`` as ``folder/NAME.json`` (NAME: the spec's name by default)."""
    path = Path(folder) / f"{name or spec['name']}.json"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return path
