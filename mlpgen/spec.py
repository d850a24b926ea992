"""Reading and validating a spec: a YAML or JSON file in, a frozen ``Spec`` out.

Everything a user can get wrong ends as one ``SpecError`` listing every
independent problem, one line each, naming the file and the key path::

    error: specs/bad.yaml: model.layers[2].out: must be a positive integer, got -3

YAML is read with a ``SafeLoader`` subclass whose scalars follow the YAML 1.2
core schema (``1e-5`` is a number, ``yes`` is a string), which refuses
duplicate keys and every tag that would build a Python object. The key models
of layers, init schemes and losses live in ``ops.py``; the rest of the format
(data, model, train, the top level) is defined here; ``schema.py`` does the
checking, in the words users read, and this module adds the checks that
involve several keys (``cross_check``) and puts every problem in order.
"""

import builtins
import json
import keyword
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml

from .ops import LAYERS, LOSSES, Keys, LossKeys, PosInt
from .schema import (
    After,
    Choose,
    Excluded,
    Invalid,
    Location,
    MinLength,
    Pattern,
    Problem,
    Range,
    Record,
    Tagged,
    construct,
    fields,
    plural,
    show,
    suggest,
    unknown,
    validate,
)

__all__ = [
    "DATA_KINDS",
    "MAX_EPOCHS",
    "MAX_FEATURES",
    "MAX_PARAMS",
    "MAX_SAMPLES",
    "MAX_SPEC_BYTES",
    "MAX_SPEC_VALUES",
    "MAX_STEPS",
    "MAX_VALUES",
    "NN_MODULE_ATTRIBUTES",
    "OPTIMIZERS",
    "RESERVED",
    "SCHEDULES",
    "AdamKeys",
    "AdamWKeys",
    "EarlyStopping",
    "FileData",
    "InlineData",
    "Layer",
    "Model",
    "RandomData",
    "RmspropKeys",
    "SgdKeys",
    "Spec",
    "SpecError",
    "SpiralData",
    "Split",
    "Train",
    "class_name",
    "load_spec",
    "parse_spec",
]


def _key(key: Any) -> str:
    """A mapping key as a path element: YAML allows keys like 1 or null."""
    return key if isinstance(key, str) else show(key)


class SpecError(Exception):
    """A spec that cannot be compiled: one or more problems.

    ``partial`` is set when only sections that the network does not depend on
    failed (the header or ``train``): a Spec built without them, whose data,
    model and loss are valid, so that the caller can look for the graph's
    problems too and report everything at once (``with_problems``).
    """

    def __init__(
        self,
        file: str,
        problems: list[tuple[str, str]],
        partial: "Spec | None" = None,
        document: Any = None,
    ):
        super().__init__(file, problems)
        self.file = file
        self.problems = problems  # (key path, message); path "" for the whole file
        self.partial = partial
        self.document = document  # the parsed spec, to put later problems in order

    def with_problems(self, problems: list[tuple[str, str]]) -> "SpecError":
        """This error and ``problems`` (formatted paths), in document order."""
        first = dict(self.problems)
        for path, message in problems:
            first.setdefault(path, message)
        ordered = sorted(
            first, key=lambda path: _position(self.document, _path_parts(path))
        )
        return SpecError(self.file, [(path, first[path]) for path in ordered])

    def lines(self) -> list[str]:
        """One ``error: FILE: KEY.PATH: message`` line per problem."""
        file = self.file if self.file.isprintable() else repr(self.file)
        return [
            f"error: {file}: {path}: {message}" if path else f"error: {file}: {message}"
            for path, message in self.problems
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# ------------------------------------------------------------------ names

SPEC_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
LAYER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

# Names the generated implementations use themselves: every module-level name
# (imports, constants, functions, helpers, classes) and every name inside the
# functions where tensors are variables. A layer may take any of them: its
# variable is then renamed in the generated code (autodiff.Names: ``sum``
# becomes ``sum_``), while comments, diagrams, dump keys and state_dict() keys
# keep the spec's name. tests/test_hostile.py audits this set against
# everything the templates emit.
GENERATED_NAMES = {
    # modules and the constants at the top of every file
    "np", "torch", "nn", "F", "math", "argparse", "importlib", "pathlib", "sys",
    "DTYPE", "SEED", "EPOCHS", "BATCH_SIZE", "LOG_EVERY", "LR", "BETA1", "BETA2",
    "EPS", "ALPHA", "MOMENTUM", "DAMPENING", "WEIGHT_DECAY", "WEIGHT",
    "CLASS_WEIGHT", "POS_WEIGHT", "BCE_EPS", "Dropout", "OrderedDict",
    # the training loop's constants (train.schedule, clip_grad_norm, early_stopping)
    "STEP_SIZE", "GAMMA", "T_MAX", "ETA_MIN", "START_FACTOR", "END_FACTOR",
    "TOTAL_ITERS", "MAX_NORM", "PATIENCE", "MIN_DELTA",
    # functions
    "main", "train", "forward", "backward", "loss_fn", "load_data", "init_params",
    "init_buffers", "report", "save_dump", "parse_args", "positive_int", "seed_int",
    "optimizer_step", "init_optimizer", "criterion", "batches", "first_step",
    "build_model",  # the ladder's torch_nn.py and torch_optim.py (compile --ladder)
    "scheduled_lr", "clip_grad_norm", "monitored",
    # NumPy helpers
    "sigmoid", "softplus", "softmax", "log_softmax", "logsumexp", "logsigmoid",
    "erf", "clamped_log", "clamped_log1p", "mean",
    # variables
    "x", "y", "xb", "yb", "params", "grads", "cache", "loss", "losses",
    "out", "out0", "state", "data", "model", "optimizer", "rng", "args",
    "arrays", "epoch", "epochs", "step", "start", "batch", "order", "first",
    "name", "p", "g", "part", "line", "self", "seed", "quiet", "exp_avg",
    "exp_avg_sq", "max_exp_avg_sq", "denom", "square_avg", "grad_avg", "avg",
    "momentum_buffer", "bias_correction1", "bias_correction2", "step_size",
    "bias_correction2_sqrt", "shuffle_rng", "dropout_rng", "buffers", "training",
    "tensors", "tensor_grads", "keep", "hook", "module", "inputs", "output",
    "xs", "total", "epoch_loss", "embedding_grad",
    "lr", "lrs", "t", "scheduler", "rows", "total_norm", "clip_coef", "value",
    "history", "best", "best_epoch", "stale", "best_params", "best_buffers",
    "best_state",
}  # fmt: skip
RESERVED = GENERATED_NAMES  # the name earlier versions refused as layer names

# Layer names are local variables of the generated functions, which call
# builtins such as sum, max or print: a layer must not shadow one.
_BUILTINS = frozenset(name for name in dir(builtins) if not name.startswith("_"))

# The public attributes of torch.nn.Module (torch 2.x): torch_module.py keeps
# each layer as ``self.<name>``, which must not hide one of them (a layer
# named ``to`` or ``training`` would break the model). Listed here because
# the compile path never imports torch; a test compares it with torch's.
NN_MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers",
    "call_super_init", "children", "compile", "cpu", "cuda", "double",
    "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
    "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
})  # fmt: skip


