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

FILES = ("numpy_backprop.py", "torch_manual.py", "torch_module.py", "test_crosscheck.py", "README.md")
CODE = FILES[:-1]


def build(path) -> autodiff.Program:
    """Validate the spec at ``path`` and derive its program; SpecError on a bad spec."""
    return autodiff.derive(graph.load(path))


def ruff_bin() -> str:
    from ruff.__main__ import find_ruff_bin

    return os.fsdecode(find_ruff_bin())


def render(prog: autodiff.Program, plot: bool = False, draw: bool = True) -> dict[str, str | bytes]:
    """The generated files' text, formatted with ruff and parsed back as a check,
    the diagrams (DOT, and SVG when Graphviz is installed), the learning page,
    the explorer (index.html), a copy of the spec, and the bytes of the spec's
    data file when it has one (the scripts read that copy).

    The first training step of the NumPy implementation, run here, puts its
    numbers on the diagrams and the page. ``plot``: also train it and draw what
    it learned (results.py), and run the three implementations for loss.png
    (crosstest.ScriptFailed or results.TrainingFailed when one fails);
    ``draw=False`` leaves the pictures out but writes the page as with them.
    """
    from .emit import context, environment
    from .page import explorer, readme_context, spec_copy
    from .render import Drawing
    from .values import try_first_step

    env = environment()
    ctx = context(prog)
    data_file = prog.net.data.file
    files: dict[str, str | bytes] = {
        name: env.get_template(name + ".j2").render(ctx) for name in CODE
    }
    step = try_first_step(files["numpy_backprop.py"], data_file)
    # dot draws the SVGs in the background while ruff formats
    drawing = Drawing(prog, step)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpgen-fmt-") as tmp:
            for name in CODE:
                Path(tmp, name).write_text(files[name], encoding="utf-8")
            ruff = [ruff_bin(), "format", "--isolated", "--quiet", "--line-length", "88"]
            subprocess.run([*ruff, tmp], check=True)
            for name in CODE:
                files[name] = Path(tmp, name).read_text(encoding="utf-8")
                ast.parse(files[name], filename=name)
    finally:
        diagrams = drawing.files()  # waits for dot
    files.update(diagrams)
    if data_file is not None:
        files[data_file.name] = data_file.content
    results = None
    if plot:
        from . import results as res

        results = res.train(prog, files["numpy_backprop.py"], data_file)
        if draw:
            from .crosstest import loss_figure

            files.update(res.figures(results))
            files["loss.png"] = loss_figure(prog, files)
    files["README.md"] = env.get_template("README.md.j2").render(
        {**ctx, **readme_context(prog, step, results, files)}
    )
    copy = spec_copy(prog)
    if copy is not None:
        files[copy[0]] = copy[1]
    files["index.html"] = explorer(prog, files, step)
    return files


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


def compile_spec(path, root: Path | str = "generated") -> Path:
    prog = build(path)
    files = render(prog)
    folder = output_folder(root, prog.net.spec.name)
    write_atomically(files, folder)
    return folder
