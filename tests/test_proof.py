"""The proof itself: crosstest's per-tensor table, its rules for long runs,
its exit statuses, and the generated finite-difference check, on networks
outside the gallery's comfort zone (the PyTorch tutorial's polynomial with
RMSprop and Adam, float32 and float64; deep chains; a gradient that is zero
by symmetry; a ReLU sitting exactly at its kink)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlpgen import crosstest as ct
from mlpgen.compiler import build, compile_spec

from .conftest import ROOT

TESTS = ROOT / "tests" / "specs"
POLYNOMIAL = ROOT / "specs" / "polynomial.yaml"


def run_crosstest(path, capsys, **kwargs) -> tuple[int, str]:
    code = ct.crosstest(path, **kwargs)
    return code, capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        (POLYNOMIAL, "rounding spread"),  # RMSprop, float64, 2000 steps
        (TESTS / "polynomial_rmsprop_f32.yaml", "rounding spread"),
        (TESTS / "polynomial_adam.yaml", "contract's tolerance"),
        (TESTS / "polynomial_adam_f32.yaml", "contract's tolerance"),
        (TESTS / "two_layer_adam_f32.yaml", "rounding spread"),
        (TESTS / "zero_by_symmetry_f32.yaml", "rounding spread"),
        (TESTS / "deep_chain_adam.yaml", "contract's tolerance"),
        (TESTS / "sigmoid_chain.yaml", "contract's tolerance"),
    ],
    ids=lambda v: getattr(v, "stem", v),
)
def test_crosstest_agrees_on_correct_code_and_says_which_rule(spec, rule, capsys):
    code, out = run_crosstest(spec, capsys)
    assert code == 0, out
    assert out.rstrip().endswith("agree")
    losses = [line for line in out.splitlines() if line.startswith("losses ")]
    assert len(losses) == 2 and all(rule in line for line in losses), losses
    if rule == "rounding spread":
        # the fixed tolerance alone would have said DISAGREE: the spread is real
        assert "exceed the contract's fixed tolerance" in out
        assert "spread up to" in losses[0]


def test_the_table_lists_every_tensor_in_the_order_the_step_computes_them(capsys):
    code, out = run_crosstest(ROOT / "specs" / "residual.yaml", capsys, epochs=2)
    assert code == 0
    table = out.split("the first step")[1].split("every other quantity")[0]
    names = [line.split()[0] for line in table.splitlines()[2:] if line.strip()]
    forward = [
        "x",
        "stem",
        "h0",
        "block1_fc",
        "block1_act",
        "h1",
        "block2_fc",
        "block2_act",
        "h2",
        "head",
    ]
    assert names[: len(forward)] == forward
    backward = names[len(forward) :]
    # from the loss back to the input; a fan-out tensor once, after both its parts
    assert backward[0] == "∂L/∂head" and backward[-1] == "∂L/∂stem.bias"
    assert backward.index("∂L/∂h1") > backward.index("∂L/∂block2_fc")
    assert backward.count("∂L/∂h1") == 1
    assert len(names) == len(ct.step_order(build(ROOT / "specs" / "residual.yaml")))


def test_a_wrong_line_is_named_where_it_is(tmp_path, capsys, monkeypatch):
    """Edit one derived line in both manual files: autograd disagrees with them,
    and the report names that tensor and that line, in both files."""
    real = ct.compiled

    def sabotaged(path):
        prog, tmp, folder = real(path)
        for name in ("numpy_backprop.py", "torch_manual.py"):
            f = folder / name
            text = f.read_text()
            assert "d_fc1 = d_act1 * (1 - act1) * act1" in text
            f.write_text(
                text.replace(
                    "d_fc1 = d_act1 * (1 - act1) * act1", "d_fc1 = d_act1 * (1 - act1)"
                )
            )
        return prog, tmp, folder

    monkeypatch.setattr(ct, "compiled", sabotaged)
    code, out = run_crosstest(ROOT / "specs" / "xor.yaml", capsys, epochs=3)
    assert code == 1 and out.rstrip().endswith("DISAGREE")
    first = out.split("first difference: ")[1].splitlines()
    assert first[0].startswith("∂L/∂fc1 (4, 5)") and "derived line is wrong" in first[0]
    assert (
        first[1].strip().startswith("numpy_backprop.py:")
        and "d_fc1 = d_act1 * (1 - act1)" in first[1]
    )
    assert first[2].strip().startswith("torch_manual.py:")
    rows = {
        line.split()[0]: line for line in out.splitlines() if line.startswith("∂L/∂")
    }
    assert rows["∂L/∂act1"].endswith("ok") and rows["∂L/∂fc1"].endswith("DIFFERS")


def test_an_implementation_that_fails_to_run_is_status_3_with_its_error(
    capsys, monkeypatch
):
    real = ct.compiled

    def broken(path):
        prog, tmp, folder = real(path)
        f = folder / "torch_module.py"
        f.write_text(
            f.read_text().replace(
                "def main(argv=None):",
                "def main(argv=None):\n    raise RuntimeError('broken on purpose')",
                1,
            )
        )
        return prog, tmp, folder

    monkeypatch.setattr(ct, "compiled", broken)
    code = ct.crosstest(ROOT / "specs" / "xor.yaml", epochs=2)
    err = capsys.readouterr().err
    assert code == 3
    assert (
        "torch_module.py exited with status 1" in err
        and "RuntimeError: broken on purpose" in err
    )


def spec_file(tmp_path, spec: dict):
    path = tmp_path / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_diverging_run_is_said_in_words_and_still_compared(tmp_path, capsys):
    spec = {
        "mlpgen": 1, "name": "explode", "seed": 0,
        "data": {"kind": "teacher", "n": 32, "features": 3},
        "model": {"input": 3, "layers": [{"name": "fc", "type": "linear", "out": 1}]},
        "loss": {"type": "mse", "reduction": "sum"},
        "train": {"optimizer": {"type": "sgd", "lr": 10.0}, "epochs": 400},
    }  # fmt: skip
    code, out = run_crosstest(spec_file(tmp_path, spec), capsys)
    assert "note: training diverged (the loss is" in out
    assert "in numpy_backprop, torch_manual, torch_module" in out
    losses = ct.dump(  # the steps up to the divergence are compared, like with like
        compile_spec(spec_file(tmp_path, spec), tmp_path / "out"),
        "numpy_backprop",
        tmp_path / "d.npz",
    )["losses"]
    assert not np.isfinite(losses[-1]) and np.isfinite(losses[:-1]).all()
    assert code == 0 and out.rstrip().endswith("agree")


def test_a_zero_by_symmetry_gradient_gets_the_floor_of_its_terms():
    """∂L/∂b summed to rounding noise: judged against the size of its terms."""
    prog = build(TESTS / "zero_by_symmetry_f32.yaml")
    g = np.array([[0.01], [-0.02], [0.01]])
    ref = {"step0/d_fc2": g, "step0/act1": np.full((3, 8), 0.5)}
    floor = ct.terms_floor(prog, ref, "grads0/fc2.bias", "float32")
    assert floor == pytest.approx(1e-5 * 0.02)  # MTOL·max|g|·max(1, max|x|)
    assert ct.terms_floor(prog, ref, "step0/d_fc2", "float32") == 0.0  # tensors: strict


def test_the_spread_is_a_running_maximum_for_losses_and_a_tensor_wide_one_for_final():
    s = np.array([0.0, 3.0, 1.0, 2.0])
    assert ct._envelope("losses", s).tolist() == [0.0, 3.0, 3.0, 3.0]
    assert ct._envelope("final/fc.weight", s).tolist() == [3.0] * 4


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [
        POLYNOMIAL,
        TESTS / "zero_by_symmetry_f32.yaml",
        TESTS / "sigmoid_chain.yaml",
        TESTS / "deep_chain_adam.yaml",
    ],
    ids=lambda p: p.stem,
)
def test_the_generated_crosscheck_passes(spec, tmp_path):
    folder = compile_spec(spec, tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(folder / "test_crosscheck.py")],
        capture_output=True, text=True, cwd=folder, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # the finite-difference check reports a relative error per parameter
    assert (
        "fc1.weight: relative error" in run.stderr
        or "coeffs.weight: relative error" in run.stderr
    )


def test_finite_differences_handle_a_relu_exactly_at_its_kink(tmp_path):
    """x = 0 in the data and zero biases: fc1's pre-activation is exactly 0 for
    that sample, where ReLU's derivative is taken as 0 (as torch does) while a
    central difference sees the average slope. The check must not cry wolf."""
    spec = {
        "mlpgen": 1, "name": "kink", "seed": 0,
        "data": {"kind": "inline", "x": [[0.0], [1.0], [-1.0], [2.0]], "y": [[0.0], [1.0], [0.5], [2.0]]},
        "model": {"input": 1, "layers": [
            {"name": "fc1", "type": "linear", "out": 4, "bias_init": "zeros"},
            {"name": "act1", "type": "relu"},
            {"name": "fc2", "type": "linear", "out": 1}]},
        "loss": {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 2},
    }  # fmt: skip
    folder = compile_spec(spec_file(tmp_path, spec), tmp_path / "out")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-k", "finite", str(folder / "test_crosscheck.py")],
        capture_output=True, text=True, cwd=folder, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "fc1.bias: relative error" in run.stderr
