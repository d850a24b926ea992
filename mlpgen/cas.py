"""Custom elementwise activations: a formula in ``x``, differentiated by sympy.

The ``activation`` layer's ``expr`` is user text, so it is never handed to
``eval`` or ``sympify``: Python's own parser reads it (``ast.parse`` in eval
mode) and a walker accepts only this grammar, building the sympy expression
node by node:

    expr := number | x | expr (+ − * / **) expr | −expr | +expr | (expr)
          | f(expr)    f one of exp log sqrt tanh sigmoid softplus erf sin cos abs

Each function is a sympy ``Function`` of our own with its derivative rule and
no automatic rewriting (sympy's ``tanh(log(u))`` would silently become
``(u² − 1)/(u² + 1)``), so the derivative reads like the formula the user
wrote. Parts without ``x`` are folded to a number when parsed, with the same
finiteness checks as any other spec number. sympy differentiates the formula;
wherever the derivative contains the whole formula again (tanh′ = 1 − tanh²),
it reads the saved forward output ``y`` instead, as the built-in layers do.
Both trees are then converted to the expression IR of ``expr.py``, which
prints them as NumPy and torch code and as math for the comments.

Importing this module imports sympy: only specs with an ``activation`` layer
pay for it (``ops.py`` imports it lazily).
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache
from typing import Any

import sympy

from .expr import Const, Expr, Sym, call, math_text, numpy_code, torch_code

X = sympy.Symbol("x", real=True)  # the layer's input, element by element
Y = sympy.Symbol("y", real=True)  # the layer's saved output, f(x)
MAX_LENGTH = 1000  # characters of one expression
MAX_NODES = 200  # syntax-tree nodes of one expression


class ExprError(ValueError):
    """An expression outside the grammar, or one without a finite meaning."""


# ------------------------------------------------------------------ functions


class _Fn(sympy.Function):
    """A one-argument function that sympy differentiates but never rewrites.

    ``ir`` names the expression-IR function it prints as; ``slope(u)`` is its
    derivative at u; ``number(v)`` evaluates it at a float, for folding.
    """

    nargs = 1
    ir = ""

    @staticmethod
    def slope(u):
        raise NotImplementedError("a derivative-only function is never differentiated")

    @staticmethod
    def number(v):
        raise NotImplementedError("a derivative-only function is never folded")

    def fdiff(self, argindex=1):
        return self.slope(self.args[0])


def _sigmoid_number(v: float) -> float:
    if v >= 0:
        return 1 / (1 + math.exp(-v))
    return math.exp(v) / (1 + math.exp(v))


def _softplus_number(v: float) -> float:
    return v if v > 20 else math.log1p(math.exp(v))  # torch's threshold


def _function(name, ir, slope=None, number=None):
    """A ``_Fn`` subclass; derivative-only functions need neither slope nor number."""
    attrs = {"ir": ir}
    if slope is not None:
        attrs["slope"] = staticmethod(slope)
    if number is not None:
        attrs["number"] = staticmethod(number)
    return type(name, (_Fn,), attrs)


# Derivative-only functions: they appear in derivatives, never in what a user writes.
Sign: Any = _function("sign", "sign")
# softplus′: σ(u), and exactly 1 above torch's threshold 20, where softplus(u) = u
# (printed by to_ir as a where, so it has no IR function of its own)
SoftplusSlope: Any = _function("softplus_slope", "")

Exp: Any = _function("exp", "exp", lambda u: Exp(u), math.exp)
Log: Any = _function("log", "log", lambda u: 1 / u, math.log)
Sqrt: Any = _function("sqrt", "sqrt", lambda u: 1 / (2 * Sqrt(u)), math.sqrt)
Tanh: Any = _function("tanh", "tanh", lambda u: 1 - Tanh(u) ** 2, math.tanh)
Sigmoid: Any = _function(
    "sigmoid", "sigmoid", lambda u: Sigmoid(u) * (1 - Sigmoid(u)), _sigmoid_number
)
Softplus: Any = _function("softplus", "softplus", SoftplusSlope, _softplus_number)
# erf′(u) = 2/√π · exp(−u²)
Erf: Any = _function(
    "erf", "erf", lambda u: sympy.Float(2 / math.sqrt(math.pi)) * Exp(-(u**2)), math.erf
)
Sin: Any = _function("sin", "sin", lambda u: Cos(u), math.sin)
Cos: Any = _function("cos", "cos", lambda u: -Sin(u), math.cos)
Abs: Any = _function("abs", "abs", Sign, abs)

FUNCTIONS = {
    f.__name__: f for f in (Exp, Log, Sqrt, Tanh, Sigmoid, Softplus, Erf, Sin, Cos, Abs)
}
GRAMMAR = (
    "numbers, x, + - * / **, unary minus, parentheses and the functions "
    + ", ".join(FUNCTIONS)
    + " of one argument"
)

# ---------------------------------------------------------------------- parsing

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def _finite(value: sympy.Expr, what: str) -> sympy.Expr:
    """``value`` if it is a real number that a float holds, else an ExprError about ``what``."""
    try:
        ok = bool(value.is_Number and value.is_real) and math.isfinite(float(value))
    except (OverflowError, TypeError):
        ok = False
    if not ok:
        raise ExprError(f"{what} is not a finite real number")
    return value


class _Walker:
    """Builds the sympy expression of a syntax tree, refusing anything outside the grammar."""

    def __init__(self, text: str):
        self.text = text

    def where(self, node: ast.AST) -> str:
        snippet = ast.get_source_segment(self.text, node) or ast.unparse(node)
        return f"'{snippet}' (column {getattr(node, 'col_offset', 0) + 1})"

    def __call__(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ExprError(f"{self.where(node)} is not a number")
            if isinstance(v, float) and not math.isfinite(v):
                raise ExprError(f"{self.where(node)} is not a finite number")
            return sympy.Integer(v) if isinstance(v, int) else sympy.Float(v)
        if isinstance(node, ast.Name):
            if node.id != "x":
                raise ExprError(
                    f"unknown name {self.where(node)}: the only variable is x "
                    "(write constants as numbers)"
                )
            return X
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            u = self(node.operand)
            return -u if isinstance(node.op, ast.USub) else u
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self.binary(node)
        if isinstance(node, ast.BinOp):
            raise ExprError(
                f"operator in {self.where(node)} is not allowed: use + - * / **"
            )
        if isinstance(node, ast.Call):
            return self.call(node)
        raise ExprError(f"{self.where(node)} is not allowed: the grammar is {GRAMMAR}")

    def binary(self, node: ast.BinOp) -> sympy.Expr:
        a, b = self(node.left), self(node.right)
        if not (a.is_Number and b.is_Number):
            return _BINARY[type(node.op)](a, b)
        what = self.where(node)
        if isinstance(node.op, ast.Pow):
            # computed as floats, so that 9**9**9 cannot make sympy build a huge integer
            try:
                v = float(a) ** float(b)
            except (OverflowError, ZeroDivisionError):
                raise ExprError(f"{what} is not a finite real number") from None
            if isinstance(v, complex):
                raise ExprError(f"{what} is not a finite real number")
            if a.is_Integer and b.is_Integer and b >= 0:
                return sympy.Integer(int(a) ** int(b))  # exact, and below 2**1024
            return _finite(sympy.Float(v), what)
        return _finite(_BINARY[type(node.op)](a, b), what)

    def call(self, node: ast.Call) -> sympy.Expr:
        fn = node.func
        if not isinstance(fn, ast.Name) or fn.id not in FUNCTIONS:
            name = fn.id if isinstance(fn, ast.Name) else ast.unparse(fn)
            raise ExprError(
                f"'{name}' is not an allowed function (one of: {', '.join(FUNCTIONS)})"
            )
        if (
            node.keywords
            or len(node.args) != 1
            or isinstance(node.args[0], ast.Starred)
        ):
            raise ExprError(f"{self.where(node)}: {fn.id} takes exactly one argument")
        f = FUNCTIONS[fn.id]
        u = self(node.args[0])
        if not u.is_Number:
            return f(u)
        try:
            v = f.number(float(u))
        except (ValueError, OverflowError):
            raise ExprError(f"{self.where(node)} is not a finite real number") from None
        return _finite(sympy.Float(v), self.where(node))


def parse(text: str) -> sympy.Expr:
    """The sympy expression of ``text``; ExprError for anything outside the grammar."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        at = f" (column {e.offset})" if e.offset else ""
        raise ExprError(f"not a valid expression: {e.msg}{at}") from None
    except (RecursionError, MemoryError):
        raise ExprError("nested too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExprError(f"more than {MAX_NODES} terms: split it into several layers")
    try:
        f = _Walker(text.strip())(tree.body)
    except RecursionError:
        raise ExprError("nested too deeply") from None
    if X not in f.free_symbols:
        raise ExprError(f"does not depend on x (it is the constant {f})")
    if f.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ExprError("divides by zero")
    return f


@lru_cache(maxsize=256)
def derive(text: str) -> tuple[sympy.Expr, sympy.Expr]:
    """(f, f′) for the formula ``text``; f′ reads ``Y`` where it contains f itself,
    and is the shortest of sympy's derivative as the rules give it, factored,
    and over one denominator (``abs(x)/(1 + abs(x))``: sign(x)/(1 + |x|)², not
    sign(x)/(1 + |x|) − |x|·sign(x)/(1 + |x|)²). Ties keep the rules' form, and
    a form with a leading minus loses to one without."""
    f = parse(text)
    df = sympy.diff(f, X)
    if df.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ExprError("its derivative divides by zero")
    candidates = [df]
    for rewrite in (sympy.factor, sympy.together):
        try:
            candidates.append(rewrite(df))
        except (sympy.PolynomialError, TypeError, ValueError, RecursionError):
            pass
    if not f.is_Symbol:
        candidates = [c.xreplace({f: Y}) for c in candidates]
    candidates = [
        _tidy(c)
        for c in candidates
        if not c.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan)
    ]

    def cost(item):
        i, c = item
        return (sympy.count_ops(c), bool(c.could_extract_minus_sign()), i)

    return f, min(enumerate(candidates), key=cost)[1]


