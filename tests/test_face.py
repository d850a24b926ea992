"""The generated files as teaching code: what issue 18 asked of them, one test
per point. Custom activations: simplified derivatives, each repeated piece
computed once, and the page saying where the formula as written overflows.
True statements: what is not idiomatic in torch_module.py said plainly, the
two losses printed at the end told apart, batches said to be in data order
when they are.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlpgen import cas
from mlpgen.expr import Call, Expr, Sym, math_text, numpy_code
from mlpgen.ops import LAYERS, Ctx

from .conftest import ROOT

GALLERY = ROOT / "generated"
MISH = "x * tanh(log(1 + exp(x)))"
# the gallery's custom activation and the op tests' ones
FORMULAS = [
    MISH,
    "x * sigmoid(1.702 * x) + 0.1 * softplus(x)",
    "erf(x / 2) + sqrt(1 + x**2) - abs(x) / 3",
    "sin(x) * cos(2 * x) + exp(-x**2) + tanh(x)**2",
    "log(2 + x**2) / (1 + x**2) - 2**x",
    "abs(x) / (1 + abs(x))",
    "x * sigmoid(x)",
]


def _vjp_lines(text: str) -> tuple[list, Expr]:
    """The let lines and the ∂L/∂x expression of an activation layer ``text``."""
    keys = LAYERS["activation"].Keys(expr=text)
    c = Ctx(
        xs=[Sym("h")],
        y=Sym("a"),
        g=Sym("g"),
        p={},
        a=keys,
        in_features=[3],
        out_features=3,
    )
    (d,) = LAYERS["activation"].vjp(c)
    return list(c.lines), d


def _calls(e: Expr) -> list[Call]:
    out = [e] if isinstance(e, Call) else []
    for child in e.children():
        out += _calls(child)
    return out


@pytest.mark.parametrize("text", FORMULAS)
def test_each_function_application_of_the_derivative_is_computed_once(text):
    lets, d = _vjp_lines(text)
    calls = [c for line in lets for c in _calls(line.expr)] + _calls(d)
    # a call that is an argument of another shared one counts inside that one only
    repeated = {
        numpy_code(c) for c in calls if calls.count(c) > 1 and c.fn != "where_gt"
    }
    assert not repeated, repeated
    # and the pieces are read by what comes after them
    for i, line in enumerate(lets):
        later = [x.expr for x in lets[i + 1 :]] + [d]
        assert sum(str(line.target.code) in numpy_code(e) for e in later) >= 1


def test_mish_derivative_in_the_gallery_computes_tanh_and_exp_once():
    source = (GALLERY / "mish" / "numpy_backprop.py").read_text()
    backward = source.split("def backward(", 1)[1].split("\ndef ", 1)[0]
    code = "\n".join(
        line for line in backward.splitlines() if not line.strip().startswith("#")
    )
    assert code.count("np.tanh(") == 1
    assert code.count("np.exp(") == 1
    assert "# act1.e = exp(fc1)    (N, 16)" in backward
    assert "# act1.t = tanh(log(1 + act1.e))    (N, 16)" in backward
    assert (
        "d_fc1 = d_act1 * (act1_t + act1_e * fc1 * (1 - act1_t**2) / (1 + act1_e))"
        in backward
    )
    torch_source = (GALLERY / "mish" / "torch_manual.py").read_text()
    assert (
        torch_source.split("def backward(", 1)[1]
        .split("\ndef ", 1)[0]
        .count("torch.tanh(")
        == 1
    )


def test_mish_shared_derivative_is_autograds_to_the_last_bits():
    x = np.linspace(-30, 30, 601)
    lets, d = _vjp_lines(MISH)
    env = {"np": np, "h": x, "g": np.ones_like(x)}
    for line in lets:
        env[line.target.code] = eval(numpy_code(line.expr), env)
    derived = eval(numpy_code(d), env)
    t = torch.tensor(x, requires_grad=True)
    (t * torch.tanh(torch.log(1 + torch.exp(t)))).sum().backward()
    np.testing.assert_allclose(derived, t.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_simplified_derivatives():
    x, y = Sym("x"), Sym("y")
    # sign(x)/(1 + |x|) − |x|·sign(x)/(1 + |x|)², brought over one denominator
    assert (
        math_text(cas.derivative_ir("abs(x)/(1+abs(x))", x, y)) == "sign(x)/(1 + |x|)²"
    )
    # swish: σ(x)·(1 + x·(1 − σ(x))), with the saved output y = x·σ(x)
    assert math_text(cas.derivative_ir("x * sigmoid(x)", x, y)) == "(1 + x − y) ⊙ σ(x)"
    # already the shortest: kept as the chain rule gives it
    assert math_text(cas.derivative_ir("tanh(x)", x, y)) == "1 − y²"
    assert math_text(cas.derivative_ir("1 / (1 + x**2)", x, y)) == "−(2 · x/(1 + x²)²)"


def test_overflow_point_is_where_autograd_overflows_too():
    at = cas.overflow(MISH, "float64")
    assert set(at) == {"f′"}  # f itself stays finite
    assert at["f′"] == pytest.approx(709.7827, abs=1e-3)
    assert cas.overflow(MISH, "float32")["f′"] == pytest.approx(88.7228, abs=1e-3)
    for v, finite in ((at["f′"] * (1 - 1e-6), True), (at["f′"] * (1 + 1e-6), False)):
        t = torch.tensor([v], dtype=torch.float64, requires_grad=True)
        y = t * torch.tanh(torch.log(1 + torch.exp(t)))
        y.backward()
        assert bool(torch.isfinite(t.grad)) is finite and bool(torch.isfinite(y))
    # softplus computes log(1 + exp(x)) without overflowing; log(x) below 0
    # and x**x below −1 are domains, not overflows
    assert cas.overflow("x * tanh(softplus(x))", "float64") == {}
    assert cas.overflow("log(x)", "float64") == {}
    assert cas.overflow("x**x", "float64")["f"] == pytest.approx(143.016, abs=1e-3)


def test_the_page_says_from_which_input_on_mish_overflows():
    page = (GALLERY / "mish" / "README.md").read_text()
    assert (
        "The formula as written overflows in float64: f′(x) is ∞ or nan from x ≈ 709.8 upward"
        in page
    )
    assert (
        "Written with softplus(u) in place of log(1 + exp(u)), it would not overflow"
        in page
    )
    assert (
        "f′(x) = t + e ⊙ x ⊙ (1 − t²)/(1 + e), with e = exp(x) and t = tanh(log(1 + e)), "
        "each computed once" in page
    )
