"""App sync, the engine's side: a register body stored as an app and its functions, a
signed ``PUT`` that asks the app at a URL to register, and the registry kept in step.

"Sync" here is app sync (Inngest's word), not synchronous code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from stepline import _json
from stepline.engine._apps import registry as _registry
from stepline.engine._apps import versions as _versions
from stepline.engine._apps.registry import AppSpec, Registry
from stepline.engine._driver import Driver
from stepline.engine._model import AppRecord
from stepline.engine._runs.starts import schedule_cron
from stepline.engine._store import Store, Tx
from stepline.engine._trust.apps import AppGuard
from stepline.engine._wire import response

if TYPE_CHECKING:
    from stepline.engine._config import EngineSettings


class Synced(Protocol):
    """What the poller needs of an ``Engine`` (a protocol: no import cycle)."""

    @property
    def settings(self) -> EngineSettings: ...

    @property
    def driver(self) -> Driver: ...

    async def list_apps(self) -> list[AppRecord]: ...

    async def sync_url(self, url: str) -> SyncResult: ...


T = TypeVar("T")

#: how long an app may take to answer a sync ``PUT``
SYNC_TIMEOUT = 30.0

logger = logging.getLogger("stepline.engine")


@dataclasses.dataclass(frozen=True, slots=True)
class SyncResult:
    """What syncing an app by URL did."""

    url: str
    ok: bool
    status: int
    error: str | None = None


def store_app(tx: Tx, app: AppSpec, now: float, mode: str) -> bool:
    """Store ``app`` and its functions, schedule their crons; True if the app changed.

    Version-aware (``_versions.store``): a registration that is not the app's latest
    version is kept beside it, and only the latest's crons are scheduled.
    """
    modified, latest = _versions.store(tx, app, now, mode)
    if latest:
        for fn in app.functions:
            for trigger in fn.crons:
                schedule_cron(tx, fn.function_id, trigger, now)
    return modified


class Registered:
    """The registry this node matches events and starts against, in step with the store.

    A change to the registered apps (``change``) builds the registry in the transaction
    that commits it, and until that registry is in use, ``settled`` holds back what
    would read the old one: nothing this node accepts after the change can be seen in
    the store (``GET /v1/apps``) is matched against the registry before it. Other nodes
    catch up on the store's notice (``reload``).
    """

    def __init__(self) -> None:
        #: the registry in use
        self.current = Registry()
        #: changes committing or not yet in use
        self.changing = 0
        self._begun = self._used = 0  # reads begun; the latest in use
        self._waiting: list[asyncio.Future[None]] = []

    async def settled(self) -> Registry:
        """The registry, once no change this node is committing is still to come in."""
        while self.changing:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter
        return self.current

    async def reload(self, store: Store) -> None:
        """Rebuild from the store (another node's change, or at start). Of overlapping
        reads, which may end in any order, one begun earlier never replaces the registry
        of one begun later (whose read saw every commit it saw)."""
        self._begun += 1
        ticket = self._begun
        registry = _registry.built(*await store.read(_registry.stored))
        self._use(ticket, registry)

    async def change(self, store: Store, work: Callable[[Tx], T]) -> T:
        """Commit ``work`` (a change to the apps) and use the registry of that commit."""

        def both(tx: Tx) -> tuple[T, Registry]:
            result = work(tx)
            return result, _registry.built(*_registry.stored(tx))

        self.changing += 1
        try:
            result, registry = await store.atomic(both)
            self._begun += 1  # it saw its own commit: reads begun before it do not replace it
            self._use(self._begun, registry)
            return result
        finally:
            self.changing -= 1
            if not self.changing:
                waiting, self._waiting = self._waiting, []
                for waiter in waiting:
                    if not waiter.done():
                        waiter.set_result(None)

    def _use(self, ticket: int, registry: Registry) -> None:
        if ticket > self._used:
            self.current, self._used = registry, ticket


async def ask(
    driver: Driver,
    trust: AppGuard,
    url: str,
    now: float,
    store: Store | None = None,
    *,
    vouch: bool = True,
) -> SyncResult:
    """Ask the app at ``url`` to register itself (an out-of-band ``PUT``, signed with a key).

    With ``store``, a 2xx answer counts only if the app registered with *this* engine
    while the ``PUT`` was in flight: an app pointed at another engine answers 200 too.
    ``vouch``: as ``AppGuard.sync_request``'s.
    """
    try:
        target, body, headers = trust.sync_request(url, now, vouch=vouch)
    except ValueError as exc:  # e.g. "http://[::1": the driver would refuse it the same way
        answer = response.RawResponse(0, {}, b"", error=f"invalid URL: {exc}")
    else:
        answer = await driver.request("PUT", target, body, headers, SYNC_TIMEOUT)
    if answer.error is None and 200 <= answer.status < 300:
        error = _registration_error(answer.body)
        if error is None and store is not None and not await _arrived(store, url, now):
            error = elsewhere(url, trust.settings.port)
        if error is None:
            return SyncResult(url, True, answer.status)
    else:
        error = (
            answer.error
            or f"status {answer.status}: {answer.body[:300].decode('utf-8', 'replace')}"
        )
    return SyncResult(url, False, answer.status, error)


def elsewhere(url: str, port: int) -> str:
    """Why a sync the app answered with 200 did not reach this engine, and the fix."""
    return (
        f"the app at {url} answered the sync but did not register with this engine: it is "
        f"pointed at another engine; start it with STEPLINE_DEV=http://127.0.0.1:{port} "
        f"(the official inngest SDK: INNGEST_DEV=http://127.0.0.1:{port} or "
        f"INNGEST_BASE_URL=http://127.0.0.1:{port})"
    )


async def _arrived(store: Store, url: str, since: float) -> bool:
    """Did an app register here since ``since``: the one at ``url``, or any if none is?"""
    apps, versions = await store.read(
        lambda tx: (tx.apps.list_apps(), tx.versions.list_app_versions())
    )
    fresh = [a for a in apps if a.synced_at >= since]
    wanted = _base(url)
    if any(_base(v.url) == wanted and v.synced_at >= since for v in versions):
        return True  # an app version other than the latest (it is not in ``apps``)
    return any(_base(a.url) == wanted for a in fresh) or (
        bool(fresh) and all(_base(a.url) != wanted for a in apps)
    )


def _base(url: str) -> str:
    """``url`` without its query (a ``?fnId=`` or ``deployId=`` is not another app)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query="", fragment="")).rstrip("/")


