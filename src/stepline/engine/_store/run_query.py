"""A query over runs: a CEL expression compiled to SQL where its fields are columns. Pure.

The query reads these names (``FIELDS``): ``run_id``, ``function_id``, ``app_id``, ``status``,
``version``, ``created``, ``started``, ``ended`` (timestamps), ``duration`` (a duration,
``ended - started``), ``attributes`` (a map of strings), ``event`` (the trigger event:
``name``, ``data``, ``id``, ``ts``...), ``events`` (every trigger event), ``output`` (the
run's output as JSON) and ``error`` (a failed run's error name). ``now`` is the time of the
request, so ``created > now - duration("1h")`` folds to a constant.

What the expression means is CEL's: ``Program.matches`` over ``variables(run)``. The
compiler turns what it can into a ``WHERE`` clause with the same meaning (``exact``) or one
that keeps every run the expression keeps and some more (a narrowing filter the engine
checks each run against in Python afterwards). Negations are pushed down to the leaves
(CEL's ``&&`` and ``||`` absorb errors as SQL's three-valued logic absorbs NULL, so De
Morgan holds for both), and each leaf knows its SQL and its negation's: a leaf is true in
SQL exactly when CEL says ``true``. What does not compile (event data, output paths,
functions other than the comparisons below) stays ``TRUE`` in SQL and inexact.

Every value in the SQL is a parameter; the column names come from ``_COLUMNS`` only.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stepline import _cel
from stepline._cel import ast, parser
from stepline.engine._model import Run
from stepline.engine._store.rows import parsed_or_none

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "QueryError",
    "RunQuery",
    "compile_query",
    "variables",
]

#: the longest query accepted (characters) and its deepest tree (nested operators)
MAX_LENGTH = 2000
MAX_DEPTH = 24

#: every name a query reads, with what it holds (the dashboard completes these)
FIELDS: dict[str, str] = {
    "run_id": "the run id (string)",
    "function_id": "the function id (string)",
    "app_id": "the app id (string or null)",
    "status": "Queued, Running, Completed, Failed or Cancelled",
    "version": "the app version the run started on (string or null)",
    "created": "when the run was created (timestamp)",
    "started": "when its first call started (timestamp or null)",
    "ended": "when it ended (timestamp or null)",
    "duration": "ended - started (duration or null)",
    "attributes": "its attributes (map of strings)",
    "event": "the trigger event: name, data, id, ts, user",
    "events": "every trigger event (list)",
    "output": "its output (JSON)",
    "error": "a failed run's error name (string or null)",
    "now": "the time of the request (timestamp)",
}

_STRING, _TIME, _DURATION = "string", "timestamp", "duration"
#: field -> (column, kind, nullable); ``duration`` is computed
_COLUMNS: dict[str, tuple[str, str, bool]] = {
    "run_id": ("run_id", _STRING, False),
    "function_id": ("function_id", _STRING, False),
    "app_id": ("app_id", _STRING, True),
    "status": ("status", _STRING, False),
    "version": ("app_version", _STRING, True),
    "created": ("created_at", _TIME, False),
    "started": ("started_at", _TIME, True),
    "ended": ("ended_at", _TIME, True),
    "duration": ("(ended_at - started_at)", _DURATION, True),
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
#: half a microsecond: CEL reads a stored time rounded to the microsecond
_HALF_MICRO = 0.5e-6
#: how far a duration compiled to SQL is widened (stored times are floats)
_SLACK = 1e-3
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class QueryError(ValueError):
    """A query that is not accepted: bad syntax, an unknown field, too long or too deep.

    Attributes:
        reason: what is wrong, without the location.
        position: 0-based offset of the problem.
        line: 1-based line of the problem.
        column: 1-based column of the problem.
    """

    def __init__(self, message: str, reason: str, position: int, line: int, column: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.position = position
        self.line = line
        self.column = column

    def details(self) -> dict[str, Any]:
        """The problem's location, for an API's error object."""
        return {
            "reason": self.reason,
            "position": self.position,
            "line": self.line,
            "column": self.column,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RunQuery:
    """A compiled query.

    Attributes:
        text: the query as written.
        program: the expression with ``now`` bound, to check a run against.
        where: a SQL condition over ``runs`` (``?`` parameters), or None (every run).
        args: its parameters.
        exact: ``where`` means the expression, so no run needs checking in Python.
    """

    text: str
    program: _cel.Program
    where: str | None
    args: tuple[Any, ...]
    exact: bool

    def matches(self, run: Run) -> bool:
        """Whether the expression is ``true`` for ``run`` (errors are ``false``)."""
        return self.program.matches(variables(run))


def compile_query(text: str, now: float) -> RunQuery:
    """Parse, check and compile a query.

    Args:
        text: the expression.
        now: the time ``now`` stands for (epoch seconds).

    Raises:
        QueryError: longer than ``MAX_LENGTH``, deeper than ``MAX_DEPTH``, not valid CEL,
            or reading a name that is not a field.
    """
    if len(text) > MAX_LENGTH:
        raise _error(f"longer than {MAX_LENGTH} characters", text, MAX_LENGTH)
    try:
        tree = _cel.check(text, allowed=FIELDS)
    except _cel.ExpressionError as exc:
        reason = exc.reason.replace("unknown variable", "unknown field").replace(
            "(allowed here:", "(fields:"
        )
        raise QueryError(
            f"query: {reason} at column {exc.column}", reason, exc.position, exc.line, exc.column
        ) from None
    if parser.parse(text).depth > MAX_DEPTH:  # as written: folding may hide the nesting
        raise _error(f"nested deeper than {MAX_DEPTH} levels; simplify it", text, 0)
    program = tree.substitute("now", _timestamp(now))
    node = program.tree
    compiled = _Compiler().clause(node, negate=False)
    if compiled is None:
        return RunQuery(text, program, None, (), exact=False)
    return RunQuery(text, program, compiled.sql, tuple(compiled.args), compiled.exact)


def variables(run: Run) -> Mapping[str, Any]:
    """What a query reads of ``run``, as CEL values (``now`` is bound at compile time).

    Each field is computed when the expression first reads it: a query over ``status``
    and ``event.data`` never parses the output or builds a timestamp.
    """
    return _Fields(run)


class _Fields(Mapping[str, Any]):
    """A run's fields, each computed on first read and kept."""

    __slots__ = ("_run", "_seen")

    def __init__(self, run: Run) -> None:
        self._run = run
        self._seen: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._seen[name]
        except KeyError:
            pass
        read = _READERS.get(name)
        if read is None:
            raise KeyError(name)
        value = self._seen[name] = read(self._run)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_READERS)

    def __len__(self) -> int:
        return len(_READERS)


