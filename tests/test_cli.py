"""The mlpgen command: exit statuses, error lines, determinism, no torch on the compile path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import ROOT

XOR = ROOT / "specs" / "xor.yaml"


def mlpgen(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "mlpgen", *map(str, args)],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD = """\
name: bad
data: {kind: inline, x: [[0, 0], [1, 1]], y: [[0], [1]]}
model:
  layers:
    - {type: linear, out: 4}
    - {type: relu}
    - {type: linear, out: -3}
loss: {type: mse}
train: {optimizer: {type: sgd, lr: 0}, epochs: 10}
"""


def test_bad_spec_one_line_per_problem_exit_2_nothing_written(tmp_path):
    spec = write(tmp_path, "bad.yaml", BAD)
    out = tmp_path / "out"
    r = mlpgen("compile", spec, "-o", out)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"error: {spec}: model.layers[2].out: must be a positive integer, got -3",
        f"error: {spec}: train.optimizer.lr: must be > 0, got 0",
    ]
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_one_bad_spec_among_good_writes_nothing(tmp_path):
    spec = write(tmp_path, "bad.yaml", BAD)
    out = tmp_path / "out"
    r = mlpgen("compile", XOR, spec, "-o", out)
    assert r.returncode == 2
    assert not out.exists()


@pytest.mark.parametrize(
    "text, line",
    [
        ("name: [", "line 1, column 8: could not parse YAML"),
        ("name: x\nname: y\n", "duplicate key 'name'"),
        (
            "!!python/object/apply:os.system ['echo hacked']\n",
            "tags that construct objects",
        ),
        ("- 1\n- 2\n", "the spec must be a mapping"),
    ],
)
def test_unparsable_specs(tmp_path, text, line):
    spec = write(tmp_path, "s.yaml", text)
    r = mlpgen("check", spec)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1
    assert line in r.stderr
    assert "hacked" not in r.stdout


def test_forward_reference_cycle_and_shape_mismatch(tmp_path):
    spec = write(
        tmp_path,
        "dag.yaml",
        """\
name: dag
data: {kind: random, n: 8, outputs: 2}
model:
  input: 3
  layers:
    - {name: a, type: linear, out: 4, inputs: [b]}
    - {name: b, type: linear, out: 5, inputs: [b]}
    - {name: c, type: linear, out: 2, inputs: [x]}
    - {name: s, type: add, inputs: [c, x]}
loss: {type: mse}
train: {optimizer: {type: sgd, lr: 0.1}, epochs: 1}
""",
    )
    r = mlpgen("check", spec)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"error: {spec}: model.layers[0].inputs[0]: 'b' is defined later: inputs must name earlier layers",
        f"error: {spec}: model.layers[1].inputs[0]: 'b' is the layer itself: a cycle",
        f"error: {spec}: model.layers[3].inputs: add needs inputs of one shape, got features [2, 3]",
    ]


def test_check_prints_layer_table():
    r = mlpgen("check", XOR)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "xor: 2-5-1 sigmoid MLP on XOR, MSE loss, plain SGD"
    assert "fc1    linear   x       (N, 5)  fc1.weight (5, 2)     10" in lines
    assert "fc2    linear   act1    (N, 1)  fc2.weight (1, 5)      5" in lines
    assert "total parameters: 15" in lines


def test_compile_is_deterministic_and_independent_of_cwd(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert mlpgen("compile", XOR, "-o", a).returncode == 0
    (tmp_path / "elsewhere").mkdir()
    r = mlpgen(
        "compile",
        os.path.relpath(XOR, tmp_path / "elsewhere"),
        "-o",
        b,
        cwd=tmp_path / "elsewhere",
    )
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (a / "xor").iterdir())
    assert "numpy_backprop.py" in names
    assert names == sorted(p.name for p in (b / "xor").iterdir())
    for name in names:
        assert (a / "xor" / name).read_bytes() == (b / "xor" / name).read_bytes(), name


def test_compile_path_never_imports_torch(tmp_path):
    code = (
        "import sys; from mlpgen.cli import main; "
        f"main(['compile', {str(XOR)!r}, '-o', {str(tmp_path)!r}]); "
        f"main(['check', {str(XOR)!r}]); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr


def test_python_dash_m_and_console_script_agree():
    r = mlpgen("check", XOR)
    assert r.returncode == 0
    exe = os.path.join(os.path.dirname(sys.executable), "mlpgen")
    if os.path.exists(exe):
        r2 = subprocess.run(
            [exe, "check", str(XOR)], check=False, capture_output=True, text=True
        )
        assert r2.stdout == r.stdout


@pytest.mark.slow
def test_crosstest_command_agrees():
    r = mlpgen("crosstest", XOR, "--epochs", "50")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "agree"
    assert "xor: 50 steps, float64" in r.stdout


def test_generated_script_rejects_bad_arguments(compiled):
    folder = compiled(XOR)
    r = subprocess.run(
        [sys.executable, str(folder / "numpy_backprop.py"), "--epochs", "0"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "argument --epochs: must be a positive integer, got 0" in r.stderr


@pytest.mark.slow
def test_compile_plot_adds_the_figures_and_nothing_else(tmp_path):
    spec = write(
        tmp_path,
        "tiny.yaml",
        XOR.read_text()
        .replace("name: xor", "name: tiny")
        .replace("epochs: 5000", "epochs: 30"),
    )
    assert mlpgen("compile", spec, "-o", tmp_path / "plain").returncode == 0
    r = mlpgen("compile", spec, "-o", tmp_path / "plotted", "--plot")
    assert r.returncode == 0, r.stderr
    plain, plotted = tmp_path / "plain" / "tiny", tmp_path / "plotted" / "tiny"
    figures = ["boundary.png", "curves.png", "loss.png"]  # 2-D input, no classes
    assert sorted(p.name for p in plotted.iterdir()) == sorted(
        [p.name for p in plain.iterdir()] + figures
    )
    for f in plain.iterdir():
        if f.name not in ("README.md", ".mlpgen"):
            assert f.read_bytes() == (plotted / f.name).read_bytes(), f.name
    for name in figures:
        assert (plotted / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # the marker lists what each compile wrote
    def listed(folder):
        lines = (folder / ".mlpgen").read_text().splitlines()
        return [line for line in lines if not line.startswith("#")]

    assert listed(plotted) == sorted([*listed(plain), *figures])
    assert "numpy_backprop.py" in listed(plain)
    # the plain page says how to get the figures and embeds none; the plotted one embeds them
    page = (plain / "README.md").read_text()
    assert ".png" not in page and "--plot" in page
    page = (plotted / "README.md").read_text()
    for name in figures:
        assert f"]({name})" in page, name
