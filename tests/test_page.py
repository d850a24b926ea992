"""The learning page and the explorer's data: the spec copied and shown, its
comment as the introduction, the check warnings, the notation legend, links
that exist, commands that work from the page's folder, the layer-to-lines map,
and the first step's numbers (with a stand-in first_step until every
generated file has one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from mlpgen import notation, page, values
from mlpgen.compiler import build, compile_spec, render
from mlpgen.expr import math_text

from .conftest import ROOT, SPECS

IDS = [p.stem for p in SPECS]
GALLERY = sorted(p for p in (ROOT / "generated").iterdir() if p.is_dir())


# ------------------------------------------------------------------ numbers


def test_num_is_fixed_precision_text():
    assert values.num(0.000007712345) == "7.71e−6"
    assert values.num(-0.0123456) == "−0.0123"
    assert values.num(1234567.0) == "1.23e6"
    assert values.num(0.0) == "0" and values.num(-0.0) == "0"
    assert values.num(float("inf")) == "∞" and values.num(float("nan")) == "nan"
    assert values.num(2.0) == "2"


def test_stat_summarises_small_and_large():
    s = values.stat(np.array([[3.0, -4.0]]))
    assert (s.shape, s.norm, s.min, s.max, s.mean) == ((1, 2), 5.0, -4.0, 3.0, -0.5)
    assert s.short() == "[3, −4]" and s.json()["values"] == [["3", "−4"]]
    big = values.stat(np.arange(200.0).reshape(20, 10))
    assert big.values is None and len(big.heat) == values.HEAT_ROWS
    assert big.short() == "0 … 199, mean 99.5"
    assert big.json()["heat"][1][0] == "10"


class StubModule:
    """A generated module as the core API defines it, with known numbers."""

    def init_params(self):
        return {"fc.weight": np.array([[1.0, 2.0]])}

    def load_data(self):
        return {"train": (np.ones((3, 2)), np.zeros((3, 1)))}

    def first_step(self, params, data):
        x, _ = data["train"]
        fc = x @ params["fc.weight"].T
        return (
            {"x": x, "fc": fc},
            {"fc": 2 * fc / 3},
            {"fc.weight": np.array([[6.0, 6.0]])},
            9.0,
        )


def test_adapter_calls_the_core_api():
    _, tensors, _, grads, loss = values.call_first_step(StubModule())
    assert loss == 9.0 and tensors["fc"].tolist() == [[3.0]] * 3
    assert grads["fc.weight"].tolist() == [[6.0, 6.0]]

    class Old:  # a file generated before first_step existed
        pass

    with pytest.raises(values.NoFirstStep):
        values.call_first_step(Old())


def test_step_numbers_reach_both_diagrams(monkeypatch):
    """With a first step, every forward layer shows data and grad, every
    backward line (but fan-out parts) its gradient, and the strip the weights."""
    from mlpgen import render as R

    prog = build(ROOT / "specs" / "two_branch.yaml")
    net = prog.net
    rng = np.random.default_rng(0)
    step = values.Step(
        0.5,
        {
            n: values.stat(rng.normal(size=(4, net.features(n))))
            for n in ["x", *(ly.name for ly in net.layers)]
        },
        {
            ly.name: values.stat(rng.normal(size=(4, ly.out_features)))
            for ly in net.layers
        },
        {
            pi.state_name: values.stat(rng.normal(size=pi.param.shape))
            for pi in prog.params
        },
        {
            pi.state_name: values.stat(10.0**-i * np.ones(pi.param.shape))
            for i, pi in enumerate(prog.params)
        },
    )
    forward = R.forward_dot(prog, step)
    backward = R.backward_dot(prog, step)
    for layer in net.layers:
        s = step.tensors[layer.name]
        assert f"data {s.short()}" in forward, layer.name
        assert f"grad ‖·‖ {values.num(step.tensor_grads[layer.name].norm)}" in forward
    for line in prog.backward:
        stat = R.line_stat(prog, line, step)
        assert stat is not None or line.kind in ("fanout_part", "grad_intermediate")
        if stat is not None:
            assert R.grad_row(stat)[0] in backward
    assert "data L = 0.5" in backward and "‖∂L/∂W‖ at the first step" in backward
    weights = [pi.state_name for pi in prog.params if pi.param.name == "weight"]
    bars, _ = R.strip_bars([step.grads[w].norm for w in weights])
    for w, n in zip(weights, bars):
        assert (
            f'>{w}</font></td><td align="left"><font point-size="{R.SMALL}" color="{R.GRAD_EDGE}">{"▇" * n}<'
            in backward
        )


def test_strip_bars_are_logarithmic():
    from mlpgen.render import STRIP_BARS, strip_bars

    bars, per_char = strip_bars([1e-8, 1e-4, 1.0, 0.0])
    assert per_char == pytest.approx(8 / (STRIP_BARS - 1))
    assert bars == [1, 1 + round(4 / per_char), STRIP_BARS, 0]
    assert strip_bars([0.5, 0.5]) == ([1, 1], 1 / (STRIP_BARS - 1))


# ------------------------------------------------------------------ page


def test_intro_is_the_leading_comment():
    text = "# First line\n# goes on.\n#\n# Second.\nmlpgen: 1\n# not this\n"
    assert page.intro(text) == ["First line goes on.", "Second."]
    assert page.intro('{"name": 1}') == []


def test_spec_copy_points_at_the_data_copy(tmp_path):
    prog = build(ROOT / "specs" / "flowers_csv.yaml")
    name, text = page.spec_copy(prog)
    assert name == "flowers_csv.yaml"
    assert (
        "path: data.csv" in text and "data/flowers.csv" in text
    )  # the comment keeps it
    folder = compile_spec(ROOT / "specs" / "flowers_csv.yaml", tmp_path)
    # the commands on the page work from the page's folder
    r = subprocess.run(
        [sys.executable, "-m", "mlpgen", "check", "flowers_csv.yaml"],
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert "total parameters: 67" in r.stdout


def test_page_shows_spec_intro_and_warnings(compiled):
    folder = compiled(ROOT / "specs" / "spiral_dropout.yaml")
    text = (folder / "README.md").read_text()
    spec_text = (ROOT / "specs" / "spiral_dropout.yaml").read_text()
    assert (folder / "spiral_dropout.yaml").read_text() == spec_text
    assert (
        str(escape(spec_text.rstrip("\n"))) in text
    )  # shown whole, at the end, as HTML text
    first = page.intro(spec_text)[0]
    assert first.split()[0] in text.split("## The network")[0]
    assert "What `mlpgen check` warns about" in text
    assert "class weights with reduction mean" in text


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_notation_legend_is_complete(spec, compiled):
    """Every symbol the page's formulas use has its row in the legend, and each
    named constant its code constant."""
    prog = build(spec)
    text = (compiled(spec) / "README.md").read_text()
    legend = text.split("## Notation")[1].split("## The rules used")[0]
    for sym in notation.used(page.formula_texts(prog)):
        assert f"| `{sym.symbol.replace('|', chr(92) + '|')}` |" in legend, sym.symbol
    # every special character of a formula is explained by some row
    constants = notation.constants(prog, page._optimizer_constants(prog))
    explained = "".join(s.symbol + s.pattern for s in notation.SYMBOLS)
    explained += "".join(c.symbol for c in constants)
    for t in page.formula_texts(prog):
        for ch in set(t) - set("0123456789.,()[]+=−-/ '_:;<>|"):
            if not ch.isascii() and ch not in "²³ᵢ₁₂ₖ…≥±":
                assert ch in explained, (ch, t)
    for const in constants:
        assert f"`{const.code}`" in legend


def test_iverson_sums_and_constants_in_the_legend(compiled):
    spiral = (compiled(ROOT / "specs" / "spiral.yaml") / "README.md").read_text()
    for row in ("`[a > 0]`", "Iverson bracket", "`Σₙ a`", "`onehot(y)`", "`N`"):
        assert row in spiral, row
    weighted = (
        compiled(ROOT / "specs" / "spiral_dropout.yaml") / "README.md"
    ).read_text()
    assert (
        "| `w` | each class's weight in the loss (loss.weight) | `CLASS_WEIGHT` |"
        in weighted
    )
    binary = (compiled(ROOT / "specs" / "binary.yaml") / "README.md").read_text()
    assert (
        "| `pw` | the weight of the positive targets (loss.pos_weight) | `POS_WEIGHT` | `[5]` |"
        in binary
    )
    bce = (compiled(ROOT / "specs" / "sgd_nesterov.yaml") / "README.md").read_text()
    assert (
        "| `ε` | in the loss's gradient: torch's ε in ∂L/∂p" in bce
        and "`BCE_EPS`" in bce
    )
    assert "| `μ` | the momentum factor (in the update) | `MOMENTUM` |" in bce


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("folder", GALLERY, ids=[f.name for f in GALLERY])
def test_every_link_and_image_on_a_gallery_page_exists(folder):
    text = (folder / "README.md").read_text()
    assert "example.invalid" not in text
    targets = LINK.findall(text)
    assert "index.html" in targets and "forward.svg" in targets
    for target in targets:
        if target.startswith("#"):
            anchor = target[1:]
            assert re.search(rf"^#+ {anchor}\b", text, re.MULTILINE | re.IGNORECASE), (
                target
            )
            continue
        assert not re.match(r"[a-z]+:", target), f"{target}: a link out of the folder"
        assert (folder / target).is_file(), f"{folder.name}: {target} is missing"
    html = (folder / "index.html").read_text()
    assert (
        "http://" not in html.replace("http://www.w3.org", "")
        and "https://" not in html
    )


def test_plain_compile_page_embeds_no_missing_file(tmp_path):
    folder = compile_spec(ROOT / "specs" / "xor.yaml", tmp_path)
    text = (folder / "README.md").read_text()
    for target in LINK.findall(text):
        if not target.startswith("#"):
            assert (folder / target).is_file(), target
    assert "cd .. && mlpgen compile xor/xor.yaml -o . --plot" in text


# ------------------------------------------------------------------ lines


def _assigns(text: str, start: int, end: int, target: str) -> bool:
    block = "\n".join(text.splitlines()[start - 1 : end])
    return re.search(rf"^\s*{re.escape(target)} =", block, re.MULTILINE) is not None


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_line_map_finds_every_node_in_the_three_files(spec, compiled):
    prog = build(spec)
    folder = compiled(spec)
    texts = {f: (folder / f).read_text() for f in page.IMPLEMENTATIONS}
    nodes = page.line_map(prog, texts)
    for line in prog.forward:
        spans = nodes[line.layer]
        for f in page.IMPLEMENTATIONS:
            assert spans[f], (line.layer, f)
        for f in page.IMPLEMENTATIONS[:2]:
            text = texts[f].splitlines()
            blocks = [[t.strip() for t in text[a - 1 : b]] for a, b in spans[f]]
            (block,) = [b for b in blocks if f"# {line.comments[-1]}" in b]
            assert block[0].startswith("#"), block
            assert re.search(
                rf"^{re.escape(line.target.code)} =", "\n".join(block), re.MULTILINE
            )
        module = texts["torch_module.py"].splitlines()
        assert any(
            f"self.{line.layer}" in module[a - 1] or f"{line.layer} =" in module[a - 1]
            for a, _ in spans["torch_module.py"]
        )
    for line in prog.backward:
        spans = nodes[line.target.code]
        for f in page.IMPLEMENTATIONS[:2]:
            (a, b), *_ = spans[f]
            block = texts[f].splitlines()[a - 1 : b]
            assert block[0].strip().startswith("#"), (line.target.code, block)
            # every comment of the line (its formula, or the textbook's and
            # then the evaluated one) is in the node's block
            text = "\n".join(block)
            assert all(f"# {c}" in text for c in line.comments), line.comments
            assert f"# {math_text(line.target)} = " in text
            assert _assigns(texts[f], a, b, line.target.code), (line.target.code, f)
        assert any(
            "backward()" in texts["torch_module.py"].splitlines()[a - 1]
            for a, _ in spans["torch_module.py"]
        )
    for pi in prog.params:
        spans = nodes[f'params["{pi.state_name}"]']
        (a, b), *_ = spans["numpy_backprop.py"]
        assert f'"{pi.state_name}":' in "\n".join(
            texts["numpy_backprop.py"].splitlines()[a - 1 : b]
        )


def test_line_map_follows_the_text_not_fixed_positions(compiled):
    """Lines added above and between the functions move every range, and each
    range still holds the same lines."""
    prog = build(ROOT / "specs" / "residual.yaml")
    folder = compiled(ROOT / "specs" / "residual.yaml")
    texts = {f: (folder / f).read_text() for f in page.IMPLEMENTATIONS}
    shifted = {
        f: "# a note\n\n" + t.replace("\n\n\ndef ", "\n\n\n# more\ndef ")
        for f, t in texts.items()
    }
    before, after = page.line_map(prog, texts), page.line_map(prog, shifted)
    assert before.keys() == after.keys()
    for node, spans in before.items():
        for f in page.IMPLEMENTATIONS:
            old_lines, new_lines = texts[f].splitlines(), shifted[f].splitlines()
            assert len(after[node][f]) == len(spans[f]), (node, f)
            for (a, b), (c, d) in zip(spans[f], after[node][f]):
                assert c > a and old_lines[a - 1 : b] == new_lines[c - 1 : d], (node, f)


def test_explorer_data_is_inline_json_that_cannot_close_its_script(compiled):
    folder = compiled(ROOT / "specs" / "xor.yaml")
    html = (folder / "index.html").read_text()
    raw = html.split('<script type="application/json" id="data">')[1].split(
        "</script>"
    )[0]
    data = json.loads(raw)
    assert (
        data["code"]["numpy_backprop.py"] == (folder / "numpy_backprop.py").read_text()
    )
    assert {"fc1", "act2", "loss", "d_fc1", 'grads["fc1.weight"]'} <= set(data["nodes"])
    assert [n["id"] for n in data["graph"]["nodes"]] == [
        "x",
        "fc1",
        "act1",
        "fc2",
        "act2",
    ]
    assert (
        page.script_json({"a": "</script><!--"})
        == '{"a":"\\u003c/script\\u003e\\u003c!--"}'
    )


def test_page_without_first_step_has_no_numbers(monkeypatch, tmp_path):
    monkeypatch.setattr(values, "start_first_step", lambda *a: lambda: None)
    files = render(build(ROOT / "specs" / "xor.yaml"))
    assert (
        "data " not in files["forward.dot"]
        and "at the first step" not in files["README.md"]
    )
    assert Path(tmp_path).exists()


def test_the_first_step_in_a_child_process_is_the_step_run_here():
    """The compile runs the first step in a forked process (NumPy's import on
    another core): the Step that comes back through the pipe is the one the
    step gives in this process, number for number."""
    from mlpgen.emit import context, environment

    prog = build(ROOT / "specs" / "two_branch.yaml")
    text = environment().get_template("numpy_backprop.py.j2").render(context(prog))
    here = values.try_first_step(text)
    there = values.start_first_step(text)()
    assert here is not None and here == there
    assert here.loss > 0 and here.grads


def test_a_failing_first_step_in_the_child_is_noted_here(capsys):
    """The child prints nothing; its note comes back and is printed by the compile."""
    step = values.start_first_step("raise ValueError('broken on purpose')\n")()
    assert step is None
    err = capsys.readouterr().err
    assert "the first training step failed (ValueError: broken on purpose)" in err
