"""Schemathesis hooks for the fuzz run (``SCHEMATHESIS_HOOKS=tests.contract.fuzz_hooks``).

Long-polls are part of the contract (``?wait=`` up to 60 s, a stream's Server-Sent
Events until its run ends), but a bounded run cannot wait on them: every call here asks
for an answer now. Nothing else about a case is changed.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    query = case.query
    if isinstance(query, dict) and "wait" in query:
        query["wait"] = 0
    if case.headers is None:
        case.headers = {}
    for name in [h for h in case.headers if h.lower() == "accept"]:
        del case.headers[name]
    case.headers["Accept"] = "application/json"  # a stream's JSON page, not its endless SSE


#: where a fuzzed app sync points: a port nothing listens on, so the engine's sync call
#: fails at once instead of reaching whatever host a generated URL names
DEAD_APP = "http://127.0.0.1:9/api/inngest"


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    operation = context.operation
    syncing = operation is not None and operation.label == "POST /v1/apps/sync"
    if syncing and isinstance(body, dict) and isinstance(body.get("url"), str):
        return {**body, "url": DEAD_APP}
    return body
