"""The serve options every adapter takes, declared once, and the one place that builds the
``CommHandler`` from them.

Each adapter's ``serve(...)`` takes ``**options: Unpack[ServeOptions]``: type checkers and
editors see the same four keywords everywhere, and a misspelt one is a ``TypeError``, as
for any signature. ``stepline._serving.serve`` takes them through the rest of ``serve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from typing_extensions import TypedDict

from stepline._comm import CommHandler

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["ServeOptions", "build_handler", "check_names"]


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
