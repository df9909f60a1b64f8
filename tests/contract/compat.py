"""What breaks a ``/v1`` client: the incompatible differences between two OpenAPI documents.

Pure functions over two documents (the committed snapshot and the generated one). A change
is incompatible when a client written against the old document could fail against the new
one: an operation, a query parameter, a success status or a response field removed; a
type or an enum narrowed in an answer (a value the client never expected) or in a request
(a value the client sends refused); a request field, parameter or body newly required; a
request bound tightened; a credential an operation took no longer taken. Adding an
optional field, parameter, status, operation or credential is compatible, and so is any
change to a description or a refusal's list.
"""

from __future__ import annotations

import json
from typing import Any

Schema = Any
_BOUNDS_UP = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_BOUNDS_DOWN = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


def breaking(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every incompatible difference from ``old`` to ``new``, one line each."""
    found: list[str] = []
    for path, item in old["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            now = new["paths"].get(path, {}).get(method)
            if now is None:
                found.append(f"{where}: operation removed")
                continue
            found += _operation(where, op, now, _Refs(old), _Refs(new))
    return found


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The operations and shapes that differ at all (compatible or not), for a message."""
    names = []
    for path in sorted(set(old["paths"]) | set(new["paths"])):
        was, now = old["paths"].get(path, {}), new["paths"].get(path, {})
        for method in sorted(set(was) | set(now)):
            if was.get(method) != now.get(method):
                names.append(f"{method.upper()} {path}")
    was, now = old["components"]["schemas"], new["components"]["schemas"]
    names += [f"schema {n}" for n in sorted(set(was) | set(now)) if was.get(n) != now.get(n)]
    return names


class _Refs:
    def __init__(self, document: dict[str, Any]) -> None:
        self.schemas = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: Schema) -> Schema:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            schema = self.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
            seen += 1
        return schema


def _operation(
    where: str, old: dict[str, Any], new: dict[str, Any], was: _Refs, now: _Refs
) -> list[str]:
    found: list[str] = []
    schemes = {name for req in new.get("security", []) for name in req}
    for lost in sorted({name for req in old.get("security", []) for name in req} - schemes):
        found.append(f"{where}: no longer takes the credential {lost!r}")
    if {} in old.get("security", []) and {} not in new.get("security", []):
        found.append(f"{where}: no longer open to callers without a credential")
    params = {(p["name"], p["in"]): p for p in new.get("parameters", [])}
    for p in old.get("parameters", []):
        key, label = (p["name"], p["in"]), f"{where}: {p['in']} parameter {p['name']!r}"
        if key not in params:
            found.append(f"{label} removed")
            continue
        if params[key].get("required") and not p.get("required"):
            found.append(f"{label} now required")
        found += _schema(label, p.get("schema", {}), params[key].get("schema", {}), was, now, True)
    old_names = {(p["name"], p["in"]) for p in old.get("parameters", [])}
    for key, p in params.items():
        if key not in old_names and p.get("required"):
            found.append(f"{where}: new required {key[1]} parameter {key[0]!r}")
    found += _body(where, old.get("requestBody"), new.get("requestBody"), was, now)
    for status, answer in old.get("responses", {}).items():
        if not status.startswith("2"):
            continue
        label = f"{where}: answer {status}"
        if status not in new.get("responses", {}):
            found.append(f"{label} removed")
            continue
        then = answer.get("content", {})
        later = new["responses"][status].get("content", {})
        for media, content in then.items():
            if media not in later:
                found.append(f"{label}: {media} removed")
                continue
            found += _schema(label, content.get("schema", {}), later[media].get("schema", {}),
                             was, now, False)  # fmt: skip
    return found


def _body(where: str, old: Any, new: Any, was: _Refs, now: _Refs) -> list[str]:
    if new is None:
        return [f"{where}: request body no longer read"] if old is not None else []
    if old is None:
        return [f"{where}: new required request body"] if new.get("required") else []
    found = []
    if new.get("required") and not old.get("required"):
        found.append(f"{where}: request body now required")
    then = old.get("content", {}).get("application/json", {}).get("schema", {})
    later = new.get("content", {}).get("application/json", {}).get("schema", {})
    return found + _schema(f"{where}: request body", then, later, was, now, True)


def _types(schema: Schema) -> set[str] | None:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind is None:
        return None  # anything
    return {kind} if isinstance(kind, str) else set(kind)


def _schema(
    label: str, old: Schema, new: Schema, was: _Refs, now: _Refs, request: bool, depth: int = 0
) -> list[str]:
    """Differences a client sees: ``request`` (the engine must accept what it accepted)
    or an answer (the engine must not answer what the client did not expect)."""
    old, new = was.resolve(old), now.resolve(new)
    if depth > 24 or not isinstance(old, dict) or not isinstance(new, dict):
        return []
    if old == new and "$ref" not in json.dumps(old):  # a reference may differ in each document
        return []
    found: list[str] = []
    then, later = _types(old), _types(new)
    wider, narrower = (later, then) if request else (then, later)
    if wider is not None and (narrower is None or not narrower <= wider):
        found.append(f"{label}: type {_text(then)} became {_text(later)}")
    if "enum" in old or "enum" in new:
        a, b = old.get("enum"), new.get("enum")
        big, small = (b, a) if request else (a, b)
        if big is not None and (small is None or any(v not in big for v in small)):
            found.append(f"{label}: values {_text(a)} became {_text(b)}")
    if request:
        for name in _BOUNDS_UP:
            if name in new and (name not in old or new[name] > old[name]):
                found.append(f"{label}: {name} tightened to {new[name]}")
        for name in _BOUNDS_DOWN:
            if name in new and (name not in old or new[name] < old[name]):
                found.append(f"{label}: {name} tightened to {new[name]}")
        if "pattern" in new and new.get("pattern") != old.get("pattern"):
            found.append(f"{label}: pattern became {new['pattern']!r}")
    was_props, now_props = old.get("properties", {}), new.get("properties", {})
    was_required, now_required = set(old.get("required", [])), set(new.get("required", []))
    for name, schema in was_props.items():
        field = f"{label}: field {name!r}"
        if name not in now_props:
            found.append(f"{field} removed")
            continue
        if not request and name in was_required and name not in now_required:
            found.append(f"{field} no longer always present")
        found += _schema(field, schema, now_props[name], was, now, request, depth + 1)
    if request:
        for name in sorted(now_required - was_required):
            found.append(f"{label}: field {name!r} now required")
    if "items" in old and "items" in new:
        found += _schema(f"{label}[]", old["items"], new["items"], was, now, request, depth + 1)
    a, b = old.get("anyOf"), new.get("anyOf")
    if a is not None and b is not None and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found += _schema(f"{label} (option {i})", x, y, was, now, request, depth + 1)
    elif a is not None and a != b:
        found.append(f"{label}: its options changed")
    return found


def _text(value: Any) -> str:
    return json.dumps(sorted(value) if isinstance(value, set) else value)
