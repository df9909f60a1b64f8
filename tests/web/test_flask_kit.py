"""What the web-app kit does only on Flask: ``runs_blueprint``'s mounting and name,
``serve(engine=)``, the ``Stepline`` extension and the orders example.

The routes' behaviour (through Flask's test client and behind a threaded werkzeug server)
is the contract of ``test_kit_contract``. Functions run on an ``EmbeddedEngine`` over a
SQLite file in ``tmp_path``; nothing waits on a clock except for a run to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import httpx
import pytest

import stepline
import stepline.flask
import stepline.web
from stepline.embedded import EmbeddedEngine
from tests._support.polling import wait_until
from tests._support.processes import answers, clean_env, free_port, interrupt, wait_until_up

pytestmark = [pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flask_orders" / "app.py"
TOKEN = "let-me-in"
AUTH = {"authorization": f"Bearer {TOKEN}"}
WAIT = 30.0  # upper bound for anything to happen; tests end far sooner
Event = tuple[str, dict[str, Any]]


@pytest.fixture(autouse=True)
def _no_stepline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients made from app.config fall back to the environment: keep it out."""
    for name in list(os.environ):
        if name.startswith(("STEPLINE_", "INNGEST_")):
            monkeypatch.delenv(name)


# -- reading a stream --------------------------------------------------------------------


