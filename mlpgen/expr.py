"""A tiny expression language for forward formulas and derivative rules.

Op rules (see ``ops.py``) are written with Python operators on ``Expr`` objects,
``g * y * (1 - y)``, the way PyTorch's derivatives.yaml writes
``grad * result * (1 - result)``. The same tree is then printed three ways:
NumPy code, torch code, and readable math for comments, READMEs and diagrams.
That is what keeps the formula above a gradient line and the line itself from
ever drifting apart.

Constructors fold constants and drop neutral elements (``1 * e`` is ``e``), so
a rule such as ``2 * scale / N * (yhat - y)`` with ``scale = 0.5`` prints as the
hand-rolled ``(yhat - y)``. Nothing else is rearranged: the printed code keeps
the tree's evaluation order, which matters for floating-point parity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

# Precedence levels (Python's): higher binds tighter.
ADD, MUL, NEG, POW, ATOM = 1, 2, 3, 4, 5
_BIN_PREC = {"+": ADD, "-": ADD, "*": MUL, "/": MUL, "@": MUL, "**": POW}


class Expr:
    """Base class: arithmetic operators build new expressions."""

    @property
    def is_scalar(self) -> bool:
        return False

    def __add__(self, other):
        return add(self, lift(other))

    def __radd__(self, other):
        return add(lift(other), self)

    def __sub__(self, other):
        return sub(self, lift(other))

    def __rsub__(self, other):
        return sub(lift(other), self)

    def __mul__(self, other):
        return mul(self, lift(other))

    def __rmul__(self, other):
        return mul(lift(other), self)

    def __truediv__(self, other):
        return div(self, lift(other))

    def __rtruediv__(self, other):
        return div(lift(other), self)

    def __matmul__(self, other):
        return Bin("@", self, lift(other))

    def __pow__(self, other):
        return Bin("**", self, lift(other))

    def __neg__(self):
        if isinstance(self, Const):
            return Const(-self.value)
        return Neg(self)

    @property
    def T(self):
        return call("T", self)

    def symbols(self) -> set[str]:
        """Names of the variables this expression reads."""
        out: set[str] = set()
        for child in self.children():
            out |= child.symbols()
        return out

    def children(self) -> tuple[Expr, ...]:
        return ()

    def calls(self) -> set[str]:
        """Names of the functions this expression calls (for helper definitions)."""
        out: set[str] = set()
        for child in self.children():
            out |= child.calls()
        return out


@dataclass(frozen=True, eq=True)
class Sym(Expr):
    """A variable. ``code`` is how it is spelled in code, ``math`` in formulas."""

    code: str
    math: str = ""
    scalar: bool = False
    math_atom: bool = True  # False for names like ∂L/∂h that need parentheses

    @property
    def is_scalar(self):
        return self.scalar

    def symbols(self):
        return {self.code}


@dataclass(frozen=True, eq=True)
class Const(Expr):
    value: float | int
    # how the math printer writes a well-known constant, e.g. "√(2/π)"; code
    # always writes the value
    name: str | None = field(default=None, compare=False)

    @property
    def is_scalar(self) -> bool:
        return True


@dataclass(frozen=True, eq=True)
class Neg(Expr):
    a: Expr

    @property
    def is_scalar(self):
        return self.a.is_scalar

    def children(self):
        return (self.a,)


@dataclass(frozen=True, eq=True)
class Bin(Expr):
    op: str
    a: Expr
    b: Expr

    @property
    def is_scalar(self):
        return self.a.is_scalar and self.b.is_scalar

    def children(self):
        return (self.a, self.b)


@dataclass(frozen=True, eq=True)
class Call(Expr):
    fn: str
    args: tuple[Expr, ...]

    @property
    def is_scalar(self):
        return FUNCS[self.fn].scalar

    def children(self):
        return self.args

    def calls(self):
        return super().calls() | {self.fn}


def lift(v) -> Expr:
    if isinstance(v, Expr):
        return v
    if isinstance(v, bool):
        raise TypeError("booleans are not expressions")
    if isinstance(v, (int, float)):
        return Const(v)
    raise TypeError(f"cannot make an expression of {v!r}")


def _num(e: Expr, value) -> bool:
    return isinstance(e, Const) and e.value == value


def add(a: Expr, b: Expr) -> Expr:
    if _num(b, 0):
        return a
    if _num(a, 0):
        return b
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value + b.value)
    if isinstance(b, Neg):
        return Bin("-", a, b.a)
    return Bin("+", a, b)


def sub(a: Expr, b: Expr) -> Expr:
    if _num(b, 0):
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value - b.value)
    return Bin("-", a, b)


def mul(a: Expr, b: Expr) -> Expr:
    if _num(a, 1):
        return b
    if _num(b, 1):
        return a
    if _num(a, -1):
        return -b
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(a.value * b.value)
    # scalar * (scalar * e) -> (scalar * scalar) * e, so constants meet and fold
    if (
        isinstance(a, Const)
        and isinstance(b, Bin)
        and b.op == "*"
        and isinstance(b.a, Const)
    ):
        return mul(Const(a.value * b.a.value), b.b)
    return Bin("*", a, b)


def div(a: Expr, b: Expr) -> Expr:
    if _num(b, 1):
        return a
    if isinstance(a, Const) and isinstance(b, Const) and b.value != 0:
        q = a.value / b.value
        if q == int(q) and isinstance(a.value, int) and isinstance(b.value, int):
            q = int(q)
        return Const(q)
    return Bin("/", a, b)


# --------------------------------------------------------------------- functions


@dataclass(frozen=True)
class Func:
    """How one function prints in each language.

    Format strings take the printed arguments as {0}, {1}, ...; ``postfix``
    means the arguments appear before a ``.method`` or ``[...]`` and must be
    printed as atoms. ``helper`` names a NumPy helper the file must define.
    """

    numpy: str
    torch: str
    math: str
    postfix: bool = False
    scalar: bool = False
    helper: str | None = None


FUNCS: dict[str, Func] = {
    "exp": Func("np.exp({0})", "torch.exp({0})", "exp({0})"),
    "log": Func("np.log({0})", "torch.log({0})", "log({0})"),
    "log1p": Func("np.log1p({0})", "torch.log1p({0})", "log(1 + {0})"),
    "tanh": Func("np.tanh({0})", "torch.tanh({0})", "tanh({0})"),
    "sqrt": Func("np.sqrt({0})", "torch.sqrt({0})", "√({0})"),
    "abs": Func("np.abs({0})", "torch.abs({0})", "|{0}|"),
    "sign": Func("np.sign({0})", "torch.sign({0})", "sign({0})"),
    "sin": Func("np.sin({0})", "torch.sin({0})", "sin({0})"),
    "cos": Func("np.cos({0})", "torch.cos({0})", "cos({0})"),
    "erf": Func("erf({0})", "torch.erf({0})", "erf({0})", helper="erf"),
    "sigmoid": Func("sigmoid({0})", "torch.sigmoid({0})", "σ({0})", helper="sigmoid"),
    "softplus": Func(
        "softplus({0})", "F.softplus({0})", "softplus({0})", helper="softplus"
    ),
    "relu": Func("np.maximum({0}, 0)", "torch.relu({0})", "max({0}, 0)"),
    "softmax": Func(
        "softmax({0})", "torch.softmax({0}, dim=1)", "softmax({0})", helper="softmax"
    ),
    "log_softmax": Func(
        "log_softmax({0})",
        "torch.log_softmax({0}, dim=1)",
        "log_softmax({0})",
        helper="log_softmax",
    ),
    "logsumexp": Func(
        "logsumexp({0})",
        "torch.logsumexp({0}, dim=1)",
        "logsumexp({0})",
        helper="logsumexp",
    ),
    "T": Func("{0}.T", "{0}.T", "{0}ᵀ", postfix=True),
    "sum0": Func("{0}.sum(axis=0)", "{0}.sum(dim=0)", "Σₙ {0}", postfix=True),
    "rowsum": Func(
        "{0}.sum(axis=1, keepdims=True)",
        "{0}.sum(dim=1, keepdim=True)",
        "Σⱼ {0}",
        postfix=True,
    ),
    "sum": Func("{0}.sum()", "{0}.sum()", "Σ {0}", postfix=True, scalar=True),
    # the sum of each row, one number per row (N,)
    "sum1": Func("{0}.sum(axis=1)", "{0}.sum(dim=1)", "Σⱼ {0}", postfix=True),
    "mean": Func(
        "mean({0})", "torch.mean({0})", "mean({0})", scalar=True, helper="mean"
    ),
    "gt0": Func("({0} > 0)", "({0} > 0)", "[{0} > 0]", postfix=True),
    "where_gt0": Func(
        "np.where({0} > 0, {1}, {2})",
        "torch.where({0} > 0, {1}, {2})",
        "({1} if {0} > 0 else {2})",
        postfix=True,
    ),
    "where_gt": Func(
        "np.where({0} > {3}, {1}, {2})",
        "torch.where({0} > {3}, {1}, {2})",
        "({1} if {0} > {3} else {2})",
        postfix=True,
    ),
    "min0": Func("np.minimum({0}, 0)", "torch.clamp({0}, max=0)", "min({0}, 0)"),
    "expm1": Func("np.expm1({0})", "torch.expm1({0})", "(exp({0}) − 1)"),
    "logsigmoid": Func(
        "logsigmoid({0})", "F.logsigmoid({0})", "log σ({0})", helper="logsigmoid"
    ),
    "clamp_min": Func(
        "np.maximum({0}, {1})", "torch.clamp({0}, min={1})", "max({0}, {1})"
    ),
    # nn.BCELoss's logs: clamped at −100, so that log 0 is −100 and not −inf
    "clamped_log": Func(
        "clamped_log({0})",
        "torch.clamp(torch.log({0}), min=-100)",
        "max(log({0}), −100)",
        helper="clamped_log",
    ),
    "clamped_log1p": Func(
        "clamped_log1p({0})",
        "torch.clamp(torch.log1p({0}), min=-100)",
        "max(log(1 + {0}), −100)",
        helper="clamped_log1p",
    ),
    "cat": Func("np.concatenate([{*}], axis=1)", "torch.cat([{*}], dim=1)", "[{*}]"),
    "cols": Func("{0}[:, {1}:{2}]", "{0}[:, {1}:{2}]", "{0}[:, {1}:{2}]", postfix=True),
    # inverted dropout's mask, drawn from the dropout stream: keep where u >= p,
    # scale what is kept by 1/(1 − p); one rng.random(shape) per layer and step
    "dropout_mask": Func(
        "((dropout_rng.random({0}.shape) >= {1}) / (1 - {1})).astype(DTYPE)",
        "torch.from_numpy((dropout_rng.random(tuple({0}.shape)) >= {1}) / (1 - {1})).to(DTYPE)",
        "[u ≥ {1}]/(1 − {1}), u ~ U(0, 1)",
        postfix=True,
    ),
    "maximum": Func("np.maximum({0}, {1})", "torch.maximum({0}, {1})", "max({0}, {1})"),
    "numel": Func("{0}.size", "{0}.numel()", "numel({0})", postfix=True, scalar=True),
    "rows": Func("len({0})", "len({0})", "N", scalar=True),
    # a 0-d counter as a Python float (a NumPy or torch scalar of float64 would
    # promote a float32 array it multiplies)
    "float": Func("float({0})", "float({0})", "{0}", scalar=True),
    "onehot": Func(
        "np.eye({1}, dtype=DTYPE)[{0}]",
        "F.one_hot({0}, {1}).to(DTYPE)",
        "onehot({0})",
        postfix=True,
    ),
    "pick": Func(
        "{0}[np.arange(len({1})), {1}]",
        "{0}[torch.arange(len({1})), {1}]",
        "{0}[n, {1}ₙ]",
        postfix=True,
    ),
    "index": Func("{0}[{1}]", "{0}[{1}]", "{0}[{1}]", postfix=True),
    # an embedding: row x[n, t] of the table C for every token, the T rows of
    # a sample side by side, C[X].view(N, -1) (makemore)
    "embed": Func(
        "{0}[{1}].reshape(len({1}), -1)",
        "{0}[{1}].view(len({1}), -1)",
        "{0}[{1}].view(N, −1)",
        postfix=True,
    ),
    # its gradient: each token's slice of g added into the row of C it read; a
    # row read several times gets the sum (a scatter-add: np.add.at, index_add_)
    "embedding_grad": Func(
        "embedding_grad({0}, {1}, {2})",
        "torch.zeros({2}, {3}, dtype=DTYPE).index_add_(0, {0}.reshape(-1), {1}.reshape({0}.numel(), {3}))",
        "Σₙₜ [{0}ₙₜ = v]·{1}ₙₜ",
        postfix=True,
        helper="embedding_grad",
    ),
    # an (N,) vector as an (N, 1) column, which broadcasts over the columns of
    # an (N, k) tensor: the math shows it as the code does
    "col": Func("{0}[:, None]", "{0}[:, None]", "{0}[:, None]", postfix=True),
}


def call(fn: str, *args) -> Call:
    if fn not in FUNCS:
        raise KeyError(f"unknown function {fn!r}")
    return Call(fn, tuple(lift(a) for a in args))


# ---------------------------------------------------------------------- printing


def _fmt_const(v, math: bool) -> str:
    if isinstance(v, int):
        text = str(v)
    elif math and float(v).is_integer() and abs(v) < 1e15:
        text = str(int(v))
    else:
        text = repr(float(v))
    return text.replace("-", "−") if math else text


_MATH_OPS = {"+": " + ", "-": " − ", "/": "/", "@": " @ ", "**": "^"}
SUPERSCRIPTS = dict(zip(range(10), "⁰¹²³⁴⁵⁶⁷⁸⁹"))


class Printer:
    """Prints an expression in one language: ``numpy``, ``torch``, ``math``
    (unicode text) or ``latex`` (the math, typeset: notebooks)."""

    def __init__(self, lang: str):
        if lang not in ("numpy", "torch", "math", "latex"):
            raise ValueError(lang)
        self.lang = lang

    def __call__(self, e: Expr) -> str:
        return self.p(e)[0]

    def p(self, e: Expr) -> tuple[str, int]:
        if self.lang == "latex":
            return self.latex(e)
        math = self.lang == "math"
        if isinstance(e, Sym):
            if not math:
                return e.code, ATOM
            return e.math or e.code, ATOM if e.math_atom else MUL
        if isinstance(e, Const):
            if math and e.name:
                return e.name, ATOM
            s = _fmt_const(e.value, math)
            return s, (ATOM if e.value >= 0 else NEG)
        if isinstance(e, Neg):
            s, pr = self.p(e.a)
            if pr < POW:
                s = f"({s})"
            return ("−" if math else "-") + s, NEG
        if isinstance(e, Call):
            f = FUNCS[e.fn]
            fmt = getattr(f, self.lang)
            if math and "1 + {0}" in fmt and isinstance(e.args[0], Neg):
                # log(1 − p), not log(1 + −p); log(1 − (a + b)) keeps its brackets
                s, pr = self.p(e.args[0].a)
                if pr <= _BIN_PREC["-"]:
                    s = f"({s})"
                return fmt.replace("1 + {0}", "1 − {0}").format(s), ATOM
            args = []
            # in math, only formats that put an argument first need it atomic
            atomic = f.postfix and (not math or fmt.startswith(("{", "Σ")))
            # Σ (a − b)² needs no more parentheses than a power already has
            need = POW if math and fmt.startswith("Σ") else ATOM
            for a in e.args:
                s, pr = self.p(a)
                if atomic and pr < need:
                    s = f"({s})"
                args.append(s)
            if "{*}" in fmt:
                return fmt.replace("{*}", ", ".join(args)), ATOM
            return fmt.format(*args), ATOM
        if isinstance(e, Bin):
            prec = _BIN_PREC[e.op]
            a, b = e.a, e.b
            if (
                math
                and e.op == "*"
                and isinstance(b, Const)
                and not isinstance(a, Const)
            ):
                a, b = b, a  # a constant factor reads first: 0.5 · x, not x · 0.5
            ls, lp = self.p(a)
            rs, rp = self.p(b)
            if e.op == "**":
                if lp <= POW:
                    ls = f"({ls})"
                if rp < ATOM:
                    rs = f"({rs})"
            else:
                if lp < prec:
                    ls = f"({ls})"
                if rp <= prec:
                    rs = f"({rs})"
            if not math:
                op = {"**": "**"}.get(e.op, e.op)
                return f"{ls} {op} {rs}", prec
            if e.op == "**" and isinstance(b, Const) and b.value in SUPERSCRIPTS:
                return f"{ls}{SUPERSCRIPTS[int(b.value)]}", POW
            if e.op == "*":
                sym = " · " if (a.is_scalar or b.is_scalar) else " ⊙ "
                return f"{ls}{sym}{rs}", prec
            return f"{ls}{_MATH_OPS[e.op]}{rs}", prec
        raise TypeError(e)

    def latex(self, e: Expr) -> tuple[str, int]:
        """The math printer's choices, typeset: ``/`` as a fraction, ``@`` as
        juxtaposition, ``⊙`` and ``·`` for the two products, names upright."""
        if isinstance(e, Sym):
            return latex_name(e.math or e.code), ATOM if e.math_atom else MUL
        if isinstance(e, Const):
            if e.name:
                return _latex_text(e.name), ATOM
            s = _fmt_const(e.value, True).replace("−", "-")
            return s, (ATOM if e.value >= 0 else NEG)
        if isinstance(e, Neg):
            s, pr = self.latex(e.a)
            if pr < POW:
                s = rf"\left({s}\right)"
            return "-" + s, NEG
        if isinstance(e, Call) and e.fn == "col":  # typeset, the column is implied
            return self.latex(e.args[0])
        if isinstance(e, Call):
            fmt = _latex_format(FUNCS[e.fn].math)
            args = []
            for a in e.args:
                s, pr = self.latex(a)
                if fmt.startswith(("{", r"\sum")) and pr < POW:
                    s = rf"\left({s}\right)"
                args.append(s)
            if "{*}" in fmt:
                return fmt.replace("{*}", ", ".join(args)), ATOM
            return _fill(fmt, args), ATOM
        if isinstance(e, Bin):
            a, b = e.a, e.b
            if e.op == "/":
                return rf"\frac{{{self.latex(a)[0]}}}{{{self.latex(b)[0]}}}", ATOM
            if e.op == "*" and isinstance(b, Const) and not isinstance(a, Const):
                a, b = b, a
            prec = _BIN_PREC[e.op]
            ls, lp = self.latex(a)
            rs, rp = self.latex(b)
            if e.op == "**":
                if lp <= POW:
                    ls = rf"\left({ls}\right)"
                return f"{{{ls}}}^{{{rs}}}", POW
            if lp < prec:
                ls = rf"\left({ls}\right)"
            if rp <= prec:
                rs = rf"\left({rs}\right)"
            op = {
                "+": " + ",
                "-": " - ",
                "@": r" \, ",
                "*": r" \cdot " if (a.is_scalar or b.is_scalar) else r" \odot ",
            }[e.op]
            return f"{ls}{op}{rs}", prec
        raise TypeError(e)


numpy_code = Printer("numpy")
torch_code = Printer("torch")
math_text = Printer("math")
latex_text = Printer("latex")


# ------------------------------------------------------------------ LaTeX

# unicode of the math printer -> LaTeX
_LATEX_CHARS = {
    "−": "-", "·": r" \cdot ", "⊙": r" \odot ", "≥": r" \geq ", "≤": r" \leq ",
    "~": r" \sim ", "ᵀ": r"^\top", "∂": r"\partial ", "√": r"\sqrt", "π": r"\pi ",
    "σ": r"\sigma", "ε": r"\varepsilon", "α": r"\alpha", "β": r"\beta",
    "γ": r"\gamma", "μ": r"\mu", "Φ": r"\Phi", "φ": r"\varphi", "κ": r"\kappa",
    "λ": r"\lambda", "τ": r"\tau", "ŷ": r"\hat{y}", "x̂": r"\hat{x}", "x̃": r"\tilde{x}", "ĝ": r"\hat{g}", "ₙ": "_n",
    "ⱼ": "_j", "ₖ": "_k", "ₜ": "_t", "ᵢ": "_i", "²": "^2", "³": "^3", "Σ": r"\sum",
    "_": r"\_", "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&",
    "$": r"\$", "^": r"\^{}", "\\": r"\backslash ",
}  # fmt: skip
_FUNCTION_NAMES = {"exp", "log", "tanh", "max", "min", "sin", "cos"}
_LATEX_TOKEN = re.compile(
    r"(?P<root>√\((?P<radicand>[^()]*)\)|√(?P<digits>\d+))"
    r"|(?P<word>\b[A-Za-z][A-Za-z_]*\b)(?P<call>(?=\())?"
    "|(?P<char>"
    + "|".join(map(re.escape, sorted(_LATEX_CHARS, key=len, reverse=True)))
    + ")"
)


def _latex_token(m: re.Match) -> str:
    if m["root"]:
        return rf"\sqrt{{{_latex_text(m['radicand'] or m['digits'])}}}"
    if m["word"]:
        word = m["word"]
        if word in _FUNCTION_NAMES:
            return rf"\{word} "
        if word in ("if", "else"):
            return rf"\text{{ {word} }}"
        word = word.replace("_", r"\_")
        return rf"\operatorname{{{word}}}" if m["call"] is not None else word
    return _LATEX_CHARS[m["char"]]


def _latex_text(text: str) -> str:
    """Unicode math text (no format fields) in LaTeX: operators, Greek letters,
    sub- and superscripts, √ as a root, exp/log/… as functions and other words
    before "(" as operators."""
    return _LATEX_TOKEN.sub(_latex_token, text)


def _fill(fmt: str, args: list[str]) -> str:
    """``fmt`` with ``{0}``, ``{1}``… replaced (LaTeX braces elsewhere stay)."""
    return re.sub(r"\{(\d)\}", lambda m: args[int(m[1])], fmt)


@cache
def _latex_format(fmt: str) -> str:
    """A function's math format (``"Σₙ {0}"``) in LaTeX, its fields kept."""
    parts = re.split(r"(\{\d\}|\{\*\})", fmt)
    return "".join(part if i % 2 else _latex_text(part) for i, part in enumerate(parts))


