"""The ``mlpgen`` command: compile, check, render, crosstest, run, compare, schema.

Every failure the user can cause ends in ``error:`` lines on stderr and one of
the exit statuses of ``status.py``, never in a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import __version__, status
from .spec import SpecError
from .status import MissingDependency, NotOurs, OutputError, shown


def _specs_or_exit(paths: list[str], action: Callable[[str], object]) -> int:
    """Run ``action(path)`` for each spec; report SpecErrors as lines, exit 2 on any."""
    code = status.OK
    for path in paths:
        try:
            action(path)
        except SpecError as e:
            for line in e.lines():
                print(line, file=sys.stderr)
            code = status.BAD_INPUT
    return code


def _require(command: str, *modules: str) -> None:
    """MissingDependency for the first of ``modules`` that is not installed.

    Only looked up, not imported: the compile path never imports torch.
    """
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            raise MissingDependency(command, module)


def _warn(prog) -> None:
    """The spec's warnings (legal, but almost surely a mistake), on stderr."""
    from .lint import warning_lines

    for line in warning_lines(prog):
        print(line, file=sys.stderr)


def _same_names(progs: list) -> int:
    """Exit 2 when two specs of one command have the same name (one output folder)."""
    first: dict[str, str] = {}
    code = status.OK
    for prog in progs:
        spec = prog.net.spec
        if spec.name in first:
            other = first[spec.name]
            if os.path.abspath(other) == os.path.abspath(spec.source):
                message = "the spec is given twice"
            else:
                message = (
                    f"name: '{spec.name}' is also the name of {shown(other)}: "
                    "both would be written to the same folder"
                )
            print(f"error: {shown(spec.source)}: {message}", file=sys.stderr)
            code = status.BAD_INPUT
        first.setdefault(spec.name, spec.source)
    return code


def cmd_compile(args: argparse.Namespace) -> int:
    if args.plot:
        _require("compile --plot", "torch", "matplotlib")
    if args.notebook:  # the notebook runs in a kernel of its own, and plots
        _require(
            "compile --notebook", "nbformat", "nbclient", "ipykernel", "matplotlib"
        )
    from .compiler import (
        build,
        check_replaceable,
        check_root,
        output_folder,
        render,
        write_output,
    )
    from .teach import NotebookFailed, Teaching, check

    # a training run of --plot that failed (numpy and matplotlib are imported
    # only when the compile trains: the plain compile stays quick)
    failed: tuple[type[Exception], ...] = ()
    if args.plot:
        from .crosstest import ScriptFailed
        from .results import TrainingFailed

        failed = (ScriptFailed, TrainingFailed)

    teaching = Teaching(args.exercise, args.ladder, args.notebook)

    def validate(path: str) -> None:
        prog = build(path)
        check(prog, teaching)  # what the teaching files cannot take
        progs.append(prog)

    # Validate every spec first, so a bad one writes nothing at all.
    progs: list = []
    code = _specs_or_exit(args.specs, validate)
    if code:
        return code
    code = _same_names(progs)
    if code:
        return code
    for prog in progs:
        _warn(prog)
    # Then every output folder, so that one that is not ours writes nothing either.
    folders = []
    for prog in progs:
        source = prog.net.spec.source
        check_root(args.output, source)
        folder = output_folder(args.output, prog.net.spec.name)
        check_replaceable(folder, source)
        folders.append(folder)
    for prog, folder in zip(progs, folders):
        source = prog.net.spec.source
        try:
            files = render(prog, plot=args.plot, teaching=teaching)
        except failed as e:  # --plot: a training run failed
            print(f"error: {shown(source)}: {e}", file=sys.stderr)
            code = status.FAILED
            continue
        except NotebookFailed as e:  # --notebook: a cell failed in a fresh kernel
            print(f"error: {shown(source)}: {e}", file=sys.stderr)
            code = status.FAILED
            continue
        except OSError as e:
            raise OutputError(
                source, f"cannot write a scratch file: {e.strerror or e}"
            ) from None
        write_output(files, folder, source)
        print(f"wrote {shown(folder)}/")
    return code


