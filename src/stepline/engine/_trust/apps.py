"""Who may register where: function ownership, origin moves and the trust probe.

An app that is already registered keeps its origin (``scheme://host:port``) unless the
new one proves it holds the engine's signing key: in ``stepline start`` the engine
POSTs a signed ``?probe=trust`` to the new URL and wants a 2xx answer signed with one
of its keys (every SDK answers it: PROTOCOL.md §3.1). A sync the engine itself sent to
that origin (a signed PUT carrying a ``deployId`` the engine issued) needs no probe.
Dev mode logs a move and accepts it.

The decisions are pure functions; ``AppGuard`` is the thin shell that reads the store
and sends the probe.
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from stepline import _errors
from stepline._protocol import headers, signing
from stepline.engine._errors import RegistrationRefusedError
from stepline.engine._wire import request

if TYPE_CHECKING:
    from stepline.engine._apps.registry import AppSpec
    from stepline.engine._config import EngineSettings
    from stepline.engine._driver import Driver
    from stepline.engine._store import Store, Tx
    from stepline.engine._wire.response import RawResponse

logger = logging.getLogger("stepline.engine")

#: How long a ``deployId`` the engine put on a sync PUT vouches for the registration.
TICKET_SECONDS = 120.0
#: Seconds the engine waits for a trust probe's answer.
PROBE_TIMEOUT = 30.0
_IN_PROCESS = "inprocess"
#: URL schemes only the engine registers: in-process apps (``Engine.serve``) and Connect
#: workers (the gateway, after the worker's tokens proved the key).
RESERVED_SCHEMES = (_IN_PROCESS, "connect")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lowercased (the part a move changes)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def app_urls(url: str, function_urls: Iterable[str]) -> list[str]:
    """Every URL a registration points the engine at: the app's, then each function's."""
    return [url, *(u for u in function_urls if u)]


#: Host names of this machine's loopback interface, as an app's URL may spell them.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def moves(
    old: Iterable[str], new: Iterable[str], *, loopback_alike: bool = False
) -> dict[str, str]:
    """New origins (with one URL at each) that none of the ``old`` URLs had.

    In-process origins are never a move: only this process serves them. With
    ``loopback_alike``, ``localhost``, ``127.0.0.1`` and ``[::1]`` at one port count as one
    origin (dev mode: the same app, its URL spelled two ways). Start mode keeps them apart:
    ``localhost`` may resolve to ``::1``, where another process can listen on that port.
    """
    key = _loopback_origin if loopback_alike else origin
    known = {key(url) for url in old}
    found: dict[str, str] = {}
    for url in new:
        where = origin(url)
        if key(url) not in known and where not in found and not url.startswith(_IN_PROCESS + ":"):
            found[where] = url
    return found


def _loopback_origin(url: str) -> str:
    """``origin(url)`` with a loopback host written ``loopback``."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        return origin(url)
    try:
        port = parts.port
    except ValueError:
        return origin(url)
    port = port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://loopback:{port}"


def is_new_version(version: str | None, known: Iterable[str]) -> bool:
    """Whether a registration adds a version the app does not have yet: at a new origin it
    is registered beside the others (``docs/versioning.md``), not moved there."""
    return version is not None and version not in set(known)


def move_text(app_id: str, old_url: str, new_url: str, version: str | None, new: bool) -> str:
    """How a registration at a new origin is logged (``new``: ``is_new_version``)."""
    if new:
        return f"app {app_id}: version {version} registered at {new_url} beside the others"
    return f"app {app_id} moved from {old_url} to {new_url}"


def refuse_reserved(app: AppSpec) -> None:
    """Refuse a registration over HTTP that names an ``inprocess://`` or ``connect://`` URL.

    Those URLs are not reached over a network, so no trust probe could vet a move to them:
    only the engine registers them (its own in-process apps; the Connect gateway for a
    worker whose tokens proved the key).

    Raises:
        RegistrationRefusedError: such a URL, for the app or one of its functions (400).
    """
    for url in app_urls(app.url, (fn.url for fn in app.functions)):
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme in RESERVED_SCHEMES:
            how = (
                "a Connect worker's apps are registered by the engine's gateway when the "
                "worker connects (POST /v0/connect/start, then the socket)"
                if scheme == "connect"
                else "only the engine registers the apps it serves in its own process"
            )
            raise RegistrationRefusedError(
                f"app {app.app_id!r}: a registration over HTTP cannot name the URL {url}: "
                f"{scheme}:// URLs are not served over HTTP ({how}). Register the http:// "
                "or https:// URL the engine calls your app at",
                400,
            )


