"""``examples/streams``: run as its README says (one command), then read it as a browser would.

The app runs in a child process with the embedded engine on a SQLite file in
``tmp_path``. A reader with the page's cookie starts a report and follows the kit's SSE
route: every message once, in seq order, progress ``n of N`` and the summaries' tokens,
then the result; it drops off mid-stream and reconnects with ``Last-Event-ID`` (no gap,
no duplicate). Readers without the cookie, or with another browser's, see nothing.
The page itself in headless Chromium: ``tests/dashboard/test_streams_browser.py``.
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

from tests._support.processes import clean_env, free_port, spawned

pytestmark = [pytest.mark.process]

APP = Path(__file__).resolve().parents[2] / "examples" / "streams" / "app.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example's URL, served by ``python examples/streams/app.py``."""
    folder = tmp_path_factory.mktemp("streams")
    port = free_port()
    env = clean_env(PORT=str(port), STEPLINE_DATABASE_URL=str(folder / "embedded.db"))
    url = f"http://127.0.0.1:{port}"
    with spawned(
        [sys.executable, str(APP)], log=folder / "app.log", env=env, cwd=folder, up=url + "/"
    ):
        yield url


@pytest.fixture
def browser(site: str) -> Iterator[Callable[[], httpx.Client]]:
    """Makes HTTP clients that opened the page once (each holds its ``reporter`` cookie)."""
    with contextlib.ExitStack() as stack:
        yield lambda: opened(stack.enter_context(httpx.Client(base_url=site, timeout=30)))


def opened(http: httpx.Client) -> httpx.Client:
    page = http.get("/")
    assert page.status_code == 200
    assert "EventSource" in page.text
    assert "reporter" in http.cookies
    return http


def start(http: httpx.Client, files: int, pause: float) -> dict[str, Any]:
    body = {"function": "build-report", "data": {"files": files, "pause": pause}}
    answer = http.post("/api/runs", json=body)
    assert answer.status_code == 201, answer.text
    started: dict[str, Any] = answer.json()
    return started


def events(lines: Iterator[str], stop_after: int | None = None) -> list[tuple[str, Any, str]]:
    """``(event, data, id)`` triples; stops after ``stop_after`` messages."""
    found: list[tuple[str, Any, str]] = []
    name, event_id = "message", ""
    count = 0
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            found.append((name, json.loads(line[6:]), event_id if name == "message" else ""))
            count += name == "message"
            name, event_id = "message", ""
            if stop_after is not None and count >= stop_after:
                break
    return found


def messages(found: list[tuple[str, Any, str]]) -> list[dict[str, Any]]:
    out = []
    for name, data, event_id in found:
        if name == "message":
            assert event_id == str(data["seq"])
            out.append(data)
    return out


def test_the_page_and_a_whole_report(browser: Callable[[], httpx.Client]) -> None:
    http = browser()
    started = start(http, files=4, pause=0)
    with http.stream("GET", started["links"]["events"]) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        found = events(stream.iter_lines())
    assert found[-1][0] == "result"
    output = found[-1][1]["output"]
    got = messages(found)
    assert [m["seq"] for m in got] == list(range(1, output["messages"] + 1))
    progress = [m["data"] for m in got if m["topic"] == "progress"]
    assert [p["label"] for p in progress] == ["1 of 4", "2 of 4", "3 of 4", "4 of 4"]
    assert [p["partial"]["file"] for p in progress] == [f"file-{n:02d}.csv" for n in (1, 2, 3, 4)]
    tokens = [m["data"] for m in got if m["topic"] == "tokens"]
    assert len(tokens) == output["tokens"]
    # the tokens of each file spell its summary, in order
    for part in progress:
        words = [t["token"] for t in tokens if t["file"] == part["done"]]
        assert " ".join(words) == part["partial"]["summary"]


def test_a_reader_drops_off_and_resumes_without_gap_or_duplicate(
    browser: Callable[[], httpx.Client],
) -> None:
    http = browser()
    started = start(http, files=5, pause=0.3)
    with http.stream("GET", started["links"]["events"]) as stream:
        first = messages(events(stream.iter_lines(), stop_after=3))
    last = first[-1]["seq"]
    with http.stream("GET", started["links"]["events"], headers={"Last-Event-ID": str(last)}) as s:
        rest_found = events(s.iter_lines())
    rest = messages(rest_found)
    assert rest_found[-1][0] == "result"
    total = rest_found[-1][1]["output"]["messages"]
    assert [m["seq"] for m in first + rest] == list(range(1, total + 1))


def test_readers_without_the_cookie_or_with_another_see_nothing(
    site: str, browser: Callable[[], httpx.Client]
) -> None:
    owner = browser()
    started = start(owner, files=1, pause=0)
    path = started["links"]["events"]
    with httpx.Client(base_url=site, timeout=30) as stranger:
        refused = stranger.get(path)
        assert refused.status_code == 401
        assert stranger.post("/api/runs", json={"function": "build-report"}).status_code == 401
    other = browser()
    hidden = other.get(path)
    assert hidden.status_code == 404
    assert b"event:" not in hidden.content