def cmd_check(args: argparse.Namespace) -> int:
    from .compiler import build
    from .lint import lint_report
    from .report import layer_table

    def check(path: str) -> None:
        prog = build(path)
        print(layer_table(prog), lint_report(prog), sep="\n\n", end="\n\n")

    return _specs_or_exit(args.specs, check)


def _diagram_names() -> set[str]:
    from .render import DIAGRAMS

    return {f"{name}.{ext}" for name in DIAGRAMS for ext in ("dot", "svg")}


def cmd_render(args: argparse.Namespace) -> int:
    from .compiler import MARKER, build, check_root, marker_files, marker_text
    from .render import write_diagrams
    from .values import step_of

    progs: list = []
    code = _specs_or_exit([args.spec], lambda p: progs.append(build(p)))
    if code:
        return code
    prog = progs[0]
    source = prog.net.spec.source
    folder = Path(args.output or Path("generated", prog.net.spec.name))
    _warn(prog)
    # The diagrams join whatever the folder holds, but never overwrite a
    # file that mlpgen did not write; the folder's marker lists them.
    check_root(folder, source)
    listed = marker_files(folder) or set()
    for name in sorted(_diagram_names()):
        path = folder / name
        if (path.exists() or path.is_symlink()) and name not in listed:
            raise NotOurs(
                source,
                f"{shown(path)} exists and was not written by mlpgen; "
                "remove it or choose another -o",
            )
    try:
        written = write_diagrams(prog, folder, step_of(prog))
        fd, tmp = tempfile.mkstemp(prefix=f"{MARKER}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(marker_text(listed | set(written)))
        os.replace(tmp, folder / MARKER)
    except OSError as e:
        raise OutputError(
            source, f"cannot write the diagrams into {shown(folder)}: {e.strerror or e}"
        ) from None
    print(f"wrote {', '.join(shown(folder / name) for name in sorted(written))}")
    return status.OK


def cmd_crosstest(args: argparse.Namespace) -> int:
    _require("crosstest", "torch", *(["matplotlib"] if args.plot else []))
    from .crosstest import crosstest

    result = {}

    def run(path: str) -> None:
        result["status"] = crosstest(path, epochs=args.epochs, plot=args.plot)

    code = _specs_or_exit([args.spec], run)
    return code or result["status"]


def cmd_run(args: argparse.Namespace) -> int:
    needs = ["tqdm"]
    if args.impl != "numpy_backprop":
        needs.append("torch")
    if args.plot:
        needs.append("matplotlib")
    _require("run", *needs)
    from .crosstest import run_one

    result = {}

    def run(path: str) -> None:
        result["status"] = run_one(path, args.impl, epochs=args.epochs, plot=args.plot)

    code = _specs_or_exit([args.spec], run)
    return code or result["status"]


def cmd_compare(args: argparse.Namespace) -> int:
    if args.plot:
        _require("compare --plot", "matplotlib")
    from .compare import compare

    return compare(args.a, args.b, epochs=args.epochs, plot=args.plot)


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from .spec_schema import spec_schema

    print(json.dumps(spec_schema(), indent=2, ensure_ascii=False))
    return status.OK


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _plot_file(text: str) -> str:
    """argparse type: a figure file in an existing folder (checked before training)."""
    path = Path(text)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise argparse.ArgumentTypeError(
            f"must end in .png, .svg or .pdf, got {text!r}"
        )
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"no folder {str(path.parent)!r} to write {path.name} in"
        )
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder")
    return text


def _training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="override the spec's epochs",
    )
    p.add_argument(
        "--plot",
        type=_plot_file,
        metavar="FILE.png",
        help="write the loss curves to this figure (needs mlpgen[plot])",
    )


