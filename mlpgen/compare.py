"""``mlpgen compare A B``: what differs between two specs, and what explains the gap.

Both specs are validated and written out with every default filled in (the
*canonical* form), and walked key by key: each difference is one
``path: A-value -> B-value``. Both are trained with their generated
``numpy_backprop.py``; then B is trained again once per difference, with that
one difference reverted to A's value, to measure how much of the gap in the
final loss each one closes. Related differences (the initialisations; loss
reduction, loss scale and learning rate, which together set the step size)
are also reverted together.

The final loss of every run is measured the same way, with A's loss function
on the run's trained model and training data, so that a change in how the
loss is *reported* (``scale``, ``reduction``) does not pass for a change in
how the network *trains*.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .schema import dump
from .spec import SpecError

# keys that label a spec rather than change its training
LABELS = ("mlpgen", "name", "description")
# a mapping with one of these keys changes its meaning (and its other keys)
# with it: when they differ, the whole mapping is one difference
DISCRIMINATORS = ("type", "scheme", "kind")
# differences reverted together as well as one by one, when two or more differ
STEP_SIZE = ("loss.reduction", "loss.scale", "train.optimizer.lr")
INIT_KEYS = ("init", "bias_init")
# a gap smaller than this (relative to A's loss) is no gap
SAME = 1e-9


# ------------------------------------------------------------------ differences


def canonical(spec) -> dict:
    """The validated spec as plain data, defaults filled in: valid spec input again."""
    data = dump(spec)
    data["model"]["layers"] = [_flat(layer) for layer in data["model"]["layers"]]
    return data


def _flat(layer: dict) -> dict:
    """A dumped layer as the spec writes it: its op's keys beside name and type."""
    keys = layer.pop("keys")
    return {**layer, **keys}


@dataclass(frozen=True)
class Difference:
    """One key whose value differs: ``path`` as a tuple of keys and list indices."""

    path: tuple
    a: Any
    b: Any

    @property
    def where(self) -> str:
        return format_path(self.path)

    def text(self, reverted: bool = False) -> str:
        """``path: A-value -> B-value``, or B -> A for a difference reverted in B."""
        old, new = (self.b, self.a) if reverted else (self.a, self.b)
        if self.path == ("model", "layers"):  # the whole list: name and type of each
            return f"{self.where}: {_layer_list(old)} -> {_layer_list(new)}"
        return f"{self.where}: {show(old)} -> {show(new)}"


def _layer_list(layers: list[dict]) -> str:
    return "[" + ", ".join(f"{layer['name']} {layer['type']}" for layer in layers) + "]"


def differences(a: dict, b: dict) -> list[Difference]:
    """Every difference between two canonical specs, in the order of A's keys."""
    found: list[Difference] = []
    for key in _keys(a, b):
        if key not in LABELS:
            _walk(a.get(key), b.get(key), (key,), found)
    return found


def _keys(a: dict, b: dict) -> list:
    return [*a, *(k for k in b if k not in a)]


def _walk(a: Any, b: Any, path: tuple, found: list[Difference]) -> None:
    if isinstance(a, dict) and isinstance(b, dict) and not _retyped(a, b):
        for key in _keys(a, b):
            _walk(a.get(key), b.get(key), (*path, key), found)
    elif path == ("model", "layers") and len(a) == len(b):
        for i, (la, lb) in enumerate(zip(a, b)):
            _walk(la, lb, (*path, i), found)
    elif a != b:
        found.append(Difference(path, a, b))