def probe_url(url: str) -> str:
    """``url`` with ``probe=trust`` instead of the call parameters (``fnId``, ``stepId``)."""
    parts = urllib.parse.urlsplit(url)
    own = ("fnId", "stepId", "probe", "deployId")
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in own]
    query.append(("probe", "trust"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def probe_failure(answer: RawResponse, keys: tuple[str, ...], *, now: float) -> str | None:
    """Why a trust probe's answer does not prove the key (None: it does)."""
    if answer.error is not None:
        return f"no answer: {answer.error}"
    if not 200 <= answer.status < 300:
        return f"it answered status {answer.status}, not 2xx"
    found = {k.lower(): v for k, v in answer.headers.items()}
    header = found.get(headers.SIGNATURE.lower())
    if not header:
        return "its answer carries no X-Inngest-Signature"
    try:
        signing.verify(answer.body, header, keys, now=now)
    except _errors.SignatureVerificationError as exc:
        return f"its answer's signature is not valid for this engine's keys: {exc}"
    return None


def refusal(app_id: str, old_url: str, new_url: str, why: str) -> RegistrationRefusedError:
    """The 403 for a move whose new URL failed the trust probe."""
    return RegistrationRefusedError(
        f"app {app_id!r} is registered at {old_url}; this registration would move it to "
        f"{new_url}, which did not prove it holds this engine's signing key ({why}). The "
        f"app stays at {old_url}. To move it, serve it at the new URL with the engine's "
        "signing key (the engine POSTs a signed ?probe=trust there and wants a signed 2xx), "
        "or sync it from the engine (stepline start -u <url>, or POST /v1/apps/sync)",
        403,
    )


class SyncTickets:
    """``deployId``\\ s the engine put on its own signed sync PUTs, each for one origin.

    Redeeming one (once, before it expires) shows the registration answers a sync the
    engine sent to that origin. Only this process knows them: on another node the
    registration falls back to the probe.
    """

    def __init__(self, seconds: float = TICKET_SECONDS) -> None:
        self._seconds = seconds
        self._open: dict[str, tuple[str, float]] = {}

    def issue(self, url: str, now: float) -> str:
        """A fresh ticket for a sync PUT to ``url``."""
        self._open = {k: v for k, v in self._open.items() if v[1] > now}
        ticket = "stepline-" + secrets.token_urlsafe(18)
        self._open[ticket] = (origin(url), now + self._seconds)
        return ticket

    def redeem(self, ticket: str | None, now: float) -> str | None:
        """The origin a live ticket was issued for (it is used up), else None."""
        found = self._open.pop(ticket, None) if ticket else None
        if found is None or found[1] <= now:
            return None
        return found[0]


class AppGuard:
    """Signs the engine's sync PUTs and vets registrations that move an app."""

    def __init__(self, settings: EngineSettings, driver: Driver) -> None:
        self.settings = settings
        self.driver = driver
        self.tickets = SyncTickets()

    def sync_request(
        self, url: str, now: float, *, vouch: bool = True
    ) -> tuple[str, bytes, dict[str, str]]:
        """The out-of-band sync PUT for ``url``: signed when the engine has a key.

        In start mode, with ``vouch``, it carries a ``deployId`` the engine remembers,
        which the app sends back on ``/fn/register`` (PROTOCOL.md §2.1) to move to
        ``url``'s origin without a trust probe. Without ``vouch`` (a sync a dashboard
        session asked for: whoever typed the URL never proved the signing key), the PUT
        carries none, and a registration that moves an app needs the probe.
        """
        target = url
        if vouch and self.settings.mode != "dev" and self.settings.signing_key is not None:
            parts = urllib.parse.urlsplit(url)
            query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "deployId"]
            query.append(("deployId", self.tickets.issue(url, now)))
            target = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        body, sent = request.encode(
            {"url": url},
            signing_key=self.settings.signing_key,
            now=now,
            server_kind=self.settings.server_kind,
        )
        return target, body, sent

    async def check_move(
        self, store: Store, app: AppSpec, deploy_id: str | None, now: float
    ) -> None:
        """Refuse (start mode) or log (dev mode) a registration that moves ``app``.

        Raises:
            RegistrationRefusedError: a new origin did not pass the trust probe (403).
        """
        registered = await store.read(lambda tx: _registered(tx, app.app_id))
        if registered is None:
            return  # a first registration: nothing to move
        known, versions = registered
        dev = self.settings.mode == "dev"
        new_urls = app_urls(app.url, (fn.url for fn in app.functions))
        moved = moves(known, new_urls, loopback_alike=dev)
        if not moved:
            return
        old_url = known[0]
        added = is_new_version(app.version, versions)
        if dev:
            for new_url in moved.values():
                text = move_text(app.app_id, old_url, new_url, app.version, added)
                if added:  # blue/green as documented: nothing to warn of
                    logger.info("%s", text)
                else:
                    logger.warning("%s (dev mode accepts a move unverified)", text)
            return
        vouched = self.tickets.redeem(deploy_id, now)
        for where, new_url in moved.items():
            text = move_text(app.app_id, old_url, new_url, app.version, added)
            if where == vouched:
                logger.info("%s by a sync this engine sent", text)
                continue
            why = await self._probe(app.app_id, new_url, now)
            if why is not None:
                logger.warning(
                    "refused to move app %s from %s to %s: %s", app.app_id, old_url, new_url, why
                )
                raise refusal(app.app_id, old_url, new_url, why)
            logger.info("%s (trust probe passed)", text)

    async def _probe(self, app_id: str, url: str, now: float) -> str | None:
        target = probe_url(url)
        base = urllib.parse.urlunsplit(urllib.parse.urlsplit(target)._replace(query=""))
        body: dict[str, Any] = {"url": base, "app_id": app_id}
        raw, sent = request.encode(
            body,
            signing_key=self.settings.signing_key,
            now=now,
            server_kind=self.settings.server_kind,
        )
        answer = await self.driver.request("POST", target, raw, sent, PROBE_TIMEOUT)
        return probe_failure(answer, self.settings.signing_keys, now=now)


def _registered(tx: Tx, app_id: str) -> tuple[list[str], list[str]] | None:
    """An app's registered URLs and versions (None: it is not registered)."""
    app = tx.apps.get_app(app_id)
    if app is None:
        return None
    functions = [f for f in tx.apps.list_functions() if f.app_id == app_id]
    urls = app_urls(app.url, (str(f.config.get("url") or "") for f in functions))
    versions = tx.versions.list_app_versions(app_id)
    # the URLs of its other registered versions passed this check when they registered
    return [*urls, *(v.url for v in versions)], [v.version for v in versions]
