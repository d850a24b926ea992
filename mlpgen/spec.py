"""Reading and validating a spec: a YAML or JSON file in, a frozen ``Spec`` out.

Everything a user can get wrong ends as one ``SpecError`` listing every
independent problem, one line each, naming the file and the key path::

    error: specs/bad.yaml: model.layers[2].out: must be a positive integer, got -3

YAML is read with a ``SafeLoader`` subclass whose scalars follow the YAML 1.2
core schema (``1e-5`` is a number, ``yes`` is a string), which refuses
duplicate keys and every tag that would build a Python object. The key models
of layers, init schemes and losses live in ``ops.py``; the rest of the format
(data, model, train, the top level) is defined here. Pydantic does the
checking; this module turns its errors into the messages users read.
"""

import builtins
import difflib
import json
import keyword
import math
import os
import re
import types
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

from .ops import LAYERS, LOSSES, STRICT, Keys, LossKeys, PosInt

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
    "AdamKeys",
    "AdamWKeys",
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

# A key path while checking: dict keys as str, list indices as int.
Parts = tuple[str | int, ...]
Problem = tuple[Parts, str]


def _key(key: Any) -> str:
    """A mapping key as a path element: YAML allows keys like 1 or null."""
    return key if isinstance(key, str) else _show(key)


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

# Names a layer may not take, because the generated implementations use them:
# every module-level name (imports, constants, functions, helpers) and every
# name inside the functions where layer names are variables (forward and
# backward, the nn.Module class), and a few more of the training loop.
# tests/test_hostile.py audits this set against everything the templates
# emit. Besides these, every name starting with ``d_`` is reserved (the
# gradient of layer ``h`` is the variable ``d_h``), and every name starting
# with ``_`` (Python's dunders and nn.Module's private attributes).
RESERVED = {
    # modules and the constants at the top of every file
    "np", "torch", "nn", "F", "math", "argparse", "importlib", "pathlib",
    "DTYPE", "SEED", "EPOCHS", "BATCH_SIZE", "LOG_EVERY", "LR", "BETA1", "BETA2",
    "EPS", "ALPHA", "MOMENTUM", "DAMPENING", "WEIGHT_DECAY", "WEIGHT",
    "CLASS_WEIGHT", "POS_WEIGHT", "Dropout",
    # functions
    "main", "train", "forward", "backward", "loss_fn", "load_data", "init_params",
    "report", "save_dump", "parse_args", "positive_int", "seed_int",
    "optimizer_step", "init_optimizer", "draw_masks", "criterion",
    # NumPy helpers
    "sigmoid", "softplus", "softmax", "log_softmax", "logsumexp", "logsigmoid",
    "erf", "clamped_log", "clamped_log1p", "mean",
    # variables
    "x", "y", "xb", "yb", "params", "grads", "grads0", "cache", "loss", "losses",
    "out", "out0", "masks", "state", "data", "model", "optimizer", "rng", "args",
    "arrays", "epoch", "epochs", "step", "start", "batch", "order", "first",
    "name", "p", "g", "part", "line", "self", "seed", "quiet", "exp_avg",
    "exp_avg_sq", "max_exp_avg_sq", "denom", "square_avg", "grad_avg", "avg",
    "momentum_buffer", "bias_correction1", "bias_correction2", "step_size",
    "bias_correction2_sqrt", "shuffle_rng", "dropout_rng",
}  # fmt: skip

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
    if name in RESERVED:
        raise ValueError(f"'{name}' is reserved (the generated code uses that name)")
    if name.startswith("d_"):
        raise ValueError(
            f"'{name}' starts with d_, which is reserved for gradients (d_<layer>)"
        )
    if name.startswith("_"):
        raise ValueError(
            f"'{name}' starts with _, which is reserved for Python and nn.Module "
            "internals"
        )
    if name in _BUILTINS:
        raise ValueError(f"'{name}' is a Python builtin; choose another name")
    if name in NN_MODULE_ATTRIBUTES:
        raise ValueError(
            f"'{name}' is an attribute of torch.nn.Module, which the layer "
            "would hide in torch_module.py; choose another name"
        )
    return name


