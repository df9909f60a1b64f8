"""A run's journal: what the engine recorded of one run, as one JSON document.

``GET /v1/runs/{id}/export`` serves it, ``stepline runs export`` writes it, and the deploy
check and ``TestEnv.replay`` read it: the trigger events, every step in recorded order with
its memo (the value or error the SDK is given on replay), its attempts and timings, the
completion order (``stack``), the run's status and output, and the app version it started
on. Times are RFC 3339 text, as everywhere in the REST API. Pure.

What leaves the engine is what the engine keeps (a durable endpoint's credentials were never
stored); ``redacted`` masks more by key, ``without_outputs`` drops steps' outputs by name.
A dropped output stays a dropped output: a replay that reaches the step asks for it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stepline._errors import ConfigError

__all__ = ["FORMAT", "REDACTED", "Journal", "JournalError", "RecordedStep", "parse_time"]

#: The document's ``format``; a reader refuses any other.
FORMAT = "stepline.run/1"
#: What a masked value becomes.
REDACTED = "[redacted]"
#: Step ops whose memo arrives without the function's code running again (the engine
#: answers them): a live run waiting on one resumes past it with that memo.
ENGINE_OPS = frozenset({"Sleep", "WaitForEvent", "InvokeFunction", "WaitForSignal"})


class JournalError(ConfigError):
    """The document is not a run journal this version reads (names what is wrong)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedStep:
    """One step of the run as the engine recorded it.

    Attributes:
        id: the hashed step id (the key of the SDK's ``steps`` map).
        name: the step id the code gave (``ctx.step.run("charge", ...)``: ``charge``).
        op: the op it was last reported with (``StepRun``, ``Sleep``, ``WaitForEvent``...).
        status: ``Completed``, ``Failed`` (done: it has a memo), or where a live step is
            (``Planned``, ``Sleeping``, ``Waiting``, ``Invoking``...).
        memo: what the SDK receives for it on replay (``{"data": ...}``, ``{"error": ...}``,
            a matched event, ``None`` for a sleep); None while it is not done.
        dropped: its memo was left out of the export (``without_outputs``).
        mode: the parallel mode it was planned with (``wait`` or ``race``).
        attempts: how many times its code ran.
        started_at: when it was planned or began, RFC 3339.
        ended_at: when it ended, RFC 3339.
    """

    id: str
    name: str
    op: str
    status: str
    memo: Any = None
    dropped: bool = False
    mode: str = "wait"
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def done(self) -> bool:
        """Whether the step has a memo (it completed or failed for good)."""
        return self.status in ("Completed", "Failed")

    def to_json(self) -> dict[str, Any]:
        """The step's object in the document."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "op": self.op,
            "status": self.status,
            "mode": self.mode,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }
        if self.dropped:
            out["dropped"] = True
        elif self.done:
            out["memo"] = self.memo
        return out

    @classmethod
    def from_json(cls, raw: object, where: str) -> RecordedStep:
        """Read one step object; ``where`` names it in errors."""
        if not isinstance(raw, Mapping):
            raise JournalError(f"{where} must be an object, got {type(raw).__name__}")
        return cls(
            id=_text(raw, "id", where),
            name=_text(raw, "name", where),
            op=_text(raw, "op", where),
            status=_text(raw, "status", where),
            memo=raw.get("memo"),
            dropped=bool(raw.get("dropped", False)),
            mode=str(raw.get("mode") or "wait"),
            attempts=_count(raw.get("attempts", 0), f"{where}.attempts"),
            started_at=_optional_text(raw, "started_at", where),
            ended_at=_optional_text(raw, "ended_at", where),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Journal:
    """One run's record, as the engine exports it.

    Attributes:
        run_id: the run.
        function_id: its function's full id (``app-fn``).
        app_id: its app.
        app_version: the app version it started on, if the app declared one.
        status: ``Queued``, ``Running``, ``Completed``, ``Failed`` or ``Cancelled``.
        events: the trigger events in wire shape (the first one is ``event``).
        steps: every step, in the order recorded (done ones in completion order).
        stack: the hashed ids of the done steps, in completion order.
        output: the function's return value once it completed; its error object once it
            failed; None while it is live.
        created_at: when the run was created, RFC 3339.
        started_at: when its first call began.
        ended_at: when it ended.
        exported_at: when this document was made.
        redacted: what was masked or dropped on the way out (``key:NAME``,
            ``output:STEP``), so a reader knows what it does not have.
    """

    run_id: str
    function_id: str
    app_id: str
    status: str
    events: list[dict[str, Any]]
    steps: tuple[RecordedStep, ...]
    stack: tuple[str, ...]
    app_version: str | None = None
    output: Any = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    exported_at: str | None = None
    redacted: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        """Whether the run has not ended (queued or running)."""
        return self.status in ("Queued", "Running")

    def memos(self) -> dict[str, Any]:
        """The SDK's ``steps`` map: every done step's memo (dropped ones left out)."""
        return {s.id: s.memo for s in self.steps if s.done and not s.dropped}

    def pending(self) -> list[RecordedStep]:
        """The steps the run waits on now (planned, sleeping, waiting, invoking)."""
        if not self.live:
            return []
        return [s for s in self.steps if not s.done and s.status != "Cancelled"]

    def step(self, hashed_id: str) -> RecordedStep | None:
        """The step with this hashed id, if recorded."""
        for found in self.steps:
            if found.id == hashed_id:
                return found
        return None

    def without_outputs(self, names: Iterable[str]) -> Journal:
        """The journal with the memos of the steps named ``names`` left out."""
        drop = set(names)
        if not drop:
            return self
        unknown = drop - {s.name for s in self.steps}
        if unknown:
            known = ", ".join(sorted({s.name for s in self.steps})) or "none"
            raise JournalError(
                f"no step named {', '.join(sorted(unknown))} in run {self.run_id} "
                f"(its steps: {known})"
            )
        steps = tuple(
            dataclasses.replace(s, memo=None, dropped=True) if s.name in drop and s.done else s
            for s in self.steps
        )
        dropped = {s.name for s in steps if s.dropped}
        marks = tuple(f"output:{name}" for name in sorted(drop & dropped))
        return dataclasses.replace(self, steps=steps, redacted=(*self.redacted, *marks))

    def redacted_keys(self, keys: Iterable[str]) -> Journal:
        """The journal with every value under one of ``keys`` (at any depth of the events,
        the memos and the output) replaced by ``REDACTED``; keys match case-insensitively."""
        wanted = {k.lower() for k in keys}
        if not wanted:
            return self
        steps = tuple(dataclasses.replace(s, memo=_masked(s.memo, wanted)) for s in self.steps)
        marks = tuple(f"key:{key}" for key in sorted(wanted))
        return dataclasses.replace(
            self,
            events=_masked(self.events, wanted),
            steps=steps,
            output=_masked(self.output, wanted),
            redacted=(*self.redacted, *marks),
        )

    def to_json(self) -> dict[str, Any]:
        """The document."""
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "function_id": self.function_id,
            "app_id": self.app_id,
            "app_version": self.app_version,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exported_at": self.exported_at,
            "events": self.events,
            "stack": list(self.stack),
            "steps": [s.to_json() for s in self.steps],
            "output": self.output,
            "redacted": list(self.redacted),
        }

    @classmethod
    def load(cls, source: Journal | Mapping[str, Any] | str | os.PathLike[str]) -> Journal:
        """A journal from itself, its JSON object, or the path of a file holding it."""
        if isinstance(source, Journal):
            return source
        if isinstance(source, Mapping):
            return cls.from_json(source)
        try:
            with open(source, encoding="utf-8") as file:
                raw = json.load(file)
        except OSError as exc:
            raise JournalError(
                f"cannot read the run journal {os.fspath(source)!r}: {exc}"
            ) from None
        except ValueError as exc:
            raise JournalError(f"{os.fspath(source)!r} is not JSON: {exc}") from None
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: object) -> Journal:
        """Read a document; ``JournalError`` names what is missing or of the wrong kind."""
        if not isinstance(raw, Mapping):
            raise JournalError(f"a run journal is a JSON object, got {type(raw).__name__}")
        given = raw.get("format")
        if given != FORMAT:
            raise JournalError(
                f"not a run journal this version reads: format is {given!r}, expected "
                f"{FORMAT!r} (export it with `stepline runs export RUN_ID`)"
            )
        events = raw.get("events")
        if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
            raise JournalError("journal.events must be a list of event objects")
        steps_raw = raw.get("steps")
        if not isinstance(steps_raw, list):
            raise JournalError("journal.steps must be a list")
        stack = raw.get("stack")
        if not isinstance(stack, list) or not all(isinstance(i, str) for i in stack):
            raise JournalError("journal.stack must be a list of step ids")
        redacted = raw.get("redacted") or []
        return cls(
            run_id=_text(raw, "run_id", "journal"),
            function_id=_text(raw, "function_id", "journal"),
            app_id=_text(raw, "app_id", "journal"),
            status=_text(raw, "status", "journal"),
            events=[dict(e) for e in events],
            steps=tuple(
                RecordedStep.from_json(s, f"journal.steps[{n}]") for n, s in enumerate(steps_raw)
            ),
            stack=tuple(stack),
            app_version=_optional_text(raw, "app_version", "journal"),
            output=raw.get("output"),
            created_at=_optional_text(raw, "created_at", "journal"),
            started_at=_optional_text(raw, "started_at", "journal"),
            ended_at=_optional_text(raw, "ended_at", "journal"),
            exported_at=_optional_text(raw, "exported_at", "journal"),
            redacted=tuple(str(r) for r in redacted) if isinstance(redacted, list) else (),
        )


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 time of the document as seconds since the epoch (None stays None)."""
    if text is None:
        return None
    if text.endswith("Z"):  # Python 3.10's fromisoformat does not take "Z"
        text = text[:-1] + "+00:00"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise JournalError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def _masked(value: Any, keys: set[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in keys else _masked(v, keys) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v, keys) for v in value]
    return value


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise JournalError(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def _optional_text(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise JournalError(f"{where}.{key} must be a string or null, got {value!r}")
    return value


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JournalError(f"{where} must be a whole number >= 0, got {value!r}")
    return value


def steps_in_order(steps: Sequence[RecordedStep], stack: Sequence[str]) -> list[RecordedStep]:
    """Done steps in completion order (``stack``), then the rest as recorded."""
    position = {hashed: n for n, hashed in reversed(list(enumerate(stack)))}
    done = sorted((s for s in steps if s.id in position), key=lambda s: position[s.id])
    return [*done, *(s for s in steps if s.id not in position)]
