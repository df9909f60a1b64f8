"""One look at a run per interval, shared by every reader of its events in this process.

The web kit's events route (``_kit_events``) follows a run: its status, its steps and
its stream. A ``Feed`` does the engine's part once per run, whatever the number of
readers: it reads the run and its steps every ``poll_interval``, waits for messages with
the engine's long-poll in between, and keeps the latest ``Snapshot`` (the run, its steps
and the last page of messages it read, of every topic, each encoded once as its SSE
event). Readers join, wait for a newer snapshot and send what is new to them; a reader
behind the feed's page (it resumed from an earlier message, or was slow) reads the pages
it lacks itself. A feed stops when its last reader leaves, or once the run has ended and
its stream was read to the end.

``feed_flow`` is the polling, written once as a flow of effects. ``Feeds`` keeps the
feeds of one ``RunRoutes``: each runs on a thread for blocking readers (WSGI) or as a
task of the readers' event loop, and ``Feeds.admit`` bounds the readers of a run and of
a caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable

from stepline import _settings
from stepline._api import runs as _runs
from stepline._api import streams as _streams
from stepline._api.run_info import RunInfo, StepInfo
from stepline._transport import effects as _effects

__all__ = ["Feed", "Feeds", "Join", "Snapshot", "TooManyReaders", "Wait", "feed_flow", "sse"]

logger = logging.getLogger("stepline.web")


def sse(event: str, data: object, *, event_id: int | None = None) -> bytes:
    """One Server-Sent Event: ``id`` (when given), ``event`` and ``data`` as compact JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What a feed knows of its run; ``version`` grows by one with each change.

    Attributes:
        run: the run as last read (None until the first read).
        steps: its steps as last read.
        lo: the feed's last page holds the messages after this seq (every topic)...
        messages: ...these, in order...
        events: ...each as its SSE ``message`` event...
        hi: ...up to this seq: the feed has read every message up to here.
        done: the run has ended and every message up to ``hi`` is all there is.
        error: the engine failed the feed (it has stopped).
    """

    version: int = 0
    run: RunInfo | None = None
    steps: tuple[StepInfo, ...] = ()
    lo: int = 0
    messages: tuple[_streams.StreamMessage, ...] = ()
    events: tuple[bytes, ...] = ()
    hi: int = 0
    done: bool = False
    error: _runs.ManagementError | None = None


class Feed:
    """One run's shared look at the engine: its latest snapshot, and its readers."""

    def __init__(self, run_id: str, start: int) -> None:
        self.run_id = run_id
        self.start = start
        self.snapshot = Snapshot(lo=start, hi=start)
        self.readers = 0
        self.on_idle: Callable[[Feed], None] = lambda feed: None

    def publish(self, **changes: object) -> None:
        """A newer snapshot: ``changes`` over the last one, readers woken."""
        version = self.snapshot.version + 1
        self.snapshot = dataclasses.replace(self.snapshot, version=version, **changes)  # type: ignore[arg-type]
        self._wake()

    def leave(self) -> None:
        """A reader is gone; the last one stops the feed."""
        self.on_idle(self)

    def _wake(self) -> None:  # pragma: no cover - each face's
        raise NotImplementedError


class ThreadFeed(Feed):
    """A feed polled on its own thread, waited for by blocking readers."""

    def __init__(self, run_id: str, start: int) -> None:
        super().__init__(run_id, start)
        self._changed = threading.Condition()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait(self, version: int, timeout: float) -> Snapshot:
        """A snapshot newer than ``version``, or the same one after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self.snapshot.version != version, timeout)
        return self.snapshot


class LoopFeed(Feed):
    """A feed polled by a task of one event loop, waited for by that loop's readers."""

    def __init__(self, run_id: str, start: int) -> None:
        super().__init__(run_id, start)
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, version: int, timeout: float) -> Snapshot:
        """Async twin of ``ThreadFeed.wait``."""
        if self.snapshot.version == version:
            with contextlib.suppress(asyncio.TimeoutError):  # the builtin one only from 3.11
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.snapshot


