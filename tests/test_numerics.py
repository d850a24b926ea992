"""Saturated networks: pre-activations of ±1e4 give finite losses and gradients.

Each spec below drives the first linear layer to pre-activations of about
±10⁴ (inputs of ±50 and weights of 100, or uniform in ±100), where a naive
sigmoid, softplus, log-softmax or log overflows or divides by zero. The NumPy
implementation must compute every number without a floating-point warning,
and the three implementations must still agree within the contract's float64
tolerances. Underflow is allowed: e^(−10⁴) rounds to 0, which is the correctly
rounded answer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mlpgen.compiler import compile_spec
from mlpgen.crosstest import IMPLEMENTATIONS, compare

from .conftest import load_module
from .coverage_specs import write

# Rows giving pre-activations 1e4, −1e4, 0.1 and 0 with weights of 100.
X = [[50.0, 50.0], [-50.0, -50.0], [0.001, 0.0], [30.0, -30.0]]
BINARY = [[0.0], [1.0], [1.0], [0.0]]  # the saturated rows are confidently wrong
CLASSES = [0, 1, 2, 1]
HUGE = {"scheme": "constant", "value": 100.0}
SPREAD = {"scheme": "uniform", "low": -100.0, "high": 100.0}


def _spec(name, out, layers, loss, y, init=HUGE):
    """``fc``, a linear layer of ``out`` units with huge weights, then ``layers``."""
    first = {"name": "fc", "type": "linear", "out": out, "init": init}
    return {
        "name": name,
        "data": {"kind": "inline", "x": X, "y": y},
        "model": {"layers": [first, *layers]},
        "loss": loss,
        # tiny steps: the second step must stay saturated, not blow up
        "train": {"optimizer": {"type": "sgd", "lr": 1e-9}, "epochs": 2},
    }


def _head(act):
    """An activation on three units, then a linear read-out of one."""
    return [
        {"name": "act", "type": act},
        {"name": "head", "type": "linear", "out": 1},
    ]


CASES = {
    "sigmoid_mse": _spec(
        "sigmoid_mse",
        1,
        [{"name": "prob", "type": "sigmoid"}],
        {"type": "mse"},
        BINARY,
    ),
    "sigmoid_bce": _spec(
        "sigmoid_bce",
        1,
        [{"name": "prob", "type": "sigmoid"}],
        {"type": "bce"},
        BINARY,
    ),
    "bce_with_logits": _spec(
        "bce_with_logits", 1, [], {"type": "bce_with_logits"}, BINARY
    ),
    "bce_with_logits_pos_weight": _spec(
        "bce_with_logits_pos_weight",
        1,
        [],
        {"type": "bce_with_logits", "pos_weight": [3.0]},
        BINARY,
    ),
    "cross_entropy": _spec(
        "cross_entropy", 3, [], {"type": "cross_entropy"}, CLASSES, SPREAD
    ),
    "log_softmax_nll": _spec(
        "log_softmax_nll",
        3,
        [{"name": "logp", "type": "log_softmax"}],
        {"type": "nll"},
        CLASSES,
        SPREAD,
    ),
    "softmax_mse": _spec(
        "softmax_mse",
        3,
        [{"name": "probs", "type": "softmax"}],
        {"type": "mse"},
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        SPREAD,
    ),
    "softplus": _spec("softplus", 3, _head("softplus"), {"type": "mse"}, BINARY),
    "elu": _spec("elu", 3, _head("elu"), {"type": "mse"}, BINARY),
    "silu": _spec("silu", 3, _head("silu"), {"type": "mse"}, BINARY),
    "gelu": _spec("gelu", 3, _head("gelu"), {"type": "mse"}, BINARY),
    "tanh": _spec("tanh", 3, _head("tanh"), {"type": "mse"}, BINARY),
}


def _run(folder, impl, dump, module_name):
    """Run one implementation in-process with --dump; the archive's arrays."""
    load_module(folder / f"{impl}.py", module_name).main(
        ["--quiet", "--dump", str(dump)]
    )
    with np.load(dump) as archive:
        return dict(archive)


