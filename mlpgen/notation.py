"""The notation of every formula mlpgen prints, defined once.

The learning page's legend and the legend inside each diagram are both made
from this table: one row per symbol, what it means, and how the generated
code spells it (NumPy and PyTorch). A page or a diagram lists exactly the
rows whose symbol appears in its own formulas (``used``), plus the constants
of its spec (``constants``): each named constant of a formula (class weights
w, bce's ε, the optimizer's lr, μ, β₁, …) beside the code constant that holds
it and its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Symbol:
    symbol: str  # as the formulas print it
    meaning: str
    numpy: str  # its spelling in numpy_backprop.py
    torch: str  # in torch_manual.py
    pattern: str  # a regular expression that finds it in a formula


# In the order a learner meets them: products, sums, counts, brackets, functions.
SYMBOLS: tuple[Symbol, ...] = (
    Symbol(
        "∂L/∂h",
        "the gradient of the loss L with respect to the tensor h, the same shape as h",
        'd_h, grads["fc1.weight"]',
        'd_h, grads["fc1.weight"]',
        r"∂L/∂",
    ),
    Symbol("a @ b", "matrix product", "a @ b", "a @ b", r"@"),
    Symbol("aᵀ", "transpose", "a.T", "a.T", r"ᵀ"),
    Symbol(
        "a ⊙ b",
        "element-wise product; an (N, 1) column multiplies every column of an (N, k) tensor (broadcast)",
        "a * b",
        "a * b",
        r"⊙",
    ),
    Symbol("c · a", "a number times a tensor (or two numbers)", "c * a", "c * a", r"·"),
    Symbol(
        "Σₙ a",
        "sum over the batch: over the rows n, one number per column (axis 0)",
        "a.sum(axis=0)",
        "a.sum(dim=0)",
        r"Σₙ",
    ),
    Symbol(
        "Σⱼ a",
        "sum over the columns j of each row, one number per row (axis 1)",
        "a.sum(axis=1, keepdims=True)",
        "a.sum(dim=1, keepdim=True)",
        r"Σⱼ",
    ),
    Symbol(
        "Σₖ a",
        "sum over the columns k of a row (as Σⱼ, with another index)",
        "a.sum(axis=1)",
        "a.sum(dim=1)",
        r"Σₖ",
    ),
    Symbol("Σ a", "sum of every element", "a.sum()", "a.sum()", r"Σ(?![ₙⱼₖ])"),
    Symbol(
        "mean(a)",
        "mean of every element: Σ a / numel(a)",
        "mean(a)",
        "torch.mean(a)",
        r"\bmean\(",
    ),
    Symbol(
        "N", "the number of rows (samples) in the batch", "len(a)", "len(a)", r"\bN\b"
    ),
    Symbol(
        "numel(a)",
        "the number of elements of a: N·k for an (N, k) tensor",
        "a.size",
        "a.numel()",
        r"\bnumel\(",
    ),
    Symbol(
        "[a > 0]",
        "Iverson bracket: 1 where the condition holds, 0 elsewhere (a mask)",
        "(a > 0)",
        "(a > 0)",
        r"\[[^\[\]]* (?:>|≥) [^\[\]]*\]",
    ),
    Symbol(
        "(a if c else b)",
        "element-wise choice: a where the condition c holds, b elsewhere",
        "np.where(c, a, b)",
        "torch.where(c, a, b)",
        r" if .* else ",
    ),
    Symbol(
        "max(a, b)",
        "element-wise maximum (max(a, 0) is relu)",
        "np.maximum(a, b)",
        "torch.maximum(a, b), torch.clamp",
        r"\bmax\(",
    ),
    Symbol(
        "min(a, 0)",
        "element-wise minimum with 0",
        "np.minimum(a, 0)",
        "torch.clamp(a, max=0)",
        r"\bmin\(",
    ),
    Symbol(
        "onehot(y)",
        "the (N, classes) matrix with a 1 in column yₙ of row n, 0 elsewhere",
        "np.eye(classes)[y]",
        "F.one_hot(y, classes)",
        r"\bonehot\(",
    ),
    Symbol(
        "z[n, yₙ]",
        "for each row n, the entry in the column of its class yₙ: an (N,) vector",
        "z[np.arange(len(y)), y]",
        "z[torch.arange(len(y)), y]",
        r"\[n, ",
    ),
    Symbol(
        "w[y]",
        "each sample's class weight, an (N,) vector",
        "CLASS_WEIGHT[y]",
        "CLASS_WEIGHT[y]",
        r"\bw\[y",
    ),
    Symbol(
        "[a, b]",
        "concatenation along the feature axis (columns)",
        "np.concatenate([a, b], axis=1)",
        "torch.cat([a, b], dim=1)",
        r"= \[[^\]]*,",
    ),
    Symbol(
        "a[:, i:j]",
        "the columns i to j − 1 of a",
        "a[:, i:j]",
        "a[:, i:j]",
        r"\[:, (?!None)",
    ),
    Symbol(
        "a[:, None]",
        "the (N,) vector a as an (N, 1) column, so that it multiplies every column of an (N, k) tensor (broadcast)",
        "a[:, None]",
        "a[:, None]",
        r"\[:, None\]",
    ),
    Symbol(
        "μ, σ²",
        "batchnorm and layernorm: the mean and the biased variance (÷ N or ÷ F), of each feature over the batch (batchnorm) or of each row over its features (layernorm)",
        "bn1_mean, bn1_var",
        "bn1_mean, bn1_var",
        r"μ|σ²",
    ),
    Symbol(
        "x̃, x̂, istd",
        "the centred input x − μ, the normalised input (x − μ)/√(σ² + ε), and 1/√(σ² + ε)",
        "bn1_xc, bn1_xhat, bn1_istd",
        "bn1_xc, bn1_xhat, bn1_istd",
        r"x̃|x̂|\bistd\b",
    ),
    Symbol(
        "γ, β",
        "a normalisation layer's scale and shift per feature: its weight and bias",
        'params["bn1.weight"], params["bn1.bias"]',
        'params["bn1.weight"], params["bn1.bias"]',
        r"γ|β(?![₁₂])",
    ),
    Symbol(
        "Σg, Σgx̂",
        "batchnorm's two batch sums Σₙ g and Σₙ g ⊙ x̂: ∂L/∂β and ∂L/∂γ, which ∂L/∂x reuses",
        "bn1_sum_g, bn1_sum_g_xhat",
        "bn1_sum_g, bn1_sum_g_xhat",
        r"Σg",
    ),
    Symbol(
        "ĝ, Σĝ, Σĝx̂",
        "layernorm: ∂L/∂x̂ = g ⊙ γ, and its two sums over each row",
        "ln1_dxhat, ln1_sum_dxhat, ln1_sum_dxhat_xhat",
        "ln1_dxhat, ln1_sum_dxhat, ln1_sum_dxhat_xhat",
        r"ĝ",
    ),
    Symbol(
        "a ← b",
        "in training mode, a buffer (a running statistic) is replaced by b",
        'buffers["bn1.running_mean"] = b',
        'buffers["bn1.running_mean"] = b',
        r"←",
    ),
    Symbol(
        "C[x].view(N, −1)",
        "an embedding: row x[n, t] of the table C for every token index, the T rows of a sample side by side",
        "C[x].reshape(len(x), -1)",
        "C[x].view(len(x), -1)",
        r"\.view\(",
    ),
    Symbol(
        "Σₙₜ [xₙₜ = v]·gₙₜ",
        "its gradient, a scatter-add: row v of ∂L/∂C adds up the gradient slices of every token equal to v",
        "embedding_grad(x, g, vocab) (np.add.at)",
        "torch.zeros(vocab, dim).index_add_(0, x, g)",
        r"Σₙₜ",
    ),
    Symbol(
        "exp, log, tanh, erf",
        "applied element by element (log(1 + a) as log1p, exact near 0)",
        "np.exp(a), np.log1p(a), …",
        "torch.exp(a), torch.log1p(a), …",
        r"\b(?:exp|log|tanh|erf)\b",
    ),
    Symbol(
        "√a", "square root, element by element", "np.sqrt(a)", "torch.sqrt(a)", r"√"
    ),
    Symbol("π", "pi, 3.14159…", "math.pi", "math.pi", r"π"),
    Symbol(
        "|a|",
        "absolute value, element by element",
        "np.abs(a)",
        "torch.abs(a)",
        r"\|[^|]+\|",
    ),
    Symbol(
        "σ(z)",
        "the logistic sigmoid 1 / (1 + exp(−z))",
        "sigmoid(z)",
        "torch.sigmoid(z)",
        r"σ",
    ),
    Symbol(
        "softmax(z)",
        "per row: exp(zⱼ) / Σₖ exp(zₖ)",
        "softmax(z)",
        "torch.softmax(z, dim=1)",
        r"\bsoftmax\(",
    ),
    Symbol(
        "log_softmax(z)",
        "per row: zⱼ − logsumexp(z)",
        "log_softmax(z)",
        "torch.log_softmax(z, dim=1)",
        r"\blog_softmax\(",
    ),
    Symbol(
        "logsumexp(z)",
        "per row: log Σⱼ exp(zⱼ), computed without overflow",
        "logsumexp(z)",
        "torch.logsumexp(z, dim=1)",
        r"\blogsumexp\(",
    ),
    Symbol(
        "softplus(z)",
        "log(1 + exp(z)), and z above 20 as torch computes it",
        "softplus(z)",
        "F.softplus(z)",
        r"\bsoftplus\(",
    ),
    Symbol(
        "Φ, φ",
        "the standard normal CDF and density",
        "erf, np.exp",
        "torch.erf, torch.exp",
        r"[Φφ]",
    ),
    Symbol(
        "mask_d",
        "this step's dropout mask of layer d: [u ≥ p] / (1 − p), drawn once per step",
        'masks["d"]',
        'masks["d"]',
        r"\bmask",
    ),
    Symbol("f′(x)", "the derivative of the function f at x", "", "", r"′"),
    Symbol(
        "ŷ, z, p",
        "in a loss rule: the model output (a prediction ŷ, scores z, probabilities p)",
        "out",
        "out",
        r"ŷ|∂L/∂z =|∂L/∂p =",
    ),
    Symbol(
        "g",
        "in a rule: the gradient ∂L/∂y arriving at the operation's output y",
        "d_<output>",
        "d_<output>",
        r"\bg\b",
    ),
)


def used(texts) -> list[Symbol]:
    """The rows of SYMBOLS whose symbol appears in any of ``texts``, in table order."""
    joined = "\n".join(texts)
    return [s for s in SYMBOLS if re.search(s.pattern, joined)]


@dataclass(frozen=True)
class Constant:
    symbol: str
    meaning: str
    code: str  # the constant's name in the generated files
    value: str


# the optimizer's constants: the symbol of the update formulas, what it is
NORMS = ("batchnorm", "layernorm")

OPTIMIZER_SYMBOLS = {
    "LR": ("lr", "the learning rate"),
    "MOMENTUM": ("μ", "the momentum factor"),
    "DAMPENING": ("dampening", "the share of g kept out of the momentum buffer"),
    "WEIGHT_DECAY": ("wd", "weight decay"),
    "BETA1": ("β₁", "decay of Adam's first-moment (mean of g) average"),
    "BETA2": ("β₂", "decay of Adam's second-moment (mean of g²) average"),
    "EPS": ("ε", "added to √v in the update, so that it never divides by 0"),
    "ALPHA": ("α", "decay of RMSprop's average of g²"),
}


def constants(prog, optimizer_constants) -> list[Constant]:
    """The named constants of this spec's formulas and update: loss constants
    (class weights w, positive weights pw, bce's ε), then the optimizer's."""
    from .autodiff import loss_ctx, value
    from .expr import Sym, math_text
    from .ops import LOSSES

    net = prog.net
    spec = net.spec
    out: list[Constant] = []
    weight = loss_ctx(net, value(prog.output)).weight
    if isinstance(weight, Sym):
        key = (
            "weight" if getattr(spec.loss, "weight", None) is not None else "pos_weight"
        )
        numbers = ", ".join(f"{float(w):g}" for w in getattr(spec.loss, key))
        what = (
            "each class's weight in the loss"
            if key == "weight"
            else "the weight of the positive targets"
        )
        out.append(
            Constant(
                math_text(weight), f"{what} (loss.{key})", weight.code, f"[{numbers}]"
            )
        )
    for sym, code, why in LOSSES[spec.loss.type].constants:
        out.append(Constant(sym.math, f"in the loss's gradient: {why}", sym.code, code))
    seen = set()
    for layer in net.layers:  # the normalisation layers' ε and momentum m
        keys = layer.keys
        for symbol, key, what in (
            ("ε", "eps", "added to σ² before the square root"),
            ("m", "momentum", "the running statistics' momentum"),
        ):
            number = getattr(keys, key, None) if layer.op.name in NORMS else None
            if number is None or (symbol, number) in seen:
                continue
            seen.add((symbol, number))
            out.append(
                Constant(
                    symbol,
                    f"{what} ({layer.op.name} {key})",
                    repr(number),
                    repr(number),
                )
            )
    for name, number in optimizer_constants:
        symbol, meaning = OPTIMIZER_SYMBOLS.get(name, (name.lower(), name.lower()))
        where = "in the update"
        out.append(Constant(symbol, f"{meaning} ({where})", name, number))
    return out
