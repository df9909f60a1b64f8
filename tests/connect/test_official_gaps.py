"""What the official SDK's own Connect scenarios expect of a dev server, reproduced here.

Run against ``stepline dev`` (``tools/official_connect_check.py``), they call the engine at
``http://0.0.0.0:<port>``, read the lease-extension interval from the handshake (their
worker extends and flushes on it) and, when the socket drops under a call whose function
goes on, deliver its reply over ``POST /v0/connect/flush`` one interval later; a worker
started as a process is awaited on the dev server's ``GET /v0/connect/envs/{env}/conns``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from stepline.engine import EngineSettings
from stepline.engine._connect.hub import Timing
from stepline.engine._http import guard
from tests._support.polling import wait_until

from .harness import APP_ID, node, workers
from .test_hub import Fake, _call, _hub, _soon, run
from .test_stepline_worker import MODULE


@pytest.mark.parametrize("host", ["0.0.0.0:8288", "0.0.0.0", "[::]:8288"])
def test_dev_mode_answers_the_unspecified_address_the_sdk_tooling_calls(host: str) -> None:
    assert guard.refusal("GET", {"host": host}, allow_public=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0.nip.io:8288", "evil.example:8288", "10.0.0.1"])
def test_names_and_other_addresses_are_still_refused(host: str) -> None:
    refused = guard.refusal("GET", {"host": host}, allow_public=False)
    assert refused is not None
    assert refused.status == 403


def test_leases_are_extended_every_four_seconds_at_most() -> None:
    timing = Timing.of(EngineSettings())  # lease_seconds 30
    assert (timing.extend, timing.lease, timing.flush) == (4, 30.0, 6.0)
    short = Timing.of(EngineSettings(lease_seconds=3.0))
    assert (short.extend, short.lease, short.flush) == (1, 4.0, 3.0)


def test_a_reply_flushed_after_the_socket_dropped_answers_the_call() -> None:
    async def test() -> None:
        hub = _hub(flush=30.0)  # a window no loaded machine's pause below outlasts
        fake = Fake(hub, "one")
        call = _call(hub)
        await _soon(lambda: len(fake.calls) == 1)
        hub.acked(fake.conn, fake.calls[0]["request_id"])
        hub.drop(fake.conn, "closed its connection (code 1006)")
        await asyncio.sleep(0.3)  # the hub's own timers are real time: a moment for a wrong end
        assert not call.done(), "the worker may still flush its reply"
        flushed = {"request_id": fake.calls[0]["request_id"], "status": 1, "body": b'"hi"'}
        assert hub.reply(None, {**flushed, "sdk_version": "t"})
        answer = await call
        assert (answer.error, answer.body) == (None, b'"hi"')

    run(test)


@pytest.mark.slow
def test_a_dropped_call_with_no_flushed_reply_fails_as_lost_after_the_window() -> None:
    async def test() -> None:
        hub = _hub(flush=0.3)
        fake = Fake(hub, "one")
        call = _call(hub)
        await _soon(lambda: len(fake.calls) == 1)
        hub.acked(fake.conn, fake.calls[0]["request_id"])  # taken: it is not sent again
        hub.drop(fake.conn, "closed its connection (code 1006)")
        lost = await asyncio.wait_for(call, 4.0)  # the 0.3 s window, not the call's 5 s
        assert lost.error == (
            "ConnectionLost: the Connect worker 'one' (closed its connection (code 1006)) "
            "before answering"
        )
        assert not hub.reply(None, {"request_id": fake.calls[0]["request_id"], "status": 1})

    run(test)


@pytest.mark.process
def test_the_dev_server_connection_listing_names_each_worker(tmp_path: Path) -> None:
    """Inngest's ``ConnMetadata`` shape, oldest connection first (tools read the last)."""
    env = "00000000-0000-4000-b000-000000000000"  # the dev server's one environment
    with node(str(tmp_path / "e.db")) as engine, workers(tmp_path, MODULE) as found:
        assert engine.get(f"/v0/connect/envs/{env}/conns") == {"data": []}  # a list, never null
        found.start(engine, "s1")
        found.start(engine, "s2")
        listed = engine.get(f"/v0/connect/envs/{env}/conns")["data"]
        ours = {w["instance_id"]: w for w in engine.get("/v1/connect/workers")["data"]}
        found.signal("s1", signal.SIGTERM)  # idle: it drains and leaves at once
        wait_until(
            lambda: (
                [w["instance_id"] for w in engine.get(f"/v0/connect/envs/{env}/conns")["data"]]
                == ["s2"]
            ),
            message="s1 to leave the listing",
        )
    assert [w["instance_id"] for w in listed] == ["s1", "s2"]
    for conn in listed:
        worker = ours[conn["instance_id"]]
        assert conn["id"] == worker["connection_id"]
        assert conn["gateway_id"] == worker["node"]
        assert conn["status"] == 1  # READY
        assert f"{conn['sdk_language']}:v{conn['sdk_version']}" == worker["sdk"]
        assert set(conn["all_worker_groups"]) == {APP_ID}
        assert conn["synced_worker_groups"] == conn["all_worker_groups"]
        assert isinstance(conn["last_heartbeat_at"]["seconds"], int)
        assert set(conn) <= {
            "id", "gateway_id", "instance_id", "all_worker_groups", "synced_worker_groups",
            "status", "last_heartbeat_at", "sdk_language", "sdk_version", "attributes",
        }  # fmt: skip
