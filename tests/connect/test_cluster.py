"""The pure parts of Connect on several nodes: where a node is reached, forwarded answers."""

from __future__ import annotations

import socket

from stepline.engine import EngineSettings
from stepline.engine._config import resolve
from stepline.engine._connect import cluster


def test_a_node_is_reached_at_its_node_url_else_its_bind_address() -> None:
    assert cluster.node_url(EngineSettings(port=9000)) == "http://127.0.0.1:9000"
    everywhere = EngineSettings(host="0.0.0.0", port=9000, allow_public_bind=True)
    assert cluster.node_url(everywhere) == f"http://{socket.gethostname()}:9000"
    assert cluster.node_url(EngineSettings(host="::1", port=1)) == "http://[::1]:1"
    given = resolve(environ={"STEPLINE_NODE_URL": "http://engine-a.internal:8288/"})
    assert cluster.node_url(given) == "http://engine-a.internal:8288"


def test_forwarded_answers_become_the_calls_answers() -> None:
    done = cluster.answer_of(
        206, {"X-Inngest-Req-Version": "2", "Content-Length": "2", "Retry-After": "3"}, b"[]"
    )
    assert (done.status, done.body, done.error) == (206, b"[]", None)
    assert done.headers == {"x-inngest-req-version": "2", "retry-after": "3"}
    lost = cluster.answer_of(502, {cluster.MARK: "error"}, b'{"error": "ConnectionLost: x"}')
    assert (lost.status, lost.error) == (0, "ConnectionLost: x")
    garbled = cluster.answer_of(502, {cluster.MARK: "error"}, b"\xff")
    assert garbled.error is not None
