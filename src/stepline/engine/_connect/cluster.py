"""Connect on several engine nodes (Postgres): a call reaches a worker on another node.

Any node may lease any job, but a worker's socket is open to one node. Each node with
ready workers writes, every ``PRESENCE_SECONDS`` and whenever a worker comes, goes or
drains, which apps it serves and its ``node_url`` (``_store/presence``, an unlogged
table). A node that leases a call of a Connect app with no ready worker of its own reads
the fresh rows of the others and POSTs the call to one of them at ``/v0/connect/forward``
(signed in ``start`` mode with the engine's key, as every SDK-facing route; the call's
own signature rides along for Stepline's worker). That node sends it over a worker's
socket exactly as its own calls and answers with the worker's reply as HTTP.

What it costs: nothing on a node that holds a worker of the app (the hub picks its own
first); one database read and one HTTP hop on a node that does not. What fails how: a
node that cannot be reached before the call is sent (gone, stale row) is skipped, the
next one tried, then the call waits for a worker as usual; a node that dies with the
call in flight is a lost connection: the attempt fails and is retried (no recorded step
runs again). The leasing node keeps its own job lease by its heartbeat meanwhile, so a
step may run as long as its worker extends the lease on the serving node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx

from stepline import _json
from stepline._protocol import headers as wire
from stepline._protocol import signing
from stepline.engine._config import EngineSettings
from stepline.engine._connect import hub as _hub
from stepline.engine._store import presence
from stepline.engine._wire.response import RawResponse

__all__ = ["FORWARD_PATH", "PRESENCE_SECONDS", "Cluster", "answer_of", "node_url"]

logger = logging.getLogger("stepline.engine.connect")

FORWARD_PATH = "/v0/connect/forward"
#: How often a node rewrites its presence; a row three times older is not trusted.
PRESENCE_SECONDS = 3.0
#: The header a forwarded answer is marked with: ``error`` (no answer: the text is the
#: error) or ``no-worker`` (that node has no ready worker of the app after all).
MARK = "x-stepline-connect"
TIMEOUT = "x-stepline-timeout"
_ALL = ("0.0.0.0", "::", "")


def node_url(settings: EngineSettings) -> str:
    """Where the other nodes reach this one (``node_url``, else its bind address)."""
    if settings.node_url:
        return settings.node_url
    host = socket.gethostname() if settings.host in _ALL else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


class Cluster:
    """This node's presence, and the forwarding of calls to the nodes of other workers.

    Args:
        hub: this node's connected workers.
        store: the Postgres store the nodes share.
        settings: the engine's settings (its keys sign the forwarded calls).
    """

    def __init__(self, hub: _hub.Hub, store: Any, settings: EngineSettings) -> None:
        self.hub = hub
        self.store = store
        self.settings = settings
        self.url = node_url(settings)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._http: httpx.AsyncClient | None = None

    # -- presence ------------------------------------------------------------------------

    def changed(self) -> None:
        """A worker came, went, became ready or drains: write the presence soon."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._publish_loop())
        elif self._wake is not None:
            self._wake.set()

    def serving(self) -> dict[str, int]:
        """App id: how many ready, undrained workers of it are connected here."""
        found: dict[str, int] = {}
        for conn in self.hub.workers():
            if conn.ready and not conn.draining:
                for app_id in conn.apps:
                    found[app_id] = found.get(app_id, 0) + 1
        return found

    async def _publish_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        node = self.hub.node
        while True:
            wake.clear()
            apps = self.serving()
            publish = functools.partial(
                presence.publish, node=node, url=self.url, apps=apps, now=time.time()
            )
            try:
                await self.store.atomic(publish)
            except Exception as exc:  # the database is down: the rows go stale meanwhile
                logger.warning("could not write this node's Connect presence: %s", exc)
            if not apps and not self.hub.workers():
                return  # nothing to advertise until a worker comes (changed() restarts it)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), PRESENCE_SECONDS)

    async def close(self) -> None:
        """The node stops: it serves nothing any more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.store.atomic(lambda tx: presence.withdraw(tx, self.hub.node))
        except Exception as exc:
            logger.debug("could not withdraw this node's Connect presence: %s", exc)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- forwarding ----------------------------------------------------------------------

    async def forward(
        self, app_id: str, query: Mapping[str, str], body: bytes, headers: Mapping[str, str],
        timeout: float,
    ) -> RawResponse | None:  # fmt: skip
        """The answer of a node with a ready worker of ``app_id``; None if none has one."""
        since = time.time() - 3 * PRESENCE_SECONDS
        node = self.hub.node
        try:
            nodes = await self.store.read(lambda tx: presence.nodes_of(tx, app_id, node, since))
        except Exception as exc:
            logger.warning("could not read the Connect presence of app %s: %s", app_id, exc)
            return None
        target = {"app": app_id, **query}
        sent = self._headers(headers, timeout)
        for other, base in nodes:
            url = f"{base}{FORWARD_PATH}?{urllib.parse.urlencode(target)}"
            try:
                answer = await self._client().post(url, content=body, headers=sent)
            except httpx.ConnectError as exc:  # nothing was sent: try another node
                logger.warning("Connect node %s (%s) is unreachable: %s", other, base, exc)
                continue
            except httpx.HTTPError as exc:
                error = f"ConnectionLost: the call forwarded to Connect node {other} ({exc!r})"
                return RawResponse(0, {}, b"", error=error)
            if answer.headers.get(MARK) == "no-worker":
                continue
            logger.debug("forwarded a call of app %s to Connect node %s", app_id, other)
            return answer_of(answer.status_code, dict(answer.headers), answer.content)
        return None

    async def listed(self, path: str) -> list[dict[str, Any]]:
        """The workers the other nodes list at ``path`` (``?local=1``: theirs only).

        A node that does not answer in 2 s is left out (its workers are not shown).
        """
        since = time.time() - 3 * PRESENCE_SECONDS
        node = self.hub.node
        try:
            others = await self.store.read(lambda tx: presence.nodes(tx, node, since))
        except Exception as exc:
            logger.warning("could not read the Connect presence: %s", exc)
            return []
        sent = {k: v for k, v in self._headers({}, 2.0).items() if k != wire.CONTENT_TYPE}

        async def one(base: str) -> list[dict[str, Any]]:
            try:
                answer = await self._client().get(
                    f"{base}{path}", params={"local": "1"}, headers=sent, timeout=2.0
                )
                found = answer.json()["data"] if answer.status_code == 200 else []
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                logger.debug("Connect node %s did not list its workers: %s", base, exc)
                return []
            return [w for w in found if isinstance(w, dict)]

        lists = await asyncio.gather(*(one(base) for _, base in others))
        return [worker for found in lists for worker in found]

    def _headers(self, headers: Mapping[str, str], timeout: float) -> dict[str, str]:
        found = {k.lower(): v for k, v in headers.items()}
        sent = {
            wire.CONTENT_TYPE: "application/octet-stream",
            "x-stepline-csrf": "1",  # a dev-mode node's cross-site guard
            TIMEOUT: f"{timeout:g}",
        }
        if found.get(wire.SIGNATURE):
            sent[wire.SIGNATURE] = found[wire.SIGNATURE]
        if self.settings.signing_keys:
            sent[wire.AUTHORIZATION] = signing.bearer_token(self.settings.signing_keys[0])
        return sent

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:  # no read timeout: the serving node keeps the call's deadline
            limits = httpx.Timeout(None, connect=5.0)
            self._http = httpx.AsyncClient(timeout=limits, trust_env=False)
        return self._http


def answer_of(status: int, headers: Mapping[str, str], body: bytes) -> RawResponse:
    """A forwarded call's HTTP answer as the ``RawResponse`` of the call itself."""
    found = {k.lower(): v for k, v in headers.items()}
    if found.get(MARK) == "error":
        try:
            error = str(_json.loads(body).get("error"))
        except (ValueError, AttributeError):
            error = body.decode("utf-8", "replace")[:500]
        return RawResponse(0, {}, b"", error=error)
    kept = {k: v for k, v in found.items() if k.startswith("x-inngest-") or k == "retry-after"}
    return RawResponse(status, kept, body)