def latex_name(name: str) -> str:
    """A name of the math printer in LaTeX: ``∂L/∂fc1`` as a fraction, ``∂L/∂h via
    g`` with the part it is, one-letter names italic, the others upright."""
    if name.startswith("∂L/∂"):
        rest = name[len("∂L/∂") :]
        via = ""
        if " via " in rest:
            rest, user = rest.split(" via ", 1)
            via = rf"\Big|_{{\text{{via }} {latex_name(user)}}}"
        return rf"\frac{{\partial L}}{{\partial {latex_name(rest)}}}{via}"
    if len(name) == 1 and name.isascii() and name.isalpha():
        return name
    if name in _LATEX_CHARS:
        return _LATEX_CHARS[name].strip()
    # a dot in braces is an ordinary symbol, not punctuation followed by a space
    return rf"\mathrm{{{_latex_text(name).replace('.', '{.}')}}}"


# NumPy has no softmax, sigmoid or erf: a generated file defines the ones it uses,
# each in its numerically stable form; and a mean that is quick on small arrays.
# Constants are written as floats (0.0, not 0): NumPy takes a Python float into
# a float array's arithmetic faster than an int, and the value is the same.
NUMPY_HELPERS: dict[str, str] = {
    "mean": '''def mean(a):
    """The mean of all elements, a.sum() / a.size: the same number as a.mean(),
    which spends a few µs more per call (a tenth of a small network's step)."""
    return a.sum() / a.size
''',
    "sigmoid": '''@np.errstate(over="ignore")  # where exp(−z) overflows to ∞, σ is 1/∞ = 0
def sigmoid(z):
    """σ(z) = 1 / (1 + exp(−z)), evaluated as torch evaluates it: it rounds to
    exactly 1.0 where torch's does, which the clamps of a loss can tell apart."""
    return 1.0 / (1.0 + np.exp(-z))
''',
    "softplus": '''def softplus(z):
    """log(1 + exp(z)) as logaddexp(0, z), never overflowing; z itself above 20, as torch."""
    return np.where(z > 20.0, z, np.logaddexp(0.0, z))
''',
    "logsigmoid": '''def logsigmoid(z):
    """log σ(z) = min(z, 0) − log(1 + exp(−|z|)): never overflows."""
    return np.minimum(z, 0.0) - np.log1p(np.exp(-np.abs(z)))
''',
    "logsumexp": '''def logsumexp(z):
    """log Σⱼ exp(zⱼ) per row, shifted by the row maximum so exp never overflows."""
    m = z.max(axis=1, keepdims=True)
    return m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
''',
    "softmax": '''def softmax(z):
    """exp(zⱼ) / Σₖ exp(zₖ) per row, shifted by the row maximum (same result, no overflow)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
''',
    "log_softmax": '''def log_softmax(z):
    """zⱼ − logsumexp(z) per row."""
    return z - logsumexp(z)[:, None]
''',
    "clamped_log": '''def clamped_log(z):
    """max(log z, −100), as torch's BCELoss: log 0 is −100 (no divide-by-zero warning)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(z), -100.0)
''',
    "clamped_log1p": '''def clamped_log1p(z):
    """max(log(1 + z), −100), as torch's BCELoss: log 0 is −100 (no warning)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log1p(z), -100.0)
''',
    "embedding_grad": '''def embedding_grad(tokens, g, vocab):
    """∂L/∂C of the embedding C[tokens].reshape(N, -1): each token's slice of g
    goes back to the row of C it read, and a row read by several tokens gets
    the sum of their slices. np.add.at adds at repeated indices; d[tokens] += g
    would keep only one of them (the scatter-add bug every from-scratch
    embedding meets once)."""
    d = np.zeros((vocab, g.shape[1] // tokens.shape[1]), dtype=g.dtype)
    np.add.at(d, tokens.reshape(-1), g.reshape(tokens.size, -1))
    return d
''',
    "erf": '''def erf(z):
    """The error function, element by element (NumPy has none; math.erf is exact)."""
    return np.vectorize(math.erf, otypes=[z.dtype])(z)
''',
}
HELPER_NEEDS = {"log_softmax": ("logsumexp",)}


def numpy_helpers(fns: set[str]) -> list[str]:
    """The helper definitions a NumPy file needs for these functions, in a fixed order."""
    names = {h for f in fns if (h := FUNCS[f].helper)}
    for n in list(names):
        names |= set(HELPER_NEEDS.get(n, ()))
    return [NUMPY_HELPERS[n] for n in NUMPY_HELPERS if n in names]