def class_name(spec_name: str) -> str:
    """The nn.Module class of torch_module.py: ``two_branch`` -> ``TwoBranch``."""
    return "".join(part.capitalize() for part in spec_name.split("_")) or "Net"


def _check_spec_name(name: str) -> str:
    if keyword.iskeyword(name):
        raise ValueError(f"'{name}' is a Python keyword; choose another name")
    cls = class_name(name)
    if cls in RESERVED or cls in _BUILTINS:
        raise ValueError(
            f"'{name}' would name the model class {cls}, which the generated "
            "code already uses; choose another name"
        )
    return name


def _check_layer_name(name: str) -> str:
    if keyword.iskeyword(name):
        raise ValueError(f"'{name}' is a Python keyword; choose another name")
    if name == "x":
        raise ValueError("'x' is the network's input; choose another name")
    if name.startswith("_"):
        raise ValueError(
            f"'{name}' starts with _, which is reserved for Python and nn.Module "
            "internals"
        )
    if name in NN_MODULE_ATTRIBUTES:
        raise ValueError(
            f"'{name}' is an attribute of torch.nn.Module, which the layer "
            "would hide in torch_module.py (PyTorch refuses it as a submodule "
            "name); choose another name"
        )
    return name


SpecName = Annotated[
    str,
    Pattern(
        SPEC_NAME_PATTERN,
        "a lowercase identifier (a-z, then a-z, 0-9 or _; at most 64 characters)",
    ),
    After(_check_spec_name),
]
LayerName = Annotated[
    str,
    Pattern(
        LAYER_NAME_PATTERN,
        "an identifier (a letter or _, then letters, digits or _; at most 64 "
        "characters)",
    ),
    After(_check_layer_name),
]


# ------------------------------------------------------------------ limits

# Sizes beyond these are refused before anything is generated or allocated
# (README.md lists them). graph.py applies those that need the whole network.
MAX_SPEC_BYTES = 10_000_000  # the spec file
MAX_SPEC_VALUES = 1_000_000  # numbers, strings, lists and mappings, aliases expanded
MAX_FEATURES = 1_000_000  # model.input, each layer's output, outputs, classes
MAX_SAMPLES = 10_000_000  # samples of the data, and batch_size
MAX_VALUES = 100_000_000  # numbers in the data, and in one batch's activations
MAX_PARAMS = 100_000_000  # parameters in all
MAX_EPOCHS = 10_000_000  # epochs, and log_every
MAX_STEPS = 10_000_000  # optimizer steps in one run: epochs x batches per epoch


def _at_most(limit: int, what: str) -> After:
    """A bound on a size, naming the limit in its message."""

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(
                f"must be at most {limit:,} (mlpgen's limit on {what}), "
                f"got {show(value)}"
            )
        return value

    check.maximum = limit  # type: ignore[attr-defined]  # for the JSON Schema
    return After(check)


