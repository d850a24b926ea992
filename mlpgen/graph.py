"""The network as a networkx DAG, with every tensor's shape inferred.

Nodes are ``x`` (the input) and one node per layer, named as in the spec; an
edge ``a -> b`` means layer ``b`` reads ``a``'s output, and carries the input's
position. Every tensor is ``(N, features)``: the batch axis N is symbolic,
the feature count is inferred here. Problems are reported as SpecErrors with
the layer's key path.

The checks of ``build`` need only each layer's inputs (the edges into it), so
they read plain dicts. The graph questions of the later stages (in which order,
which tensors need a gradient, where a tensor fans out, which branches are
dead, which blocks repeat, how wide the drawing gets) are asked of
``Network.graph``, the networkx DAG, through the functions at the end of this
module; it is built on first use, so that ``mlpgen check`` and a spec with an
error never import networkx.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from . import checks, data
from .ops import LAYERS, LOSSES, Buffer, Op, Param
from .schema import plural, show
from .spec import (
    MAX_FEATURES,
    MAX_PARAMS,
    MAX_SAMPLES,
    MAX_STEPS,
    MAX_VALUES,
    Spec,
    SpecError,
    TokenInput,
    load_spec,
)

if TYPE_CHECKING:
    import networkx as nx

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
    buffers: tuple[Buffer, ...] = ()

    @property
    def path(self) -> str:
        return f"model.layers[{self.index}]"

    def param_name(self, p: Param) -> str:
        """The state-dict name, e.g. ``fc1.weight``."""
        return f"{self.name}.{p.name}"


@dataclass(frozen=True)
class Network:
    spec: Spec
    layers: tuple[Layer, ...]  # in spec (= topological) order
    input_features: int
    classes: int | None  # for classification losses
    target_features: int | None  # for float targets
    data: Any  # the DataInfo the graph was checked against
    tokens: int | None = None  # T when x holds token indices (N, T)

    @property
    def output(self) -> Layer:
        return self.layers[-1]

    @cached_property
    def _by_name(self) -> dict[str, Layer]:
        return {layer.name: layer for layer in self.layers}

    @cached_property
    def _consumers(self) -> dict[str, list[str]]:
        consumers: dict[str, list[str]] = {INPUT: []}
        for layer in self.layers:  # in spec order, so every list is too
            consumers[layer.name] = []
            for src in layer.inputs:
                consumers[src].append(layer.name)
        return consumers

    def layer(self, name: str) -> Layer:
        return self._by_name[name]

    def features(self, name: str) -> int:
        return self.input_features if name == INPUT else self.layer(name).out_features

    def consumers(self, name: str) -> list[str]:
        """The layers reading ``name``'s output, in spec order."""
        return list(self._consumers[name])

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The network as a networkx DAG: nodes ``x`` and the layers (with their
        ``features``, ``op``, spec ``index`` (−1 for ``x``) and ``layer``), an edge
        per input carrying its ``position``. Nodes and edges are added in spec
        order, so every iteration over the graph is in spec order too."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_node(INPUT, features=self.input_features, op="input", index=-1)
        for layer in self.layers:
            g.add_node(
                layer.name,
                features=layer.out_features,
                op=layer.op.name,
                index=layer.index,
                layer=layer,
            )
            for j, src in enumerate(layer.inputs):
                g.add_edge(src, layer.name, position=j)
        assert nx.is_directed_acyclic_graph(g)
        return g

    @property
    def param_count(self) -> int:
        return sum(_numel(p.shape) for layer in self.layers for p in layer.params)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def load(path) -> Network:
    """Load the spec at ``path``, describe its data, build its graph.

    One SpecError lists the problems of all three stages: when only sections
    the network does not depend on are wrong (the header, ``train``), the
    graph is still checked, and its problems join the spec's.
    """
    try:
        spec = load_spec(path)
    except SpecError as e:
        if e.partial is None:
            raise
        try:
            build(e.partial, data.describe(e.partial))
        except SpecError as more:
            raise e.with_problems(more.problems) from None
        raise
    return build(spec, data.describe(spec))


