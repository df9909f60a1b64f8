"""What an SDK answered, decoded into one of three outcomes. Pure."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import email.utils
import json
import logging
from collections.abc import Mapping
from typing import Any, TypeGuard

from stepline import _json, _serde
from stepline._protocol import durations, headers
from stepline._protocol.opcodes import Opcode
from stepline.engine._model import storable

MAX_RETRY_AFTER = 86_400.0
#: The header an SDK answers with when its replay no longer matched the run's history.
NONDETERMINISM = "X-Stepline-Nondeterminism"
#: Caps on that (unsigned, so untrusted) header: its size, ids per list, an id's length.
MAX_REPORT_BYTES = 16 * 1024
MAX_REPORT_IDS = 200
MAX_REPORT_ID = 200

logger = logging.getLogger("stepline.engine")


@dataclasses.dataclass(frozen=True, slots=True)
class RawResponse:
    """An HTTP (or in-process) answer; ``error`` is set when no answer arrived.

    ``error_name`` is set (with ``error``) when an answer arrived but the engine refused
    it (unsigned, too large): its body is dropped, and the error is recorded as is.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    error: str | None = None
    error_name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ReportedOp:
    """One op of a 206 answer."""

    op: Opcode
    id: str
    name: str
    display_name: str
    opts: dict[str, Any]
    data: Any
    error: dict[str, Any] | None

    @property
    def parallel_mode(self) -> str:
        """``race`` or ``wait`` (the default)."""
        return "race" if self.opts.get("parallelMode") == "race" else "wait"


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedDivergence:
    """A replay that no longer matched the run's recorded history (hashed step ids), as the
    engine records it: the SDK's report (its own ``Divergence``) or what the engine saw.

    Attributes:
        policy: ``warn`` (the run goes on) or ``fail`` (the SDK failed the call).
        missing: recorded steps the replay never reached.
        reordered: recorded steps the replay reached in another order.
        new: steps the replay reached that the history does not hold.
        source: ``sdk`` (the SDK's report) or ``engine`` (what the engine saw itself).
    """

    policy: str
    missing: tuple[str, ...] = ()
    reordered: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    source: str = "sdk"


