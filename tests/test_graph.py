"""The graph questions asked of the networkx graph (graph.py): order, which
tensors need a gradient, fan-out, dead branches, the trunk, repeated blocks
(Weisfeiler–Lehman hashing), node-link data."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import pytest

from mlpgen import graph as G
from mlpgen.compiler import build
from mlpgen.spec import parse_spec

from .conftest import CHAIN12, ROOT, SPECS

IDS = [p.stem for p in SPECS]


def net_of(layers, data=None, loss=None):
    spec = parse_spec(
        {
            "name": "t",
            "data": data or {"kind": "random", "n": 8, "classes": 3},
            "model": {"input": 4, "layers": layers},
            "loss": loss or {"type": "cross_entropy"},
            "train": {"optimizer": {"type": "sgd", "lr": 0.1}, "epochs": 1},
        }
    )
    return G.build(spec, G.data.describe(spec))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gallery_graph_questions_agree_with_the_derivation(spec):
    prog = build(spec)
    net = prog.net
    order = G.topological_order(net)
    assert order == ["x", *(layer.name for layer in net.layers)]  # spec order is one
    position = {n: i for i, n in enumerate(order)}
    assert all(position[a] < position[b] for a, b in net.graph.edges)
    # a tensor gets a gradient line exactly when needs_grad says it needs one
    needs = G.needs_grad(net)
    derived = {
        line.target.code[2:]
        for line in prog.backward
        if line.kind in ("loss_grad", "grad", "fanout_sum")
    }
    assert derived == {n for n, need in needs.items() if need and n != "x"}
    # fan-out: exactly the tensors whose gradient is summed over parts
    sums = {line.layer for line in prog.backward if line.kind == "fanout_sum"}
    assert sums == {n for n in G.fan_out(net) if needs[n]}
    for name in order:
        assert G.consumers(net, name) == net.consumers(name)
    assert G.dead_branches(net) == []
    assert G.spine(net)[0] == "x" and G.spine(net)[-1] == net.output.name
    data = G.node_link(net)
    again = nx.node_link_graph(json.loads(json.dumps(data)), edges="edges")
    assert list(again.nodes) == order and set(again.edges) == set(net.graph.edges)


def test_needs_grad_is_false_before_the_first_parameter():
    net = net_of(
        [
            {"name": "a", "type": "relu"},
            {"name": "fc", "type": "linear", "out": 3},
        ]
    )
    assert G.needs_grad(net) == {"x": False, "a": False, "fc": True}


def test_dead_branch_is_found_in_the_graph():
    """build refuses a layer whose output is unused; the graph question finds it
    in a network put together without that check."""
    from dataclasses import replace

    net = net_of([{"name": "fc", "type": "linear", "out": 3}])
    (layer,) = net.layers
    dead = replace(layer, index=0, name="dead")
    live = replace(layer, index=1)
    net = G.Network(net.spec, (dead, live), 4, 3, None, net.data)
    assert G.dead_branches(net) == ["dead"]


def test_branches_and_spine_of_a_dag():
    prog = build(ROOT / "specs" / "two_branch.yaml")
    net = prog.net
    assert G.spine(net) == ["x", "joined", "scores"]
    assert G.ranks(net) == [
        ["x"],
        ["left_fc", "right_fc"],
        ["left", "right"],
        ["joined"],
        ["scores"],
    ]
    assert G.fan_out(net) == {"x": ["left_fc", "right_fc"]}


def test_repeated_blocks_by_wl_hash():
    net = build(CHAIN12).net
    blocks = G.blocks(net)
    assert [b.layers for b in blocks][:2] == [("fc1", "act1"), ("fc2", "act2")]
    assert blocks[0].signature != blocks[1].signature  # fc1 reads 16 features, not 32
    assert len({b.signature for b in blocks[1:11]}) == 1
    (repeat,) = G.repeated_blocks(net)
    assert [b.layers[0] for b in repeat.blocks] == [f"fc{i}" for i in range(2, 12)]
    # the residual blocks differ in ELU's alpha: not built alike
    residual = build(ROOT / "specs" / "residual.yaml").net
    assert G.repeated_blocks(residual) == []
    assert G.repeated_blocks(residual, at_least=1)  # every block is a run of one


def test_repeats_ignore_names_but_not_wiring():
    chain = []
    for i in range(3):
        chain += [
            {"name": f"l{i}", "type": "linear", "out": 4},
            {"name": f"t{i}", "type": "tanh"},
        ]
    (repeat,) = G.repeated_blocks(net_of(chain))
    assert len(repeat.blocks) == 3
    # the same ops, but the middle block also reads the input: a different block
    chain[2] = {"name": "l1", "type": "linear", "out": 4}
    chain[3] = {"name": "t1", "type": "add", "inputs": ["l1", "t0"]}
    assert G.repeated_blocks(net_of(chain)) == []


def test_check_and_bad_specs_do_not_import_networkx(tmp_path):
    code = (
        "import sys; from mlpgen import cli; "
        "cli.main(['check', sys.argv[1]]); "
        "assert 'networkx' not in sys.modules, 'networkx was imported'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "specs" / "xor.yaml")],
        check=False,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