def _tidy(e: sympy.Expr) -> sympy.Expr:
    """−(a − b)·c as (b − a)·c: a product's minus sign taken into a sum it has."""
    if not e.is_Mul:
        return e
    coeff, rest = e.as_coeff_Mul()
    factors = list(sympy.Mul.make_args(rest))
    i = next((i for i, f in enumerate(factors) if f.is_Add), None)
    if coeff >= 0 or i is None:
        return e
    factors[i] = sympy.expand(-factors[i], deep=False)
    return sympy.Mul(-coeff, *factors)


# the name of a shared piece of f′ in the generated code, by its function
SHORT = {"exp": "e", "tanh": "t", "sigmoid": "s", "log": "l", "sqrt": "r", "abs": "a"}


@lru_cache(maxsize=256)
def shared(text: str) -> tuple[tuple[tuple[sympy.Symbol, sympy.Expr], ...], sympy.Expr]:
    """f′ with each function application it uses more than once computed once:
    (the pieces in order, each a (symbol, expression) over x, y and the pieces
    before it; f′ over them). sympy's ``cse`` finds the repeated subexpressions;
    sums and products among them are written out again (cheap, and the line
    reads as the formula), function applications stay shared."""
    _, df = derive(text)
    pieces, (reduced,) = sympy.cse(
        df, symbols=sympy.numbered_symbols("_u"), order="none"
    )
    kept: list[tuple[sympy.Symbol, sympy.Expr]] = []
    back: dict[sympy.Symbol, sympy.Expr] = {}
    for s, e in pieces:
        e = e.xreplace(back)
        if isinstance(e, (_Fn, sympy.log)):
            kept.append((s, e))
        else:
            back[s] = e
    reduced = reduced.xreplace(back)
    while True:  # a piece used once, now that sums are written out, goes back in
        exprs = [e for _, e in kept] + [reduced]
        once = next(
            ((s, e) for s, e in kept if sum(_uses(x, s) for x in exprs) < 2),
            None,
        )
        if once is None:
            return tuple(kept), reduced
        kept.remove(once)
        kept = [(s, e.xreplace({once[0]: once[1]})) for s, e in kept]
        reduced = reduced.xreplace({once[0]: once[1]})