def _registration_error(body: bytes) -> str | None:
    """py forwards the engine's answer with 200 even on failure: look inside."""
    try:
        parsed = _json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("error") and not parsed.get("ok"):
        return str(parsed["error"])
    return None


#: the first retry of a failed sync, in seconds; it doubles up to the poll interval
RETRY_FIRST = 0.5
#: the longest wait between retries when polling is off
RETRY_CAP = 5.0


def retry_delay(failures: int, interval: float) -> float:
    """Seconds before syncing again after ``failures`` failed syncs in a row (pure).

    0.5 s, 1 s, 2 s, ... capped at the poll interval (``RETRY_CAP`` without polling),
    so an app started after the engine is synced within one interval of coming up.
    """
    cap = interval if interval > 0 else RETRY_CAP
    return float(min(cap, RETRY_FIRST * 2 ** max(0, min(failures, 30) - 1)))


@dataclasses.dataclass(slots=True)
class _Watched:
    """What the poller knows of one app URL."""

    ok: bool | None = None  # None: never synced by us (an app that registered itself)
    failures: int = 0
    due: float = 0.0
    fingerprint: str | None = None


Sync = Callable[[str], Awaitable[SyncResult]]
Inspect = Callable[[str], Awaitable[str | None]]


class Poller:
    """Keeps a dev engine's apps synced, as Inngest's dev server does.

    A failed sync is retried with backoff (``retry_delay``); every ``interval`` seconds
    each known app is inspected (``GET``) and synced again if its answer changed (its
    function count) or it failed before. One log line and one ``report`` per change of
    state (synced / failing), never one per attempt.

    Args:
        sync: syncs one URL (``Engine.sync_url``).
        inspect: an app's inspection answer as text, None if it failed.
        urls: the URLs to watch now (``-u`` apps and the apps in the store).
        interval: seconds between polls; 0 only retries failed syncs until they succeed.
        report: told of each change of state.
    """

    def __init__(
        self,
        sync: Sync,
        inspect: Inspect,
        urls: Callable[[], Awaitable[Iterable[str]]],
        *,
        interval: float,
        report: Callable[[SyncResult], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sync, self._inspect, self._urls = sync, inspect, urls
        self.interval = interval
        self._report = report
        self._clock = clock
        self.watched: dict[str, _Watched] = {}

    def settled(self, result: SyncResult) -> None:
        """Record a sync made elsewhere (the first pass over ``-u`` apps)."""
        self._settle(self.watched.setdefault(result.url, _Watched()), result, quiet=True)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.tick()
            waits = [w.due for w in self.watched.values() if self._active(w)]
            if not waits and self.interval <= 0:
                return  # nothing failing, no polling: done
            now = self._clock()
            await asyncio.sleep(max(0.05, min(waits or [now + self.interval]) - now))

    async def tick(self) -> None:
        """Sync or inspect every app that is due."""
        for url in await self._urls():
            watched = self.watched.setdefault(url, _Watched(due=self._clock() + self.interval))
            if not self._active(watched) or self._clock() < watched.due:
                continue
            if watched.ok:
                seen = await self._inspect(url)
                changed = seen is None or seen != watched.fingerprint
                if watched.fingerprint is not None and not changed:
                    watched.due = self._clock() + self.interval
                    continue
                if watched.fingerprint is None and seen is not None:
                    watched.fingerprint = seen  # the first look: a baseline
                    watched.due = self._clock() + self.interval
                    continue
            elif watched.ok is None:
                watched.fingerprint = await self._inspect(url)
                watched.ok, watched.due = True, self._clock() + self.interval
                continue
            self._settle(watched, await self._sync(url))

    def _active(self, watched: _Watched) -> bool:
        return self.interval > 0 or watched.ok is False

    def _settle(self, watched: _Watched, result: SyncResult, *, quiet: bool = False) -> None:
        changed = watched.ok is not result.ok
        watched.ok = result.ok
        if result.ok:
            watched.failures = 0
            watched.fingerprint = None  # re-read after the sync
            watched.due = self._clock() + self.interval
            if changed and not quiet:
                logger.info("synced %s", result.url)
        else:
            watched.failures += 1
            watched.due = self._clock() + retry_delay(watched.failures, self.interval)
            if changed and not quiet:
                logger.warning("could not sync %s: %s (retrying quietly)", result.url, result.error)
        if changed and not quiet and self._report is not None:
            self._report(result)


def poller(engine: Synced, report: Callable[[SyncResult], None] | None = None) -> Poller:
    """A ``Poller`` over ``engine``'s ``-u`` apps and the apps in its store."""

    async def urls() -> list[str]:
        apps = await engine.list_apps()
        known = {a.url for a in apps if not a.url.startswith(("inprocess:", "connect:"))}
        return sorted(known | set(engine.settings.app_urls))

    async def inspect(url: str) -> str | None:
        answer = await engine.driver.request("GET", url, b"", {}, SYNC_TIMEOUT)
        if answer.error is not None or answer.status != 200:
            return None
        try:
            body = _json.loads(answer.body)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        return repr(body.get("function_count"))

    interval = engine.settings.app_poll_interval
    return Poller(engine.sync_url, inspect, urls, interval=interval, report=report)
