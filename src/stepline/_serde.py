"""Turning user values into JSON and back (pydantic models and dataclasses included)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
from typing import Any, TypeVar

import pydantic

from stepline import _errors

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
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_default, allow_nan=False, separators=(",", ":"))


def dumps(value: object, *, what: str = "output") -> str:
    """Encode ``value`` as compact JSON.

    Raises:
        OutputUnserializableError: ``value`` holds something JSON cannot carry.
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise _errors.OutputUnserializableError(f"{what} is not JSON serializable: {exc}") from None


def to_jsonable(value: object, *, what: str = "output") -> Any:
    """Return ``value`` as plain JSON data (dicts, lists, str, numbers, bools, None)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _errors.OutputUnserializableError(f"{what} is not JSON serializable: {value}")
        return value
    return json.loads(dumps(value, what=what))


def revive(value: Any, output_type: type[T] | None) -> Any:
    """Turn a memoized JSON value back into ``output_type`` when one is given."""
    if output_type is None or value is None:
        return value
    if isinstance(output_type, type) and issubclass(output_type, pydantic.BaseModel):
        return output_type.model_validate(value)
    return pydantic.TypeAdapter(output_type).validate_python(value)
