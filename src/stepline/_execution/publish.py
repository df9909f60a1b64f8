"""Publishing on a run's stream: the durable step's POST and the lightweight sender.

``publish_flow`` is the one ``POST /v1/runs/{id}/stream`` (a generator of effects, run
on the app's ``EngineConnection``, so the embedded engine and the test env's routing
apply).
``Publisher`` belongs to one call of a function: ``step.publish`` posts through it (after
the messages queued before it, so the run's order holds), and ``ctx.publish`` queues on
it for a background thread that sends what is queued in batches, in order, and is
drained before the call's answer goes back to the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stepline import (
    _errors,
    _identity,
    _serde,
    _settings,
)
from stepline._json import loads_or_none as json_loads_or_none
from stepline._protocol import headers, signing
from stepline._transport import effects as _effects

if TYPE_CHECKING:
    from stepline._api.connection import EngineConnection
    from stepline._execution.call import ExecutionState

__all__ = ["Publisher", "check_topic", "encode", "publish_flow", "seq_of"]

logger = logging.getLogger("stepline")

_TOPIC = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
#: The most messages one POST carries (the engine takes 1..500).
MAX_BATCH = 500
#: The most message bytes one POST carries, well under the engine's 16 MiB body cap.
MAX_BATCH_BYTES = 4 * 1024 * 1024
#: Attempts of a durable publish (network errors and 5xx; the message id deduplicates).
DURABLE_ATTEMPTS = 4
_BACKOFF_FIRST = 0.2
#: Seconds a call waits for its queued messages beyond the request timeout.
DRAIN_GRACE = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One message, its value already JSON (``data``), ready for the wire."""

    topic: str
    data: str
    id: str | None = None

    def wire(self) -> str:
        """The message's JSON object (the value is spliced in, not encoded twice)."""
        ident = "null" if self.id is None else json.dumps(self.id)
        return f'{{"topic":{json.dumps(self.topic)},"data":{self.data},"id":{ident}}}'


def check_topic(topic: object) -> str:
    """The topic, if valid: 1-128 characters of ``[A-Za-z0-9_.:/-]``.

    Raises:
        ConfigError: anything else.
    """
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise _errors.ConfigError(
            f"invalid stream topic {topic!r}: a topic is 1-128 characters of "
            "letters, digits and _ . : / -"
        )
    return topic


def encode(topic: str, data: object, *, limit: int, id: str | None = None) -> Message:
    """Serialise ``data`` as a step output is, and check it against ``limit`` bytes.

    Raises:
        OutputUnserializableError: ``data`` cannot be encoded as JSON.
        StreamMessageTooLargeError: its JSON is over ``limit`` bytes.
    """
    text = _serde.dumps(data, what=f'the data published on topic "{topic}"')
    size = len(text.encode())
    if size > limit:
        raise _errors.StreamMessageTooLargeError(
            f'the message published on topic "{topic}" is {size} bytes of JSON, over the '
            f"limit of {limit} (max_stream_message_bytes): publish a smaller value, e.g. "
            "a reference to data stored elsewhere"
        )
    return Message(topic, text, id)


def publish_flow(
    settings: _settings.Settings,
    run_id: str,
    messages: Sequence[Message],
    *,
    attempts: int = 1,
) -> _effects.Flow[list[int]]:
    """Post ``messages`` to the run's stream; returns their sequence numbers.

    Network errors and 5xx are tried again up to ``attempts`` times in all (only safe for
    messages with an id, which the engine stores once). On 401/403 the fallback signing
    key is tried, as for the engine's other app routes.

    Raises:
        StreamPublishError: the engine did not store them (``retriable`` says if it may).
        StreamMessageTooLargeError: the engine refused a message as too large (413).
    """
    url = f"{settings.api_base_url}/v1/runs/{urllib.parse.quote(run_id, safe='')}/stream"
    body = ('{"messages":[' + ",".join(m.wire() for m in messages) + "]}").encode()
    attempt = 0
    while True:
        attempt += 1
        response: _effects.HttpResponse | None = None
        for key in settings.signing_keys or (None,):
            request = _effects.HttpRequest(
                "POST", url, _headers(settings, key), body, settings.request_timeout
            )
            response = yield request
            if response.status not in (401, 403):
                break
        assert response is not None
        retry = response.status == 0 or response.status >= 500
        if not retry or attempt >= attempts:
            return _seqs(settings, run_id, response, len(messages))
        yield _effects.Sleep(_BACKOFF_FIRST * 2 ** (attempt - 1))