SpecName = Annotated[
    str, Field(pattern=SPEC_NAME_PATTERN), AfterValidator(_check_spec_name)
]
LayerName = Annotated[
    str, Field(pattern=LAYER_NAME_PATTERN), AfterValidator(_check_layer_name)
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


def _at_most(limit: int, what: str) -> AfterValidator:
    """A bound on a size, naming the limit in its message."""

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(
                f"must be at most {limit:,} (mlpgen's limit on {what}), "
                f"got {_show(value)}"
            )
        return value

    return AfterValidator(check)


Features = Annotated[PosInt, _at_most(MAX_FEATURES, "features")]
Classes = Annotated[int, Field(ge=2), _at_most(MAX_FEATURES, "classes")]
Samples = Annotated[PosInt, _at_most(MAX_SAMPLES, "samples")]
Epochs = Annotated[PosInt, _at_most(MAX_EPOCHS, "epochs")]


def _as_tuple(value: Any) -> Any:
    """YAML and JSON give lists; strict mode takes only tuples for tuple fields."""
    return tuple(value) if isinstance(value, list) else value


AsTuple = BeforeValidator(_as_tuple)
NonNegative = Annotated[float, Field(ge=0)]
Inputs = Annotated[tuple[str, ...], AsTuple, Field(min_length=1)]


def _format_version(value: Any) -> Any:
    """Literal[1] alone would also take ``true`` and ``1.0``."""
    if type(value) is not int:
        raise ValueError(f"must be 1, got {_show(value)}")
    return value


# ------------------------------------------------------------------ models


class _Section(BaseModel):
    """Base of this module's models: strict, frozen, unknown keys are errors."""

    model_config = STRICT

    def cross_check(self) -> list[Problem]:
        """Problems that involve several keys, with paths relative to this model."""
        return []


def _nested(prefix: Parts, model: _Section | None) -> list[Problem]:
    """A nested model's cross-check problems, under ``prefix``."""
    if model is None:
        return []
    return [(prefix + parts, message) for parts, message in model.cross_check()]


class Split(_Section):
    """Fractions of the data for train, validation and test."""

    train: Annotated[float, Field(gt=0, le=1)]
    val: Annotated[float, Field(ge=0, le=1)] = 0.0
    test: Annotated[float, Field(ge=0, le=1)] = 0.0

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


def _target_shape(value: Any) -> str:
    return (
        "rows"
        if isinstance(value, list) and value and isinstance(value[0], list)
        else "values"
    )


# Rows of floats (float targets) or one value per sample (class indices, or a
# single float target each).
Targets = Annotated[
    Annotated[list[list[float]], Tag("rows")] | Annotated[list[float], Tag("values")],
    Discriminator(_target_shape),
]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
                        f"has {_plural(len(row), 'value')}, the first row has {width}",
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
                (("y",), f"has {_plural(len(self.y), 'row')}, x has {len(self.x)}")
            )
        if _target_shape(self.y) == "rows":
            problems += _ragged(self.y, "y")
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


class FileData(_DataBase):
    """A ``.csv`` with a header row (``target`` names the column) or a ``.npz``."""

    kind: Literal["file"]
    path: Annotated[str, Field(min_length=1)]
    target: str | Annotated[int, Field(ge=0)] | None = None

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
    "file": FileData,
}
Data = Annotated[
    InlineData | RandomData | SpiralData | FileData, Field(discriminator="kind")
]


class Layer(_Section):
    """One entry of ``model.layers``, its keys validated by its op's key model."""

    name: LayerName
    type: str
    inputs: Inputs | None = None  # None: the previous layer's output (x for the first)
    keys: SerializeAsAny[Keys]  # an instance of LAYERS[type].Keys


class _ModelHead(_Section):
    input: Features | None = None


class Model(_ModelHead):
    layers: list[Layer] = Field(min_length=1)


