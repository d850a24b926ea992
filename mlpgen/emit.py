"""Print a derived Program through the Jinja templates into the output folder.

The templates only lay out what this module hands them: every formula and
every line of derived code is computed here from the Program, so the logic
stays in Python and the templates stay thin. Output is formatted with ruff,
checked with ``ast.parse``, and written atomically: a temporary folder that
replaces the old one only when everything in it was written.
"""

from __future__ import annotations

import re
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from .autodiff import Program, loss_comments, loss_ctx, param
from .data import label_targets
from .expr import (
    FUNCS,
    Const,
    Expr,
    Sym,
    call,
    math_text,
    numpy_code,
    numpy_helpers,
    torch_code,
)
from .ops import LOSSES, accuracy_rule
from .spec import class_name
from .text import comment, docstring, markdown, shell_word, table_cell

TEMPLATES = Path(__file__).resolve().parent / "templates"
PY_FILES = (
    "numpy_backprop.py",
    "torch_manual.py",
    "torch_module.py",
    "test_crosscheck.py",
)


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """The templates as Jinja compiled them, kept between runs (in a private folder
    of the temp directory, checked against each template's source before use):
    compiling them again is most of the time a small compile takes. A cache that
    cannot be written is simply not kept."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _template_cache() -> jinja2.BytecodeCache | None:
    try:
        return _TemplateCache(pattern="mlpgen-%s.cache")
    except (OSError, RuntimeError):  # no private temp folder to be had
        return None


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        bytecode_cache=_template_cache(),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters.update(
        comment=comment,
        docstring=docstring,
        md=markdown,
        cell=table_cell,
        shell=shell_word,
        reflow=reflow,
    )
    return env


def reflow(text: str, indent: int = 4, width: int = 79) -> str:
    """A docstring or comment put together from template pieces, rewrapped:
    each paragraph (blank lines between them) filled to ``width`` columns at
    ``indent`` spaces, so that optional clauses never leave a ragged line."""
    pad = " " * indent
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    filled = [
        textwrap.fill(
            p,
            width,
            initial_indent=pad,
            subsequent_indent=pad,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paragraphs
    ]
    return "\n\n".join(filled) + "\n"


def function_ir(text: str):
    """The expression IR of a ``function`` data formula, in the NumPy array ``x``."""
    from . import cas

    return cas.forward_ir(text, Sym("x"))


def _num(v: float) -> str:
    return repr(float(v))


def _bound(v: float, math_text: bool = False) -> str:
    """An end of a grid as code (``np.pi`` where the spec wrote π to the last
    digit) or, with ``math_text``, as a comment writes it (−π)."""
    import math

    if abs(v) in (math.pi, 2 * math.pi):
        code = "2 * np.pi" if abs(v) > 4 else "np.pi"
        pi = ("2π" if abs(v) > 4 else "π") if math_text else code
        return ("−" if math_text else "-") * (v < 0) + pi
    return _num(v).replace("-", "−") if math_text else _num(v)


def _init_note(pi) -> str:
    layer, p = pi.layer, pi.param
    keys = layer.keys
    init = keys.init if p.name == "weight" else keys.bias_init
    fan_in, fan_out = layer.in_features[0], layer.out_features
    s = init.scheme
    shape = (
        "(" + ", ".join(map(str, p.shape)) + ("," if len(p.shape) == 1 else "") + ")"
    )
    if s == "torch_default":
        how = f"U(−1/√fan_in, +1/√fan_in) with fan_in = {fan_in}"
    elif s == "uniform":
        how = f"U({init.low}, {init.high})"
    elif s == "normal":
        how = f"N(mean={init.mean}, std={init.std})"
    elif s in ("zeros", "constant"):
        how = f"all {p.draw.a}"
    elif s.startswith("xavier"):
        form = (
            "U(±gain·√(6/(fan_in + fan_out)))"
            if s.endswith("uniform")
            else "N(0, gain·√(2/(fan_in + fan_out)))"
        )
        how = f"{form}, gain = {init.gain}, fan_in = {fan_in}, fan_out = {fan_out}"
    else:
        form = "U(±gain·√(3/fan))" if s.endswith("uniform") else "N(0, gain/√fan)"
        how = f"{form}, gain = calculate_gain({init.nonlinearity!r}, {init.a}), fan = {init.mode}"
    return f"{pi.state_name} {shape}: {s}, {how}"


def _draw_code(pi) -> str:
    d, shape = pi.param.draw, pi.param.shape
    shape_code = (
        "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    )
    if d.kind == "uniform" and d.scale is not None:
        return f"rng.uniform(-{d.scale}, {d.scale}, {shape_code})"
    if d.kind == "uniform":
        return f"rng.uniform({_num(d.a)}, {_num(d.b)}, {shape_code})"
    if d.kind == "normal":
        return f"rng.normal({_num(d.a)}, {d.scale or _num(d.b)}, {shape_code})"
    return f"np.full({shape_code}, {_num(d.a)})"


def _optimizer(spec) -> dict:
    o = spec.train.optimizer
    t = o.type
    constants = [("LR", _num(o.lr))]
    args = ["lr=LR"]
    buffers: list[str] = []
    if t == "sgd":
        for key in ("momentum", "dampening", "weight_decay"):
            if getattr(o, key):
                constants.append((key.upper(), _num(getattr(o, key))))
                args.append(f"{key}={key.upper()}")
        if o.nesterov:
            args.append("nesterov=True")
        has_state = bool(o.momentum)
        torch_class = "SGD"
    elif t in ("adam", "adamw"):
        constants += [
            ("BETA1", _num(o.betas[0])),
            ("BETA2", _num(o.betas[1])),
            ("EPS", _num(o.eps)),
        ]
        args += ["betas=(BETA1, BETA2)", "eps=EPS"]
        if o.weight_decay or t == "adamw":
            constants.append(("WEIGHT_DECAY", _num(o.weight_decay)))
            args.append("weight_decay=WEIGHT_DECAY")
        if o.amsgrad:
            args.append("amsgrad=True")
        buffers = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if o.amsgrad else [])
        has_state = True
        torch_class = "Adam" if t == "adam" else "AdamW"
    else:  # rmsprop
        constants += [("ALPHA", _num(o.alpha)), ("EPS", _num(o.eps))]
        args += ["alpha=ALPHA", "eps=EPS"]
        for key in ("momentum", "weight_decay"):
            if getattr(o, key):
                constants.append((key.upper(), _num(getattr(o, key))))
                args.append(f"{key}={key.upper()}")
        if o.centered:
            args.append("centered=True")
        buffers = (
            ["square_avg"]
            + (["grad_avg"] if o.centered else [])
            + (["momentum_buffer"] if o.momentum else [])
        )
        has_state = True
        torch_class = "RMSprop"
    return {
        "type": t,
        "torch_class": torch_class,
        "constants": constants,
        "signature": ", ".join(args),
        "buffers": buffers,
        "has_state": has_state,
        # SGD's momentum buffers are made at their first step: init_optimizer()
        # reads no parameter then
        "init_args": "" if t == "sgd" else "params",
        "momentum": getattr(o, "momentum", 0),
        "dampening": getattr(o, "dampening", 0),
        "nesterov": getattr(o, "nesterov", False),
        "weight_decay": getattr(o, "weight_decay", 0),
        "amsgrad": getattr(o, "amsgrad", False),
        "centered": getattr(o, "centered", False),
    }


# The quantities of the optimizer's update: the variable of the generated code,
# its symbol in the update's formulas, and what it is (the learning page's
# notation lists those a spec's update uses)
UPDATE_SYMBOLS = {
    "p": ("p", "a parameter tensor, updated in place"),
    "g": ("g", "its gradient ∂L/∂p, then the direction of the step"),
    "state[name]": ("b", "SGD's momentum buffer of the parameter"),
    "step": ("t", "the optimizer's step count, from 1"),
    "exp_avg": ("m", "Adam's running mean of g (the first moment)"),
    "exp_avg_sq": ("v", "Adam's running mean of g ⊙ g (the second moment)"),
    "max_exp_avg_sq": ("v_max", "AMSGrad's largest v so far, element by element"),
    "denom": ("d", "the denominator of Adam's step, ε included"),
    "square_avg": ("v", "RMSprop's running mean of g ⊙ g"),
    "grad_avg": ("ḡ", "centered RMSprop's running mean of g"),
    "avg": ("s", "the denominator of RMSprop's step, ε included"),
    "momentum_buffer": ("b", "RMSprop's momentum buffer of the parameter"),
}


def _usym(code: str) -> Sym:
    return Sym(code, UPDATE_SYMBOLS[code][0])


def update_symbols(spec) -> list[dict]:
    """The rows of UPDATE_SYMBOLS that this spec's update uses: p, g, what
    its lines assign, and Adam's step count t."""
    used = {"p", "g"} | {
        line["target"] for line in _optimizer_lines(spec, "np").values()
    }
    if spec.train.optimizer.type in ("adam", "adamw"):
        used.add("step")  # t, in the bias corrections
    return [
        {"symbol": math, "meaning": meaning, "code": code}
        for code, (math, meaning) in UPDATE_SYMBOLS.items()
        if code in used
    ]


