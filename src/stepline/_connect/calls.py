"""One call over Connect, the worker's side: the request it stands for, the reply. Pure.

A ``GATEWAY_EXECUTOR_REQUEST`` carries the body an HTTP call would POST; the worker turns
it into the ``CommRequest`` that POST would be (the function and step in the query, the
engine's signature, when it sent one, as ``X-Inngest-Signature``), so the SDK's
``CommHandler`` runs it exactly as ``serve()`` does. Its ``CommResponse`` becomes the
``SDKResponse`` the engine reads back as that HTTP answer.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from stepline._comm.messages import CommRequest, CommResponse
from stepline._protocol import headers

__all__ = ["app_url", "comm_request", "interval", "sdk_response"]

#: ``SDKResponseStatus``: NOT_COMPLETED (206), DONE (200), ERROR (anything else).
_NOT_COMPLETED, _DONE, _ERROR = 0, 1, 2
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$")


def app_url(app_id: str) -> str:
    """The URL the engine registers a Connect app at (``connect://<app id>/v0/connect``)."""
    return f"connect://{urllib.parse.quote(app_id, safe='')}/v0/connect"


def comm_request(call: Mapping[str, Any]) -> CommRequest:
    """The POST a ``GatewayExecutorRequestData`` stands for."""
    query = {"fnId": str(call.get("function_slug") or call.get("function_id") or "")}
    if call.get("step_id"):
        query["stepId"] = str(call["step_id"])
    found = {headers.CONTENT_TYPE.lower(): headers.JSON}
    if call.get("signature"):
        found[headers.SIGNATURE.lower()] = str(call["signature"])
    url = f"{app_url(str(call.get('app_name') or call.get('app_id') or ''))}?"
    return CommRequest(
        method="POST",
        url=url + urllib.parse.urlencode(query),
        headers=found,
        body=bytes(call.get("request_payload", b"")),
        query=query,
    )


def sdk_response(call: Mapping[str, Any], response: CommResponse) -> dict[str, Any]:
    """The ``SDKResponse`` for ``response`` (an answer to ``call``)."""
    found = {k.lower(): v for k, v in response.headers.items()}
    status = {200: _DONE, 206: _NOT_COMPLETED}.get(response.status, _ERROR)
    version = found.get(headers.REQ_VERSION.lower(), "")
    return {
        "request_id": call.get("request_id", ""),
        "account_id": call.get("account_id", ""),
        "env_id": call.get("env_id", ""),
        "app_id": call.get("app_id", ""),
        "status": status,
        "body": response.body,
        "no_retry": found.get(headers.NO_RETRY.lower(), "").lower() == "true",
        "retry_after": found.get(headers.RETRY_AFTER.lower()) or None,
        "sdk_version": found.get(headers.SDK.lower(), ""),
        "request_version": int(version) if version.isdigit() else 0,
        "run_id": call.get("run_id", ""),
    }


def interval(text: object, default: float) -> float:
    """A Go-style duration the gateway announces (``10s``, ``500ms``) in seconds."""
    found = _DURATION.match(str(text or "").strip())
    if found is None:
        return default
    value = float(found.group(1))
    scale = {"ms": 0.001, "m": 60.0}.get(found.group(2) or "s", 1.0)
    seconds = value * scale
    return seconds if seconds > 0 else default
