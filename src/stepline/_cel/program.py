"""Compiled programs: :func:`compile`, :func:`check` and :class:`Program`."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any

from stepline._cel import ast, errors, evaluator, folding, parser, source, values

__all__ = ["Program", "check", "compile"]


class Program:
    """A parsed, constant-folded and closure-compiled CEL expression; immutable.

    Create programs with :func:`compile` or :func:`check`, not directly.
    """

    __slots__ = ("_evaluate", "_node", "_text", "_variables")

    def __init__(self, node: ast.Node, text: str | None = None) -> None:
        self._node = node
        self._text = text
        self._evaluate = evaluator.build(node)
        self._variables = frozenset(ident.name for ident in ast.free_identifiers(node))

    def __repr__(self) -> str:
        return f"Program({self.text!r})"

    @property
    def text(self) -> str:
        """The source text; for a substituted program, the folded expression rendered as CEL."""
        if self._text is None:
            self._text = source.unparse(self._node)
        return self._text

    @property
    def tree(self) -> ast.Node:
        """The folded syntax tree, for code that translates the expression (to SQL)."""
        return self._node

    @property
    def variables(self) -> frozenset[str]:
        """Top-level identifiers the program reads, e.g. ``frozenset({"event", "async"})``.

        Names only used where constant folding made them irrelevant (``x && false``) and
        comprehension loop variables are not included.
        """
        return self._variables

    @property
    def is_constant_false(self) -> bool:
        """Whether the folded program is literally ``false``, so it can never match."""
        return isinstance(self._node, ast.Literal) and self._node.value is False

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Evaluate against JSON-like values.

        Args:
            variables: top-level names (``event``, ``async``, ...) to plain ``dict``,
                ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None`` values.

        Returns:
            The result. A container result may share structure with the program's
            constants or the variables: do not mutate it.

        Raises:
            EvaluationError: a missing variable or key, a type mismatch, an overflow, ...
        """
        try:
            return self._evaluate(variables)
        except RecursionError:
            raise errors.EvaluationError("value is nested too deeply") from None

    def matches(self, variables: Mapping[str, Any]) -> bool:
        """Whether the program evaluates to exactly ``True``; any evaluation error is ``False``.

        Args:
            variables: as for :meth:`evaluate`.
        """
        try:
            return self._evaluate(variables) is True
        except (errors.EvaluationError, RecursionError):
            return False

    def substitute(self, name: str, value: Any) -> Program:
        """Partially evaluate: bind ``name`` to the constant ``value`` and fold.

        ``compile("event.data.id == async.data.id").substitute("event", ev)`` gives the
        program ``"abc" == async.data.id``; its :attr:`text` is that rendered source.

        Args:
            name: the top-level variable to replace.
            value: a JSON-like value; it is deep-copied.

        Returns:
            A new program, equivalent to this one evaluated with ``name`` bound to ``value``.

        Raises:
            TypeError: ``value`` holds something CEL cannot represent.
            ValueError: ``value`` is nested too deeply.
        """
        try:
            constant = values.import_value(value)
        except RecursionError:
            raise ValueError("value is nested too deeply") from None
        return Program(_fold(folding.substitute(self._node, name, constant)))


def compile(text: str) -> Program:
    """Parse and compile a CEL expression once; evaluate it many times.

    Args:
        text: the expression, e.g. ``"event.data.userId == async.data.userId"``.

    Returns:
        The compiled program (cached: the same text gives the same program).

    Raises:
        ExpressionError: the text is not a valid expression of the supported subset; the
            message names the 1-based column and shows the text with a caret.
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, got {type(text).__name__}")
    return _compile(text)


@functools.lru_cache(maxsize=1024)
def _compile(text: str) -> Program:
    return Program(_fold(_parse(text)), text)


def _parse(text: str) -> ast.Node:
    try:
        return parser.parse(text)
    except RecursionError:
        # Only reachable when the caller's stack is already deep; the parser caps nesting.
        raise errors.ExpressionError("expression is nested too deeply", text, 0) from None


def _fold(node: ast.Node) -> ast.Node:
    try:
        return folding.fold(node)
    except RecursionError:
        return node  # folding is an optimisation; the unfolded tree means the same


def check(text: str, *, allowed: Collection[str]) -> Program:
    """Compile ``text`` and check it only uses the variables in ``allowed``.

    Args:
        text: the expression.
        allowed: the variable names available where the expression is used, e.g.
            ``{"event", "async"}`` for ``cancel.if``.

    Returns:
        The compiled program.

    Raises:
        ExpressionError: invalid, or it references a variable not in ``allowed``.
        TypeError: ``text`` is not a string, or ``allowed`` is a single string.
    """
    if isinstance(allowed, str):
        raise TypeError("allowed must be a collection of names, not a str")
    program = compile(text)
    permitted = frozenset(allowed)
    names = ", ".join(sorted(permitted)) or "none"
    # Check the tree as written: folding may have dropped a reference (``x && false``).
    for ident in sorted(ast.free_identifiers(_parse(text)), key=lambda ident: ident.pos):
        if ident.name not in permitted:
            reason = f"unknown variable {ident.name!r} (allowed here: {names})"
            raise errors.ExpressionError(reason, text, ident.pos)
    return program