def _update(
    target: Sym,
    value: Expr,
    printer,
    statement: str = "",
    label: str = "",
    textbook: Expr | None = None,
    why: str = "",
) -> dict:
    """One line of the optimizer's update, its comment and its code printed
    from the same expression: ``target ← value``, after ``label`` when given.
    ``statement`` is the line as written when it is not ``target = value``
    (an in-place form such as ``p -= …`` or torch's ``p.add_(…)``, built by the
    caller from the same pieces). With ``textbook``, the textbook's formula
    comes first, then "PyTorch evaluates it as" ``value``, ``why``."""
    code = printer(value)
    formula = f"{target.math} ← {math_text(value)}"
    if textbook is not None:
        comments = [f"{target.math} ← {math_text(textbook)}"]
        comments += textwrap.wrap(f"PyTorch evaluates it as {formula}, {why}", 76)
    else:
        comments = [f"{label}: {formula}" if label else formula]
    return {
        "comments": comments,
        "target": target.code,
        "code": code,
        "statement": statement or f"{target.code} = {code}",
    }


def _optimizer_lines(spec, xp: str) -> dict:
    """The optimizer's update of one parameter p with gradient g, line by line,
    each printed from the expression IR with its formula above it (the test
    of tests/test_comments.py holds them together). The code is the one torch
    runs, operation for operation; where torch's form differs from the
    textbook's (Adam's bias corrections, the lerp of a running mean), the
    textbook's formula comes first."""
    o = spec.train.optimizer
    printer = numpy_code if xp == "np" else torch_code
    lr = Sym("lr" if spec.train.schedule else "LR", "lr", scalar=True)
    p, g = _usym("p"), _usym("g")
    wd = Sym("WEIGHT_DECAY", "wd", scalar=True)
    mu = Sym("MOMENTUM", "μ", scalar=True)
    out: dict = {}
    if o.weight_decay and o.type != "adamw":
        label = "weight decay, the coupled (L2) form"
        out["decay"] = _update(g, g + wd * p, printer, label=label)
    if o.type == "sgd":
        b = _usym("state[name]")
        copy = "copy()" if xp == "np" else "clone()"
        out["first_buffer"] = _update(
            b, g, printer, f"state[name] = g.{copy}", label="momentum buffer, step 1"
        )
        tau = Sym("DAMPENING", "dampening", scalar=True)
        fresh = (1 - tau) * g if o.dampening else g
        out["buffer"] = _update(b, mu * b + fresh, printer, label="then")
        if o.nesterov:
            out["direction"] = _update(g, g + mu * b, printer, label="Nesterov")
        else:
            out["direction"] = _update(g, b, printer, label="the step follows b")
        if xp == "torch":  # torch.optim.SGD: one pass, no temporary
            statement = f"p.add_({printer(g)}, alpha=-{printer(lr)})"
        else:
            statement = f"p -= {printer(lr * g)}"
        out["step"] = _update(p, p - lr * g, printer, statement)
    elif o.type in ("adam", "adamw"):
        m, v = _usym("exp_avg"), _usym("exp_avg_sq")
        b1, b2 = Sym("BETA1", "β₁", scalar=True), Sym("BETA2", "β₂", scalar=True)
        eps = Sym("EPS", "ε", scalar=True)
        if o.type == "adamw":
            out["decay"] = _update(
                p,
                p * (1 - lr * wd),
                printer,
                f"p *= {printer(1 - lr * wd)}",
                label="decoupled weight decay",
            )
        out["m"] = _update(
            m,
            m + (1 - b1) * (g - m),
            printer,
            textbook=b1 * m + (1 - b1) * g,
            why="as exp_avg.lerp_ does",
        )
        out["v"] = _update(v, b2 * v + (1 - b2) * g * g, printer)
        v_used = v
        if o.amsgrad:
            vmax = _usym("max_exp_avg_sq")
            out["vmax"] = _update(
                vmax,
                call("maximum", vmax, v),
                printer,
                label="AMSGrad, the largest v so far",
            )
            v_used = vmax
        d = _usym("denom")
        c2 = Sym("bias_correction2_sqrt", "√(1 − β₂ᵗ)", scalar=True)
        out["denom"] = _update(d, call("sqrt", v_used) / c2 + eps, printer)
        size = Sym("step_size", "lr/(1 − β₁ᵗ)", scalar=True)
        b1t, b2t = Sym("_", "β₁ᵗ", scalar=True), Sym("_", "β₂ᵗ", scalar=True)
        m_hat, v_hat = m / (1 - b1t), v_used / (1 - b2t)  # the paper's (math only)
        out["step"] = _update(
            p,
            p - size * m / d,
            printer,
            f"p -= {printer(size * m / d)}",
            textbook=p - lr * m_hat / (call("sqrt", v_hat) + eps),
            why="the bias corrections folded into step_size and d, ε added "
            "after the division by √(1 − β₂ᵗ) (torch's order of operations)",
        )
    else:  # rmsprop
        alpha = Sym("ALPHA", "α", scalar=True)
        eps = Sym("EPS", "ε", scalar=True)
        v, s = _usym("square_avg"), _usym("avg")
        out["v"] = _update(v, alpha * v + (1 - alpha) * g * g, printer)
        if o.centered:
            gbar = _usym("grad_avg")
            out["gbar"] = _update(
                gbar,
                gbar + (1 - alpha) * (g - gbar),
                printer,
                textbook=alpha * gbar + (1 - alpha) * g,
                why="as grad_avg.lerp_ does",
            )
            out["avg"] = _update(
                s,
                call("sqrt", v - gbar * gbar) + eps,
                printer,
                label="centered (the variance of g, not its second moment)",
            )
        else:
            out["avg"] = _update(s, call("sqrt", v) + eps, printer)
        if o.momentum:
            b = _usym("momentum_buffer")
            out["buffer"] = _update(b, mu * b + g / s, printer)
            out["step"] = _update(p, p - lr * b, printer, f"p -= {printer(lr * b)}")
        else:
            out["step"] = _update(
                p, p - lr * g / s, printer, f"p -= {printer(lr * g / s)}"
            )
    return out


