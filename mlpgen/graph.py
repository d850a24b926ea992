"""The network as a networkx DAG, with every tensor's shape inferred.

Nodes are ``x`` (the input) and one node per layer, named as in the spec; an
edge ``a -> b`` means layer ``b`` reads ``a``'s output, and carries the input's
position. Every tensor is ``(N, features)``: the batch axis N is symbolic,
the feature count is inferred here. Problems are reported as SpecErrors with
the layer's key path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from .ops import LAYERS, LOSSES, Op, Param
from .spec import Spec, SpecError

INPUT = "x"


@dataclass(frozen=True)
class Layer:
    """One layer with everything the later stages need, shapes included."""

    index: int  # position in model.layers
    name: str
    op: Op
    keys: Any
    inputs: tuple[str, ...]
    in_features: tuple[int, ...]
    out_features: int
    params: tuple[Param, ...]

    @property
    def path(self) -> str:
        return f"model.layers[{self.index}]"

    def param_name(self, p: Param) -> str:
        """The state-dict name, e.g. ``fc1.weight``."""
        return f"{self.name}.{p.name}"


@dataclass(frozen=True)
class Network:
    spec: Spec
    graph: nx.DiGraph
    layers: tuple[Layer, ...]  # in spec (= topological) order
    input_features: int
    classes: int | None  # for classification losses
    target_features: int | None  # for float targets
    data: Any  # the DataInfo the graph was checked against

    @property
    def output(self) -> Layer:
        return self.layers[-1]

    def layer(self, name: str) -> Layer:
        return self.graph.nodes[name]["layer"]

    def features(self, name: str) -> int:
        return self.input_features if name == INPUT else self.layer(name).out_features

    def consumers(self, name: str) -> list[str]:
        """The layers reading ``name``'s output, in spec order."""
        return sorted(self.graph.successors(name), key=lambda n: self.layer(n).index)

    @property
    def param_count(self) -> int:
        return sum(_numel(p.shape) for layer in self.layers for p in layer.params)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def build(spec: Spec, data_info) -> Network:
    """Build and shape-check the graph. ``data_info`` says what the data provides."""
    problems: list[tuple[str, str]] = []
    input_features = spec.model.input
    if input_features is None:
        input_features = data_info.features
    elif data_info.features is not None and data_info.features != input_features:
        problems.append(
            (
                "model.input",
                f"is {input_features}, but the data has {data_info.features} features",
            )
        )
    if input_features is None:
        raise SpecError(
            spec.source,
            [("model.input", "required for this data kind (the number of features)")],
        )

    g = nx.DiGraph()
    g.add_node(INPUT, features=input_features)
    positions = {layer.name: i for i, layer in enumerate(spec.model.layers)}
    layers: list[Layer] = []
    prev = INPUT
    for i, ls in enumerate(spec.model.layers):
        path = f"model.layers[{i}]"
        op = LAYERS[ls.type]
        inputs = tuple(ls.inputs) if ls.inputs is not None else (prev,)
        prev = ls.name
        bad = False
        for j, src in enumerate(inputs):
            where = f"{path}.inputs[{j}]"
            if src == INPUT:
                continue
            if src == ls.name:
                problems.append((where, f"'{src}' is the layer itself: a cycle"))
            elif src not in positions:
                problems.append((where, f"no layer named '{src}' (nor the input 'x')"))
            elif positions[src] > i:
                problems.append(
                    (where, f"'{src}' is defined later: inputs must name earlier layers")
                )
            elif src not in g:
                pass  # that layer had its own problem, already reported
            else:
                continue
            bad = True
        lo, hi = op.arity
        if not lo <= len(inputs) <= (hi if hi is not None else len(inputs)):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}"
            problems.append(
                (f"{path}.inputs", f"{ls.type} takes {want} input(s), got {len(inputs)}")
            )
            bad = True
        if len(set(inputs)) != len(inputs):
            problems.append((f"{path}.inputs", "names the same input twice"))
            bad = True
        if bad:
            continue
        in_features = tuple(g.nodes[s]["features"] for s in inputs)
        out = op.out_features(ls.keys, list(in_features))
        if isinstance(out, str):
            problems.append((f"{path}.inputs", out))
            continue
        try:
            params = tuple(op.params(ls.keys, list(in_features), out))
        except ValueError as e:
            problems.append((path, str(e)))
            continue
        layer = Layer(i, ls.name, op, ls.keys, inputs, in_features, out, params)
        g.add_node(ls.name, features=out, layer=layer)
        for j, src in enumerate(inputs):
            g.add_edge(src, ls.name, position=j)
        layers.append(layer)

    if problems:
        raise SpecError(spec.source, problems)
    assert nx.is_directed_acyclic_graph(g)

    out = layers[-1]
    loss = LOSSES[spec.loss.type]
    classes = target_features = None
    if loss.targets == "class":
        classes = out.out_features
        if data_info.classes is not None and data_info.classes > classes:
            problems.append(
                (
                    f"{out.path}",
                    f"the model outputs {classes} class scores, "
                    f"but the data has {data_info.classes} classes",
                )
            )
        if data_info.float_targets:
            problems.append(
                ("loss.type", f"{spec.loss.type} needs class-index targets, the data has float targets")
            )
    else:
        target_features = out.out_features
        if data_info.targets is not None and data_info.targets != out.out_features:
            problems.append(
                (
                    f"{out.path}",
                    f"the model outputs {out.out_features} values per sample, "
                    f"but the targets have {data_info.targets}",
                )
            )
    weight = getattr(spec.loss, "weight", None)
    if weight is not None and len(weight) != out.out_features:
        problems.append(
            ("loss.weight", f"needs one weight per class ({out.out_features}), got {len(weight)}")
        )
    unused = [l.name for l in layers[:-1] if g.out_degree(l.name) == 0]
    for name in unused:
        problems.append(
            (f"model.layers[{positions[name]}]", f"the output of '{name}' is never used")
        )
    if problems:
        raise SpecError(spec.source, problems)
    return Network(
        spec, g, tuple(layers), input_features, classes, target_features, data_info
    )
