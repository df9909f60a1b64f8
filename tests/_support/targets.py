"""The fuzz and security suites' target: an engine behind its HTTP API, with a run in flight
that the abuse must not harm, and what every answer of the API must be.

``fuzz_target`` serves the engine through Starlette's ``TestClient`` with a bystander run
waiting for a release event; leaving, it releases the run, which must complete exactly as
``expected`` says. ``assert_precise``: a 2xx, or a 4xx with a JSON error; never a 5xx.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
from starlette.testclient import TestClient

import stepline
from stepline._protocol import signing
from stepline.engine import Engine
from stepline.engine._http.api import build_app
from stepline.engine._wire.response import RawResponse
from tests._support.engines import fast_settings
from tests._support.polling import wait_until

T = TypeVar("T")

BYSTANDER_EVENT = "bystander/go"
RELEASE_EVENT = "bystander/release"

SIGNING_KEY = "signkey-test-" + "c0ffee" * 8
EVENT_KEY = "faults-event-key"
#: settings of an engine in production mode (``start``), with its keys
START_MODE: dict[str, Any] = {
    "mode": "start",
    "signing_keys": (SIGNING_KEY,),
    "event_keys": (EVENT_KEY,),
}


def bystander() -> tuple[stepline.Client, list[stepline.Function]]:
    """An app whose run steps, waits for a release event, steps again and returns.

    A fuzz test starts one before throwing its inputs at the engine and releases it
    after: it must complete with exactly ``expected(n)``.
    """
    client = stepline.Client(app_id="bystander", is_production=False)

    @client.function(id="steady", trigger=stepline.TriggerEvent(event=BYSTANDER_EVENT))
    async def steady(ctx: stepline.Context) -> dict[str, Any]:
        n = int(ctx.event.data["n"])
        doubled = await ctx.step.run("double", lambda: n * 2)
        released = await ctx.step.wait_for_event(
            "release", event=RELEASE_EVENT, timeout="5m", if_exp="async.data.n == event.data.n"
        )
        assert released is not None
        plus = await ctx.step.run("plus", lambda: doubled + int(released.data["by"]))
        return {"n": n, "doubled": doubled, "plus": plus}

    return client, [steady]


def expected(n: int, by: int = 1) -> dict[str, Any]:
    """What the bystander run returns for ``n``, released with ``by``."""
    return {"n": n, "doubled": n * 2, "plus": n * 2 + by}


@dataclasses.dataclass
class Target:
    """An engine served through Starlette's TestClient, with a bystander run in flight."""

    http: TestClient
    engine: Engine
    bystander_run: str
    auth: dict[str, str]

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run an engine coroutine on the API's event loop."""
        assert self.http.portal is not None
        return self.http.portal.call(functools.partial(fn, *args, **kwargs))


@contextlib.contextmanager
def fuzz_target(db: str, *, http: Any = None, **settings: Any) -> Iterator[Target]:
    """An engine on ``db`` behind its API; the bystander must complete unharmed after use.

    ``http`` replaces the engine's HTTP driver (the bystander is served in process).
    """
    engine = Engine(fast_settings(db, **settings), http=http)
    auth = {}
    if settings.get("mode") == "start":
        auth = {"authorization": f"Bearer {signing.hash_signing_key(SIGNING_KEY)}"}
    # a non-browser client (as the SDKs are): the dev-mode guard is tested in test_sec_devmode
    local, not_a_browser = "http://127.0.0.1:8288", {"x-stepline-csrf": "1"}
    with TestClient(build_app(engine), base_url=local, headers=not_a_browser) as http:
        target = Target(http, engine, "", auth)
        client, functions = bystander()
        target.call(engine.serve, client, functions)
        (event_id,) = target.call(engine.send, {"name": BYSTANDER_EVENT, "data": {"n": 7}})
        target.bystander_run = str(target.call(engine.event_runs, event_id)[0].run_id)

        def waiting() -> bool | None:
            steps = target.call(engine.run_steps, target.bystander_run)
            return True if any(s.step_id and s.status.value == "Waiting" for s in steps) else None

        wait_until(waiting, message="the bystander to wait for its release")
        yield target
        # a fuzzed request may have paused the bystander's function (a valid request
        # doing what it says: its calls wait); resumed, the run must end as if never held
        target.call(engine.resume, f"{client.app_id}-steady")
        target.call(engine.send, {"name": RELEASE_EVENT, "data": {"n": 7, "by": 3}})
        run = target.call(engine.wait_for_run, target.bystander_run, timeout=20)
        assert run.status.value == "Completed", run
        assert json.loads(str(run.output)) == expected(7, by=3)


def assert_precise(answer: httpx.Response, *allowed: int) -> None:
    """A 2xx, or a 4xx with a JSON ``error`` message; never a 5xx."""
    where = (
        f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text[:300]}"
    )
    assert answer.status_code < 500, where
    if allowed:
        assert answer.status_code in allowed, where
    if answer.status_code >= 400:
        body = answer.json()
        assert isinstance(body, dict), where
        assert isinstance(body.get("error"), str), where
        assert body["error"], where


class Refuse:
    """An engine HTTP driver that reaches nothing (a fuzzed URL must never cause real traffic)."""

    async def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> RawResponse:
        return RawResponse(0, {}, b"", error="ConnectError: refused by the test")

    async def close(self) -> None:
        pass
