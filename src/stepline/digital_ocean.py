"""Serve Stepline functions from a DigitalOcean Function (``web: raw``).

Example (``packages/stepline/api/__main__.py``):
    >>> main = stepline.digital_ocean.serve(client, [welcome])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from stepline._comm import CommRequest
from stepline._errors import BodyInvalidError
from stepline._serving import options as _serve_options
from stepline._serving import serverless
from stepline._serving.serve import Adapter

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

FRAMEWORK = "digitalocean"
ADAPTER = Adapter("stepline.digital_ocean", FRAMEWORK, can_stream=False)
# DigitalOcean gives the function's name, not its URL; web functions live under this prefix.
WEB_PREFIX = "/api/v1/web"


def serve(
    client: Client,
    functions: Sequence[Function],
    **options: Unpack[_serve_options.ServeOptions],
) -> serverless.EventHandler:
    """Return the function's ``main(event, context)``; deploy it with ``web: raw``.

    The request URL is built from ``context.api_host`` and ``context.function_name``;
    behind a custom domain or route, pass ``serve_origin`` and ``serve_path``. Sync and
    async functions both work (async ones on a private event loop). Responses cannot be
    streamed and no thread pool is used, so ``thread_pool_max_workers`` has no effect.
    ``options`` are the adapters' ``ServeOptions``.

    Raises:
        ConfigError: ``streaming="force"``, or a function belongs to another app.
    """
    return serverless.event_handler(ADAPTER, client, functions, options, _from_event)


def _from_event(event: Any, context: Any) -> CommRequest:
    http = event.get("http") if isinstance(event, Mapping) else None
    if not isinstance(http, Mapping):
        raise BodyInvalidError('the event has no "http" object; deploy with "web: raw"')
    method, headers = http.get("method"), http.get("headers")
    body, query = http.get("body") or "", http.get("queryString") or ""
    host = getattr(context, "api_host", None)
    name = getattr(context, "function_name", None)
    if not isinstance(method, str) or not isinstance(headers, Mapping):
        raise BodyInvalidError('event.http needs "method" and "headers"; deploy with "web: raw"')
    if not isinstance(body, str) or not isinstance(query, str):
        raise BodyInvalidError("event.http.body and event.http.queryString must be strings")
    if not isinstance(host, str) or not isinstance(name, str):
        raise BodyInvalidError("the context has no api_host or function_name")
    # event.http.path is only the part after the function's name: the URL to register
    # is the function's own.
    url = f"{host.rstrip('/')}{WEB_PREFIX}/{name.lstrip('/')}"
    # The body comes whole inside the event: the platform caps a web function's request
    # (1 MB), so nothing here can grow past it; the handler's own 413 limit is larger.
    return CommRequest.build(
        method=method,
        url=f"{url}?{query}" if query else url,
        headers={str(k): str(v) for k, v in headers.items()},
        body=_decode(body) if http.get("isBase64Encoded") else body.encode(),
    )


def _decode(body: str) -> bytes:
    return serverless.decode_base64(body, "event.http.body")
