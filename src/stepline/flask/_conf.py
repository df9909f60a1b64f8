"""The Flask conventions: ``Client`` arguments from ``app.config``'s ``STEPLINE_*`` keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepline import _errors

__all__ = ["client_options"]

_CLIENT_KEYS = {
    "signing_key": "STEPLINE_SIGNING_KEY",
    "signing_key_fallback": "STEPLINE_SIGNING_KEY_FALLBACK",
    "event_key": "STEPLINE_EVENT_KEY",
    "env": "STEPLINE_ENV",
    "serve_origin": "STEPLINE_SERVE_ORIGIN",
    "serve_path": "STEPLINE_SERVE_PATH",
    "app_version": "STEPLINE_APP_VERSION",
}


def client_options(config: Mapping[str, Any], app_id: str) -> dict[str, Any]:
    """``Client`` arguments from ``app.config``; absent keys stay None (the environment's)."""
    options: dict[str, Any] = {"app_id": app_id, "is_production": _is_production(config)}
    for argument, key in _CLIENT_KEYS.items():
        value = config.get(key)
        options[argument] = None if value is None else str(value)
    dev = config.get("STEPLINE_DEV")
    dev_url = dev if isinstance(dev, str) and "://" in dev else None
    base = config.get("STEPLINE_BASE_URL") or dev_url
    options["api_base_url"] = config.get("STEPLINE_API_BASE_URL") or base
    options["event_api_base_url"] = config.get("STEPLINE_EVENT_API_BASE_URL") or base
    return options


def _is_production(config: Mapping[str, Any]) -> bool | None:
    from_dev = _flag(config.get("STEPLINE_DEV"))
    production = _flag(config.get("STEPLINE_IS_PRODUCTION"))
    if production is not None and from_dev is not None and production == from_dev:
        raise _errors.ConfigError("STEPLINE_DEV and STEPLINE_IS_PRODUCTION disagree")
    if production is not None:
        return production
    return None if from_dev is None else not from_dev


def _flag(value: object) -> bool | None:
    """A config switch: None or blank is unset; "0"/"false"/"no" are False (a URL is True)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return bool(value)