Features = Annotated[PosInt, _at_most(MAX_FEATURES, "features")]
Classes = Annotated[int, Range(ge=2), _at_most(MAX_FEATURES, "classes")]
Samples = Annotated[PosInt, _at_most(MAX_SAMPLES, "samples")]
Epochs = Annotated[PosInt, _at_most(MAX_EPOCHS, "epochs")]


NonNegative = Annotated[float, Range(ge=0)]
Inputs = Annotated[tuple[str, ...], MinLength(1)]


# ------------------------------------------------------------------ models


class _Section(Record):
    """Base of this module's models: strict, frozen, unknown keys are errors."""

    def cross_check(self) -> list[Problem]:
        """Problems that involve several keys, with paths relative to this model."""
        return []


def _nested(prefix: Location, model: _Section | None) -> list[Problem]:
    """A nested model's cross-check problems, under ``prefix``."""
    if model is None:
        return []
    return [(prefix + parts, message) for parts, message in model.cross_check()]


class Split(_Section):
    """Fractions of the data for train, validation and test."""

    train: Annotated[float, Range(gt=0, le=1)]
    val: Annotated[float, Range(ge=0, le=1)] = 0.0
    test: Annotated[float, Range(ge=0, le=1)] = 0.0

    def cross_check(self) -> list[Problem]:
        total = self.train + self.val + self.test
        if abs(total - 1) > 1e-9:
            return [((), f"train + val + test must add up to 1, got {total:.10g}")]
        return []


class _DataBase(_Section):
    split: Split | None = None
    standardize: bool = False

    def cross_check(self) -> list[Problem]:
        return _nested(("split",), self.split)


# Rows of floats (float targets) or one value per sample (class indices, or a
# single float target each).
Rows = list[list[float]]
Values = list[float]


def _target_shape(value: Any) -> Any:
    """Rows when the first item is a list; else values."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        return Rows
    return Values


Targets = Annotated[Rows | Values, Choose(_target_shape)]


def _ragged(rows: list[list[float]], key: str) -> list[Problem]:
    """Rows that are empty or not as long as the first one."""
    problems: list[Problem] = []
    if rows and not rows[0]:
        problems.append(((key, 0), "must have at least one value"))
    elif rows:
        width = len(rows[0])
        for i, row in enumerate(rows[1:], 1):
            if len(row) != width:
                problems.append(
                    (
                        (key, i),
                        f"has {plural(len(row), 'value')}, the first row has {width}",
                    )
                )
    return problems


class InlineData(_DataBase):
    """The arrays themselves: ``x`` rows of features, ``y`` targets."""

    kind: Literal["inline"]
    x: list[list[float]]
    y: Targets

    def cross_check(self) -> list[Problem]:
        problems = super().cross_check()
        if not self.x:
            return problems + [(("x",), "must have at least one row")]
        problems += _ragged(self.x, "x")
        if len(self.y) != len(self.x):
            problems.append(
                (("y",), f"has {plural(len(self.y), 'row')}, x has {len(self.x)}")
            )
        if _target_shape(self.y) is Rows:
            problems += _ragged(self.y, "y")  # type: ignore[arg-type]
        return problems


class RandomData(_DataBase):
    """Standard-normal features; float targets (``outputs``) or class labels."""

    kind: Literal["random"]
    n: Samples
    outputs: Features | None = None
    classes: Classes | None = None

    def cross_check(self) -> list[Problem]:
        problems = super().cross_check()
        if self.outputs is not None and self.classes is not None:
            problems.append(
                (
                    ("classes",),
                    "give outputs (float targets) or classes (class labels), not both",
                )
            )
        elif self.outputs is None and self.classes is None:
            problems.append(
                ((), "needs outputs (float targets) or classes (class labels)")
            )
        return problems


class SpiralData(_DataBase):
    """The CS231n spiral: ``classes`` arms of ``n_per_class`` points."""

    kind: Literal["spiral"]
    n_per_class: Samples
    classes: Classes
    noise: NonNegative = 0.2


class BlobsData(_DataBase):
    """Gaussian blobs: ``classes`` clusters around centres drawn in a box."""

    kind: Literal["blobs"]
    n: Samples
    classes: Classes
    features: Features = 2
    spread: Annotated[float, Range(gt=0)] = 1.0
    box: Annotated[float, Range(gt=0)] = 10.0


class TeacherData(_DataBase):
    """Float targets made by a fixed random network (the teacher) from normal x."""

    kind: Literal["teacher"]
    n: Samples
    features: Features
    outputs: Features = 1
    hidden: Features = 16
    noise: NonNegative = 0.1


class MoonsData(_DataBase):
    """scikit-learn's make_moons: two interleaving half circles."""

    kind: Literal["moons"]
    n: Annotated[int, Range(ge=2), _at_most(MAX_SAMPLES, "samples")]
    noise: NonNegative = 0.0


