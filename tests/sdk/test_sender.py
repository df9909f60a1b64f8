from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from stepline import (
    _errors,
    _event,
    _identity,
    _settings,
)
from stepline._api import sender
from stepline._transport import effects, performers
from tests._support.processes import free_port

SEED = bytes(range(10))
NOW = 1_795_218_036_566
OK_IDS = ["A15851A98D28872A8A01C36F29", "B15851A98D28872A8A01C36F29"]


def settings(**arguments: object) -> _settings.Settings:
    return _settings.resolve(
        app_id="app",
        environ={},
        is_production=False,
        **arguments,  # type: ignore[arg-type]
    )


def events() -> list[_event.Event]:
    return [
        _event.Event(name="demo/three", data={"n": 41}),
        _event.Event(name="demo/four", data={}, id="idem-1", ts=1_700_000_000_000),
    ]


def reply(status: int, payload: object = None, error: str | None = None) -> effects.HttpResponse:
    body = b"" if payload is None else json.dumps(payload).encode()
    return effects.HttpResponse(status=status, headers={}, body=body, error=error)


def ok() -> effects.HttpResponse:
    return reply(200, {"ids": OK_IDS, "status": 200})


def finish(flow: effects.Flow[list[str]], effect: object) -> list[str]:
    with pytest.raises(StopIteration) as stop:
        flow.send(effect)
    return stop.value.value  # type: ignore[no-any-return]


# -- the flow, driven by hand -------------------------------------------------------------


@pytest.mark.shipped_default_url
def test_request_matches_the_official_sdk_shape():
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    request = next(flow)
    assert isinstance(request, effects.HttpRequest)
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:8288/e/NO_EVENT_KEY_SET"
    assert request.timeout == 30.0
    assert dict(request.headers) == {
        "content-type": "application/json",
        "x-inngest-sdk": _identity.SDK_HEADER,
        "x-inngest-req-version": "2",
        "user-agent": _identity.SDK_HEADER,
        "x-inngest-event-id-seed": f"{NOW},{base64.b64encode(SEED).decode()}",
    }
    assert request.body is not None
    assert json.loads(request.body) == [
        {"name": "demo/three", "data": {"n": 41}, "ts": NOW},
        {"name": "demo/four", "data": {}, "id": "idem-1", "ts": 1_700_000_000_000},
    ]
    assert finish(flow, ok()) == OK_IDS


def test_event_key_env_and_timeout_are_used():
    config = settings(
        event_key="key/with space",
        env="feature-x",
        event_api_base_url="https://events.example",
        request_timeout=4.0,
    )
    request = next(sender.send_flow(config, events(), now_ms=NOW, seed=SEED))
    assert request.url == "https://events.example/e/key%2Fwith%20space"
    assert request.headers["x-inngest-env"] == "feature-x"
    assert request.timeout == 4.0


def test_retries_network_errors_and_5xx_with_backoff_reusing_the_seed():
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    first = next(flow)
    failures = [reply(0, error="connection refused"), reply(502), reply(503, {"error": "busy"})]
    sleeps = []
    for failure in failures:
        sleep = flow.send(failure)
        assert isinstance(sleep, effects.Sleep)
        sleeps.append(sleep.seconds)
        again = flow.send(None)
        assert again == first
        assert again.headers["x-inngest-event-id-seed"] == first.headers["x-inngest-event-id-seed"]
        assert again.body == first.body
    assert sleeps == [0.1, 0.2, 0.4]
    assert finish(flow, ok()) == OK_IDS


def test_backoff_is_capped_and_the_last_error_is_reported():
    flow = sender.send_flow(settings(send_max_attempts=8), events(), now_ms=NOW, seed=SEED)
    next(flow)
    sleeps = []
    for _ in range(7):
        sleeps.append(flow.send(reply(500, {"error": "boom"})).seconds)
        assert isinstance(flow.send(None), effects.HttpRequest)
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    with pytest.raises(_errors.SendEventError, match=r"500 after 8 attempt\(s\): boom"):
        flow.send(reply(500, {"error": "boom"}))


def test_default_is_five_attempts():
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    next(flow)
    for _ in range(4):
        assert isinstance(flow.send(reply(0, error="down")), effects.Sleep)
        flow.send(None)
    with pytest.raises(_errors.SendEventError, match=r"unreachable after 5 attempt\(s\): down"):
        flow.send(reply(0, error="down"))


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [("3", 3.0), ("0.5", 0.5), ("600", 10.0), ("0", 0.1), ("soon", 0.1), ("³", 0.1)],
)
def test_a_503_retry_after_lengthens_the_wait(retry_after: str, wait: float) -> None:
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    next(flow)
    locked = effects.HttpResponse(
        status=503,
        headers={"retry-after": retry_after},
        body=json.dumps({"ids": [], "error": "the database is unavailable (locked)"}).encode(),
    )
    sleep = flow.send(locked)
    assert isinstance(sleep, effects.Sleep)
    assert sleep.seconds == wait  # never shorter than the backoff, never over 10 s
    flow.send(None)
    assert finish(flow, ok()) == OK_IDS


