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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from .expr import Const, Expr, Sym, call
from .schema import After, Range, Record, Tagged


class Keys(Record):
    """Base of every key model: unknown keys are errors, no silent coercion."""


PosInt = Annotated[int, Range(gt=0)]

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
    std: Annotated[float, Range(ge=0)] = 1.0


class XavierInit(Keys):
    scheme: Literal["xavier_uniform", "xavier_normal"]
    gain: Annotated[float, Range(gt=0)] | Literal[GAIN_NAMES] = 1.0  # type: ignore[valid-type]


class KaimingInit(Keys):
    scheme: Literal["kaiming_uniform", "kaiming_normal"]
    a: float = 0.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal[GAIN_NAMES] = "leaky_relu"  # type: ignore[valid-type]


class ZerosInit(Keys):
    scheme: Literal["zeros"]


class ConstantInit(Keys):
    scheme: Literal["constant"]
    value: float


Init = Annotated[
    TorchDefaultInit
    | UniformInit
    | NormalInit
    | XavierInit
    | KaimingInit
    | ZerosInit
    | ConstantInit,
    Tagged("scheme", "init scheme", bare=True),  # a string is the scheme alone
]

DEFAULT_INIT = TorchDefaultInit(scheme="torch_default")


@dataclass(frozen=True)
class Draw:
    """One parameter's initial draw: ``rng.uniform(low, high, shape)`` and so on.

    ``scale``, when set, is the bound (uniform, drawn from −scale to +scale) or
    the std (normal) as Python code that computes exactly the float in ``b``,
    e.g. ``1 / math.sqrt(2)``: the generated code shows the formula, not
    0.7071067811865475.
    """

    kind: str  # "uniform" | "normal" | "constant"
    a: float  # low, mean or the constant
    b: float = 0.0  # high or std
    scale: str | None = None


def _gain_code(gain: float, name: str | None = None) -> str:
    """A gain as code: calculate_gain's exact values by their formula."""
    exact = {math.sqrt(2.0): "math.sqrt(2)", 5.0 / 3: "5 / 3", 3.0 / 4: "3 / 4"}
    return exact.get(gain, repr(gain))


def _scaled(gain: float, root: str) -> str:
    """``gain * math.sqrt(…)`` as code, without a factor of 1."""
    return root if gain == 1.0 else f"{_gain_code(gain)} * {root}"


def init_draw(init, fan_in: int, fan_out: int, is_bias: bool) -> Draw:
    """The torch.nn.init formula of a scheme, as one draw of the init stream."""
    s = init.scheme
    if s == "torch_default":
        if fan_in <= 0:
            return Draw("uniform", -0.0, 0.0)
        bound = 1.0 / math.sqrt(fan_in)
        return Draw("uniform", -bound, bound, f"1 / math.sqrt({fan_in})")
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
        gain = (
            init.gain if not isinstance(init.gain, str) else calculate_gain(init.gain)
        )
        if s == "xavier_uniform":
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
            code = _scaled(gain, f"math.sqrt(6 / ({fan_in} + {fan_out}))")
            return Draw("uniform", -bound, bound, code)
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        code = _scaled(gain, f"math.sqrt(2 / ({fan_in} + {fan_out}))")
        return Draw("normal", 0.0, std, code)
    fan = fan_in if init.mode == "fan_in" else fan_out
    gain = calculate_gain(init.nonlinearity, init.a)
    if s == "kaiming_uniform":
        bound = gain * math.sqrt(3.0 / fan)
        return Draw("uniform", -bound, bound, _scaled(gain, f"math.sqrt(3 / {fan})"))
    std = gain / math.sqrt(fan)
    code = (
        f"1 / math.sqrt({fan})"
        if gain == 1.0
        else f"{_gain_code(gain)} / math.sqrt({fan})"
    )
    return Draw("normal", 0.0, std, code)


def check_draw_code(draw: Draw) -> bool:
    """Whether ``draw.scale`` computes exactly ``draw.b`` (tests call this)."""
    return draw.scale is None or eval(draw.scale, {"math": math}) == draw.b


# ----------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Local:
    """One line a rule adds before its result: an intermediate (``let``) or, in
    training mode, the update of a buffer (``update``)."""

    target: Sym
    expr: Expr
    shape: tuple  # e.g. ("N", 5) or (5,)
    note: str  # what it is, in words (may be empty)
    kind: str  # "let" | "update"
    name: str  # the intermediate's name within its layer ("mean"), or the buffer's


def local_sym(layer: str, name: str, math: str | None = None) -> Sym:
    """The symbol of intermediate ``name`` of ``layer``, before autodiff names it
    in the file (``bn1_mean``; in formulas ``bn1.μ``)."""
    return Sym(f"{layer}_{name}", math or f"{layer}.{name}")


@dataclass
class Ctx:
    """What a rule sees: the symbols of one layer in the generated code.

    A rule that needs more than one line names its pieces with ``let`` (the
    batch mean, x̂, …): each becomes a line of its own, with its formula above
    it, and the rule goes on with the returned symbol. A forward rule reads
    ``training`` (the two forward passes, training and evaluation) and
    ``update``s its buffers (layer state that is not a parameter) in training
    mode. A backward rule reads the forward pass's intermediates with
    ``local(name)``.
    """

    xs: list[Expr]
    y: Expr
    g: Expr
    p: dict[str, Expr]
    a: Any
    in_features: list[int]
    out_features: int
    b: dict[str, Expr] = field(default_factory=dict)  # the layer's buffers
    training: bool = True
    layer: str = "layer"  # the layer's name, as the spec names it
    lines: list[Local] = field(default_factory=list)  # what let and update added
    # the symbol of an intermediate: (name, math) -> Sym; autodiff gives the
    # file's names, the default serves tests that evaluate one rule alone
    name_local: Callable[[str, str | None], Sym] | None = None
    tokens: int | None = None  # T, when the layer reads token indices (N, T)

    @property
    def x(self) -> Expr:
        return self.xs[0]

    def local(self, name: str, math: str | None = None) -> Sym:
        """The symbol of this layer's intermediate ``name`` (made by ``let``,
        here or in the forward pass)."""
        if self.name_local is not None:
            return self.name_local(name, math)
        return local_sym(self.layer, name, math)

    def let(
        self,
        name: str,
        expr: Expr,
        shape: tuple,
        note: str = "",
        math: str | None = None,
    ) -> Sym:
        """A named intermediate: ``<layer>_<name> = expr`` on a line of its own."""
        sym = self.local(name, math)
        if not any(line.target == sym for line in self.lines):
            self.lines.append(Local(sym, expr, shape, note, "let", name))
        return sym

    def update(self, buffer: str, expr: Expr, note: str = "") -> None:
        """Training mode only: ``buffer ← expr`` (running statistics and the like)."""
        target = self.b[buffer]
        assert isinstance(target, Sym)
        self.lines.append(Local(target, expr, (), note, "update", buffer))


@dataclass(frozen=True)
class Param:
    name: str  # "weight" or "bias"
    shape: tuple[int, ...]
    draw: Draw


@dataclass(frozen=True)
class Buffer:
    """Layer state that is not a parameter: kept in ``state_dict()``, changed by
    the forward pass in training mode, never by the optimizer."""

    name: str  # "running_mean", …
    shape: tuple[int, ...]
    value: float  # the initial value of every element
    dtype: Literal["float", "int64"] = "float"


@dataclass(frozen=True)
class Op:
    """One layer type.

    forward(ctx) -> Expr            the layer's value (``ctx.training`` says
                                    which pass; ``ctx.let``/``ctx.update`` add lines)
    vjp(ctx) -> list[Expr | None]   ∂L/∂(each input), given g = ∂L/∂y
    param_grads(ctx) -> {name: Expr}
    out_features(a, in_features) -> int, or a message string for a shape error
    params(a, in_features, out) -> [Param]
    buffers(a, in_features, out) -> [Buffer]
    module(a, in_features, out) -> the nn constructor code of the layer's
        submodule in torch_module.py ("{cls}" stands for the class that
        ``module_class`` defines, when the layer needs one of its own)
    module_class(a, cls) -> the source of that class (a small nn.Module), or None
    class_name(layer) -> the name that class would like
    formula / derivative: readable text for comments, READMEs and diagrams
    derivation: why the rules hold, for the learning page: the index form
        down to the matrix form the code uses, the shapes checked (a few
        lines of text, unicode math as in ``formula``)
    """

    name: str
    Keys: type[Keys]
    forward: Callable[[Ctx], Expr]
    vjp: Callable[[Ctx], list]
    formula: str
    derivative: str
    module: Callable[..., str]
    out_features: Callable[..., int | str] = lambda a, ins: ins[0]
    params: Callable[..., list[Param]] = lambda a, ins, out: []
    buffers: Callable[..., list[Buffer]] = lambda a, ins, out: []
    param_grads: Callable[[Ctx], dict] = lambda c: {}
    module_class: Callable[[Any, str], str] | None = None
    class_name: Callable[[str], str] = lambda layer: ""
    arity: tuple[int, int | None] = (1, 1)  # min, max number of inputs
    elementwise: bool = True
    reads_tokens: bool = False  # may read integer token inputs
    derivation: str = ""
    # Two readings where the code evaluates the textbook's formula another way
    # (as PyTorch does, for parity): the textbook's value and input gradient as
    # IR, printed first, then the evaluated line, "PyTorch evaluates it as …,
    # <why>" (as Loss.textbook does for the losses)
    textbook: Callable[[Ctx], Expr] | None = None
    textbook_vjp: Callable[[Ctx], Expr] | None = None
    why: str = ""


