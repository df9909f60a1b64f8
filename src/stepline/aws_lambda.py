"""Serve Stepline functions from AWS Lambda behind API Gateway or a function URL.

Example:
    >>> handler = stepline.aws_lambda.serve(client, [welcome])
"""

from __future__ import annotations

import urllib.parse
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

FRAMEWORK = "aws_lambda"
ADAPTER = Adapter("stepline.aws_lambda", FRAMEWORK, can_stream=False)


def serve(
    client: Client,
    functions: Sequence[Function],
    **options: Unpack[_serve_options.ServeOptions],
) -> serverless.EventHandler:
    """Return a Lambda ``handler(event, context)`` for HTTP events.

    Takes API Gateway REST (payload 1.0) and HTTP API or function URL (payload 2.0)
    events; a malformed event gets a 400. The URL is ``requestContext.domainName`` plus
    the path the client used. Async functions run on a private event loop; responses
    are not streamed and ``thread_pool_max_workers`` has no effect (no pool is used).
    ``options`` are the adapters' ``ServeOptions`` (``serve_origin``, ``serve_path``,
    ``streaming``, ``thread_pool_max_workers``).

    Raises:
        ConfigError: ``streaming="force"``, or a function belongs to another app.
    """
    return serverless.event_handler(
        ADAPTER, client, functions, options, lambda event, _context: _from_event(event)
    )


def _from_event(event: Any) -> CommRequest:
    if not isinstance(event, Mapping):
        raise BodyInvalidError("the Lambda event is not an object")
    context = _mapping(event.get("requestContext"), "requestContext")
    if event.get("version") == "2.0":
        method = _mapping(context.get("http"), "requestContext.http").get("method")
        path, query = event.get("rawPath"), event.get("rawQueryString") or ""
        raw_headers = event.get("headers")
    else:
        params = event.get("multiValueQueryStringParameters") or event.get("queryStringParameters")
        query = urllib.parse.urlencode(_mapping(params, "queryStringParameters"), doseq=True)
        method, path = event.get("httpMethod"), _v1_path(event, context)
        raw_headers = event.get("multiValueHeaders") or event.get("headers")
    headers = {str(k).lower(): _text(v) for k, v in _mapping(raw_headers, "headers").items()}
    host, body = context.get("domainName") or headers.get("host"), event.get("body") or ""
    if not isinstance(method, str) or not isinstance(path, str) or not isinstance(host, str):
        raise BodyInvalidError("the Lambda event has no HTTP method, path or domain name")
    if not isinstance(body, str) or not isinstance(query, str):
        raise BodyInvalidError("the Lambda event's body and query string must be strings")
    url = f"{headers.get('x-forwarded-proto', 'https')}://{host}{path}"
    # The body comes whole inside the event: Lambda caps a synchronous invocation's
    # payload (6 MB; API Gateway 10 MB before that), so nothing here can grow past it, and
    # the handler still answers 413 past its own limit.
    return CommRequest.build(
        method=method,
        url=f"{url}?{query}" if query else url,
        headers=headers,
        body=_decode(body) if event.get("isBase64Encoded") else body.encode(),
    )


def _v1_path(event: Mapping[str, Any], context: Mapping[str, Any]) -> object:
    # requestContext.path is the path the client used (stage or base path included);
    # event.path lacks the stage.
    path, stage = context.get("path"), context.get("stage")
    if isinstance(path, str) or not isinstance(event.get("path"), str):
        return path
    return (f"/{stage}" if stage and stage != "$default" else "") + event["path"]


def _mapping(value: object, what: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BodyInvalidError(f"the Lambda event's {what} is not an object")
    return value


def _text(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _decode(body: str) -> bytes:
    return serverless.decode_base64(body, "the Lambda event's body")