Lr = Annotated[float, Field(gt=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]


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
    betas: Annotated[tuple[Beta, Beta], AsTuple] = (0.9, 0.999)
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
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.99
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
    SgdKeys | AdamKeys | AdamWKeys | RmspropKeys, Field(discriminator="type")
]


class Train(_Section):
    optimizer: Optimizer
    epochs: Epochs
    batch_size: Literal["full"] | Samples = "full"
    shuffle: bool = False
    metrics: Annotated[tuple[Literal["accuracy"], ...], AsTuple] = ()
    log_every: Epochs | None = None

    def cross_check(self) -> list[Problem]:
        return _nested(("optimizer",), self.optimizer)


class _Header(_Section):
    """The top-level keys that are plain values."""

    mlpgen: Annotated[Literal[1], BeforeValidator(_format_version)] = 1
    name: SpecName
    description: str = ""
    dtype: Literal["float64", "float32"] = "float64"
    seed: Annotated[int, Field(ge=0)] = 0


class Spec(_Header):
    """A validated spec. ``source`` and ``base_dir`` are set by the loader."""

    data: Data
    model: Model
    loss: SerializeAsAny[LossKeys]  # an instance of LOSSES[type].Keys
    train: Train
    source: Annotated[str, Field(exclude=True)]  # the spec file, as given
    base_dir: Annotated[str, Field(exclude=True)]  # its folder, for data kind file


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
            f"the spec must be a mapping of keys (name, data, ...), got {_show(data)}"
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
    known = [*_Header.model_fields, *_SECTIONS]
    for key in data:
        if key not in known:
            problems.append(((_key(key),), "unknown key" + _suggest(key, known)))
    head = {key: value for key, value in data.items() if key in _Header.model_fields}
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
            partial = Spec.model_construct(
                **dict(header or {}),
                **{key: sections.get(key) for key in _SECTIONS},  # train may be None
                source=file,
                base_dir=base_dir,
            )
        raise SpecError(file, _arrange(data, problems), partial, data)
    return Spec(**dict(header), **sections, source=file, base_dir=base_dir)


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
        if sizes[key] is None:
            raise _Cycle
        return sizes[key]
    sizes[key] = None
    items = value.values() if isinstance(value, dict) else value
    sizes[key] = 1 + sum(_expanded_size(item, sizes) for item in items)
    return sizes[key]


def _check_data(raw: Any) -> tuple[Any, list[Problem]]:
    return _validate(Data, raw, ("data",))


def _check_train(raw: Any) -> tuple[Any, list[Problem]]:
    return _validate(Train, raw, ("train",))


def _check_loss(raw: Any) -> tuple[Any, list[Problem]]:
    """Dispatch on ``type`` through ``ops.LOSSES``."""
    where: Parts = ("loss",)
    if not isinstance(raw, dict):
        return None, [(where, f"must be a mapping with a type, got {_show(raw)}")]
    if "type" not in raw:
        return None, [(where + ("type",), "required key missing")]
    kind = raw["type"]
    if not isinstance(kind, str) or kind not in LOSSES:
        return None, [(where + ("type",), _unknown("loss", kind, LOSSES))]
    return _validate(LOSSES[kind].Keys, raw, where)


def _check_model(raw: Any) -> tuple[Any, list[Problem]]:
    where: Parts = ("model",)
    if not isinstance(raw, dict):
        return None, [(where, f"must be a mapping, got {_show(raw)}")]
    rest = {key: value for key, value in raw.items() if key != "layers"}
    head, problems = _validate(_ModelHead, rest, where, known=("layers",))
    if "layers" not in raw:
        return None, problems + [(where + ("layers",), "required key missing")]
    layers, found = _check_layers(raw["layers"], where + ("layers",))
    problems += found
    if problems:
        return None, problems
    return Model(input=head.input, layers=layers), []


_LAYER_HEAD = ("name", "type", "inputs")