def build(spec: Spec, data_info) -> Network:
    """Build and shape-check the graph. ``data_info`` says what the data provides.

    Independent problems are collected into one SpecError. A layer with a
    problem stays out of the graph, and the layers reading it are not checked
    further (their problems would only repeat it); the loss, unused outputs
    and the size limits are checked once every layer is in place.
    ``spec.train`` may be None (a partial spec): the limits on training are
    then left out.
    """
    problems: list[tuple[str, str]] = []
    given = spec.model.input
    token_input: TokenInput | None = None
    input_features: int | None
    if isinstance(given, TokenInput):
        token_input, input_features = given, given.tokens
    else:
        input_features = given
    if token_input is not None and not data_info.tokens:
        problems.append(
            (
                "model.input",
                (
                    "says x holds tokens, but the data's x holds floats: token "
                    "indices are integers (inline integers, or an .npz integer array)"
                ),
            )
        )
    if input_features is None:
        input_features = data_info.features
    elif data_info.features is not None and data_info.features != input_features:
        what = "tokens" if token_input is not None else "features"
        problems.append(
            (
                "model.input.tokens" if token_input is not None else "model.input",
                f"is {input_features}, but the data has {data_info.features} {what}",
            )
        )
    if input_features is None:
        raise SpecError(
            spec.source,
            [("model.input", "required for this data kind (the number of features)")],
        )

    features = {INPUT: input_features}  # of every tensor built so far
    positions = {layer.name: i for i, layer in enumerate(spec.model.layers)}
    layers: list[Layer] = []
    prev = INPUT
    for i, ls in enumerate(spec.model.layers):
        inputs = tuple(ls.inputs) if ls.inputs is not None else (prev,)
        prev = ls.name
        found, usable = _input_problems(ls, i, inputs, positions, features)
        problems += found
        if found or not usable:
            continue
        layer, found = _make_layer(ls, i, inputs, features)
        problems += found
        if layer is None:
            continue
        features[ls.name] = layer.out_features
        layers.append(layer)
    problems += _token_problems(spec, data_info, layers)
    if problems:
        raise SpecError(spec.source, problems)
    # acyclic by construction: every input names the input x or an earlier layer
    used = {src for layer in layers for src in layer.inputs}

    out = layers[-1]
    classification = LOSSES[spec.loss.type].targets == "class"
    problems += _loss_problems(spec, data_info, out)
    problems += [
        (layer.path, f"the output of '{layer.name}' is never used")
        for layer in layers[:-1]
        if layer.name not in used
    ]
    problems += _size_problems(spec, data_info, input_features, layers)
    if not problems:  # the semantic checks (checks.py) need a sound graph
        problems += checks.problems(spec, data_info, layers)
    if problems:
        raise SpecError(spec.source, problems)
    return Network(
        spec,
        tuple(layers),
        input_features,
        out.out_features if classification else None,
        None if classification else out.out_features,
        data_info,
        input_features if data_info.tokens else None,
    )


def _token_problems(
    spec: Spec, data_info, layers: list[Layer]
) -> list[tuple[str, str]]:
    """Token inputs: only a layer that reads tokens (embedding) may read them, it
    may read nothing else, and every index lies inside its vocabulary."""
    problems = []
    tokens = data_info.tokens
    for layer in layers:
        reads_x = INPUT in layer.inputs
        if tokens and reads_x and not layer.op.reads_tokens:
            problems.append(
                (
                    f"{layer.path}.type",
                    (
                        f"{layer.op.name} cannot read x, which holds token indices "
                        "(integers naming vocabulary entries): an embedding layer "
                        "must look them up first"
                    ),
                )
            )
        elif layer.op.reads_tokens and not (tokens and layer.inputs == (INPUT,)):
            what = "x, which holds floats" if reads_x else f"'{layer.inputs[0]}'"
            problems.append(
                (
                    f"{layer.path}.inputs",
                    (
                        f"{layer.op.name} reads integer token indices from x, not "
                        f"{what}: give integer data (inline with model.input: "
                        "{tokens: T, vocab: V}, or an .npz integer array x)"
                    ),
                )
            )
    if not tokens or data_info.vocab_used is None:
        return problems
    bounds = [
        (layer.keys.vocab, f"the vocabulary of {layer.op.name} '{layer.name}'")
        for layer in layers
        if layer.op.reads_tokens and layer.inputs == (INPUT,)
    ]
    if isinstance(spec.model.input, TokenInput):
        bounds.append((spec.model.input.vocab, "model.input.vocab"))
    for vocab, what in sorted(bounds, key=lambda b: b[0])[:1]:
        if data_info.vocab_used > vocab:
            problems.append(
                (
                    "data.x",
                    (
                        f"token index {data_info.vocab_used - 1} (at "
                        f"{data_info.largest_at}) is outside [0, {vocab}), {what}"
                    ),
                )
            )
    return problems


