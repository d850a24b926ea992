"""``mlpgen check`` as a teacher: the cost of one training step, and warnings.

The cost table counts the floating-point operations of one training step as
the derived program performs them, and the bytes of the forward values that
the backward pass keeps (``Program.saved``). The warnings name spec choices
that are legal but rarely what was meant, each in one line with a short why.
Nothing here changes the exit status of ``check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .autodiff import Program
from .graph import INPUT, Network
from .ops import LOSSES

FLOP_RULE = (
    "FLOPs counted: linear 2·N·in·out forward, backward 2·N·in·out for ∂W and as much "
    "again for ∂input (none for x); batchnorm and layernorm 7·N·features forward "
    "(mean, centre, square, variance, x̂, scale, shift) and 10·N·features backward; "
    "embedding none forward (a lookup), N·T·dim backward (the scatter-add); other "
    "layers N·features each way; biases, loss, update not counted"
)
# FLOPs per output element of the layers that do more than one operation per
# element: (forward, backward), by FLOP_RULE
PER_ELEMENT = {"batchnorm": (7, 10), "layernorm": (7, 10), "embedding": (0, 1)}
SAVED_RULE = (
    "kept for backward: the forward values the backward pass reads, N·features·itemsize"
)
ITEMSIZE = {"float64": 8, "float32": 4}


def train_rows(net: Network) -> int | None:
    """Samples in the training part, or None when only the generated code knows."""
    n = net.data.n
    split = net.spec.data.split
    if n is None or split is None:
        return n
    return int(split.train * n)


def batch_rows(net: Network) -> int | None:
    """N of one training step: the whole training part, or ``batch_size`` of it."""
    n = train_rows(net)
    size = net.spec.train.batch_size
    if size == "full" or n is None:
        return n
    return min(size, n)


@dataclass(frozen=True)
class LayerCost:
    name: str  # the layer, or "x" for the input
    forward: int  # FLOPs of the forward pass
    backward: int  # FLOPs of the backward pass
    saved: int  # bytes kept for the backward pass


def costs(prog: Program, n: int) -> list[LayerCost]:
    """Per layer (the input ``x`` first): FLOPs of one step at batch ``n``, saved bytes."""
    net = prog.net
    itemsize = ITEMSIZE[net.spec.dtype]
    # layers whose backward lines pass a gradient on to their inputs
    passes_back = {
        line.layer for line in prog.backward if line.kind in ("grad", "fanout_part")
    }
    rows = [
        LayerCost(INPUT, 0, 0, _saved(prog, INPUT, n * net.input_features, itemsize))
    ]
    shapes = {
        line.target.code: line.shape
        for line in prog.forward
        if line.kind == "intermediate" and line.shape
    }
    for layer in net.layers:
        size = n * layer.out_features
        if layer.op.name == "linear":
            matmul = 2 * n * layer.in_features[0] * layer.out_features
            forward = matmul
            backward = matmul + (matmul if layer.name in passes_back else 0)
        elif layer.op.name in PER_ELEMENT:
            fw, bw = PER_ELEMENT[layer.op.name]
            forward = fw * size
            # a parameter's gradient is computed whether or not x gets one
            backward = bw * size if layer.name in passes_back or layer.params else 0
        else:
            forward = size
            backward = size if layer.name in passes_back else 0
        saved = _saved(prog, layer.name, size, itemsize)
        # the intermediates a layer keeps for its backward rule (dropout's mask,
        # batchnorm's x̂ (N, F) and 1/√(σ² + ε) (F,), …), each of its own shape
        saved += sum(
            _numel(shapes.get(code, "(N, 1)"), n)
            * (size // n if code not in shapes else 1)
            * itemsize
            for key, code in prog.saved
            if key.startswith(layer.name + ".")
        )
        rows.append(LayerCost(layer.name, forward, backward, saved))
    return rows


def _numel(shape: str, n: int) -> int:
    """Elements of a shape as the forward lines print it: ``(N, 6)``, ``(6,)``."""
    total = 1
    for dim in shape.strip("()").split(","):
        dim = dim.strip()
        if dim:
            total *= n if dim == "N" else int(dim)
    return total


def _saved(prog: Program, name: str, numel: int, itemsize: int) -> int:
    return numel * itemsize if any(key == name for key, _ in prog.saved) else 0


def cost_table(prog: Program) -> str:
    """The cost table printed by ``mlpgen check`` below the layer table."""
    net = prog.net
    n = batch_rows(net)
    if n is None:
        n, batch = (
            1,
            "per sample (N = 1; the data's size is known only when it is read)",
        )
    elif net.spec.train.batch_size == "full":
        batch = f"at N = {n}, the full training batch"
    else:
        batch = f"at N = {n}, one batch of batch_size"
    rows = costs(prog, n)
    table = [("layer", "forward FLOPs", "backward FLOPs", "kept for backward")]
    for r in rows:
        table.append(
            (
                r.name,
                _num(r.forward),
                _num(r.backward),
                f"{r.saved:,} B" if r.saved else "",
            )
        )
    table.append(
        (
            "total",
            _num(sum(r.forward for r in rows)),
            _num(sum(r.backward for r in rows)),
            f"{sum(r.saved for r in rows):,} B",
        )
    )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = [
        f"one training step {batch}, {net.spec.dtype}: {_num(step_flops(prog, n))} FLOPs"
    ]
    for i, cols in enumerate(table):
        cells = [cols[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(cols[1:], widths[1:])
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0 or i == len(table) - 2:
            lines.append("  ".join("-" * w for w in widths))
    lines += [FLOP_RULE, SAVED_RULE]
    return "\n".join(lines)


def step_flops(prog: Program, n: int) -> int:
    """FLOPs of one training step at batch ``n``, by the rule in FLOP_RULE."""
    return sum(r.forward + r.backward for r in costs(prog, n))


def _num(v: int) -> str:
    return f"{v:,}" if v else ""


# ---------------------------------------------------------------------- warnings

# the losses that apply a function to the model output themselves, and the
# output layers that would then apply it a second time
_APPLIED_AGAIN = {
    "cross_entropy": (("softmax", "log_softmax"), "log_softmax"),
    "bce_with_logits": (("sigmoid",), "sigmoid"),
}


def warnings(prog: Program) -> list[tuple[str, str]]:
    """(key path, message) for each choice that is legal but rarely meant."""
    net = prog.net
    spec = net.spec
    loss: Any = spec.loss  # each loss type has keys of its own
    opt = spec.train.optimizer
    last = net.output
    at_last = f"{last.path} ({last.name})"
    found: list[tuple[str, str]] = []

    def warn(path: str, *parts: str) -> None:
        found.append((path, "".join(parts)))

    before, applied = _APPLIED_AGAIN.get(loss.type, ((), ""))
    if last.op.name in before:
        head = (
            f"{last.op.name} right before {loss.type}, which applies {applied} itself: "
        )
        if last.op.name == "log_softmax":
            warn(
                at_last,
                head,
                "harmless (log_softmax of log-probabilities changes nothing) ",
                "but redundant; use nll, or drop the layer",
            )
        else:
            warn(
                at_last,
                head,
                f"the loss sees {last.op.name} applied twice, which flattens ",
                "the outputs and shrinks the gradients; drop the layer",
            )
    if loss.type == "nll" and last.op.name != "log_softmax":
        warn(
            at_last,
            f"nll after {last.op.name}, not log_softmax: nll expects log-probabilities ",
            "(it only computes −out[y]); end the model with log_softmax, or use cross_entropy",
        )
    weighted = loss.type in ("cross_entropy", "nll") and loss.weight is not None
    if weighted and loss.reduction == "mean":
        warn(
            "loss.weight",
            "class weights with reduction mean: the mean divides by Σ w[y_i] over the ",
            "batch (as torch does), not by N, so the scale depends on the batch's classes",
        )
    if weighted and float(getattr(loss, "label_smoothing", 0.0)):
        warn(
            "loss.label_smoothing",
            "label smoothing with class weights: torch weights the smoothing term "
            "by class too (ε/C·Σⱼ −w[j]·log pⱼ, not ε/C·Σⱼ −log pⱼ), and with "
            "reduction mean divides it, like the class term, by Σ w[y_i]: the ",
            "ε/C spread over the classes is not uniform but proportional to w",
        )
    if opt.type == "adam" and opt.weight_decay > 0:
        warn(
            "train.optimizer.weight_decay",
            "adam adds weight_decay·p to the gradient (an L2 ",
            "term that Adam then rescales), not decoupled decay: adamw was likely meant",
        )
    if opt.type == "sgd" and opt.dampening != 0 and opt.momentum == 0:
        warn(
            "train.optimizer.dampening",
            "dampening without momentum has no effect: it only ",
            "scales the gradient's share of the momentum buffer",
        )
    k = last.out_features
    if loss.type == "mse" and loss.reduction == "mean" and k > 1:
        warn(
            "loss.reduction",
            f"mse mean with {k} output columns averages over all N·{k} ",
            f"elements, not over samples: the loss is {k}× smaller than the per-sample sum ",
            "of squared errors",
        )
    if spec.dtype == "float32":
        warn(
            "dtype",
            "float32: the three implementations agree only to about 1e-4 (relative), ",
            "float64 to 1e-10",
        )
    found += _optimizer_warnings(opt)
    found += _loop_warnings(spec)
    found += _model_warnings(net)
    found += _data_warnings(spec)
    return found


def _loop_warnings(spec) -> list[tuple[str, str]]:
    """Training-loop choices that do not do what their name suggests."""
    train = spec.train
    found = []
    momentum = getattr(train.optimizer, "momentum", 0)
    if train.schedule is not None and momentum > 0:
        found.append(
            (
                "train.schedule",
                (
                    f"momentum with a changing lr: {train.optimizer.type} applies the "
                    "lr of each step to the whole momentum buffer (p ← p − lr·b), as "
                    "torch does, so a change of lr rescales the steps already taken too; "
                    "the hand-written velocity form v ← μ·v − lr·g, p ← p + v keeps each "
                    "step's lr inside v, and the two agree only while lr is constant"
                ),
            )
        )
    stop = train.early_stopping
    if stop is not None and stop.monitor == "train_loss":
        split = spec.data.split
        has_val = split is not None and split.val > 0
        found.append(
            (
                "train.early_stopping.monitor",
                "early stopping on train_loss: the training loss keeps falling "
                "while the network overfits, so this stops only when training "
                "stalls"
                + (
                    "; monitor val_loss, the data has a val part"
                    if has_val
                    else "; give the data a val part (data.split.val) and monitor val_loss"
                ),
            )
        )
    return found


def _optimizer_warnings(opt) -> list[tuple[str, str]]:
    """Optimizer settings that make the update blow up or go backwards."""
    at = "train.optimizer"
    found = []
    if getattr(opt, "eps", None) == 0:
        found.append(
            (
                f"{at}.eps",
                (
                    f"eps 0 with {opt.type}: the update divides by √(running average of "
                    "g²) + eps, which is 0 for every parameter whose gradients have all "
                    "been 0 (a dead unit, an unused input), and 0/0 is NaN; keep eps > 0 "
                    "(torch's default is 1e-08)"
                ),
            )
        )
    momentum = getattr(opt, "momentum", 0)
    if momentum >= 1:
        found.append(
            (
                f"{at}.momentum",
                (
                    f"momentum {momentum:g} >= 1: the momentum buffer never forgets (it "
                    "grows by every gradient instead of averaging them), so the steps "
                    "grow without bound; use a value below 1 such as 0.9"
                ),
            )
        )
    if opt.type == "rmsprop" and opt.alpha == 1:
        found.append(
            (
                f"{at}.alpha",
                (
                    "alpha 1: the running average of g² keeps its initial 0 forever "
                    "(alpha·v + (1 − alpha)·g² = v), so every step is lr·g/eps, a huge "
                    "one; use a value below 1 such as 0.99"
                ),
            )
        )
    dampening = getattr(opt, "dampening", 0)
    if momentum > 0 and not 0 <= dampening <= 1:
        effect = (
            "negative, so the buffer moves against the gradient"
            if dampening > 1
            else "above 1, so each gradient is amplified"
        )
        found.append(
            (
                f"{at}.dampening",
                (
                    f"dampening {dampening:g} outside [0, 1]: the gradient enters the "
                    f"momentum buffer times (1 − dampening), which is {effect}"
                ),
            )
        )
    return found


def _model_warnings(net: Network) -> list[tuple[str, str]]:
    """Layers that cannot do what they are there for."""
    found = []
    last = net.output
    loss = net.spec.loss.type
    dropped = [
        layer
        for layer in net.layers
        if layer.op.name == "dropout"
        and (
            layer is last
            or (
                net.consumers(layer.name) == [last.name]
                and last.op.elementwise
                and not last.params
            )
        )
    ]
    for layer in dropped:
        where = "is the model output" if layer is last else f"feeds only {last.name}"
        found.append(
            (
                layer.path,
                (
                    f"dropout right before the loss ({layer.name} {where}): it zeroes "
                    "random outputs during training, so the loss trains on corrupted "
                    "predictions while evaluation sees none; put dropout between hidden "
                    "layers"
                ),
            )
        )
    if LOSSES[loss].targets == "class" and last.out_features == 1:
        found.append(
            (
                f"{last.path}",
                (
                    f"{loss} on one output column: with a single class score, softmax is "
                    "always 1, the loss is constant and nothing trains; give the last "
                    "layer one output per class (2 for a yes/no question), or use "
                    "bce_with_logits on one column"
                ),
            )
        )
    found += _batchnorm_warnings(net)
    found += _hinge_warnings(net)
    for layer in net.layers:
        if layer.op.name != "activation":
            continue
        inputs = layer.inputs[0]
        source = None if inputs == INPUT else net.layer(inputs).op.name
        for condition in undefined_where(layer.keys.expr, source):
            found.append(
                (
                    f"{layer.path}.expr",
                    (
                        f"{layer.keys.expr!r} is undefined {condition}, and its input "
                        f"({inputs}) can take such values: training then computes NaN "
                        "or inf; keep the input in range (e.g. softplus or sigmoid "
                        "before it) or change the formula"
                    ),
                )
            )
    return found


# Below this many rows a batch's mean and variance are too noisy a stand-in
# for the running statistics that evaluation uses.
SMALL_BATCH = 8


def _batchnorm_warnings(net: Network) -> list[tuple[str, str]]:
    """batchnorm's two classic pitfalls: a bias it cancels, a batch too small."""
    found = []
    rows = batch_rows(net)
    for layer in net.layers:
        if layer.op.name != "batchnorm":
            continue
        src = layer.inputs[0]
        before = None if src == INPUT else net.layer(src)
        if before is not None and before.op.name == "linear" and before.keys.bias:
            found.append(
                (
                    f"{before.path}.bias",
                    (
                        f"'{before.name}' has a bias, and batchnorm '{layer.name}' right "
                        "after it subtracts the batch mean, which cancels any bias: its "
                        "gradient is 0 (but for rounding) and it never trains; set "
                        f"bias: false on '{before.name}' (batchnorm's own β is the bias)"
                    ),
                )
            )
        if rows is not None and rows < SMALL_BATCH:
            found.append(
                (
                    "train.batch_size",
                    (
                        f"batches of {rows} rows with batchnorm '{layer.name}': the "
                        "mean and variance of so few rows are noisy, training "
                        "normalises with them while evaluation uses the running "
                        "averages, so the model can score much worse in evaluation; "
                        f"use batches of at least {SMALL_BATCH} rows, or layernorm"
                    ),
                )
            )
    return found


