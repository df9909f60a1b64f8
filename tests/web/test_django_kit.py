"""What the web-app kit does only under Django: ``runs_urls``' names, CSRF exemption,
``async_mode`` and hooks, and whole projects.

The routes' behaviour (Django's ``Client`` and threaded WSGI server for the sync views,
its ``AsyncClient`` and uvicorn for the async views) is the contract of
``test_kit_contract``. Django is configured once per process by
``tests/adapters/harness_django`` (shared with the adapter tests, in any order); settings
changes go through ``override_settings`` (``STEPLINE`` settings and ``manage.py
stepline``: ``test_django_settings.py``). Whole projects (``tests/apps/django_site_*``, the signup
example) run in subprocesses: uvicorn plus an engine started by ``manage.py stepline
dev``, checked with the contract's scenarios over HTTP, and the example under
``runserver`` as its README says.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pydantic
import pytest
from django.test import override_settings
from django.urls import include, path, reverse

import stepline
import stepline.django
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.polling import wait_until
from tests._support.processes import answers, free_port, interrupt, wait_until_up

from .django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)
from .kit_harness import DjangoAsyncClientWeb, DjangoClientWeb

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django_signup"
TOKEN = "s3cret"
AUTH = {"x-token": TOKEN}
#: What a front end sends on a body-less POST (cancel): a cross-site form cannot.
CSRF = {"x-stepline-csrf": "1"}


# -- the kit: a client, its functions, an embedded engine ---------------------------------


class Greeting(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)


@dataclasses.dataclass
class Kit:
    client: stepline.Client
    welcome: stepline.Function
    hold: stepline.Function
    hidden: stepline.Function
    engine: EmbeddedEngine

    def start_direct(self, function: str, data: dict[str, Any]) -> str:
        return self.client.start_sync(function, data).run_id

    def authorize(self, access: stepline.web.AccessRequest) -> bool:
        """401 without a token, 403 (False) with a wrong one."""
        token = access.request.headers.get("x-token")
        if token is None:
            raise stepline.web.AccessDenied("log in first", status=401)
        return bool(token == TOKEN)

    def urls(self, *, async_mode: bool) -> list[Any]:
        return stepline.django.runs_urls(
            self.client,
            [self.welcome, self.hold],
            authorize=self.authorize,
            inputs={self.welcome: Greeting},
            async_mode=async_mode,
            poll_interval=0.05,
        )


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    client = stepline.Client("kit", is_production=False, environ={})

    @client.function(id="welcome", trigger=stepline.TriggerEvent(event="kit/welcome"))
    def welcome(ctx: stepline.SyncContext) -> dict[str, str]:
        name = ctx.step.run("load", lambda: str(ctx.event.data["name"]))
        return {"text": ctx.step.run("greet", lambda: f"Welcome, {name}!")}

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="kit/hold"))
    async def hold(ctx: stepline.Context) -> str:
        await ctx.step.run("ready", lambda: "ready")
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return "released"

    @client.function(id="hidden", trigger=stepline.TriggerEvent(event="kit/hidden"))
    def hidden(ctx: stepline.SyncContext) -> str:
        return "never shown"

    engine = EmbeddedEngine(
        client, [welcome, hold, hidden], database=str(tmp_path / "e.db"), poll_interval=0.05
    )
    made = Kit(client, welcome, hold, hidden, engine)
    yield made
    engine.stop()


# -- reaching a whole project over HTTP ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


OnEvent = Callable[[str, Any], None]


class Sse:
    """Server-Sent Events parsed as the bytes come."""

    def __init__(self, on_event: OnEvent | None) -> None:
        self.events: list[tuple[str, Any]] = []
        self._buffer = b""
        self._on_event = on_event

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            lines = block.decode().splitlines()
            names = [line[7:] for line in lines if line.startswith("event: ")]
            data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
            if names:
                self.events.append((names[0], data[0]))
                if self._on_event is not None:
                    self._on_event(names[0], data[0])


class Web(Protocol):
    async_mode: bool

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer: ...

    def events(
        self, path: str, headers: dict[str, str], on_event: OnEvent | None = None
    ) -> list[tuple[str, Any]]:
        """Follow an events stream to its end."""


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()


class HttpWeb:
    """httpx against a real server."""

    def __init__(self, base: str, *, async_mode: bool) -> None:
        self.base = base
        self.async_mode = async_mode

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        headers = dict(headers or {})
        if body is not None:  # a front end posting JSON says so (as the test clients do)
            headers.setdefault("content-type", "application/json")
        response = httpx.request(
            method, self.base + path, content=encode(body), headers=headers, timeout=30
        )
        return Answer(response.status_code, dict(response.headers), response.content)

    def events(
        self, path: str, headers: dict[str, str], on_event: OnEvent | None = None
    ) -> list[tuple[str, Any]]:
        sse = Sse(on_event)
        with httpx.stream("GET", self.base + path, headers=headers, timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for chunk in response.iter_bytes():
                sse.feed(chunk)
        return sse.events


# -- the checks run against the settings-driven site in a subprocess -----------------------

StartDirect = Callable[[str, dict[str, Any]], str]


def check_start_events_result(web: Web, prefix: str) -> None:
    start = {"function": "welcome", "data": {"name": "Ada"}, "idempotency_key": "ada"}
    started = web.request("POST", f"{prefix}/runs", start, AUTH)
    assert started.status == 201, started.body
    run_id = started.json["run_id"]
    links = started.json["links"]
    assert links["events"] == f"{prefix}/runs/{run_id}/events"
    assert links["cancel"] == f"{prefix}/runs/{run_id}/cancel"

    events = web.events(links["events"], AUTH)
    assert events[0][0] == "status"
    steps = [data for name, data in events if name == "step"]
    assert {(s["name"], s["status"]) for s in steps} >= {
        ("load", "Completed"),
        ("greet", "Completed"),
    }
    name, final = events[-1]
    assert name == "result"
    assert final["status"] == "Completed"
    assert final["output"] == {"text": "Welcome, Ada!"}

    result = web.request("GET", f"{links['result']}?wait=5", headers=AUTH)
    assert result.status == 200
    assert result.json["output"] == {"text": "Welcome, Ada!"}
    status = web.request("GET", links["self"], headers=AUTH)
    assert (status.status, status.json["status"]) == (200, "Completed")
    again = web.request("POST", f"{prefix}/runs", start, AUTH)
    assert again.status == 200
    assert (again.json["run_id"], again.json["created"]) == (run_id, False)


def check_cancel_while_following(web: Web, prefix: str) -> None:
    started = web.request("POST", f"{prefix}/runs", {"function": "hold"}, AUTH)
    assert started.status == 201, started.body
    links = started.json["links"]
    ready = threading.Event()

    def on_event(name: str, data: Any) -> None:
        if name == "step" and (data["name"], data["status"]) == ("ready", "Completed"):
            ready.set()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        following = pool.submit(web.events, links["events"], AUTH, on_event)
        assert ready.wait(30), "no step event for 'ready'"
        assert web.request("GET", links["cancel"], headers=AUTH).status == 405
        cancelled = web.request("POST", links["cancel"], headers={**AUTH, **CSRF})
        assert cancelled.status == 200, cancelled.body
        assert cancelled.json["status"] == "Cancelled"
        events = following.result(timeout=30)  # the stream ends with the run
    assert events[-1][0] == "result"
    assert events[-1][1]["status"] == "Cancelled"
    result = web.request("GET", links["result"], headers=AUTH)
    assert (result.status, result.json["status"]) == (200, "Cancelled")


def check_refusals(web: Web, prefix: str, start_direct: StartDirect) -> None:
    unknown = web.request("GET", f"{prefix}/runs/01NOSUCHRUN", headers=AUTH)
    assert (unknown.status, unknown.json) == (404, {"error": "run 01NOSUCHRUN not found"})
    assert web.request("GET", f"{prefix}/runs/01NOSUCHRUN/events", headers=AUTH).status == 404

    run_id = start_direct("welcome", {"name": "Bo"})
    for method, route in (("POST", "/runs"), ("GET", f"/runs/{run_id}")):
        body = {"function": "welcome", "data": {"name": "Bo"}} if method == "POST" else None
        missing = web.request(method, prefix + route, body)
        assert (missing.status, missing.json["error"]) == (401, "log in first")
        wrong = web.request(method, prefix + route, body, {"x-token": "guess"})
        # refused on a run route: the unknown run's 404, so refusals reveal no run ids
        refusal = (403, "forbidden") if method == "POST" else (404, f"run {run_id} not found")
        assert (wrong.status, wrong.json["error"]) == refusal

    invalid = web.request("POST", f"{prefix}/runs", {"function": "welcome", "data": {}}, AUTH)
    assert invalid.status == 422
    assert invalid.json["error"] == "data does not match the function's input"
    assert [e["loc"] for e in invalid.json["detail"]] == [["name"]]
    garbled = web.request("POST", f"{prefix}/runs", b"{not json", AUTH)
    assert garbled.status == 400
    assert garbled.json["error"].startswith("body is not valid JSON")
    nameless = web.request("POST", f"{prefix}/runs", {"data": {}}, AUTH)
    assert (nameless.status, nameless.json["error"]) == (
        400,
        "function: want the id of the function to start",
    )

    hidden = web.request("POST", f"{prefix}/runs", {"function": "hidden"}, AUTH)
    assert (hidden.status, hidden.json["error"]) == (
        404,
        "function 'hidden' cannot be started here",
    )
    hidden_run = start_direct("hidden", {})
    for route in ("", "/result", "/events"):
        shown = web.request("GET", f"{prefix}/runs/{hidden_run}{route}", headers=AUTH)
        assert (shown.status, shown.json) == (404, {"error": f"run {hidden_run} not found"})
    hidden_cancel = f"{prefix}/runs/{hidden_run}/cancel"
    assert web.request("POST", hidden_cancel, headers={**AUTH, **CSRF}).status == 404


# -- runs_urls specifics ---------------------------------------------------------------------


def test_named_routes_under_a_nested_prefix_are_csrf_exempt(kit: Kit) -> None:
    patterns = kit.urls(async_mode=False)
    assert [p.name for p in patterns] == [
        "stepline-runs",
        "stepline-run",
        "stepline-run-cancel",
        "stepline-run-result",
        "stepline-run-events",
        "stepline-approvals",
        "stepline-approval",
        "stepline-approval-approve",
        "stepline-approval-reject",
    ]
    assert all(getattr(p.callback, "csrf_exempt", False) for p in patterns)
    mount(path("a/b/", include(patterns)))
    assert reverse("stepline-run-events", args=["r1"]) == "/a/b/runs/r1/events"
    # enforce_csrf_checks: a POST without a token still gets through the CSRF middleware
    started = DjangoClientWeb().request("POST", "/a/b/runs", {"function": "hold"}, AUTH)
    assert started.status == 201
    assert started.json["links"]["self"].startswith("/a/b/runs/")
    assert DjangoClientWeb().request("GET", "/a/b/runs/").status == 404  # no trailing slash


def test_views_follow_the_server_kind_like_serve(kit: Kit) -> None:
    def kinds(patterns: list[Any]) -> set[bool]:
        return {inspect.iscoroutinefunction(p.callback) for p in patterns}

    args = (kit.client, [kit.welcome])
    assert kinds(stepline.django.runs_urls(*args, authorize=stepline.web.allow_all)) == {False}
    with override_settings(ASGI_APPLICATION="project.asgi.application"):
        assert kinds(stepline.django.runs_urls(*args, authorize=stepline.web.allow_all)) == {True}
    with override_settings(STEPLINE_ASYNC_MODE=True):
        assert kinds(stepline.django.runs_urls(*args, authorize=stepline.web.allow_all)) == {True}


def test_authorize_is_required_and_an_async_hook_needs_async_views(kit: Kit) -> None:
    async def check(access: stepline.web.AccessRequest) -> bool:
        return access.request.headers.get("x-token") == TOKEN

    with pytest.raises(stepline.ConfigError, match="allow_all"):
        stepline.django.runs_urls(kit.client, [kit.welcome], authorize=None)  # type: ignore[arg-type]
    with pytest.raises(stepline.ConfigError, match="needs the async views"):
        stepline.django.runs_urls(kit.client, [kit.welcome], authorize=check, async_mode=False)
    urls = stepline.django.runs_urls(kit.client, [kit.welcome], authorize=check, async_mode=True)
    mount(path("kit/", include(urls)))
    web = DjangoAsyncClientWeb()
    body = {"function": "welcome", "data": {"name": "Cy"}}
    assert web.request("POST", "/kit/runs", body, {"x-token": "guess"}).status == 403
    assert web.request("POST", "/kit/runs", body, AUTH).status == 201

    class Checker:  # async, though inspect cannot tell from the object
        async def __call__(self, access: stepline.web.AccessRequest) -> bool:
            return await check(access)

    urls = stepline.django.runs_urls(
        kit.client, [kit.welcome], authorize=Checker(), async_mode=True
    )
    mount(path("kit/", include(urls)))
    assert web.request("POST", "/kit/runs", body, {"x-token": "guess"}).status == 403
    assert web.request("POST", "/kit/runs", body, AUTH).status == 201


def test_public_names_are_pinned() -> None:
    assert stepline.django.__all__ == [
        "FRAMEWORK",
        "MIN_VERSION",
        "default_urls",
        "durable",
        "engine_urls",
        "get_client",
        "get_engine",
        "get_functions",
        "runs_urls",
        "send_on_commit",
        "serve",
        "start_in_transaction",
    ]
    assert all(hasattr(stepline.django, name) for name in stepline.django.__all__)
    # the package re-exports public names only: the view's helpers stay in _serve
    for name in ("_reader", "_setting", "_to_django"):
        assert not hasattr(stepline.django, name), name
    from stepline.django._serve import _reader, _setting, _to_django  # noqa: F401
    from stepline.django.management.commands.stepline import Command

    assert Command.help


def test_the_engine_proxy_keeps_every_cookie() -> None:
    from stepline.django import _mount

    headers = [
        ("content-type", "text/plain"),
        ("content-length", "2"),
        ("set-cookie", "a=1; Max-Age=60; HttpOnly; SameSite=Strict"),
        ("set-cookie", "b=2"),
    ]
    response = _mount._response(303, headers, b"ok")
    assert response.status_code == 303
    assert response["content-type"] == "text/plain"
    assert sorted(response.cookies) == ["a", "b"]
    assert response.cookies["a"]["httponly"] is True
    assert response.cookies["a"]["samesite"] == "Strict"


# -- whole projects in subprocesses ---------------------------------------------------------


@dataclasses.dataclass
class Process:
    """A subprocess whose output goes to files (nothing to drain, nothing to block on)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str) -> str:
        def seen() -> str | None:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.stderr()}"
            out = self.stdout()
            return out if text in out else None

        found: str = wait_until(
            seen, timeout=30, interval=0.05, message=lambda: f"{text!r} in:\n{self.stdout()}"
        )
        return found

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` and reap; a hang fails with the server's log and threads."""
        return interrupt(self.proc, log=self.err, sig=sig)


_SERIAL = itertools.count()


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], cwd: Path, logs: Path) -> Iterator[Process]:
    serial = next(_SERIAL)
    out, err = logs / f"process-{serial}.out", logs / f"process-{serial}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    process = Process(proc, out, err)
    try:
        yield process
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.process
def test_settings_driven_site_under_uvicorn_with_the_engine_of_manage_py(tmp_path: Path) -> None:
    """``python -m django stepline dev`` syncs the site it reads from settings, and runs."""
    app_port, engine_port = free_port(), free_port()
    app, engine_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{engine_port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.apps.django_site_settings",
        "SITE_ENGINE_URL": engine_url,
        "SITE_ORIGIN": app,
        "SITE_DATABASE": str(tmp_path / "engine.db"),
    }
    server = [sys.executable, "-m", "uvicorn", "tests.apps.django_site_asgi:application", "--port"]
    options = [str(app_port), "--lifespan", "off", "--no-access-log"]
    with running([*server, *options], env, ROOT, tmp_path) as site:
        wait_until_up(app, site.proc, log=site.err, ready=answers, interval=0.1)
        command = [sys.executable, "-m", "django", "stepline", "dev"]
        with running(command, env, ROOT, tmp_path) as engine:
            banner = engine.wait_for(f"✓ {app}/api/inngest synced")
            assert f"Engine     {engine_url}" in banner
            web = HttpWeb(app, async_mode=True)
            check_start_events_result(web, "/api")
            check_cancel_while_following(web, "/api")
            direct = stepline.Client(
                "site", is_production=False, api_base_url=engine_url, environ={}
            )
            try:
                check_refusals(web, "/api", lambda fn, data: direct.start_sync(fn, data).run_id)
            finally:
                direct.close()
            # Ctrl-C: the engine stops cleanly and the command returns
            assert engine.stop(signal.SIGINT) == 0, engine.stderr()
        site.stop(signal.SIGTERM)
    assert "Traceback" not in site.stderr(), site.stderr()
    assert "Traceback" not in engine.stderr(), engine.stderr()


def example_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SIGNUP_DATA_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
    }


@pytest.mark.process
def test_signup_example_under_runserver(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with running(command, example_env(tmp_path), EXAMPLE, tmp_path) as server:
        wait_until_up(base, server.proc, log=server.err, ready=answers, interval=0.1)
        with (
            httpx.Client(base_url=base, timeout=30) as browser,
            httpx.Client(base_url=base, timeout=30) as stranger,
        ):
            page = browser.get("/")
            assert page.status_code == 200
            assert "EventSource" in page.text
            assert browser.post("/signup", data={"email": "a@example.com"}).status_code == 415
            assert browser.post("/signup", json={"email": "nope"}).status_code == 400

            signed = browser.post("/signup", json={"email": "ada@example.com", "name": "Ada"})
            assert signed.status_code == 201, signed.text
            user_id, run_id = signed.json()["user_id"], signed.json()["run_id"]
            assert signed.json()["events"] == f"/api/runs/{run_id}/events"
            sse = Sse(None)
            with browser.stream("GET", signed.json()["events"]) as stream:
                assert stream.status_code == 200
                for chunk in stream.iter_bytes():
                    sse.feed(chunk)
            steps = [data["name"] for name, data in sse.events if name == "step"]
            assert steps == ["load-user", "send-welcome-email", "mark-onboarded"]
            assert sse.events[-1][0] == "result"
            assert sse.events[-1][1]["output"] == {
                "user_id": user_id,
                "email": "ada@example.com",
                "welcomed": True,
            }

            status = browser.get(signed.json()["status"]).json()
            assert status["user"]["onboarded"] is True
            assert status["run"]["status"] == "Completed"
            assert browser.get(f"/api/runs/{run_id}/result").json()["status"] == "Completed"
            taken = browser.post("/signup", json={"email": "ada@example.com"})
            assert taken.status_code == 409

            # another session sees neither the signup nor its run, and cannot start runs
            assert stranger.get(signed.json()["status"]).status_code == 404
            assert stranger.get(f"/api/runs/{run_id}").status_code == 404
            direct = stranger.post("/api/runs", json={"function": "onboarding", "data": {}})
            assert (direct.status_code, direct.json()["error"]) == (403, "sign up at POST /signup")
            # the embedded engine's API and dashboard (DEBUG: a dev-mode client)
            listed = stranger.get("/stepline/v1/runs").json()["data"]
            assert [r["run_id"] for r in listed] == [run_id]
            assert stranger.get("/stepline/").status_code == 200
        server.stop(signal.SIGINT)
    assert "Hello Ada, welcome aboard!" in server.stdout()  # the console email backend
    assert "Traceback" not in server.stderr(), server.stderr()


@pytest.mark.process
def test_signup_example_management_commands(tmp_path: Path) -> None:
    env = example_env(tmp_path)

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            env=env,
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )

    migrated = manage("stepline", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"{tmp_path / 'stepline.db'} at schema version" in migrated.stdout
    signed = manage("signup", "bo@example.com", "--name", "Bo", "--wait", "20")
    assert signed.returncode == 0, signed.stderr
    assert "user 1: onboarding run " in signed.stdout
    assert "Hello Bo, welcome aboard!" in signed.stdout
    result = {"user_id": 1, "email": "bo@example.com", "welcomed": True}
    assert f"onboarded: {json.dumps(result)}" in signed.stdout
    again = manage("signup", "bo@example.com")
    assert again.returncode == 1
    assert "bo@example.com has already signed up" in again.stderr
    embedded = manage("stepline", "dev")
    assert embedded.returncode == 1
    assert "the engine runs inside the web process" in embedded.stderr
