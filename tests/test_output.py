"""Where mlpgen writes: only into folders it wrote itself, one error line and a
named exit status for every output it cannot write, nothing in the current
directory; --version, missing optional packages, the exit statuses."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlpgen import __version__, cli, compiler, status

from .conftest import ROOT
from .test_cli import mlpgen, write

XOR = ROOT / "specs" / "xor.yaml"


def tree_hash(folder: Path) -> str:
    """Every path, kind, mode and content under ``folder`` (symlinks not followed)."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        h.update(f"{path.relative_to(folder)}|{info.st_mode}".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def spec_named(tmp_path: Path, name: str) -> Path:
    text = XOR.read_text().replace("name: xor", f"name: {name}")
    return write(tmp_path, f"{name}.yaml", text.replace("epochs: 5000", "epochs: 3"))


def one_error(r, status_code: int, *words: str) -> str:
    """The single stderr line of a failed command, checked."""
    assert r.returncode == status_code, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------- never delete what mlpgen did not write


def test_the_users_own_folder_is_never_replaced(tmp_path):
    """The reported data loss: a spec named notes compiled with -o . next to notes/."""
    spec = spec_named(tmp_path, "notes")
    work = tmp_path / "work"
    (work / "notes" / "drafts").mkdir(parents=True)
    (work / "notes" / "todo.txt").write_text("my own notes")
    (work / "notes" / "drafts" / "a.md").write_text("# draft")
    before = tree_hash(work)
    r = mlpgen("compile", spec, "-o", ".", cwd=work)
    one_error(
        r,
        status.BAD_INPUT,
        f"error: {spec}: notes exists and was not written by mlpgen; "
        "remove it or choose another -o",
    )
    assert r.stdout == ""
    assert tree_hash(work) == before


def test_a_file_where_the_folder_would_go_is_left_alone(tmp_path):
    spec = spec_named(tmp_path, "notes")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes").write_text("a file, not a folder")
    before = tree_hash(tmp_path / "out")
    r = mlpgen("compile", spec, "-o", tmp_path / "out")
    one_error(r, status.BAD_INPUT, "out/notes exists and was not written by mlpgen")
    assert tree_hash(tmp_path / "out") == before


def test_a_file_added_to_mlpgens_folder_stops_the_next_compile(tmp_path):
    out = tmp_path / "out"
    assert mlpgen("compile", XOR, "-o", out).returncode == 0
    (out / "xor" / "run1.npz").write_bytes(b"the user's dump")
    (out / "xor" / "__pycache__").mkdir()  # caches are not the user's work
    before = tree_hash(out)
    r = mlpgen("compile", XOR, "-o", out)
    one_error(r, status.BAD_INPUT, "holds files that mlpgen did not write ('run1.npz')")
    assert tree_hash(out) == before
    (out / "xor" / "run1.npz").unlink()
    r = mlpgen("compile", XOR, "-o", out)
    assert r.returncode == 0, r.stderr
    assert not (out / "xor" / "__pycache__").exists()


def test_a_folder_in_place_of_a_listed_file_is_not_mlpgens(tmp_path):
    out = tmp_path / "out"
    assert mlpgen("compile", XOR, "-o", out).returncode == 0
    (out / "xor" / "README.md").unlink()
    (out / "xor" / "README.md").mkdir()
    (out / "xor" / "README.md" / "mine.txt").write_text("mine")
    before = tree_hash(out)
    r = mlpgen("compile", XOR, "-o", out)
    one_error(
        r, status.BAD_INPUT, "holds files that mlpgen did not write ('README.md')"
    )
    assert tree_hash(out) == before


def test_a_marker_must_be_mlpgens_to_count(tmp_path):
    out = tmp_path / "out"
    (out / "xor").mkdir(parents=True)
    (out / "xor" / compiler.MARKER).write_text("somebody else's .mlpgen file\n")
    (out / "xor" / "README.md").write_text("theirs")
    before = tree_hash(out)
    r = mlpgen("compile", XOR, "-o", out)
    one_error(r, status.BAD_INPUT, "was not written by mlpgen")
    assert tree_hash(out) == before


