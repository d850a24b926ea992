"""Hostile data files: read only when regular, bounded before memory is spent,
and never able to write a line of their own into the error output."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from mlpgen import data
from mlpgen.compiler import build
from mlpgen.spec import MAX_SAMPLES, SpecError

from .conftest import ROOT


def write_spec(folder, path: str, loss: str = "mse", outputs: int = 1, **more) -> str:
    doc = {
        "name": "from_file",
        "data": {"kind": "file", "path": path, **more},
        "model": {"layers": [{"type": "linear", "out": outputs}]},
        "loss": {"type": loss},
        "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
    }
    spec = folder / "spec.json"
    spec.write_text(json.dumps(doc))
    return str(spec)


def problem(spec) -> tuple[str, str]:
    with pytest.raises(SpecError) as e:
        build(spec)
    [found] = e.value.problems
    return found


# ------------------------------------------------------------------ regular files


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_symlink_to_a_device_is_refused_unread(tmp_path, device):
    (tmp_path / "t.csv").symlink_to(device)
    where, message = problem(write_spec(tmp_path, "t.csv", target=0))
    assert where == "data.path"
    assert message == "'t.csv' is a character device, not a regular file"


def test_a_fifo_does_not_hang_compile(tmp_path):
    os.mkfifo(tmp_path / "t.csv")
    spec = write_spec(tmp_path, "t.csv", target=0)
    r = subprocess.run(
        [sys.executable, "-m", "mlpgen", "check", spec],
        capture_output=True,
        text=True,
        timeout=60,  # a blocking open would wait for a writer forever
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr == (
        f"error: {spec}: data.path: 't.csv' is a named pipe (FIFO), not a regular file\n"
    )


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "t.csv").mkdir()
    assert problem(write_spec(tmp_path, "t.csv", target=0)) == (
        "data.path",
        "'t.csv' is a folder, not a regular file",
    )


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "real.csv").write_text("a,y\n1,2\n3,4\n")
    (tmp_path / "t.csv").symlink_to(tmp_path / "real.csv")
    assert build(write_spec(tmp_path, "t.csv", target="y")).net.data.n == 2


def test_the_size_is_checked_before_reading(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("a,y\n" + "1,2\n" * 100)
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 100)
    read = []
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: read.append(a) or real(*a, **k))
    where, message = problem(write_spec(tmp_path, "t.csv", target="y"))
    assert where == "data.path"
    assert (
        message
        == "'t.csv' has 404 bytes, more than mlpgen's limit of 100 for a data file"
    )
    assert read == []


# ------------------------------------------------------------------ CSV


def test_a_csv_without_a_header_row_is_an_error_not_a_lost_row(tmp_path):
    (tmp_path / "t.csv").write_text("1,2,0\n3,4,1\n5,6,0\n")
    where, message = problem(
        write_spec(tmp_path, "t.csv", "cross_entropy", 2, target=2)
    )
    assert where == "data.path"
    assert message == (
        "the first row of 't.csv' is all numbers ('1', '2', '0'): a .csv needs a "
        "header row naming its columns; add one"
    )


@pytest.mark.parametrize(
    "header",
    [
        'a,"b\nerror: forged.yaml: everything is fine",y',
        "a,\x1b[2J\x1b[31mred,y",
        "a,b\u202eevil,y",
    ],
    ids=["forged-line", "terminal-escapes", "bidi-override"],
)
def test_a_csv_header_cannot_forge_an_error_line(tmp_path, header):
    (tmp_path / "t.csv").write_text(header + "\n1,2,3\n")
    spec = write_spec(tmp_path, "t.csv", target="nope")
    r = subprocess.run(
        [sys.executable, "-m", "mlpgen", "check", spec],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {spec}: data.target: no column named 'nope' (")
    assert "\x1b" not in line and "\u202e" not in line
    assert line.isprintable()


def test_a_csv_with_too_many_rows_stops_reading_at_the_limit(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("a,y\n" + "1,2\n" * 50)
    monkeypatch.setattr(data, "MAX_SAMPLES", 10)
    where, message = problem(write_spec(tmp_path, "t.csv", target="y"))
    assert where == "data.path"
    assert message.startswith("'t.csv' has more than 10 rows or")
    assert MAX_SAMPLES == 10_000_000  # the README's limit, patched only here


def test_a_csv_with_too_many_columns_stops_at_the_header(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("a,b,c,y\n" + "1,2,3,4\n" * 5)
    monkeypatch.setattr(data, "MAX_FEATURES", 2)
    assert problem(write_spec(tmp_path, "t.csv", target="y")) == (
        "data.path",
        "'t.csv' has 3 feature columns, more than mlpgen's limit of 2",
    )


# ------------------------------------------------------------------ NPZ


def npy_header(shape, dtype="<f8") -> bytes:
    """A .npy version 1.0 header declaring ``shape`` (no data follows)."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def npz(folder, members: dict[str, bytes], method=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(folder / "t.npz", "w", method) as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def test_a_huge_declared_shape_is_refused_before_allocating(tmp_path):
    """530 bytes that would make NumPy allocate terabytes."""
    y = io.BytesIO()
    np.save(y, np.zeros(3))
    npz(tmp_path, {"x.npy": npy_header((1_000_000, 1_000_000)), "y.npy": y.getvalue()})
    assert (tmp_path / "t.npz").stat().st_size < 1000
    tracemalloc.start()
    try:
        where, message = problem(write_spec(tmp_path, "t.npz"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert where == "data.path"
    assert message == (
        "'t.npz' holds 1,000,000,000,003 numbers in x and y, more than mlpgen's "
        "limit of 100,000,000"
    )
    assert peak < 100_000_000  # imports included; the shape declares 8 TB


@pytest.mark.parametrize(
    "shape, words",
    [
        ((20_000_000, 1), "array x of 't.npz' has 20,000,000 rows, more than mlpgen's limit of 10,000,000 samples"),
        ((2, 2_000_000), "array x of 't.npz' has 2,000,000 values per row, more than mlpgen's limit of 1,000,000 features"),
    ],
    ids=["samples", "features"],
)  # fmt: skip
def test_each_limit_is_checked_on_the_header(tmp_path, shape, words):
    y = io.BytesIO()
    np.save(y, np.zeros(3))
    npz(tmp_path, {"x.npy": npy_header(shape), "y.npy": y.getvalue()})
    assert problem(write_spec(tmp_path, "t.npz")) == ("data.path", words)


def test_a_zip_bomb_is_refused_by_its_declared_sizes(tmp_path):
    zeros = io.BytesIO()
    np.save(zeros, np.zeros(2_000_000))  # 16 MB of zeros deflate to about 16 kB
    y = io.BytesIO()
    np.save(y, np.zeros(2_000_000))
    npz(
        tmp_path,
        {"x.npy": zeros.getvalue(), "y.npy": y.getvalue()},
        zipfile.ZIP_DEFLATED,
    )
    assert (tmp_path / "t.npz").stat().st_size < 100_000
    where, message = problem(write_spec(tmp_path, "t.npz"))
    assert where == "data.path"
    assert message.startswith("array x of 't.npz' inflates 1,0")
    assert "more than mlpgen accepts (1,000): a zip bomb" in message


def test_an_inflated_size_beyond_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_NPY_BYTES", 1000)
    np.savez(tmp_path / "t.npz", x=np.ones((100, 2)), y=np.ones(100))
    where, message = problem(write_spec(tmp_path, "t.npz"))
    assert where == "data.path"
    assert (
        message
        == "array x of 't.npz' inflates to 1,728 bytes, more than mlpgen's limit of 1,000"
    )


def test_too_many_members(tmp_path):
    npz(tmp_path, {f"a{i}.npy": b"" for i in range(101)})
    assert problem(write_spec(tmp_path, "t.npz")) == (
        "data.path",
        "'t.npz' has 101 members, more than mlpgen reads (100); an .npz of x and y needs 2",
    )


def test_object_arrays_and_odd_methods_are_refused(tmp_path):
    y = io.BytesIO()
    np.save(y, np.zeros(3))
    npz(tmp_path, {"x.npy": npy_header((3, 2), "|O"), "y.npy": y.getvalue()})
    assert problem(write_spec(tmp_path, "t.npz")) == (
        "data.path",
        "array x of 't.npz' holds object, not numbers",
    )
    npz(tmp_path, {"x.npy": y.getvalue(), "y.npy": y.getvalue()}, zipfile.ZIP_BZIP2)
    where, message = problem(write_spec(tmp_path, "t.npz"))
    assert where == "data.path"
    assert "uses zip compression method 12" in message


def test_a_truncated_member_is_a_spec_error(tmp_path):
    y = io.BytesIO()
    np.save(y, np.zeros(3))
    npz(tmp_path, {"x.npy": npy_header((3, 2)) + b"\0" * 8, "y.npy": y.getvalue()})
    where, message = problem(write_spec(tmp_path, "t.npz"))
    assert where == "data.path"
    assert message.startswith("'t.npz' is not a readable .npz archive:")


def test_a_good_npz_still_reads(tmp_path):
    rng = np.random.default_rng(0)
    np.savez_compressed(
        tmp_path / "t.npz", x=rng.standard_normal((50, 3)), y=rng.standard_normal(50)
    )
    info = build(write_spec(tmp_path, "t.npz")).net.data
    assert (info.n, info.features, info.targets) == (50, 3, 1)