LAYERS: dict[str, Op] = {}


def register(op: Op) -> Op:
    LAYERS[op.name] = op
    return op


class NoKeys(Keys):
    pass


def elementwise(
    name,
    forward,
    vjp,
    formula,
    derivative,
    module,
    keys=NoKeys,
    derivation="",
    **readings,
) -> Op:
    """An activation applied element by element (JAX's ``defjvp`` in spirit).

    ``derivation`` derives f′ only: why an element-wise rule is g ⊙ f′(x) is
    said once for all of them (``ELEMENTWISE_DERIVATION``)."""
    return register(
        Op(
            name=name,
            Keys=keys,
            forward=forward,
            vjp=lambda c: [vjp(c)],
            formula=formula,
            derivative=derivative,
            module=module,
            derivation=derivation,
            **readings,
        )
    )


ELEMENTWISE_DERIVATION = (
    "An element-wise operation y[n,j] = f(x[n,j]): each output depends on the "
    "input at the same place and on nothing else, so the Jacobian ∂y/∂x is "
    "diagonal and the chain rule ∂L/∂x[n,j] = Σₘₖ g[m,k]·∂y[m,k]/∂x[n,j] keeps "
    "one term: ∂L/∂x = g ⊙ f′(x), element by element, of x's shape (N, F). "
    "Only f′ differs from one operation to the next."
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
            f"nn.Linear({ins[0]}, {out}" + ("" if a.bias else ", bias=False") + ")"
        ),
        out_features=lambda a, ins: a.out,
        params=_linear_params,
        elementwise=False,
        derivation=(
            "In index form y[n,j] = Σᵢ x[n,i]·W[j,i] + b[j], with x (N, in), W "
            "(out, in), b (out,), and y and g = ∂L/∂y (N, out).\n"
            "W[j,i] enters y[n,j] of every row n, with factor x[n,i]: ∂L/∂W[j,i] "
            "= Σₙ g[n,j]·x[n,i], which is the matrix product gᵀ @ x.\n"
            "x[n,i] enters y[n,j] of every output j, with factor W[j,i]: "
            "∂L/∂x[n,i] = Σⱼ g[n,j]·W[j,i], which is g @ W.\n"
            "b[j] is added to every row: ∂L/∂b[j] = Σₙ g[n,j], the sum over the "
            "batch.\n"
            "The shapes check it (d2l §4.7): ∂L/∂W must be (out, in) like W, and "
            "gᵀ @ x is the only product of g (N, out) and x (N, in) with that "
            "shape; ∂L/∂x must be (N, in) like x, and g @ W is the only product "
            "of g and W (out, in) that gives it."
        ),
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
    derivation=(
        "f(x) = x, so f′(x) = 1 and ∂L/∂x = g: the gradient passes through unchanged."
    ),
)
elementwise(
    "sigmoid",
    lambda c: call("sigmoid", c.x),
    lambda c: c.g * (1 - c.y) * c.y,  # in torch's order: the same rounding
    "y = σ(x) = 1 / (1 + exp(−x))",
    "σ′(x) = σ(x)·(1 − σ(x)) = (1 − y)·y, from the saved output",
    lambda a, ins, out: "nn.Sigmoid()",
    derivation=(
        "σ(x) = 1/(1 + e⁻ˣ), so σ′(x) = e⁻ˣ/(1 + e⁻ˣ)² = σ(x)·e⁻ˣ/(1 + e⁻ˣ) ="
        " σ(x)·(1 − σ(x)).\n"
        "Written with the saved output y = σ(x): ∂L/∂x = g ⊙ (1 − y) ⊙ y, and"
        " the input need not be kept."
    ),
)
elementwise(
    "tanh",
    lambda c: call("tanh", c.x),
    lambda c: c.g * (1 - c.y**2),
    "y = tanh(x)",
    "tanh′(x) = 1 − tanh(x)² = 1 − y², from the saved output",
    lambda a, ins, out: "nn.Tanh()",
    derivation=(
        "tanh(x) = sinh(x)/cosh(x); the quotient rule gives tanh′(x) = (cosh²"
        " − sinh²)/cosh² = 1 − tanh²(x).\n"
        "Written with the saved output y: ∂L/∂x = g ⊙ (1 − y²)."
    ),
)
elementwise(
    "relu",
    lambda c: call("relu", c.x),
    lambda c: c.g * call("gt0", c.y),
    "y = max(x, 0)",
    "relu′(x) = [x > 0], a mask (the saved output is > 0 exactly there)",
    lambda a, ins, out: "nn.ReLU()",
    derivation=(
        "max(x, 0) is x where x > 0 (slope 1) and 0 elsewhere (slope 0): "
        "relu′(x) = [x > 0], a mask of zeros and ones. At the kink x = 0 "
        "PyTorch takes the slope to be 0, and so does this rule.\n"
        "y > 0 exactly where x > 0, so the mask comes from the saved output: "
        "∂L/∂x = g ⊙ [y > 0]."
    ),
)


class LeakyReluKeys(Keys):
    negative_slope: Annotated[float, Range(ge=0)] = 0.01


elementwise(
    "leaky_relu",
    lambda c: call("where_gt", c.x, c.x, c.a.negative_slope * c.x, 0),
    lambda c: call("where_gt", c.x, c.g, c.a.negative_slope * c.g, 0),
    "y = x if x > 0 else negative_slope·x",
    "leaky_relu′(x) = 1 if x > 0 else negative_slope",
    lambda a, ins, out: f"nn.LeakyReLU({a.negative_slope!r})",
    derivation=(
        "x where x > 0 (slope 1), negative_slope·x elsewhere (slope "
        "negative_slope, also at the kink x = 0, as PyTorch): ∂L/∂x = g where"
        " x > 0, negative_slope·g elsewhere."
    ),
    keys=LeakyReluKeys,
)


class EluKeys(Keys):
    alpha: Annotated[float, Range(ge=0)] = 1.0


elementwise(
    "elu",
    # exp of min(x, 0): the branch not taken must not overflow either
    lambda c: call(
        "where_gt", c.x, c.x, c.a.alpha * call("expm1", call("min0", c.x)), 0
    ),
    lambda c: call(
        "where_gt", c.x, c.g, c.g * c.a.alpha * call("exp", call("min0", c.x)), 0
    ),
    "y = x if x > 0 else alpha·(exp(x) − 1)",
    "elu′(x) = 1 if x > 0 else alpha·exp(x)",
    lambda a, ins, out: f"nn.ELU({a.alpha!r})",
    textbook=lambda c: call(
        "where_gt", c.x, c.x, c.a.alpha * (call("exp", c.x) - 1), 0
    ),
    textbook_vjp=lambda c: call(
        "where_gt", c.x, c.g, c.g * c.a.alpha * call("exp", c.x), 0
    ),
    why=(
        "exp of min(x, 0), so that the branch not taken (computed too) never "
        "overflows, and exp(x) − 1 as expm1, exact near 0"
    ),
    derivation=(
        "x where x > 0 (slope 1), alpha·(eˣ − 1) elsewhere, whose slope is "
        "alpha·eˣ: ∂L/∂x = g where x > 0, g·alpha·eˣ elsewhere.\n"
        "The code takes eˣ of min(x, 0), so that the branch not taken never "
        "overflows."
    ),
    keys=EluKeys,
)


class GeluKeys(Keys):
    approximate: Literal["none", "tanh"] = "none"


SQRT1_2 = Const(math.sqrt(0.5), "1/√2")
SQRT_2_PI = Const(math.sqrt(2 / math.pi), "√(2/π)")
INV_SQRT_2PI = Const(1 / math.sqrt(2 * math.pi), "1/√(2π)")  # the normal density's
KAPPA = 0.044715


