"""One app on the embedded engine, served by Flask, Django or FastAPI under gunicorn.

For ``test_process_managers``. The environment says where things go: ``PM_DATABASE`` (the
engine's SQLite file), ``PM_MARKS`` (each step appends ``start RUN STEP PID`` when it
begins and ``done RUN STEP PID TOKEN`` when it returns TOKEN, a fresh one each time),
``PM_LEASE`` (the engine's lease, in seconds). With ``PM_SEND_AT_IMPORT=1`` the module
sends one ``pm/work`` event while it is imported (in gunicorn ``--preload``'s master).

Routes: ``POST /send`` (JSON ``{"events": [{"name", "data"}]}``; a Stepline call) and
``GET /plain`` (nothing of Stepline's). Apps: ``flask_app``, ``fastapi_app`` and, with
``DJANGO_SETTINGS_MODULE=tests.apps.process_manager``, ``django_app``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path
from typing import Any

import stepline
from stepline.embedded import EmbeddedEngine

APP_ID = "pm"
WORK, NAP, FLAKY = "pm/work", "pm/nap", "pm/flaky"
ENGINE_OPTIONS = {
    "poll_interval": 0.1,
    "lease_seconds": float(os.environ.get("PM_LEASE", "3")),
    "retry_scale": 0.2,  # a first retry 3 s after the failure
    "retry_jitter": 0,
}


def mark(line: str) -> None:
    """Append one line to the markers (one write: lines of processes never mix)."""
    fd = os.open(os.environ["PM_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def body(run_id: str, step: str, hold: float) -> str:
    mark(f"start {run_id} {step} {os.getpid()} {time.time():.2f}")
    time.sleep(hold)
    token = uuid.uuid4().hex
    mark(f"done {run_id} {step} {os.getpid()} {token} {time.time():.2f}")
    return token


def fails_first(run_id: str) -> str:
    """Step "try": its first attempt fails (``fail RUN try PID TIME``), the next ones run."""
    marks = Path(os.environ["PM_MARKS"])
    text = marks.read_text() if marks.exists() else ""
    if f"fail {run_id} " not in text:
        mark(f"fail {run_id} try {os.getpid()} {time.time():.2f}")
        raise RuntimeError("the first attempt fails")
    return body(run_id, "try", 0)


def declare(client: stepline.Client) -> list[stepline.Function]:
    """``work`` (steps a, b holding ``data.hold`` s, c), ``nap`` (a sleep between steps) and
    ``flaky`` (a step retried once)."""

    @client.function(id="work", trigger=stepline.TriggerEvent(event=WORK))
    def work(ctx: stepline.SyncContext) -> dict[str, str]:
        hold = float(ctx.event.data.get("hold", 0))
        return {
            step: ctx.step.run(step, body, ctx.run_id, step, hold if step == "b" else 0)
            for step in ("a", "b", "c")
        }

    @client.function(id="nap", trigger=stepline.TriggerEvent(event=NAP))
    def nap(ctx: stepline.SyncContext) -> dict[str, str]:
        before = ctx.step.run("before", body, ctx.run_id, "before", 0)
        ctx.step.sleep("nap", dt.timedelta(seconds=float(ctx.event.data["seconds"])))
        return {"before": before, "after": ctx.step.run("after", body, ctx.run_id, "after", 0)}

    @client.function(id="flaky", trigger=stepline.TriggerEvent(event=FLAKY), retries=2)
    def flaky(ctx: stepline.SyncContext) -> dict[str, str]:
        return {"try": ctx.step.run("try", fails_first, ctx.run_id)}

    return [work, nap, flaky]


def send(client: stepline.Client, payload: dict[str, Any]) -> list[str]:
    events = [stepline.Event(name=e["name"], data=e.get("data", {})) for e in payload["events"]]
    return client.send_sync(events)


def engine(client: stepline.Client, functions: list[stepline.Function]) -> EmbeddedEngine:
    return EmbeddedEngine(client, functions, database=os.environ["PM_DATABASE"], **ENGINE_OPTIONS)


def flask_app() -> Any:
    import flask

    import stepline.flask

    client = stepline.Client(APP_ID, is_production=False, environ={})
    functions = declare(client)
    app = flask.Flask(__name__)
    stepline.flask.serve(app, client, functions, engine=engine(client, functions))

    @app.post("/send")
    def send_view() -> dict[str, Any]:
        return {"ids": send(client, flask.request.get_json())}

    @app.get("/plain")
    def plain() -> str:
        return f"plain {os.getpid()}"

    if os.environ.get("PM_SEND_AT_IMPORT") == "1":
        send(client, {"events": [{"name": WORK, "data": {"hold": 0}}]})
    return app


def fastapi_app() -> Any:
    import fastapi

    import stepline.fastapi

    client = stepline.Client(APP_ID, is_production=False, environ={})
    functions = declare(client)
    app = fastapi.FastAPI()
    stepline.fastapi.serve(app, client, functions, engine=engine(client, functions))

    @app.post("/send")
    def send_view(payload: dict[str, Any]) -> dict[str, Any]:
        return {"ids": send(client, payload)}

    @app.get("/plain")
    def plain() -> str:
        return f"plain {os.getpid()}"

    return app


# -- Django: this module is the settings, the URL conf and the FUNCTIONS factory -----------

SECRET_KEY = "process-manager-tests-not-secret"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["stepline.django"]
DATABASES: dict[str, Any] = {}
USE_TZ = True
STEPLINE = {
    "APP_ID": APP_ID,
    "DEV": True,
    "FUNCTIONS": f"{__name__}.django_functions",
    "ENGINE": "embedded",
    "DATABASE": os.environ.get("PM_DATABASE", ""),
    "ENGINE_OPTIONS": ENGINE_OPTIONS,
}


def django_functions() -> list[stepline.Function]:
    import stepline.django

    return declare(stepline.django.get_client())


def _django_urls() -> list[Any]:
    import json

    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    import stepline.django

    @csrf_exempt
    def send_view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"ids": send(stepline.django.get_client(), json.loads(request.body))})

    def plain(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"plain {os.getpid()}")

    return [path("send", send_view), path("plain", plain)]


def __getattr__(name: str) -> Any:
    if name == "urlpatterns":  # read by Django's URL resolver, once apps are ready
        return _django_urls()
    if name == "django_app":
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application()
    raise AttributeError(name)