def _input_problems(
    ls,
    i: int,
    inputs: tuple[str, ...],
    positions: dict[str, int],
    features: dict[str, int],
) -> tuple[list[tuple[str, str]], bool]:
    """What is wrong with the inputs of layer ``i``, and whether all of them exist.

    An input that is a layer with a problem of its own exists but is not
    usable; that problem is reported once, at that layer.
    """
    path = f"model.layers[{i}]"
    problems = []
    usable = True
    for j, src in enumerate(inputs):
        where = f"{path}.inputs[{j}]"
        if src == INPUT:
            continue
        if src == ls.name:
            problems.append((where, f"'{src}' is the layer itself: a cycle"))
        elif src not in positions:
            problems.append((where, f"no layer named {show(src)} (nor the input 'x')"))
        elif positions[src] > i:
            problems.append(
                (where, f"'{src}' is defined later: inputs must name earlier layers")
            )
        elif src not in features:
            usable = False
    lo, hi = LAYERS[ls.type].arity
    if not lo <= len(inputs) <= (hi if hi is not None else len(inputs)):
        want = f"exactly {lo}" if lo == hi else f"at least {lo}"
        problems.append(
            (f"{path}.inputs", f"{ls.type} takes {want} input(s), got {len(inputs)}")
        )
    if len(set(inputs)) != len(inputs):
        problems.append((f"{path}.inputs", "names the same input twice"))
    return problems, usable


def _make_layer(
    ls, i: int, inputs: tuple[str, ...], features: dict[str, int]
) -> tuple[Layer | None, list[tuple[str, str]]]:
    """Layer ``i`` with its shapes inferred from its inputs', or its problem."""
    path = f"model.layers[{i}]"
    op = LAYERS[ls.type]
    in_features = tuple(features[s] for s in inputs)
    out = op.out_features(ls.keys, list(in_features))
    if isinstance(out, str):
        return None, [(f"{path}.inputs", out)]
    if out > MAX_FEATURES:
        if hasattr(ls.keys, "out"):
            limit = f"mlpgen's limit on features), got {show(out)}"
            return None, [(f"{path}.out", f"must be at most {MAX_FEATURES:,} ({limit}")]
        message = (
            f"outputs {out:,} features, more than mlpgen's limit of {MAX_FEATURES:,}"
        )
        return None, [(path, message)]
    try:
        params = tuple(op.params(ls.keys, list(in_features), out))
    except ValueError as e:
        return None, [(path, str(e))]
    buffers = tuple(op.buffers(ls.keys, list(in_features), out))
    return Layer(i, ls.name, op, ls.keys, inputs, in_features, out, params, buffers), []


def _loss_problems(spec: Spec, data_info, out: Layer) -> list[tuple[str, str]]:
    """Whether the model's output, the targets and the loss fit together."""
    loss = LOSSES[spec.loss.type]
    n_out = out.out_features
    problems = []
    if loss.targets == "class":
        if data_info.classes is not None and data_info.classes > n_out:
            problems.append(
                (
                    out.path,
                    (
                        f"the model outputs {plural(n_out, 'class score')}, "
                        f"but the data has {data_info.classes} classes"
                    ),
                )
            )
        if data_info.float_targets:
            problems.append(
                (
                    "loss.type",
                    (
                        f"{spec.loss.type} needs class-index targets, "
                        "the data has float targets"
                    ),
                )
            )
    elif data_info.targets is not None and data_info.targets != n_out:
        problems.append(
            (
                out.path,
                (
                    f"the model outputs {n_out} values per sample, "
                    f"but the targets have {data_info.targets}"
                ),
            )
        )
    weight = getattr(spec.loss, "weight", None)
    if weight is not None and len(weight) != n_out:
        problems.append(
            ("loss.weight", f"needs one weight per class ({n_out}), got {len(weight)}")
        )
    pos_weight = getattr(spec.loss, "pos_weight", None)
    if pos_weight is not None and len(pos_weight) not in (1, n_out):
        problems.append(
            (
                "loss.pos_weight",
                (
                    f"needs one weight per output ({n_out}) or a single one, "
                    f"got {len(pos_weight)}"
                ),
            )
        )
    return problems


