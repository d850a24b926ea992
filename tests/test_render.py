"""The diagrams: what the SVGs name, the gradient edges, escaping, determinism,
and compiling without Graphviz."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import graphviz
import pytest

from mlpgen import cli, render
from mlpgen.autodiff import loss_ctx, value
from mlpgen.compiler import MARKER, build, compile_spec, marker_text
from mlpgen.expr import Const, Sym, math_text, numpy_code
from mlpgen.ops import LOSSES

from .conftest import CHAIN12, ROOT, SPECS

SVG = "{http://www.w3.org/2000/svg}"
IDS = [p.stem for p in SPECS]

# A DAG with a skip connection (act1 feeds res and drop1: a fan-out), a concat
# of a layer and the input, dropout, and a description that would break any
# unescaped DOT or XML: quotes, a backslash, a newline, tags, braces, a pipe.
HOSTILE_DESCRIPTION = 'say "hi" \\ back\nslash <b>bold</b> } { | & ]]> it\'s'
FANOUT = {
    "name": "fanout",
    "description": HOSTILE_DESCRIPTION,
    "data": {"kind": "spiral", "n_per_class": 10, "classes": 3},
    "model": {
        "layers": [
            {"name": "Fc_1", "type": "linear", "out": 4},
            {"name": "act1", "type": "tanh"},
            {"name": "drop1", "type": "dropout", "p": 0.1},
            {"name": "fc2", "type": "linear", "out": 4, "inputs": ["drop1"]},
            {"name": "res", "type": "add", "inputs": ["fc2", "act1"]},
            {"name": "cat", "type": "concat", "inputs": ["res", "x"]},
            {"name": "L", "type": "linear", "out": 3, "bias": False},
        ]
    },
    "loss": {"type": "cross_entropy", "l2": {"coef": 0.001}},
    "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 2},
}


@pytest.fixture
def fanout_spec(tmp_path):
    path = tmp_path / "fanout.json"
    path.write_text(json.dumps(FANOUT))
    return path


def svg_texts(path) -> list[str]:
    """The visible text runs of an SVG, spaces normalised (not the <title> tooltips,
    which are node ids)."""
    root = ET.parse(path).getroot()
    return [
        " ".join(t.text.split())
        for t in root.iter(f"{SVG}text")
        if t.text and t.text.split()
    ]


def svg_edges(path) -> set[tuple[str, str]]:
    """(tail id, head id) of every edge drawn in an SVG. A parameter beside the
    trunk on the layer's right is drawn from the layer pointing back at it
    (``dir=back``): it counts as the parameter's edge into the layer."""
    root = ET.parse(path).getroot()
    edges = set()
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "edge":
            tail, head = g.find(f"{SVG}title").text.split("->")
            if head.startswith("params[") and not tail.startswith("params["):
                tail, head = head, tail
            edges.add((tail, head))
    return edges


