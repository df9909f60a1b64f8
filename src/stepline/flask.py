"""Serve Stepline functions from a Flask app or blueprint.

Example:
    >>> app = flask.Flask(__name__)
    >>> stepline.flask.serve(app, client, [welcome])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import flask

from stepline._comm import CommHandler, CommRequest, CommResponse

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._function import Function

FRAMEWORK = "flask"


def serve(
    app: flask.Flask | flask.Blueprint,
    client: Client,
    functions: Sequence[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Literal["disable", "force"] | None = None,
    thread_pool_max_workers: int | None = None,
) -> CommHandler:
    """Register GET, PUT and POST at the serve path (default ``/api/inngest``).

    Sync and async functions both work; async ones run on a private event loop, so
    Flask's async extra is not needed. Streaming needs an async server: asking for
    it here raises ``ConfigError``.
    """
    handler = CommHandler(
        client=client,
        functions=functions,
        framework=FRAMEWORK,
        serve_origin=serve_origin,
        serve_path=serve_path,
        streaming=streaming,
        thread_pool_max_workers=thread_pool_max_workers,
        can_stream=False,
    )
    path = handler.route_path

    def view() -> flask.Response:
        return _to_flask(handler.handle_sync(_from_flask(flask.request)))

    app.add_url_rule(
        path, endpoint=f"stepline:{path}", view_func=view, methods=["GET", "POST", "PUT"]
    )
    return handler


def _from_flask(request: flask.Request) -> CommRequest:
    return CommRequest.build(
        method=request.method,
        url=request.url,
        headers=request.headers.items(),
        body=request.get_data(cache=False),
        query=request.args.to_dict(),
    )


def _to_flask(response: CommResponse) -> flask.Response:
    return flask.Response(response.body, status=response.status, headers=response.headers)
