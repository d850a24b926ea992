"""mlpgen schema: the JSON Schema of the spec, read off the validator's records.

Every gallery spec is valid against it (checked with the jsonschema library),
bad specs are refused by it and by the validator alike, and whatever is added
to a record or to a registry appears in it with no change to the generator.
"""

from __future__ import annotations

import copy
import json
import typing

import pytest

from mlpgen import ops, spec_schema
from mlpgen.schema import Range, Record
from mlpgen.spec import DATA_KINDS, OPTIMIZERS, SpecError, _read_yaml, parse_spec

from .conftest import SPECS
from .test_cli import mlpgen

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def validator():
    schema = spec_schema.spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def gallery(path) -> dict:
    return _read_yaml(path.read_text(encoding="utf-8"), str(path))


def test_the_command_prints_the_schema():
    r = mlpgen("schema")
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed == spec_schema.spec_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_gallery_spec_is_valid(validator, path):
    errors = [e.message for e in validator.iter_errors(gallery(path))]
    assert errors == []


XOR = next(p for p in SPECS if p.stem == "xor")


def bad(change) -> dict:
    doc = copy.deepcopy(gallery(XOR))
    change(doc)
    return doc


BAD = {
    "unknown top-level key": lambda d: d.update(epochs=3),
    "misspelt layer key": lambda d: d["model"]["layers"][0].update(outt=5),
    "negative width": lambda d: d["model"]["layers"][0].update(out=-3),
    "unknown layer type": lambda d: d["model"]["layers"][1].update(type="sigmoidd"),
    "lr 0": lambda d: d["train"]["optimizer"].update(lr=0),
    "unknown optimizer": lambda d: d["train"]["optimizer"].update(type="adagrad"),
    "optimizer key of another": lambda d: d["train"]["optimizer"].update(betas=[0.9, 0.99]),
    "string epochs": lambda d: d["train"].update(epochs="10"),
    "too many epochs": lambda d: d["train"].update(epochs=10**8),
    "bad name": lambda d: d.update(name="Xor"),
    "no loss": lambda d: d.pop("loss"),
    "unknown data kind": lambda d: d["data"].update(kind="csv"),
    "dropout p 1": lambda d: d["model"]["layers"].insert(1, {"type": "dropout", "p": 1}),
    "bad init scheme": lambda d: d["model"]["layers"][0].update(init="he"),
    "split fraction above 1": lambda d: d["data"].update(split={"train": 1.5}),
    "null where not allowed": lambda d: d["model"]["layers"][0].update(bias=None),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD)
def test_bad_specs_are_refused_by_both(validator, name):
    doc = bad(BAD[name])
    assert list(validator.iter_errors(doc)), f"the schema accepts: {name}"
    with pytest.raises(SpecError):
        parse_spec(doc)


def test_what_the_validator_allows_the_schema_allows(validator):
    """Defaults left out, nulls where allowed, a bare init scheme, ints for floats."""
    doc = bad(lambda d: None)
    doc["model"]["layers"][0]["init"] = {"scheme": "xavier_uniform", "gain": "tanh"}
    doc["model"]["layers"][2]["init"] = "kaiming_normal"
    doc["model"]["input"] = None
    doc["train"]["log_every"] = None
    doc["train"]["batch_size"] = 2
    doc["train"]["optimizer"] = {"type": "sgd", "lr": 1, "momentum": 0}
    parse_spec(doc)
    assert list(validator.iter_errors(doc)) == []


def test_limits_and_bounds_come_from_the_records(validator):
    schema = spec_schema.spec_schema()
    train = schema["properties"]["train"]["properties"]
    assert train["epochs"] == {
        "type": "integer",
        "exclusiveMinimum": 0,
        "maximum": 10_000_000,
    }
    assert train["batch_size"]["default"] == "full"
    linear = next(
        layer
        for layer in schema["properties"]["model"]["properties"]["layers"]["items"][
            "oneOf"
        ]
        if layer["properties"]["type"] == {"const": "linear"}
    )
    assert linear["required"] == ["out", "type"]
    assert linear["additionalProperties"] is False
    assert linear["properties"]["out"] == {"type": "integer", "exclusiveMinimum": 0}
    assert linear["properties"]["bias"] == {"type": "boolean", "default": True}


def test_the_registries_and_the_validators_unions_agree():
    """The schema reads the registries; the validator the tagged unions of spec.py."""
    from mlpgen import spec

    def tags(union, key):
        members = typing.get_args(typing.get_args(union)[0])
        return {
            value
            for member in members
            for value in typing.get_args(member.__annotations__[key])
        }

    assert tags(spec.Data, "kind") == set(DATA_KINDS)
    assert tags(spec.Optimizer, "type") == set(OPTIMIZERS)


def layer_kinds(schema) -> dict[str, dict]:
    items = schema["properties"]["model"]["properties"]["layers"]["items"]["oneOf"]
    return {layer["properties"]["type"]["const"]: layer for layer in items}


def test_a_new_key_appears_without_touching_the_generator(monkeypatch):
    class SgdWithWarmup(OPTIMIZERS["sgd"]):
        warmup: typing.Annotated[int, Range(ge=0)] = 0

    monkeypatch.setitem(OPTIMIZERS, "sgd", SgdWithWarmup)
    optimizer = spec_schema.spec_schema()["properties"]["train"]["properties"][
        "optimizer"
    ]
    sgd = next(
        o for o in optimizer["oneOf"] if o["properties"]["type"] == {"const": "sgd"}
    )
    assert sgd["properties"]["warmup"] == {
        "type": "integer",
        "minimum": 0,
        "default": 0,
    }


def test_new_layer_types_losses_and_data_kinds_appear(monkeypatch):
    class SwishKeys(ops.Keys):
        beta: typing.Annotated[float, Range(gt=0)] = 1.0

    class HuberKeys(ops.LossKeys):
        type: typing.Literal["huber"]
        delta: float = 1.0

    class MoonsData(DATA_KINDS["random"].__mro__[1]):  # the data sections' base
        kind: typing.Literal["moons"]
        n: int

    swish = ops.Op(
        name="swish",
        Keys=SwishKeys,
        forward=lambda c: c.x,
        vjp=lambda c: [c.g],
        formula="",
        derivative="",
        module=lambda a, ins, out: "nn.SiLU()",
    )
    monkeypatch.setitem(ops.LAYERS, "swish", swish)
    monkeypatch.setitem(
        ops.LOSSES,
        "huber",
        ops.LOSSES["mse"].__class__(
            **{**ops.LOSSES["mse"].__dict__, "name": "huber", "Keys": HuberKeys}
        ),
    )
    monkeypatch.setitem(DATA_KINDS, "moons", MoonsData)
    schema = spec_schema.spec_schema()
    assert layer_kinds(schema)["swish"]["properties"]["beta"] == {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 1.0,
    }
    losses = schema["properties"]["loss"]["oneOf"]
    huber = next(lo for lo in losses if lo["properties"]["type"] == {"const": "huber"})
    assert set(huber["properties"]) == {"l2", "type", "delta"}
    kinds = [d["properties"]["kind"] for d in schema["properties"]["data"]["oneOf"]]
    assert {"const": "moons"} in kinds


def test_records_refuse_unknown_keys_in_the_schema_too():
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    found = list(objects(spec_schema.spec_schema()))
    assert len(found) > 30
    assert all(o["additionalProperties"] is False for o in found)
    assert issubclass(OPTIMIZERS["adam"], Record)