def check_svgs(prog, folder):
    """Both SVGs name what they must, and the backward edges follow the derivation."""
    net = prog.net
    forward = svg_texts(folder / "forward.svg")
    names = [layer.name for layer in net.layers]
    params = [pi.state_name for pi in prog.params]
    missing = [n for n in ["x", "y", "loss", *names, *params] if n not in forward]
    assert not missing, f"forward.svg does not name {missing}"
    for layer in net.layers:  # each layer's type and output shape are on its node
        assert f"{layer.op.name} (N, {layer.out_features})" in forward, layer.name
    # every graph edge, every parameter feeding its layer, output and targets into the loss
    expected = {(a, b) for a, b in net.graph.edges}
    expected |= {(f'params["{pi.state_name}"]', pi.layer.name) for pi in prog.params}
    expected |= {(prog.output, "loss"), ("y", "loss")}
    weight = loss_ctx(net, value(prog.output)).weight  # class or positive weights
    if weight is not None:
        expected.add((weight.code, "loss"))
    assert svg_edges(folder / "forward.svg") == expected

    backward = svg_texts(folder / "backward.svg")
    targets = [math_text(line.target) for line in prog.backward]
    assert len(targets) == len(set(targets)) == len(prog.backward)
    missing = [t for t in targets if t not in backward]
    assert not missing, f"backward.svg does not name {missing}"
    edges = svg_edges(folder / "backward.svg")
    codes = {line.target.code for line in prog.backward}
    incoming = {
        code: {a for a, b in edges if b == code and a in codes} for code in codes
    }
    first, *rest = prog.backward
    assert ("loss", first.target.code) in edges
    for line in rest:
        # exactly the gradients its expression reads flow into it
        assert incoming[line.target.code] == line.expr.symbols() & codes, (
            line.target.code
        )
        # a rule's intermediate may read saved values only (a shared piece of a
        # custom activation's f′, such as Mish's exp(x)); every other line
        # reads a gradient
        if line.kind != "grad_intermediate" or line.expr.symbols() & codes:
            assert incoming[line.target.code], (
                f"{line.target.code} has no gradient flowing in"
            )
    for line in prog.backward:
        if line.kind == "fanout_sum":
            parts = {p.target.code for p in prog.backward if p.kind == "fanout_part"}
            assert len(incoming[line.target.code] & parts) >= 2, line.target.code
    # the forward values, parameters and loss constants (bce's ε) the rules
    # reuse are drawn, with dashed edges
    constants = [sym.code for sym, _, _ in LOSSES[net.spec.loss.type].constants]
    for line in prog.backward:
        for name in ["x", *names, *(f'params["{p}"]' for p in params), *constants]:
            if name in line.expr.symbols():
                assert (name, line.target.code) in edges, (name, line.target.code)


@pytest.mark.dot
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gallery_svgs_name_layers_parameters_and_gradients(spec, compiled):
    check_svgs(build(spec), compiled(spec))


def test_math_text_reads_like_the_textbook():
    x = Sym("x")
    # a named constant prints its name; code keeps the exact value
    e = 0.5 * x * (1 + Const(0.7978845608028654, "√(2/π)") * x**3)
    assert math_text(e) == "0.5 · x ⊙ (1 + √(2/π) · x³)"
    assert (
        numpy_code(e) == "0.5 * x * (1 + 0.7978845608028654 * x ** 3)"
    )  # ruff formats
    # a constant factor reads first, and minus is the minus sign
    assert math_text(x * 0.5) == "0.5 · x"
    assert math_text(-0.5 * x**2) == "−0.5 · x²"
    assert numpy_code(x * 0.5) == "x * 0.5"


@pytest.mark.dot
def test_fanout_and_hostile_description_render(fanout_spec, tmp_path):
    folder = compile_spec(fanout_spec, tmp_path / "out")
    prog = build(fanout_spec)
    kinds = [line.kind for line in prog.backward]
    assert kinds.count("fanout_part") == 2 and kinds.count("fanout_sum") == 1
    check_svgs(prog, folder)
    # the description arrives in both titles as literal text, every character of it
    flat = HOSTILE_DESCRIPTION.replace("\n", " ")
    for name in ("forward.svg", "backward.svg"):
        title = " ".join(svg_texts(folder / name)[1:3])
        assert flat in title, title
    for name in ("forward.dot", "backward.dot"):
        text = (folder / name).read_text()
        assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text
    # fan-out parts feed the sum, concat edges name their columns, the mask is drawn
    edges = svg_edges(folder / "backward.svg")
    assert {("d_act1_from_res", "d_act1"), ("d_act1_from_drop1", "d_act1")} <= edges
    assert ("drop1_mask", "d_act1_from_drop1") in edges
    forward = svg_texts(folder / "forward.svg")
    assert "(N, 4) → cols 0:4" in forward and "(N, 2) → cols 4:6" in forward


@pytest.mark.dot
def test_escaping_helpers_make_valid_svg(tmp_path):
    """Ids with quotes and DOT keywords, labels with markup and backslashes,
    through the graphviz package and the real dot."""
    g = graphviz.Digraph(render.node_id('t"x'))
    g.attr(label=render.label(render.escape('a\\b "q" <i> {|}')))
    g.node(
        render.node_id('params["we.ird"]'),
        render.label(render.bold('<&>"\\'), render.small("x\ny")),
    )
    g.edge(render.node_id('params["we.ird"]'), render.node_id("node"))
    path = tmp_path / "h.svg"
    path.write_text(g.pipe(format="svg", encoding="utf-8"))
    texts = svg_texts(path)
    assert texts == ['a\\b "q" <i> {|}', '<&>"\\', "x y", "node"]
    titles = [t.text for t in ET.parse(path).getroot().iter(f"{SVG}title")]
    assert titles == ['t"x', 'params["we.ird"]', "node", 'params["we.ird"]->node']
    with pytest.raises(ValueError):
        render.node_id("a\\b")


