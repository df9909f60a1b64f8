"""Serve Stepline functions from a DigitalOcean Function (``web: raw``).

Example (``packages/stepline/api/__main__.py``):
    >>> main = stepline.digital_ocean.serve(client, [welcome])
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from stepline._comm import CommHandler, CommRequest, CommResponse
from stepline._errors import BodyInvalidError

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._function import Function

FRAMEWORK = "digitalocean"
# DigitalOcean gives the function's name, not its URL; web functions live under this prefix.
WEB_PREFIX = "/api/v1/web"


def serve(
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
) -> Callable[[Any, Any], dict[str, Any]]:
    """Return the function's ``main(event, context)``; deploy it with ``web: raw``.

    The request URL is built from ``context.api_host`` and ``context.function_name``;
    behind a custom domain or route, pass ``serve_origin`` and ``serve_path``. Sync and
    async functions both work (async ones on a private event loop). Responses cannot be
    streamed and no thread pool is used, so ``thread_pool_max_workers`` has no effect.

    Raises:
        ConfigError: ``streaming="force"``, or a function belongs to another app.
    """
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
        can_stream=False,
    )

    def main(event: Any, context: Any) -> dict[str, Any]:
        try:
            request = _from_event(event, context)
        except BodyInvalidError as exc:
            return _to_response(CommResponse.from_error(exc, handler.base_headers))
        return _to_response(handler.handle_sync(request))

    return main


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
    return CommRequest.build(
        method=method,
        url=f"{url}?{query}" if query else url,
        headers={str(k): str(v) for k, v in headers.items()},
        body=_decode(body) if http.get("isBase64Encoded") else body.encode(),
    )


def _decode(body: str) -> bytes:
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise BodyInvalidError("event.http.body is not valid base64") from None


def _to_response(response: CommResponse) -> dict[str, Any]:
    body = response.body.decode()
    return {"statusCode": response.status, "headers": response.headers, "body": body}
