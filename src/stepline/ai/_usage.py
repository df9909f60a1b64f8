"""Tokens: what one model request used, budgets, and the step span's attributes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from stepline import _cel, _errors

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelResponse

__all__ = ["TokenBudget", "TokenBudgetExceededError", "span_attributes", "usage_of"]

#: the op ``opts`` entry a model-request step reports its usage in (the engine's ``KEY``)
OPTS_KEY = "ai"
#: the longest budget period, in seconds (the engine's bound too)
MAX_PERIOD = 366 * 86_400


@dataclasses.dataclass(frozen=True, slots=True)
class TokenBudget:
    """The most tokens (input and output together) model requests may use: per run, or
    per key and period across runs and processes.

    Without ``period`` the budget is the run's: checked before each model request, from
    the usage every earlier model-request step of the run recorded (so a replay counts
    the same).

    With ``period`` (say a day) the engine keeps the count, per ``key`` (an expression
    over the run's trigger event, as flow control's keys are: ``"event.data.customer_id"``)
    and per window of the period (aligned on the epoch: a day's runs from midnight UTC):
    each model-request step is charged as it is recorded, in the transaction that records
    it, and the count is read before each model request that has not run yet. Runs of any
    function and any process that name the same budget share it (``name``, default the
    agent's name).

    Once the budget is used, the next request is not made: with ``on_exceeded="fail"``
    the run fails with ``TokenBudgetExceededError``, without retries; with ``"wait"``
    (a period budget only) the run sleeps durably until the window ends (no worker
    held), then checks again; with ``"approve"`` the run waits durably for a person's
    decision, listed with the agents' pending approvals (the dashboard, the Django admin,
    the web kit's routes, ``client.approvals()``) with the budget, key, period and tokens
    used: approved, that one request is made (the next is checked again); rejected, the
    run fails with ``TokenBudgetExceededError`` carrying the reason. The agent's
    ``approval_timeout`` bounds the wait. One request may take the count past the
    budget; the budget stops the one after it. Requests made at once (runs in parallel) are each
    checked before the others are charged, so they may pass it together.

    Args:
        tokens: the budget, a positive number of tokens.
        key: a CEL expression over ``event``: one count per value (None: one count).
        period: a ``timedelta`` (1 s to 366 days): the budget spans runs, per window.
        name: the count's name (1-100 characters); None: the agent's name.
        on_exceeded: ``"fail"``, ``"wait"`` or ``"approve"``.

    Raises:
        ConfigError: a bad value, ``key`` or ``"wait"`` without ``period``, or a ``key``
            that is not a valid expression over ``event``.

    Example:
        >>> TokenBudget(100_000, key="event.data.customer_id", period=timedelta(days=1))
    """

    tokens: int
    key: str | None = None
    period: dt.timedelta | None = None
    name: str | None = None
    on_exceeded: Literal["fail", "wait", "approve"] = "fail"

    def __post_init__(self) -> None:
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise _errors.ConfigError(f"TokenBudget(tokens=) is an int >= 1, got {self.tokens!r}")
        if self.on_exceeded not in ("fail", "wait", "approve"):
            raise _errors.ConfigError(
                "TokenBudget(on_exceeded=) is 'fail', 'wait' or 'approve', "
                f"got {self.on_exceeded!r}"
            )
        if self.period is None:
            if self.key is not None or self.on_exceeded == "wait" or self.name is not None:
                raise _errors.ConfigError(
                    "TokenBudget(key=, name=, on_exceeded='wait') need a period= "
                    "(a budget without one is the run's)"
                )
            return
        if not isinstance(self.period, dt.timedelta) or not (
            1 <= self.period.total_seconds() <= MAX_PERIOD
        ):
            raise _errors.ConfigError(
                f"TokenBudget(period=) is a timedelta of 1 second to 366 days, got {self.period!r}"
            )
        if self.name is not None and not (isinstance(self.name, str) and 0 < len(self.name) <= 100):
            raise _errors.ConfigError(f"TokenBudget(name=) is 1-100 characters, got {self.name!r}")
        if self.key is not None:
            try:
                _cel.check(self.key, allowed={"event"})
            except (_cel.ExpressionError, TypeError) as exc:
                raise _errors.ConfigError(f"TokenBudget(key=) is not valid: {exc}") from None

    @property
    def spans_runs(self) -> bool:
        """Whether the engine keeps the count (a ``period``), rather than the run."""
        return self.period is not None

    def key_for(self, event: Mapping[str, Any]) -> str:
        """The count's key for a run triggered by ``event`` (its wire form): the key's
        value as JSON, ``"null"`` when it does not evaluate, ``""`` without a key."""
        if self.key is None:
            return ""
        try:
            value = _cel.compile(self.key).evaluate({"event": event})
        except _cel.EvaluationError:
            return "null"
        return json.dumps(value, sort_keys=True, default=str)

    def check(self, used: int, *, step_id: str) -> None:
        """Raise ``TokenBudgetExceededError`` if ``used`` tokens leave nothing for ``step_id``
        (a run's budget)."""
        if used >= self.tokens:
            raise self.run_exceeded(used, step_id=step_id)

    def run_exceeded(
        self, used: int, *, step_id: str, reason: str | None = None
    ) -> TokenBudgetExceededError:
        """The error of a run's budget its requests used ``used`` tokens of; ``reason``:
        why a person's approval to go over it did not come."""
        return TokenBudgetExceededError(
            f"the run's token budget of {self.tokens} tokens is spent: its model requests "
            f"used {used} tokens, so {step_id} was not made{_because(reason)} "
            "(stepline.ai.TokenBudget, given to DurableAgent as budget=)",
            budget=self.tokens,
            used=used,
            reason=reason,
        )

    def exceeded(
        self, name: str, key: str, used: int, *, step_id: str, reason: str | None = None
    ) -> TokenBudgetExceededError:
        """The error of a period budget ``name`` whose count for ``key`` is ``used``;
        ``reason``: why a person's approval to go over it did not come."""
        seconds = self.period.total_seconds() if self.period is not None else 0.0
        what = f"key {key}" if self.key is not None else "its one count"
        return TokenBudgetExceededError(
            f"the token budget {name!r} of {self.tokens} tokens per {_period_text(seconds)} is "
            f"spent for {what} ({self.key or 'no key'}): {used} tokens used this period, so "
            f"{step_id} was not made{_because(reason)} "
            "(stepline.ai.TokenBudget, given to DurableAgent as budget=)",
            budget=self.tokens,
            used=used,
            key=key,
            period=self.period,
            reason=reason,
        )


def _because(reason: str | None) -> str:
    return f"; going over it was {reason}" if reason else ""


def _period_text(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


class TokenBudgetExceededError(_errors.NonRetriableError):
    """A run's model requests used its ``TokenBudget``: the run fails, with no retry.

    Attributes:
        budget: the budget's tokens.
        used: the tokens used (the run's, or the key's in the period's window).
        key: the key's value (a period budget), else None.
        period: the budget's period, else None.
        reason: with ``on_exceeded="approve"``, why going over was not approved (who
            rejected it and their reason, or that no decision came in time), else None.
    """

    code = "token_budget_exceeded"

    def __init__(
        self,
        message: str,
        *,
        budget: int,
        used: int,
        key: str | None = None,
        period: dt.timedelta | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.used = used
        self.key = key
        self.period = period
        self.reason = reason


def usage_of(response: ModelResponse) -> dict[str, Any]:
    """What a model response used, as its step records it (JSON)."""
    usage = response.usage
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "requests": 1,
        "model": response.model_name,
        "provider": getattr(response, "provider_name", None),
    }


def tokens_of(usage: object) -> int:
    """The tokens (input and output) a recorded usage counts; 0 for anything else."""
    if not isinstance(usage, dict):
        return 0
    total = 0
    for key in ("input_tokens", "output_tokens"):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


def span_attributes(usage: dict[str, Any], *, request_model: str | None) -> dict[str, Any]:
    """OpenTelemetry GenAI semantic-convention attributes of one model request."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": usage["input_tokens"],
        "gen_ai.usage.output_tokens": usage["output_tokens"],
    }
    if request_model:
        attributes["gen_ai.request.model"] = request_model
    if usage.get("model"):
        attributes["gen_ai.response.model"] = usage["model"]
    if usage.get("provider"):
        attributes["gen_ai.provider.name"] = usage["provider"]
    return attributes


def annotate_current_span(attributes: dict[str, Any]) -> None:
    """Set ``attributes`` on the current span: the step's, while its code runs (tracing on)."""
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)
