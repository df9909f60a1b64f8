"""``runs_blueprint()``: the web-app kit's run routes as a Flask blueprint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import flask
from typing_extensions import Unpack

from stepline._serving import bodies
from stepline._webkit import kit
from stepline._webkit import routes as _webkit

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["runs_blueprint"]


def runs_blueprint(
    client: Client,
    functions: Sequence[Function],
    *,
    authorize: _webkit.Authorize,
    name: str = "stepline_runs",
    **options: Unpack[kit.KitOptions],
) -> flask.Blueprint:
    """A blueprint answering the run routes of ``stepline.web`` for ``functions``.

    ``POST /runs`` starts a run, ``GET /runs/<id>`` shows it, ``POST /runs/<id>/cancel``
    cancels it, ``GET /runs/<id>/result?wait=`` waits for it and ``GET /runs/<id>/events``
    streams its progress as Server-Sent Events; ``GET /approvals``, ``GET
    /approvals/<id>`` and ``POST /approvals/<id>/approve|reject`` list and answer durable
    agents' tool calls waiting for a person (docs/ai-agents.md); under ``prefix`` and wherever the
    blueprint is registered (``register_blueprint(url_prefix=)`` adds to it). Every
    request goes to ``authorize`` first (with the ``flask.Request`` as
    ``access.request``); pass ``stepline.web.allow_all`` to make the routes public on
    purpose. The POSTs need ``Content-Type: application/json`` or the ``X-Stepline-Csrf``
    header (a cross-site form cannot send either). Serve the app threaded: an events
    stream holds its thread until the run ends.

    Args:
        client: the app's client.
        functions: the functions that may be started; runs of others answer 404.
        authorize: the access hook (sync; Flask views are sync).
        name: the blueprint's name (register two with different names).
        **options: the kit's ``KitOptions``, the same for every framework (``inputs``,
            ``prefix``, ``poll_interval``, ``keepalive``, ``result_wait``,
            ``max_readers_per_run``, ``max_readers_per_caller``).

    Raises:
        ConfigError: no ``authorize``, no functions, or a ``prefix`` not starting with ``/``.
    """
    routes, prefix = kit.run_routes("runs_blueprint", client, functions, authorize, options)
    blueprint = flask.Blueprint(name, "stepline.flask", url_prefix=prefix or None)

    def view(rest: str = "", under: str = "/runs") -> flask.Response:
        # the request itself, not the proxy: authorize may keep it past the request
        request: flask.Request = flask.request._get_current_object()  # type: ignore[attr-defined]
        return _from_web(routes, routes.handle_sync(_to_web(request, under, rest)))

    methods = ["GET", "POST"]
    for under, endpoint in (("/runs", "run"), ("/approvals", "approval")):
        rule, defaults = f"{under}/<path:rest>", {"under": under}
        blueprint.add_url_rule(
            under, endpoint=f"{endpoint}s", view_func=view, methods=methods, defaults=defaults
        )
        blueprint.add_url_rule(
            rule, endpoint=endpoint, view_func=view, methods=methods, defaults=defaults
        )
    return blueprint


def _to_web(request: flask.Request, under: str, rest: str) -> _webkit.WebRequest:
    path = f"{under}/{rest}" if rest else under
    mount = request.script_root + request.path[: len(request.path) - len(path)]
    return _webkit.WebRequest(
        method=request.method,
        path=path,
        query=request.args.to_dict(),
        # in chunks: one read may return less than asked (a chunked body); 413 past it
        body=bodies.read_sync(request.stream.read, _webkit.MAX_BODY),
        native=request,
        mount=mount,
        headers={name.lower(): value for name, value in request.headers.items()},
    )


def _from_web(routes: _webkit.RunRoutes, response: _webkit.WebResponse) -> flask.Response:
    body = response.body if response.stream is None else routes.chunks_sync(response)
    return flask.Response(body, status=response.status, headers=response.headers)
