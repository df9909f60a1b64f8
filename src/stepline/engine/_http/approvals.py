"""REST v1 for approvals: durable agents' tool calls waiting for a person's decision.

- ``GET /v1/approvals?function_id=&app_id=&cursor=&limit=``: the pending approvals, by
  id, ``{"data": [approval, ...], "metadata": {"next_cursor"}}``.
- ``GET /v1/approvals/{approval_id}``: one, pending or decided (404 if there is none).
- ``POST /v1/approvals/{approval_id}/approve``, body ``{"args"?: {...}, "by"?: str}``:
  run the call, with ``args`` instead of the model's (checked against the tool's JSON
  schema: 400 listing the problems). An approval whose ``budget`` is set asks to let a
  run's model request go over its token budget: it takes no ``args``.
- ``POST /v1/approvals/{approval_id}/reject``, body ``{"reason"?: str, "by"?: str}``:
  the model is told the call was denied, with the reason.

Who decided is recorded with the decision: ``by`` as the caller with the signing key
says (the Django admin's user, the web kit's principal; ``"api"`` when not given); a
dashboard session's is its signed-in user's name (``principals``), whatever its body says,
or ``"dashboard"`` for a session of the signing key or an unnamed dashboard key. A
decision answers the approval as it is now; 409 once it was decided (or its wait ended),
404 for an unknown one. The rules are ``engine/_control/approvals.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline._serving.access import Credential
from stepline.engine import _users
from stepline.engine._control import approvals as _approvals
from stepline.engine._control.signals import SignalConflict
from stepline.engine._engine import Engine
from stepline.engine._errors import NotFoundError
from stepline.engine._http import gate, principals, views, wire
from stepline.engine._http.wire import ApiError
from stepline.engine._store import Tx

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: The principal a dashboard session's decisions are recorded with.
DASHBOARD = "dashboard"
_BODY_LIMIT = 1024 * 1024


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""
    routes = _ApprovalRoutes(engine)
    return [
        ("GET", "/v1/approvals", routes.listing),
        ("GET", "/v1/approvals/{approval_id}", routes.one),
        ("POST", "/v1/approvals/{approval_id}/approve", routes.approve),
        ("POST", "/v1/approvals/{approval_id}/reject", routes.reject),
    ]


def view(found: _approvals.Approval) -> dict[str, Any]:
    """An approval as the API shows it."""
    decision = found.decision
    if decision is not None:
        decision = {**decision, "at": views.timestamp(decision.get("at"))}
    return {
        "approval_id": found.approval_id,
        "run_id": found.run_id,
        "step_id": found.step_id,
        "step": found.step,
        "function_id": found.function_id,
        "app_id": found.app_id,
        "started_by": found.started_by,
        "status": found.status,
        "agent": found.request.get("agent"),
        "tool": found.request.get("tool"),
        "tool_call_id": found.request.get("tool_call_id"),
        "args": found.request.get("args"),
        "schema": found.request.get("schema"),
        "description": found.request.get("description"),
        "metadata": found.request.get("metadata"),
        "on_timeout": found.request.get("on_timeout"),
        "budget": found.request.get("budget"),
        "asked_at": views.timestamp(found.asked_at),
        "until": views.timestamp(found.until),
        "decision": decision,
    }


class _ApprovalRoutes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limit = min(engine.settings.max_body_bytes, _BODY_LIMIT)

    async def listing(self, request: Request) -> Response:
        query = request.query_params
        limit = wire.page_limit(query.get("limit"))
        function_id, app_id = query.get("function_id") or None, query.get("app_id") or None
        after = query.get("cursor") or ""
        for name, value in (("function_id", function_id), ("app_id", app_id), ("cursor", after)):
            if value is not None and (len(value) > 512 or "\x00" in value):
                raise ApiError(400, f"{name}: at most 512 characters, without NUL")

        def read(tx: Tx) -> list[_approvals.Approval]:
            return _approvals.listing(
                tx, function_id=function_id, app_id=app_id, after=after, limit=limit + 1
            )

        found = await self.engine.store.read(read)
        page = views.page(found, limit, view, lambda a: a.approval_id)
        return wire.json_response(page)

    async def one(self, request: Request) -> Response:
        value = request.path_params["approval_id"]
        found = await self.engine.store.read(lambda tx: _approvals.get(tx, value))
        if found is None:
            raise ApiError(404, f"approval {value!r} not found")
        return wire.json_response(views.data(view(found)))

    async def approve(self, request: Request) -> Response:
        body = await self._body(request, {"args", "by"})
        return await self._decide(request, {"decision": "approve", "args": body.get("args")}, body)

    async def reject(self, request: Request) -> Response:
        body = await self._body(request, {"reason", "by"})
        decision = {"decision": "reject", "reason": body.get("reason")}
        return await self._decide(request, decision, body)

    async def _body(self, request: Request, keys: set[str]) -> dict[str, Any]:
        body = await wire.read_json(request, self.limit, required=False)
        if body is None:
            return {}
        if not isinstance(body, dict) or not set(body) <= keys:
            raise ApiError(400, f"want a JSON object with at most {sorted(keys)}")
        return body

    async def _decide(
        self, request: Request, decision: dict[str, Any], body: dict[str, Any]
    ) -> Response:
        if gate.credential(request) is Credential.SESSION:
            name = principals.principal(request).name  # a session cannot name another
            decision["by"] = DASHBOARD if name in _users.RESERVED else name
        else:
            decision["by"] = body.get("by", "api")
        value = request.path_params["approval_id"]
        engine = self.engine

        def work(tx: Tx) -> _approvals.Approval:
            now = engine.clock.now()
            return _approvals.decide(engine.transitions, tx, value, decision, now)

        try:
            found = await engine.commit(work)
        except NotFoundError as exc:
            raise ApiError(404, str(exc)) from None
        except SignalConflict as exc:
            raise ApiError(409, str(exc)) from None
        except _approvals.ApprovalInvalid as exc:
            message = ": ".join([str(exc), "; ".join(exc.problems)] if exc.problems else [str(exc)])
            raise ApiError(400, message, {"error": message, "problems": exc.problems}) from None
        return wire.json_response(views.data(view(found)))
