"""Typed, frozen records checked field by field: the validation behind every spec key.

A ``Record`` subclass declares its keys as annotated fields, with defaults::

    class DropoutKeys(Record):
        p: Annotated[float, Range(ge=0, lt=1)] = 0.5

Checking is strict: a key the record does not declare is an error, and no
value is converted into another kind (``"5"`` is not an integer, ``true`` is
not a number); the one exception is an integer where a number is expected,
which becomes a float. Every problem is collected, not just the first, each
as ``(location, message)``: the location is the key path inside the checked
value (keys as strings, list indices as ints), the message is what a user
reads (``must be a positive integer, got -3``).

The annotations understood are ``bool``, ``int``, ``float``, ``str``,
``Literal[...]``, ``list[T]``, ``tuple[T, ...]`` and ``tuple[A, B]`` (either
takes a list), records, ``X | None``, unions, and ``Annotated`` with these
markers:

    Range(gt=, ge=, lt=, le=)   bounds on a number
    MinLength(n)                at least n items (of a list) or characters
    Pattern(regex, words)       a string matching regex; words say what it is
    After(function)             a further check of the value once it has the
                                type: returns the value, raises ValueError
    Tagged(key, noun)           a union of records told apart by their Literal
                                field ``key``; ``bare=True`` also takes a
                                string, the tag alone
    Choose(function)            a union whose member the function picks from
                                the value
    Excluded()                  a field that ``dump`` leaves out

``validate(annotation, value)`` checks a value against any of these, and
``Record(**values)`` builds a record, raising ``Invalid`` with the problems.
``fields(cls)`` lists a record class's fields, ``dump(record)`` turns a
record into plain data, and ``construct(cls, **values)`` builds one from
values already checked.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar, Literal, NamedTuple, Union

__all__ = [
    "After",
    "Choose",
    "Excluded",
    "Invalid",
    "Location",
    "MinLength",
    "Pattern",
    "Problem",
    "Range",
    "Record",
    "Tagged",
    "construct",
    "dump",
    "fields",
    "plural",
    "show",
    "suggest",
    "unknown",
    "validate",
]

# A key path: dict keys as str, list indices as int.
Location = tuple[str | int, ...]
Problem = tuple[Location, str]


class Invalid(ValueError):
    """A value that does not fit its declared type: every problem found in it."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "; ".join(
            f"{'.'.join(map(str, loc))}: {message}" if loc else message
            for loc, message in self.problems
        )


# ------------------------------------------------------------------ markers


class Range(NamedTuple):
    """Bounds on a number: greater than, at least, less than, at most."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None


class MinLength(NamedTuple):
    """At least ``n`` items of a list, or characters of a string."""

    n: int


class Pattern(NamedTuple):
    """A string matching ``regex`` in full; ``words`` describe such a string."""

    regex: str
    words: str


class After(NamedTuple):
    """A check run once the value has its type and meets its constraints.

    ``check(value)`` returns the value (possibly normalised) or raises
    ValueError, whose text is the message.
    """

    check: Callable[[Any], Any]


class Tagged(NamedTuple):
    """A union of records chosen by the value of their Literal field ``key``.

    ``noun`` names the tag in messages (``unknown data kind 'x'``). With
    ``bare``, a string stands for a mapping holding only the tag.
    """

    key: str
    noun: str
    bare: bool = False


class Choose(NamedTuple):
    """A union whose member ``pick(value)`` returns (one of the union's types)."""

    pick: Callable[[Any], Any]


class Excluded:
    """Marks a field (``Annotated[str, Excluded()]``) that ``dump`` leaves out."""


# ------------------------------------------------------------------ words


def show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it (YAML-ish), shortened when long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, int):
        text = str(value) if abs(value) < 10**50 else "a huge integer"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        shown = [show(v, limit) for v in value[:10]]
        text = "[" + ", ".join(shown + (["..."] if len(value) > 10 else [])) + "]"
    elif isinstance(value, dict):
        shown = [
            f"{show(k, limit)}: {show(v, limit)}" for k, v in list(value.items())[:10]
        ]
        text = "{" + ", ".join(shown + (["..."] if len(value) > 10 else [])) + "}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plural(n: int, word: str) -> str:
    """``1 item``, ``2 items``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _did_you_mean(value: Any, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, ignoring case; else nothing."""
    if isinstance(value, str) and choices:
        import difflib

        folded = {c.lower(): c for c in reversed(choices)}
        close = difflib.get_close_matches(value.lower(), list(folded), n=1)
        if close:
            return f" (did you mean '{folded[close[0]]}'?)"
    return ""


