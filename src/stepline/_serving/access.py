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

Pure data: no I/O, no engine import (the framework side imports it too).
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["ENGINE", "FRAMEWORK", "Credential", "Route", "engine_row"]


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


#: The WebSocket "method" in the tables.
WEBSOCKET = "WS"


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One route and the credential kinds it accepts (any one of them suffices)."""

    method: str
    path: str
    accepts: frozenset[Credential]
    #: who calls it, and why these kinds (shown in SECURITY.md's terms)
    note: str = ""


def _route(method: str, path: str, *accepts: Credential, note: str = "") -> Route:
    return Route(method, path, frozenset(accepts), note)


_KEY = Credential.SIGNING_KEY
_SESSION = Credential.SESSION
_NONE = Credential.NONE

#: Every route the engine serves, in the order its router tries them (the busiest first;
#: no path matches two). ``{x:path}`` is Starlette's path convertor.
ENGINE: tuple[Route, ...] = (
    # events and invocations
    _route("POST", "/e/{key}", Credential.EVENT_KEY, note="apps and webhooks send events"),
    _route("POST", "/v1/functions/{function_id:path}/runs", _KEY, _SESSION),
    _route("GET", "/v1/runs/{run_id}", _KEY, _SESSION),
    _route("POST", "/v1/events", _KEY, _SESSION, note="the dashboard's 'send event'"),
    _route("POST", "/invoke/{function_id:path}", _KEY, note="SDK"),
    # the SDK's and workers' routes: the signing key only
    _route("POST", "/fn/register", _KEY, note="SDK app sync: registers (or moves) an app"),
    _route("GET", "/v0/runs/{run_id}/batch", _KEY, note="SDK: a call's events"),
    _route("GET", "/v0/runs/{run_id}/actions", _KEY, note="SDK: a call's memoized steps"),
    _route("DELETE", "/v0/runs/{run_id}", _KEY, note="SDK"),
    _route("POST", "/v1/checkpoint/{run_id}/async", _KEY, note="SDK: step results"),
    # REST v1: API callers with the key, and the dashboard
    _route("GET", "/v1/events", _KEY, _SESSION),
    _route("GET", "/v1/events/{event_id}", _KEY, _SESSION),
    _route("GET", "/v1/events/{event_id}/runs", _KEY, _SESSION),
    _route("GET", "/v1/runs", _KEY, _SESSION),
    _route("DELETE", "/v1/runs/{run_id}", _KEY, _SESSION),
    _route("POST", "/v1/runs/{run_id}/cancel", _KEY, _SESSION),
    _route("GET", "/v1/runs/{run_id}/steps", _KEY, _SESSION),
    _route("GET", "/v1/runs/{run_id}/attempts", _KEY, _SESSION),
    _route("GET", "/v1/runs/{run_id}/export", _KEY, _SESSION, note="a run as a test's journal"),
    _route(
        "GET",
        "/v1/runs/{run_id}/history",
        _KEY,
        _SESSION,
        note="every recorded transition: step outputs, errors and the run's output",
    ),
    _route("POST", "/v1/runs/{run_id}/rerun", _KEY, _SESSION),
    _route("GET", "/v1/functions", _KEY, _SESSION),
    _route("GET", "/v1/apps", _KEY, _SESSION),
    _route(
        "POST",
        "/v1/apps/sync",
        _KEY,
        _SESSION,
        note="a session's sync never vouches for a move (the trust probe decides)",
    ),
    _route("GET", "/v1/apps/{app_id}/versions", _KEY, _SESSION),
    _route("DELETE", "/v1/apps/{app_id}/versions/{version}", _KEY, _SESSION),
    _route("POST", "/v1/functions/{function_id:path}/pause", _KEY, _SESSION),
    _route("POST", "/v1/functions/{function_id:path}/resume", _KEY, _SESSION),
    _route("GET", "/v1/functions/{function_id:path}/metrics", _KEY, _SESSION),
    _route("GET", "/v1/crons", _KEY, _SESSION, note="cron triggers: ticks, last runs"),
    _route("GET", "/v1/queue", _KEY, _SESSION, note="counts and limits, no payloads"),
    _route("GET", "/v1/functions/{function_id:path}/tokens", _KEY, _SESSION),
    _route("GET", "/v1/runs/{run_id}/tokens", _KEY, _SESSION),
    _route("GET", "/v1/token-budgets/{budget}", _KEY, _SESSION, note="SDK: an agent's budget"),
    _route("GET", "/v1/conversations/{conversation_id}/runs", _KEY, _SESSION),
    _route("POST", "/v1/bulk/cancel", _KEY, _SESSION),
    _route("POST", "/v1/bulk/replay", _KEY, _SESSION),
    _route("GET", "/v1/bulk", _KEY, _SESSION),
    _route("GET", "/v1/bulk/{bulk_id}", _KEY, _SESSION),
    _route("POST", "/v1/bulk/{bulk_id}/cancel", _KEY, _SESSION),
    _route("POST", "/v1/runs/{run_id}/replay", _KEY, _SESSION),
    _route("POST", "/v1/outbox/deliveries", _KEY, note="an outbox relay"),
    # Connect: workers and other nodes take the key; the listings are management reads
    _route("POST", "/v0/connect/start", _KEY, note="a Connect worker asks for its tokens"),
    _route("POST", "/v0/connect/flush", _KEY, note="a Connect worker's reply"),
    _route("POST", "/v0/connect/forward", _KEY, note="another engine node"),
    _route("GET", "/v1/connect/workers", _KEY, _SESSION),
    _route("GET", "/v0/connect/envs/{env_id}/conns", _KEY, note="Inngest tooling"),
    _route("GET", "/v1/apps/{app_id}/workers", _KEY, _SESSION),
    _route("POST", "/v1/runs/{run_id}/stream", _KEY, note="SDK: a run publishes"),
    _route("GET", "/v1/runs/{run_id}/stream", _KEY, _SESSION),
    # durable endpoints' inline runs: the app's SDK, never a browser
    _route("POST", "/v1/functions/{function_id:path}/inline", _KEY, note="SDK"),
    _route("POST", "/v1/runs/{run_id}/inline/checkpoint", _KEY, note="SDK"),
    _route("POST", "/v1/runs/{run_id}/inline/answer", _KEY, note="SDK"),
    _route("POST", "/v1/runs/{run_id}/attributes", _KEY, _SESSION),
    _route("POST", "/v1/runs/{run_id}/signals/{name}", _KEY, _SESSION),
    _route("POST", "/v1/signals", _KEY, _SESSION),
    _route("POST", "/v1/signals/hooks/{token}", Credential.HOOK_TOKEN, note="outside systems"),
    _route("GET", "/v1/approvals", _KEY, _SESSION, note="the approvals inboxes"),
    _route("GET", "/v1/approvals/{approval_id}", _KEY, _SESSION),
    _route(
        "POST",
        "/v1/approvals/{approval_id}/approve",
        _KEY,
        _SESSION,
        note="a session's decision is recorded as the dashboard's, whoever it names",
    ),
    _route("POST", "/v1/approvals/{approval_id}/reject", _KEY, _SESSION),
    _route("POST", "/v1/events/{event_id}/replay", _KEY, _SESSION),
    _route("GET", "/v1/views", _KEY, _SESSION, note="the asker's saved run views"),
    _route("PUT", "/v1/views/{name}", _KEY, _SESSION),
    _route("DELETE", "/v1/views/{name}", _KEY, _SESSION),
    _route("POST", "/v1/deploy-checks", _KEY, note="CI uploads a deploy check's report"),
    _route("GET", "/v1/deploy-checks", _KEY, _SESSION, note="the apps page's last check"),
    _route("POST", "/v0/gql", _KEY, _SESSION, note="reads only, as REST v1's"),
    _route(
        "GET",
        "/v1/openapi.json",
        _KEY,
        _SESSION,
        note="REST v1's OpenAPI document: open in dev as every key route; in production "
        "it maps the management surface, so it takes what that surface takes",
    ),
    # informational
    _route("GET", "/health", _NONE, note="load balancers"),
    _route("GET", "/ready", _NONE, note="load balancers"),
    _route("GET", "/metrics", _KEY, _SESSION),
    _route("GET", "/dev", _KEY, _SESSION),
    # the dashboard's shell, sign-in and assets (nothing secret in them)
    _route("GET", "/", _NONE, note="the sign-in form until signed in"),
    _route("POST", "/login", _NONE, note="rate-limited per client"),
    _route("POST", "/logout", _NONE),
    _route("GET", "/dashboard/{name}", _NONE),
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