def _uses(e: sympy.Expr, s: sympy.Symbol) -> int:
    """How many times the symbol ``s`` appears in ``e`` (x² counts once)."""
    if e == s:
        return 1
    return sum(_uses(a, s) for a in e.args)


def check(text: str) -> str:
    """The spec key's validator: ``text`` when it parses, differentiates and prints."""
    x, y = Sym("x"), Sym("y")
    forward_ir(text, x)
    derivative_ir(text, x, y)
    return text


# ------------------------------------------------------------- to expression IR


def to_ir(e: sympy.Expr, symbols: dict[sympy.Symbol, Expr]) -> Expr:
    """The expression-IR tree of ``e``, with ``symbols`` giving x (and y)."""
    if e.is_Symbol:
        return symbols[e]
    if not e.free_symbols:  # a number, or a function of numbers such as log(2)
        v = _finite(e if e.is_Number else e.evalf(), f"the constant {e}")
        return Const(int(v)) if v.is_Integer and abs(v) <= 2**53 else Const(float(v))
    if e.is_Add:
        return _sum(e, symbols)
    if e.is_Mul:
        return _product(e, symbols)
    if e.is_Pow:
        base, exponent = e.args
        if exponent.is_Number and exponent < 0:
            return 1 / to_ir(base ** (-exponent), symbols)
        return to_ir(base, symbols) ** to_ir(exponent, symbols)
    if isinstance(e, SoftplusSlope):
        u = to_ir(e.args[0], symbols)
        return call("where_gt", u, 1, call("sigmoid", u), 20)
    if isinstance(e, _Fn):
        return call(e.ir, to_ir(e.args[0], symbols))
    if isinstance(e, sympy.log):  # from differentiating u**v: (u**v)′ has log(u)
        return call("log", to_ir(e.args[0], symbols))
    raise TypeError(f"no expression-IR form for {e!r}")


