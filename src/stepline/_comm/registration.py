"""GET inspection, PUT sync (out-of-band and in-band) and large-payload loading."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._comm.messages import CommRequest, CommResponse, decode_json_object
from stepline._effects import Flow, HttpRequest, HttpResponse
from stepline._protocol import headers, registration, signing
from stepline._protocol.execution import ExecutionRequest

if TYPE_CHECKING:
    from stepline._comm.handler import CommHandler


def inspect(handler: CommHandler, request: CommRequest) -> CommResponse:
    """Answer GET: the unauthenticated body, or the full one for a signed request."""
    settings = handler.client.settings
    kind = request.headers.get(headers.SERVER_KIND)
    if kind and kind != settings.mode:
        return CommResponse.json(403, {}, handler.base_headers)
    key = None
    if request.headers.get(headers.SIGNATURE) and settings.signing_keys:
        try:
            key = handler.verify(request)
        except _errors.SignatureVerificationError:
            key = None  # an unauthenticated body, never an error (and never key hashes)
    fallback = settings.signing_key_fallback
    body = registration.inspection_body(
        authenticated=key is not None,
        function_count=sum(1 for fn in handler.functions.values() if fn.failure_of is None),
        mode=settings.mode,
        has_event_key=settings.event_key is not None,
        has_signing_key=settings.signing_key is not None,
        has_signing_key_fallback=fallback is not None,
        app_id=settings.app_id,
        api_origin=settings.api_base_url,
        event_api_origin=settings.event_api_base_url,
        env=settings.env,
        framework=handler.framework,
        serve_origin=handler.serve_origin,
        serve_path=handler.serve_path,
        signing_key_hash=_hash(settings.signing_key),
        signing_key_fallback_hash=_hash(fallback),
        event_key_hash=signing.hash_event_key(settings.event_key) if settings.event_key else None,
    )
    return handler.signed(CommResponse.json(200, body, handler.base_headers), key)


def sync(handler: CommHandler, request: CommRequest) -> Flow[CommResponse]:
    """Answer PUT: register the functions out of band, or describe them in band."""
    settings = handler.client.settings
    kind = request.headers.get(headers.SERVER_KIND)
    if kind and kind != settings.mode:
        raise _errors.ServerKindMismatchError(
            f"a {kind} server cannot sync this app, which runs in {settings.mode} mode"
        )
    if request.headers.get(headers.SYNC_KIND) == "in_band" and settings.allow_in_band_sync:
        return _in_band(handler, request)
    body = register_payload(handler, serve_url(handler, request))
    target = f"{settings.api_base_url}/fn/register"
    deploy_id = request.query.get("deployId")
    if deploy_id:
        target += "?" + urllib.parse.urlencode({"deployId": deploy_id})
    extra = {headers.EXPECTED_SERVER_KIND: kind} if kind else {}
    register = HttpRequest("POST", target, extra, json.dumps(body).encode())
    response = yield from api_call(handler, register)
    out = handler.base_headers | {headers.SYNC_KIND: "out_of_band"}
    if not response.ok:
        detail = decode_json_object(response.body) or {}
        reason = (
            detail.get("error") or response.error or response.body[:200].decode(errors="replace")
        )
        raise _errors.RegistrationFailedError(
            f"registration at {target} failed with status {response.status}: {reason}"
        )
    answer = decode_json_object(response.body)
    if answer is None:
        answer = {"message": "Successfully registered", "modified": False}
    return CommResponse.json(200, answer, out)


def _in_band(handler: CommHandler, request: CommRequest) -> CommResponse:
    settings = handler.client.settings
    if not settings.signing_keys or not request.headers.get(headers.SIGNATURE):
        raise _errors.SignatureVerificationError(
            "in-band sync needs a signed request and a configured signing key"
        )
    key = handler.verify(request)
    sent = decode_json_object(request.body) or {}
    url = serve_url(handler, request, sent.get("url"))
    inspection = inspect(handler, request)
    body = registration.in_band_sync_body(
        app_id=settings.app_id,
        url=url,
        framework=handler.framework,
        functions=_configs(handler, url),
        inspection=json.loads(inspection.body),
        env=settings.env,
        app_version=settings.app_version,
    )
    out = handler.base_headers | {headers.SYNC_KIND: "in_band"}
    return handler.signed(CommResponse.json(200, body, out), key)


def load_large_payloads(handler: CommHandler, call: ExecutionRequest) -> Flow[None]:
    """Fetch events and memos the engine left out of an oversized request."""
    settings = handler.client.settings
    base = f"{settings.api_base_url}/v0/runs/{urllib.parse.quote(call.ctx.run_id)}"
    batch = yield from api_call(handler, HttpRequest("GET", f"{base}/batch", {}))
    actions = yield from api_call(handler, HttpRequest("GET", f"{base}/actions", {}))
    events, steps = _json(batch, "batch"), _json(actions, "actions")
    if not isinstance(events, list) or not isinstance(steps, dict) or not events:
        raise _errors.BodyInvalidError("the engine returned malformed run state")
    call.events, call.event, call.steps = events, events[0], steps


def api_call(handler: CommHandler, request: HttpRequest) -> Flow[HttpResponse]:
    """Call the engine's API with the SDK headers; on 401/403 retry with the fallback key."""
    settings = handler.client.settings
    response: HttpResponse | None = None
    for key in settings.signing_keys or (None,):
        call = {**_api_headers(handler, key), **request.headers}
        response = yield dataclasses.replace(
            request, headers=call, timeout=settings.request_timeout
        )
        if response.status not in (401, 403):
            break
    assert response is not None
    return response


def _json(response: HttpResponse, what: str) -> Any:
    if not response.ok:
        detail = response.error or response.body[:200].decode(errors="replace")
        raise _errors.RunStateUnavailableError(
            f"loading run {what} from the engine failed with status {response.status}: {detail}"
        )
    try:
        return json.loads(response.body)
    except ValueError:
        raise _errors.BodyInvalidError(f"run {what} is not JSON") from None


def serve_url(handler: CommHandler, request: CommRequest, sent_url: object = None) -> str:
    """The public URL of the serve endpoint: configured origin/path over the request's."""
    seen = urllib.parse.urlsplit(sent_url if isinstance(sent_url, str) else request.url)
    origin = handler.serve_origin or f"{seen.scheme}://{seen.netloc}"
    path = handler.serve_path or seen.path
    return origin.rstrip("/") + "/" + path.lstrip("/")


def register_payload(handler: CommHandler, url: str) -> dict[str, Any]:
    """The ``POST /fn/register`` body for this handler's functions served at ``url``."""
    return registration.register_body(
        app_id=handler.client.settings.app_id,
        url=url,
        framework=handler.framework,
        functions=_configs(handler, url),
        app_version=handler.client.settings.app_version,
    )


def _configs(handler: CommHandler, url: str) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    for fn in handler.functions.values():
        if fn.failure_of is None:
            configs.extend(fn.configs(url))
    return configs


def _api_headers(handler: CommHandler, key: str | None) -> dict[str, str]:
    settings = handler.client.settings
    out = {
        headers.CONTENT_TYPE: headers.JSON,
        headers.SDK: handler.base_headers[headers.SDK],
        headers.USER_AGENT: handler.base_headers[headers.USER_AGENT],
        headers.FRAMEWORK: handler.framework,
        headers.REQ_VERSION: headers.REQUEST_VERSION,
    }
    if key:
        out[headers.AUTHORIZATION] = signing.bearer_token(key)
    if settings.env:
        out[headers.ENV] = settings.env
    return out


def _hash(key: str | None) -> str | None:
    return signing.hash_signing_key(key) if key else None