def _line(code: str, comment: str = "") -> dict:
    """A line of written-out code, and its comment wrapped to a few short lines."""
    return {"code": code, "comments": textwrap.wrap(comment, 76)}


def _schedule(spec) -> dict | None:
    """The learning-rate schedule: torch's class, and the same recursion written out.

    torch.optim.lr_scheduler computes each lr from the one before (its
    ``get_lr``), not from the closed form its documentation gives; the two
    round differently, so the written-out form follows torch's recursion, with
    the closed form in its docstring.
    """
    s = spec.train.schedule
    if s is None:
        return None
    if s.type == "step":
        constants = [("STEP_SIZE", str(s.step_size)), ("GAMMA", _num(s.gamma))]
        args = "step_size=STEP_SIZE, gamma=GAMMA"
        cls = "StepLR"
        closed = (
            f"lr_t = LR·γ^⌊t / step_size⌋ with γ = GAMMA = {s.gamma:g} and step_size = "
            f"STEP_SIZE = {s.step_size}: the lr is multiplied by γ every {s.step_size} "
            f"{s.every}s."
        )
        lines = [
            _line(
                "if t % STEP_SIZE == 0:",
                "lr_t = γ·lr_{t−1} when t is a multiple of step_size, else lr_{t−1}",
            ),
            _line("    return lr * GAMMA"),
            _line("return lr"),
        ]
        start = "LR"
    elif s.type == "exponential":
        constants = [("GAMMA", _num(s.gamma))]
        args = "gamma=GAMMA"
        cls = "ExponentialLR"
        closed = f"lr_t = LR·γᵗ with γ = GAMMA = {s.gamma:g}."
        lines = [_line("return lr * GAMMA", "lr_t = γ·lr_{t−1}")]
        start = "LR"
    elif s.type == "cosine":
        constants = [("T_MAX", str(s.t_max)), ("ETA_MIN", _num(s.eta_min))]
        args = "T_max=T_MAX, eta_min=ETA_MIN"
        cls = "CosineAnnealingLR"
        closed = (
            "lr_t = η_min + (LR − η_min)·(1 + cos(π·t / T_max)) / 2 with "
            f"T_max = T_MAX = {s.t_max} and η_min = ETA_MIN = {s.eta_min:g}: half a "
            f"cosine from LR down to η_min over {s.t_max} {s.every}s, then back up "
            "(the closed form of torch's documentation; the lines below are its "
            "recursive get_lr(), which rounds differently)."
        )
        lines = [
            _line(
                "if (t - 1 - T_MAX) % (2 * T_MAX) == 0:",
                "just past a minimum of the cosine (t − 1 = T_max, 3·T_max, …) the ratio "
                "below would divide by 1 + cos(π) = 0: torch steps up by the closed "
                "form's difference instead, lr_t = lr_{t−1} + (LR − η_min)·(1 − cos(π/T_max)) / 2",
            ),
            _line(
                "    return lr + (LR - ETA_MIN) * (1 - math.cos(math.pi / T_MAX)) / 2"
            ),
            _line(
                "return (1 + math.cos(math.pi * t / T_MAX)) / (1 + math.cos(math.pi * (t - 1) / T_MAX)) * (lr - ETA_MIN) + ETA_MIN",
                "lr_t − η_min = (lr_{t−1} − η_min)·(1 + cos(π·t/T_max)) / (1 + cos(π·(t − 1)/T_max))",
            ),
        ]
        start = "LR"
    else:  # linear
        constants = [
            ("START_FACTOR", _num(s.start_factor)),
            ("END_FACTOR", _num(s.end_factor)),
            ("TOTAL_ITERS", str(s.total_iters)),
        ]
        args = (
            "start_factor=START_FACTOR, end_factor=END_FACTOR, total_iters=TOTAL_ITERS"
        )
        cls = "LinearLR"
        closed = (
            "lr_t = LR·(s + (e − s)·min(t, total_iters) / total_iters) with "
            f"s = START_FACTOR = {s.start_factor:g}, e = END_FACTOR = {s.end_factor:g} "
            f"and total_iters = TOTAL_ITERS = {s.total_iters}: the factor goes in a "
            f"straight line from s to e over {s.total_iters} {s.every}s, then stays."
        )
        lines = [
            _line("if t > TOTAL_ITERS:", "after total_iters steps the lr stays"),
            _line("    return lr"),
            _line(
                "return lr * (1.0 + (END_FACTOR - START_FACTOR) / (TOTAL_ITERS * START_FACTOR + (t - 1) * (END_FACTOR - START_FACTOR)))",
                "lr_t = lr_{t−1}·factor_t / factor_{t−1}, written as torch writes it: "
                "lr_{t−1}·(1 + (e − s) / (total_iters·s + (t − 1)·(e − s)))",
            ),
        ]
        start = "LR * START_FACTOR"
    return {
        "type": s.type,
        "every": s.every,
        "constants": constants,
        "torch_class": cls,
        "signature": f"{cls}(optimizer, {args})",
        "closed_form": textwrap.wrap(closed, 76),
        # what the loop passes as t: none to ExponentialLR (lr·γ needs only
        # the lr before), else the epoch, or a counter of the steps where an
        # epoch takes several (a full batch takes one: t = epoch)
        "arg": None
        if s.type == "exponential"
        else "t"
        if s.every == "step" and spec.train.batch_size != "full"
        else "epoch",
        "lines": lines,
        "start": start,
    }


