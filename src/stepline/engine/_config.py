"""Engine settings, resolved once: arguments, then ``STEPLINE_*``, ``INNGEST_*``, defaults."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Literal, cast

from stepline._protocol import durations
from stepline.engine import _backoff, _keys, _users
from stepline.engine._gateway import destinations

Mode = Literal["dev", "start"]
LogFormat = Literal["text", "json"]
SqliteSynchronous = Literal["NORMAL", "FULL"]
DbPooler = Literal["none", "session", "transaction"]
DEFAULT_PORT = 8288
DEFAULT_DB = ".stepline/stepline.db"
#: how long ended runs and unreferenced events are kept (seconds): 7 days
DEFAULT_RETENTION = 7 * 86_400.0
#: the most seconds ``stepline start`` drains on a stop before it closes its listener:
#: more than haproxy's default health checks take to fail (3 checks 2 s apart)
DRAIN_DELAY_START = 10.0


class EngineConfigError(ValueError):
    """A setting the engine cannot start with."""


@dataclasses.dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything the engine needs to know, fixed at start.

    Attributes:
        mode: ``dev`` (open API, signatures optional) or ``start`` (production: a
            signing key and event keys are required; every call is signed).
        database_url: ``postgresql://...`` (several engines may share it), or SQLite:
            ``sqlite:///path``, a plain path, or ``:memory:``.
        signing_keys: the current key first, then the fallback.
        event_keys: keys accepted by ``POST /e/{key}``; empty accepts any key (dev only).
        app_urls: apps to sync at start (``-u``).
        app_poll_interval: dev mode: seconds between checks of known apps for changes
            (a failed sync is retried sooner); 0 turns polling off (``--no-poll``).
        lease_seconds: how long a worker owns a job before another may take it over.
        concurrency: jobs processed at once by this process.
        call_timeout: seconds to wait for one SDK call.
        retry_scale: multiplies retry delays (the Go table: 15 s, 30 s, 1 m, ...).
        retry_backoff: the retry delays: ``inngest`` (the Go executor's table, 15 s, 30 s,
            1 m... plus up to ``retry_jitter`` s, as on Inngest's cloud and dev server)
            or ``short`` (1 s, 2 s, 4 s, 8 s, 15 s, 30 s, then every minute, plus up to
            1 s: for local development; ``stepline dev --retry-backoff short``,
            ``STEPLINE_RETRY_BACKOFF``).
        checkpointing: send ``ctx.qi_id`` so SDKs may run several steps per call.
        migrate: bring the database schema up to date when the engine starts.
        sqlite_synchronous: SQLite's ``synchronous`` pragma (``STEPLINE_SQLITE_SYNCHRONOUS``,
            ``--sqlite-synchronous``): ``NORMAL`` (the default; in WAL mode a commit
            survives a crash of the engine process, and the WAL is synced to disk at
            checkpoints) or ``FULL`` (a commit also survives power loss: one fsync per
            group commit). Postgres ignores it (its ``synchronous_commit`` decides).
        db_pool_size: Postgres connections this process keeps (its transactions run on
            as many threads); each engine process needs its own share of the server's
            ``max_connections``.
        database_direct_url: Postgres itself, when ``database_url`` is a connection
            pooler's (``STEPLINE_DATABASE_DIRECT_URL``, ``--db-direct``): one connection
            per process ``LISTEN``s there, and migrations run there.
        db_pooler: the pool mode of a pooler in front of ``database_url``
            (``STEPLINE_DB_POOLER``, ``--db-pooler``): ``none``, ``session`` or
            ``transaction`` (no prepared statements; ``LISTEN`` and migrations only on
            ``database_direct_url``, else nodes poll and migrations are refused).
        db_schema: the schema of the engine's tables (``STEPLINE_DB_SCHEMA``,
            ``--db-schema``), set on each connection, or in each transaction behind a
            transaction pooler; None: the connection's own ``search_path``.
        dashboard_keys: more keys the dashboard's login page accepts besides the signing
            key (``STEPLINE_DASHBOARD_KEY``, comma-separated), so people need not hold it.
        dashboard_users: named dashboard keys, each with a role (``STEPLINE_DASHBOARD_KEYS``,
            comma-separated ``name:role:key``, and ``STEPLINE_DASHBOARD_KEYS_FILE``, one a
            line; ``engine._users``). The signing key and ``dashboard_keys`` sign in as
            ``admin``.
        metrics: count runs, steps, calls, queue and store work for ``GET /metrics``
            (``STEPLINE_METRICS=0`` turns it off).
        tracing: write OpenTelemetry spans with the global tracer provider (needs
            ``stepline[otel]``; ``STEPLINE_TRACING=1``).
        log_format: ``text`` or ``json`` lines, with run fields (``STEPLINE_LOG_FORMAT``).
        max_body_bytes: the largest request body the API accepts, and the most read of an
            app's answer (``STEPLINE_MAX_BODY_BYTES``); past it the read stops and the
            attempt fails.
        gateway_allow: CIDRs and host names the AI gateway may call although they are
            loopback, private, link-local or otherwise not public (``--gateway-allow``,
            ``STEPLINE_GATEWAY_ALLOW``, comma-separated); for local development and tests.
        gateway_max_calls: AI gateway steps one run may make (``--gateway-max-calls``,
            ``STEPLINE_GATEWAY_MAX_CALLS``); past it the step fails without a call.
        max_step_output_bytes: the largest step output (its JSON) stored; a larger one
            fails the run (``--max-step-output-bytes``, ``STEPLINE_MAX_STEP_OUTPUT_BYTES``).
        max_stream_message_bytes: the largest message (its data's JSON) a run may publish
            to its stream; a larger one is refused with 413
            (``--max-stream-message-bytes``, ``STEPLINE_MAX_STREAM_MESSAGE_BYTES``).
        max_stream_readers_per_run: the most readers of one run's stream at once (JSON
            long-polls and SSE alike); one more is refused with 429
            (``--max-stream-readers-per-run``, ``STEPLINE_MAX_STREAM_READERS_PER_RUN``).
        max_stream_readers_per_caller: the most stream readers one client address holds
            at once; one more is refused with 429 (``--max-stream-readers-per-caller``,
            ``STEPLINE_MAX_STREAM_READERS_PER_CALLER``).
        shutdown_grace: on a stop (SIGTERM), the most seconds calls in flight get to finish
            before they are handed back (``--shutdown-grace``, ``STEPLINE_SHUTDOWN_GRACE``).
        drain_delay: on a stop (SIGTERM) of ``stepline dev|start``, the most seconds the
            engine keeps serving with ``/ready`` answering 503 before it closes its
            listener, so a load balancer moves traffic away first; it ends sooner once no
            request but a probe has come for a second (``--drain-delay``,
            ``STEPLINE_DRAIN_DELAY``; ``DRAIN_DELAY_START`` for ``start``, 0 otherwise).
            Taken out of ``shutdown_grace``.
        retention: seconds ended runs (with their steps, links, outputs) and events no
            stored run references are kept (``--retention``, ``STEPLINE_RETENTION``: a
            duration such as ``7d`` or ``12h``; ``0``/``off`` keeps everything).
        relay_outbox: relay a ``stepline_outbox`` table in this process (``--relay-outbox``,
            ``STEPLINE_RELAY_OUTBOX``): ``self`` (this engine's database), a database URL, or
            ``django[:ALIAS]``; None relays nothing (``stepline.engine._relay``).
        bulk_batch_size: runs a bulk action handles per transaction
            (``STEPLINE_BULK_BATCH_SIZE``); bulk_pause: seconds between its batches
            (``STEPLINE_BULK_PAUSE``): how hard a bulk cancel or replay loads the engine.
        node_url: where the other engine nodes on this Postgres reach this one, to hand it
            the calls of apps whose Connect workers are connected here
            (``STEPLINE_NODE_URL``; default ``http://<host>:<port>``, the host name when
            bound to every interface).
        schema_check_interval: seconds between a running engine's reads of the schema
            version the database records; once another node has migrated it past what
            this engine knows, the engine leases no more work and ``/ready`` answers 503
            (docs/operations.md#upgrading-stepline).
    """

    mode: Mode = "dev"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database_url: str = DEFAULT_DB
    signing_keys: tuple[str, ...] = ()
    event_keys: tuple[str, ...] = ()
    app_urls: tuple[str, ...] = ()
    lease_seconds: float = 30.0
    concurrency: int = 64
    call_timeout: float = 900.0
    retry_scale: float = 1.0
    retry_jitter: float = 30.0
    retry_backoff: _backoff.BackoffName = "inngest"
    checkpointing: bool = True
    poll_interval: float = 1.0
    app_poll_interval: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    allow_public_bind: bool = False
    migrate: bool = True
    sqlite_synchronous: SqliteSynchronous = "NORMAL"
    db_pool_size: int = 10
    database_direct_url: str | None = None
    db_pooler: DbPooler = "none"
    db_schema: str | None = None
    dashboard_keys: tuple[str, ...] = ()
    dashboard_users: tuple[_users.DashboardUser, ...] = ()
    metrics: bool = True
    tracing: bool = False
    log_format: LogFormat = "text"
    gateway_allow: tuple[str, ...] = ()
    gateway_max_calls: int = 100
    max_step_output_bytes: int = 4 * 1024 * 1024
    max_stream_message_bytes: int = 1024 * 1024
    max_stream_readers_per_run: int = 32
    max_stream_readers_per_caller: int = 256
    shutdown_grace: float = 30.0
    drain_delay: float = 0.0
    retention: float = DEFAULT_RETENTION
    relay_outbox: str | None = None
    bulk_batch_size: int = 200
    bulk_pause: float = 0.05
    node_url: str | None = None
    schema_check_interval: float = 5.0
    #: internal, a test seam: the newest schema version this engine applies and accepts,
    #: set below its migrations' count to play an earlier release on today's code
    #: (tests/engine/test_schema_versions.py); None, for every real engine, knows them all
    known_schema: int | None = None

    def __post_init__(self) -> None:
        # here rather than in resolve(): settings built directly (the embedded engine in
        # production mode) must not start with a key anyone can guess either
        people = (*self.dashboard_keys, *(user.key for user in self.dashboard_users))
        problem = _keys.problem(self.signing_keys, people, self.event_keys)
        problem = problem or _users.problem(self.dashboard_users)
        if problem is not None:
            raise EngineConfigError(problem)

    @property
    def signing_key(self) -> str | None:
        """The key the engine signs calls with."""
        return self.signing_keys[0] if self.signing_keys else None

    @property
    def server_kind(self) -> str:
        """``dev`` or ``cloud``, as sent in ``X-Inngest-Server-Kind``."""
        return "dev" if self.mode == "dev" else "cloud"

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (or ``:memory:``) named by ``database_url``."""
        url = self.database_url
        for prefix in ("sqlite:///", "sqlite://", "sqlite:"):
            if url.startswith(prefix):
                return url[len(prefix) :] or ":memory:"
        return url


def _app_poll(env: Mapping[str, str]) -> float:
    """``STEPLINE_POLL_INTERVAL`` seconds (default 5), 0 when ``STEPLINE_NO_POLL`` is on."""
    if env.get("STEPLINE_NO_POLL", "").strip().lower() in _ON:
        return 0.0
    text = env.get("STEPLINE_POLL_INTERVAL", "").strip()
    try:
        value = float(text) if text else 5.0
    except ValueError:
        raise EngineConfigError(f"STEPLINE_POLL_INTERVAL: want seconds, got {text!r}") from None
    if not value >= 0:
        raise EngineConfigError(f"STEPLINE_POLL_INTERVAL: want seconds >= 0, got {text!r}")
    return value


def resolve(
    *,
    mode: Mode = "dev",
    environ: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    signing_key: str | None = None,
    signing_key_fallback: str | None = None,
    event_keys: Sequence[str] = (),
    app_urls: Sequence[str] = (),
    **overrides: object,
) -> EngineSettings:
    """Build settings; arguments win over ``STEPLINE_*``, which win over ``INNGEST_*``.

    Raises:
        EngineConfigError: production mode without keys, a public bind in dev mode
            without ``allow_public_bind``, or a malformed value.
    """
    env = os.environ if environ is None else environ

    def pick(value: str | None, name: str) -> str | None:
        return value or env.get(f"STEPLINE_{name}") or env.get(f"INNGEST_{name}") or None

    keys = tuple(
        k
        for k in (
            pick(signing_key, "SIGNING_KEY"),
            pick(signing_key_fallback, "SIGNING_KEY_FALLBACK"),
        )
        if k
    )
    events = tuple(event_keys) or tuple(
        k.strip() for k in (pick(None, "EVENT_KEY") or "").split(",") if k.strip()
    )
    db = database_url or env.get("STEPLINE_DATABASE_URL") or DEFAULT_DB
    port_text = env.get("STEPLINE_PORT")
    pool_text = env.get("STEPLINE_DB_POOL_SIZE")
    settings = EngineSettings(
        mode=mode,
        host=host or env.get("STEPLINE_HOST") or "127.0.0.1",
        port=port
        if port is not None
        else _integer("STEPLINE_PORT", port_text)
        if port_text
        else DEFAULT_PORT,
        database_url=db,
        signing_keys=keys,
        event_keys=events,
        app_urls=tuple(app_urls),
        db_pool_size=_integer("STEPLINE_DB_POOL_SIZE", pool_text) if pool_text else 10,
        sqlite_synchronous=cast(
            SqliteSynchronous,
            env.get("STEPLINE_SQLITE_SYNCHRONOUS", "").strip().upper() or "NORMAL",
        ),
        dashboard_keys=tuple(
            k.strip() for k in env.get("STEPLINE_DASHBOARD_KEY", "").split(",") if k.strip()
        ),
        dashboard_users=_dashboard_users(env),
        metrics=env.get("STEPLINE_METRICS", "").strip().lower() not in _OFF,
        tracing=env.get("STEPLINE_TRACING", "").strip().lower() in _ON,
        log_format=cast(LogFormat, env.get("STEPLINE_LOG_FORMAT", "").strip().lower() or "text"),
        app_poll_interval=_app_poll(env),
    )
    grace = env.get("STEPLINE_SHUTDOWN_GRACE", "").strip()
    if grace:
        overrides = {"shutdown_grace": _seconds("STEPLINE_SHUTDOWN_GRACE", grace), **overrides}
    drain = env.get("STEPLINE_DRAIN_DELAY", "").strip()
    drain_delay = _seconds("STEPLINE_DRAIN_DELAY", drain) if drain else None
    if drain_delay is None and mode == "start":
        drain_delay = DRAIN_DELAY_START
    if drain_delay is not None:
        overrides = {"drain_delay": drain_delay, **overrides}
    overrides = {**_answer_limits(env), **overrides}
    if env.get("STEPLINE_NODE_URL", "").strip():
        overrides = {"node_url": env["STEPLINE_NODE_URL"].strip().rstrip("/"), **overrides}
    backoff = env.get("STEPLINE_RETRY_BACKOFF", "").strip().lower()
    if backoff:
        overrides = {"retry_backoff": backoff, **overrides}
    for name, field in _POSTGRES_ENV.items():
        if env.get(name, "").strip():
            overrides = {field: env[name].strip(), **overrides}
    if env.get("STEPLINE_RELAY_OUTBOX", "").strip():
        overrides = {"relay_outbox": env["STEPLINE_RELAY_OUTBOX"].strip(), **overrides}
    if overrides:
        settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    _check(settings)
    return settings


def _dashboard_users(env: Mapping[str, str]) -> tuple[_users.DashboardUser, ...]:
    """``STEPLINE_DASHBOARD_KEYS``'s users, then those of ``STEPLINE_DASHBOARD_KEYS_FILE``."""
    try:
        found = _users.parse(
            env.get("STEPLINE_DASHBOARD_KEYS", "").split(","), "STEPLINE_DASHBOARD_KEYS"
        )
        path = env.get("STEPLINE_DASHBOARD_KEYS_FILE", "").strip()
        if path:
            try:
                with open(path, encoding="utf-8") as file:
                    lines = file.read().splitlines()
            except OSError as exc:
                raise ValueError(
                    f"STEPLINE_DASHBOARD_KEYS_FILE: cannot read {path}: {exc}"
                ) from None
            found += _users.parse(lines, path)
    except ValueError as exc:
        raise EngineConfigError(str(exc)) from None
    return found


