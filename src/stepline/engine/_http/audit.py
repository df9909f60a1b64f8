"""The audit log: who did what through the engine's API and dashboard, and how it ended.

``Auditor.action`` is called by the gate (``gate.guarded``) once a request has answered;
what it records is decided by ``audited`` (pure):

- every request a role check refused (``refused``, 403), whatever its route;
- every request that changes something (not ``GET``/``HEAD``) on a route a dashboard
  session may use (the management surface: cancels, replays, signals, approvals, pauses,
  bulk actions, syncs, versions), whoever made it and however it ended (``ok``, or
  ``failed`` with its status) — except starting runs and sending events with the
  signing key and no asserted actor, which is API traffic the runs and events record
  already, and ``POST /v0/gql``, which only reads;
- sign-ins (refused ones too) and sign-outs, which the dashboard records itself.

An entry names the principal (``principals``), its role and credential, the route, the
path parameters it acted on (never a secret: an event key's or a hook token's route is
not a session's) and the status answered. ``GET /v1/audit`` (admins) lists the entries,
newest first, of one principal with ``?principal=``, a page at a time (``cursor``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import starlette.requests
import starlette.responses

from stepline._serving.access import Credential, Route
from stepline.engine import _ids
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.principals import Principal
from stepline.engine._store.audit import AuditEntry

logger = logging.getLogger("stepline.engine.audit")

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

__all__ = ["Auditor", "audited", "outcome", "view"]

#: Routes whose signing-key traffic (no asserted actor) is not an action to record.
_API_TRAFFIC = frozenset(
    {
        ("POST", "/v1/functions/{function_id:path}/runs"),
        ("POST", "/v1/events"),
    }
)
#: Routes that take a body to read and change nothing.
_READS = frozenset({("POST", "/v0/gql")})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def audited(row: Route, method: str, who: Principal, status: int) -> bool:
    """Whether a request to ``row`` by ``who``, answered with ``status``, is recorded."""
    if status == 403 and who.role is not None:
        return True
    if method in _SAFE or Credential.SESSION not in row.accepts:
        return False
    key = (row.method, row.path)
    if key in _READS:
        return False
    api_traffic = who.credential is Credential.SIGNING_KEY and who.via is None
    return not (api_traffic and key in _API_TRAFFIC)


def outcome(status: int, refused: bool) -> str:
    """``refused`` for a role's refusal, ``ok`` for a 2xx or 3xx, else ``failed``."""
    if refused:
        return "refused"
    return "ok" if 200 <= status < 400 else "failed"


class Auditor:
    """Records actions in the engine's store, and serves ``GET /v1/audit``.

    Args:
        engine: the engine whose store keeps the log.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def action(
        self, row: Route, request: Request, who: Principal, status: int, *, refused: bool
    ) -> None:
        """Record a request to ``row`` if ``audited`` says so (a store fault is logged)."""
        if not audited(row, request.method, who, status):
            return
        target = ", ".join(f"{k}={v}" for k, v in sorted(request.path_params.items()))
        await self.record(who, f"{row.method} {row.path}", target, status, refused=refused)

    async def record(
        self, who: Principal, action: str, target: str, status: int, *, refused: bool
    ) -> None:
        """Store one entry; a failure to store it is logged, never the caller's error."""
        now = self.engine.clock.now()
        entry = AuditEntry(
            entry_id=_ids.ulid(int(now * 1000)),
            at=now,
            principal=who.name,
            role=who.role.value if who.role is not None else "",
            credential=who.credential.value,
            via=who.via,
            action=action,
            target=target[:500],
            outcome=outcome(status, refused),
            status=status,
        )
        try:
            await self.engine.store.atomic(lambda tx: tx.audit.record(entry))
        except Exception:
            logger.exception("could not record %s by %s in the audit log", action, who.name)

    def table(self) -> list[tuple[str, str, Handler]]:
        """The route, as ``api._Api.routes`` lists them (method, path, handler)."""

        async def listed(request: Request) -> Response:
            q = request.query_params
            limit = wire.page_limit(q.get("limit"))
            before, principal = q.get("cursor") or None, q.get("principal") or None
            found = await self.engine.store.read(
                lambda tx: tx.audit.entries(before=before, principal=principal, limit=limit + 1)
            )
            shown = found[:limit]
            more = len(found) > limit
            return wire.json_response(
                {
                    "data": [view(e) for e in shown],
                    "metadata": {"next_cursor": shown[-1].entry_id if more else None},
                }
            )

        return [("GET", "/v1/audit", listed)]


def view(entry: AuditEntry) -> dict[str, Any]:
    """An entry as ``GET /v1/audit`` shows it."""
    return {
        "id": entry.entry_id,
        "at": views.timestamp(entry.at),
        "principal": entry.principal,
        "role": entry.role or None,
        "credential": entry.credential,
        "via": entry.via,
        "action": entry.action,
        "target": entry.target,
        "outcome": entry.outcome,
        "status": entry.status,
    }