# What the layers before a custom activation guarantee about its input.
_POSITIVE = ("sigmoid", "softmax", "softplus")
_NON_NEGATIVE = ("relu",)


# Output layers whose values are never negative: sign(s) is never −1.
NONNEGATIVE = ("relu", "sigmoid", "softmax", "softplus")


def _hinge_warnings(net: Network) -> list[tuple[str, str]]:
    """hinge on a score that cannot take both signs, or cannot pass the margin."""
    last = net.output
    if net.spec.loss.type != "hinge":
        return []
    if last.op.name in NONNEGATIVE:
        return [
            (
                last.path,
                (
                    f"hinge on the output of {last.op.name}, which is never "
                    "negative: its targets are −1 and +1 and the sign of the score "
                    "is the class, so every −1 row stays wrong; end the model with a "
                    "linear layer (a raw score)"
                ),
            )
        ]
    if last.op.name == "tanh":
        return [
            (
                last.path,
                (
                    "hinge on the output of tanh, which stays inside (−1, 1): no row "
                    "ever reaches the margin y·s >= 1, so every row keeps a gradient "
                    "and the loss never reaches 0; end the model with a linear layer"
                ),
            )
        ]
    return []


def undefined_where(text: str, source: str | None = None) -> list[str]:
    """Where the formula ``text`` or its slope is undefined, in words
    (``for x <= 0 (log of a number <= 0)``), leaving out the inputs that the
    layer before it (``source``, an op name) cannot produce."""
    import sympy

    from . import cas

    # per argument: the relation under which it is undefined, and why
    found: dict[Any, tuple[str, str]] = {}

    def need(u, relation: str, why: str) -> None:
        if relation == "= 0" and u in found:
            return  # implied by what is already there (<= 0 or < 0 with = 0)
        if u in found and found[u][0] != relation:
            relation, why = "<= 0", f"{found[u][1]}; {why}"
        found[u] = (relation, why)

    for node in sympy.preorder_traversal(cas.parse(text)):
        if isinstance(node, cas.Log):
            need(node.args[0], "<= 0", "log of a number <= 0")
        elif isinstance(node, cas.Sqrt):
            need(node.args[0], "<= 0", "sqrt of a negative number, infinite slope at 0")
        elif node.is_Pow and node.args[0].free_symbols:
            base, exponent = node.args
            if exponent.free_symbols:
                need(base, "<= 0", "a power with a variable exponent needs a base > 0")
            elif exponent.is_Integer:
                if exponent < 0:
                    need(base, "= 0", "division by zero")
            elif exponent < 1:
                need(base, "<= 0", "a fractional power, infinite slope at 0")
            else:
                need(base, "< 0", "a fractional power of a negative number")
    # the input as the layer before allows it: positive after sigmoid, ...
    if source in _POSITIVE:
        t = sympy.Symbol("t", positive=True)
    elif source in _NON_NEGATIVE:
        t = sympy.Symbol("t", nonnegative=True)
    else:
        t = sympy.Symbol("t", real=True)
    ruled_out = {
        "<= 0": lambda v: v.is_positive,
        "< 0": lambda v: v.is_nonnegative,
        "= 0": lambda v: v.is_nonzero,
    }
    # sympy's own functions, whose signs sympy knows (exp(u) + 1 > 0, ...)
    known = {
        cas.Exp: sympy.exp,
        cas.Log: sympy.log,
        cas.Sqrt: sympy.sqrt,
        cas.Tanh: sympy.tanh,
        cas.Sigmoid: lambda u: 1 / (1 + sympy.exp(-u)),
        cas.Softplus: lambda u: sympy.log(1 + sympy.exp(u)),
        cas.Erf: sympy.erf,
        cas.Sin: sympy.sin,
        cas.Cos: sympy.cos,
        cas.Abs: sympy.Abs,
    }

    def plain(u):
        for ours, theirs in known.items():
            u = u.replace(ours, theirs)
        return u.xreplace({cas.X: t})

    lines = []
    for u, (relation, why) in found.items():
        if ruled_out[relation](plain(u)):
            continue
        where = f"for x {relation}" if u == cas.X else f"where {u} {relation}"
        lines.append(f"{where} ({why})")
    return lines


