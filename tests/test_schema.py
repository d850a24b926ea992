"""The validation module on its own: strict types, every problem at once, records.

tests/test_spec.py holds the messages as users read them in a spec; here are
the rules behind them, each on the smallest declaration that shows it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from mlpgen.schema import (
    After,
    Choose,
    Excluded,
    Invalid,
    MinLength,
    Pattern,
    Range,
    Record,
    Tagged,
    construct,
    dump,
    fields,
    validate,
)


def problems(annotation, value, **kwargs) -> list:
    with pytest.raises(Invalid) as e:
        validate(annotation, value, **kwargs)
    return e.value.problems


def _even(n: int) -> int:
    if n % 2:
        raise ValueError(f"must be even, got {n}")
    return n


class Circle(Record):
    shape: Literal["circle"]
    r: Annotated[float, Range(gt=0)] = 1.0


class Square(Record):
    shape: Literal["square"]
    side: float


Shape = Annotated[Circle | Square, Tagged("shape", "shape", bare=True)]


class Drawing(Record):
    title: Annotated[str, MinLength(1)]
    shapes: tuple[Shape, ...] = ()
    size: tuple[int, int] = (640, 480)
    file: Annotated[str, Excluded()] = ""


@pytest.mark.parametrize(
    "annotation, value, message",
    [
        (int, "5", "must be an integer, got '5'"),
        (int, True, "must be an integer, got true"),
        (int, 5.0, "must be an integer, got 5.0"),
        (float, False, "must be a number, got false"),
        (float, 10**400, "must be a number, got a huge integer"),
        (str, 3, "must be a string, got 3"),
        (bool, 1, "must be true or false, got 1"),
        (Literal[1], 1.0, "must be 1, got 1.0"),
        (
            Literal["a", "b"],
            "B",
            "must be one of 'a', 'b', got 'B' (did you mean 'b'?)",
        ),
        (Annotated[int, Range(gt=0)], 0, "must be a positive integer, got 0"),
        (Annotated[float, Range(gt=0)], 0, "must be > 0, got 0"),
        (Annotated[float, Range(ge=0, lt=1)], 1, "must be < 1, got 1"),
        (
            Annotated[float, Range(ge=0, lt=1)],
            "x",
            "must be a number >= 0 and < 1, got 'x'",
        ),
        (
            Annotated[str, Pattern("[a-z]+", "a lowercase word")],
            "A",
            "must be a lowercase word, got 'A'",
        ),
        (Annotated[str, MinLength(1)], "", "must be a non-empty string, got ''"),
        (Annotated[list[int], MinLength(1)], [], "must have at least 1 item, got 0"),
        (list[str], "ab", "must be a list of strings, got 'ab'"),
        (tuple[float, float], [1], "must be a list of 2 numbers, got [1]"),
        (
            Literal["all"] | Annotated[int, Range(gt=0)],
            0,
            "must be 'all' or a positive integer, got 0",
        ),
        (Literal["all"] | Annotated[int, After(_even)], 3, "must be even, got 3"),
        (Circle, 5, "must be a mapping, got 5"),
    ],
)
def test_one_problem(annotation, value, message):
    assert problems(annotation, value) == [((), message)]


def test_conversions_and_containers():
    assert validate(float, 2) == 2.0 and type(validate(float, 2)) is float
    assert validate(list[list[float]], [[1, 2.5]]) == [[1.0, 2.5]]
    assert validate(tuple[str, ...], ["a", "b"]) == ("a", "b")
    assert validate(int | None, None) is None
    assert validate(Annotated[int, After(_even)], 4) == 4


def test_every_problem_with_its_location():
    value = {
        "title": "",
        "shapes": [{"shape": "circle", "r": -1}, "square", {"shape": "oval"}, {}],
        "size": [1, "2"],
        "colour": "red",
        7: 1,
    }
    assert problems(Drawing, value) == [
        (("colour",), "unknown key (expected one of: title, shapes, size, file)"),
        (("7",), "keys must be strings, got 7"),
        (("title",), "must be a non-empty string, got ''"),
        (("shapes", 0, "r"), "must be > 0, got -1"),
        (("shapes", 1, "side"), "required key missing"),
        (
            ("shapes", 2, "shape"),
            "unknown shape 'oval' (expected one of: circle, square)",
        ),
        (("shapes", 3, "shape"), "required key missing"),
        (("size", 1), "must be an integer, got '2'"),
    ]


def test_tagged_union_and_bare_tags():
    assert validate(Shape, "circle") == Circle(shape="circle", r=1.0)
    assert validate(Shape, {"shape": "square", "side": 2}) == Square(
        shape="square", side=2.0
    )
    assert problems(Shape, "sqare") == [
        ((), "unknown shape 'sqare' (did you mean 'square'?)")
    ]
    assert problems(Shape, {"shape": "circle", "side": 1}) == [
        (("side",), "unknown key (expected one of: shape, r)")
    ]


def test_choose_picks_the_member():
    def pick(value):
        return list[list[int]] if value and isinstance(value[0], list) else list[int]

    rows_or_values = Annotated[list[list[int]] | list[int], Choose(pick)]
    assert validate(rows_or_values, [[1], [2]]) == [[1], [2]]
    assert problems(rows_or_values, [[1], 2]) == [
        ((1,), "must be a list of integers, got 2")
    ]
    assert problems(rows_or_values, [1, [2]]) == [((1,), "must be an integer, got [2]")]


def test_known_keys_are_skipped_and_suggested():
    assert validate(
        Circle, {"shape": "circle", "name": "c"}, known=("name",)
    ) == Circle(shape="circle")
    assert problems(Circle, {"shape": "circle", "nam": "c"}, known=("name",)) == [
        (("nam",), "unknown key (did you mean 'name'?)")
    ]


def test_records_are_frozen_values():
    drawing = Drawing(title="t", shapes=[{"shape": "square", "side": 1}], file="f")
    assert drawing.size == (640, 480)
    assert drawing.shapes == (Square(shape="square", side=1),)
    assert drawing == Drawing(
        title="t", shapes=[Square(shape="square", side=1.0)], file="f"
    )
    assert drawing != Drawing(title="u", shapes=drawing.shapes, file="f")
    assert hash(Circle(shape="circle")) == hash(Circle(shape="circle", r=1))
    assert repr(Circle(shape="circle")) == "Circle(shape='circle', r=1.0)"
    with pytest.raises(AttributeError):
        drawing.title = "u"
    with pytest.raises(Invalid) as e:
        Circle(shape="circle", r=0)
    assert str(e.value) == "r: must be > 0, got 0"


def test_fields_dump_and_construct():
    assert list(fields(Drawing)) == ["title", "shapes", "size", "file"]
    assert fields(Circle)["r"].default == 1.0
    drawing = Drawing(title="t", shapes=["circle"])
    assert dump(drawing) == {
        "title": "t",
        "shapes": [{"shape": "circle", "r": 1.0}],
        "size": [640, 480],
    }
    assert construct(Circle, r=-1).r == -1  # not checked
    assert construct(Circle, shape="circle").r == 1.0


def test_a_subclass_inherits_fields_and_may_override_defaults():
    class BigCircle(Circle):
        r: Annotated[float, Range(gt=10)] = 100.0
        label: str = ""

    assert list(fields(BigCircle)) == ["shape", "r", "label"]
    assert BigCircle(shape="circle").r == 100.0
    assert problems(BigCircle, {"shape": "circle", "r": 5}) == [
        (("r",), "must be > 10, got 5")
    ]


def test_declarations_that_cannot_be_checked_fail_at_once():
    with pytest.raises(TypeError):
        validate(Annotated[str, Range(gt=0)], "a")
    with pytest.raises(TypeError):
        validate(dict[str, int], {})
    with pytest.raises(TypeError):

        class Shared(Record):
            items: list[int] = []  # noqa: RUF012 (the point of the test)
