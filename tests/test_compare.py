"""mlpgen compare, and the loss-curve figures of run, crosstest and compare."""

from __future__ import annotations

import json

import pytest

from mlpgen import compare, crosstest
from mlpgen.spec import load_spec, parse_spec

from .conftest import ROOT
from .test_cli import mlpgen

XOR = ROOT / "specs" / "xor.yaml"
HANDROLLED = ROOT / "specs" / "xor_handrolled.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def canonical(path):
    return compare.canonical(load_spec(path))


def test_the_handrolled_xor_differs_from_xor_in_five_keys():
    diffs = compare.differences(canonical(HANDROLLED), canonical(XOR))
    assert [d.text() for d in diffs] == [
        "model.layers[0].init: uniform(low=0.0, high=1.0) -> torch_default",
        "model.layers[2].init: uniform(low=0.0, high=1.0) -> torch_default",
        "loss.reduction: sum -> mean",
        "loss.scale: 0.5 -> 1.0",
        "train.optimizer.lr: 0.3 -> 0.6",
    ]
    assert diffs[3].text(reverted=True) == "loss.scale: 1.0 -> 0.5"


def test_reverting_every_difference_gives_a_back():
    a, b = canonical(HANDROLLED), canonical(XOR)
    diffs = compare.differences(a, b)
    back = compare.reverted(b, diffs)
    assert b == canonical(XOR)  # reverted() copies
    spec = parse_spec(compare.as_spec_input(back), "back", ROOT / "specs")
    assert compare.differences(a, compare.canonical(spec)) == []


def test_a_new_type_makes_its_whole_mapping_one_difference():
    a, b = canonical(XOR), canonical(XOR)
    b["train"]["optimizer"] = {"type": "adam", "lr": 0.6, "betas": [0.9, 0.999]}
    b["model"]["layers"] = b["model"]["layers"][:3]
    diffs = compare.differences(a, b)
    assert [d.where for d in diffs] == ["model.layers", "train.optimizer"]
    assert diffs[0].text() == (
        "model.layers: [fc1 linear, act1 sigmoid, fc2 linear, act2 sigmoid]"
        " -> [fc1 linear, act1 sigmoid, fc2 linear]"
    )
    assert diffs[1].text().startswith("train.optimizer: sgd(lr=0.6, momentum=0.0")
    assert diffs[1].text().endswith("-> adam(lr=0.6, betas=[0.9, 0.999])")


def test_a_run_is_measured_with_a_s_loss(tmp_path):
    """½·Σ(ŷ − y)² of 4 rows is 2 × mean((ŷ − y)²): the yardstick converts exactly."""
    trainer = compare.Trainer(tmp_path)
    a = trainer.train(canonical(HANDROLLED), "a", str(ROOT / "specs"))
    b = trainer.train(canonical(XOR), "b", str(ROOT / "specs"))
    own = compare.final_loss(b.module, b)
    assert compare.final_loss(a.module, b) == pytest.approx(2 * own, rel=1e-12)
    # the generated script's own report of the same number: "train  loss 0.003220"
    assert round(own, 6) == 0.003220
    assert len(a.losses) == len(b.losses) == 5000


@pytest.mark.slow
def test_compare_explains_the_handrolled_xor(tmp_path):
    figure = tmp_path / "compare.png"
    r = mlpgen("compare", HANDROLLED, XOR, "--plot", figure)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        "  B xor              0.00643903    gap B − A = +0.000544149 (9% of A)" in lines
    )
    assert "        A 0.3·2·0.5 = 0.3, B 0.6·2·0.25 = 0.3: the same step" in lines
    rows = lines[lines.index("reverted together:") + 1 :][:2]
    assert rows[0].split()[:2] == ["100%", "0.005895"]
    assert rows[1].split()[:2] == ["0%", "0.006439"]
    assert (
        "explained by model.layers[0].init + model.layers[2].init: "
        "reverting them together closes 100% of the gap"
    ) in lines
    assert figure.read_bytes().startswith(PNG)


def test_compare_of_a_spec_with_itself_trains_nothing():
    r = mlpgen("compare", XOR, XOR)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "no differences that change training"


def test_compare_reports_both_bad_specs_with_status_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad"}))
    r = mlpgen("compare", bad, tmp_path / "missing.yaml")
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert f"error: {bad}: data: required key missing" in lines
    assert any(
        line.startswith(f"error: {tmp_path / 'missing.yaml'}: ") for line in lines
    )


def test_run_prints_the_report_and_plots_the_losses(tmp_path):
    figure = tmp_path / "run.png"
    r = mlpgen("run", XOR, "--epochs", "100", "--plot", figure)
    assert r.returncode == 0, r.stderr
    # stderr is no terminal here: no bar, and no progress lines on stdout
    assert r.stdout.splitlines() == [
        "after the last update, in evaluation mode:",
        "train  loss 0.249709",
        f"wrote {figure}",
    ]
    assert figure.read_bytes().startswith(PNG)


def test_progress_lines_are_recognised():
    m = crosstest.PROGRESS.match("epoch  500/5000  loss 0.246620\n")
    assert (m[1], m[2], m[3]) == ("500", "5000", "0.246620")
    assert crosstest.PROGRESS.match("train  loss 0.003220") is None


def test_run_returns_1_when_the_script_fails(tmp_path, monkeypatch, capsys):
    real = crosstest.compiled

    def broken(path):
        prog, tmp, folder = real(path)
        (folder / "numpy_backprop.py").write_text("raise SystemExit(3)\n")
        return prog, tmp, folder

    monkeypatch.setattr(crosstest, "compiled", broken)
    assert crosstest.run_one(XOR, "numpy_backprop", epochs=1) == 1
    assert "numpy_backprop.py exited with status 3" in capsys.readouterr().err


def test_plot_options_are_checked_before_training(tmp_path):
    r = mlpgen("run", XOR, "--plot", tmp_path / "no" / "such" / "run.png")
    assert r.returncode == 2
    assert "no folder" in r.stderr
    r = mlpgen("crosstest", XOR, "--plot", tmp_path / "curves.txt")
    assert r.returncode == 2
    assert "must end in .png, .svg or .pdf" in r.stderr


@pytest.mark.slow
def test_crosstest_plots_the_three_curves(tmp_path):
    figure = tmp_path / "parity.png"
    r = mlpgen("crosstest", XOR, "--epochs", "20", "--plot", figure)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["agree", f"wrote {figure}"]
    assert figure.read_bytes().startswith(PNG)
