"""The AI gateway calls public addresses only, a bounded number of times per run.

An app's answer chooses the gateway's URL and headers. Without a policy the engine
POSTs wherever it is told (its own loopback, the cloud metadata service, the private
network) and hands the answer back to the app. The policy (``_destinations``) refuses
every non-public address a host name resolves to, connects to the address it checked,
follows no redirect, and ``gateway_allow`` opens chosen networks or names for local
development. ``stepline dev`` also calls loopback (a local model server, a test suite's
mock LLM); ``stepline start`` does not. ``gateway_max_calls`` bounds the calls per run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import time
from typing import Any

import pytest

from stepline.engine import Engine, EngineSettings, RunStatus
from stepline.engine._config import EngineConfigError, resolve
from stepline.engine._gateway import proxy
from stepline.engine._gateway.destinations import Address, Policy, refusal
from stepline.engine._model import Run
from stepline.engine._worker.worker import QueueWorker
from tests._support.aio import arun
from tests._support.engines import FAST
from tests._support.logs import captured_logs
from tests._support.polling import await_until

from .sec_servers import Answer, Scripted, gateway_op, json_answer, register_body, steps_of

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private, RFC 1918",
    "172.16.5.4": "private, RFC 1918",
    "172.31.255.255": "private, RFC 1918",
    "192.168.1.1": "private, RFC 1918",
    "fd12:3456::1": "private, unique local",
    "fc00::1": "private, unique local",
    "169.254.169.254": "cloud metadata service",
    "fd00:ec2::254": "cloud metadata service",
    "169.254.10.20": "link-local",
    "fe80::1": "link-local",
    "fe80::1%2": "link-local",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "100.64.0.1": "shared, carrier-grade NAT",
    "192.0.2.10": "special-purpose",
    "198.18.0.1": "special-purpose",
    "fec0::1": "site-local",
    "::ffff:127.0.0.1": "loopback, as an IPv4-mapped",
    "::ffff:169.254.169.254": "cloud metadata service, link-local, as an IPv4-mapped",
    "::ffff:10.1.1.1": "private, RFC 1918, as an IPv4-mapped",
    "::ffff:0.0.0.0": "unspecified, 0.0.0.0/8, as an IPv4-mapped",
    "::127.0.0.1": "loopback, as an IPv4-compatible",
    "2002:7f00:1::": "loopback, as a 6to4",
    "2002:a9fe:a9fe::": "cloud metadata service, link-local, as a 6to4",
    "64:ff9b::7f00:1": "loopback, as a NAT64",
    "64:ff9b::a00:1": "private, RFC 1918, as a NAT64",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_policy_refuses_every_non_public_class(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert REFUSED[address] in (refusal(parsed) or ""), refusal(parsed)
    why = Policy().check(address, [parsed])
    assert why is not None
    assert "gateway_allow" in why
    assert "STEPLINE_GATEWAY_ALLOW" in why


@pytest.mark.parametrize("address", PUBLIC)
def test_policy_lets_public_addresses_through(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None
    assert Policy().check(address, [ipaddress.ip_address(address)]) is None


def test_a_name_is_refused_if_any_address_it_resolves_to_is() -> None:
    mixed: list[Address] = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.7")]
    why = Policy().check("api.example.com", mixed)
    assert why is not None
    assert "api.example.com (10.0.0.7)" in why
    assert Policy().check("api.example.com", []) is not None


def test_allow_list_opens_networks_and_names_only() -> None:
    policy = Policy.parse(["127.0.0.0/8", "10.1.2.3", "fd00::/8", "Ollama.Local."])
    loop = ipaddress.ip_address("127.0.0.1")
    assert policy.check("127.0.0.1", [loop]) is None
    assert policy.check("x", [ipaddress.ip_address("::ffff:127.0.0.5")]) is None
    assert policy.check("x", [ipaddress.ip_address("10.1.2.3")]) is None
    assert policy.check("x", [ipaddress.ip_address("10.1.2.4")]) is not None
    assert policy.check("x", [ipaddress.ip_address("169.254.169.254")]) is not None
    assert policy.check("ollama.local", [ipaddress.ip_address("192.168.0.9")]) is None
    assert policy.check("other.local", [ipaddress.ip_address("192.168.0.9")]) is not None
    for bad in ("10.0.0.0/33", "not a host", "http://x/", "*"):
        with pytest.raises(ValueError, match="neither a CIDR"):
            Policy.parse([bad])


def test_dev_mode_opens_loopback_only() -> None:
    """``stepline dev`` calls the developer's own machine; private ranges stay closed."""
    policy = proxy.Gateway(EngineSettings(mode="dev")).policy
    for address in ("127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"):
        assert policy.check(address, [ipaddress.ip_address(address)]) is None, address
    for address in (
        "10.0.0.7",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "2002:7f00:1::",
        "64:ff9b::7f00:1",
        "::127.0.0.1",
    ):
        assert policy.check(address, [ipaddress.ip_address(address)]) is not None, address
    strict = proxy.Gateway(EngineSettings(mode="start")).policy
    assert strict.check("127.0.0.1", [ipaddress.ip_address("127.0.0.1")]) is not None
    assert strict.check("::1", [ipaddress.ip_address("::1")]) is not None