def _early_stopping(spec) -> dict | None:
    stop = spec.train.early_stopping
    if stop is None:
        return None
    part, _, metric = stop.monitor.partition("_")
    return {
        "monitor": stop.monitor,
        "part": part,
        "metric": metric,
        "higher": metric == "accuracy",  # accuracy improves upwards, a loss downwards
        "restore": stop.restore_best,
        "patience": stop.patience,
    }


def _loop_constants(spec) -> list[tuple[str, str]]:
    t = spec.train
    schedule = _schedule(spec)
    out = list(schedule["constants"]) if schedule is not None else []
    if t.clip_grad_norm is not None:
        out.append(("MAX_NORM", _num(t.clip_grad_norm)))
    if t.early_stopping is not None:
        out.append(("PATIENCE", str(t.early_stopping.patience)))
        out.append(("MIN_DELTA", _num(t.early_stopping.min_delta)))
    return out


def _lines(lines, printer) -> list[dict]:
    return [
        {
            "comments": line.comments,
            "target": printer(line.target),
            "code": printer(line.expr),
        }
        for line in lines
    ]


def _blocks(lines, printer) -> list[dict]:
    """The forward lines in blocks: shared ones, and ``if training: … else: …``
    where the two passes differ (mode "train" lines, then their "eval" lines)."""
    blocks: list[dict] = []
    for line in lines:
        mode = line.mode
        if mode == "both":
            if not blocks or blocks[-1]["mode"] != "both":
                blocks.append({"mode": "both", "lines": []})
            blocks[-1]["lines"].append(line)
            continue
        if (
            not blocks
            or blocks[-1]["mode"] != "if"
            or (mode == "train" and blocks[-1]["eval"])
        ):
            blocks.append({"mode": "if", "train": [], "eval": []})
        blocks[-1][mode].append(line)
    for block in blocks:
        for key in ("lines", "train", "eval"):
            if key in block:
                block[key] = _lines(block[key], printer)
    return blocks


