"""What the spec's data provides, known at compile time without generating it.

The data itself is made by the generated code (the same NumPy lines in all
three files); the compiler only needs its shapes to infer and check the graph,
and the inline arrays to embed them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ops import LOSSES
from .spec import Spec, SpecError


@dataclass(frozen=True)
class DataInfo:
    features: int | None  # columns of x, None when the spec's model.input must say
    targets: int | None  # columns of float targets
    classes: int | None  # number of classes for class-index targets
    float_targets: bool  # targets are floats (not usable as class indices)
    n: int | None  # number of samples, when known
    x: tuple | None = None  # inline data, as nested tuples
    y: tuple | None = None  # inline targets: rows (float) or indices (class)


def describe(spec: Spec) -> DataInfo:
    d = spec.data
    classification = LOSSES[spec.loss.type].targets == "class"
    problems: list[tuple[str, str]] = []
    info = None
    if d.kind == "inline":
        x = tuple(tuple(float(v) for v in row) for row in d.x)
        rows = [r if isinstance(r, (list, tuple)) else [r] for r in d.y]
        if classification:
            labels = []
            for i, r in enumerate(rows):
                if len(r) != 1 or float(r[0]) != int(r[0]) or r[0] < 0:
                    problems.append(
                        (f"data.y[{i}]", f"{spec.loss.type} needs a class index (an integer >= 0), got {r}")
                    )
                    continue
                labels.append(int(r[0]))
            classes = max(labels) + 1 if labels else None
            info = DataInfo(len(x[0]), None, classes, False, len(x), x, tuple(labels))
        else:
            width = len(rows[0])
            for i, r in enumerate(rows):
                if len(r) != width:
                    problems.append(
                        (f"data.y[{i}]", f"has {len(r)} values, the first row has {width}")
                    )
            y = tuple(tuple(float(v) for v in r) for r in rows)
            info = DataInfo(len(x[0]), width, None, True, len(x), x, y)
    elif d.kind == "random":
        if d.classes is not None:
            if not classification:
                problems.append(
                    ("data.classes", f"{spec.loss.type} needs float targets: use data.outputs")
                )
            info = DataInfo(None, None, d.classes, False, d.n)
        else:
            if classification:
                problems.append(
                    ("data.outputs", f"{spec.loss.type} needs class targets: use data.classes")
                )
            info = DataInfo(None, d.outputs, None, True, d.n)
    elif d.kind == "spiral":
        if not classification:
            problems.append(
                ("data.kind", f"spiral data has class labels, which {spec.loss.type} cannot use")
            )
        info = DataInfo(2, None, d.classes, False, d.n_per_class * d.classes)
    else:
        raise SpecError(spec.source, [("data.kind", f"'{d.kind}' is not supported yet")])
    if problems:
        raise SpecError(spec.source, problems)
    if info.n is not None and d.split is not None:
        n_train = int(d.split.train * info.n)
        if n_train < 1:
            raise SpecError(
                spec.source,
                [("data.split.train", f"leaves no training sample out of {info.n}")],
            )
    return info