def test_dot_text_is_deterministic_across_processes(fanout_spec):
    """Same spec, different hash seeds: byte-identical DOT (no set order leaks in)."""
    code = (
        "import sys; from mlpgen.compiler import build; from mlpgen import render; "
        "p = build(sys.argv[1]); sys.stdout.write(render.forward_dot(p) + render.backward_dot(p))"
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", code, str(fanout_spec)],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert outs[0] == outs[1] and b"digraph" in outs[0]


@pytest.fixture
def no_dot(monkeypatch):
    """Graphviz absent; the once-per-process note can be printed again."""
    monkeypatch.setattr(render, "find_dot", lambda: None)
    render.note.cache_clear()
    yield
    render.note.cache_clear()


def test_compile_without_dot_writes_dot_files_and_one_note(no_dot, capsys, tmp_path):
    specs = [ROOT / "specs" / "xor.yaml", ROOT / "specs" / "spiral.yaml"]
    assert cli.main(["compile", *map(str, specs), "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [render.MISSING_DOT]
    for name in ("xor", "spiral"):
        files = sorted(p.name for p in (tmp_path / name).iterdir())
        assert (
            "forward.dot" in files and "backward.dot" in files and "README.md" in files
        )
        assert not any(f.endswith(".svg") for f in files)
        assert (
            (tmp_path / name / "forward.dot")
            .read_text()
            .startswith("digraph forward {")
        )


def test_render_without_dot_removes_stale_svgs(no_dot, capsys, tmp_path):
    (tmp_path / "forward.svg").write_text("<svg>stale</svg>")  # an earlier render's
    (tmp_path / MARKER).write_text(marker_text(["forward.svg"]))
    (tmp_path / "keep.txt").write_text("mine")
    assert (
        cli.main(["render", str(ROOT / "specs" / "xor.yaml"), "-o", str(tmp_path)]) == 0
    )
    assert capsys.readouterr().err.splitlines() == [render.MISSING_DOT]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        MARKER,
        "backward.dot",
        "forward.dot",
        "keep.txt",
    ]


def test_failing_dot_is_a_note_not_a_traceback(monkeypatch, capsys, tmp_path):
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'dot: out of ink' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    render.note.cache_clear()
    try:
        files = render.diagram_files(build(ROOT / "specs" / "xor.yaml"))
    finally:
        render.note.cache_clear()
    assert sorted(files) == ["backward.dot", "forward.dot"]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        "note: Graphviz 'dot' failed on forward.dot (dot: out of ink)"
    )


@pytest.mark.dot
def test_render_command_writes_four_files_and_keeps_the_rest(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    spec = ROOT / "specs" / "xor.yaml"
    assert cli.main(["render", str(spec), "-o", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        MARKER,
        "backward.dot",
        "backward.svg",
        "forward.dot",
        "forward.svg",
        "keep.txt",
    ]
    assert "forward.svg" in capsys.readouterr().out
    check_svgs(build(spec), tmp_path)


def test_render_command_bad_spec_exit_2_nothing_written(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({**FANOUT, "model": {"layers": [{"type": "linear", "out": -3}]}})
    )
    out = tmp_path / "out"
    assert cli.main(["render", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {bad}: model.layers[0].out:") and "Traceback" not in err
    )
    assert not out.exists()


# ------------------------------------------------------------- at scale, with numbers


def svg_box(path) -> tuple[float, float, float]:
    """(width in points, smallest font size in points, the drawing's scale)."""
    root = ET.parse(path).getroot()
    width = float(root.get("width").removesuffix("pt"))
    sizes = [float(t.get("font-size")) for t in root.iter(f"{SVG}text")]
    graph = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "graph")
    scale = float(graph.get("transform").split("scale(")[1].split()[0])
    return width, min(sizes), scale


def node_x(path, node_id: str) -> float:
    """The x of a node's centre in an SVG, from its outline."""
    root = ET.parse(path).getroot()
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node" and g.find(f"{SVG}title").text == node_id:
            shapes = [*g.iter(f"{SVG}path"), *g.iter(f"{SVG}polygon")]
            if not shapes:  # an ellipse
                return float(next(g.iter(f"{SVG}ellipse")).get("cx"))
            shape = shapes[0]
            numbers = [
                float(v)
                for v in re.findall(r"-?[0-9.]+", shape.get("d") or shape.get("points"))
            ]
            xs = numbers[0::2]
            return (min(xs) + max(xs)) / 2
    raise KeyError(node_id)


@pytest.mark.dot
@pytest.mark.parametrize("spec", [*SPECS, CHAIN12], ids=[*IDS, "chain12"])
def test_diagrams_fit_a_readme_column(spec, compiled):
    """At most 1100 pt wide, drawn at scale 1: in a 900 px column every text
    run, 10 pt and up, shows at 9 px or more."""
    folder = compiled(spec)
    for name in ("forward.svg", "backward.svg"):
        width, smallest, scale = svg_box(folder / name)
        assert width <= 1100 and scale == 1.0, (name, width, scale)
        assert smallest >= render.SMALL
        assert smallest * 900 / width >= 9, (name, width, smallest)


@pytest.mark.dot
@pytest.mark.parametrize("spec", [*SPECS, CHAIN12], ids=[*IDS, "chain12"])
def test_every_diagram_shows_the_first_step_and_a_legend(spec, compiled):
    prog = build(spec)
    folder = compiled(spec)
    forward = svg_texts(folder / "forward.svg")
    backward = svg_texts(folder / "backward.svg")
    for texts in (forward, backward):
        assert "Legend" in texts
        assert (
            "numbers: the first training step (first batch, before the update)" in texts
        )
    values = [
        t for t in forward if t.startswith("data ") and not t.startswith("data L = ")
    ]
    assert len(values) == 1 + len(prog.net.layers)  # x and each layer
    grads = [t for t in backward if t.startswith("grad ")]
    counted = [
        line
        for line in prog.backward
        if line.kind not in ("fanout_part", "grad_intermediate")
    ]
    assert len(grads) == len(counted)
    assert any(t.startswith("data L = ") for t in backward)
    assert "‖∂L/∂W‖ at the first step" in backward


@pytest.mark.dot
def test_branches_keep_the_spec_order(compiled):
    two = compiled(ROOT / "specs" / "two_branch.yaml")
    assert node_x(two / "forward.svg", "left_fc") < node_x(
        two / "forward.svg", "right_fc"
    )
    assert node_x(two / "backward.svg", "d_left") < node_x(
        two / "backward.svg", "d_right"
    )
    three = compiled(ROOT / "specs" / "three_branch.yaml")
    xs = [node_x(three / "forward.svg", n) for n in ("smooth", "sharp", "gate")]
    assert xs == sorted(xs)


@pytest.mark.dot
def test_a_deep_chain_is_a_column_with_its_repeats_framed(compiled):
    folder = compiled(CHAIN12)
    texts = svg_texts(folder / "forward.svg")
    assert (
        "10 blocks built alike (fc2 … act11): linear (N, 32) → sigmoid (N, 32)" in texts
    )
    # the trunk is one straight column: every layer at the same x
    xs = {round(node_x(folder / "forward.svg", f"act{i}")) for i in range(1, 12)}
    assert len(xs) == 1
    # the strip shows the vanishing gradient: fc1's weight gradient far below fc12's
    backward = svg_texts(folder / "backward.svg")
    strip = backward[backward.index("‖∂L/∂W‖ at the first step") :]
    norm = {
        strip[i]: float(strip[i + 2].replace("−", "-"))
        for i in range(len(strip) - 2)
        if strip[i].endswith(".weight")
    }
    assert norm["fc1.weight"] < 1e-6 * norm["fc12.weight"]
    page = (folder / "README.md").read_text()
    assert "vanishing gradients" in page and "fc1.weight" in page
