"""What the HTTP benchmarks share: the bench function, engine and app processes, CPU use.

The engine and the app run as processes of their own, talking real HTTP over loopback:

* ``python bench/_servers.py engine PORT DB CHECKPOINTING``: the engine as ``stepline
  dev`` builds it (``resolve`` in dev mode, ``Engine``, its API under uvicorn with
  lifespan), with one setting the command line has no flag for: ``checkpointing``.
* ``python bench/_servers.py app PORT ENGINE_URL CHECKPOINTING``: the app, the
  ``ten`` function served by ``stepline.asgi.serve`` under uvicorn, its client pointed at
  the engine.

``register(app_url)`` then asks the app to register with the engine (the PUT an engine
or ``-u`` sends). ``python -m stepline.engine dev`` itself is used where no setting needs
changing (latency and ingest).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

import stepline

APP_ID = "bench"
EVENT = "bench/ten"
STEPS = 10
SERVE_PATH = "/api/inngest"
#: The Postgres the multi-node benchmarks use (``engine_nodes.py``, ``load_bench.py``).
POSTGRES_URL = os.environ.get(
    "STEPLINE_BENCH_POSTGRES_URL",
    os.environ.get("STEPLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)


def postgres_problem() -> str | None:
    """Why the Postgres at ``POSTGRES_URL`` cannot be used here (its first error line,
    with the URL's host part), or None."""
    where = POSTGRES_URL.split("@")[-1]
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'stepline[postgres]')"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no Postgres at {where}: {first}"


def _step(i: int) -> Callable[[], dict[str, int]]:
    return lambda: {"i": i}


STEP_FNS = [_step(i) for i in range(STEPS)]


def ten_steps(client: stepline.Client, fn_id: str = "ten") -> stepline.Function:
    """The bench function: ``STEPS`` trivial steps, each returning ``{"i": i}``.

    It returns the run's ``event.data["k"]``, so the driver can check each run's output.
    """

    @client.function(id=fn_id, trigger=stepline.TriggerEvent(event=EVENT), retries=0)
    def ten(ctx: stepline.SyncContext) -> object:
        for i in range(STEPS):
            ctx.step.run(f"s{i}", STEP_FNS[i])
        return ctx.event.data.get("k")

    return ten


