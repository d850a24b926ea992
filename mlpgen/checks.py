"""Semantic checks: specs valid key by key that still cannot train.

Each check here finds a spec every key of which is fine, but that the
contract or PyTorch refuses as a whole, or that would only ever compute NaN:
``bce`` on a model output that is not a probability (torch's BCELoss raises),
a ``split`` that leaves a part empty, class weights that are all zero, and
``standardize`` on a column that is constant in the training part. They run
in ``graph.build`` once the network's shapes are known, and report problems
like every other spec error: ``(key path, message)``, the message saying why.

Choices that are legal but almost surely a mistake are warnings instead
(``lint.py``).
"""

from __future__ import annotations

import io
from typing import Any

from .ops import LOSSES, accuracy_rule
from .schema import show

Problem = tuple[str, str]

# The layers whose every output lies in [0, 1]: what bce may read.
PROBABILITIES = ("sigmoid", "softmax")


def problems(spec: Any, data_info: Any, layers: list) -> list[Problem]:
    """Every semantic problem of a spec whose graph is otherwise sound."""
    found = _bce_problems(spec, layers[-1])
    found += _hinge_problems(spec, layers[-1])
    found += _metric_problems(spec, layers[-1])
    found += _class_weight_problems(spec)
    found += _split_problems(spec, data_info)
    found += _batch_of_one_problems(spec, data_info, layers)
    found += _early_stopping_problems(spec)
    if not found:
        found += _standardize_problems(spec, data_info)
    return found


def _is_probability(layer: Any) -> bool:
    """Whether every value of the layer's output lies in [0, 1]."""
    if layer.op.name in PROBABILITIES:
        return True
    if layer.op.name == "activation":  # sigmoid(...) as the outermost function
        from . import cas

        return isinstance(cas.parse(layer.keys.expr), cas.Sigmoid)
    return False


def _bce_problems(spec: Any, out: Any) -> list[Problem]:
    if spec.loss.type != "bce" or _is_probability(out):
        return []
    message = (
        f"bce needs probabilities in [0, 1], but the model ends with "
        f"{out.op.name} ('{out.name}'), whose outputs can lie outside "
        "(torch's BCELoss then raises): end the model with a sigmoid layer, "
        "or use bce_with_logits on the raw scores"
    )
    return [(f"{out.path}.type", message)]


def _hinge_problems(spec: Any, out: Any) -> list[Problem]:
    if spec.loss.type != "hinge" or out.out_features == 1:
        return []
    message = (
        f"hinge takes one score per row, but the model ends with "
        f"{out.out_features} outputs ('{out.name}'): end it with a layer of out 1 "
        "(the sign of the score is the class, the targets are ±1)"
    )
    return [(out.path, message)]


def _metric_problems(spec: Any, out: Any) -> list[Problem]:
    """metrics: [accuracy] where the loss defines no accuracy for this output."""
    train = getattr(spec, "train", None)
    if train is None or "accuracy" not in train.metrics:
        return []
    if accuracy_rule(spec.loss.type, out.out_features) is not None:
        return []
    message = (
        f"accuracy is not defined for {spec.loss.type} on "
        f"{out.out_features} output: with mse it needs one-hot targets and "
        "several outputs (argmax of the output against argmax of the target); "
        "a single output is a regression: drop accuracy from metrics"
    )
    return [("train.metrics", message)]


def _class_weight_problems(spec: Any) -> list[Problem]:
    weight = getattr(spec.loss, "weight", None)
    if LOSSES[spec.loss.type].targets != "class" or not weight or any(weight):
        return []
    message = (
        "every class weight is 0: the loss is 0/0 = NaN with reduction mean "
        "and always 0 with sum, so nothing can train; give the classes that "
        "count a positive weight"
    )
    return [("loss.weight", message)]


