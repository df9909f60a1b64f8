"""Partial evaluation: substitute a variable by a constant and fold constant sub-trees."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from stepline._cel import ast, errors, evaluator

__all__ = ["fold", "substitute"]


def substitute(node: ast.Node, name: str, value: Any) -> ast.Node:
    """Replace every free occurrence of the variable ``name`` with the constant ``value``."""
    if isinstance(node, ast.Ident):
        return ast.Literal(value, pos=node.pos) if node.name == name else node
    if isinstance(node, ast.Comprehension) and node.var == name:
        # The loop variable shadows ``name`` inside the body: only the target is free.
        return dataclasses.replace(node, target=substitute(node.target, name, value))
    return _map_children(node, lambda child: substitute(child, name, value))


def fold(node: ast.Node) -> ast.Node:
    """Evaluate every sub-tree that needs no variables, keeping those that fail.

    A failing constant is left in place so the error surfaces at evaluation, where
    ``false && <error>`` can still absorb it. ``&&``/``||`` chains with a decisive
    constant operand become that constant, non-decisive constants are dropped where that
    cannot change the result, and conditionals with a constant condition are reduced.
    """
    if isinstance(node, ast.Literal):
        return node
    if next(ast.free_identifiers(node), None) is None:
        try:
            return ast.Literal(evaluator.build(node)({}), pos=node.pos)
        except (errors.EvaluationError, RecursionError):
            pass
    return _simplify(_map_children(node, fold))


def _simplify(node: ast.Node) -> ast.Node:
    if isinstance(node, ast.Logical):
        decisive = node.op == "||"
        for operand in node.operands:
            if isinstance(operand, ast.Literal) and operand.value is decisive:
                return ast.Literal(decisive, pos=node.pos)
        # `true && x` is x only when x is sure to be a bool (or an error) by its form.
        rest = tuple(
            operand
            for operand in node.operands
            if not (isinstance(operand, ast.Literal) and operand.value is (not decisive))
        )
        if len(rest) > 1:
            return dataclasses.replace(node, operands=rest)
        if len(rest) == 1 and _is_boolean(rest[0]):
            return rest[0]
    if isinstance(node, ast.Conditional) and isinstance(node.condition, ast.Literal):
        if node.condition.value is True:
            return node.then
        if node.condition.value is False:
            return node.otherwise
    return node


_BOOLEAN_OPS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_BOOLEAN_CALLS = frozenset({"bool", "contains", "endsWith", "matches", "startsWith"})


def _is_boolean(node: ast.Node) -> bool:
    if isinstance(node, ast.Binary):
        return node.op in _BOOLEAN_OPS
    if isinstance(node, ast.Call):
        return node.function in _BOOLEAN_CALLS
    if isinstance(node, ast.Comprehension):
        return node.macro in {"all", "exists", "exists_one"}
    if isinstance(node, ast.Unary):
        return node.op == "!"
    return isinstance(node, ast.Logical | ast.Has)


def _map_children(node: ast.Node, change: Callable[[ast.Node], ast.Node]) -> ast.Node:
    replace = dataclasses.replace
    if isinstance(node, ast.Select | ast.Has | ast.Unary):
        return replace(node, operand=change(node.operand))
    if isinstance(node, ast.Index):
        return replace(node, operand=change(node.operand), index=change(node.index))
    if isinstance(node, ast.Call):
        target = None if node.target is None else change(node.target)
        return replace(node, target=target, args=tuple(map(change, node.args)))
    if isinstance(node, ast.ListExpr):
        return replace(node, items=tuple(map(change, node.items)))
    if isinstance(node, ast.MapExpr):
        entries = tuple((change(key), change(value)) for key, value in node.entries)
        return replace(node, entries=entries)
    if isinstance(node, ast.Binary):
        return replace(node, left=change(node.left), right=change(node.right))
    if isinstance(node, ast.Logical):
        return replace(node, operands=tuple(map(change, node.operands)))
    if isinstance(node, ast.Conditional):
        return replace(
            node,
            condition=change(node.condition),
            then=change(node.then),
            otherwise=change(node.otherwise),
        )
    if isinstance(node, ast.Comprehension):
        transform = None if node.transform is None else change(node.transform)
        return replace(
            node, target=change(node.target), body=change(node.body), transform=transform
        )
    return node