def feed_flow(
    settings: _settings.Settings,
    feed: Feed,
    *,
    poll_interval: float,
    clock: Callable[[], float] = time.monotonic,
) -> _effects.Flow[None]:
    """Look at the run and its steps every ``poll_interval``, and at its stream in between.

    Ends once the run has ended and its stream was read to the end (``done``), or when
    the feed has no reader left.
    """
    after = feed.start
    while feed.readers > 0:
        run = yield from _runs.get_flow(settings, feed.run_id)
        steps = tuple((yield from _runs.steps_flow(settings, feed.run_id)))
        if run.status.terminal:
            while True:  # every message left: a page at a time, each one published
                page = yield from _streams.page_flow(settings, feed.run_id, after=after)
                after = _window(feed, after, page)
                if page.ended or not page.messages:
                    break
            feed.publish(run=run, steps=steps, done=True)
            return
        if (run, steps) != (feed.snapshot.run, feed.snapshot.steps):
            feed.publish(run=run, steps=steps)
        check_at = clock() + poll_interval
        while feed.readers > 0:  # messages as they come until it is time to look again
            wait = max(check_at - clock(), 0.0)
            page = yield from _streams.page_flow(settings, feed.run_id, after=after, wait=wait)
            after = _window(feed, after, page)
            if page.ended or not page.messages or clock() >= check_at:
                break


def _window(feed: Feed, after: int, page: _streams.StreamPage) -> int:
    if page.messages:
        events = tuple(sse("message", m.to_json(), event_id=m.seq) for m in page.messages)
        feed.publish(lo=after, messages=page.messages, events=events, hi=page.next)
    return page.next


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """The effect of joining the run's feed (made when it has none) from ``after``."""

    settings: _settings.Settings
    run_id: str
    after: int


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """The effect of waiting up to ``timeout`` s for a snapshot newer than ``version``."""

    feed: Feed
    version: int
    timeout: float


class TooManyReaders(Exception):
    """A reader past a bound of ``Feeds`` (the route answers 429 with this message)."""


class Ticket:
    """One admitted reader; ``release`` (idempotent) lets the next one in."""

    def __init__(self, feeds: Feeds, run_id: str, caller: str | None) -> None:
        self._feeds: Feeds | None = feeds
        self._key = (run_id, caller)

    def release(self) -> None:
        """The reader is gone (a second call does nothing)."""
        feeds, self._feeds = self._feeds, None
        if feeds is not None:
            feeds._left(*self._key)


