"""What a durable agent puts on its run's stream, and the fold a page builds its text with.

Every message is a JSON object with a ``type``, the ``step`` it belongs to and, for what
a step's attempt publishes while it runs, that ``attempt``:

- ``text``: a text delta of a streamed model response (``part``: the response part's index);
- ``discarded``: an earlier attempt of ``step`` that will never finish: its text is void;
- ``done`` (durable, exactly once per model request): the ``attempt`` whose response was
  recorded, with its whole ``text`` and ``usage``;
- ``tool-call``: a tool the recorded response calls (``tool``, ``tool_call_id``, ``args``);
- ``tool-result``: what that tool call returned (``content``), or the ``retry`` it asked.

Attempt ids are opaque strings, new for every execution of a step: a lapsed lease runs a
step again with the same engine attempt number, so the number alone cannot tell two
executions apart. ``fold`` is pure; the JavaScript twin in docs/ai-agents.md follows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["fold"]

TEXT = "text"
DISCARDED = "discarded"
DONE = "done"
TOOL_CALL = "tool-call"
TOOL_RESULT = "tool-result"


def text_delta(step: str, attempt: str, part: int, delta: str) -> dict[str, Any]:
    """A text delta of ``attempt`` of the model request ``step``."""
    return {"type": TEXT, "step": step, "attempt": attempt, "part": part, "delta": delta}


def discarded(step: str, attempt: str) -> dict[str, Any]:
    """``attempt`` of ``step`` is void: a later attempt runs the step again."""
    return {"type": DISCARDED, "step": step, "attempt": attempt}


def done(step: str, attempt: str, text: str, usage: Mapping[str, Any]) -> dict[str, Any]:
    """The model request ``step`` is recorded: ``attempt``'s response, whole."""
    return {"type": DONE, "step": step, "attempt": attempt, "text": text, "usage": dict(usage)}


def tool_call(step: str, tool: str, tool_call_id: str, args: Any) -> dict[str, Any]:
    """A tool call of the recorded response of the model request ``step``."""
    return {
        "type": TOOL_CALL,
        "step": step,
        "tool": tool,
        "tool_call_id": tool_call_id,
        "args": args,
    }


def tool_result(
    step: str, tool: str, tool_call_id: str, outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """The recorded outcome of the tool call step ``step``: its content, or a retry."""
    message: dict[str, Any] = {
        "type": TOOL_RESULT,
        "step": step,
        "tool": tool,
        "tool_call_id": tool_call_id,
    }
    if outcome.get("kind") == "retry":
        message["retry"] = outcome.get("message")
    else:
        message["content"] = outcome.get("value")
    return message


def attempts_of(step: str, messages: Iterable[Any]) -> list[str]:
    """The attempts of ``step`` that published in ``messages`` (stream messages or their
    data), in order of first appearance, leaving out those already marked discarded."""
    seen: list[str] = []
    void: set[str] = set()
    for message in messages:
        data = _data(message)
        if data is None or data.get("step") != step:
            continue
        attempt = data.get("attempt")
        if not isinstance(attempt, str):
            continue
        if data.get("type") == DISCARDED:
            void.add(attempt)
        elif attempt not in seen:
            seen.append(attempt)
    return [attempt for attempt in seen if attempt not in void]


def fold(messages: Iterable[Any], *, separator: str = "\n\n") -> str:
    """The text an agent's run has said so far, from its stream's messages, in order.

    Each model request contributes its recorded text once its ``done`` marker arrived,
    else the live text of its latest attempt not marked discarded; requests are joined
    with ``separator`` (those without text are left out). An interrupted attempt's text
    never shows, nor any text twice, whatever order of attempts the stream holds.

    Args:
        messages: ``stepline.StreamMessage`` objects of the agent's topic, their wire
            form (``{"seq", "topic", "data", "at"}``), or their ``data`` alone.
        separator: what goes between the texts of two model requests.

    Returns:
        The text, ``""`` when no model request said anything yet.

    Example:
        >>> fold([{"type": "text", "step": "a:model-request-1", "attempt": "0-x",
        ...        "part": 0, "delta": "Hel"},
        ...       {"type": "text", "step": "a:model-request-1", "attempt": "0-x",
        ...        "part": 0, "delta": "lo"}])
        'Hello'
    """
    order: list[str] = []
    live: dict[str, dict[str, list[str]]] = {}
    void: set[tuple[str, str]] = set()
    final: dict[str, str] = {}
    for message in messages:
        data = _data(message)
        if data is None:
            continue
        kind, step, attempt = data.get("type"), data.get("step"), data.get("attempt")
        if not isinstance(step, str) or kind not in (TEXT, DISCARDED, DONE):
            continue
        if step not in live:
            order.append(step)
            live[step] = {}
        if kind == DONE:
            text = data.get("text")
            final[step] = text if isinstance(text, str) else ""
        elif not isinstance(attempt, str):
            continue
        elif kind == DISCARDED:
            void.add((step, attempt))
            live[step].pop(attempt, None)
        elif (step, attempt) not in void and step not in final:
            delta = data.get("delta")
            if isinstance(delta, str):
                live[step].setdefault(attempt, []).append(delta)
    texts = []
    for step in order:
        if step in final:
            texts.append(final[step])
        elif live[step]:
            texts.append("".join(list(live[step].values())[-1]))
    return separator.join(text for text in texts if text)


def _data(message: Any) -> Mapping[str, Any] | None:
    data = getattr(message, "data", message)
    if isinstance(data, Mapping) and "seq" in data and isinstance(data.get("data"), Mapping):
        data = data["data"]
    return data if isinstance(data, Mapping) else None
