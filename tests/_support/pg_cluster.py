"""A replicated Postgres of the test's own: a primary, a streaming standby, a failover.

``replicated`` builds both in a temporary directory on free ports and stops them after:
the primary from ``initdb`` (``wal_level=replica``, trust for 127.0.0.1, replication
included), the standby a ``pg_basebackup -R`` of it, streaming. With ``synchronous`` the
primary names the standby in ``synchronous_standby_names`` (``synchronous_commit=on``): a
commit is acknowledged once the standby has flushed it. Without, replication is
asynchronous: an acknowledged commit may not have reached the standby yet.

``fsync`` stays on in both servers, so a commit acknowledged is on disk as in production.
Only the setup skips its own syncs (``initdb``/``pg_basebackup`` ``--no-sync``): those
copies are made before anything the tests measure and no test survives a power loss.

Postgres refuses to run as root: as root the servers run as the ``postgres`` OS user
(``runuser``), in a directory that user owns; as anyone else, as that user. Without the
server binaries (``initdb`` on ``PATH`` or under ``/usr/lib/postgresql/*/bin``) the test
skips, or fails under CI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests._support.ci import unavailable
from tests._support.processes import free_port

#: the database the engines use
DATABASE = "stepline"
#: the OS user the servers run as when the tests run as root
SERVER_USER = "postgres"
#: the name the standby streams under (``cluster_name`` names its WAL receiver)
STANDBY_NAME = "standby"


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:  # often a link to the version's directory, which holds the other tools too
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not versions:
        unavailable("no Postgres server binaries (initdb) on PATH or in /usr/lib/postgresql")
    return Path(versions[-1]).parent


def _version(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


@dataclasses.dataclass
class Server:
    """One Postgres server of the pair."""

    name: str
    data: Path
    port: int

    @property
    def url(self) -> str:
        """A URL of this server alone."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid (``postmaster.pid``'s first line), None when stopped."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None


@dataclasses.dataclass
class Cluster:
    """A primary and its standby, and what a failover does to them."""

    root: Path
    bin: Path
    primary: Server
    standby: Server
    synchronous: bool
    #: ``time.time()`` of the kill, of the promotion's request and of its end (set when
    #: done)
    killed_at: float | None = None
    promoting_at: float | None = None
    promoted_at: float | None = None
    #: the killed primary's backends and helpers, reaped by ``stop``
    _orphans: list[int] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL engines connect with: both hosts, the writable one wanted."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def kill_primary(self, *, whole: bool = True) -> float:
        """SIGKILL the primary; the time of the kill.

        ``whole``: the postmaster and every process of the server at once, as the loss of
        its machine ends them. Else the postmaster alone (``kill -9`` of the pid in
        ``postmaster.pid``): its backends and WAL sender go on until they notice, so
        commits in flight may still complete and reach the standby.
        """
        pid = self.primary.postmaster_pid()
        assert pid is not None, "the primary is not running"
        self._orphans = _children(pid)
        os.kill(pid, signal.SIGKILL)  # first: a postmaster outliving a child restarts them
        if whole:
            for child in self._orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        self.killed_at = time.time()
        return self.killed_at

    def promote(self) -> float:
        """Promote the standby and wait until it takes writes; the time it does."""
        self.promoting_at = time.time()
        self._run("pg_ctl", "promote", "-w", "-t", "30", "-D", str(self.standby.data))
        self.promoted_at = time.time()
        return self.promoted_at

    def stop_server(self, server: Server) -> None:
        """Stop ``server`` at once (``-m immediate``: a crash, as far as clients can tell)."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(server.data))

    def start_server(self, server: Server) -> None:
        """Start ``server`` again (the old primary comes back as a primary, with what it
        committed before it died: its crash recovery replays its own WAL)."""
        self._reap()  # a backend left attached to its shared memory would stop it starting
        _start(self.bin, server, self.root)

    def stop(self) -> None:
        """Stop both servers at once (what is left of them), the killed one's orphans too."""
        for server in (self.standby, self.primary):
            if server.postmaster_pid() is not None:
                self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(server.data), check=False)
        self._reap()

    def _reap(self) -> None:
        """SIGKILL what is left of the killed postmaster's children, and wait for them."""
        for pid in self._orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in self._orphans):
            if time.monotonic() > deadline:
                raise AssertionError(f"the killed primary's processes live on: {self._orphans}")
            time.sleep(0.02)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.bin, tool, *args, check=check)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


