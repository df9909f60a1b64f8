"""Serve Stepline functions from an aiohttp ``web.Application``.

The framework reported is ``aiohttp``.

Example:
    >>> app = aiohttp.web.Application()
    >>> stepline.aiohttp.serve(app, client, [welcome])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from stepline import _errors
from stepline._comm import CommHandler, CommRequest, CommResponse

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._function import Function

FRAMEWORK = "aiohttp"


def serve(
    app: web.Application,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
) -> CommHandler:
    """Register GET, PUT and POST at the serve path (default ``/api/inngest``).

    Sync functions run on the handler's thread pool, async ones on the server's loop;
    ``streaming="force"`` answers POST with a 201 keepalive stream. Request bodies are
    limited by the handler (16 MiB), not by ``client_max_size`` (1 MiB by default), as
    the engine's payloads often exceed 1 MiB. The handler closes on the app's cleanup.

    Raises:
        ConfigError: ``app`` is not a ``web.Application``, or it has already started
            (or was added as a sub-application).
    """
    if not isinstance(app, web.Application):
        raise _errors.ConfigError(
            f"stepline.aiohttp.serve needs an aiohttp web.Application, not {type(app).__name__}"
        )
    if app.pre_frozen:
        raise _errors.ConfigError(
            "stepline.aiohttp.serve must run before the app starts or is added as a sub-app"
        )
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
    )

    async def view(request: web.Request) -> web.StreamResponse:
        return await _to_aiohttp(
            await handler.handle(await _from_aiohttp(request, handler)), request
        )

    async def cleanup(_app: web.Application) -> None:
        handler.close()

    for method in ("GET", "POST", "PUT"):
        app.router.add_route(method, handler.route_path, view)
    app.on_cleanup.append(cleanup)
    return handler


async def _from_aiohttp(request: web.Request, handler: CommHandler) -> CommRequest:
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > handler.max_body_bytes:
            break  # the handler answers 413
    return CommRequest.build(
        method=request.method,
        url=str(request.url),
        headers=request.headers.items(),
        body=bytes(body),
        query=dict(request.query),
    )


async def _to_aiohttp(response: CommResponse, request: web.Request) -> web.StreamResponse:
    if response.stream is None:
        return web.Response(body=response.body, status=response.status, headers=response.headers)
    native = web.StreamResponse(status=response.status, headers=response.headers)
    await native.prepare(request)
    async for chunk in response.stream:
        await native.write(chunk)
    await native.write_eof()
    return native
