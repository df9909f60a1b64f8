"""The Flask adapter through Flask's own test client: app, blueprint and app factory."""

from __future__ import annotations

import json
from typing import Any

import flask
import pytest

import stepline
import stepline.flask
from stepline._protocol.hashing import hash_step_id

from .harness import make_functions


def make_client() -> stepline.Client:
    return stepline.Client("flask-app", is_production=False, environ={})


def call_body(steps: dict[str, Any]) -> dict[str, Any]:
    event = {"name": "t", "data": {"n": 21}, "id": "e1", "ts": 1, "user": {}}
    return {
        "event": event,
        "events": [event],
        "steps": steps,
        "ctx": {
            "run_id": "r1",
            "attempt": 0,
            "disable_immediate_execution": False,
            "stack": {"stack": list(steps)},
        },
        "use_api": False,
        "version": 2,
    }


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_both_function_kinds_run_to_completion(kind: str) -> None:
    app = flask.Flask("t")
    client = make_client()
    stepline.flask.serve(app, client, make_functions(client))
    http = app.test_client()
    url = f"/api/inngest?fnId=flask-app-{kind}&stepId=step"

    first = http.post(url, json=call_body({}))
    assert first.status_code == 206
    [op] = first.get_json()
    assert (op["op"], op["data"]) == ("StepRun", 42)

    second = http.post(url, json=call_body({hash_step_id("double"): {"data": op["data"]}}))
    assert second.status_code == 200
    assert second.get_json() == {"n": 42, "kind": kind}
    assert second.headers["x-inngest-framework"] == "flask"


def test_blueprint_in_an_app_factory_with_custom_path() -> None:
    def create_app() -> flask.Flask:
        app = flask.Flask("factory")
        blueprint = flask.Blueprint("jobs", __name__, url_prefix="/jobs")
        client = make_client()
        stepline.flask.serve(blueprint, client, make_functions(client), serve_path="/durable")
        app.register_blueprint(blueprint)
        return app

    http = create_app().test_client()
    inspected = http.get("/jobs/durable")
    assert inspected.status_code == 200
    assert inspected.get_json()["function_count"] == 2
    assert http.get("/api/inngest").status_code == 404


def test_serving_twice_on_one_app_uses_distinct_endpoints() -> None:
    app = flask.Flask("two")
    first, second = make_client(), stepline.Client("other", is_production=False, environ={})
    stepline.flask.serve(app, first, make_functions(first), serve_path="/a")
    stepline.flask.serve(app, second, make_functions(second), serve_path="/b")
    http = app.test_client()
    assert http.get("/a").status_code == 200
    assert http.get("/b").status_code == 200


def test_bad_input_gets_a_4xx_and_the_app_keeps_working() -> None:
    app = flask.Flask("bad")
    client = make_client()
    stepline.flask.serve(app, client, make_functions(client))
    http = app.test_client()
    bad = http.post(
        "/api/inngest?fnId=flask-app-sync",
        data=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400
    assert json.loads(bad.data)["code"] == "body_invalid"
    assert http.delete("/api/inngest").status_code == 405  # Flask refuses other methods
    good = http.post("/api/inngest?fnId=flask-app-sync&stepId=step", json=call_body({}))
    assert good.status_code == 206


def test_function_of_another_app_is_rejected_at_serve() -> None:
    client, other = make_client(), stepline.Client("other", is_production=False, environ={})
    with pytest.raises(stepline.ConfigError, match="belongs to app"):
        stepline.flask.serve(flask.Flask("x"), client, make_functions(other))


def test_misconfiguration_is_rejected_at_serve() -> None:
    client = make_client()
    functions = make_functions(client)
    with pytest.raises(stepline.ConfigError, match="cannot stream"):
        stepline.flask.serve(flask.Flask("s"), client, functions, streaming="force")
    with pytest.raises(stepline.ConfigError, match="serve_path must start with"):
        stepline.flask.serve(flask.Flask("p"), client, functions, serve_path="api")
    with pytest.raises(stepline.ConfigError, match="thread_pool_max_workers"):
        stepline.flask.serve(flask.Flask("t"), client, functions, thread_pool_max_workers=-1)
