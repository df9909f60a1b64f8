"""``POST /v1/outbox/deliveries``: many outbox rows in one request, for ``stepline relay``.

One HTTP round trip per row caps a relay at a few hundred rows a second; this route takes
a batch (``{"rows": [{"kind", "body"}, ...]}``, in ``id`` order) and hands each row to the
engine as the in-engine relay does (``inprocess.deliver``: the same seeds, the same
proposed run ids, the same outcomes). It stops at the first row that finds the engine
unavailable, so nothing overtakes it; the answer lists one outcome per row tried
(``{"data": [{"outcome", "note"}, ...]}``). Bearer-authorized as the REST API is (the
signing key in production, which also vouches for the events).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import starlette.requests
import starlette.responses

from stepline.engine._http import wire
from stepline.engine._http.wire import ApiError

if TYPE_CHECKING:
    from stepline.engine._relay.inprocess import RelayHost

__all__ = ["MAX_ROWS", "PATH", "table"]

PATH = "/v1/outbox/deliveries"
#: rows one request may carry
MAX_ROWS = 500

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]


def table(engine: RelayHost) -> list[tuple[str, str, Handler]]:
    """The route, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def deliveries(request: Request) -> Response:
        # here, not at import: an engine nobody relays to loads none of the outbox's code
        from stepline.engine._relay import inprocess
        from stepline.outbox._relay_deliver import DeliveryOutcome

        body = await wire.read_json(request, engine.settings.max_body_bytes)
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_ROWS:
            raise ApiError(400, f'want {{"rows": [{{"kind", "body"}}, ...]}} (1-{MAX_ROWS})')
        answers: list[dict[str, Any]] = []
        for row in rows:
            kind, raw = (
                (row.get("kind"), row.get("body")) if isinstance(row, dict) else (None, None)
            )
            result = await inprocess.deliver(engine, kind, raw)
            answers.append({"outcome": result.outcome.value, "note": result.note})
            if result.outcome is DeliveryOutcome.UNAVAILABLE:
                break
        return wire.json_response({"data": answers})

    return [("POST", PATH, deliveries)]
