"""The proof's power: break a derived rule, one at a time, and see it caught.

mlpgen's promise is that the three implementations agree and that the derived
gradients are right. A check that cannot fail proves nothing, so each test
below plants one plausible mistake (a mutant) in the rules mlpgen derives or
in the optimizer it writes out, and asserts that BOTH checks a user has catch
it: ``mlpgen crosstest`` (status 1, or 3 had an implementation crashed; every
mutant here is chosen so that the numbers are silently wrong instead) and the
generated ``test_crosscheck.py`` (it must fail). Where the mutant breaks the
first step's gradients, crosstest must also name the first gradient that
differs, in the order the backward pass computes them.

Two kinds of mutant:

* rule mutants replace an entry of the op table (``ops.LAYERS``,
  ``ops.LOSSES``) or the derived program (``autodiff.derive``), so that the
  compiler itself emits the wrong rule, in numpy_backprop.py and
  torch_manual.py alike (they then agree with each other, but not with
  autograd in torch_module.py, nor with finite differences);
* text mutants edit the written files of both manual implementations
  (through ``crosstest.compiled``): the optimizer's update, which no gradient
  check sees; only the losses and final weights of the run can.

The last test counts: "N of N mutants caught". Every mutant runs each spec's
full training, as a user's ``mlpgen crosstest`` does: about a minute or more.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlpgen import autodiff, crosstest, ops
from mlpgen.expr import Bin, call

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "specs" / "xor.yaml"  # 2-5-1 sigmoid, mean MSE, SGD
CHAIN12 = ROOT / "tests" / "specs" / "chain12.yaml"  # 16 -> 11x32 -> 4, CE, SGD
RESIDUAL = ROOT / "specs" / "residual.yaml"  # two skip connections, ELU, Adam
RMSPROP = ROOT / "specs" / "rmsprop.yaml"  # tanh, centered RMSprop with momentum
MANUAL = ("numpy_backprop.py", "torch_manual.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    spec: Path
    what: str  # the mistake, in words
    apply: Callable[[pytest.MonkeyPatch], None]
    # the label crosstest gives the first differing array of the first step,
    # for a gradient mutant; None for an optimizer mutant (the first step is right)
    first: str | None


# ------------------------------------------------------------ rule mutants


def layer_rule(name: str, vjp: Callable) -> Callable[[pytest.MonkeyPatch], None]:
    """Replace the vector-Jacobian product of layer type ``name``."""

    def apply(mp: pytest.MonkeyPatch) -> None:
        mp.setitem(ops.LAYERS, name, dataclasses.replace(ops.LAYERS[name], vjp=vjp))

    return apply


def loss_rule(name: str, grad: Callable) -> Callable[[pytest.MonkeyPatch], None]:
    """Replace ∂L/∂ŷ of loss ``name``."""

    def apply(mp: pytest.MonkeyPatch) -> None:
        mp.setitem(ops.LOSSES, name, dataclasses.replace(ops.LOSSES[name], grad=grad))

    return apply


def mse_without_2(c):
    """∂L/∂ŷ = scale/M·(ŷ − y): the 2 of (u²)′ = 2u forgotten."""
    factor = ops.Const(c.a.scale)
    if c.a.reduction == "mean":
        factor = factor / ops._count(c)
    return factor * (c.out - c.y)


def ce_without_mean(c):
    """∂L/∂z = softmax(z) − onehot(y), the 1/N of the mean forgotten."""
    return call("softmax", c.out) - call("onehot", c.y, ops.Const(c.outputs))


def linear_transposed(c):
    """∂L/∂x = g @ Wᵀ instead of g @ W. Only where W is square, where the
    shapes still fit and the mistake runs silently."""
    w = c.p["weight"]
    return [c.g @ w.T if c.in_features[0] == c.out_features else c.g @ w]


def elu_sign(c):
    """The negative branch's slope alpha·eˣ with its sign flipped."""
    neg = -(c.g * c.a.alpha * call("exp", call("min0", c.x)))
    return [call("where_gt", c.x, c.g, neg, 0)]


def drop_fanout_part(mp: pytest.MonkeyPatch) -> None:
    """The first tensor used twice gets only one of its two gradient parts:
    ∂L/∂h = (part via one consumer) instead of the sum over both."""
    inner = autodiff.derive

    def derive(net):
        prog = inner(net)
        lines = list(prog.backward)
        i = next(i for i, line in enumerate(lines) if line.kind == "fanout_sum")
        total = lines[i].expr
        assert isinstance(total, Bin) and total.op == "+", total
        lines[i] = dataclasses.replace(lines[i], expr=total.a)
        return dataclasses.replace(prog, backward=tuple(lines))

    mp.setattr(autodiff, "derive", derive)


# ------------------------------------------------------------ text mutants


def text_edit(old: str, new: str) -> Callable[[pytest.MonkeyPatch], None]:
    """Replace ``old`` (which must occur exactly once) by ``new`` in both
    manual implementations as written by the compiler."""

    def apply(mp: pytest.MonkeyPatch) -> None:
        inner = crosstest.compiled

        def compiled(path):
            prog, tmp, folder = inner(path)
            for file in MANUAL:
                text = (folder / file).read_text(encoding="utf-8")
                assert text.count(old) == 1, f"{file}: {old!r} is not there once"
                (folder / file).write_text(text.replace(old, new), encoding="utf-8")
            return prog, tmp, folder

        mp.setattr(crosstest, "compiled", compiled)

    return apply