def test_a_503_outlasting_the_retries_says_what_the_engine_answered() -> None:
    """A view catching the error can answer 503 with the engine's Retry-After."""
    flow = sender.send_flow(settings(send_max_attempts=3), events(), now_ms=NOW, seed=SEED)
    next(flow)
    body = {"ids": [], "error": "the database is unavailable (disk full); retry in 5 s"}
    full = effects.HttpResponse(503, {"retry-after": "5"}, json.dumps(body).encode())
    for _ in range(2):
        assert flow.send(full) == effects.Sleep(5.0)
        flow.send(None)
    with pytest.raises(_errors.SendEventError, match=r"503 after 3 attempt\(s\)") as refused:
        flow.send(full)
    assert "disk full" in str(refused.value)
    assert (refused.value.http_status, refused.value.retry_after, refused.value.ids) == (503, 5, [])
    assert refused.value.status == 500  # the app's own answer if it ends a request


HTTP_DATE = "Wed, 21 Oct 2026 07:28:00 GMT"


@pytest.mark.parametrize(
    ("answer", "http_status", "retry_after"),
    [
        (effects.HttpResponse(503, {"retry-after": "0.5"}, b""), 503, 1),  # whole seconds
        (effects.HttpResponse(503, {"retry-after": HTTP_DATE}, b""), 503, None),  # not seconds
        (effects.HttpResponse(500, {}, b'{"error": "boom"}'), 500, None),
        (effects.HttpResponse(400, {"retry-after": "3"}, b'{"error": "bad"}'), 400, 3),
        (effects.HttpResponse(200, {}, b"{}"), 200, None),  # answered, without ids
        (effects.HttpResponse(0, {}, b"", error="refused"), None, None),  # unreachable
    ],
)
def test_the_error_carries_the_last_answer(
    answer: effects.HttpResponse, http_status: int | None, retry_after: int | None
) -> None:
    flow = sender.send_flow(settings(send_max_attempts=1), events(), now_ms=NOW, seed=SEED)
    next(flow)
    with pytest.raises(_errors.SendEventError) as refused:
        flow.send(answer)
    assert (refused.value.http_status, refused.value.retry_after) == (http_status, retry_after)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 429])
def test_never_retries_4xx(status):
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    next(flow)
    payload = {"ids": [], "status": status, "error": "event name is reserved"}
    with pytest.raises(_errors.SendEventError, match=f"{status} after 1 attempt") as info:
        flow.send(reply(status, payload))
    assert "event name is reserved" in str(info.value)


def test_error_without_json_body_reports_the_text():
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    next(flow)
    response = effects.HttpResponse(status=401, headers={}, body=b"unauthorized")
    with pytest.raises(_errors.SendEventError, match=r"401 after 1 attempt.*unauthorized"):
        flow.send(response)


def test_single_attempt_does_not_retry():
    flow = sender.send_flow(settings(send_max_attempts=1), events(), now_ms=NOW, seed=SEED)
    next(flow)
    with pytest.raises(_errors.SendEventError, match="503"):
        flow.send(reply(503))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"ids": [1]}', b'{"status": 200}'])
def test_success_without_ids_is_an_error(body):
    flow = sender.send_flow(settings(), events(), now_ms=NOW, seed=SEED)
    next(flow)
    with pytest.raises(_errors.SendEventError, match="without ids"):
        flow.send(effects.HttpResponse(status=200, headers={}, body=body))


def _nameless() -> _event.Event:
    """An event whose name was blanked after construction (construction refuses it)."""
    event = _event.Event(name="x")
    event.name = ""
    return event


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "no events"),
        ([_nameless()], "event 0 has no name"),
        ([_event.Event(name="ok"), _event.Event(name="inngest/function.invoked")], "reserved"),
        ([_event.Event(name="ok", data={"x": object()})], "JSON"),
        ([_event.Event(name="ok", data={"x": float("nan")})], "JSON"),
    ],
)
def test_invalid_events_fail_before_any_io(batch, message):
    flow = sender.send_flow(settings(), batch, now_ms=NOW, seed=SEED)
    with pytest.raises(_errors.SendEventError, match=message) as refused:
        next(flow)
    assert (refused.value.http_status, refused.value.retry_after) == (None, None)


def test_seed_must_be_ten_bytes():
    with pytest.raises(ValueError, match="10 bytes"):
        next(sender.send_flow(settings(), events(), now_ms=NOW, seed=b"short"))


# -- against a real HTTP server ----------------------------------------------------------


