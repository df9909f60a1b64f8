"""Tokens: what one model request used, the run's budget, and the step span's attributes."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from stepline import _errors

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelResponse

__all__ = ["TokenBudget", "TokenBudgetExceededError", "span_attributes", "usage_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class TokenBudget:
    """The most tokens (input and output together) one run's model requests may use.

    Checked before each model request, from the usage every earlier model-request step
    of the run recorded (so a replay counts the same): once the run has used ``tokens``
    or more, the next request is not made and the run fails with
    ``TokenBudgetExceededError``, without retries. One request may take the run past
    the budget; the budget stops the one after it.

    Args:
        tokens: the budget, a positive number of tokens.
    """

    tokens: int

    def __post_init__(self) -> None:
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise _errors.ConfigError(f"TokenBudget(tokens=) is an int >= 1, got {self.tokens!r}")

    def check(self, used: int, *, step_id: str) -> None:
        """Raise ``TokenBudgetExceededError`` if ``used`` tokens leave nothing for ``step_id``."""
        if used >= self.tokens:
            raise TokenBudgetExceededError(
                f"the run's token budget of {self.tokens} tokens is spent: its model requests "
                f"used {used} tokens, so {step_id} was not made "
                "(stepline.ai.TokenBudget, given to DurableAgent as budget=)",
                budget=self.tokens,
                used=used,
            )


class TokenBudgetExceededError(_errors.NonRetriableError):
    """A run's model requests used its ``TokenBudget``: the run fails, with no retry.

    Attributes:
        budget: the budget's tokens.
        used: the tokens the run's model requests had used.
    """

    code = "token_budget_exceeded"

    def __init__(self, message: str, *, budget: int, used: int) -> None:
        super().__init__(message)
        self.budget = budget
        self.used = used


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
