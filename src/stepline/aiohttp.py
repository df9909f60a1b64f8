"""Serve Stepline functions from an aiohttp ``web.Application``.

The framework reported is ``aiohttp``.

Example:
    >>> app = aiohttp.web.Application()
    >>> stepline.aiohttp.serve(app, client, [welcome])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web
from typing_extensions import Unpack

from stepline import _errors
from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._serving import bodies as _bodies
from stepline._serving import engine_option
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

FRAMEWORK = "aiohttp"
ADAPTER = _serve.Adapter("stepline.aiohttp", FRAMEWORK)


def serve(
    app: web.Application,
    client: Client,
    functions: Sequence[Function],
    **options: Unpack[_serve_options.ServeOptions],
) -> CommHandler:
    """Register GET, PUT and POST at the serve path (default ``/api/inngest``).

    Sync functions run on the handler's thread pool, async ones on the server's loop;
    ``streaming="force"`` answers POST with a 201 keepalive stream. Request bodies are
    limited by the handler (16 MiB), not by ``client_max_size`` (1 MiB by default), as
    the engine's payloads often exceed 1 MiB. The handler closes on the app's cleanup; an
    ``EmbeddedEngine`` you built for ``client`` starts at the app's startup.

    Raises:
        ConfigError: ``app`` is not a ``web.Application``, or it has already started
            (or was added as a sub-application), or ``serve`` was already called on it.
    """
    if not isinstance(app, web.Application):
        raise _errors.ConfigError(
            f"stepline.aiohttp.serve needs an aiohttp web.Application, not {type(app).__name__}"
        )
    if app.pre_frozen:
        raise _errors.ConfigError(
            "stepline.aiohttp.serve must run before the app starts or is added as a sub-app"
        )

    def mount(serving: _serve.Serving) -> CommHandler:
        async def view(request: web.Request) -> web.StreamResponse:
            length = request.headers.get("content-length")
            answer = await serving.answer_async(length, _reader(request))
            return await _to_aiohttp(answer, request)

        async def startup(_app: web.Application) -> None:
            # this process serves: an EmbeddedEngine built for the client starts now
            await asyncio.to_thread(engine_option.start_for, client)

        async def cleanup(_app: web.Application) -> None:
            serving.handler.close()

        for method in ("GET", "POST", "PUT"):
            app.router.add_route(method, serving.path, view)
        app.on_startup.append(startup)
        app.on_cleanup.append(cleanup)
        return serving.handler

    return _serve.serve(ADAPTER, client, functions, options, mount=mount, app=app)


def _reader(request: web.Request) -> Callable[[int], Awaitable[CommRequest]]:
    async def read(limit: int) -> CommRequest:
        # in chunks, stopping past the limit (the handler answers 413): request.read()
        # would take it all first (up to client_max_size)
        body = await _bodies.read_async(request.content.iter_any(), limit)
        return CommRequest.build(
            method=request.method,
            url=str(request.url),
            headers=request.headers.items(),
            body=bytes(body),
            query=dict(request.query),
        )

    return read


async def _to_aiohttp(response: CommResponse, request: web.Request) -> web.StreamResponse:
    if response.stream is None:
        return web.Response(body=response.body, status=response.status, headers=response.headers)
    native = web.StreamResponse(status=response.status, headers=response.headers)
    await native.prepare(request)
    async for chunk in response.stream:
        await native.write(chunk)
    await native.write_eof()
    return native