def _output(run: Run) -> Any:
    return parsed_or_none(run.output) if run.output is not None else None


def _error_name(run: Run) -> str | None:
    output = _output(run)
    if run.status.value != "Failed" or not isinstance(output, dict):
        return None
    # the SDK's error object, or that object under "error"
    inner = output.get("error")
    name = output.get("name", inner.get("name") if isinstance(inner, dict) else None)
    return name if isinstance(name, str) else None


def _duration(run: Run) -> _dt.timedelta | None:
    started, ended = _time_or_none(run.started_at), _time_or_none(run.ended_at)
    return ended - started if started is not None and ended is not None else None


_READERS: dict[str, Callable[[Run], Any]] = {
    "run_id": lambda run: run.run_id,
    "function_id": lambda run: run.function_id,
    "app_id": lambda run: run.app_id,
    "status": lambda run: run.status.value,
    "version": lambda run: run.app_version,
    "created": lambda run: _timestamp(run.created_at),
    "started": lambda run: _time_or_none(run.started_at),
    "ended": lambda run: _time_or_none(run.ended_at),
    "duration": _duration,
    "attributes": lambda run: dict(run.attributes),
    "event": lambda run: run.events[0] if run.events else None,
    "events": lambda run: run.events,
    "output": _output,
    "error": _error_name,
}


def _timestamp(epoch: float) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(microseconds=round(epoch * 1_000_000))