class CirclesData(_DataBase):
    """scikit-learn's make_circles: a circle inside a larger one."""

    kind: Literal["circles"]
    n: Annotated[int, Range(ge=2), _at_most(MAX_SAMPLES, "samples")]
    noise: NonNegative = 0.0
    factor: Annotated[float, Range(ge=0, lt=1)] = 0.8


def _function_expr(text: str) -> str:
    """Parsed here (never evaluated), so a bad formula is a spec error."""
    from . import cas  # imports sympy: only specs that use it pay for it
    from .expr import Sym

    cas.forward_ir(text, Sym("x"))
    return text


class FunctionData(_DataBase):
    """y = f(x) on a grid of x, plus noise: the PyTorch tutorial's sin(x) fit."""

    kind: Literal["function"]
    expr: Annotated[str, After(_function_expr)]
    low: float
    high: float
    n: Samples
    noise: NonNegative = 0.0

    def cross_check(self) -> list[Problem]:
        problems = super().cross_check()
        if not self.low < self.high:
            message = f"must be above low ({show(self.low)}), got {show(self.high)}"
            problems.append((("high",), message))
        return problems


class FileData(_DataBase):
    """A ``.csv`` with a header row (``target`` names the column) or a ``.npz``."""

    kind: Literal["file"]
    path: Annotated[str, MinLength(1)]
    target: str | Annotated[int, Range(ge=0)] | None = None

    def cross_check(self) -> list[Problem]:
        problems = super().cross_check()
        suffix = os.path.splitext(self.path)[1].lower()
        if suffix not in (".csv", ".npz"):
            problems.append(
                (("path",), f"must name a .csv or .npz file, got {self.path!r}")
            )
        elif suffix == ".csv" and self.target is None:
            problems.append(
                (("target",), "required for a .csv file (a column name or index)")
            )
        return problems


DATA_KINDS = {
    "inline": InlineData,
    "random": RandomData,
    "spiral": SpiralData,
    "blobs": BlobsData,
    "teacher": TeacherData,
    "moons": MoonsData,
    "circles": CirclesData,
    "function": FunctionData,
    "file": FileData,
}
Data = Annotated[
    InlineData
    | RandomData
    | SpiralData
    | BlobsData
    | TeacherData
    | MoonsData
    | CirclesData
    | FunctionData
    | FileData,
    Tagged("kind", "data kind"),
]


class Layer(_Section):
    """One entry of ``model.layers``, its keys validated by its op's key model."""

    name: LayerName
    type: str
    inputs: Inputs | None = None  # None: the previous layer's output (x for the first)
    keys: Keys  # an instance of LAYERS[type].Keys


class TokenInput(_Section):
    """``model.input: {tokens: T, vocab: V}``: x holds T integer token indices
    per sample, each in [0, V), which an ``embedding`` layer looks up."""

    tokens: Features
    vocab: Features


def _input_kind(value: Any) -> Any:
    """A mapping is a token input; anything else is a feature count."""
    return TokenInput if isinstance(value, (dict, TokenInput)) else Features


ModelInput = Annotated[Features | TokenInput, Choose(_input_kind)]


class _ModelHead(_Section):
    input: ModelInput | None = None


class Model(_ModelHead):
    layers: Annotated[list[Layer], MinLength(1)]


Lr = Annotated[float, Range(gt=0)]
Beta = Annotated[float, Range(ge=0, lt=1)]


class SgdKeys(_Section):
    """torch.optim.SGD."""

    type: Literal["sgd"]
    lr: Lr
    momentum: NonNegative = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: NonNegative = 0.0

    def cross_check(self) -> list[Problem]:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            return [
                (
                    ("nesterov",),
                    "needs momentum > 0 and dampening 0 (as in torch.optim.SGD)",
                )
            ]
        return []


class _AdamBase(_Section):
    lr: Lr
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: NonNegative = 1e-8
    weight_decay: NonNegative = 0.0
    amsgrad: bool = False


class AdamKeys(_AdamBase):
    """torch.optim.Adam."""

    type: Literal["adam"]


class AdamWKeys(_AdamBase):
    """torch.optim.AdamW: Adam with decoupled weight decay, 0.01 by default."""

    type: Literal["adamw"]
    weight_decay: NonNegative = 0.01


class RmspropKeys(_Section):
    """torch.optim.RMSprop."""

    type: Literal["rmsprop"]
    lr: Lr
    alpha: Annotated[float, Range(ge=0, le=1)] = 0.99
    eps: NonNegative = 1e-8
    momentum: NonNegative = 0.0
    centered: bool = False
    weight_decay: NonNegative = 0.0


OPTIMIZERS = {
    "sgd": SgdKeys,
    "adam": AdamKeys,
    "adamw": AdamWKeys,
    "rmsprop": RmspropKeys,
}
Optimizer = Annotated[
    SgdKeys | AdamKeys | AdamWKeys | RmspropKeys, Tagged("type", "optimizer")
]


Steps = Annotated[PosInt, _at_most(MAX_STEPS, "optimizer steps")]
Factor = Annotated[float, Range(gt=0, le=1)]


class _ScheduleBase(_Section):
    every: Literal["epoch", "step"] = "epoch"  # when scheduler.step() runs