def test_allow_list_setting_from_environment_and_flags() -> None:
    env = {
        "STEPLINE_GATEWAY_ALLOW": "127.0.0.1/32, llm.internal",
        "STEPLINE_GATEWAY_MAX_CALLS": "7",
    }
    settings = resolve(environ=env)
    assert settings.gateway_allow == ("127.0.0.1/32", "llm.internal")
    assert settings.gateway_max_calls == 7
    assert resolve(environ={}).gateway_max_calls == 100
    assert resolve(environ={}).max_step_output_bytes == 4 * 1024 * 1024
    with pytest.raises(EngineConfigError, match="gateway allow-list"):
        resolve(environ={"STEPLINE_GATEWAY_ALLOW": "10.0.0.0/99"})

    from stepline.engine._cli import commands, limits

    args = commands._parser().parse_args(
        [
            "start",
            "--gateway-allow",
            "10.0.0.0/8",
            "--gateway-allow",
            "::1",
            "--gateway-max-calls",
            "3",
        ]
    )
    assert limits.chosen(args) == {
        "gateway_allow": ("10.0.0.0/8", "::1"),
        "gateway_max_calls": 3,
    }


# -- end to end -------------------------------------------------------------------------------


def _asking(urls: list[str]) -> Any:
    """An app (dev mode) whose function asks the gateway for each URL, then returns the memos."""

    def answer(request: dict[str, Any]) -> Answer:
        steps = steps_of(request)
        wanted = [gateway_op(url, f"ai{i}") for i, url in enumerate(urls)]
        if not all(op["id"] in steps for op in wanted):
            return json_answer(206, [op for op in wanted if op["id"] not in steps])
        return json_answer(200, [steps[op["id"]] for op in wanted])

    return answer


async def _run(db: str, app: Scripted, engine_hook: Any = None, **settings: Any) -> Run:
    engine = Engine(EngineSettings(database_url=db, **{**FAST, **settings}))
    if engine_hook is not None:
        engine_hook(engine)
    await engine.start()
    try:
        await engine.register(register_body(app.url, attempts=0))
        (event_id,) = await engine.send({"name": "sec/go", "data": {}})

        async def started() -> list[Any] | None:
            return [link for link in await engine.event_runs(event_id) if link.run_id] or None

        links = await await_until(started, timeout=5.0, interval=0.01, message="a run to start")
        return await engine.wait_for_run(str(links[0].run_id), timeout=30)
    finally:
        await engine.stop()


def _memos(run: Run) -> list[Any]:
    assert run.status is RunStatus.COMPLETED, run.output
    return list(json.loads(run.output or "[]"))


