"""The storage contract: one ``Tx`` interface, implemented per database.

Engine logic is written once as plain functions over a ``Tx``; a store runs them
inside a transaction (``atomic``) or on a read connection (``read``). Every state
change a queue item depends on is committed in the same transaction that enqueues it.
``store_for`` opens the store a database URL names (``sql`` holds the SQL both share).

A ``Tx`` reads and writes runs, steps, events and pauses itself; every other concern is a
part of it, named at the call site: ``tx.queue`` (``queue.py``), ``tx.flow``, ``tx.apps``,
``tx.versions``, ``tx.messages``, ``tx.controls``, ``tx.attributes``, ``tx.bulk``,
``tx.signals``, ``tx.attempts``, ``tx.browsing``, ``tx.live``, ``tx.deploy_checks``,
``tx.saved_views``, ``tx.audit`` (each in the module of its name) and ``tx.metrics``
(``function_metrics.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from stepline._status import RunStatus
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Job,
    Pause,
    Run,
    StepRecord,
)

if TYPE_CHECKING:
    from stepline.engine._config import EngineSettings
    from stepline.engine._store.attempts import StepAttempt
    from stepline.engine._store.audit import AuditEntry
    from stepline.engine._store.browsing import EventScan, WaitingStep
    from stepline.engine._store.bulk import BulkAction
    from stepline.engine._store.controls import FunctionPause
    from stepline.engine._store.deploy_checks import DeployCheck
    from stepline.engine._store.function_metrics import FunctionMetrics
    from stepline.engine._store.live import FunctionLoad, LinkedRun, QueuedTick
    from stepline.engine._store.messages import NewMessage, StoredMessage
    from stepline.engine._store.saved_views import SavedView
    from stepline.engine._store.seen import Seen
    from stepline.engine._store.tokens import ModelUsage, TokenBuckets
    from stepline.engine._store.versions import AppVersion

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class RunFilter:
    """Filters of ``list_runs``; ``cursor`` is the last run id of the previous page."""

    function_id: str | None = None
    status: Sequence[RunStatus] = ()
    since: float | None = None
    until: float | None = None
    event_id: str | None = None
    cursor: str | None = None
    limit: int = 50
    #: runs started on this app version (``Run.app_version``)
    version: str | None = None
    #: runs with every one of these attributes (``run_attributes``: name -> value)
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: runs whose id starts with this (upper-case Crockford base32; a whole id finds one)
    run_id_prefix: str | None = None
    #: runs a run started with ``step.invoke`` (``Run.parent_run_id``)
    parent_run_id: str | None = None
    #: a run query's SQL condition over ``runs`` (``_store/run_query``), and its parameters
    condition: str | None = None
    condition_args: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of ``list_events``; ``cursor`` is the last internal id of the previous page."""

    name: str | None = None
    since: float | None = None
    until: float | None = None
    cursor: str | None = None
    limit: int = 50
    #: False leaves out the engine's own events (``inngest/``, ``stepline/`` names)
    internal: bool = True


class QueueTx(Protocol):
    """``Tx.queue`` (``_store/queue.py``): the job queue."""

    # ``replacing``: a job deleted first (one statement where the store can)
    def enqueue(self, job: Job, *, replacing: str | None = None) -> bool: ...
    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None:
        """A job; ``lock`` holds its row until the transaction ends (leases skip it)."""
        ...

    def update_job(self, job: Job) -> None: ...
    def delete_job(self, job_id: str) -> None: ...
    def delete_run_jobs(self, run_id: str) -> None: ...
    def lease_jobs(self, owner: str, now: float, until: float, limit: int) -> list[Job]: ...
    def lease_run_call(self, run_id: str, owner: str, now: float, until: float) -> Job | None: ...
    def lease_calls(self, run_id: str | None, owner: str, now: float, until: float) -> None:
        """Insert the calls queued from now on (``run_id``'s; None: the first call of each
        run this transaction creates) already leased when due and bound by no concurrency
        key; ``lease_run_call`` takes them."""
        ...

    def unlease_calls(self) -> None:
        """Stop ``lease_calls``; the calls it leased that no one took become due again."""
        ...

    def lease_job(self, job_id: str, owner: str, now: float, until: float) -> Job | None: ...
    def extend_leases(self, owner: str, job_ids: Sequence[str], until: float) -> None: ...
    def extend_held(self, job: Job, until: float) -> None:
        """``extend_leases`` of one call this transaction read locked and found its
        owner holding: one statement (two with concurrency keys)."""
        ...

    def next_job_at(self) -> float | None: ...
    def queue_summary(self, now: float) -> dict[str, tuple[int, float | None]]:
        """Jobs per state (due, running, parked, scheduled): count and earliest due time."""
        ...

    # a call parked on a concurrency key (or a paused function) until a slot frees
    def park_job(self, job_id: str, key: str, recheck_at: float) -> None: ...
    def unpark_jobs(self, key: str, count: int) -> list[str]: ...


