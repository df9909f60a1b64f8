"""Django system checks: the project's URL conf serves each Stepline app once.

Other adapters refuse a second ``serve()`` on one app when it is called; Django's
``serve()`` only builds a URL pattern, and where it is mounted (once, twice, under which
``include()`` prefixes) shows only in the URL conf. So the refusal is a system check
(``manage.py check``, ``runserver``, ``migrate`` run it): ``stepline.E001`` when one app id
is served at two paths (the engine would know one app at two URLs, each sync replacing
the other's functions) or two serve endpoints share one path (the second never answers).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from django.core import checks
from django.urls import URLPattern, URLResolver, get_resolver

__all__ = ["SERVE_TWICE", "remember", "serve_once"]

SERVE_TWICE = "stepline.E001"
_SERVED: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


def remember(view: Callable[..., Any], app_id: str) -> None:
    """Note that ``serve()`` made ``view`` for ``app_id`` (the check finds it by this)."""
    _SERVED[view] = app_id


def serve_once(app_configs: object = None, **_: Any) -> list[checks.CheckMessage]:
    """``stepline.E001`` for each app served twice and each path served twice."""
    try:
        patterns = get_resolver().url_patterns
    except Exception:  # a URL conf that does not import: Django's own url check says why
        return []
    errors: list[checks.CheckMessage] = []
    paths: dict[str, str] = {}  # path -> app id
    apps: dict[str, str] = {}  # app id -> its first path
    for path, app_id in _served(patterns, "/"):
        if path in paths:
            errors.append(
                checks.Error(
                    f"two stepline.django.serve() patterns at {path} (apps {paths[path]!r} "
                    f"and {app_id!r}): the second is never reached",
                    hint="serve every function of an app in one serve(client, [fn_a, fn_b]); "
                    "another app needs its own path (serve_path=, or another include() prefix)",
                    id=SERVE_TWICE,
                )
            )
        elif app_id in apps:
            errors.append(
                checks.Error(
                    f"stepline.django.serve() mounts app {app_id!r} twice: at {apps[app_id]} "
                    f"and at {path}; the engine would know it at two URLs, each sync "
                    "replacing the other's functions",
                    hint="mount it once: one serve(client, [fn_a, fn_b, ...]) with every "
                    "function, included under one prefix",
                    id=SERVE_TWICE,
                )
            )
        paths.setdefault(path, app_id)
        apps.setdefault(app_id, path)
    return errors


def _served(patterns: Iterable[Any], prefix: str) -> Iterable[tuple[str, str]]:
    """``(path, app id)`` of every serve endpoint in the URL conf, in resolution order."""
    for entry in patterns:
        here = prefix + _text(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _served(entry.url_patterns, here)
        elif isinstance(entry, URLPattern) and entry.callback in _SERVED:
            yield here, _SERVED[entry.callback]


def _text(pattern: object) -> str:
    """A pattern as a path fragment: a route as written, a regex without its anchors."""
    text = str(pattern)
    return text.removeprefix("^").removesuffix("$").removesuffix(r"\Z")


checks.register(serve_once, checks.Tags.urls)