def _gelu_forward(c: Ctx) -> Expr:
    if c.a.approximate == "tanh":
        inner = SQRT_2_PI * (c.x + KAPPA * c.x**3)
        return 0.5 * c.x * (1 + call("tanh", inner))
    return c.x * 0.5 * (1 + call("erf", c.x * SQRT1_2))


def _gelu_vjp(c: Ctx) -> Expr:
    if c.a.approximate == "tanh":
        t = call("tanh", SQRT_2_PI * (c.x + KAPPA * c.x**3))
        slope = 0.5 * (1 + t) + 0.5 * c.x * (1 - t**2) * (
            SQRT_2_PI * (1 + 3 * KAPPA * c.x**2)
        )
        return c.g * slope
    cdf = 0.5 * (1 + call("erf", c.x * SQRT1_2))
    pdf = INV_SQRT_2PI * call("exp", -0.5 * c.x**2)
    return c.g * (cdf + c.x * pdf)


elementwise(
    "gelu",
    _gelu_forward,
    _gelu_vjp,
    "y = x·Φ(x), Φ the standard normal CDF (tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))))",
    "gelu′(x) = Φ(x) + x·φ(x), φ the normal density (tanh form: its exact derivative)",
    lambda a, ins, out: (
        "nn.GELU()" if a.approximate == "none" else 'nn.GELU(approximate="tanh")'
    ),
    derivation=(
        "x·Φ(x), with Φ(x) = ½·(1 + erf(x/√2)) the standard normal CDF, whose"
        " derivative is the normal density φ(x) = e^(−x²/2)/√(2π). The "
        "product rule: gelu′(x) = Φ(x) + x·φ(x).\n"
        "The tanh form ½·x·(1 + t), t = tanh(u), u = √(2/π)·(x + "
        "0.044715·x³): the product and chain rules with tanh′ = 1 − t² give "
        "½·(1 + t) + ½·x·(1 − t²)·u′, u′ = √(2/π)·(1 + 3·0.044715·x²)."
    ),
    keys=GeluKeys,
)
elementwise(
    "silu",
    lambda c: c.x * call("sigmoid", c.x),
    lambda c: c.g * call("sigmoid", c.x) * (1 + c.x * (1 - call("sigmoid", c.x))),
    "y = x·σ(x)",
    "silu′(x) = σ(x)·(1 + x·(1 − σ(x)))",
    lambda a, ins, out: "nn.SiLU()",
    derivation=(
        "x·σ(x): the product rule with σ′ = σ·(1 − σ) gives silu′(x) = σ(x) +"
        " x·σ(x)·(1 − σ(x)) = σ(x)·(1 + x·(1 − σ(x)))."
    ),
)
elementwise(
    "softplus",
    lambda c: call("softplus", c.x),
    lambda c: call("where_gt", c.x, c.g, c.g * call("sigmoid", c.x), 20),
    "y = log(1 + exp(x)), and y = x above 20 (torch's threshold)",
    "softplus′(x) = σ(x), and 1 above 20",
    lambda a, ins, out: "nn.Softplus()",
    derivation=(
        "log(1 + eˣ): the chain rule gives softplus′(x) = eˣ/(1 + eˣ) = 1/(1 "
        "+ e⁻ˣ) = σ(x).\n"
        "Above 20 PyTorch returns x itself (log(1 + eˣ) is x to double "
        "precision there), and the slope is 1."
    ),
)
register(
    Op(
        name="softmax",
        Keys=NoKeys,
        forward=lambda c: call("softmax", c.x),
        vjp=lambda c: [c.y * (c.g - call("rowsum", c.g * c.y))],
        formula="yⱼ = exp(xⱼ) / Σₖ exp(xₖ), per row",
        derivative="the Jacobian-vector product ∂L/∂x = y ⊙ (g − Σⱼ gⱼ·yⱼ)",
        module=lambda a, ins, out: "nn.Softmax(dim=1)",
        elementwise=False,
        derivation=(
            "Per row, yⱼ = exp(xⱼ)/Σₖ exp(xₖ): every output depends on every "
            "input of its row, and the quotient rule gives ∂yⱼ/∂xᵢ = yⱼ·([i = j] "
            "− yᵢ), the C × C Jacobian diag(y) − y·yᵀ of each row.\n"
            "Then ∂L/∂xᵢ = Σⱼ gⱼ·yⱼ·([i = j] − yᵢ) = yᵢ·gᵢ − yᵢ·Σⱼ gⱼ·yⱼ: ∂L/∂x ="
            " y ⊙ (g − Σⱼ gⱼ·yⱼ), the row sum broadcast along its row. Shape (N, "
            "C) like x, and the Jacobian is never formed."
        ),
    )
)
register(
    Op(
        name="log_softmax",
        Keys=NoKeys,
        forward=lambda c: call("log_softmax", c.x),
        vjp=lambda c: [c.g - call("exp", c.y) * call("rowsum", c.g)],
        formula="yⱼ = xⱼ − log Σₖ exp(xₖ), per row (via log-sum-exp)",
        derivative="∂L/∂x = g − exp(y) ⊙ Σⱼ gⱼ",
        module=lambda a, ins, out: "nn.LogSoftmax(dim=1)",
        elementwise=False,
        derivation=(
            "Per row, yⱼ = xⱼ − log Σₖ exp(xₖ), so ∂yⱼ/∂xᵢ = [i = j] − "
            "softmax(x)ᵢ, and softmax(x) = exp(y).\n"
            "Then ∂L/∂xᵢ = Σⱼ gⱼ·([i = j] − exp(yᵢ)) = gᵢ − exp(yᵢ)·Σⱼ gⱼ: ∂L/∂x "
            "= g − exp(y) ⊙ Σⱼ gⱼ, shape (N, C) like x."
        ),
    )
)


class DropoutKeys(Keys):
    p: Annotated[float, Range(ge=0, lt=1)] = 0.5


def mask(layer_name: str) -> Sym:
    """The dropout mask of one training step, drawn in the forward pass."""
    return local_sym(layer_name, "mask")


def _dropout_forward(c: Ctx) -> Expr:
    if not c.training:
        return c.x  # evaluation: dropout is off
    m = c.let(
        "mask",
        call("dropout_mask", c.x, Const(c.a.p)),
        ("N", c.out_features),
        "keep where u ≥ p, u drawn from the dropout stream, and scale by 1/(1 − p)",
    )
    return c.x * m


register(
    Op(
        name="dropout",
        Keys=DropoutKeys,
        forward=_dropout_forward,
        vjp=lambda c: [c.g * c.local("mask")],
        formula="y = x ⊙ mask, mask = [u ≥ p]/(1 − p) in training; y = x in evaluation",
        derivative="∂L/∂x = g ⊙ mask (the same mask)",
        module=lambda a, ins, out: f"Dropout({a.p!r}, dropout_rng)",
        derivation=(
            "In training y = x ⊙ m, with the mask m = [u ≥ p]/(1 − p) drawn once "
            "for the step: a constant, not a function of x. So ∂y[n,j]/∂x[n,j] = "
            "m[n,j] and ∂L/∂x = g ⊙ m with the very mask of the forward pass, "
            "which is why the forward pass keeps it.\n"
            "Dropped units get no gradient, kept ones get theirs scaled by 1/(1 −"
            " p), as their values were. In evaluation y = x and ∂L/∂x = g."
        ),
    )
)


def _same_features(a, ins: list[int]) -> int | str:
    if len(set(ins)) != 1:
        return f"add needs inputs of one shape, got features {ins}"
    return ins[0]


ADD_CLASS = '''class {cls}(nn.Module):
    """x₁ + x₂ + …: a sum of layers (a skip connection) as a module, so that a
    forward hook can record its output like any other layer's."""

    def forward(self, *xs):
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total
'''

register(
    Op(
        name="add",
        Keys=NoKeys,
        forward=lambda c: _sum(c.xs),
        vjp=lambda c: [c.g for _ in c.xs],
        formula="y = x₁ + x₂ + …",
        derivative="∂L/∂xᵢ = g for every input",
        module=lambda a, ins, out: "{cls}()",
        module_class=lambda a, cls: ADD_CLASS.format(cls=cls),
        class_name=lambda layer: "Add",
        out_features=_same_features,
        arity=(2, None),
        elementwise=False,
        derivation=(
            "y = x₁ + x₂ + …: ∂y/∂xᵢ is the identity for every input, so each "
            "input gets g unchanged, shape (N, F) like y.\n"
            "A tensor that feeds this sum and another layer as well (a skip "
            "connection) gets the sum of the gradients of its uses, the "
            "multivariable chain rule, on a line of its own."
        ),
    )
)