def _production_policy(engine: Engine) -> None:
    """The destination policy of ``stepline start`` (loopback refused) on a dev engine."""
    gateway = engine.worker.gateway
    gateway.policy = dataclasses.replace(gateway.policy, loopback=False)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_loopback_and_metadata_destinations_are_refused_end_to_end(db: str) -> None:
    with Scripted(lambda _r: (200, {}, b'{"secret": 1}')) as victim, Scripted() as app:
        urls = [f"{victim.url}/x", f"http://localhost:{victim.port}/y", "http://169.254.169.254/"]
        app.answer = _asking(urls)
        with captured_logs("stepline.engine") as logs:
            memos = _memos(arun(_run(db, app, _production_policy)))
    assert victim.requests == [], "the gateway reached a loopback listener"
    for memo in memos:
        error = memo["error"]
        assert error["name"] == "AIGatewayRefused", memo
        assert "is not a public address" in error["message"]
        assert "gateway_allow (--gateway-allow, STEPLINE_GATEWAY_ALLOW)" in error["message"]
    assert "loopback" in memos[0]["error"]["message"]
    assert "cloud metadata service" in memos[2]["error"]["message"]
    assert sum("AI gateway refused" in line for line in logs) == 3, logs


@pytest.mark.slow
def test_allow_list_lets_a_local_provider_through(db: str) -> None:
    with Scripted(lambda _r: json_answer(200, {"ok": True})) as provider, Scripted() as app:
        app.answer = _asking([f"{provider.url}/v1/chat"])
        memos = _memos(arun(_run(db, app, gateway_allow=("127.0.0.1/32",))))
        [hit] = provider.requests
    assert memos == [{"data": {"ok": True}}]
    assert hit["headers"]["authorization"] == "Bearer sk-test"
    assert hit["headers"]["x-extra"] == "1"


@pytest.mark.slow
def test_the_connection_goes_to_the_address_that_was_checked(db: str) -> None:
    # the name resolves (once, through the engine's resolver) to loopback: refused by
    # the production policy; allowed by name, the request goes to that very address with the name as
    # Host (a second lookup by the HTTP client would fail: .invalid never resolves)
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[Address]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    def hook(engine: Engine) -> None:
        _production_policy(engine)
        engine.worker.gateway.resolver = resolver

    with Scripted(lambda _r: json_answer(200, "pinned")) as provider, Scripted() as app:
        app.answer = _asking([f"http://llm.invalid:{provider.port}/v1"])
        refused = _memos(arun(_run(db, app, hook)))
        assert provider.requests == []
        assert "llm.invalid (127.0.0.1) is not a public address" in refused[0]["error"]["message"]
        allowed = _memos(arun(_run(db, app, hook, gateway_allow=("llm.invalid",))))
        [hit] = provider.requests
    assert allowed == [{"data": "pinned"}]
    assert hit["headers"]["host"] == f"llm.invalid:{provider.port}"
    assert lookups == ["llm.invalid", "llm.invalid"]


@pytest.mark.slow
def test_dev_mode_reaches_a_model_on_loopback_but_not_the_private_network(db: str) -> None:
    with Scripted(lambda _r: json_answer(200, {"ok": True})) as provider, Scripted() as app:
        urls = [f"{provider.url}/v1/chat", "http://10.255.255.1/v1/chat"]
        app.answer = _asking(urls)
        loopback, private = _memos(arun(_run(db, app)))
        [hit] = provider.requests
    assert loopback == {"data": {"ok": True}}
    assert hit["path"].startswith("/v1/chat")
    assert private["error"]["name"] == "AIGatewayRefused"
    assert "private, RFC 1918" in private["error"]["message"]


@pytest.mark.slow
def test_redirects_are_not_followed(db: str) -> None:
    with Scripted(lambda _r: (200, {}, b"{}")) as inside, Scripted() as outside, Scripted() as app:
        outside.answer = lambda _r: (302, {"location": f"{inside.url}/secret"}, b"")
        app.answer = _asking([f"{outside.url}/go"])
        [memo] = _memos(arun(_run(db, app, gateway_allow=("127.0.0.1/32",), retry_scale=0.0)))
        assert len(outside.requests) == 5, "tried, then retried 4 times, as any non-2xx"
    assert inside.requests == []
    assert "redirects are not followed" in memo["error"]["message"]