def seq_of(memo: object) -> int:
    """The sequence number in a durable publish's memo (``{"seq": n, "topic": t}``)."""
    if isinstance(memo, dict):
        memo = memo.get("seq")
    if isinstance(memo, int) and not isinstance(memo, bool):
        return memo
    raise _errors.StepError(
        f"the recorded result of a step.publish is not a sequence number: {memo!r}",
        name="StreamPublishError",
    )


#: Guards making a publisher's condition (most calls never publish: none is made).
_MAKING = threading.Lock()


class Publisher:
    """Publishing for one call of a function (both faces; thread-safe).

    Its condition (and the lock inside it) is made on first use: most calls publish
    nothing, and closing a publisher that never made one has nothing to drain.

    Args:
        connection: the app's connection to its engine: its settings and transports are
            read at each use.
        state: the call's execution state (``is_rerunning`` skips lightweight messages),
            let go of when the call closes: the state holds its publisher, and that cycle
            would leave the call's whole state to the cycle collector.
    """

    def __init__(self, connection: EngineConnection, state: ExecutionState) -> None:
        self.connection = connection
        self._state: ExecutionState | None = state
        self._run_id = state.request.ctx.run_id
        self._made: threading.Condition | None = None
        self._queue: list[Message] = []
        self._queued = 0  # messages ever queued
        self._done = 0  # messages sent or dropped
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned = False

    @property
    def _cond(self) -> threading.Condition:
        made = self._made
        if made is None:
            with _MAKING:
                made = self._made
                if made is None:
                    made = self._made = threading.Condition()
        return made

    def _closed_unused(self) -> bool:
        """Close at once if the condition was never made (nothing was ever queued)."""
        with _MAKING:
            if self._made is None:
                self._closed = True  # a later publish makes it and finds the call closed
                return True
        return False

    @property
    def run_id(self) -> str:
        """The run this call belongs to."""
        return self._run_id

    # -- lightweight ---------------------------------------------------------------------

    def publish(self, topic: str, data: object) -> None:
        """Queue a message for the background sender (``ctx.publish``); never blocks.

        Skipped while the call re-runs code that already ran, so it is sent at most once.
        """
        check_topic(topic)
        state = self._state  # None once the call closed (then the publish is dropped)
        if state is not None and state.is_rerunning:
            return
        message = encode(topic, data, limit=self.connection.settings.max_stream_message_bytes)
        with self._cond:
            if self._closed:
                self._warn_once("it was published after the call had answered the engine")
                return
            self._queue.append(message)
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._send_queued, name="stepline-publish", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush_sync(self) -> None:
        """Wait until every message queued so far is sent (or dropped)."""
        timeout = self.connection.settings.request_timeout + DRAIN_GRACE
        with self._cond:
            target = self._queued
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                self._warn_once(f"they were not sent within {timeout:g}s")

    async def flush_async(self) -> None:
        """``flush_sync`` without blocking the event loop."""
        with self._cond:
            if self._done >= self._queued:
                return
        await asyncio.get_running_loop().run_in_executor(None, self.flush_sync)

    def close_sync(self) -> None:
        """Drain the queue, then stop the sender (the call is about to answer)."""
        try:
            if self._closed_unused():
                return
            self.flush_sync()
            with self._cond:
                self._closed = True
                self._cond.notify_all()
        finally:
            self._state = None

    async def close_async(self) -> None:
        """``close_sync`` without blocking the event loop."""
        try:
            if self._closed_unused():
                return
            await self.flush_async()
            with self._cond:
                self._closed = True
                self._cond.notify_all()
        finally:
            self._state = None

    def _send_queued(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue:
                    return
                batch = _take_batch(self._queue)
            try:
                self._post(batch)
            except Exception as exc:  # never fail the function for a lightweight message
                self._warn_once(str(getattr(exc, "message", "") or exc))
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _post(self, batch: list[Message]) -> None:
        connection = self.connection
        connection.run_sync(publish_flow(connection.settings, self.run_id, batch))

    def _warn_once(self, why: str) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "stepline: run %s: messages published with ctx.publish were dropped: %s "
            "(logged once per call)",
            self.run_id,
            why,
        )

    # -- durable -------------------------------------------------------------------------

    def durable_message(self, hashed_id: str, topic: str, data: object) -> Message:
        """The message of a ``step.publish``, identified by its step's hashed id."""
        limit = self.connection.settings.max_stream_message_bytes
        return encode(topic, data, limit=limit, id=hashed_id)

    def post_durable_sync(self, message: Message) -> dict[str, Any]:
        """Post a durable message after the queued ones; returns the step's memo."""
        self.flush_sync()
        connection = self.connection
        flow = publish_flow(connection.settings, self.run_id, [message], attempts=DURABLE_ATTEMPTS)
        [seq] = connection.run_sync(flow)
        return {"seq": seq, "topic": message.topic}

    async def post_durable_async(self, message: Message) -> dict[str, Any]:
        """``post_durable_sync`` with the async transport."""
        await self.flush_async()
        connection = self.connection
        flow = publish_flow(connection.settings, self.run_id, [message], attempts=DURABLE_ATTEMPTS)
        [seq] = await connection.run_async(flow)
        return {"seq": seq, "topic": message.topic}