#: Postgres connection settings read as they are written
_POSTGRES_ENV = {
    "STEPLINE_DATABASE_DIRECT_URL": "database_direct_url",
    "STEPLINE_DB_POOLER": "db_pooler",
    "STEPLINE_DB_SCHEMA": "db_schema",
}


def _answer_limits(env: Mapping[str, str]) -> dict[str, object]:
    """The gateway and answer-size settings the environment gives (defaults otherwise)."""
    found: dict[str, object] = {}
    allow = [e.strip() for e in env.get("STEPLINE_GATEWAY_ALLOW", "").split(",") if e.strip()]
    if allow:
        found["gateway_allow"] = tuple(allow)
    if env.get("STEPLINE_BULK_PAUSE", "").strip():
        found["bulk_pause"] = _seconds("STEPLINE_BULK_PAUSE", env["STEPLINE_BULK_PAUSE"].strip())
    if env.get("STEPLINE_RETENTION", "").strip():
        found["retention"] = parse_retention(env["STEPLINE_RETENTION"], "STEPLINE_RETENTION")
    for field, name in (
        ("gateway_max_calls", "STEPLINE_GATEWAY_MAX_CALLS"),
        ("max_step_output_bytes", "STEPLINE_MAX_STEP_OUTPUT_BYTES"),
        ("max_body_bytes", "STEPLINE_MAX_BODY_BYTES"),
        ("max_stream_message_bytes", "STEPLINE_MAX_STREAM_MESSAGE_BYTES"),
        ("max_stream_readers_per_run", "STEPLINE_MAX_STREAM_READERS_PER_RUN"),
        ("max_stream_readers_per_caller", "STEPLINE_MAX_STREAM_READERS_PER_CALLER"),
        ("bulk_batch_size", "STEPLINE_BULK_BATCH_SIZE"),
    ):
        text = env.get(name, "").strip()
        if text:
            found[field] = _integer(name, text)
    return found


