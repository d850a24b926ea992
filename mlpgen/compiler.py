"""The pipeline, one way: spec -> data description -> graph -> derived program -> files."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import autodiff, graph
from .spec import SPEC_NAME_PATTERN
from .status import MissingDependency, NotOurs, OutputError, shown
from .teach import Teaching

FILES = (
    "numpy_backprop.py",
    "torch_manual.py",
    "torch_module.py",
    "test_crosscheck.py",
    "README.md",
)
CODE = FILES[:-1]  # rendered first; README.md last, with the numbers and results


def build(path) -> autodiff.Program:
    """Validate the spec at ``path`` and derive its program; SpecError on a bad spec."""
    return autodiff.derive(graph.load(path))


def ruff_bin() -> str:
    """The ruff executable of the installed ``ruff`` package (a dependency)."""
    try:
        from ruff.__main__ import find_ruff_bin

        return os.fsdecode(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        raise MissingDependency("compile", "ruff") from None


def render(
    prog: autodiff.Program,
    plot: bool = False,
    draw: bool = True,
    teaching: Teaching | None = None,
) -> dict[str, str | bytes]:
    """The generated files' text, formatted with ruff and parsed back as a check,
    the diagrams (DOT, and SVG when Graphviz is installed), the learning page,
    the explorer (index.html), a copy of the spec, and the bytes of the spec's
    data file when it has one (the scripts read that copy).

    The first training step of the NumPy implementation, run here, puts its
    numbers on the diagrams and the page. ``plot``: also train it and draw what
    it learned (results.py), and run the three implementations for loss.png
    (crosstest.ScriptFailed or results.TrainingFailed when one fails);
    ``draw=False`` leaves the pictures out but writes the page as with them.
    ``teaching``: the teaching files too (``teach.py``); SpecError for what
    they cannot take.
    """
    from . import teach
    from .emit import context, environment
    from .values import start_first_step

    teaching = teaching or Teaching()
    teach.check(prog, teaching)
    env = environment()
    ctx = context(prog)
    ctx.update(teach.context(prog, teaching, ctx))
    code = CODE + teaching.templates()
    data_file = prog.net.data.file
    texts = {name: env.get_template(name + ".j2").render(ctx) for name in code}
    drawing = None
    try:
        with tempfile.TemporaryDirectory(prefix="mlpgen-fmt-") as tmp:
            for name in code:
                Path(tmp, name).write_text(texts[name], encoding="utf-8")
            # no cache, run inside the scratch folder: nothing lands in the
            # user's current directory (which may not even be writable)
            ruff = [ruff_bin(), "format", "--isolated", "--no-cache", "--quiet"]
            # ruff formats, the first step runs in a process of its own, and
            # dot draws while ruff finishes: they overlap
            fmt = subprocess.Popen([*ruff, "--line-length", "88", "."], cwd=tmp)
            try:
                # NumPy's import and the first step there, while this process
                # imports what draws and builds the networkx DAG
                pending = start_first_step(texts["numpy_backprop.py"], data_file)
                from .page import explorer, readme_context, spec_copy
                from .render import Drawing

                _ = prog.net.graph
                step = pending()
                drawing = Drawing(prog, step)
            finally:
                if fmt.wait():
                    raise subprocess.CalledProcessError(fmt.returncode, fmt.args)
            for name in code:
                formatted = Path(tmp, name).read_text(encoding="utf-8")
                ast.parse(formatted, filename=name)
                texts[name] = formatted
    finally:
        diagrams = drawing.files() if drawing is not None else {}  # waits for dot
    files: dict[str, str | bytes] = {**texts, **diagrams}
    if data_file is not None:
        files[data_file.name] = data_file.content
    results = None
    if plot:
        from . import results as res

        cache = _PlotCache(texts, data_file, draw)
        hit = cache.get()
        if hit is not None:
            results, figures = hit
            files.update(figures)
        else:
            results = res.train(prog, texts["numpy_backprop.py"], data_file)
            if draw:
                from .crosstest import loss_figure

                files.update(res.figures(results))
                files["loss.png"] = loss_figure(prog, files)
            cache.put(results, {k: v for k, v in files.items() if k.endswith(".png")})
    if teaching.ladder:  # the learning page shows the rungs as formatted
        ctx["ladder_steps"] = teach.ladder_steps(files)
    files["README.md"] = env.get_template("README.md.j2").render(
        {**ctx, **readme_context(prog, step, results, files)}
    )
    copy = spec_copy(prog)
    if copy is not None:
        files[copy[0]] = copy[1]
    files["index.html"] = explorer(prog, files, step)
    if teaching.notebook:
        from .notebook import notebook

        files[teach.NOTEBOOK] = notebook(prog, files, ctx)
    return files


class _PlotCache:
    """What ``--plot`` trained and drew, kept for the next compile of the same
    implementations, when the environment variable MLPGEN_PLOT_CACHE names a
    folder (regenerating the gallery after a change to comments or pages, which
    retrains nothing). The key is the three implementations' syntax trees
    (comments do not count), the data file, and the code of mlpgen that trains
    and draws; off by default, so that nothing is kept unasked."""

    def __init__(self, texts: dict, data_file, draw: bool):
        import hashlib

        from . import crosstest, report, results

        self.folder = os.environ.get("MLPGEN_PLOT_CACHE")
        h = hashlib.sha256(f"{draw}".encode())
        for name in CODE[:3]:
            h.update(ast.dump(ast.parse(texts[name])).encode())
        if data_file is not None:
            h.update(data_file.content)
        for module in (results, report, crosstest):
            h.update(Path(module.__file__ or "").read_bytes())
        self.key = h.hexdigest()

    def _path(self) -> Path | None:
        return Path(self.folder, f"{self.key}.pickle") if self.folder else None

    def get(self):
        import pickle

        path = self._path()
        if path is None or not path.is_file():
            return None
        try:
            return pickle.loads(path.read_bytes())  # written by put() below
        except Exception:  # noqa: BLE001 (a damaged entry is retrained)
            return None

    def put(self, results, figures: dict) -> None:
        import pickle

        path = self._path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps((results, figures)))


def output_folder(root: Path | str, name: str) -> Path:
    """``root/name``, the folder a spec compiles to; ``name`` is the spec's name.

    The spec loader allows only names like ``xor``, so the folder is always a
    direct child of ``root``; checked again here, as nothing may be written
    anywhere else.
    """
    if not re.fullmatch(SPEC_NAME_PATTERN, name):
        raise ValueError(f"not a spec name: {name!r}")
    return Path(root) / name


def write_atomically(files: dict[str, str | bytes], folder: Path) -> None:
    """Write ``folder`` as a whole: a temporary sibling is filled, then swapped in.

    Until every file is written, ``folder`` keeps its previous contents; a
    failure or an interrupt at any point leaves it so, and no temporary folder
    behind. ``files`` maps plain file names to text (written as UTF-8 with
    ``\\n`` line ends) or bytes.
    """
    folder = Path(folder)
    for name in files:
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise ValueError(f"not a plain file name: {name!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    trash = None
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private
        for name, content in sorted(files.items()):
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content, encoding="utf-8", newline="\n")
        if folder.exists() or folder.is_symlink():
            trash = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent)
            )
            folder.rename(trash / folder.name)
        try:
            tmp.rename(folder)
        except BaseException:
            if trash is not None:
                (trash / folder.name).rename(folder)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # already gone after the swap
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def _umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------ whose folder it is

# Every output folder holds this file: it says that mlpgen wrote the folder,
# and lists the files it wrote there. A folder is replaced only while it holds
# nothing else (Python's and the test tools' caches aside), so that mlpgen
# never deletes a file it did not write.
MARKER = ".mlpgen"
MARKER_HEAD = "# mlpgen output"
CACHES = frozenset(
    {"__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}
)
_MAX_MARKER_BYTES = 100_000


def marker_text(names) -> str:
    """The marker of a folder holding the files ``names`` (sorted, one a line)."""
    listed = sorted(set(names) - {MARKER})
    return "\n".join(
        [
            f"{MARKER_HEAD}: mlpgen wrote this folder and replaces it as a whole on the",
            "# next compile, but only while it holds nothing except the files listed",
            "# below (and Python caches): keep files of your own elsewhere.",
            *listed,
            "",
        ]
    )


def marker_files(folder: Path) -> set[str] | None:
    """The files the marker of ``folder`` lists, or None when it has no marker."""
    path = Path(folder) / MARKER
    try:
        if path.is_symlink() or not path.is_file():
            return None
        with open(path, "rb") as f:
            raw = f.read(_MAX_MARKER_BYTES + 1)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if len(raw) > _MAX_MARKER_BYTES or not text.startswith(MARKER_HEAD):
        return None
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def check_root(root: Path | str, source: str = "") -> None:
    """OutputError unless ``root`` is (or can be made) a folder to write into."""
    root = Path(root)
    for here in [root, *root.parents]:
        if here.exists() or here.is_symlink():
            break
    if here != root and not here.is_dir():
        raise OutputError(
            source, f"cannot write into {shown(root)}: {shown(here)} is a file"
        )
    if here == root and not root.is_dir():
        raise OutputError(
            source, f"cannot write into {shown(root)}: it is a file, not a folder"
        )
    if not os.access(here, os.W_OK | os.X_OK):
        raise OutputError(source, f"cannot write into {shown(root)}: permission denied")


def check_replaceable(folder: Path | str, source: str = "") -> None:
    """NotOurs unless ``folder`` is absent, empty, or holds only mlpgen's output."""
    folder = Path(folder)
    if folder.is_symlink():
        raise NotOurs(source, _not_ours(folder, "is a symbolic link that"))
    if not folder.exists():
        return
    if not folder.is_dir():
        raise NotOurs(source, _not_ours(folder, "exists and"))
    try:
        entries = set(os.listdir(folder))
    except OSError as e:
        raise OutputError(
            source, f"cannot read {shown(folder)}: {e.strerror or e}"
        ) from None
    if not entries:
        return
    listed = marker_files(folder)
    if listed is None:
        raise NotOurs(source, _not_ours(folder, "exists and"))
    # what mlpgen wrote is a plain file; anything else under a listed name is not
    foreign = sorted(
        name
        for name in entries - CACHES - {MARKER}
        if name not in listed
        or (folder / name).is_symlink()
        or not (folder / name).is_file()
    )
    if foreign:
        shown_names = ", ".join(repr(name) for name in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise NotOurs(
            source,
            f"{shown(folder)} holds files that mlpgen did not write "
            f"({shown_names}{more}); move them elsewhere or choose another -o",
        )


def _not_ours(folder: Path, what: str) -> str:
    return (
        f"{shown(folder)} {what} was not written by mlpgen; "
        "remove it or choose another -o"
    )


def write_output(files: dict[str, str | bytes], folder: Path, source: str = "") -> None:
    """Write an output folder with its marker, replacing only mlpgen's own output.

    NotOurs (nothing touched) when ``folder`` holds anything else; OutputError
    when the files cannot be written (the previous output is then kept).
    """
    check_replaceable(folder, source)
    check_root(Path(folder).parent, source)
    try:
        write_atomically({**files, MARKER: marker_text(files)}, folder)
    except OSError as e:
        raise OutputError(
            source, f"cannot write {shown(folder)}: {e.strerror or e}"
        ) from None


def compile_spec(
    path, root: Path | str = "generated", teaching: Teaching | None = None
) -> Path:
    """Compile the spec at ``path`` into ``root/NAME/``; returns that folder
    (with ``teaching``, the teaching files too)."""
    prog = build(path)
    source = prog.net.spec.source
    folder = output_folder(root, prog.net.spec.name)
    check_replaceable(folder, source)
    write_output(render(prog, teaching=teaching), folder, source)
    return folder
