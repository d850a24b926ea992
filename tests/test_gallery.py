"""Every spec in specs/: its three implementations agree, its gradients match
finite differences, and the checked-in generated/ folder is what the compiler
writes today."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest

from mlpgen.compiler import MARKER, marker_text
from mlpgen.crosstest import IMPLEMENTATIONS, compare

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
    params = [k[len("init/") :] for k in ref if k.startswith("init/")]
    assert params and all(f"grads0/{p}" in ref and f"final/{p}" in ref for p in params)
    assert len(ref["losses"]) >= load_spec(spec).train.epochs
    assert ref["losses"][-1] < ref["losses"][0]
    for p in params:
        assert not np.array_equal(ref[f"init/{p}"], ref[f"final/{p}"]), p
    rows = compare(dumps, load_spec(spec).dtype)
    worst = {(q, impl): ratio for q, impl, _, ratio in rows}
    for key, ratio in worst.items():
        assert ratio <= 1.0, f"{key}: difference is {ratio:.3g} × the tolerance"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_match_finite_differences(spec, compiled):
    """float64 central differences of the loss against the derived gradients."""
    folder = compiled(spec)
    nb = load_module(folder / "numpy_backprop.py", f"{folder.name}_fd")
    x, y = nb.load_data()["train"]
    x = x[:64].astype(np.float64)
    y = y[:64] if y.dtype.kind == "i" else y[:64].astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in nb.init_params().items()}
    uses_params = "params" in nb.loss_fn.__code__.co_varnames

    run = training_forward(nb, x)  # one fixed set of dropout masks

    def loss(params):
        out = run(params)[0]
        return float(nb.loss_fn(out, y, params) if uses_params else nb.loss_fn(out, y))

    grads, _ = nb.backward(params, run(params)[1], y)
    rng = np.random.default_rng(0)
    for name, p in params.items():
        flat = p.reshape(-1)
        picks = rng.choice(flat.size, size=min(flat.size, 10), replace=False)
        numeric = []
        for i in picks:
            h = 1e-6 * max(1.0, abs(flat[i]))
            saved = flat[i]
            flat[i] = saved + h
            up = loss(params)
            flat[i] = saved - h
            down = loss(params)
            flat[i] = saved
            numeric.append((up - down) / (2 * h))
        numeric = np.array(numeric)
        derived = grads[name].reshape(-1)[picks]
        scale = np.linalg.norm(numeric) + np.linalg.norm(derived)
        assert scale > 0, name
        assert np.linalg.norm(numeric - derived) / scale < 1e-6, name


@pytest.mark.dot
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_generated_gallery_is_fresh(spec, compiled):
    """generated/NAME/ holds exactly what the compiler writes today."""
    fresh = compiled(spec)
    checked_in = ROOT / "generated" / fresh.name
    assert checked_in.is_dir(), f"generated/{fresh.name} is missing: run mlpgen compile {spec}"
    ignore = {"__pycache__", "loss.png", MARKER}
    names = sorted(p.name for p in fresh.iterdir() if p.name not in ignore)
    assert names == sorted(p.name for p in checked_in.iterdir() if p.name not in ignore)
    texts = [n for n in names if not n.endswith((".svg", ".png"))]
    _, mismatch, errors = filecmp.cmpfiles(fresh, checked_in, texts, shallow=False)
    assert not mismatch and not errors, (
        f"stale: {mismatch + errors}; regenerate with mlpgen compile --plot specs/*.yaml"
    )
    # the marker lists the same files, and loss.png (compile --plot)
    listed = (checked_in / MARKER).read_text(encoding="utf-8")
    assert listed == marker_text([*names, "loss.png"]), "stale marker"
    # the learning page shows the loss curves that `compile --plot` draws
    png = (checked_in / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000, fresh.name
    assert b"Software" not in png  # no version strings: the same curves, the same bytes
