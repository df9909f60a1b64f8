"""Turning user values into JSON and back (pydantic models and dataclasses included)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import itertools
import json
import math
import re
import uuid
from typing import Any, TypeVar

import pydantic

from stepline import _errors, _json

T = TypeVar("T")


def _default(value: object) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, uuid.UUID):  # as orjson writes it natively: one form either way
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: object, *, what: str = "output") -> str:
    """Encode ``value`` as compact JSON.

    Raises:
        OutputUnserializableError: ``value`` holds something JSON cannot carry.
    """
    try:
        return _json.dumps(value, default=_default, finite=True)
    except (TypeError, ValueError) as exc:
        raise _errors.OutputUnserializableError(f"{what} is not JSON serializable: {exc}") from None


def encode_vetted(value: object) -> bytes:
    """``value`` as UTF-8 JSON, its user data each went through ``to_jsonable`` already.

    A 206 answer's ops carry step outputs, invoke payloads and the function's output,
    each checked (finite, plain JSON) when it was recorded, beside strings and ``None``s
    of the SDK's own: checking the whole list again for a ``NaN`` (a walk of every value,
    as ``dumps`` does when the JSON holds a ``null``) would only repeat that.
    """
    return _json.dumpb(value, default=_default)


def loads(data: str | bytes) -> Any:
    """Decode JSON from the wire strictly.

    ``NaN``, ``Infinity`` and numbers too large for a float (``1e400``), which Python's
    ``json`` accepts as non-finite floats but no encoder with ``allow_nan=False`` can
    write back; strings holding a lone surrogate (``"\\ud800"``), which cannot be
    encoded as UTF-8 (I-JSON, RFC 7493, forbids them); and documents nested deeper than
    ``MAX_DEPTH`` (512, whichever decoder runs and whatever the interpreter's recursion
    limit, which test tools and libraries raise) are refused like any other malformed JSON.

    Raises:
        ValueError: not UTF-8 JSON (``json.JSONDecodeError`` and ``UnicodeDecodeError``
            are ``ValueError``s too).
    """
    if _too_deep(data):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return _json.loads(data, slow=_loads_strict)


#: The deepest nesting of arrays and objects accepted, on both decoders (orjson's own
#: limit is 1,024; ``json`` runs out of stack near the default recursion limit of 1,000).
MAX_DEPTH = 512
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_DEPTH_STEP = [1 if chr(byte) in "[{" else -1 for byte in range(256)]
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")


def _too_deep(data: str | bytes) -> bool:
    """Whether ``data`` nests arrays and objects deeper than ``MAX_DEPTH`` (C-speed scans)."""
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= MAX_DEPTH:
            return False  # the common case: too few openers to be that deep
        raw = data.encode("utf-8", "surrogatepass")
    else:
        raw = data
        if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
            return False
    brackets = _STRING.sub(b"", raw).translate(None, _BRACKETS_ONLY)
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def _loads_strict(data: str | bytes) -> Any:
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if isinstance(data, bytes):
        escaped = data.find(b"\\ud") >= 0 or data.find(b"\\uD") >= 0
    else:
        escaped = "\\ud" in data or "\\uD" in data
    if escaped and _lone_surrogate(value):
        raise ValueError("JSON string holds a lone surrogate (not valid Unicode)")
    return value


def _lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:  # not recursive: the document may be nested nearly to the limit
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


_SURROGATE = re.compile("[\\ud800-\\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def to_jsonable(value: object, *, what: str = "output") -> Any:
    """Return ``value`` as plain JSON data (dicts, lists, str, numbers, bools, None): a
    copy, so that changing ``value`` later changes nothing recorded."""
    if value is None or isinstance(value, (str, int, float, bool)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _errors.OutputUnserializableError(f"{what} is not JSON serializable: {value}")
        return value
    # a flat object of plain values: a shallow copy is one (checked with ``map``, no
    # Python frame per key: a step's value comes here twice)
    if (
        type(value) is dict
        and _STR.issuperset(map(type, value))
        and _FLAT.issuperset(map(type, value.values()))
    ):
        return dict(value)
    return _json.loads(dumps(value, what=what))


#: Values copied as they are in a flat object (not float: NaN must be refused; not
#: subclasses such as IntEnum, which JSON turns into their base values).
_FLAT = frozenset({str, int, bool, type(None)})
_STR = frozenset({str})


def revive(value: Any, output_type: type[T] | None) -> Any:
    """Turn a memoized JSON value back into ``output_type`` when one is given."""
    if output_type is None or value is None:
        return value
    if isinstance(output_type, type) and issubclass(output_type, pydantic.BaseModel):
        return output_type.model_validate(value)
    return pydantic.TypeAdapter(output_type).validate_python(value)