def _time_or_none(epoch: float | None) -> _dt.datetime | None:
    return None if epoch is None else _timestamp(epoch)


def _error(reason: str, text: str, position: int) -> QueryError:
    exc = _cel.ExpressionError(reason, text, position)
    return QueryError(f"query: {reason}", reason, exc.position, exc.line, exc.column)


@dataclasses.dataclass(slots=True)
class _Sql:
    sql: str
    args: list[Any]
    exact: bool


class _Compiler:
    """CEL tree -> SQL condition, negations pushed to the leaves (None: ``TRUE``)."""

    def clause(self, node: ast.Node, *, negate: bool) -> _Sql | None:
        if isinstance(node, ast.Literal) and isinstance(node.value, bool):
            return _Sql("1 = 1" if node.value is not negate else "1 = 0", [], exact=True)
        if isinstance(node, ast.Unary) and node.op == "!":
            return self.clause(node.operand, negate=not negate)
        if isinstance(node, ast.Logical):
            return self._logical(node, negate=negate)
        if isinstance(node, ast.Binary):
            if node.op == "in":
                return _in_list(node, negate=negate)
            if node.op in _FLIP:
                return _comparison(node, negate=negate)
        if isinstance(node, ast.Has):
            return _has_attribute(node, negate=negate)
        return None

    def _logical(self, node: ast.Logical, *, negate: bool) -> _Sql | None:
        conjunction = (node.op == "&&") is not negate
        parts = [self.clause(operand, negate=negate) for operand in node.operands]
        known = [part for part in parts if part is not None]
        if conjunction:
            if not known:
                return None
            exact = len(known) == len(parts) and all(part.exact for part in known)
            return _join(" AND ", known, exact=exact)
        if len(known) < len(parts):
            return None  # one operand may be true for any run
        return _join(" OR ", known, exact=all(part.exact for part in known))


def _join(glue: str, parts: list[_Sql], *, exact: bool) -> _Sql:
    if len(parts) == 1:
        return _Sql(parts[0].sql, parts[0].args, exact and parts[0].exact)
    args = [arg for part in parts for arg in part.args]
    return _Sql("(" + glue.join(part.sql for part in parts) + ")", args, exact)


def _literal(node: ast.Node) -> tuple[bool, Any]:
    if isinstance(node, ast.Literal):
        return True, node.value
    return False, None


def _field(node: ast.Node) -> str | None:
    return node.name if isinstance(node, ast.Ident) and node.name in _COLUMNS else None


def _attribute(node: ast.Node) -> str | None:
    """``attributes.name`` or ``attributes["name"]``: the name."""
    if isinstance(node, ast.Select) and _is_attributes(node.operand):
        return node.field
    if isinstance(node, ast.Index) and _is_attributes(node.operand):
        found, key = _literal(node.index)
        if found and type(key) is str:
            return key
    return None


def _is_attributes(node: ast.Node) -> bool:
    return isinstance(node, ast.Ident) and node.name == "attributes"


def _comparison(node: ast.Binary, *, negate: bool) -> _Sql | None:
    op, left, right = node.op, node.left, node.right
    if _literal(left)[0] and not _literal(right)[0]:
        op, left, right = _FLIP[op], right, left
    found, value = _literal(right)
    if not found:
        return None
    name = _attribute(left)
    if name is not None:
        return _attribute_comparison(name, op, value, negate=negate)
    field = _field(left)
    if field is None:
        return None
    column, kind, nullable = _COLUMNS[field]
    if value is None and op in ("==", "!="):
        is_null = (op == "==") is not negate
        if not nullable:
            return _Sql("1 = 0" if is_null else "1 = 1", [], exact=True)
        return _Sql(f"{column} IS {'' if is_null else 'NOT '}NULL", [], exact=True)
    if kind == _STRING and type(value) is str:
        return _string_comparison(column, nullable, op, value, negate=negate)
    if kind == _TIME and isinstance(value, _dt.datetime):
        return _time_comparison(column, op, value, negate=negate)
    if kind == _DURATION and isinstance(value, _dt.timedelta):
        return _duration_comparison(column, op, value, negate=negate)
    return None  # another kind: CEL decides (equality across kinds, an error)


