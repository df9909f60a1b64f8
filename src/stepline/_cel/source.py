"""Renders a syntax tree back to CEL source; used for the text of substituted programs.

The output re-parses to an equivalent tree: parentheses are added exactly where
precedence requires them, and constants are written as literals (or, for values without
a literal form such as ``NaN`` or timestamps, as the call that produces them).
"""

from __future__ import annotations

import math
import re
from typing import Any

from stepline._cel import ast, parser, temporal, values

__all__ = ["render_value", "unparse"]

_PRECEDENCE = parser.PRECEDENCE
_PLAIN_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNARY = 6
_MEMBER = 7
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TYPE_SOURCES = {
    "google.protobuf.Timestamp": 'type(timestamp("1970-01-01T00:00:00Z"))',
    "google.protobuf.Duration": 'type(duration("0s"))',
}


def unparse(node: ast.Node) -> str:
    """Render ``node`` as CEL source text."""
    return _render(node)[0]


def _wrap(node: ast.Node, minimum: int) -> str:
    text, precedence = _render(node)
    return text if precedence >= minimum else f"({text})"


def _render(node: ast.Node) -> tuple[str, int]:
    if isinstance(node, ast.Literal):
        text = render_value(node.value)
        return text, _UNARY if text.startswith("-") else _MEMBER
    if isinstance(node, ast.Ident):
        return node.name, _MEMBER
    if isinstance(node, ast.Select):
        return f"{_wrap(node.operand, _MEMBER)}.{_field(node.field)}", _MEMBER
    if isinstance(node, ast.Has):
        return f"has({_wrap(node.operand, _MEMBER)}.{_field(node.field)})", _MEMBER
    if isinstance(node, ast.Index):
        return f"{_wrap(node.operand, _MEMBER)}[{unparse(node.index)}]", _MEMBER
    if isinstance(node, ast.Call):
        args = ", ".join(map(unparse, node.args))
        if node.target is None:
            return f"{node.function}({args})", _MEMBER
        return f"{_wrap(node.target, _MEMBER)}.{node.function}({args})", _MEMBER
    if isinstance(node, ast.ListExpr):
        return f"[{', '.join(map(unparse, node.items))}]", _MEMBER
    if isinstance(node, ast.MapExpr):
        entries = ", ".join(f"{unparse(key)}: {unparse(value)}" for key, value in node.entries)
        return f"{{{entries}}}", _MEMBER
    if isinstance(node, ast.Unary):
        return f"{node.op}{_wrap(node.operand, _MEMBER)}", _UNARY
    if isinstance(node, ast.Binary):
        precedence = _PRECEDENCE[node.op]
        left, right = _wrap(node.left, precedence), _wrap(node.right, precedence + 1)
        return f"{left} {node.op} {right}", precedence
    if isinstance(node, ast.Logical):
        precedence = _PRECEDENCE[node.op]
        operands = (_wrap(operand, precedence + 1) for operand in node.operands)
        return f" {node.op} ".join(operands), precedence
    if isinstance(node, ast.Conditional):
        condition, then = _wrap(node.condition, 1), _wrap(node.then, 1)
        return f"{condition} ? {then} : {unparse(node.otherwise)}", 0
    if isinstance(node, ast.Comprehension):
        parts = [node.var, unparse(node.body)]
        if node.transform is not None:
            parts.append(unparse(node.transform))
        return f"{_wrap(node.target, _MEMBER)}.{node.macro}({', '.join(parts)})", _MEMBER
    raise TypeError(f"not a CEL node: {node!r}")


def _field(name: str) -> str:
    # Field names come from the parser, so a name that is not a plain one was quoted there.
    if _PLAIN_FIELD.fullmatch(name) and name not in parser.KEYWORDS:
        return name
    return f"`{name}`"


def render_value(value: Any) -> str:
    """Render a CEL value as source text that evaluates to it."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    kind = values.kind(value)
    if kind == "int":
        return str(int(value))
    if kind == "uint":
        return f"{int(value)}u"
    if kind == "double":
        if math.isfinite(value):
            return repr(float(value))
        return f'double("{"NaN" if math.isnan(value) else f"{value:+}"}")'
    if kind == "string":
        return _quote(value)
    if kind == "list":
        return f"[{', '.join(map(render_value, value))}]"
    if kind == "map":
        pairs = (f"{render_value(key)}: {render_value(item)}" for key, item in value.items())
        return f"{{{', '.join(pairs)}}}"
    if kind == "type":
        name = str(value.name)
        return _TYPE_SOURCES.get(name, name)
    if kind == "timestamp":
        return f'timestamp("{temporal.format_timestamp(value)}")'
    return f'duration("{temporal.format_duration(value)}")'


def _quote(text: str) -> str:
    parts = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            parts.append(escaped)
        elif char < " " or char == "\x7f":
            parts.append(f"\\x{ord(char):02x}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)
