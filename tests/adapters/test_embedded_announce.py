"""The embedded engine says where its dashboard is.

One WARNING line on the ``stepline`` logger, once per process per engine: at startup when
``serve_origin`` is configured, else on the first request (whose origin it uses). Each
framework is driven with its own test client, and the URL logged is fetched: it answers
200 with the dashboard's page. A child process with no logging set up shows the line is
what a developer sees by default.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.test
import fastapi
import fastapi.testclient
import flask
import pytest
import tornado.testing
import tornado.web
from django.test import override_settings
from django.urls import include, path

import stepline
import stepline.django
import stepline.fastapi
import stepline.flask
import stepline.tornado
from stepline.embedded import EmbeddedEngine, _announce
from tests._support.processes import clean_env
from tests.web.django_setup import _django, mount  # noqa: F401 (_django: an autouse fixture)

PAGE = 'src="dashboard/app.js"'  # the dashboard's page loads its script relative to the mount
ORIGIN = "http://127.0.0.1:8123"
LINE = "the embedded engine's dashboard is at "


def make(**options: Any) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("announce", is_production=False, environ={}, **options)

    @client.function(id="noop", trigger=stepline.TriggerEvent(event="e/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    return client, [noop]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The dashboard URLs logged so far (the ``stepline`` logger at WARNING)."""
    caplog.set_level(logging.WARNING, logger="stepline")
    urls: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith(LINE):
                assert record.levelno == logging.WARNING
                urls.append(message.removeprefix(LINE))

    seen = Seen()
    logging.getLogger("stepline").addHandler(seen)
    try:
        yield urls
    finally:
        logging.getLogger("stepline").removeHandler(seen)


@pytest.fixture
def engines() -> Iterator[list[EmbeddedEngine]]:
    made: list[EmbeddedEngine] = []
    yield made
    for engine in made:
        engine.stop()