def _sum(xs: list[Expr]) -> Expr:
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def _concat_vjp(c: Ctx) -> list[Expr]:
    grads: list[Expr] = []
    start = 0
    for f in c.in_features:
        grads.append(call("cols", c.g, start, start + f))
        start += f
    return grads


CONCAT_CLASS = '''class {cls}(nn.Module):
    """torch.cat(xs, dim=1): layers side by side along the feature axis, as a
    module, so that a forward hook can record its output like any other layer's."""

    def forward(self, *xs):
        return torch.cat(xs, dim=1)
'''

register(
    Op(
        name="concat",
        Keys=NoKeys,
        forward=lambda c: call("cat", *c.xs),
        vjp=_concat_vjp,
        formula="y = [x₁, x₂, …] along the feature axis",
        derivative="∂L/∂xᵢ = g[:, the columns of xᵢ]",
        module=lambda a, ins, out: "{cls}()",
        module_class=lambda a, cls: CONCAT_CLASS.format(cls=cls),
        class_name=lambda layer: "Concat",
        out_features=lambda a, ins: sum(ins),
        arity=(2, None),
        elementwise=False,
        derivation=(
            "y = [x₁, x₂, …] along the features: each column of y is a copy of "
            "one column of one input. So ∂L/∂xᵢ is the slice of g at xᵢ's "
            "columns, shape (N, Fᵢ) like xᵢ, and the slices partition g."
        ),
    )
)


def _in_grammar(text: str) -> str:
    """Parsed and differentiated here, so a bad formula is a spec error."""
    from . import cas  # imports sympy: only specs with an activation pay for it

    return cas.check(text)


class ActivationKeys(Keys):
    expr: Annotated[str, After(_in_grammar)]


def _cas():
    from . import cas

    return cas


def _activation_class(a, cls: str) -> str:
    from .expr import math_text

    cas = _cas()
    formula = math_text(cas.forward_ir(a.expr, Sym("x")))
    return (
        f"class {cls}(nn.Module):\n"
        f'    """f(x) = {formula}, element by element: the spec\'s custom activation,\n'
        "    written with torch operations so that autograd differentiates it (and\n"
        '    so checks the derivative mlpgen derived)."""\n'
        "\n"
        "    def forward(self, x):\n"
        f"        return {cas.torch_forward(a.expr, Sym('x'))}\n"
    )


