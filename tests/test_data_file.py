"""Data kind ``file``: what the compiler learns from a .csv or .npz, the errors
it reports, and the copy that makes the generated scripts standalone."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mlpgen.compiler import build, render, write_atomically
from mlpgen.data import describe
from mlpgen.spec import SpecError, load_spec

from .conftest import ROOT, load_module

FLOWERS = ROOT / "specs" / "data" / "flowers.csv"


def write_spec(
    folder, data: dict, loss: str = "cross_entropy", outputs: int = 3, **train
):
    """A spec in ``folder`` reading the given data; returns its path."""
    spec = {
        "name": "from_file",
        "data": {"kind": "file", **data},
        "model": {"layers": [{"type": "linear", "out": outputs}]},
        "loss": {"type": loss},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 3, **train},
    }
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def read_csv(path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r]
    return rows[0], np.array(rows[1:], dtype=np.float64)


# ------------------------------------------------------------ what describe learns


def test_csv_classes_features_and_rows(tmp_path):
    shutil.copy(FLOWERS, tmp_path / "flowers.csv")
    info = describe(
        load_spec(write_spec(tmp_path, {"path": "flowers.csv", "target": "species"}))
    )
    _, table = read_csv(FLOWERS)
    assert (info.features, info.targets, info.classes, info.n) == (
        4,
        None,
        3,
        len(table),
    )
    assert not info.float_targets
    assert (info.file.name, info.file.target, info.file.target_name) == (
        "data.csv",
        4,
        "species",
    )
    by_index = describe(
        load_spec(write_spec(tmp_path, {"path": "flowers.csv", "target": 4}))
    )
    assert by_index.file == info.file


def test_csv_float_target_is_one_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,y,b\n1,0.5,2\n3,-1.25,4\n")
    info = describe(
        load_spec(write_spec(tmp_path, {"path": "t.csv", "target": "y"}, "mse", 1))
    )
    assert (info.features, info.targets, info.classes, info.n) == (2, 1, None, 2)
    assert info.float_targets


def test_csv_copy_is_canonical_and_reads_back_exactly(tmp_path):
    """BOM, CRLF, quotes, spaces and blank lines are gone; every number is the same float."""
    text = '\ufeff"first, col",second,"lab"\r\n 0.1 ,"2.50",1\r\n\r\n1e-3,-7,0\r\n3,0.30000000000000004,2\r\n'
    (tmp_path / "t.csv").write_bytes(text.encode())
    info = describe(load_spec(write_spec(tmp_path, {"path": "t.csv", "target": "lab"})))
    copy = info.file.content.decode()
    assert (
        copy == "first col,second,lab\n0.1,2.5,1\n0.001,-7,0\n3,0.30000000000000004,2\n"
    )
    (tmp_path / "copy.csv").write_text(copy)
    table = np.loadtxt(tmp_path / "copy.csv", delimiter=",", skiprows=1, ndmin=2)
    assert table.tolist() == [
        [0.1, 2.5, 1],
        [0.001, -7, 0],
        [3, 0.30000000000000004, 2],
    ]


def test_npz_shapes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((10, 3)), y=np.arange(10) % 4)
    np.savez(
        tmp_path / "r.npz", x=rng.standard_normal((10, 3)), y=rng.standard_normal(10)
    )
    info = describe(
        load_spec(write_spec(tmp_path, {"path": "c.npz"}, "cross_entropy", 4))
    )
    assert (info.features, info.targets, info.classes, info.n) == (3, None, 4, 10)
    assert info.file.content == (tmp_path / "c.npz").read_bytes()
    info = describe(load_spec(write_spec(tmp_path, {"path": "r.npz"}, "mse", 1)))
    assert (info.features, info.targets, info.classes, info.n) == (3, 1, None, 10)


# ---------------------------------------------------------------------- the errors


def bad_csv(text):
    return lambda folder: (folder / "t.csv").write_text(text)


def npz(**arrays):
    return lambda folder: np.savez(folder / "t.npz", **arrays)


@pytest.mark.parametrize(
    "make, data, where, message",
    [
        (None, {"path": "nowhere.csv", "target": 0}, "data.path", "cannot read"),
        (bad_csv("a,b,c\n1,2,0\n"), {"path": "t.csv", "target": "d"}, "data.target", "no column named 'd' (columns: 'a', 'b', 'c')"),
        (bad_csv("a,b,lab\n1,2,0\n"), {"path": "t.csv", "target": "lbl"}, "data.target", "(did you mean 'lab'?)"),
        (bad_csv("a,b,c\n1,2,0\n"), {"path": "t.csv", "target": 3}, "data.target", "column index 3 is out of range: the file has 3 columns (0 to 2)"),
        (bad_csv("a,b,c\n1,2,0\n1,2\n"), {"path": "t.csv", "target": 2}, "data.path", "line 3 of 't.csv' has 2 values, the header has 3 columns"),
        (bad_csv("a,b,c\n1,2,0\n\n1,x,0\n"), {"path": "t.csv", "target": 2}, "data.path", "line 4 of 't.csv', column 'b': 'x' is not a finite number"),
        (bad_csv("a,b,c\n1,nan,0\n"), {"path": "t.csv", "target": 2}, "data.path", "column 'b': 'nan' is not a finite number"),
        (bad_csv(""), {"path": "t.csv", "target": 0}, "data.path", "'t.csv' is empty"),
        (bad_csv("a,b,c\n"), {"path": "t.csv", "target": 0}, "data.path", "has a header row but no data rows"),
        (bad_csv("a\n1\n"), {"path": "t.csv", "target": 0}, "data.path", "it needs the target and at least one feature"),
        (bad_csv("a,b,c\n1,2,0.5\n"), {"path": "t.csv", "target": "c"}, "data.target", "cross_entropy needs class indices (integers >= 0) in column 'c', got 0.5"),
        (bad_csv("a,a,c\n1,2,0\n"), {"path": "t.csv", "target": "a"}, "data.target", "'a' names 2 columns: use its index"),
        (npz(x=np.zeros((3, 2))), {"path": "t.npz"}, "data.path", "'t.npz' has no array y (it has: 'x')"),
        (npz(x=np.zeros((3, 2)), y=np.zeros(4)), {"path": "t.npz"}, "data.path", "must have one row per sample of x (3), got (4,)"),
        (npz(x=np.zeros(3), y=np.zeros(3)), {"path": "t.npz"}, "data.path", "array x of 't.npz' must be (samples, features), got (3,)"),
        (npz(x=np.zeros((3, 2)), y=np.array([0, 1, -1])), {"path": "t.npz"}, "data.path", "needs class indices (integers >= 0) in array y, got -1"),
        (npz(x=np.zeros((3, 2)), y=np.zeros(3)), {"path": "t.npz", "target": 0}, "data.target", "only for a .csv file"),
        (lambda f: (f / "t.npz").write_text("x,y\n"), {"path": "t.npz"}, "data.path", "is not an .npz archive"),
    ],
    ids=[
        "missing-file", "missing-column", "close-column", "index-out-of-range", "ragged",
        "non-numeric", "nan", "empty", "header-only", "one-column", "fractional-class",
        "duplicate-name", "npz-without-y", "npz-rows", "npz-x-1d", "npz-negative-class",
        "npz-target", "not-npz",
    ],
)  # fmt: skip
def test_bad_files_are_spec_errors(tmp_path, make, data, where, message):
    if make is not None:
        make(tmp_path)
    with pytest.raises(SpecError) as e:
        build(write_spec(tmp_path, data))
    [(path, text)] = e.value.problems
    assert path == where
    assert message in text


# ------------------------------------------------------------ the generated scripts


@pytest.mark.slow
def test_scripts_read_their_own_copy_from_any_working_directory(tmp_path):
    shutil.copy(FLOWERS, tmp_path / "flowers.csv")
    prog = build(write_spec(tmp_path, {"path": "flowers.csv", "target": "species"}))
    files = render(prog)
    assert files == render(prog)  # deterministic, the copy included
    assert isinstance(files["data.csv"], bytes)
    write_atomically(files, tmp_path / "out")
    moved = tmp_path / "elsewhere" / "from_file"
    shutil.copytree(tmp_path / "out", moved)
    (tmp_path / "flowers.csv").unlink()  # the scripts must not need the original
    _, table = read_csv(FLOWERS)
    for impl in ("numpy_backprop", "torch_manual", "torch_module"):
        dump = tmp_path / f"{impl}.npz"
        subprocess.run(
            [sys.executable, str(moved / f"{impl}.py"), "--quiet", "--dump", str(dump)],
            cwd=tmp_path,
            check=True,
        )
        with np.load(dump) as arrays:
            assert arrays["x"].tolist() == table[:, :4].tolist()
            assert arrays["y"].tolist() == table[:, 4].astype(int).tolist()
            assert arrays["y"].dtype == np.int64


def test_float_targets_from_npz_are_columns(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((12, 2)), rng.standard_normal(12)
    np.savez(tmp_path / "r.npz", x=x, y=y)
    prog = build(
        write_spec(
            tmp_path, {"path": "r.npz", "split": {"train": 0.5, "test": 0.5}}, "mse", 1
        )
    )
    write_atomically(render(prog), tmp_path / "out")
    module = load_module(
        tmp_path / "out" / "numpy_backprop.py", "from_npz_numpy_backprop"
    )
    parts = module.load_data()
    order = np.random.default_rng([0, 0]).permutation(12)
    assert parts["train"][0].tolist() == x[order[:6]].tolist()
    assert parts["train"][1].tolist() == y[order[:6], None].tolist()
    assert parts["test"][1].shape == (6, 1)