def _size_problems(
    spec: Spec, data_info, input_features: int, layers: list[Layer]
) -> list[tuple[str, str]]:
    """The limits that need the whole network: parameters, data, batches, steps."""
    problems = []
    sizes = [sum(_numel(p.shape) for p in layer.params) for layer in layers]
    if sum(sizes) > MAX_PARAMS:
        largest = max(range(len(layers)), key=sizes.__getitem__)
        problems.append(
            (
                layers[largest].path,
                (
                    f"has {sizes[largest]:,} parameters ({sum(sizes):,} in the "
                    f"network), more than mlpgen's limit of {MAX_PARAMS:,}"
                ),
            )
        )
    n = data_info.n
    width = input_features + (data_info.targets or 1)
    if input_features > MAX_FEATURES:
        problems.append(
            (
                "data",
                (
                    f"has {input_features:,} features, "
                    f"more than mlpgen's limit of {MAX_FEATURES:,}"
                ),
            )
        )
    elif n is not None and n > MAX_SAMPLES:
        problems.append(
            ("data", f"has {n:,} samples, more than mlpgen's limit of {MAX_SAMPLES:,}")
        )
    elif n is not None and n * width > MAX_VALUES:
        problems.append(
            (
                "data",
                (
                    f"holds {n * width:,} numbers ({n:,} samples × {width:,}), "
                    f"more than mlpgen's limit of {MAX_VALUES:,}"
                ),
            )
        )
    train = spec.train
    if train is None or n is None or problems:
        return problems
    n_train = int(spec.data.split.train * n) if spec.data.split is not None else n
    if n_train < 1:
        return problems  # data.describe says so
    rows = n_train if train.batch_size == "full" else min(train.batch_size, n_train)
    replace = getattr(train, "sampling", "epochs") == "with_replacement"
    if replace and train.batch_size != "full":
        rows = train.batch_size  # drawn with replacement: may exceed n_train
    per_sample = input_features + sum(layer.out_features for layer in layers)
    if rows * per_sample > MAX_VALUES:
        problems.append(
            (
                "train.batch_size",
                (
                    f"a batch of {rows:,} samples holds {rows * per_sample:,} values "
                    f"in the network's tensors ({per_sample:,} per sample), more than "
                    f"mlpgen's limit of {MAX_VALUES:,}: use a smaller batch_size"
                ),
            )
        )
    batches = max(n_train // rows, 1) if replace else -(-n_train // rows)
    if train.epochs * batches > MAX_STEPS:
        problems.append(
            (
                "train.epochs",
                (
                    f"{train.epochs:,} epochs of {batches:,} batches make "
                    f"{train.epochs * batches:,} optimizer steps, more than "
                    f"mlpgen's limit of {MAX_STEPS:,}"
                ),
            )
        )
    return problems


# ------------------------------------------------------------- graph questions
#
# Asked of ``Network.graph`` (networkx). Every answer is in spec order, so that
# the files made from it are the same bytes for the same spec.


def topological_order(net: Network) -> list[str]:
    """``x`` and the layers in an order where every tensor comes after its inputs,
    ties broken by spec order (which is one such order already)."""
    import networkx as nx

    g = net.graph
    return list(
        nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n]["index"])
    )


def consumers(net: Network, name: str) -> list[str]:
    """The layers reading ``name``'s output, in spec order."""
    return list(net.graph.successors(name))


def fan_out(net: Network) -> dict[str, list[str]]:
    """The tensors read by more than one layer, with their readers: the places
    where the backward pass adds the gradients of several uses."""
    g = net.graph
    return {n: list(g.successors(n)) for n in g if g.out_degree(n) > 1}


def needs_grad(net: Network) -> dict[str, bool]:
    """For ``x`` and every layer: does the backward pass need ∂L/∂(its output)?
    Yes exactly when a parameter lies upstream (in the layer or an ancestor):
    without one, no parameter gradient flows through that tensor."""
    import networkx as nx

    g = net.graph
    has_params = {layer.name for layer in net.layers if layer.params}
    return {
        n: n in has_params or bool(nx.ancestors(g, n) & has_params)
        for n in topological_order(net)
    }


def dead_branches(net: Network) -> list[str]:
    """Layers whose output never reaches the model output, in spec order
    (``build`` refuses a network with one; asked again here of the graph)."""
    import networkx as nx

    g = net.graph
    live = nx.ancestors(g, net.output.name) | {net.output.name}
    return [layer.name for layer in net.layers if layer.name not in live]


