"""The durable model: each request, streamed or not, is one Stepline step.

The step records the response (Pydantic AI's own message serialisation), its usage and
the id of the attempt that produced it; a replay rebuilds the response from that record
and never calls the model. A streamed request drains the model's stream inside the step,
publishing its text deltas as they arrive; the agent then gets the recorded response as
a completed stream. After the step, a durable ``done`` marker closes the request on the
run's stream.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
)
from pydantic_ai.models import (
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from stepline import _errors
from stepline._execution.context import call_state
from stepline.ai import _budgets, _steps, _stream, _usage
from stepline.ai._run import AgentRun, required


def _completed(response: ModelResponse, params: ModelRequestParameters) -> StreamedResponse:
    """The recorded response as a finished stream whose events replay its parts."""
    return CompletedStreamedResponse(response, model_request_parameters=params, replay_events=True)


__all__ = ["StepModel", "final_error"]

#: makes the request for (step id, attempt id), inside the step
Make = Callable[[str, str], Awaitable[ModelResponse]]


class StepModel(WrapperModel):
    """A model whose ``request`` and ``request_stream`` are steps of the current agent run."""

    def __init__(self, wrapped: Model | str) -> None:
        super().__init__(wrapped)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """One model request, as a step (replays return the recorded response).

        With the agent's ``stream`` and a ``topic``, the request is made as a streamed one
        inside the step, so that its text goes onto the run's stream as it arrives.
        """
        run = required("a model request")
        if run.options.stream and run.options.topic is not None:
            make = self._streamed(
                run,
                run.options.topic,
                messages=messages,
                model_settings=model_settings,
                params=model_request_parameters,
                run_context=None,
            )
            return await _request(run, self, make, model_request_parameters)

        async def make_plain(step_id: str, attempt: str) -> ModelResponse:
            return await self.wrapped.request(messages, model_settings, model_request_parameters)

        return await _request(run, self, make_plain, model_request_parameters)

    @contextlib.asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """One streamed model request, as a step; the agent gets the recorded response."""
        run = required("a model request")
        topic = run.options.topic
        make = self._streamed(
            run,
            topic,
            messages=messages,
            model_settings=model_settings,
            params=model_request_parameters,
            run_context=run_context,
        )
        response = await _request(run, self, make, model_request_parameters)
        yield _completed(response, model_request_parameters)

    def _streamed(
        self,
        run: AgentRun,
        topic: str | None,
        *,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        params: ModelRequestParameters,
        run_context: RunContext[Any] | None,
    ) -> Make:
        """The body of a streamed request: earlier attempts discarded, deltas published."""

        async def make(step_id: str, attempt: str) -> ModelResponse:
            if topic is not None:
                await _discard_earlier(run, topic, step_id)
            stream = self.wrapped.request_stream(messages, model_settings, params, run_context)
            async with stream as streamed:
                async for event in streamed:
                    if topic is not None and (delta := _text_delta(event)) is not None:
                        part, text = delta
                        run.ctx.publish(topic, _stream.text_delta(step_id, attempt, part, text))
                return streamed.get()

        return make


async def _request(
    run: AgentRun, model: StepModel, make: Make, params: ModelRequestParameters
) -> ModelResponse:
    """The model request step of ``run``, its budget checked first and its marker after."""
    ctx, options = run.ctx, run.options
    step_id = run.next_request_id()
    book = _steps.ledger(ctx)
    budget = options.budget
    charge: dict[str, Any] | None = None
    if budget is not None and budget.spans_runs:
        charge = await _budgets.before_request(run, budget, step_id)
    elif budget is not None:
        await _budgets.before_run_request(run, budget, step_id, book.tokens)
    traced = call_state(ctx).observer is not None

    async def body() -> dict[str, Any]:
        attempt = f"{ctx.attempt}-{secrets.token_hex(3)}"
        try:
            response = await make(step_id, attempt)
        except Exception as exc:
            raise final_error(exc, ctx.attempt, options.model_retries, step_id) from exc
        usage = _usage.usage_of(response)
        if traced:
            _usage.annotate_current_span(
                _usage.span_attributes(usage, request_model=model.wrapped.model_name)
            )
        return {"response": _dump(response), "usage": usage, "attempt": attempt}

    def opts(value: dict[str, Any]) -> dict[str, Any]:
        """What the engine records with the step: its usage, the budget it is charged to."""
        usage = value["usage"]
        used = {k: usage.get(k) for k in ("input_tokens", "output_tokens", "model")}
        return {_usage.OPTS_KEY: {"usage": used, "budgets": [charge] if charge else []}}

    value = await _steps.run_step(ctx, step_id, body, timeout=options.model_timeout, opts=opts)
    response = _load(value["response"])
    usage = value.get("usage") or {}
    book.tokens += _usage.tokens_of(usage)
    if options.topic is not None:
        marker = _stream.done(step_id, str(value.get("attempt")), _text_of(response), usage)
        await _steps.publish_durable(ctx, f"{step_id}:done", options.topic, marker)
        outputs = {tool.name for tool in params.output_tools}
        for part in response.parts:
            if isinstance(part, ToolCallPart) and part.tool_name not in outputs:
                message = _stream.tool_call(step_id, part.tool_name, part.tool_call_id, part.args)
                ctx.publish(options.topic, message)
    return response


async def _discard_earlier(run: AgentRun, topic: str, step_id: str) -> None:
    """Mark discarded every earlier attempt of ``step_id`` that published on ``topic``:
    one that failed, or whose process died mid-response (read back from the stream)."""
    book = _steps.ledger(run.ctx)
    earlier = _stream.attempts_of(step_id, await _steps.read_topic(run.ctx, topic, book.last_seq))
    for attempt in earlier:
        run.ctx.publish(topic, _stream.discarded(step_id, attempt))


def final_error(exc: Exception, attempt: int, retries: int | None, step_id: str) -> Exception:
    """``exc``, or a ``NonRetriableError`` once ``step_id`` used its ``retries``."""
    if retries is None or attempt < retries or isinstance(exc, _errors.NonRetriableError):
        return exc
    return _errors.NonRetriableError(
        f"{step_id} failed on its attempt {attempt + 1} of {retries + 1}: "
        f"{type(exc).__name__}: {exc}"
    )


def _text_delta(event: object) -> tuple[int, str] | None:
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return (event.index, event.part.content) if event.part.content else None
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return (event.index, event.delta.content_delta) if event.delta.content_delta else None
    return None


def _text_of(response: ModelResponse) -> str:
    return "".join(part.content for part in response.parts if isinstance(part, TextPart))


def _dump(response: ModelResponse) -> Any:
    return ModelMessagesTypeAdapter.dump_python([response], mode="json")[0]


def _load(data: Any) -> ModelResponse:
    [message] = ModelMessagesTypeAdapter.validate_python([data])
    if not isinstance(message, ModelResponse):
        raise _errors.StepError(
            f"the recorded model response is a {type(message).__name__}", name="ValueError"
        )
    return message
