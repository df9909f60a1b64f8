"""The immutable syntax tree produced by the parser and consumed by the evaluator.

Every node records ``pos`` (0-based offset of its first character, for error messages) and
``depth`` (height of the subtree), which lets the parser refuse trees that would make the
recursive evaluator overflow Python's stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

__all__ = [
    "Binary",
    "Call",
    "Comprehension",
    "Conditional",
    "Has",
    "Ident",
    "Index",
    "ListExpr",
    "Literal",
    "Logical",
    "MapExpr",
    "Node",
    "Select",
    "Unary",
    "children",
    "free_identifiers",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """Base of all nodes."""

    pos: int = dataclasses.field(default=0, compare=False, kw_only=True)
    depth: int = dataclasses.field(default=1, compare=False, init=False, repr=False)

    def __post_init__(self) -> None:
        height = max((child.depth for child in children(self)), default=0)
        object.__setattr__(self, "depth", height + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Literal(Node):
    """A constant: a literal in the source or a value folded or substituted in."""

    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Ident(Node):
    """A reference to a variable (or to a comprehension's loop variable)."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class Select(Node):
    """``operand.field``."""

    operand: Node
    field: str


@dataclasses.dataclass(frozen=True, slots=True)
class Has(Node):
    """``has(operand.field)``: whether the field is present."""

    operand: Node
    field: str


@dataclasses.dataclass(frozen=True, slots=True)
class Index(Node):
    """``operand[index]``."""

    operand: Node
    index: Node


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Node):
    """``function(args)`` or, with a ``target``, ``target.function(args)``."""

    function: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ListExpr(Node):
    """``[items]``."""

    items: tuple[Node, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class MapExpr(Node):
    """``{key: value, ...}``."""

    entries: tuple[tuple[Node, Node], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Unary(Node):
    """``!operand`` or ``-operand``."""

    op: str
    operand: Node


@dataclasses.dataclass(frozen=True, slots=True)
class Binary(Node):
    """An arithmetic, relational or ``in`` operator."""

    op: str
    left: Node
    right: Node


@dataclasses.dataclass(frozen=True, slots=True)
class Logical(Node):
    """An n-ary chain of ``&&`` or ``||``; n-ary because CEL's error absorption commutes."""

    op: str
    operands: tuple[Node, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Conditional(Node):
    """``condition ? then : otherwise``."""

    condition: Node
    then: Node
    otherwise: Node


@dataclasses.dataclass(frozen=True, slots=True)
class Comprehension(Node):
    """A list/map macro: ``target.macro(var, body)`` or ``target.map(var, body, transform)``.

    For the three-argument ``map`` the body is the filter and ``transform`` the result.
    """

    macro: str
    target: Node
    var: str
    body: Node
    transform: Node | None = None


def children(node: Node) -> Iterator[Node]:
    """Yield the direct sub-expressions of ``node`` in source order."""
    if isinstance(node, Select | Has | Unary):
        yield node.operand
    elif isinstance(node, Index):
        yield node.operand
        yield node.index
    elif isinstance(node, Call):
        if node.target is not None:
            yield node.target
        yield from node.args
    elif isinstance(node, ListExpr):
        yield from node.items
    elif isinstance(node, MapExpr):
        for key, value in node.entries:
            yield key
            yield value
    elif isinstance(node, Binary):
        yield node.left
        yield node.right
    elif isinstance(node, Logical):
        yield from node.operands
    elif isinstance(node, Conditional):
        yield node.condition
        yield node.then
        yield node.otherwise
    elif isinstance(node, Comprehension):
        yield node.target
        yield node.body
        if node.transform is not None:
            yield node.transform


def free_identifiers(node: Node, bound: frozenset[str] = frozenset()) -> Iterator[Ident]:
    """Yield every identifier of ``node`` not bound by an enclosing comprehension."""
    if isinstance(node, Ident):
        if node.name not in bound:
            yield node
    elif isinstance(node, Comprehension):
        yield from free_identifiers(node.target, bound)
        inner = bound | {node.var}
        yield from free_identifiers(node.body, inner)
        if node.transform is not None:
            yield from free_identifiers(node.transform, inner)
    else:
        for child in children(node):
            yield from free_identifiers(child, bound)
