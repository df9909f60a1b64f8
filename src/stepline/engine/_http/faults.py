"""The API's answer to a database fault: 503, ``Retry-After``, the cause and what to do.

``_http/api.py`` maps every error to a response in one place; a ``StoreUnavailable`` is
mapped here. The store's guard has logged the fault once already (``_store/guard.py``), so
nothing more is logged per request. The event API's answer keeps its own shape (``ids``,
``status``, ``error``), with the cause added, so the SDKs' senders read it as they read
any refusal and retry it.
"""

from __future__ import annotations

import starlette.responses

from stepline.engine._http import wire
from stepline.engine._store.faults import StoreUnavailable

#: route templates answered in the event API's shape
EVENT_ROUTES = frozenset({"/e/{key}"})


def response(exc: StoreUnavailable, path: str) -> starlette.responses.Response:
    """503 for ``exc`` on the route ``path`` (a template, never the URL: it holds keys)."""
    body = exc.body()
    if path in EVENT_ROUTES:
        body = {"ids": [], **body}
    answer = wire.json_response(body, exc.status)
    answer.headers["retry-after"] = str(exc.retry_after)
    return answer