@dataclasses.dataclass(frozen=True, slots=True)
class Completed:
    """The function returned (200, or a ``RunComplete`` op); ``output`` is JSON text."""

    output: str
    request_version: int | None = None
    divergence: RecordedDivergence | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Ops:
    """The function reported steps (206)."""

    ops: tuple[ReportedOp, ...]
    request_version: int | None = None
    no_retry: bool = False
    divergence: RecordedDivergence | None = None
    #: seconds a step's error among the ops asked to wait before its retry (the answer's
    #: ``Retry-After``: Stepline's SDK, for a ``RetryAfterError`` beside steps that ran)
    retry_after: float | None = None

    def final(self, op: ReportedOp) -> bool:
        """Whether ``op``'s error must not be retried (the answer or the op says so)."""
        return self.no_retry or bool(op.error and op.error.get("noRetry"))


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The attempt failed. ``output`` is the body kept as the run's output if it is final.

    ``error`` is the normalised error (``name``, ``message``, ``stack``, ``error``) sent in
    ``inngest/function.failed``; ``sdk`` the answer's ``X-Inngest-Sdk`` (None when no
    SDK answered). ``steps``: when one of the answer's steps failed the call (its output
    was too large), the steps to record before the run fails: the results the answer
    reported, then that step as a ``StepFailed`` op with the error (and no data).
    """

    output: str
    error: dict[str, Any]
    no_retry: bool = False
    retry_after: float | None = None
    request_version: int | None = None
    divergence: RecordedDivergence | None = None
    sdk: str | None = None
    steps: tuple[ReportedOp, ...] = ()


Outcome = Completed | Ops | Failed

# The headers an answer is read for, lower-cased once (``_decode`` lower-cases its keys).
_NONDETERMINISM = NONDETERMINISM.lower()
_NO_RETRY = headers.NO_RETRY.lower()
_REQ_VERSION = headers.REQ_VERSION.lower()
_SDK = headers.SDK.lower()


def decode(raw: RawResponse, *, now: float) -> Outcome:
    """Turn an answer into an outcome, following the Go executor's rules.

    An ``X-Stepline-Nondeterminism`` header (on the answer, or in a streamed answer's
    envelope) becomes the outcome's ``divergence``; a malformed one is ignored.
    """
    outcome, lowered = _decode(raw, now=now)
    report = lowered.get(_NONDETERMINISM)
    if report is None:
        return outcome
    divergence = read_divergence(report)
    return outcome if divergence is None else dataclasses.replace(outcome, divergence=divergence)


def read_divergence(text: str) -> RecordedDivergence | None:
    """The divergence an ``X-Stepline-Nondeterminism`` header reports; None if malformed.

    The header is not signed: it is capped (``MAX_REPORT_BYTES``), its shape checked,
    and only ids that are short storable strings are kept (``MAX_REPORT_IDS`` per list).
    What is refused is logged once and changes nothing else about the answer.
    """
    problem = None
    if len(text) > MAX_REPORT_BYTES:
        problem = f"longer than {MAX_REPORT_BYTES} bytes"
    else:
        try:
            parsed = _serde.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or parsed.get("policy") not in ("warn", "fail"):
            problem = 'not an object with "policy": "warn" or "fail"'
        else:
            lists = [parsed.get(key, []) for key in ("missing", "reordered", "new")]
            if not all(isinstance(ids, list) for ids in lists):
                problem = '"missing", "reordered" and "new" must be lists of step ids'
            else:
                kept = [_ids(ids) for ids in lists]
                if any(kept):
                    return RecordedDivergence(str(parsed["policy"]), kept[0], kept[1], kept[2])
                problem = "no valid step id in it"
    logger.warning("ignored a malformed %s header: %s", NONDETERMINISM, problem)
    return None


def _ids(values: list[Any]) -> tuple[str, ...]:
    kept = dict.fromkeys(
        v for v in values if isinstance(v, str) and 0 < len(v) <= MAX_REPORT_ID and storable(v)
    )
    return tuple(kept)[:MAX_REPORT_IDS]


def _decode(raw: RawResponse, *, now: float) -> tuple[Outcome, Mapping[str, str]]:
    if raw.error is not None:
        if raw.error_name is not None:  # an answer the engine refused; only no-retry kept
            failed = _failure(raw.error, raw.error_name, raw.error)
            final = raw.headers.get(_NO_RETRY, "").lower() == "true"
            return dataclasses.replace(failed, no_retry=final), {}
        return _failure(f"request failed: {raw.error}", "Error", raw.error), {}
    lowered = {k.lower(): v for k, v in raw.headers.items()}
    status, body = raw.status, raw.body
    if status == 201:
        try:
            status, body, inner = unwrap_stream(body)
        except ValueError as exc:
            return _failure(str(exc), "StreamError", str(exc)), lowered
        lowered.update({k.lower(): v for k, v in inner.items()})
    version = _int(lowered.get(_REQ_VERSION))
    if _SDK not in lowered and 200 <= status < 300:
        failure = _failure(
            f"unexpected response with status {status} and no {headers.SDK} header: "
            "the URL did not reach an SDK",
            "NonSDKResponse",
            body.decode("utf-8", "replace")[:500],
        )
        return failure, {}
    if status == 200:
        return Completed(_json_text(body), version), lowered
    no_retry = lowered.get(_NO_RETRY, "").lower() == "true"
    if status == 206:
        try:
            retry_after = _retry_after(lowered.get("retry-after"), now)
            return Ops(_ops(body), version, no_retry, retry_after=retry_after), lowered
        except ValueError as exc:
            invalid = _failure(f"invalid 206 body: {exc}", "InvalidResponse", str(exc), version)
            return invalid, lowered
    retry_after = _retry_after(lowered.get("retry-after"), now)
    text = _json_text(body)
    error = _normalise(status, body)
    steps = _ending_step(body, error) if no_retry else ()
    failed = Failed(text, error, no_retry, retry_after, version, sdk=lowered.get(_SDK), steps=steps)
    return failed, lowered


def _ending_step(body: bytes, error: dict[str, Any]) -> tuple[ReportedOp, ...]:
    """The step a final failure names as the one that ended the function (Stepline's SDK:
    a ``NonRetriableError`` raised in a step), as a ``StepFailed`` op with the error; ()
    when it names none (or not a short, storable id and name)."""
    try:
        parsed = _serde.loads(body)
    except ValueError:
        return ()
    step = parsed.get("step") if isinstance(parsed, dict) else None
    if not isinstance(step, dict):
        return ()
    step_id, name = step.get("id"), step.get("name")
    if not (_short(step_id) and _short(name)):
        return ()
    return (ReportedOp(Opcode.STEP_FAILED, step_id, name, name, {}, None, error),)


def _short(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a step id or name the engine keeps (short, storable text)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_REPORT_ID and storable(value)


def _failure(message: str, name: str, detail: str, version: int | None = None) -> Failed:
    error = {"error": message, "name": name, "message": message, "stack": None}
    body = json.dumps({"name": name, "message": message, "detail": detail})
    return Failed(body, error, False, None, version)


def checkpoint_ops(body: object, *, max_output: int | None = None) -> tuple[ReportedOp, ...]:
    """The ops of a ``/v1/checkpoint/{run}/async`` body; only ops with a known result.

    Raises:
        ValueError: not an object with a ``steps`` array, an async op in it, or a step
            output larger than ``max_output`` bytes.
    """
    if not isinstance(body, dict) or not isinstance(body.get("steps"), list):
        raise ValueError("a checkpoint body is an object with a 'steps' array of ops")
    ops = tuple(_op(item) for item in body["steps"])
    for op in ops:
        if op.op not in CHECKPOINTABLE:
            raise ValueError(f"op {op.op.value} cannot be checkpointed; report it in the response")
    if max_output is not None:
        problem = oversized_output(ops, max_output)
        if problem is not None:
            raise ValueError(problem)
    return ops


def limit_outputs(outcome: Outcome, limit: int, *, answer_bytes: int | None = None) -> Outcome:
    """The outcome, or a final failure if a step's output is larger than ``limit`` bytes.

    Retrying would only produce the same output again, so the failure is not retried.
    ``answer_bytes``, the length of the answer the outcome was read from, skips the
    measuring when no output in it can reach the limit: an output written again takes at
    most ``_GROWTH`` times the bytes it took in the answer (``5e15`` comes back as
    ``5000000000000000.0``; strings and everything else come back no longer).
    """
    if not isinstance(outcome, Ops):
        return outcome
    if answer_bytes is not None and answer_bytes * _GROWTH <= limit:
        return outcome
    found = _oversized(outcome.ops, limit)
    if found is None:
        return outcome
    op, problem = found
    error = {"error": problem, "name": "StepOutputTooLarge", "message": problem, "stack": None}
    body = json.dumps({"name": "StepOutputTooLarge", "message": problem})
    # the step is recorded as failed with the error, without the output it was refused,
    # after the results reported beside it
    failed = ReportedOp(Opcode.STEP_FAILED, op.id, op.name, op.display_name, op.opts, None, error)
    results = tuple(o for o in outcome.ops if o.op in _RESULTS and o is not op)
    return Failed(
        body,
        error,
        no_retry=True,
        request_version=outcome.request_version,
        steps=(*results, failed),
    )


#: The ops that report a step's result (recorded as the step's memo).
_RESULTS = frozenset({Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_FAILED})


#: How many times longer a value's JSON can get when decoded and encoded again (a float
#: in exponent form, 4 characters, comes back as up to 18): measured with a margin.
_GROWTH = 8


def oversized_output(ops: tuple[ReportedOp, ...], limit: int) -> str | None:
    """What is wrong if a step's output (or error) is over ``limit`` bytes of JSON."""
    found = _oversized(ops, limit)
    return None if found is None else found[1]


