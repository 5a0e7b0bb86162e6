"""JSON read into frozen dataclasses by their type hints: one reader for what a stage hands the next
(``records``) and for the gate's report (``gating.report``), so each record declares its fields once.

A missing or mistyped field is a ``RecordError`` naming the file (or the record, for a parsed
mapping) and the dotted field. Values are kept as written (an int in a float field stays an int;
lists become tuples where the hint says tuple), so a record's ``to_json`` gives the same bytes back.
A field that may be null may also be absent; a field with a default may be absent. A record whose
field's type follows from its data gives it by a classmethod ``json_hints(data) -> {field: type}``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from mlgate.errors import StageError

R = TypeVar("R")
_KEYS = "typed_json.keys"


class RecordError(StageError):
    """A record file lacks a field or holds the wrong kind of value; the message names both."""


def holding(**kinds: type) -> Any:
    """A free-form mapping field that must still hold these keys, of these kinds
    (``threshold: dict[str, Any] = holding(objective=str, threshold=float)``)."""
    return dataclasses.field(metadata={_KEYS: kinds})


def read(cls: type[R], source: str | Path | dict[str, Any]) -> R:
    """``cls`` from a JSON file, or from its already parsed mapping."""
    if isinstance(source, dict):
        return _record(cls, source, cls.__name__, "")
    path = Path(source)
    try:  # a missing file stays FileNotFoundError: the CLI names the stage to run for it
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not valid JSON ({error})") from error
    return _record(cls, data, str(path), "")


def _record(cls: type[R], data: Any, source: str, where: str) -> R:
    if not isinstance(data, dict):
        raise RecordError(f"{source}: {where or 'the file'} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    if hasattr(cls, "json_hints"):  # a field whose type follows from the data (a check's evidence, by its name)
        hints |= cls.json_hints(data)
    values = {}
    for field in dataclasses.fields(cls):
        if not field.init:  # derived by the record itself (a check's verdict)
            continue
        name = f"{where}.{field.name}" if where else field.name
        if field.name not in data:
            if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING:
                continue
            if not _nullable(hints[field.name]):
                raise RecordError(f"{source}: missing field '{name}'")
            values[field.name] = None
            continue
        values[field.name] = _value(hints[field.name], data[field.name], source, name)
        for key, kind in field.metadata.get(_KEYS, {}).items():
            _value(kind, _record_key(values[field.name], key, source, name), source, f"{name}.{key}")
    return cls(**values)


def _record_key(mapping: dict[str, Any], key: str, source: str, where: str) -> Any:
    if key not in mapping:
        raise RecordError(f"{source}: missing field '{where}.{key}'")
    return mapping[key]


def _nullable(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _value(hint: Any, value: Any, source: str, name: str) -> Any:
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _value(next(a for a in args if a is not type(None)), value, source, name)
    if dataclasses.is_dataclass(hint):
        return _record(hint, value, source, name)
    if origin in (tuple, list):
        items = [
            _value(args[0], item, source, f"{name}[{k}]") for k, item in enumerate(_kind(list, value, source, name))
        ]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {
            key: _value(args[1], item, source, f"{name}.{key}")
            for key, item in _kind(dict, value, source, name).items()
        }
    return _kind(hint, value, source, name)


def _kind(kind: type, value: Any, source: str, name: str) -> Any:
    """``value`` if it is a ``kind``: JSON has one number type, so an int is a valid float; a bool is no number."""
    accepted = (kind, int) if kind is float else (kind,)
    if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
        raise RecordError(f"{source}: field '{name}' must be {kind.__name__}, got {value!r}")
    return value