def _retyped(a: dict, b: dict) -> bool:
    return any(a.get(k) != b.get(k) for k in DISCRIMINATORS if k in a or k in b)


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def show(value: Any) -> str:
    """A value as the spec would say it; a mapping with a type as ``type(key=value)``."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        kind = next((k for k in DISCRIMINATORS if k in value), None)
        rest = {k: v for k, v in value.items() if k != kind and v is not None}
        args = ", ".join(f"{k}={show(v)}" for k, v in rest.items())
        if kind is None:
            return "{" + args + "}"
        return f"{value[kind]}({args})" if args else str(value[kind])
    if isinstance(value, list):
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return str(value)


def reverted(b: dict, diffs: list[Difference]) -> dict:
    """B's canonical data with each of ``diffs`` set back to A's value."""
    out = copy.deepcopy(b)
    for d in diffs:
        *parents, last = d.path
        node = out
        for key in parents:
            node = node[key]
        node[last] = copy.deepcopy(d.a)
    return out


def as_spec_input(value: Any) -> Any:
    """Canonical data as spec input: None values dropped (absent means the default)."""
    if isinstance(value, dict):
        return {k: as_spec_input(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [as_spec_input(v) for v in value]
    return value


# ---------------------------------------------------------------------- training


@dataclass
class Run:
    """One trained spec: its numpy_backprop module and what it dumped."""

    prog: Any  # the derived Program
    module: Any  # the generated numpy_backprop.py, imported
    arrays: dict  # the --dump archive

    @property
    def losses(self) -> np.ndarray:
        return self.arrays["losses"]

    @property
    def final(self) -> dict:
        return {
            k[len("final/") :]: v
            for k, v in self.arrays.items()
            if k.startswith("final/")
        }


class Trainer:
    """Compiles and trains spec data (canonical dicts) in one scratch folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.count = 0

    def train(self, data: dict, label: str, base_dir: str) -> Run:
        """Validate, compile and train ``data``; SpecError when it is not a valid spec."""
        from . import autodiff, graph
        from .compiler import render
        from .data import describe
        from .spec import parse_spec

        spec = parse_spec(as_spec_input(data), label, Path(base_dir))
        prog = autodiff.derive(graph.build(spec, describe(spec)))
        self.count += 1
        script = self.folder / f"run{self.count}_{spec.name}.py"
        text = render(prog)["numpy_backprop.py"]
        assert isinstance(text, str)
        script.write_text(text, encoding="utf-8")
        module = _import(script)
        archive = script.with_suffix(".npz")
        with np.errstate(all="ignore"):  # a diverging run shows as a nan loss
            module.main(["--quiet", "--dump", str(archive)])
        with np.load(archive) as arrays:
            return Run(prog, module, dict(arrays))


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"mlpgen_compare_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_loss(loss_module, run: Run) -> float:
    """``loss_module``'s loss of ``run``'s trained model on its training data."""
    fn = loss_module.loss_fn
    with np.errstate(all="ignore"):
        out = run.module.forward(run.final, run.arrays["x"])[0]
        args = (out, run.arrays["y"], run.final)  # the params only for an l2 term
        return float(fn(*args[: len(inspect.signature(fn).parameters)]))


# ------------------------------------------------------------------ the step size


def mse_weight(prog) -> float | None:
    """w in L = w·Σ(ŷ − y)² over one full batch, for an mse loss (else None).

    None too when the batches differ in size (then w is not one number).
    """
    from .lint import batch_rows, train_rows

    loss = prog.net.spec.loss
    n, rows = batch_rows(prog.net), train_rows(prog.net)
    if loss.type != "mse" or n is None or rows is None or rows % n:
        return None
    count = n * prog.net.output.out_features if loss.reduction == "mean" else 1
    return loss.scale / count


def _step_note(a: Run, b: Run) -> str | None:
    """For sgd with mse: the factor lr·2·w that multiplies (ŷ − y) in every update."""
    wa, wb = mse_weight(a.prog), mse_weight(b.prog)
    opt_a, opt_b = a.prog.net.spec.train.optimizer, b.prog.net.spec.train.optimizer
    if wa is None or wb is None or opt_a.type != "sgd" or opt_b.type != "sgd":
        return None
    sa, sb = opt_a.lr * 2 * wa, opt_b.lr * 2 * wb
    same = "the same step" if np.isclose(sa, sb, rtol=1e-12) else "different steps"
    return (
        "with sgd and mse, every update is lr·2·w·(ŷ − y)·…, where L = w·Σ(ŷ − y)²:\n"
        f"        A {opt_a.lr:g}·2·{wa:g} = {sa:g}, B {opt_b.lr:g}·2·{wb:g} = {sb:g}: {same}"
    )


