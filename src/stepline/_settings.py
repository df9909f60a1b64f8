"""Settings resolved once, from constructor arguments and the environment.

Every setting follows the same precedence: an explicit argument (not ``None``), then
``STEPLINE_<NAME>``, then ``INNGEST_<NAME>``, then a default. Nothing below this module
reads the environment; the resolved ``Settings`` object is passed down instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Literal, TypedDict

from stepline import _errors
from stepline._execution.checkpointing import Checkpointing

__all__ = [
    "CLOUD_API_BASE_URL",
    "CLOUD_EVENT_API_BASE_URL",
    "DEV_BASE_URL",
    "NO_ENGINE",
    "Mode",
    "Settings",
    "Streaming",
    "resolve",
]

Mode = Literal["dev", "cloud"]
Streaming = Literal["disable", "force"]

CLOUD_API_BASE_URL = "https://api.inngest.com"
CLOUD_EVENT_API_BASE_URL = "https://inn.gs"
DEV_BASE_URL = "http://127.0.0.1:8288"
#: A base URL in production mode when none is configured: there is no default engine.
NO_ENGINE = ""

_ENV_PREFIXES = ("STEPLINE_", "INNGEST_")
# Hosting platforms that expose the git branch, read when no ENV is configured.
_BRANCH_VARS = ("RAILWAY_GIT_BRANCH", "RENDER_GIT_BRANCH", "VERCEL_GIT_COMMIT_REF")
_FALSE_VALUES = ("0", "false")
_KEY_PREFIX = re.compile(r"^signkey-\w+-")
# Bearer tokens hash the hex-decoded key, so the key must decode: even-length hex.
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything a client or serve handler needs to know, resolved once.

    Attributes:
        app_id: the app's id; prefixes every function id.
        mode: ``"cloud"`` (signatures required) or ``"dev"`` (local dev server).
        signing_key: primary signing key, ``signkey-<env>-<hex>`` or bare hex.
        signing_key_fallback: key tried when the primary one fails (key rotation).
        event_key: key for the event API; ``None`` sends ``NO_EVENT_KEY_SET``.
        api_base_url: origin of the engine's REST API, without trailing slash;
            ``NO_ENGINE`` in cloud mode when none is configured (``require_engine``).
        event_api_base_url: origin of the event API, without trailing slash; as
            ``api_base_url``.
        env: branch environment name sent as ``X-Inngest-Env``.
        serve_origin: public origin of the serve endpoint, if it differs from requests.
        serve_path: public path of the serve endpoint, if it differs from requests.
        streaming: ``"force"`` to keep long async calls alive with a streamed response.
        thread_pool_max_workers: workers for sync functions on async servers; 0 = inline.
        allow_in_band_sync: whether a sync PUT may be answered in band.
        app_version: arbitrary app version sent on registration.
        request_timeout: seconds before an outgoing HTTP request is abandoned.
        send_max_attempts: attempts for one event send (network errors and 5xx retry).
        checkpointing: whether several steps may run within one call (True: reported
            with its answer), and with ``Checkpointing``, how often they are persisted.
        max_stream_message_bytes: the largest message (the JSON of its value) a function
            may publish on its run's stream; larger ones raise
            ``StreamMessageTooLargeError`` at the call.
    """

    app_id: str
    mode: Mode
    signing_key: str | None
    signing_key_fallback: str | None
    event_key: str | None
    api_base_url: str
    event_api_base_url: str
    env: str | None
    serve_origin: str | None
    serve_path: str | None
    streaming: Streaming
    thread_pool_max_workers: int
    allow_in_band_sync: bool
    app_version: str | None
    request_timeout: float = 30.0
    send_max_attempts: int = 5
    checkpointing: bool | Checkpointing = True
    max_stream_message_bytes: int = 1024 * 1024

    @property
    def is_dev(self) -> bool:
        """True in dev mode."""
        return self.mode == "dev"

    def require_engine(self, caller: str, *, option: str = "api_base_url=") -> None:
        """Refuse a use that needs the engine when production mode names none.

        Stepline runs on the user's own engine, so production mode has no default URL
        (an app reaching Inngest Cloud by default would fail far from the cause).

        Args:
            caller: what needs the engine, to start the message with ("": nothing).
            option: the caller's own way to give the URL, named with the variables.

        Raises:
            ConfigError: no engine URL is configured.
        """
        if NO_ENGINE in (self.api_base_url, self.event_api_base_url):
            raise _errors.ConfigError(
                f"{caller}{': ' if caller else ''}no engine URL in production mode: set "
                "STEPLINE_DEV=1 for local development, STEPLINE_API_BASE_URL=<your engine's "
                f"URL> (or {option}), or STEPLINE_API_BASE_URL={CLOUD_API_BASE_URL} for "
                "Inngest Cloud"
            )

    @property
    def signing_keys(self) -> tuple[str, ...]:
        """The configured signing keys, primary first."""
        keys = (self.signing_key, self.signing_key_fallback)
        return tuple(key for key in keys if key)


