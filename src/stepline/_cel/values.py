"""CEL's view of plain Python values: kinds, equality, ordering, arithmetic and access.

Values are the JSON-like ones callers pass in (``dict``, ``list``, ``str``, ``int``,
``float``, ``bool``, ``None``) plus :class:`UInt`, :class:`CelType` and, for the optional
temporal functions, aware ``datetime`` (timestamp) and ``timedelta`` (duration).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from stepline._cel import errors, temporal

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "NUMERIC",
    "UINT_MAX",
    "CelType",
    "UInt",
    "arithmetic",
    "check_int",
    "contains",
    "describe",
    "equals",
    "import_value",
    "index",
    "kind",
    "lookup",
    "negate",
    "relation",
    "select",
]

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
UINT_MAX = 2**64 - 1
NUMERIC = frozenset({"int", "uint", "double"})


class UInt(int):
    """A CEL ``uint``; a distinct type so that ``1u + 1`` is an error, as in CEL."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


@dataclasses.dataclass(frozen=True, slots=True)
class CelType:
    """A type value, as returned by ``type(x)`` and named by ``int``, ``string``, ..."""

    name: str

    def __str__(self) -> str:
        return self.name


_KINDS: dict[type, str] = {
    bool: "bool",
    int: "int",
    UInt: "uint",
    float: "double",
    str: "string",
    type(None): "null",
    list: "list",
    dict: "map",
    CelType: "type",
    _dt.timedelta: "duration",
}


def kind(value: object) -> str:
    """Name the CEL kind of ``value``.

    Raises:
        EvaluationError: the value is not one CEL can work with.
    """
    found = _KINDS.get(type(value))
    if found is not None:
        return found
    if isinstance(value, _dt.datetime):
        # A naive datetime cannot be ordered against an aware one; refuse it up front.
        if value.tzinfo is None:
            raise errors.EvaluationError("timestamps must be timezone-aware datetimes")
        return "timestamp"
    # Subclasses (OrderedDict, IntEnum, tuple...) after the fast path; bool cannot be subclassed.
    for base, name in (
        (UInt, "uint"),
        (int, "int"),
        (float, "double"),
        (str, "string"),
        (Mapping, "map"),
        (list | tuple, "list"),
        (_dt.timedelta, "duration"),
    ):
        if isinstance(value, base):
            return name
    raise errors.EvaluationError(f"unsupported value of Python type {type(value).__name__}")


def check_int(value: int) -> int:
    """Return ``value`` if it fits a 64-bit signed int.

    Raises:
        EvaluationError: it does not.
    """
    if INT_MIN <= value <= INT_MAX:
        return value
    raise errors.EvaluationError("integer overflow")


def _check_uint(value: int) -> UInt:
    if 0 <= value <= UINT_MAX:
        return UInt(value)
    raise errors.EvaluationError("unsigned integer overflow")


_SIMPLE = frozenset({str, int, float, bool, type(None)})
_INT_DOUBLE = frozenset({int, float})


def equals(left: Any, right: Any) -> bool:
    """CEL heterogeneous equality: different kinds are unequal, numbers compare by value."""
    kind_type = type(left)
    if kind_type is type(right) and kind_type in _SIMPLE:
        return bool(left == right)
    if type(right) in _INT_DOUBLE and kind_type in _INT_DOUBLE:  # an int and a double
        return float(left) == float(right)
    left_kind, right_kind = kind(left), kind(right)
    if left_kind in NUMERIC and right_kind in NUMERIC:
        if left_kind == "double" or right_kind == "double":
            return float(left) == float(right)  # the spec's order: see relation()
        return bool(left == right)
    if left_kind != right_kind:
        return False
    if left_kind == "list":
        return len(left) == len(right) and all(map(equals, left, right))
    if left_kind == "map":
        if len(left) != len(right):
            return False
        for key, value in left.items():
            found, other = lookup(right, key)
            if not found or not equals(value, other):
                return False
        return True
    return bool(left == right)


_RELATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ORDERED = frozenset({"string", "bool", "timestamp", "duration"})


