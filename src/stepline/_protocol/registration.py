"""Pure builders of inspection and sync bodies (PROTOCOL.md §1, §2).

Plain dicts in, plain dicts out: nothing here knows the SDK's function or option types,
so the engine's tests can use the same builders to fake an SDK.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Literal

from stepline import _errors, _identity

__all__ = [
    "FAILED_EVENT",
    "SCHEMA_VERSION",
    "capabilities",
    "function_config",
    "in_band_sync_body",
    "inspection_body",
    "on_failure_config",
    "register_body",
    "step_url",
    "strip_nulls",
]

#: ``schema_version`` of the inspection body.
SCHEMA_VERSION = "2024-05-24"
#: The internal event an on-failure handler is triggered by.
FAILED_EVENT = "inngest/function.failed"
_ROOT_STEP = "step"
_OWN_PARAMS = ("fnId", "stepId")
_RESERVED = frozenset({"id", "name", "triggers", "steps"})


def capabilities() -> dict[str, str]:
    """The ``capabilities`` object of the register and inspection bodies (a fresh copy)."""
    return {"connect": "v1", "in_band_sync": "v1", "trust_probe": "v1"}


def strip_nulls(value: Any) -> Any:
    """Drop ``None`` values from dicts, recursively; list elements are kept but recursed.

    The engine's Go decoder mishandles explicit nulls in some places, so inngest-py strips
    them from every sync body, and so do we.
    """
    if isinstance(value, dict):
        return {key: strip_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [strip_nulls(item) for item in value]
    return value


def _stripped(body: dict[str, Any]) -> dict[str, Any]:
    return {key: strip_nulls(item) for key, item in body.items() if item is not None}


def step_url(serve_url: str, composite_id: str, step_id: str = _ROOT_STEP) -> str:
    """The URL the engine calls to run a function: ``serve_url?fnId=<id>&stepId=<step>``.

    Other query parameters of ``serve_url`` are kept verbatim (an existing ``fnId`` or
    ``stepId`` is replaced); ids are form-encoded as inngest-py does (``/`` → ``%2F``).
    """
    parts = urllib.parse.urlsplit(serve_url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and urllib.parse.unquote_plus(pair.partition("=")[0]) not in _OWN_PARAMS
    ]
    ours = urllib.parse.urlencode({"fnId": composite_id, "stepId": step_id})
    return urllib.parse.urlunsplit(parts._replace(query="&".join([*kept, ours])))


def function_config(
    *,
    composite_id: str,
    name: str,
    serve_url: str,
    triggers: list[dict[str, Any]],
    options: dict[str, Any],
    retries: int | None,
) -> dict[str, Any]:
    """One entry of the ``functions`` array (PROTOCOL.md §2.3).

    Args:
        composite_id: ``"{app_id}-{fn_id}"``.
        name: display name.
        serve_url: the app's serve URL, without ``fnId``.
        triggers: wire triggers (``stepline._definition.triggers.triggers_to_wire``).
        options: function-level keys (``FunctionOptions.to_wire``).
        retries: retries after the first attempt; ``None`` leaves the engine default.

    Raises:
        ConfigError: ``options`` tries to set ``id``, ``name``, ``triggers`` or ``steps``.
    """
    clash = _RESERVED.intersection(options)
    if clash:
        raise _errors.ConfigError(f"function options must not set {sorted(clash)}")
    step: dict[str, Any] = {
        "id": _ROOT_STEP,
        "name": _ROOT_STEP,
        "runtime": {"type": "http", "url": step_url(serve_url, composite_id)},
    }
    if retries is not None:
        step["retries"] = {"attempts": retries}
    return {
        "id": composite_id,
        "name": name,
        "triggers": triggers,
        "steps": {_ROOT_STEP: step},
        **options,
    }


def on_failure_config(*, composite_id: str, name: str, serve_url: str) -> dict[str, Any]:
    """The synthesized function that runs a function's on-failure handler.

    It has id ``"{composite_id}-failure"``, fires on ``inngest/function.failed`` for that
    function, never retries, and carries the empty ``cancel``/``concurrency`` arrays that
    inngest-py emits.
    """
    # Escaped so an id holding a quote still yields a valid CEL string literal.
    literal = composite_id.replace("\\", "\\\\").replace("'", "\\'")
    return function_config(
        composite_id=f"{composite_id}-failure",
        name=f"{name} (failure)",
        serve_url=serve_url,
        triggers=[{"event": FAILED_EVENT, "expression": f"event.data.function_id == '{literal}'"}],
        options={"cancel": [], "concurrency": []},
        retries=0,
    )


def register_body(
    *,
    app_id: str,
    url: str,
    framework: str,
    functions: list[dict[str, Any]],
    app_version: str | None = None,
) -> dict[str, Any]:
    """The ``POST /fn/register`` body, with spec casing (``appName``, ``deployType``).

    Args:
        app_id: the app id.
        url: the serve URL the engine should call (no ``deployId``).
        framework: adapter name, e.g. ``"flask"``.
        functions: entries built by :func:`function_config` / :func:`on_failure_config`.
        app_version: optional app version label.
    """
    return _stripped(
        {
            "appName": app_id,
            "appVersion": app_version,
            "capabilities": capabilities(),
            "deployType": "ping",
            "framework": framework,
            "functions": functions,
            "sdk": _identity.SDK_REGISTRATION,
            "url": url,
            "v": "0.1",
        }
    )


def inspection_body(
    *,
    authenticated: bool,
    function_count: int,
    mode: Literal["dev", "cloud"],
    has_event_key: bool,
    has_signing_key: bool,
    has_signing_key_fallback: bool,
    app_id: str,
    api_origin: str,
    event_api_origin: str,
    env: str | None,
    framework: str,
    serve_origin: str | None,
    serve_path: str | None,
    signing_key_hash: str | None,
    signing_key_fallback_hash: str | None,
    event_key_hash: str | None,
) -> dict[str, Any]:
    """The ``GET`` introspection body (PROTOCOL.md §1).

    Unauthenticated callers get only the six public keys: key hashes are usable bearer
    tokens and must never leak. Authenticated callers get everything, nulls included.
    """
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "function_count": function_count,
        "has_event_key": has_event_key,
        "has_signing_key": has_signing_key,
        "has_signing_key_fallback": has_signing_key_fallback,
        "mode": mode,
    }
    if not authenticated:
        return body
    body.update(
        api_origin=api_origin,
        app_id=app_id,
        authentication_succeeded=True,
        capabilities=capabilities(),
        env=env,
        event_api_origin=event_api_origin,
        event_key_hash=event_key_hash,
        framework=framework,
        sdk_language=_identity.LANGUAGE,
        sdk_version=_identity.VERSION,
        serve_origin=serve_origin,
        serve_path=serve_path,
        signing_key_fallback_hash=signing_key_fallback_hash,
        signing_key_hash=signing_key_hash,
    )
    return body


def in_band_sync_body(
    *,
    app_id: str,
    url: str,
    framework: str,
    functions: list[dict[str, Any]],
    inspection: dict[str, Any],
    env: str | None,
    app_version: str | None,
) -> dict[str, Any]:
    """The answer to an in-band sync ``PUT`` (PROTOCOL.md §2.2), nulls stripped.

    Args:
        app_id: the app id.
        url: the serve URL computed from the request body's ``url``.
        framework: adapter name.
        functions: the same entries as in :func:`register_body`.
        inspection: the authenticated :func:`inspection_body`.
        env: the branch environment, if any.
        app_version: optional app version label.
    """
    return _stripped(
        {
            "app_id": app_id,
            "appVersion": app_version,
            "env": env,
            "framework": framework,
            "functions": functions,
            "inspection": inspection,
            "sdk_author": _identity.SDK_AUTHOR,
            "sdk_language": _identity.LANGUAGE,
            "sdk_version": _identity.VERSION,
            "url": url,
        }
    )
