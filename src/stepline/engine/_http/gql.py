"""``POST /v0/gql``: the part of the Inngest dev server's GraphQL API the official SDKs'
own test suites read runs through.

inngest-py's scenarios (``test_core/helper.py``) ask four queries: a run's status, output
and trigger events (``run``, ``runTrigger``), its steps as trace spans with output ids
(``run.trace.childrenSpans``), a span's output (``runTraceSpanOutputByID``) and the runs an
event started (``event.functionRuns``). This module serves those fields and nothing
else, strictly: a query is parsed (``gql_parse``), checked against the schema below and
its variables coerced before anything is read, and anything outside the schema is a
GraphQL error naming it (``{"errors": [{"message"}], "data": null}``, HTTP 200, as GraphQL
servers answer), never a 500.

An answer is bounded before and while it is built: a query selects at most
``MAX_FIELDS`` fields (aliases included: 800 aliases of one output fit in the query text),
and the text values it holds (outputs, payloads) add up to at most twice the engine's
body limit (``max_body_bytes``), which any one run's output and events fit in. Past
either, the answer is HTTP 400 with a GraphQL error saying which.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline import _json
from stepline._protocol import execution, hashing
from stepline._status import RunStatus
from stepline.engine._engine import Engine
from stepline.engine._http import gql_parse, wire
from stepline.engine._http.gql_parse import (
    Enum,
    Field,
    GqlError,
    Operation,
    Value,
    Variable,
    VariableDefinition,
)
from stepline.engine._model import EventRecord, Run, StepRecord, storable
from stepline.engine._store import Tx

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: Output types: field name to (type, {argument: type}). Names follow Inngest's schema.
SCHEMA: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "Query": {
        "run": ("FunctionRunV2", {"runID": "String!"}),
        "runTrigger": ("RunTraceTrigger!", {"runID": "String!"}),
        "runTraceSpanOutputByID": ("RunTraceSpanOutput!", {"outputID": "String!"}),
        "event": ("Event", {"query": "EventQuery!"}),
    },
    "FunctionRunV2": {
        "id": ("ULID!", {}),
        "status": ("FunctionRunStatus!", {}),
        "output": ("String", {}),
        "trace": ("RunTraceSpan", {}),
    },
    "RunTraceSpan": {
        "name": ("String!", {}),
        "outputID": ("String", {}),
        "childrenSpans": ("[RunTraceSpan!]!", {}),
    },
    "RunTraceTrigger": {"payloads": ("[Bytes!]!", {})},
    "RunTraceSpanOutput": {"data": ("Bytes", {}), "error": ("StepError", {})},
    "StepError": {"message": ("String!", {}), "name": ("String", {}), "stack": ("String", {})},
    "Event": {
        "id": ("ULID!", {}),
        "name": ("String", {}),
        "functionRuns": ("[FunctionRunV2!]", {}),
    },
}
#: Input object types: field name to type.
INPUTS: dict[str, dict[str, str]] = {"EventQuery": {"eventId": "ID!"}}
_INPUT_SCALARS = frozenset({"String", "ID", "Int", "Float", "Boolean"})
_ABSENT: Any = object()
_INT32 = 2**31
#: The most fields (every alias and nested field counted) one query may select.
MAX_FIELDS = 256
#: An output: its JSON text, or the error in place of one.
_Output = tuple[str | None, dict[str, Any] | None]


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The route, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def graphql(request: Request) -> Response:
        body = await wire.read_json(request, engine.settings.max_body_bytes)
        try:
            return wire.json_response(await execute(engine, body))
        except TooLargeError as exc:
            return wire.json_response({"errors": [{"message": str(exc)}], "data": None}, 400)

    return [("POST", "/v0/gql", graphql)]


async def execute(engine: Engine, body: Any) -> dict[str, Any]:
    """Answer one GraphQL request body (``{"query", "variables", "operationName"}``).

    Returns:
        ``{"data": {...}}``, or ``{"errors": [{"message": ...}], "data": None}``.

    Raises:
        TooLargeError: the query selects more than ``MAX_FIELDS`` fields, or its answer
            would hold more text than its budget.
    """
    try:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise GqlError('want a JSON object {"query": "...", "variables": {...}}')
        operation = gql_parse.operation(body["query"], body.get("operationName"))
        variables = _variables(operation, body.get("variables"))
        plans = _plan(
            "Query",
            operation.selections,
            _Scope({d.name: d for d in operation.variables}, variables),
        )
        selected = _count(plans)
        if selected > MAX_FIELDS:
            raise TooLargeError(
                f"the query selects {selected} fields (aliases and nested fields counted); "
                f"at most {MAX_FIELDS} are answered: ask for fewer, or in several queries"
            )
        return {"data": await _Executor(engine).object("Query", None, plans)}
    except TooLargeError:
        raise
    except GqlError as exc:
        return {"errors": [{"message": str(exc)}], "data": None}


class TooLargeError(GqlError):
    """A query whose answer would be too large (HTTP 400, not a GraphQL error in a 200)."""


def _count(plans: tuple[_Plan, ...]) -> int:
    return sum(1 + _count(p.children or ()) for p in plans)


# -- checking: the query against the schema, before anything is read -------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """A checked field: what to resolve, with coerced arguments, and what to select."""

    key: str
    name: str
    type: str
    args: dict[str, Any]
    children: tuple[_Plan, ...] | None


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    definitions: dict[str, VariableDefinition]
    values: dict[str, Any]


def _variables(operation: Operation, given: object) -> dict[str, Any]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise GqlError("variables must be a JSON object")
    values: dict[str, Any] = {}
    scope = _Scope({}, {})
    for definition in operation.variables:
        where = f'Variable "${definition.name}"'
        base = _base(definition.type)
        if base not in _INPUT_SCALARS and base not in INPUTS:
            known = base in SCHEMA or base in ("Bytes", "ULID", "FunctionRunStatus")
            problem = f'{where} cannot be non-input type "{definition.type}".'
            raise GqlError(problem if known else f'Unknown type "{base}".')
        if definition.name in given:
            values[definition.name] = _input(given[definition.name], definition.type, where, scope)
        elif definition.has_default:
            values[definition.name] = _input(definition.default, definition.type, where, scope)
        elif definition.type.endswith("!"):
            raise GqlError(f'{where} of required type "{definition.type}" was not provided.')
    return values


def _plan(type_name: str, fields: tuple[Field, ...], scope: _Scope) -> tuple[_Plan, ...]:
    plans: list[_Plan] = []
    for field in fields:
        if any(p.key == field.key for p in plans):
            raise GqlError(f'Field "{field.key}" is selected twice: give one an alias.')
        if field.name == "__typename":
            if field.arguments or field.selections is not None:
                raise GqlError('Field "__typename" takes no arguments and no selection.')
            plans.append(_Plan(field.key, field.name, "String!", {}, None))
            continue
        spec = SCHEMA[type_name].get(field.name)
        if spec is None:
            raise GqlError(f'Cannot query field "{field.name}" on type "{type_name}".')
        type_text, arg_types = spec
        where = f"{type_name}.{field.name}"
        for arg in field.arguments:
            if arg not in arg_types:
                raise GqlError(f'Unknown argument "{arg}" on field "{where}".')
        args: dict[str, Any] = {}
        for arg, arg_type in arg_types.items():
            value = _ABSENT
            if arg in field.arguments:
                value = _input(field.arguments[arg], arg_type, f'Argument "{arg}"', scope)
            if value is _ABSENT and arg_type.endswith("!"):
                raise GqlError(
                    f'Field "{where}" argument "{arg}" of type "{arg_type}" is required, '
                    "but it was not provided."
                )
            if value is not _ABSENT:
                args[arg] = value
        base = _base(type_text)
        children = None
        if base in SCHEMA:
            if field.selections is None:
                raise GqlError(
                    f'Field "{field.name}" of type "{type_text}" must have a selection '
                    "of subfields."
                )
            children = _plan(base, field.selections, scope)
        elif field.selections is not None:
            raise GqlError(
                f'Field "{field.name}" must not have a selection since type "{type_text}" '
                "has no subfields."
            )
        plans.append(_Plan(field.key, field.name, type_text, args, children))
    return tuple(plans)


def _base(type_text: str) -> str:
    return type_text.strip("[]!")


def _input(value: Value | Any, type_text: str, where: str, scope: _Scope) -> Any:
    """Coerce a literal or a variable's JSON value to an input type (GraphQL's rules)."""
    if isinstance(value, Variable):
        return _variable(value, type_text, scope)
    inner = type_text.removesuffix("!")
    if value is None:
        if inner != type_text:
            raise GqlError(f'{where}: expected a non-null "{type_text}", found null.')
        return None
    if inner.startswith("["):
        items = value if isinstance(value, list | tuple) else [value]
        coerced = [_input(item, inner[1:-1], where, scope) for item in items]
        return [None if item is _ABSENT else item for item in coerced]  # an unset $x is null
    if inner in INPUTS:
        fields = INPUTS[inner]
        if not isinstance(value, dict):
            raise GqlError(f'{where}: expected an input object of type "{inner}".')
        for name in value:
            if name not in fields:
                raise GqlError(f'{where}: field "{name}" is not defined by type "{inner}".')
        found = {}
        for name, field_type in fields.items():
            item = _input(value[name], field_type, where, scope) if name in value else _ABSENT
            if item is _ABSENT and field_type.endswith("!"):
                shown = f'"{inner}.{name}" of type "{field_type}"'
                raise GqlError(f"{where}: field {shown} is required.")
            if item is not _ABSENT:
                found[name] = item
        return found
    return _scalar(value, inner, where)


def _variable(variable: Variable, type_text: str, scope: _Scope) -> Any:
    definition = scope.definitions.get(variable.name)
    if definition is None:
        raise GqlError(f'Variable "${variable.name}" is not defined.')
    nullable = not definition.type.endswith("!") and not (
        definition.has_default and definition.default is not None
    )
    fits = definition.type.replace("!", "") == type_text.replace("!", "")
    if not fits or (type_text.endswith("!") and nullable):
        raise GqlError(
            f'Variable "${variable.name}" of type "{definition.type}" used in position '
            f'expecting type "{type_text}".'
        )
    return scope.values.get(variable.name, _ABSENT)


def _scalar(value: Any, type_name: str, where: str) -> Any:
    if type_name == "ID" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if type_name in ("String", "ID") and isinstance(value, str):
        if not storable(value):
            raise GqlError(f"{where}: {type_name} must not hold NUL or lone surrogates.")
        return value
    if type_name == "Int" and type(value) is int and -_INT32 <= value < _INT32:
        return value
    if type_name == "Float" and type(value) in (int, float):
        return float(value)
    if type_name == "Boolean" and isinstance(value, bool):
        return value
    shown = value.name if isinstance(value, Enum) else _json.dumps(value, default=str)
    raise GqlError(f"{where}: {type_name} cannot represent the value {shown}.")


# -- answering: the checked plan against the store ------------------------------------------


class _Executor:
    """Resolves root fields by reading the store; below them, sources are plain dicts
    whose values are answers, or async callables for what costs a read (a run's trace).
    """

    def __init__(self, engine: Engine) -> None:
        self.store = engine.store
        #: the text the answer may still hold (outputs and payloads), in characters
        self.budget = self.limit = 2 * engine.settings.max_body_bytes

    async def object(self, type_name: str, source: Any, plans: tuple[_Plan, ...]) -> Any:
        out: dict[str, Any] = {}
        for plan in plans:
            if plan.name == "__typename":
                value: Any = type_name
            elif type_name == "Query":
                value = await self.root(plan.name, plan.args)
            else:
                value = source[plan.name]
                value = await value() if callable(value) else value
            out[plan.key] = await self.complete(plan.type, value, plan.children)
        return out

    async def complete(self, type_text: str, value: Any, children: tuple[_Plan, ...] | None) -> Any:
        inner = type_text.removesuffix("!")
        if value is None:
            return None
        if inner.startswith("["):
            return [await self.complete(inner[1:-1], item, children) for item in value]
        if children is not None:
            return await self.object(inner, value, children)
        if isinstance(value, str):  # the same output under many aliases counts each time
            self.budget -= len(value)
            if self.budget < 0:
                raise TooLargeError(
                    f"the answer would hold more than {self.limit} characters of outputs "
                    "and payloads: select fewer of them (or fewer aliases) per query"
                )
        return value

    async def root(self, field: str, args: dict[str, Any]) -> dict[str, Any]:
        if field == "runTraceSpanOutputByID":
            return await self.output(args["outputID"])
        if field == "event":
            return await self.event(args["query"]["eventId"])
        run_id = args["runID"]
        run = await self.store.read(lambda tx: tx.get_run(run_id))
        if run is None:
            raise GqlError(f"run {run_id!r} not found")
        if field == "runTrigger":
            return {"payloads": [_json.dumps(event) for event in run.events]}
        return self.run(run)

    def run(self, run: Run) -> dict[str, Any]:
        async def trace() -> dict[str, Any]:
            steps = await self.store.read(lambda tx: tx.get_steps(run.run_id))
            children = [
                _span(step.name, run.run_id, step.step_id if _step_output(step) else None)
                for step in _in_trace_order(steps)
            ]
            ended = _run_output(run) is not None
            return {
                **_span(run.function_id, run.run_id, "" if ended else None),
                "childrenSpans": children,
            }

        status = run.status.value.upper()
        return {"id": run.run_id, "status": status, "output": run.output, "trace": trace}

    async def output(self, output_id: str) -> dict[str, Any]:
        key = _output_key(output_id)
        if key is None:
            raise GqlError(f"output {output_id!r} not found")
        run_id, step_id = key

        def read(tx: Tx) -> Run | StepRecord | None:
            run = tx.get_run(run_id)
            if run is None or not step_id:  # "": the run's own output
                return run
            return next((s for s in tx.get_steps(run_id) if s.step_id == step_id), None)

        found = await self.store.read(read)
        output = _run_output(found) if isinstance(found, Run) else _step_output(found)
        if output is None:
            raise GqlError(f"output {output_id!r} not found")
        data, error = output
        return {"data": data, "error": None if error is None else _error(error)}

    async def event(self, event_id: str) -> dict[str, Any]:
        def read(tx: Tx) -> tuple[EventRecord, list[Run]] | None:
            event = tx.get_event(event_id)
            if event is None:
                return None
            runs = []
            for link in tx.event_links(event.internal_id):
                run = tx.get_run(link.run_id) if link.run_id and link.reason is None else None
                if run is not None:  # a link outliving its run shows no run
                    runs.append(run)
            return event, runs

        found = await self.store.read(read)
        if found is None:
            raise GqlError(f"event {event_id!r} not found")
        event, runs = found
        functions = [self.run(run) for run in runs]
        return {"id": event.internal_id, "name": event.name, "functionRuns": functions}


def _span(name: str, run_id: str, step_id: str | None) -> dict[str, Any]:
    """A trace span; ``step_id`` None: no output yet, "": the run's own output."""
    output_id = None if step_id is None else _output_id(run_id, step_id)
    return {"name": name, "outputID": output_id, "childrenSpans": []}


def _error(error: dict[str, Any]) -> dict[str, Any]:
    """An error as ``StepError``: message, name and stack as text (None when absent)."""
    shown = {k: error.get(k) for k in ("message", "name", "stack")}
    return {k: v if v is None or isinstance(v, str) else _json.dumps(v) for k, v in shown.items()}


def _in_trace_order(steps: list[StepRecord]) -> list[StepRecord]:
    """The steps as Inngest's trace lists them: each span named by the id the user wrote.

    A repeated id (``foo`` twice: the SDKs hash the n-th repeat as ``foo:n``) gives spans
    of the same name, so the n-th span named ``foo`` must be its n-th use, whatever order
    parallel uses finished in: the same-named steps keep their places in the run's order
    and fill them in the order of their uses (an unrecognised hash after the known ones).
    """
    groups: dict[str, list[StepRecord]] = collections.defaultdict(list)
    for step in steps:
        groups[step.name].append(step)
    for name, group in groups.items():
        if len(group) > 1:
            uses = {hashing.hash_step_id(name): 0}
            uses.update({hashing.hash_step_id(f"{name}:{n}"): n for n in range(1, len(group))})
            group.sort(key=lambda step: uses.get(step.step_id, len(group)))
    places = {name: iter(group) for name, group in groups.items()}
    return [next(places[step.name]) for step in steps]


def _output_id(run_id: str, step_id: str) -> str:
    raw = _json.dumpb([run_id, step_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _output_key(output_id: str) -> tuple[str, str] | None:
    try:
        key = _json.loads(base64.urlsafe_b64decode(output_id + "=" * (-len(output_id) % 4)))
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
        return None
    run_id, step_id = key
    return (run_id, step_id) if storable(run_id) and storable(step_id) else None


def _step_output(step: StepRecord | None) -> _Output | None:
    """A step's output (as its JSON text) or error, None while it has neither."""
    if step is None:
        return None
    value, memo_error = execution.unwrap_memo(step.memo)
    error = memo_error or (None if step.status.done else step.error)
    if error is not None:
        return None, error if isinstance(error, dict) else {"message": str(error)}
    return (_json.dumps(value), None) if step.status.done else None


def _run_output(run: Run) -> _Output | None:
    """A run's output once ended: its return value, or the error that failed it."""
    if not run.status.terminal or run.output is None:
        return None
    if run.status is not RunStatus.FAILED:
        return run.output, None
    try:
        error = _json.loads(run.output)
    except ValueError:
        error = None
    return None, error if isinstance(error, dict) else {"message": run.output}
