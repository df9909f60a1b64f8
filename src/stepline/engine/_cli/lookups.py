"""What ``stepline runs`` and ``stepline send`` look up beyond a run: function ids, what
a step waits for, the runs an event started. Flows over the REST API, and pure text."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from stepline import _errors, _settings
from stepline._api import runs as _runs
from stepline._transport import effects

#: Step statuses that will still change while the run goes on.
PENDING = frozenset({"Planned", "Sleeping", "Waiting", "Invoking", "Calling"})


class AmbiguousFunctionError(_errors.SteplineError):
    """A short function id that several apps' functions end with."""

    code = "function_ambiguous"


class UnknownFunctionError(_runs.FunctionNotFoundError):
    """A function id no registered function has (and, for ``runs list``, no run has)."""

    code = "function_unknown"


def known_functions_flow(settings: _settings.Settings) -> effects.Flow[list[str]]:
    """The full ids of the functions registered with the engine."""
    raw = yield from _runs.call(settings, "GET", "/v1/functions", what="functions")
    return [str(f.get("function_id")) for f in raw if isinstance(f, dict)]


def function_id_flow(settings: _settings.Settings, given: str) -> effects.Flow[str]:
    """The full id ``given`` names: itself if registered, else the one ``<app>-<given>``.

    An id nothing matches is returned as given (an unregistered function may still have
    runs). Raises ``AmbiguousFunctionError`` when several apps have such a function.
    """
    known = yield from known_functions_flow(settings)
    return resolve_function(given, known)


def resolve_function(given: str, known: Sequence[str]) -> str:
    """Pure: the full id ``given`` names among ``known`` (see ``function_id_flow``)."""
    if given in known:
        return given
    matches = sorted(f for f in known if f.endswith(f"-{given}"))
    if len(matches) > 1:
        raise AmbiguousFunctionError(
            f"function {given!r} is ambiguous: it could be {', '.join(matches)}; "
            "give the full id with -f"
        )
    return matches[0] if matches else given


def unknown_function(given: str, known: Sequence[str], engine: str) -> UnknownFunctionError:
    """Pure: the error for ``given`` naming no function of ``known``, with the closest ids.

    A typo is usually close to the full id or to its id in its app (a tail after a ``-``:
    app ids may hold a ``-`` too, so every tail is compared); with nothing close, a few
    registered ids are listed.
    """
    names: dict[str, str] = {}  # the full id and each of its tails -> the full id
    for full in known:
        parts = full.split("-")
        for i in range(len(parts)):
            names.setdefault("-".join(parts[i:]), full)
    close: list[str] = []
    for name in difflib.get_close_matches(given, list(names), n=6, cutoff=0.6):
        if names[name] not in close:
            close.append(names[name])
    if close:
        hint = f"did you mean {' or '.join(close[:3])}?"
    elif known:
        listed = ", ".join(sorted(known)[:5]) + (", ..." if len(known) > 5 else "")
        hint = f"registered: {listed} (stepline functions list)"
    else:
        hint = "no function is registered: sync your app first (stepline dev -u URL)"
    return UnknownFunctionError(f"no function {given!r} at {engine}: {hint}", status=404)


def steps_flow(
    settings: _settings.Settings, run_id: str
) -> effects.Flow[tuple[list[_runs.StepInfo], dict[str, dict[str, Any]]]]:
    """A run's steps, and what each pending one waits for (``{step id: wait}``)."""
    raw = yield from _runs.call(
        settings, "GET", f"/v1/runs/{_runs.quote(run_id)}/steps", what=run_id
    )
    steps = [_runs.StepInfo.from_wire(item) for item in raw]
    waits = {
        str(item.get("id")): dict(item["wait"])
        for item in raw
        if isinstance(item.get("wait"), dict) and item.get("status") in PENDING
    }
    return steps, waits


def event_runs_flow(
    settings: _settings.Settings, event_id: str
) -> effects.Flow[tuple[list[_runs.RunInfo], list[dict[str, Any]]]]:
    """The runs an event started, and the functions it skipped (with the reason)."""
    whole = yield from _runs.call(
        settings, "GET", f"/v1/events/{_runs.quote(event_id)}/runs", what=event_id, whole=True
    )
    runs = [_runs.RunInfo.from_wire(r) for r in whole.get("data") or [] if isinstance(r, dict)]
    meta = whole.get("metadata") if isinstance(whole.get("metadata"), dict) else {}
    skipped = [s for s in meta.get("skipped") or [] if isinstance(s, dict)]
    return runs, skipped


def waits_text(
    run: _runs.RunInfo, steps: Sequence[_runs.StepInfo], waits: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """``Waits`` lines of ``runs show``: what each pending step of a live run waits for."""
    if run.status.terminal:
        return []
    lines = []
    for step in steps:
        wait = waits.get(step.id)
        if step.status not in PENDING or not wait:
            continue
        until = f" until {wait['until']}" if wait.get("until") else ""
        if wait.get("event"):
            matching = f" matching {wait['if']}" if wait.get("if") else ""
            what = f"for event {wait['event']}{matching}{until}"
        elif wait.get("function_id"):
            what = f"for a run of {wait['function_id']}{until}"
        elif until:
            what = until.strip()
        else:
            continue
        lines.append(f"Waits     {what} (step {step.name})")
    return lines


def started_text(
    event_id: str, runs: Sequence[_runs.RunInfo], skipped: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The lines ``stepline send`` prints under an event id: what it started or skipped."""
    lines = [f"  started run {r.run_id} ({r.function_id})" for r in runs]
    lines += [f"  skipped {s.get('function_id')}: {s.get('reason')}" for s in skipped]
    if not lines:
        lines.append(
            "  started no run yet (no function is triggered by it, or a debounce or batch holds it)"
        )
    return lines
