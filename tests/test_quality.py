"""The generated files as code and as output: lint-clean, formatted, strict about
their command line, written atomically, and the same bytes every time.

Compiled here: every spec in specs/ and the coverage specs (every template
branch). ruff runs in isolation (no project settings) with its default rules
plus F (pyflakes), E9 (syntax errors) and ARG (no argument a function does
not use: a file passes only what its functions read).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlpgen import compiler
from mlpgen.compiler import compile_spec, ruff_bin

from .conftest import ROOT, SPECS, load_module
from .coverage_specs import COVERAGE, write

XOR = ROOT / "specs" / "xor.yaml"
IMPLEMENTATIONS = ("numpy_backprop", "torch_manual", "torch_module")


@pytest.fixture(scope="module")
def compiled_root(tmp_path_factory):
    """One output root holding every gallery and coverage spec, compiled."""
    specs = tmp_path_factory.mktemp("specs")
    root = tmp_path_factory.mktemp("generated")
    for path in [*SPECS, *(write(specs, spec) for spec in COVERAGE.values())]:
        compile_spec(path, root)
    return root


# ------------------------------------------------------------------ lint and format


def test_generated_code_passes_ruff_check(compiled_root):
    python = sorted(compiled_root.glob("*/*.py"))
    assert len(python) == 4 * (len(SPECS) + len(COVERAGE))
    r = subprocess.run(
        [ruff_bin(), "check", "--isolated", "--extend-select", "F,E9,ARG"]
        + ["--output-format", "concise", "--no-cache", str(compiled_root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_code_is_ruff_formatted(compiled_root):
    r = subprocess.run(
        [
            ruff_bin(),
            "format",
            "--check",
            "--isolated",
            "--no-cache",
            str(compiled_root),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ the project's own code


def test_the_project_is_ruff_formatted_and_clean():
    """mlpgen/ and tests/ as `ruff format --check` and `ruff check` (the
    project's settings in pyproject.toml) want them."""
    for args in (["format", "--check"], ["check"]):
        r = subprocess.run(
            [ruff_bin(), *args, "--no-cache", "mlpgen", "tests"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_the_project_type_checks():
    """mypy, as configured in pyproject.toml, finds nothing in mlpgen/."""
    pytest.importorskip("mypy", reason="mypy comes with mlpgen[typecheck]")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", os.devnull],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ the command line

BAD_ARGUMENTS = {
    ("--epochs", "-1"): "argument --epochs: must be a positive integer, got -1",
    ("--epochs", "0"): "argument --epochs: must be a positive integer, got 0",
    ("--epochs", "abc"): "argument --epochs: invalid positive_int value: 'abc'",
    ("--epochs",): "argument --epochs: expected one argument",
    ("--seed", "x"): "argument --seed: invalid seed_int value: 'x'",
    ("--seed", "-1"): "argument --seed: must be an integer >= 0, got -1",
    ("--bogus",): "unrecognized arguments: --bogus",
    ("extra",): "unrecognized arguments: extra",
}


@pytest.mark.parametrize("argv", list(BAD_ARGUMENTS), ids=" ".join)
def test_script_rejects_bad_arguments(compiled_root, argv):
    """The real script: argparse's usage and error lines, exit status 2."""
    script = compiled_root / "xor" / "numpy_backprop.py"
    r = subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith("usage: numpy_backprop.py [-h] [--epochs EPOCHS]")
    assert lines[-1] == f"numpy_backprop.py: error: {BAD_ARGUMENTS[argv]}"
    assert r.stdout == ""


@pytest.mark.parametrize("impl", IMPLEMENTATIONS[1:])
def test_torch_scripts_reject_bad_arguments(compiled_root, impl, capsys, monkeypatch):
    """The same parser in the torch files (in-process: torch imports once)."""
    module = load_module(compiled_root / "xor" / f"{impl}.py", f"quality_{impl}")
    monkeypatch.setattr(sys, "argv", [f"{impl}.py"])
    for argv, message in BAD_ARGUMENTS.items():
        with pytest.raises(SystemExit) as e:
            module.main(list(argv))
        assert e.value.code == 2
        assert (
            capsys.readouterr().err.splitlines()[-1] == f"{impl}.py: error: {message}"
        )


# ------------------------------------------------------------------ atomic output


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def previous(tmp_path):
    """An output root holding xor's files from an earlier compile, one of them
    (loss.png, listed in the folder's marker) no longer written today."""
    root = tmp_path / "out"
    folder = compile_spec(XOR, root)
    (folder / "loss.png").write_text("the previous output")
    marker = folder / compiler.MARKER
    marker.write_text(compiler.marker_text([*_snapshot(folder), "loss.png"]))
    return root, folder, _snapshot(folder)


def test_failure_while_rendering_keeps_the_previous_output(previous, monkeypatch):
    root, folder, before = previous
    import jinja2

    real = jinja2.Template.render
    calls = []

    def render_then_fail(self, *args, **kwargs):
        calls.append(self.name)
        if len(calls) == 3:
            raise RuntimeError("rendering failed halfway")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", render_then_fail)
    with pytest.raises(RuntimeError, match="halfway"):
        compile_spec(XOR, root)
    assert len(calls) == 3
    assert _snapshot(folder) == before
    assert sorted(p.name for p in root.iterdir()) == ["xor"]


def test_failure_while_writing_keeps_the_previous_output(previous, monkeypatch):
    root, folder, before = previous
    real = Path.write_text
    written = []

    def write_then_fail(self, *args, **kwargs):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        compiler.write_atomically(compiler.render(compiler.build(XOR)), folder)
    assert len(written) == 2
    assert _snapshot(folder) == before
    assert sorted(p.name for p in root.iterdir()) == ["xor"]


def test_interrupt_during_the_swap_restores_the_previous_output(previous, monkeypatch):
    root, folder, before = previous
    real = Path.rename
    renames = []

    def rename(self, target):
        renames.append((self.name, Path(target).name))
        if len(renames) == 2:  # the new folder into place
            raise KeyboardInterrupt
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        compile_spec(XOR, root)
    assert renames[0] == ("xor", "xor")  # the old folder into a trash folder
    assert _snapshot(folder) == before
    assert sorted(p.name for p in root.iterdir()) == ["xor"]


def test_a_new_compile_replaces_the_folder_as_a_whole(previous):
    root, folder, before = previous
    compile_spec(XOR, root)
    after = _snapshot(folder)
    assert "loss.png" not in after
    changed = {compiler.MARKER, "loss.png"}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    assert sorted(p.name for p in root.iterdir()) == ["xor"]


def test_a_file_mlpgen_did_not_write_stops_the_compile(previous):
    root, folder, _ = previous
    (folder / "notes.txt").write_text("the user's own")
    before = _snapshot(folder)
    with pytest.raises(
        compiler.NotOurs, match=r"holds files that mlpgen did not write \('notes.txt'\)"
    ):
        compile_spec(XOR, root)
    assert _snapshot(folder) == before


def test_a_symlinked_output_folder_is_neither_replaced_nor_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    root = tmp_path / "out"
    root.mkdir()
    (root / "xor").symlink_to(elsewhere)
    with pytest.raises(compiler.NotOurs, match="is a symbolic link"):
        compile_spec(XOR, root)
    assert (root / "xor").is_symlink()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]


def test_the_output_folder_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        folder = compile_spec(XOR, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "README.md").stat().st_mode) == 0o644


# ------------------------------------------------------------------ determinism


def _shuffled(value, rng: random.Random):
    """The same spec with the keys of every mapping in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _as_json(folder: Path, shuffle: random.Random | None) -> list[Path]:
    """Every gallery spec as NAME.json in ``folder`` (with its data beside it)."""
    from mlpgen.spec import _read_yaml

    folder.mkdir()
    shutil.copytree(ROOT / "specs" / "data", folder / "data")
    paths = []
    for spec in SPECS:
        data = _read_yaml(spec.read_text(encoding="utf-8"), str(spec))
        if shuffle is not None:
            data = _shuffled(data, shuffle)
        path = folder / f"{spec.stem}.json"
        path.write_text(json.dumps(data, indent=1))
        paths.append(path)
    return paths


def test_same_bytes_whatever_the_key_order_directory_hash_seed_and_clock(tmp_path):
    plain = _as_json(tmp_path / "plain", None)
    shuffled = _as_json(tmp_path / "shuffled", random.Random(5))
    assert plain[0].read_text() != shuffled[0].read_text()
    runs = []
    for i, (paths, seed, tz) in enumerate(
        [(plain, "0", "UTC"), (shuffled, "4242", "Asia/Kathmandu")]
    ):
        cwd = tmp_path / f"cwd{i}"
        cwd.mkdir()
        out = tmp_path / f"out{i}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed, "TZ": tz}
        r = subprocess.run(
            [sys.executable, "-m", "mlpgen", "compile"]
            + [os.path.relpath(p, cwd) for p in paths]
            + ["-o", os.path.relpath(out, cwd)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        runs.append(out)
    first, second = runs
    names = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert len(names) >= 5 * len(SPECS)
    assert names == sorted(
        str(p.relative_to(second)) for p in second.rglob("*") if p.is_file()
    )
    for name in names:
        a, b = (first / name).read_bytes(), (second / name).read_bytes()
        if name.endswith(".json"):
            continue  # the spec's own copy, in its own key order
        if name.endswith("README.md"):  # which shows that copy at its end
            a, b = (t.split(b"\n## The spec\n")[0] for t in (a, b))
        assert a == b, name
