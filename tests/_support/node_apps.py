"""Apps on the official ``inngest`` npm SDK, run under Node for a test."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests._support.polling import wait_until


def node_env() -> dict[str, str]:
    """The environment without the developer's own Inngest or engine settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INNGEST_", "STEPLINE_"))}
    env.update(NO_COLOR="1", npm_config_update_notifier="false")
    return env


@contextlib.contextmanager
def serving(
    app_dir: Path,
    script: str,
    args: list[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """``node SCRIPT ARGS...`` in ``app_dir``, its output in ``log``; yields its origin
    (``http://127.0.0.1:PORT``) once it prints ``listening PORT``, and stops it after."""
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            ["node", script, *args],
            cwd=app_dir,
            env={**node_env(), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def port() -> int | None:
            if proc.poll() is not None:
                raise AssertionError(f"node {script} exited:\n{log.read_text('utf-8')}")
            for line in log.read_text("utf-8").splitlines():
                if line.startswith("listening "):
                    return int(line.split()[1])
            return None

        listening = wait_until(port, timeout=30, message=f"node {script} to listen")
        yield f"http://127.0.0.1:{listening}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
