"""Cross-check of makemore's three implementations: same data, same start, same numbers.

Runs numpy_backprop.py, torch_manual.py and torch_module.py from this folder
with --dump, and asserts that they agree element by element on every array
(x, y, out0, init/*, grads0/*, losses, final/*), within
|a − b| <= RTOL·|b| + MTOL·max|b| + ATOL (float64). Then checks the derived
gradients of numpy_backprop.py against float64 central differences.

    python -m pytest test_crosscheck.py
"""

import importlib.util
import pathlib

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
IMPLEMENTATIONS = ("numpy_backprop", "torch_manual", "torch_module")
RTOL, MTOL, ATOL = 1e-10, 1e-13, 1e-12


def load(name):
    """Import one implementation from this folder."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    out = {}
    for name in IMPLEMENTATIONS:
        path = tmp_path_factory.mktemp(name) / "dump.npz"
        load(name).main(["--quiet", "--dump", str(path)])
        with np.load(path) as archive:
            out[name] = dict(archive)
    return out


def largest_violation(a, b):
    """max(|a − b| − tolerance), <= 0 when a agrees with b everywhere."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    tolerance = RTOL * np.abs(b) + MTOL * np.abs(b).max() + ATOL
    return float((np.abs(a - b) - tolerance).max())


@pytest.mark.parametrize("name", ["torch_manual", "torch_module"])
def test_agrees_with_numpy_backprop(dumps, name):
    reference, other = dumps["numpy_backprop"], dumps[name]
    assert sorted(other) == sorted(reference)
    for key, expected in reference.items():
        assert other[key].shape == expected.shape, key
        assert largest_violation(other[key], expected) <= 0, key


def test_every_quantity_is_dumped(dumps):
    keys = set(dumps["numpy_backprop"])
    params = [
        "emb.weight",
        "fc1.weight",
        "bn.weight",
        "bn.bias",
        "logits.weight",
        "logits.bias",
    ]
    state = params + [
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    tensors = ["x", "emb", "fc1", "bn", "h", "logits"]
    tensor_grads = ["logits", "h", "bn", "fc1", "emb"]
    expected = {"x", "y", "out0", "losses"}
    expected |= {f"grads0/{p}" for p in params}
    expected |= {f"{prefix}/{s}" for prefix in ("init", "final") for s in state}
    expected |= {f"step0/{t}" for t in tensors} | {f"step0/d_{t}" for t in tensor_grads}
    assert keys == expected
    assert len(dumps["numpy_backprop"]["losses"]) == 1050


def test_gradients_match_finite_differences():
    """The derived gradients against float64 central differences of the loss."""
    nb = load("numpy_backprop")
    x, y = nb.load_data()["train"]
    x, y = x[:32], y[:32]
    params = {k: v.astype(np.float64) for k, v in nb.init_params().items()}
    buffers = nb.init_buffers()

    def run(params):
        # training mode: the loss is a smooth function of the parameters
        return nb.forward(params, buffers, x, training=True)

    def loss(params):
        return float(nb.loss_fn(run(params)[0], y))

    grads, _ = nb.backward(params, run(params)[1], y)
    rng = np.random.default_rng(0)
    for name, p in params.items():
        flat = p.reshape(-1)
        picks = rng.choice(flat.size, size=min(flat.size, 12), replace=False)
        numeric, derived = [], []
        for i in picks:
            h = 1e-6 * max(1.0, abs(flat[i]))
            saved = flat[i]
            flat[i] = saved + h
            up = loss(params)
            flat[i] = saved - h
            down = loss(params)
            flat[i] = saved
            numeric.append((up - down) / (2 * h))
            derived.append(grads[name].reshape(-1)[i])
        numeric, derived = np.array(numeric), np.array(derived)
        scale = max(np.linalg.norm(numeric) + np.linalg.norm(derived), 1e-12)
        assert np.linalg.norm(numeric - derived) / scale < 1e-6, name
