"""Every error Stepline raises, each with a wire ``code`` and an HTTP status hint.

Errors are mapped to responses in exactly one place (``stepline._comm.messages``);
everything else only raises.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

__all__ = [
    "BodyInvalidError",
    "BodyTooLargeError",
    "ConfigError",
    "HeaderMissingError",
    "MethodNotAllowedError",
    "NestedStepError",
    "NonDeterminismError",
    "NonRetriableError",
    "OutputUnserializableError",
    "QueryParamMissingError",
    "RegistrationFailedError",
    "RetryAfterError",
    "RetryAfterFailure",
    "RunStateUnavailableError",
    "SendEventError",
    "ServerKindMismatchError",
    "SignatureVerificationError",
    "SigningKeyMissingError",
    "StepError",
    "StepTimeoutError",
    "StepUnexpectedError",
    "SteplineError",
    "StreamMessageTooLargeError",
    "StreamPublishError",
    "UrlInvalidError",
]


class SteplineError(Exception):
    """Base of Stepline's own errors.

    Attributes:
        code: stable snake_case identifier sent on the wire as ``code``.
        status: HTTP status used when this error ends a request.
        retriable: whether the engine may retry after this error.
    """

    code = "unknown"
    status = 500
    retriable = True

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SteplineError, ValueError):
    """A client, function or adapter was configured with invalid options."""

    code = "config_invalid"
    status = 500
    retriable = False


class UrlInvalidError(ConfigError):
    """A base URL or serve origin cannot be used."""

    code = "url_invalid"


class BodyInvalidError(SteplineError):
    """The request body is missing, not JSON or does not match the protocol."""

    code = "body_invalid"
    status = 400
    retriable = False


class QueryParamMissingError(SteplineError):
    """A required query parameter (``fnId``) is missing."""

    code = "query_param_missing"
    status = 400
    retriable = False


class HeaderMissingError(SteplineError):
    """A required header is missing."""

    code = "header_missing"
    status = 400
    retriable = False


class SignatureVerificationError(SteplineError):
    """The ``X-Inngest-Signature`` header is missing, malformed, stale or wrong."""

    code = "sig_verification_failed"
    status = 401
    retriable = False


class SigningKeyMissingError(SteplineError):
    """Cloud mode needs a signing key to verify requests."""

    code = "signing_key_unspecified"
    status = 500
    retriable = False


class ServerKindMismatchError(SteplineError):
    """A dev server reached a cloud-mode app, or the other way round."""

    code = "server_kind_mismatch"
    status = 400
    retriable = False


class RegistrationFailedError(SteplineError):
    """The engine refused or failed the ``/fn/register`` call."""

    code = "registration_failed"
    status = 500


class SendEventError(SteplineError):
    """Sending events to the event API failed.

    A view that sends events can answer the engine's 503 (its database is locked, full
    or read-only) with its own 503 and ``Retry-After: retry_after``: docs/operations.md.

    Attributes:
        ids: the ids of the events the engine did store before refusing one (a batch
            with an invalid event keeps the events before it); empty when none was.
        http_status: the HTTP status the event API answered last (503 while the engine's
            database is unavailable); None when it was unreachable, or when the events
            were refused before any request (no events, a reserved name, not JSON).
        retry_after: the seconds that answer's ``Retry-After`` asked to wait (rounded up
            to whole seconds); None when it had none.
    """

    code = "send_event_failed"
    # The answer when this error ends a request to the serve endpoint (``_comm.messages``):
    # the app's own failure, whatever the event API answered (that is ``http_status``).
    status = 500

    def __init__(
        self,
        message: str = "",
        *,
        ids: Sequence[str] = (),
        http_status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.ids = list(ids)
        self.http_status = http_status
        self.retry_after = retry_after


class OutputUnserializableError(SteplineError):
    """A step or function returned a value that cannot be encoded as JSON."""

    code = "output_unserializable"
    status = 500
    retriable = False


class NestedStepError(SteplineError):
    """A step tool was called inside another step's callable."""

    code = "step_nested"
    status = 500
    retriable = False

    def __init__(self, message: str = "Nested steps are not supported.") -> None:
        super().__init__(message)


class StepUnexpectedError(SteplineError):
    """A targeted request found a new step outside of a parallel group."""

    code = "step_unexpected"
    status = 500


