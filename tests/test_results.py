"""Results that teach (results.py): the trained NumPy implementation evaluated
per epoch, its decision boundary, confusion matrix and prediction table, and
the figures drawn from them, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from mlpgen import results
from mlpgen.compiler import build, render

from .conftest import ROOT, load_module

pytestmark = pytest.mark.slow  # each trains a network (a few seconds)


def trained(name: str):
    prog = build(ROOT / "specs" / f"{name}.yaml")
    files = render(prog)
    return (
        prog,
        files,
        results.train(prog, files["numpy_backprop.py"], prog.net.data.file),
    )


def test_xor_learns_and_gets_a_prediction_table(tmp_path):
    _, files, r = trained("xor")
    # the same losses as the script's own run
    path = tmp_path / "numpy_backprop.py"
    path.write_text(files["numpy_backprop.py"])
    dump = tmp_path / "run.npz"
    load_module(path, "xor_results").main(["--quiet", "--dump", str(dump)])
    with np.load(dump) as archive:
        assert r.losses == archive["losses"].tolist()
    assert r.epochs[-1] == 5000 and len(r.epochs) == results.MAX_POINTS
    assert r.history["train loss"][-1] == pytest.approx(r.losses[-1], rel=0.05)
    assert r.final["train"]["loss"] < 0.01
    assert [row["x"] for row in r.table] == ["0, 0", "0, 1", "1, 0", "1, 1"]
    outs = [float(row["out"].replace("−", "-")) for row in r.table]
    assert outs[0] < 0.2 and outs[1] > 0.8 and outs[2] > 0.8 and outs[3] < 0.2
    _, _, values, kind = r.grid
    assert kind == "value" and values.shape == (results.GRID, results.GRID)
    # the corners of the grid are the four XOR points' neighbourhoods
    assert values[0, 0] < 0.5 < values[0, -1] and values[-1, 0] > 0.5 > values[-1, -1]
    assert r.confusion is None and r.figure_names == ["curves.png", "boundary.png"]


def test_classifier_gets_per_class_accuracy():
    _, _, r = trained("spiral")
    part, matrix = r.confusion
    assert part == "val" and matrix.sum() == 45  # 15 % of 300
    assert r.final["val"]["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert r.history["val accuracy"][-1] == r.final["val"]["accuracy"]
    page = results.page(r)
    assert page["metrics"] == ["loss", "accuracy"]
    assert [row["n"] for row in page["per_class"]["rows"]] == list(matrix.sum(axis=1))
    assert r.grid[3] == "classes" and set(np.unique(r.grid[2])) <= {0, 1, 2}
    assert r.table is None


def test_figures_are_deterministic_pngs():
    _, _, r = trained("xor")
    first = results.figures(r)
    again = results.figures(r)
    assert sorted(first) == ["boundary.png", "curves.png"]
    for name, png in first.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == again[name], name
        assert b"Software" not in png


@pytest.mark.parametrize("name", ["xor", "spiral", "three_branch"])
def test_planned_figures_match_what_is_drawn(name):
    prog, _, r = trained(name)
    assert results.planned_figures(prog) == ["loss.png", *r.figure_names]


def test_regression_plans_no_boundary():
    prog = build(ROOT / "specs" / "regression.yaml")  # 1000 inputs, 10 outputs
    assert results.planned_figures(prog) == ["loss.png", "curves.png"]


@pytest.mark.slow
def test_the_plot_cache_reuses_a_training_only_when_the_code_is_the_same(
    tmp_path, monkeypatch
):
    """MLPGEN_PLOT_CACHE (opt-in): a second compile --plot of the same
    implementations trains nothing and writes the same bytes; a change of
    comments keeps the entry, a change of code does not."""
    from mlpgen import compiler
    from mlpgen import results as res

    monkeypatch.setenv("MLPGEN_PLOT_CACHE", str(tmp_path / "cache"))
    prog = compiler.build(ROOT / "specs" / "xor.yaml")
    first = compiler.render(prog, plot=True)
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(res, "train", no_training)
    assert compiler.render(prog, plot=True) == first
    texts = {n: first[n] for n in compiler.CODE[:3]}
    commented = {
        **texts,
        "numpy_backprop.py": "# a note\n" + texts["numpy_backprop.py"],
    }
    changed = {
        **texts,
        "numpy_backprop.py": texts["numpy_backprop.py"].replace("LR = 0.6", "LR = 0.5"),
    }
    assert "LR = 0.6" in texts["numpy_backprop.py"]
    key = compiler._PlotCache(texts, None, True).key
    assert compiler._PlotCache(commented, None, True).key == key
    assert compiler._PlotCache(changed, None, True).key != key
    monkeypatch.delenv("MLPGEN_PLOT_CACHE")
    assert compiler._PlotCache(texts, None, True).get() is None  # off unless asked


def test_the_page_says_where_early_stopping_stopped_and_which_epoch_it_kept(
    tmp_path,
):
    """sklearn_mlp stops on a plateau of its val accuracy: the page gives the
    epoch it stopped at and the best epoch, replayed from the dump's history
    by the generated code's rule, and the curves mark the restored epoch."""
    prog, files, r = trained("sklearn_mlp")
    path = tmp_path / "numpy_backprop.py"
    path.write_text(files["numpy_backprop.py"])
    dump = tmp_path / "run.npz"
    load_module(path, "sklearn_mlp_results").main(["--quiet", "--dump", str(dump)])
    with np.load(dump) as archive:
        history = archive["history/val_accuracy"].tolist()
    stop = r.stopping
    assert stop["ran"] == len(history) < 200 and stop["stopped"]
    # the generated loop stops PATIENCE epochs after its best one
    assert stop["best_epoch"] == len(history) - 10
    assert history[stop["best_epoch"] - 1] == max(history)
    assert history.index(max(history)) == stop["best_epoch"] - 1  # the first best
    page = render(prog, plot=True, draw=False)["README.md"]
    assert (
        f"it stopped after epoch {stop['ran']} of at most 200, the val accuracy "
        "not having\nimproved by more than 0.0001 for 10 epochs in a row."
    ) in page
    assert f"came at epoch {stop['best_epoch']}, whose parameters are restored" in page
    # the Run section's "last progress line" is true of a run that stops early
    assert (
        "the line of the epoch it stopped at,\nfollowed by `early stopping: …`" in page
    )
    # a run that never stops says so
    _, _, solver = trained("cs231n_solver")
    assert solver.stopping["ran"] == 60 and not solver.stopping["stopped"]