def camel(name: str) -> str:
    """``act_1`` -> ``Act1``: a layer's name as a class name."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) or "Layer"


register(
    Op(
        name="activation",
        Keys=ActivationKeys,
        forward=lambda c: _cas().forward_ir(c.a.expr, c.x),
        vjp=lambda c: [_cas().vjp(c)],
        formula="y = f(x), the spec's expression in x, element by element",
        derivative="∂L/∂x = g ⊙ f′(x), f′ derived symbolically (sympy) from the expression",
        module=lambda a, ins, out: "{cls}()",
        module_class=_activation_class,
        class_name=camel,
        derivation=(
            "f is the spec's expression in x. Element by element, ∂L/∂x = g ⊙ "
            "f′(x); f′ is derived from the expression by sympy with the sum, "
            "product, quotient and chain rules, and shared pieces are computed "
            "once.\n"
            "torch_module.py does not use f′: autograd differentiates the same "
            "expression there, so the cross-test checks what sympy derived."
        ),
    )
)


# ---- normalisation: batchnorm and layernorm


def _norm_init(which: str) -> Callable[[Init], Init]:
    """``init``/``bias_init`` of a normalisation layer: a draw for a vector of
    one value per feature (fan-based schemes need a weight matrix)."""

    def check(init):
        if init.scheme in ("torch_default", "xavier_uniform", "xavier_normal") or (
            init.scheme.startswith("kaiming")
        ):
            raise ValueError(
                f"{init.scheme} needs a weight matrix; {which} is one value per "
                "feature: use constant, zeros, uniform or normal"
            )
        return init

    return check


ONE = ConstantInit(scheme="constant", value=1.0)
ZEROS = ZerosInit(scheme="zeros")
NormWeightInit = Annotated[Init, After(_norm_init("the scale γ"))]
NormBiasInit = Annotated[Init, After(_norm_init("the shift β"))]


class BatchNormKeys(Keys):
    momentum: Annotated[float, Range(ge=0, le=1)] | None = 0.1
    eps: Annotated[float, Range(gt=0)] = 1e-5
    affine: bool = True
    init: NormWeightInit = ONE
    bias_init: NormBiasInit = ZEROS


class LayerNormKeys(Keys):
    eps: Annotated[float, Range(gt=0)] = 1e-5
    affine: bool = True
    init: NormWeightInit = ONE
    bias_init: NormBiasInit = ZEROS


def _norm_params(a, ins: list[int], out: int) -> list[Param]:
    if not a.affine:
        return []
    f = ins[0]
    return [
        Param("weight", (f,), init_draw(a.init, f, f, True)),
        Param("bias", (f,), init_draw(a.bias_init, f, f, True)),
    ]


def _affine(c: Ctx, xhat: Expr) -> Expr:
    """γ ⊙ x̂ + β, or x̂ alone without ``affine``."""
    if "weight" not in c.p:
        return xhat
    return xhat * c.p["weight"] + c.p["bias"]


def _eps(c: Ctx) -> Const:
    return Const(c.a.eps, "ε")


def _normalise(c: Ctx, mean: Expr, shape: tuple, per: str) -> tuple[Sym, Sym]:
    """σ² and x̂ = (x − μ)/√(σ² + ε), through named pieces: the centred input,
    the (biased) variance, the inverse standard deviation. ``per`` is "batch"
    (statistics of each feature over the rows) or "row" (of each row over its
    features)."""
    f = c.out_features
    xc = c.let("xc", c.x - mean, ("N", f), "the centred input x − μ", f"{c.layer}.x̃")
    total = call("sum0", xc**2) if per == "batch" else call("rowsum", xc**2)
    var = c.let(
        "var",
        total / _count_of(c, per),
        shape,
        f"the variance of each {'feature over the batch' if per == 'batch' else 'row'}, "
        f"biased (÷ {'N' if per == 'batch' else 'F'}), as PyTorch normalises with",
        f"{c.layer}.σ²",
    )
    istd = c.let(
        "istd",
        1 / call("sqrt", var + _eps(c)),
        shape,
        "the inverse standard deviation 1/√(σ² + ε)",
        f"{c.layer}.istd",
    )
    xhat = c.let(
        "xhat",
        xc * istd,
        ("N", f),
        f"normalised over the {per}: mean 0 and variance 1 per "
        + ("feature" if per == "batch" else "row"),
        f"{c.layer}.x̂",
    )
    return var, xhat


def _count_of(c: Ctx, per: str) -> Expr:
    return call("rows", c.x) if per == "batch" else Const(c.out_features)


def _batchnorm_forward(c: Ctx) -> Expr:
    f = c.out_features
    if not c.training:
        # evaluation: the running statistics, not the batch's
        xhat = c.let(
            "xhat",
            (c.x - c.b["running_mean"]) / call("sqrt", c.b["running_var"] + _eps(c)),
            ("N", f),
            "normalised with the running statistics (evaluation: no batch statistics)",
            f"{c.layer}.x̂",
        )
        return _affine(c, xhat)
    n = call("rows", c.x)
    mean = c.let(
        "mean",
        call("sum0", c.x) / n,
        (f,),
        "the batch mean of each feature",
        f"{c.layer}.μ",
    )
    var, xhat = _normalise(c, mean, (f,), "batch")
    nbt = c.b["num_batches_tracked"]
    c.update("num_batches_tracked", nbt + 1, "one more batch seen")
    if c.a.momentum is None:
        m: Expr = Const(1) / call("float", nbt)  # cumulative average
        how = "m = 1/num_batches_tracked: the cumulative average of every batch's"
    else:
        m = Const(c.a.momentum, "m")
        how = f"momentum m = {c.a.momentum}"
    keep = Const(1 - c.a.momentum, "(1 − m)") if c.a.momentum is not None else 1 - m
    c.update(
        "running_mean",
        keep * c.b["running_mean"] + m * mean,
        f"{how}, for evaluation",
    )
    c.update(
        "running_var",
        keep * c.b["running_var"] + m * (var * n / (n - 1)),
        "with the unbiased variance σ²·N/(N − 1), as PyTorch keeps it",
    )
    return _affine(c, xhat)


def _norm_param_grads(c: Ctx, over: str) -> dict:
    """∂L/∂γ = Σₙ g ⊙ x̂ and ∂L/∂β = Σₙ g: batchnorm names the two sums, which
    its ∂L/∂x reuses; layernorm's ∂L/∂x sums along rows instead, so its
    parameter gradients are plain lines."""
    if "weight" not in c.p:
        return {}
    if over == "batch":
        return {"weight": _sum_g_xhat(c, over), "bias": _sum_g(c, over)}
    xhat = c.local("xhat", f"{c.layer}.x̂")
    return {"weight": call("sum0", c.g * xhat), "bias": call("sum0", c.g)}


def _sum_g(c: Ctx, over: str) -> Sym:
    return c.let(
        "sum_g",
        call("sum0", c.g),
        (c.out_features,),
        "∂L/∂β, and the gradient that reaches x through μ",
        f"{c.layer}.Σg",
    )


def _sum_g_xhat(c: Ctx, over: str) -> Sym:
    return c.let(
        "sum_g_xhat",
        call("sum0", c.g * c.local("xhat", f"{c.layer}.x̂")),
        (c.out_features,),
        "∂L/∂γ, and the gradient that reaches x through σ²",
        f"{c.layer}.Σgx̂",
    )


def _batchnorm_vjp(c: Ctx) -> list[Expr]:
    n = call("rows", c.g)
    xhat = c.local("xhat", f"{c.layer}.x̂")
    istd = c.local("istd", f"{c.layer}.istd")
    scale = istd if "weight" not in c.p else c.p["weight"] * istd
    # N·g: x's own path; − Σₙ g: through μ; − x̂ ⊙ Σₙ g ⊙ x̂: through σ²
    return [scale / n * (n * c.g - _sum_g(c, "batch") - xhat * _sum_g_xhat(c, "batch"))]


BATCHNORM_DERIVATION = (
    "Per feature, over the N rows of the batch: μ = (1/N)·Σₙ xₙ, σ² = "
    "(1/N)·Σₙ (xₙ − μ)², x̂ₙ = (xₙ − μ)/√(σ² + ε), yₙ = γ·x̂ₙ + β.\n"
    "γ and β act row by row as a linear layer's weight and bias do: ∂L/∂β = "
    "Σₙ gₙ and ∂L/∂γ = Σₙ gₙ·x̂ₙ.\n"
    "Every xₘ reaches the loss three ways: through its own x̂ₘ, through μ "
    "(which every x̂ₙ reads) and through σ² (likewise). With ĝₙ = γ·gₙ = "
    "∂L/∂x̂ₙ: ∂x̂ₙ/∂xₘ = ([n = m] − 1/N)/√(σ² + ε) − x̂ₙ·x̂ₘ/(N·√(σ² + ε)), "
    "since ∂σ²/∂xₘ = 2(xₘ − μ)/N.\n"
    "Summing ĝₙ·∂x̂ₙ/∂xₘ over n: ∂L/∂x = γ/(N·√(σ² + ε))·(N·g − Σₙ g − x̂ ⊙ "
    "Σₙ (g ⊙ x̂)). The three terms are the three paths, and the two sums are "
    "∂L/∂β and ∂L/∂γ again, so the code computes them once.\n"
    "In evaluation μ and σ² are the running statistics, constants: the layer "
    "is then an affine map of x, and one row's output no longer depends on "
    "the other rows of its batch (the classic 'different results in eval')."
)

register(
    Op(
        name="batchnorm",
        Keys=BatchNormKeys,
        forward=_batchnorm_forward,
        vjp=_batchnorm_vjp,
        param_grads=lambda c: _norm_param_grads(c, "batch"),
        formula=(
            "y = γ ⊙ (x − μ)/√(σ² + ε) + β, μ and σ² the batch's mean and biased "
            "variance per feature in training, the running statistics in evaluation"
        ),
        derivative=(
            "∂L/∂x = γ/(N·√(σ² + ε)) ⊙ (N·g − Σₙ g − x̂ ⊙ Σₙ (g ⊙ x̂));  "
            "∂L/∂γ = Σₙ g ⊙ x̂;  ∂L/∂β = Σₙ g"
        ),
        module=lambda a, ins, out: (
            f"nn.BatchNorm1d({ins[0]}"
            + (f", eps={a.eps!r}" if a.eps != 1e-5 else "")
            + (f", momentum={a.momentum!r}" if a.momentum != 0.1 else "")
            + ("" if a.affine else ", affine=False")
            + ")"
        ),
        params=_norm_params,
        buffers=lambda a, ins, out: [
            Buffer("running_mean", (ins[0],), 0.0),
            Buffer("running_var", (ins[0],), 1.0),
            Buffer("num_batches_tracked", (), 0, "int64"),
        ],
        elementwise=False,
        derivation=BATCHNORM_DERIVATION,
    )
)


def _layernorm_forward(c: Ctx) -> Expr:
    f = c.out_features
    mean = c.let(
        "mean",
        call("rowsum", c.x) / Const(f),
        ("N", 1),
        "the mean of each row, over its features",
        f"{c.layer}.μ",
    )
    _, xhat = _normalise(c, mean, ("N", 1), "row")
    return _affine(c, xhat)


def _layernorm_vjp(c: Ctx) -> list[Expr]:
    f = Const(c.out_features)
    xhat = c.local("xhat", f"{c.layer}.x̂")
    istd = c.local("istd", f"{c.layer}.istd")
    dxhat = c.g
    if "weight" in c.p:
        dxhat = c.let(
            "dxhat",
            c.g * c.p["weight"],
            ("N", c.out_features),
            "∂L/∂x̂, the gradient at the normalised input",
            f"{c.layer}.ĝ",
        )
    sum_d = c.let(
        "sum_dxhat",
        call("rowsum", dxhat),
        ("N", 1),
        "per row, the gradient that reaches x through μ",
        f"{c.layer}.Σĝ",
    )
    sum_dx = c.let(
        "sum_dxhat_xhat",
        call("rowsum", dxhat * xhat),
        ("N", 1),
        "per row, the gradient that reaches x through σ²",
        f"{c.layer}.Σĝx̂",
    )
    # F·∂L/∂x̂: x's own path; − Σⱼ: through μ; − x̂ ⊙ Σⱼ (∂L/∂x̂ ⊙ x̂): through σ²
    return [istd / f * (f * dxhat - sum_d - xhat * sum_dx)]


register(
    Op(
        name="layernorm",
        Keys=LayerNormKeys,
        forward=_layernorm_forward,
        vjp=_layernorm_vjp,
        param_grads=lambda c: _norm_param_grads(c, "row"),
        formula=(
            "y = γ ⊙ (x − μ)/√(σ² + ε) + β, μ and σ² the mean and biased variance "
            "of each row over its F features (the same in training and evaluation)"
        ),
        derivative=(
            "∂L/∂x = 1/(F·√(σ² + ε)) ⊙ (F·ĝ − Σⱼ ĝ − x̂ ⊙ Σⱼ (ĝ ⊙ x̂)), ĝ = g ⊙ γ;  "
            "∂L/∂γ = Σₙ g ⊙ x̂;  ∂L/∂β = Σₙ g"
        ),
        module=lambda a, ins, out: (
            f"nn.LayerNorm({ins[0]}"
            + (f", eps={a.eps!r}" if a.eps != 1e-5 else "")
            + ("" if a.affine else ", elementwise_affine=False")
            + ")"
        ),
        params=_norm_params,
        elementwise=False,
        derivation=(
            "Batchnorm turned sideways: per row, over its F features, μ = "
            "(1/F)·Σⱼ xⱼ, σ² = (1/F)·Σⱼ (xⱼ − μ)², x̂ = (x − μ)/√(σ² + ε), y = "
            "γ ⊙ x̂ + β with γ, β one value per feature.\n"
            "∂L/∂β = Σₙ g and ∂L/∂γ = Σₙ g ⊙ x̂, summed over the rows as for "
            "any per-feature parameter. With ĝ = ∂L/∂x̂ = g ⊙ γ, every xⱼ of a "
            "row reaches the loss through its own x̂ⱼ, through the row's μ and "
            "through its σ²; the same algebra as batchnorm's, along the row: "
            "∂L/∂x = 1/(F·√(σ² + ε))·(F·ĝ − Σⱼ ĝ − x̂ ⊙ Σⱼ (ĝ ⊙ x̂)).\n"
            "No statistic is kept between batches and no row reads another: "
            "training and evaluation compute the same function."
        ),
    )
)


# ---- embedding


class EmbeddingKeys(Keys):
    vocab: PosInt
    dim: PosInt
    init: Init = NormalInit(scheme="normal")


def _embedding_params(a: EmbeddingKeys, ins: list[int], out: int) -> list[Param]:
    # torch.nn.init reads a (vocab, dim) table's fan_in as dim, its fan_out as vocab
    draw = init_draw(a.init, a.dim, a.vocab, False)
    if a.init.scheme == "torch_default":  # nn.Embedding's own init is N(0, 1)
        draw = Draw("normal", 0.0, 1.0)
    return [Param("weight", (a.vocab, a.dim), draw)]


EMBEDDING_CLASS = '''class {cls}(nn.Embedding):
    """nn.Embedding, then each sample's T vectors side by side: C[X].view(N, -1),
    as makemore's MLP writes it, a (N, T·dim) input for the layers after it."""

    def forward(self, x):
        return super().forward(x).view(len(x), -1)
