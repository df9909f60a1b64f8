"""Servers that answer the way real deployments do, for the engine's HTTP driver tests.

A raw socket answering verbatim bytes, uvicorn with a short keep-alive, a TCP server
scripted per request, and a proxy written the way people write them with ``http.server``
(HTTP/1.0 answers, upstream headers copied over a body ``urllib`` already de-chunked).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn

from tests._support.polling import wait_until
from tests._support.server_thread import ServerThread


@contextlib.asynccontextmanager
async def raw_server(answer: bytes, *, trickle: int = 0) -> AsyncIterator[str]:
    """A server answering every request with ``answer`` verbatim, then closing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        await reader.readexactly(length)
        step = trickle or len(answer)
        for start in range(0, len(answer), step):  # a trickle splits the head across reads
            writer.write(answer[start : start + step])
            await writer.drain()
            if trickle:
                await asyncio.sleep(0.001)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/inngest"
    finally:
        server.close()


class KeepAliveServer(ServerThread):
    """uvicorn (in a thread) closing idle keep-alive connections after ``keep_alive`` s."""

    def __init__(self, name: str, keep_alive: float) -> None:
        super().__init__(name)
        self.keep_alive = keep_alive

    def start(self, app: Any, *, timeout: float = 20.0) -> KeepAliveServer:
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        config.timeout_keep_alive = self.keep_alive  # type: ignore[assignment]  # a float works
        self.server = server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.sock]}, name=self.name, daemon=True
        )
        self.thread.start()
        wait_until(lambda: server.started or None, timeout=timeout, message=f"{self.name} to start")
        return self


@contextlib.contextmanager
def listener(serve: Callable[[socket.socket, int], None]) -> Iterator[str]:
    """A TCP server calling ``serve(connection, request number on it)`` per request."""
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=_serve, args=(conn, serve), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        stop.set()
        sock.close()


def _serve(conn: socket.socket, serve: Callable[[socket.socket, int], None]) -> None:
    with conn:
        number = 0
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(v)
                    for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                ),
                0,
            )
            while len(buffer) < length:
                buffer += conn.recv(65536)
            buffer = buffer[length:]
            number += 1
            try:
                serve(conn, number)
            except Hangup:
                return


class Hangup(Exception):
    """Close the connection now."""


class Http10Proxy(http.server.BaseHTTPRequestHandler):
    """A forwarding proxy as people write them with ``http.server``: HTTP/1.0 answers,
    every upstream header copied (``Transfer-Encoding: chunked`` included) over the body
    ``urllib`` already de-chunked."""

    upstream = ""

    def do_POST(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_GET(self) -> None:
        self._forward()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        request = urllib.request.Request(
            self.upstream + self.path, data=body or None, headers=headers, method=self.command
        )
        try:
            response: Any = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as exc:
            response = exc
        with response:
            payload = response.read()
            self.send_response(response.status)
            for name, value in response.headers.items():
                if name.lower() not in ("date", "server", "connection"):
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def chunked(app: Any) -> Any:
    """``app`` answering without Content-Length, so uvicorn sends its answers chunked."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, v) for k, v in message["headers"] if k.lower() != b"content-length"
                    ],
                }
            await send(message)

        await app(scope, receive, sending)

    return wrapped