def _run(
    bin_dir: Path, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = _as_server_user([str(bin_dir / tool), *args])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie no longer does: its parent, init here, reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (from ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # the command name is in parentheses and may hold spaces: split after it
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def _settings(server: Server, root: Path, **extra: str) -> str:
    base = {
        "port": str(server.port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{root}'",
        "wal_level": "replica",
        "max_wal_senders": "4",
        "hot_standby": "on",
        "fsync": "on",
        "synchronous_commit": "on",
        # each commit's time is kept: a test can tell when a row was last written
        "track_commit_timestamp": "on",
        "shared_buffers": "32MB",
        "max_connections": "100",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }
    base.update(extra)
    return "".join(f"{key} = {value}\n" for key, value in base.items())


def _start(bin_dir: Path, server: Server, root: Path) -> None:
    log = root / f"{server.name}.log"
    argv = [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "30", "-D", str(server.data)]
    # pg_ctl's own output goes to the log as well: the server it starts keeps whatever
    # pg_ctl was given open, so a pipe here would never reach its end
    with open(root / f"{server.name}.pg_ctl", "w", encoding="utf-8") as out:
        done = subprocess.run(
            _as_server_user([*argv, "-l", str(log)]),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=60,
            check=False,
        )  # fmt: skip
    if done.returncode != 0:
        said = (root / f"{server.name}.pg_ctl").read_text(errors="replace")
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(f"{server.name} did not start:\n{said}\n{tail}")


def _wait_streaming(primary: Server, synchronous: bool, timeout: float = 30.0) -> None:
    """Until the primary sees the standby streaming (as its synchronous one, if so)."""
    import psycopg

    wanted = "sync" if synchronous else "async"
    deadline = time.monotonic() + timeout
    state: object = None
    while time.monotonic() < deadline:
        with psycopg.connect(primary.url, autocommit=True, connect_timeout=5) as conn:
            state = conn.execute(
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                (STANDBY_NAME,),
            ).fetchone()
        if state is not None and tuple(state) == ("streaming", wanted):
            return
        time.sleep(0.05)
    raise AssertionError(f"the standby is not streaming ({wanted}): {state!r}")


#: the directories clusters are built in: ``<tmp>/stepline-pg-*``, each with the pid of
#: the test process that built it in ``OWNER``
PREFIX = "stepline-pg-"
OWNER = "owner.pid"


def _sweep(bin_dir: Path) -> None:
    """Stop the clusters of test processes that died without stopping them (a per-test
    timeout ends the process at once, with no teardown) and remove their directories."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER).read_text())
            os.kill(owner, 0)
            continue  # its process lives: its own teardown stops it
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # not readable yet, or not ours
        for name in ("primary", "standby"):
            server = Server(name, root / name, 0)
            if server.postmaster_pid() is not None:
                _run(
                    bin_dir,
                    "pg_ctl",
                    "stop",
                    "-m",
                    "immediate",
                    "-D",
                    str(server.data),
                    check=False,
                )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def replicated(*, synchronous: bool) -> Iterator[Cluster]:
    """A primary with database ``DATABASE`` and a standby streaming from it; both
    stopped and their directory removed afterwards."""
    import psycopg

    bin_dir = _bin_dir()
    _sweep(bin_dir)
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / OWNER).write_text(str(os.getpid()))
    if os.geteuid() == 0:
        shutil.chown(root, SERVER_USER, SERVER_USER)
    primary = Server("primary", root / "primary", free_port())
    standby = Server("standby", root / "standby", free_port())
    cluster = Cluster(root, bin_dir, primary, standby, synchronous)
    try:
        _run(bin_dir, "initdb", "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8",
             "-D", str(primary.data))  # fmt: skip
        with open(primary.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(_settings(primary, root, synchronous_standby_names="''"))
        _start(bin_dir, primary, root)
        admin = f"postgresql://postgres@127.0.0.1:{primary.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        _run(bin_dir, "pg_basebackup", "--no-sync", "-R", "-X", "stream", "-c", "fast",
             "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
             "-D", str(standby.data))  # fmt: skip
        # Promoted, the standby has no standby of its own: naming one there would make
        # every commit of the new primary wait forever.
        with open(standby.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                _settings(
                    standby, root, synchronous_standby_names="''", cluster_name=f"'{STANDBY_NAME}'"
                )
            )
        _start(bin_dir, standby, root)
        if synchronous:  # named once it streams: until then every commit would wait
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
                conn.execute("SELECT pg_reload_conf()")
        _wait_streaming(primary, synchronous)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