def relation(op: str, left: Any, right: Any) -> bool:
    """``left op right`` for ``< <= > >=`` on numbers, strings, bools, timestamps, durations.

    Raises:
        EvaluationError: the kinds cannot be ordered against each other.
    """
    compare = _RELATIONS[op]
    kind_type = type(left)
    if kind_type is type(right) and (kind_type is int or kind_type is float or kind_type is str):
        return bool(compare(left, right))
    if type(right) in _INT_DOUBLE and kind_type in _INT_DOUBLE:  # an int and a double
        return bool(compare(float(left), float(right)))
    left_kind, right_kind = kind(left), kind(right)
    if left_kind in NUMERIC and right_kind in NUMERIC:
        if left_kind == "double" or right_kind == "double":
            # The spec's order across numeric types: an int or uint meeting a double
            # becomes a double (round to nearest), so dyn(9223372036854775807) <
            # 9223372036854775808.0 is false; a double beyond the integer type's range is
            # then ordered by its sign. Python would compare int and float exactly.
            return bool(compare(float(left), float(right)))
        return bool(compare(left, right))  # int against uint: exact, as in the spec
    if left_kind == right_kind and left_kind in _ORDERED:
        return bool(compare(left, right))
    raise errors.EvaluationError(f"no such overload: {left_kind} {op} {right_kind}")


def describe(value: object) -> str:
    """Name the kind of ``value`` for a message, without raising."""
    try:
        return kind(value)
    except errors.EvaluationError:
        return type(value).__name__


def lookup(mapping: Mapping[Any, Any], key: Any) -> tuple[bool, Any]:
    """Find ``key`` in a CEL map; returns ``(found, value)``.

    Raises:
        EvaluationError: the key's kind cannot be a map key.
    """
    if type(key) is str:
        try:
            return True, mapping[key]
        except KeyError:
            return False, None
    key_kind = kind(key)
    if key_kind not in {"int", "uint", "double", "bool", "string"}:
        raise errors.EvaluationError(f"unsupported key type {key_kind}")
    # Python hashes True like 1 and 1.0 like 1, but CEL keeps bool apart from numbers: scan.
    # A numeric key matches by exact value ({1: x}[1.0]), not by the lossy order of ==.
    numeric = key_kind in NUMERIC
    for candidate, value in mapping.items():
        if numeric and describe(candidate) in NUMERIC:
            if candidate == key:
                return True, value
        elif equals(candidate, key):
            return True, value
    return False, None


def select(value: Any, field: str) -> Any:
    """``value.field`` on a map.

    Raises:
        EvaluationError: ``value`` is not a map or has no such key.
    """
    if isinstance(value, Mapping):
        try:
            return value[field]
        except KeyError:
            raise errors.EvaluationError(f"no such key: {field!r}") from None
    raise errors.EvaluationError(f"cannot select field {field!r} from {kind(value)}")


def index(value: Any, key: Any) -> Any:
    """``value[key]`` on a list (int index) or a map.

    Raises:
        EvaluationError: out of range, no such key, or not indexable.
    """
    value_kind = kind(value)
    if value_kind == "map":
        found, item = lookup(value, key)
        if not found:
            raise errors.EvaluationError(f"no such key: {key!r}")
        return item
    if value_kind == "list":
        key_kind = kind(key)
        if key_kind == "double" and math.isfinite(key) and key == int(key):
            key = int(key)
        elif key_kind not in {"int", "uint"}:
            raise errors.EvaluationError(f"list index must be an int, got {key_kind}")
        if not 0 <= key < len(value):
            raise errors.EvaluationError(f"index {key} out of range for list of size {len(value)}")
        return value[key]
    raise errors.EvaluationError(f"cannot index into {value_kind}")


def contains(item: Any, container: Any) -> bool:
    """CEL ``item in container`` for lists (membership) and maps (key presence).

    Raises:
        EvaluationError: ``container`` is neither.
    """
    container_kind = kind(container)
    if container_kind == "list":
        return any(equals(item, element) for element in container)
    if container_kind == "map":
        return lookup(container, item)[0]
    raise errors.EvaluationError(f"no such overload: {kind(item)} in {container_kind}")


