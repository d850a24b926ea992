"""The structured data kinds that the gallery trains on instead of pure noise:
``blobs`` (Gaussian clusters) and ``teacher`` (targets of a fixed random
network). Each is checked against its documented recipe, recomputed here from
the same random stream, and for what makes it useful: separable clusters, and
targets that a network can fit down to the noise."""

from __future__ import annotations

import numpy as np
import pytest

from mlpgen.compiler import compile_spec
from mlpgen.spec import SpecError, parse_spec

from .conftest import ROOT, load_module


def spec_with(data: dict, loss: str, out: int, features: int) -> dict:
    return {
        "mlpgen": 1,
        "name": "synthetic",
        "seed": 3,
        "data": data,
        "model": {
            "input": features,
            "layers": [{"name": "fc", "type": "linear", "out": out}],
        },
        "loss": {"type": loss},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
    }


def load(tmp_path, spec: dict):
    path = tmp_path / "synthetic.json"
    import json

    path.write_text(json.dumps(spec))
    folder = compile_spec(path, tmp_path / "out")
    return load_module(
        folder / "numpy_backprop.py", f"synthetic_{id(spec)}"
    ).load_data()


def test_blobs_follow_their_recipe(tmp_path):
    data = {
        "kind": "blobs",
        "n": 103,
        "classes": 4,
        "features": 3,
        "spread": 0.5,
        "box": 5,
    }
    x, y = load(tmp_path, spec_with(data, "cross_entropy", 4, 3))["train"]
    rng = np.random.default_rng([3, 0])
    centres = rng.uniform(-5, 5, (4, 3))
    labels = np.arange(103) % 4
    expected = centres[labels] + 0.5 * rng.standard_normal((103, 3))
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, labels)
    assert np.bincount(y).tolist() == [26, 26, 26, 25]  # as even as 103 allows
    # every point lies nearer its own centre than any other (well separated here)
    nearest = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.95


def test_teacher_targets_follow_their_recipe(tmp_path):
    data = {
        "kind": "teacher",
        "n": 50,
        "features": 4,
        "outputs": 2,
        "hidden": 8,
        "noise": 0.2,
    }
    x, y = load(tmp_path, spec_with(data, "mse", 2, 4))["train"]
    rng = np.random.default_rng([3, 0])
    x0 = rng.standard_normal((50, 4))
    w1 = rng.standard_normal((4, 8)) / np.sqrt(4)
    w2 = rng.standard_normal((8, 2)) / np.sqrt(8)
    clean = np.tanh(x0 @ w1) @ w2
    noise = rng.standard_normal((50, 2))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_allclose(y, clean + 0.2 * noise, rtol=0, atol=1e-15)
    # the signal dominates the noise: most of y's variance is the teacher's
    assert clean.var() > 0.2 and ((y - clean) ** 2).mean() == pytest.approx(
        0.04, rel=0.3
    )


@pytest.mark.parametrize(
    ("data", "loss", "where", "says"),
    [
        (
            {"kind": "blobs", "n": 10, "classes": 3},
            "hinge",
            "data.classes",
            "hinge takes two classes",
        ),
        (
            {"kind": "teacher", "n": 10, "features": 2},
            "cross_entropy",
            "data.kind",
            "float targets",
        ),
        (
            {"kind": "blobs", "n": 10, "classes": 2, "spread": 0},
            "cross_entropy",
            "data.spread",
            "> 0",
        ),
        (
            {"kind": "teacher", "n": 10, "features": 2, "noise": -1},
            "mse",
            "data.noise",
            ">= 0",
        ),
    ],
)
def test_blobs_and_teacher_refuse_what_cannot_work(tmp_path, data, loss, where, says):
    from mlpgen.data import describe

    spec = spec_with(data, loss, 2, 2)
    with pytest.raises(SpecError) as e:
        describe(parse_spec(spec, "synthetic.json", tmp_path))
    text = str(e.value)
    assert where in text and says in text, text


def test_the_gallery_trains_on_structure_not_noise():
    """Only the two specs that reproduce the PyTorch tutorial's random data keep it."""
    noise = sorted(
        p.stem
        for p in (ROOT / "specs").glob("*.yaml")
        if "kind: random" in p.read_text()
    )
    assert noise == ["regression", "regression_adam"]
