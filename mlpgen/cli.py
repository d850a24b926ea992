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
    from .compiler import build, render, write_atomically

    # Validate every spec first, so a bad one writes nothing at all.
    progs = []
    status = _specs_or_exit(args.specs, lambda p: progs.append(build(p)))
    if status:
        return status
    for prog in progs:
        folder = Path(args.output) / prog.net.spec.name
        write_atomically(render(prog), folder)
        print(f"wrote {folder}/")
    return 0


def cmd_check(args) -> int:
    from .compiler import build
    from .report import layer_table

    return _specs_or_exit(args.specs, lambda p: print(layer_table(build(p))))


def cmd_crosstest(args) -> int:
    from .crosstest import crosstest

    result = {}

    def run(path):
        result["status"] = crosstest(path, epochs=args.epochs)

    status = _specs_or_exit([args.spec], run)
    return status or result["status"]


def cmd_run(args) -> int:
    from .crosstest import run_one

    result = {}

    def run(path):
        result["status"] = run_one(path, args.impl, epochs=args.epochs)

    status = _specs_or_exit([args.spec], run)
    return status or result["status"]


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
    c.set_defaults(func=cmd_compile)
    k = sub.add_parser("check", help="validate and print the layer table")
    k.add_argument("specs", nargs="+", metavar="SPEC")
    k.set_defaults(func=cmd_check)
    t = sub.add_parser("crosstest", help="compile to a scratch folder, run all three, compare")
    t.add_argument("spec", metavar="SPEC")
    t.add_argument("--epochs", type=int, default=None)
    t.set_defaults(func=cmd_crosstest)
    r = sub.add_parser("run", help="train one implementation")
    r.add_argument("spec", metavar="SPEC")
    r.add_argument("--impl", choices=["numpy_backprop", "torch_manual", "torch_module"], default="numpy_backprop")
    r.add_argument("--epochs", type=int, default=None)
    r.set_defaults(func=cmd_run)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
