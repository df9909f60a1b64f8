"""The ``stepline`` command line run in the test's own process: its exit code and output.

A command that is a client of an engine (``runs``, ``apps``, ``functions``, ``send``...)
does here what ``python -m stepline.engine ...`` does in a child process, less the
interpreter's start and the package's imports (about half a second of CPU a call, which
the process tests paid hundreds of times). It sees the environment a child started with
``processes.clean_env()`` would: a developer's ``STEPLINE_*``/``INNGEST_*`` settings are
hidden for the call. What is about the process itself (its exit on a signal, the entry
point, warnings at import, a server it runs) stays a subprocess test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Iterator

from stepline.engine._cli.commands import main
from tests._support.processes import ENV_PREFIXES


@dataclasses.dataclass(frozen=True)
class Ran:
    """One command's outcome, named as ``subprocess.CompletedProcess`` names it."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _without_settings() -> Iterator[None]:
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(ENV_PREFIXES)}
    try:
        yield
    finally:
        os.environ.update(hidden)


def run_stepline(*args: str) -> Ran:
    """Run ``stepline ARGS`` here; what it printed and the code it exits with."""
    out, err = io.StringIO(), io.StringIO()
    with _without_settings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse refusing the arguments, as the process would
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(code, out.getvalue(), err.getvalue())