class FlowTx(Protocol):
    """``Tx.flow`` (``_store/flow.py``): flow control's keys, claims and slots."""

    def get_limit(self, scope: str, key: str) -> float | None: ...
    def set_limit(self, scope: str, key: str, value: float, expires_at: float) -> None: ...
    def singleton_run(self, function_id: str, key: str) -> str | None: ...
    def set_singleton(self, function_id: str, key: str, run_id: str) -> None: ...
    def get_bucket(self, function_id: str, key: str) -> tuple[str, float] | None: ...
    def set_bucket(self, function_id: str, key: str, run_id: str, deadline: float) -> None: ...
    def release_claims(self, run_id: str) -> None: ...
    def read_ahead(self, run_ids: Sequence[str]) -> None:
        """Read which of many runs hold a claim: ``release_claims`` of the others sends
        nothing."""

    # concurrency slots: a leased call holds one slot per key until it is answered
    def acquire_slots(
        self, job_id: str, keys: Sequence[tuple[str, int]], now: float, until: float
    ) -> str | None: ...
    def release_slots(self, job_id: str) -> list[str]: ...
    def count_slots(self, key: str, now: float) -> int: ...
    def expire_slots(self, now: float) -> dict[str, int]: ...


class AppsTx(Protocol):
    """``Tx.apps`` (``_store/apps.py``): apps and their functions."""

    def put_app(self, app: AppRecord, functions: Sequence[FunctionRecord]) -> bool: ...
    def get_app(self, app_id: str) -> AppRecord | None: ...
    def list_apps(self) -> list[AppRecord]: ...
    def list_functions(self) -> list[FunctionRecord]: ...
    def set_app_error(self, url: str, error: str | None, now: float) -> None: ...


class VersionsTx(Protocol):
    """``Tx.versions`` (``_store/versions.py``): app versions and the runs started on them."""

    def lock_app_versions(self, app_id: str) -> None: ...
    def list_app_versions(self, app_id: str | None = None) -> list[AppVersion]: ...
    def put_app_version(self, version: AppVersion) -> None: ...
    def delete_app_versions(self, app_id: str, versions: Sequence[str] | None = None) -> None: ...
    def live_runs_by_version(self, app_id: str) -> dict[str, int]: ...
    def live_run_ids(self, app_id: str, version: str) -> list[str]: ...


class MessagesTx(Protocol):
    """``Tx.messages`` (``_store/messages.py``): run streams; append with the run's row read
    in this transaction."""

    def durable_seqs(self, run_id: str, durable_ids: Sequence[str]) -> dict[str, int]: ...
    def append_messages(self, run_id: str, messages: Sequence[NewMessage], now: float) -> int: ...
    def read_messages(
        self, run_id: str, after: int, topic: str | None, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]: ...


class ControlsTx(Protocol):
    """``Tx.controls`` (``_store/controls.py``): paused functions, read once per transaction."""

    def paused_functions(self) -> dict[str, FunctionPause]: ...
    def pause_function(self, pause: FunctionPause) -> None: ...
    def resume_function(self, function_id: str) -> bool: ...


class AttributesTx(Protocol):
    """``Tx.attributes`` (``_store/attributes.py``): a run's searchable attributes."""

    def set_attributes(self, run_id: str, attributes: Mapping[str, str]) -> int: ...
    def get_attributes(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]: ...
    def read_ahead(self, run_ids: Sequence[str]) -> None:
        """Read many runs' attributes at once: ``get_attributes`` answers for them."""

    def runs_with(self, name: str, value: str, *, after: str | None, limit: int) -> list[str]: ...


class BulkTx(Protocol):
    """``Tx.bulk`` (``_store/bulk.py``): bulk actions; a batch reads its action with ``lock``."""

    def insert_bulk(self, action: BulkAction) -> bool: ...
    def get_bulk(self, bulk_id: str, *, lock: bool = False) -> BulkAction | None: ...
    def bulk_by_key(self, key: str) -> BulkAction | None: ...
    def update_bulk(self, action: BulkAction) -> None: ...
    def list_bulk(self, cursor: str | None, limit: int) -> list[BulkAction]: ...
    def bulk_runs(
        self,
        *,
        function_id: str | None,
        statuses: Sequence[str],
        since: float | None,
        until: float,
        after: str | None,
        limit: int,
        attributes: Mapping[str, str] | None = None,
    ) -> list[Run]: ...