@pytest.mark.parametrize("case", sorted(CASES))
def test_saturated_network_is_finite_warning_free_and_agrees(case, tmp_path):
    spec = write(tmp_path, CASES[case])
    folder = compile_spec(spec, tmp_path / "out")
    dumps = {}
    for impl in IMPLEMENTATIONS:
        dump = tmp_path / f"{impl}.npz"
        if impl == "numpy_backprop":
            # every overflow, division by zero and invalid operation raises
            with (
                np.errstate(over="raise", divide="raise", invalid="raise"),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("error")
                dumps[impl] = _run(folder, impl, dump, f"numerics_{case}_{impl}")
        else:
            dumps[impl] = _run(folder, impl, dump, f"numerics_{case}_{impl}")

    ref = dumps["numpy_backprop"]
    # the network really is saturated: the first layer reaches ±1e4
    pre = ref["x"] @ ref["init/fc.weight"].T + ref["init/fc.bias"]
    assert np.abs(pre).max() >= 0.5e4
    assert pre.min() <= -0.1e4 and pre.max() >= 0.1e4
    for impl, arrays in dumps.items():
        for key, value in arrays.items():
            assert np.isfinite(value).all(), f"{impl}: {key} is not finite"
    assert len(ref["losses"]) == 2
    for quantity, impl, diff, ratio in compare(dumps, "float64"):
        assert ratio <= 1.0, (
            f"{quantity} of {impl}: off by {diff:.3g} ({ratio:.3g} × tolerance)"
        )


def test_nearly_saturated_sigmoid_and_bce_follow_torch_to_the_bit(tmp_path):
    """Between "saturated" and "exactly 0 or 1" the rounding is the result.

    σ(37) is 1 − 8.5e−17: torch's 1/(1 + exp(−z)) rounds it to 1.0 (loss
    −log 0 clamped to 100, gradient 0), a softplus form to 1 − 1.1e−16 (loss
    36.7, gradient 1.1e−4). σ(30) is 1 − 9.4e−14, inside the band where BCELoss
    divides by its ε instead of p·(1 − p), and torch's ε is 1e−12 rounded to
    float32. Found by the property test, where one such step sent an RMSprop
    run 1.7e10 × the tolerance away from torch.
    """
    spec = {
        "name": "nearly_saturated",
        "data": {
            "kind": "inline",
            "x": [[37.0], [30.0], [-30.0], [0.5]],
            "y": [[0.0], [0.0], [1.0], [1.0]],
        },
        "model": {
            "layers": [
                {
                    "name": "fc",
                    "type": "linear",
                    "out": 1,
                    "bias": False,
                    "init": {"scheme": "constant", "value": 1.0},
                },
                {"name": "prob", "type": "sigmoid"},
            ]
        },
        "loss": {"type": "bce", "reduction": "sum"},
        "train": {"optimizer": {"type": "sgd", "lr": 1e-9}, "epochs": 1},
    }
    folder = compile_spec(write(tmp_path, spec), tmp_path / "out")
    dumps = {
        impl: _run(folder, impl, tmp_path / f"{impl}.npz", f"nearly_{impl}")
        for impl in IMPLEMENTATIONS
    }
    ref, torch_module = dumps["numpy_backprop"], dumps["torch_module"]
    assert ref["out0"][0, 0] == torch_module["out0"][0, 0] == 1.0
    assert 0 < 1 - ref["out0"][1, 0] < 1e-13
    # 100 (row 1: log 0 clamped) + −log(1 − σ(30)) + −log σ(−30), each ≈ 30
    # (1 − σ(30) is 843 ulps of 1.0: its log is good to about 1e−3),
    # + −log σ(0.5) = 0.474
    assert ref["losses"][0] == pytest.approx(160.474, abs=2e-3)
    for impl in IMPLEMENTATIONS[1:]:
        assert dumps[impl]["losses"][0] == ref["losses"][0], impl
        # ∂L/∂W = Σ (p − y)·x over the rows, with 1/ε in place of 1/(p·(1 − p)):
        # torch's ε, not 1e−12, or it is off by 4e−9 relative
        np.testing.assert_allclose(
            dumps[impl]["grads0/fc.weight"], ref["grads0/fc.weight"], rtol=1e-14
        )