def spine(net: Network) -> list[str]:
    """The tensors every path from ``x`` to the output goes through (the trunk of
    the network, where no branch runs beside it), in spec order."""
    g = net.graph
    order = topological_order(net)
    bit = {n: 1 << i for i, n in enumerate(order)}
    # ancestors and descendants of every tensor at once, as bit sets over the
    # topological order (networkx's ancestors() per tensor would be quadratic)
    below: dict[str, int] = {}
    for n in order:
        below[n] = 0
        for p in g.predecessors(n):
            below[n] |= below[p] | bit[p]
    above: dict[str, int] = {}
    for n in reversed(order):
        above[n] = 0
        for s in g.successors(n):
            above[n] |= above[s] | bit[s]
    every = (1 << len(order)) - 1
    return [n for n in order if below[n] | above[n] | bit[n] == every]


def ranks(net: Network) -> list[list[str]]:
    """The tensors by depth: generation k holds those whose inputs are all in
    earlier generations (the rows of a top-to-bottom drawing), spec order within."""
    import networkx as nx

    g = net.graph
    return [
        sorted(gen, key=lambda n: g.nodes[n]["index"])
        for gen in nx.topological_generations(g)
    ]


@dataclass(frozen=True)
class Block:
    """A layer with parameters and the parameter-free layers that follow it
    (``linear`` then its activation, dropout, skip-add…): the unit people name
    when they describe an MLP."""

    layers: tuple[str, ...]
    signature: str  # Weisfeiler–Lehman hash: equal for blocks built alike


@dataclass(frozen=True)
class Repeat:
    """A run of consecutive blocks that are built alike (same ops, options and
    shapes, wired alike), to be drawn as one group."""

    blocks: tuple[Block, ...]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(n for b in self.blocks for n in b.layers)


def blocks(net: Network) -> list[Block]:
    """The network cut into blocks, in spec order, each with its WL hash.

    A block's hash is computed on its subgraph, each node labelled with its op,
    options and shapes, and every tensor it reads from outside the block drawn
    as one plain "input" node: two blocks get the same hash when they compute
    the same function of their inputs, whatever their names.
    """
    import networkx as nx

    g = net.graph
    groups: list[list[Layer]] = []
    for layer in net.layers:
        if layer.params or not groups:
            groups.append([])
        groups[-1].append(layer)
    out = []
    for group in groups:
        names = {layer.name for layer in group}
        h = nx.DiGraph()
        for layer in group:
            h.add_node(
                layer.name,
                label=f"{layer.op.name}:{layer.keys!r}:{layer.in_features}->{layer.out_features}",
            )
            for src in layer.inputs:
                if src not in names:
                    h.add_node(f"in:{src}", label="input")
                    src = f"in:{src}"
                h.add_edge(
                    src,
                    layer.name,
                    position=str(g.edges[_edge(g, src, layer)]["position"]),
                )
        with warnings.catch_warnings():  # "hashes changed in 3.5": only compared here
            warnings.simplefilter("ignore", UserWarning)
            signature = nx.weisfeiler_lehman_graph_hash(
                h, node_attr="label", edge_attr="position"
            )
        out.append(Block(tuple(layer.name for layer in group), signature))
    return out


def _edge(g, src: str, layer: Layer) -> tuple[str, str]:
    """The graph edge behind a block subgraph's edge (``in:NAME`` is NAME)."""
    return (src.removeprefix("in:"), layer.name)


def repeated_blocks(net: Network, at_least: int = 3) -> list[Repeat]:
    """Runs of at least ``at_least`` consecutive blocks with the same hash."""
    found: list[Repeat] = []
    run: list[Block] = []
    for block in [*blocks(net), None]:
        if block is not None and run and block.signature == run[0].signature:
            run.append(block)
            continue
        if len(run) >= at_least:
            found.append(Repeat(tuple(run)))
        run = [block] if block is not None else []
    return found


def node_link(net: Network) -> dict:
    """The graph as node-link data (networkx's JSON form) for the explorer: each
    node with its op and features, each edge with its input position."""
    import networkx as nx

    g = net.graph
    plain = nx.DiGraph()
    for n, attrs in g.nodes(data=True):
        plain.add_node(n, op=attrs["op"], features=attrs["features"])
    for a, b, attrs in g.edges(data=True):
        plain.add_edge(a, b, position=attrs["position"])
    return nx.node_link_data(plain, edges="edges")
