"""Every spec in specs/: its three implementations agree, its gradients match
finite differences, and the checked-in generated/ folder is what the compiler
writes today."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from mlpgen.compiler import MARKER, build, marker_text
from mlpgen.crosstest import IMPLEMENTATIONS, judge, rounding_spread

from .conftest import ROOT, SPECS, load_module, training_forward

IDS = [p.stem for p in SPECS]


def dumps_of(folder, tmp_path):
    out = {}
    for impl in IMPLEMENTATIONS:
        path = tmp_path / f"{impl}.npz"
        load_module(folder / f"{impl}.py", f"{folder.name}_{impl}").main(
            ["--quiet", "--dump", str(path)]
        )
        with np.load(path) as archive:
            out[impl] = dict(archive)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_three_implementations_agree(spec, compiled, tmp_path):
    from mlpgen.spec import load_spec

    folder = compiled(spec)
    dumps = dumps_of(folder, tmp_path)
    ref = dumps["numpy_backprop"]
    for impl in IMPLEMENTATIONS[1:]:
        assert sorted(dumps[impl]) == sorted(ref), impl
    # the contract's quantities are all there, and the run really trained
    # (init/ and final/ hold the buffers too: batchnorm's running statistics)
    params = [k[len("grads0/") :] for k in ref if k.startswith("grads0/")]
    assert params and all(f"init/{p}" in ref and f"final/{p}" in ref for p in params)
    # every epoch took a step at least (those that ran, with early stopping)
    train = load_spec(spec).train
    history = [k for k in ref if k.startswith("history/")]
    epochs = len(ref[history[0]]) if train.early_stopping else train.epochs
    assert len(ref["losses"]) >= epochs
    assert ref["losses"][-1] < ref["losses"][0]
    for p in params:
        assert not np.array_equal(ref[f"init/{p}"], ref[f"final/{p}"]), p
    # judged as `mlpgen crosstest` judges: the first step tensor by tensor
    # within the contract's tolerance; the losses and the final state within
    # it, or, on long runs that amplify rounding (polynomial's 2000 RMSprop
    # steps), within the measured rounding spread
    prog = build(spec)
    step, rest = judge(
        prog, dumps, prog.net.spec.dtype, lambda: rounding_spread(folder, tmp_path)
    )
    for r in step + rest:
        for impl, (diff, ratio) in r.diffs.items():
            assert ratio <= 1.0, (
                f"{r.key} of {impl}: |diff| {diff:.3g} is {ratio:.3g} × the "
                f"tolerance ({r.rule})"
            )
    # the spread is a measurement, never a blank cheque: the first step and
    # out0 are held to the contract's tolerance
    assert all(r.rule == "fixed" for r in step)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_match_finite_differences(spec, compiled):
    """float64 central differences of the loss against the derived gradients."""
    folder = compiled(spec)
    nb = load_module(folder / "numpy_backprop.py", f"{folder.name}_fd")
    x, y = nb.load_data()["train"]
    x = (
        x[:64] if x.dtype.kind in "iu" else x[:64].astype(np.float64)
    )  # token indices stay
    y = y[:64] if y.dtype.kind == "i" else y[:64].astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in nb.init_params().items()}
    uses_params = "params" in nb.loss_fn.__code__.co_varnames

    run = training_forward(nb, x)  # one fixed set of dropout masks

    def loss(params):
        out = run(params)[0]
        return float(nb.loss_fn(out, y, params) if uses_params else nb.loss_fn(out, y))

    reads = "params" in inspect.signature(nb.backward).parameters
    grads, _ = nb.backward(*([params] if reads else []), run(params)[1], y)
    rng = np.random.default_rng(0)
    for name, p in params.items():
        flat = p.reshape(-1)
        picks = rng.choice(flat.size, size=min(flat.size, 10), replace=False)
        numeric, noise = [], []
        derived_flat = grads[name].reshape(-1)
        for i in picks:
            h = 1e-6 * max(1.0, abs(flat[i]))
            saved = flat[i]
            flat[i] = saved + h
            up = loss(params)
            flat[i] = saved - h
            down = loss(params)
            flat[i] = saved
            quotient = (up - down) / (2 * h)
            if abs(quotient - derived_flat[i]) > 1e-7 * abs(derived_flat[i]) + 1e-10:
                # a ReLU kink within h of the point (a layernorm before it makes
                # that likelier: it divides by a small σ) bends the difference;
                # a step 100 times shorter steps over it, a wrong rule stays wrong
                flat[i] = saved + h / 100
                up = loss(params)
                flat[i] = saved - h / 100
                down = loss(params)
                flat[i] = saved
                shorter = (up - down) / (2 * h / 100)
                if abs(shorter - derived_flat[i]) < abs(quotient - derived_flat[i]):
                    quotient, h = shorter, h / 100
            numeric.append(quotient)
            # the quotient's own rounding: each loss is off by some ulps of |L|
            # (100 allowed), divided by 2h; it swamps gradients far smaller than
            # that, as in the first layers of a deep sigmoid chain
            noise.append(100 * np.finfo(np.float64).eps * max(abs(up), abs(down)) / h)
        numeric = np.array(numeric)
        derived = grads[name].reshape(-1)[picks]
        scale = np.linalg.norm(numeric) + np.linalg.norm(derived)
        assert scale > 0, name
        error = np.linalg.norm(numeric - derived)
        assert error < 1e-6 * scale + np.linalg.norm(noise), name


def _text(content: str | bytes) -> str:
    return content.decode() if isinstance(content, bytes) else content


def _without_svg(html: str) -> str:
    """index.html with its inline drawings left out: dot's SVG is compared as
    the DOT source it is drawn from (another Graphviz version draws other
    coordinates from the same source)."""
    return re.sub(r"<svg .*?</svg>", "<svg/>", html, flags=re.DOTALL)


# A number as the learning page prints it (8.91, 0.0123, 1.2e-05, 97%)
_NUMBER = re.compile(r"[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _same_results(old: str, new: str, rtol: float = 1e-2) -> bool:
    """The same page, its trained numbers allowed to differ by ``rtol``.

    A long run amplifies rounding: the tutorial's polynomial (2000 RMSprop
    steps) ends at a train loss of 8.91 on one CPU and 8.92 on another, whose
    BLAS kernels sum in another order (crosstest's rounding spread measures
    the same drift). Every word and every other character must match.
    """
    if old == new:
        return True
    old_numbers, new_numbers = _NUMBER.findall(old), _NUMBER.findall(new)
    if _NUMBER.split(old) != _NUMBER.split(new) or len(old_numbers) != len(new_numbers):
        return False
    for a, b in zip(old_numbers, new_numbers):
        a, b = (float(t.replace("−", "-")) for t in (a, b))
        if abs(a - b) > rtol * max(abs(a), abs(b)):
            return False
    return True


def test_same_results_tolerates_only_the_numbers_of_a_run():
    assert _same_results("| train | 8.91 |", "| train | 8.92 |")
    assert not _same_results("| train | 8.91 |", "| train | 9.91 |")
    assert not _same_results("| train | 8.91 |", "| test | 8.91 |")
    assert not _same_results("loss 8.91", "loss 8.91 and more")


@pytest.mark.dot
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_generated_gallery_code_is_fresh(spec, compiled):
    """The quick part of the check below: every file a plain compile writes but
    the learning page (which --plot fills with results) is the same."""
    fresh = compiled(spec)
    checked_in = ROOT / "generated" / fresh.name
    names = [
        p.name
        for p in fresh.iterdir()
        if p.name not in (MARKER, "README.md", "__pycache__") and p.suffix != ".svg"
    ]
    stale = []
    for name in names:
        old, new = (checked_in / name).read_bytes(), (fresh / name).read_bytes()
        if name == "index.html":
            old, new = (_without_svg(t.decode()).encode() for t in (old, new))
        if old != new:
            stale.append(name)
    assert not stale, (
        f"stale: {stale}; regenerate with mlpgen compile --plot specs/*.yaml"
    )


@pytest.mark.dot
@pytest.mark.slow  # trains each network, as compile --plot does
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_generated_gallery_is_fresh(spec):
    """generated/NAME/ holds exactly what `mlpgen compile --plot` writes today
    (the page and its numbers; the figures are checked to be there and to be
    PNGs without version strings, as drawing them needs torch runs)."""
    from mlpgen.compiler import build, render

    prog = build(spec)
    fresh = render(prog, plot=True, draw=False)
    checked_in = ROOT / "generated" / prog.net.spec.name
    assert checked_in.is_dir(), (
        f"generated/{checked_in.name} is missing: run mlpgen compile {spec}"
    )
    on_disk = sorted(
        p.name for p in checked_in.iterdir() if p.name not in ("__pycache__", MARKER)
    )
    figures = [n for n in on_disk if n.endswith(".png")]
    assert sorted(fresh) == [n for n in on_disk if n not in figures]
    stale = []
    for name, content in fresh.items():
        if name.endswith(".svg"):
            continue
        old = (checked_in / name).read_bytes()
        new = content if isinstance(content, bytes) else content.encode()
        if name == "index.html":
            old, new = _without_svg(old.decode()), _without_svg(new.decode())
        if name in ("README.md", "index.html"):  # they show the trained numbers
            same = _same_results(_text(old), _text(new))
        else:
            same = old == new
        if not same:
            stale.append(name)
    assert not stale, (
        f"stale: {stale}; regenerate with mlpgen compile --plot specs/*.yaml"
    )
    # the marker lists the same files, the figures included
    listed = (checked_in / MARKER).read_text(encoding="utf-8")
    assert listed == marker_text(on_disk), "stale marker"
    # the learning page shows the figures that `compile --plot` draws, and only those
    page = fresh["README.md"]
    assert sorted(figures) == sorted(set(re.findall(r"\(([a-z_]+\.png)\)", page)))
    for name in figures:
        png = (checked_in / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, name
        assert (
            b"Software" not in png
        )  # no version strings: the same curves, the same bytes
