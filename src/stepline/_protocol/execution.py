"""Bodies of the execution call: the request the engine POSTs and the ops an SDK reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from stepline import _errors, _serde
from stepline._protocol.opcodes import Opcode

#: ``stepId`` of a discovery (untargeted) call.
DISCOVERY_STEP_ID = "step"
#: The ``ctx`` key of what only Stepline's engine sends (Inngest's SDKs never see it).
STEPLINE_KEY = "stepline"


@dataclasses.dataclass(slots=True)
class CallContext:
    """The ``ctx`` object of an execution request."""

    run_id: str
    attempt: int = 0
    max_attempts: int | None = None
    disable_immediate_execution: bool = False
    step_id: str = DISCOVERY_STEP_ID
    stack: list[str] = dataclasses.field(default_factory=list)
    fn_id: str | None = None
    qi_id: str | None = None
    request_id: str | None = None
    generation_id: int | None = None
    use_api: bool = False
    #: the principal the engine recorded as the run's starter, sent (as
    #: ``ctx.stepline.started_by``) for a durable endpoint's run only: Stepline's own
    started_by: str | None = None
    #: a deploy check replays the run (``ctx.stepline.dry_run``): the SDK answers every
    #: recorded step from memos and refuses the network to the code between them
    dry_run: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The JSON object an engine sends as ``ctx``."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "attempt": self.attempt,
            "disable_immediate_execution": self.disable_immediate_execution,
            "step_id": self.step_id,
            "stack": {"stack": list(self.stack), "current": len(self.stack)},
            "use_api": self.use_api,
        }
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        for key in ("fn_id", "qi_id", "request_id", "generation_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        ours: dict[str, Any] = {}
        if self.started_by is not None:
            ours["started_by"] = self.started_by
        if self.dry_run:
            ours["dry_run"] = True
        if ours:
            out[STEPLINE_KEY] = ours
        return out


@dataclasses.dataclass(slots=True)
class ExecutionRequest:
    """A parsed ``POST`` execution body. Events and memos stay raw JSON values."""

    event: dict[str, Any]
    events: list[dict[str, Any]]
    steps: dict[str, Any]
    ctx: CallContext
    use_api: bool = False
    version: int = -1

    @classmethod
    def parse(cls, body: bytes) -> ExecutionRequest:
        """Parse and validate an execution body.

        Raises:
            BodyInvalidError: the body is not JSON or misses a required field.
        """
        try:
            raw = _serde.loads(body)
        except ValueError as exc:
            raise _errors.BodyInvalidError(f"request body is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise _errors.BodyInvalidError("request body must be a JSON object")
        return cls.from_wire(raw)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ExecutionRequest:
        """Validate an already-decoded execution body."""
        event = _require(raw, "event", dict)
        events = raw.get("events") or [event]
        steps = raw.get("steps")
        steps = {} if steps is None else steps
        ctx = _require(raw, "ctx", dict)
        if not isinstance(events, list) or not isinstance(steps, dict):
            raise _errors.BodyInvalidError("events must be an array and steps an object")
        stack = ctx.get("stack") or {}
        stack_ids = stack.get("stack") if isinstance(stack, dict) else None
        if stack_ids is not None and not isinstance(stack_ids, list):
            raise _errors.BodyInvalidError("ctx.stack.stack must be an array of step ids")
        use_api = bool(raw.get("use_api") or ctx.get("use_api"))
        call = CallContext(
            run_id=_require(ctx, "run_id", str),
            attempt=_int(ctx.get("attempt", 0), "ctx.attempt"),
            max_attempts=_optional_int(ctx.get("max_attempts"), "ctx.max_attempts"),
            disable_immediate_execution=bool(ctx.get("disable_immediate_execution", False)),
            step_id=str(ctx.get("step_id") or DISCOVERY_STEP_ID),
            stack=list(stack_ids or []),
            fn_id=_optional_str(ctx.get("fn_id")),
            qi_id=_optional_str(ctx.get("qi_id")),
            request_id=_optional_str(ctx.get("request_id")),
            generation_id=_optional_int(ctx.get("generation_id"), "ctx.generation_id"),
            use_api=use_api,
            started_by=_started_by(ctx.get(STEPLINE_KEY)),
            dry_run=_dry_run(ctx.get(STEPLINE_KEY)),
        )
        version = raw.get("version", -1)
        return cls(
            event=event,
            events=events,
            steps=steps,
            ctx=call,
            use_api=use_api,
            version=version if isinstance(version, int) else -1,
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object an engine POSTs (``use_api`` in both places, as SDKs expect)."""
        return {
            "event": self.event,
            "events": self.events,
            "steps": self.steps,
            "ctx": self.ctx.to_wire(),
            "use_api": self.use_api,
            "version": self.version,
        }


def _require(raw: Mapping[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        raise _errors.BodyInvalidError(f"{key} is required and must be {kind.__name__}")
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _errors.BodyInvalidError(f"{where} must be an integer")
    return value


def _optional_int(value: object, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dry_run(stepline: object) -> bool:
    """``ctx.stepline.dry_run``: True only when a deploy check said so."""
    return isinstance(stepline, dict) and stepline.get("dry_run") is True


def _started_by(stepline: object) -> str | None:
    """``ctx.stepline.started_by``: absent (None) unless a Stepline engine sent it."""
    return _optional_str(stepline.get("started_by")) if isinstance(stepline, dict) else None


@dataclasses.dataclass(slots=True)
class Op:
    """One op of a 206 response."""

    op: Opcode
    id: str
    user_id: str
    index: int | None = None
    name: str | None = None
    opts: dict[str, Any] | None = None
    data: Any = None
    error: dict[str, Any] | None = None
    display_name: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The op object as inngest-py shapes it."""
        out: dict[str, Any] = {
            "displayName": self.user_id if self.display_name is None else self.display_name,
            "id": self.id,
            "name": self.user_id if self.name is None else self.name,
            "op": self.op.wire,
            "opts": self.opts,
            "userland": {"id": self.user_id, "index": self.index},
        }
        if self.error is not None:
            out["error"] = self.error
        out["data"] = self.data
        return out


# Memo decoding: a memo that is an object with only ``data`` and/or ``error`` is a
# wrapper; anything else (``null``, a raw event) is the value itself.
_WRAPPER_KEYS = frozenset({"data", "error"})


def unwrap_memo(raw: Any) -> tuple[Any, dict[str, Any] | None]:
    """Split a memo into ``(value, error)``; ``error`` is set for a failed step."""
    if isinstance(raw, dict) and raw and raw.keys() <= _WRAPPER_KEYS:
        error = raw.get("error")
        if isinstance(error, dict):
            return None, error
        if error is not None:
            return None, {"name": "Error", "message": str(error)}
        return raw.get("data"), None
    return raw, None
