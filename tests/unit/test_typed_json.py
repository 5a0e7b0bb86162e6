"""typed_json: the one reader of records and the gate's report, driven by the dataclasses' type hints."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from mlgate.typed_json import RecordError, holding, read


@dataclass(frozen=True)
class Point:
    x: float
    label: str | None


@dataclass(frozen=True)
class Shape:
    name: str
    points: tuple[Point, ...]
    tags: dict[str, int]
    rule: dict[str, Any] = holding(kind=str)
    note: str | None = None
    derived: int = field(init=False, default=0)


SHAPE = {"name": "s", "points": [{"x": 1, "label": None}], "tags": {"a": 2}, "rule": {"kind": "k", "extra": [1]}}


def test_values_are_kept_as_written_with_lists_as_tuples_where_the_hint_says_tuple():
    shape = read(Shape, SHAPE)

    assert shape == Shape("s", (Point(1, None),), {"a": 2}, {"kind": "k", "extra": [1]})
    assert type(shape.points[0].x) is int  # an int in a float field stays an int: the same bytes back


def test_a_nullable_or_defaulted_field_may_be_absent():
    shape = read(Shape, SHAPE | {"points": [{"x": 0.5}]})

    assert shape.points == (Point(0.5, None),) and shape.note is None


@pytest.mark.parametrize(
    "payload, message",
    [
        ({k: v for k, v in SHAPE.items() if k != "tags"}, "Shape: missing field 'tags'"),
        (SHAPE | {"points": [{"x": True, "label": None}]}, r"field 'points\[0\].x' must be float, got True"),
        (SHAPE | {"tags": {"a": "2"}}, "field 'tags.a' must be int, got '2'"),
        (SHAPE | {"points": [3]}, r"points\[0\] must be a JSON object, got int"),
        (SHAPE | {"rule": {"extra": 1}}, "missing field 'rule.kind'"),
    ],
)
def test_a_missing_or_mistyped_field_is_named(payload, message):
    with pytest.raises(RecordError, match=message):
        read(Shape, payload)


def test_a_file_is_named_in_its_errors(tmp_path):
    path = tmp_path / "shape.json"
    path.write_text('["not", "an", "object"]')

    with pytest.raises(RecordError, match="shape.json: the file must be a JSON object, got list"):
        read(Shape, path)
