"""The serve options every adapter takes, declared once, and the one place that builds the
``CommHandler`` from them.

Each adapter's ``serve(...)`` takes ``**options: Unpack[ServeOptions]``: type checkers and
editors see the same four keywords everywhere, and a misspelt one is a ``TypeError`` as
it was when each adapter listed them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from typing_extensions import TypedDict

from stepline import _errors
from stepline._comm import CommHandler

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["ServeOptions", "build_handler", "check_names", "check_unserved", "mark_served"]

#: The attribute ``serve`` leaves on an app or router: ``{serve path: app id}``. An
#: attribute, not a weak mapping: routers define ``__eq__`` and so are not hashable.
_SERVED = "_stepline_served"


class ServeOptions(TypedDict, total=False):
    """The keyword options of every adapter's ``serve``; None (or absent) means the client's.

    Attributes:
        serve_origin: the origin the engine should call (default: the request's).
        serve_path: the path the functions are served at (default ``/api/inngest``).
        streaming: ``"force"`` answers POST with a 201 keepalive stream (async servers).
        thread_pool_max_workers: threads for sync functions on an async server (0: inline).
    """

    serve_origin: str | None
    serve_path: str | None
    streaming: Literal["disable", "force"] | None
    thread_pool_max_workers: int | None


_NAMES = frozenset(ServeOptions.__annotations__)


def check_names(caller: str, options: Mapping[str, object]) -> None:
    """Refuse a keyword ``ServeOptions`` does not declare, as Python does for a signature.

    Raises:
        TypeError: ``options`` holds an unknown name.
    """
    unknown = sorted(set(options) - _NAMES)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")


def build_handler(
    client: Client,
    functions: Sequence[Function],
    framework: str,
    options: ServeOptions,
    *,
    can_stream: bool = True,
    engine: object = None,
) -> CommHandler:
    """The ``CommHandler`` an adapter serves, from its ``serve`` options.

    ``engine`` is the adapter's ``engine=``: with one (it routes the client's calls to
    itself) the client needs no engine URL; without, production mode must name one.

    Raises:
        TypeError: an option ``ServeOptions`` does not declare.
        ConfigError: an invalid option, a function of another app, or production mode
            with no engine URL and no ``engine=``.
    """
    check_names("serve", options)
    if engine is None:
        client.settings.require_engine(f"serve ({framework})")
    return CommHandler(
        client=client,
        functions=functions,
        framework=framework,
        serve_origin=options.get("serve_origin"),
        serve_path=options.get("serve_path"),
        streaming=options.get("streaming"),
        thread_pool_max_workers=options.get("thread_pool_max_workers"),
        can_stream=can_stream,
    )


def check_unserved(caller: str, app: object, path: str, app_id: str) -> None:
    """Refuse a second ``serve`` of one Stepline app, or at one path, on one web app.

    The second call's route would shadow the first's (same path), or the engine would
    know one app at two URLs, each sync replacing the other's functions (same app id).
    Two Stepline apps at two paths stay allowed.

    Raises:
        ConfigError: naming what was served already and the one call to make instead.
    """
    served = _served(app)
    clash = path if path in served else next((p for p, a in served.items() if a == app_id), None)
    if clash is not None:
        raise _errors.ConfigError(
            f"{caller} was already called on this {type(app).__name__} (serving app "
            f"{served[clash]!r} at {clash}): call it once per app, with every function: "
            "serve(app, client, [fn_a, fn_b, ...])"
        )


def mark_served(app: object, path: str, app_id: str) -> None:
    """Remember that ``serve`` registered ``app_id`` on ``app`` at ``path``."""
    with contextlib.suppress(AttributeError):  # an object with slots: nothing to mark
        setattr(app, _SERVED, {**_served(app), path: app_id})


def _served(app: object) -> dict[str, str]:
    served = getattr(app, _SERVED, None)
    return dict(served) if isinstance(served, dict) else {}