def remove_db(path: str | Path) -> None:
    """Delete a SQLite file and its WAL/SHM/journal companions."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment without ``STEPLINE_*``/``INNGEST_*`` settings, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def processes(
    commands: Sequence[tuple[str, list[str], str]], logdir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``(name, argv, health URL)`` processes together; yield once every URL answers.

    Each process logs to ``logdir/<name>.log``; they get SIGTERM (then SIGKILL) at the end.
    """
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for name, argv, _url in commands:
            log = logdir / f"{name}.log"
            logs.append(log)
            with log.open("ab") as out:
                procs.append(
                    subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child_env())
                )
        for proc, log, (_name, _argv, url) in zip(procs, logs, commands, strict=True):
            wait_http(url, proc, log)
        try:
            yield procs
        except BaseException:
            for log in logs:  # what the processes said, before their files go away
                text = log.read_text(errors="replace").strip()
                if text:
                    tail = "\n".join(text.splitlines()[-40:])
                    print(f"--- {log.name} (last lines)\n{tail}", file=sys.stderr, flush=True)
            raise
    finally:
        stop_processes(procs, timeout=20)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every process still running, then wait ``timeout`` s for each (else SIGKILL)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(
    base: str, proc: subprocess.Popen[bytes], log: Path, *, who: str, timeout: float
) -> None:
    """Wait until an engine node's ``/health`` answers 200; exit if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{who}: a node exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    sys.exit(f"{who}: {base} never became healthy")


@contextlib.contextmanager
def fresh_schema(prefix: str, extra: str = "") -> Iterator[str]:
    """A ``POSTGRES_URL`` whose search_path is a new schema (dropped afterwards, whatever
    happens); ``extra`` is appended to the URL's query."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            sep = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{name}{extra}"
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def db_row(db: str | Path, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The first row of a read (``?`` placeholders) on a SQLite file or a Postgres URL."""
    if str(db).startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            row = conn.execute(sql.replace("?", "%s"), args).fetchone()
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as lite:
            row = lite.execute(sql, args).fetchone()
    return tuple(row) if row else ()


@contextlib.contextmanager
def database(postgres: bool, tmp: Path, name: str) -> Iterator[str]:
    """A fresh database for one engine: a Postgres schema (dropped afterwards), or a new
    SQLite file ``tmp/name.db``."""
    if postgres:
        with fresh_schema(name) as url:
            yield url
    else:
        remove_db(tmp / f"{name}.db")
        yield str(tmp / f"{name}.db")


def serve_node(
    port: int, db: str, build: Callable[[], tuple[stepline.Client, Sequence[stepline.Function]]]
) -> None:
    """One engine node: ``Engine`` (worker, heartbeat) serving ``build()``'s app in process,
    its API under uvicorn on ``port``."""
    import asyncio

    import uvicorn

    from stepline.engine import Engine, EngineSettings
    from stepline.engine._http.api import build_app as build_api

    async def serve() -> None:
        settings = EngineSettings(port=port, database_url=db, retry_jitter=0.0)
        engine = Engine(settings)
        await engine.start(sync=False)  # the API's lifespan start is then a no-op
        client, functions = build()
        await engine.serve(client, functions)
        config = uvicorn.Config(build_api(engine), host="127.0.0.1", port=port, log_level="warning")
        await uvicorn.Server(config).serve()

    asyncio.run(serve())


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {log.stem} exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.05)
    sys.exit(f"bench: {url} never answered")


def engine_command(
    port: int, db: str, *, checkpointing: bool = True, synchronous: str = "NORMAL"
) -> list[str]:
    return [
        sys.executable, __file__, "engine", str(port), db, str(int(checkpointing)), synchronous
    ]  # fmt: skip


def cli_engine_command(port: int, db: str, *extra: str) -> list[str]:
    """The real command line: ``python -m stepline.engine dev --port P --db DB``."""
    return [sys.executable, "-m", "stepline.engine", "dev", "--port", str(port), "--db", db, *extra]


def app_command(port: int, engine_url: str, *, mode: str = "checkpoint") -> list[str]:
    """The app's process; ``mode`` is a bench mode (``client_checkpointing``)."""
    return [sys.executable, __file__, "app", str(port), engine_url, mode]


def client_checkpointing(mode: str) -> bool | stepline.Checkpointing:
    """The client setting of a bench mode: ``step`` one call per step, ``checkpoint``
    several steps per call committed with its answer, ``perstep`` several steps per call
    each committed before the next starts (``Checkpointing(buffered_steps=1)``)."""
    if mode == "perstep":
        return stepline.Checkpointing(buffered_steps=1)
    return mode == "checkpoint"


def register(app_url: str) -> None:
    """Ask the app to register its functions with its engine; exit if it cannot."""
    answer = httpx.put(
        app_url,
        json={"url": app_url},
        headers={"x-inngest-server-kind": "dev"},
        timeout=30,
    )
    if answer.status_code != 200:
        sys.exit(f"bench: registering {app_url} failed: {answer.status_code} {answer.text}")


def driver_client(engine_url: str) -> stepline.Client:
    """A client that starts runs on the engine at ``engine_url`` and waits for them."""
    return stepline.Client(
        APP_ID,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        environ={},
    )


class ServerThread:
    """uvicorn serving an ASGI app in a daemon thread, on a socket bound up front (to
    ``port``, else to a free one); ``server`` makes the ``uvicorn.Server`` of a config;
    ``start_seconds`` bounds the wait for its lifespan (an engine's start among them)."""

    def __init__(
        self,
        app: Any,
        name: str = "app",
        port: int = 0,
        server: Callable[[Any], Any] | None = None,
        start_seconds: float = 30.0,
    ) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
        self.server = (server or uvicorn.Server)(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name=name, daemon=True
        )
        self.start_seconds = start_seconds

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + self.start_seconds
        while not self.server.started:
            if not self.thread.is_alive():
                sys.exit(f"bench: {self.thread.name} stopped before it served (see its log above)")
            if time.monotonic() > deadline:
                sys.exit(f"bench: {self.thread.name} did not start in {self.start_seconds:g} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


# -- CPU accounting (Linux /proc; zeros elsewhere) ------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, 0 if it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


# -- the processes themselves --------------------------------------------------------------


def engine_app(
    port: int, db: str, checkpointing: bool, synchronous: str = "NORMAL", **settings: Any
) -> Any:
    """The engine's API app as ``stepline dev`` builds it (its lifespan starts the engine),
    with the one setting the command line has no flag for, ``checkpointing``, and any
    other ``settings`` of the engine's."""
    from stepline.engine import Engine
    from stepline.engine._config import resolve
    from stepline.engine._http.api import build_app

    resolved = resolve(
        mode="dev",
        environ={},
        port=port,
        database_url=db,
        checkpointing=checkpointing,
        sqlite_synchronous=synchronous,
        **settings,
    )
    return build_app(Engine(resolved))


def _serve_engine(port: int, db: str, checkpointing: bool, synchronous: str = "NORMAL") -> None:
    import uvicorn

    config = uvicorn.Config(
        engine_app(port, db, checkpointing, synchronous),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    uvicorn.Server(config).run()


def app_asgi(engine_url: str, mode: str) -> Any:
    """The bench app: the ``ten`` function served by ``stepline.asgi.serve``, its client
    pointed at the engine at ``engine_url``; ``mode`` is a bench mode."""
    import stepline.asgi

    client = stepline.Client(
        APP_ID,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=client_checkpointing(mode),
        environ={},
    )
    return stepline.asgi.serve(client, [ten_steps(client)])


def _serve_app(port: int, engine_url: str, mode: str) -> None:
    import uvicorn

    app = app_asgi(engine_url, mode)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    kind, port_text, where, flag, *more = sys.argv[1:]
    if kind == "engine":
        _serve_engine(int(port_text), where, flag == "1", *more)
    else:
        _serve_app(int(port_text), where, flag)
