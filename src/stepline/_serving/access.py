"""Who may call what: every route Stepline serves and the credential kinds it accepts.

One table per side, and nothing else decides which credential a route takes:

- ``ENGINE``: every route the engine serves (``stepline dev``, ``stepline start`` and the
  embedded engine). ``stepline.engine._http.api`` builds its routes from this table and
  wraps each handler with the check for exactly the kinds its row lists
  (``stepline.engine._http.gate``); a handler with no row, or a row with no handler,
  stops the app from being built. ``tests/engine/test_access.py`` sends every kind to
  every route and compares the app's routes with the table.
- ``FRAMEWORK``: the routes an app serves through the framework integrations: the SDK's
  serve endpoint, the web kit's run routes (``stepline._webkit.routes``) and durable endpoints
  (``stepline._endpoints``). Their checks live in those modules (the engine's signature,
  the app's ``authorize`` hook); the table states what they promise and the tests pin it.

The kinds are for production (``stepline start``). Dev mode has no credentials (every
route that takes the signing-key bearer is open, as Inngest's dev server is); there the
guard against what a web page could forge (``stepline.engine._http.guard``) is the
promise instead.

Each engine row also names the least ``Role`` that may use it, and whether its answer
carries payloads (event data, step inputs and outputs, a run's output, errors' messages).
A request's role comes from its credential (``stepline.engine._http.principals``): the
signing key is ``ADMIN``, a dashboard session has its key's role, and in dev mode
everyone is ``ADMIN``. A role below the row's is refused with a 403 naming both; a
``VIEWER`` reads a payload route's answer with every payload replaced
(``stepline.engine._http.redaction``). A row that does not name its role is ``ADMIN``'s.

Pure data: no I/O, no engine import (the framework side imports it too).
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["ENGINE", "FRAMEWORK", "Credential", "Role", "Route", "engine_row"]


class Credential(enum.Enum):
    """A kind of credential a request can present."""

    #: Nothing: anyone who reaches the port.
    NONE = "none"
    #: ``Authorization: Bearer <signing key>`` (or the key's hash): the app's and the
    #: operator's secret. Everything an SDK, a worker or another engine node calls takes
    #: this alone.
    SIGNING_KEY = "signing-key bearer"
    #: An event key in ``/e/{key}``: may send events, nothing else.
    EVENT_KEY = "event key"
    #: A dashboard session cookie (``POST /login`` with a dashboard key or the signing
    #: key), with ``X-Stepline-Csrf`` and a same-origin page for a method that changes
    #: something: the management and dashboard routes only.
    SESSION = "dashboard session"
    #: A Connect session and sync token (from ``/v0/connect/start``) in the worker's first
    #: frame on the gateway's socket, checked by the gateway's handshake.
    CONNECT_TOKEN = "Connect token"
    #: A signal token in the URL (``POST /v1/signals/hooks/{token}``): a capability for one
    #: wait of one run, checked against the store under the signing keys by the handler;
    #: anything else answers 404, whatever else the request carries.
    HOOK_TOKEN = "signal-hook token"
    #: ``X-Inngest-Signature`` over the body with the signing key (framework side: the
    #: engine's calls to an app's serve endpoint).
    SIGNATURE = "engine signature"
    #: A caller the app's ``authorize`` hook admits (framework side: the web kit's run
    #: routes and durable endpoints).
    KIT_CALLER = "kit caller"

    @property
    def capability(self) -> bool:
        """True for a credential that is part of the URL or handshake its handler verifies.

        The table's check lets such a request through on a route that lists the kind;
        the handler refuses it (404 for a hook token, a policy close for Connect)."""
        return self in (Credential.HOOK_TOKEN, Credential.CONNECT_TOKEN)


class Role(enum.Enum):
    """What a person (or key) may do, each role everything the one below it may."""

    #: reads runs, events, functions and apps, without payloads
    VIEWER = "viewer"
    #: reads payloads; cancels, replays, reruns, signals, starts, answers approvals
    OPERATOR = "operator"
    #: apps, versions, pausing, bulk actions, the audit log: everything
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for ``VIEWER``, 1 for ``OPERATOR``, 2 for ``ADMIN``."""
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


