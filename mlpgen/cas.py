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

import sympy

from .expr import Const, Expr, Sym, call, torch_code

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
Sign = _function("sign", "sign")
# softplus′: σ(u), and exactly 1 above torch's threshold 20, where softplus(u) = u
# (printed by to_ir as a where, so it has no IR function of its own)
SoftplusSlope = _function("softplus_slope", "")

Exp = _function("exp", "exp", lambda u: Exp(u), math.exp)
Log = _function("log", "log", lambda u: 1 / u, math.log)
Sqrt = _function("sqrt", "sqrt", lambda u: 1 / (2 * Sqrt(u)), math.sqrt)
Tanh = _function("tanh", "tanh", lambda u: 1 - Tanh(u) ** 2, math.tanh)
Sigmoid = _function(
    "sigmoid", "sigmoid", lambda u: Sigmoid(u) * (1 - Sigmoid(u)), _sigmoid_number
)
Softplus = _function("softplus", "softplus", SoftplusSlope, _softplus_number)
# erf′(u) = 2/√π · exp(−u²)
Erf = _function(
    "erf", "erf", lambda u: sympy.Float(2 / math.sqrt(math.pi)) * Exp(-(u**2)), math.erf
)
Sin = _function("sin", "sin", lambda u: Cos(u), math.sin)
Cos = _function("cos", "cos", lambda u: -Sin(u), math.cos)
Abs = _function("abs", "abs", Sign, abs)

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
        return f"'{snippet}' (column {node.col_offset + 1})"

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
    """(f, f′) for the formula ``text``; f′ reads ``Y`` where it contains f itself."""
    f = parse(text)
    df = sympy.diff(f, X)
    if df.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ExprError("its derivative divides by zero")
    if not f.is_Symbol:
        df = df.xreplace({f: Y})
    return f, df


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
    total = None
    for term in terms:
        negative = term.as_coeff_Mul()[0] < 0
        t = to_ir(-term if negative else term, symbols)
        if total is None:
            total = -t if negative else t
        else:
            total = total - t if negative else total + t
    return total


def _product(e: sympy.Mul, symbols) -> Expr:
    """Numerator factors, then ``/`` the denominator (factors with negative powers)."""
    coeff, rest = e.as_coeff_Mul()
    num, den = [], []
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


def torch_forward(text: str, x: Expr) -> str:
    """f(x) in torch operations for the nn.Module, whose autograd then checks f′."""
    # the module file imports ``nn`` but not ``F``
    return torch_code(forward_ir(text, x)).replace(
        "F.softplus(", "nn.functional.softplus("
    )
