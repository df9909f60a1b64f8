"""Structured logs: run, function, step and attempt on every line, as text or JSON.

While a function runs (in the SDK) or a job runs (in the engine), the fields that say
which run it is are bound to the current context (``bind``); ``RunContextFilter`` copies
them onto every log record made meanwhile, from any logger, and ``JsonFormatter`` writes
each record as one JSON object. ``configure`` installs both on the root logger.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "RunContextFilter",
    "bind",
    "configure",
    "current",
    "unbind",
]

#: The run fields every record carries (``None`` outside a run).
FIELDS = ("run_id", "function_id", "step_id", "attempt")

Source = Mapping[str, Any] | Callable[[], Mapping[str, Any]]

_bound: contextvars.ContextVar[Source | None] = contextvars.ContextVar(
    "stepline_log_fields", default=None
)

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def bind(source: Source) -> contextvars.Token[Source | None]:
    """Bind run fields (a mapping, or a callable read at log time) to the current context.

    In the engine every job runs in its own task, so a binding ends with the task; the
    SDK binds per function call. Returns the token ``contextvars`` resets with.
    """
    return _bound.set(source)


def unbind(token: contextvars.Token[Source | None]) -> None:
    """Undo a ``bind`` (in the context that made it)."""
    _bound.reset(token)


def current() -> Mapping[str, Any]:
    """The run fields bound to the current context ({} outside a run)."""
    source = _bound.get()
    if source is None:
        return {}
    return source() if callable(source) else source


class RunContextFilter(logging.Filter):
    """Adds the bound run fields to each record that does not carry them already.

    Attach it to a handler (``configure`` does) so records of every logger get them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Copy the fields; never drops a record."""
        fields = current()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, fields.get(name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the run fields, extras.

    ``time`` is RFC 3339 UTC with milliseconds; ``exc`` holds a formatted traceback when
    the record has one. Values that are not JSON become their ``repr``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        stamp = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
        out: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = current()
        for name in FIELDS:
            value = getattr(record, name, None)
            out[name] = fields.get(name) if value is None else value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=repr, ensure_ascii=False)


TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure(
    *, json_lines: bool = False, level: int | str = logging.WARNING, stream: TextIO | None = None
) -> logging.Handler:
    """Send log records to ``stream`` (stderr), as text or JSON, with the run fields.

    Replaces the handlers of the root logger (``logging.basicConfig(force=True)``).

    Args:
        json_lines: one JSON object per line (``JsonFormatter``) instead of text.
        level: the root logger's level.
        stream: where lines go; ``sys.stderr`` by default.

    Returns:
        The handler installed.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