class SseReader:
    """Splits Server-Sent Events out of chunks as they arrive."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[Event] = []

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            lines = dict(
                line.split(": ", 1) for line in block.decode().splitlines() if ": " in line
            )
            if "event" in lines:
                self.events.append((lines["event"], json.loads(lines["data"])))


def read_events(
    chunks: Iterable[bytes], until: Callable[[list[Event]], bool] | None
) -> list[Event]:
    reader = SseReader()
    for chunk in chunks:
        reader.feed(chunk)
        if until is not None and until(reader.events):
            break
    return reader.events


# -- runs_blueprint: mounting --------------------------------------------------------------


def test_runs_blueprint_links_follow_its_mount(tmp_path: Path) -> None:
    client = stepline.Client("flask-mount", is_production=False, environ={})

    @client.function(id="hello", trigger=stepline.TriggerEvent(event="kit/hello"))
    def hello(ctx: stepline.SyncContext) -> str:
        return "hi"

    engine = EmbeddedEngine(client, [hello], database=str(tmp_path / "m.db"), poll_interval=0.05)
    try:
        app = flask.Flask(__name__)
        outer = flask.Blueprint("outer", __name__, url_prefix="/v2")
        outer.register_blueprint(
            stepline.flask.runs_blueprint(
                client, [hello], authorize=stepline.web.allow_all, prefix="/jobs"
            )
        )
        app.register_blueprint(outer)
        http = app.test_client()
        reply = http.post("/v2/jobs/runs", json={"function": "flask-mount-hello"})
        assert reply.status_code == 201
        run_id = reply.json["run_id"]
        assert reply.json["links"]["result"] == f"/v2/jobs/runs/{run_id}/result"
        done = http.get(reply.json["links"]["result"] + "?wait=10")
        assert (done.status_code, done.json["output"]) == (200, "hi")
    finally:
        engine.stop()


def test_two_runs_blueprints_need_two_names(tmp_path: Path) -> None:
    client = stepline.Client("flask-names", is_production=False, environ={})

    @client.function(id="hello", trigger=stepline.TriggerEvent(event="kit/hello"))
    def hello(ctx: stepline.SyncContext) -> str:
        return "hi"

    def blueprint(**options: Any) -> flask.Blueprint:
        return stepline.flask.runs_blueprint(
            client, [hello], authorize=stepline.web.allow_all, **options
        )

    assert blueprint().name == "stepline_runs"
    app = flask.Flask(__name__)
    app.register_blueprint(blueprint(prefix="/public"))
    with pytest.raises(ValueError, match="stepline_runs"):
        app.register_blueprint(blueprint(prefix="/other"))
    app.register_blueprint(blueprint(name="staff_runs", prefix="/staff"))
    engine = EmbeddedEngine(client, [hello], database=str(tmp_path / "n.db"), poll_interval=0.05)
    try:
        http = app.test_client()
        for where in ("/public", "/staff"):
            reply = http.post(f"{where}/runs", json={"function": "hello"})
            assert reply.status_code == 201, (where, reply.json)
            assert reply.json["links"]["self"].startswith(f"{where}/runs/")
    finally:
        engine.stop()


def test_runs_blueprint_needs_an_authorize_hook() -> None:
    client = stepline.Client("flask-auth", is_production=False, environ={})

    @client.function(id="hello", trigger=stepline.TriggerEvent(event="kit/hello"))
    def hello(ctx: stepline.SyncContext) -> str:
        return "hi"

    with pytest.raises(stepline.ConfigError, match="authorize"):
        stepline.flask.runs_blueprint(client, [hello], authorize=None)  # type: ignore[arg-type]


def test_public_surface() -> None:
    expected = ["AppState", "Stepline", "current_client", "durable", "runs_blueprint", "serve"]
    assert stepline.flask.__all__ == expected
    for name in expected:
        assert getattr(stepline.flask, name).__doc__, name


# -- the extension ------------------------------------------------------------------------------


def make_extension() -> tuple[stepline.flask.Stepline, stepline.Function]:
    ext = stepline.flask.Stepline(app_id="ext-kit")

    @ext.function(id="double", trigger=stepline.TriggerEvent(event="ext/double"))
    def double(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("double", lambda: int(ctx.event.data["n"]) * 2)

    return ext, double


def test_extension_with_an_app_factory_and_app_config(tmp_path: Path) -> None:
    ext, double = make_extension()

    def create_app(database: Path) -> flask.Flask:
        app = flask.Flask(__name__)
        app.config.from_mapping(
            STEPLINE_APP_ID="ext-kit",
            STEPLINE_DEV=True,
            STEPLINE_ENGINE="embedded",
            STEPLINE_DATABASE_URL=str(database),
            STEPLINE_ENGINE_OPTIONS={"poll_interval": 0.05},
        )
        ext.init_app(app)

        @app.post("/double/<int:n>")
        def start(n: int) -> dict[str, Any]:
            handle = ext.client.start_sync(double, {"n": n})
            return {"run_id": handle.run_id, "same": stepline.flask.current_client() is ext.client}

        return app

    first, second = create_app(tmp_path / "a.db"), create_app(tmp_path / "b.db")
    states = [ext.state(first), ext.state(second)]
    try:
        assert first.extensions["stepline"] is states[0]
        assert states[0].client is not states[1].client  # one client per app
        assert states[0].engine is not None
        assert states[0].client.app_id == "ext-kit"
        assert states[0].client.settings.is_dev
        with first.app_context():
            assert ext.client is states[0].client
            assert stepline.flask.current_client() is states[0].client

        for app, state in zip([first, second], states, strict=True):
            http = app.test_client()
            reply = http.post("/double/21")
            assert reply.status_code == 200
            assert reply.json["same"] is True
            handle = state.client.get_run_sync(reply.json["run_id"])
            assert handle.result(timeout=WAIT) == 42
            # the embedded engine's API is mounted under /stepline (a dev-mode client)
            functions = http.get("/stepline/v1/functions")
            assert functions.status_code == 200
            assert "ext-kit-double" in functions.get_data(as_text=True)
            assert http.get("/api/inngest").status_code == 200  # served for the engine too
        # each app's engine has its own database: the first app does not see the second's run
        runs, _ = states[0].client.list_runs_sync(function=double)
        assert len(runs) == 1
    finally:
        for state in states:
            state.close()


def test_extension_reads_keys_and_urls_from_app_config() -> None:
    ext, _ = make_extension()
    app = flask.Flask(__name__)
    app.config.from_mapping(
        STEPLINE_IS_PRODUCTION=True,
        STEPLINE_SIGNING_KEY="signkey-prod-abcd",
        STEPLINE_SIGNING_KEY_FALLBACK="signkey-prod-ef01",
        STEPLINE_EVENT_KEY="event-key",
        STEPLINE_BASE_URL="http://engine.internal:9000",
        STEPLINE_EVENT_API_BASE_URL="http://events.internal:9001/",
        STEPLINE_SERVE_PATH="/hooks/stepline",
    )
    ext.init_app(app)
    state = ext.state(app)
    try:
        settings = state.client.settings
        assert (settings.app_id, settings.mode) == ("ext-kit", "cloud")
        assert settings.signing_keys == ("signkey-prod-abcd", "signkey-prod-ef01")
        assert settings.event_key == "event-key"
        assert settings.api_base_url == "http://engine.internal:9000"
        assert settings.event_api_base_url == "http://events.internal:9001"
        assert state.engine is None  # the engine is elsewhere
        http = app.test_client()
        inspection = http.get("/hooks/stepline").json  # served at the configured path
        assert inspection["mode"] == "cloud"
        assert inspection["has_signing_key_fallback"] is True
        assert inspection["has_event_key"] is True
        assert http.get("/stepline/").status_code == 404
    finally:
        state.close()

    dev = flask.Flask(__name__)
    dev.config["STEPLINE_DEV"] = "http://127.0.0.1:8299"
    stepline.flask.Stepline(dev, client=None, functions=ext.functions)
    try:
        dev_settings = dev.extensions["stepline"].client.settings
        assert dev_settings.is_dev
        assert dev_settings.app_id == "ext-kit"  # taken from the functions
        assert dev_settings.api_base_url == "http://127.0.0.1:8299"
    finally:
        dev.extensions["stepline"].close()


def test_extension_refuses_bad_setups(tmp_path: Path) -> None:
    ext, _ = make_extension()

    def app_with(**config: Any) -> flask.Flask:
        app = flask.Flask(__name__)
        app.config.from_mapping(config)
        return app

    with pytest.raises(stepline.ConfigError, match="STEPLINE_ENGINE"):
        ext.init_app(app_with(STEPLINE_DEV=True, STEPLINE_ENGINE="sidecar"))
    with pytest.raises(stepline.ConfigError, match="functions belong to ext-kit"):
        ext.init_app(app_with(STEPLINE_DEV=True, STEPLINE_APP_ID="other"))
    with pytest.raises(stepline.ConfigError, match="disagree"):
        ext.init_app(app_with(STEPLINE_DEV=True, STEPLINE_IS_PRODUCTION=True))
    with pytest.raises(stepline.ConfigError, match="app_id"):
        stepline.flask.Stepline().function(id="x", trigger=stepline.TriggerEvent(event="e"))
    with pytest.raises(stepline.ConfigError, match="no functions"):
        stepline.flask.Stepline(app_id="empty").init_app(app_with(STEPLINE_DEV=True))

    app = app_with(STEPLINE_DEV=True)
    ext.init_app(app)
    try:
        with pytest.raises(RuntimeError, match="already set up"):
            ext.init_app(app)
    finally:
        ext.state(app).close()
    with pytest.raises(RuntimeError, match="not initialised"), app_with().app_context():
        stepline.flask.current_client()
    with pytest.raises(RuntimeError, match="no Flask app"):
        _ = ext.client

    client = stepline.Client("flask-serve", is_production=False, environ={})
    blueprint = flask.Blueprint("bp", __name__)
    with pytest.raises(stepline.ConfigError, match="needs the Flask app"):
        stepline.flask.serve(blueprint, client, ext.functions, engine="embedded")


def test_serve_embedded_mounts_the_engine_for_dev_clients_only(tmp_path: Path) -> None:
    production = stepline.Client(
        "flask-prod", is_production=True, signing_key="signkey-prod-abcd", environ={}
    )

    @production.function(id="noop", trigger=stepline.TriggerEvent(event="kit/noop"))
    def noop(ctx: stepline.SyncContext) -> None:
        return None

    app = flask.Flask(__name__)
    stepline.flask.serve(app, production, [noop], engine="embedded", database=str(tmp_path / "p"))
    state = app.extensions["stepline"]
    try:
        assert isinstance(state.engine, EmbeddedEngine)
        assert not state.engine.running  # lazy: nothing started until first use
        assert app.test_client().get("/stepline/v1/functions").status_code == 404
    finally:
        state.close()


# -- the orders example ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flask_orders_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def orders_app(example: ModuleType, tmp_path: Path) -> Iterator[flask.Flask]:
    app: flask.Flask = example.create_app(
        {
            "TESTING": True,
            "STEPLINE_DATABASE_URL": str(tmp_path / "orders.db"),
            "STEPLINE_ENGINE_OPTIONS": {"poll_interval": 0.05},
            "ORDERS_GRACE": 0.1,
            "ORDERS_API_TOKEN": TOKEN,
        }
    )
    try:
        yield app
    finally:
        app.extensions["stepline"].close()


def test_example_orders_routes(orders_app: flask.Flask) -> None:
    http = orders_app.test_client()
    placed = http.post("/orders", json={"customer": "ada", "items": [{"sku": "tea", "qty": 1}]})
    assert placed.status_code == 422  # "quantity" is missing
    assert placed.json["detail"][0]["loc"] == ["items", 0, "quantity"]

    order = {"customer": "ada", "items": [{"sku": "tea", "quantity": 2}]}
    placed = http.post("/orders", json=order, headers={"idempotency-key": "cart-7"})
    assert placed.status_code == 201
    order_id = placed.json["order_id"]
    again = http.post("/orders", json=order, headers={"idempotency-key": "cart-7"})
    assert (again.status_code, again.json["order_id"]) == (200, order_id)

    done = http.get(f"/api/runs/{order_id}/result?wait=20", headers=AUTH)
    assert done.status_code == 200
    assert done.json["output"]["total_cents"] == 900
    shown = http.get(f"/orders/{order_id}")
    assert shown.status_code == 200
    assert shown.json["status"] == "Completed"
    assert shown.json["receipt"]["charge_id"].startswith("ch-")
    assert shown.json["steps"] == {
        "price": "Completed",
        "reserve-stock": "Completed",
        "grace-period": "Completed",
        "charge-card": "Completed",
    }
    assert http.get("/orders/01NOSUCHORDER").status_code == 404
    assert http.post("/orders/01NOSUCHORDER/cancel").status_code == 404

    # the kit under /api: a long grace period to cancel in, behind the bearer token
    payload = {"function": "process-order", "data": {**order, "grace_seconds": 3600}}
    assert http.post("/api/runs", json=payload).status_code == 401
    started = http.post("/api/runs", json=payload, headers=AUTH)
    assert started.status_code == 201
    run_id = started.json["run_id"]
    wait_until(
        lambda: "grace-period" in http.get(f"/orders/{run_id}").json["steps"],
        timeout=WAIT,
        message="the grace-period step",
    )
    cancelled = http.post(f"/orders/{run_id}/cancel")
    assert cancelled.json == {"order_id": run_id, "status": "Cancelled"}
    assert http.get(f"/orders/{run_id}").json["status"] == "Cancelled"

    unknown = {**order, "items": [{"sku": "caviar", "quantity": 1}]}
    failed_id = http.post("/orders", json=unknown).json["order_id"]
    failed = http.get(f"/api/runs/{failed_id}/result?wait=20", headers=AUTH)
    assert failed.json["status"] == "Failed"
    assert http.get(f"/orders/{failed_id}").json["error"] == "unknown products: caviar"


def test_example_runs_with_one_command(tmp_path: Path) -> None:
    """``python examples/flask_orders/app.py``: a real server, the engine inside; Ctrl-C."""
    port = free_port()
    env = clean_env(PORT=str(port), ORDERS_API_TOKEN=TOKEN, ORDERS_GRACE="3600")
    out, err = (tmp_path / "stdout").open("wb"), (tmp_path / "stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, stdout=out, stderr=err
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=WAIT) as http:
            up = f"{base}/orders/probe"
            wait_until_up(up, proc, log=tmp_path / "stderr", timeout=WAIT, ready=answers)
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            order = {"customer": "bo", "items": [{"sku": "beans", "quantity": 1}]}
            payload = {"function": "process-order", "data": {**order, "grace_seconds": 0}}
            started = http.post("/api/runs", json=payload, headers=AUTH)
            assert started.status_code == 201, started.text
            with http.stream("GET", started.json()["links"]["events"], headers=AUTH) as stream:
                events = read_events(stream.iter_bytes(), None)
            assert [data["name"] for kind, data in events if kind == "step"][-1] == "charge-card"
            assert events[-1][0] == "result"
            assert events[-1][1]["output"]["total_cents"] == 1500

            placed = http.post("/orders", json=order)  # ORDERS_GRACE: an hour to cancel in
            assert placed.status_code == 201
            order_id = placed.json()["order_id"]
            assert http.get(f"/orders/{order_id}").json()["status"] in ("Queued", "Running")
            cancel = http.post(f"/orders/{order_id}/cancel")
            assert cancel.json()["status"] == "Cancelled"
            assert http.get("/stepline/v1/functions").status_code == 200
    finally:
        try:
            code = interrupt(proc, log=tmp_path / "stderr", timeout=WAIT)
        finally:
            out.close()
            err.close()
    assert (tmp_path / ".stepline" / "orders.db").exists()
    assert code == 0
    assert "Traceback" not in (tmp_path / "stderr").read_text()  # the engine stopped cleanly
