"""``CommRequest`` and ``CommResponse``, and the one place errors become responses."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from stepline import _errors, _json, _serde
from stepline._execution.call import Outcome
from stepline._execution.checkpointing import StepSink
from stepline._protocol import durations, headers
from stepline._protocol.errors import error_body

logger = logging.getLogger("stepline")


@dataclasses.dataclass(frozen=True, slots=True)
class CommRequest:
    """A request as every adapter hands it over: header names lower-cased."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str]
    #: the engine in this process that made this call (``InProcessDriver``): where its
    #: per-step checkpoints go without HTTP; never set from anything a client sent
    local: StepSink | None = None

    @classmethod
    def build(
        cls,
        *,
        method: str,
        url: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        query: Mapping[str, str] | None = None,
        local: StepSink | None = None,
    ) -> CommRequest:
        """Normalise a native request's parts (query parsed from ``url`` unless given)."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        if query is None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        return cls(
            method=method.upper(),
            url=url,
            headers={k.lower(): v for k, v in pairs},
            body=body,
            query=query,
            local=local,
        )


@dataclasses.dataclass(slots=True)
class CommResponse:
    """What the adapter turns into a native response.

    ``stream``, when set, replaces ``body``: the adapter sends its chunks as they come.
    """

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None

    @classmethod
    def json(cls, status: int, value: object, base: Mapping[str, str]) -> CommResponse:
        """A JSON response with the SDK's standard headers."""
        return cls(status, dict(base), _serde.dumps(value).encode())

    @classmethod
    def from_error(cls, exc: BaseException, base: Mapping[str, str]) -> CommResponse:
        """The response for an error raised outside the user's function."""
        if isinstance(exc, _errors.SteplineError):
            status = exc.status
            body: dict[str, Any] = {
                "code": exc.code,
                "message": exc.message,
                "name": type(exc).__name__,
            }
            (logger.warning if status < 500 else logger.error)(
                "stepline: %s %s: %s", status, exc.code, exc.message
            )
        else:
            status, body = 500, error_body(exc)
            logger.error("stepline: internal error", exc_info=exc)
        response = cls.json(status, body, base)
        _mark_retry(response, exc)
        return response

    @classmethod
    def from_call_result(
        cls, outcome: Outcome, base: Mapping[str, str], *, now: _dt.datetime
    ) -> CommResponse:
        """The response for one execution: 200 output, 206 ops, or an error.

        A replay that diverged from the recorded steps adds ``X-Stepline-Nondeterminism``.
        """
        response = cls._for_outcome(outcome, base, now=now)
        if outcome.divergence is not None:
            response.headers[headers.NONDETERMINISM] = outcome.divergence.header()
        return response

    @classmethod
    def _for_outcome(
        cls, outcome: Outcome, base: Mapping[str, str], *, now: _dt.datetime
    ) -> CommResponse:
        if isinstance(outcome.error, _errors.NonDeterminismError):
            # Logged by the handler, which names the function and the run.
            diverged = outcome.error
            response = cls.json(
                diverged.status,
                {"code": diverged.code, "message": diverged.message, "name": "NonDeterminismError"},
                base,
            )
            _mark_retry(response, diverged)
            return response
        if outcome.ops is not None:
            ops = [op.to_wire() for op in outcome.ops]
            response = cls(206, dict(base), _serde.encode_vetted(ops))
            if outcome.no_retry:
                response.headers[headers.NO_RETRY] = "true"
            if outcome.retry_after is not None:  # a step's error beside steps that ran
                _mark_retry(response, outcome.retry_after, now=now)
            return response
        if outcome.error is None:
            try:
                return cls(
                    200, dict(base), _serde.dumps(outcome.output, what="function output").encode()
                )
            except _errors.OutputUnserializableError as unserializable:
                outcome.error = unserializable
        error = outcome.error
        if isinstance(error, _errors.SteplineError) and not isinstance(error, _USER_RAISED):
            return cls.from_error(error, base)
        body = error_body(error)
        if outcome.failed_step is not None:  # the step whose NonRetriableError ended it
            body["step"] = {
                "id": outcome.failed_step.hashed_id,
                "name": outcome.failed_step.user_id,
            }
        response = cls.json(500, body, base)
        _mark_retry(response, error, now=now)
        return response


_USER_RAISED = (_errors.NonRetriableError, _errors.RetryAfterError, _errors.StepError)


def _mark_retry(
    response: CommResponse, exc: BaseException, *, now: _dt.datetime | None = None
) -> None:
    if isinstance(exc, _errors.SteplineError) and not exc.retriable:
        response.headers[headers.NO_RETRY] = "true"
    if isinstance(exc, _errors.RetryAfterError):
        when = exc.retry_at(now or _dt.datetime.now(_dt.timezone.utc))
        response.headers[headers.RETRY_AFTER] = durations.format_timestamp(when)


def decode_json_object(body: bytes) -> dict[str, Any] | None:
    """Decode a JSON object body, or ``None`` when it is anything else.

    A document nested deeper than the decoder can descend is "anything else" too.
    """
    try:
        value = _json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
