"""The JSON Schema (draft 2020-12) of the spec, generated from the validator.

``mlpgen schema`` prints it, for editors that validate and complete a spec
as it is typed (the YAML extension of VS Code reads one). Nothing in it is
written by hand: it is read off the same records that ``spec.py`` validates
with, so a key added to a record, or a layer type, loss, data kind or
optimizer added to its registry (``ops.LAYERS``, ``ops.LOSSES``,
``spec.DATA_KINDS``, ``spec.OPTIMIZERS``), appears in it with no change here.

The walk turns each checker of ``schema.py`` into its JSON Schema form:
records into objects whose unknown keys are refused
(``additionalProperties: false``), required keys (those without a default)
into ``required``, ``Literal`` into ``const``/``enum``, ``Range`` into
``minimum``/``exclusiveMinimum``/…, the size limits of ``After`` checks
that declare one into ``maximum``, ``X | None`` into an ``anyOf`` with
``null``, and tagged unions into a ``oneOf`` whose members each hold their
tag as a ``const``. The schema accepts a little more than the validator
(checks that involve several keys, reserved names, shapes), never less.
"""

from __future__ import annotations

from typing import Any

from . import schema as s
from .ops import LAYERS, LOSSES
from .spec import (
    _LAYER_HEAD,
    DATA_KINDS,
    OPTIMIZERS,
    Inputs,
    LayerName,
    Train,
    _Header,
    _ModelHead,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
Json = dict[str, Any]


def spec_schema() -> Json:
    """The schema of a whole spec."""
    top = _record_schema(_Header, title="mlpgen spec, format version 1")
    top["description"] = (
        "A network for mlpgen to compile: its data, model, loss and training "
        "(docs/spec-format.md)"
    )
    top["properties"].update(
        {
            "data": _tagged(DATA_KINDS.values()),
            "model": _model(),
            "loss": _tagged([loss.Keys for loss in LOSSES.values()]),
            "train": _train(),
        }
    )
    top["required"] = sorted(
        {*top.get("required", ()), "data", "model", "loss", "train"}
    )
    return {"$schema": DIALECT, **top}


# ------------------------------------------------------------------ sections


def _model() -> Json:
    model = _record_schema(_ModelHead)
    model["properties"]["layers"] = {
        "description": "the layers, evaluated in order (a chain unless inputs says otherwise)",
        "type": "array",
        "minItems": 1,
        "items": {"oneOf": [_layer(name) for name in LAYERS]},
    }
    model["required"] = sorted({*model.get("required", ()), "layers"})
    return model


def _layer(op: str) -> Json:
    """One layer type: its head (name, type, inputs) and its op's keys."""
    layer = _record_schema(LAYERS[op].Keys)
    head = {
        "name": _annotation(LayerName),
        "type": {"const": op},
        "inputs": _annotation(Inputs),
    }
    assert set(head) == set(_LAYER_HEAD)
    layer["properties"] = {**head, **layer["properties"]}
    layer["required"] = sorted({*layer.get("required", ()), "type"})
    layer.pop("description", None)
    layer["title"] = f"{op} layer"
    return layer


def _train() -> Json:
    train = _record_schema(Train)
    train["properties"]["optimizer"] = _tagged(OPTIMIZERS.values())
    return train


def _tagged(records) -> Json:
    """A union of records told apart by their tag (a const in each member)."""
    return {"oneOf": [_record_schema(cls) for cls in records]}


# ------------------------------------------------------------------ the walk


def _annotation(annotation: Any) -> Json:
    return _checker(s._type(annotation))


def _record_schema(cls: type[s.Record], title: str | None = None) -> Json:
    """An object with the record's fields; unknown keys refused."""
    properties: Json = {}
    required = []
    for name, field in s.fields(cls).items():
        if field.excluded:
            continue
        prop = _checker(field.type)
        if field.default is s._REQUIRED:
            required.append(name)
        else:
            prop = {**prop, "default": s.dump(field.default)}
        properties[name] = prop
    out: Json = {"type": "object"}
    if title:
        out["title"] = title
    doc = (cls.__doc__ or "").strip()
    if doc and cls.__doc__ is not s.Record.__doc__:
        first = " ".join(doc.split("\n\n")[0].split())
        out["description"] = first.replace("``", "`")
    out["properties"] = properties
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out


def _checker(t: Any) -> Json:
    """The JSON Schema of one checker of schema.py."""
    if isinstance(t, s._Nullable):
        return {"anyOf": [_checker(t.inner), {"type": "null"}]}
    if isinstance(t, s._Tagged):
        members: list[Json] = [_checker(m) for m in t.members]
        if t.tag.bare:  # a string is the tag alone
            members.append({"enum": sorted(t.records)})
        return {"oneOf": members}
    if isinstance(t, s._Union):  # _Chosen too: the value fits one of the members
        return {"anyOf": [_checker(m) for m in t.members]}
    if isinstance(t, s._Bool):
        out: Json = {"type": "boolean"}
    elif isinstance(t, s._Number):
        out = {"type": "integer" if t.kind is int else "number"}
        names = {">": "exclusiveMinimum", ">=": "minimum", "<": "exclusiveMaximum"}
        names["<="] = "maximum"
        for op, bound in t.bounds:
            out[names[op]] = bound
    elif isinstance(t, s._Str):
        out = {"type": "string"}
        if t.pattern:
            out["pattern"] = t.pattern.regex
            out["description"] = t.pattern.words
        if t.min_length:
            out["minLength"] = t.min_length
    elif isinstance(t, s._Literal):
        values = list(t.values)
        out = {"const": values[0]} if len(values) == 1 else {"enum": values}
    elif isinstance(t, s._Sequence):
        out = {"type": "array"}
        if t.items is not None:
            out["items"] = _checker(t.items)
        else:
            out["prefixItems"] = [_checker(p) for p in t.places]
            out["minItems"] = out["maxItems"] = len(t.places)
        if t.min_length:
            out["minItems"] = t.min_length
    elif isinstance(t, s._RecordType):
        out = _record_schema(t.cls)
    else:
        raise TypeError(f"no JSON Schema for {type(t).__name__}")
    for after in t.afters:  # a size limit declares its maximum
        limit = getattr(after, "maximum", None)
        if limit is not None:
            out["maximum"] = min(limit, out.get("maximum", limit))
    return out
