"""Cross-check of cs231n_solver's three implementations: same data, same start, same numbers.

Runs numpy_backprop.py, torch_manual.py and torch_module.py from this folder
with --dump, and asserts that they agree element by element on every array
(x, y, out0, init/*, grads0/*, step0/*, losses, final/*), within
|a − b| <= RTOL·|b| + MTOL·max|b| + ATOL (float64); for a parameter's
gradient, a sum over the batch, max|b| is taken over the terms summed. Over
many steps training can amplify rounding: losses and final/* then agree when
they differ by at most SPREAD_FACTOR times the network's own rounding spread,
measured by re-running numpy_backprop.py with its computations nudged by one
unit in the last place. Then checks the derived gradients of numpy_backprop.py
against float64 finite differences, with a step and a bound that follow the
loss's rounding, and entries next to a kink (ReLU, hinge) recognised.

    python -m pytest test_crosscheck.py -s   # -s shows the measured errors
"""

import importlib.util
import pathlib
import sys

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


PERTURBED_RUNS, SPREAD_FACTOR = 3, 10.0
LAYER_INPUTS = {
    "fc1": ["x"],
    "relu1": ["fc1"],
    "fc2": ["relu1"],
    "relu2": ["fc2"],
    "scores": ["relu2"],
}


def tolerance(b):
    """The element-wise tolerance around the reference values b."""
    scale = np.where(np.isfinite(b), np.abs(b), 0.0)
    return RTOL * scale + (MTOL * scale.max() if scale.size else 0.0) + ATOL


def terms_floor(reference, key):
    """MTOL times the largest term of a parameter gradient's sum over the batch:
    max|∂L/∂(layer output)|·max(1, max|layer input|), from the first step."""
    if not key.startswith("grads0/"):
        return 0.0
    layer = key.split("/", 1)[1].rsplit(".", 1)[0]
    g = reference.get(f"step0/d_{layer}")
    if g is None or layer not in LAYER_INPUTS:
        return 0.0
    xs = [
        reference[f"step0/{i}"]
        for i in LAYER_INPUTS[layer]
        if f"step0/{i}" in reference
    ]
    x = max((float(np.abs(v).max()) for v in xs if v.size), default=1.0)
    return MTOL * float(np.abs(g).max()) * max(1.0, x) if g.size else 0.0