def _data_warnings(spec) -> list[tuple[str, str]]:
    """A data file outside the spec's folder is copied into the output."""
    import os

    if spec.data.kind != "file":
        return []
    base = os.path.realpath(spec.base_dir)
    path = os.path.realpath(os.path.join(spec.base_dir, spec.data.path))
    if os.path.commonpath([base, path]) == base:
        return []
    return [
        (
            "data.path",
            (
                f"{spec.data.path!r} is outside the spec's folder: compile copies it into "
                "the output folder next to the scripts, where anyone you share that "
                "folder with reads it; move it beside the spec if that is not meant"
            ),
        )
    ]


def warning_lines(prog: Program) -> list[str]:
    """The warnings as printed: ``warning: FILE: PATH: message``."""
    return [
        f"warning: {prog.net.spec.source}: {path}: {msg}"
        for path, msg in warnings(prog)
    ]


def batches_line(spec) -> str:
    """How training cuts the data into batches, and in what order: mini-batches
    come in the data's order unless the spec asks for shuffling."""
    t = spec.train
    if t.sampling == "with_replacement":
        size = "the training set's size" if t.batch_size == "full" else t.batch_size
        return (
            f"batches: {size} rows each, drawn with replacement from the shuffle "
            "stream (train.sampling: with_replacement)"
        )
    if t.batch_size == "full":
        what = "batches: each step trains on the whole training set"
        if t.shuffle:
            return f"{what}, in a new order each epoch drawn from the shuffle stream (train.shuffle: true)"
        return f"{what} (train.batch_size: full)"
    what = f"batches: {t.batch_size} rows each"
    if t.shuffle:
        return f"{what}, in a new order each epoch drawn from the shuffle stream (train.shuffle: true)"
    return (
        f"{what}, the training rows in their order, the same every epoch: not shuffled "
        "(train.shuffle is false, the default; true draws a new order each epoch "
        "from the shuffle stream)"
    )


def lint_report(prog: Program) -> str:
    """What ``mlpgen check`` prints below the layer table: costs, how the data is
    batched, then warnings."""
    return "\n".join(
        [cost_table(prog), batches_line(prog.net.spec), *warning_lines(prog)]
    )