def _check_layers(raw: Any, where: Parts) -> tuple[Any, list[Problem]]:
    """Each layer: its type, name (or default name), inputs and op keys."""
    if not isinstance(raw, list):
        return None, [(where, f"must be a list of layers, got {_show(raw)}")]
    if not raw:
        return None, [(where, "must have at least one layer")]
    problems: list[Problem] = []
    layers: list[Layer] = []
    counts: Counter[str] = Counter()  # layers of each type so far, for default names
    named: dict[str, int] = {}  # name -> index of the layer that has it
    for i, item in enumerate(raw):
        at = where + (i,)
        if not isinstance(item, dict):
            problems.append((at, f"must be a mapping with a type, got {_show(item)}"))
            continue
        before = len(problems)
        op = item.get("type")
        valid_op = isinstance(op, str) and op in LAYERS
        if "type" not in item:
            problems.append((at + ("type",), "required key missing"))
        elif not valid_op:
            problems.append((at + ("type",), _unknown("layer type", op, LAYERS)))
        else:
            counts[op] += 1
        keys = inputs = name = None
        if valid_op:
            rest = {k: v for k, v in item.items() if k not in _LAYER_HEAD}
            keys, found = _validate(LAYERS[op].Keys, rest, at, known=_LAYER_HEAD)
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
    return layers, problems


