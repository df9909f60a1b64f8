"""One app under both engine setups: a real engine under uvicorn reached over HTTP, and an
``EmbeddedEngine`` reached through its mount, each with the sync and async faces."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import werkzeug.test

from stepline.embedded import EmbeddedEngine
from tests._support.engines import FAST
from tests.apps import run_management

from .embedded_support import EngineServer, Face, faces

#: What a non-browser caller sends (the engine's CSRF check for mounted routes).
NOT_A_BROWSER = {"x-stepline-csrf": "1"}


@dataclasses.dataclass
class Stack:
    app: run_management.App
    face: Callable[[str], Face]
    #: a request straight at the engine's REST API (its ASGI app): ``(status, JSON body)``
    call: Callable[[str, str, Any], tuple[int, Any]]

    def get(self, path: str) -> tuple[int, Any]:
        """``GET path`` at the engine's REST API."""
        return self.call("GET", path, None)


@contextlib.contextmanager
def stack(kind: str, database: str) -> Iterator[Stack]:
    """The ``http`` or ``embedded`` setup on the SQLite file ``database``."""
    if kind == "http":
        server = EngineServer(database, **FAST)
        app = run_management.build(api_base_url=server.url, event_api_base_url=server.url)
        server.serve(app.client, app.functions)

        def over_http(method: str, path: str, body: Any) -> tuple[int, Any]:
            response = httpx.request(
                method, server.url + path, json=body, headers=NOT_A_BROWSER, timeout=20
            )
            return response.status_code, response.json()

        with server, faces(app.client) as face:
            yield Stack(app, face, over_http)
        return
    app = run_management.build()
    embedded = EmbeddedEngine(app.client, app.functions, database=database, **FAST)
    mounted = werkzeug.test.Client(embedded.wsgi_app())

    def through_the_mount(method: str, path: str, body: Any) -> tuple[int, Any]:
        response = mounted.open(path, method=method, json=body, headers=NOT_A_BROWSER)
        return response.status_code, response.get_json()

    try:
        with faces(app.client) as face:
            yield Stack(app, face, through_the_mount)
    finally:
        embedded.stop()