def negate(value: Any) -> Any:
    """Unary minus on an int or a double."""
    value_kind = kind(value)
    if value_kind == "int":
        return check_int(-value)
    if value_kind == "double":
        return -value
    if value_kind == "duration":
        return -value
    raise errors.EvaluationError(f"no such overload: -{value_kind}")


def arithmetic(op: str, left: Any, right: Any) -> Any:
    """``left op right`` for ``+ - * / %`` with CEL's overflow and truncation rules.

    Raises:
        EvaluationError: overflow, division by zero or kinds without this operator.
    """
    left_type = type(left)
    if left_type is type(right):
        if left_type is int:
            return check_int(_int_op(op, left, right))
        if left_type is float:
            return _double_op(op, left, right)
        if left_type is str and op == "+":
            return left + right
    left_kind, right_kind = kind(left), kind(right)
    try:
        if left_kind in NUMERIC and right_kind in NUMERIC:
            return _numeric(op, left, right, left_kind, right_kind)
        if op == "+" and left_kind == right_kind and left_kind in {"string", "list"}:
            return left + right if left_kind == "string" else [*left, *right]
        if op in {"+", "-"} and {left_kind, right_kind} <= {"timestamp", "duration"}:
            return temporal.arithmetic(op, left, right, left_kind, right_kind)
    except OverflowError:
        raise errors.EvaluationError("numeric overflow") from None
    raise errors.EvaluationError(f"no such overload: {left_kind} {op} {right_kind}")


def _numeric(op: str, left: Any, right: Any, left_kind: str, right_kind: str) -> Any:
    if left_kind == "double" or right_kind == "double":
        # JSON does not tell 5 from 5.0, so an int meeting a double is widened, not rejected.
        return _double_op(op, float(left), float(right))
    if left_kind != right_kind:
        raise errors.EvaluationError(f"no such overload: {left_kind} {op} {right_kind}")
    if left_kind == "uint":
        return _check_uint(_int_op(op, left, right))
    return check_int(_int_op(op, left, right))


def _int_op(op: str, left: int, right: int) -> int:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        raise errors.EvaluationError("division by zero" if op == "/" else "modulus by zero")
    # CEL truncates toward zero like Go and C; Python's // and % floor instead.
    quotient = abs(left) // abs(right)
    if op == "/":
        return -quotient if (left < 0) != (right < 0) else quotient
    if left == INT_MIN and right == -1:
        raise errors.EvaluationError("integer overflow")
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder


def _double_op(op: str, left: float, right: float) -> float:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "%":
        raise errors.EvaluationError("no such overload: double % double")
    if right == 0.0:
        # IEEE 754, as in CEL: x/0 is a signed infinity and 0/0 is NaN.
        if left == 0.0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


#: Deepest value :func:`import_value` accepts; rendering and comparing values recurse.
MAX_VALUE_DEPTH = 200
_KEY_KINDS = frozenset({"int", "uint", "bool", "string"})


def import_value(value: object, depth: int = 0) -> Any:
    """Deep-copy a Python value into plain CEL values (tuples become lists, mappings dicts).

    Raises:
        TypeError: a value or map key of a type CEL does not support.
        ValueError: nested more than ``MAX_VALUE_DEPTH`` levels.
    """
    if depth > MAX_VALUE_DEPTH:
        raise ValueError(f"value is nested too deeply (limit {MAX_VALUE_DEPTH})")
    try:
        value_kind = kind(value)
    except errors.EvaluationError as exc:
        raise TypeError(str(exc)) from None
    if value_kind == "list":
        assert isinstance(value, list | tuple)
        return [import_value(item, depth + 1) for item in value]
    if value_kind == "map":
        assert isinstance(value, Mapping)
        copied: dict[Any, Any] = {}
        for key, item in value.items():
            if describe(key) not in _KEY_KINDS:
                raise TypeError(f"unsupported map key type {describe(key)}")
            copied[import_value(key, depth + 1)] = import_value(item, depth + 1)
        return copied
    if value_kind == "string":
        return str(value)
    if value_kind == "int":
        return int(value)  # type: ignore[call-overload]
    if value_kind == "double":
        return float(value)  # type: ignore[arg-type]
    return value