class SignalsTx(Protocol):
    """``Tx.signals`` (``_store/signals.py``): the waits for a signal, by their key."""

    def set_pause_signal(self, pause_id: str, signal: str | None) -> None: ...
    def signal_pause(self, signal: str) -> Pause | None: ...
    def approval_waits(
        self,
        *,
        function_id: str | None = None,
        app_id: str | None = None,
        after: str = "",
        limit: int = 100,
    ) -> list[tuple[str, str, str, str, str | None]]: ...


class AttemptsTx(Protocol):
    """``Tx.attempts`` (``_store/attempts.py``): every failed attempt of a step."""

    def put_attempt(self, attempt: StepAttempt) -> None: ...
    def get_attempts(self, run_id: str) -> list[StepAttempt]: ...


class MetricsTx(Protocol):
    """``Tx.metrics`` (``_store/function_metrics.py``): a function's figures over time buckets."""

    def function_metrics(
        self, function_id: str, *, since: float, bucket: float, count: int, now: float
    ) -> FunctionMetrics: ...


class BrowsingTx(Protocol):
    """``Tx.browsing`` (``_store/browsing.py``): the dashboard's lists, one query per page."""

    def waiting_steps(self, run_ids: Sequence[str]) -> list[WaitingStep]: ...
    def scan_events(
        self, where: EventFilter, match: Callable[[EventRecord], bool], scan: int, want: int
    ) -> EventScan: ...
    def set_replay_of(self, internal_id: str, original_id: str) -> None: ...
    def replays_of(self, internal_ids: Sequence[str]) -> dict[str, str]: ...
    def replayed_as(self, internal_id: str, limit: int) -> list[str]: ...


class SavedViewsTx(Protocol):
    """``tx.saved_views`` (``_store/saved_views.py``): each principal's named run queries."""

    def list_views(self, principal: str) -> list[SavedView]: ...
    def count_views(self, principal: str) -> int: ...
    def put_view(self, view: SavedView) -> None: ...
    def delete_view(self, principal: str, name: str) -> bool: ...


class LiveTx(Protocol):
    """``Tx.live`` (``_store/live.py``): the event stream, the queue's counts, cron ticks."""

    def stream_events(
        self, after: tuple[float, str], *, internal: bool, name: str | None, limit: int
    ) -> list[EventRecord]: ...
    def started_runs(
        self, event_ids: Sequence[str], per_event: int
    ) -> dict[str, list[LinkedRun]]: ...
    def function_load(self, now: float, lease_seconds: float) -> dict[str, FunctionLoad]: ...
    def held_slots(self, now: float) -> dict[str, int]: ...
    def parked_calls(self) -> dict[str, int]: ...
    def cron_ticks(self) -> list[QueuedTick]: ...


class TokensTx(Protocol):
    """``tx.tokens``: what model requests used, and token budgets' counts (``tokens.py``)."""

    def record_usage(self, usage: ModelUsage) -> bool: ...
    def charge(self, budget: str, key: str, window: tuple[float, float], tokens: int) -> None: ...
    def budget_used(self, budget: str, key: str, window_start: float) -> int: ...
    def run_usage(self, run_id: str) -> list[ModelUsage]: ...
    def function_usage(
        self, function_id: str, *, since: float, bucket: float, count: int
    ) -> TokenBuckets: ...


class DeployChecksTx(Protocol):
    """``tx.deploy_checks`` (``_store/deploy_checks.py``): deploy-check reports CI uploads."""

    def put_check(self, check: DeployCheck, *, keep: int = ...) -> None: ...
    def list_checks(self, app_id: str | None, limit: int) -> list[DeployCheck]: ...


class AuditTx(Protocol):
    """``tx.audit`` (``_store/audit.py``): the audit log."""

    def record(self, entry: AuditEntry) -> None: ...
    def entries(
        self, *, before: str | None, principal: str | None, limit: int
    ) -> list[AuditEntry]: ...


