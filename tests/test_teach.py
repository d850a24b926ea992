"""The teaching files (issue 17): derivations on the learning page, the
exercise and its grader, the PyTorch ladder, the notebook."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpgen import cli
from mlpgen.autodiff import grad, param, value
from mlpgen.compiler import build, compile_spec, ruff_bin
from mlpgen.crosstest import TOLERANCES
from mlpgen.expr import latex_name, latex_text
from mlpgen.ops import LAYERS, LOSSES
from mlpgen.spec import load_spec
from mlpgen.teach import (
    MODULE_DICT_ATTRIBUTES,
    SEQUENTIAL_ATTRIBUTES,
    Teaching,
    is_chain,
)

from . import teach_answers
from .conftest import ROOT, SPECS, load_module
from .coverage_specs import COVERAGE, XOR_DATA, write

IDS = [p.stem for p in SPECS]
SPEC = {p.stem: p for p in SPECS}
LADDER = ("torch_autograd", "torch_nn", "torch_optim")
RUNGS = ("numpy_backprop", "torch_manual", *LADDER, "torch_module")


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """Every gallery spec compiled with --exercise --ladder (once per module)."""
    root = tmp_path_factory.mktemp("taught")
    return {
        p.stem: compile_spec(p, root, Teaching(exercise="guided", ladder=True))
        for p in SPECS
    }


def grade(folder: Path, capsys, *args: str) -> tuple[int, str]:
    """Run the folder's grade.py in this process: (exit status, what it printed)."""
    module = load_module(folder / "grade.py", f"grade_{folder.name}")
    capsys.readouterr()
    status = module.main([str(a) for a in args])
    return status, capsys.readouterr().out


def results(output: str) -> dict[str, str]:
    """The grader's table: gradient -> the last column of its row (correct,
    WRONG, not written…), read by the columns of its header."""
    header, table = output.split("\n\n", 2)[1].split("\n", 1)
    shape, result = header.index("shape"), header.index("result")
    return {
        line[:shape].strip(): line[result:].strip()
        for line in table.splitlines()
        if "should be:" not in line
    }


def with_one_wrong_line(text: str, target: str) -> str:
    """numpy_backprop.py with the gradient ``target`` (code) made wrong: scaled
    by 1.5 on a line of its own right after the derived one."""
    tree = ast.parse(text)
    backward = next(n for n in tree.body if getattr(n, "name", "") == "backward")
    statement = next(
        s
        for s in backward.body
        if isinstance(s, ast.Assign)
        and ast.unparse(s.targets[0])
        == ast.unparse(ast.parse(target, mode="eval").body)
    )
    lines = text.split("\n")
    lines.insert(statement.end_lineno, f"    {target} = {target} * 1.5")
    return "\n".join(lines)


# ------------------------------------------------------------------ derivations


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_operation_brings_its_derivation(name):
    """A new operation brings the derivation of its rule with it: a few lines,
    each a sentence, down to the rule's matrix form."""
    text = LAYERS[name].derivation
    assert len(text) >= 60, f"ops.py: {name} has no derivation"
    assert all(line.strip().endswith(".") for line in text.splitlines()), name


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_brings_its_derivation(name):
    text = LOSSES[name].derivation
    assert len(text) >= 60, f"ops.py: {name} has no derivation"
    assert "∂L/∂" in text, name  # it arrives at the gradient the code computes
    assert all(line.strip().endswith(".") for line in text.splitlines()), name


def test_the_learning_page_derives_the_rules_the_network_uses():
    xor = (ROOT / "generated" / "xor" / "README.md").read_text(encoding="utf-8")
    section = xor.split("## Why the rules hold", 1)[1].split("\n## ", 1)[0]
    assert "### linear" in section and "### mse (the loss)" in section
    assert "gᵀ @ x is the only product of g (N, out) and x (N, in)" in section
    assert "**Element-wise operations** (sigmoid)." in section
    assert "σ(x)·(1 − σ(x))" in section
    assert "### tanh" not in section and "### dropout" not in section
    spiral = (ROOT / "generated" / "spiral_dropout" / "README.md").read_text(
        encoding="utf-8"
    )
    section = spiral.split("## Why the rules hold", 1)[1].split("\n## ", 1)[0]
    assert "### dropout" in section and "### cross_entropy (the loss)" in section
    assert "the 1/p of the log cancels the p of softmax's derivative" in section
    # a plain compile writes no teaching file and no section for one
    assert "## Exercise" not in spiral and "## From NumPy" not in spiral
    assert "exercise.py" not in spiral and "torch_optim.py" not in spiral


