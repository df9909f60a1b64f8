"""Engine settings, resolved once: arguments, then ``STEPLINE_*``, ``INNGEST_*``, defaults."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Literal, cast

Mode = Literal["dev", "start"]
LogFormat = Literal["text", "json"]
SqliteSynchronous = Literal["NORMAL", "FULL"]
DEFAULT_PORT = 8288
DEFAULT_DB = ".stepline/stepline.db"


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
        lease_seconds: how long a worker owns a job before another may take it over.
        concurrency: jobs processed at once by this process.
        call_timeout: seconds to wait for one SDK call.
        retry_scale: multiplies retry delays (the Go table: 15 s, 30 s, 1 m, ...).
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
        dashboard_keys: more keys the dashboard's login page accepts besides the signing
            key (``STEPLINE_DASHBOARD_KEY``, comma-separated), so people need not hold it.
        metrics: count runs, steps, calls, queue and store work for ``GET /metrics``
            (``STEPLINE_METRICS=0`` turns it off).
        tracing: write OpenTelemetry spans with the global tracer provider (needs
            ``stepline[otel]``; ``STEPLINE_TRACING=1``).
        log_format: ``text`` or ``json`` lines, with run fields (``STEPLINE_LOG_FORMAT``).
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
    checkpointing: bool = True
    poll_interval: float = 1.0
    max_body_bytes: int = 16 * 1024 * 1024
    allow_public_bind: bool = False
    migrate: bool = True
    sqlite_synchronous: SqliteSynchronous = "NORMAL"
    db_pool_size: int = 10
    dashboard_keys: tuple[str, ...] = ()
    metrics: bool = True
    tracing: bool = False
    log_format: LogFormat = "text"

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
        metrics=env.get("STEPLINE_METRICS", "").strip().lower() not in _OFF,
        tracing=env.get("STEPLINE_TRACING", "").strip().lower() in _ON,
        log_format=cast(LogFormat, env.get("STEPLINE_LOG_FORMAT", "").strip().lower() or "text"),
    )
    if overrides:
        settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    _check(settings)
    return settings


_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def _check(settings: EngineSettings) -> None:
    if settings.mode == "start":
        if not settings.signing_keys:
            raise EngineConfigError(
                "stepline start needs a signing key: pass --signing-key or set "
                "STEPLINE_SIGNING_KEY (generate one with `stepline keys`)"
            )
        if not settings.event_keys:
            raise EngineConfigError(
                "stepline start needs at least one event key: pass --event-key or set "
                "STEPLINE_EVENT_KEY"
            )
    for key in settings.signing_keys:
        body = key.split("-", 2)[-1] if key.startswith("signkey-") else key
        if len(body) % 2 or any(c not in "0123456789abcdefABCDEF" for c in body):
            raise EngineConfigError("a signing key must be hex (optionally signkey-<env>-<hex>)")
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
    if not 0 < settings.port < 65536:
        raise EngineConfigError(f"port must be 1-65535, got {settings.port}")


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise EngineConfigError(f"{name} must be an integer, got {text!r}") from None
