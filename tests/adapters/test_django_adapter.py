"""The Django adapter: settings, CSRF, version checks, view choice, and a real ASGI server."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import django.test
import django.urls
import httpx
import pytest
from django.http import HttpRequest, HttpResponse
from django.test import override_settings

import stepline
import stepline.django
from stepline._protocol.hashing import hash_step_id
from tests._support.processes import answers, free_port, spawned
from tests._support.stub_server import StubServer

from .harness import make_functions
from .harness_django import configure, mount

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _django() -> None:
    configure()


def make_client(**options: Any) -> stepline.Client:
    return stepline.Client("django-app", is_production=False, environ={}, **options)


def call_body(steps: dict[str, Any], pad: int = 0) -> bytes:
    event = {"name": "t", "data": {"n": 21, "pad": "x" * pad}, "id": "e1", "ts": 1, "user": {}}
    ctx = {"run_id": "r1", "attempt": 0, "stack": {"stack": list(steps)}}
    body = {"event": event, "events": [event], "steps": steps, "ctx": ctx, "use_api": False}
    return json.dumps(body).encode()


def http() -> django.test.Client:
    return django.test.Client(enforce_csrf_checks=True)


def post(path: str, body: bytes) -> Any:
    return http().post(path, body, content_type="application/json")


def protected(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok")


# -- settings ------------------------------------------------------------------------------


@pytest.mark.slow
def test_settings_fill_in_options_and_override_the_client(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    client = make_client(api_base_url=stub_server.url, serve_path="/from-client")
    with override_settings(
        STEPLINE_SERVE_ORIGIN="https://settings.example.com", STEPLINE_SERVE_PATH="/durable"
    ):
        pattern = stepline.django.serve(client, make_functions(client), async_mode=False)
    mount(pattern)
    assert str(pattern.pattern) == "durable"
    assert http().put("/durable").status_code == 200
    [register] = stub_server.requests
    assert register["body"]["url"] == "https://settings.example.com/durable"
    assert register["body"]["framework"] == "django"


def test_arguments_win_over_settings() -> None:
    client = make_client()
    with override_settings(STEPLINE_SERVE_PATH="/from-settings", STEPLINE_ASYNC_MODE=True):
        pattern = stepline.django.serve(
            client, make_functions(client), serve_path="/from-argument", async_mode=False
        )
    assert str(pattern.pattern) == "from-argument"
    assert not inspect.iscoroutinefunction(pattern.callback)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STEPLINE_STREAMING", "sometimes"),
        ("STEPLINE_SERVE_PATH", 42),
        ("STEPLINE_THREAD_POOL_MAX_WORKERS", True),
        ("STEPLINE_ASYNC_MODE", "yes"),
    ],
)
def test_malformed_settings_are_rejected_at_serve(name: str, value: object) -> None:
    client = make_client()
    with override_settings(**{name: value}), pytest.raises(stepline.ConfigError, match="must"):
        stepline.django.serve(client, make_functions(client))


def test_function_of_another_app_is_rejected_at_serve() -> None:
    other = stepline.Client("other", is_production=False, environ={})
    with pytest.raises(stepline.ConfigError, match="belongs to app"):
        stepline.django.serve(make_client(), make_functions(other))


# -- view choice and versions -------------------------------------------------------------


def test_async_view_is_chosen_automatically_under_asgi() -> None:
    client = make_client()
    with override_settings(ASGI_APPLICATION="project.asgi.application"):
        under_asgi = stepline.django.serve(client, make_functions(client))
    plain = stepline.django.serve(client, make_functions(client))
    with override_settings(STEPLINE_ASYNC_MODE=True):
        from_setting = stepline.django.serve(client, make_functions(client))
    assert inspect.iscoroutinefunction(under_asgi.callback)
    assert not inspect.iscoroutinefunction(plain.callback)
    assert inspect.iscoroutinefunction(from_setting.callback)


def test_unsupported_django_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # an older Django cannot be installed beside the one under test: its version is faked
    client = make_client()
    monkeypatch.setattr(django, "VERSION", (5, 1, 15, "final", 0))
    monkeypatch.setattr(django, "__version__", "5.1.15")
    with pytest.raises(stepline.ConfigError, match=r"Django >= 5\.2, found 5\.1\.15"):
        stepline.django.serve(client, make_functions(client))


def test_streaming_needs_the_async_view() -> None:
    client = make_client()
    with pytest.raises(stepline.ConfigError, match="needs the async view"):
        stepline.django.serve(client, make_functions(client), streaming="force", async_mode=False)
    # A client-wide streaming setting does not break a sync deployment: it is not used.
    streaming_client = make_client(streaming="force")
    mount(stepline.django.serve(streaming_client, make_functions(streaming_client)))
    assert post("/api/inngest?fnId=django-app-sync&stepId=step", call_body({})).status_code == 206


# -- requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("async_mode", [False, True])
def test_csrf_exempt_under_csrf_middleware(async_mode: bool) -> None:
    client = make_client()
    mount(
        stepline.django.serve(client, make_functions(client), async_mode=async_mode),
        django.urls.path("protected", protected),
    )
    assert post("/protected", b"{}").status_code == 403  # the middleware is active
    url = "/api/inngest?fnId=django-app-sync&stepId=step"
    first = post(url, call_body({}))
    assert first.status_code == 206
    [op] = json.loads(first.content)
    second = post(url, call_body({hash_step_id("double"): {"data": op["data"]}}))
    assert json.loads(second.content) == {"n": 42, "kind": "sync"}


def test_bodies_beyond_data_upload_max_memory_size_are_served() -> None:
    client = make_client()
    mount(stepline.django.serve(client, make_functions(client), async_mode=False))
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        reply = post("/api/inngest?fnId=django-app-async&stepId=step", call_body({}, pad=4096))
    assert reply.status_code == 206


def test_misrouted_method_with_a_body_gets_405_and_the_app_keeps_working() -> None:
    client = make_client()
    mount(stepline.django.serve(client, make_functions(client), async_mode=False))
    deleted = http().delete("/api/inngest", b'{"x": 1}', content_type="application/json")
    assert deleted.status_code == 405
    assert json.loads(deleted.content)["code"] == "method_not_allowed"
    assert post("/api/inngest?fnId=django-app-sync", b"{not json").status_code == 400
    assert http().get("/api/inngest").status_code == 200


def test_mounted_under_an_include_prefix(stub_server: StubServer) -> None:
    stub_server.answer = lambda _req: (200, {"ok": True})
    client = make_client(api_base_url=stub_server.url)
    inner = [stepline.django.serve(client, make_functions(client), async_mode=False)]
    mount(django.urls.path("jobs/", django.urls.include(inner)))
    assert http().get("/jobs/api/inngest").status_code == 200
    assert http().put("/jobs/api/inngest").status_code == 200
    assert stub_server.requests[0]["body"]["url"] == "http://testserver/jobs/api/inngest"
    assert http().get("/api/inngest").status_code == 404


def test_async_view_streams_under_the_async_client() -> None:
    client = make_client()
    mount(stepline.django.serve(client, make_functions(client), streaming="force", async_mode=True))

    async def run() -> tuple[int, bytes]:
        url = "/api/inngest?fnId=django-app-async&stepId=step"
        response = await django.test.AsyncClient(enforce_csrf_checks=True).post(
            url, call_body({}), content_type="application/json"
        )
        assert response.streaming
        body = b"".join([chunk async for chunk in response.streaming_content])
        await client.connection.async_transport.aclose()
        return response.status_code, body

    status, body = asyncio.run(run())
    assert status == 201
    envelope = json.loads(body)
    assert envelope["status"] == 206
    assert json.loads(envelope["body"])[0]["op"] == "StepRun"


# -- behind a real ASGI server (uvicorn) ----------------------------------------------------


@pytest.fixture(params=["plain", "streaming"])
def django_server(
    request: pytest.FixtureRequest, stub_server: StubServer, tmp_path: Path
) -> Iterator[tuple[str, bool]]:
    port, streaming = free_port(), request.param == "streaming"
    env = {
        **os.environ,
        "STEPLINE_DEV": "1",
        "STEPLINE_API_BASE_URL": stub_server.url,
        "STEPLINE_STREAMING": "force" if streaming else "disable",
    }
    app_dir = str(ROOT / "examples" / "django")
    command = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "asgi:application"]
    options = ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--no-access-log"]
    base, path = f"http://127.0.0.1:{port}", tmp_path / "django.log"
    # probed at the serve path: a request elsewhere would make the dev-mode app register
    # itself with the stub in the background, racing the test's own sync
    up = f"{base}/api/inngest"
    with spawned([*command, *options], log=path, env=env, up=up, ready=answers) as proc:
        yield base, streaming
    log = path.read_text(errors="replace")  # stopping sent SIGTERM
    # A graceful shutdown: uvicorn finishes, then re-raises SIGTERM (or exits 0, if older).
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Finished server process" in log, log
    assert "Traceback" not in log, log


def run_body(event: str, data: dict[str, Any], steps: dict[str, Any]) -> dict[str, Any]:
    payload = {"name": event, "data": data, "id": "e", "ts": 1}
    ctx = {"run_id": "r", "attempt": 0, "stack": {"stack": list(steps)}}
    return {"event": payload, "events": [payload], "steps": steps, "ctx": ctx, "use_api": False}


def drive(url: str, event: str, data: dict[str, Any], *, streamed: bool) -> httpx.Response:
    steps: dict[str, Any] = {}
    for _ in range(5):
        reply = httpx.post(url, json=run_body(event, data, steps), timeout=10)
        assert (reply.status_code == 201) is streamed
        if streamed:  # the envelope carries the real answer
            envelope = json.loads(reply.content)
            reply = httpx.Response(
                envelope["status"], headers=envelope["headers"], content=envelope["body"]
            )
        if reply.status_code == 200:
            return reply
        assert reply.status_code == 206, reply.text
        for op in reply.json():
            steps[op["id"]] = {"data": op["data"]}
    raise AssertionError("function did not complete")


@pytest.mark.process
def test_sync_and_run_over_real_http(
    django_server: tuple[str, bool], stub_server: StubServer
) -> None:
    base, streamed = django_server
    stub_server.answer = lambda _req: (200, {"ok": True})
    sync = httpx.put(base + "/api/inngest", timeout=10)
    assert sync.status_code == 200
    [register] = stub_server.requests
    assert register["body"]["url"] == base + "/api/inngest"
    assert register["body"]["framework"] == "django"
    assert [f["id"] for f in register["body"]["functions"]] == [
        "django-example-greet",
        "django-example-count",
    ]

    url = base + "/api/inngest?stepId=step&fnId="
    greeted = drive(
        url + "django-example-greet", "example/greet", {"name": "Ada"}, streamed=streamed
    )
    assert greeted.json() == {"text": "Hello, Ada!"}
    assert greeted.headers["x-inngest-framework"] == "django"
    counted = drive(url + "django-example-count", "example/count", {"n": 4}, streamed=streamed)
    assert counted.json() == 6
