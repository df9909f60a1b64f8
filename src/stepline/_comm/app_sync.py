"""App sync: GET inspection, PUT sync (out-of-band and in-band), large-payload loading.

"Sync" here means telling the engine about the app's functions, never "synchronous".
Every function reads a ``ServeEndpoint`` (what is served, where) and, where a request's
signature matters, a ``Signer``; neither knows the ``CommHandler`` that owns them.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import Any

from stepline import _errors
from stepline._comm.messages import CommRequest, CommResponse, decode_json_object
from stepline._comm.serve_endpoint import ServeEndpoint, Signer
from stepline._protocol import headers, registration, signing
from stepline._protocol.execution import ExecutionRequest
from stepline._transport.effects import Flow, HttpRequest, HttpResponse


def inspect(endpoint: ServeEndpoint, signer: Signer, request: CommRequest) -> CommResponse:
    """Answer GET: the unauthenticated body, or the full one for a signed request."""
    settings = endpoint.settings
    kind = request.headers.get(headers.SERVER_KIND)
    if kind and kind != settings.mode:
        return CommResponse.json(403, {}, endpoint.base_headers)
    key = None
    if request.headers.get(headers.SIGNATURE) and settings.signing_keys:
        try:
            key = signer.verify(request)
        except _errors.SignatureVerificationError:
            key = None  # an unauthenticated body, never an error (and never key hashes)
    fallback = settings.signing_key_fallback
    body = registration.inspection_body(
        authenticated=key is not None,
        function_count=sum(1 for fn in endpoint.functions.values() if fn.failure_of is None),
        mode=settings.mode,
        has_event_key=settings.event_key is not None,
        has_signing_key=settings.signing_key is not None,
        has_signing_key_fallback=fallback is not None,
        app_id=settings.app_id,
        api_origin=settings.api_base_url,
        event_api_origin=settings.event_api_base_url,
        env=settings.env,
        framework=endpoint.framework,
        serve_origin=endpoint.serve_origin,
        serve_path=endpoint.serve_path,
        signing_key_hash=_hash(settings.signing_key),
        signing_key_fallback_hash=_hash(fallback),
        event_key_hash=signing.hash_event_key(settings.event_key) if settings.event_key else None,
    )
    return signer.signed(CommResponse.json(200, body, endpoint.base_headers), key)


def sync(endpoint: ServeEndpoint, signer: Signer, request: CommRequest) -> Flow[CommResponse]:
    """Answer PUT: register the functions out of band, or describe them in band."""
    settings = endpoint.settings
    kind = request.headers.get(headers.SERVER_KIND)
    if kind and kind != settings.mode:
        raise _errors.ServerKindMismatchError(
            f"a {kind} server cannot sync this app, which runs in {settings.mode} mode"
        )
    if request.headers.get(headers.SYNC_KIND) == "in_band" and settings.allow_in_band_sync:
        return _in_band(endpoint, signer, request)
    body = register_payload(endpoint, _out_of_band_url(endpoint, signer, request))
    target = f"{settings.api_base_url}/fn/register"
    deploy_id = request.query.get("deployId")
    if deploy_id:
        target += "?" + urllib.parse.urlencode({"deployId": deploy_id})
    extra = {headers.EXPECTED_SERVER_KIND: kind} if kind else {}
    register = HttpRequest("POST", target, extra, json.dumps(body).encode())
    response = yield from api_call(endpoint, register)
    out = endpoint.base_headers | {headers.SYNC_KIND: "out_of_band"}
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


def _out_of_band_url(endpoint: ServeEndpoint, signer: Signer, request: CommRequest) -> str:
    """The URL an out-of-band sync registers; in cloud mode never an unsigned request's.

    A signed PUT (the engine's own) may name the URL: its body's ``url`` (signed) wins
    over the request's ``Host`` (not signed). An unsigned one only triggers a sync to
    the configured ``serve_origin``: the ``Host`` header of an anonymous request must
    not choose where the engine sends this app's events and step outputs.
    """
    if endpoint.settings.is_dev:
        return serve_url(endpoint, request)
    if request.headers.get(headers.SIGNATURE):
        signer.verify(request)
        sent = decode_json_object(request.body) or {}
        return serve_url(endpoint, request, sent.get("url"))
    if endpoint.serve_origin:
        return configured_url(endpoint, request)
    raise _errors.SignatureVerificationError(
        "an unsigned sync cannot choose this app's URL in cloud mode. Either set "
        "serve_origin= (or STEPLINE_SERVE_ORIGIN) to the app's public origin, and the sync "
        "registers that origin; or sync from the engine, which signs its PUT with the "
        "signing key (stepline start -u <url>, or POST /v1/apps/sync)"
    )


def configured_url(endpoint: ServeEndpoint, request: CommRequest) -> str:
    """The configured ``serve_origin`` with ``serve_path`` (or the request's path).

    The request's path cannot move the host: it is joined below the origin, and one
    holding a backslash, whitespace or a control character is refused.
    """
    assert endpoint.serve_origin is not None
    path = endpoint.serve_path or urllib.parse.urlsplit(request.url).path
    if any(c == "\\" or c <= " " or c == "\x7f" for c in path):
        raise _errors.BodyInvalidError(
            f"the request path {path!r} cannot be registered; set serve_path= (or "
            "STEPLINE_SERVE_PATH) to the serve endpoint's public path"
        )
    url = endpoint.serve_origin.rstrip("/") + "/" + path.lstrip("/")
    expected = urllib.parse.urlsplit(endpoint.serve_origin)
    if urllib.parse.urlsplit(url).netloc != expected.netloc:  # pragma: no cover - defensive
        raise _errors.BodyInvalidError(f"the request path {path!r} would change the origin")
    return url


def trust_probe(endpoint: ServeEndpoint, request: CommRequest) -> None:
    """Check a (verified) ``?probe=trust`` names this app's origin, when one is configured.

    The engine probes a URL an app asks to move to, and says which in the signed body:
    refusing a probe meant for another origin stops a relay (an attacker forwarding the
    engine's probe for its own URL here, to borrow this app's signed answer).
    """
    sent = decode_json_object(request.body) or {}
    url = sent.get("url")
    if not endpoint.serve_origin or not isinstance(url, str):
        return
    if _origin(url) != _origin(endpoint.serve_origin):
        raise TrustProbeRefusedError(
            f"this app is served at {endpoint.serve_origin}, not at {url}: whoever registered "
            "that URL for this app is not this app. Sync the app from its own origin"
        )


class TrustProbeRefusedError(_errors.SteplineError):
    """A trust probe for a URL outside this app's configured ``serve_origin``."""

    code = "trust_probe_refused"
    status = 403


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _in_band(endpoint: ServeEndpoint, signer: Signer, request: CommRequest) -> CommResponse:
    settings = endpoint.settings
    if not settings.signing_keys or not request.headers.get(headers.SIGNATURE):
        raise _errors.SignatureVerificationError(
            "in-band sync needs a signed request and a configured signing key"
        )
    key = signer.verify(request)
    sent = decode_json_object(request.body) or {}
    url = serve_url(endpoint, request, sent.get("url"))
    inspection = inspect(endpoint, signer, request)
    body = registration.in_band_sync_body(
        app_id=settings.app_id,
        url=url,
        framework=endpoint.framework,
        functions=_configs(endpoint, url),
        inspection=json.loads(inspection.body),
        env=settings.env,
        app_version=settings.app_version,
    )
    out = endpoint.base_headers | {headers.SYNC_KIND: "in_band"}
    return signer.signed(CommResponse.json(200, body, out), key)


def load_large_payloads(endpoint: ServeEndpoint, call: ExecutionRequest) -> Flow[None]:
    """Fetch events and memos the engine left out of an oversized request."""
    settings = endpoint.settings
    base = f"{settings.api_base_url}/v0/runs/{urllib.parse.quote(call.ctx.run_id)}"
    batch = yield from api_call(endpoint, HttpRequest("GET", f"{base}/batch", {}))
    actions = yield from api_call(endpoint, HttpRequest("GET", f"{base}/actions", {}))
    events, steps = _run_state(batch, "batch", base), _run_state(actions, "actions", base)
    if not isinstance(events, list) or not isinstance(steps, dict) or not events:
        raise _errors.BodyInvalidError("the engine returned malformed run state")
    call.events, call.event, call.steps = events, events[0], steps


def api_call(endpoint: ServeEndpoint, request: HttpRequest) -> Flow[HttpResponse]:
    """Call the engine's API with the SDK headers; on 401/403 retry with the fallback key."""
    settings = endpoint.settings
    response: HttpResponse | None = None
    for key in settings.signing_keys or (None,):
        call = {**_api_headers(endpoint, key), **request.headers}
        response = yield dataclasses.replace(
            request, headers=call, timeout=settings.request_timeout
        )
        if response.status not in (401, 403):
            break
    assert response is not None
    return response


def _run_state(response: HttpResponse, what: str, base: str) -> Any:
    if not response.ok:
        detail = response.error or response.body[:200].decode(errors="replace")
        raise _errors.RunStateUnavailableError(
            f"loading run {what} from the engine ({base}/{what}) failed with status "
            f"{response.status}: {detail}"
        )
    try:
        return json.loads(response.body)
    except ValueError:
        raise _errors.BodyInvalidError(f"run {what} is not JSON") from None


def serve_url(endpoint: ServeEndpoint, request: CommRequest, sent_url: object = None) -> str:
    """The public URL of the serve endpoint: configured origin/path over the request's."""
    seen = urllib.parse.urlsplit(sent_url if isinstance(sent_url, str) else request.url)
    origin = endpoint.serve_origin or f"{seen.scheme}://{seen.netloc}"
    path = endpoint.serve_path or seen.path
    return origin.rstrip("/") + "/" + path.lstrip("/")


def register_payload(endpoint: ServeEndpoint, url: str) -> dict[str, Any]:
    """The ``POST /fn/register`` body for this endpoint's functions served at ``url``."""
    return registration.register_body(
        app_id=endpoint.settings.app_id,
        url=url,
        framework=endpoint.framework,
        functions=_configs(endpoint, url),
        app_version=endpoint.settings.app_version,
    )


def _configs(endpoint: ServeEndpoint, url: str) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    for fn in endpoint.functions.values():
        if fn.failure_of is None:
            configs.extend(fn.configs(url))
    return configs


def _api_headers(endpoint: ServeEndpoint, key: str | None) -> dict[str, str]:
    settings = endpoint.settings
    out = {
        headers.CONTENT_TYPE: headers.JSON,
        headers.SDK: endpoint.base_headers[headers.SDK],
        headers.USER_AGENT: endpoint.base_headers[headers.USER_AGENT],
        headers.FRAMEWORK: endpoint.framework,
        headers.REQ_VERSION: headers.REQUEST_VERSION,
    }
    if key:
        out[headers.AUTHORIZATION] = signing.bearer_token(key)
    if settings.env:
        out[headers.ENV] = settings.env
    return out


def _hash(key: str | None) -> str | None:
    return signing.hash_signing_key(key) if key else None
