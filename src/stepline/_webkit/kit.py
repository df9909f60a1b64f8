"""The web-kit factories' options, declared once for every framework.

``stepline.fastapi.runs_router``, ``stepline.flask.runs_blueprint``,
``stepline.tornado.runs_handlers``, ``stepline.django.runs_urls`` and
``stepline.asgi.runs_app`` share one signature: the client, the functions, a required
``authorize``, and ``**options: Unpack[KitOptions]`` (besides a framework's own: a
blueprint's ``name``, Django's ``async_mode``). ``run_routes`` turns them into the
``RunRoutes`` the adapter serves and the prefix it mounts them at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict

from stepline import _errors
from stepline._webkit.routes import Authorize, RunRoutes

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["KitOptions", "run_routes"]


class KitOptions(TypedDict, total=False):
    """The keyword options of every web-kit factory; absent means the default.

    Attributes:
        inputs: per function, a pydantic model (or a callable) the start's ``data`` must
            satisfy (422 otherwise); default none.
        prefix: the URL prefix of the routes: ``""`` (default) answers ``/runs``,
            ``"/api"`` answers ``/api/runs``. Where the framework mounts the routes
            somewhere too (``include_router(prefix=)``, ``register_blueprint(url_prefix=)``,
            Django's ``include()``, an ASGI mount), the two add up. A durable endpoint's
            ``run_routes`` names the whole prefix.
        poll_interval: seconds between an events stream's looks at its run (0.5).
        keepalive: seconds between SSE keep-alive comments (15).
        result_wait: the longest ``GET .../result?wait=`` holds a request, in seconds (60).
        max_readers_per_run: events streams one run may have open here at once (64).
        max_readers_per_caller: events streams one ``Principal`` may hold open (16).
    """

    inputs: Mapping[Function, Any] | None
    prefix: str
    poll_interval: float
    keepalive: float
    result_wait: float
    max_readers_per_run: int
    max_readers_per_caller: int


_NAMES = frozenset(KitOptions.__annotations__)


def run_routes(
    caller: str,
    client: Client,
    functions: Sequence[Function],
    authorize: Authorize,
    options: KitOptions,
) -> tuple[RunRoutes, str]:
    """The ``RunRoutes`` a factory serves, and its prefix (``""`` or ``"/a/b"``, no trailing ``/``).

    Raises:
        TypeError: an option ``KitOptions`` does not declare (as Python does for a
            signature; ``caller`` names the factory).
        ConfigError: a prefix that is neither empty nor starts with ``/``, no
            ``authorize``, or no functions.
    """
    unknown = sorted(set(options) - _NAMES)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    prefix = options.get("prefix", "")
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        raise _errors.ConfigError(f"{caller}: prefix must be '' or start with '/', not {prefix!r}")
    settings: dict[str, Any] = {k: v for k, v in options.items() if k not in ("inputs", "prefix")}
    routes = RunRoutes(
        client, functions, authorize=authorize, inputs=options.get("inputs"), **settings
    )
    return routes, prefix.rstrip("/")