class Tx(Protocol):
    """Reads and writes inside one transaction (or one read snapshot).

    The operations on runs, steps, pauses and events are the transaction's own; each
    other concern's are on a part of it, named at the call site (``tx.queue.enqueue``),
    whose Protocol is above and whose SQL is in the ``_store`` module of the same name.
    """

    #: ids of the jobs this transaction queued or made due again ("*" for unknown ones)
    queued: list[str]
    #: of those, the jobs this node leased itself in the same transaction (no other node
    #: needs waking for them)
    claimed: set[str]
    #: the runs this transaction ended, as they ended (callers waiting for them are
    #: answered from these once it commits, without reading them back)
    ended_runs: list[Run]
    #: notes what a write transaction does to runs and steps, when an observer set it
    seen: Seen | None

    @property
    def queue(self) -> QueueTx: ...
    @property
    def flow(self) -> FlowTx: ...
    @property
    def apps(self) -> AppsTx: ...
    @property
    def versions(self) -> VersionsTx: ...
    @property
    def messages(self) -> MessagesTx: ...
    @property
    def controls(self) -> ControlsTx: ...
    @property
    def attributes(self) -> AttributesTx: ...
    @property
    def bulk(self) -> BulkTx: ...
    @property
    def signals(self) -> SignalsTx: ...
    @property
    def attempts(self) -> AttemptsTx: ...
    @property
    def metrics(self) -> MetricsTx: ...
    @property
    def browsing(self) -> BrowsingTx: ...
    @property
    def live(self) -> LiveTx: ...
    @property
    def tokens(self) -> TokensTx: ...
    @property
    def deploy_checks(self) -> DeployChecksTx: ...
    @property
    def audit(self) -> AuditTx: ...
    @property
    def saved_views(self) -> SavedViewsTx: ...

    # runs and steps
    def get_run(self, run_id: str) -> Run | None: ...
    def ended(self, run_ids: Sequence[str]) -> list[str]: ...
    def insert_run(self, run: Run) -> bool: ...
    # ``step``: one of its steps written too (``put_step``), in one statement where it can
    def update_run(self, run: Run, step: StepRecord | None = None) -> None: ...
    def list_runs(self, where: RunFilter) -> list[Run]: ...
    def get_steps(self, run_id: str) -> list[StepRecord]: ...
    # one more each time any step of the run is written (None: the run was not read)
    def steps_revision(self, run_id: str) -> int | None: ...
    def get_step(self, run_id: str, step_id: str) -> StepRecord | None: ...
    # whether a step of the run other than ``but`` has not ended (its rows left undecoded)
    def pending_step(self, run_id: str, but: str) -> bool: ...
    # how many of the run's steps are done (the next ``seq``), and their ids in that order
    def done_steps(self, run_id: str) -> int: ...
    def stack(self, run_id: str) -> list[str]: ...
    # what holds a run back (flow control, a paused function), on its row
    def set_waiting(self, run_id: str, waiting: dict[str, Any] | None) -> None: ...
    def put_step(self, step: StepRecord) -> None: ...
    def put_steps(self, steps: Sequence[StepRecord]) -> None: ...  # put_step of each, batched
    def get_call(self, job_id: str) -> Job | None:
        """``queue.get_job(lock=True)`` of a call, reading its run's row in the same
        statement."""
        ...

    def may_answer_from_kept_rows(self) -> None:
        """Say that this unit has done nothing outside the transaction yet and will do
        nothing there before its writes: a store that kept the call and its run as its
        last transaction left them may run the unit on those (Postgres: ``pg_fence``),
        and run it again in a transaction if they turn out stale."""
        ...

    def lock_runs(self, run_ids: Sequence[str]) -> None:
        """Read and lock many runs' rows and read their steps, a statement or two for a
        batch: ``get_run`` and ``get_steps`` of each then send nothing."""

    # pauses
    def insert_pause(self, pause: Pause) -> None: ...
    def get_pause(self, pause_id: str) -> Pause | None: ...
    def delete_pause(self, pause_id: str) -> bool: ...
    def note_event_names(self, names: Collection[str]) -> None:
        """Read at once which of ``names`` a wait listens for: ``pauses_for_event`` answers
        the others with no query (a batch of events asks once). The same statement
        reads whether any function is paused (``controls.paused_functions`` then sends
        nothing when none is)."""

    def pauses_for_event(self, event_name: str) -> list[Pause]: ...
    def pauses_for_correlation(self, correlation_id: str) -> list[Pause]: ...
    def run_pauses(self, run_id: str) -> list[Pause]: ...
    def delete_run_pauses(self, run_id: str) -> None: ...
    def close_run(self, run_id: str, event_names: Collection[str]) -> dict[str, str]:
        """Delete an ended run's jobs, waits, singletons and buckets; return its
        attributes (for its waiters). ``event_names``, the events its end emits, may be
        noted as for ``note_event_names`` (Postgres: all of it in one statement)."""
        ...

    def holds_nothing(self, run_id: str) -> bool:
        """Whether this transaction knows ``run_id`` holds no wait, singleton or bucket:
        it created the run and wrote none for it, or read that it holds none."""
        ...

    def note_holds_nothing(self, run_id: str) -> None:
        """The caller knows ``run_id`` holds no wait, singleton or bucket (``close_run``
        deletes none). Such rows are written only as a run starts, and by the answers
        and wake-ups of its own calls: a transaction found the run holding none, and
        the caller has held the run's only call since."""
        ...

    # events
    def insert_event(self, event: EventRecord) -> bool: ...
    def insert_minted_event(self, event: EventRecord) -> None:
        """Store an event whose internal id was made just now (``_events.internal``): no
        other has it, so nobody reads the insert's answer (``SqlTx.write``)."""
        ...

    def insert_events(self, events: Sequence[EventRecord]) -> set[str]:
        """Store each event once; the internal ids of those stored now (not seen before)."""
        ...

    def get_event(self, event_id: str) -> EventRecord | None: ...
    def list_events(self, where: EventFilter) -> list[EventRecord]: ...
    def link_event(self, link: EventRunLink) -> None: ...
    def update_link(self, event_id: str, run_id: str, reason: str | None) -> None: ...
    def event_links(self, internal_id: str) -> list[EventRunLink]: ...
    def run_for_event_id(self, function_id: str, event_id: str) -> str | None:
        """The newest run of a function started by an event whose own ``id`` is this."""
        ...

    # idempotency keys: one claim per key until it expires
    def claim_key(self, scope: str, key: str, expires_at: float, now: float) -> bool: ...