class Feeds:
    """The feeds of one ``RunRoutes``, and the count of its readers.

    Args:
        poll_interval: how often a feed reads its run and steps (seconds).
        max_readers_per_run: the most readers one run may have here at once.
        max_readers_per_caller: the most readers one principal may hold at once.
    """

    def __init__(
        self, *, poll_interval: float, max_readers_per_run: int, max_readers_per_caller: int
    ) -> None:
        self.poll_interval = poll_interval
        self.max_readers_per_run = max_readers_per_run
        self.max_readers_per_caller = max_readers_per_caller
        self._lock = threading.Lock()
        self._threads: dict[str, ThreadFeed] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, LoopFeed]]
        self._loops = weakref.WeakKeyDictionary()
        self._runs: collections.Counter[str] = collections.Counter()
        self._callers: collections.Counter[str] = collections.Counter()

    # -- readers --------------------------------------------------------------------------

    def admit(self, run_id: str, caller: str | None) -> Ticket:
        """A ticket for one more reader of ``run_id`` by ``caller`` (None: anyone).

        Raises:
            TooManyReaders: the run, or the caller, has as many readers as allowed.
        """
        with self._lock:
            if self._runs[run_id] >= self.max_readers_per_run:
                raise TooManyReaders(
                    f"run {run_id} has {self.max_readers_per_run} event readers already, the "
                    "most one run may have at once (RunRoutes max_readers_per_run); try again "
                    "when one has left"
                )
            if caller is not None and self._callers[caller] >= self.max_readers_per_caller:
                raise TooManyReaders(
                    f"you hold {self.max_readers_per_caller} event streams already, the most "
                    "one caller may hold at once (RunRoutes max_readers_per_caller); close one "
                    "and try again"
                )
            self._runs[run_id] += 1
            if caller is not None:
                self._callers[caller] += 1
        return Ticket(self, run_id, caller)

    def readers(self, run_id: str) -> int:
        """How many readers ``run_id`` has here now."""
        with self._lock:
            return self._runs[run_id]

    def _left(self, run_id: str, caller: str | None) -> None:
        with self._lock:
            for counts, key in ((self._runs, run_id), (self._callers, caller)):
                if key is not None:
                    counts[key] -= 1
                    if counts[key] <= 0:
                        del counts[key]

    # -- blocking readers -----------------------------------------------------------------

    def perform_sync(self, effect: Join | Wait, http: Callable[[object], object]) -> object:
        """Perform a feed effect for a blocking reader; ``http`` performs the feed's I/O."""
        if isinstance(effect, Wait):
            assert isinstance(effect.feed, ThreadFeed)
            return effect.feed.wait(effect.version, effect.timeout)
        with self._lock:
            feed = self._threads.get(effect.run_id)
            fresh = feed is None
            if feed is None:
                feed = self._threads[effect.run_id] = ThreadFeed(effect.run_id, effect.after)
                feed.on_idle = self._leave_thread
            feed.readers += 1
        if fresh:
            flow = feed_flow(effect.settings, feed, poll_interval=self.poll_interval)
            thread = threading.Thread(
                target=self._run_thread, args=(feed, flow, http), name="stepline-kit-feed"
            )
            thread.daemon = True
            thread.start()
        return feed

    def _run_thread(
        self, feed: ThreadFeed, flow: _effects.Flow[None], http: Callable[[object], object]
    ) -> None:
        try:
            _effects.drive_sync(flow, http)
        except _runs.ManagementError as exc:
            feed.publish(error=exc)
        except Exception as exc:  # a reader is told, the app's log has the rest
            logger.exception("the events feed of run %s failed", feed.run_id)
            feed.publish(error=_runs.ManagementError(f"the events feed failed: {exc}"))
        finally:
            with self._lock:
                if self._threads.get(feed.run_id) is feed:
                    del self._threads[feed.run_id]

    def _leave_thread(self, feed: Feed) -> None:
        with self._lock:
            feed.readers -= 1
            # the thread sees it after its current read (a poll interval at most) and ends
            if feed.readers <= 0 and self._threads.get(feed.run_id) is feed:
                del self._threads[feed.run_id]

    # -- async readers --------------------------------------------------------------------

    async def perform_async(
        self, effect: Join | Wait, http: Callable[[object], Awaitable[object]]
    ) -> object:
        """Async twin of ``perform_sync``: the feed is a task of the reader's event loop."""
        if isinstance(effect, Wait):
            assert isinstance(effect.feed, LoopFeed)
            return await effect.feed.wait(effect.version, effect.timeout)
        loop = asyncio.get_running_loop()
        with self._lock:
            feeds = self._loops.setdefault(loop, {})
            feed = feeds.get(effect.run_id)
            if feed is None:
                feed = feeds[effect.run_id] = LoopFeed(effect.run_id, effect.after)
                feed.on_idle = self._leave_loop
                flow = feed_flow(effect.settings, feed, poll_interval=self.poll_interval)
                feed.task = loop.create_task(self._run_task(feed, feeds, flow, http))
            feed.readers += 1
        return feed

    async def _run_task(
        self,
        feed: LoopFeed,
        feeds: dict[str, LoopFeed],
        flow: _effects.Flow[None],
        http: Callable[[object], Awaitable[object]],
    ) -> None:
        try:
            await _effects.drive_async(flow, http)
        except _runs.ManagementError as exc:
            feed.publish(error=exc)
        except Exception as exc:  # a reader is told, the app's log has the rest
            logger.exception("the events feed of run %s failed", feed.run_id)
            feed.publish(error=_runs.ManagementError(f"the events feed failed: {exc}"))
        finally:
            with self._lock:
                if feeds.get(feed.run_id) is feed:
                    del feeds[feed.run_id]

    def _leave_loop(self, feed: Feed) -> None:
        assert isinstance(feed, LoopFeed)
        with self._lock:
            feed.readers -= 1
            if feed.readers > 0:
                return
            for feeds in self._loops.values():
                if feeds.get(feed.run_id) is feed:
                    del feeds[feed.run_id]
        task = feed.task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)
