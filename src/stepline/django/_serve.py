"""``serve()``: the endpoint the engine calls to run a Django project's functions."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import django
from django import http, urls
from django.conf import settings
from django.core.signals import request_started
from django.views.decorators.csrf import csrf_exempt
from typing_extensions import Unpack

from stepline import _errors
from stepline._comm import CommRequest, CommResponse
from stepline._serving import asgi_scope, autosync
from stepline._serving import bodies as _bodies
from stepline._serving import options as _serve_options
from stepline._serving import serve as _serve
from stepline.django import _checks, _mounts

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

FRAMEWORK = "django"
ADAPTER = _serve.Adapter("stepline.django", FRAMEWORK)
#: the oldest Django supported: 5.2, the oldest release line Django still supports (an LTS),
#: and the one the suite runs on Python 3.10 and 3.11 (Django 6 needs Python 3.12)
MIN_VERSION = (5, 2)

_T = TypeVar("_T")


def serve(
    client: Client,
    functions: Sequence[Function],
    *,
    async_mode: bool | None = None,
    **options: Unpack[_serve_options.ServeOptions],
) -> urls.URLPattern:
    """A csrf-exempt URL pattern answering GET, PUT and POST at the serve path.

    ``options`` are the adapters' ``ServeOptions``. An option left as ``None`` is read
    from the Django setting ``STEPLINE_<OPTION>`` (``STEPLINE_SERVE_ORIGIN``,
    ``STEPLINE_SERVE_PATH``, ``STEPLINE_STREAMING``, ``STEPLINE_THREAD_POOL_MAX_WORKERS``,
    ``STEPLINE_ASYNC_MODE``), once, here; when that is absent too, the client's settings
    (arguments, then environment) apply.

    ``async_mode=None`` picks the async view when ``ASGI_APPLICATION`` is set, and the
    sync view otherwise; only the async view can stream. The body is read
    up to the handler's own limit (413 beyond), not Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

    Mount it once per app: the system check ``stepline.E001`` (``manage.py check``,
    ``runserver``) refuses a URL conf serving one app at two paths, or two apps at one.

    Raises:
        ConfigError: Django older than 5.2, a malformed setting, functions of another
            app, or streaming forced on the sync view.
    """
    check_version()
    _serve_options.check_names("stepline.django.serve", options)
    mode = _setting("STREAMING", options.get("streaming"), str)
    if mode not in (None, "disable", "force"):
        raise _errors.ConfigError(f"streaming must be 'disable' or 'force', not {mode!r}")
    streaming: Literal["disable", "force"] | None = (
        None if mode is None else "force" if mode == "force" else "disable"
    )
    workers = options.get("thread_pool_max_workers")
    resolved: _serve_options.ServeOptions = {
        "serve_origin": _setting("SERVE_ORIGIN", options.get("serve_origin"), str),
        "serve_path": _setting("SERVE_PATH", options.get("serve_path"), str),
        "streaming": streaming,
        "thread_pool_max_workers": _setting("THREAD_POOL_MAX_WORKERS", workers, int),
    }

    def mount(serving: _serve.Serving) -> urls.URLPattern:
        use_async = choose_async(async_mode)
        if streaming == "force" and not use_async:
            raise _errors.ConfigError("streaming='force' needs the async view (async_mode=True)")

        async def async_view(request: http.HttpRequest) -> http.HttpResponseBase:
            length = request.headers.get("content-length")
            return _to_django(await serving.answer_async(length, _async_reader(request)))

        def sync_view(request: http.HttpRequest) -> http.HttpResponseBase:
            length = request.headers.get("content-length")
            return _to_django(serving.answer_sync(length, _reader(request)))

        view = csrf_exempt(async_view if use_async else sync_view)
        _checks.remember(view, client.app_id)  # mounted twice: the stepline.E001 system check
        receiver = _registering(serving, lambda: _mounts.locate(view))
        request_started.connect(receiver, weak=False)
        return urls.path(serving.path.lstrip("/"), view, name="stepline")

    return _serve.serve(ADAPTER, client, functions, resolved, mount=mount, in_process=_embedded())


def _registering(serving: _serve.Serving, locate: Callable[[], str | None]) -> Any:
    """A ``request_started`` receiver calling ``Serving.autosync`` (WSGI ``environ`` or ASGI
    ``scope``).

    ``locate`` gives the endpoint's full path in the project's URL conf (an ``include()``
    prefix shows only there), or None while it is not mounted: nothing starts until it is.
    Connect it with ``weak=False``; it holds the handler weakly and does nothing once the
    handler is gone (a URL conf reloaded, as tests do).
    """
    alive = weakref.ref(serving.handler)
    in_process = serving.in_process

    def receive(sender: object, environ: Any = None, scope: Any = None, **_: Any) -> None:
        handler = alive()
        if handler is None or autosync.started(handler):
            return
        if environ is not None:
            host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
            origin = f"{environ.get('wsgi.url_scheme', 'http')}://{host}" if host else None
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        elif scope is not None:
            origin, path = asgi_scope.origin(scope), scope.get("path", "")
        else:
            return
        mounted = locate()
        if mounted is not None:
            _serve.Serving(handler, in_process=in_process).autosync(origin, path, mounted)

    return receive


def _embedded() -> bool:
    """Whether ``STEPLINE["ENGINE"]`` is ``"embedded"``: the functions run in process."""
    conf = getattr(settings, "STEPLINE", None)
    return isinstance(conf, dict) and conf.get("ENGINE") == "embedded"


def choose_async(async_mode: bool | None) -> bool:
    """Whether views should be ``async def``: the argument, else ``STEPLINE_ASYNC_MODE``,
    else whether ``ASGI_APPLICATION`` is set."""
    use_async = _setting("ASYNC_MODE", async_mode, bool)
    if use_async is None:
        return bool(getattr(settings, "ASGI_APPLICATION", ""))
    return use_async


def check_version() -> None:
    """Refuse Django older than ``MIN_VERSION``.

    Raises:
        ConfigError: it is older.
    """
    if tuple(django.VERSION[:2]) < MIN_VERSION:
        floor = ".".join(map(str, MIN_VERSION))
        raise _errors.ConfigError(
            f"stepline.django needs Django >= {floor}, found {django.__version__}"
        )


def _setting(name: str, argument: _T | None, kind: type[_T]) -> _T | None:
    if argument is not None:
        return argument
    value: object = getattr(settings, f"STEPLINE_{name}", None)
    if value is None:
        return None
    # bool is an int subclass, but STEPLINE_THREAD_POOL_MAX_WORKERS = True is a mistake.
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise _errors.ConfigError(f"settings.STEPLINE_{name} must be a {kind.__name__}")


def _reader(request: http.HttpRequest) -> Callable[[int], CommRequest]:
    def read(limit: int) -> CommRequest:
        # Bounded reads, whatever the method: DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by
        # default) would refuse large engine payloads, and a body past ``limit`` gets a
        # 413. Under WSGI the stream ends at Content-Length (runserver and most WSGI
        # servers give a chunked body without one as empty); under ASGI, Django has
        # already read the whole body into a temporary file (memory up to
        # FILE_UPLOAD_MAX_MEMORY_SIZE, the rest on disk) before any view runs: cap bodies
        # in the server or proxy in front of it.
        return CommRequest.build(
            method=request.method or "GET",
            url=request.build_absolute_uri(),
            headers=request.headers.items(),
            body=_bodies.read_sync(request.read, limit),
            query=request.GET.dict(),
        )

    return read


def _async_reader(request: http.HttpRequest) -> Callable[[int], Awaitable[CommRequest]]:
    read = _reader(request)

    async def read_async(limit: int) -> CommRequest:
        return read(limit)  # the body is in memory or a temporary file already (see _reader)

    return read_async


def _to_django(response: CommResponse) -> http.HttpResponseBase:
    if response.stream is not None:
        return http.StreamingHttpResponse(
            response.stream, status=response.status, headers=response.headers
        )
    return http.HttpResponse(response.body, status=response.status, headers=response.headers)
