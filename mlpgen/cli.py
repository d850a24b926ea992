"""The ``mlpgen`` command: compile, check, render, crosstest, run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .spec import SpecError


def _specs_or_exit(paths, action) -> int:
    """Run ``action(path)`` for each spec; report SpecErrors as lines, exit 2 on any."""
    status = 0
    for path in paths:
        try:
            action(path)
        except SpecError as e:
            for line in e.lines():
                print(line, file=sys.stderr)
            status = 2
    return status


def cmd_compile(args) -> int:
    from .compiler import build, output_folder, render, write_atomically

    # Validate every spec first, so a bad one writes nothing at all.
    progs = []
    status = _specs_or_exit(args.specs, lambda p: progs.append(build(p)))
    if status:
        return status
    for prog in progs:
        folder = output_folder(args.output, prog.net.spec.name)
        if args.plot:
            from .crosstest import ScriptFailed
            from .results import TrainingFailed

            try:
                files = render(prog, plot=True)
            except (ScriptFailed, TrainingFailed) as e:
                print(f"error: {prog.net.spec.source}: {e}", file=sys.stderr)
                status = 1
                continue
        else:
            files = render(prog)
        write_atomically(files, folder)
        print(f"wrote {folder}/")
    return status


def cmd_check(args) -> int:
    from .compiler import build
    from .lint import lint_report
    from .report import layer_table

    def check(path):
        prog = build(path)
        print(layer_table(prog), lint_report(prog), sep="\n\n", end="\n\n")

    return _specs_or_exit(args.specs, check)


def cmd_render(args) -> int:
    from .compiler import build
    from .render import write_diagrams

    progs = []
    status = _specs_or_exit([args.spec], lambda p: progs.append(build(p)))
    if status:
        return status
    from .values import step_of

    folder = Path(args.output or Path("generated", progs[0].net.spec.name))
    written = write_diagrams(progs[0], folder, step_of(progs[0]))
    print(f"wrote {', '.join(str(folder / name) for name in sorted(written))}")
    return 0


def cmd_crosstest(args) -> int:
    from .crosstest import crosstest

    result = {}

    def run(path):
        result["status"] = crosstest(path, epochs=args.epochs, plot=args.plot)

    status = _specs_or_exit([args.spec], run)
    return status or result["status"]


def cmd_run(args) -> int:
    from .crosstest import run_one

    result = {}

    def run(path):
        result["status"] = run_one(path, args.impl, epochs=args.epochs, plot=args.plot)

    status = _specs_or_exit([args.spec], run)
    return status or result["status"]


def cmd_compare(args) -> int:
    from .compare import compare

    return compare(args.a, args.b, epochs=args.epochs, plot=args.plot)


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
        raise argparse.ArgumentTypeError(f"must end in .png, .svg or .pdf, got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {str(path.parent)!r} to write {path.name} in")
    return text


def _training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the spec's epochs")
    p.add_argument("--plot", type=_plot_file, metavar="FILE.png", help="write the loss curves to this figure")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlpgen",
        description="Compile a network spec into three cross-tested implementations "
        "with derived gradients.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="write generated/NAME/ for each spec")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("-o", "--output", default="generated", metavar="ROOT", help="output root (default generated)")
    c.add_argument(
        "--plot",
        action="store_true",
        help="also train the network and draw, for the learning page, its curves per "
        "epoch, what it learned (decision boundary, confusion matrix) and the three "
        "implementations' loss curves (needs torch and matplotlib)",
    )
    c.set_defaults(func=cmd_compile)
    k = sub.add_parser("check", help="validate and print the layer table")
    k.add_argument("specs", nargs="+", metavar="SPEC")
    k.set_defaults(func=cmd_check)
    g = sub.add_parser("render", help="write the forward and backward diagrams only")
    g.add_argument("spec", metavar="SPEC")
    g.add_argument("-o", "--output", metavar="DIR", help="folder for the diagrams (default generated/NAME)")
    g.set_defaults(func=cmd_render)
    t = sub.add_parser("crosstest", help="compile to a scratch folder, run all three, compare")
    t.add_argument("spec", metavar="SPEC")
    _training_options(t)
    t.set_defaults(func=cmd_crosstest)
    r = sub.add_parser("run", help="train one implementation")
    r.add_argument("spec", metavar="SPEC")
    r.add_argument("--impl", choices=["numpy_backprop", "torch_manual", "torch_module"], default="numpy_backprop")
    _training_options(r)
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("compare", help="what differs between two specs, and which difference explains the loss gap")
    d.add_argument("a", metavar="A.yaml")
    d.add_argument("b", metavar="B.yaml")
    _training_options(d)
    d.set_defaults(func=cmd_compare)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