class NonRetriableError(SteplineError):
    """Raise to fail the function at once, with no further attempts.

    Raised inside ``step.run`` it still fails the whole function, as in inngest-py.
    """

    code = "non_retriable_error"
    retriable = False

    def __init__(self, message: str = "", *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class NonDeterminismError(SteplineError):
    """A replay no longer matches the run's recorded steps (the code changed mid-run).

    Raised for a function declared with ``nondeterminism="fail"``: the run fails at once,
    with no further attempts. With the default ``"warn"`` the run goes on and only
    records a notice.

    Attributes:
        missing: hashed ids of recorded steps the code no longer reached.
        reordered: hashed ids of recorded steps reached out of their recorded order.
        new: hashed ids of the new steps the code found instead.
    """

    code = "non_determinism"
    status = 500  # a function error, answered as ``NonRetriableError``'s (no-retry header)
    retriable = False

    def __init__(
        self,
        message: str = "",
        *,
        missing: Sequence[str] = (),
        reordered: Sequence[str] = (),
        new: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.reordered = tuple(reordered)
        self.new = tuple(new)


class RetryAfterError(SteplineError):
    """Raise to ask for a retry no sooner than ``retry_after``.

    Args:
        message: the error message recorded for the attempt.
        retry_after: milliseconds, a ``timedelta`` from now, or an absolute ``datetime``.
    """

    code = "retry_after_error"

    def __init__(
        self,
        message: str,
        retry_after: int | _dt.timedelta | _dt.datetime,
        *,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.quiet = quiet

    def retry_at(self, now: _dt.datetime) -> _dt.datetime:
        """The absolute UTC time the retry may happen, given the current time."""
        if isinstance(self.retry_after, _dt.datetime):
            when = self.retry_after
            return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)
        delta = (
            self.retry_after
            if isinstance(self.retry_after, _dt.timedelta)
            else _dt.timedelta(milliseconds=self.retry_after)
        )
        return now + delta


class RetryAfterFailure(RetryAfterError):
    """An exception retried no sooner than ``retry_after``, reported as that exception.

    The answer's error is ``error``'s (its class name, message and traceback), so what the
    engine records for the attempt, and what a run's readers see, is the exception the code
    raised; the wait is the caller's (``stepline.django.tasks``' backoff options).

    Attributes:
        error: the exception the attempt failed with.
    """

    def __init__(self, error: Exception, retry_after: int | _dt.timedelta | _dt.datetime) -> None:
        super().__init__(str(error), retry_after)
        self.error = error


class StepError(SteplineError):
    """A step failed for good; raised again each time the function replays past it.

    Catch it to handle the failure; left uncaught, the function fails without retries.

    Attributes:
        name: the original error's class name.
        message: the original error's message.
        stack: the original traceback text, when known.
    """

    code = "step_errored"
    retriable = False

    def __init__(self, message: str, *, name: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.stack = stack


class StepTimeoutError(SteplineError):
    """A step's code ran longer than its timeout (``step.run(..., timeout=)`` or
    ``Timeouts(step=)``): the attempt failed, and is retried like any failed attempt.

    An async step is cancelled at its timeout; a sync one is abandoned (its thread runs
    on, and what it returns is ignored). After the last attempt the step fails for good
    and the run with it, with this error's name, unless the function catches the
    ``StepError`` it raises.
    """

    code = "step_timeout"


class BodyTooLargeError(SteplineError):
    """The request body exceeds the handler's limit."""

    code = "body_too_large"
    status = 413
    retriable = False


class MethodNotAllowedError(SteplineError):
    """The serve endpoint answers GET, PUT and POST only."""

    code = "method_not_allowed"
    status = 405
    retriable = False


class RunStateUnavailableError(SteplineError):
    """The engine could not hand over a run's events or step state (large payloads)."""

    code = "run_state_unavailable"
    status = 500


class StreamMessageTooLargeError(SteplineError):
    """A message published on a run's stream is over the size limit.

    The limit is the client setting ``max_stream_message_bytes`` (default 1 MiB, the
    engine's default too), checked against the JSON of the published value before it
    is sent; an engine with a lower limit refuses it with the same error.
    """

    code = "stream_message_too_large"
    status = 500  # a function (or step) error: the value will not shrink on a retry
    retriable = False


class StreamPublishError(SteplineError):
    """The engine did not store a message published with ``step.publish``.

    Fails the step: retried when the engine may accept it later (unreachable, 5xx), for
    good when it cannot (no stream routes: not a Stepline engine; the run has ended).
    """

    code = "stream_publish_failed"
    status = 500

    def __init__(self, message: str = "", *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable
