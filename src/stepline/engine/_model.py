"""The engine's records: what the store keeps and the API shows, and the limits on the
values they hold (``YEAR``, ``storable``)."""

from __future__ import annotations

import dataclasses
import enum
import operator
import re
from collections.abc import Iterable
from typing import Any

from stepline._status import RunStatus

#: Sleeps, waits, invokes and cancel rules longer than this are cut to it (the Go server
#: rejects them).
YEAR = 365 * 86_400.0
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether a text column of every store can hold ``text`` as it is.

    Postgres refuses NUL characters in text, and a lone surrogate (which a JSON
    ``\\ud800`` escape decodes to) cannot be encoded as UTF-8 for either store. Values
    stored as JSON are escaped and need no check; ids, names and expressions do.
    """
    return _UNSTORABLE.search(text) is None


def stored_text(text: str) -> str:
    """``text`` with what no store can hold (see ``storable``) replaced by U+FFFD.

    For text from outside that is kept only to be shown (an app's error answer).
    """
    return _UNSTORABLE.sub("\ufffd", text)


class StepStatus(str, enum.Enum):
    """A step's state in the run's timeline."""

    PLANNED = "Planned"
    SLEEPING = "Sleeping"
    WAITING = "Waiting"
    INVOKING = "Invoking"
    CALLING = "Calling"
    COMPLETED = "Completed"
    FAILED = "Failed"
    #: the run ended (cancelled, failed, timed out) while the step slept, waited or ran
    CANCELLED = "Cancelled"

    # Attributes of each member, set below (read several times a step: a property
    # would be a call each time).
    #: True once the step has a memo the SDK will receive.
    done: bool
    #: True once the step will not change: done, or cut short by its run's end.
    ended: bool


_DONE = frozenset({StepStatus.COMPLETED, StepStatus.FAILED})
_ENDED = _DONE | {StepStatus.CANCELLED}
for _member in StepStatus:
    _member.done, _member.ended = _member in _DONE, _member in _ENDED


class JobKind(str, enum.Enum):
    """What a queue item asks the engine to do."""

    EXECUTE = "execute"  # call the SDK (discovery when step_id == "step", else targeted)
    WAKE = "wake"  # a sleep ended
    PAUSE_TIMEOUT = "pause_timeout"  # a wait-for-event or invoke expired
    FANOUT = "fanout"  # match a stored event against triggers, waits and cancels
    GATEWAY = "gateway"  # perform an AI gateway HTTP call for a step
    TIMEOUT = "timeout"  # a start/finish timeout of a run
    CRON = "cron"  # a cron tick of one function
    BULK = "bulk"  # the next batch of a bulk action (``_control.bulk``)


class PauseKind(str, enum.Enum):
    """What resumes when a pause matches an event."""

    WAIT = "wait"
    INVOKE = "invoke"
    CANCEL = "cancel"
    SIGNAL = "signal"  # a wait for a signal (``pauses.signal``); no event resumes it


@dataclasses.dataclass(slots=True)
class Run:
    """One execution of a function for one trigger (or one batch of triggers).

    Attributes:
        events: the trigger events in wire shape; the first is ``event``. Never changed
            in place once stored, nor ``event_ids``: code that changes them assigns new
            lists (the store writes the text it read back while a run holds those lists).
        stack: hashed step ids in completion order: the done steps by ``seq`` (``stack_of``),
            which is where the order is kept (the ``runs.stack`` column is not read).
            Filled where the run is read with its steps (``RunView.load``, ``Reads.get_run``);
            empty on a run read alone (``Tx.get_run``, ``Tx.list_runs``).
        force_plan: ``ctx.disable_immediate_execution`` for the next call.
        request_version: the SDK's ``X-Inngest-Req-Version`` (-1 until known).
        output: the final output as JSON text (the 200 body, or the error body).
        waiting: why a queued run has not started or a step has not run yet
            (``{"reason": "throttled" | "concurrency" | "debounced" | "batched" |
            "priority", ...}``), None when nothing holds it back.
        flow: what flow control fixed at the start: concurrency ``keys`` as
            ``[key, limit]`` pairs and the priority ``boost`` in seconds.
        started_by: the principal that started it through the start API (the web
            kit's caller), None when nobody in particular did (see ``stepline._api.ownership``).
        app_version: the version of its app the run started on (``appVersion`` or the
            sync's deploy id), None when the app declared none.
        notices: what the engine noticed about the run's replays (non-determinism,
            version moves), oldest first; each a JSON object with a ``kind``.
        attributes: searchable name -> value metadata (``run_attributes``; set at start
            or from inside the run), read with the run by ``Reads``; not a runs column.
    """

    run_id: str
    function_id: str
    app_id: str
    status: RunStatus
    events: list[dict[str, Any]]
    event_ids: list[str]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    output: str | None = None
    stack: list[str] = dataclasses.field(default_factory=list)
    force_plan: bool = False
    request_version: int = -1
    correlation_id: str | None = None
    parent_run_id: str | None = None
    cancel_reason: str | None = None
    origin: str | None = None
    waiting: dict[str, Any] | None = None
    flow: dict[str, Any] | None = None
    started_by: str | None = None
    app_version: str | None = None
    notices: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: searchable attributes (``run_attributes``), filled by the engine's reads only
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)

    def copy(self) -> Run:
        """A shallow copy (``dataclasses.replace`` costs several times as much)."""
        return Run(
            self.run_id, self.function_id, self.app_id, self.status, self.events,
            self.event_ids, self.created_at, self.started_at, self.ended_at, self.output,
            self.stack, self.force_plan, self.request_version, self.correlation_id,
            self.parent_run_id, self.cancel_reason, self.origin, self.waiting, self.flow,
            self.started_by, self.app_version, self.notices, self.attributes,
        )  # fmt: skip


@dataclasses.dataclass(slots=True)
class StepRecord:
    """One step of a run: pending (planned, sleeping, waiting...) or done with a memo.

    Attributes:
        step_id: the hashed step id.
        memo: what the SDK receives in ``steps[step_id]`` once done.
        mode: the parallel mode it was planned with (``wait`` or ``race``).
        wait: for waiting steps, what they wait for (event, expression, until).
    """

    run_id: str
    step_id: str
    name: str
    op: str
    status: StepStatus
    mode: str = "wait"
    memo: Any = None
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    seq: int | None = None
    error: dict[str, Any] | None = None
    wait: dict[str, Any] | None = None

    def copy(self) -> StepRecord:
        """A shallow copy (``copy.copy`` costs five times as much on a slotted class)."""
        return StepRecord(
            self.run_id, self.step_id, self.name, self.op, self.status, self.mode, self.memo,
            self.attempts, self.started_at, self.ended_at, self.seq, self.error, self.wait,
        )  # fmt: skip


def stack_of(steps: Iterable[StepRecord]) -> list[str]:
    """The hashed ids of the done ``steps`` in completion order (``Run.stack``): those with
    a ``seq``, by it. Pure; ``steps`` in stored order (``Tx.get_steps``) sort in one pass."""
    done = [s for s in steps if s.seq is not None]
    done.sort(key=_SEQ)
    return [s.step_id for s in done]


_SEQ = operator.attrgetter("seq")


@dataclasses.dataclass(slots=True)
class Job:
    """A queue item. ``job_id`` makes enqueueing idempotent."""

    job_id: str
    kind: JobKind
    available_at: float
    run_id: str | None = None
    step_id: str | None = None
    attempt: int = 0
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    lease_owner: str | None = None
    lease_expires: float | None = None
    #: the fencing token: raised by one on every lease of the job, by any owner; an
    #: answer is recorded only under the lease it was called under (``RunTransitions.apply``)
    lease_epoch: int = 0

    def copy(self) -> Job:
        """A shallow copy (``dataclasses.replace`` costs several times as much)."""
        return Job(
            self.job_id, self.kind, self.available_at, self.run_id, self.step_id,
            self.attempt, self.payload, self.lease_owner, self.lease_expires, self.lease_epoch,
        )  # fmt: skip

    @property
    def call_id(self) -> str:
        """The id a call is sent with (``ctx.qi_id``), which its checkpoints send back: the
        job and its lease epoch, so a checkpoint of a call given up is told from the
        current call's (``call_of``)."""
        return f"{self.job_id}.{self.lease_epoch}"


def call_of(call_id: str) -> tuple[str, int | None]:
    """The job id and lease epoch of a ``Job.call_id`` (None: a bare job id)."""
    job_id, dot, epoch = call_id.rpartition(".")
    if dot and epoch.isdigit():
        return job_id, int(epoch)
    return call_id, None


@dataclasses.dataclass(slots=True)
class Pause:
    """A run waiting for an event: a wait-for-event, an invoke, or a cancel-on rule.

    ``expression`` already has the run's ``event`` substituted; ``async`` is the
    candidate event. ``trigger_event_id`` keeps a run's own trigger from cancelling it.
    """

    pause_id: str
    run_id: str
    kind: PauseKind
    event_name: str
    expires_at: float
    step_id: str | None = None
    expression: str | None = None
    correlation_id: str | None = None
    trigger_event_id: str | None = None
    context: dict[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class EventRecord:
    """A received or internal event. ``payload`` is the wire shape sent to SDKs."""

    internal_id: str
    name: str
    payload: dict[str, Any]
    received_at: float

    @property
    def id(self) -> str:
        """The event's own ``id`` (the idempotency key when the sender set one)."""
        return str(self.payload.get("id") or self.internal_id)


@dataclasses.dataclass(slots=True)
class AppRecord:
    """A synced app."""

    app_id: str
    url: str
    sdk: str
    framework: str | None
    synced_at: float
    checksum: str
    error: str | None = None
    mode: str = "dev"


@dataclasses.dataclass(slots=True)
class FunctionRecord:
    """A function's registered config, as the SDK sent it."""

    function_id: str
    app_id: str
    name: str
    config: dict[str, Any]
    updated_at: float


@dataclasses.dataclass(slots=True)
class EventRunLink:
    """Which run an event started for a function, or why it started none."""

    event_id: str
    function_id: str
    run_id: str | None
    reason: str | None
    at: float
