"""``stepline.ai.fold``: a page's text from a durable agent's stream messages (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import stepline
from stepline.ai import fold

R1, R2 = "a:model-request-1", "a:model-request-2"


def text(step: str, attempt: str, delta: str) -> dict[str, Any]:
    return {"type": "text", "step": step, "attempt": attempt, "part": 0, "delta": delta}


def done(step: str, attempt: str, whole: str) -> dict[str, Any]:
    return {"type": "done", "step": step, "attempt": attempt, "text": whole, "usage": {}}


def discarded(step: str, attempt: str) -> dict[str, Any]:
    return {"type": "discarded", "step": step, "attempt": attempt}


def test_live_text_is_joined_per_request_and_requests_are_separated() -> None:
    messages = [text(R1, "0-a", "Let me "), text(R1, "0-a", "check."), text(R2, "0-b", "42.")]
    assert fold(messages) == "Let me check.\n\n42."
    assert fold(messages, separator=" ") == "Let me check. 42."
    assert fold([]) == ""


def test_a_discarded_attempt_shows_nothing_even_if_it_goes_on_publishing() -> None:
    messages = [
        text(R1, "0-a", "The ans"),
        discarded(R1, "0-a"),
        text(R1, "0-b", "The answer"),
        text(R1, "0-a", "wer is"),  # a process whose lease lapsed, still streaming
        text(R1, "0-b", " is 42."),
    ]
    assert fold(messages) == "The answer is 42."


def test_the_done_marker_is_the_requests_text_whatever_the_live_messages_were() -> None:
    interrupted = [text(R1, "0-a", "The ans"), text(R1, "0-b", "The answer is 42.")]
    assert fold([*interrupted, done(R1, "0-b", "The answer is 42.")]) == "The answer is 42."
    # a page that lost the live messages, or a request that was not streamed
    assert fold([done(R1, "0-b", "The answer is 42."), done(R2, "0-c", "")]) == (
        "The answer is 42."
    )
    # text published after the marker (a late process) changes nothing
    late = [done(R1, "0-b", "The answer is 42."), text(R1, "0-a", "wer")]
    assert fold(late) == "The answer is 42."


def test_stream_messages_their_wire_form_and_other_topics_messages_are_read() -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    messages = [
        stepline.StreamMessage(1, "ai", text(R1, "0-a", "Hi"), at),
        {"seq": 2, "topic": "ai", "data": text(R1, "0-a", " there"), "at": 0.0},
        {"type": "tool-call", "step": R1, "tool": "add", "tool_call_id": "c", "args": {}},
        "not a message",
        {"done": 3},
    ]
    assert fold(messages) == "Hi there"