'''

register(
    Op(
        name="embedding",
        Keys=EmbeddingKeys,
        forward=lambda c: call("embed", c.p["weight"], c.x),
        vjp=lambda c: [None],  # token indices have no gradient
        param_grads=lambda c: {
            "weight": call("embedding_grad", c.x, c.g, Const(c.a.vocab), Const(c.a.dim))
        },
        formula=(
            "y[n] = [C[x[n, 1]], C[x[n, 2]], …, C[x[n, T]]]: row x[n, t] of the "
            "table C (vocab, dim) for each token, side by side (N, T·dim)"
        ),
        derivative=(
            "∂L/∂C[v] = Σ over the tokens x[n, t] = v of g[n, t·dim:(t + 1)·dim] "
            "(a scatter-add: a row read twice gets both slices)"
        ),
        module=lambda a, ins, out: f"{{cls}}({a.vocab}, {a.dim})",
        module_class=lambda a, cls: EMBEDDING_CLASS.format(cls=cls),
        class_name=lambda layer: "FlatEmbedding",
        out_features=lambda a, ins: ins[0] * a.dim,
        params=_embedding_params,
        elementwise=False,
        reads_tokens=True,
        derivation=(
            "A lookup: y[n, t·D + k] = C[x[n, t], k] with C (V, D) the table and x "
            "(N, T) integer token indices; the T looked-up rows of a sample are "
            "laid side by side, (N, T·D), C[X].view(N, −1).\n"
            "Each output element is one element of C with factor 1, so ∂L/∂C[v, "
            "k] = Σ over every (n, t) with x[n, t] = v of g[n, t·D + k]: the "
            "gradient slices are added back into the rows they came from. A row "
            "that several tokens read (the same character twice in a context, or "
            "in two samples) gets the sum of all their slices, the multivariable "
            "chain rule once more, and rows no token read get 0.\n"
            "That is a scatter-add (np.add.at, index_add_): C_grad[x] += g would "
            "keep only one slice per repeated index. The indices themselves are "
            "not differentiable: x gets no gradient."
        ),
    )
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
    module: Callable[[Any], str]  # nn loss constructor (class weights as CLASS_WEIGHT)
    targets: Literal["float", "class"] = "float"
    # which predictions are right, in NumPy and torch, for metrics: [accuracy]
    correct: tuple[str, str] | None = None
    # accuracy needs at least this many output columns (mse: argmax of one-hot
    # targets needs two); with fewer, metrics: [accuracy] is a spec error
    accuracy_outputs: int = 1
    # whether the learning page shows the accuracy without metrics: [accuracy]
    # (a classifier's loss); mse shows it only when the spec asks
    accuracy_by_default: bool = True
    # the source of a small nn.Module for torch_module.py when PyTorch has no
    # class for the loss (module() then names it as "{cls}"), and its name
    module_class: Callable[[Any, str], str] | None = None
    class_name: str = ""
    # Two readings where PyTorch's evaluation differs from the textbook's
    # formula: the textbook's value (and gradient) as IR, printed first, then
    # the evaluated line, marked "PyTorch evaluates it as …, because <why>"
    textbook: Callable[[LossCtx], Expr | None] | None = None
    why: str = ""
    textbook_grad: Callable[[LossCtx], Expr] | None = None
    grad_why: str = ""
    # constants the derived gradient reads, defined at the top of the manual
    # files: (the Sym, its value as code valid in NumPy and torch files, why)
    constants: tuple[tuple[Sym, str, str], ...] = ()
    # why the gradient holds, for the learning page (see Op.derivation)
    derivation: str = ""


LOSSES: dict[str, Loss] = {}

Reduction = Literal["mean", "sum"]


class L2Keys(Keys):
    coef: Annotated[float, Range(ge=0)]
    params: Literal["all", "weights"] = "all"


L2_DERIVATION = (
    "The l2 term adds coef·Σ p² over the chosen parameters to the loss; "
    "(p²)′ = 2p, so each of them gets 2·coef·p added to its gradient, on the "
    "line of its rule."
)


class LossKeys(Keys):
    """Keys every loss has: the optional ``l2`` term."""

    l2: L2Keys | None = None

    if TYPE_CHECKING:  # for the type checker only: each loss declares it a Literal
        type: str


class MseKeys(LossKeys):
    type: Literal["mse"]
    reduction: Reduction = "mean"
    scale: float = 1.0


def _count(c: LossCtx) -> Expr:
    """Every element of the output (N with one output column): what MSELoss and
    BCELoss divide by with reduction mean, written one way everywhere."""
    return call("numel", c.out)


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
    # one-hot targets (Nielsen's network.py): the largest output is the guess
    correct=(
        "out.argmax(axis=1) == y.argmax(axis=1)",
        "out.argmax(dim=1) == y.argmax(dim=1)",
    ),
    accuracy_outputs=2,
    accuracy_by_default=False,
    derivation=(
        "L = scale·(1/M)·Σ (ŷ − y)² over the M = N·F elements of ŷ (reduction"
        " sum: no 1/M).\n"
        "Each term depends on one element of ŷ, and (u²)′ = 2u: ∂L/∂ŷ = "
        "2·scale/M·(ŷ − y), shape (N, F) like ŷ (with one output column M is "
        "N).\n"
        "The 1/M of the mean makes each element's gradient smaller as the "
        "batch grows, so that the step size does not depend on the batch "
        "size."
    ),
)


class CrossEntropyKeys(LossKeys):
    type: Literal["cross_entropy"]
    weight: list[Annotated[float, Range(ge=0)]] | None = None
    reduction: Reduction = "mean"
    label_smoothing: Annotated[float, Range(ge=0, le=1)] = 0.0


def _smoothing(c: LossCtx) -> tuple[Const, Const]:
    """(1 − ε, ε/C) of label smoothing ε over C classes, as torch computes them."""
    eps = c.a.label_smoothing
    return Const(1 - eps), Const(eps / c.outputs)


def _ce_smoothed_value(c: LossCtx) -> Expr:
    """nn.CrossEntropyLoss(label_smoothing=ε): (1 − ε)·the loss on the class
    plus ε/C·the loss on every class, −Σⱼ w[j]·log pⱼ, each reduced as torch
    reduces it (with weights, both divided by Σₙ w[yₙ])."""
    keep, spread = _smoothing(c)
    nll = call("logsumexp", c.out) - call("pick", c.out, c.y)
    log_p = call("log_softmax", c.out)
    if c.weight is None:
        smooth = -call("sum1", log_p)
        if c.a.reduction == "mean":
            return keep * call("mean", nll) + spread * call("mean", smooth)
        return keep * call("sum", nll) + spread * call("sum", smooth)
    w = call("index", c.weight, c.y)
    smooth = -call("sum1", log_p * c.weight)
    if c.a.reduction == "mean":
        total = call("sum", w)
        return keep * (call("sum", w * nll) / total) + spread * (
            call("sum", smooth) / total
        )
    return keep * call("sum", w * nll) + spread * call("sum", smooth)


def _ce_smoothed_grad(c: LossCtx) -> Expr:
    keep, spread = _smoothing(c)
    p = call("softmax", c.out)
    onehot = call("onehot", c.y, Const(c.outputs))
    if c.weight is None:
        # the smoothed target q = (1 − ε)·onehot(y) + ε/C: ∂L/∂z = p − q per row
        d = p - (keep * onehot + spread)
        return d / call("rows", c.out) if c.a.reduction == "mean" else d
    w = call("index", c.weight, c.y)
    d = keep * ((p - onehot) * call("col", w)) + spread * (
        p * call("sum", c.weight) - c.weight
    )
    return d / call("sum", w) if c.a.reduction == "mean" else d


def _ce_value(c: LossCtx) -> Expr:
    if c.a.label_smoothing:
        return _ce_smoothed_value(c)
    nll = call("logsumexp", c.out) - call("pick", c.out, c.y)
    if c.weight is None:
        return call("mean", nll) if c.a.reduction == "mean" else call("sum", nll)
    w = call("index", c.weight, c.y)
    total = call("sum", w * nll)
    return total / call("sum", w) if c.a.reduction == "mean" else total


def _ce_grad(c: LossCtx) -> Expr:
    if c.a.label_smoothing:
        return _ce_smoothed_grad(c)
    d = call("softmax", c.out) - call("onehot", c.y, Const(c.outputs))
    if c.weight is None:
        return d / call("rows", c.out) if c.a.reduction == "mean" else d
    w = call("index", c.weight, c.y)
    if c.a.reduction == "mean":
        w = w / call("sum", w)
    return d * call("col", w)


def _ce_textbook(c: LossCtx) -> Expr | None:
    """−mean(log softmax(z)[n, yₙ]) (unweighted, unsmoothed: the others have no
    shorter textbook form than their evaluated one)."""
    if c.weight is not None or getattr(c.a, "label_smoothing", 0.0) != 0.0:
        return None
    nll = -call("pick", call("log", call("softmax", c.out)), c.y)
    return call("mean", nll) if c.a.reduction == "mean" else call("sum", nll)


def _ce_module(a) -> str:
    args = ["weight=CLASS_WEIGHT"] if a.weight is not None else []
    if a.reduction != "mean":
        args.append(f'reduction="{a.reduction}"')
    if getattr(a, "label_smoothing", 0.0):
        args.append(f"label_smoothing={a.label_smoothing!r}")
    return f"nn.CrossEntropyLoss({', '.join(args)})"


LOSSES["cross_entropy"] = Loss(
    name="cross_entropy",
    Keys=CrossEntropyKeys,
    value=_ce_value,
    grad=_ce_grad,
    formula=(
        "L = mean(−log(softmax(z))[n, yₙ]), evaluated as mean(logsumexp(z) − "
        "z[n, yₙ]); with class weights Σ (w[y] ⊙ (logsumexp(z) − z[n, yₙ]))/Σ w[y]"
    ),
    derivative=(
        "∂L/∂z = (softmax(z) − onehot(y))/N (softmax and the loss fused); with "
        "class weights (softmax(z) − onehot(y)) ⊙ (w[y]/Σ w[y])[:, None]"
    ),
    module=_ce_module,
    targets="class",
    textbook=lambda c: _ce_textbook(c),
    why=(
        "log softmax(z)[y] = z[y] − logsumexp(z), and logsumexp subtracts the "
        "row maximum before exp: no exp overflows and no probability that "
        "rounded to 0 is put into log"
    ),
    derivation=(
        "Per row n, with logits zₙ over C classes: L = (1/N)·Σₙ "
        "(logsumexp(zₙ) − zₙ[yₙ]), which is −(1/N)·Σₙ log softmax(zₙ)[yₙ].\n"
        "∂logsumexp(zₙ)/∂zₙⱼ = exp(zₙⱼ)/Σₖ exp(zₙₖ) = pₙⱼ with p = "
        "softmax(z), and ∂zₙ[yₙ]/∂zₙⱼ = [j = yₙ]. So ∂L/∂z = (p − "
        "onehot(y))/N, shape (N, C) like z.\n"
        "Why softmax and the loss fuse: through softmax's own rule instead, "
        "∂L/∂p = −onehot(y)/(N·p), and p ⊙ (∂L/∂p − Σⱼ (∂L/∂p)ⱼ·pⱼ) is again "
        "(p − onehot(y))/N: the 1/p of the log cancels the p of softmax's "
        "derivative. The fused form never divides by a probability that may "
        "have rounded to 0, which is why PyTorch's CrossEntropyLoss takes "
        "logits.\n"
        "With class weights row n counts w[yₙ] times and the mean divides by "
        "Σₙ w[yₙ]: ∂L/∂zₙ = (pₙ − onehot(yₙ))·w[yₙ]/Σₘ w[yₘ].\n"
        "Label smoothing ε mixes in the loss on every class: L = (1 − ε)·(the "
        "loss above) + (ε/C)·(1/N)·Σₙ Σⱼ −log pₙⱼ. Each −log pₙⱼ has gradient "
        "pₙ − onehot(j) in zₙ, and Σⱼ of them is C·pₙ − 1, so ∂L/∂zₙ = ((1 − "
        "ε)·(pₙ − onehot(yₙ)) + ε·(pₙ − 1/C))/N = (pₙ − qₙ)/N with the smoothed "
        "target qₙ = (1 − ε)·onehot(yₙ) + ε/C: softmax minus a target that puts "
        "ε/C on every class.\n"
        "With class weights PyTorch weights the smoothing term by class as "
        "well, Σⱼ −w[j]·log pₙⱼ, whose gradient is pₙ·Σⱼ w[j] − w, and with "
        "reduction mean divides both terms by Σₙ w[yₙ]: ∂L/∂zₙ = ((1 − "
        "ε)·(pₙ − onehot(yₙ))·w[yₙ] + (ε/C)·(pₙ·Σⱼ w[j] − w))/Σₘ w[yₘ]."
    ),
    correct=("out.argmax(axis=1) == y", "out.argmax(dim=1) == y"),
)


class NllKeys(LossKeys):
    type: Literal["nll"]
    weight: list[Annotated[float, Range(ge=0)]] | None = None
    reduction: Reduction = "mean"


def _nll_value(c: LossCtx) -> Expr:
    picked = -call("pick", c.out, c.y)
    if c.weight is None:
        return call("mean", picked) if c.a.reduction == "mean" else call("sum", picked)
    w = call("index", c.weight, c.y)
    total = call("sum", w * picked)
    return total / call("sum", w) if c.a.reduction == "mean" else total


def _nll_grad(c: LossCtx) -> Expr:
    d = -call("onehot", c.y, Const(c.outputs))
    if c.weight is None:
        return d / call("rows", c.out) if c.a.reduction == "mean" else d
    w = call("index", c.weight, c.y)
    if c.a.reduction == "mean":
        w = w / call("sum", w)
    return d * call("col", w)


LOSSES["nll"] = Loss(
    name="nll",
    Keys=NllKeys,
    value=_nll_value,
    grad=_nll_grad,
    formula=(
        "L = mean(−z[n, yₙ]) on log-probabilities z; with class weights "
        "Σ (w[y] ⊙ −z[n, yₙ])/Σ w[y]"
    ),
    derivative=(
        "∂L/∂z = −onehot(y)/N; with class weights −onehot(y) ⊙ (w[y]/Σ w[y])[:, None]"
    ),
    module=lambda a: _ce_module(a).replace("CrossEntropyLoss", "NLLLoss"),
    targets="class",
    derivation=(
        "On log-probabilities z (the output of log_softmax), L = −(1/N)·Σₙ "
        "zₙ[yₙ]: only the target entry of each row enters, with slope −1/N. "
        "∂L/∂z = −onehot(y)/N, shape (N, C) like z; with class weights "
        "−onehot(y)·w[y]/Σₙ w[yₙ].\n"
        "Followed back through log_softmax's rule g − exp(y)·Σⱼ gⱼ, it gives "
        "(softmax(x) − onehot(y))/N: cross-entropy in two steps."
    ),
    correct=("out.argmax(axis=1) == y", "out.argmax(dim=1) == y"),
)


# nn.BCELoss's backward divides by max((1 − p)·p, ε) with ε the float32 1e−12
# (9.99999996e−13), whatever the dtype: where a sigmoid has saturated to
# exactly 0 or 1, the gradient is 1/ε, and ε must be torch's to the last bit.
BCE_EPS = Sym("BCE_EPS", "ε")


class BceKeys(LossKeys):
    type: Literal["bce"]
    reduction: Reduction = "mean"


def _reduce(c: LossCtx, e: Expr) -> Expr:
    return call("mean", e) if c.a.reduction == "mean" else call("sum", e)


def _per_element(c: LossCtx, e: Expr) -> Expr:
    """∂(mean)/∂ŷ divides by the number of elements; sum does not."""
    return e / _count(c) if c.a.reduction == "mean" else e


LOSSES["bce"] = Loss(
    name="bce",
    Keys=BceKeys,
    # torch clamps each log at −100 so that p = 0 or 1 gives a finite loss
    value=lambda c: _reduce(
        c,
        (c.y - 1) * call("clamped_log1p", -c.out) - c.y * call("clamped_log", c.out),
    ),
    # torch's backward: (p − y) / max((1 − p)·p, ε), then / numel(p) for mean
    grad=lambda c: _per_element(
        c, (c.out - c.y) / call("clamp_min", (1 - c.out) * c.out, BCE_EPS)
    ),
    formula="L = mean(−y·log p − (1 − y)·log(1 − p)), each log clamped at −100",
    derivative="∂L/∂p = (p − y) / max((1 − p)·p, ε) / numel(p), ε = 1e−12 as a float32",
    module=lambda a: (
        "nn.BCELoss()"
        if a.reduction == "mean"
        else f'nn.BCELoss(reduction="{a.reduction}")'
    ),
    correct=("(out > 0.5) == (y > 0.5)", "(out > 0.5) == (y > 0.5)"),
    textbook=lambda c: _reduce(
        c, -(c.y * call("log", c.out) + (1 - c.y) * call("log", 1 - c.out))
    ),
    why=(
        "log 0 = −∞: each log is clamped at −100, so that a probability that "
        "saturated to exactly 0 or 1 gives a finite loss"
    ),
    textbook_grad=lambda c: _per_element(c, (c.out - c.y) / ((1 - c.out) * c.out)),
    grad_why=(
        "a probability of exactly 0 or 1 would divide by 0: the denominator is "
        "bounded below by ε = BCE_EPS, 1e−12 rounded to float32"
    ),
    derivation=(
        "L = (1/M)·Σ −(y·log p + (1 − y)·log(1 − p)) over the M elements of "
        "p.\n"
        "One term's derivative: −y/p + (1 − y)/(1 − p) = (p − y)/(p·(1 − p))."
        " So ∂L/∂p = (p − y)/(p·(1 − p))/M, shape (N, 1) like p. PyTorch "
        "bounds the denominator below by ε, so that a saturated p of exactly "
        "0 or 1 gives a large finite gradient instead of a division by zero.\n"
        "After a sigmoid, p = σ(z) and σ′(z) = p·(1 − p): the product is (p −"
        " y)/M, the p·(1 − p) cancels. bce_with_logits computes that product "
        "directly."
    ),
    constants=(
        (
            BCE_EPS,
            "float(np.float32(1e-12))",
            "torch's ε in ∂L/∂p: 1e-12 rounded to float32 (in a float64 network too)",
        ),
    ),
)


class BceLogitsKeys(LossKeys):
    type: Literal["bce_with_logits"]
    reduction: Reduction = "mean"
    pos_weight: list[Annotated[float, Range(ge=0)]] | None = None


def _bcel_value(c: LossCtx) -> Expr:
    log_sig = call("logsigmoid", c.out)
    if c.weight is None:
        return _reduce(c, (1 - c.y) * c.out - log_sig)
    log_weight = (c.weight - 1) * c.y + 1
    return _reduce(c, (1 - c.y) * c.out - log_weight * log_sig)


def _bcel_grad(c: LossCtx) -> Expr:
    s = call("sigmoid", c.out)
    if c.weight is None:
        return _per_element(c, s - c.y)
    return _per_element(c, s * ((c.weight - 1) * c.y + 1) - c.weight * c.y)


def _bcel_textbook(c: LossCtx) -> Expr | None:
    """−mean(y·log σ(z) + (1 − y)·log(1 − σ(z))), without pos_weight."""
    if c.weight is not None:
        return None
    s = call("sigmoid", c.out)
    return _reduce(c, -(c.y * call("log", s) + (1 - c.y) * call("log", 1 - s)))


def _bcel_module(a) -> str:
    args = ["pos_weight=POS_WEIGHT"] if a.pos_weight is not None else []
    if a.reduction != "mean":
        args.append(f'reduction="{a.reduction}"')
    return f"nn.BCEWithLogitsLoss({', '.join(args)})"


LOSSES["bce_with_logits"] = Loss(
    name="bce_with_logits",
    Keys=BceLogitsKeys,
    value=_bcel_value,
    grad=_bcel_grad,
    formula="L = mean((1 − y)·z − (1 + (pw − 1)·y)·log σ(z)), log σ computed stably",
    derivative="∂L/∂z = (σ(z)·(1 + (pw − 1)·y) − pw·y) / numel(z)   (σ(z) − y without pos_weight)",
    module=_bcel_module,
    correct=("(out > 0) == (y > 0.5)", "(out > 0) == (y > 0.5)"),
    textbook=lambda c: _bcel_textbook(c),
    why=(
        "log(1 − σ(z)) = log σ(z) − z, and log σ(z) = min(z, 0) − log(1 + "
        "exp(−|z|)) never overflows nor takes the log of a σ that rounded to 0"
    ),
    derivation=(
        "On logits z, with p = σ(z) and log(1 − σ(z)) = log σ(z) − z, one "
        "term −(y·log σ(z) + (1 − y)·log(1 − σ(z))) is (1 − y)·z − log σ(z).\n"
        "(log σ)′(z) = 1 − σ(z), so its derivative is (1 − y) − (1 − σ(z)) = "
        "σ(z) − y, and ∂L/∂z = (σ(z) − y)/M, shape (N, 1) like z.\n"
        "With pos_weight pw the log σ(z) term is weighted by 1 + (pw − 1)·y: "
        "∂L/∂z = (σ(z)·(1 + (pw − 1)·y) − pw·y)/M. Computed from z with a "
        "stable log σ, it never takes the log of a probability that rounded "
        "to 0."
    ),
)


class HingeKeys(LossKeys):
    type: Literal["hinge"]
    reduction: Reduction = "mean"


def _margin(c: LossCtx) -> Expr:
    """1 − y·s: how far each score is from its side's margin (torch's order:
    the product first, then 1 minus it)."""
    return 1 - c.y * c.out


def _hinge_grad(c: LossCtx) -> Expr:
    # F.relu's backward masks where its output is > 0 (the kink gets 0), then
    # the product rule of 1 − y·s gives −y
    return _per_element(c, -c.y * call("gt0", _margin(c)))


HINGE_CLASS = '''class {cls}(nn.Module):
    """The max-margin (hinge) loss of micrograd's demo: max(0, 1 − y·s),
    {how}, on one score s per row and targets y in {{−1, +1}}.

    PyTorch has no nn class for it: nn.HingeEmbeddingLoss is another loss (s
    itself where y = +1, max(0, 1 − s) where y = −1), and nn.MultiMarginLoss
    wants one score per class. So it is written with F.relu, whose gradient is
    0 at the kink, as the derived one is."""

    def forward(self, s, y):
        return F.relu(1 - y * s).{red}()
