"""batchnorm, layernorm and embedding: the three implementations agree with
each other (and so with PyTorch's nn.BatchNorm1d, nn.LayerNorm, nn.Embedding)
in float64 and float32, every tensor of the first step included; the derived
gradients match finite differences; training and evaluation mode, the
running statistics and the batch-of-one refusal behave as PyTorch's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlpgen.compiler import build, render, write_atomically
from mlpgen.crosstest import IMPLEMENTATIONS, compare, violation
from mlpgen.spec import SpecError

from .conftest import load_module
from .test_properties import finite_difference_error, run_all


def spec_with(layers, dtype="float64", batch_size=8, loss="cross_entropy", **extra):
    spec = {
        "name": "norm",
        "dtype": dtype,
        "data": {"kind": "spiral", "n_per_class": 10, "classes": 3},
        "model": {"layers": layers},
        "loss": {"type": loss},
        "train": {
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "epochs": 3,
            "batch_size": batch_size,
            "shuffle": True,
        },
    }
    spec.update(extra)
    return spec


def compiled(tmp_path, spec):
    path = tmp_path / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    folder = tmp_path / "out"
    write_atomically(render(build(path)), folder)
    return folder


def assert_agree(dumps, dtype):
    ref = dumps["numpy_backprop"]
    for impl in IMPLEMENTATIONS[1:]:
        assert sorted(dumps[impl]) == sorted(ref), impl
    for quantity, impl, diff, ratio in compare(dumps, dtype):
        assert ratio <= 1, (
            f"{quantity} of {impl}: {diff:.3g} is {ratio:.3g} × the tolerance"
        )
    # every tensor of the first step, one by one
    for impl in IMPLEMENTATIONS[1:]:
        for key in (k for k in ref if k.startswith("step0/")):
            diff, ratio = violation(dumps[impl][key], ref[key], dtype)
            assert ratio <= 1, (
                f"{key} of {impl}: {diff:.3g} is {ratio:.3g} × the tolerance"
            )


FC1 = {"name": "fc1", "type": "linear", "out": 5, "bias": False}
HEAD = {"name": "head", "type": "linear", "out": 3}
NETWORKS = {
    "batchnorm": [FC1, {"name": "bn1", "type": "batchnorm"}, {"type": "tanh"}, HEAD],
    "batchnorm_cumulative": [
        FC1,
        {"name": "bn1", "type": "batchnorm", "momentum": None, "eps": 1e-3},
        {"type": "relu"},
        HEAD,
    ],
    "batchnorm_plain_on_x": [
        {"name": "bn0", "type": "batchnorm", "affine": False, "momentum": 0.5},
        FC1,
        # (bn0's output has mean 0, and so has fc1's: bn1's running mean would
        # be rounding noise alone, which no tolerance relative to it can judge)
        {"type": "sigmoid"},
        {
            "name": "bn1",
            "type": "batchnorm",
            "init": {"scheme": "normal", "mean": 1.0, "std": 0.1},
            "bias_init": {"scheme": "normal", "std": 0.1},
        },
        HEAD,
    ],
    "layernorm": [FC1, {"name": "ln1", "type": "layernorm"}, {"type": "gelu"}, HEAD],
    "layernorm_plain": [
        FC1,
        {"name": "ln1", "type": "layernorm", "affine": False, "eps": 1e-3},
        HEAD,
    ],
    # after add and concat, before dropout, at the output
    "dag": [
        FC1,
        {"name": "a1", "type": "tanh"},
        {"name": "sum1", "type": "add", "inputs": ["fc1", "a1"]},
        {"name": "bn1", "type": "batchnorm", "inputs": ["sum1"]},
        {"name": "cat1", "type": "concat", "inputs": ["bn1", "a1"]},
        {"name": "ln1", "type": "layernorm"},
        {"name": "drop", "type": "dropout", "p": 0.2},
        {"name": "fc2", "type": "linear", "out": 3, "bias": False},
        {"name": "bn_out", "type": "batchnorm"},
    ],
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_the_three_implementations_agree(network, dtype, tmp_path):
    folder = compiled(tmp_path, spec_with(NETWORKS[network], dtype))
    dumps, _ = run_all(folder)
    assert_agree(dumps, dtype)
    ref = dumps["numpy_backprop"]
    # the whole state_dict(): buffers in init/ and final/, parameters in grads0/
    for layer in NETWORKS[network]:
        if layer.get("type") == "batchnorm":
            name = layer["name"]
            assert (
                ref[f"final/{name}.num_batches_tracked"] == 2 * 4
            )  # 2 epochs of 30 rows in batches of 8
            assert ref[f"init/{name}.num_batches_tracked"].dtype == np.int64
            assert ref[f"final/{name}.running_var"].dtype == np.float64
            assert f"grads0/{name}.running_mean" not in ref
    assert any(k.startswith("step0/d_") for k in ref)


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_the_derived_gradients_match_finite_differences(network, tmp_path):
    spec = spec_with(NETWORKS[network])
    folder = compiled(tmp_path, spec)
    nb = load_module(folder / "numpy_backprop.py", f"fd_{network}")
    assert finite_difference_error(nb, spec) < 1e-6


def test_training_normalises_with_the_batch_and_evaluation_with_running_statistics(
    tmp_path,
):
    layers = [{"name": "bn1", "type": "batchnorm", "momentum": None}, HEAD]
    folder = compiled(tmp_path, spec_with(layers, batch_size="full"))
    nb = load_module(folder / "numpy_backprop.py", "bn_modes")
    params, buffers = nb.init_params(), nb.init_buffers()
    x, _ = nb.load_data()["train"]
    # evaluation at the start: running_mean 0, running_var 1
    out, _ = nb.forward(params, buffers, x)
    h = x / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(out, h @ params["head.weight"].T + params["head.bias"])
    # training: the batch's statistics, biased variance
    _, cache = nb.forward(params, buffers, x, training=True)
    mean, var = x.mean(axis=0), x.var(axis=0)
    np.testing.assert_allclose(cache["bn1"], (x - mean) / np.sqrt(var + 1e-5))
    # momentum null: the cumulative average; two batches of the same data
    # leave the running statistics at that batch's (unbiased variance)
    nb.forward(params, buffers, x, training=True)
    np.testing.assert_allclose(buffers["bn1.running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(
        buffers["bn1.running_var"], x.var(axis=0, ddof=1), rtol=1e-12
    )
    assert buffers["bn1.num_batches_tracked"] == 2
    # and evaluation now normalises with them, row by row
    out_all, _ = nb.forward(params, buffers, x)
    out_one, _ = nb.forward(params, buffers, x[:1])
    np.testing.assert_allclose(out_one, out_all[:1], rtol=1e-12)


def test_the_module_file_uses_the_real_pytorch_classes(tmp_path):
    folder = compiled(tmp_path, spec_with(NETWORKS["batchnorm_plain_on_x"]))
    text = (folder / "torch_module.py").read_text()
    assert "nn.BatchNorm1d(2, momentum=0.5, affine=False)" in text
    assert "nn.BatchNorm1d(5)" in text
    folder = compiled(tmp_path, spec_with(NETWORKS["layernorm_plain"]))
    assert (
        "nn.LayerNorm(5, eps=0.001, elementwise_affine=False)"
        in (folder / "torch_module.py").read_text()
    )


def test_the_backward_lines_read_like_the_textbook_derivation(tmp_path):
    folder = compiled(tmp_path, spec_with(NETWORKS["batchnorm"]))
    text = (folder / "numpy_backprop.py").read_text()
    for piece in (
        "bn1_mean = fc1.sum(axis=0) / len(fc1)",
        "bn1_xhat = bn1_xc * bn1_istd",
        'grads["bn1.bias"] = bn1_sum_g',
        "(len(d_bn1) * d_bn1 - bn1_sum_g - bn1_xhat * bn1_sum_g_xhat)",
        "# bn1.Σg: ∂L/∂β, and the gradient that reaches x through μ",
        "bn1.running_var ← (1 − m) · bn1.running_var + m · (bn1.σ² · N/(N − 1))",
    ):
        assert piece in text, piece


@pytest.mark.parametrize(
    "batch_size, n_train, message",
    [
        (1, 30, "every batch has one row"),
        (29, 30, "the last batch of each epoch has one row (30 = 1 × 29 + 1"),
    ],
)
def test_a_training_batch_of_one_row_with_batchnorm_is_refused(
    batch_size, n_train, message, tmp_path
):
    spec = spec_with(NETWORKS["batchnorm"], batch_size=batch_size)
    path = tmp_path / "one.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SpecError) as e:
        build(path)
    ((where, text),) = e.value.problems
    assert where == "train.batch_size" and message in text
    # layernorm normalises each row by itself: a batch of one is fine
    spec = spec_with(NETWORKS["layernorm"], batch_size=batch_size)
    path.write_text(json.dumps(spec))
    build(path)


@pytest.mark.parametrize(
    "scheme", ["torch_default", "xavier_uniform", "kaiming_normal"]
)
def test_a_fan_based_init_of_a_normalisation_layer_is_refused(scheme, tmp_path):
    layers = [FC1, {"name": "bn1", "type": "batchnorm", "init": scheme}, HEAD]
    path = tmp_path / "init.json"
    path.write_text(json.dumps(spec_with(layers)))
    with pytest.raises(SpecError) as e:
        build(path)
    ((where, text),) = e.value.problems
    assert where == "model.layers[1].init" and "needs a weight matrix" in text


# ------------------------------------------------------------------ embeddings and tokens

TOKENS = [
    [0, 1, 2],
    [1, 1, 3],
    [2, 0, 0],
    [3, 3, 3],
    [1, 2, 3],
    [0, 0, 1],
    [2, 2, 1],
    [3, 0, 2],
]
NEXT = [3, 2, 1, 0, 0, 1, 3, 2]


def token_spec(layers=None, x=TOKENS, model_input=None, **extra):
    layers = layers or [
        {"name": "emb", "type": "embedding", "vocab": 4, "dim": 3},
        {"name": "fc1", "type": "linear", "out": 5, "bias": False},
        {"name": "bn1", "type": "batchnorm"},
        {"name": "act", "type": "tanh"},
        {"name": "head", "type": "linear", "out": 4},
    ]
    spec = spec_with(layers, batch_size=4, **extra)
    spec["data"] = {"kind": "inline", "x": x, "y": NEXT}
    spec["model"]["input"] = model_input or {"tokens": 3, "vocab": 4}
    return spec


def problems_of(tmp_path, spec):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SpecError) as e:
        build(path)
    return e.value.problems


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_embedding_of_inline_tokens_agrees_across_the_three_files(dtype, tmp_path):
    folder = compiled(tmp_path, token_spec(dtype=dtype))
    dumps, nb = run_all(folder)
    assert_agree(dumps, dtype)
    ref = dumps["numpy_backprop"]
    assert ref["x"].dtype == np.int64 and ref["step0/x"].dtype == np.int64
    assert ref["x"].tolist() == TOKENS
    # the first batch (shuffled): its rows looked up, side by side
    batch, table = ref["step0/x"], ref["init/emb.weight"]
    np.testing.assert_array_equal(ref["step0/emb"], table[batch].reshape(4, -1))
    g = ref["step0/d_emb"].reshape(4, 3, 3)
    by_hand = np.zeros((4, 3))
    for n, row in enumerate(batch):
        for t, v in enumerate(row):
            by_hand[v] += g[n, t]  # repeated indices accumulate
    assert len(set(batch.ravel().tolist())) < batch.size  # some index repeats
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(ref["grads0/emb.weight"], by_hand, rtol=rtol)
    if dtype == "float64":
        assert finite_difference_error(nb, token_spec()) < 1e-6


def test_an_embedding_reads_an_npz_of_integers(tmp_path):
    np.savez(tmp_path / "t.npz", x=np.array(TOKENS), y=np.array(NEXT))
    spec = token_spec()
    spec["data"] = {"kind": "file", "path": "t.npz"}
    del spec["model"]["input"]
    folder = compiled(tmp_path, spec)
    dumps, _ = run_all(folder)
    assert_agree(dumps, "float64")
    text = (folder / "torch_module.py").read_text()
    assert "class FlatEmbedding(nn.Embedding):" in text
    assert "self.emb = FlatEmbedding(4, 3)" in text


@pytest.mark.parametrize(
    "change, where, message",
    [
        (
            {"x": [[0, 1, 2], [1, 1, 4], *TOKENS[2:]]},
            "data.x",
            "token index 4 (at x[1, 2]) is outside [0, 4), the vocabulary of embedding",
        ),
        (
            {"x": [[0, 1, 2.5], *TOKENS[1:]]},
            "data.x[0][2]",
            "a token index must be an integer >= 0, got 2.5",
        ),
        (
            {"x": [[0, -1, 2], *TOKENS[1:]]},
            "data.x[0][1]",
            "a token index must be an integer >= 0, got -1",
        ),
        (
            {"layers": [{"name": "fc", "type": "linear", "out": 4}]},
            "model.layers[0].type",
            "linear cannot read x, which holds token indices",
        ),
        (
            {"model_input": {"tokens": 2, "vocab": 4}},
            "model.input.tokens",
            "is 2, but the data has 3 tokens",
        ),
    ],
)
def test_token_input_errors_name_the_key(change, where, message, tmp_path):
    spec = token_spec(**change)
    assert (where, message) in [
        (w, m[: len(message)]) for w, m in problems_of(tmp_path, spec)
    ]


def test_the_smallest_vocabulary_bounds_the_indices(tmp_path):
    spec = token_spec(model_input={"tokens": 3, "vocab": 10})
    spec["model"]["layers"][0]["vocab"] = 3
    [(where, message)] = problems_of(tmp_path, spec)
    assert where == "data.x"
    assert message == (
        "token index 3 (at x[1, 2]) is outside [0, 3), the vocabulary of embedding 'emb'"
    )


def test_an_embedding_needs_token_inputs(tmp_path):
    spec = spec_with([{"name": "emb", "type": "embedding", "vocab": 4, "dim": 3}, HEAD])
    [(where, message)] = problems_of(tmp_path, spec)
    assert where == "model.layers[0].inputs"
    assert "not x, which holds floats" in message
    spec = token_spec()
    spec["data"]["standardize"] = True
    [(where, _)] = problems_of(tmp_path, spec)
    assert where == "data.standardize"
    spec = spec_with([HEAD])
    spec["model"]["input"] = {"tokens": 2, "vocab": 5}
    [(where, message)] = problems_of(tmp_path, spec)
    assert where == "model.input" and "token inputs need integer data" in message


# ------------------------------------------------------------------ mlpgen check


def test_check_counts_the_new_layers_and_warns_of_batchnorm_pitfalls(tmp_path):
    from mlpgen import lint

    layers = [
        {"name": "emb", "type": "embedding", "vocab": 4, "dim": 3},
        {"name": "fc1", "type": "linear", "out": 5},  # a bias batchnorm cancels
        {"name": "bn1", "type": "batchnorm"},
        {"name": "head", "type": "linear", "out": 4},
    ]
    path = tmp_path / "check.json"
    path.write_text(json.dumps(token_spec(layers)))  # batches of 4 rows
    prog = build(path)
    costs = {c.name: c for c in lint.costs(prog, 4)}
    # batchnorm: 7 and 10 FLOPs per element; it keeps x̂ (4, 5) and 1/√(σ² + ε)
    # (5,), and its output (4, 5) is kept for head's ∂W
    assert (costs["bn1"].forward, costs["bn1"].backward) == (7 * 20, 10 * 20)
    assert costs["bn1"].saved == (20 + 5 + 20) * 8
    # embedding: a lookup forward, the scatter-add of 4·9 numbers backward;
    # x's int64 indices are kept for it
    assert (costs["emb"].forward, costs["emb"].backward) == (0, 36)
    assert costs["x"].saved == 4 * 3 * 8
    warnings = dict(lint.warnings(prog))
    assert "batchnorm 'bn1' right after it" in warnings["model.layers[1].bias"]
    assert "batches of 4 rows with batchnorm 'bn1'" in warnings["train.batch_size"]


def test_batchnorm_through_the_training_loops_options(tmp_path):
    """Sampling with replacement, an lr schedule, dropout after batchnorm, and
    early stopping that restores the best epoch's parameters and buffers."""
    spec = spec_with(
        [
            FC1,
            {"name": "bn1", "type": "batchnorm", "momentum": None},
            {"type": "relu"},
            {"name": "drop", "type": "dropout", "p": 0.1},
            HEAD,
        ]
    )
    spec["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2}
    spec["train"].update(
        shuffle=False,
        sampling="with_replacement",
        schedule={"type": "step", "step_size": 1, "gamma": 0.5},
        early_stopping={"monitor": "val_loss", "patience": 1},
    )
    folder = compiled(tmp_path, spec)
    dumps, _ = run_all(folder)
    assert_agree(dumps, "float64")
    ref = dumps["numpy_backprop"]
    # 18 training rows in batches of 8 drawn with replacement: 2 steps an epoch
    assert ref["final/bn1.num_batches_tracked"] in (2, 4)
