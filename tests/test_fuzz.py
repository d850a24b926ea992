"""Fuzzing the compiler with mutated gallery specs.

Hypothesis takes a spec of specs/ as data and damages it: drops, adds,
retypes and corrupts keys anywhere, changes layer and loss types, and rewires
the ``inputs`` of the layers into random DAGs (and non-DAGs). Whatever comes
out, ``mlpgen compile`` must either compile it or reject it with a SpecError:
any other exception is a bug. A small sample of gentler mutations is compiled
and cross-tested: the three generated implementations, imported in-process
and trained for two epochs, must agree within the contract's tolerances.

    pytest tests/test_fuzz.py                            # 400 specs, always the same
    pytest tests/test_fuzz.py --hypothesis-profile=long  # 2,000 fresh ones
"""

from __future__ import annotations

import itertools
import json
import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from mlpgen.compiler import build, render, write_atomically
from mlpgen.crosstest import IMPLEMENTATIONS, compare
from mlpgen.ops import LAYERS, LOSSES
from mlpgen.spec import DATA_KINDS, OPTIMIZERS, SpecError, _read_yaml

from .conftest import ROOT, SPECS, hypothesis_profile, load_module

BASES = {p.stem: _read_yaml(p.read_text(encoding="utf-8"), str(p)) for p in SPECS}

# The profile (tests/conftest.py) sets the scale: the default profile compiles
# 400 mutated specs and cross-tests 8 (derandomised: the same ones each run),
# the long profile 2,000 and 100 freshly drawn ones.
LONG = hypothesis_profile() == "long"
CHEAP = settings(
    max_examples=2000 if LONG else 400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CROSS_TESTED = settings(
    max_examples=100 if LONG else 8,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every key the format knows, to add in the wrong places.
KEYS = sorted(
    {
        "mlpgen", "name", "description", "dtype", "seed", "data", "model", "loss",
        "train", "kind", "x", "y", "n", "outputs", "classes", "n_per_class", "noise",
        "split", "val", "test", "standardize", "path", "target", "input", "layers",
        "type", "inputs", "out", "bias", "init", "bias_init", "p", "negative_slope",
        "alpha", "approximate", "expr", "scheme", "low", "high", "mean", "std",
        "gain", "a", "mode", "nonlinearity", "value", "reduction", "scale", "weight",
        "pos_weight", "l2", "coef", "params", "optimizer", "lr", "momentum",
        "dampening", "nesterov", "weight_decay", "betas", "eps", "amsgrad",
        "centered", "epochs", "batch_size", "shuffle", "metrics", "log_every",
        "features", "hidden", "spread", "box",
    }
)  # fmt: skip
TYPES = sorted({*LAYERS, *LOSSES, *OPTIMIZERS, *DATA_KINDS})
SPECIAL = [0, -1, 1, 2, 3, 0.5, 1.0, -0.5, 1e-12, 1e300, 10**13, 2**63, "", "full",
           "x", "none", "tanh", "mean", "sum", "float32", "accuracy", True, False,
           None, [], {}, [1], [[0, 1]], math.inf, math.nan]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(SPECIAL)
    | st.sampled_from(KEYS + TYPES)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4
        )
    ),
    max_leaves=8,
)


def _paths(value, prefix=()):
    """Every key path in the spec, containers first."""
    yield prefix
    if isinstance(value, (dict, list)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _paths(item, (*prefix, key))


def _get(spec, path):
    for part in path:
        spec = spec[part]
    return spec


def _corrupted(draw, value):
    """A plausible-looking wrong value in place of ``value``."""
    if isinstance(value, bool):
        return draw(st.sampled_from([not value, "true", 1, None]))
    if isinstance(value, (int, float)):
        return draw(
            st.sampled_from(
                [0, -value, value * 10**6, value + 0.5, float(value), 10**13, -1, 2]
            )
        )
    if isinstance(value, str):
        if value in TYPES:
            return draw(st.sampled_from(TYPES))
        if not value:
            return draw(scalars)
        i = draw(st.integers(0, len(value) - 1))
        return draw(
            st.sampled_from(
                [
                    value[:i] + value[i + 1 :],
                    value.upper(),
                    "",
                    value + "_",
                    value[::-1],
                ]
            )
        )
    if isinstance(value, list):
        if not value:
            return [draw(values)]
        i = draw(st.integers(0, len(value) - 1))
        return draw(
            st.sampled_from([value[:i] + value[i + 1 :], value + [value[i]], []])
        )
    if isinstance(value, dict):
        return {}
    return draw(values)


def _layers(spec) -> list:
    """The spec's layer list, or [] when the mutations broke the way to it."""
    model = spec.get("model")
    layers = model.get("layers") if isinstance(model, dict) else None
    return layers if isinstance(layers, list) else []


def _names(layers: list) -> list[str]:
    """Each layer's name, its default name <type><k> when it has none."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        if not isinstance(layer, dict):
            names.append("?")
            continue
        kind = str(layer.get("type"))
        counts[kind] = counts.get(kind, 0) + 1
        names.append(str(layer.get("name", f"{kind}{counts[kind]}")))
    return names


def _rewired(draw, spec):
    """Random ``inputs``: mostly earlier layers and x, now and then anything."""
    layers = _layers(spec)
    names = _names(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not draw(st.booleans()):
            continue
        pool = st.sampled_from(["x", *names[:i]])
        if draw(st.integers(0, 9)) == 0:
            pool = pool | st.sampled_from([*names[i:], "nope"])
        layer["inputs"] = draw(st.lists(pool, min_size=1, max_size=3, unique=True))


def _mutate(draw, spec):
    """One to three mutations of ``spec``, in place: anything goes."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "add", "retype", "corrupt", "rewire"]))
        if kind == "rewire":
            _rewired(draw, spec)
            continue
        paths = [p for p in _paths(spec) if p]
        path = draw(st.sampled_from(paths))
        parent, key = _get(spec, path[:-1]), path[-1]
        if kind == "drop":
            del parent[key]
        elif kind == "add":
            target = _get(spec, draw(st.sampled_from([(), *paths])))
            if isinstance(target, dict):
                target[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = draw(values)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(values))
        elif kind == "retype":
            parent[key] = draw(values)
        else:
            parent[key] = _corrupted(draw, parent[key])


# Layers with one input and as many features out as in: interchangeable.
SAME_SHAPE = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu",
              "silu", "softplus", "softmax", "log_softmax", "dropout")  # fmt: skip


