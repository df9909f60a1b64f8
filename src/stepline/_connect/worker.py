"""Stepline's Connect worker: an app's functions served over one outbound WebSocket.

The worker asks the engine for a connection (``POST /v0/connect/start``, with the signing
key's hash as the bearer), opens the gateway's socket, registers its app in
``WORKER_CONNECT`` and runs each ``GATEWAY_EXECUTOR_REQUEST`` through the SDK's
``CommHandler`` (the code path of ``serve()``'s POST): it acknowledges the call, extends
its lease while it runs, replies over the socket the call came on, and, when that socket
is gone or the reply is not acknowledged, over ``POST /v0/connect/flush``. It beats every
heartbeat interval and takes a gateway silent for three of them for a dead socket. A lost
socket, ``GATEWAY_CLOSING`` (the engine stops) or an engine that is down is met with a
new start call after a backoff (0.25 s doubling to 5 s, with jitter), forever; a refused
key or a refused registration stops the worker with ``ConnectError``.

``stop()`` (SIGTERM or SIGINT under ``run()``) drains: ``WORKER_PAUSE`` (the engine sends
no new call), the calls in flight finish and are answered, then the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from stepline import _errors, _json
from stepline._comm import app_sync
from stepline._comm.messages import CommResponse
from stepline._connect import calls, kinds, link, proto
from stepline._identity import VERSION
from stepline._protocol import headers, signing
from stepline._serving import options as _serve_options

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["FRAMEWORK", "PROTOCOL", "ConnectError", "Worker"]

logger = logging.getLogger("stepline.connect")

#: The WebSocket subprotocol of the gateway.
PROTOCOL = "v0.connect.inngest.com"
#: ``X-Inngest-Framework`` of calls served over Connect.
FRAMEWORK = "connect"
PROTOBUF = "application/protobuf"
#: How long a reply over the socket may wait for its ``WORKER_REPLY_ACK``.
REPLY_ACK_SECONDS = 5.0


class ConnectError(_errors.ConfigError):
    """The engine refused this worker (its key, or its app's registration): it stops."""


def _reason(exc: BaseException) -> str:
    """An error's type and text: ``ConnectError: [Errno 111] Connection refused``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_text(answer: httpx.Response) -> str:
    """The ``error`` of an engine's JSON answer, else its start."""
    try:
        found = answer.json()
    except ValueError:
        found = None
    if isinstance(found, dict) and isinstance(found.get("error"), str):
        return str(found["error"])[:300]
    return answer.text[:300]


@dataclasses.dataclass(eq=False)
class _Call:
    data: dict[str, Any]
    sock: link.Socket
    lease_id: str
    lost: bool = False


class Worker:
    """Serves ``client``'s ``functions`` over Connect until stopped.

    Args:
        client: the app's client: its app id, its engine (``api_base_url``) and its signing
            key (``start`` mode) are the worker's.
        functions: the functions to serve (sync and async).
        instance_id: names this process to the engine (default: host name and pid).
        max_concurrency: the most calls the engine sends at once (default: no limit).
        thread_pool_max_workers: threads for sync functions (default: the client's).

    Raises:
        ConfigError: a function of another app, or the ``websockets`` package is missing.
    """

    def __init__(
        self,
        client: Client,
        functions: Sequence[Function],
        *,
        instance_id: str | None = None,
        max_concurrency: int | None = None,
        thread_pool_max_workers: int | None = None,
    ) -> None:
        link.websockets()  # fail here, not at the first connection
        if max_concurrency is not None and max_concurrency < 1:
            raise _errors.ConfigError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.client = client
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.max_concurrency = max_concurrency
        options: _serve_options.ServeOptions = {"streaming": "disable"}
        if thread_pool_max_workers is not None:
            options["thread_pool_max_workers"] = thread_pool_max_workers
        self.handler = _serve_options.build_handler(
            client, functions, FRAMEWORK, options, can_stream=False
        )
        self._calls: dict[str, _Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Event | None = None
        self._stop_asked = False
        #: What the worker reaches now (the start call's URL, then the gateway's): a
        #: failure's log line names it.
        self._dialing = ""
        #: Set while a socket is open and registered (tests and health checks read it).
        self.connected = threading.Event()

    @property
    def in_flight(self) -> int:
        """The calls running now."""
        return len(self._calls)

    # -- running ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and return (blocking).

        Raises:
            ConnectError: the engine refused the key or the app's registration.
        """
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        signals = (signal.SIGTERM, signal.SIGINT) if handled else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        try:
            await self.serve()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        """Drain (from any thread): take no new calls, finish those in flight, then stop."""
        loop, drain = self._loop, self._drain
        self._stop_asked = True
        if loop is not None and drain is not None and not loop.is_closed():
            loop.call_soon_threadsafe(drain.set)

    async def serve(self) -> None:
        """Serve on the running loop until ``stop()`` and the drain are done.

        Raises:
            ConnectError: the engine refused the key or the app's registration.
        """
        self._loop = asyncio.get_running_loop()
        self._drain = drain = asyncio.Event()
        if self._stop_asked:
            drain.set()
        failures = 0
        try:
            async with httpx.AsyncClient(timeout=30.0) as http:
                while not drain.is_set():
                    try:
                        await self._connection(http, drain)
                        failures = 0
                    except (link.Lost, proto.ProtoError) as exc:
                        failures += 1
                        why = str(exc) or type(exc).__name__
                    except (OSError, httpx.HTTPError, asyncio.TimeoutError) as exc:
                        failures += 1  # the host, which the error itself may not name
                        why = f"cannot reach {self._dialing} ({_reason(exc)})"
                    except Exception as exc:
                        if isinstance(exc, ConnectError) or not link.is_socket_error(exc):
                            raise
                        failures += 1
                        why = f"the socket to {self._dialing} failed ({_reason(exc)})"
                    else:
                        why = ""
                    self.connected.clear()
                    if not drain.is_set():
                        delay = link.backoff(failures)
                        if why:
                            logger.warning("Connect: %s; connecting again in %.1fs", why, delay)
                        await link.wait(drain, delay)
                if self._tasks:  # calls whose socket went: their replies are flushed
                    await asyncio.wait(set(self._tasks))
        finally:
            self.connected.clear()
            self.handler.close()

    # -- one connection --------------------------------------------------------------------

    async def _connection(self, http: httpx.AsyncClient, drain: asyncio.Event) -> None:
        """One session; a drain before its socket is ready cancels it (nothing to pause)."""
        session = asyncio.ensure_future(self._session(http, drain))
        drained = asyncio.ensure_future(drain.wait())
        try:
            await asyncio.wait((session, drained), return_when=asyncio.FIRST_COMPLETED)
            if not session.done() and not self.connected.is_set():
                session.cancel()
            await asyncio.wait((session,))
        finally:
            drained.cancel()
        if not session.cancelled():
            session.result()

    async def _session(self, http: httpx.AsyncClient, drain: asyncio.Event) -> None:
        start = await self._start(http)
        connect = link.websockets()
        self._dialing = str(start["gateway_endpoint"])
        async with connect(
            start["gateway_endpoint"],
            subprotocols=[PROTOCOL],
            max_size=None,
            open_timeout=10,
            close_timeout=5,
        ) as ws:
            sock = link.Socket(ws, str(start["connection_id"]))
            kind, _ = await link.receive(ws, 10.0)
            if kind != kinds.GATEWAY_HELLO:
                raise link.Lost(f"the gateway sent {kinds.name(kind)}, not GATEWAY_HELLO")
            await sock.send(kinds.WORKER_CONNECT, "WorkerConnectRequestData", **self._hello(start))
            kind, payload = await link.receive(ws, 30.0)
            if kind == kinds.SYNC_FAILED:
                error = proto.decode("SystemError", payload)
                raise ConnectError(f"the engine refused the app: {error.get('message', '')}")
            if kind != kinds.GATEWAY_CONNECTION_READY:
                raise link.Lost(f"the gateway sent {kinds.name(kind)}, not CONNECTION_READY")
            ready = proto.decode("GatewayConnectionReadyData", payload)
            beat = calls.interval(ready.get("heartbeat_interval"), 10.0)
            sock.extend_every = calls.interval(ready.get("extend_lease_interval"), 5.0)
            self.connected.set()
            logger.info(
                "Connect: connected to %s: serving app %s (connection %s)",
                self._dialing, self.client.app_id, sock.conn_id,
            )  # fmt: skip
            reader = asyncio.ensure_future(self._read(sock, http, beat * 3))
            beats = asyncio.ensure_future(link.beat(sock, beat))
            drained = asyncio.ensure_future(drain.wait())
            try:
                await asyncio.wait((reader, drained), return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    reader.result()  # why it ended
                    return
                await sock.send(kinds.WORKER_PAUSE)
                logger.info("Connect: draining %d call(s) in flight", len(self._calls))
                while self._tasks and not reader.done():
                    await asyncio.wait((reader, *self._tasks), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sock.open = False
                for task in (reader, beats, drained):
                    task.cancel()
                    if task.done() and not task.cancelled():
                        task.exception()  # seen: the reader's end was handled above
                for ack in sock.acks.values():
                    if not ack.done():
                        ack.cancel()

    async def _start(self, http: httpx.AsyncClient) -> dict[str, Any]:
        settings = self.client.settings
        url = settings.api_base_url.rstrip("/") + "/v0/connect/start"
        self._dialing = url
        body = proto.encode("StartRequest", {})
        answer: httpx.Response | None = None
        for key in settings.signing_keys or (None,):  # the fallback after a 401: rotation
            answer = await http.post(url, content=body, headers=self._headers(key))
            if answer.status_code != 401:
                break
        assert answer is not None
        if answer.status_code == 501:  # the engine lacks a package: its answer names it
            raise ConnectError(
                f"the engine at {settings.api_base_url} cannot serve Connect: "
                f"{_error_text(answer)} (on the engine's side)"
            )
        if answer.status_code in (401, 403):
            raise ConnectError(
                f"POST {url} answered {answer.status_code}: {answer.text[:300]} "
                "(check the signing key)"
            )
        if answer.status_code != 200:
            raise link.Lost(f"POST {url} answered {answer.status_code}: {answer.text[:200]}")
        try:
            return proto.decode("StartResponse", answer.content)
        except proto.ProtoError as exc:
            raise link.Lost(f"POST {url} answered a malformed StartResponse: {exc}") from None

    def _headers(self, key: str | None) -> dict[str, str]:
        found = {headers.CONTENT_TYPE: PROTOBUF, headers.SDK: f"stepline-py:v{VERSION}"}
        if key:
            found[headers.AUTHORIZATION] = signing.bearer_token(key)
        return found

    def _hello(self, start: dict[str, Any]) -> dict[str, Any]:
        settings = self.client.settings
        url = calls.app_url(settings.app_id)
        functions = app_sync.register_payload(self.handler.endpoint, url)["functions"]
        return {
            "connection_id": start["connection_id"],
            "instance_id": self.instance_id,
            "auth_data": {
                "session_token": start.get("session_token", ""),
                "sync_token": start.get("sync_token", ""),
            },
            "apps": [
                {
                    "app_name": settings.app_id,
                    "app_version": settings.app_version,
                    "functions": _json.dumps(functions).encode(),
                }
            ],
            "system_attributes": {"cpu_cores": os.cpu_count() or 0, "os": sys.platform},
            "environment": settings.env,
            "framework": FRAMEWORK,
            "sdk_version": VERSION,
            "sdk_language": "stepline-py",
            "started_at": {"seconds": int(time.time())},
            "max_worker_concurrency": self.max_concurrency,
        }

    async def _read(self, sock: link.Socket, http: httpx.AsyncClient, silence: float) -> None:
        while True:
            kind, payload = await link.receive(sock.ws, silence)
            if kind == kinds.GATEWAY_EXECUTOR_REQUEST:
                data = proto.decode("GatewayExecutorRequestData", payload)
                await self._take(sock, data, http)
            elif kind == kinds.WORKER_REPLY_ACK:
                rid = str(proto.decode("WorkerReplyAckData", payload).get("request_id", ""))
                ack = sock.acks.pop(rid, None)
                if ack is not None and not ack.done():
                    ack.set_result(None)
            elif kind == kinds.WORKER_REQUEST_EXTEND_LEASE_ACK:
                data = proto.decode("WorkerRequestExtendLeaseAckData", payload)
                self._extended(str(data.get("request_id", "")), data.get("new_lease_id"))
            elif kind == kinds.GATEWAY_CLOSING:
                raise link.Lost("the engine is closing this gateway")
            elif kind != kinds.GATEWAY_HEARTBEAT:
                logger.debug("Connect: ignored %s", kinds.name(kind))

    # -- calls -----------------------------------------------------------------------------

    async def _take(self, sock: link.Socket, data: dict[str, Any], http: httpx.AsyncClient) -> None:
        rid = str(data.get("request_id", ""))
        if rid in self._calls:  # a repeat of a call running here
            return
        ack = {k: data.get(k) for k in ("request_id", "app_id", "function_slug", "run_id")}
        await sock.send(kinds.WORKER_REQUEST_ACK, "WorkerRequestAckData", **ack)
        call = _Call(data, sock, str(data.get("lease_id", "")))
        self._calls[rid] = call
        task = asyncio.ensure_future(self._execute(call, http))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, call: _Call, http: httpx.AsyncClient) -> None:
        rid = str(call.data.get("request_id", ""))
        extending = asyncio.ensure_future(self._extend(call))
        try:
            try:
                response = await self.handler.handle(calls.comm_request(call.data))
            except Exception as exc:  # a fault of ours: answered as serve() would
                response = CommResponse.from_error(exc, self.handler.base_headers)
            finally:
                extending.cancel()
            if call.lost:
                logger.warning("Connect: call %s lost its lease; its answer is dropped", rid)
                return
            await self._reply(call, calls.sdk_response(call.data, response), http)
        except Exception:
            logger.exception("Connect: could not answer call %s", rid)
        finally:
            self._calls.pop(rid, None)

    async def _extend(self, call: _Call) -> None:
        fields = ("request_id", "app_id", "function_slug", "run_id")
        while True:
            await asyncio.sleep(call.sock.extend_every)
            if not call.sock.open or call.lost:
                return  # the engine failed the call when the socket went, or let it go
            values = {k: call.data.get(k) for k in fields}
            with contextlib.suppress(Exception):  # the reader notices a dead socket
                await call.sock.send(
                    kinds.WORKER_REQUEST_EXTEND_LEASE,
                    "WorkerRequestExtendLeaseData",
                    lease_id=call.lease_id,
                    **values,
                )

    def _extended(self, rid: str, new_lease: object) -> None:
        call = self._calls.get(rid)
        if call is None:
            return
        if new_lease:
            call.lease_id = str(new_lease)
        else:
            call.lost = True  # the engine let the call go (timed out, or given to another)

    async def _reply(self, call: _Call, answer: dict[str, Any], http: httpx.AsyncClient) -> None:
        rid = str(answer["request_id"])
        sock = call.sock
        if sock.open:
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            sock.acks[rid] = acked
            try:
                await sock.send(kinds.WORKER_REPLY, "SDKResponse", **answer)
            except Exception as exc:  # the socket went: the engine hears it over HTTP
                logger.debug("Connect: reply %s not sent over the socket: %s", rid, exc)
            else:  # the ack is cancelled if the socket closes meanwhile
                await asyncio.wait((acked,), timeout=REPLY_ACK_SECONDS)
                if acked.done() and not acked.cancelled():
                    return
            finally:
                sock.acks.pop(rid, None)
        await self._flush(answer, http)

    async def _flush(self, answer: dict[str, Any], http: httpx.AsyncClient) -> None:
        """``POST /v0/connect/flush`` until answered (a 404: the call is gone)."""
        url = self.client.settings.api_base_url.rstrip("/") + "/v0/connect/flush"
        body = proto.encode("SDKResponse", answer)
        keys = self.client.settings.signing_keys or (None,)
        rid = answer["request_id"]
        for attempt in range(12):
            try:
                sent = await http.post(url, content=body, headers=self._headers(keys[0]))
                if sent.status_code in (200, 404):  # 404: the call is gone (timed out)
                    logger.info("Connect: reply %s flushed: %d", rid, sent.status_code)
                    return
            except httpx.HTTPError as exc:
                logger.debug("Connect: flush failed: %s", exc)
            await asyncio.sleep(link.backoff(attempt + 1))
        logger.error("Connect: could not deliver the reply to call %s", rid)