#: The WebSocket "method" in the tables.
WEBSOCKET = "WS"


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One route, the credential kinds it accepts (any one of them suffices), the least
    role that may use it, and whether its answer carries payloads."""

    method: str
    path: str
    accepts: frozenset[Credential]
    #: who calls it, and why these kinds (shown in SECURITY.md's terms)
    note: str = ""
    #: the least role that may use it (the engine's rows; a framework row's is its own)
    role: Role = Role.ADMIN
    #: its answer carries payloads: a ``VIEWER`` reads it redacted
    payloads: bool = False


def _route(
    method: str,
    path: str,
    *accepts: Credential,
    note: str = "",
    role: Role = Role.ADMIN,
    payloads: bool = False,
) -> Route:
    return Route(method, path, frozenset(accepts), note, role, payloads)


_KEY = Credential.SIGNING_KEY
_SESSION = Credential.SESSION
_NONE = Credential.NONE
_VIEWER = Role.VIEWER
_OPERATOR = Role.OPERATOR
_ADMIN = Role.ADMIN

#: Every route the engine serves, in the order its router tries them (the busiest first;
#: no path matches two). ``{x:path}`` is Starlette's path convertor.
ENGINE: tuple[Route, ...] = (
    # events and invocations
    _route("POST", "/e/{key}", Credential.EVENT_KEY, note="apps and webhooks send events"),
    _route("POST", "/v1/functions/{function_id:path}/runs", _KEY, _SESSION, role=_OPERATOR),
    _route("GET", "/v1/runs/{run_id}", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route(
        "POST", "/v1/events", _KEY, _SESSION, role=_OPERATOR, note="the dashboard's 'send event'"
    ),
    _route("POST", "/invoke/{function_id:path}", _KEY, note="SDK"),
    # the SDK's and workers' routes: the signing key only
    _route("POST", "/fn/register", _KEY, note="SDK app sync: registers (or moves) an app"),
    _route("GET", "/v0/runs/{run_id}/batch", _KEY, note="SDK: a call's events"),
    _route("GET", "/v0/runs/{run_id}/actions", _KEY, note="SDK: a call's memoized steps"),
    _route("DELETE", "/v0/runs/{run_id}", _KEY, note="SDK"),
    _route("POST", "/v1/checkpoint/{run_id}/async", _KEY, note="SDK: step results"),
    # REST v1: API callers with the key, and the dashboard
    _route(
        "GET",
        "/v1/events",
        _KEY,
        _SESSION,
        role=_VIEWER,
        payloads=True,
        note="a search over payloads (expression) needs the operator role",
    ),
    _route("GET", "/v1/events/{event_id}", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route("GET", "/v1/events/{event_id}/runs", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route("GET", "/v1/runs", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route("DELETE", "/v1/runs/{run_id}", _KEY, _SESSION, role=_OPERATOR),
    _route("POST", "/v1/runs/{run_id}/cancel", _KEY, _SESSION, role=_OPERATOR),
    _route("GET", "/v1/runs/{run_id}/steps", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route("GET", "/v1/runs/{run_id}/attempts", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route(
        "GET",
        "/v1/runs/{run_id}/export",
        _KEY,
        _SESSION,
        role=_OPERATOR,
        payloads=True,
        note="a run as a test's journal: payloads throughout",
    ),
    _route(
        "GET",
        "/v1/runs/{run_id}/history",
        _KEY,
        _SESSION,
        role=_VIEWER,
        payloads=True,
        note="every recorded transition: step outputs, errors and the run's output",
    ),
    _route("POST", "/v1/runs/{run_id}/rerun", _KEY, _SESSION, role=_OPERATOR),
    _route("GET", "/v1/functions", _KEY, _SESSION, role=_VIEWER),
    _route("GET", "/v1/apps", _KEY, _SESSION, role=_VIEWER),
    _route(
        "POST",
        "/v1/apps/sync",
        _KEY,
        _SESSION,
        role=_ADMIN,
        note="a session's sync never vouches for a move (the trust probe decides)",
    ),
    _route("GET", "/v1/apps/{app_id}/versions", _KEY, _SESSION, role=_VIEWER),
    _route("DELETE", "/v1/apps/{app_id}/versions/{version}", _KEY, _SESSION, role=_ADMIN),
    _route("POST", "/v1/functions/{function_id:path}/pause", _KEY, _SESSION, role=_ADMIN),
    _route("POST", "/v1/functions/{function_id:path}/resume", _KEY, _SESSION, role=_ADMIN),
    _route("GET", "/v1/functions/{function_id:path}/metrics", _KEY, _SESSION, role=_VIEWER),
    _route("GET", "/v1/crons", _KEY, _SESSION, role=_VIEWER, note="cron triggers, last runs"),
    _route("GET", "/v1/queue", _KEY, _SESSION, role=_VIEWER, note="counts and limits"),
    _route("GET", "/v1/functions/{function_id:path}/tokens", _KEY, _SESSION, role=_VIEWER),
    _route("GET", "/v1/runs/{run_id}/tokens", _KEY, _SESSION, role=_VIEWER),
    _route(
        "GET",
        "/v1/token-budgets/{budget}",
        _KEY,
        _SESSION,
        role=_VIEWER,
        note="SDK: an agent's budget",
    ),
    _route(
        "GET",
        "/v1/conversations/{conversation_id}/runs",
        _KEY,
        _SESSION,
        role=_VIEWER,
        payloads=True,
    ),
    _route("POST", "/v1/bulk/cancel", _KEY, _SESSION, role=_ADMIN),
    _route("POST", "/v1/bulk/replay", _KEY, _SESSION, role=_ADMIN),
    _route("GET", "/v1/bulk", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route("GET", "/v1/bulk/{bulk_id}", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route("POST", "/v1/bulk/{bulk_id}/cancel", _KEY, _SESSION, role=_ADMIN),
    _route("POST", "/v1/runs/{run_id}/replay", _KEY, _SESSION, role=_OPERATOR),
    _route("POST", "/v1/outbox/deliveries", _KEY, note="an outbox relay"),
    # Connect: workers and other nodes take the key; the listings are management reads
    _route("POST", "/v0/connect/start", _KEY, note="a Connect worker asks for its tokens"),
    _route("POST", "/v0/connect/flush", _KEY, note="a Connect worker's reply"),
    _route("POST", "/v0/connect/forward", _KEY, note="another engine node"),
    _route("GET", "/v1/connect/workers", _KEY, _SESSION, role=_VIEWER),
    _route("GET", "/v0/connect/envs/{env_id}/conns", _KEY, note="Inngest tooling"),
    _route("GET", "/v1/apps/{app_id}/workers", _KEY, _SESSION, role=_VIEWER),
    _route("POST", "/v1/runs/{run_id}/stream", _KEY, note="SDK: a run publishes"),
    _route(
        "GET",
        "/v1/runs/{run_id}/stream",
        _KEY,
        _SESSION,
        role=_OPERATOR,
        payloads=True,
        note="what a run publishes, streamed: not redacted, so not a viewer's",
    ),
    # durable endpoints' inline runs: the app's SDK, never a browser
    _route("POST", "/v1/functions/{function_id:path}/inline", _KEY, note="SDK"),
    _route("POST", "/v1/runs/{run_id}/inline/checkpoint", _KEY, note="SDK"),
    _route("POST", "/v1/runs/{run_id}/inline/answer", _KEY, note="SDK"),
    _route("POST", "/v1/runs/{run_id}/attributes", _KEY, _SESSION, role=_OPERATOR),
    _route("POST", "/v1/runs/{run_id}/signals/{name}", _KEY, _SESSION, role=_OPERATOR),
    _route("POST", "/v1/signals", _KEY, _SESSION, role=_OPERATOR),
    _route("POST", "/v1/signals/hooks/{token}", Credential.HOOK_TOKEN, note="outside systems"),
    _route(
        "GET",
        "/v1/approvals",
        _KEY,
        _SESSION,
        role=_VIEWER,
        payloads=True,
        note="the approvals inboxes",
    ),
    _route("GET", "/v1/approvals/{approval_id}", _KEY, _SESSION, role=_VIEWER, payloads=True),
    _route(
        "POST",
        "/v1/approvals/{approval_id}/approve",
        _KEY,
        _SESSION,
        role=_OPERATOR,
        note="a session's decision is recorded as its signed-in name, whoever the body names",
    ),
    _route("POST", "/v1/approvals/{approval_id}/reject", _KEY, _SESSION, role=_OPERATOR),
    _route("POST", "/v1/events/{event_id}/replay", _KEY, _SESSION, role=_OPERATOR),
    _route("GET", "/v1/views", _KEY, _SESSION, role=_VIEWER, note="the asker's saved run views"),
    _route("PUT", "/v1/views/{name}", _KEY, _SESSION, role=_VIEWER),
    _route("DELETE", "/v1/views/{name}", _KEY, _SESSION, role=_VIEWER),
    _route("POST", "/v1/deploy-checks", _KEY, note="CI uploads a deploy check's report"),
    _route(
        "GET",
        "/v1/deploy-checks",
        _KEY,
        _SESSION,
        role=_VIEWER,
        payloads=True,
        note="the apps page's last check",
    ),
    _route(
        "POST",
        "/v0/gql",
        _KEY,
        _SESSION,
        role=_OPERATOR,
        payloads=True,
        note="reads only, as REST v1's; payloads in any shape a query asks, so no viewer's",
    ),
    _route(
        "GET",
        "/v1/openapi.json",
        _KEY,
        _SESSION,
        role=_VIEWER,
        note="REST v1's OpenAPI document: open in dev as every key route; in production "
        "it maps the management surface, so it takes what that surface takes",
    ),
    _route("GET", "/v1/audit", _KEY, _SESSION, role=_ADMIN, note="who did what"),
    # informational
    _route("GET", "/health", _NONE, role=_VIEWER, note="load balancers"),
    _route("GET", "/ready", _NONE, role=_VIEWER, note="load balancers"),
    _route("GET", "/metrics", _KEY, _SESSION, role=_VIEWER),
    _route("GET", "/dev", _KEY, _SESSION, role=_VIEWER),
    # the dashboard's shell, sign-in and assets (nothing secret in them)
    _route("GET", "/", _NONE, role=_VIEWER, note="the sign-in form until signed in"),
    _route("POST", "/login", _NONE, role=_VIEWER, note="rate-limited per client"),
    _route("POST", "/logout", _NONE, role=_VIEWER),
    _route("GET", "/dashboard/{name}", _NONE, role=_VIEWER),
    # the Connect gateway's socket (and its alias at Inngest's dev server's path)
    _route(WEBSOCKET, "/v0/connect/gateway", Credential.CONNECT_TOKEN),
    _route(WEBSOCKET, "/v0/connect", Credential.CONNECT_TOKEN),
)

_BY_KEY = {(row.method, row.path): row for row in ENGINE}


def engine_row(method: str, path: str) -> Route | None:
    """The ``ENGINE`` row of a route (``WEBSOCKET`` for a socket), or None if it has none."""
    return _BY_KEY.get((method, path))


#: The routes an app serves through the framework integrations. ``{serve}`` is where the
#: app serves its functions (``serve_path``, default ``/api/inngest``), ``{kit}`` where
#: the web kit's ``RunRoutes`` is mounted and ``{endpoint}`` a durable endpoint's own
#: route (any method the framework routes to it).
FRAMEWORK: tuple[Route, ...] = (
    _route(
        "POST",
        "{serve}",
        Credential.SIGNATURE,
        note="the engine's calls and trust probes; unsigned only in dev mode",
    ),
    _route(
        "PUT",
        "{serve}",
        _NONE,
        note="asks the app to register with its own engine (out of band), or signed in band",
    ),
    _route(
        "GET",
        "{serve}",
        _NONE,
        Credential.SIGNATURE,
        note="inspection: counts without a signature, the full view with one",
    ),
    _route("POST", "{kit}/runs", Credential.KIT_CALLER),
    _route("GET", "{kit}/runs/{run_id}", Credential.KIT_CALLER),
    _route("POST", "{kit}/runs/{run_id}/cancel", Credential.KIT_CALLER),
    _route("GET", "{kit}/runs/{run_id}/result", Credential.KIT_CALLER),
    _route("GET", "{kit}/runs/{run_id}/events", Credential.KIT_CALLER),
    _route("GET", "{kit}/approvals", Credential.KIT_CALLER, note="those of runs it may see"),
    _route("GET", "{kit}/approvals/{approval_id}", Credential.KIT_CALLER),
    _route(
        "POST",
        "{kit}/approvals/{approval_id}/approve",
        Credential.KIT_CALLER,
        note="only an approval of a run the caller may see; recorded with its principal",
    ),
    _route("POST", "{kit}/approvals/{approval_id}/reject", Credential.KIT_CALLER),
    _route(
        "*",
        "{endpoint}",
        Credential.KIT_CALLER,
        note="its authorize hook when given; without one, whoever the framework lets in",
    ),
)
