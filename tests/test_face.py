"""The generated files as teaching code: what issue 18 asked of them, one test
per point. Custom activations: simplified derivatives, each repeated piece
computed once, and the page saying where the formula as written overflows.
True statements: what is not idiomatic in torch_module.py said plainly, the
two losses printed at the end told apart, batches said to be in data order
when they are.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from mlpgen import cas, crosstest
from mlpgen.expr import Call, Expr, Sym, math_text, numpy_code
from mlpgen.ops import LAYERS, Ctx
from mlpgen.spec import load_spec

from .conftest import ROOT, SPECS

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


# ------------------------------------------------------------- true statements


def _docstring(path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_torch_module_names_each_departure_beside_the_idiomatic_line(spec):
    """torch_module.py is not called idiomatic outright: each place that is not
    (NumPy's streams for init, batches and dropout) is named with the line an
    idiomatic file would have."""
    path = GALLERY / spec.stem / "torch_module.py"
    source, doc = path.read_text(), _docstring(path)
    train = load_spec(spec).train
    assert (
        "model.load_state_dict(init_params(seed)); idiomatic: torch.manual_seed(seed)"
        in doc
    )
    assert ("class Dropout(nn.Module)" in source) == ("idiomatic: nn.Dropout(p)" in doc)
    assert ("\ndef batches(" in source) == ("DataLoader(TensorDataset(x, y)" in doc)
    if "\ndef batches(" in source:
        assert ("shuffle=True" in doc) == bool(train.shuffle)
    page = " ".join((GALLERY / spec.stem / "README.md").read_text().split())
    assert (
        "the idiomatic `nn.Module`" not in page
        and "an idiomatic `nn.Module`" not in page
    )
    assert "idiomatic but where it must draw the same random numbers" in page


def test_the_two_final_losses_are_told_apart(tmp_path):
    """The last progress line is the loss before the last update; the report
    after it, the loss after it: both labelled, and not the same number."""
    r = subprocess.run(
        [sys.executable, str(GALLERY / "xor" / "numpy_backprop.py"), "--epochs", "3"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"epoch 3/3  loss (\S+)  \(before the last update\)", lines[-3])
    assert lines[-2] == "after the last update, in evaluation mode:"
    before = float(lines[-3].split()[3])
    after = float(lines[-1].split()[-1])
    assert before != after  # 0.2543… before the third step, 0.2542… after it
    assert crosstest.PROGRESS.match(lines[-3])[3] == lines[-3].split()[3]
    for name in ("adamw", "spiral_dropout"):
        source = (GALLERY / name / "torch_manual.py").read_text()
        note = {
            "adamw": "the mean over this epoch's batches, each before its update",
            "spiral_dropout": "before the last update, dropout on",
        }[name]
        assert f'"  ({note})"' in source and "if epoch == epochs" in source
        page = " ".join((GALLERY / name / "README.md").read_text().split())
        assert "Two losses end the output, and they are not the same number." in page


def test_unshuffled_batches_are_said_to_be_in_data_order():
    """Mini-batches are not shuffled by default (the contract): the page and
    `mlpgen check` say so, and say it is the shuffle stream's when they are."""
    pages = {
        name: " ".join((GALLERY / name / "README.md").read_text().split())
        for name in ("adamw", "rmsprop", "xor")
    }
    assert (
        "their mini-batches are the training rows in order, the same every epoch, not shuffled"
        in pages["adamw"]
    )
    assert (
        "the order of their batches from the same NumPy random streams"
        in pages["rmsprop"]
    )
    # xor's data is the spec's own: not drawn from a stream
    assert (
        "draw their initial parameters from the same NumPy random streams "
        "(the data is the spec's own, drawn from none); each step trains on the whole training set"
        in pages["xor"]
    )
    r = subprocess.run(
        [sys.executable, "-m", "mlpgen", "check", str(ROOT / "specs" / "adamw.yaml"),
         str(ROOT / "specs" / "rmsprop.yaml")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    batches = [line for line in r.stdout.splitlines() if line.startswith("batches:")]
    assert batches == [
        (
            "batches: 32 rows each, the training rows in their order, the same every epoch: "
            "not shuffled (train.shuffle is false, the default; true draws a new order each "
            "epoch from the shuffle stream)"
        ),
        (
            "batches: 20 rows each, in a new order each epoch drawn from the shuffle stream "
            "(train.shuffle: true)"
        ),
    ]


# ------------------------------------------------------------------- notation


def test_the_l2_term_is_in_the_loss_header_and_explained_on_its_lines():
    source = (GALLERY / "spiral" / "numpy_backprop.py").read_text()
    # the header states the whole loss, the textbook's formula first, then how
    # PyTorch evaluates it; loss_fn's line says the same of `out`
    assert (
        "    # Grad of: L = mean(−log(softmax(scores))[n, yₙ]) + 0.001·Σ p² over the weights\n"
        "    # PyTorch evaluates the loss term as mean(logsumexp(scores) − scores[n, yₙ]),"
    ) in source
    assert (
        "    # L = mean(−log(softmax(out))[n, yₙ]) + 0.001·Σ p² over the weights\n"
        "    # PyTorch evaluates the loss term as mean(logsumexp(out) − out[n, yₙ]),"
    ) in source
    # the + 0.002·W of a weight's line says where it comes from
    assert (
        "    # the L2 term 0.001·Σ scores.weight² of L adds its gradient 0.002 · scores.weight\n"
        "    # ∂L/∂scores.weight = (∂L/∂scores)ᵀ @ act + 0.002 · scores.weight    (3, 100)\n"
        '    grads["scores.weight"] = d_scores.T @ act + 0.002 * params["scores.weight"]\n'
    ) in source


def test_a_broadcast_is_shown_as_the_code_writes_it():
    """(N, 3) ⊙ (N,) would not broadcast: the math shows the column, [:, None]."""
    source = (GALLERY / "spiral_dropout" / "numpy_backprop.py").read_text()
    assert (
        "# ∂L/∂scores = (softmax(scores) − onehot(y)) ⊙ (w[y]/Σ w[y])[:, None]    (N, 3)"
        in source
    )
    page = (GALLERY / "spiral_dropout" / "README.md").read_text()
    assert (
        "| `a[:, None]` | the (N,) vector a as an (N, 1) column, so that it multiplies every "
        "column of an (N, k) tensor (broadcast) | `a[:, None]` | `a[:, None]` |"
    ) in page
    # the column slice's row is not listed for it
    assert "| `a[:, i:j]` |" not in page


# ------------------------------------------------- the optimizer's update lines


def _update_block(spec: str, name: str = "numpy_backprop.py") -> str:
    source = (GALLERY / spec / name).read_text()
    return source[source.index("    for name, p in params.items():") :].split("\n\n")[0]


def test_centered_rmsprop_says_what_each_line_divides_by():
    """The comment above each update line is that line's formula: the centered
    s = √(v − ḡ²) + ε has a line and a formula of its own, and the momentum
    buffer divides by s, not by √v + ε."""
    block = _update_block("rmsprop")
    assert (
        "        # centered (the variance of g, not its second moment): s ← √(v − ḡ ⊙ ḡ) + ε\n"
        "        avg = np.sqrt(square_avg - grad_avg * grad_avg) + EPS\n"
    ) in block
    assert (
        "        # b ← μ · b + g/s\n"
        "        momentum_buffer = MOMENTUM * momentum_buffer + g / avg\n"
    ) in block
    # the running mean of g: the textbook's form first, then torch's lerp
    assert (
        "        # ḡ ← α · ḡ + (1 − α) · g\n"
        "        # PyTorch evaluates it as ḡ ← ḡ + (1 − α) · (g − ḡ), as grad_avg.lerp_ does\n"
        "        grad_avg = grad_avg + (1 - ALPHA) * (g - grad_avg)\n"
    ) in block
    assert "√v + ε" not in block


def test_sgd_momentum_names_no_dampening_it_does_not_have():
    block = _update_block("sgd_nesterov", "torch_manual.py")
    assert "dampening" not in block and "τ" not in block
    assert (
        "            # then: b ← μ · b + g\n"
        "            state[name] = MOMENTUM * state[name] + g\n"
    ) in block
    assert block.endswith("        # p ← p − lr · g\n        p.add_(g, alpha=-LR)")


def test_adam_shows_the_papers_update_before_torchs():
    block = _update_block("adamw")
    assert (
        "        # m ← β₁ · m + (1 − β₁) · g\n"
        "        # PyTorch evaluates it as m ← m + (1 − β₁) · (g − m), as exp_avg.lerp_ does\n"
        "        exp_avg = exp_avg + (1 - BETA1) * (g - exp_avg)\n"
    ) in block
    assert "        # p ← p − lr · (m/(1 − β₁ᵗ))/(√(v/(1 − β₂ᵗ)) + ε)\n" in block
    assert "        # decoupled weight decay: p ← p · (1 − lr · wd)\n" in block


def test_elu_reads_as_the_textbook_first_then_as_torch_evaluates_it():
    """ELU's line computes exp of min(x, 0) (the branch not taken must not
    overflow) and expm1: the learner first sees α·(exp(x) − 1)."""
    source = (GALLERY / "residual" / "torch_manual.py").read_text()
    assert (
        "    # block2_act = (block2_fc if block2_fc > 0 else 0.5 · (exp(block2_fc) − 1))    (N, 16)\n"
        "    # PyTorch evaluates it as (block2_fc if block2_fc > 0 else 0.5 ·\n"
    ) in source
    assert (
        "    # Grad of: block2_act = (block2_fc if block2_fc > 0 else 0.5 · (exp(block2_fc) − 1))\n"
        in source
    )
    assert (
        "    # ∂L/∂block2_fc = (∂L/∂block2_act if block2_fc > 0 else 0.5 · (∂L/∂block2_act) ⊙ exp(block2_fc))    (N, 16)\n"
        "    # PyTorch evaluates it as (∂L/∂block2_act if block2_fc > 0 else 0.5 ·\n"
    ) in source


def test_the_page_maps_each_symbol_of_the_update_to_its_variable():
    page = (GALLERY / "rmsprop" / "README.md").read_text()
    assert "| `s` | the denominator of RMSprop's step, ε included | `avg` |" in page
    assert "| `ḡ` | centered RMSprop's running mean of g | `grad_avg` |" in page
    # only the quantities this update has: no Adam moments, no SGD buffer
    assert "`exp_avg`" not in page and "`state[name]`" not in page
    sgd = (GALLERY / "spiral" / "README.md").read_text()
    assert "| `b` | SGD's momentum buffer of the parameter | `state[name]` |" in sgd


def test_log_of_one_minus_reads_as_it_is_written_in_a_textbook():
    p, q = Sym("prob", "prob"), Sym("q", "q")
    assert math_text(Call("log1p", (-p,))) == "log(1 − prob)"
    assert math_text(Call("clamped_log1p", (-p,))) == "max(log(1 − prob), −100)"
    assert math_text(Call("log1p", (-(p + q),))) == "log(1 − (prob + q))"
    assert math_text(Call("log1p", (p,))) == "log(1 + prob)"
    assert numpy_code(Call("log1p", (-p,))) == "np.log1p(-prob)"


def test_the_diagrams_and_the_page_state_the_loss_as_the_code_does():
    """One loss text for comments, page and diagrams (autodiff.loss_comments):
    the textbook's formula first, then PyTorch's evaluation."""
    for name in ("forward.dot", "backward.dot"):
        dot = (GALLERY / "spiral" / name).read_text()
        book = dot.index("L = mean(−log(softmax(scores))[n, yₙ])")
        assert book < dot.index("PyTorch evaluates the loss term as")
    page = (GALLERY / "spiral" / "README.md").read_text()
    assert (
        "`L = mean(−log(softmax(scores))[n, yₙ]) + 0.001·Σ p² over the weights; "
        "PyTorch evaluates the loss term as mean(logsumexp(scores) − scores[n, yₙ])`"
    ) in page
