"""``examples/ai_chat``: run as its README says (one command), then talk to it as its page does.

The app runs in a child process with the embedded engine on a SQLite file in
``tmp_path`` and its offline canned model. A browser (an HTTP client with the page's
cookie) asks about an order and reads the kit's SSE route with ``?topic=ai``: the stream
folds (``stepline.ai.fold``) to the run's text, each request's once; a second message
of the conversation sees the first; a refund waits for approval, listed by the kit's
approvals route, and a rejection's reason reaches the model. Another browser sees
neither the runs nor the approvals. The page itself in headless Chromium, with a SIGKILL
mid-answer: ``tests/dashboard/test_ai_chat_browser.py``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline.ai import fold
from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, spawned

pytestmark = [pytest.mark.process]

APP = Path(__file__).resolve().parents[2] / "examples" / "ai_chat" / "app.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example's URL, served by ``python examples/ai_chat/app.py``."""
    folder = tmp_path_factory.mktemp("ai_chat")
    port = free_port()
    env = clean_env(
        PORT=str(port),
        STEPLINE_DATABASE_URL=str(folder / "embedded.db"),
        CHAT_TOKEN_DELAY="0",
        CHAT_MODEL="",  # the canned model these tests' answers are, whatever the shell sets
    )
    url = f"http://127.0.0.1:{port}"
    with spawned(
        [sys.executable, str(APP)], log=folder / "app.log", env=env, cwd=folder, up=url + "/"
    ):
        yield url


@pytest.fixture
def browser(site: str) -> Iterator[Callable[[], httpx.Client]]:
    """Makes HTTP clients that opened the page once (each holds its ``chatter`` cookie)."""
    with contextlib.ExitStack() as stack:
        yield lambda: opened(stack.enter_context(httpx.Client(base_url=site, timeout=30)))


def opened(http: httpx.Client) -> httpx.Client:
    page = http.get("/")
    assert page.status_code == 200
    assert "EventSource" in page.text
    assert "chatter" in http.cookies
    return http


def say(http: httpx.Client, prompt: str, conversation: str) -> dict[str, Any]:
    body = {"function": "chat", "data": {"prompt": prompt, "conversation": conversation}}
    answer = http.post("/api/runs", json=body)
    assert answer.status_code == 201, answer.text
    started: dict[str, Any] = answer.json()
    return started


def follow(http: httpx.Client, started: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The run's ``ai`` messages (their data) and its result event, read over SSE."""
    messages: list[dict[str, Any]] = []
    name = "message"
    with http.stream("GET", started["links"]["events"], params={"topic": "ai"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if name == "result":
                    return messages, data
                if name == "message":
                    assert data["topic"] == "ai"
                    messages.append(data["data"])
                name = "message"
    raise AssertionError(f"the stream ended without a result: {messages[-3:]}")


def test_an_answer_streams_and_folds_to_the_run_text(browser: Callable[[], httpx.Client]) -> None:
    http = browser()
    messages, result = follow(http, say(http, "Where is order 7?", "c1"))
    assert result["status"] == "Completed"
    output = result["output"]
    assert output.startswith("Order 7 shipped on Monday")
    assert fold(messages) == f"Let me look up order 7 for you.\n\n{output}"
    types = [m["type"] for m in messages]
    assert types.count("done") == 2
    assert types.count("tool-call") == types.count("tool-result") == 1
    assert "discarded" not in types

    # the conversation's next message is answered with the first in its history
    _, second = follow(http, say(http, "And order 9?", "c1"))
    assert second["output"].startswith("Order 9 delivered")


def test_a_refund_waits_for_approval_and_a_rejection_reaches_the_model(
    browser: Callable[[], httpx.Client],
) -> None:
    http = browser()
    started = say(http, "Please refund order 8", "c2")

    def pending() -> list[dict[str, Any]] | None:
        found = http.get("/api/approvals")
        assert found.status_code == 200, found.text
        mine = [a for a in found.json()["approvals"] if a["run_id"] == started["run_id"]]
        return mine or None

    [approval] = wait_until(pending, message="the refund's approval", timeout=30)
    assert (approval["tool"], approval["args"]) == ("refund", {"order_id": "8", "cents": 1500})
    assert approval["schema"]["required"] == ["order_id", "cents"]

    # another browser neither sees it nor answers it
    other = browser()
    assert other.get("/api/approvals").json()["approvals"] == []
    assert other.post(approval["links"]["approve"], json={}).status_code == 404

    rejected = http.post(approval["links"]["reject"], json={"reason": "over the limit"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    messages, result = follow(http, started)
    assert result["output"] == "The refund tool answered: over the limit. Anything else?"
    assert fold(messages).endswith(result["output"])
    decided = http.get(approval["links"]["self"]).json()
    assert decided["decision"]["by"].startswith("chatter:")


def test_without_the_cookie_nothing_answers(site: str, browser: Callable[[], httpx.Client]) -> None:
    owner = browser()
    started = say(owner, "Where is order 9?", "c3")
    with httpx.Client(base_url=site, timeout=30) as stranger:
        assert stranger.get(started["links"]["events"]).status_code == 401
        assert stranger.get("/api/approvals").status_code == 401
    assert browser().get(started["links"]["events"]).status_code == 404
    follow(owner, started)
