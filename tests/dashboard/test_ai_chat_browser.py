"""``examples/ai_chat`` in headless Chromium: an answer streams live, survives a SIGKILL of
the app in the middle of a streamed model response, and shows once; a refund is approved
from the page.

The example runs as its README says (one command, embedded engine on SQLite in
``tmp_path``), its canned model slowed down (``CHAT_TOKEN_DELAY``) and logging each
request it makes (``CHAT_MODEL_LOG``). The page keeps each turn's folded text, the seq of
every stream message it got and its connections in ``window.chat.turns``. The app is
killed while the second model request streams (the first is recorded), then started
again on the same database: the page reconnects with ``Last-Event-ID``, the restarted
process makes the second request again (the first never), the page drops the killed
attempt's text and shows the answer once; a reload folds the whole stream to the same
text.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.browser import Page
from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, log_tail, spawn, stop, wait_until_up

pytestmark = [pytest.mark.process, pytest.mark.browser]

APP = Path(__file__).resolve().parents[2] / "examples" / "ai_chat" / "app.py"
FIRST = "Let me look up order 7 for you."


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


class Site:
    """The example's process, started (again) on one port and one database."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.models = folder / "models.log"
        self.log = folder / "app.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(
            PORT=str(self.port),
            STEPLINE_DATABASE_URL=str(folder / "embedded.db"),
            CHAT_MODEL_LOG=str(self.models),
            CHAT_TOKEN_DELAY="0.1",
            CHAT_MODEL="",  # the canned model this test's answers are, whatever the shell sets
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        self.proc = spawn(
            [sys.executable, str(APP)], log=self.log, env=self.env, cwd=self.folder, append=True
        )
        wait_until_up(self.url + "/", self.proc, log=self.log, timeout=60)
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, log_tail(self.log)
        self.proc.kill()  # SIGKILL: no shutdown, the lease on the run's call just lapses
        self.proc.wait(15)

    def model_requests(self) -> list[tuple[str, str, int]]:
        """``(what, request, pid)`` per line of the canned model's log."""
        lines = self.models.read_text().splitlines() if self.models.exists() else []
        return [(w, n, int(pid)) for w, n, pid in (line.split() for line in lines)]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = Site(tmp_path)
    try:
        yield running
    finally:
        if running.proc is not None:
            stop(running.proc)


def turns(tab: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = tab.page.evaluate(
        "() => window.chat.turns.map(t => ({run: t.runId, text: t.text, seqs: [...t.seqs],"
        " received: t.received, connections: t.connections, result: t.result}))"
    )
    return found


def ask(tab: Page, prompt: str) -> None:
    expect(tab.page.locator("#send")).to_be_enabled()
    tab.page.fill("#prompt", prompt)
    tab.page.click("#send")


def assert_once(turn: dict[str, Any]) -> None:
    """Every stream message the page got came once, in order (the route resent none)."""
    assert turn["seqs"] == sorted(set(turn["seqs"])), turn["seqs"]
    assert turn["received"] == len(turn["seqs"])


@pytest.mark.timeout(180)
def test_killed_mid_answer_the_restarted_app_finishes_it_and_the_page_shows_it_once(
    tab: Page, site: Site
) -> None:
    # the page's EventSource fails while the app is down; Chromium logs it as an error
    tab.expected += ["/events", "ERR_CONNECTION_REFUSED", "ERR_INCOMPLETE_CHUNKED_ENCODING"]
    first_life = site.start()
    tab.page.goto(site.url + "/")
    ask(tab, "Where is order 7?")

    # live: the second request's first words are on the page while it still streams
    wait_until(
        lambda: any("Order 7 shipped" in t["text"] for t in turns(tab)),
        message="the answer streaming",
        timeout=30,
    )
    site.kill()
    [before] = turns(tab)
    assert before["result"] is None, "the answer should still be streaming: slow it down"
    assert before["text"].startswith(FIRST + "\n\nOrder 7 shipped")
    assert site.model_requests() == [
        ("model-request", "1", first_life),
        ("model-done", "1", first_life),
        ("model-request", "2", first_life),
    ]

    second_life = site.start()
    wait_until(lambda: turns(tab)[0]["result"], message="the run's result on the page", timeout=90)
    [after] = turns(tab)
    output = after["result"]["output"]
    assert after["result"]["status"] == "Completed"
    assert output.startswith("Order 7 shipped on Monday")
    assert after["text"] == f"{FIRST}\n\n{output}", "the answer once, no text twice"
    expect(tab.page.locator(".answer").first).to_have_text(f"{FIRST}\n\n{output}")
    assert after["connections"] >= 2, "the page reconnected to the restarted app"
    assert_once(after)
    # the recorded request was not made again; the interrupted one was, once
    assert site.model_requests() == [
        ("model-request", "1", first_life),
        ("model-done", "1", first_life),
        ("model-request", "2", first_life),
        ("model-request", "2", second_life),
        ("model-done", "2", second_life),
    ]

    # a reload folds the whole stream (the killed attempt's text included) to the same text
    tab.page.reload()
    wait_until(lambda: any(t["result"] for t in turns(tab)), message="the reloaded turn")
    [reloaded] = turns(tab)
    assert reloaded["text"] == after["text"]
    assert reloaded["seqs"] == list(range(1, reloaded["seqs"][-1] + 1))
    tools = 'order_status({"order_id": "7"}) · order_status → "7 shipped on Monday"'
    expect(tab.page.locator(".tools").first).to_have_text(tools)
    tab.screenshot("ai-chat-example")

    # a refund waits for a person; the page approves it and the answer says so
    ask(tab, "Please refund order 8")
    approve = tab.page.locator(".approval button.approve")
    expect(approve).to_be_visible(timeout=30_000)
    asked = 'refund wants to run with {"order_id":"8","cents":1500}'
    expect(tab.page.locator(".approval")).to_contain_text(asked)
    approve.click()
    wait_until(lambda: turns(tab)[1]["result"], message="the refund's answer", timeout=30)
    refunded = turns(tab)[1]
    assert refunded["result"]["output"] == (
        "The refund tool answered: refunded 15.00 on order 8. Anything else?"
    )
    assert refunded["text"].endswith(refunded["result"]["output"])
    assert_once(refunded)
    expect(tab.page.locator(".approval")).to_have_count(0)
