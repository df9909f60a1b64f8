"""The project's one client, its functions and (embedded mode) its engine, per process.

Built from ``settings.STEPLINE`` on first use and kept until that setting (or ``TASKS``,
whose Stepline backends add functions) changes (``override_settings`` in tests), so every
view, command and worker of the process shares one client. The functions module
(``FUNCTIONS``) usually calls ``get_client()`` while it is imported; that call gets the
client before the engine exists, which is fine: the embedded engine reroutes that same
client object when it is built right after.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from stepline import _errors
from stepline._client import Client
from stepline._definition.function import Function
from stepline.django import _conf
from stepline.embedded import EmbeddedEngine

__all__ = [
    "Runtime",
    "current",
    "get_client",
    "get_engine",
    "get_functions",
    "reset",
    "start_engine",
]


class Runtime:
    """What one ``STEPLINE`` setting builds, lazily and once.

    Args:
        config: the checked setting.
    """

    def __init__(self, config: _conf.Config) -> None:
        self.config = config
        self._lock = threading.RLock()
        self._client: Client | None = None
        self._functions: list[Function] | None = None
        self._engine: EmbeddedEngine | None = None
        self._importing = False

    def client(self) -> Client:
        """The client; in embedded mode, already routed to the engine."""
        with self._lock:
            if self._client is None:
                self._client = Client(self.config.app_id, **self.config.client_options())
            if self.config.embedded and self._engine is None and not self._importing:
                self.engine()
            return self._client

    def functions(self) -> list[Function]:
        """The functions ``FUNCTIONS`` names, imported on first call, and one per task of
        the ``TASKS`` setting's Stepline backends (``stepline.django.tasks``)."""
        with self._lock:
            if self._functions is None:
                self._functions = self._import_functions() + self._task_functions()
            return self._functions

    def engine(self) -> EmbeddedEngine:
        """The embedded engine (its thread starts on first use, again after a fork)."""
        with self._lock:
            if self._engine is None:
                if not self.config.embedded:
                    raise _errors.ConfigError(
                        "no embedded engine: settings.STEPLINE['ENGINE'] is not 'embedded'"
                    )
                if self._client is None:
                    self._client = Client(self.config.app_id, **self.config.client_options())
                self._engine = EmbeddedEngine(
                    self._client,
                    self.functions(),
                    database=self.config.database,
                    expose_api=self.config.expose_api,
                    **self.config.engine_options,
                )
            return self._engine

    def start_engine(self) -> None:
        """Start the embedded engine, leasing work, if it was built (this process serves).

        A failure is logged and tried again a few seconds later: the request goes on.
        """
        engine = self._engine
        if engine is not None:
            engine.on_request()

    def close(self) -> None:
        """Stop the embedded engine, if one runs."""
        if self._engine is not None:
            self._engine.stop()

    def _task_functions(self) -> list[Function]:
        if not getattr(settings, "TASKS", None):  # Django 5.2 without the backport too
            return []
        from stepline.django.tasks import _discovery

        self._importing = True  # a tasks module may call get_client(): no engine yet
        try:
            return _discovery.functions(self.config.app_id)
        finally:
            self._importing = False

    def _import_functions(self) -> list[Function]:
        path = self.config.functions
        if path is None:  # an app of durable endpoints only: they are served all the same
            return []
        if self._importing:
            raise _errors.ConfigError(f"{path} asks for the functions while being imported")
        self._importing = True  # the module (or factory) calls get_client(): no engine yet
        try:
            value: Any = import_string(path)
            if callable(value) and not isinstance(value, Function):
                value = value()  # a factory returning the list
        except ImportError as exc:
            raise _errors.ConfigError(f"settings.STEPLINE['FUNCTIONS']: {exc}") from exc
        finally:
            self._importing = False
        if not isinstance(value, Sequence) or not all(isinstance(f, Function) for f in value):
            raise _errors.ConfigError(f"{path} must be a list of stepline functions")
        return list(value)


class _Slot:
    """The process's runtime; rebuilt when ``settings.STEPLINE`` changes."""

    runtime: Runtime | None = None
    lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime for the current ``settings.STEPLINE``.

    Raises:
        ConfigError: the setting is missing or malformed.
    """
    with _Slot.lock:
        if _Slot.runtime is None:
            raw = getattr(settings, "STEPLINE", None)
            if raw is None:
                raise _errors.ConfigError(
                    "settings.STEPLINE is not set; add STEPLINE = {'APP_ID': 'my-app', "
                    "'FUNCTIONS': 'myapp.workflows.functions'}"
                )
            _Slot.runtime = Runtime(_conf.from_setting(raw))
        return _Slot.runtime


def reset() -> None:
    """Forget the runtime (stopping its embedded engine); the next use rebuilds it."""
    with _Slot.lock:
        old, _Slot.runtime = _Slot.runtime, None
    if old is not None:
        old.close()


def get_client() -> Client:
    """The project's client, built from ``settings.STEPLINE`` (one per process).

    Raises:
        ConfigError: ``settings.STEPLINE`` is missing or malformed.
    """
    return current().client()


def get_functions() -> list[Function]:
    """The functions ``settings.STEPLINE['FUNCTIONS']`` names.

    Raises:
        ConfigError: no ``FUNCTIONS``, or it does not name a list of functions.
    """
    return current().functions()


def get_engine() -> EmbeddedEngine:
    """The embedded engine of ``settings.STEPLINE = {"ENGINE": "embedded", ...}``.

    Raises:
        ConfigError: the engine is not embedded.
    """
    return current().engine()


def start_engine() -> None:
    """Start the embedded engine if the runtime built one (each request calls it; cheap)."""
    runtime = _Slot.runtime
    if runtime is not None:
        runtime.start_engine()


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in ("STEPLINE", "TASKS"):  # TASKS: the functions of its Stepline backends
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="stepline.django.runtime")
