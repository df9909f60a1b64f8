"""``TestEnv`` and ``TestRun``: a whole engine in the test process, on a virtual clock.

Each blocking method is the twin of the async method above it: one call into the engine's
loop (``EngineHost.call_sync`` / ``EngineHost.call``) of the same coroutine.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from stepline import _errors
from stepline._api.management import function_id
from stepline._api.runs import (
    FunctionNotFoundError,
    ManagementError,
    RunNotStartedError,
    RunTimeoutError,
    not_registered_message,
)
from stepline._api.streams import StreamMessage
from stepline._client import Client
from stepline._definition.function import Function
from stepline._endpoints import registry as _endpoints
from stepline._event import Event
from stepline._replay.journal import Journal
from stepline._replay.playback import Playback, Player
from stepline.engine import Engine, EngineSettings, NotFoundError
from stepline.engine._errors import EndpointOnlyError, SkippedError
from stepline.engine._model import Run
from stepline.engine._runs.journal import journal_of
from stepline.engine._store import RunFilter
from stepline.testing._clock import VirtualClock
from stepline.testing._host import EngineHost
from stepline.testing._mailbox import Mailbox
from stepline.testing._mocks import UNSET, CallLog, StepCall, StepMock
from stepline.testing._run import Runner, TestRun
from stepline.testing._steps import instrument
from stepline.testing._timekeeper import Timekeeper

T = TypeVar("T")
SyncFunctions = Literal["pool", "caller"]


class TestEnv:
    """An engine for tests: in-process, in-memory, on a virtual clock.

    ``with TestEnv(...)`` runs the engine on a thread of its own (sync tests, Django,
    Flask and FastAPI test clients); ``async with TestEnv(...)`` runs it on the test's
    event loop, so async functions share that loop. While it is open, the app's
    ``client`` talks to it: ``client.send``/``client.start`` in the app's own routes reach
    this engine. Every method has a blocking twin ending in ``_sync``.

    Args:
        client: the app's client.
        functions: the functions to serve.
        auto_skip: while a test waits for a run's result (``TestRun.result``, or the
            client's ``handle.result()`` in the test or in the app's routes), jump the
            clock to the engine's next timer whenever nothing else can happen (sleeps,
            waits, debounce, batching, retry backoff, crons...). Without it, time moves
            only by ``advance``.
        start: the virtual time to start at (default: the real time now).
        database: the engine's database: SQLite ``:memory:`` (default) or a file path.
        sync_functions: where plain ``def`` functions run: ``"pool"`` (the SDK's thread
            pool, as in production) or ``"caller"`` (the thread blocked in a ``*_sync``
            method of this env, so they see its thread-local state, e.g. a Django
            ``TestCase`` transaction; sync tests only).
        timeout: real seconds any one call may wait for the engine.
        engine_settings: more ``EngineSettings`` fields (``retry_jitter=0``...);
            ``retention`` is off unless given here.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        client: Client,
        functions: Sequence[Function],
        *,
        auto_skip: bool = True,
        start: _dt.datetime | None = None,
        database: str = ":memory:",
        sync_functions: SyncFunctions = "pool",
        timeout: float = 30.0,
        **engine_settings: Any,
    ) -> None:
        if sync_functions not in ("pool", "caller"):
            raise _errors.ConfigError(
                f"sync_functions must be 'pool' or 'caller', not {sync_functions!r}"
            )
        self.client = client
        # the client's durable endpoints are served (and run inline) with their copies
        endpoints = [fn for fn in _endpoints.declared(client) if fn not in functions]
        self.functions = [*functions, *endpoints]
        self.auto_skip = auto_skip
        self.timeout = timeout
        self._clock = VirtualClock(None if start is None else start.timestamp())
        self._log = CallLog()
        self._mailbox = Mailbox() if sync_functions == "caller" else None
        settings = EngineSettings(
            database_url=database,
            signing_keys=client.settings.signing_keys,
            # time jumps by days here: no run vanishes under a test unless it asks for it
            **{"retention": 0.0, **engine_settings},
        )
        now = self._clock.utcnow
        served = [instrument(fn, self._log, now, self._mailbox) for fn in self.functions]
        # inline in a request's thread: never handed to the mailbox's waiting thread
        inline = {fn.composite_id: instrument(fn, self._log, now, None) for fn in endpoints}
        self._host = EngineHost(
            client, served, settings, self._clock, self._mailbox, inline=inline, poll=self._polled
        )
        self._runner = Runner(
            host=self._host, finish=self._finish, bound=self._bounded, settle=self._settle
        )
        self._threaded = False

    def __repr__(self) -> str:
        return f"<stepline.testing.TestEnv {self.client.app_id!r} at {self.now.isoformat()}>"

    # -- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> TestEnv:
        self._host.open_thread(self.timeout)
        self._threaded = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine and give the client back its own engine settings."""
        if self._threaded:
            self._threaded = False
            self._host.close_thread(self.timeout)
        elif self._host.is_open:
            self._call_sync(self._host.close)

    async def __aenter__(self) -> TestEnv:
        if self._mailbox is not None:
            raise _errors.ConfigError(
                "sync_functions='caller' needs a thread blocked in the env: use `with TestEnv`"
            )
        await self._host.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Async twin of ``close``."""
        if self._threaded:
            await asyncio.get_running_loop().run_in_executor(None, self.close)
        elif self._host.is_open:
            await self._call(self._host.close)

    # -- what tests use -------------------------------------------------------------------

    @property
    def now(self) -> _dt.datetime:
        """The engine's current (virtual) time, aware UTC."""
        return self._clock.utcnow()

    @property
    def engine(self) -> Engine:
        """The ``stepline.engine.Engine`` itself (its methods run on its own loop)."""
        return self._host.engine

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send events to the engine, as ``client.send`` would; returns their ids."""
        return await self._call(functools.partial(self._send, events))

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        """Blocking twin of ``send``."""
        return self._call_sync(functools.partial(self._send, events))

    async def start(
        self, function: Function | str, data: Mapping[str, Any] | None = None
    ) -> TestRun:
        """Start a run of ``function`` now, whatever its triggers.

        Raises:
            FunctionNotFoundError: the function is not served by this env.
            RunNotStartedError: flow control turned the start away (rate limit, singleton).
        """
        return TestRun(
            self._runner, await self._call(functools.partial(self._start, function, data))
        )

    def start_sync(
        self, function: Function | str, data: Mapping[str, Any] | None = None
    ) -> TestRun:
        """Blocking twin of ``start``."""
        return TestRun(
            self._runner, self._call_sync(functools.partial(self._start, function, data))
        )

    def get_run(self, run_id: str) -> TestRun:
        """A run by id (for instance one that the app's own route started)."""
        return TestRun(self._runner, run_id)

    async def runs(self, function: Function | str | None = None) -> list[TestRun]:
        """Every run so far (of ``function``, if given), oldest first.

        Runs created at the same virtual instant come in no particular order.
        """
        return await self._call(functools.partial(self._runs, function))

    def runs_sync(self, function: Function | str | None = None) -> list[TestRun]:
        """Blocking twin of ``runs``."""
        return self._call_sync(functools.partial(self._runs, function))

    async def stream(self, run_id: str, topic: str | None = None) -> list[StreamMessage]:
        """What run ``run_id`` published (on ``topic``), once it is idle: ``TestRun.stream``."""
        return await self.get_run(run_id).stream(topic)

    def stream_sync(self, run_id: str, topic: str | None = None) -> list[StreamMessage]:
        """Blocking twin of ``stream``."""
        return self.get_run(run_id).stream_sync(topic)

    async def advance(self, by: _dt.timedelta | float) -> None:
        """Move the clock forward (a timedelta or seconds), running everything due on the way.

        Returns once nothing more can happen without time moving again.
        """
        await self._call(functools.partial(self._advance, by))

    def advance_sync(self, by: _dt.timedelta | float) -> None:
        """Blocking twin of ``advance``."""
        self._call_sync(functools.partial(self._advance, by))

    async def settle(self) -> None:
        """Wait until nothing more can happen without time moving (time does not move)."""
        await self._call(self._settle)

    def settle_sync(self) -> None:
        """Blocking twin of ``settle``."""
        self._call_sync(self._settle)

    async def export(self, run: TestRun | str) -> Journal:
        """The run's journal, as ``stepline runs export`` writes it: replay it with ``replay``
        (here or in another env, against changed code), or save ``to_json()`` beside a test."""
        run_id = run if isinstance(run, str) else run.run_id
        return await self._call(functools.partial(self._export, run_id))

    def export_sync(self, run: TestRun | str) -> Journal:
        """Blocking twin of ``export``."""
        run_id = run if isinstance(run, str) else run.run_id
        return self._call_sync(functools.partial(self._export, run_id))

    async def _export(self, run_id: str) -> Journal:
        run, steps, _due = await self.engine.run_retries(run_id)
        return journal_of(run, steps, exported_at=self._clock.now())

    async def replay(
        self,
        journal: Journal | Mapping[str, Any] | str | os.PathLike[str],
        *,
        outputs: Mapping[str, Any] | None = None,
    ) -> Playback:
        """Play a recorded run back against this env's functions: any run as a test.

        ``journal`` is what ``stepline runs export RUN_ID`` wrote (a path, its JSON, or a
        ``Journal``). Every step the code reaches is answered from the record (its code
        never runs), on the record's clock, with the network refused; playback stops at
        the first difference from the record (``Playback.difference``;
        ``assert_same()`` raises it). ``outputs`` answers the steps exported without
        their outputs (``--drop-output``), by step name.
        """
        player = Player(self.client, self.functions)
        return await player.play(Journal.load(journal), outputs)

    def replay_sync(
        self,
        journal: Journal | Mapping[str, Any] | str | os.PathLike[str],
        *,
        outputs: Mapping[str, Any] | None = None,
    ) -> Playback:
        """``replay`` from a sync test."""
        player = Player(self.client, self.functions)
        return player.play_sync(Journal.load(journal), outputs)

    def mock_step(
        self,
        function: Function | str,
        step: str,
        *,
        returns: Any = UNSET,
        raises: BaseException | type[BaseException] | None = None,
        handler: Callable[..., Any] | None = None,
    ) -> StepMock:
        """Replace a step of a function for this env: give exactly one of the keywords.

        Applies to ``step.run`` (``handler`` gets the step's arguments), ``send_event``,
        ``invoke`` (``handler`` gets the data) and ``wait_for_event`` (return an ``Event``
        or None). The replacement's output is memoized as the step's output, so later
        steps (and replays) see it; a raised error fails the step as the code's would.

        Args:
            function: the function, or its id.
            step: the step id the function's code uses.
            returns: the value the step returns.
            raises: an exception (class or instance) the step raises.
            handler: a callable replacing the step's own (sync, or async in async functions).
        """
        mock = StepMock(
            self._log,
            function_id(self.client.app_id, function),
            step,
            returns=returns,
            raises=raises,
            handler=handler,
        )
        self._log.add_mock(mock)
        return mock

    def step_calls(
        self, function: Function | str | None = None, step: str | None = None
    ) -> list[StepCall]:
        """The steps whose code (or mock) ran so far, in order, optionally filtered.

        Replays of memoized steps are not calls: a step that ran once is listed once
        however many times the function was called afterwards.
        """
        fid = None if function is None else function_id(self.client.app_id, function)
        return self._log.calls(fid, step)

    # -- on the engine's loop -----------------------------------------------------------------

    def _keeper(self) -> Timekeeper:
        return Timekeeper(self._host.engine, self._clock)

    async def _send(self, events: Event | Sequence[Event]) -> list[str]:
        items = [events] if isinstance(events, Event) else list(events)
        return await self.engine.send([event.to_wire() for event in items])

    async def _start(self, function: Function | str, data: Mapping[str, Any] | None) -> str:
        try:
            run_id, _ = await self.engine.start_function(
                function_id(self.client.app_id, function), dict(data or {})
            )
        except NotFoundError:
            fid = function_id(self.client.app_id, function)
            message = not_registered_message(fid, "this TestEnv's engine")
            raise FunctionNotFoundError(message, status=404) from None
        except SkippedError as exc:
            raise RunNotStartedError(str(exc), status=409) from None
        except EndpointOnlyError as exc:  # as the start API answers it
            raise ManagementError(str(exc), status=400) from None
        return run_id

    async def _runs(self, function: Function | str | None) -> list[TestRun]:
        fid = None if function is None else function_id(self.client.app_id, function)
        found: list[Run] = []
        cursor: str | None = None
        while True:
            page = await self.engine.list_runs(RunFilter(function_id=fid, cursor=cursor, limit=200))
            found.extend(page)
            if len(page) < 200:
                break
            cursor = page[-1].run_id
        return [TestRun(self._runner, run.run_id) for run in reversed(found)]

    async def _polled(self, run_id: str, seconds: float) -> None:
        """A client's long poll of a run (``handle.result()``, from the test or the app's
        own routes) skips time as ``TestRun.result`` does, under ``auto_skip``."""
        if self.auto_skip:
            await self._keeper().skip_for(run_id, seconds)

    async def _finish(self, run_id: str) -> Run:
        return await self._keeper().finish(run_id, auto_skip=self.auto_skip)

    async def _advance(self, by: _dt.timedelta | float) -> None:
        seconds = by.total_seconds() if isinstance(by, _dt.timedelta) else float(by)
        await self._bounded(self._keeper().advance(seconds), "advance: the engine was still busy")

    async def _settle(self) -> None:
        await self._bounded(self._keeper().settle(), "settle: the engine was still busy")

    async def _bounded(self, work: Awaitable[T], what: str, timeout: float | None = None) -> T:
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(work, limit)
        except asyncio.TimeoutError:
            waiting = self._mailbox.pending if self._mailbox is not None else 0
            hint = (
                f"; {waiting} sync function call(s) wait for a thread blocked in a *_sync method"
                if waiting
                else ""
            )
            raise RunTimeoutError(f"{what} after {limit:g}s of real time{hint}") from None

    def _call_sync(self, make: Callable[[], Awaitable[T]]) -> T:
        return self._host.call_sync(make)

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        return await self._host.call(make)