class StepSchedule(_ScheduleBase):
    """torch.optim.lr_scheduler.StepLR: lr times gamma every step_size."""

    type: Literal["step"]
    step_size: Steps
    gamma: Annotated[float, Range(gt=0)] = 0.1


class ExponentialSchedule(_ScheduleBase):
    """torch.optim.lr_scheduler.ExponentialLR: lr times gamma at every step."""

    type: Literal["exponential"]
    gamma: Annotated[float, Range(gt=0)]


class CosineSchedule(_ScheduleBase):
    """torch.optim.lr_scheduler.CosineAnnealingLR: half a cosine from lr to eta_min."""

    type: Literal["cosine"]
    t_max: Steps
    eta_min: NonNegative = 0.0


class LinearSchedule(_ScheduleBase):
    """torch.optim.lr_scheduler.LinearLR: lr times a factor going linearly from
    start_factor to end_factor over total_iters steps."""

    type: Literal["linear"]
    start_factor: Factor = 1.0 / 3
    end_factor: Annotated[float, Range(ge=0, le=1)] = 1.0
    total_iters: Steps = 5


SCHEDULES = {
    "step": StepSchedule,
    "exponential": ExponentialSchedule,
    "cosine": CosineSchedule,
    "linear": LinearSchedule,
}
Schedule = Annotated[
    StepSchedule | ExponentialSchedule | CosineSchedule | LinearSchedule,
    Tagged("type", "schedule"),
]


class EarlyStopping(_Section):
    """Stop when the monitored value has not improved for ``patience`` epochs."""

    monitor: Literal["val_loss", "val_accuracy", "train_loss"] = "val_loss"
    patience: Epochs = 10
    min_delta: NonNegative = 0.0
    restore_best: bool = True


class Train(_Section):
    optimizer: Optimizer
    epochs: Epochs
    batch_size: Literal["full"] | Samples = "full"
    shuffle: bool = False
    metrics: tuple[Literal["accuracy"], ...] = ()
    log_every: Epochs | None = None
    schedule: Schedule | None = None
    sampling: Literal["epochs", "with_replacement"] = "epochs"
    clip_grad_norm: Annotated[float, Range(gt=0)] | None = None
    early_stopping: EarlyStopping | None = None

    def cross_check(self) -> list[Problem]:
        problems = _nested(("optimizer",), self.optimizer)
        problems += _nested(("schedule",), self.schedule)
        if self.sampling == "with_replacement" and self.shuffle:
            problems.append(
                (
                    ("shuffle",),
                    (
                        "has no meaning with sampling: with_replacement, where each "
                        "step draws its own rows; drop shuffle"
                    ),
                )
            )
        stop = self.early_stopping
        accuracy = stop is not None and stop.monitor.endswith("accuracy")
        if stop is not None and accuracy and "accuracy" not in self.metrics:
            problems.append(
                (
                    ("early_stopping", "monitor"),
                    f"{stop.monitor} needs the accuracy: add metrics: [accuracy]",
                )
            )
        return problems


class _Header(_Section):
    """The top-level keys that are plain values."""

    mlpgen: Literal[1] = 1
    name: SpecName
    description: str = ""
    dtype: Literal["float64", "float32"] = "float64"
    seed: Annotated[int, Range(ge=0)] = 0


class Spec(_Header):
    """A validated spec. ``source`` and ``base_dir`` are set by the loader."""

    data: Data
    model: Model
    loss: LossKeys  # an instance of LOSSES[type].Keys
    train: Train
    source: Annotated[str, Excluded()]  # the spec file, as given
    base_dir: Annotated[str, Excluded()]  # its folder, for data kind file


# ------------------------------------------------------------------ checking


def parse_spec(data: dict, file: str = "<spec>", base_dir: Path | None = None) -> Spec:
    """Validate already-parsed spec data; raise SpecError listing every problem."""
    try:
        return _parse(data, file, "." if base_dir is None else str(base_dir))
    except RecursionError:
        raise SpecError(file, [("", "the spec is nested too deeply")]) from None
    except _Cycle:
        problem = "the spec contains itself (a YAML alias inside its own anchor)"
        raise SpecError(file, [("", problem)]) from None


def _parse(data: Any, file: str, base_dir: str) -> Spec:
    if data is None:
        raise SpecError(file, [("", "the spec is empty")])
    if not isinstance(data, dict):
        problem = (
            f"the spec must be a mapping of keys (name, data, ...), got {show(data)}"
        )
        raise SpecError(file, [("", problem)])
    size = _expanded_size(data, {})
    if size > MAX_SPEC_VALUES:
        problem = (
            f"the spec holds {size:,} values (YAML aliases expanded), more than "
            f"mlpgen's limit of {MAX_SPEC_VALUES:,}"
        )
        raise SpecError(file, [("", problem)])
    problems = _bad_scalars(data, ())
    known = [*fields(_Header), *_SECTIONS]
    for key in data:
        if key not in known:
            problems.append(((_key(key),), "unknown key" + suggest(key, known)))
    head = {key: value for key, value in data.items() if key in fields(_Header)}
    header, found = _validate(_Header, head, ())
    problems += found
    sections = {}
    for key, check in _SECTIONS.items():
        if key not in data:
            problems.append(((key,), "required key missing"))
            continue
        sections[key], found = check(data[key])
        problems += found
    if problems:
        partial = None
        if all(sections.get(key) is not None for key in _NETWORK_SECTIONS):
            partial = construct(
                Spec,
                **(vars(header) if header else {}),
                **{key: sections.get(key) for key in _SECTIONS},  # train may be None
                source=file,
                base_dir=base_dir,
            )
        raise SpecError(file, _arrange(data, problems), partial, data)  # type: ignore[arg-type]
    return Spec(**vars(header), **sections, source=file, base_dir=base_dir)


