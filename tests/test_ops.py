"""The op table, one op at a time, and the custom-activation compiler (cas.py).

Every layer op's NumPy forward formula is checked against its nn.Module
spelling in torch, and its derivative rules (∂L/∂inputs, ∂L/∂parameters)
against torch autograd and against central differences: the rules are the
source of every generated gradient line.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mlpgen import cas
from mlpgen.expr import NUMPY_HELPERS, Sym, numpy_code
from mlpgen.ops import LAYERS, Ctx
from mlpgen.spec import SpecError, parse_spec

from .conftest import ROOT

# (op, keys, input features)
CASES = [
    ("linear", {"out": 4}, [3]),
    ("linear", {"out": 2, "bias": False}, [3]),
    ("identity", {}, [3]),
    ("sigmoid", {}, [3]),
    ("tanh", {}, [3]),
    ("relu", {}, [3]),
    ("leaky_relu", {"negative_slope": 0.2}, [3]),
    ("elu", {"alpha": 0.7}, [3]),
    ("gelu", {}, [3]),
    ("gelu", {"approximate": "tanh"}, [3]),
    ("silu", {}, [3]),
    ("softplus", {}, [3]),
    ("softmax", {}, [3]),
    ("log_softmax", {}, [3]),
    ("dropout", {"p": 0.3}, [3]),
    ("add", {}, [3, 3, 3]),
    ("concat", {}, [2, 3]),
    ("activation", {"expr": "x * tanh(log(1 + exp(x)))"}, [3]),
    ("activation", {"expr": "x * sigmoid(1.702 * x) + 0.1 * softplus(x)"}, [3]),
    ("activation", {"expr": "erf(x / 2) + sqrt(1 + x**2) - abs(x) / 3"}, [3]),
    ("activation", {"expr": "sin(x) * cos(2 * x) + exp(-x**2) + tanh(x)**2"}, [3]),
    ("activation", {"expr": "log(2 + x**2) / (1 + x**2) - 2**x"}, [3]),
]
IDS = [f"{op}-{'-'.join(map(str, k.values()))}" if k else op for op, k, _ in CASES]
N = 5  # batch rows


def namespace() -> dict:
    """What generated NumPy code sees: np, math and every helper definition."""
    env = {"np": np, "math": math}
    for source in NUMPY_HELPERS.values():
        exec(source, env)  # noqa: S102 (our own helper definitions)
    return env


class Case:
    """One op with random inputs, parameters and upstream gradient, in NumPy."""

    def __init__(self, op_name, keys, in_features):
        self.op = LAYERS[op_name]
        self.keys = self.op.Keys(**keys)
        self.in_features = in_features
        self.out = self.op.out_features(self.keys, in_features)
        rng = np.random.default_rng(0)
        self.xs = [rng.standard_normal((N, f)) for f in in_features]
        self.params = {
            p.name: rng.uniform(-1, 1, p.shape)
            for p in self.op.params(self.keys, in_features, self.out)
        }
        self.g = rng.standard_normal((N, self.out))  # L = Σ g ⊙ y
        self.mask = (rng.random((N, self.out)) >= 0.3) / 0.7

    def ctx(self) -> Ctx:
        """The rules' view of the layer, named ``layer``, in training mode."""
        return Ctx(
            xs=[Sym(f"x{i}") for i in range(len(self.in_features))],
            y=Sym("y"),
            g=Sym("g"),
            p={name: Sym(f"p_{name}") for name in self.params},
            a=self.keys,
            in_features=self.in_features,
            out_features=self.out,
        )

    def env(self, xs=None, params=None) -> dict:
        env = namespace()
        env.update({f"x{i}": x for i, x in enumerate(xs or self.xs)})
        env.update({f"p_{k}": v for k, v in (params or self.params).items()})
        env.update(g=self.g, layer_mask=self.mask)  # dropout: one fixed mask
        return env

    @staticmethod
    def run_lines(ctx: Ctx, env: dict) -> None:
        """Evaluate the intermediates the rules named (``let``), in order; a value
        already in ``env`` (the fixed dropout mask) is kept."""
        for local in ctx.lines:
            if local.kind == "let" and local.target.code not in env:
                env[local.target.code] = eval(numpy_code(local.expr), env)

    def forward(self, xs=None, params=None, env=None) -> np.ndarray:
        env = self.env(xs, params) if env is None else env
        ctx = self.ctx()
        e = self.op.forward(ctx)
        self.run_lines(ctx, env)
        return eval(numpy_code(e), env)

    def loss(self, xs=None, params=None) -> float:
        return float((self.g * self.forward(xs, params)).sum())

    def derived(self) -> tuple[list, dict]:
        """(∂L/∂each input, ∂L/∂each parameter) from the op's rules."""
        env = self.env()
        env["y"] = self.forward(env=env)
        ctx = self.ctx()
        pgrad_rules = self.op.param_grads(ctx)
        vjp_rules = self.op.vjp(ctx)
        self.run_lines(ctx, env)
        vjps = [eval(numpy_code(e), env) for e in vjp_rules]
        pgrads = {k: eval(numpy_code(e), env) for k, e in pgrad_rules.items()}
        return [np.broadcast_to(v, x.shape) for v, x in zip(vjps, self.xs)], pgrads

    def torch_forward(self, xs, params):
        """The op as the generated nn.Module spells it, on torch tensors."""
        if self.op.name == "dropout":
            # the module's training-mode arithmetic, with the same mask
            return xs[0] * torch.from_numpy(self.mask)
        ctor = self.op.module(self.keys, self.in_features, self.out)
        env = {"torch": torch, "nn": nn, "F": torch.nn.functional}
        if self.op.module_class is not None:
            exec(self.op.module_class(self.keys, "Layer"), env)  # noqa: S102 (ours)
            ctor = ctor.replace("{cls}", "Layer")
        module = eval(ctor, env).double()
        for k, v in params.items():
            setattr(module, k, v)
        return module(*xs)


