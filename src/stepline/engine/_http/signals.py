"""REST v1 for signals to a waiting run (``engine/_control/signals.py`` has the rules).

- ``POST /v1/runs/{run_id}/signals/{name}`` (bearer), body ``{"data": ...}`` or empty:
  completes the run's wait for ``name``.
- ``POST /v1/signals`` (bearer), body ``{"signal": key, "data": ...}``: Inngest's route
  (the official SDKs' ``sendSignal``); ``key`` is an SDK's key or a run's token.
- ``POST /v1/signals/hooks/{token}`` (no credentials), body: the data as JSON, or empty
  for null. The token itself is the capability (``stepline._protocol.signals``): only a
  token the engine can verify under its signing keys completes anything, and the token
  is verified (a read: the wait it names, its MAC under the keys) before a byte of the
  body is read, so a forged token costs one lookup and no body. Each client has
  ``HOOK_FAILURES`` misses (404, or 409 for a token used already) a minute before it is
  refused with 429 without a lookup; forged tokens (404) also count against
  ``HOOK_FAILURES_OVERALL`` for all clients together, which refuses only the clients
  that sent one within the minute: a caller that never did, such as the provider holding
  a real token, is never refused because others guessed. A client has at most
  ``HOOK_OPEN`` requests open at once, and at most ``HOOK_BODIES`` bodies are read at
  once in all (429 past either, before any read); a body is read only up to
  ``max_step_output_bytes`` (413 past it).

Every route answers ``{"data": {"run_id": ...}}`` on success, 404 when nothing waits
for the signal, 409 when its wait was already completed (a signal completes a wait
once) and 400 for a malformed body.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline.engine._control import signal_delivery
from stepline.engine._control.signals import MAX_KEY, SignalConflict
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import throttle, wire
from stepline.engine._http.wire import ApiError

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

logger = logging.getLogger("stepline.engine.api")

#: Misses (unknown or spent tokens) one client may make on the hook route per minute.
HOOK_FAILURES = 20
#: Forged tokens all clients together may send per minute; past them, a client that sent
#: one within the minute is refused (one that did not never is).
HOOK_FAILURES_OVERALL = 600
#: Hook requests one client may have open at once (each may carry a body).
HOOK_OPEN = 4
#: Hook bodies (of verified tokens) read at once, all clients together.
HOOK_BODIES = 16


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""
    routes = _SignalRoutes(engine)
    return [
        ("POST", "/v1/runs/{run_id}/signals/{name}", routes.to_run),
        ("POST", "/v1/signals", routes.by_key),
        ("POST", "/v1/signals/hooks/{token}", routes.hook),  # the token is the credential
    ]


class _SignalRoutes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        settings = engine.settings
        self.limit = min(settings.max_body_bytes, settings.max_step_output_bytes)
        self.limiter = throttle.SignInLimiter(
            per_client=HOOK_FAILURES, overall=HOOK_FAILURES_OVERALL, window=60.0, spares_clean=True
        )
        self.open = throttle.Slots(per_client=HOOK_OPEN)
        self.bodies = throttle.Slots(per_client=HOOK_OPEN, overall=HOOK_BODIES)

    async def to_run(self, request: Request) -> Response:
        body = await wire.read_json(request, self.limit, required=False)
        if body is not None and not (isinstance(body, dict) and set(body) <= {"data"}):
            raise ApiError(400, 'want {"data": <any JSON>} or an empty body')
        data = body.get("data") if isinstance(body, dict) else None
        name = _checked(request.path_params["name"], "signal name")
        work = signal_delivery.to_run(self.engine, request.path_params["run_id"], name, data)
        return await _answer(work)

    async def by_key(self, request: Request) -> Response:
        body = await wire.read_json(request, self.limit)
        if not isinstance(body, dict) or not isinstance(body.get("signal"), str):
            raise ApiError(400, 'want {"signal": "<key or token>", "data": <any JSON>}')
        key = _checked(body["signal"], "signal")
        return await _answer(signal_delivery.by_key(self.engine, key, body.get("data")))

    async def hook(self, request: Request) -> Response:
        client = throttle.client_key(request.client.host if request.client else None)
        wait = self.limiter.retry_after(client, time.monotonic())
        if wait > 0:  # refused without a lookup: guessing tokens is slowed to a crawl
            seconds = max(1, math.ceil(wait))
            if self.limiter.first_refusal(client):
                logger.warning("refused signal hooks from %s for %ds: misses", client, seconds)
            return _busy(f"too many unknown signal tokens: try again in {seconds} seconds", seconds)
        if not self.open.take(client):  # before any read: concurrency is no way past the count
            return _busy("too many signal hook requests open from this client", 1)
        try:
            return await self._hook(request, client)
        finally:
            self.open.give(client)

    async def _hook(self, request: Request, client: str) -> Response:
        """The token verified by a read, then (only for a waiting one) the body read."""
        token = request.path_params["token"][: MAX_KEY + 1]
        state = await signal_delivery.token_state(self.engine, token)
        if state != "waiting":
            self.limiter.failed(client, time.monotonic(), overall=state is None)
            if state is None:
                raise ApiError(404, "no run is waiting for this signal")
            raise ApiError(409, "this signal was already received (or its wait timed out)")
        if not self.bodies.take(client):
            return _busy("too many signal hook bodies are being read: try again", 1)
        try:
            data = await wire.read_json(request, self.limit, required=False)
        finally:
            self.bodies.give(client)
        try:
            return await _answer(signal_delivery.by_token(self.engine, token, data))
        except ApiError as exc:  # completed or gone since it was verified
            if exc.status in (404, 409):
                self.limiter.failed(client, time.monotonic(), overall=False)
            raise


def _busy(message: str, seconds: int) -> Response:
    response = wire.json_response({"error": message}, 429)
    response.headers["retry-after"] = str(seconds)
    return response


def _checked(value: str, what: str) -> str:
    if not value or len(value) > MAX_KEY or "\x00" in value:
        raise ApiError(400, f"a {what} is 1-{MAX_KEY} characters, without NUL")
    return value


async def _answer(work: Awaitable[str]) -> Response:
    try:
        run_id = await work
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except SignalConflict as exc:
        raise ApiError(409, str(exc)) from None
    return wire.json_response({"data": {"run_id": run_id}})