def test_an_empty_folder_is_taken(tmp_path):
    (tmp_path / "out" / "xor").mkdir(parents=True)
    r = mlpgen("compile", XOR, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    listed = compiler.marker_files(tmp_path / "out" / "xor")
    assert listed == {p.name for p in (tmp_path / "out" / "xor").iterdir()} - {
        compiler.MARKER
    }
    assert {"numpy_backprop.py", "torch_module.py", "README.md"} <= listed


def test_the_same_name_twice_in_one_command_is_an_error(tmp_path):
    other = write(tmp_path, "other.yaml", XOR.read_text())  # also named xor
    out = tmp_path / "out"
    r = mlpgen("compile", XOR, other, "-o", out)
    one_error(
        r,
        status.BAD_INPUT,
        f"error: {other}: name: 'xor' is also the name of {XOR}: both would be "
        "written to the same folder",
    )
    assert not out.exists()
    r = mlpgen("compile", XOR, XOR, "-o", out)
    one_error(r, status.BAD_INPUT, f"error: {XOR}: the spec is given twice")
    assert not out.exists()


def test_one_folder_that_is_not_ours_writes_nothing_at_all(tmp_path):
    """Every output folder is checked before the first one is written."""
    out = tmp_path / "out"
    (out / "xor_b").mkdir(parents=True)
    (out / "xor_b" / "mine.txt").write_text("mine")
    b = spec_named(tmp_path, "xor_b")
    r = mlpgen("compile", XOR, b, "-o", out)
    one_error(r, status.BAD_INPUT, "xor_b exists and was not written by mlpgen")
    assert sorted(p.name for p in out.iterdir()) == ["xor_b"]


def test_render_never_overwrites_a_diagram_it_did_not_write(tmp_path):
    (tmp_path / "forward.svg").write_text("<svg>my own drawing</svg>")
    before = tree_hash(tmp_path)
    r = mlpgen("render", XOR, "-o", tmp_path)
    one_error(r, status.BAD_INPUT, "forward.svg exists and was not written by mlpgen")
    assert tree_hash(tmp_path) == before


@pytest.mark.dot
def test_render_into_its_own_output_again_and_then_compile(tmp_path):
    out = tmp_path / "gen"
    for _ in range(2):
        r = mlpgen("render", XOR, "-o", out / "xor")
        assert r.returncode == 0, r.stderr
    assert compiler.marker_files(out / "xor") == {
        "forward.dot",
        "forward.svg",
        "backward.dot",
        "backward.svg",
    }
    r = mlpgen("compile", XOR, "-o", out)  # the diagrams are mlpgen's: replaced
    assert r.returncode == 0, r.stderr
    assert (out / "xor" / "numpy_backprop.py").is_file()


# ---------------------------------------------------- outputs that cannot be written


def test_output_root_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("a file")
    r = mlpgen("compile", XOR, "-o", tmp_path / "f")
    one_error(r, status.OUTPUT_ERROR, "cannot write into", "it is a file, not a folder")
    r = mlpgen("compile", XOR, "-o", tmp_path / "f" / "sub")
    one_error(r, status.OUTPUT_ERROR, f"{tmp_path / 'f'} is a file")
    assert (tmp_path / "f").read_text() == "a file"
    r = mlpgen("render", XOR, "-o", tmp_path / "f")
    one_error(r, status.OUTPUT_ERROR, "it is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_unwritable_output_root(tmp_path, monkeypatch, capsys):
    real = os.access
    root = tmp_path / "locked"
    root.mkdir()
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == root else real(p, mode)
    )
    code = cli.main(["compile", str(XOR), "-o", str(root)])
    assert code == status.OUTPUT_ERROR
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {XOR}: cannot write into {root}: permission denied"]
    assert list(root.iterdir()) == []


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made unwritable, even for root (with chattr +i where need be)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if (
        chattr is None
        or subprocess.run([chattr, "+i", str(folder)], check=False).returncode
    ):
        pytest.skip("root writes anywhere, and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_read_only_output_root_for_real(tmp_path):
    root = tmp_path / "locked"
    root.mkdir()
    with read_only(root):
        r = mlpgen("compile", XOR, "-o", root)
        assert r.returncode == status.OUTPUT_ERROR, r.stderr
        assert r.stderr.splitlines()[0].startswith(f"error: {XOR}: cannot write")
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert list(root.iterdir()) == []


def test_a_full_disk_keeps_the_previous_output(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert cli.main(["compile", str(XOR), "-o", str(out)]) == 0
    before = tree_hash(out)
    capsys.readouterr()
    real = Path.write_text

    def full(self, *args, **kwargs):
        if out in self.parents and self.name == "torch_module.py":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert cli.main(["compile", str(XOR), "-o", str(out)]) == status.OUTPUT_ERROR
    assert capsys.readouterr().err.splitlines() == [
        f"error: {XOR}: cannot write {out / 'xor'}: No space left on device"
    ]
    assert tree_hash(out) == before  # the previous output, and no scratch folder


def test_a_failing_render_write_is_one_line(tmp_path, monkeypatch, capsys):
    import tempfile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    code = cli.main(["render", str(XOR), "-o", str(tmp_path / "d")])
    assert code == status.OUTPUT_ERROR
    assert capsys.readouterr().err.splitlines() == [
        (
            f"error: {XOR}: cannot write the diagrams into {tmp_path / 'd'}: "
            "No space left on device"
        )
    ]


# ---------------------------------------------------- the current directory


@pytest.mark.slow
def test_nothing_is_written_into_the_current_directory(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for args in (
        ["compile", XOR, "-o", tmp_path / "out"],
        ["check", XOR],
        ["render", XOR, "-o", tmp_path / "diagrams"],
        ["schema"],
        ["crosstest", XOR, "--epochs", "3"],
        ["run", XOR, "--epochs", "3"],
    ):
        r = mlpgen(*args, cwd=cwd)
        assert r.returncode == 0, r.stderr
    assert list(cwd.iterdir()) == []


def test_compile_and_check_from_a_read_only_directory(tmp_path):
    cwd = tmp_path / "ro"
    cwd.mkdir()
    with read_only(cwd):
        r = mlpgen("compile", XOR, "-o", tmp_path / "out", cwd=cwd)
        assert r.returncode == 0, r.stderr
        assert mlpgen("check", XOR, cwd=cwd).returncode == 0
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "out" / "xor" / "numpy_backprop.py").is_file()


# ---------------------------------------------------- version, dependencies, statuses


def test_version():
    r = mlpgen("--version")
    assert r.returncode == 0
    assert r.stdout == f"mlpgen {__version__}\n"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"]  # read from mlpgen.__version__


def without(*modules: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """mlpgen with ``modules`` uninstalled, as far as Python can tell."""
    hide = "; ".join(f"sys.modules[{m!r}] = None" for m in modules)
    code = f"import sys; {hide}; from mlpgen.cli import main; sys.exit(main({argv!r}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize(
    "modules, argv, line",
    [
        (["torch"], ["crosstest", str(XOR)], "error: mlpgen crosstest needs PyTorch: pip install 'mlpgen[torch]'"),
        (["torch"], ["run", str(XOR), "--impl", "torch_module"], "error: mlpgen run needs PyTorch: pip install 'mlpgen[torch]'"),
        (["tqdm"], ["run", str(XOR)], "error: mlpgen run needs tqdm: pip install 'mlpgen[run]'"),
        (["matplotlib"], ["compile", "--plot", str(XOR)], "error: mlpgen compile --plot needs matplotlib: pip install 'mlpgen[plot]'"),
        (["torch"], ["compile", "--plot", str(XOR)], "error: mlpgen compile --plot needs PyTorch: pip install 'mlpgen[torch]'"),
        (["matplotlib"], ["compare", str(XOR), str(XOR), "--plot", "c.png"], "error: mlpgen compare --plot needs matplotlib: pip install 'mlpgen[plot]'"),
        (["ruff"], ["compile", str(XOR)], "error: mlpgen compile needs ruff: pip install ruff"),
    ],
    ids=["crosstest", "run-torch", "run-tqdm", "plot-matplotlib", "plot-torch", "compare-plot", "ruff"],
)  # fmt: skip
def test_a_missing_optional_package_names_its_extra(tmp_path, modules, argv, line):
    r = without(
        *modules,
        argv=[*argv, *(["-o", "out"] if argv[0] == "compile" else [])],
        cwd=tmp_path,
    )
    assert r.returncode == status.MISSING_DEPENDENCY, r.stderr
    assert r.stderr.splitlines() == [line]
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_what_needs_no_optional_package_runs_without_them(tmp_path):
    r = without(
        "torch",
        "matplotlib",
        "tqdm",
        argv=["compile", str(XOR), "-o", str(tmp_path / "out")],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    r = without("torch", "matplotlib", "tqdm", argv=["check", str(XOR)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_exit_statuses_are_distinct_and_documented():
    codes = [status.OK, status.FAILED, status.BAD_INPUT, status.IMPL_FAILED]
    codes += [status.MISSING_DEPENDENCY, status.OUTPUT_ERROR]
    assert codes == [0, 1, 2, 3, 4, 5]
    help_text = mlpgen("--help").stdout
    docs = (ROOT / "docs" / "generated-files.md").read_text()
    for code in codes:
        assert f"{code} " in help_text
        assert f"| {code} |" in docs


def test_a_bad_command_line_is_status_2():
    r = mlpgen("compile")
    assert r.returncode == status.BAD_INPUT
    r = mlpgen("crosstest", XOR, "--epochs", "0")
    assert r.returncode == status.BAD_INPUT
    assert "must be a positive integer" in r.stderr