def _dict_code(items) -> str:
    """``{"key": variable, …}`` for (key, variable) pairs."""
    return "{" + ", ".join(f'"{k}": {v}' for k, v in items) + "}"


def _buffer_init(bi, xp: str) -> str:
    b = bi.buffer
    if b.dtype == "int64":
        return f"{xp}.tensor(0)" if xp == "torch" else "np.array(0)"
    shape = (
        "(" + ", ".join(map(str, b.shape)) + ("," if len(b.shape) == 1 else "") + ")"
    )
    fill = {0.0: "zeros", 1.0: "ones"}.get(float(b.value))
    if fill:
        return f"{xp}.{fill}({shape}, dtype=DTYPE)"
    return f"{xp}.full({shape}, {_num(b.value)}, dtype=DTYPE)"


def _module_classes(prog: Program) -> tuple[list[str], dict[str, str]]:
    """The small nn.Module classes torch_module.py defines for its layers (one
    per distinct source), and the constructor code of each layer's submodule."""
    net = prog.net
    classes: dict[str, str] = {}  # source with {cls} unresolved -> class name
    sources: list[str] = []
    ctors = {}
    for layer in net.layers:
        op = layer.op
        ctor = op.module(layer.keys, list(layer.in_features), layer.out_features)
        if op.module_class is not None:
            template = op.module_class(layer.keys, "{cls}")
            if template not in classes:
                classes[template] = prog.names.classes[layer.name]
                sources.append(op.module_class(layer.keys, classes[template]))
            ctor = ctor.replace("{cls}", classes[template])
        ctors[layer.name] = ctor
    return sources, ctors


