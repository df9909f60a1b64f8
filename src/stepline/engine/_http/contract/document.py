"""The OpenAPI 3.1 document of REST v1, built from the access table and the operations.

Credentials come from ``stepline._serving.access.ENGINE`` (each operation's ``security``),
path parameters from the table's paths, everything else from ``operations.OPERATIONS``:
the document is rendered from what the routes are built from, so it cannot drift from
them. ``document()`` is pure and cached: the engine serves the same bytes every time.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from stepline._identity import VERSION
from stepline._serving import access
from stepline._serving.access import Credential
from stepline.engine._http.contract import operations, schemas
from stepline.engine._http.contract.operations import Operation

__all__ = ["PREFIX", "document", "openapi_path", "path_parameters"]

#: the routes the document describes
PREFIX = "/v1/"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::path)?\}")

#: the security schemes, by the credential kind each stands for
SCHEMES: dict[Credential, tuple[str, dict[str, Any]]] = {
    Credential.SIGNING_KEY: (
        "signingKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <signing key>` (or the key's hash): "
            "the operator's and the app's secret. Not needed in dev mode.",
        },
    ),
    Credential.SESSION: (
        "dashboardSession",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": "stepline_session",
            "description": "The dashboard's session (`POST /login`); a request that changes "
            "something also sends `X-Stepline-Csrf: 1` from a same-origin page.",
        },
    ),
    Credential.EVENT_KEY: (
        "eventKey",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-Stepline-Event-Key",
            "description": "An event key goes in the path of `POST /e/{key}` (OpenAPI has "
            "no path credential; this header is not read): it may send events, nothing else.",
        },
    ),
    Credential.HOOK_TOKEN: (
        "signalHookToken",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-Stepline-Hook-Token",
            "description": "A signal token in the path of `POST /v1/signals/hooks/{token}` "
            "(this header is not read): one wait of one run, once.",
        },
    ),
}


#: the body of a POST that reads none: ``{}`` is what the Python client sends, since a
#: dev engine's cross-site guard refuses a bodiless POST without ``X-Stepline-Csrf``
_IGNORED_BODY: dict[str, Any] = {
    "type": "object",
    "description": "not read: send `{}` (or no body with `X-Stepline-Csrf: 1`); a dev "
    "engine refuses a POST with neither (SECURITY.md, 'Modes')",
}


def openapi_path(path: str) -> str:
    """The table's path as OpenAPI writes it (``{function_id:path}`` -> ``{function_id}``)."""
    return _PLACEHOLDER.sub(r"{\1}", path)


def path_parameters(path: str) -> list[str]:
    """The names of the path's parameters, in order."""
    return _PLACEHOLDER.findall(path)


def described(row: access.Route) -> bool:
    """True for a row the document describes: every HTTP route under ``/v1``."""
    return row.method != access.WEBSOCKET and row.path.startswith(PREFIX)


@functools.cache
def _built() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    ids = {f"{op.method} {op.path}": _operation_id(op) for op in operations.OPERATIONS}
    for row in access.ENGINE:
        if not described(row):
            continue
        op = operations.operation(row.method, row.path)
        if op is None:
            raise RuntimeError(f"{row.method} {row.path} has no operation in contract.operations")
        item = _item(op, row, ids)
        paths.setdefault(openapi_path(row.path), {})[row.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stepline engine REST API",
            "version": VERSION,
            "description": "Every `/v1` route of the engine (docs/api.md has the "
            "compatibility policy). Refusals answer the `Error` object.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.COMPONENTS,
            "securitySchemes": {name: scheme for name, scheme in SCHEMES.values()},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a copy: the caller may change it).

    Raises:
        RuntimeError: a ``/v1`` row of the access table has no operation.
    """
    return copy.deepcopy(_built())


def _operation_id(op: Operation) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", openapi_path(op.path).lower()) if w]
    return op.method.lower() + "".join(w.capitalize() for w in words if w != "v1")


def _item(op: Operation, row: access.Route, ids: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": ids[f"{op.method} {op.path}"],
        "summary": op.summary,
        "tags": [op.tag],
        "security": _security(row.accepts),
        "x-stepline-credentials": sorted(kind.value for kind in row.accepts),
        "x-stepline-role": row.role.value,
        "x-stepline-payloads": row.payloads,
    }
    if op.description:
        item["description"] = op.description
    if op.deprecated:
        item["deprecated"] = True
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
        }
        for name in path_parameters(op.path)
    ]
    for param in op.query:
        schema = schemas.array(param.schema) if param.repeated else param.schema
        entry: dict[str, Any] = {"name": param.name, "in": "query", "schema": schema}
        if param.description:
            entry["description"] = param.description
        if param.required:
            entry["required"] = True
        if param.deprecated:
            entry["deprecated"] = True
        parameters.append(entry)
    if parameters:
        item["parameters"] = parameters
    if op.body is not None:
        item["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": op.body}},
        }
    elif op.method == "POST":  # nothing read, but a JSON body is how a client sends it
        item["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _IGNORED_BODY}},
        }
    item["responses"] = _responses(op, row, ids)
    return item


def _security(accepts: frozenset[Credential]) -> list[dict[str, list[str]]]:
    """Any one of the kinds suffices; ``{}`` (no credential) for an open route."""
    found: list[dict[str, list[str]]] = [
        {name: []} for kind, (name, _) in SCHEMES.items() if kind in accepts
    ]
    return [*found, {}] if Credential.NONE in accepts else found


def _responses(op: Operation, row: access.Route, ids: dict[str, str]) -> dict[str, Any]:
    error = {"application/json": {"schema": schemas.ref("Error")}}
    answers: dict[str, Any] = {}
    for status in (op.status, *op.also):
        answer: dict[str, Any] = {"description": op.summary}
        if op.answer is not None:
            answer["content"] = {media: {"schema": op.answer} for media in op.media}
            if "text/event-stream" in op.media:  # a stream's events are not JSON
                answer["content"]["text/event-stream"] = {"schema": schemas.STRING}
        if op.links and status == op.status:
            answer["links"] = {
                link.name: {"operationId": ids[link.target], "parameters": dict(link.parameters)}
                for link in op.links
            }
        answers[str(status)] = answer
    refusals = {400: "a malformed request, naming what is wrong", **op.errors}
    if path_parameters(op.path):  # also the router's answer to a path it does not serve
        refusals.setdefault(404, "not found")
    if Credential.NONE not in row.accepts:
        refusals[401] = "no credential this route accepts (production only)"
    # the guard in front of every route: in dev mode a Host that is not loopback, or a
    # bodiless POST without X-Stepline-Csrf (what a web page could forge); in production a
    # session's change without X-Stepline-Csrf from a same-origin page
    refusals[403] = (
        "refused by the cross-site guard (SECURITY.md, 'Modes'), or the caller's role is "
        "below the route's x-stepline-role (production; the answer names both)"
    )
    refusals[503] = "the database is unavailable (with Retry-After)"
    for status, meaning in sorted(refusals.items()):
        answers[str(status)] = {"description": meaning, "content": error}
    return answers
