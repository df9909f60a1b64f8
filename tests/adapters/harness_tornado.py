"""Contract harness for ``stepline.tornado``: a real Tornado server on a private IOLoop.

Each request runs the loop (``IOLoop.run_sync``) until Tornado's own HTTP client has the
reply, as ``tornado.testing`` does; no threads, and everything is closed when the harness
is garbage collected.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.ioloop
import tornado.testing
import tornado.web

import stepline
import stepline.tornado
from stepline._comm import CommHandler

from .harness import Reply


class TornadoHarness:
    framework = "tornado"
    streaming = True

    def __init__(self, **app_settings: Any) -> None:
        self.app_settings = app_settings  # for tornado.web.Application(...)

    def serve(
        self, client: stepline.Client, functions: Sequence[stepline.Function], **options: Any
    ) -> None:
        app = tornado.web.Application(**self.app_settings)
        handler = stepline.tornado.serve(app, client, functions, **options)
        sock, port = tornado.testing.bind_unused_port()
        self.loop = tornado.ioloop.IOLoop(make_current=False)
        self.base = f"http://127.0.0.1:{port}"

        async def start() -> tuple[
            tornado.httpserver.HTTPServer, tornado.httpclient.AsyncHTTPClient
        ]:
            server = tornado.httpserver.HTTPServer(app)
            server.add_sockets([sock])
            return server, tornado.httpclient.AsyncHTTPClient(force_instance=True)

        server, http = self.loop.run_sync(start)
        self.http = http

        async def stop() -> None:
            server.stop()
            await server.close_all_connections()
            http.close()
            await client.connection.async_transport.aclose()

        # The finalizer must not reach ``self``, or the harness would never be collected.
        weakref.finalize(self, _close, self.loop, stop, handler)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        async def fetch() -> tornado.httpclient.HTTPResponse:
            return await self.http.fetch(
                self.base + path,
                method=method,
                headers=headers,
                body=body if method in ("POST", "PUT") else None,
                raise_error=False,
                request_timeout=30,
            )

        response = self.loop.run_sync(fetch)
        pairs = response.headers.get_all()
        return Reply(response.code, {k.lower(): v for k, v in pairs}, response.body or b"")


def _close(loop: tornado.ioloop.IOLoop, stop: Any, handler: CommHandler) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # collected while another loop runs on this thread: close from a thread of its own
        closer = threading.Thread(target=_close, args=(loop, stop, handler))
        closer.start()
        closer.join()
        return
    loop.run_sync(stop)
    handler.close()
    loop.close(all_fds=True)
