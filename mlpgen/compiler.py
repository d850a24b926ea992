"""The pipeline, one way: spec -> data description -> graph -> derived program -> files."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import autodiff, data, graph
from .spec import load_spec

FILES = ("numpy_backprop.py", "torch_manual.py", "torch_module.py", "test_crosscheck.py", "README.md")


def build(path) -> autodiff.Program:
    """Validate the spec at ``path`` and derive its program; SpecError on a bad spec."""
    spec = load_spec(path)
    net = graph.build(spec, data.describe(spec))
    return autodiff.derive(net)


def ruff_bin() -> str:
    from ruff.__main__ import find_ruff_bin

    return os.fsdecode(find_ruff_bin())


def render(prog: autodiff.Program) -> dict[str, str]:
    """The generated files' text, formatted with ruff and parsed back as a check."""
    from .emit import environment, context

    env = environment()
    ctx = context(prog)
    files = {name: env.get_template(name + ".j2").render(ctx) for name in FILES}
    with tempfile.TemporaryDirectory(prefix="mlpgen-fmt-") as tmp:
        for name in FILES:
            if name.endswith(".py"):
                Path(tmp, name).write_text(files[name], encoding="utf-8")
        subprocess.run(
            [ruff_bin(), "format", "--isolated", "--quiet", "--line-length", "88", tmp],
            check=True,
        )
        for name in FILES:
            if name.endswith(".py"):
                files[name] = Path(tmp, name).read_text(encoding="utf-8")
                ast.parse(files[name], filename=name)
    return files


def write_atomically(files: dict[str, str | bytes], folder: Path) -> None:
    """Write ``folder`` as a whole: a temporary sibling is filled, then swapped in.

    A failure before the swap leaves the previous folder untouched.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, content in sorted(files.items()):
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8", newline="\n")
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def compile_spec(path, root: Path | str = "generated") -> Path:
    prog = build(path)
    files = render(prog)
    folder = Path(root) / prog.net.spec.name
    write_atomically(files, folder)
    return folder
