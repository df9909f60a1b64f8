"""The dashboard: a static single-page app over the REST API, and its sign-in.

The page shell (``GET /``) and its assets (``GET /dashboard/{name}``) ship as package data
in ``stepline/engine/_http/static/``; the browser does the rest through ``/v1``. Every URL
they use is relative, so the dashboard works at the engine's root and mounted under a
prefix (``/stepline/``) by ``EmbeddedEngine``.

In production mode (``stepline start``) ``/`` shows a sign-in form until the browser holds
a session: ``POST /login`` with the signing key (or a dashboard key) sets a signed,
expiring, ``HttpOnly; SameSite=Strict`` cookie that the management routes accept too
(those whose row in ``stepline._serving.access.ENGINE`` lists a session; never the SDK's and
workers'). The session names who signed in (a dashboard user's name, ``signing-key`` or
``dashboard``), and the page shows that name and its role; the page's scripts hide what
the role may not do (``data-role`` on ``<body>``), and the routes refuse it. Sign-ins,
refused ones too, and sign-outs go to the audit log. Dev mode is open, like the rest of
the dev server: everyone is ``dev``, an admin.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.resources
import logging
import math
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import starlette.requests
import starlette.responses

from stepline._identity import VERSION
from stepline._serving.access import Credential, Role
from stepline.engine._config import EngineSettings
from stepline.engine._http import auth, throttle
from stepline.engine._http.principals import Principal

if TYPE_CHECKING:
    from stepline.engine._http.audit import Auditor

logger = logging.getLogger("stepline.engine.dashboard")

Request = starlette.requests.Request
Response = starlette.responses.Response
Handler = Callable[[Request], Awaitable[Response]]

#: The session cookie's name.
COOKIE = auth.COOKIE
#: Cookie-authenticated requests that change something must carry this header. A page on
#: another origin cannot add it without a CORS preflight the engine never grants.
CSRF_HEADER = "x-stepline-csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_FORM_BYTES = 8192
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class Dashboard:
    """The dashboard's routes for one engine's settings.

    Args:
        settings: the engine's settings (mode and keys).
        auditor: records sign-ins and sign-outs; None records nothing.
    """

    def __init__(self, settings: EngineSettings, auditor: Auditor | None = None) -> None:
        self.settings = settings
        self.auditor = auditor
        #: failed sign-ins, per client and overall (429 past them)
        self.limiter = throttle.SignInLimiter()

    def table(self) -> list[tuple[str, str, Handler]]:
        """``(method, path, handler)`` rows for the API's route table."""
        return [
            ("GET", "/", self.home),
            ("POST", "/login", self.login),
            ("POST", "/logout", self.logout),
            ("GET", "/dashboard/{name}", self.asset),
        ]

    @property
    def open(self) -> bool:
        """True when no sign-in is needed (dev mode)."""
        return self.settings.mode != "start"

    async def home(self, request: Request) -> Response:
        if self.open:
            return _page("index.html", _shell_values(self.settings, "dev", Role.ADMIN))
        name = auth.session_user(request.cookies.get(COOKIE), self.settings, now=time.time())
        role = auth.role_of(name, self.settings) if name is not None else None
        if name is not None and role is not None:
            return _page("index.html", _shell_values(self.settings, name, role))
        refused = "refused" in request.query_params
        return _page("login.html", {"error": "That key was not accepted." if refused else ""})

    async def login(self, request: Request) -> Response:
        if self.open:
            return _redirect()
        client = throttle.client_key(request.client.host if request.client else None)
        wait = self.limiter.retry_after(client, time.monotonic())
        if wait > 0:  # refused without looking at the key
            return self._limited(client, wait)
        try:
            key = await _form_field(request, "key")
        except _FormTooLarge:
            message = f"the sign-in form is larger than {_MAX_FORM_BYTES} bytes"
            return starlette.responses.PlainTextResponse(message, 413)
        name = None if key is None else auth.login_user(key, self.settings)
        if name is None:
            self.limiter.failed(client, time.monotonic())
            logger.warning("refused a dashboard sign-in from %s: wrong key", client)
            await self._audit(Principal("anonymous", None, Credential.NONE), "sign-in", 401)
            # post/redirect/get, as on success: the page is always the dashboard's root
            return _redirect(location="./?refused")
        self.limiter.succeeded(client)
        nonce = secrets.token_hex(12)
        token = auth.new_session(self.settings, now=time.time(), nonce=nonce, name=name)
        role = auth.role_of(name, self.settings)
        await self._audit(Principal(name, role, Credential.SESSION), "sign-in", 303)
        return _redirect(_cookie(token, auth.SESSION_SECONDS, secure=_https(request)))

    def _limited(self, client: str, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        if self.limiter.first_refusal(client):
            logger.warning(
                "refused dashboard sign-ins from %s for %ds: too many wrong keys", client, seconds
            )
        message = f"Too many wrong keys: try again in {seconds} seconds."
        response = _page("login.html", {"error": message})
        response.status_code = 429
        response.headers["retry-after"] = str(seconds)
        return response

    async def logout(self, request: Request) -> Response:
        name = auth.session_user(request.cookies.get(COOKIE), self.settings, now=time.time())
        if name is not None:
            role = auth.role_of(name, self.settings)
            await self._audit(Principal(name, role, Credential.SESSION), "sign-out", 303)
        return _redirect(_cookie("", 0, secure=_https(request)))

    async def _audit(self, who: Principal, action: str, status: int) -> None:
        if self.auditor is not None:
            await self.auditor.record(who, action, "", status, refused=status == 401)

    async def asset(self, request: Request) -> Response:
        found = _assets().get(request.path_params["name"])
        if found is None:
            return starlette.responses.JSONResponse({"error": "no such asset"}, 404)
        body, media_type, etag = found
        headers = {"etag": etag, "cache-control": "no-cache", "x-content-type-options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)


def signed_in(request: Request, settings: EngineSettings) -> bool:
    """Whether a request carries a valid dashboard session (and, to change state, the header).

    Args:
        request: any request to the engine.
        settings: the engine's settings.

    Returns:
        True if the session cookie is genuine and unexpired and, for a method other than
        GET/HEAD/OPTIONS, the request has the ``X-Stepline-Csrf`` header and does not
        come from another site's page.
    """
    if request.method not in _SAFE_METHODS:
        if CSRF_HEADER not in request.headers:
            return False
        # the browser says which page sent the request, and no page can change it; unlike
        # Origin it needs no knowledge of the host name a proxy in front may rewrite
        if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return False
    return auth.session_ok(request.cookies.get(COOKIE), settings, now=time.time())


# -- pages ------------------------------------------------------------------------------------


def _shell_values(settings: EngineSettings, name: str, role: Role) -> dict[str, str]:
    production = settings.mode == "start"
    return {
        "user": name,
        "role": role.value,
        "mode": settings.mode,
        "mode_label": "production" if production else "dev server",
        "version": VERSION,
        "logout": (
            '<form method="post" action="logout" class="logout">'
            '<button type="submit">Sign out</button></form>'
            if production
            else ""
        ),
    }


def _page(name: str, values: dict[str, str]) -> Response:
    template, policy = _template(name)
    text = template
    for key, value in values.items():
        # ``logout`` is our own markup; everything else is escaped
        text = text.replace("{{" + key + "}}", value if key == "logout" else html.escape(value))
    headers = {
        "content-security-policy": policy,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }
    return starlette.responses.HTMLResponse(text, headers=headers)


def _redirect(cookie: str | None = None, *, location: str = "./") -> Response:
    # relative: the dashboard may be mounted under a prefix the engine does not see
    response = Response(status_code=303, headers={"location": location})
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    return response


def _cookie(value: str, max_age: int, *, secure: bool) -> str:
    """The session cookie; no ``Path``: the browser scopes it to the dashboard's directory."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


class _FormTooLarge(Exception):
    """A form body over ``_MAX_FORM_BYTES`` (answered with 413, never buffered whole)."""


async def _form_field(request: Request, name: str) -> str | None:
    """One field of a small urlencoded form (Starlette's parser needs python-multipart).

    Raises:
        _FormTooLarge: the body is larger than ``_MAX_FORM_BYTES``.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            raise _FormTooLarge
        chunks.append(chunk)
    try:
        fields = urllib.parse.parse_qs(b"".join(chunks).decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get(name)
    return values[0] if values else None


# -- package data ---------------------------------------------------------------------------


def _read(name: str) -> bytes:
    return (importlib.resources.files("stepline.engine._http") / "static" / name).read_bytes()


@functools.cache
def _template(name: str) -> tuple[str, str]:
    """A page template and its Content-Security-Policy (allowing its one inline script)."""
    text = _read(name).decode()
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(text)
    )
    policy = (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return text, policy


@functools.cache
def _assets() -> dict[str, tuple[bytes, str, str]]:
    """``name -> (body, media type, etag)`` for the files under ``static/``."""
    found: dict[str, tuple[bytes, str, str]] = {}
    folder = importlib.resources.files("stepline.engine._http") / "static"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if suffix in _TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[entry.name] = (body, _TYPES[suffix], etag)
    return found


__all__ = ["COOKIE", "CSRF_HEADER", "Dashboard", "signed_in"]