MUTANTS = [
    Mutant(
        "sigmoid_sign",
        XOR,
        "σ′ with a sign flipped: g ⊙ (y − 1) ⊙ y",
        layer_rule("sigmoid", lambda c: [c.g * (c.y - 1) * c.y]),
        "∂L/∂fc2",
    ),
    Mutant(
        "elu_sign",
        RESIDUAL,
        "elu′ = −alpha·eˣ on the negative side",
        layer_rule("elu", elu_sign),
        "∂L/∂block2_fc",
    ),
    Mutant(
        "mse_factor_2",
        XOR,
        "MSE's gradient without its factor 2",
        loss_rule("mse", mse_without_2),
        "∂L/∂act2",
    ),
    Mutant(
        "cross_entropy_mean",
        CHAIN12,
        "cross-entropy's gradient without the mean's 1/N",
        loss_rule("cross_entropy", ce_without_mean),
        "∂L/∂fc12",
    ),
    Mutant(
        "linear_transposed",
        CHAIN12,
        "linear's input gradient g @ Wᵀ (square 32×32 layers)",
        layer_rule("linear", linear_transposed),
        "∂L/∂act10",
    ),
    Mutant(
        "fanout_part_dropped",
        RESIDUAL,
        "a skip connection's input gets one of its two gradient parts",
        drop_fanout_part,
        "∂L/∂h1",
    ),
    Mutant(
        "adam_beta2",
        RESIDUAL,
        "Adam's β₂ 0.99 in the manual files (0.999 in torch.optim)",
        text_edit("BETA2 = 0.999\n", "BETA2 = 0.99\n"),
        None,
    ),
    Mutant(
        "rmsprop_alpha",
        RMSPROP,
        "RMSprop's α 0.8 in the manual files (0.9 in torch.optim)",
        text_edit("ALPHA = 0.9\n", "ALPHA = 0.8\n"),
        None,
    ),
    Mutant(
        "adam_bias_correction1",
        RESIDUAL,
        "Adam's first-moment bias correction one step ahead: 1 − β₁^(t+1)",
        text_edit(
            "bias_correction1 = 1 - BETA1**step\n",
            "bias_correction1 = 1 - BETA1 ** (step + 1)\n",
        ),
        None,
    ),
    Mutant(
        "adam_bias_correction2",
        RESIDUAL,
        "Adam's second-moment bias correction one step ahead: 1 − β₂^(t+1)",
        text_edit(
            "bias_correction2 = 1 - BETA2**step\n",
            "bias_correction2 = 1 - BETA2 ** (step + 1)\n",
        ),
        None,
    ),
]

# mutant name -> caught by both checks; filled as the tests run, counted last
RESULTS: dict[str, bool] = {}


# ------------------------------------------------------------------ running


def generated_test_fails(folder: Path) -> tuple[bool, str]:
    """Run the folder's test_crosscheck.py in a fresh process: (it failed, its output)."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        + ["test_crosscheck.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode in (0, 1), f"pytest could not run:\n{run.stdout}{run.stderr}"
    return run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]


def manual_texts(spec: Path) -> dict[str, str]:
    """The two manual files as the compiler writes them now."""
    _, tmp, folder = crosstest.compiled(spec)
    with tmp:
        return {f: (folder / f).read_text(encoding="utf-8") for f in MANUAL}


@pytest.mark.parametrize(
    "spec", [XOR, CHAIN12, RESIDUAL, RMSPROP], ids=lambda p: p.stem
)
def test_unmutated_spec_passes_both_checks(spec, capsys):
    """Without a mutant, each spec the mutants use passes both checks: what
    catches the mutants below is the mutation, not a check that always fails."""
    status = crosstest.crosstest(spec)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "first difference:" not in out
    _, tmp, folder = crosstest.compiled(spec)
    with tmp:
        failed, said = generated_test_fails(folder)
    assert not failed, said


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_caught(mutant: Mutant, monkeypatch, capsys):
    RESULTS[mutant.name] = False
    before = manual_texts(mutant.spec)
    mutant.apply(monkeypatch)
    after = manual_texts(mutant.spec)
    assert after != before, "the mutation changed nothing in the generated code"

    status = crosstest.crosstest(mutant.spec)
    out = capsys.readouterr().out
    # 1: the numbers differ; every mutant here runs to the end silently
    assert status == 1, f"crosstest said {status}:\n{out}"
    assert out.rstrip().endswith("DISAGREE"), out
    if mutant.first is None:
        # the optimizer's mistake: the first step agrees, the run does not
        assert "first difference:" not in out, out
        assert "MISMATCH" in out, out
    else:
        named = [
            line for line in out.splitlines() if line.startswith("first difference:")
        ]
        assert named, out
        assert named[0].startswith(f"first difference: {mutant.first} "), named[0]
        # both manual files carry the mutant: they agree with each other, not with autograd
        assert "agree with each other but not with autograd" in named[0], named[0]

    _, tmp, folder = crosstest.compiled(mutant.spec)
    with tmp:
        failed, said = generated_test_fails(folder)
    assert failed, f"the generated test_crosscheck.py passed:\n{said}"
    RESULTS[mutant.name] = True


def test_every_mutant_caught(capsys):
    """The count: N of N. Runs last (pytest keeps the file's order)."""
    ran = len(RESULTS)
    if ran < len(MUTANTS) and all(RESULTS.values()):
        pytest.skip(f"only {ran} of the {len(MUTANTS)} mutants were selected")
    caught = sum(RESULTS.values())
    line = f"{caught} of {len(MUTANTS)} mutants caught"
    with capsys.disabled():
        print(f"\nmutation test: {line}")
        for m in MUTANTS:
            mark = "caught" if RESULTS.get(m.name) else "MISSED"
            print(f"  {mark:<7}{m.name:<24}{m.spec.name:<15}{m.what}")
    missed = [m.name for m in MUTANTS if not RESULTS.get(m.name)]
    assert caught == len(MUTANTS), f"{line}; missed: {', '.join(missed)}"
