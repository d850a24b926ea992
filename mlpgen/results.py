"""Results that teach, for ``mlpgen compile --plot``: what the trained network learned.

The freshly rendered ``numpy_backprop.py`` is trained in this process, as its
``main`` trains it (NumPy only), and evaluated:

- the loss, and the accuracy where the loss defines one, of every part of the
  data (train, val, test) per epoch: from the script's own ``history/*``
  when its dump has them, else measured here after the last step of each
  epoch (at most MAX_POINTS epochs, evenly spread);
- the learning rate of every step, when the dump has ``lrs`` and it changes;
- for 2-D inputs, the learned function over a grid around the data (the
  decision boundary of a classifier);
- for classifiers, the confusion matrix and the accuracy of each class;
- for tiny data sets, every sample's prediction (a table on the page).

``figures`` draws them with matplotlib (Agg, no dates in the files: the same
numbers give the same bytes); ``page`` gives the numbers the page prints.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ops import LOSSES, accuracy_rule
from .values import load_module, num

MAX_POINTS = 200  # epochs evaluated for the curves
GRID = 200  # points per axis of the decision-boundary grid
TINY = 16  # data sets with at most this many samples get a prediction table


class TrainingFailed(Exception):
    """The generated script stopped with an error (its message)."""


@dataclass
class Results:
    name: str
    classification: bool  # class-index targets
    binary: bool  # 0/1 float targets with one output (bce, or mse on 0/1)
    correct: str | None  # the NumPy expression of a correct prediction
    losses: list[float]
    lrs: list[float] | None
    epochs: list[int] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)  # "train loss", …
    final: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> metric
    grid: tuple | None = None  # (xs, ys, values (GRID, GRID, k)), 2-D inputs
    points: dict = field(default_factory=dict)  # part -> (x, y)
    confusion: tuple | None = None  # (part, matrix) for classifiers
    table: list[dict] | None = None  # tiny data: one row per sample
    stopping: dict | None = None  # train.early_stopping: what it did (_stopping)

    @property
    def figure_names(self) -> list[str]:
        names = ["curves.png"]
        if self.grid is not None:
            names.append("boundary.png")
        if self.confusion is not None:
            names.append("classes.png")
        return names


def planned_figures(prog) -> list[str]:
    """The figures ``--plot`` draws for this network (known before training)."""
    net = prog.net
    names = ["loss.png", "curves.png"]
    if net.input_features == 2 and _boundary_kind(prog) is not None:
        names.append("boundary.png")
    if LOSSES[net.spec.loss.type].targets == "class":
        names.append("classes.png")
    return names


def _boundary_kind(prog) -> str | None:
    """How the output over a 2-D grid is drawn: class regions, one value, or not."""
    net = prog.net
    if net.tokens:  # token indices name vocabulary entries: no plane to draw
        return None
    if LOSSES[net.spec.loss.type].targets == "class":
        return "classes"
    if net.output.out_features == 1:
        return "value"
    return None


def _call_forward(module, params, buffers, x):
    """The output in evaluation mode (the core API's forward; buffers when it has them)."""
    args = (params, buffers, x) if buffers is not None else (params, x)
    return module.forward(*args)[0]


def _loss(module, out, y, params) -> float:
    if (
        "params"
        in module.loss_fn.__code__.co_varnames[: module.loss_fn.__code__.co_argcount]
    ):
        return float(module.loss_fn(out, y, params))
    return float(module.loss_fn(out, y))


def train(prog, numpy_text: str, data_file=None) -> Results:
    """Train the rendered NumPy implementation as its main() does, and evaluate it."""
    import numpy as np

    net = prog.net
    loss = LOSSES[net.spec.loss.type]
    with contextlib.ExitStack() as stack:
        folder = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="mlpgen-train-"))
        )
        if data_file is not None:
            (folder / data_file.name).write_bytes(data_file.content)
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(np.errstate(all="ignore"))
        module = load_module(numpy_text, folder)
        data = module.load_data()
        rule = accuracy_rule(net.spec.loss.type, net.output.out_features)
        shown = loss.accuracy_by_default or "accuracy" in net.spec.train.metrics
        correct = rule[0] if rule and shown else None
        state: dict[str, Any] = {"buffers": None, "steps": 0}
        n_train = len(data["train"][0])
        batch = getattr(module, "BATCH_SIZE", n_train)
        if net.spec.train.sampling == "with_replacement":
            per_epoch = max(1, n_train // batch)
        else:
            per_epoch = max(1, -(-n_train // batch))
        epochs = int(module.EPOCHS)
        stride = max(1, -(-epochs // MAX_POINTS))
        measured: dict[str, list[float]] = {}
        measured_epochs: list[int] = []

        def evaluate(params) -> dict[str, dict[str, float]]:
            out = {}
            for part, (x, y) in data.items():
                o = _call_forward(module, params, state["buffers"], x)
                row = {"loss": _loss(module, o, y, params)}
                if correct is not None:
                    row["accuracy"] = float(
                        np.mean(eval(correct, {"np": np, "out": o, "y": y}))
                    )
                out[part] = row
            return out

        if hasattr(module, "init_buffers"):
            make_buffers = module.init_buffers

            def init_buffers(*a, **k):
                state["buffers"] = make_buffers(*a, **k)
                return state["buffers"]

            module.init_buffers = init_buffers
        step_fn = module.optimizer_step

        def optimizer_step(params, *a, **k):
            result = step_fn(params, *a, **k)
            state["steps"] += 1
            if state["steps"] % per_epoch == 0:
                epoch = state["steps"] // per_epoch
                if epoch % stride == 0 or epoch == epochs:
                    measured_epochs.append(epoch)
                    for part, row in evaluate(params).items():
                        for metric, v in row.items():
                            measured.setdefault(f"{part} {metric}", []).append(v)
            return result

        module.optimizer_step = optimizer_step
        dump = folder / "run.npz"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                module.main(["--quiet", "--dump", str(dump)])
            except SystemExit as e:
                if e.code:
                    raise TrainingFailed(
                        err.getvalue().strip() or f"exit status {e.code}"
                    ) from None
            except FloatingPointError as e:
                raise TrainingFailed(f"training stopped: {e}") from None
        with np.load(dump) as archive:
            arrays = dict(archive)
        params = {
            k[len("final/") :]: v for k, v in arrays.items() if k.startswith("final/")
        }
        names = list(module.init_params())
        if state["buffers"] is not None:
            state["buffers"] = {
                k: params.pop(k) for k in list(params) if k not in names
            }
        params = {k: params[k] for k in names}
        lrs = arrays.get("lrs")
        results = Results(
            name=net.spec.name,
            classification=loss.targets == "class",
            binary=net.output.out_features == 1 and loss.targets != "class",
            correct=correct,
            losses=[float(v) for v in arrays["losses"]],
            lrs=[float(v) for v in lrs]
            if lrs is not None and np.ptp(lrs) > 0
            else None,
        )
        history = {
            k[len("history/") :]: v
            for k, v in arrays.items()
            if k.startswith("history/")
        }
        if history and not measured:  # (early stopping dumps its monitored value)
            results.history = {
                k.replace("_", " "): [float(x) for x in v] for k, v in history.items()
            }
            results.epochs = list(range(1, len(next(iter(history.values()))) + 1))
        else:
            results.history, results.epochs = measured, measured_epochs
        stop = net.spec.train.early_stopping
        monitored = arrays.get(f"history/{stop.monitor}") if stop else None
        if stop is not None and monitored is not None:
            results.stopping = _stopping(stop, [float(v) for v in monitored], epochs)
        results.final = evaluate(params)
        results.points = {part: (x, y) for part, (x, y) in data.items()}
        kind = _boundary_kind(prog)
        if net.input_features == 2 and kind is not None:
            results.grid = _grid(module, params, state["buffers"], data, kind)
        if results.classification:
            part = "val" if "val" in data else "test" if "test" in data else "train"
            x, y = data[part]
            pred = np.argmax(_call_forward(module, params, state["buffers"], x), axis=1)
            k = net.output.out_features
            matrix = np.zeros((k, k), dtype=int)
            np.add.at(matrix, (np.asarray(y, dtype=int), pred), 1)
            results.confusion = (part, matrix)
        total = sum(len(x) for x, _ in data.values())
        if total <= TINY:
            results.table = _table(module, params, state["buffers"], data, results)
    return results


def _stopping(stop, values: list[float], epochs: int) -> dict:
    """What early stopping did, replayed from the monitored value of every
    epoch that ran (the dump's history/): the epochs run, whether it stopped
    before the last, and the best epoch by the generated code's own rule
    (better than the best so far by more than min_delta)."""
    higher = stop.monitor.endswith("accuracy")
    best, best_epoch = (-float("inf") if higher else float("inf")), 0
    for epoch, v in enumerate(values, 1):
        if (v - best if higher else best - v) > stop.min_delta:
            best, best_epoch = v, epoch
    return {
        "monitor": stop.monitor.replace("_", " "),
        "patience": stop.patience,
        "min_delta": num(stop.min_delta),
        "ran": len(values),
        "epochs": epochs,
        "stopped": len(values) < epochs,
        "best_epoch": best_epoch,
        "best": num(best),
        "restored": stop.restore_best,
    }


def _grid(module, params, buffers, data, kind):
    import numpy as np

    x = np.concatenate([x for x, _ in data.values()])
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-9)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID)
    gx, gy = np.meshgrid(xs, ys)
    points = np.column_stack([gx.ravel(), gy.ravel()]).astype(x.dtype)
    out = np.asarray(_call_forward(module, params, buffers, points), dtype=np.float64)
    if kind == "classes":
        values = out.argmax(axis=1).reshape(GRID, GRID)
    else:
        values = out[:, 0].reshape(GRID, GRID)
    return xs, ys, values, kind


def _table(module, params, buffers, data, results) -> list[dict]:
    import numpy as np

    rows = []
    for part, (x, y) in data.items():
        out = _call_forward(module, params, buffers, x)
        for i in range(len(x)):
            row = {
                "part": part,
                "x": ", ".join(num(float(v)) for v in np.ravel(x[i])),
                "y": ", ".join(num(float(v)) for v in np.ravel(y[i])),
                "out": ", ".join(num(float(v)) for v in np.ravel(out[i])),
            }
            if results.correct is not None:
                ok = eval(
                    results.correct,
                    {"np": np, "out": out[i : i + 1], "y": y[i : i + 1]},
                )
                row["correct"] = "yes" if bool(np.all(ok)) else "no"
            rows.append(row)
    return rows


def page(results: Results | None) -> dict | None:
    """The numbers the learning page prints."""
    if results is None:
        return None
    final = [
        {"part": part, **{k: num(v) for k, v in row.items()}}
        for part, row in results.final.items()
    ]
    per_class = None
    if results.confusion is not None:
        part, matrix = results.confusion
        per_class = {
            "part": part,
            "rows": [
                {
                    "cls": i,
                    "n": int(matrix[i].sum()),
                    "accuracy": num(matrix[i, i] / matrix[i].sum())
                    if matrix[i].sum()
                    else "–",
                }
                for i in range(len(matrix))
            ],
        }
    return {
        "figures": results.figure_names,
        "final": final,
        "metrics": list(results.final.get("train", {})),
        "per_class": per_class,
        "table": results.table,
        "lrs": results.lrs is not None,
        "history": "measured" if results.history else None,
        "stopping": results.stopping,
    }


# ------------------------------------------------------------------ figures


def _save(fig) -> bytes:
    from .report import METADATA

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata=METADATA[".png"])
    return buf.getvalue()


def figures(results: Results) -> dict[str, bytes]:
    """The PNGs: curves.png, and boundary.png and classes.png where they apply."""
    from .report import _pyplot

    plt = _pyplot()
    out = {}
    with plt.rc_context({"font.size": 10}):
        out["curves.png"] = _curves(plt, results)
        if results.grid is not None:
            out["boundary.png"] = _boundary(plt, results)
        if results.confusion is not None:
            out["classes.png"] = _classes(plt, results)
    return out


PART_STYLE = {"train": ("C0", "-"), "val": ("C1", "--"), "test": ("C2", ":")}


def _curves(plt, r: Results) -> bytes:
    import numpy as np

    metrics = [
        m for m in ("loss", "accuracy") if any(k.endswith(" " + m) for k in r.history)
    ]
    panels = max(1, len(metrics)) + (1 if r.lrs else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, metrics or ["loss"]):
        if metric == "loss" and r.losses:
            steps = np.arange(1, len(r.losses) + 1)
            per_epoch = len(r.losses) / max(1, r.epochs[-1] if r.epochs else 1)
            ax.plot(
                steps / per_epoch,
                r.losses,
                color="0.75",
                linewidth=0.8,
                label="each step's batch",
            )
        for key, values in r.history.items():
            part, _, m = key.partition(" ")
            if m != metric:
                continue
            color, style = PART_STYLE.get(part, ("C3", "-."))
            ax.plot(
                r.epochs[: len(values)],
                values,
                color=color,
                linestyle=style,
                linewidth=1.8,
                label=part,
            )
        if metric == "loss":
            from .report import _scale_y

            _scale_y(
                ax,
                [v for k, v in r.history.items() if k.endswith(" loss")] + [r.losses],
            )
        if r.stopping is not None and r.stopping["restored"]:
            ax.axvline(
                r.stopping["best_epoch"],
                color="0.3",
                linestyle=":",
                linewidth=1.2,
                label=f"best epoch ({r.stopping['best_epoch']}), restored",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if r.lrs:
        ax = axes[-1]
        ax.plot(np.arange(1, len(r.lrs) + 1), r.lrs, color="C4")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.set_title("learning rate per step")
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{r.name}: training", fontsize=11)
    fig.tight_layout()
    data = _save(fig)
    plt.close(fig)
    return data


def _boundary(plt, r: Results) -> bytes:
    import numpy as np
    from matplotlib.colors import ListedColormap

    assert r.grid is not None
    xs, ys, values, kind = r.grid
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    if kind == "classes":
        k = int(max(values.max(), *(int(np.max(y)) for _, y in r.points.values()))) + 1
        colors = [plt.get_cmap("tab10")(i) for i in range(k)]
        ax.contourf(
            xs, ys, values, levels=np.arange(-0.5, k), colors=colors, alpha=0.25
        )
        ax.contour(
            xs, ys, values, levels=np.arange(0.5, k - 1), colors="k", linewidths=0.8
        )
        title = "learned class regions"
        cmap: str | ListedColormap = ListedColormap(colors)
        vmin, vmax = -0.5, k - 0.5
    else:
        mesh = ax.contourf(xs, ys, values, levels=20, cmap="RdBu_r", alpha=0.6)
        fig.colorbar(mesh, ax=ax, label="model output")
        middle = 0.5 if r.binary and values.min() >= 0 and values.max() <= 1 else 0.0
        if values.min() < middle < values.max():
            ax.contour(xs, ys, values, levels=[middle], colors="k", linewidths=1.2)
        title = f"learned function (the {num(middle)} contour in black)"
        cmap = "RdBu_r"
        vmin, vmax = float(values.min()), float(values.max())
        targets = np.concatenate([np.ravel(y) for _, y in r.points.values()])
        if np.isin(
            targets, (0, 1)
        ).all():  # 0/1 targets: blue and red, whatever the scale
            cmap, vmin, vmax = ListedColormap(["#2166ac", "#b2182b"]), -0.5, 1.5
    for part, (x, y) in r.points.items():
        c = np.asarray(y, dtype=float).reshape(len(y), -1)[:, 0]
        marker = {"train": "o", "val": "s", "test": "^"}.get(part, "o")
        ax.scatter(
            x[:, 0],
            x[:, 1],
            c=c,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            marker=marker,
            edgecolors="k",
            linewidths=0.5,
            s=28 if len(x) > 50 else 70,
            label=part,
        )
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(f"{r.name}: {title}", fontsize=10)
    ax.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    data = _save(fig)
    plt.close(fig)
    return data


def _classes(plt, r: Results) -> bytes:
    assert r.confusion is not None
    part, matrix = r.confusion
    k = len(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k + 1.8, 1.0 + 0.6 * k + 0.8))
    ax.imshow(matrix, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    labels = []
    for i in range(k):
        n = matrix[i].sum()
        labels.append(f"{i}  ({num(matrix[i, i] / n) if n else '–'})")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class  (its accuracy)")
    total = matrix.sum()
    acc = num(sum(matrix[i, i] for i in range(k)) / total) if total else "–"
    ax.set_title(f"{r.name}: {part} confusion matrix, accuracy {acc}", fontsize=10)
    fig.tight_layout()
    data = _save(fig)
    plt.close(fig)
    return data