def largest_violation(a, b, allowed=None):
    """max(|a − b| − tolerance), <= 0 when a agrees with b everywhere (NaNs in the
    same places count as equal)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float((diff - (tolerance(b) if allowed is None else allowed)).max())


def drifts(key):
    """What rounding, amplified by training, can move: the loss of every step,
    the final state, the monitored value of every epoch."""
    return key == "losses" or key.startswith(("final/", "history/"))


def perturbed_run(tmp_path, seed):
    """numpy_backprop.py run here with every value its forward pass keeps and
    its backward pass reads, and every gradient it returns, nudged one ulp up
    or down at random."""
    nb = load("numpy_backprop")
    rng = np.random.default_rng(seed)
    inner = nb.backward

    def nudge(a):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            return a
        up, down = np.nextafter(a, np.inf), np.nextafter(a, -np.inf)
        return np.where(rng.random(a.shape) < 0.5, up, down).astype(a.dtype)

    def backward(*args):
        # the values it reads (the forward cache, and the parameters when it takes them)
        args = [
            {k: nudge(v) for k, v in a.items()} if isinstance(a, dict) else a
            for a in args
        ]
        grads, tensor_grads = inner(*args)
        return {k: nudge(g) for k, g in grads.items()}, tensor_grads

    forward = nb.forward

    def nudged_forward(*args, **kwargs):
        # the output and every value the forward pass keeps
        out, cache = forward(*args, **kwargs)
        return nudge(out), {k: nudge(v) for k, v in cache.items()}

    nb.backward, nb.forward = backward, nudged_forward
    path = tmp_path / f"perturbed{seed}.npz"
    with np.errstate(all="ignore"):
        try:
            nb.main(["--quiet", "--dump", str(path)])
        except SystemExit:  # diverged: the dump was written first
            pass
    with np.load(path) as archive:
        return dict(archive)


@pytest.fixture(scope="module")
def spread(dumps, tmp_path_factory):
    """The rounding spread of losses and final/*: how far PERTURBED_RUNS perturbed
    runs move from the unperturbed one and from each other (the losses' spread
    is the largest up to each step; a tensor's, the largest of its elements)."""
    folder = tmp_path_factory.mktemp("spread")
    runs = [dumps["numpy_backprop"]]
    runs += [perturbed_run(folder, seed) for seed in range(1, PERTURBED_RUNS + 1)]
    out = {}
    for key in runs[0]:
        if not drifts(key):
            continue
        values = [np.asarray(r[key], dtype=np.float64) for r in runs]
        s = np.zeros(values[0].shape)
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                if a.shape != b.shape:
                    s = np.full(s.shape, np.inf)
                    continue
                with np.errstate(invalid="ignore"):
                    d = np.abs(a - b)
                s = np.maximum(s, np.where(np.isnan(d), np.inf, d))
        if s.size:
            per_step = key == "losses" or key.startswith("history/")
            s = np.maximum.accumulate(s) if per_step else np.full(s.shape, s.max())
        out[key] = s
    # the state drifts as a whole: each final/ tensor gets the largest spread of any
    state = max(
        (float(v.max()) for k, v in out.items() if k.startswith("final/") and v.size),
        default=0.0,
    )
    return {
        k: np.full(v.shape, state) if k.startswith("final/") else v
        for k, v in out.items()
    }


@pytest.mark.parametrize("name", ["torch_manual", "torch_module"])
def test_agrees_with_numpy_backprop(dumps, name, request):
    reference, other = dumps["numpy_backprop"], dumps[name]
    assert sorted(other) == sorted(reference)
    for key, expected in reference.items():
        assert other[key].shape == expected.shape, key
        allowed = np.maximum(tolerance(expected), terms_floor(reference, key))
        if largest_violation(other[key], expected, allowed) <= 0:
            continue
        # losses, final/* and history/* only: against the network's own rounding spread
        assert drifts(key), key
        s = request.getfixturevalue("spread")[key]
        allowed = np.maximum(tolerance(expected), SPREAD_FACTOR * s)
        print(
            f"{name} {key}: beyond the fixed tolerance; rounding spread up to {s.max():.3e}"
        )
        assert largest_violation(other[key], expected, allowed) <= 0, key


def test_every_quantity_is_dumped(dumps):
    keys = set(dumps["numpy_backprop"])
    params = [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "scores.weight",
        "scores.bias",
    ]
    state = params + []
    tensors = ["x", "fc1", "relu1", "fc2", "relu2", "scores"]
    tensor_grads = ["scores", "relu2", "fc2", "relu1", "fc1"]
    expected = {"x", "y", "out0", "losses", "lrs", "history/val_accuracy"}
    expected |= {f"grads0/{p}" for p in params}
    expected |= {f"{prefix}/{s}" for prefix in ("init", "final") for s in state}
    expected |= {f"step0/{t}" for t in tensors} | {f"step0/d_{t}" for t in tensor_grads}
    assert keys == expected
    # early stopping: whole epochs of 4 steps, at most 60 of them
    steps = len(dumps["numpy_backprop"]["losses"])
    assert steps % 4 == 0 and 0 < steps <= 240


def estimates(loss, flat, i, h):
    """Richardson-extrapolated finite differences of the loss along entry i of
    a parameter: central, forward and backward, each at steps h and h/2 (the
    pair says how far it can be trusted), and the loss's own rounding."""
    saved = flat[i]
    at = {}
    for k in (1, -1, 0.5, -0.5, 0.25, -0.25, 0):
        flat[i] = saved + k * h
        at[k] = loss()
    flat[i] = saved

    def central(a):
        return (at[a] - at[-a]) / (2 * a * h)

    def forward(a):
        return (at[a] - at[0]) / (a * h)

    def backward(a):
        return (at[0] - at[-a]) / (a * h)

    out = {
        # error O(h⁴) after Richardson: (4·D(h/2) − D(h))/3
        "central": (
            (4 * central(0.5) - central(1)) / 3,
            (4 * central(0.25) - central(0.5)) / 3,
        ),
        # one-sided, O(h²) after Richardson: 2·D(h/2) − D(h); at a kink (ReLU at 0,
        # hinge at its margin) the derived gradient is one of the one-sided slopes
        "forward": (2 * forward(0.5) - forward(1), 2 * forward(0.25) - forward(0.5)),
        "backward": (
            2 * backward(0.5) - backward(1),
            2 * backward(0.25) - backward(0.5),
        ),
    }
    # rounding of the loss, divided by the smallest step that the differences use
    noise = (
        64 * np.finfo(np.float64).eps * max(abs(v) for v in at.values()) / (0.25 * h)
    )
    return out, noise


def test_gradients_match_finite_differences():
    """The derived gradients of numpy_backprop.py against float64 finite differences.

    Each entry's step follows its parameter's scale; the bound is the
    difference between two step sizes (how far the estimate can be trusted)
    plus the loss's rounding divided by the step, and a relative 1e-6. An entry
    with a kink next to it (the estimates at two step sizes disagree, the
    one-sided ones too) is skipped and counted; CS231n's relative error is
    printed per parameter (about 1e-7 or less is right).
    """
    nb = load("numpy_backprop")
    x, y = nb.load_data()["train"]
    x, y = x[:50], y[:50]
    x = x.astype(np.float64)
    params = {k: v.astype(np.float64) for k, v in nb.init_params().items()}

    def run(params):
        # training mode: the loss is a smooth function of the parameters
        return nb.forward(params, x)

    def loss():
        return float(nb.loss_fn(run(params)[0], y, params))

    grads, _ = nb.backward(params, run(params)[1], y)
    rng = np.random.default_rng(0)
    failures = []
    for name, p in params.items():
        flat = p.reshape(-1)
        picks = rng.choice(flat.size, size=min(flat.size, 12), replace=False)
        h = 1e-3 * max(float(np.sqrt(np.mean(flat**2))), 1e-2)
        checked, skipped, worst = 0, 0, 0.0
        for i in picks:
            derived = float(grads[name].reshape(-1)[i])
            found, noise = estimates(loss, flat, i, h)
            trusted = False
            for coarse, fine in found.values():
                bound = 10 * (abs(coarse - fine) + noise) + 1e-6 * (
                    abs(derived) + abs(fine)
                )
                smooth = (
                    abs(coarse - fine) <= 1e-3 * (abs(fine) + abs(derived)) + 10 * noise
                )
                if smooth and abs(derived - fine) <= bound:
                    trusted = True
                    worst = max(
                        worst,
                        abs(derived - fine) / max(abs(derived) + abs(fine), 1e-300),
                    )
                    break
            if trusted:
                checked += 1
                continue
            if not any(
                abs(coarse - fine) <= 1e-3 * (abs(fine) + abs(derived)) + 10 * noise
                for coarse, fine in found.values()
            ):
                skipped += 1  # a kink inside the steps: no estimate can be trusted here
                continue
            failures.append(
                f"{name}[{i}]: derived {derived:.6e}, finite differences {found['central'][1]:.6e}"
            )
        print(
            f"{name}: relative error {worst:.1e} over {checked} entries, {skipped} next to a kink",
            file=sys.stderr,
        )
    assert not failures, "\n".join(failures)