# The sections the network is built from: when they are valid, graph-level
# problems can be looked for even though other sections have problems.
_NETWORK_SECTIONS = ("data", "model", "loss")


class _Cycle(Exception):
    """A YAML alias inside its own anchor: the data contains itself."""


def _expanded_size(value: Any, sizes: dict[int, int | None]) -> int:
    """How many values ``value`` holds, counting a shared (aliased) part each time.

    ``sizes`` remembers each list and mapping by identity, so an alias bomb
    (a billion laughs) is measured without being walked.
    """
    if not isinstance(value, (dict, list)):
        return 1
    key = id(value)
    if key in sizes:
        known = sizes[key]
        if known is None:
            raise _Cycle
        return known
    sizes[key] = None
    items = value.values() if isinstance(value, dict) else value
    size = 1 + sum(_expanded_size(item, sizes) for item in items)
    sizes[key] = size
    return size


def _check_data(raw: Any) -> tuple[Any, list[Problem]]:
    return _validate(Data, raw, ("data",))


def _check_train(raw: Any) -> tuple[Any, list[Problem]]:
    return _validate(Train, raw, ("train",))


def _check_loss(raw: Any) -> tuple[Any, list[Problem]]:
    """Dispatch on ``type`` through ``ops.LOSSES``."""
    where: Location = ("loss",)
    if not isinstance(raw, dict):
        return None, [(where, f"must be a mapping with a type, got {show(raw)}")]
    if "type" not in raw:
        return None, [(where + ("type",), "required key missing")]
    kind = raw["type"]
    if not isinstance(kind, str) or kind not in LOSSES:
        return None, [(where + ("type",), unknown("loss", kind, LOSSES))]
    return _validate(LOSSES[kind].Keys, raw, where)


def _check_model(raw: Any) -> tuple[Any, list[Problem]]:
    where: Location = ("model",)
    if not isinstance(raw, dict):
        return None, [(where, f"must be a mapping, got {show(raw)}")]
    head, problems = _validate(_ModelHead, raw, where, known=("layers",))
    if "layers" not in raw:
        return None, problems + [(where + ("layers",), "required key missing")]
    layers, found = _check_layers(raw["layers"], where + ("layers",))
    problems += found
    if problems:
        return None, problems
    return Model(input=head.input, layers=layers), []


_LAYER_HEAD = ("name", "type", "inputs")


def _check_layers(raw: Any, where: Location) -> tuple[Any, list[Problem]]:
    """Each layer: its type, name (or default name), inputs and op keys."""
    if not isinstance(raw, list):
        return None, [(where, f"must be a list of layers, got {show(raw)}")]
    if not raw:
        return None, [(where, "must have at least one layer")]
    problems: list[Problem] = []
    layers: list[Layer] = []
    counts: Counter[str] = Counter()  # layers of each type so far, for default names
    named: dict[str, int] = {}  # name -> index of the layer that has it
    for i, item in enumerate(raw):
        at = where + (i,)
        if not isinstance(item, dict):
            problems.append((at, f"must be a mapping with a type, got {show(item)}"))
            continue
        before = len(problems)
        op: Any = item.get("type")
        valid_op = isinstance(op, str) and op in LAYERS
        if "type" not in item:
            problems.append((at + ("type",), "required key missing"))
        elif not valid_op:
            problems.append((at + ("type",), unknown("layer type", op, LAYERS)))
        else:
            counts[op] += 1
        keys = inputs = name = None
        if valid_op:
            keys, found = _validate(LAYERS[op].Keys, item, at, known=_LAYER_HEAD)
            problems += found
        if "inputs" in item:
            inputs, found = _validate(Inputs, item["inputs"], at + ("inputs",))
            problems += found
        if "name" in item:
            name, found = _validate(LayerName, item["name"], at + ("name",))
            problems += found
        elif valid_op:
            name = f"{op}{counts[op]}"
        if name in named:
            other = _format_path(where + (named[name],))
            if "name" in item:
                problems.append(
                    (at + ("name",), f"'{name}' is already the name of {other}")
                )
            else:
                taken = f"its default name '{name}' is already the name of {other}"
                problems.append((at, taken + "; give this layer a name"))
        elif name is not None:
            named[name] = i
        if len(problems) == before:
            layers.append(Layer(name=name, type=op, inputs=inputs, keys=keys))
    for name, i in named.items():
        if name.startswith("d_") and name[2:] in named:
            problems.append(
                (
                    where + (i, "name"),
                    (
                        f"'{name}' reads as the gradient of layer '{name[2:]}' (the dump "
                        f"names ∂L/∂{name[2:]} step0/{name}); choose another name"
                    ),
                )
            )
    return layers, problems