class Store(Protocol):
    """A database the engine runs on."""

    async def open(self) -> None:
        """Create the schema if needed and open connections."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...

    async def migrate(self) -> tuple[int, int]:
        """Bring the schema up to date; returns ``(version before, version after)``."""
        ...

    async def atomic(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        """Run ``work`` in one write transaction; commit if it returns, roll back if it raises.

        ``small``: a transaction of a few rows (a run's start, a call's answer), which a
        store may run on the calling loop's thread rather than hand it to another.
        """
        ...

    def atomic_blocking(self, work: Callable[[Tx], T]) -> T:
        """``atomic`` from a thread that may block (never the event loop's)."""
        ...

    async def read(self, work: Callable[[Tx], T], *, small: bool = False) -> T:
        """Run ``work`` on a read-only snapshot; ``small``: a lookup by key, which a store
        may run on the calling loop's thread."""
        ...

    def read_blocking(self, work: Callable[[Tx], T]) -> T:
        """``read`` from a thread that may block (never the event loop's)."""
        ...

    def subscribe(self, notify: Callable[[str], None]) -> None:
        """Call ``notify("jobs" | "apps")`` when another process commits queued work or an app.

        Called from any thread. Stores without notifications do nothing (engines poll).
        """
        ...

    def subscribe_streams(self, notify: Callable[[str], None]) -> None:
        """Call ``notify(run_id)`` when another process publishes to a run's stream.

        ``"*"`` means any run (notifications were lost for a while). Called from any
        thread; stores without notifications do nothing (readers poll).
        """
        ...


def store_for(settings: EngineSettings) -> Store:
    """The store ``settings.database_url`` names: Postgres for ``postgres(ql)://``, else SQLite."""
    from stepline.engine._config import EngineConfigError

    url = settings.database_url
    if is_postgres(url):
        try:
            from stepline.engine._store.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineConfigError(
                "a postgres:// database needs psycopg: pip install 'stepline[postgres]'"
            ) from exc
        from stepline.engine._store import pooler

        connections = pooler.Connections(
            url, settings.database_direct_url, settings.db_pooler, settings.db_schema
        )
        problem = pooler.problem(connections, migrate=settings.migrate)
        if problem is not None:
            raise EngineConfigError(problem)
        return PostgresStore(
            url,
            pool_size=settings.db_pool_size,
            migrate=settings.migrate,
            known_schema=settings.known_schema,
            direct_url=settings.database_direct_url,
            pooler=settings.db_pooler,
            db_schema=settings.db_schema,
        )
    from stepline.engine._store.sqlite import SqliteStore

    return SqliteStore(
        settings.sqlite_path,
        synchronous=settings.sqlite_synchronous,
        known_schema=settings.known_schema,
    )


def is_postgres(url: str) -> bool:
    """Whether a database URL names Postgres (else SQLite)."""
    return url.startswith(("postgres://", "postgresql://"))


def known_schema(settings: EngineSettings) -> int:
    """The newest schema version an engine with these settings applies and accepts."""
    from stepline.engine._store import postgres_schema, schema_version, sqlite_schema

    url = settings.database_url
    migrations = postgres_schema.MIGRATIONS if is_postgres(url) else sqlite_schema.MIGRATIONS
    return schema_version.newest(len(migrations), settings.known_schema)