@pytest.mark.parametrize("op_name, keys, in_features", CASES, ids=IDS)
def test_rules_agree_with_torch_autograd(op_name, keys, in_features):
    case = Case(op_name, keys, in_features)
    xs = [torch.tensor(x, requires_grad=True) for x in case.xs]
    params = {k: nn.Parameter(torch.tensor(v)) for k, v in case.params.items()}
    out = case.torch_forward(xs, params)
    np.testing.assert_allclose(
        case.forward(), out.detach().numpy(), rtol=1e-12, atol=1e-14
    )
    (out * torch.from_numpy(case.g)).sum().backward()
    vjps, pgrads = case.derived()
    for x, v in zip(xs, vjps):
        np.testing.assert_allclose(v, x.grad.numpy(), rtol=1e-10, atol=1e-13)
    assert sorted(pgrads) == sorted(params)
    for k, p in params.items():
        np.testing.assert_allclose(pgrads[k], p.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("op_name, keys, in_features", CASES, ids=IDS)
def test_rules_match_central_differences(op_name, keys, in_features):
    case = Case(op_name, keys, in_features)
    vjps, pgrads = case.derived()
    arrays = [("x", i, x) for i, x in enumerate(case.xs)]
    arrays += [("p", k, v) for k, v in case.params.items()]
    for kind, key, a in arrays:
        expected = vjps[key] if kind == "x" else pgrads[key]
        numeric = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            saved = a[i]
            a[i] = saved + 1e-6
            up = case.loss()
            a[i] = saved - 1e-6
            down = case.loss()
            a[i] = saved
            numeric[i] = (up - down) / 2e-6
        np.testing.assert_allclose(expected, numeric, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------- custom activations


def test_derivative_reads_the_saved_output_where_it_can():
    x, y = Sym("h"), Sym("a")
    assert numpy_code(cas.derivative_ir("tanh(x)", x, y)) == "1 - a ** 2"
    assert numpy_code(cas.derivative_ir("sigmoid(x)", x, y)) == "a * (1 - a)"
    assert numpy_code(cas.derivative_ir("exp(2 * x)", x, y)) == "2 * a"
    # the whole formula does not appear in mish′: everything is recomputed from x
    assert "a" not in cas.derivative_ir("x * tanh(log(1 + exp(x)))", x, y).symbols()


def test_formula_keeps_the_users_structure():
    """No silent rewriting: sympy's own tanh would turn tanh(log(u)) into (u² − 1)/(u² + 1)."""
    h = Sym("h")
    assert numpy_code(cas.forward_ir("x * tanh(log(1 + exp(x)))", h)) == (
        "h * np.tanh(np.log(1 + np.exp(h)))"
    )
    assert numpy_code(cas.forward_ir("x**2/2 - 3*x + 1", h)) == "1 + h ** 2 / 2 - 3 * h"
    assert numpy_code(cas.derivative_ir("x**2/2 - 3*x + 1", h, Sym("a"))) == "h - 3"
    # constants fold when parsed
    assert numpy_code(cas.forward_ir("x * (2 + 3) ** 2 / exp(0)", h)) == "25.0 * h"


def test_softplus_slope_is_exactly_one_above_torchs_threshold():
    z = torch.tensor(
        [-30.0, -1.0, 0.5, 19.0, 21.0, 40.0], dtype=torch.float64, requires_grad=True
    )
    torch.nn.functional.softplus(z).sum().backward()
    env = namespace() | {"h": z.detach().numpy()}
    code = numpy_code(cas.derivative_ir("softplus(x)", Sym("h"), Sym("a")))
    derived = eval(code, env)
    assert derived[-2:].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(derived, z.grad.numpy(), rtol=1e-13)


def spec_with(expr) -> dict:
    return {
        "name": "custom",
        "data": {"kind": "random", "n": 8, "outputs": 1},
        "model": {"input": 2, "layers": [{"type": "linear", "out": 3}, {"type": "activation", "expr": expr}, {"type": "linear", "out": 1}]},
        "loss": {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
    }  # fmt: skip


@pytest.mark.parametrize(
    "expr, message",
    [
        ("__import__('os').system('ls')", "is not an allowed function"),
        ("max(x, 0)", "'max' is not an allowed function (one of: exp, log, sqrt"),
        ("x.real", "'x.real' (column 1) is not allowed"),
        ("y + 1", "unknown name 'y' (column 1): the only variable is x"),
        ("pi * x", "unknown name 'pi'"),
        ("x % 2", "operator in 'x % 2' (column 1) is not allowed"),
        ("x if x else 1", "is not allowed: the grammar is"),
        ("[x]", "is not allowed"),
        ("exp(x, 2)", "exp takes exactly one argument"),
        ("exp(x=1)", "exp takes exactly one argument"),
        ("x +", "not a valid expression"),
        ("3", "does not depend on x (it is the constant 3)"),
        ("x - x", "does not depend on x"),
        ("x / 0", "divides by zero"),
        ("log(-1) * x", "'log(-1)' (column 1) is not a finite real number"),
        ("exp(1000) * x", "'exp(1000)' (column 1) is not a finite real number"),
        ("9**9**9**9 * x", "is not a finite real number"),
        ("(-8)**(1/3) * x", "is not a finite real number"),
        ("x ** 1e400", "'1e400' (column 6) is not a finite number"),
        ("True * x", "is not a number"),
        pytest.param("x*" * 150 + "x", "more than 200 terms", id="too-many-terms"),
        pytest.param("(" * 600 + "x" + ")" * 600, "longer than 1000", id="too-long"),
    ],
)
def test_bad_formulas_are_spec_errors_at_the_key(expr, message):
    with pytest.raises(SpecError) as e:
        parse_spec(spec_with(expr), "s.yaml")
    [(path, text)] = e.value.problems
    assert path == "model.layers[1].expr"
    assert message in text


def test_a_formula_must_be_a_string():
    with pytest.raises(SpecError) as e:
        parse_spec(spec_with(3), "s.yaml")
    assert e.value.problems == [("model.layers[1].expr", "must be a string, got 3")]


def run_python(code: str, **env) -> str:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_only_specs_with_an_activation_import_sympy():
    code = (
        "import sys\n"
        "from mlpgen.compiler import build, render\n"
        "render(build('specs/xor.yaml'))\n"
        "print('sympy' in sys.modules)\n"
        "render(build('specs/mish.yaml'))\n"
        "print('sympy' in sys.modules, 'torch' in sys.modules)\n"
    )
    assert run_python(code).split() == ["False", "True", "False"]


def test_compiled_formulas_do_not_depend_on_the_hash_seed():
    code = (
        "from mlpgen.compiler import build, render\n"
        "files = render(build('specs/mish.yaml'))\n"
        "print(files['numpy_backprop.py'] + files['torch_module.py'])\n"
    )
    outputs = {run_python(code, PYTHONHASHSEED=str(seed)) for seed in (1, 2)}
    assert len(outputs) == 1


def test_init_bounds_are_written_as_their_formula_and_give_the_same_float():
    """The generated code shows 1 / math.sqrt(2), not 0.7071067811865475, and the
    formula evaluates to exactly the float torch.nn.init's formula gives."""
    from mlpgen.ops import (
        KaimingInit,
        TorchDefaultInit,
        XavierInit,
        check_draw_code,
        init_draw,
    )

    schemes = [
        TorchDefaultInit(scheme="torch_default"),
        XavierInit(scheme="xavier_uniform"),
        XavierInit(scheme="xavier_normal", gain="tanh"),
        KaimingInit(scheme="kaiming_uniform"),
        KaimingInit(scheme="kaiming_normal", nonlinearity="relu"),
        KaimingInit(scheme="kaiming_normal", nonlinearity="tanh", mode="fan_out"),
        KaimingInit(scheme="kaiming_uniform", nonlinearity="leaky_relu", a=0.2),
    ]
    for init in schemes:
        for fan_in, fan_out in [(1, 1), (2, 5), (3, 7), (30, 64), (784, 10)]:
            draw = init_draw(init, fan_in, fan_out, False)
            assert draw.scale is not None and check_draw_code(draw), (init, draw)
    assert init_draw(schemes[0], 2, 5, False).scale == "1 / math.sqrt(2)"
    assert init_draw(schemes[4], 16, 3, False).scale == "math.sqrt(2) / math.sqrt(16)"