_SECTIONS = {
    "data": _check_data,
    "model": _check_model,
    "loss": _check_loss,
    "train": _check_train,
}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_scalars(value: Any, parts: Location) -> list[Problem]:
    """Values no key may hold: NaN, infinities, text that is not Unicode."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(parts, f"must be a finite number, got {show(value)}")]
    surrogate = _SURROGATE.search(value) if isinstance(value, str) else None
    if surrogate:
        code = ord(surrogate.group())
        return [(parts, f"must be Unicode text, got the lone surrogate \\u{code:x}")]
    items: Any
    if isinstance(value, dict):
        items = ((_key(key), v) for key, v in value.items())
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [p for key, v in items for p in _bad_scalars(v, parts + (key,))]


def _arrange(root: dict, problems: list[Problem]) -> list[tuple[str, str]]:
    """One problem per key path, in document order, paths formatted."""
    first: dict[Location, str] = {}
    for parts, message in problems:
        first.setdefault(parts, message)
    ordered = sorted(first, key=lambda parts: _position(root, parts))
    return [(_format_path(parts), first[parts]) for parts in ordered]


def _position(root: Any, parts: Location) -> list[int]:
    """Where a key path sits in the document; a missing key after its siblings."""
    position: list[int] = []
    here = root
    for part in parts:
        if isinstance(here, dict):
            keys = [_key(key) for key in here]
            if part not in keys:
                position.append(len(keys))
                break
            position.append(keys.index(part))
            here = list(here.values())[position[-1]]
        elif isinstance(here, list) and isinstance(part, int) and part < len(here):
            position.append(part)
            here = here[part]
        else:
            break
    return position


_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]{1,60}")


def _format_path(parts: Location) -> str:
    """``("model", "layers", 2, "out")`` -> ``model.layers[2].out``.

    A key that could be misread (spaces, dots, quotes, control characters,
    great length) is shown quoted, so each problem stays one line.
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        if not (_PLAIN_KEY.fullmatch(part) and part.isprintable()):
            part = show(part)
        text += f".{part}" if text else part
    return text


def _path_parts(path: str) -> Location:
    """The inverse of ``_format_path`` for plain keys: ``a.b[2]`` -> ``("a", "b", 2)``."""
    return tuple(
        int(index) if index else key
        for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    )


# ------------------------------------------------------------------ validating


def _validate(
    annotation: Any, raw: Any, where: Location, known: tuple[str, ...] = ()
) -> tuple[Any, list[Problem]]:
    """Validate ``raw`` (found at ``where``) as ``annotation``, then cross-check it.

    ``known`` names keys that are allowed at the top of ``raw`` although the
    record does not have them (they are checked elsewhere).
    Returns the value, or None and the problems.
    """
    try:
        value = validate(annotation, raw, known)
    except Invalid as e:
        return None, [(where + parts, message) for parts, message in e.problems]
    if isinstance(value, _Section):
        problems = _nested(where, value)
        if problems:
            return None, problems
    return value, []


# ------------------------------------------------------------------ files

_YAML_TAG = "tag:yaml.org,2002:"


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that a spec may not contain: duplicate keys, object tags."""


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, no duplicate keys, no object tags.

    ``1e-5`` is a float (PyYAML alone reads it as a string), ``010`` is ten,
    ``yes``/``no``/``on``/``off`` and dates are strings. Merge keys
    (``<<: *base``) still work.
    """

    yaml_implicit_resolvers: ClassVar[dict] = {}  # type: ignore[misc]  # filled below, in place of YAML 1.1's

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _YAML_TAG + "merge":
                continue
            if (key.tag, key.value) in first_line:
                first = first_line[key.tag, key.value]
                raise _Refused(
                    problem=f"duplicate key '{key.value}' (first on line {first})",
                    problem_mark=key.start_mark,
                )
            first_line[key.tag, key.value] = key.start_mark.line + 1
        return node

    def flatten_mapping(self, node):
        """Merge keys as PyYAML does, then keep only the last pair of each key.

        The later pair is the one that wins anyway; dropping the others keeps
        nested merges (``<<: [*a, *a]`` repeated) from doubling at each level.
        """
        super().flatten_mapping(node)
        last = {}
        for key, value in node.value:
            scalar = isinstance(key, yaml.ScalarNode)
            last[(key.tag, key.value) if scalar else id(key)] = (key, value)
        node.value = list(last.values())

    def construct_undefined(self, node):
        tag = node.tag.replace(_YAML_TAG, "!!")
        if len(tag) > 60:
            tag = tag[:57] + "..."
        raise _Refused(
            problem=f"tags that construct objects are not allowed in a spec: {tag}",
            problem_mark=node.start_mark,
        )

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        try:
            if text.startswith(("0o", "0x")):
                return int(text[2:], 8 if text[1] == "o" else 16)
            return int(text, 10)
        except ValueError:
            raise _Refused(
                problem=f"not an integer: {show(text)}", problem_mark=node.start_mark
            ) from None

    def construct_yaml_float(self, node):
        text = self.construct_scalar(node)
        special = {
            ".inf": math.inf,
            "+.inf": math.inf,
            "-.inf": -math.inf,
            ".nan": math.nan,
        }
        if text.lower() in special:
            return special[text.lower()]
        try:
            return float(text)
        except ValueError:
            raise _Refused(
                problem=f"not a number: {show(text)}", problem_mark=node.start_mark
            ) from None


