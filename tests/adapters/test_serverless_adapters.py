"""The DigitalOcean and AWS Lambda adapters, driven with the events each platform sends.

The contract suite runs both through their harnesses (Lambda with payload 2.0); these
tests add payload 1.0, base64 bodies, URL building from the platform's context and the
400 for a malformed event.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stepline
import stepline.aws_lambda
import stepline.digital_ocean
from stepline._protocol import signing
from tests._support import refusing
from tests._support.stub_server import StubServer

from .harness_aws_lambda import v2_event
from .harness_digital_ocean import FakeContext, raw_event

ROOT = Path(__file__).resolve().parents[2]
KEY = "signkey-test-8a1b2c3d4e5f"
REST_DOMAIN = "k3x9.execute-api.us-east-1.amazonaws.com"
Handler = Callable[[Any, Any], dict[str, Any]]


def make_client(**options: Any) -> stepline.Client:
    return stepline.Client("svl", **{"is_production": False, "environ": {}, **options})


def make_functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="sync", trigger=stepline.TriggerEvent(event="t/sync"))
    def sync_fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        n = ctx.step.run("double", lambda: ctx.event.data["n"] * 2)
        m = ctx.step.run("plus", lambda: n + 1)
        return {"m": m, "kind": "sync"}

    @client.function(id="async", trigger=stepline.TriggerEvent(event="t/async"))
    async def async_fn(ctx: stepline.Context) -> dict[str, Any]:
        async def double() -> int:
            return int(ctx.event.data["n"]) * 2

        n = await ctx.step.run("double", double)
        m = await ctx.step.run("plus", lambda: n + 1)
        return {"m": m, "kind": "async"}

    return [sync_fn, async_fn]


def call_body(steps: dict[str, Any]) -> bytes:
    event = {"name": "t", "data": {"n": 21}, "id": "e1", "ts": 1}
    ctx = {"run_id": "r1", "attempt": 0, "stack": {"stack": list(steps)}}
    body = {"event": event, "events": [event], "steps": steps, "ctx": ctx, "use_api": False}
    return json.dumps(body).encode()


def drive(send: Callable[[bytes], dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """Call until the function completes, the way the engine does; count the calls."""
    steps: dict[str, Any] = {}
    for calls in range(1, 10):
        result = send(call_body(steps))
        if result["statusCode"] != 206:
            return result, calls
        for op in json.loads(result["body"]):
            steps[op["id"]] = {"data": op["data"]}
    raise AssertionError("function did not complete")


def v1_event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
    stage: str = "prod",
    context_path: bool = True,
) -> dict[str, Any]:
    """An API Gateway REST (payload 1.0) proxy event, as the default endpoint sends it."""
    sent = {"Content-Type": "application/json", "Host": REST_DOMAIN, **(headers or {})}
    context: dict[str, Any] = {"domainName": REST_DOMAIN, "stage": stage, "httpMethod": method}
    if context_path:
        context["path"] = path if stage == "$default" else f"/{stage}{path}"
    text = base64.b64encode(body).decode() if base64_body else body.decode()
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "requestContext": context,
        "body": text or None,
        "isBase64Encoded": base64_body,
    }


# -- AWS Lambda ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("base64_body", [False, True])
def test_lambda_v1_runs_a_function_to_completion(kind: str, base64_body: bool) -> None:
    client = make_client()
    handler = stepline.aws_lambda.serve(client, make_functions(client))
    query = {"fnId": f"svl-{kind}", "stepId": "step"}

    def send(raw: bytes) -> dict[str, Any]:
        event = v1_event("POST", "/api/inngest", query=query, body=raw, base64_body=base64_body)
        return handler(event, None)

    result, calls = drive(send)
    assert (result["statusCode"], calls) == (200, 3)
    assert json.loads(result["body"]) == {"m": 43, "kind": kind}
    assert result["headers"]["x-inngest-framework"] == "aws_lambda"
    assert isinstance(result["body"], str)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_lambda_v2_base64_body_runs_a_function_to_completion(kind: str) -> None:
    client = make_client()
    handler = stepline.aws_lambda.serve(client, make_functions(client))

    def send(raw: bytes) -> dict[str, Any]:
        event = v2_event("POST", f"/api/inngest?fnId=svl-{kind}&stepId=step", {}, b"")
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
        return handler(event, None)

    result, _ = drive(send)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"m": 43, "kind": kind}


def test_lambda_v1_signed_call_in_cloud_mode_reads_multi_value_headers() -> None:
    client = make_client(is_production=True, signing_key=KEY, api_base_url=refusing.url())
    handler = stepline.aws_lambda.serve(client, make_functions(client))
    raw = call_body({})
    signature = signing.sign(raw, KEY, now=time.time())
    event = v1_event(
        "POST",
        "/api/inngest",
        query={"fnId": "svl-sync", "stepId": "step"},
        body=raw,
        headers={"X-Inngest-Signature": signature},
    )
    event["headers"] = None  # only the multi-value form is sent
    assert handler(event, None)["statusCode"] == 206
    event["multiValueHeaders"]["X-Inngest-Signature"] = ["t=1&s=00"]
    assert handler(event, None)["statusCode"] == 401


@pytest.mark.slow
@pytest.mark.parametrize(
    ("event", "url"),
    [
        (v1_event("PUT", "/api/inngest"), f"https://{REST_DOMAIN}/prod/api/inngest"),
        (
            v1_event("PUT", "/api/inngest", context_path=False),
            f"https://{REST_DOMAIN}/prod/api/inngest",
        ),
        (
            v1_event("PUT", "/api/inngest", stage="$default"),
            f"https://{REST_DOMAIN}/api/inngest",
        ),
        (
            v2_event("PUT", "/jobs/api", {}, b""),
            "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/jobs/api",
        ),
    ],
    ids=["v1-stage-from-context-path", "v1-stage-added", "v1-default-stage", "v2"],
)
def test_lambda_registers_the_url_the_client_used(
    event: dict[str, Any], url: str, stub_server: StubServer
) -> None:
    client = make_client(api_base_url=stub_server.url)
    handler = stepline.aws_lambda.serve(client, make_functions(client))
    result = handler(event, None)
    assert result["statusCode"] == 200, result["body"]
    [sent] = stub_server.requests
    assert sent["body"]["url"] == url
    assert sent["body"]["framework"] == "aws_lambda"


@pytest.mark.slow
def test_lambda_function_url_event_and_deploy_id(stub_server: StubServer) -> None:
    client = make_client(api_base_url=stub_server.url)
    handler = stepline.aws_lambda.serve(client, make_functions(client))
    event = v2_event("PUT", "/?deployId=d-9", {}, b"")
    domain = "abcdefghij.lambda-url.eu-west-1.on.aws"
    event["requestContext"]["domainName"] = event["headers"]["host"] = domain
    assert handler(event, None)["statusCode"] == 200
    [sent] = stub_server.requests
    assert sent["path"] == "/fn/register?deployId=d-9"
    assert sent["body"]["url"] == f"https://{domain}/"


def good_v2() -> dict[str, Any]:
    return v2_event("GET", "/api/inngest", {}, b"")


def without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return event


def replaced(event: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**event, key: value}


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "GET /api/inngest",
        {},
        without(good_v2(), "requestContext", "http"),
        without(good_v2(), "rawPath"),
        replaced(good_v2(), "headers", ["host: x"]),
        replaced(good_v2(), "requestContext", "ctx"),
        replaced(good_v2(), "body", {"already": "parsed"}),
        {**good_v2(), "body": "%%% not base64", "isBase64Encoded": True},
        without(without(good_v2(), "requestContext", "domainName"), "headers", "host"),
        without(v1_event("GET", "/api/inngest"), "httpMethod"),
        replaced(v1_event("GET", "/api/inngest"), "multiValueQueryStringParameters", "a=b"),
    ],
    ids=[
        "none",
        "list",
        "string",
        "empty",
        "v2-no-http",
        "v2-no-path",
        "headers-not-object",
        "context-not-object",
        "body-not-string",
        "bad-base64",
        "no-domain",
        "v1-no-method",
        "v1-query-not-object",
    ],
)
def test_lambda_malformed_event_gets_400(event: Any) -> None:
    client = make_client()
    handler = stepline.aws_lambda.serve(client, make_functions(client))
    result = handler(event, None)
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["code"] == "body_invalid"
    assert result["headers"]["x-inngest-framework"] == "aws_lambda"
    assert handler(good_v2(), None)["statusCode"] == 200  # and the handler keeps working


@pytest.mark.slow
def test_lambda_without_domain_uses_the_host_header(stub_server: StubServer) -> None:
    client = make_client(api_base_url=stub_server.url)
    handler = stepline.aws_lambda.serve(client, make_functions(client))
    event = v1_event("PUT", "/api/inngest", headers={"X-Forwarded-Proto": "http"})
    event["requestContext"] = {}  # e.g. an Application Load Balancer event
    event["multiValueHeaders"]["Host"] = ["internal-alb.example.com"]
    assert handler(event, None)["statusCode"] == 200
    assert stub_server.requests[0]["body"]["url"] == "http://internal-alb.example.com/api/inngest"


# -- DigitalOcean -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_digital_ocean_runs_a_function_to_completion(kind: str) -> None:
    client = make_client()
    main = stepline.digital_ocean.serve(client, make_functions(client))

    def send(raw: bytes) -> dict[str, Any]:
        event = raw_event("POST", f"/?fnId=svl-{kind}&stepId=step", {}, raw)
        return main(event, FakeContext())

    result, calls = drive(send)
    assert (result["statusCode"], calls) == (200, 3)
    assert json.loads(result["body"]) == {"m": 43, "kind": kind}
    assert result["headers"]["x-inngest-framework"] == "digitalocean"
    assert set(result) == {"statusCode", "headers", "body"}


def test_digital_ocean_base64_body() -> None:
    client = make_client()
    main = stepline.digital_ocean.serve(client, make_functions(client))
    event = raw_event("POST", "/?fnId=svl-sync&stepId=step", {}, b"")
    event["http"]["body"] = base64.b64encode(call_body({})).decode()
    event["http"]["isBase64Encoded"] = True
    result = main(event, FakeContext())
    assert result["statusCode"] == 206
    assert json.loads(result["body"])[0]["data"] == 42


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({}, "https://faas-nyc1-2ef2e6cc.doserverless.co/api/v1/web/fn-7f5c1d2e/stepline/contract"),
        (
            {"serve_origin": "https://jobs.example.com", "serve_path": "/api/inngest"},
            "https://jobs.example.com/api/inngest",
        ),
    ],
    ids=["from-context", "configured"],
)
def test_digital_ocean_registers_the_url_from_the_context(
    options: dict[str, str], url: str, stub_server: StubServer
) -> None:
    client = make_client(api_base_url=stub_server.url)
    main = stepline.digital_ocean.serve(client, make_functions(client), **options)
    event = raw_event("PUT", "/?deployId=d-3", {}, b"")
    event["http"]["path"] = "/ignored/sub/path"
    result = main(event, FakeContext())
    assert result["statusCode"] == 200, result["body"]
    [sent] = stub_server.requests
    assert sent["path"] == "/fn/register?deployId=d-3"
    assert sent["body"]["url"] == url
    assert sent["body"]["framework"] == "digitalocean"
    assert {f["id"] for f in sent["body"]["functions"]} == {"svl-sync", "svl-async"}


def good_do() -> dict[str, Any]:
    return raw_event("GET", "/", {}, b"")


@pytest.mark.parametrize(
    ("event", "context", "message"),
    [
        ({"__ow_method": "get", "name": "x"}, FakeContext(), "web: raw"),
        (None, FakeContext(), "web: raw"),
        ({"http": without(good_do()["http"], "headers")}, FakeContext(), "web: raw"),
        ({"http": {**good_do()["http"], "body": {"a": 1}}}, FakeContext(), "must be strings"),
        (
            {"http": {**good_do()["http"], "body": "%%%", "isBase64Encoded": True}},
            FakeContext(),
            "base64",
        ),
        (good_do(), None, "api_host"),
        (good_do(), types.SimpleNamespace(api_host="https://x"), "function_name"),
    ],
    ids=[
        "not-raw",
        "none",
        "no-headers",
        "body-not-string",
        "bad-base64",
        "no-context",
        "context-no-name",
    ],
)
def test_digital_ocean_malformed_invocation_gets_400(
    event: Any, context: Any, message: str
) -> None:
    client = make_client()
    main = stepline.digital_ocean.serve(client, make_functions(client))
    result = main(event, context)
    assert result["statusCode"] == 400
    assert message in json.loads(result["body"])["message"]
    assert main(good_do(), FakeContext())["statusCode"] == 200


# -- both ---------------------------------------------------------------------------------


@pytest.mark.parametrize("serve", [stepline.aws_lambda.serve, stepline.digital_ocean.serve])
def test_serve_rejects_misconfiguration(serve: Callable[..., Handler]) -> None:
    client, other = make_client(), stepline.Client("other", is_production=False, environ={})
    with pytest.raises(stepline.ConfigError, match="cannot stream"):
        serve(client, make_functions(client), streaming="force")
    with pytest.raises(stepline.ConfigError, match="belongs to app"):
        serve(client, make_functions(other))


def load_example(relative: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("example", ROOT / "examples" / relative)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_serve_their_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPLINE_DEV", "1")
    lambda_example = load_example("aws_lambda/handler.py")
    inspected = lambda_example.handler(v2_event("GET", "/api/inngest", {}, b""), None)
    assert json.loads(inspected["body"])["function_count"] == 2
    do_example = load_example("digital_ocean/__main__.py")
    event = raw_event("POST", "/?fnId=digital-ocean-example-count&stepId=step", {}, b"")
    event["http"]["body"] = call_body({}).decode().replace('"n": 21', '"n": 4')
    result = do_example.main(event, FakeContext())
    assert (result["statusCode"], json.loads(result["body"])[0]["data"]) == (206, [0, 1, 2, 3])
