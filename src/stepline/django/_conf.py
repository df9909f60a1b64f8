"""The ``STEPLINE`` Django setting, checked and frozen once.

Example::

    STEPLINE = {
        "APP_ID": "shop",
        "FUNCTIONS": "shop.workflows.functions",  # a list of functions, by dotted path
        "DEV": DEBUG,
        "ENGINE": "embedded",                     # or None: a separate engine
        "DATABASE": BASE_DIR / "stepline.db",
    }

Keys left out fall back to the environment (``STEPLINE_SIGNING_KEY``, ``STEPLINE_DEV``...)
as a plain ``stepline.Client`` does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Literal

from stepline import _errors

__all__ = ["DEFAULT_APP_ORIGIN", "Config", "from_setting"]

#: Where ``manage.py runserver`` listens; ``manage.py stepline dev`` syncs the app there.
DEFAULT_APP_ORIGIN = "http://127.0.0.1:8000"

_TEXT = (
    "APP_ID",
    "SIGNING_KEY",
    "SIGNING_KEY_FALLBACK",
    "EVENT_KEY",
    "BASE_URL",
    "ENV",
    "SERVE_ORIGIN",
    "SERVE_PATH",
    "FUNCTIONS",
)
_KNOWN = frozenset((*_TEXT, "DEV", "ENGINE", "DATABASE", "ENGINE_OPTIONS", "EXPOSE_API"))


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """``settings.STEPLINE``, checked.

    Attributes:
        app_id: the client's app id (required).
        dev: True for a dev-mode client, False for production, None to read ``STEPLINE_DEV``.
        signing_key: signs engine calls (production).
        signing_key_fallback: the previous key while rotating.
        event_key: sends events (production).
        base_url: the engine's origin (a separate engine); both API and event API.
        env: the branch environment name.
        serve_origin: the app's public origin; ``manage.py stepline`` syncs it.
        serve_path: the serve endpoint's public path, if a proxy rewrites it.
        functions: dotted path to the list of functions the app serves.
        engine: ``"embedded"`` to run the engine inside the web process, else None.
        database: the engine's database (embedded, and ``manage.py stepline``).
        engine_options: more ``EngineSettings`` fields for the embedded engine.
        expose_api: mount the embedded engine's API and dashboard for a production client.
    """

    app_id: str
    dev: bool | None = None
    signing_key: str | None = None
    signing_key_fallback: str | None = None
    event_key: str | None = None
    base_url: str | None = None
    env: str | None = None
    serve_origin: str | None = None
    serve_path: str | None = None
    functions: str | None = None
    engine: Literal["embedded"] | None = None
    database: str | None = None
    engine_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    expose_api: bool = False

    @property
    def embedded(self) -> bool:
        """True when the engine runs inside the web process."""
        return self.engine == "embedded"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``stepline.Client`` (absent keys: the environment decides)."""
        return {
            "is_production": None if self.dev is None else not self.dev,
            "signing_key": self.signing_key,
            "signing_key_fallback": self.signing_key_fallback,
            "event_key": self.event_key,
            "api_base_url": self.base_url,
            "event_api_base_url": self.base_url,
            "env": self.env,
            "serve_origin": self.serve_origin,
            "serve_path": self.serve_path,
        }


def from_setting(raw: object) -> Config:
    """Check ``settings.STEPLINE``.

    Args:
        raw: the setting's value.

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: not a dict, an unknown key (a typo), a value of the wrong type, or
            no ``APP_ID``.
    """
    if not isinstance(raw, Mapping):
        raise _errors.ConfigError("settings.STEPLINE must be a dict")
    unknown = sorted(str(key) for key in raw if key not in _KNOWN)
    if unknown:
        raise _errors.ConfigError(
            f"settings.STEPLINE has unknown keys {unknown}; known: {sorted(_KNOWN)}"
        )
    values: dict[str, Any] = {}
    for key in _TEXT:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise _errors.ConfigError(f"settings.STEPLINE['{key}'] must be a string")
        values[key.lower()] = value
    if not values["app_id"]:
        raise _errors.ConfigError("settings.STEPLINE needs 'APP_ID': your app's id")
    for key in ("DEV", "EXPOSE_API"):
        value = raw.get(key)
        if value is not None and not isinstance(value, bool):
            raise _errors.ConfigError(f"settings.STEPLINE['{key}'] must be True or False")
    engine = raw.get("ENGINE")
    if engine not in (None, "embedded"):
        raise _errors.ConfigError(
            f"settings.STEPLINE['ENGINE'] must be 'embedded' or None, not {engine!r}"
        )
    database = raw.get("DATABASE")
    if database is not None and not isinstance(database, (str, os.PathLike)):
        raise _errors.ConfigError("settings.STEPLINE['DATABASE'] must be a path or a URL")
    options = raw.get("ENGINE_OPTIONS")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise _errors.ConfigError("settings.STEPLINE['ENGINE_OPTIONS'] must be a dict")
    return Config(
        **values,
        dev=raw.get("DEV"),
        engine=engine,
        database=None if database is None else os.fspath(database),
        engine_options=dict(options),
        expose_api=bool(raw.get("EXPOSE_API")),
    )
