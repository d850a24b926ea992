"""The operation table: every layer and loss, its keys, forward formula and derivative rules.

One entry per operation, in the spirit of PyTorch's derivatives.yaml and JAX's
rule registries. Rules are written in the expression language of ``expr.py``
in terms of

    x, xs   the input (or inputs) of the layer
    y       the layer's result, saved by the forward pass (σ′ = y·(1 − y))
    g       ∂L/∂y, the gradient flowing back into the layer
    p       the layer's parameters: p["weight"], p["bias"]
    a       the layer's validated keys (a.negative_slope, ...)

and the compiler (``autodiff.py``) applies them over the graph. Adding an
operation means adding one entry here (plus its nn.Module spelling, which is
part of the entry), nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .expr import Const, Expr, Sym, call

STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class Keys(BaseModel):
    """Base of every key model: unknown keys are errors, no silent coercion."""

    model_config = STRICT


PosInt = Annotated[int, Field(gt=0)]

# ------------------------------------------------------------------ initialisation

GAIN_NAMES = ("linear", "identity", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain."""
    if nonlinearity in ("linear", "identity", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(nonlinearity)


class TorchDefaultInit(Keys):
    scheme: Literal["torch_default"]


class UniformInit(Keys):
    scheme: Literal["uniform"]
    low: float = 0.0
    high: float = 1.0


class NormalInit(Keys):
    scheme: Literal["normal"]
    mean: float = 0.0
    std: Annotated[float, Field(ge=0)] = 1.0


class XavierInit(Keys):
    scheme: Literal["xavier_uniform", "xavier_normal"]
    gain: Union[Annotated[float, Field(gt=0)], Literal[GAIN_NAMES]] = 1.0


class KaimingInit(Keys):
    scheme: Literal["kaiming_uniform", "kaiming_normal"]
    a: float = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal[GAIN_NAMES] = "leaky_relu"


class ZerosInit(Keys):
    scheme: Literal["zeros"]


class ConstantInit(Keys):
    scheme: Literal["constant"]
    value: float


def _scheme_mapping(v: Any) -> Any:
    return {"scheme": v} if isinstance(v, str) else v


Init = Annotated[
    Union[
        TorchDefaultInit,
        UniformInit,
        NormalInit,
        XavierInit,
        KaimingInit,
        ZerosInit,
        ConstantInit,
    ],
    Field(discriminator="scheme"),
    BeforeValidator(_scheme_mapping),
]

DEFAULT_INIT = TorchDefaultInit(scheme="torch_default")


@dataclass(frozen=True)
class Draw:
    """One parameter's initial draw: ``rng.uniform(low, high, shape)`` and so on."""

    kind: str  # "uniform" | "normal" | "constant"
    a: float  # low, mean or the constant
    b: float = 0.0  # high or std


def init_draw(init, fan_in: int, fan_out: int, is_bias: bool) -> Draw:
    """The torch.nn.init formula of a scheme, as one draw of the init stream."""
    s = init.scheme
    if s == "torch_default":
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        return Draw("uniform", -bound, bound)
    if s == "uniform":
        return Draw("uniform", init.low, init.high)
    if s == "normal":
        return Draw("normal", init.mean, init.std)
    if s == "zeros":
        return Draw("constant", 0.0)
    if s == "constant":
        return Draw("constant", init.value)
    if is_bias:
        raise ValueError(f"{s} needs a weight matrix, not a bias vector")
    if s.startswith("xavier"):
        gain = init.gain if not isinstance(init.gain, str) else calculate_gain(init.gain)
        if s == "xavier_uniform":
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
            return Draw("uniform", -bound, bound)
        return Draw("normal", 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
    fan = fan_in if init.mode == "fan_in" else fan_out
    gain = calculate_gain(init.nonlinearity, init.a)
    if s == "kaiming_uniform":
        bound = gain * math.sqrt(3.0 / fan)
        return Draw("uniform", -bound, bound)
    return Draw("normal", 0.0, gain / math.sqrt(fan))


# ----------------------------------------------------------------------- the table


@dataclass
class Ctx:
    """What a rule sees: the symbols of one layer in the generated code."""

    xs: list[Expr]
    y: Expr
    g: Expr
    p: dict[str, Expr]
    a: Any
    in_features: list[int]
    out_features: int

    @property
    def x(self) -> Expr:
        return self.xs[0]


@dataclass(frozen=True)
class Param:
    name: str  # "weight" or "bias"
    shape: tuple[int, ...]
    draw: Draw


@dataclass(frozen=True)
class Op:
    """One layer type.

    forward(ctx) -> Expr            the layer's value
    vjp(ctx) -> list[Expr | None]   ∂L/∂(each input), given g = ∂L/∂y
    param_grads(ctx) -> {name: Expr}
    out_features(a, in_features) -> int, or a message string for a shape error
    params(a, in_features, out) -> [Param]
    module(a, in_features, out) -> nn constructor code, or None for ops written inline
    module_call(attr, inputs) -> code for the nn.Module forward
    formula / derivative: readable text for comments, READMEs and diagrams
    """

    name: str
    Keys: type[Keys]
    forward: Callable[[Ctx], Expr]
    vjp: Callable[[Ctx], list]
    formula: str
    derivative: str
    module: Callable[..., str | None]
    module_call: Callable[[str, list[str]], str] = lambda attr, xs: f"self.{attr}({xs[0]})"
    out_features: Callable[..., int | str] = lambda a, ins: ins[0]
    params: Callable[..., list[Param]] = lambda a, ins, out: []
    param_grads: Callable[[Ctx], dict] = lambda c: {}
    arity: tuple[int, int | None] = (1, 1)  # min, max number of inputs
    elementwise: bool = True


LAYERS: dict[str, Op] = {}


def register(op: Op) -> Op:
    LAYERS[op.name] = op
    return op


class NoKeys(Keys):
    pass


def elementwise(
    name, forward, vjp, formula, derivative, module, keys=NoKeys
) -> Op:
    """An activation applied element by element (JAX's ``defjvp`` in spirit)."""
    return register(
        Op(
            name=name,
            Keys=keys,
            forward=forward,
            vjp=lambda c: [vjp(c)],
            formula=formula,
            derivative=derivative,
            module=module,
        )
    )


# ---- linear


class LinearKeys(Keys):
    out: PosInt
    bias: bool = True
    init: Init = DEFAULT_INIT
    bias_init: Init = DEFAULT_INIT


def _linear_params(a: LinearKeys, ins: list[int], out: int) -> list[Param]:
    fan_in = ins[0]
    ps = [Param("weight", (out, fan_in), init_draw(a.init, fan_in, out, False))]
    if a.bias:
        ps.append(Param("bias", (out,), init_draw(a.bias_init, fan_in, out, True)))
    return ps


def _linear_forward(c: Ctx) -> Expr:
    y = c.x @ c.p["weight"].T
    return y + c.p["bias"] if "bias" in c.p else y


def _linear_param_grads(c: Ctx) -> dict:
    grads = {"weight": c.g.T @ c.x}
    if "bias" in c.p:
        grads["bias"] = call("sum0", c.g)
    return grads


register(
    Op(
        name="linear",
        Keys=LinearKeys,
        forward=_linear_forward,
        vjp=lambda c: [c.g @ c.p["weight"]],
        param_grads=_linear_param_grads,
        formula="y = x @ Wᵀ + b",
        derivative="∂L/∂x = g @ W;  ∂L/∂W = gᵀ @ x;  ∂L/∂b = Σₙ g",
        module=lambda a, ins, out: (
            f"nn.Linear({ins[0]}, {out}"
            + ("" if a.bias else ", bias=False")
            + ")"
        ),
        out_features=lambda a, ins: a.out,
        params=_linear_params,
        elementwise=False,
    )
)

# ---- activations

elementwise(
    "identity",
    lambda c: c.x,
    lambda c: c.g,
    "y = x",
    "∂L/∂x = g",
    lambda a, ins, out: "nn.Identity()",
)
elementwise(
    "sigmoid",
    lambda c: call("sigmoid", c.x),
    lambda c: c.g * c.y * (1 - c.y),
    "y = σ(x) = 1 / (1 + exp(−x))",
    "σ′(x) = σ(x)·(1 − σ(x)) = y·(1 − y), from the saved output",
    lambda a, ins, out: "nn.Sigmoid()",
)
elementwise(
    "tanh",
    lambda c: call("tanh", c.x),
    lambda c: c.g * (1 - c.y**2),
    "y = tanh(x)",
    "tanh′(x) = 1 − tanh(x)² = 1 − y², from the saved output",
    lambda a, ins, out: "nn.Tanh()",
)
elementwise(
    "relu",
    lambda c: call("relu", c.x),
    lambda c: c.g * call("gt0", c.y),
    "y = max(x, 0)",
    "relu′(x) = [x > 0], a mask (the saved output is > 0 exactly there)",
    lambda a, ins, out: "nn.ReLU()",
)


# ------------------------------------------------------------------------ losses


@dataclass
class LossCtx:
    out: Expr  # the model output ŷ (or logits z)
    y: Expr  # the targets
    a: Any  # validated keys
    outputs: int  # features of the model output
    weight: Expr | None = None  # the class-weight (or pos_weight) constant, if any


@dataclass(frozen=True)
class Loss:
    """One loss: value(ctx) is a scalar, grad(ctx) is ∂L/∂ŷ, derived by hand once here."""

    name: str
    Keys: type[Keys]
    value: Callable[[LossCtx], Expr]
    grad: Callable[[LossCtx], Expr]
    formula: str
    derivative: str
    module: Callable[[Any], str]  # nn loss constructor (weights as WEIGHT)
    targets: Literal["float", "class"] = "float"
    classification: bool = False


LOSSES: dict[str, Loss] = {}

Reduction = Literal["mean", "sum"]


class L2Keys(Keys):
    coef: Annotated[float, Field(ge=0)]
    params: Literal["all", "weights"] = "all"


class LossKeys(Keys):
    """Keys every loss has: the optional ``l2`` term."""

    l2: L2Keys | None = None


class MseKeys(LossKeys):
    type: Literal["mse"]
    reduction: Reduction = "mean"
    scale: float = 1.0


def _count(c: LossCtx) -> Expr:
    """N for one output column, else every element: what MSELoss(mean) divides by."""
    return call("rows", c.out) if c.outputs == 1 else call("numel", c.out)


def _mse_value(c: LossCtx) -> Expr:
    sq = (c.out - c.y) ** 2
    red = call("mean", sq) if c.a.reduction == "mean" else call("sum", sq)
    return c.a.scale * red


def _mse_grad(c: LossCtx) -> Expr:
    factor = Const(2 * c.a.scale)
    if c.a.reduction == "mean":
        factor = factor / _count(c)
    return factor * (c.out - c.y)


LOSSES["mse"] = Loss(
    name="mse",
    Keys=MseKeys,
    value=_mse_value,
    grad=_mse_grad,
    formula="L = scale · mean((ŷ − y)²)   (sum with reduction: sum)",
    derivative="∂L/∂ŷ = 2·scale/numel(ŷ) · (ŷ − y)   (2·scale · (ŷ − y) with sum)",
    module=lambda a: f'nn.MSELoss(reduction="{a.reduction}")',
)


class CrossEntropyKeys(LossKeys):
    type: Literal["cross_entropy"]
    weight: list[Annotated[float, Field(ge=0)]] | None = None
    reduction: Reduction = "mean"


def _ce_value(c: LossCtx) -> Expr:
    nll = call("logsumexp", c.out) - call("pick", c.out, c.y)
    if c.weight is None:
        return call("mean", nll) if c.a.reduction == "mean" else call("sum", nll)
    w = call("index", c.weight, c.y)
    total = call("sum", w * nll)
    return total / call("sum", w) if c.a.reduction == "mean" else total


def _ce_grad(c: LossCtx) -> Expr:
    d = call("softmax", c.out) - call("onehot", c.y, Const(c.outputs))
    if c.weight is None:
        return d / call("rows", c.out) if c.a.reduction == "mean" else d
    w = call("index", c.weight, c.y)
    if c.a.reduction == "mean":
        w = w / call("sum", w)
    return d * call("col", w)


def _ce_module(a) -> str:
    args = ["weight=WEIGHT"] if a.weight is not None else []
    if a.reduction != "mean":
        args.append(f'reduction="{a.reduction}"')
    return f"nn.CrossEntropyLoss({', '.join(args)})"


LOSSES["cross_entropy"] = Loss(
    name="cross_entropy",
    Keys=CrossEntropyKeys,
    value=_ce_value,
    grad=_ce_grad,
    formula="L = Σₙ w[yₙ]·(logsumexp(zₙ) − zₙ[yₙ]) / Σₙ w[yₙ]   (w = 1 without weights)",
    derivative="∂L/∂z = (softmax(z) − onehot(y)) · w[y] / Σₙ w[yₙ]   (softmax and the loss fused)",
    module=_ce_module,
    targets="class",
    classification=True,
)
