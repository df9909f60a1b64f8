"""The signal hook under attack: no body read before the token verifies, no lockout.

The hook (``POST /v1/signals/hooks/{token}``) takes no credentials, so its token is
verified first, by a read: a forged one is answered 404 before a byte of its body is read,
and 100 concurrent 4 MiB posts barely move a ``stepline start`` engine's peak resident
memory (``VmHWM``). Guessers from 40 addresses empty the shared miss bucket, and are
refused from then on, while the provider holding a real token, from an address that never
guessed, still completes its wait.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepline._protocol import signals as tokens
from stepline.engine._http import signals as signal_routes
from stepline.engine._http import throttle
from tests._support import memory
from tests._support.aio import arun
from tests._support.processes import clean_env, engine_command, free_port, spawned

from .test_signals import KEY, _output, _run_of, _waiting, engine_with

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
FORGER = "signkey-test-" + "cd" * 32
GUESSERS = 40
POSTS = 100
BODY = 4 * 1024 * 1024 - 64  # under the hook's limit (max_step_output_bytes)
CHUNK = b"x" * (256 * 1024)


def test_guessers_from_many_addresses_never_refuse_a_real_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with engine_with(str(tmp_path / "e.db"), engine_keys=(KEY,), app_key=KEY) as (
            engine,
            client,
            http,
        ):
            run_id = await _run_of(engine, client, "approve", "sig/approve")
            token = (await _waiting(http, run_id))["wait"]["key"]
            app: Any = http._transport.app  # type: ignore[attr-defined]

            def from_address(address: str) -> httpx.AsyncClient:
                transport = httpx.ASGITransport(app=app, client=(address, 40000))
                return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

            statuses = []
            for n in range(GUESSERS):  # each address spends its own bucket whole
                async with from_address(f"10.6.0.{n + 1}") as guesser:
                    for k in range(signal_routes.HOOK_FAILURES):
                        forged = tokens.token(FORGER, run_id, f"guess-{n}-{k}")
                        answer = await guesser.post(f"/v1/signals/hooks/{forged}", json={})
                        statuses.append(answer.status_code)
            assert set(statuses) == {404, 429}
            refused = statuses.count(429)  # past the shared bucket: one miss an address
            assert refused >= len(statuses) - signal_routes.HOOK_FAILURES_OVERALL - GUESSERS
            async with from_address("10.6.1.1") as newcomer:  # a new guesser: one miss
                forged = [tokens.token(FORGER, run_id, f"new-{k}") for k in range(2)]
                first = await newcomer.post(f"/v1/signals/hooks/{forged[0]}", json={})
                second = await newcomer.post(f"/v1/signals/hooks/{forged[1]}", json={})
                assert (first.status_code, second.status_code) == (404, 429)
            async with from_address("203.0.113.9") as provider:
                answer = await provider.post(f"/v1/signals/hooks/{token}", json={"ok": 1})
                assert answer.status_code == 200, answer.text
            await engine.wait_for_run(run_id, timeout=15)
            assert (await _output(engine, run_id))["got"] == {"ok": 1}

    arun(main())


def test_limiter_spares_clients_that_never_failed() -> None:
    limiter = throttle.SignInLimiter(per_client=2, overall=3, window=60.0, spares_clean=True)
    for client in ("a", "a", "b"):
        assert limiter.retry_after(client, 0.0) == 0
        limiter.failed(client, 0.0)
    assert limiter.retry_after("a", 1.0) > 0  # its own bucket is empty
    assert limiter.retry_after("b", 1.0) > 0  # the shared one is, and b failed in the window
    assert limiter.retry_after("c", 1.0) == 0  # c never failed
    limiter.failed("c", 1.0, overall=False)  # a real token used twice: no guess
    assert limiter.retry_after("c", 1.0) == 0
    assert limiter.retry_after("b", 61.0) == 0  # a window on: b is clean again
    slots = throttle.Slots(per_client=2, overall=3)
    assert [slots.take("a"), slots.take("a"), slots.take("a")] == [True, True, False]
    assert [slots.take("b"), slots.take("c")] == [True, False]
    slots.give("a")
    assert slots.take("c")
    assert slots.held("a") == 1


def post_forged(port: int, n: int) -> str:
    """POST a 4 MiB JSON body to the hook with a forged token, from its own address."""
    token = tokens.token(FORGER, f"01FORGEDRUN{n:015d}", "approved")
    head = (
        f"POST /v1/signals/hooks/{token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {BODY}\r\n"
        f"X-Forwarded-For: 10.5.{n // 200}.{n % 200 + 1}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode() + b'"')
        try:
            sent = 1
            while sent < BODY - 1:
                part = CHUNK[: BODY - 1 - sent]
                sock.sendall(part)
                sent += len(part)
            sock.sendall(b'"')
        except OSError:
            pass  # answered and closed before the body was all sent
        try:
            answer = sock.recv(64)
        except OSError:
            return "reset"
        return answer.split(b" ")[1].decode() if answer else "closed"


@pytest.mark.process
def test_concurrent_large_posts_with_forged_tokens_barely_grow_the_engine(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(STEPLINE_SIGNING_KEY=KEY, STEPLINE_EVENT_KEY="hook-event-key")
    command = engine_command("start", "--port", str(port), "--db", str(tmp_path / "e.db"))
    with spawned(command, log=tmp_path / "engine.log", env=env, up=f"{base}/health") as proc:
        assert post_forged(port, 10_000) == "404"  # warm: the route's code paths in memory
        time.sleep(0.5)  # the warm-up's memory settles: another process, nothing to wait on
        before = memory.peak(proc.pid)
        with concurrent.futures.ThreadPoolExecutor(POSTS) as pool:
            answers = list(pool.map(lambda n: post_forged(port, n), range(POSTS)))
        grown = memory.peak(proc.pid) - before
        print(
            f"{POSTS} concurrent {BODY / memory.MIB:.0f} MiB hook posts, forged tokens: peak RSS "
            f"{before / memory.MIB:.0f} -> {(before + grown) / memory.MIB:.0f} MiB; "
            f"{sorted(set(answers))}"
        )
        assert grown < 50 * memory.MIB, f"the engine grew {grown / memory.MIB:.0f} MiB"
        assert set(answers) <= {"404", "reset", "closed"}, answers