# ------------------------------------------------------------------------ report


@dataclass
class Trial:
    """B with some differences reverted: the final loss by A's measure, or a failure."""

    diffs: list[Difference]
    loss: float | None
    problem: str = ""

    def closes(self, a: float, b: float) -> float | None:
        return None if self.loss is None else (b - self.loss) / (b - a)


def compare(path_a, path_b, epochs: int | None = None, plot=None) -> int:
    """Print the differences between two specs and what each does to the gap.

    0; 2 when either spec is invalid (every problem of both is printed).
    """
    from .spec import load_spec

    specs, status = [], 0
    for path in (path_a, path_b):
        try:
            specs.append(load_spec(path))
        except SpecError as e:
            print("\n".join(e.lines()), file=sys.stderr)
            status = 2
    if status:
        return status
    data_a, data_b = (canonical(s) for s in specs)
    if epochs is not None:
        data_a["train"]["epochs"] = data_b["train"]["epochs"] = epochs
    diffs = differences(data_a, data_b)
    name_a, name_b = specs[0].name, specs[1].name
    print(f"A = {path_a} ({name_a}), B = {path_b} ({name_b})")
    if not diffs:
        print("no differences that change training")
        return 0
    print(f"\n{len(diffs)} difference{'s' * (len(diffs) > 1)}, A -> B:")
    for d in diffs:
        print(f"  {d.text()}")

    with tempfile.TemporaryDirectory(prefix="mlpgen-compare-") as tmp:
        trainer = Trainer(Path(tmp))
        try:
            run_a = trainer.train(data_a, str(path_a), specs[0].base_dir)
            run_b = trainer.train(data_b, str(path_b), specs[1].base_dir)
        except SpecError as e:  # a valid spec that does not build (graph, data)
            print("\n".join(e.lines()), file=sys.stderr)
            return 2
        measure, measured = _measure(run_a, run_b)
        loss_a, loss_b = measure(run_a), measure(run_b)
        steps_a, steps_b = len(run_a.losses), len(run_b.losses)
        steps = (
            f"{steps_a} steps each"
            if steps_a == steps_b
            else f"A {steps_a}, B {steps_b} steps"
        )
        print(
            f"\ntrained with numpy_backprop ({steps}); the final loss on the training data,"
        )
        print(f"{measured} ({show(data_a['loss'])}):")
        print(f"  A {name_a:<16} {loss_a:.6g}")
        gap = loss_b - loss_a
        print(
            f"  B {name_b:<16} {loss_b:.6g}    gap B − A = {gap:+.6g}{_share(gap, loss_a)}"
        )
        note = _step_note(run_a, run_b)
        if note:
            print(f"  note: {note}")
        if not np.isfinite(gap):
            print(
                "\ntraining diverges (the final loss is not finite): no gap to explain"
            )
        elif abs(gap) <= SAME * max(abs(loss_a), 1e-300):
            print("\nA and B reach the same final loss: there is no gap to explain")
        else:
            singles = [
                _trial(trainer, data_b, [d], path_b, specs[1], measure) for d in diffs
            ]
            groups = [
                _trial(trainer, data_b, g, path_b, specs[1], measure)
                for g in _groups(diffs)
            ]
            _print_trials(singles, groups, loss_a, loss_b)
        if plot:
            _plot(plot, run_a, run_b, name_a, name_b)
            print(f"\nwrote {plot}")
    return 0


def _measure(run_a: Run, run_b: Run):
    """The final-loss measure and its name: A's loss, or each run's own when A's
    loss does not apply to B's model (other outputs or parameter names)."""
    try:
        final_loss(run_a.module, run_b)
    except (KeyError, ValueError, IndexError):
        return (lambda run: final_loss(run.module, run)), "each with its own loss"
    return (lambda run: final_loss(run_a.module, run)), "both measured with A's loss"