class EventApi:
    """A stdlib HTTP server that fails ``failures`` times with 502, then answers ids."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with api._lock:
                    api.requests.append((self.path, dict(self.headers.items()), body))
                    failing = len(api.requests) <= api.failures
                status, payload = (
                    (502, {"error": "bad gateway"})
                    if failing
                    else (200, {"ids": OK_IDS, "status": 200})
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Custom", "Yes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def event_api() -> Iterator[EventApi]:
    api = EventApi(failures=2)
    yield api
    api.close()


def real_settings(url: str, **arguments: object) -> _settings.Settings:
    return settings(event_api_base_url=url, event_key="test-key", env="branch-1", **arguments)


def check_three_identical_attempts(api: EventApi) -> None:
    assert len(api.requests) == 3
    paths = {path for path, _, _ in api.requests}
    assert paths == {"/e/test-key"}
    seeds = {
        {k.lower(): v for k, v in h.items()}["x-inngest-event-id-seed"] for _, h, _ in api.requests
    }
    assert len(seeds) == 1
    seed_ms, seed_b64 = seeds.pop().split(",")
    assert len(base64.b64decode(seed_b64)) == 10
    bodies = {body for _, _, body in api.requests}
    assert len(bodies) == 1
    assert json.loads(bodies.pop()) == [
        {"name": "demo/three", "data": {"n": 41}, "ts": int(seed_ms)},
        {"name": "demo/four", "data": {}, "id": "idem-1", "ts": 1_700_000_000_000},
    ]
    headers = {k.lower(): v for k, v in api.requests[0][1].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-inngest-sdk"] == headers["user-agent"] == _identity.SDK_HEADER
    assert headers["x-inngest-env"] == "branch-1"


@pytest.mark.slow
def test_send_sync_against_a_real_server(event_api):
    transport = performers.SyncTransport()
    try:
        ids = sender.send_sync(transport, real_settings(event_api.url), events())
    finally:
        transport.close()
    assert ids == OK_IDS
    check_three_identical_attempts(event_api)


@pytest.mark.slow
def test_send_async_against_a_real_server(event_api):
    async def main() -> list[str]:
        transport = performers.AsyncTransport()
        try:
            return await sender.send_async(transport, real_settings(event_api.url), events())
        finally:
            await transport.aclose()

    assert asyncio.run(main()) == OK_IDS
    check_three_identical_attempts(event_api)


def test_connection_refused_sync():
    config = real_settings(f"http://127.0.0.1:{free_port()}", send_max_attempts=2)
    transport = performers.SyncTransport()
    try:
        with pytest.raises(_errors.SendEventError, match=r"unreachable after 2 attempt\(s\)"):
            sender.send_sync(transport, config, events())
    finally:
        transport.close()


def test_connection_refused_async():
    config = real_settings(f"http://127.0.0.1:{free_port()}", send_max_attempts=2)

    async def main() -> None:
        transport = performers.AsyncTransport()
        try:
            await sender.send_async(transport, config, events())
        finally:
            await transport.aclose()

    with pytest.raises(_errors.SendEventError, match=r"unreachable after 2 attempt\(s\)"):
        asyncio.run(main())


# -- the transports themselves ------------------------------------------------------------


def request_to(url: str) -> effects.HttpRequest:
    return effects.HttpRequest(method="POST", url=url, headers={}, body=b"[]", timeout=5.0)


@pytest.mark.slow
def test_sync_transport_lowercases_headers_and_never_raises():
    api = EventApi(failures=0)
    transport = performers.SyncTransport()
    try:
        response = transport.perform(request_to(api.url + "/e/k"))
        refused = transport.perform(request_to(f"http://127.0.0.1:{free_port()}/"))
        invalid = transport.perform(request_to("http://[::1/"))
        assert transport.perform(effects.Sleep(0.0)) is None
    finally:
        transport.close()
        api.close()
    assert response is not None
    assert response.status == 200
    assert response.headers["x-custom"] == "Yes"
    assert all(name == name.lower() for name in response.headers)
    assert json.loads(response.body)["ids"] == OK_IDS
    for failed in (refused, invalid):
        assert failed is not None
        assert (failed.status, failed.body, dict(failed.headers)) == (0, b"", {})
        assert failed.error


@pytest.mark.slow
def test_async_transport_serves_several_event_loops():
    api = EventApi(failures=0)
    transport = performers.AsyncTransport()
    statuses: list[int] = []

    async def main() -> None:
        try:
            response = await transport.perform(request_to(api.url + "/e/k"))
            assert response is not None
            assert response.headers["x-custom"] == "Yes"
            statuses.append(response.status)
            assert await transport.perform(effects.Sleep(0.0)) is None
        finally:
            await transport.aclose()

    try:
        asyncio.run(main())
        threads = [threading.Thread(target=asyncio.run, args=(main(),)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        asyncio.run(main())
    finally:
        api.close()
    assert statuses == [200] * 5


def test_transports_reject_unknown_effects():
    with pytest.raises(TypeError):
        performers.SyncTransport().perform(object())
