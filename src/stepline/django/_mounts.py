"""Where a view is mounted in the project's URL conf, ``include()`` prefixes and all."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import urls
from django.urls.resolvers import RoutePattern, URLPattern, URLResolver


def locate(view: Callable[..., Any], *, catch_all: bool = False) -> str | None:
    """The absolute path ``view`` answers at, or None when it is not mounted (yet).

    ``reverse`` finds it under plain includes; a namespaced include keeps its views out
    of the root's reverse table, so the URL conf is walked too (route patterns without
    converters only: a path with parameters has no single URL to register).

    Args:
        view: the view.
        catch_all: ``view`` answers every path under its prefix (``engine_urls``'s
            ``(?P<path>.*)``): the prefix it is included under is the answer.
    """
    try:
        return urls.reverse(view, kwargs={"path": ""} if catch_all else None)
    except urls.NoReverseMatch:
        pass
    found = _walk(urls.get_resolver().url_patterns, "", view, catch_all)
    return None if found is None else urls.get_script_prefix() + found


def _walk(
    patterns: Iterable[Any], prefix: str, view: Callable[..., Any], catch_all: bool
) -> str | None:
    for entry in patterns:
        if catch_all and isinstance(entry, URLPattern) and entry.callback is view:
            return prefix
        if not isinstance(entry.pattern, RoutePattern) or "<" in str(entry.pattern):
            continue
        here = prefix + str(entry.pattern)
        if isinstance(entry, URLPattern) and entry.callback is view:
            return here
        if isinstance(entry, URLResolver):
            found = _walk(entry.url_patterns, here, view, catch_all)
            if found is not None:
                return found
    return None
