"""The Connect hub as a driver, against fake workers (no sockets): which worker a call
goes to, and what each worker message or silence makes of the call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stepline._connect import kinds, proto
from stepline.engine import EngineSettings
from stepline.engine._connect.hub import Conn, Hub, Timing, app_url
from stepline.engine._wire.response import RawResponse, decode

URL = app_url("shop") + "?fnId=shop-fn&stepId=step"
BODY = b'{"ctx": {"run_id": "01RUN"}, "event": {}}'


class Fake:
    """A worker that records the calls it is sent (and answers none by itself)."""

    def __init__(self, hub: Hub, name: str, **options: Any) -> None:
        self.hub = hub
        self.calls: list[dict[str, Any]] = []
        self.frames: list[int] = []
        self.conn = Conn(
            conn_id=f"{name}-conn", instance_id=name, apps=frozenset({"shop"}), send=self.send
        )
        self.conn.ready = True
        for key, value in options.items():
            setattr(self.conn, key, value)
        hub.add(self.conn)

    async def send(self, frame: bytes) -> None:
        envelope = proto.decode("ConnectMessage", frame)
        self.frames.append(envelope.get("kind", 0))
        if envelope.get("kind") == kinds.GATEWAY_EXECUTOR_REQUEST:
            self.calls.append(proto.decode("GatewayExecutorRequestData", envelope["payload"]))

    def reply(self, index: int = -1, **answer: Any) -> bool:
        request_id = self.calls[index]["request_id"]
        return self.hub.reply(self.conn, {"request_id": request_id, "sdk_version": "t", **answer})


def _hub(**timing: Any) -> Hub:
    hub = Hub(EngineSettings())
    hub.timing = Timing(**{"ack": 1.0, "lease": 1.0, "wait_worker": 1.0, "flush": 0.3, **timing})
    return hub


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def _soon(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def _call(hub: Hub, timeout: float = 5.0) -> asyncio.Task[RawResponse]:
    return asyncio.create_task(hub.request("POST", URL, BODY, {}, timeout))


def test_calls_go_to_the_ready_worker_with_the_fewest_in_flight() -> None:
    async def test() -> None:
        hub = _hub()
        one, two = Fake(hub, "one"), Fake(hub, "two")
        Fake(hub, "draining", draining=True)
        Fake(hub, "not-ready", ready=False)
        tasks = [_call(hub) for _ in range(3)]
        await _soon(lambda: len(one.calls) + len(two.calls) == 3)
        assert sorted([len(one.calls), len(two.calls)]) == [1, 2]
        busy, idle = (one, two) if len(one.calls) == 2 else (two, one)
        busy.reply(0, status=1, body=b'"a"')
        await _soon(lambda: tasks[0].done() or tasks[1].done() or tasks[2].done())
        fourth = _call(hub)  # both have one in flight now: the one sent fewer gets it
        await _soon(lambda: len(idle.calls) == 2)
        call = idle.calls[0]
        assert (call["app_name"], call["function_slug"], call["step_id"]) == (
            "shop",
            "shop-fn",
            "step",
        )
        assert (call["run_id"], call["request_payload"]) == ("01RUN", BODY)
        for fake in (busy, idle):
            for index in range(len(fake.calls)):
                fake.reply(index, status=1, body=b'"ok"')
        results = await asyncio.gather(*tasks, fourth)
        assert {r.status for r in results} == {200}

    run(test)


def test_a_worker_at_its_concurrency_limit_or_none_connected_makes_the_call_wait() -> None:
    async def test() -> None:
        hub = _hub()
        full = Fake(hub, "full", max_inflight=1)
        first = _call(hub)
        await _soon(lambda: len(full.calls) == 1)
        waiting = _call(hub)
        await asyncio.sleep(0.1)
        late = Fake(hub, "late")  # a worker connects: the waiting call goes to it
        await _soon(lambda: len(late.calls) == 1)
        assert len(full.calls) == 1
        full.reply(0, status=1, body=b"1")
        late.reply(0, status=1, body=b"2")
        assert [r.body for r in await asyncio.gather(first, waiting)] == [b"1", b"2"]
        nobody = _hub(wait_worker=0.2)
        lost = await nobody.request("POST", URL, BODY, {}, 5.0)
        assert lost.error == "no Connect worker of app 'shop' is connected (waited for one)"

    run(test)


@pytest.mark.parametrize(
    ("answer", "status", "headers"),
    [
        (
            {"status": 1, "body": b'"done"', "request_version": 2},
            200,
            {"x-inngest-req-version": "2"},
        ),
        ({"status": 0, "body": b"[]"}, 206, {}),
        (
            {"status": 2, "body": b'{"name": "E"}', "no_retry": True, "retry_after": "7"},
            500,
            {"x-inngest-no-retry": "true", "retry-after": "7"},
        ),
    ],
)
def test_a_reply_is_the_http_answer_it_stands_for(
    answer: dict[str, Any], status: int, headers: dict[str, str]
) -> None:
    async def test() -> None:
        hub = _hub()
        fake = Fake(hub, "one")
        call = _call(hub)
        await _soon(lambda: len(fake.calls) == 1)
        assert fake.reply(**answer)
        assert not fake.reply(**answer), "a call is answered once"
        raw = await call
        assert (raw.status, raw.body) == (status, answer["body"])
        assert raw.headers == {"x-inngest-sdk": "t", **headers}
        outcome = decode(raw, now=0.0)
        if status == 500:
            assert getattr(outcome, "no_retry", None) is True

    run(test)


@pytest.mark.slow
def test_silence_fails_the_call_and_extensions_keep_it_alive() -> None:
    async def test() -> None:
        hub = _hub(ack=0.2, lease=0.4)
        fake = Fake(hub, "one")
        unacked = await hub.request("POST", URL, BODY, {}, 5.0)
        assert unacked.error == (
            "the Connect worker did not acknowledge the call in 0.2s, "
            "and no other worker of app 'shop' took it (waited)"
        )

        call = _call(hub, timeout=0.3)
        await _soon(lambda: len(fake.calls) == 2)
        sent = fake.calls[-1]
        hub.acked(fake.conn, sent["request_id"])
        lease = sent["lease_id"]
        for _ in range(6):  # 1.2 s: four times the call's timeout
            await asyncio.sleep(0.2)
            new = hub.extend(fake.conn, sent["request_id"], lease)
            assert new is not None
            assert hub.extend(fake.conn, sent["request_id"], lease) is None, "the old lease"
            lease = new
        fake.reply(status=1, body=b'"late"')
        assert (await call).body == b'"late"'

        silent = _call(hub, timeout=0.3)  # acknowledged, never extended nor answered
        await _soon(lambda: len(fake.calls) == 3)
        hub.acked(fake.conn, fake.calls[-1]["request_id"])
        timed_out = await silent
        assert timed_out.error == "ReadTimeout: no answer within 0.3s (and no lease extension)"
        assert hub.extend(fake.conn, "unknown", "x") is None

    run(test)


def test_a_call_no_worker_acknowledged_goes_to_another_worker() -> None:
    """As Inngest's gateway redelivers a request its worker did not acknowledge: the
    official worker, once it has sent WORKER_PAUSE, drops the calls it is sent."""

    async def test() -> None:
        hub = _hub(ack=0.2, flush=0.1)
        pausing = Fake(hub, "pausing")
        call = _call(hub)
        await _soon(lambda: len(pausing.calls) == 1)
        pausing.conn.draining = True  # its WORKER_PAUSE crossed the call: it never acks
        hub.changed()
        late = Fake(hub, "late")
        await _soon(lambda: len(late.calls) == 1)
        assert late.calls[0]["request_payload"] == BODY
        assert late.calls[0]["request_id"] != pausing.calls[0]["request_id"]
        assert not pausing.reply(0, status=1, body=b'"stale"'), "the first request is gone"
        hub.acked(late.conn, late.calls[0]["request_id"])
        late.reply(0, status=1, body=b'"Hello"')
        raw = await call
        assert (raw.status, raw.body, raw.error) == (200, b'"Hello"', None)

        # a worker whose socket drops before it acknowledged: the call goes on too
        dropped = _call(hub)
        await _soon(lambda: len(late.calls) == 2)
        hub.drop(late.conn, "closed its connection (code 1006)")
        third = Fake(hub, "third")
        await _soon(lambda: len(third.calls) == 1)
        third.reply(0, status=1, body=b'"again"')
        assert (await dropped).body == b'"again"'

        # acknowledged, then lost: that call fails (the worker may have run its step)
        taken = _call(hub)
        await _soon(lambda: len(third.calls) == 2)
        hub.acked(third.conn, third.calls[1]["request_id"])
        Fake(hub, "spare")
        hub.drop(third.conn, "closed its connection (code 1006)")
        lost = await taken
        assert lost.error == (
            "ConnectionLost: the Connect worker 'third' (closed its connection (code 1006)) "
            "before answering"
        )

    run(test)


@pytest.mark.slow
def test_a_lost_worker_fails_its_calls_unless_the_engine_stops() -> None:
    async def test() -> None:
        hub = _hub()
        fake = Fake(hub, "one")
        call = _call(hub)
        await _soon(lambda: len(fake.calls) == 1)
        hub.drop(fake.conn, "closed its connection (code 1006)")
        assert hub.workers() == []
        lost = await call
        assert lost.error == (
            "ConnectionLost: the Connect worker 'one' (closed its connection (code 1006)) "
            "before answering, and no other worker of app 'shop' took it (waited)"
        )
        other = Fake(hub, "two")
        kept = _call(hub)
        await _soon(lambda: len(other.calls) == 1)
        hub.drop(other.conn, "the engine's server is stopping", stopping=True)
        await asyncio.sleep(0.3)  # a call left alone has no event of its own to wait for
        assert not kept.done(), "left to the stopping engine, which hands the job back"
        kept.cancel()

    run(test)


def test_closing_tells_every_worker_and_a_sync_is_never_sent() -> None:
    async def test() -> None:
        hub = _hub(wait_worker=0.2)
        fakes = [Fake(hub, "one"), Fake(hub, "two")]
        put = await hub.request("PUT", app_url("shop"), b"", {}, 5.0)
        assert (
            put.error == "app 'shop' is served over Connect: its workers sync it when they connect"
        )
        await hub.close()
        assert [f.frames for f in fakes] == [[kinds.GATEWAY_CLOSING]] * 2
        for fake in fakes:
            hub.drop(fake.conn, "closed its connection (code 1000)")  # they reconnect
        waiting = _call(hub)  # no worker, the engine stopping: the job goes back, no attempt
        await asyncio.sleep(hub.timing.wait_worker + 0.2)  # past the hub's real-time wait
        assert not waiting.done()
        waiting.cancel()

    run(test)


def test_tokens_are_bound_to_their_connection_and_kind() -> None:
    from stepline.engine._connect.tokens import TOKEN_SECONDS, Tokens

    tokens = Tokens(["signkey-prod-" + "ab" * 32, "signkey-prod-" + "cd" * 32])
    token = tokens.issue("session", "01CONNECTION", now=1000.0)
    assert tokens.check(token, "session", "01CONNECTION", now=1001.0) is None
    assert tokens.check(token, "sync", "01CONNECTION", now=1001.0) == "malformed token"
    assert tokens.check(token, "session", "01OTHERCONN", now=1001.0) == (
        "token issued for another connection"
    )
    late = 1000.0 + TOKEN_SECONDS + 1
    assert tokens.check(token, "session", "01CONNECTION", now=late) == (
        "token expired: call /v0/connect/start again"
    )
    rotated = Tokens(["signkey-prod-" + "ef" * 32, "signkey-prod-" + "ab" * 32])
    assert rotated.check(token, "session", "01CONNECTION", now=1001.0) is None  # the fallback
    assert Tokens(["x" * 64]).check(token, "session", "01CONNECTION", now=1001.0) == (
        "token not signed by this engine"
    )
    for bad in (
        "",
        "a.b.c",
        "session.01CONNECTION.²³.x",
        "session.01CONNECTION.1" + "0" * 20 + ".x",
    ):
        assert tokens.check(bad, "session", "01CONNECTION", now=1001.0) == "malformed token"
