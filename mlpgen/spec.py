"""Load and validate a spec (YAML or JSON) to the contract in spec-format.md.

Every problem becomes one line naming the file and the key path; independent
problems are collected in one ``SpecError``. YAML is read with a safe loader
whose resolvers follow YAML 1.2 (``1e-5`` is a number, ``yes`` is a string),
duplicate keys are refused, and no tag can construct a Python object.
"""

from __future__ import annotations

import difflib
import json
import keyword
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .ops import LAYERS, LOSSES, Keys, L2Keys, PosInt

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LAYER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Names the generated code uses for itself: a layer may not shadow them.
RESERVED = {
    "x", "y", "np", "torch", "nn", "F", "math", "argparse", "importlib", "pathlib",
    "params", "grads", "grads0", "cache", "loss", "losses", "out", "out0", "masks",
    "state", "data", "model", "criterion", "optimizer", "rng", "args", "arrays",
    "epoch", "epochs", "step", "start", "batch", "order", "xb", "yb", "first",
    "name", "p", "g", "part", "line", "self", "seed", "quiet", "main", "train",
    "forward", "backward", "loss_fn", "load_data", "init_params", "report",
    "save_dump", "parse_args", "positive_int", "optimizer_step", "init_optimizer",
    "draw_masks", "sigmoid", "softplus", "softmax", "log_softmax", "logsumexp",
    "logsigmoid", "erf", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "denom",
    "square_avg", "grad_avg", "avg", "momentum_buffer", "bias_correction1",
    "bias_correction2", "step_size", "bias_correction2_sqrt", "shuffle_rng",
    "dropout_rng", "Dropout", "super", "len", "float", "int", "sum", "print",
    "range", "dict", "list", "True", "False", "None",
}  # fmt: skip
# limits that keep compile and run time sane (the contract lets us bound sizes)
MAX_FEATURES = 1_000_000
MAX_PARAMS = 200_000_000
MAX_EPOCHS = 10_000_000
MAX_SAMPLES = 10_000_000