def _batch_of_one_problems(spec: Any, data_info: Any, layers: list) -> list[Problem]:
    """batchnorm in training mode on a batch of one row: the batch variance is
    0/1 = 0 for every feature, x̂ is 0, and nn.BatchNorm1d raises ("Expected
    more than 1 value per channel when training"). Any batch of an epoch counts,
    the short last one included."""
    bn = [layer for layer in layers if layer.op.name == "batchnorm"]
    train, n = spec.train, data_info.n
    if not bn or train is None or n is None:
        return []
    n_train = int(spec.data.split.train * n) if spec.data.split is not None else n
    size = n_train if train.batch_size == "full" else min(train.batch_size, n_train)
    with_replacement = getattr(train, "sampling", "epochs") == "with_replacement"
    last = size if with_replacement else n_train - (n_train - 1) // size * size
    if size > 1 and last > 1:
        return []
    which = (
        "every batch has one row"
        if size == 1
        else f"the last batch of each epoch has one row ({n_train} = "
        f"{(n_train - 1) // size} × {size} + 1 training samples)"
    )
    message = (
        f"{which}, and batchnorm '{bn[0].name}' cannot normalise a batch of one "
        "in training (its variance is 0; PyTorch raises): choose a batch_size "
        "that leaves no batch of one row"
    )
    return [("train.batch_size", message)]


def _split_problems(spec: Any, data_info: Any) -> list[Problem]:
    """A val part asked for (val > 0) that the rounding down leaves empty.

    (The train part is checked with the data; the test part, the rest, is
    never empty when test > 0: int(train·n) + int(val·n) < (train + val)·n < n.)
    """
    split = spec.data.split
    n = data_info.n
    if split is None or n is None or split.val == 0 or int(split.val * n) > 0:
        return []
    message = (
        f"{show(split.val)} of {n} samples is {split.val * n:.3g}, which rounds "
        f"down to 0: the val part would be empty (and its loss 0/0); use a larger "
        "val fraction, more data, or val 0"
    )
    return [("data.split.val", message)]


def _early_stopping_problems(spec: Any) -> list[Problem]:
    """Early stopping on the val part of data that has none."""
    stop = getattr(spec.train, "early_stopping", None) if spec.train else None
    if stop is None or not stop.monitor.startswith("val_"):
        return []
    split = spec.data.split
    if split is not None and split.val > 0:
        return []
    message = (
        f"{stop.monitor} is measured on the val part, and the data has none: "
        "add data.split with val > 0 (e.g. {train: 0.9, val: 0.1}), or monitor "
        "train_loss"
    )
    return [("train.early_stopping.monitor", message)]


def _standardize_problems(spec: Any, data_info: Any) -> list[Problem]:
    """A column of x constant over the training part: standardizing divides by 0.

    Checked where the data is known at compile time (inline and file data),
    with the training part chosen as the generated code chooses it (the
    spec's seed, one permutation of the data stream).
    """
    if not spec.data.standardize:
        return []
    x, names = _known_x(data_info)
    if x is None:
        return []
    import numpy as np

    train: Any = slice(None)
    split = spec.data.split
    if split is not None:
        order = np.random.default_rng([spec.seed, 0]).permutation(len(x))
        train = order[: int(split.train * len(x))]
    part = x[train]
    constant = np.flatnonzero(part.std(axis=0) == 0)
    if not len(constant):
        return []
    j = int(constant[0])
    where = "the training part" if split is not None else "the data"
    more = f" (and {len(constant) - 1} more)" if len(constant) > 1 else ""
    message = (
        f"column {names[j]}{more} of x is constant over {where} (every value "
        f"{part[0, j]:g}): standardizing divides by its std, 0, which makes "
        "NaN; drop the column or set standardize: false"
    )
    return [("data.standardize", message)]


def _known_x(data_info: Any) -> tuple[Any, list[str]]:
    """x as the generated code loads it, and its columns' names; (None, []) when
    only the generated code knows it."""
    import numpy as np

    if data_info.x is not None:  # inline
        x = np.array(data_info.x, dtype=np.float64)
        return x, [f"x[:, {j}]" for j in range(x.shape[1])]
    file = data_info.file
    if file is None:
        return None, []
    if file.name.endswith(".csv"):
        table = np.loadtxt(io.BytesIO(file.content), delimiter=",", skiprows=1, ndmin=2)
        header = file.content.split(b"\n", 1)[0].decode().split(",")
        features = [h for i, h in enumerate(header) if i != file.target]
        names = [f"{show(name)} (x[:, {j}])" for j, name in enumerate(features)]
        return np.delete(table, file.target, axis=1), names
    with np.load(io.BytesIO(file.content), allow_pickle=False) as archive:
        x = archive["x"]
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        return None, []
    return x.astype(np.float64), [f"x[:, {j}]" for j in range(x.shape[1])]