def _layer_table(net) -> list[dict]:
    rows = []
    for layer in net.layers:
        params = ", ".join(
            f"`{layer.param_name(p)}` {tuple(p.shape)}" for p in layer.params
        )
        rows.append(
            {
                "name": layer.name,
                "type": layer.op.name,
                "inputs": ", ".join(f"`{s}`" for s in layer.inputs),
                "shape": f"(N, {layer.out_features})",
                "params": params or "–",
            }
        )
    return rows


def _signatures(prog: Program) -> dict[str, str]:
    """forward()'s argument list, what a training step passes after x, and
    backward()'s arguments (params only when a gradient line reads one)."""
    b = "buffers, " if prog.buffers else ""
    sig, tail = f"params, {b}x", ""
    if prog.modal:
        sig += ", training=False"
        tail += ", training=True"
    if prog.dropout:
        sig += ", dropout_rng=None"
        tail += ", dropout_rng=dropout_rng"
    reads = any("params[" in numpy_code(line.expr) for line in prog.backward)
    backward = "params, cache" if reads else "cache"
    return {
        "forward": sig,
        "head": f"params, {b}",
        "train_tail": tail,
        "backward": backward,  # backward()'s arguments before y
    }


def context(prog: Program) -> dict:
    net, spec = prog.net, prog.net.spec
    loss = LOSSES[spec.loss.type]
    fns: set[str] = set()
    for line in (*prog.forward, *prog.backward):
        fns |= line.expr.calls()
    fns |= prog.loss_value.calls()

    l2 = spec.loss.l2 if prog.l2 else None
    code: dict[str, dict[str, Any]] = {}
    for xp, printer in (("np", numpy_code), ("torch", torch_code)):
        value = printer(prog.loss_value)
        if l2:
            terms = " + ".join(
                f"({printer(param(pi.state_name))} ** 2).sum()" for pi in prog.l2
            )
            value = f"{value} + {_num(l2.coef)} * ({terms})"
        code[xp] = {
            "forward": _blocks(prog.forward, printer),
            "backward": _lines(prog.backward, printer),
            "loss": value,
            # loss = …, its formula above it from the same IR (two readings
            # where PyTorch evaluates the textbook's formula another way)
            "loss_line": {
                "comments": loss_comments(net, loss_ctx(net, Sym("out")), "L"),
                "target": "loss",
                "code": value,
            },
        }

    # the textbook's formula (the first reading), l2 term included
    loss_formula = code["np"]["loss_line"]["comments"][0].removeprefix("L = ")

    # the nn.Module spelling of each layer: a submodule each, called in spec order
    classes, ctors = _module_classes(prog)
    names = prog.names
    inits = [(layer.name, ctors[layer.name]) for layer in net.layers]
    calls = [
        (
            names.tensors[layer.name],
            f"self.{layer.name}({', '.join(names.tensors[s] for s in layer.inputs)})",
        )
        for layer in net.layers
    ]
    criterion = loss.module(spec.loss)
    if loss.module_class is not None:
        classes.append(loss.module_class(spec.loss, names.loss_class))
        criterion = criterion.replace("{cls}", names.loss_class)
    module_loss = "criterion(out, y)"
    scale = getattr(spec.loss, "scale", 1.0)
    if scale != 1.0:
        module_loss = f"{_num(scale)} * {module_loss}"
    if l2:
        chosen = "p in model.parameters()"
        if l2.params == "weights":
            chosen = 'name, p in model.named_parameters() if name.endswith(".weight")'
        module_loss += f" + {_num(l2.coef)} * sum((p**2).sum() for {chosen})"

    d = spec.data
    data: dict = {"kind": d.kind, "labels": None}
    data_helpers: list[str] = []
    if d.kind == "inline":
        info = net.data
        data["x"] = repr([list(r) for r in info.x])
        data["y"] = repr(
            list(info.y) if loss.targets == "class" else [list(r) for r in info.y]
        )
    elif d.kind == "random":
        data.update(n=d.n, classes=d.classes, outputs=d.outputs)
    elif d.kind == "spiral":
        data.update(n_per_class=d.n_per_class, classes=d.classes, noise=_num(d.noise))
    elif d.kind == "blobs":
        data.update(n=d.n, classes=d.classes, features=d.features)
        data.update(spread=_num(d.spread), box=_num(d.box))
    elif d.kind == "teacher":
        data.update(n=d.n, features=d.features, outputs=d.outputs, hidden=d.hidden)
        data.update(noise=_num(d.noise))
    elif d.kind in ("moons", "circles"):
        data.update(n=d.n, noise=_num(d.noise), n_out=d.n // 2, n_in=d.n - d.n // 2)
        if d.kind == "circles":
            data["factor"] = _num(d.factor)
    elif d.kind == "function":
        f = function_ir(d.expr)
        data.update(n=d.n, low=_bound(d.low), high=_bound(d.high), noise=_num(d.noise))
        data.update(span=f"{_bound(d.low, True)} to {_bound(d.high, True)}")
        # y = f(x) + noise·ε: the comment and the line printed from one expression
        eps = Sym(f"rng.standard_normal(({d.n}, 1))", "ε")
        nil = "" if d.noise else " (drawn with noise 0 too: the streams never shift)"
        y = f + Const(float(d.noise)) * eps
        data["y_line"] = {
            "comments": [
                f"y = {math_text(y)}",
                "ε ~ N(0, 1), one draw per row from the data stream" + nil,
            ],
            "target": "y",
            "code": numpy_code(y),
        }
        data_helpers = numpy_helpers(f.calls())
    elif d.kind == "file":
        data["file"] = net.data.file  # a copy next to the scripts: compiler.render
    if d.kind in ("random", "spiral", "blobs", "moons", "circles") and (
        d.kind != "random" or d.classes is not None
    ):
        data["labels"] = label_targets(spec.loss.type)
        data["classes"] = (
            2 if d.kind in ("moons", "circles") else getattr(d, "classes", None)
        )
    split = None
    if d.split is not None:
        split = {"train": d.split.train, "val": d.split.val, "test": d.split.test}

    n = net.data.n
    n_train = int(d.split.train * n) if d.split is not None else n
    batch = n_train if spec.train.batch_size == "full" else spec.train.batch_size
    replacement = spec.train.sampling == "with_replacement"
    steps_per_epoch = max(n_train // batch, 1) if replacement else -(-n_train // batch)
    schedule = _schedule(spec)
    early = _early_stopping(spec)
    weight = getattr(spec.loss, "weight", None)
    pos_weight = getattr(spec.loss, "pos_weight", None)
    epochs = spec.train.epochs
    log_every = spec.train.log_every or max(1, epochs // 10)
    accuracy = "accuracy" in spec.train.metrics
    rule = accuracy_rule(spec.loss.type, net.output.out_features)
    return {
        "name": spec.name,
        "description": spec.description or spec.name,
        "spec_file": Path(spec.source).name,
        "class_name": class_name(spec.name),
        "dtype": spec.dtype,
        "seed": spec.seed,
        "epochs": epochs,
        "batch_size": spec.train.batch_size
        if spec.train.batch_size != "full"
        else None,
        "shuffle": spec.train.shuffle,
        "replacement": replacement,
        # batches() draws from the shuffle stream
        "shuffle_rng": spec.train.shuffle or replacement,
        "schedule": schedule,
        "clip": spec.train.clip_grad_norm is not None,
        "early": early,
        "loop_constants": _loop_constants(spec),
        # what train() returns
        "returned": ", ".join(
            ["losses"] + (["lrs"] if schedule else []) + (["history"] if early else [])
        ),
        "log_every": log_every,
        "opt": _optimizer(spec),
        "opt_lines": {xp: _optimizer_lines(spec, xp) for xp in ("np", "torch")},
        "class_weight": repr([float(w) for w in weight])
        if weight is not None
        else None,
        "loss_constants": [(sym.code, code, why) for sym, code, why in loss.constants],
        "data": data,
        "split": split,
        "standardize": d.standardize,
        "classification": loss.targets == "class",
        "tokens": net.tokens is not None,
        "input_features": net.input_features,
        "params": [
            {
                "state_name": pi.state_name,
                "draw": _draw_code(pi),
                "note": _init_note(pi),
            }
            for pi in prog.params
        ],
        "code": code,
        "saved_unpack": ", ".join(code for _, code in prog.saved)
        + ("," if len(prog.saved) == 1 else "")
        + " = "
        + ", ".join(f'cache["{key}"]' for key, _ in prog.saved),
        "cache_dict": _dict_code(prog.cache),
        "tensor_grads_dict": _dict_code(prog.tensor_grads),
        "output_code": prog.code_name(prog.output),
        "buffers": [
            {
                "state_name": bi.state_name,
                "init": {xp: _buffer_init(bi, xp) for xp in ("np", "torch")},
            }
            for bi in prog.buffers
        ],
        "modal": prog.modal,
        "dropout": prog.dropout,
        "seeded": spec.train.shuffle or replacement or prog.dropout,
        # load_data() draws from the data stream (generated data, or a split)
        "data_seeded": d.kind not in ("inline", "file") or d.split is not None,
        "signatures": _signatures(prog),
        "step0_tensors": list(prog.tensors),
        "layer_inputs": [(layer.name, list(layer.inputs)) for layer in net.layers],
        "step0_grads": [name for name, _ in prog.tensor_grads],
        "output": prog.output,
        "l2": bool(l2),
        "loss_formula": loss_formula,
        "helpers": [h for h in numpy_helpers(fns) if h not in data_helpers],
        # the NumPy helpers the data's formula calls (function data): every file
        "data_helpers": data_helpers,
        "needs_math": "erf" in fns,
        "torch_functional": any("F." in FUNCS[f].torch for f in fns),
        "accuracy": accuracy,
        # the last progress line's loss, told apart from the report's after it
        "last_epoch_note": (
            "the mean over this epoch's batches, each before its update"
            if spec.train.batch_size != "full"
            else "before the last update"
        )
        + (", dropout on" if prog.dropout else ""),
        "report_header": (
            "with the best epoch's parameters (restored), in evaluation mode:"
            if early and early["restore"]
            else "after the last update, in evaluation mode:"
        ),
        "total_steps": epochs * steps_per_epoch,
        "layer_table": _layer_table(net),
        "param_count": net.param_count,
        "formulas": {
            "forward": [
                {
                    "layer": ln.layer,
                    "type": net.layer(ln.layer).op.name,
                    "math": f"{math_text(ln.target)} = {math_text(ln.expr)}",
                    "shape": ln.shape,
                }
                for ln in prog.forward
                if ln.mode != "eval" and ln.kind != "buffer_update"
            ],
            "backward": [
                {
                    "layer": f"`{ln.layer}`" if ln.layer else "loss",
                    "math": f"{math_text(ln.target)} = {math_text(ln.expr)}",
                    "shape": ln.shape,
                }
                for ln in prog.backward
            ],
        },
        "correct": dict(zip(("np", "torch"), rule or ("", ""))),
        "pos_weight": repr([float(w) for w in pos_weight])
        if pos_weight is not None
        else None,
        "module": {
            "inits": inits,
            "calls": calls,
            "classes": classes,
            "functional": any("F." in source for source in classes),
            "criterion": criterion,
            "loss": module_loss,
        },
    }