'''


def _hinge_class(a, cls: str) -> str:
    how = "averaged over the rows" if a.reduction == "mean" else "summed over the rows"
    return HINGE_CLASS.format(cls=cls, how=how, red=a.reduction)


LOSSES["hinge"] = Loss(
    name="hinge",
    Keys=HingeKeys,
    value=lambda c: _reduce(c, call("relu", _margin(c))),
    grad=_hinge_grad,
    formula="L = mean(max(0, 1 − y·s)), y = ±1, one score s per row   (sum with reduction: sum)",
    derivative="∂L/∂s = −y ⊙ [1 − y·s > 0] / N   (no 1/N with sum; 0 at the kink)",
    module=lambda a: "{cls}()",
    module_class=_hinge_class,
    class_name="HingeLoss",
    correct=("np.sign(out) == y", "torch.sign(out) == y"),
    derivation=(
        "L = (1/N)·Σₙ max(0, 1 − yₙ·sₙ), with one score sₙ per row and yₙ = ±1 "
        "(reduction sum: no 1/N). A row whose score is on its side by at least "
        "the margin (yₙ·sₙ ≥ 1) costs nothing and gets no gradient; the others "
        "cost 1 − yₙ·sₙ, whose slope in sₙ is −yₙ.\n"
        "So ∂L/∂s = −y ⊙ [1 − y·s > 0]/N, shape (N, 1) like s: the scores of "
        "rows inside the margin are pushed towards their side. At the kink "
        "1 − y·s = 0 the slope is taken to be 0, as PyTorch's relu takes it.\n"
        "Accuracy: the sign of the score is the guess, sign(s) = y."
    ),
)


def accuracy_rule(loss_type: str, outputs: int) -> tuple[str, str] | None:
    """(NumPy, torch) code of which predictions are right, when the loss defines
    an accuracy for a model with ``outputs`` output columns; None otherwise."""
    loss = LOSSES[loss_type]
    if loss.correct is None or outputs < loss.accuracy_outputs:
        return None
    return loss.correct
