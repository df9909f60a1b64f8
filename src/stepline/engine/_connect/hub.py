"""The connected workers, and the transport that sends an app's calls over their sockets.

``Hub`` is a ``Driver`` for ``connect://<app id>/...`` URLs (the URL the gateway registers
a Connect app at): ``request`` picks a ready, undrained worker of the app with the fewest
calls in flight, sends it a ``GATEWAY_EXECUTOR_REQUEST`` carrying the same body an HTTP
call would POST, and waits for its ``WORKER_REPLY``, which becomes the ``RawResponse`` an
HTTP answer would (status, body, no-retry, Retry-After, request version). The durability
rules are the HTTP ones: a worker that goes away before replying makes the call fail as a
lost connection does (the attempt is retried; no recorded step runs again). A call no
worker acknowledged was never taken (a draining official worker drops the calls it is
sent): it goes to another worker, and waits for one, without spending an attempt. Each
lease extension the worker sends moves the call's deadline on, so a step may outlast the
call timeout while its worker keeps reporting (one that stops reporting fails at the later
of the two); the engine's own job lease is kept meanwhile by its worker's heartbeat. A
socket the engine's own shutdown closes fails nothing: the stopping engine hands those
calls back without spending an attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import socket
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from stepline import _json
from stepline._connect import kinds, proto
from stepline._protocol import headers as wire
from stepline.engine._config import EngineSettings
from stepline.engine._connect import limits
from stepline.engine._connect.tokens import TOKEN_SECONDS, Tokens
from stepline.engine._driver import CONNECT_SCHEME
from stepline.engine._http import throttle
from stepline.engine._wire.response import RawResponse

__all__ = ["NOT_SYNCED", "SCHEME", "Conn", "Hub", "Timing", "app_url"]

logger = logging.getLogger("stepline.engine.connect")

#: URLs of apps served over Connect: ``connect://<app id>/v0/connect``.
SCHEME = CONNECT_SCHEME
#: URL prefixes no sync PUT goes to: apps of this process, and Connect apps (their
#: workers sync them when they connect)
NOT_SYNCED = ("inprocess:", f"{SCHEME}:")
_STATUS = {1: 200, 0: 206, 2: 500}  # SDKResponseStatus: DONE, NOT_COMPLETED, ERROR
#: The most telling one worker GATEWAY_CLOSING may take, in seconds.
_CLOSING_SEND = 1.0


def app_url(app_id: str) -> str:
    """The URL a Connect app is registered at (its calls go over its workers' sockets)."""
    return f"{SCHEME}://{urllib.parse.quote(app_id, safe='')}/v0/connect"


@dataclasses.dataclass(frozen=True)
class Timing:
    """The gateway's clocks, in seconds (resolved once from the engine's settings).

    Attributes:
        heartbeat: the interval announced to workers (the official worker beats every 10 s).
        misses: consecutive heartbeats a worker may miss before it is dropped.
        extend: how often a worker extends the lease of each call it runs (whole seconds).
        lease: how far each extension moves a call's deadline.
        handshake: the most a worker may take to send WORKER_CONNECT.
        ack: the most a worker may take to acknowledge a call.
        wait_worker: how long a call waits for a worker of its app to be connected.
        flush: how long a call whose socket dropped waits for its reply over
            ``/v0/connect/flush`` (the official worker flushes a reply left unacknowledged
            for one extension interval, looking every second).
    """

    heartbeat: float = 10.0
    misses: int = 3
    extend: int = 5
    lease: float = 20.0
    handshake: float = 10.0
    ack: float = 10.0
    wait_worker: float = 30.0
    flush: float = 6.0

    @classmethod
    def of(cls, settings: EngineSettings) -> Timing:
        """Extensions three times per engine lease, every 1 to 4 s: a 20 s step reports at
        least four times, as the official SDK's scenarios expect of a dev server (its
        worker also flushes a reply left unacknowledged for that long)."""
        extend = max(1, min(int(settings.lease_seconds // 3), 4))
        lease = max(settings.lease_seconds, 4.0 * extend)
        return cls(extend=extend, lease=lease, flush=extend + 2.0)


@dataclasses.dataclass(eq=False)
class Conn:
    """One connected worker: the apps it serves and the calls it runs."""

    conn_id: str
    instance_id: str
    apps: frozenset[str]
    send: Callable[[bytes], Awaitable[None]]
    sdk: str = ""
    max_inflight: int | None = None
    ready: bool = False
    draining: bool = False
    sent: int = 0
    inflight: dict[str, _Pending] = dataclasses.field(default_factory=dict)
    #: what ``GET /v1/connect/workers`` shows: the functions and version of each app,
    #: the framework, when the worker connected and when it was last heard from
    functions: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    versions: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    framework: str = ""
    connected_at: float = dataclasses.field(default_factory=time.time)
    last_seen: float = dataclasses.field(default_factory=time.time)


class Remote(Protocol):
    """Other engine nodes' workers (``cluster.Cluster``, on Postgres)."""

    def changed(self) -> None:
        """This node's workers changed."""

    async def forward(
        self, app_id: str, query: Mapping[str, str], body: bytes, headers: Mapping[str, str],
        timeout: float,
    ) -> RawResponse | None:  # fmt: skip
        """A call answered by a worker on another node; None if no node has one."""

    async def listed(self, path: str) -> list[dict[str, Any]]:
        """The workers the other nodes list at ``path``."""


@dataclasses.dataclass(eq=False)
class _Pending:
    request_id: str
    conn: Conn
    future: asyncio.Future[RawResponse]
    deadline: float
    lease_id: str
    acked: bool = False
    #: why its socket dropped: the call fails so unless a flushed reply comes first
    lost: str | None = None


@dataclasses.dataclass(frozen=True)
class _Call:
    """One call to an app's worker, as the driver was asked to send it."""

    app_id: str
    query: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str]
    timeout: float


class Hub:
    """The registry of connected workers and the ``connect://`` driver over them."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.timing = Timing.of(settings)
        #: this engine process, as the worker listing names it
        self.node = f"{socket.gethostname()}:{settings.port}/{os.getpid()}"
        # dev mode has no key: a secret of this process (a restart means a new start call)
        self.tokens = Tokens(settings.signing_keys or (secrets.token_hex(32),))
        self.closing = False
        self._conns: dict[str, Conn] = {}
        self._pending: dict[str, _Pending] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._claimed: dict[str, float] = {}
        #: the sockets being set up, not yet authenticated (``limits``)
        self.handshakes = throttle.Slots(
            per_client=limits.HANDSHAKES_PER_CLIENT, overall=limits.HANDSHAKES
        )
        #: set on Postgres: calls of apps with no worker here go to another node's
        self.cluster: Remote | None = None

    # -- the registry ----------------------------------------------------------------------

    def workers(self, app_id: str | None = None) -> list[Conn]:
        """The connected workers (of one app)."""
        return [c for c in self._conns.values() if app_id is None or app_id in c.apps]

    def claim(self, conn_id: str) -> bool:
        """Take a connection id for a socket: False if one took it already.

        Tokens are bound to their connection id, so a pair is good for one socket (a
        worker reconnecting asks ``/v0/connect/start`` again). Ids are kept as long as
        their tokens live, which is all the memory this needs.
        """
        now = time.monotonic()
        if len(self._claimed) > 1000:
            self._claimed = {k: v for k, v in self._claimed.items() if v > now}
        if self._claimed.get(conn_id, 0.0) > now:
            return False
        self._claimed[conn_id] = now + TOKEN_SECONDS
        return True

    def add(self, conn: Conn) -> None:
        """A worker finished its handshake."""
        self._conns[conn.conn_id] = conn
        self.changed()

    def changed(self) -> None:
        """A worker came, became ready or drains: calls waiting for one look again."""
        self._notify()
        if self.cluster is not None:
            self.cluster.changed()

    def drop(self, conn: Conn, why: str, *, stopping: bool = False) -> None:
        """A worker's socket closed: its unanswered calls fail as a lost connection does,
        once ``Timing.flush`` has passed without their reply flushed over HTTP (the worker
        may be alive, its reply stuck behind the dropped socket); a call it had not
        acknowledged goes to another worker then instead.

        When the engine's own server closed it (``stopping``: it shuts down), or the hub
        has closed, the calls are not failed (that would spend their attempts): the
        engine's worker, stopping, hands their jobs back at the end of its grace. Should
        the engine not be stopping after all, they fail once that grace and a lease have
        passed.
        """
        if self._conns.get(conn.conn_id) is conn:
            del self._conns[conn.conn_id]
            if self.cluster is not None:
                self.cluster.changed()
        if self.closing or stopping:
            orphaned = time.monotonic() + self.settings.shutdown_grace + self.timing.lease
            for pending in conn.inflight.values():
                pending.acked = True
                pending.deadline = min(pending.deadline, orphaned)
            return
        flushed_by = time.monotonic() + self.timing.flush
        for pending in list(conn.inflight.values()):
            error = f"ConnectionLost: the Connect worker {conn.instance_id!r} ({why}) "
            pending.lost = error + "before answering"
            pending.deadline = min(pending.deadline, flushed_by)

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # -- messages from a worker ------------------------------------------------------------

    def acked(self, conn: Conn, request_id: str) -> None:
        """WORKER_REQUEST_ACK: the worker took the call."""
        pending = conn.inflight.get(request_id)
        if pending is not None:
            pending.acked = True

    def extend(self, conn: Conn, request_id: str, lease_id: str) -> str | None:
        """WORKER_REQUEST_EXTEND_LEASE: the call's new lease id, or None (lease lost)."""
        pending = conn.inflight.get(request_id)
        if pending is None or pending.future.done() or pending.lease_id != lease_id:
            return None
        pending.acked = True
        pending.lease_id = uuid.uuid4().hex
        pending.deadline = max(pending.deadline, time.monotonic() + self.timing.lease)
        return pending.lease_id

    def reply(self, conn: Conn | None, answer: Mapping[str, Any]) -> bool:
        """WORKER_REPLY (or a flushed reply, ``conn`` None): answer the waiting call."""
        pending = self._pending.get(str(answer.get("request_id", "")))
        if pending is None or (conn is not None and pending.conn is not conn):
            return False
        return _settle(pending, raw_answer(answer))

    # -- the driver ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        *,
        forwarded: bool = False,
    ) -> RawResponse:
        """Send one call to a worker of the URL's app; never raises for a worker's failure.

        A worker connected here is picked first; with none, another node's (``cluster``),
        unless the call was ``forwarded`` here by another node already.
        """
        parts = urllib.parse.urlsplit(url)
        app_id = urllib.parse.unquote(parts.netloc)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if method != "POST" or "fnId" not in query:
            error = f"app {app_id!r} is served over Connect: its workers sync it when they connect"
            return RawResponse(0, {}, b"", error=error)
        call = _Call(app_id, query, body, headers, timeout)
        remote = None if forwarded else self.cluster
        #: workers that left this call unacknowledged: it goes to another one
        passed: set[str] = set()
        unacked: str | None = None
        while True:
            routed = await self._route(call, remote, passed)
            if isinstance(routed, RawResponse):
                return routed
            if routed is None:
                error = f"no Connect worker of app {app_id!r} is connected (waited for one)"
                if unacked is not None:
                    error = f"{unacked}, and no other worker of app {app_id!r} took it (waited)"
                return RawResponse(0, {}, b"", error=error)
            answer = await self._deliver(routed, call)
            if isinstance(answer, RawResponse):
                return answer
            # never acknowledged: the worker did not take the call (a draining official
            # worker drops calls silently), so it is sent again, no attempt spent
            passed.add(routed.conn_id)
            unacked = answer
            logger.info("%s; sending the call to another worker of app %r", answer, app_id)

    async def _route(
        self, call: _Call, remote: Remote | None, passed: set[str]
    ) -> Conn | RawResponse | None:
        """A worker here for the call, another node's answer to it, or None (nobody came)."""
        wait = min(call.timeout, self.timing.wait_worker)
        deadline = time.monotonic() + wait
        conn = await self._pick(call.app_id, 0.0 if remote is not None else wait, passed)
        while conn is None and remote is not None:
            answer = await remote.forward(
                call.app_id, call.query, call.body, call.headers, call.timeout
            )
            if answer is not None:
                return answer
            left = deadline - time.monotonic()
            if left <= 0 and not self.closing:
                break
            conn = await self._pick(call.app_id, min(max(left, 0.0), 2.0), passed)  # again
        return conn

    async def _deliver(self, conn: Conn, call: _Call) -> RawResponse | str:
        """The worker's answer to the call, or why it never acknowledged it."""
        loop = asyncio.get_running_loop()
        pending = _Pending(
            request_id=uuid.uuid4().hex,
            conn=conn,
            future=loop.create_future(),
            deadline=time.monotonic() + call.timeout,
            lease_id=uuid.uuid4().hex,
        )
        conn.inflight[pending.request_id] = pending
        self._pending[pending.request_id] = pending
        conn.sent += 1
        try:
            signature = {k.lower(): v for k, v in call.headers.items()}.get(wire.SIGNATURE.lower())
            frame = kinds.frame(kinds.GATEWAY_EXECUTOR_REQUEST, _executor_request(
                pending, call.app_id, call.query["fnId"], call.query.get("stepId"), call.body,
                signature=signature,
            ))  # fmt: skip
            try:
                await conn.send(frame)
            except Exception as exc:  # the socket closed meanwhile: no answer can come
                error = f"ConnectionLost: could not send to the Connect worker: {exc}"
                return RawResponse(0, {}, b"", error=error)
            return await self._answer(pending, call.timeout)
        finally:
            conn.inflight.pop(pending.request_id, None)
            self._pending.pop(pending.request_id, None)
            self._notify()

    async def _answer(self, pending: _Pending, timeout: float) -> RawResponse | str:
        ack_by = time.monotonic() + self.timing.ack
        while True:
            now = time.monotonic()
            limit = pending.deadline if pending.acked else min(ack_by, pending.deadline)
            if now >= limit:
                if not pending.acked:
                    return pending.lost or (
                        f"the Connect worker did not acknowledge the call in {self.timing.ack:g}s"
                    )
                if pending.lost is not None:
                    return RawResponse(0, {}, b"", error=pending.lost)
                error = f"ReadTimeout: no answer within {timeout:g}s (and no lease extension)"
                return RawResponse(0, {}, b"", error=error)
            # at most a second: an extension or a drop may have moved the deadline
            await asyncio.wait((pending.future,), timeout=min(limit - now, 1.0))
            if pending.future.done():
                return pending.future.result()

    async def _pick(self, app_id: str, wait: float, passed: set[str]) -> Conn | None:
        deadline = time.monotonic() + wait
        while True:
            ready = [
                c
                for c in self._conns.values()
                if app_id in c.apps and c.ready and not c.draining
                and c.conn_id not in passed
                and (c.max_inflight is None or len(c.inflight) < c.max_inflight)
            ]  # fmt: skip
            if ready:
                return min(ready, key=lambda c: (len(c.inflight), c.sent))
            left = deadline - time.monotonic()
            if self.closing:  # the engine stops: its worker hands the job back (no attempt)
                left = 3600.0
            elif left <= 0:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            await asyncio.wait((waiter,), timeout=left)
            self._waiters.discard(waiter)

    async def close(self) -> None:
        """The engine stops: tell every worker (GATEWAY_CLOSING) to reconnect elsewhere.

        Calls in flight, and calls still looking for a worker, are left to the engine's
        stopping worker, which hands their jobs back without spending an attempt.
        """
        self.closing = True
        self._notify()
        closing = kinds.frame(kinds.GATEWAY_CLOSING)
        for conn in list(self._conns.values()):
            try:  # a worker that reads nothing (its socket full) holds nobody's stop up
                await asyncio.wait_for(conn.send(closing), _CLOSING_SEND)
            except Exception:  # already gone, or not reading
                logger.debug("could not tell worker %s the gateway closes", conn.conn_id)


def _settle(pending: _Pending, answer: RawResponse) -> bool:
    if pending.future.done():
        return False
    pending.future.set_result(answer)
    return True


def _executor_request(
    pending: _Pending,
    app_id: str,
    function_id: str,
    step_id: str | None,
    body: bytes,
    *,
    signature: str | None = None,
) -> bytes:
    run_id = ""
    try:  # the run's id, which the worker echoes in its messages (for its logs)
        ctx = _json.loads(body).get("ctx")
        run_id = str(ctx.get("run_id") or "") if isinstance(ctx, dict) else ""
    except (ValueError, AttributeError):
        pass
    return proto.encode(
        "GatewayExecutorRequestData",
        {
            "request_id": pending.request_id,
            "app_id": app_id,
            "app_name": app_id,  # the official worker finds the app's handler by this name
            "function_id": function_id,
            "function_slug": function_id,
            "step_id": step_id,
            "request_payload": body,
            "run_id": run_id,
            "lease_id": pending.lease_id,
            "job_id": pending.request_id,
            "signature": signature,  # start mode: Stepline's worker checks it
        },
    )


def raw_answer(answer: Mapping[str, Any]) -> RawResponse:
    """A worker's ``SDKResponse`` as the HTTP answer it stands for."""
    status = _STATUS.get(int(answer.get("status", 0)), 500)
    found = {wire.SDK: str(answer.get("sdk_version") or "connect")}
    if "request_version" in answer:  # proto3 leaves a 0 out, as no header would be
        found[wire.REQ_VERSION] = str(answer["request_version"])
    if answer.get("no_retry"):
        found[wire.NO_RETRY] = "true"
    if answer.get("retry_after"):
        found[wire.RETRY_AFTER] = str(answer["retry_after"])
    return RawResponse(status, found, bytes(answer.get("body", b"")))