def suggest(value: Any, choices: list[str]) -> str:
    """A did-you-mean when one is close, else the list of choices."""
    return _did_you_mean(value, choices) or f" (expected one of: {', '.join(choices)})"


def unknown(what: str, value: Any, choices) -> str:
    """``unknown <what> <value>`` and a suggestion among ``choices``."""
    return f"unknown {what} {show(value)}" + suggest(value, list(choices))


def _bound(value: float) -> str:
    """A bound as the user would write it: 0.0 reads 0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return show(value)


def _either(phrases: list[str]) -> str:
    """``a, b or c``, each phrase once."""
    phrases = list(dict.fromkeys(phrases))
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


# ------------------------------------------------------------------ types

_BAD = object()  # what a check returns for a value with problems


class _Type:
    """One declared type: checks values against it, and says what fits in words.

    ``check`` appends one problem per independent mistake to ``problems``
    and returns the checked value, or ``_BAD``. Subclasses implement
    ``_check`` (the kind of value and its constraints); ``afters`` run on
    what passes it.
    """

    afters: tuple[Callable[[Any], Any], ...] = ()

    def check(self, value: Any, loc: Location, problems: list[Problem]) -> Any:
        """The value to keep (converted where allowed), or ``_BAD``."""
        value = self._check(value, loc, problems)
        if self.afters and value is not _BAD:
            return self.finish(value, loc, problems)
        return value

    def finish(self, value: Any, loc: Location, problems: list[Problem]) -> Any:
        """The ``After`` checks of a value that has the type."""
        for after in self.afters:
            try:
                value = after(value)
            except ValueError as e:
                problems.append((loc, str(e)))
                return _BAD
        return value

    def _check(self, value: Any, loc: Location, problems: list[Problem]) -> Any:
        raise NotImplementedError

    def check_items(
        self, items: list | tuple, loc: Location, problems: list[Problem]
    ) -> list:
        """Each item of a list checked, at its index below ``loc``."""
        return [self.check(item, (*loc, i), problems) for i, item in enumerate(items)]

    def describe(self, many: bool = False) -> str:
        """What fits, in words: ``a positive integer`` (``positive integers``)."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """The strings that fit, for a did-you-mean."""
        return []

    def refuse(self, value: Any, loc: Location, problems: list[Problem]) -> Any:
        """Report ``must be <what fits>, got <value>``."""
        hint = _did_you_mean(value, self.names())
        problems.append((loc, f"must be {self.describe()}, got {show(value)}{hint}"))
        return _BAD


class _Bool(_Type):
    def _check(self, value, loc, problems):
        return value if isinstance(value, bool) else self.refuse(value, loc, problems)

    def describe(self, many=False):
        return "true or false"


_OPERATORS = {  # in the order of Range's fields
    ">": lambda v, b: v > b,
    ">=": lambda v, b: v >= b,
    "<": lambda v, b: v < b,
    "<=": lambda v, b: v <= b,
}


class _Number(_Type):
    """``int`` (never a bool) or ``float`` (an int is taken and made a float)."""

    def __init__(self, kind: type, bounds: Range | None):
        self.kind = kind
        self.types = {int} if kind is int else {int, float}
        limits = zip(_OPERATORS, bounds or Range())
        self.bounds = [(op, bound) for op, bound in limits if bound is not None]

    def _check(self, value, loc, problems):
        if type(value) not in self.types:  # bool is not int here
            return self.refuse(value, loc, problems)
        for op, bound in self.bounds:
            if not _OPERATORS[op](value, bound):
                if self.kind is int and (op, bound) == (">", 0):
                    problems.append(
                        (loc, f"must be a positive integer, got {show(value)}")
                    )
                else:
                    problems.append(
                        (loc, f"must be {op} {_bound(bound)}, got {show(value)}")
                    )
                return _BAD
        if self.kind is float and type(value) is int:
            try:
                return float(value)
            except OverflowError:  # an integer beyond any float
                return self.refuse(value, loc, problems)
        return value

    def check_items(self, items, loc, problems):
        """At once when every item is a plain number (data can have a million)."""
        if self.bounds or self.afters or not set(map(type, items)) <= self.types:
            return super().check_items(items, loc, problems)
        try:
            return [float(v) for v in items] if self.kind is float else list(items)
        except OverflowError:
            return super().check_items(items, loc, problems)

    def describe(self, many=False):
        noun = "integer" if self.kind is int else "number"
        bounds = [f"{op} {_bound(bound)}" for op, bound in self.bounds]
        if bounds == ["> 0"]:
            noun, bounds = f"positive {noun}", []
        if many:
            text = noun + "s"
        else:
            text = ("an " if noun[0] in "aeiou" else "a ") + noun
        return " ".join([text, " and ".join(bounds)]) if bounds else text


class _Str(_Type):
    def __init__(self, pattern: Pattern | None, min_length: MinLength | None):
        self.pattern = pattern
        self.min_length = min_length.n if min_length else 0

    def _check(self, value, loc, problems):
        if (
            not isinstance(value, str)
            or len(value) < self.min_length
            or (self.pattern and not re.fullmatch(self.pattern.regex, value))
        ):
            return self.refuse(value, loc, problems)
        return value

    def describe(self, many=False):
        if self.pattern:
            return self.pattern.words
        text = "strings" if many else "a string"
        if self.min_length == 1:
            text = "non-empty strings" if many else "a non-empty string"
        elif self.min_length:
            text += f" of at least {self.min_length} characters"
        return text


class _Literal(_Type):
    """One of the given values, of the same type (``true`` is not ``1``)."""

    def __init__(self, values: tuple):
        self.values = values

    def _check(self, value, loc, problems):
        if any(type(value) is type(v) and value == v for v in self.values):
            return value
        return self.refuse(value, loc, problems)

    def describe(self, many=False):
        shown = ", ".join(show(v) for v in self.values)
        if many:
            return f"values among {shown}"
        return shown if len(self.values) == 1 else f"one of {shown}"

    def names(self):
        return [v for v in self.values if isinstance(v, str)]


class _Sequence(_Type):
    """A list (or tuple, taken from a list): ``items`` for each, or one type per place."""

    def __init__(
        self,
        kind: type,
        items: _Type | None,
        places: list[_Type],
        min_length: MinLength | None,
    ):
        self.kind = kind
        self.items = items  # None: a fixed tuple, one type per place
        self.places = places
        self.min_length = min_length.n if min_length else 0

    def _check(self, value, loc, problems):
        if not isinstance(value, (list, tuple)) or (
            self.items is None and len(value) != len(self.places)
        ):
            return self.refuse(value, loc, problems)
        if len(value) < self.min_length:
            least = plural(self.min_length, "item")
            problems.append((loc, f"must have at least {least}, got {len(value)}"))
            return _BAD
        before = len(problems)
        if self.items is None:
            checked = [
                t.check(item, (*loc, i), problems)
                for i, (t, item) in enumerate(zip(self.places, value))
            ]
        else:
            checked = self.items.check_items(value, loc, problems)
        return _BAD if len(problems) > before else self.kind(checked)

    def describe(self, many=False):
        if self.items is None:
            items = f"{len(self.places)} {self.places[0].describe(many=True)}"
        else:
            items = self.items.describe(many=True)
        return f"lists of {items}" if many else f"a list of {items}"


class _RecordType(_Type):
    """A record: a mapping of its fields, or an instance of it (taken as it is).

    ``known`` names further keys the mapping may hold, checked elsewhere:
    they are skipped here, and suggested for misspelt keys.
    """

    def __init__(self, cls: type[Record], known: tuple[str, ...] = ()):
        self.cls = cls
        self.known = known

    def _check(self, value, loc, problems):
        if isinstance(value, self.cls):
            return value
        if not isinstance(value, dict):
            return self.refuse(value, loc, problems)
        values = _check_fields(self.cls, value, loc, problems, self.known)
        return _BAD if values is _BAD else _instance(self.cls, values)

    def describe(self, many=False):
        return "mappings" if many else "a mapping"


class _Nullable(_Type):
    """``X | None``: null, or a value of type X."""

    def __init__(self, inner: _Type):
        self.inner = inner

    def _check(self, value, loc, problems):
        return None if value is None else self.inner.check(value, loc, problems)

    def describe(self, many=False):
        return self.inner.describe(many)

    def names(self):
        return self.inner.names()


class _Union(_Type):
    """The first member the value fits.

    When none does, the message says what would fit (``'full' or a positive
    integer``), unless the value has a member's type and only that member's
    ``After`` check refused it: then that check's message is the one.
    """

    def __init__(self, members: list[_Type]):
        self.members = members

    def _check(self, value, loc, problems):
        for member in self.members:
            found: list[Problem] = []
            checked = member._check(value, loc, found)
            if not found:
                return member.finish(checked, loc, problems)
        return self.refuse(value, loc, problems)

    def describe(self, many=False):
        return _either([member.describe(many) for member in self.members])

    def names(self):
        return [name for member in self.members for name in member.names()]


class _Tagged(_Union):
    """A union of records told apart by the value of one key (see ``Tagged``)."""

    def __init__(self, members: list[_RecordType], tag: Tagged):
        super().__init__(list(members))
        self.tag = tag
        self.records = {
            value: member
            for member in members
            for value in fields(member.cls)[tag.key].type.names()
        }

    def _check(self, value, loc, problems):
        key = self.tag.key
        where = (*loc, key)
        if any(isinstance(value, member.cls) for member in self.records.values()):
            return value
        if self.tag.bare and isinstance(value, str):
            value, where = {key: value}, loc
        if not isinstance(value, dict):
            return self.refuse(value, loc, problems)
        if key not in value:
            problems.append((where, "required key missing"))
            return _BAD
        tag = value[key]
        if not isinstance(tag, str) or tag not in self.records:
            problems.append((where, unknown(self.tag.noun, tag, self.records)))
            return _BAD
        return self.records[tag].check(value, loc, problems)


class _Chosen(_Union):
    """A union whose member a function of the value picks (see ``Choose``)."""

    def __init__(self, members: list[_Type], pick: Callable[[Any], Any]):
        super().__init__(members)
        self.pick = pick

    def _check(self, value, loc, problems):
        return _type(self.pick(value)).check(value, loc, problems)


@cache
def _type(annotation: Any) -> _Type:
    """The checker of an annotation (one per annotation, built on first use)."""
    marks: list = []
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *marks = typing.get_args(annotation)
    of = {type(mark): mark for mark in marks if not isinstance(mark, After)}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    checker: _Type
    if annotation is bool:
        checker = _Bool()
    elif annotation in (int, float):
        checker = _Number(annotation, of.pop(Range, None))
    elif annotation is str:
        checker = _Str(of.pop(Pattern, None), of.pop(MinLength, None))
    elif origin is Literal:
        checker = _Literal(args)
    elif origin in (list, tuple):
        items = None if origin is tuple and args[-1] is not ... else _type(args[0])
        places = [] if items else [_type(arg) for arg in args]
        checker = _Sequence(origin, items, places, of.pop(MinLength, None))
    elif isinstance(annotation, type) and issubclass(annotation, Record):
        checker = _RecordType(annotation)
    elif origin in (Union, types.UnionType):
        members = [_type(arg) for arg in args if arg is not type(None)]
        if Tagged in of:
            records = [m for m in members if isinstance(m, _RecordType)]
            checker = _Tagged(records, of.pop(Tagged))
        elif Choose in of:
            checker = _Chosen(members, of.pop(Choose).pick)
        else:
            checker = members[0] if len(members) == 1 else _Union(members)
        if type(None) in args:
            checker = _Nullable(checker)
    else:
        raise TypeError(f"cannot check values of type {annotation!r}")
    of.pop(Excluded, None)
    if of:
        raise TypeError(f"{list(of.values())} do not apply to {annotation!r}")
    afters = tuple(mark.check for mark in marks if isinstance(mark, After))
    if afters:
        checker.afters = afters
    return checker


# ------------------------------------------------------------------ records

_REQUIRED = object()  # the default of a field that must be given


class Field(NamedTuple):
    """One declared field of a record."""

    name: str
    type: _Type
    default: Any  # _REQUIRED when the key must be given
    excluded: bool  # left out by dump


class Record:
    """Base of the checked records: frozen, strict, unknown keys are errors.

    Fields are the class's annotations (its bases' first); a class attribute
    of the same name is the default. ``Record(**values)`` checks the values
    and raises ``Invalid`` with every problem. Records compare equal when
    they are of the same class with equal fields.
    """

    _fields: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # the bases' fields first; a field declared again keeps its place
        cls._fields = {}
        for base in reversed(cls.__mro__[1:]):
            cls._fields.update(getattr(base, "_fields", {}))
        module = vars(sys.modules[cls.__module__])
        for name, hint in vars(cls).get("__annotations__", {}).items():
            if isinstance(hint, str):
                # postponed (``from __future__ import annotations``): evaluated
                # as typing.get_type_hints does
                hint = eval(hint, module, dict(vars(cls)))
            if typing.get_origin(hint) is ClassVar:
                continue
            default = vars(cls).get(name, _REQUIRED)
            if isinstance(default, (list, dict, set)):
                # one object would be shared by every record
                raise TypeError(
                    f"{cls.__name__}.{name}: a mutable default; use a tuple"
                )
            marks = getattr(hint, "__metadata__", ())
            excluded = any(isinstance(mark, Excluded) for mark in marks)
            cls._fields[name] = Field(name, _type(hint), default, excluded)

    def __init__(self, **values: Any):
        problems: list[Problem] = []
        checked = _check_fields(type(self), values, (), problems)
        if problems:
            raise Invalid(problems)
        self.__dict__.update(checked)

    def __setattr__(self, name: str, value: Any):
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name}")

    def __delattr__(self, name: str):
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({shown})"


def _check_fields(
    cls: type[Record],
    mapping: dict,
    loc: Location,
    problems: list[Problem],
    known: tuple[str, ...] = (),
) -> Any:
    """The fields of ``cls`` from ``mapping``, defaults filled in; or ``_BAD``."""
    declared = cls._fields
    before = len(problems)
    for key in mapping:
        if not isinstance(key, str):
            shown = show(key)
            problems.append(((*loc, shown), f"keys must be strings, got {shown}"))
        elif key not in declared and key not in known:
            choices = [*known, *declared]
            problems.append(((*loc, key), "unknown key" + suggest(key, choices)))
    values = {}
    for name, field in declared.items():
        if name in mapping:
            values[name] = field.type.check(mapping[name], (*loc, name), problems)
        elif field.default is _REQUIRED:
            problems.append(((*loc, name), "required key missing"))
        else:
            values[name] = field.default
    return _BAD if len(problems) > before else values


def _instance(cls: type[Record], values: dict[str, Any]) -> Record:
    record = object.__new__(cls)
    record.__dict__.update(values)
    return record


def fields(cls: type[Record] | Record) -> dict[str, Field]:
    """The fields of a record class (or record), by name, in declaration order."""
    return cls._fields


def construct(cls: type[Record], /, **values: Any) -> Record:
    """A record of values already checked, not checked again; defaults fill the rest."""
    defaults = {
        name: field.default
        for name, field in cls._fields.items()
        if field.default is not _REQUIRED
    }
    return _instance(cls, {**defaults, **values})


def dump(value: Any) -> Any:
    """A record as plain data: mappings of fields (not the excluded ones), lists."""
    if isinstance(value, Record):
        return {
            name: dump(getattr(value, name))
            for name, field in value._fields.items()
            if not field.excluded
        }
    if isinstance(value, (list, tuple)):
        return [dump(item) for item in value]
    return value


def validate(annotation: Any, value: Any, known: tuple[str, ...] = ()) -> Any:
    """``value`` checked as ``annotation``; ``Invalid`` with every problem if it is not.

    ``known`` names keys that the mapping of a record may hold besides its fields:
    the caller checks them; here they are skipped, and suggested for typos.
    """
    problems: list[Problem] = []
    checker = _RecordType(annotation, known) if known else _type(annotation)
    checked = checker.check(value, (), problems)
    if problems:
        raise Invalid(problems)
    return checked
