"""``POST /v0/gql``: the dev server's GraphQL queries inngest-py's own test suite reads runs by.

An app written with the official ``inngest`` package runs under uvicorn against a real
engine (as in ``test_official_py``), once per store; the four queries of inngest-py's
``test_core/helper.py`` are sent verbatim and read back the way that helper reads them.
Refusals (syntax, unknown fields and ids, variables) are GraphQL errors, never 500s; in
start mode the route wants the bearer like every read route.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import unittest.mock
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi
import httpx
import inngest
import pydantic.warnings
import pytest
from starlette.testclient import TestClient

from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread

with warnings.catch_warnings():
    # inngest 0.5.19 declares a class-based pydantic ``Config`` (see test_official_py)
    warnings.filterwarnings(
        "ignore",
        message="Support for class-based `config` is deprecated",
        category=pydantic.warnings.PydanticDeprecatedSince20,
    )
    import inngest.fast_api

# -- inngest-py's queries (test_core/helper.py), verbatim ---------------------------------

GET_STEPS = """
        query GetHistory($run_id: String!) {
            run(runID: $run_id) {
                trace {
                    childrenSpans {
                        name
                        outputID
                    }
                }
            }
        }
        """
GET_STEP_OUTPUT = """
        query GetHistory($output_id: String!) {
            runTraceSpanOutputByID(outputID: $output_id) {
                data
                error {
                    message
                    name
                    stack
                }
            }
        }
        """
GET_RUN_IDS = """
        query GetRunFromEventID($event_id: ID!) {
            event(query: {eventId: $event_id}) {
                functionRuns {
                    id
                }
            }
        }
        """
GET_RUN = """
        query GetRun($run_id: String!) {
            run(runID: $run_id) {
                output
                status
            }
            runTrigger(runID: $run_id) {
                payloads
            }
        }
        """


@dataclasses.dataclass
class Stack:
    """The engine and the official app, and the helper's reads over ``/v0/gql``."""

    http: httpx.Client
    client: inngest.Inngest

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.http.post("/v0/gql", json={"query": query, "variables": variables})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def data(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = self.gql(query, variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def send(self, name: str, data: dict[str, Any] | None = None) -> str:
        [event_id] = self.client.send_sync(inngest.Event(name=name, data=data or {}))
        return event_id

    def run_ids(self, event_id: str, count: int = 1) -> list[str]:
        """``get_run_ids_from_event_id``: poll until the event started ``count`` runs."""

        def found() -> list[str] | None:
            body = self.gql(GET_RUN_IDS, {"event_id": event_id})
            if "errors" in body:
                return None
            runs = body["data"]["event"]["functionRuns"] or []
            return [run["id"] for run in runs] if len(runs) == count else None

        return wait_until(found, message=f"{count} run(s) of event {event_id}")

    def run(self, run_id: str, status: str) -> tuple[inngest.Event, str | None]:
        """``wait_for_run_status``: the trigger event and output once ``status`` is reached."""

        def reached() -> tuple[inngest.Event, str | None] | None:
            data = self.data(GET_RUN, {"run_id": run_id})
            event = inngest.Event.model_validate_json(data["runTrigger"]["payloads"][0])
            actual = data["run"]["status"]
            ended = actual in ("COMPLETED", "FAILED", "CANCELLED")
            assert actual == status or not ended, f"run ended {actual}, not {status}"
            return (event, data["run"]["output"]) if actual == status else None

        return wait_until(reached, timeout=20, message=f"run {run_id} to be {status}")

    def spans(self, run_id: str) -> list[dict[str, Any]]:
        spans: list[dict[str, Any]] = self.data(GET_STEPS, {"run_id": run_id})["run"]["trace"][
            "childrenSpans"
        ]
        return spans

    def step_output(self, run_id: str, step_id: str, index: int | None = None) -> dict[str, Any]:
        """``get_step_output``: the ``index``-th span named ``step_id`` (the first by
        default), then its output by output id, as the helper finds them."""
        expected = 1 if index is None else index + 1
        found_spans = 0
        output_id: str | None = None
        for span in self.spans(run_id):
            if span["name"] == step_id:
                found_spans += 1
                if found_spans == expected:
                    output_id = span["outputID"]
                    break
        assert output_id, f'step "{step_id}" index={index} not found in history'
        found = self.data(GET_STEP_OUTPUT, {"output_id": output_id})
        output: dict[str, Any] = found["runTraceSpanOutputByID"]
        return output


def _app(client: inngest.Inngest) -> list[inngest.Function[Any]]:
    on = inngest.TriggerEvent

    @client.create_function(fn_id="two-steps", retries=0, trigger=on(event="g/two"))
    async def two_steps(ctx: inngest.Context) -> dict[str, int]:
        first = await ctx.step.run("a", lambda: int(ctx.event.data["n"]) + 1)
        second = await ctx.step.run("b", lambda: first * 2)
        return {"a": first, "b": second}

    @client.create_function(fn_id="fails", retries=0, trigger=on(event="g/fail"))
    def fails(ctx: inngest.ContextSync) -> None:
        def boom() -> None:
            raise ValueError("left alone")

        ctx.step.run("boom", boom)

    @client.create_function(fn_id="repeats", retries=0, trigger=on(event="g/rep"))
    def repeats(ctx: inngest.ContextSync) -> list[int]:
        return [ctx.step.run("foo", lambda i=i: i) for i in range(3)]

    @client.create_function(fn_id="parallel-repeats", retries=0, trigger=on(event="g/par"))
    async def parallel_repeats(ctx: inngest.Context) -> list[int]:
        def use(i: int) -> Callable[[], Awaitable[int]]:
            async def body() -> int:
                await asyncio.sleep(0.1 * (3 - i))  # the last use finishes first
                return i

            return lambda: ctx.step.run("foo", body)

        return list(await ctx.group.parallel(tuple(use(i) for i in range(3))))

    @client.create_function(fn_id="sleeps", retries=0, trigger=on(event="g/nap"))
    async def sleeps(ctx: inngest.Context) -> None:
        await ctx.step.run("before", lambda: "awake")
        await ctx.step.sleep("nap", dt.timedelta(hours=1))

    return [two_steps, fails, repeats, parallel_repeats, sleeps]


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    engine_server = ServerThread("stepline-engine-gql")
    app_server = ServerThread("inngest-app-gql")
    settings = EngineSettings(
        database_url=module_db, port=engine_server.port, retry_scale=0.001, poll_interval=0.05
    )
    client = inngest.Inngest(
        app_id="gql",
        is_production=False,
        api_base_url=engine_server.url,
        event_api_base_url=engine_server.url,
    )
    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, _app(client))
    with contextlib.ExitStack() as stop:
        stop.callback(engine_server.stop)  # LIFO: the engine stops after the app
        stop.callback(app_server.stop)
        engine_server.start(build_app(Engine(settings)))
        app_server.start(app)
        synced = httpx.put(f"{app_server.url}/api/inngest", timeout=30)
        assert synced.status_code == 200, synced.text
        http = stop.enter_context(httpx.Client(base_url=engine_server.url, timeout=30))
        yield Stack(http=http, client=client)


# -- the helper's queries ------------------------------------------------------------------


def test_a_completed_run_its_trigger_and_its_steps(stack: Stack) -> None:
    event_id = stack.send("g/two", {"n": 1})
    [run_id] = stack.run_ids(event_id)
    event, output = stack.run(run_id, "COMPLETED")
    assert (event.name, event.data, event.id) == ("g/two", {"n": 1}, event_id)
    assert event.ts > 0
    assert isinstance(output, str)
    assert json.loads(output) == {"a": 2, "b": 4}
    spans = stack.spans(run_id)
    assert [s["name"] for s in spans] == ["a", "b"]
    assert all(isinstance(s["outputID"], str) for s in spans)
    assert stack.step_output(run_id, "a") == {"data": "2", "error": None}
    assert stack.step_output(run_id, "b") == {"data": "4", "error": None}
    # the run's own span: its output, and an alias and __typename as any GraphQL server
    query = """query Trace($id: String!) {
        run(runID: $id) { id, status, trace { name outputID } }  # commas are whitespace
        again: run(runID: $id) { __typename }
    }"""
    data = stack.data(query, {"id": run_id})
    assert data["run"]["id"] == run_id
    assert data["again"] == {"__typename": "FunctionRunV2"}
    assert data["run"]["trace"]["name"] == "gql-two-steps"
    root = stack.data(GET_STEP_OUTPUT, {"output_id": data["run"]["trace"]["outputID"]})
    assert root["runTraceSpanOutputByID"] == {"data": output, "error": None}


def test_a_failed_step_shows_its_error(stack: Stack) -> None:
    [run_id] = stack.run_ids(stack.send("g/fail"))
    _event, output = stack.run(run_id, "FAILED")
    assert output is not None
    assert json.loads(output) == {
        "code": "step_errored",
        "message": "left alone",
        "name": "ValueError",
        "stack": unittest.mock.ANY,
    }
    failed = stack.step_output(run_id, "boom")
    assert failed == {
        "data": None,
        "error": {"message": "left alone", "name": "ValueError", "stack": unittest.mock.ANY},
    }
    assert "Traceback" in failed["error"]["stack"]


@pytest.mark.parametrize("event", ["g/rep", "g/par"], ids=["in-sequence", "in-parallel"])
def test_a_repeated_step_id_is_found_by_name_and_index_as_on_inngest(
    stack: Stack, event: str
) -> None:
    """Every use of ``foo`` (ids ``foo``, ``foo:1``, ``foo:2``) is a span named ``foo``, in
    the order of the uses, also when parallel uses finished in the reverse order."""
    [run_id] = stack.run_ids(stack.send(event))
    _event, output = stack.run(run_id, "COMPLETED")
    assert output is not None
    assert json.loads(output) == [0, 1, 2]
    assert [s["name"] for s in stack.spans(run_id)] == ["foo", "foo", "foo"]
    assert stack.step_output(run_id, "foo") == {"data": "0", "error": None}
    for index in range(3):
        assert stack.step_output(run_id, "foo", index) == {"data": str(index), "error": None}
    with pytest.raises(AssertionError, match='step "foo:1" index=None not found'):
        stack.step_output(run_id, "foo:1")


def test_a_running_run_and_a_step_without_output(stack: Stack) -> None:
    [run_id] = stack.run_ids(stack.send("g/nap"))

    # the run is RUNNING while its step sleeps: a span with no output yet
    def napping() -> list[dict[str, Any]] | None:
        spans = stack.spans(run_id)
        return spans if [s["name"] for s in spans] == ["before", "nap"] else None

    before, nap = wait_until(napping, message="the sleeping step")
    assert nap["outputID"] is None
    assert isinstance(before["outputID"], str)
    assert stack.data(GET_RUN, {"run_id": run_id})["run"] == {"output": None, "status": "RUNNING"}


def test_an_event_that_started_no_run(stack: Stack) -> None:
    event_id = stack.send("g/nobody-listens")
    assert stack.data(GET_RUN_IDS, {"event_id": event_id}) == {"event": {"functionRuns": []}}


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        (GET_RUN, {"run_id": "01NOPE"}, "run '01NOPE' not found"),
        (GET_RUN_IDS, {"event_id": "01NOPE"}, "event '01NOPE' not found"),
        (GET_STEP_OUTPUT, {"output_id": "bm9wZQ"}, "output 'bm9wZQ' not found"),
        (GET_STEP_OUTPUT, {"output_id": "%%%"}, "output '%%%' not found"),
        (GET_RUN, {}, 'Variable "$run_id" of required type "String!" was not provided.'),
        (GET_RUN, {"run_id": 7}, 'Variable "$run_id": String cannot represent the value 7.'),
        (GET_RUN, {"run_id": "a\x00"}, "String must not hold NUL or lone surrogates"),
        ('{ run(runID: "x") { nope } }', None, 'Cannot query field "nope" on type'),
        ("{ runs { id } }", None, 'Cannot query field "runs" on type "Query".'),
        ('{ run(runID: "x") }', None, "must have a selection of subfields"),
        ('{ run(id: "x") { id } }', None, 'Unknown argument "id" on field "Query.run".'),
        ("{ run { id } }", None, 'argument "runID" of type "String!" is required'),
        ("query ($r: ID!) { run(runID: $r) { id } }", {"r": "x"}, 'type "ID!" used in position'),
        ("{ run(runID: $r) { id } }", None, 'Variable "$r" is not defined.'),
        ("query ($r: Nope) { __typename }", None, 'Unknown type "Nope".'),
        ('{ event(query: {id: "x"}) { id } }', None, 'field "id" is not defined by type'),
        ('{ run(runID: "x") { ...F } }', None, "fragments are not supported"),
        ("mutation { run }", None, "only query operations are served"),
        ('{ run(runID: "x") @skip { id } }', None, "directives are not supported"),
        ('{ run(runID: "x" { id } }', None, "Syntax Error: Expected Name"),
        ('{ run(runID: "x) { id } }', None, "Syntax Error: Unterminated string"),
        ("{ %", None, 'Syntax Error: Unexpected character: "%". (line 1, column 3)'),
        ("", None, "Syntax Error: Unexpected <EOF>."),
        ("{" * 20 + "}" * 20, None, "Syntax Error: Expected Name"),
        ("{ a " + "{ a " * 40 + "}" * 41, None, "nested deeper than 32 levels"),
        ("query A { __typename } query B { __typename }", None, "Must provide operation name"),
    ],
)
def test_refusals_are_graphql_errors(
    stack: Stack, query: str, variables: dict[str, Any] | None, message: str
) -> None:
    body = stack.gql(query, variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert message in error["message"]


def test_bodies_that_are_not_graphql_requests(stack: Stack) -> None:
    assert stack.http.post("/v0/gql", json=[1]).json()["errors"][0]["message"].startswith("want")
    bad_vars = stack.http.post("/v0/gql", json={"query": "{ __typename }", "variables": [1]})
    assert bad_vars.json()["errors"] == [{"message": "variables must be a JSON object"}]
    not_json = stack.http.post(
        "/v0/gql", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    named = {"query": "query A { a: __typename } query B { b: __typename }", "operationName": "B"}
    assert stack.http.post("/v0/gql", json=named).json() == {"data": {"b": "Query"}}


# -- start mode ----------------------------------------------------------------------------

KEY = "signkey-prod-" + "5a6b" * 16


def test_start_mode_wants_the_bearer_and_caps_the_body(tmp_path: Path) -> None:
    settings = EngineSettings(
        mode="start",
        signing_keys=(KEY,),
        event_keys=("gql-event-key",),
        database_url=str(tmp_path / "start.db"),
        max_body_bytes=4096,
    )
    query = {"query": "{ __typename }"}
    with TestClient(build_app(Engine(settings))) as http:
        assert http.post("/v0/gql", json=query).status_code == 401
        wrong = {"authorization": "Bearer signkey-prod-" + "00" * 32}
        assert http.post("/v0/gql", json=query, headers=wrong).status_code == 401
        bearer = {"authorization": f"Bearer {KEY}"}
        answer = http.post("/v0/gql", json=query, headers=bearer)
        assert answer.status_code == 200
        assert answer.json() == {"data": {"__typename": "Query"}}
        big = {"query": "{ __typename }" + " " * 5000}
        assert http.post("/v0/gql", json=big, headers=bearer).status_code == 413
