"""The tools ``stepline mcp`` offers, each one REST v1 call (pure: no I/O).

A tool's ``request`` turns its arguments into ``(method, path, body)``; ``shape`` trims
the engine's answer to what an assistant reads (long lists cut to ``MOST`` items, and
said so). ``READ`` are always offered; ``WRITE`` only when the server was started with
``--allow-writes``.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = ["MOST", "READ", "WRITE", "Param", "Tool", "trimmed"]

#: the most list items an answer carries (an assistant's context is not a database)
MOST = 50

Request = tuple[str, str, Any]


#: a parameter the assistant must give
REQUIRED: Any = ...


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    """One argument of a tool, as the assistant sees it."""

    name: str
    type: Any
    description: str
    default: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    """One tool: its name, what it is for, its arguments and the REST call it makes."""

    name: str
    description: str
    params: tuple[Param, ...]
    request: Callable[[Mapping[str, Any]], Request]
    writes: bool = False


def _q(value: object) -> str:
    return urllib.parse.quote(str(value), safe="")


def _query(**params: object) -> str:
    given = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urllib.parse.urlencode(given)}" if given else ""


_LIMIT = Param("limit", int, f"how many, 1 to {MOST}", 20)
_CURSOR = Param("cursor", str | None, "the next_cursor of the previous page")
_RUN = Param("run_id", str, "the run's id", REQUIRED)
_FUNCTION = Param("function_id", str, "the function's full id (list_functions)", REQUIRED)
_OPTIONAL_FUNCTION = Param("function_id", str | None, "only this function's (its full id)")

READ: tuple[Tool, ...] = (
    Tool(
        "list_runs",
        "Runs, newest first: id, function, status, times, output. Filter by function "
        "and status (Queued, Running, Completed, Failed, Cancelled; comma-separated).",
        (
            _OPTIONAL_FUNCTION,
            Param("status", str | None, "comma-separated statuses"),
            _LIMIT,
            _CURSOR,
        ),
        lambda a: (
            "GET",
            "/v1/runs"
            + _query(
                function_id=a.get("function_id"),
                status=a.get("status"),
                limit=a.get("limit", 20),
                cursor=a.get("cursor"),
            ),
            None,
        ),
    ),
    Tool(
        "show_run",
        "One run: status, output or error, its trigger events, what it waits on.",
        (_RUN,),
        lambda a: ("GET", f"/v1/runs/{_q(a['run_id'])}", None),
    ),
    Tool(
        "run_steps",
        "A run's steps in order: each step's status, attempts, output or error.",
        (_RUN,),
        lambda a: ("GET", f"/v1/runs/{_q(a['run_id'])}/steps", None),
    ),
    Tool(
        "run_errors",
        "Every failed attempt of a run's steps: which step, when, the error, when retried.",
        (_RUN,),
        lambda a: ("GET", f"/v1/runs/{_q(a['run_id'])}/attempts", None),
    ),
    Tool(
        "list_events",
        "Events received, newest first; filter by name.",
        (Param("name", str | None, "only events of this name"), _LIMIT, _CURSOR),
        lambda a: (
            "GET",
            "/v1/events"
            + _query(name=a.get("name"), limit=a.get("limit", 20), cursor=a.get("cursor")),
            None,
        ),
    ),
    Tool(
        "show_event",
        "One event (by its internal id), with its data and the runs it started.",
        (Param("event_id", str, "the event's internal id", REQUIRED),),
        lambda a: ("GET", f"/v1/events/{_q(a['event_id'])}", None),
    ),
    Tool(
        "list_functions",
        "Registered functions: id, app, triggers, whether paused.",
        (),
        lambda a: ("GET", "/v1/functions", None),
    ),
    Tool(
        "function_metrics",
        "A function's runs started, completed, failed and cancelled, failure rate and "
        "durations per time bucket, over a window (1h, 6h, 24h or 7d).",
        (
            _FUNCTION,
            Param("window", Literal["1h", "6h", "24h", "7d"], "the window ending now", "24h"),
        ),
        lambda a: (
            "GET",
            f"/v1/functions/{_q(a['function_id'])}/metrics" + _query(window=a.get("window", "24h")),
            None,
        ),
    ),
)

WRITE: tuple[Tool, ...] = (
    Tool(
        "cancel_run",
        "Cancel a live run.",
        (_RUN,),
        lambda a: ("POST", f"/v1/runs/{_q(a['run_id'])}/cancel", None),
        writes=True,
    ),
    Tool(
        "replay_run",
        "Replay an ended run as a new run, whole or from a step (its name or id).",
        (_RUN, Param("from_step", str | None, "a step's name or id")),
        lambda a: (
            "POST",
            f"/v1/runs/{_q(a['run_id'])}/replay",
            {"from_step": a["from_step"]} if a.get("from_step") else None,
        ),
        writes=True,
    ),
    Tool(
        "signal_run",
        "Complete a run's wait for the signal `name`, with `data`.",
        (_RUN, Param("name", str, "the signal's name", REQUIRED), Param("data", Any, "any JSON")),
        lambda a: (
            "POST",
            f"/v1/runs/{_q(a['run_id'])}/signals/{_q(a['name'])}",
            {"data": a.get("data")},
        ),
        writes=True,
    ),
    Tool(
        "pause_function",
        "Pause a function: its runs are created but wait; cron ticks queue or skip.",
        (
            _FUNCTION,
            Param("crons", Literal["queue", "skip"], "what its cron ticks do meanwhile", "queue"),
            Param("reason", str | None, "why, for people"),
        ),
        lambda a: (
            "POST",
            f"/v1/functions/{_q(a['function_id'])}/pause",
            {
                "crons": a.get("crons", "queue"),
                **({"reason": a["reason"]} if a.get("reason") else {}),
            },
        ),
        writes=True,
    ),
    Tool(
        "resume_function",
        "Resume a paused function: the runs that waited go, oldest first.",
        (_FUNCTION,),
        lambda a: ("POST", f"/v1/functions/{_q(a['function_id'])}/resume", None),
        writes=True,
    ),
)


def trimmed(answer: Any) -> Any:
    """The answer with every list cut to ``MOST`` items (and ``truncated`` said)."""
    if isinstance(answer, dict):
        shown = {k: trimmed(v) for k, v in answer.items()}
        data = answer.get("data")
        if isinstance(data, list) and len(data) > MOST:
            shown["truncated"] = f"showing {MOST} of {len(data)}"
        return shown
    if isinstance(answer, list):
        return [trimmed(v) for v in answer[:MOST]]
    return answer
