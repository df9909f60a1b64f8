"""Child processes: an example app or an engine, polled until it answers, then stopped.

Their output goes to a log file (nothing to drain, nothing to block on); a process that
exits early or never answers fails the test with the log's tail.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from tests._support.polling import wait_until

#: ``tests/apps``: the apps and servers tests run, as scripts (``APPS / "name.py"``) or as
#: ``tests.apps.<name>`` modules (the repository's root on the path)
APPS = Path(__file__).resolve().parents[1] / "apps"
#: Settings of a developer's own engine or app that must not leak into a child process.
ENV_PREFIXES = ("STEPLINE_", "INNGEST_")


#: Where ``free_port`` hands ports out from: below Linux's ephemeral range (32768-60999,
#: ``/proc/sys/net/ipv4/ip_local_port_range``), where ``bind(0)`` (servers in threads, the
#: gateway's ``auto``) and outgoing connections take theirs, so none of those lands on one.
PORTS = range(20000, 32000)
#: One lock file a port; ``free_port`` holds the lock of each port it hands out (and of the
#: next one) while its process lives, so no other test process here hands either out.
PORT_LOCKS = Path(tempfile.gettempdir()) / "stepline-test-ports"
_reserved: dict[int, int] = {}  # port -> the descriptor holding its lock


def _reserve(port: int) -> bool:
    """Lock ``port``'s file for this process (False: another test process holds it)."""
    try:
        fd = os.open(PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # another user's lock file: theirs
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _reserved[port] = fd
    return True


def _release(port: int) -> None:
    os.close(_reserved.pop(port))  # closing the descriptor drops the lock


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    """A localhost port P for a child process to bind, with P + 1 free too.

    Picking a port, releasing it and having a child bind it later races whatever binds
    meanwhile. So P comes from ``PORTS``, where the system never assigns a port by itself,
    and P and P + 1 (where a ``stepline dev`` engine on P listens for Connect workers) stay
    reserved for this process (see ``PORT_LOCKS``): no other pytest worker, and no other run
    of this suite on the machine, hands out either. Each port is handed out once a process.
    """
    PORT_LOCKS.mkdir(mode=0o777, exist_ok=True)
    for _ in range(500):
        port = random.randrange(PORTS.start, PORTS.stop - 1)
        if port in _reserved or port + 1 in _reserved or not _reserve(port):
            continue
        if not _reserve(port + 1):
            _release(port)
            continue
        if _bindable(port) and _bindable(port + 1):
            return port
        _release(port)
        _release(port + 1)
    raise AssertionError(f"no two neighbouring free ports in {PORTS} after 500 tries")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``STEPLINE_*``/``INNGEST_*``, plus ``extra``.

    Unbuffered, so a log is whole when read; with faulthandler on, so a hung child's
    threads can be read (``interrupt``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", **extra)
    return env


def engine_command(*args: str) -> list[str]:
    """``python -m stepline.engine ARGS`` with this interpreter."""
    return [sys.executable, "-m", "stepline.engine", *args]


def log_tail(log: Path | None, chars: int = 3000) -> str:
    """The end of a child's log (empty without one)."""
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-chars:]


def answers(response: httpx.Response) -> bool:
    """Any HTTP answer at all means the server is up."""
    return True


def answers_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def wait_until_up(
    url: str,
    proc: subprocess.Popen[bytes],
    *,
    log: Path | None = None,
    timeout: float = 30.0,
    ready: Callable[[httpx.Response], bool] = answers_ok,
    interval: float = 0.05,
    what: str | None = None,
) -> None:
    """Poll ``url`` until its answer is ``ready``; fail at once if ``proc`` exits."""
    name = what or url

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            return ready(httpx.get(url, timeout=1))
        return False

    wait_until(
        up,
        timeout=timeout,
        interval=interval,
        message=lambda: f"{name} to answer:\n{log_tail(log)}",
    )


def interrupt(
    proc: subprocess.Popen[bytes],
    *,
    log: Path,
    sig: int = signal.SIGINT,
    timeout: float = 15,
    what: str = "the server",
) -> int:
    """Send ``sig`` (Ctrl-C by default) and reap ``proc``; its exit code.

    A child still running ``timeout`` seconds later fails the test with its log and, when
    it was started with ``PYTHONFAULTHANDLER=1`` (``clean_env`` sets it), every thread's
    stack: SIGABRT makes faulthandler write them to its stderr before it dies. Nothing is
    left running either way.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        said = log_tail(log, 20000)
        raise AssertionError(
            f"{what} still ran {timeout} s after {signal.Signals(sig).name}; its log and "
            f"threads:\n{said}"
        ) from None


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Terminate ``proc`` and reap it; kill it if it does not end within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def spawn(
    command: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` with stdout and stderr going to ``log``."""
    with log.open("ab" if append else "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )


@contextlib.contextmanager
def spawned(
    command: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    up: str | None = None,
    ready: Callable[[httpx.Response], bool] = answers_ok,
    timeout: float = 30.0,
    what: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (output in ``log``) around the block; stopped (then killed) after.

    With ``up``, waits first until that URL's answer is ``ready``.
    """
    proc = spawn(command, log=log, env=env, cwd=cwd)
    try:
        if up is not None:
            wait_until_up(up, proc, log=log, timeout=timeout, ready=ready, what=what)
        yield proc
    finally:
        stop(proc)
