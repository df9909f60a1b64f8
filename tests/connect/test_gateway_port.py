"""``stepline dev`` serves the Connect gateway where Inngest's dev server has it too.

Tools and test suites written for Inngest's dev server (the official SDK's Connect
scenarios among them) dial ``ws://HOST:<port + 1>/v0/connect`` directly. A real
``stepline dev`` process answers a WebSocket there with the gateway's hello; a port
already taken is one line and the engine still serves; ``stepline start`` opens no
second port unless asked.
"""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path

import httpx
import pytest

from stepline._connect import kinds, proto
from stepline.engine._cli import gateway_port
from tests._support.polling import wait_until
from tests._support.processes import clean_env, engine_command, free_port, spawned

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]
PROTOCOL = "v0.connect.inngest.com"


def _banner(log: Path) -> str:
    """The engine's banner, once printed (in one write, which has the database line)."""
    return wait_until(
        lambda: log.read_text() if "  Database " in log.read_text() else None,
        message=lambda: f"the banner in:\n{log.read_text()}",
    )


def _hello(url: str) -> dict[str, object]:
    from websockets.sync.client import connect

    with connect(url, subprotocols=[PROTOCOL], open_timeout=10) as ws:  # type: ignore[list-item]
        frame = ws.recv(timeout=10)
    assert isinstance(frame, bytes)
    return proto.decode("ConnectMessage", frame)


def test_dev_answers_the_gateway_on_the_next_port_at_inngests_path(tmp_path: Path) -> None:
    port = free_port()  # P and P + 1 free, and kept for this test process
    command = engine_command("dev", "--port", str(port), "--db", str(tmp_path / "e.db"))
    with spawned(command, log=tmp_path / "dev.log", up=f"http://127.0.0.1:{port}/health"):
        message = _hello(f"ws://127.0.0.1:{port + 1}/v0/connect")
        assert message.get("kind", 0) == kinds.GATEWAY_HELLO
        # the same app on both ports: the main port answers Inngest's path as well
        assert _hello(f"ws://127.0.0.1:{port}/v0/connect").get("kind", 0) == kinds.GATEWAY_HELLO
        assert httpx.get(f"http://127.0.0.1:{port + 1}/health", timeout=10).status_code == 200


def test_a_taken_gateway_port_is_one_line_and_the_engine_serves(tmp_path: Path) -> None:
    port = free_port()  # P and P + 1 free, and kept for this test process
    log = tmp_path / "dev.log"
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        command = engine_command("dev", "--port", str(port), "--db", str(tmp_path / "e.db"))
        with spawned(command, log=log, up=f"http://127.0.0.1:{port}/health"):
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    text = log.read_text()
    assert f"the Connect gateway's own port {port + 1} is not free" in text
    assert "Traceback" not in text


def test_the_banner_names_the_http_and_the_gateway_port(tmp_path: Path) -> None:
    port = free_port()  # P and P + 1 free, and kept for this test process
    log = tmp_path / "dev.log"
    command = engine_command("dev", "--port", str(port), "--db", str(tmp_path / "e.db"))
    with spawned(command, log=log, env=clean_env(), up=f"http://127.0.0.1:{port}/health"):
        text = _banner(log)
    assert f"  Engine     http://127.0.0.1:{port}\n" in text
    assert f"  Connect    ws://127.0.0.1:{port}/v0/connect/gateway (workers)" in text
    assert f"  Gateway    ws://127.0.0.1:{port + 1}/v0/connect (its own port" in text


def test_two_dev_engines_on_neighbouring_ports_start_with_the_gateway_port_chosen(
    tmp_path: Path,
) -> None:
    port = free_port()  # P and P + 1 free, and kept for this test process
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = engine_command(
        "dev", "--port", str(port), "--db", str(tmp_path / "1.db"), "--connect-gateway-port", "auto"
    )
    second = engine_command("dev", "--port", str(port + 1), "--db", str(tmp_path / "2.db"))
    up = "http://127.0.0.1:{}/health"
    with (
        spawned(first, log=first_log, env=clean_env(), up=up.format(port)),
        spawned(
            second,
            log=second_log,
            env=clean_env(STEPLINE_CONNECT_GATEWAY_PORT="0"),  # the variable, as the flag
            up=up.format(port + 1),
        ),
    ):
        first_text, second_text = _banner(first_log), _banner(second_log)
        [line] = [ln for ln in first_text.splitlines() if ln.startswith("  Gateway ")]
        chosen = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
        assert chosen not in (port, port + 1)
        hello = _hello(f"ws://127.0.0.1:{chosen}/v0/connect")
        assert hello.get("kind", 0) == kinds.GATEWAY_HELLO
        assert httpx.get(up.format(port + 1), timeout=10).status_code == 200
    assert "  Gateway " not in second_text  # 0: no second port
    assert "Traceback" not in first_text + second_text


def test_which_port() -> None:
    assert gateway_port.chosen("dev", 8288, None) == 8289  # as Inngest's dev server
    assert gateway_port.chosen("start", 8288, None) is None  # production: only when asked
    assert gateway_port.chosen("start", 8288, 9000) == 9000
    assert gateway_port.chosen("dev", 8288, 0) is None  # 0: not at all
    assert gateway_port.chosen("dev", 8288, "auto") == "auto"
    env = {gateway_port.ENV: "AUTO"}
    assert gateway_port.chosen("start", 8288, None, env) == "auto"
    assert gateway_port.chosen("dev", 8288, 9000, env) == 9000  # the flag wins
    assert gateway_port.chosen("dev", 8288, None, {gateway_port.ENV: "0"}) is None
    with pytest.raises(ValueError, match="STEPLINE_CONNECT_GATEWAY_PORT: want a port"):
        gateway_port.chosen("dev", 8288, None, {gateway_port.ENV: "next"})


def test_keep_alive_requests_are_not_held_for_the_clients_delayed_ack(tmp_path: Path) -> None:
    # Served from sockets the engine hands uvicorn (to listen on this second port too),
    # the connections had Nagle's algorithm on: every request after the first on a
    # keep-alive connection took 40-44 ms (the client's delayed ACK), on both ports.
    port = free_port()  # P and P + 1 free, and kept for this test process
    command = engine_command("dev", "--port", str(port), "--db", str(tmp_path / "e.db"))
    with spawned(command, log=tmp_path / "dev.log", up=f"http://127.0.0.1:{port}/health"):
        for serving in (port, port + 1):
            with httpx.Client(base_url=f"http://127.0.0.1:{serving}", timeout=10) as http:
                took = []
                for _ in range(7):
                    started = time.perf_counter()
                    assert http.get("/health").status_code == 200
                    took.append(time.perf_counter() - started)
            # held, each takes 40 ms or more; the median leaves a loaded machine's outliers out
            assert statistics.median(took[1:]) < 0.03, f"port {serving}: {took}"


def test_a_listening_socket_without_delay_hands_it_to_what_it_accepts() -> None:
    with gateway_port.no_delay(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
