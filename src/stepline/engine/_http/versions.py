"""REST v1 for app versions: list an app's registered versions, retire one.

``GET /v1/apps/{app_id}/versions``: each version's URL, sync time, whether it is the
latest (new runs start on it) and how many runs that started on it are still live.
``DELETE /v1/apps/{app_id}/versions/{version}``: unregister a version; 409 while runs
that started on it are live (``?force=true`` moves them to the latest version), and for
the latest version itself. Both sit behind the same bearer check and dev-mode guard as
every other ``/v1`` route (``api.py`` wires them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import starlette.requests
import starlette.responses

from stepline.engine._apps import versions as _versions
from stepline.engine._engine import Engine
from stepline.engine._http import views, wire
from stepline.engine._http.wire import ApiError

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def table(engine: Engine) -> list[tuple[str, str, Handler]]:
    """The routes, as ``api._Api.routes`` lists them (method, path, handler)."""

    async def listing(request: Request) -> Response:
        app_id = request.path_params["app_id"]
        try:
            found = await engine.store.read(lambda tx: _versions.listing(tx, app_id))
        except _versions.VersionRefusedError as exc:
            raise ApiError(exc.status, str(exc)) from None
        for version in found:  # times as every other REST view shows them
            for key in ("synced_at", "registered_at"):
                version[key] = views.timestamp(version[key])
        return wire.json_response(views.data(found))

    async def retire(request: Request) -> Response:
        app_id, version = request.path_params["app_id"], request.path_params["version"]
        force = _flag(request.query_params.get("force"))
        now = engine.clock.now()
        try:  # this node routes by the new set at once; others on notice
            done = await engine.change_apps(
                lambda tx: _versions.retire(tx, app_id, version, force=force, now=now)
            )
        except _versions.VersionRefusedError as exc:
            body = {"error": str(exc), "live_runs": exc.live}
            raise ApiError(exc.status, str(exc), body) from None
        return wire.json_response(views.data(done))

    return [
        ("GET", "/v1/apps/{app_id}/versions", listing),
        ("DELETE", "/v1/apps/{app_id}/versions/{version}", retire),
    ]


def _flag(value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, f"force: want true or false, got {value!r}")