class ClientSettings(TypedDict, total=False):
    """The settings ``Client`` takes as keywords and hands to ``resolve`` as they are.

    Declared once: ``Client(app_id, **settings: Unpack[ClientSettings])``; see ``Client``
    for what each one means.
    """

    is_production: bool | None
    signing_key: str | None
    signing_key_fallback: str | None
    event_key: str | None
    api_base_url: str | None
    event_api_base_url: str | None
    env: str | None
    serve_origin: str | None
    serve_path: str | None
    streaming: Literal["disable", "force"] | None
    thread_pool_max_workers: int | None
    allow_in_band_sync: bool | None
    app_version: str | None
    checkpointing: bool | Checkpointing | None
    max_stream_message_bytes: int | None


def resolve(
    *,
    app_id: str,
    environ: Mapping[str, str],
    is_production: bool | None = None,
    signing_key: str | None = None,
    signing_key_fallback: str | None = None,
    event_key: str | None = None,
    api_base_url: str | None = None,
    event_api_base_url: str | None = None,
    env: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: str | None = None,
    thread_pool_max_workers: int | None = None,
    allow_in_band_sync: bool | None = None,
    app_version: str | None = None,
    request_timeout: float | None = None,
    send_max_attempts: int | None = None,
    checkpointing: bool | Checkpointing | None = None,
    max_stream_message_bytes: int | None = None,
    unset_mode: Mode = "cloud",
) -> Settings:
    """Resolve settings from arguments, then ``STEPLINE_*``, ``INNGEST_*``, defaults.

    An explicit empty string for an optional text setting means "none" and still wins
    over the environment.

    Args:
        app_id: the app's id; must not be empty.
        environ: the environment to read, usually ``os.environ``.
        is_production: True for cloud mode, False for dev mode, None to read ``DEV``.
        signing_key: primary signing key (``SIGNING_KEY``).
        signing_key_fallback: fallback signing key (``SIGNING_KEY_FALLBACK``).
        event_key: event API key (``EVENT_KEY``).
        api_base_url: engine API origin (``API_BASE_URL``, then ``BASE_URL``); dev
            mode defaults to the local engine, production mode has no default.
        event_api_base_url: event API origin (``EVENT_API_BASE_URL``, then ``BASE_URL``,
            then the engine API's origin, ``inn.gs`` for Inngest Cloud's); defaults as
            ``api_base_url``.
        env: branch environment (``ENV``, then the platforms' git branch variables).
        serve_origin: public origin of the serve endpoint (``SERVE_ORIGIN``).
        serve_path: public path of the serve endpoint (``SERVE_PATH``).
        streaming: ``"disable"``, ``"force"`` or ``"allow"`` (= force) (``STREAMING``).
        thread_pool_max_workers: int >= 0, 0 runs inline (``THREAD_POOL_MAX_WORKERS``).
        allow_in_band_sync: in-band sync switch (``ALLOW_IN_BAND_SYNC``).
        app_version: app version (``APP_VERSION``).
        request_timeout: seconds per outgoing request; default 30.
        send_max_attempts: attempts per event send; default 5.
        checkpointing: run several steps per call; default True (reported with the
            call's answer); ``Checkpointing(buffered_steps=1)`` persists each step
            before the next step's code runs.
        max_stream_message_bytes: the largest message a function may publish
            (``MAX_STREAM_MESSAGE_BYTES``); default 1 MiB, as the engine's.
        unset_mode: the mode when neither ``is_production`` nor ``DEV`` sets one: an
            app runs in production by default; the CLI, at a developer's terminal, talks
            to the local engine.

    Returns:
        The frozen settings.

    Raises:
        ConfigError: a value is invalid (empty app id, malformed key, bad number...).
        UrlInvalidError: a base URL cannot be used.
    """
    if not app_id or not app_id.strip():
        raise _errors.ConfigError("app_id must not be empty")
    lookup = _Lookup(environ)
    mode, dev_url = _mode(is_production, lookup.get("DEV"), unset_mode)
    api, events = _urls(
        mode,
        _url(lookup.pick(api_base_url, "API_BASE_URL", "BASE_URL") or dev_url, mode),
        _url(lookup.pick(event_api_base_url, "EVENT_API_BASE_URL", "BASE_URL") or dev_url, mode),
    )
    return Settings(
        app_id=app_id,
        mode=mode,
        signing_key=_key("signing_key", lookup.pick(signing_key, "SIGNING_KEY")),
        signing_key_fallback=_key(
            "signing_key_fallback", lookup.pick(signing_key_fallback, "SIGNING_KEY_FALLBACK")
        ),
        event_key=lookup.pick(event_key, "EVENT_KEY"),
        api_base_url=api,
        event_api_base_url=events,
        env=lookup.pick(env, "ENV") or lookup.raw(*_BRANCH_VARS),
        serve_origin=lookup.pick(serve_origin, "SERVE_ORIGIN"),
        serve_path=lookup.pick(serve_path, "SERVE_PATH"),
        streaming=_streaming(lookup.pick(streaming, "STREAMING")),
        thread_pool_max_workers=_workers(thread_pool_max_workers, lookup),
        allow_in_band_sync=_in_band(allow_in_band_sync, lookup),
        app_version=lookup.pick(app_version, "APP_VERSION"),
        request_timeout=_positive("request_timeout", request_timeout, 30.0),
        send_max_attempts=_attempts(send_max_attempts),
        checkpointing=_checkpointing_option(checkpointing),
        max_stream_message_bytes=_bytes(
            "max_stream_message_bytes",
            max_stream_message_bytes,
            lookup.get("MAX_STREAM_MESSAGE_BYTES"),
            1024 * 1024,
        ),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Lookup:
    """Reads ``STEPLINE_<NAME>`` then ``INNGEST_<NAME>``; blank values count as unset."""

    environ: Mapping[str, str]

    def get(self, *names: str) -> str | None:
        return self.raw(*(prefix + name for name in names for prefix in _ENV_PREFIXES))

    def raw(self, *variables: str) -> str | None:
        for variable in variables:
            value = self.environ.get(variable, "").strip()
            if value:
                return value
        return None

    def pick(self, argument: str | None, *names: str) -> str | None:
        if argument is not None:
            return argument.strip() or None
        return self.get(*names)


def _mode(is_production: bool | None, dev: str | None, unset: Mode) -> tuple[Mode, str | None]:
    """The mode, and the ``DEV`` value when it is an http(s) URL."""
    dev_url = dev if dev is not None and _is_http_url(dev) else None
    if is_production is not None:
        return ("cloud" if is_production else "dev"), dev_url
    if dev is None:
        return unset, dev_url
    return ("cloud" if dev.lower() in _FALSE_VALUES else "dev"), dev_url


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _urls(mode: Mode, api: str | None, events: str | None) -> tuple[str, str]:
    """The two base URLs, where one or both are not configured.

    One engine serves both APIs at one origin, so a missing one follows the other,
    except that Inngest Cloud's API and event API have origins of their own. With
    neither, dev mode has the local engine and production mode ``NO_ENGINE``.
    """
    if api is None and events is not None:
        api = CLOUD_API_BASE_URL if events == CLOUD_EVENT_API_BASE_URL else events
    elif events is None and api is not None:
        events = CLOUD_EVENT_API_BASE_URL if api == CLOUD_API_BASE_URL else api
    unset = DEV_BASE_URL if mode == "dev" else NO_ENGINE
    return api or unset, events or unset


def _url(value: str | None, mode: Mode) -> str | None:
    """Normalise a base URL (None: not configured): add a scheme, drop trailing slashes."""
    if value is None:
        return None
    if "://" not in value:
        if "." not in value and ":" not in value:
            raise _errors.UrlInvalidError(f"not a URL: {value!r}")
        value = ("http://" if mode == "dev" else "https://") + value
    if not _is_http_url(value):
        raise _errors.UrlInvalidError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def _key(name: str, key: str | None) -> str | None:
    """Check a signing key's shape now, so a typo fails at startup, not per request."""
    if key is not None and not _KEY_PREFIX.sub("", key):
        # signkey-prod-$KEY with $KEY unset: refuse rather than sign with an empty key
        raise _errors.ConfigError(
            f"{name} has no key material after its signkey-<env>- prefix (an unset "
            "environment variable?): expected signkey-<env>-<hex>"
        )
    if key is not None and not _HEX.fullmatch(_KEY_PREFIX.sub("", key)):
        raise _errors.ConfigError(f"{name} is malformed: expected signkey-<env>-<hex>")
    return key


def _streaming(value: str | None) -> Streaming:
    choice = (value or "disable").lower()
    if choice == "disable":
        return "disable"
    if choice in ("force", "allow"):
        return "force"
    raise _errors.ConfigError(f"streaming must be 'disable' or 'force', not {value!r}")


def _workers(argument: int | None, lookup: _Lookup) -> int:
    raw: object = lookup.get("THREAD_POOL_MAX_WORKERS") if argument is None else argument
    if raw is None:
        return min(32, (os.cpu_count() or 1) + 4)
    if isinstance(raw, str) and re.fullmatch(r"[0-9]+", raw):
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise _errors.ConfigError(f"thread_pool_max_workers must be an int >= 0, not {raw!r}")
    return raw


def _in_band(argument: bool | None, lookup: _Lookup) -> bool:
    if argument is not None:
        return argument
    value = lookup.get("ALLOW_IN_BAND_SYNC")
    return value is None or value.lower() not in _FALSE_VALUES


def _positive(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not value > 0:
        raise _errors.ConfigError(f"{name} must be positive, not {value!r}")
    return value


def _attempts(value: int | None) -> int:
    if value is None:
        return 5
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _errors.ConfigError(f"send_max_attempts must be an int >= 1, not {value!r}")
    return value


def _bytes(name: str, argument: int | None, raw: str | None, default: int) -> int:
    value: object = argument if argument is not None else raw
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _errors.ConfigError(f"{name} must be an int >= 1 (bytes), not {value!r}")
    return value


def _checkpointing_option(value: object) -> bool | Checkpointing:
    if value is None:
        return True
    if isinstance(value, (bool, Checkpointing)):
        return value
    raise _errors.ConfigError(
        f"checkpointing must be True, False or a stepline.Checkpointing, got {value!r}"
    )