def test_latex_printer():
    fc1, w = value("fc1"), param("fc1.weight")
    assert latex_text(fc1 @ w.T) == r"\mathrm{fc1} \, \mathrm{fc1{.}weight}^\top"
    assert latex_text(grad("act2") * (1 - value("act2"))) == (
        r"\frac{\partial L}{\partial \mathrm{act2}} \odot \left(1 - \mathrm{act2}\right)"
    )
    assert latex_text(grad("fc2").T @ value("act1")) == (
        r"\left(\frac{\partial L}{\partial \mathrm{fc2}}\right)^\top \, \mathrm{act1}"
    )
    assert latex_name("∂L/∂h0 via h1") == (
        r"\frac{\partial L}{\partial \mathrm{h0}}\Big|_{\text{via } \mathrm{h1}}"
    )
    assert latex_name("left_fc.weight") == r"\mathrm{left\_fc{.}weight}"
    # the typeset formula leaves the column implied (w[y]/Σ w[y] scales each
    # row); the code comments show the broadcast as [:, None]
    prog = build(SPEC["spiral_dropout"])
    assert latex_text(prog.backward[0].expr) == (
        r"\left(\operatorname{softmax}(\mathrm{scores}) - \operatorname{onehot}(y)\right)"
        r" \odot \frac{w[y]}{\sum w[y]}"
    )


# ------------------------------------------------------------------ the exercise


@pytest.mark.parametrize("spec", IDS)
def test_the_blank_exercise_fails_naming_its_first_gradient(spec, taught, capsys):
    folder = taught[spec]
    status, out = grade(folder, capsys, folder / "exercise.py")
    assert status == 1
    found = results(out)
    first = build(SPEC[spec]).backward[0]
    from mlpgen.expr import math_text

    name = math_text(first.target)
    assert next(iter(found)) == name
    assert set(found.values()) == {"not written"}
    line = next(
        i
        for i, text in enumerate((folder / "exercise.py").read_text().splitlines(), 1)
        if text.endswith(" = None  # TODO")
    )
    assert f"First to fix: {name} (exercise.py, line {line}): not written." in out
    assert f"0 of {len(found)} correct." in out


@pytest.mark.parametrize("spec", IDS)
def test_the_derived_backward_pass_passes(spec, taught, capsys):
    folder = taught[spec]
    status, out = grade(folder, capsys, folder / "numpy_backprop.py")
    assert status == 0, out
    found = results(out)
    assert len(found) == len(build(SPEC[spec]).backward)
    assert set(found.values()) == {"correct"}
    assert "Every gradient is right" in out


def test_grade_py_from_the_command_line(taught):
    """As the exercise says: python grade.py in the folder, exit status and all."""
    folder = taught["xor"]

    def run(*args):
        return subprocess.run(
            [sys.executable, "grade.py", *args],
            cwd=folder, capture_output=True, text=True, check=False,
        )  # fmt: skip

    blank = run()
    assert blank.returncode == 1
    assert "First to fix: ∂L/∂act2 (exercise.py, line " in blank.stdout
    assert "python grade.py --hint shows the formula" in blank.stdout
    derived = run("numpy_backprop.py")
    assert derived.returncode == 0, derived.stdout + derived.stderr
    assert "6 of 6 correct." in derived.stdout
    missing = run("nothing.py")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: nothing.py: no such file"