class SpecError(Exception):
    """A spec that cannot be compiled: one or more problems, each (key path, message)."""

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file = str(file)
        self.problems = list(problems)
        super().__init__(str(self))

    def lines(self) -> list[str]:
        return [
            f"error: {self.file}: {path}: {msg}" if path else f"error: {self.file}: {msg}"
            for path, msg in self.problems
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and no duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:int")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    return int(text, 0) if text.lstrip("+-")[:2] in ("0x", "0o") else int(text)


def _construct_bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _parse_text(text: str, suffix: str, file: str) -> Any:
    if suffix == ".json":

        def pairs(items):
            out = {}
            for k, v in items:
                if k in out:
                    raise ValueError(f"duplicate key {k!r}")
                out[k] = v
            return out

        def no_constant(name):
            raise ValueError(f"{name} is not a number a spec may use")

        try:
            return json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
        except json.JSONDecodeError as e:
            raise SpecError(file, [("", f"line {e.lineno}, column {e.colno}: could not parse JSON: {e.msg}")]) from None
        except ValueError as e:
            raise SpecError(file, [("", f"could not parse JSON: {e}")]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if isinstance(e, yaml.constructor.ConstructorError) and "could not determine a constructor" in str(e):
            problem = "tags that construct objects are not allowed in a spec: " + problem.split("for the tag")[-1].strip()
        return _raise(file, f"{_where(mark)}: could not parse YAML: {problem}")
    except yaml.YAMLError as e:
        return _raise(file, f"could not parse YAML: {e}")


def _raise(file, msg):
    raise SpecError(file, [("", msg)])


# ------------------------------------------------------------------------ models


STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
Fraction = Annotated[float, Field(ge=0, le=1)]


class Split(BaseModel):
    model_config = STRICT
    train: Annotated[float, Field(gt=0.0, le=1)]
    val: Fraction = 0.0
    test: Fraction = 0.0

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.val + self.test
        if abs(total - 1) > 1e-9:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class _Data(BaseModel):
    model_config = STRICT
    split: Split | None = None
    standardize: bool = False


Number = Union[int, float]


class InlineData(_Data):
    kind: Literal["inline"]
    x: Annotated[list[Annotated[list[Number], Field(min_length=1)]], Field(min_length=1)]
    y: Annotated[list[Union[Number, Annotated[list[Number], Field(min_length=1)]]], Field(min_length=1)]

    @model_validator(mode="after")
    def _rectangular(self):
        width = len(self.x[0])
        for i, row in enumerate(self.x):
            if len(row) != width:
                raise ValueError(f"x[{i}] has {len(row)} values, x[0] has {width}")
        if len(self.y) != len(self.x):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        for v in [v for row in self.x for v in row] + [
            v for r in self.y for v in (r if isinstance(r, list) else [r])
        ]:
            if not math.isfinite(v):
                raise ValueError("data must be finite numbers")
        return self


class RandomData(_Data):
    kind: Literal["random"]
    n: Annotated[int, Field(gt=0, le=MAX_SAMPLES)]
    outputs: Annotated[int, Field(gt=0, le=MAX_FEATURES)] | None = None
    classes: Annotated[int, Field(ge=2, le=MAX_FEATURES)] | None = None

    @model_validator(mode="after")
    def _one_target_kind(self):
        if (self.outputs is None) == (self.classes is None):
            raise ValueError("give exactly one of outputs (float targets) or classes")
        return self


class SpiralData(_Data):
    kind: Literal["spiral"]
    n_per_class: Annotated[int, Field(gt=0, le=MAX_SAMPLES)]
    classes: Annotated[int, Field(ge=2, le=1000)]
    noise: Annotated[float, Field(ge=0)] = 0.2


class FileData(_Data):
    kind: Literal["file"]
    path: Annotated[str, Field(min_length=1)]
    target: Union[str, Annotated[int, Field(ge=0)]] | None = None


Data = Annotated[
    Union[InlineData, RandomData, SpiralData, FileData], Field(discriminator="kind")
]


class Layer(BaseModel):
    """One validated layer: its keys are the op's own key model (ops.LAYERS)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    name: str
    type: str
    inputs: tuple[str, ...] | None
    keys: Any


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    input: int | None
    layers: tuple[Layer, ...]


LR = Annotated[float, Field(gt=0.0)]
NonNeg = Annotated[float, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]


class SgdKeys(Keys):
    type: Literal["sgd"]
    lr: LR
    momentum: NonNeg = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: NonNeg = 0.0

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)")
        return self


class AdamKeys(Keys):
    type: Literal["adam"]
    lr: LR
    betas: Annotated[list[Beta], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    eps: NonNeg = 1e-8
    weight_decay: NonNeg = 0.0
    amsgrad: bool = False


class AdamWKeys(AdamKeys):
    type: Literal["adamw"]
    weight_decay: NonNeg = 0.01


class RmspropKeys(Keys):
    type: Literal["rmsprop"]
    lr: LR
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.99
    eps: NonNeg = 1e-8
    momentum: NonNeg = 0.0
    centered: bool = False
    weight_decay: NonNeg = 0.0


OPTIMIZERS = {"sgd": SgdKeys, "adam": AdamKeys, "adamw": AdamWKeys, "rmsprop": RmspropKeys}

Optimizer = Annotated[
    Union[SgdKeys, AdamKeys, AdamWKeys, RmspropKeys], Field(discriminator="type")
]


class Train(BaseModel):
    model_config = STRICT
    optimizer: Optimizer
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)]
    batch_size: Union[Literal["full"], Annotated[int, Field(gt=0)]] = "full"
    shuffle: bool = False
    metrics: list[Literal["accuracy"]] = []
    log_every: PosInt | None = None


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    mlpgen: Literal[1] = 1
    name: str
    description: str = ""
    dtype: Literal["float64", "float32"] = "float64"
    seed: int = 0
    data: Any
    model: Model
    loss: Any
    train: Train
    source: str = "<spec>"
    base_dir: str = "."


# ------------------------------------------------------------------ error helpers


def _path(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _strip_tags(loc: tuple, raw: Any) -> tuple:
    """Drop the union tags pydantic puts into ``loc`` by walking the raw input."""
    kept, cur = [], raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, dict) and part in cur:
            kept.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            kept.append(part)
            cur = cur[part]
        elif last and isinstance(part, str) and not _is_tag(part):
            kept.append(part)
    return tuple(kept)


def _is_tag(part: str) -> bool:
    return part in {
        "int", "float", "str", "bool", "list", "tuple", "dict", "none",
        "constrained-int", "constrained-float", "constrained-str",
    } or part.startswith(("literal[", "function-", "list[", "tuple[", "dict[", "union[")) or "[" in part  # fmt: skip


def _show(v: Any) -> str:
    if isinstance(v, (dict, list)):
        text = json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(v, str):
        return repr(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _bound(b) -> str:
    return f"{b:g}" if isinstance(b, float) else str(b)


def _message(err: dict, allowed: list[str]) -> str:
    t, ctx, v = err["type"], err.get("ctx", {}), err.get("input")
    got = f", got {_show(v)}"
    if t == "missing":
        return "required key missing"
    if t == "extra_forbidden":
        key = str(err["loc"][-1]) if err["loc"] else ""
        close = difflib.get_close_matches(key, allowed, n=1)
        return "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")
    if t == "greater_than":
        if ctx.get("gt") == 0 and type(ctx["gt"]) is int and type(v) is int:
            return f"must be a positive integer{got}"
        return f"must be > {_bound(ctx['gt'])}{got}"
    if t == "greater_than_equal":
        return f"must be >= {_bound(ctx['ge'])}{got}"
    if t == "less_than":
        return f"must be < {_bound(ctx['lt'])}{got}"
    if t == "less_than_equal":
        return f"must be <= {_bound(ctx['le'])}{got}"
    if t in ("int_type", "int_from_float", "int_parsing"):
        return f"must be an integer{got}"
    if t in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number{got}"
    if t == "bool_type":
        return f"must be true or false{got}"
    if t == "string_type":
        return f"must be a string{got}"
    if t in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if t in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping{got}"
    if t == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}{got}"
    if t == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s){got}"
    if t == "too_long":
        return f"takes at most {ctx.get('max_length')} item(s){got}"
    if t == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags')}{got}"
    if t == "union_tag_not_found":
        return f"needs the key '{ctx.get('discriminator', '').strip(chr(39))}'"
    if t == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg'][0].lower()}{err['msg'][1:]}{got}"


def _allowed_keys(raw: Any, loc: tuple) -> list[str]:
    """Known keys at the place an unknown key was found, for 'did you mean'."""
    models = {
        ("data",): [InlineData, RandomData, SpiralData, FileData],
        ("data", "split"): [Split],
        ("train",): [Train],
        ("train", "optimizer"): list(OPTIMIZERS.values()),
        ("loss",): [loss.Keys for loss in LOSSES.values()],
        ("loss", "l2"): [L2Keys],
    }.get(tuple(p for p in loc[:-1] if not isinstance(p, int)), [])
    return sorted({name for m in models for name in m.model_fields})


def _collect(err: ValidationError, raw: Any, prefix: tuple, allowed=None) -> list[tuple[str, str]]:
    """One problem per key path (a plain union reports once per member: keep the first)."""
    seen: dict[str, str] = {}
    for e in err.errors():
        loc = _strip_tags(tuple(e["loc"]), raw)
        keys = allowed if allowed is not None else _allowed_keys(raw, prefix + loc)
        path = _path(prefix + loc)
        if path not in seen:
            seen[path] = _message({**e, "loc": loc}, keys)
    return list(seen.items())


# -------------------------------------------------------------------- validation


TOP_KEYS = ("mlpgen", "name", "description", "dtype", "seed", "data", "model", "loss", "train")


def _validate_layers(raw_model: Any, problems: list) -> Model | None:
    if not isinstance(raw_model, dict):
        problems.append(("model", f"must be a mapping, got {_show(raw_model)}"))
        return None
    ok = True
    for key in raw_model:
        if key not in ("input", "layers"):
            close = difflib.get_close_matches(str(key), ["input", "layers"], n=1)
            problems.append((f"model.{key}", "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")))
            ok = False
    inp = raw_model.get("input")
    if inp is not None and (not isinstance(inp, int) or isinstance(inp, bool) or inp <= 0):
        problems.append(("model.input", f"must be a positive integer, got {_show(inp)}"))
        ok = False
    elif inp is not None and inp > MAX_FEATURES:
        problems.append(("model.input", f"must be <= {MAX_FEATURES}, got {inp}"))
        ok = False
    raw_layers = raw_model.get("layers")
    if raw_layers is None:
        problems.append(("model.layers", "required key missing"))
        return None
    if not isinstance(raw_layers, list) or not raw_layers:
        problems.append(("model.layers", f"must be a non-empty list of layers, got {_show(raw_layers)}"))
        return None
    counts: dict[str, int] = {}
    names: dict[str, int] = {}
    layers = []
    for i, raw in enumerate(raw_layers):
        where = f"model.layers[{i}]"
        if not isinstance(raw, dict):
            problems.append((where, f"must be a mapping, got {_show(raw)}"))
            ok = False
            continue
        typ = raw.get("type")
        if typ is None:
            problems.append((f"{where}.type", "required key missing"))
            ok = False
            continue
        if not isinstance(typ, str) or typ not in LAYERS:
            close = difflib.get_close_matches(str(typ), list(LAYERS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (one of: {', '.join(LAYERS)})"
            problems.append((f"{where}.type", f"unknown layer type {_show(typ)}{hint}"))
            ok = False
            continue
        counts[typ] = counts.get(typ, 0) + 1
        name = raw.get("name", f"{typ}{counts[typ]}")
        if not isinstance(name, str) or not LAYER_NAME_RE.match(name):
            problems.append((f"{where}.name", f"must be an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters), got {_show(name)}"))
            ok = False
        elif keyword.iskeyword(name) or name in RESERVED or name.startswith("d_"):
            problems.append((f"{where}.name", f"'{name}' is reserved: the generated code uses it (and names starting with d_ for gradients)"))
            ok = False
        elif name in names:
            problems.append((f"{where}.name", f"'{name}' is already the name of model.layers[{names[name]}]"))
            ok = False
        else:
            names[name] = i
        inputs = raw.get("inputs")
        if inputs is not None:
            if (
                not isinstance(inputs, list)
                or not inputs
                or not all(isinstance(s, str) for s in inputs)
            ):
                problems.append((f"{where}.inputs", f"must be a non-empty list of layer names, got {_show(inputs)}"))
                ok = False
                inputs = None
            else:
                inputs = tuple(inputs)
        rest = {k: v for k, v in raw.items() if k not in ("name", "type", "inputs")}
        op = LAYERS[typ]
        try:
            keys = op.Keys.model_validate(rest)
        except ValidationError as e:
            allowed = sorted(set(op.Keys.model_fields) | {"name", "type", "inputs"})
            sub = _collect(e, rest, (), allowed)
            problems.extend((f"{where}.{p}" if p else where, m) for p, m in sub)
            ok = False
            continue
        layers.append(Layer(name=str(name), type=typ, inputs=inputs, keys=keys))
    if not ok:
        return None
    return Model(input=inp, layers=tuple(layers))


def _section(model, raw, key, problems):
    if key not in raw:
        problems.append((key, "required key missing"))
        return None
    try:
        return model.model_validate(raw[key]) if isinstance(model, type) else model(raw[key])
    except ValidationError as e:
        problems.extend(_collect(e, raw[key], (key,)))
        return None


def _loss(raw: Any):
    from pydantic import TypeAdapter

    if not isinstance(raw, dict):
        raise _Plain(f"must be a mapping, got {_show(raw)}")
    t = raw.get("type")
    if t is None:
        raise _Plain("needs the key 'type'", "loss.type")
    if t not in LOSSES:
        close = difflib.get_close_matches(str(t), list(LOSSES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (one of: {', '.join(LOSSES)})"
        raise _Plain(f"unknown loss {_show(t)}{hint}", "loss.type")
    return TypeAdapter(LOSSES[t].Keys).validate_python(raw)


class _Plain(Exception):
    def __init__(self, msg, path=None):
        self.msg, self.path = msg, path


def parse_spec(data: Any, file: str = "<spec>", base_dir: Path | None = None) -> Spec:
    """Validate parsed spec data; raise SpecError with every independent problem."""
    from pydantic import TypeAdapter

    if not isinstance(data, dict):
        raise SpecError(file, [("", f"the spec must be a mapping of keys, got {_show(data)}")])
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            problems.append((str(key), "unknown key" + (f" (did you mean '{close[0]}'?)" if close else "")))
    fields: dict[str, Any] = {}
    simple = {k: data[k] for k in ("mlpgen", "name", "description", "dtype", "seed") if k in data}

    class _Top(BaseModel):
        model_config = STRICT
        mlpgen: Literal[1] = 1
        name: str
        description: str = ""
        dtype: Literal["float64", "float32"] = "float64"
        seed: Annotated[int, Field(ge=0, lt=2**63)] = 0

    try:
        top = _Top.model_validate(simple)
        if not NAME_RE.match(top.name) or keyword.iskeyword(top.name):
            problems.append(("name", f"must match [a-z][a-z0-9_]{{0,63}} and not be a Python keyword, got {_show(top.name)}"))
        fields.update(top.model_dump())
    except ValidationError as e:
        problems.extend(_collect(e, simple, ()))

    fields["data"] = _section(TypeAdapter(Data).validate_python, data, "data", problems) if "data" in data else problems.append(("data", "required key missing"))
    if "model" in data:
        fields["model"] = _validate_layers(data["model"], problems)
    else:
        problems.append(("model", "required key missing"))
    if "loss" in data:
        try:
            fields["loss"] = _loss(data["loss"])
        except _Plain as e:
            problems.append((e.path or "loss", e.msg))
        except ValidationError as e:
            problems.extend(_collect(e, data["loss"], ("loss",)))
    else:
        problems.append(("loss", "required key missing"))
    fields["train"] = _section(Train, data, "train", problems)
    if problems:
        raise SpecError(file, problems)
    return Spec(**fields, source=str(file), base_dir=str(base_dir or "."))


def load_spec(path) -> Spec:
    """Read, parse and validate the spec file at ``path``."""
    path = Path(path)
    file = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise SpecError(file, [("", "a spec is a .yaml, .yml or .json file")])
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(file, [("", f"cannot read the file: {e.strerror}")]) from None
    if len(raw) > 50_000_000:
        raise SpecError(file, [("", "the spec file is larger than 50 MB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(file, [("", f"not UTF-8 text (byte {e.start})")]) from None
    data = _parse_text(text, suffix, file)
    return parse_spec(data, file, path.resolve().parent)