def _string_comparison(
    column: str, nullable: bool, op: str, value: str, *, negate: bool
) -> _Sql | None:
    if op in ("==", "!="):
        equal = (op == "==") is not negate
        if equal:
            return _Sql(f"{column} = ?", [value], exact=True)
        # CEL: null != "x" is true
        sql = f"({column} IS NULL OR {column} <> ?)" if nullable else f"{column} <> ?"
        return _Sql(sql, [value], exact=True)
    # ordering a null is an error in CEL (never true, nor is its negation): SQL's NULL
    # Strings order by code point in CEL; SQL's collation may differ, so narrow only.
    return None


def _time_comparison(column: str, op: str, value: _dt.datetime, *, negate: bool) -> _Sql:
    # a stored time t reads as t rounded to the microsecond: compare t with the bounds
    # of the microsecond ``value`` is, so SQL and CEL agree on every stored float
    epoch = (value - _EPOCH) / _dt.timedelta(seconds=1)
    low, high = epoch - _HALF_MICRO, epoch + _HALF_MICRO
    if op in ("==", "!="):
        if (op == "==") is not negate:
            return _Sql(f"({column} >= ? AND {column} < ?)", [low, high], exact=True)
        # CEL: null != t is true
        return _Sql(f"({column} IS NULL OR {column} < ? OR {column} >= ?)", [low, high], True)
    op = _NEGATE[op] if negate else op
    bound = {"<": ("<", low), "<=": ("<", high), ">": (">=", high), ">=": (">=", low)}[op]
    return _Sql(f"{column} {bound[0]} ?", [bound[1]], exact=True)


def _duration_comparison(
    column: str, op: str, value: _dt.timedelta, *, negate: bool
) -> _Sql | None:
    seconds = value.total_seconds()
    if op in ("==", "!="):
        if (op == "==") is negate:
            return None  # "not this duration": nearly every run
        return _Sql(f"{column} BETWEEN ? AND ?", [seconds - _SLACK, seconds + _SLACK], False)
    op = _NEGATE[op] if negate else op
    if op in ("<", "<="):
        return _Sql(f"{column} <= ?", [seconds + _SLACK], exact=False)
    return _Sql(f"{column} >= ?", [seconds - _SLACK], exact=False)


_HAS = "run_id IN (SELECT run_id FROM run_attributes WHERE name = ?)"
_VALUE_IS = "run_id IN (SELECT run_id FROM run_attributes WHERE name = ? AND value = ?)"
_VALUE_IS_NOT = "run_id IN (SELECT run_id FROM run_attributes WHERE name = ? AND value <> ?)"


def _attribute_comparison(name: str, op: str, value: Any, *, negate: bool) -> _Sql | None:
    # A missing attribute is an error in CEL: neither ``==`` nor ``!=`` (nor their
    # negations) is true for it. Attribute values are strings.
    if type(value) is not str or op not in ("==", "!="):
        return None
    equal = (op == "==") is not negate
    return _Sql(_VALUE_IS if equal else _VALUE_IS_NOT, [name, value], exact=True)


def _has_attribute(node: ast.Has, *, negate: bool) -> _Sql | None:
    if not _is_attributes(node.operand):
        return None
    return _Sql(("NOT " if negate else "") + _HAS, [node.field], exact=True)


def _in_list(node: ast.Binary, *, negate: bool) -> _Sql | None:
    field = _field(node.left)
    found, items = _literal(node.right)
    if field is None or not found or not isinstance(items, list) or not items:
        return None
    column, kind, nullable = _COLUMNS[field]
    if kind != _STRING or not all(type(item) is str for item in items):
        return None
    marks = ",".join("?" * len(items))
    if not negate:
        return _Sql(f"{column} IN ({marks})", list(items), exact=True)
    sql = (
        f"({column} IS NULL OR {column} NOT IN ({marks}))"
        if nullable
        else f"{column} NOT IN ({marks})"
    )
    return _Sql(sql, list(items), exact=True)