def _mutate_gently(draw, spec):
    """One to three mutations that keep the spec trainable, mostly valid.

    Swap an activation for another, change a hidden width or a dropout rate,
    take a layer's input from any earlier layer (a skip), draw another seed.
    """
    layers = _layers(spec)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["swap", "width", "skip", "seed"]))
        i = draw(st.integers(0, len(layers) - 1))
        layer = layers[i]
        if kind == "swap" and layer["type"] in SAME_SHAPE:
            new = draw(st.sampled_from(SAME_SHAPE))
            layers[i] = {k: v for k, v in layer.items() if k in ("name", "inputs")}
            layers[i]["type"] = new
            if new == "dropout":
                layers[i]["p"] = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
        elif kind == "width" and layer["type"] == "linear" and i < len(layers) - 1:
            layer["out"] = draw(st.integers(1, 8))
        elif kind == "skip" and i > 0 and layer["type"] not in ("add", "concat"):
            layer["inputs"] = [draw(st.sampled_from(["x", *_names(layers)[:i]]))]
        elif kind == "seed":
            spec["seed"] = draw(st.integers(0, 2**32))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Where mutated specs are written: beside a copy of specs/data."""
    path = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "specs" / "data", path / "data")
    return path


_count = itertools.count()


def _write(folder, spec) -> object:
    path = folder / f"fuzz{next(_count)}.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def _draw_spec(data, gentle: bool) -> dict:
    base = data.draw(st.sampled_from(sorted(BASES)), label="base")
    spec = json.loads(json.dumps(BASES[base]))
    (_mutate_gently if gentle else _mutate)(data.draw, spec)
    note(json.dumps(spec)[:3000])
    return spec


@pytest.mark.slow
@CHEAP
@given(data=st.data())
def test_a_mutated_spec_compiles_or_is_a_spec_error(folder, data):
    path = _write(folder, _draw_spec(data, gentle=False))
    try:
        prog = build(path)
    except SpecError as e:
        assert e.problems, "a SpecError without problems"
        assert all("\n" not in line for line in e.lines())
        event("rejected")
        return
    event("compiled")
    files = render(prog)
    assert {"numpy_backprop.py", "torch_manual.py", "torch_module.py"} <= set(files)


@pytest.mark.slow
@CROSS_TESTED
@given(data=st.data())
def test_a_gently_mutated_spec_that_compiles_passes_its_cross_test(folder, data):
    path = _write(folder, _draw_spec(data, gentle=True))
    try:
        prog = build(path)
    except SpecError:
        event("rejected")
        return
    event("cross-tested")
    out = folder / f"out{next(_count)}" / prog.net.spec.name
    write_atomically(render(prog), out)
    dumps = {}
    for impl in IMPLEMENTATIONS:
        dump = out / f"{impl}.npz"
        module = load_module(out / f"{impl}.py", f"{out.parent.name}_{impl}")
        module.main(["--quiet", "--epochs", "2", "--dump", str(dump)])
        with np.load(dump) as archive:
            dumps[impl] = dict(archive)
    # a damaged spec may train into overflow; agreement is about finite numbers
    assume(all(np.isfinite(v).all() for v in dumps["numpy_backprop"].values()))
    for quantity, impl, diff, ratio in compare(dumps, prog.net.spec.dtype):
        assert ratio <= 1.0, (
            f"{quantity} of {impl}: {diff:.3g} ({ratio:.3g} × tolerance)"
        )