def publisher_of(state: ExecutionState) -> Publisher:
    """The publisher of ``state``'s call (``ConfigError`` for a call made without one)."""
    publisher = state.publisher
    if publisher is None:
        raise _errors.ConfigError(
            "publishing on a run's stream needs a function called through serve()"
        )
    return publisher


def _take_batch(queue: list[Message]) -> list[Message]:
    size, count = 0, 0
    for message in queue[:MAX_BATCH]:
        size += len(message.data)
        if count and size > MAX_BATCH_BYTES:
            break
        count += 1
    batch = queue[:count]
    del queue[:count]
    return batch


def _headers(settings: _settings.Settings, key: str | None) -> dict[str, str]:
    out = {
        headers.CONTENT_TYPE: headers.JSON,
        headers.SDK: _identity.SDK_HEADER,
        headers.USER_AGENT: _identity.SDK_HEADER,
        headers.REQ_VERSION: headers.REQUEST_VERSION,
    }
    if key:
        out[headers.AUTHORIZATION] = signing.bearer_token(key)
    if settings.env:
        out[headers.ENV] = settings.env
    return out


def _seqs(
    settings: _settings.Settings, run_id: str, response: _effects.HttpResponse, count: int
) -> list[int]:
    route = f"POST {settings.api_base_url}/v1/runs/{run_id}/stream"
    if response.status == 0:
        raise _errors.StreamPublishError(f"{route}: the engine is unreachable: {response.error}")
    parsed = json_loads_or_none(response.body)
    detail = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(detail, str) or not detail:
        detail = response.body[:200].decode("utf-8", "replace") or "no message"
    if response.status == 404:
        raise _errors.StreamPublishError(
            f"{route} answered 404 ({detail}): durable streams need the Stepline engine "
            "(a function served to Inngest's servers cannot publish)",
            retriable=False,
        )
    if response.status == 413:
        raise _errors.StreamMessageTooLargeError(f"{route} answered 413: {detail}")
    if not response.ok:
        raise _errors.StreamPublishError(
            f"{route} answered {response.status}: {detail}",
            retriable=response.status >= 500 or response.status == 429,
        )
    data = parsed.get("data") if isinstance(parsed, dict) else None
    seqs = data.get("seqs") if isinstance(data, dict) else None
    if (
        not isinstance(seqs, list)
        or len(seqs) != count
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seqs)
    ):
        raise _errors.StreamPublishError(f"{route} answered without {count} sequence number(s)")
    return seqs