@pytest.mark.slow
def test_gateway_calls_per_run_are_capped(db: str) -> None:
    with Scripted(lambda _r: json_answer(200, "ok")) as provider, Scripted() as app:
        app.answer = _asking([f"{provider.url}/{i}" for i in range(4)])
        memos = _memos(arun(_run(db, app, gateway_allow=("127.0.0.1/32",), gateway_max_calls=2)))
        assert len(provider.requests) == 2
    # the first two planned (by plan time, then step id) were called, the rest refused
    assert [m.get("data") for m in memos] == ["ok", "ok", None, None]
    capped = [m["error"] for m in memos if "error" in m]
    assert len(capped) == 2
    for error in capped:
        assert error["name"] == "AIGatewayLimitError"
        assert "limit of 2 AI gateway calls" in error["message"]
        assert "STEPLINE_GATEWAY_MAX_CALLS" in error["message"]


@pytest.mark.slow
def test_an_oversized_gateway_answer_fails_its_step(db: str) -> None:
    big = json.dumps("z" * (80 * 1024)).encode()
    with Scripted(lambda _r: (200, {}, big)) as provider, Scripted() as app:
        app.answer = _asking([f"{provider.url}/big"])
        [memo] = _memos(
            arun(_run(db, app, gateway_allow=("127.0.0.1/32",), max_step_output_bytes=64 * 1024))
        )
        assert len(provider.requests) == 1, "not retried: it would be as large again"
    assert memo["error"]["name"] == "AIGatewayAnswerTooLarge"
    assert "larger than 65536 bytes" in memo["error"]["message"]


@pytest.mark.slow
def test_a_retry_leased_before_its_last_attempt_s_end_was_noted_runs(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gateway attempt that failed is retried at once (no backoff here): its own task
    # commits the retry and wakes the worker's loop, which may lease the retry before the
    # task's end has been noted (its done callback runs later, held back here). That
    # attempt is over: the retry runs, rather than wait for its lease to lapse (30 s) as a
    # call still in flight would (CI: this file's redirect test timed out that way).
    done = QueueWorker._done

    def noted_late(self: QueueWorker, current: list[Any], task: Any = None) -> None:
        asyncio.get_running_loop().call_later(0.3, done, self, current, task)

    monkeypatch.setattr(QueueWorker, "_done", noted_late)
    with Scripted(lambda _r: (503, {}, b"busy")) as provider, Scripted() as app:
        app.answer = _asking([f"{provider.url}/v1"])
        [memo] = _memos(arun(_run(db, app, gateway_allow=("127.0.0.1/32",), retry_scale=0.0)))
        assert len(provider.requests) == 5, "tried, then retried 4 times"
    assert memo["error"]["name"], memo


@pytest.mark.slow
def test_a_retry_leased_while_the_task_that_queued_it_still_runs_runs(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same race one step earlier: the task that committed the retry is still running
    # (held here after its gateway call) when the woken loop leases the retry. The loop
    # takes that lease for the task's own call going on; once the task ends, the attempt
    # it queued runs, rather than wait for its lease to lapse (30 s).
    gateway = QueueWorker._gateway

    async def lingering(self: QueueWorker, job: Any) -> None:
        await gateway(self, job)
        await asyncio.sleep(0.3)

    monkeypatch.setattr(QueueWorker, "_gateway", lingering)
    with Scripted(lambda _r: (503, {}, b"busy")) as provider, Scripted() as app:
        app.answer = _asking([f"{provider.url}/v1"])
        started = time.monotonic()
        [memo] = _memos(arun(_run(db, app, gateway_allow=("127.0.0.1/32",), retry_scale=0.0)))
        assert len(provider.requests) == 5, "tried, then retried 4 times"
        assert time.monotonic() - started < 15, "a retry waited for its lease to lapse"
    assert memo["error"]["name"], memo