EPILOG = """\
exit status: 0 ok (crosstest: the implementations agree); 1 crosstest: they
disagree, or training failed; 2 a bad spec or command line, or an output folder
that mlpgen did not write; 3 crosstest: an implementation failed to run; 4 an
optional package is missing (the message names the extra to install); 5 the
output could not be written.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlpgen",
        description="Compile a network spec into three cross-tested implementations "
        "with derived gradients.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mlpgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="write generated/NAME/ for each spec")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument(
        "-o",
        "--output",
        default="generated",
        metavar="ROOT",
        help="output root (default generated)",
    )
    c.add_argument(
        "--plot",
        action="store_true",
        help="also train the network and draw, for the learning page, its curves per "
        "epoch, what it learned (decision boundary, confusion matrix) and the three "
        "implementations' loss curves (needs mlpgen[torch] and mlpgen[plot])",
    )
    c.add_argument(
        "--exercise",
        nargs="?",
        const="guided",
        choices=("guided", "hard"),
        metavar="hard",
        help="also write exercise.py (numpy_backprop.py with backward() left blank, "
        "each line's formula kept) and grade.py (grades it line by line); "
        "--exercise=hard keeps only each line's shape",
    )
    c.add_argument(
        "--ladder",
        action="store_true",
        help="also write torch_autograd.py, torch_nn.py and torch_optim.py, the rungs "
        "between torch_manual.py and torch_module.py, and show them on the learning page",
    )
    c.add_argument(
        "--notebook",
        action="store_true",
        help="also write numpy_backprop.ipynb, executed (needs mlpgen[notebook])",
    )
    c.set_defaults(func=cmd_compile)
    k = sub.add_parser("check", help="validate and print the layer table")
    k.add_argument("specs", nargs="+", metavar="SPEC")
    k.set_defaults(func=cmd_check)
    g = sub.add_parser("render", help="write the forward and backward diagrams only")
    g.add_argument("spec", metavar="SPEC")
    g.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="folder for the diagrams (default generated/NAME)",
    )
    g.set_defaults(func=cmd_render)
    t = sub.add_parser(
        "crosstest", help="compile to a scratch folder, run all three, compare"
    )
    t.add_argument("spec", metavar="SPEC")
    _training_options(t)
    t.set_defaults(func=cmd_crosstest)
    r = sub.add_parser("run", help="train one implementation")
    r.add_argument("spec", metavar="SPEC")
    r.add_argument(
        "--impl",
        choices=["numpy_backprop", "torch_manual", "torch_module"],
        default="numpy_backprop",
    )
    _training_options(r)
    r.set_defaults(func=cmd_run)
    d = sub.add_parser(
        "compare",
        help="what differs between two specs, and which difference explains the "
        "loss gap",
    )
    d.add_argument("a", metavar="A.yaml")
    d.add_argument("b", metavar="B.yaml")
    _training_options(d)
    d.set_defaults(func=cmd_compare)
    s = sub.add_parser(
        "schema", help="print the JSON Schema (draft 2020-12) of the spec format"
    )
    s.set_defaults(func=cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # a bare --exercise takes no level: spelled out, so that it never takes the
    # spec after it for one (--exercise=hard names the other level)
    end = argv.index("--") if "--" in argv else len(argv)
    argv = [
        "--exercise=guided" if i < end and a == "--exercise" else a
        for i, a in enumerate(argv)
    ]
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except MissingDependency as e:
        print(e.line(), file=sys.stderr)
        return status.MISSING_DEPENDENCY
    except OutputError as e:
        print(e.line(), file=sys.stderr)
        return e.status
    except ModuleNotFoundError as e:  # a dependency of mlpgen itself is missing
        print(MissingDependency(args.command, e.name or "?").line(), file=sys.stderr)
        return status.MISSING_DEPENDENCY
    except BrokenPipeError:  # the reader went away (mlpgen schema | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return status.FAILED
    except OSError as e:  # writing a figure, a scratch folder: nothing else writes
        where = f"{shown(e.filename)}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return status.OUTPUT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
