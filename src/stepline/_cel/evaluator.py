"""Compiles a syntax tree into nested Python closures, so evaluation is plain calls.

Closures are built once per program; evaluating ``event.data.id == async.data.id`` is then
three calls and a couple of dict lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stepline._cel import ast, errors, functions, values

__all__ = ["Env", "Eval", "build"]

Env = Mapping[str, Any]
Eval = Callable[[Env], Any]
_SIMPLE = frozenset({str, int, float, bool, type(None)})
_KEY_KINDS = frozenset({"int", "uint", "bool", "string"})


def build(node: ast.Node) -> Eval:
    """Compile ``node`` into a function of the variables; building itself never raises."""
    if isinstance(node, ast.Literal):
        return _literal(node.value)
    if isinstance(node, ast.Ident):
        return _ident(node.name)
    if isinstance(node, ast.Select):
        return _select(node)
    if isinstance(node, ast.Index):
        return _index(build(node.operand), build(node.index))
    if isinstance(node, ast.Has):
        return _has(build(node.operand), node.field)
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.ListExpr):
        return _list(tuple(build(item) for item in node.items))
    if isinstance(node, ast.MapExpr):
        return _map(tuple((build(key), build(value)) for key, value in node.entries))
    if isinstance(node, ast.Unary):
        return _unary(node.op, build(node.operand))
    if isinstance(node, ast.Binary):
        return _binary(node.op, build(node.left), build(node.right))
    if isinstance(node, ast.Logical):
        return _logical(node.op, tuple(build(operand) for operand in node.operands))
    if isinstance(node, ast.Conditional):
        return _conditional(build(node.condition), build(node.then), build(node.otherwise))
    if isinstance(node, ast.Comprehension):
        return _comprehension(node)
    raise TypeError(f"not a CEL node: {node!r}")


def _literal(value: Any) -> Eval:
    def evaluate(env: Env) -> Any:
        return value

    return evaluate


def _undeclared(name: str) -> errors.EvaluationError:
    return errors.EvaluationError(f"undeclared reference to {name!r}")


def _ident(name: str) -> Eval:
    def evaluate(env: Env) -> Any:
        try:
            return env[name]
        except KeyError:
            raise _undeclared(name) from None

    return evaluate


def _select(node: ast.Select) -> Eval:
    # Fold a chain a.b.c into one closure walking a path: the common case by far.
    fields: list[str] = []
    root: ast.Node = node
    while isinstance(root, ast.Select):
        fields.append(root.field)
        root = root.operand
    path = tuple(reversed(fields))
    operand = None if isinstance(root, ast.Ident) else build(root)
    name = root.name if isinstance(root, ast.Ident) else ""

    def evaluate(env: Env) -> Any:
        fields = path
        if operand is None:
            try:
                value = env[name]
            except KeyError:
                value, fields = _qualified(env, name, path)
        else:
            value = operand(env)
        for field in fields:
            if type(value) is dict:
                try:
                    value = value[field]
                except KeyError:
                    raise errors.EvaluationError(f"no such key: {field!r}") from None
            else:
                value = values.select(value, field)
        return value

    return evaluate


def _qualified(env: Env, name: str, path: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    # The spec's qualified names: with no variable `a`, `a.b.c` is the variable "a.b.c",
    # else "a.b" then field c (longest first). Only tried on a miss, off the hot path.
    for end in range(len(path), 0, -1):
        qualified = ".".join((name, *path[:end]))
        if qualified in env:
            return env[qualified], path[end:]
    raise _undeclared(name)


def _index(operand: Eval, key: Eval) -> Eval:
    def evaluate(env: Env) -> Any:
        container, item = operand(env), key(env)
        if type(container) is dict and type(item) is str:
            try:
                return container[item]
            except KeyError:
                raise errors.EvaluationError(f"no such key: {item!r}") from None
        return values.index(container, item)

    return evaluate


def _has(operand: Eval, field: str) -> Eval:
    def evaluate(env: Env) -> bool:
        value = operand(env)
        if isinstance(value, Mapping):
            return field in value
        kind = values.describe(value)
        raise errors.EvaluationError(f"has() cannot test field {field!r} of {kind}")

    return evaluate


def _call(node: ast.Call) -> Eval:
    table = functions.GLOBAL if node.target is None else functions.MEMBER
    impl = table[node.function][1]
    nodes = node.args if node.target is None else (node.target, *node.args)
    last = nodes[-1] if nodes else None
    if node.function == "matches" and isinstance(last, ast.Literal) and isinstance(last.value, str):
        try:
            pattern = functions.compile_regex(last.value)
        except errors.EvaluationError:
            pass  # a folded-in bad pattern: fail at evaluation like any other error
        else:
            return _search(build(nodes[0]), pattern.search)
    args = tuple(build(arg) for arg in nodes)
    if len(args) == 1:
        (only,) = args
        return lambda env: impl(only(env))
    if len(args) == 2:
        first, second = args
        return lambda env: impl(first(env), second(env))
    return lambda env: impl(*(arg(env) for arg in args))


def _search(subject: Eval, search: Callable[[str], object]) -> Eval:
    def evaluate(env: Env) -> bool:
        text = subject(env)
        if isinstance(text, str):
            return search(text) is not None
        raise errors.EvaluationError(f"no such overload: {values.describe(text)}.matches(string)")

    return evaluate


def _list(items: tuple[Eval, ...]) -> Eval:
    return lambda env: [item(env) for item in items]


def _map(entries: tuple[tuple[Eval, Eval], ...]) -> Eval:
    def evaluate(env: Env) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_of, value_of in entries:
            key = key_of(env)
            kind = values.kind(key)
            if kind not in _KEY_KINDS:
                raise errors.EvaluationError(f"unsupported map key type {kind}")
            if values.lookup(result, key)[0]:
                raise errors.EvaluationError(f"repeated map key {key!r}")
            if key in result:
                # Python would merge true with 1; CEL keeps them apart and so cannot we.
                raise errors.EvaluationError(f"map key {key!r} collides with a key of another type")
            result[key] = value_of(env)
        return result

    return evaluate


def _unary(op: str, operand: Eval) -> Eval:
    if op == "-":
        return lambda env: values.negate(operand(env))

    def evaluate(env: Env) -> bool:
        value = operand(env)
        if value is True or value is False:
            return not value
        raise errors.EvaluationError(f"no such overload: !{values.describe(value)}")

    return evaluate


def _binary(op: str, left: Eval, right: Eval) -> Eval:
    if op in {"==", "!="}:
        negate = op == "!="

        def equality(env: Env) -> bool:
            a, b = left(env), right(env)
            kind_type = type(a)
            if kind_type is type(b) and kind_type in _SIMPLE:
                return (a == b) is not negate
            return values.equals(a, b) is not negate

        return equality
    if op == "in":
        return lambda env: values.contains(left(env), right(env))
    if op in {"<", "<=", ">", ">="}:
        return lambda env: values.relation(op, left(env), right(env))
    return lambda env: values.arithmetic(op, left(env), right(env))


def _logical(op: str, operands: tuple[Eval, ...]) -> Eval:
    # CEL's commutative && and ||: any decisive operand wins even if another one fails.
    decisive = op == "||"

    def evaluate(env: Env) -> bool:
        error: errors.EvaluationError | None = None
        for operand in operands:
            try:
                value = operand(env)
            except errors.EvaluationError as exc:
                error = error or exc
                continue
            if value is decisive:
                return bool(value)
            if value is not (not decisive):
                kind = values.describe(value)
                error = error or errors.EvaluationError(f"no such overload: {kind} {op} bool")
        if error is not None:
            raise error
        return not decisive

    return evaluate


def _conditional(condition: Eval, then: Eval, otherwise: Eval) -> Eval:
    def evaluate(env: Env) -> Any:
        test = condition(env)
        if test is True:
            return then(env)
        if test is False:
            return otherwise(env)
        kind = values.describe(test)
        raise errors.EvaluationError(f"no such overload: {kind} ? _ : _ (need a bool)")

    return evaluate


def _comprehension(node: ast.Comprehension) -> Eval:
    target, body, var, macro = build(node.target), build(node.body), node.var, node.macro
    transform = None if node.transform is None else build(node.transform)

    def each(env: Env) -> Iterator[tuple[Any, dict[str, Any]]]:
        # Loop variables shadow outer ones; a private copy keeps the caller's mapping intact.
        collection = target(env)
        kind = values.kind(collection)
        if kind not in {"list", "map"}:
            raise errors.EvaluationError(f"'.{macro}()' cannot iterate over {kind}")
        scope = dict(env)
        for item in list(collection):
            scope[var] = item
            yield item, scope

    def check_bool(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        kind = values.describe(value)
        raise errors.EvaluationError(f"'.{macro}()' predicate returned {kind}, not bool")

    if macro in {"all", "exists"}:
        decisive = macro == "exists"

        def quantifier(env: Env) -> bool:
            error: errors.EvaluationError | None = None
            for _, scope in each(env):
                try:
                    if check_bool(body(scope)) is decisive:
                        return decisive
                except errors.EvaluationError as exc:
                    error = error or exc
            if error is not None:
                raise error
            return not decisive

        return quantifier
    if macro == "exists_one":
        return lambda env: sum(check_bool(body(scope)) for _, scope in each(env)) == 1
    if macro == "filter":
        return lambda env: [item for item, scope in each(env) if check_bool(body(scope))]
    if transform is None:
        return lambda env: [body(scope) for _, scope in each(env)]
    result = transform
    return lambda env: [result(scope) for _, scope in each(env) if check_bool(body(scope))]