def _groups(diffs: list[Difference]) -> list[list[Difference]]:
    step = [d for d in diffs if d.where in STEP_SIZE]
    init = [d for d in diffs if d.path[-1] in INIT_KEYS]
    return [g for g in (init, step) if len(g) > 1]


def _trial(trainer, data_b, diffs, path_b, spec_b, measure) -> Trial:
    label = f"{path_b} with {', '.join(d.where for d in diffs)} reverted"
    try:
        run = trainer.train(reverted(data_b, diffs), label, spec_b.base_dir)
    except SpecError as e:
        problems = "; ".join(f"{at}: {m}" if at else m for at, m in e.problems)
        return Trial(diffs, None, f"not valid on its own ({problems})")
    try:
        loss = measure(run)
    except (KeyError, ValueError, IndexError):
        return Trial(diffs, None, "A's loss does not apply to this model")
    if not np.isfinite(loss):
        return Trial(diffs, None, f"training diverges (final loss {loss})")
    return Trial(diffs, loss)


def _print_trials(
    singles: list[Trial], groups: list[Trial], a: float, b: float
) -> None:
    """The trials, ranked by how close to A each one lands; then the conclusion."""

    def miss(t: Trial) -> float:  # what is left of the gap, either side of A
        c = t.closes(a, b)
        return np.inf if c is None else abs(1 - c)

    def row(t: Trial, what: str) -> str:
        c = t.closes(a, b)
        if c is None:
            return f"  {'':>7}  {'':>10}  {what}: {t.problem}"
        return f"  {_percent(c):>7}  {t.loss:>10.4g}  {what}"

    print(
        "\nB with one difference reverted to A's value, ranked by how close it lands to A"
        "\n(closes 100%: B then reaches A's final loss; over 100%: it overshoots past A):"
    )
    print(f"  {'closes':>7}  {'final loss':>10}  reverted in B")
    for t in sorted(singles, key=miss):
        print(row(t, t.diffs[0].text(reverted=True)))
    if groups:
        print("reverted together:")
        for t in sorted(groups, key=miss):
            print(row(t, _names(t)))
    print()
    best = min(singles + groups, key=miss)
    if miss(best) <= 0.1:
        how = "reverting it" if len(best.diffs) == 1 else "reverting them together"
        closes = _percent(best.closes(a, b) or 0.0)
        print(f"explained by {_names(best)}: {how} closes {closes} of the gap")
    else:
        print("no single difference (nor group) explains the gap: they act together")
    for t in groups:
        c = t.closes(a, b)
        if c is not None and abs(c) < 0.005:
            print(
                f"no effect together: {_names(t)} reverted at once change 0% of the gap"
            )


def _percent(c: float) -> str:
    """A share of the gap in whole percents; beyond ±9999% only its sign."""
    if abs(c) > 99.99:
        return ">9999%" if c > 0 else "<-9999%"
    return f"{round(c * 100) or 0}%"


def _share(gap: float, a: float) -> str:
    return f" ({_percent(gap / abs(a))} of A)" if a else ""


def _names(t: Trial) -> str:
    return " + ".join(d.where for d in t.diffs)


def _plot(file, run_a: Run, run_b: Run, name_a: str, name_b: str) -> None:
    """A's and B's loss curves; B's also in A's loss units when both are mse."""
    from .report import plot_losses

    curves = [(f"A {name_a}", run_a.losses), (f"B {name_b}", run_b.losses)]
    wa, wb = mse_weight(run_a.prog), mse_weight(run_b.prog)
    if wa is not None and wb is not None and wa != wb:
        curves.append(
            (f"B in A's loss units (× {wa / wb:g})", run_b.losses * (wa / wb))
        )
    plot_losses(file, f"{name_a} (A) vs {name_b} (B)", curves)