_SECTIONS = {
    "data": _check_data,
    "model": _check_model,
    "loss": _check_loss,
    "train": _check_train,
}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_scalars(value: Any, parts: Parts) -> list[Problem]:
    """Values no key may hold: NaN, infinities, text that is not Unicode."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(parts, f"must be a finite number, got {_show(value)}")]
    surrogate = _SURROGATE.search(value) if isinstance(value, str) else None
    if surrogate:
        code = ord(surrogate.group())
        return [(parts, f"must be Unicode text, got the lone surrogate \\u{code:x}")]
    if isinstance(value, dict):
        items = ((_key(key), v) for key, v in value.items())
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [p for key, v in items for p in _bad_scalars(v, parts + (key,))]


def _arrange(root: dict, problems: list[Problem]) -> list[tuple[str, str]]:
    """One problem per key path, in document order, paths formatted."""
    first: dict[Parts, str] = {}
    for parts, message in problems:
        first.setdefault(parts, message)
    ordered = sorted(first, key=lambda parts: _position(root, parts))
    return [(_format_path(parts), first[parts]) for parts in ordered]


def _position(root: Any, parts: Parts) -> list[int]:
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


def _format_path(parts: Parts) -> str:
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
            part = _show(part)
        text += f".{part}" if text else part
    return text


def _path_parts(path: str) -> Parts:
    """The inverse of ``_format_path`` for plain keys: ``a.b[2]`` -> ``("a", "b", 2)``."""
    return tuple(
        int(index) if index else key
        for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    )


# ------------------------------------------------------------------ pydantic errors


@cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def _validate(
    annotation: Any, raw: Any, where: Parts, known: tuple[str, ...] = ()
) -> tuple[Any, list[Problem]]:
    """Validate ``raw`` (found at ``where``) as ``annotation``, then cross-check it.

    ``known`` names keys that are allowed at the top of ``raw`` although the
    model does not have them (they were taken out and checked elsewhere).
    Returns the value, or None and the problems.
    """
    try:
        value = _adapter(annotation).validate_python(raw)
    except ValidationError as e:
        return None, _explain(
            e.errors(include_url=False), annotation, raw, where, known
        )
    if isinstance(value, _Section):
        problems = _nested(where, value)
        if problems:
            return None, problems
    return value, []


_MISSING = object()


def _explain(
    errors: list[dict], annotation: Any, raw: Any, where: Parts, known: tuple[str, ...]
) -> list[Problem]:
    """Pydantic's errors as problems: one per key path, in the user's words."""
    groups: dict[Parts, list[tuple[dict, _Spot]]] = {}
    for error in errors:
        spot = _locate(annotation, raw, error["loc"], error["type"])
        groups.setdefault(spot.parts, []).append((error, spot))
    problems = []
    for parts, group in groups.items():
        error, spot = group[0]
        limits = [e for e, _ in group if e["type"] == "value_error"]
        if len(group) > 1 and limits:  # the member it fits, but for a limit
            problems.append((where + parts, _message(limits[0], spot, ())[1]))
        elif len(group) > 1:  # one error per member of a plain union: say what fits
            problems.append((where + parts, _must_be(spot, error)))
        else:
            extra, message = _message(error, spot, known if len(parts) == 1 else ())
            problems.append((where + parts + extra, message))
    return problems


@dataclass(frozen=True)
class _Spot:
    """Where an error is: its key path, the raw value there, the types expected."""

    parts: Parts
    value: Any  # the user's value at parts, or _MISSING
    members: list  # the (type, metadata) alternatives expected there
    parents: list  # the models the enclosing mapping may be
    missing_key: bool  # parts ends with a key the user did not give


def _locate(annotation: Any, raw: Any, loc: tuple, error_type: str) -> _Spot:
    """Walk pydantic's ``loc`` through the user's data and the expected types.

    Elements of ``loc`` that are neither a key of the current mapping nor an
    index of the current list are union tags pydantic inserted: they select a
    union member but are not part of the key path. The last element of a
    ``missing`` error is the missing key itself.
    """
    members = _members(annotation)
    parents: list = []
    parts: list[str | int] = []
    here, present, missing_key = raw, True, False
    for i, element in enumerate(loc):
        last = i == len(loc) - 1
        if present and isinstance(here, dict) and element in here:
            parents = _pick_models(members, here)
            members = _field_members(parents, element)
            parts.append(_key(element))
            here = here[element]
        elif (
            present
            and isinstance(here, list)
            and isinstance(element, int)
            and 0 <= element < len(here)
        ):
            members = _item_members(members, element)
            parts.append(element)
            here = here[element]
        elif last and error_type == "missing" and isinstance(element, str):
            parents = _pick_models(members, here)
            members = _field_members(parents, element)
            parts.append(element)
            present, missing_key = False, True
        else:
            members = _select(members, element)
    value = here if present else _MISSING
    return _Spot(tuple(parts), value, members, parents, missing_key)


def _members(annotation: Any, metadata: tuple = ()) -> list[tuple[Any, tuple]]:
    """The alternatives of a type, each with its constraints (Annotated metadata)."""
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        return _members(base, metadata + tuple(extra))
    if get_origin(annotation) in (Union, types.UnionType):
        found = [
            member
            for arg in get_args(annotation)
            if arg is not type(None)
            for member in _members(arg)
        ]
        return found or [(type(None), ())]
    return [(annotation, metadata)]


def _is_model(member: tuple[Any, tuple]) -> bool:
    return isinstance(member[0], type) and issubclass(member[0], BaseModel)


def _discriminators(models: list) -> list[dict[str, set]]:
    """Per model, its values of the Literal fields all the models have (the tags)."""
    literal_fields = [
        {
            name: set(get_args(field.annotation))
            for name, field in model.model_fields.items()
            if get_origin(field.annotation) is Literal
        }
        for model, _ in models
    ]
    common = set.intersection(*(set(fields) for fields in literal_fields))
    return [{name: fields[name] for name in common} for fields in literal_fields]


def _pick_models(members: list, mapping: Any) -> list:
    """The model members of a union that the user's mapping selects."""
    models = [m for m in members if _is_model(m)]
    if len(models) < 2 or not isinstance(mapping, dict):
        return models
    chosen = [
        model
        for model, tags in zip(models, _discriminators(models))
        if all(
            mapping.get(name) in values
            for name, values in tags.items()
            if isinstance(mapping.get(name), str)
        )
    ]
    return chosen or models


def _select(members: list, tag: Any) -> list:
    """The union members a pydantic tag names (a discriminator value or a Tag)."""
    chosen = [m for m in members if any(getattr(x, "tag", None) == tag for x in m[1])]
    models = [m for m in members if _is_model(m)]
    if not chosen and len(models) > 1:
        chosen = [
            model
            for model, tags in zip(models, _discriminators(models))
            if any(tag in values for values in tags.values())
        ]
    return chosen or members