def _sum(e: sympy.Add, symbols) -> Expr:
    """Terms in sympy's order, but a negative constant last (x − 3, not −3 + x);
    a term with a negative coefficient is subtracted."""
    terms = list(e.args)
    if terms[0].is_Number and terms[0] < 0:
        terms.append(terms.pop(0))
    total: Expr | None = None
    for term in terms:
        negative = term.as_coeff_Mul()[0] < 0
        t = to_ir(-term if negative else term, symbols)
        if total is None:
            total = -t if negative else t
        else:
            total = total - t if negative else total + t
    assert total is not None
    return total


def _product(e: sympy.Mul, symbols) -> Expr:
    """Numerator factors, then ``/`` the denominator (factors with negative powers)."""
    coeff, rest = e.as_coeff_Mul()
    num: list[Expr] = []
    den: list[Expr] = []
    if coeff.is_Rational and not coeff.is_Integer:
        if abs(coeff.p) != 1:
            num.append(Const(abs(int(coeff.p))))
        den.append(Const(int(coeff.q)))
    elif abs(coeff) != 1:
        num.append(to_ir(abs(coeff), symbols))
    for factor in sympy.Mul.make_args(rest):
        base, exponent = factor.as_base_exp()
        if exponent.is_Number and exponent < 0:
            den.append(to_ir(base ** (-exponent), symbols))
        else:
            num.append(to_ir(factor, symbols))
    top = num[0] if num else Const(1)
    for f in num[1:]:
        top = top * f
    if den:
        bottom = den[0]
        for f in den[1:]:
            bottom = bottom * f
        top = top / bottom
    return -top if coeff < 0 else top


def forward_ir(text: str, x: Expr) -> Expr:
    """f(x) as an IR tree, for the input ``x``."""
    f, _ = derive(text)
    return to_ir(f, {X: x})


def derivative_ir(text: str, x: Expr, y: Expr) -> Expr:
    """f′(x) as an IR tree, reading the saved output ``y`` where it can."""
    _, df = derive(text)
    return to_ir(df, {X: x, Y: y})


def vjp_ir(text: str, x: Expr, y: Expr, g: Expr) -> Expr:
    """∂L/∂x = g · f′(x), the constant first when f′ is one."""
    d = derivative_ir(text, x, y)
    return d * g if isinstance(d, Const) else g * d


def vjp(c) -> Expr:
    """∂L/∂x = g · f′(x) for the layer of the rule context ``c`` (``ops.Ctx``),
    each shared piece of f′ on a line of its own before it (``c.let``): the
    Mish derivative computes tanh(log(1 + exp(x))) and exp(x) once each."""
    pieces, reduced = shared(c.a.expr)
    symbols: dict[sympy.Symbol, Expr] = {X: c.x, Y: c.y}
    taken: dict[str, int] = {}
    for s, e in pieces:
        short = SHORT.get(getattr(e, "ir", "") or "log", "u")
        taken[short] = taken.get(short, 0) + 1
        name = short if taken[short] == 1 else f"{short}{taken[short]}"
        symbols[s] = c.let(name, to_ir(e, symbols), ("N", c.out_features))
    d = to_ir(reduced, symbols)
    return d * c.g if isinstance(d, Const) else c.g * d