def test_grade_py_works_copied_with_the_exercise_and_numpy_backprop(taught, tmp_path):
    """What a teacher hands out: the three files, in a folder of their own."""
    for name in ("exercise.py", "grade.py", "numpy_backprop.py"):
        (tmp_path / name).write_bytes((taught["spiral_dropout"] / name).read_bytes())
    blank = subprocess.run(
        [sys.executable, "grade.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert blank.returncode == 1 and "0 of 8 correct." in blank.stdout
    assert "First to fix: ∂L/∂scores (exercise.py, line " in blank.stdout
    derived = subprocess.run(
        [sys.executable, str(tmp_path / "grade.py"), str(tmp_path / "numpy_backprop.py")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert derived.returncode == 0 and "8 of 8 correct." in derived.stdout


@pytest.mark.parametrize(
    "spec, target",
    [
        ("xor", "d_fc2"),
        ("xor", 'grads["fc1.weight"]'),
        ("spiral_dropout", "d_act"),
        ("residual", "d_h1_from_h2"),  # one part of a fan-out sum
        ("residual", "d_h0"),  # the sum itself
        ("two_branch", "d_left"),  # a slice of concat's gradient
    ],
)
def test_one_wrong_line_is_named_alone(spec, target, taught, capsys, tmp_path):
    """The lines after a wrong one get the right values: only it is wrong."""
    folder = taught[spec]
    wrong = tmp_path / f"wrong_{target.split('[')[0]}.py"
    text = (folder / "numpy_backprop.py").read_text(encoding="utf-8")
    wrong.write_text(with_one_wrong_line(text, target), encoding="utf-8")
    status, out = grade(folder, capsys, wrong)
    assert status == 1
    prog = build(SPEC[spec])
    from mlpgen.expr import math_text, numpy_code

    name = next(
        math_text(ln.target) for ln in prog.backward if numpy_code(ln.target) == target
    )
    found = results(out)
    assert {g for g, r in found.items() if r != "correct"} == {name}
    assert found[name] == "WRONG"
    assert f"First to fix: {name} ({wrong.name}, line " in out
    assert "should be:" not in out
    status, hinted = grade(folder, capsys, wrong, "--hint")
    formula = next(
        math_text(ln.expr) for ln in prog.backward if numpy_code(ln.target) == target
    )
    assert hinted.count("should be:") == 1
    assert f"should be: {name} = {formula}" in hinted


def test_a_line_that_raises_is_named_and_the_others_graded(taught, capsys, tmp_path):
    folder = taught["xor"]
    text = (folder / "numpy_backprop.py").read_text(encoding="utf-8")
    broken = tmp_path / "broken.py"
    broken.write_text(
        text.replace(
            'd_act1 = d_fc2 @ params["fc2.weight"]',
            'd_act1 = d_fc2 @ params["fc1.weight"]',
        ),
        encoding="utf-8",
    )
    status, out = grade(folder, capsys, broken)
    assert status == 1
    found = results(out)
    assert found["∂L/∂act1"].startswith("raised ValueError: matmul")
    assert [g for g, r in found.items() if r != "correct"] == ["∂L/∂act1"]


@pytest.mark.parametrize(
    "spec, level, first, fixed, named, why",
    [
        (
            "xor",
            "guided",
            "XOR_FIRST",
            "XOR_FIXED",
            "∂L/∂fc2.weight",
            "shape (5, 1), should be (1, 5)",
        ),
        (
            "spiral_dropout",
            "hard",
            "SPIRAL_DROPOUT_FIRST",
            "SPIRAL_DROPOUT_FIXED",
            "∂L/∂scores",
            "WRONG",
        ),
    ],
)
def test_the_exercise_done_as_a_learner_would(
    spec, level, first, fixed, named, why, tmp_path, capsys
):
    """Backward passes written by hand (tests/teach_answers.py): the first
    attempt is graded wrong at exactly its mistake, the fix passes and trains
    exactly as numpy_backprop.py does."""
    folder = compile_spec(SPEC[spec], tmp_path, Teaching(exercise=level))
    exercise = (folder / "exercise.py").read_text(encoding="utf-8")
    attempt = folder / "attempt.py"
    attempt.write_text(teach_answers.fill(exercise, getattr(teach_answers, first)))
    status, out = grade(folder, capsys, attempt)
    assert status == 1
    found = results(out)
    assert {g for g, r in found.items() if r != "correct"} == {named}
    assert found[named] == why
    mine = folder / "mine.py"
    mine.write_text(teach_answers.fill(exercise, getattr(teach_answers, fixed)))
    status, out = grade(folder, capsys, mine)
    assert status == 0, out
    trained = load_module(mine, f"mine_{spec}").train
    reference = load_module(folder / "numpy_backprop.py", f"ref_{spec}")
    data, params = reference.load_data(), reference.init_params()
    ours = trained(reference.init_params(), data, epochs=20, quiet=True)
    theirs = reference.train(params, data, epochs=20, quiet=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_the_hard_level_keeps_only_headers_and_shapes(tmp_path):
    folder = compile_spec(SPEC["xor"], tmp_path, Teaching(exercise="hard"))
    text = (folder / "exercise.py").read_text(encoding="utf-8")
    body = text.split("def backward(", 1)[1].split("\n    return grads", 1)[0]
    assert "# Grad of: act2 = σ(fc2)" in body
    assert "# ∂L/∂fc2: shape (N, 1)" in body
    assert "# ∂L/∂fc2.weight: shape (1, 5)" in body
    gradients = [
        line.strip() for line in body.splitlines() if line.strip().startswith("# ∂L/∂")
    ]
    assert len(gradients) == 6 and not any(
        "=" in line for line in gradients
    )  # no formula
    assert body.count(" = None  # TODO") == 6
    # the hard level unpacks every value the forward pass cached
    assert (
        "x, fc1, act1, fc2, act2 = (" in body
        or "x, fc1, act1, fc2, act2 = cache" in body
    )
    guided = (
        compile_spec(SPEC["xor"], tmp_path / "g", Teaching(exercise="guided"))
        / "exercise.py"
    ).read_text()
    assert "# ∂L/∂fc2 = ∂L/∂act2 ⊙ (1 − act2) ⊙ act2    (N, 1)" in guided


def test_the_exercise_is_numpy_backprop_but_for_backward(taught):
    folder = taught["two_branch"]
    exercise = (folder / "exercise.py").read_text(encoding="utf-8")
    derived = (folder / "numpy_backprop.py").read_text(encoding="utf-8")
    assert (
        exercise.split("def forward(", 1)[1].split("\n# Until you write them", 1)[0]
        in derived
    )
    assert (
        exercise.split("\ndef init_optimizer", 1)[1]
        == derived.split("\ndef init_optimizer", 1)[1]
    )


# ------------------------------------------------------------------ the ladder


def _dumps(folder: Path, tmp_path: Path, epochs: int | None) -> dict:
    out = {}
    for impl in RUNGS:
        path = tmp_path / f"{folder.name}_{impl}.npz"
        args = ["--quiet", "--dump", str(path)] + (
            ["--epochs", str(epochs)] if epochs else []
        )
        load_module(folder / f"{impl}.py", f"{folder.name}_{impl}_ladder").main(args)
        with np.load(path) as archive:
            out[impl] = dict(archive)
    return out


def _worst(dumps: dict, dtype: str) -> dict[str, tuple[float, str]]:
    """Each implementation's largest |a − b| / tolerance against numpy_backprop."""
    rtol, mtol, atol = TOLERANCES[dtype]
    ref = dumps["numpy_backprop"]
    worst = {}
    for impl, dump in dumps.items():
        assert sorted(dump) == sorted(ref), impl
        ratio, where = 0.0, ""
        for key, b in ref.items():
            a, b = dump[key].astype(np.float64), b.astype(np.float64)
            assert a.shape == b.shape, (impl, key)
            if b.size == 0:
                continue
            tolerance = rtol * np.abs(b) + mtol * np.abs(b).max() + atol
            r = float(np.max(np.where(a == b, 0.0, np.abs(a - b) / tolerance)))
            if r > ratio:
                ratio, where = r, key
        worst[impl] = (ratio, where)
    return worst


@pytest.mark.parametrize("spec", IDS)
def test_every_rung_agrees_with_the_others(spec, taught, tmp_path):
    """The six files dump the same keys and the same numbers (two epochs)."""
    worst = _worst(_dumps(taught[spec], tmp_path, 2), load_spec(SPEC[spec]).dtype)
    for impl, (ratio, key) in worst.items():
        assert ratio <= 1, f"{impl}: {key} differs by {ratio:.3g} × the tolerance"


@pytest.mark.parametrize("name", sorted(COVERAGE))
def test_every_rung_agrees_on_the_coverage_specs(name, tmp_path):
    """Every optimizer option, dropout with shuffled minibatches, class and
    positive weights, both L2 variants, float32: the whole (short) run."""
    path = write(tmp_path, COVERAGE[name])
    folder = compile_spec(path, tmp_path / "out", Teaching(ladder=True))
    worst = _worst(
        _dumps(folder, tmp_path, None), COVERAGE[name].get("dtype", "float64")
    )
    for impl, (ratio, key) in worst.items():
        assert ratio <= 1, f"{impl}: {key} differs by {ratio:.3g} × the tolerance"


def test_an_identity_layer_keeps_its_own_gradient_in_the_autograd_rung(tmp_path):
    """ident returns fc1 itself, and fc1 feeds act too: ∂L/∂ident is one of
    the two parts of ∂L/∂fc1, which autograd keeps apart only on a view."""
    spec = {
        "name": "alias",
        "data": XOR_DATA,
        "model": {
            "layers": [
                {"name": "fc1", "type": "linear", "out": 3},
                {"name": "ident", "type": "identity"},
                {"name": "act", "type": "tanh", "inputs": ["fc1"]},
                {"name": "both", "type": "add", "inputs": ["ident", "act"]},
                {"name": "out", "type": "linear", "out": 1},
            ]
        },
        "loss": {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 3},
    }
    folder = compile_spec(
        write(tmp_path, spec), tmp_path / "out", Teaching(ladder=True)
    )
    assert "ident = fc1.view_as(fc1)" in (folder / "torch_autograd.py").read_text()
    dumps = _dumps(folder, tmp_path, None)
    ref = dumps["numpy_backprop"]
    assert not np.allclose(ref["step0/d_ident"], ref["step0/d_fc1"])
    for impl, (ratio, key) in _worst(dumps, "float64").items():
        assert ratio <= 1, f"{impl}: {key} differs by {ratio:.3g} × the tolerance"


@pytest.mark.skipif(
    "batchnorm" not in LAYERS, reason="needs the layers track's batchnorm"
)
def test_the_autograd_rung_keeps_running_statistics_out_of_the_graph(tmp_path):
    """torch_autograd.py updates batchnorm's buffers from tracked batch
    statistics: detached, as nn.BatchNorm1d's, and the same numbers."""
    spec = {
        "name": "bn",
        "data": {"kind": "spiral", "n_per_class": 10, "classes": 3},
        "model": {
            "layers": [
                # no bias before batchnorm: its gradient is 0 but for rounding,
                # which Adam would blow up (generated-code.md, long runs)
                {"name": "fc1", "type": "linear", "out": 6, "bias": False},
                {"name": "bn1", "type": "batchnorm"},
                {"name": "act1", "type": "relu"},
                {"name": "fc2", "type": "linear", "out": 3},
            ]
        },
        "loss": {"type": "cross_entropy"},
        "train": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "epochs": 3,
            "batch_size": 8,
        },
    }
    folder = compile_spec(
        write(tmp_path, spec), tmp_path / "out", Teaching(ladder=True)
    )
    autograd = load_module(folder / "torch_autograd.py", "bn_autograd")
    params, buffers, data = (
        autograd.init_params(),
        autograd.init_buffers(),
        autograd.load_data(),
    )
    autograd.train(params, buffers, data, quiet=True)
    assert not any(b.requires_grad for b in buffers.values())
    worst = _worst(_dumps(folder, tmp_path, None), "float64")
    for impl, (ratio, key) in worst.items():
        assert ratio <= 1, f"{impl}: {key} differs by {ratio:.3g} × the tolerance"


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["xor", "spiral_dropout", "two_branch"])
def test_the_rungs_train_alike_to_the_end(spec, taught, tmp_path):
    dumps = _dumps(taught[spec], tmp_path, None)
    assert len(dumps["numpy_backprop"]["losses"]) == load_spec(SPEC[spec]).train.epochs
    worst = _worst(dumps, load_spec(SPEC[spec]).dtype)
    for impl, (ratio, key) in worst.items():
        assert ratio <= 1, f"{impl}: {key} differs by {ratio:.3g} × the tolerance"
    assert dumps["torch_autograd"]["losses"][-1] < dumps["torch_autograd"]["losses"][0]


@pytest.mark.slow
def test_the_generated_crosscheck_runs_the_ladder(taught):
    folder = taught["xor"]
    text = (folder / "test_crosscheck.py").read_text(encoding="utf-8")
    assert '"torch_autograd", "torch_nn", "torch_optim"' in text
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_crosscheck.py",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        "7 passed" in r.stdout
    )  # five implementations against numpy_backprop, and two more


def test_each_rung_is_the_idiom_of_its_rung(taught):
    chain, dag = taught["spiral_dropout"], taught["two_branch"]
    autograd = (chain / "torch_autograd.py").read_text()
    assert "def backward" not in autograd and "loss.backward()" in autograd
    assert "p.requires_grad_()" in autograd and "with torch.no_grad():" in autograd
    assert "BCE_EPS" not in autograd and "F.one_hot" not in autograd
    nn_ = (chain / "torch_nn.py").read_text()
    assert "nn.Sequential(" in nn_ and '("drop", Dropout(0.1, dropout_rng)),' in nn_
    assert (
        "def optimizer_step(params, grads, state):" in nn_
        and "optimizer.step()" not in nn_
    )
    assert "criterion = nn.CrossEntropyLoss(weight=CLASS_WEIGHT)" in nn_
    optim = (chain / "torch_optim.py").read_text()
    assert "torch.optim.Adam(" in optim and "def optimizer_step" not in optim
    assert (
        "class SpiralDropout" not in optim
        and "class SpiralDropout(nn.Module)" in (chain / "torch_module.py").read_text()
    )
    assert not is_chain(build(SPEC["two_branch"]))
    dag_optim = (dag / "torch_optim.py").read_text()
    assert "nn.ModuleDict(" in dag_optim and "def forward(model, x):" in dag_optim
    assert 'joined = model["joined"](left, right)' in dag_optim
    assert "loss = loss_fn(forward(model, xb), yb)" in dag_optim


def test_the_learning_page_climbs_the_ladder(taught):
    readme = (taught["spiral_dropout"] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From NumPy to nn.Module, one rung at a time", 1)[1]
    diffs = section.split("```diff\n")[1:]
    assert len(diffs) == 5
    titles = ["numpy_backprop.py` → `torch_manual.py", "torch_manual.py` → `torch_autograd.py",
              "torch_autograd.py` → `torch_nn.py", "torch_nn.py` → `torch_optim.py",
              "torch_optim.py` → `torch_module.py"]  # fmt: skip
    assert all(t in section for t in titles)
    last = diffs[4].split("```", 1)[0]
    assert "-def build_model(dropout_rng):" in last
    assert "+class SpiralDropout(nn.Module):" in last
    assert "first_step" not in section  # the plumbing is left out
    autograd = diffs[1].split("```", 1)[0]
    assert "-def backward(params, cache, y):" in autograd
    assert (
        "+        loss.backward()  # ∂L/∂p into p.grad, for every parameter p"
        in autograd
    )
    assert "| [torch_autograd.py](torch_autograd.py) |" in readme
    assert "| [grade.py](grade.py) |" in readme


def test_nn_container_attributes_are_torchs():
    from torch import nn

    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(nn.Sequential) - public(nn.Module) == SEQUENTIAL_ATTRIBUTES
    assert public(nn.ModuleDict) - public(nn.Module) == MODULE_DICT_ATTRIBUTES


@pytest.mark.parametrize("name, chain", [("pop", True), ("keys", False)])
def test_a_layer_named_like_a_container_method_is_refused_by_the_ladder(
    name, chain, tmp_path, capsys
):
    layers = [
        {"name": name, "type": "linear", "out": 3},
        {"name": "act", "type": "tanh"},
        {"name": "out", "type": "linear", "out": 1},
    ]
    if not chain:  # out reads act and, beside it, x through a linear layer of its own
        layers[2:2] = [
            {"name": "side", "type": "linear", "out": 3, "inputs": ["x"]},
            {"name": "joined", "type": "add", "inputs": ["act", "side"]},
        ]
    spec = {
        "name": "named",
        "data": XOR_DATA,
        "model": {"layers": layers},
        "loss": {"type": "mse"},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 2},
    }
    import json

    path = tmp_path / "named.json"
    path.write_text(json.dumps(spec))
    status = cli.main(["compile", "--ladder", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    container = "nn.Sequential" if chain else "nn.ModuleDict"
    assert status == 2
    assert err == (
        f"error: {path}: model.layers[0].name: '{name}' is a method of {container}, "
        "which holds the layers in the ladder's torch_nn.py and torch_optim.py "
        "(--ladder); choose another name\n"
    )
    assert not (tmp_path / "out").exists()
    assert cli.main(["compile", str(path), "-o", str(tmp_path / "out")]) == 0


# ------------------------------------------------------------------ the command line


def test_the_flags_of_compile(tmp_path, capsys):
    """A bare --exercise never takes the spec after it for its level."""
    spec = str(SPEC["xor"])
    assert cli.main(["compile", "--exercise", spec, "-o", str(tmp_path / "a")]) == 0
    assert "# ∂L/∂fc2 = " in (tmp_path / "a" / "xor" / "exercise.py").read_text()
    assert (
        cli.main(["compile", spec, "--exercise=hard", "-o", str(tmp_path / "b")]) == 0
    )
    assert (
        "# ∂L/∂fc2: shape (N, 1)"
        in (tmp_path / "b" / "xor" / "exercise.py").read_text()
    )
    names = sorted(p.name for p in (tmp_path / "b" / "xor").iterdir())
    assert (
        "grade.py" in names
        and "torch_nn.py" not in names
        and "numpy_backprop.ipynb" not in names
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(["compile", "--exercise=easy", spec, "-o", str(tmp_path / "c")])
    assert e.value.code == 2
    assert "argument --exercise: invalid choice: 'easy'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_notebook_without_its_packages(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("nb") else real(name, *a),
    )
    status = cli.main(["compile", "--notebook", str(SPEC["xor"]), "-o", str(tmp_path)])
    assert status == 4
    assert capsys.readouterr().err == (
        "error: mlpgen compile --notebook needs nbformat: pip install 'mlpgen[notebook]'\n"
    )
    assert not any(tmp_path.iterdir())


def test_teaching_files_are_ruff_clean(taught):
    files = [f for folder in taught.values() for f in folder.glob("*.py")]
    assert len(files) == len(SPECS) * 9  # the four files of a plain compile, and five
    root = next(iter(taught.values())).parent
    check = subprocess.run(
        [ruff_bin(), "check", "--isolated", "--extend-select", "F,E9,ARG", "--output-format",
         "concise", "--no-cache", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [ruff_bin(), "format", "--check", "--isolated", "--no-cache", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# ------------------------------------------------------------------ the notebook

NOTEBOOK_SPECS = ["xor", "spiral_dropout", "flowers_csv"]


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    pytest.importorskip("nbclient")
    root = tmp_path_factory.mktemp("notebooks")
    return {
        name: compile_spec(
            SPEC[name], root, Teaching(exercise="hard", ladder=True, notebook=True)
        )
        for name in NOTEBOOK_SPECS
    }


@pytest.mark.slow
@pytest.mark.parametrize("spec", NOTEBOOK_SPECS)
def test_the_notebook_is_the_file_and_runs_in_a_fresh_kernel(spec, notebooks, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    folder = notebooks[spec]
    nb = nbformat.read(folder / "numpy_backprop.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    script = (folder / "numpy_backprop.py").read_text(encoding="utf-8")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    functions = [c for c in code if c.lstrip("@").startswith(("def ", "np.errstate"))]
    for name in (
        "load_data",
        "init_params",
        "forward",
        "loss_fn",
        "backward",
        "optimizer_step",
        "train",
    ):
        cell = next(c for c in code if c.startswith(f"def {name}("))
        if spec != "flowers_csv" or name != "load_data":
            assert cell in script, name
    assert all(
        c.replace("pathlib.Path.cwd() /", "pathlib.Path(__file__).resolve().parent /")
        in script
        for c in functions
    )
    assert "def first_step" not in "".join(code) and "def main" not in "".join(code)
    markdown = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert r"\begin{aligned}" in markdown and r"\frac{\partial L}{\partial" in markdown
    # its outputs are kept: the training log, as the script prints it, and the curve
    printed = subprocess.run(
        [sys.executable, "numpy_backprop.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    streams = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert printed.strip() in streams
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 1
    # and it runs again, top to bottom, in a fresh kernel from its own folder
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    again = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert printed.strip() in again


@pytest.mark.slow
def test_the_notebook_is_the_same_bytes_every_time(notebooks, tmp_path):
    again = compile_spec(SPEC["xor"], tmp_path, Teaching(notebook=True))
    first = (notebooks["xor"] / "numpy_backprop.ipynb").read_bytes()
    assert (again / "numpy_backprop.ipynb").read_bytes() == first
    # all three flags together write every file, and nothing else changes
    names = sorted(p.name for p in notebooks["xor"].iterdir())
    assert names == sorted(
        [".mlpgen", "README.md", "backward.dot", "backward.svg", "exercise.py", "forward.dot", "forward.svg",
         "grade.py", "index.html", "numpy_backprop.ipynb", "numpy_backprop.py", "test_crosscheck.py",
         "torch_autograd.py", "torch_manual.py", "torch_module.py", "torch_nn.py", "torch_optim.py", "xor.yaml"]
    )  # fmt: skip
    plain = ROOT / "generated" / "xor"
    for name in ("numpy_backprop.py", "torch_manual.py", "torch_module.py"):
        assert (notebooks["xor"] / name).read_bytes() == (plain / name).read_bytes(), (
            name
        )
