"""Fuzz the SDK's request handler (``CommHandler``): bodies, headers, query, methods.

Requests are the engine calls of the protocol captures, mutated (any value replaced by
hostile JSON, keys deleted or added), or raw bodies, with random methods, query
parameters (``fnId``, ``stepId``, ``probe``, ``deployId``) and headers (signatures valid,
stale, forged or malformed; server and sync kinds), sent to a dev-mode and a
production-mode app through both drivers (``handle`` and ``handle_sync``). Every request
gets an answer, never an exception out of the handler: a 2xx, a 4xx, or one of the 5xx
the protocol defines (a documented error ``code``; ``unknown`` means a crash).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stepline
from stepline._comm.handler import CommHandler
from stepline._comm.messages import CommRequest, CommResponse
from stepline._protocol import signing
from tests._support.captures import CAPTURES

from . import strategies as s

pytestmark = [pytest.mark.slow]

KEY = "signkey-prod-" + "ab" * 32
OTHER_KEY = "signkey-prod-" + "cd" * 32
EXECUTIONS = [
    "py/11_exec_three_steps_call1.json",
    "py/13_exec_three_steps_call3.json",
    "py/22_exec_ops_call2.json",
    "py/24_exec_ops_call4.json",
    "py/31_exec_fails_step_error.json",
    "py/42_exec_parallel_target_p-a.json",
    "py/49_exec_parallel_final.json",
    "js/23_exec_checkpointing_with_qi_id.json",
]
CTX_KEYS = [
    "event", "events", "steps", "ctx", "use_api", "version", "attempt", "run_id", "step_id",
    "stack", "current", "fn_id", "qi_id", "max_attempts", "disable_immediate_execution",
    "data", "name", "id", "ts", "error", "message",
]  # fmt: skip


def _seed(name: str) -> tuple[str, dict[str, Any]]:
    request = json.loads((CAPTURES / name).read_text())["request"]
    query = urllib.parse.urlsplit(request["url"]).query
    body: dict[str, Any] = request["body"]
    return query, body


SEEDS = [_seed(n) for n in EXECUTIONS]


def _app(production: bool, api: str) -> stepline.Client:
    extra: dict[str, Any] = {"signing_key": KEY} if production else {}
    return stepline.Client(app_id="holdout-py", is_production=production, api_base_url=api, **extra)


def _functions(client: stepline.Client) -> list[stepline.Function]:
    """Functions with the captures' ids, written to accept any event and any memo."""

    @client.function(id="three-steps", trigger=stepline.TriggerEvent(event="demo/three"))
    async def three(ctx: stepline.Context) -> list[Any]:
        return [await ctx.step.run(f"s{i}", lambda i=i: i) for i in range(3)]

    @client.function(id="ops", trigger=stepline.TriggerEvent(event="demo/ops"))
    async def ops(ctx: stepline.Context) -> Any:
        await ctx.step.sleep("nap", "1s")
        got = await ctx.step.wait_for_event(
            "wait", event="demo/approved", timeout="1m", if_exp="event.data.id == async.data.id"
        )
        return got is None

    @client.function(id="fails", trigger=stepline.TriggerEvent(event="demo/fail"), retries=2)
    def fails(ctx: stepline.SyncContext) -> str:
        try:
            ctx.step.run("boom", lambda: (_ for _ in ()).throw(ValueError("no")))
        except stepline.StepError:
            return "caught"
        return "ran"

    @client.function(id="parallel", trigger=stepline.TriggerEvent(event="demo/par"))
    async def parallel(ctx: stepline.Context) -> tuple[Any, ...]:
        return await ctx.step.parallel(
            [lambda: ctx.step.run("p-a", lambda: "a"), lambda: ctx.step.run("p-b", lambda: "b")]
        )

    return [three, ops, fails, parallel]


_methods = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
_signatures = st.sampled_from(["valid", "valid", "stale", "future", "other-key", "none", "junk"])
_queries = st.fixed_dictionaries(
    {},
    optional={
        "fnId": st.one_of(
            st.sampled_from(
                [
                    "holdout-py-three-steps",
                    "holdout-py-ops",
                    "holdout-py-fails",
                    "holdout-py-parallel",
                ]
            ),
            s.url_texts,
        ),
        "stepId": st.one_of(st.just("step"), s.url_texts),
        "probe": st.one_of(st.just("trust"), s.url_texts),
        "deployId": s.url_texts,
    },
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "x-inngest-server-kind": st.sampled_from(["dev", "cloud", "", "x"]),
        "x-inngest-sync-kind": st.sampled_from(["in_band", "out_of_band", ""]),
        "content-type": st.sampled_from(["application/json", "text/plain", ""]),
        "traceparent": s.header_texts,
    },
)


def _signed(body: bytes, how: str) -> dict[str, str]:
    now = time.time()
    header = {
        "valid": lambda: signing.sign(body, KEY, now=now),
        "stale": lambda: signing.sign(body, KEY, now=now - 3600),
        "future": lambda: signing.sign(body, KEY, now=now + 3600),
        "other-key": lambda: signing.sign(body, OTHER_KEY, now=now),
        "junk": lambda: "t=abc&s=" + "z" * 64,
        "none": lambda: None,
    }[how]()
    return {} if header is None else {"x-inngest-signature": header}


def _check(response: CommResponse) -> None:
    assert 200 <= response.status < 600, response
    body = response.body
    if response.stream is not None:  # not used here: streaming is off
        pytest.fail("unexpected stream")
    if response.status >= 500:
        error = json.loads(body)
        assert error.get("code") not in (None, "unknown"), error


@pytest.fixture
def handlers(stub_server: Any) -> Iterator[list[CommHandler]]:
    """A dev and a production app; their engine calls (sync, state) reach the stub."""
    made = []
    for production in (False, True):
        client = _app(production, stub_server.url)
        made.append(CommHandler(client=client, functions=_functions(client), framework="asgi"))
    yield made
    for handler in made:
        handler.close()


def test_any_request_gets_an_answer_never_a_crash(handlers: list[CommHandler]) -> None:
    loop = asyncio.new_event_loop()
    try:

        @s.FUZZ
        @given(
            st.data(),
            st.sampled_from(SEEDS),
            _methods,
            _signatures,
            _queries,
            _headers,
            st.booleans(),
            st.booleans(),
        )
        def check(
            data: st.DataObject,
            seed: tuple[str, dict[str, Any]],
            method: str,
            signature: str,
            query: dict[str, str],
            headers: dict[str, str],
            raw: bool,
            sync: bool,
        ) -> None:
            seed_query, seed_body = seed
            if raw:
                body = data.draw(s.raw_bodies)
            else:
                body = s.dumps(s.mutated(copy.deepcopy(seed_body), data, keys=CTX_KEYS))
            params = dict(urllib.parse.parse_qsl(seed_query)) | query
            url = "http://app.test/api/inngest?" + urllib.parse.urlencode(params)
            request = CommRequest.build(
                method=method, url=url, headers={**headers, **_signed(body, signature)}, body=body
            )
            for handler in handlers:
                if sync:
                    response = handler.handle_sync(request)
                else:
                    response = loop.run_until_complete(handler.handle(request))
                _check(response)

        check()
    finally:
        loop.close()
