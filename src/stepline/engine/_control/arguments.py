"""Edited tool arguments checked against the tool's JSON schema, before a decision is kept.

A person approving a tool call may change its arguments; the engine refuses (400, with
each problem's path) arguments the tool's schema would refuse, so that the mistake is
told to the person at once rather than to the model after the run resumed. Pydantic AI
validates the arguments again when the approved call runs.

The schemas come from Pydantic (``ToolDefinition.parameters_json_schema``): this checks
the keywords those use (``type``, ``properties``, ``required``, ``additionalProperties``,
``items``, ``prefixItems``, ``enum``, ``const``, ``anyOf``, ``oneOf``, ``allOf``, ``$ref``
into ``$defs``, the bounds on numbers, strings and arrays). A keyword it does not know
is not checked. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["problems"]

#: Problems reported at most: a wrong answer says enough in a few.
MAX_PROBLEMS = 20
_DEPTH = 64

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def problems(value: Any, schema: Any) -> list[str]:
    """What is wrong with ``value`` under ``schema``: ``"<path>: <problem>"`` each, [] if
    nothing (a schema that is not an object checks nothing)."""
    if not isinstance(schema, dict):
        return []
    defs = schema.get("$defs")
    checker = _Checker(defs if isinstance(defs, dict) else {})
    checker.check(value, schema, "$", 0)
    return checker.out[:MAX_PROBLEMS]


def _kind_holds(kind: object, value: Any) -> bool:
    holds = _TYPES.get(kind) if isinstance(kind, str) else None
    return True if holds is None else holds(value)


class _Checker:
    """One check: the schema's ``$defs`` and the problems found so far."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.out: list[str] = []

    def check(self, value: Any, schema: Any, path: str, depth: int) -> None:
        if not isinstance(schema, dict) or depth > _DEPTH or len(self.out) >= MAX_PROBLEMS:
            return
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            self.check(value, self.defs.get(ref.removeprefix("#/$defs/")), path, depth + 1)
        kind = schema.get("type")
        kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else None
        if kinds is not None and not any(_kind_holds(k, value) for k in kinds):
            self.out.append(f"{path}: want {' or '.join(map(str, kinds))}, got {_name(value)}")
            return
        if "const" in schema and value != schema["const"]:
            self.out.append(f"{path}: want {schema['const']!r}")
        enum = schema.get("enum")
        if isinstance(enum, list) and value not in enum:
            self.out.append(f"{path}: want one of {enum!r}")
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options and not self._any(value, options, path, depth):
                self.out.append(f"{path}: matches none of the schema's {key} choices")
        for option in schema.get("allOf") or []:
            self.check(value, option, path, depth + 1)
        if isinstance(value, dict):
            self._object(value, schema, path, depth)
        elif isinstance(value, list):
            self._array(value, schema, path, depth)
        elif isinstance(value, str):
            self._bounds(len(value), schema, ("minLength", "maxLength", "characters"), path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, schema, path)

    def _any(self, value: Any, options: list[Any], path: str, depth: int) -> bool:
        for option in options:
            trial = _Checker(self.defs)
            trial.check(value, option, path, depth + 1)
            if not trial.out:
                return True
        return False

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str, depth: int) -> None:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        for name in schema.get("required") or []:
            if name not in value:
                self.out.append(f"{path}.{name}: required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                self.check(item, properties[name], f"{path}.{name}", depth + 1)
            elif extra is False:
                self.out.append(f"{path}.{name}: not an argument of the tool")
            elif isinstance(extra, dict):
                self.check(item, extra, f"{path}.{name}", depth + 1)

    def _array(self, value: list[Any], schema: dict[str, Any], path: str, depth: int) -> None:
        self._bounds(len(value), schema, ("minItems", "maxItems", "items"), path)
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        for index, item in enumerate(value):
            rule = prefix[index] if index < len(prefix) else items
            self.check(item, rule, f"{path}[{index}]", depth + 1)

    def _bounds(
        self, size: int, schema: dict[str, Any], names: tuple[str, str, str], path: str
    ) -> None:
        low, high, unit = names
        least, most = schema.get(low), schema.get(high)
        if isinstance(least, int) and size < least:
            self.out.append(f"{path}: at least {least} {unit}")
        if isinstance(most, int) and size > most:
            self.out.append(f"{path}: at most {most} {unit}")

    def _number(self, value: float, schema: dict[str, Any], path: str) -> None:
        checks: tuple[tuple[str, Callable[[float], bool], str], ...] = (
            ("minimum", lambda bound: value >= bound, ">="),
            ("maximum", lambda bound: value <= bound, "<="),
            ("exclusiveMinimum", lambda bound: value > bound, ">"),
            ("exclusiveMaximum", lambda bound: value < bound, "<"),
            (
                "multipleOf",
                lambda bound: bound == 0 or (value / bound).is_integer(),
                "a multiple of",
            ),
        )
        for key, holds, word in checks:
            bound = schema.get(key)
            if isinstance(bound, int | float) and not isinstance(bound, bool) and not holds(bound):
                self.out.append(f"{path}: want {word} {bound}")


def _name(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    return names.get(type(value), "number")
