"""An agent's awaited work as Stepline steps, from either face of a function.

Pydantic AI is async. In an ``async def`` function the agent runs on the function's loop
and each unit of work is ``await ctx.step.run(...)``. In a plain ``def`` function the
agent runs with ``run_sync``, on a loop of the function's own thread: there the step's
bookkeeping goes through the call's execution state, as ``SyncStep.run`` does, its
persistence and publishing through the blocking face (the async transport belongs to
another loop), and the body is awaited on that loop.

``Ledger`` is what one call of the function has counted so far: the tokens its model
requests used (replayed or run), the agent runs it started, the last durable marker it
published. A call re-runs the function from its start, so each count is the same on
every replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from stepline._api import streams as _streams
from stepline._execution import step as _step
from stepline._execution import step_timeouts
from stepline._execution.call import EXECUTE, ExecutionState
from stepline._execution.context import Context, SyncContext, call_state
from stepline._execution.publish import publisher_of
from stepline._execution.step import Duration

__all__ = ["Ledger", "ledger", "publish_durable", "read_topic", "run_step", "thread_loop"]

AnyContext = Context | SyncContext


@dataclasses.dataclass(slots=True)
class Ledger:
    """What one call of a function has counted (see the module's docstring)."""

    tokens: int = 0
    runs: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the stream seq of the last durable marker: earlier attempts are read after it
    last_seq: int = 0

    def next_prefix(self, name: str) -> str:
        """The step-id prefix of the next agent run named ``name`` in this call."""
        count = self.runs.get(name, 0) + 1
        self.runs[name] = count
        return name if count == 1 else f"{name}#{count}"


_ledgers: weakref.WeakKeyDictionary[ExecutionState, Ledger] = weakref.WeakKeyDictionary()


def ledger(ctx: AnyContext) -> Ledger:
    """The ledger of ``ctx``'s call."""
    state = call_state(ctx)
    found = _ledgers.get(state)
    if found is None:
        found = _ledgers[state] = Ledger()
    return found


async def run_step(
    ctx: AnyContext,
    step_id: str,
    body: Callable[[], Awaitable[Any]],
    *,
    timeout: Duration | None,
    opts: Callable[[Any], dict[str, Any]] | None = None,
) -> Any:
    """Run ``body`` once as the step ``step_id``; replays return its recorded JSON value.

    The step is committed to the engine as soon as it completes, before any code after
    it runs, whatever the function's checkpointing (``step.commit_async``): a model
    request or a tool call, once it ran, never runs again. ``opts``, given the step's
    value, makes what goes to the engine with the step's op (what a model request used,
    the budget it is charged to).

    Raises what ``step.run`` raises: ``StepError`` for a step that failed for good, and
    the step machinery's interrupts (never catch those).
    """
    state = call_state(ctx)
    value = state.begin_run(step_id)
    if value is not EXECUTE:
        return value
    # the step tools' own resolution: ``timeout``, else the function's Timeouts(step=)
    limit = _step.time_limit(ctx.step, timeout)
    is_async = isinstance(ctx, Context)
    if is_async:
        await _step.persist_async(state)
    else:
        _step.persist_sync(state)
    with state.executing() as slot:
        slot.value = await step_timeouts.call_async(step_id, body, (), limit)
    if opts is not None:
        slot.opts = opts(slot.value)
    result = state.finish_run(slot)
    if is_async:
        await _step.commit_async(state)
    else:
        _step.commit_sync(state)
    return result


async def publish_durable(ctx: AnyContext, step_id: str, topic: str, data: object) -> int:
    """``step.publish`` on either face; the message's seq is the ledger's new bound."""
    if isinstance(ctx, Context):
        seq = await ctx.step.publish(step_id, topic=topic, data=data)
    else:
        seq = ctx.step.publish(step_id, topic=topic, data=data)
    book = ledger(ctx)
    book.last_seq = max(book.last_seq, seq)
    return seq


async def read_topic(ctx: AnyContext, topic: str, after: int) -> list[_streams.StreamMessage]:
    """Every message of ``topic`` in the run's stream after ``after`` (no waiting)."""
    connection = publisher_of(call_state(ctx)).connection
    messages: list[_streams.StreamMessage] = []
    while True:
        flow = _streams.page_flow(connection.settings, ctx.run_id, after=after, topic=topic)
        if isinstance(ctx, Context):
            page = await connection.run_async(flow)
        else:
            page = connection.run_sync(flow)
        messages.extend(page.messages)
        if not page.messages or page.next <= after:
            return messages
        after = page.next


class _LoopCloser:
    """Closes the event loop it holds when its thread ends (thread-local storage is
    dropped then), so a pool thread's loop never outlives it unclosed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __del__(self) -> None:
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()


_threads = threading.local()


def thread_loop() -> None:
    """Give this thread the event loop Pydantic AI's ``run_sync`` runs on, if it has none.

    ``run_sync`` runs on the thread's current loop, making one when there is none, and
    keeps it for the thread's next runs (an HTTP client's connections belong to it);
    nothing closes it. A plain ``def`` function runs on a thread of the SDK's pool: the
    loop made here is the thread's for its life and closed when the thread ends.
    """
    if getattr(_threads, "closer", None) is not None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.get_event_loop()
        return  # the thread has a loop of its own already (the main thread's, say)
    except RuntimeError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _threads.closer = _LoopCloser(loop)