def torch_forward(text: str, x: Expr) -> str:
    """f(x) in torch operations for the nn.Module, whose autograd then checks f′."""
    # the module file imports ``nn`` but not ``F``
    return torch_code(forward_ir(text, x)).replace(
        "F.softplus(", "nn.functional.softplus("
    )


# ------------------------------------------------------------- for the page


def shared_math(text: str) -> str:
    """f′(x) as the generated code computes it, in math: "f′(x) = … with e =
    exp(x), t = … computed once each" (or just f′ when nothing is shared)."""
    pieces, reduced = shared(text)
    symbols: dict[sympy.Symbol, Expr] = {X: Sym("x"), Y: Sym("y")}
    names = []
    taken: dict[str, int] = {}
    for s, e in pieces:
        short = SHORT.get(getattr(e, "ir", "") or "log", "u")
        taken[short] = taken.get(short, 0) + 1
        name = short if taken[short] == 1 else f"{short}{taken[short]}"
        names.append(f"{name} = {math_text(to_ir(e, symbols))}")
        symbols[s] = Sym(name)
    d = math_text(to_ir(reduced, symbols))
    if not names:
        return f"f′(x) = {d}"
    return f"f′(x) = {d}, with {' and '.join(names)}, each computed once"


def overflow(text: str, dtype: str) -> dict[str, float]:
    """Where the formula as written stops giving finite numbers in ``dtype``
    (``float64``/``float32``), found by evaluating the generated NumPy code: for
    "f" and "f′", the input nearest 0 from which on it is ∞ or nan, on the side
    where that happens first ({} when it stays finite for |x| ≤ 1e6). A side
    where f or f′ is not finite already at |x| = 1 (log(x) below 0), or becomes
    nan without an overflow (x**x below −1), is outside a domain, not an
    overflow: left to ``mlpgen check``'s warnings."""
    import numpy as np  # only for specs with an activation layer

    from .expr import numpy_helpers

    env: dict = {"np": np, "math": math}
    for source in numpy_helpers(set(FUNCTIONS) & set(_IR_FUNCTIONS)):
        exec(source, env)  # noqa: S102 (the generated files' own helper definitions)
    x_, y_ = Sym("x"), Sym("y")
    f_code = numpy_code(forward_ir(text, x_))
    df_code = numpy_code(derivative_ir(text, x_, y_))
    kind = np.dtype(dtype).type

    def bad(xs) -> tuple:
        x = np.asarray(xs, dtype=kind)
        with np.errstate(all="ignore"):
            y = np.broadcast_to(eval(f_code, env, {"x": x}), x.shape)
            d = np.broadcast_to(eval(df_code, env, {"x": x, "y": y}), x.shape)
        return ~np.isfinite(y), ~np.isfinite(d)

    found: dict[str, float] = {}
    grid = np.geomspace(1.0, 1e6, 4001)
    for sign in (1.0, -1.0):
        fy, fd = bad(sign * grid)
        for key, mask in (("f", fy), ("f′", fd)):
            if mask[0] or not mask.any():
                continue
            i = int(np.argmax(mask))
            lo, hi = grid[i - 1], grid[i]
            for _ in range(80):  # bisection: lo finite, hi not
                mid = (lo + hi) / 2
                if bad([sign * mid])[0 if key == "f" else 1][0]:
                    hi = mid
                else:
                    lo = mid
            at = sign * hi
            try:  # ∞ or nan there because a step overflowed, not outside a domain
                with np.errstate(over="raise", invalid="ignore", divide="ignore"):
                    y = eval(f_code, env, {"x": np.asarray([at], dtype=kind)})
                    if key == "f′":
                        eval(df_code, env, {"x": np.asarray([at], dtype=kind), "y": y})
                continue
            except FloatingPointError:
                pass
            if key not in found or abs(at) < abs(found[key]):
                found[key] = at
    return {k: float(v) for k, v in found.items()}


def writes_softplus_out(text: str) -> bool:
    """Whether the formula has log(1 + exp(u)), which softplus(u) computes
    without overflowing."""
    return any(
        isinstance(a, Log) and isinstance(a.args[0] - 1, Exp)
        for a in sympy.preorder_traversal(parse(text))
    )


_IR_FUNCTIONS = (
    "exp",
    "log",
    "sqrt",
    "tanh",
    "sigmoid",
    "softplus",
    "erf",
    "sin",
    "cos",
    "abs",
)
