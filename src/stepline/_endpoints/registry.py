"""The durable endpoints declared on each client: its serve endpoint serves them too."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from stepline import _errors
from stepline._transport import effects

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = [
    "DirectPath",
    "Served",
    "add",
    "declared",
    "direct",
    "inline",
    "set_direct",
    "substitute",
    "watch",
]

_DECLARED: weakref.WeakKeyDictionary[Client, list[Function]] = weakref.WeakKeyDictionary()
#: per client, what to call when an endpoint is declared (an embedded engine re-registers)
_WATCHERS: weakref.WeakKeyDictionary[Client, list[Callable[[], None]]] = weakref.WeakKeyDictionary()
#: per client, its embedded engine's in-process answer to the endpoints' engine requests
_DIRECT: weakref.WeakKeyDictionary[Client, DirectPath] = weakref.WeakKeyDictionary()
#: per client, what runs inline instead of an endpoint's function (``stepline.testing``)
_SUBSTITUTES: weakref.WeakKeyDictionary[Client, Mapping[str, Function]] = (
    weakref.WeakKeyDictionary()
)


class DirectPath(Protocol):
    """An embedded engine answering its own client's durable-endpoint requests, no HTTP."""

    def handles(self, request: effects.HttpRequest) -> bool:
        """Whether this is one of the requests it answers."""
        ...

    async def perform(self, request: effects.HttpRequest) -> effects.HttpResponse:
        """The answer, as the engine's REST API would give it (on the caller's loop)."""
        ...


def set_direct(client: Client, direct: DirectPath | None) -> None:
    """``client``'s requests to its embedded engine may skip HTTP (None: no longer)."""
    if direct is None:
        _DIRECT.pop(client, None)
    else:
        _DIRECT[client] = direct


def direct(client: Client) -> DirectPath | None:
    """The in-process path to ``client``'s embedded engine, if it has one running."""
    return _DIRECT.get(client)


def add(client: Client, function: Function) -> None:
    """Remember ``function`` (an endpoint's) as served by ``client``'s serve endpoint.

    Raises:
        ConfigError: another endpoint of the client has the same id.
    """
    declared = _DECLARED.setdefault(client, [])
    if any(fn.composite_id == function.composite_id for fn in declared):
        raise _errors.ConfigError(
            f"two durable endpoints of app {client.app_id!r} have the id {function.id!r}: "
            "give one of them another id= (ids name the runs' function in the engine)"
        )
    declared.append(function)
    for watcher in list(_WATCHERS.get(client, ())):
        watcher()


def watch(client: Client, watcher: Callable[[], None]) -> Callable[[], None]:
    """Call ``watcher`` whenever an endpoint is declared on ``client``; returns the undo.

    An engine that registered the client's app before a durable endpoint was declared (a
    Django URL conf loaded on first request) registers it again.
    """
    watchers = _WATCHERS.setdefault(client, [])
    watchers.append(watcher)

    def unwatch() -> None:
        with contextlib.suppress(ValueError):
            watchers.remove(watcher)

    return unwatch


def declared(client: Client) -> list[Function]:
    """The endpoints' functions declared on ``client``, in declaration order."""
    return list(_DECLARED.get(client, ()))


def substitute(client: Client, functions: Mapping[str, Function] | None) -> None:
    """Run these copies (by composite id) inline instead of the endpoints' functions.

    ``stepline.testing`` gives its instrumented copies (mocks, call logs) while a test
    env is open, and None when it closes.
    """
    if functions is None:
        _SUBSTITUTES.pop(client, None)
    else:
        _SUBSTITUTES[client] = functions


def inline(client: Client, function: Function) -> Function:
    """The function an endpoint runs inline: its own, or a test env's copy of it."""
    found = _SUBSTITUTES.get(client)
    return function if found is None else found.get(function.composite_id, function)


class Served(Mapping[str, "Function"]):
    """A serve endpoint's functions by composite id, and the client's endpoints too.

    Looked up when asked, so an endpoint declared after ``serve()`` (a route decorated
    below it) is served all the same. An endpoint and a function with one id is a
    ``ConfigError`` when the functions are listed (at registration).
    """

    def __init__(self, given: Mapping[str, Function], client: Client) -> None:
        self._given = given
        self._client = client

    def _all(self) -> dict[str, Function]:
        found = {fn.composite_id: fn for fn in declared(self._client)}
        clash = sorted(  # an endpoint given to serve() too (a test env's copy) is no clash
            key
            for key in found.keys() & self._given.keys()
            if getattr(self._given[key], "__wrapped__", None) is not found[key].__wrapped__
        )
        if clash:
            raise _errors.ConfigError(
                f"function id {clash[0]!r} names both a durable endpoint and a function "
                "given to serve(): give one of them another id="
            )
        found.update(self._given)
        return found

    def __getitem__(self, key: str) -> Function:
        found = self._given.get(key)
        return found if found is not None else self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
