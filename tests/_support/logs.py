"""Log records captured as text, tracebacks included."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def captured_logs(*names: str, level: int = logging.DEBUG) -> Iterator[list[str]]:
    """Every record of the named loggers (root if none), formatted with its traceback."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(n) for n in names] or [logging.getLogger()]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(level)
    try:
        yield lines
    finally:
        for lg, old in saved:
            lg.removeHandler(handler)
            lg.setLevel(old)