_ON = ("1", "true", "yes", "on")
#: ``host=db dbname=x``: libpq's other connection format (only URLs choose Postgres).
_LIBPQ_KEYWORDS = re.compile(r"\s*(host|hostaddr|port|dbname|user|password|service)\s*=")
_OFF = ("0", "false", "no", "off")


def _check(settings: EngineSettings) -> None:
    if settings.mode == "start":
        if not settings.signing_keys:
            raise EngineConfigError(
                "stepline start needs a signing key: pass --signing-key or set "
                'STEPLINE_SIGNING_KEY (generate one with python -c "import secrets; '
                "print('signkey-prod-' + secrets.token_hex(32))\")"
            )
        if not settings.event_keys:
            raise EngineConfigError(
                "stepline start needs at least one event key: pass --event-key or set "
                "STEPLINE_EVENT_KEY"
            )
    if _LIBPQ_KEYWORDS.match(settings.database_url):
        raise EngineConfigError(
            "the database is given as a libpq keyword string (host=... dbname=...); give a "
            "URL instead: postgresql://user:password@host:5432/dbname"
        )
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    if settings.mode == "dev" and not loopback and not settings.allow_public_bind:
        raise EngineConfigError(
            f"stepline dev is open to anyone who can reach it and will not bind to "
            f"{settings.host}; use 127.0.0.1, run `stepline start` with keys, or pass "
            "--allow-public to accept the risk"
        )
    if not 1 <= settings.db_pool_size <= 1000:
        raise EngineConfigError(f"the pool size must be 1-1000, got {settings.db_pool_size}")
    if settings.sqlite_synchronous not in ("NORMAL", "FULL"):
        raise EngineConfigError(
            f"SQLite synchronous must be NORMAL or FULL, got {settings.sqlite_synchronous!r}"
        )
    if settings.log_format not in ("text", "json"):
        raise EngineConfigError(f"log format must be text or json, got {settings.log_format!r}")
    _check_answer_limits(settings)
    if settings.retry_backoff not in _backoff.NAMES:
        raise EngineConfigError(
            f"the retry backoff must be one of {', '.join(_backoff.NAMES)}, "
            f"got {settings.retry_backoff!r} (--retry-backoff, STEPLINE_RETRY_BACKOFF)"
        )
    if not 0 <= settings.retention < float("inf"):
        raise EngineConfigError(
            f"retention must be 0 (keep everything) or a positive number of seconds, "
            f"got {settings.retention!r}"
        )
    if not (1 <= settings.bulk_batch_size <= 10_000 and 0 <= settings.bulk_pause <= 3600):
        raise EngineConfigError("the bulk batch size must be 1-10000 and its pause 0-3600 s")
    every = settings.schema_check_interval
    if not 0 < every <= 3600:
        raise EngineConfigError(f"the schema check interval must be 0-3600 s (not 0), got {every}")
    if not 0 < settings.port < 65536:
        raise EngineConfigError(f"port must be 1-65535, got {settings.port}")


