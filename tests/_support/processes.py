"""Child processes: an example app or an engine, polled until it answers, then stopped.

Their output goes to a log file (nothing to drain, nothing to block on); a process that
exits early or never answers fails the test with the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from tests._support.polling import wait_until

#: Settings of a developer's own engine or app that must not leak into a child process.
ENV_PREFIXES = ("STEPLINE_", "INNGEST_")


def free_port() -> int:
    """A localhost port nobody listens on right now (for child processes to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``STEPLINE_*``/``INNGEST_*``, unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", **extra)
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