def split(url: str) -> tuple[str, str]:
    """``(origin, path)`` of a logged URL."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path


def test_dashboard_url_joins_origin_root_and_mount() -> None:
    assert _announce.dashboard_url("http://h:1", "/stepline") == "http://h:1/stepline/"
    assert _announce.dashboard_url("http://h:1/app/", "/ops/") == "http://h:1/app/ops/"
    assert _announce.dashboard_url("http://h:1", "") == "http://h:1/"


@pytest.mark.process
def test_once_per_engine_and_again_in_a_forked_child(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    first, other = (EmbeddedEngine(*make(), database=str(tmp_path / f"{n}.db")) for n in "ab")
    engines.extend((first, other))
    assert not first.announce(None, "/stepline")  # no origin yet: nothing to say
    assert first.announce(ORIGIN, "/stepline")
    assert not first.announce("http://127.0.0.1:1", "/stepline")
    assert other.announce(ORIGIN, "/ops")  # another engine has its own line
    assert logged == [f"{ORIGIN}/stepline/", f"{ORIGIN}/ops/"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: a new process says it again
        os._exit(0 if first.announce(ORIGIN, "/stepline") else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not first.announce(ORIGIN, "/stepline")  # still said, in this process


# -- Flask ---------------------------------------------------------------------------------


def test_flask_logs_the_dashboard_url_on_the_first_request(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    client, functions = make()
    app = flask.Flask(__name__)
    app.add_url_rule("/hello", view_func=lambda: "hi")
    stepline.flask.serve(app, client, functions, engine="embedded", database=str(tmp_path / "f.db"))
    engines.append(app.extensions["stepline"].engine)
    assert logged == []  # the origin is not known yet
    http = app.test_client()
    assert http.get("/hello", base_url="http://127.0.0.1:5000").status_code == 200
    assert http.get("/hello", base_url="http://127.0.0.1:5000").status_code == 200
    assert logged == ["http://127.0.0.1:5000/stepline/"]  # once
    origin, page = split(logged[0])
    dashboard = http.get(page, base_url=origin)
    assert dashboard.status_code == 200
    assert PAGE in dashboard.get_data(as_text=True)


def test_flask_logs_it_at_serve_with_a_serve_origin(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    client, functions = make(serve_origin=ORIGIN)
    app = flask.Flask(__name__)
    stepline.flask.serve(app, client, functions, engine="embedded", database=str(tmp_path / "f.db"))
    engines.append(app.extensions["stepline"].engine)
    assert logged == [f"{ORIGIN}/stepline/"]  # before any request
    origin, page = split(logged[0])
    dashboard = app.test_client().get(page, base_url=origin)
    assert (dashboard.status_code, PAGE in dashboard.get_data(as_text=True)) == (200, True)
    app.test_client().get("/", base_url="http://127.0.0.1:5000")
    assert len(logged) == 1


def test_flask_production_engine_not_exposed_says_nothing(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    client = stepline.Client(
        "announce", is_production=True, signing_key="signkey-prod-" + "ab" * 32, environ={}
    )
    app = flask.Flask(__name__)
    stepline.flask.serve(app, client, [], engine="embedded", database=str(tmp_path / "p.db"))
    engines.append(app.extensions["stepline"].engine)
    app.test_client().get("/", base_url="http://127.0.0.1:5000")
    assert logged == []  # no dashboard mounted: no URL to give


# -- FastAPI -------------------------------------------------------------------------------


def test_fastapi_logs_the_dashboard_url_on_the_first_request(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    client, functions = make()
    app = fastapi.FastAPI()
    app.get("/hello")(lambda: "hi")
    stepline.fastapi.serve(
        app, client, functions, engine="embedded", database=str(tmp_path / "a.db")
    )
    engines.append(app.state.stepline_engine)
    with fastapi.testclient.TestClient(app, base_url="http://127.0.0.1:8000") as http:
        assert logged == []  # started, but the origin comes from a request
        assert http.get("/hello").status_code == 200
        assert http.get("/hello").status_code == 200
        assert logged == ["http://127.0.0.1:8000/stepline/"]
        origin, page = split(logged[0])
        dashboard = http.get(origin + page)
        assert (dashboard.status_code, PAGE in dashboard.text) == (200, True)


def test_fastapi_logs_it_at_lifespan_startup_with_a_serve_origin(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    client, functions = make(serve_origin=ORIGIN)
    app = fastapi.FastAPI()
    stepline.fastapi.serve(
        app, client, functions, engine="embedded", database=str(tmp_path / "a.db")
    )
    engines.append(app.state.stepline_engine)
    assert logged == []  # serve() is not startup: the lifespan is
    with fastapi.testclient.TestClient(app, base_url=ORIGIN) as http:
        assert logged == [f"{ORIGIN}/stepline/"]  # before any request
        dashboard = http.get(logged[0])
        assert (dashboard.status_code, PAGE in dashboard.text) == (200, True)
    assert len(logged) == 1


# -- Tornado -------------------------------------------------------------------------------


class _Case(tornado.testing.AsyncHTTPTestCase):
    """``AsyncHTTPTestCase`` set up and torn down by hand."""

    __test__ = False

    def __init__(self, app: tornado.web.Application) -> None:
        super().__init__("noop")
        self.app = app

    def noop(self) -> None:
        pass

    def get_app(self) -> tornado.web.Application:
        return self.app


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hi")


@pytest.mark.slow
@pytest.mark.parametrize("engine_path", ["/stepline", "/ops/engine/"])
def test_tornado_logs_the_dashboard_url_on_the_first_request(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine], engine_path: str
) -> None:
    client, functions = make()
    app = tornado.web.Application([("/hello", Hello)])
    stepline.tornado.serve(
        app,
        client,
        functions,
        engine="embedded",
        database=str(tmp_path / "t.db"),
        engine_path=engine_path,
    )
    engines.append(app.settings["stepline_engine"])
    assert logged == []
    case = _Case(app)
    case.setUp()
    try:
        assert case.fetch("/hello").code == 200
        assert case.fetch("/hello").code == 200
        port = case.get_http_port()
        assert logged == [f"http://127.0.0.1:{port}{engine_path.rstrip('/')}/"]
        dashboard = case.fetch(split(logged[0])[1])
        assert (dashboard.code, PAGE in dashboard.body.decode()) == (200, True)
    finally:
        case.tearDown()


def test_tornado_logs_it_at_serve_with_a_serve_origin(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine]
) -> None:
    client, functions = make(serve_origin=ORIGIN)
    app = tornado.web.Application()
    stepline.tornado.serve(
        app, client, functions, engine="embedded", database=str(tmp_path / "t.db")
    )
    engines.append(app.settings["stepline_engine"])
    assert logged == [f"{ORIGIN}/stepline/"]


# -- Django --------------------------------------------------------------------------------


@pytest.mark.parametrize("namespaced", [False, True])
def test_django_logs_the_dashboard_url_where_the_url_conf_mounts_it(
    tmp_path: Path, logged: list[str], engines: list[EmbeddedEngine], namespaced: bool
) -> None:
    client, functions = make()
    engine = EmbeddedEngine(client, functions, database=str(tmp_path / "d.db"))
    engines.append(engine)
    inner = include((stepline.django.engine_urls(engine), "ops"), namespace="ops")
    mount(path("admin/", include([path("engine/", inner if namespaced else include(
        stepline.django.engine_urls(engine)))])))  # fmt: skip
    http = django.test.Client(HTTP_HOST="127.0.0.1:8000")
    assert http.get("/nothing-here").status_code == 404
    assert http.get("/nothing-here").status_code == 404
    assert logged == ["http://127.0.0.1:8000/admin/engine/"]
    dashboard = http.get(split(logged[0])[1])
    assert (dashboard.status_code, PAGE in dashboard.content.decode()) == (200, True)


def test_django_settings_engine_logs_it_with_the_serve_origin(
    tmp_path: Path, logged: list[str]
) -> None:
    setting = {
        "APP_ID": "cfg",
        "DEV": True,
        "FUNCTIONS": "tests.apps.django_kit_functions.make",
        "ENGINE": "embedded",
        "DATABASE": str(tmp_path / "cfg.db"),
        "SERVE_ORIGIN": ORIGIN,
    }
    with (
        override_settings(STEPLINE=setting),
        override_settings(INSTALLED_APPS=["stepline.django"]),
    ):
        mount(path("stepline/", include(stepline.django.default_urls())))
        assert logged == []  # the URL conf shows the mount: the first request reads it
        http = django.test.Client(HTTP_HOST="127.0.0.1:8000")
        http.get("/elsewhere")
        assert logged == [f"{ORIGIN}/stepline/"]
        dashboard = http.get(split(logged[0])[1])
        assert (dashboard.status_code, PAGE in dashboard.content.decode()) == (200, True)


# -- what a developer sees -----------------------------------------------------------------

FLASK_APP = """
import flask, stepline, stepline.flask
client = stepline.Client("announce", is_production=False, environ={{}})
app = flask.Flask("announce")
app.add_url_rule("/", view_func=lambda: "hi")
stepline.flask.serve(app, client, [], engine="embedded", database={db!r})
app.test_client().get("/", base_url="http://127.0.0.1:5000")
app.test_client().get("/", base_url="http://127.0.0.1:5000")
"""


@pytest.mark.process
def test_the_line_shows_with_no_logging_configured(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FLASK_APP.format(db=str(tmp_path / "x.db"))],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"{LINE}http://127.0.0.1:5000/stepline/"], done.stderr