def _check_answer_limits(settings: EngineSettings) -> None:
    try:
        destinations.Policy.parse(settings.gateway_allow)
    except ValueError as exc:
        raise EngineConfigError(f"gateway allow-list: {exc}") from None
    if settings.gateway_max_calls < 0:
        raise EngineConfigError(
            f"gateway_max_calls must be 0 or more, got {settings.gateway_max_calls}"
        )
    for name in ("max_body_bytes", "max_step_output_bytes", "max_stream_message_bytes"):
        if getattr(settings, name) < 1024:
            raise EngineConfigError(f"{name} must be at least 1024, got {getattr(settings, name)}")
    for name in ("max_stream_readers_per_run", "max_stream_readers_per_caller"):
        if getattr(settings, name) < 1:
            raise EngineConfigError(f"{name} must be at least 1, got {getattr(settings, name)}")


def parse_retention(text: str, where: str = "retention") -> float:
    """Seconds from a retention setting: a duration (``7d``, ``12h``, ``2s``), ``0`` or ``off``.

    Raises:
        EngineConfigError: the text is neither a duration nor ``0``/``off``.
    """
    raw = text.strip().lower()
    if raw in (*_OFF, "0s", "never"):
        return 0.0
    try:
        seconds = durations.parse_duration(raw).total_seconds()
    except ValueError as exc:
        raise EngineConfigError(
            f"{where}: {exc}; or 0/off to keep every run and event forever"
        ) from None
    return seconds


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EngineConfigError(f"{name} must be an integer, got {text!r}") from None


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also refuses nan
        raise EngineConfigError(f"{name} must be a number of seconds >= 0, got {text!r}")
    return value