for _tag, _pattern, _first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        (
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
]:
    _SpecLoader.add_implicit_resolver(
        _YAML_TAG + _tag, re.compile(_pattern), list(_first)
    )
_SpecLoader.add_constructor(None, _SpecLoader.construct_undefined)
# SafeLoader's other tags build bytes, sets, dates and pairs: no spec value is one
for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    _SpecLoader.add_constructor(_YAML_TAG + _tag, _SpecLoader.construct_undefined)
_SpecLoader.add_constructor(_YAML_TAG + "int", _SpecLoader.construct_yaml_int)
_SpecLoader.add_constructor(_YAML_TAG + "float", _SpecLoader.construct_yaml_float)


def _mark(mark, text: str) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: {text}" if mark else text


def _started(context, problem) -> str:
    """Where the construct that failed began, when that is elsewhere."""
    if context is None or (
        problem and (context.line, context.column) == (problem.line, problem.column)
    ):
        return ""
    return f" started at line {context.line + 1}, column {context.column + 1}"


def _read_yaml(text: str, file: str) -> Any:
    loader = None
    try:
        loader = _SpecLoader(text)
        return loader.get_single_data()
    except _Refused as e:
        message = _mark(e.problem_mark, e.problem or "")
    except yaml.MarkedYAMLError as e:
        problem = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            problem += f" ({e.context}{_started(e.context_mark, e.problem_mark)})"
        message = _mark(
            e.problem_mark or e.context_mark, "could not parse YAML: " + problem
        )
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        reason = f"unacceptable character #x{e.character:04x}: {e.reason}"
        message = f"line {line}: could not parse YAML: {reason}"
    except yaml.YAMLError as e:
        message = "could not parse YAML: " + str(e).splitlines()[0]
    finally:
        if loader is not None:
            loader.dispose()
    raise SpecError(file, [("", message)])


class _Repeated(dict):
    """A JSON object with repeated keys (json.loads keeps the last value)."""

    def __init__(self, pairs: list, repeated: list):
        super().__init__(pairs)
        self.repeated = repeated


def _json_object(pairs: list) -> dict:
    seen: set = set()
    repeated = []
    for key, _ in pairs:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    return _Repeated(pairs, repeated) if repeated else dict(pairs)


def _repeated_keys(value: Any, parts: Location) -> list[Problem]:
    """Where the JSON repeated a key, as key paths."""
    problems: list[Problem] = []
    if isinstance(value, _Repeated):
        repeated = dict.fromkeys(value.repeated)
        problems += [(parts + (key,), "duplicate key") for key in repeated]
    if isinstance(value, dict):
        for key, item in value.items():
            problems += _repeated_keys(item, parts + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems += _repeated_keys(item, parts + (i,))
    return problems


def _read_json(text: str, file: str) -> Any:
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as e:
        message = f"line {e.lineno}, column {e.colno}: could not parse JSON: {e.msg}"
        raise SpecError(file, [("", message)]) from None
    except ValueError as e:  # an integer with too many digits
        problem = "could not parse JSON: " + str(e).split(":")[0]
        raise SpecError(file, [("", problem)]) from None
    problems = _repeated_keys(data, ())
    if problems:
        raise SpecError(file, [(_format_path(parts), m) for parts, m in problems])
    return data


_READERS = {".yaml": _read_yaml, ".yml": _read_yaml, ".json": _read_json}


def load_spec(path: str | os.PathLike) -> Spec:
    """Read, parse and validate the spec file at ``path``; SpecError on any problem."""
    file = os.fsdecode(path)
    suffix = Path(file).suffix.lower()
    if suffix not in _READERS:
        raise SpecError(file, [("", "a spec is a .yaml, .yml or .json file")])
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(
            file, [("", f"cannot read the file: {e.strerror or e}")]
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        problem = f"the file is larger than mlpgen's limit of {MAX_SPEC_BYTES:,} bytes"
        raise SpecError(file, [("", problem)])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        problem = f"line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x})"
        raise SpecError(file, [("", problem)]) from None
    try:
        data = _READERS[suffix](text, file)
    except RecursionError:
        raise SpecError(file, [("", "the spec is nested too deeply")]) from None
    return parse_spec(data, file, Path(file).absolute().parent)