def _field_members(models: list, key: Any) -> list:
    """The alternatives of field ``key`` in any of the models."""
    found = []
    for model, _ in models:
        field = model.model_fields.get(key)
        if field is not None:
            found += _members(field.annotation, tuple(field.metadata))
    return found


def _item_members(members: list, index: int) -> list:
    """The alternatives of item ``index`` of the list or tuple members."""
    found = []
    for annotation, _ in members:
        args = get_args(annotation)
        origin = get_origin(annotation)
        if (origin is list and args) or (origin is tuple and args[-1:] == (...,)):
            found += _members(args[0])
        elif origin is tuple and index < len(args):
            found += _members(args[index])
    return found


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}
_TAG_NAMES = {"kind": "data kind", "type": "optimizer", "scheme": "init scheme"}
# Errors that say a value has the wrong type or form: answered with what fits.
_SHAPE_ERRORS = {
    "literal_error",
    "string_pattern_mismatch",
    "int_from_float",
    "model_attributes_type",
    "finite_number",
}


def _message(error: dict, spot: _Spot, known: tuple[str, ...]) -> tuple[Parts, str]:
    """The message for one error, and any key to add to its path."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing" and spot.missing_key:
        return (), "required key missing"
    if kind == "extra_forbidden":
        choices = [*known, *(k for m, _ in spot.parents for k in m.model_fields)]
        return (), "unknown key" + _suggest(
            spot.parts[-1], list(dict.fromkeys(choices))
        )
    if kind == "invalid_key":
        return (), f"keys must be strings, got {_show(error['input'])}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = ctx.get("discriminator", "").strip("'")
        extra = (key,) if isinstance(spot.value, dict) else ()
        if kind == "union_tag_not_found":
            return extra, "required key missing"
        tag = spot.value.get(key) if extra else ctx.get("tag")
        tags = [t.strip(" '") for t in ctx.get("expected_tags", "").split(",")]
        return extra, _unknown(_TAG_NAMES.get(key, key), tag, tags)
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        bound, got = ctx.get(name), _show(_value(error, spot))
        ints = bool(spot.members) and all(t is int for t, _ in spot.members)
        if op == ">" and bound == 0 and ints:
            return (), f"must be a positive integer, got {got}"
        return (), f"must be {op} {_show(_number(bound))}, got {got}"
    if kind in ("too_short", "too_long") and not _fixed_tuple(spot.members):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        limit = "at least" if kind == "too_short" else "at most"
        return (
            (),
            f"must have {limit} {_plural(n, 'item')}, got {ctx.get('actual_length')}",
        )
    if kind in ("value_error", "assertion_error"):
        return (), str(ctx.get("error", error["msg"]))
    shape = kind in _SHAPE_ERRORS or kind.endswith(("_type", "_parsing"))
    if (shape or kind in ("missing", "too_short", "too_long")) and spot.members:
        return (), _must_be(spot, error)
    return (), error["msg"]


def _value(error: dict, spot: _Spot) -> Any:
    """The offending value as the user wrote it (pydantic's input if not found)."""
    return error.get("input") if spot.value is _MISSING else spot.value


def _must_be(spot: _Spot, error: dict) -> str:
    """``must be <what fits here>, got <value>``, with a did-you-mean for names."""
    value = _value(error, spot)
    names = [
        v
        for t, _ in spot.members
        if get_origin(t) is Literal
        for v in get_args(t)
        if isinstance(v, str)
    ]
    hint = _did_you_mean(value, names) if names else ""
    return f"must be {_describe(spot.members)}, got {_show(value)}{hint}"


def _fixed_tuple(members: list) -> bool:
    return any(
        get_origin(t) is tuple and get_args(t)[-1:] != (...,) for t, _ in members
    )


# ------------------------------------------------------------------ words


_PATTERNS = {
    SPEC_NAME_PATTERN: "a lowercase identifier (a-z, then a-z, 0-9 or _; "
    "at most 64 characters)",
    LAYER_NAME_PATTERN: "an identifier (a letter or _, then letters, digits or _; "
    "at most 64 characters)",
}


def _constraints(metadata: tuple) -> dict[str, Any]:
    """gt, ge, lt, le, pattern, ... from Annotated metadata."""
    found: dict[str, Any] = {}
    for item in metadata:
        for part in item.metadata if isinstance(item, FieldInfo) else [item]:
            for name in ("gt", "ge", "lt", "le", "pattern"):
                if getattr(part, name, None) is not None:
                    found[name] = getattr(part, name)
    return found


def _describe(members: list, plural: bool = False) -> str:
    """What a value must be, in words: ``a positive integer or 'full'``."""
    phrases = list(dict.fromkeys(_describe_one(t, meta, plural) for t, meta in members))
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _describe_one(annotation: Any, metadata: tuple, plural: bool) -> str:
    """One alternative in words; ``plural`` for the items of a list."""
    limits = _constraints(metadata)
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        noun = "integer" if annotation is int else "number"
        bounds = [
            f"{op} {_show(_number(limits[key]))}"
            for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if key in limits
        ]
        if bounds == ["> 0"]:
            noun, bounds = f"positive {noun}", []
        text = f"{noun}s" if plural else ("an " if noun[0] in "aeiou" else "a ") + noun
        return " ".join([text, " and ".join(bounds)]) if bounds else text
    if annotation is str:
        if "pattern" in limits:
            return _PATTERNS.get(
                limits["pattern"], f"a string matching {limits['pattern']}"
            )
        return "strings" if plural else "a string"
    if origin is Literal:
        shown = ", ".join(_show(v) for v in args)
        if plural:
            return f"values among {shown}"
        return shown if len(args) == 1 else f"one of {shown}"
    if origin in (list, tuple) and args:
        items = _describe(_members(args[0]), plural=True)
        if origin is tuple and args[-1] is not ...:
            items = f"{len(args)} {items}"
        return f"lists of {items}" if plural else f"a list of {items}"
    if (isinstance(annotation, type) and issubclass(annotation, BaseModel)) or (
        origin is dict or annotation is dict
    ):
        return "mappings" if plural else "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _number(value: Any) -> Any:
    """0.0 -> 0 in messages: bounds read as the user would write them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it (YAML-ish), shortened when long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, int):
        text = str(value) if abs(value) < 10**50 else "a huge integer"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        shown = [_show(v, limit) for v in value[:10]]
        text = "[" + ", ".join(shown + (["..."] if len(value) > 10 else [])) + "]"
    elif isinstance(value, dict):
        shown = [
            f"{_show(k, limit)}: {_show(v, limit)}" for k, v in list(value.items())[:10]
        ]
        text = "{" + ", ".join(shown + (["..."] if len(value) > 10 else [])) + "}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _did_you_mean(value: Any, choices: list) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, ignoring case; else nothing."""
    if isinstance(value, str):
        folded = {str(c).lower(): str(c) for c in reversed(choices)}
        close = difflib.get_close_matches(value.lower(), list(folded), n=1)
        if close:
            return f" (did you mean '{folded[close[0]]}'?)"
    return ""


def _suggest(value: Any, choices: list) -> str:
    """A did-you-mean when one is close, else the list of choices."""
    return _did_you_mean(value, choices) or f" (expected one of: {', '.join(choices)})"


def _unknown(what: str, value: Any, choices) -> str:
    return f"unknown {what} {_show(value)}" + _suggest(value, list(choices))


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

    yaml_implicit_resolvers: ClassVar[dict] = {}  # filled below, in place of YAML 1.1's

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
                problem=f"not an integer: {_show(text)}", problem_mark=node.start_mark
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
                problem=f"not a number: {_show(text)}", problem_mark=node.start_mark
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
        message = _mark(e.problem_mark, e.problem)
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


def _repeated_keys(value: Any, parts: Parts) -> list[Problem]:
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
