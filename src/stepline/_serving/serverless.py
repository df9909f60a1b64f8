"""The shell shared by the function-as-a-service adapters (AWS Lambda, DigitalOcean).

Both take one event (a mapping) and a context, answer with a mapping, run on a sync
platform and cannot stream: only reading the event differs, so each adapter hands its
event reader to ``event_handler`` (an ``Adapter`` that cannot stream).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stepline._comm import CommRequest, CommResponse
from stepline._errors import BodyInvalidError
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["EventHandler", "decode_base64", "event_handler"]

#: A platform's entry point: ``handler(event, context)`` returning the HTTP answer.
EventHandler = Callable[[Any, Any], dict[str, Any]]


def event_handler(
    adapter: _serve.Adapter,
    client: Client,
    functions: Sequence[Function],
    options: _serve_options.ServeOptions,
    read_event: Callable[[Any, Any], CommRequest],
) -> EventHandler:
    """The entry point answering events that ``read_event`` turns into requests.

    A malformed event (``read_event`` raises ``BodyInvalidError``) gets the handler's 400.

    Raises:
        ConfigError: ``streaming="force"``, or a function belongs to another app.
    """

    def mount(serving: _serve.Serving) -> EventHandler:
        comm = serving.handler

        def handler(event: Any, context: Any) -> dict[str, Any]:
            try:
                request = read_event(event, context)
            except BodyInvalidError as exc:
                return _to_answer(CommResponse.from_error(exc, comm.base_headers))
            return _to_answer(comm.handle_sync(request))

        return handler

    return _serve.serve(adapter, client, functions, options, mount=mount)


def decode_base64(body: str, what: str) -> bytes:
    """A base64 body, strictly decoded.

    Raises:
        BodyInvalidError: it is not valid base64 (``what`` names it in the message).
    """
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise BodyInvalidError(f"{what} is not valid base64") from None


def _to_answer(response: CommResponse) -> dict[str, Any]:
    body = response.body.decode()
    return {"statusCode": response.status, "headers": response.headers, "body": body}