def _oversized(ops: tuple[ReportedOp, ...], limit: int) -> tuple[ReportedOp, str] | None:
    """The first op whose output (or error) is over ``limit`` bytes of JSON, and why."""
    for op in ops:
        if op.op in (Opcode.RUN_COMPLETE, Opcode.SYNC_RUN_COMPLETE):
            continue  # the run's own output, bounded by the answer's size
        size = sum(_size(value) for value in (op.data, op.error) if value is not None)
        if size > limit:
            return op, (
                f"step {op.display_name!r} returned {size} bytes of output, more than the "
                f"{limit}-byte limit on a step's output (max_step_output_bytes, "
                "--max-step-output-bytes, STEPLINE_MAX_STEP_OUTPUT_BYTES); return less, "
                "e.g. store large data elsewhere and return a reference to it"
            )
    return None


def _size(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 2  # as a JSON string, near enough
    return len(_json.dumps(value).encode("utf-8", "surrogatepass"))


CHECKPOINTABLE = frozenset(
    {
        Opcode.STEP_RUN,
        Opcode.STEP,
        Opcode.STEP_FAILED,
        Opcode.RUN_COMPLETE,
        Opcode.SYNC_RUN_COMPLETE,
    }
)


def unwrap_stream(body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """A streamed (201) answer's status, body and headers, from its closing JSON envelope.

    Raises:
        ValueError: no envelope, or one that reports a failure.
    """
    try:
        envelope = _serde.loads(body)
    except ValueError:
        raise ValueError("streamed response did not end with a JSON envelope") from None
    if not isinstance(envelope, dict):
        raise ValueError("streamed response envelope is not an object")
    if envelope.get("error"):
        raise ValueError(f"streamed response failed: {envelope['error']}")
    inner = envelope.get("body", "")
    if not isinstance(inner, str):
        inner = json.dumps(inner)
    status = envelope.get("status")
    if not isinstance(status, int):
        raise ValueError("streamed response envelope has no status")
    extra = envelope.get("headers") or {}
    if not isinstance(extra, dict):
        raise ValueError("streamed response envelope's headers are not an object")
    return status, inner.encode(), {str(k): str(v) for k, v in extra.items()}


def _json_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        _serde.loads(text)
    except ValueError:
        return json.dumps(text)
    return text if text.strip() else "null"


def _ops(body: bytes) -> tuple[ReportedOp, ...]:
    try:
        raw = _serde.loads(body)
    except ValueError:
        raise ValueError("body is not JSON") from None
    if isinstance(raw, dict):
        raw = [raw]  # a single op object is the legacy shape; Go tolerates it
    if not isinstance(raw, list):
        raise ValueError("body must be an array of ops")
    # NUL and lone surrogates reach a decoded string only through a \u escape (JSON
    # has no raw control characters, UTF-8 no surrogates): without one, all texts pass
    escaped = body.find(b"\\u") >= 0  # ``find``, not ``in``: see ``stepline._json``
    return tuple([_op(item, escaped) for item in raw])


def _op(item: object, escaped: bool = True) -> ReportedOp:
    if not isinstance(item, dict):
        raise ValueError("each op must be an object")
    op_text, step_id = item.get("op"), item.get("id")
    if not isinstance(op_text, str) or not isinstance(step_id, str) or not step_id:
        raise ValueError("each op needs string 'op' and 'id'")
    op = Opcode.parse(op_text)
    error = item.get("error")
    if op is Opcode.STEP_ERROR and not isinstance(error, dict):
        raise ValueError("a StepError op needs an error object")
    opts = item.get("opts")
    name = item.get("name")
    display = item.get("displayName")
    userland = item.get("userland")
    user_id = userland.get("id") if isinstance(userland, dict) else None
    label = str(display or user_id or name or step_id)
    name = name if isinstance(name, str) else ""
    opts = opts if isinstance(opts, dict) else {}
    if escaped:
        texts = [step_id, name, label, *(v for k, v in opts.items() if k in _TEXT_OPTS)]
        if not all(storable(t) for t in texts if isinstance(t, str)):
            raise ValueError(
                "ids, names, events and expressions must not hold NUL or lone surrogates"
            )
    return ReportedOp(
        op=op,
        id=step_id,
        name=name,
        display_name=label,
        opts=opts,
        data=item.get("data"),
        error=error if isinstance(error, dict) else None,
    )


#: Options stored as text columns (a wait's event name and expression).
_TEXT_OPTS = ("event", "if")


def _normalise(status: int, body: bytes) -> dict[str, Any]:
    try:
        parsed = _serde.loads(body)
    except ValueError:
        parsed = None
    name, message, stack = "Error", body.decode("utf-8", "replace")[:1000], None
    if isinstance(parsed, dict):
        name = str(parsed.get("name") or name)
        message = str(parsed.get("message") or message)
        stack = parsed.get("stack")
    return {
        "error": f"invalid status code: {status}",
        "name": name,
        "message": message,
        "stack": stack,
    }


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    text = value.strip()
    delay: float | None = None
    if text.isascii() and text.isdigit() and len(text) <= 7:  # not "³" (a digit to isdigit)
        delay = float(text)
    else:
        try:
            delay = durations.parse_timestamp(text).timestamp() - now
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=_dt.timezone.utc)
            delay = parsed.timestamp() - now
    return min(max(delay, 1.0), MAX_RETRY_AFTER)


def _int(value: str | None) -> int | None:
    try:
        number = None if value is None else int(value)
    except ValueError:
        return None
    # request versions are small (-1 to 2); a huge one would not fit the store's column
    return number if number is not None and -1 <= number <= _MAX_VERSION else None


_MAX_VERSION = 2**31 - 1
