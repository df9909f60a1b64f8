"""``INSTALLED_APPS = [..., "stepline.django"]``: settings-driven client, engine and commands."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started

__all__ = ["SteplineConfig"]


class SteplineConfig(AppConfig):
    """Builds the project's client from ``settings.STEPLINE`` when Django starts.

    It checks the setting, imports ``FUNCTIONS`` and the tasks modules of ``TASKS``'
    Stepline backends (so a mistake stops the process at start, not at the first
    request), builds the embedded engine for ``"ENGINE": "embedded"`` without starting it,
    and starts that engine on the process's first request: a preforking server
    (``gunicorn --preload``) forks before any engine thread exists, and ``runserver``'s
    file watcher never starts one. A worker that must run it before
    any request calls ``stepline.embedded.start_all()`` from its server's hook (gunicorn's
    ``post_worker_init``). It also adds ``manage.py stepline``.
    """

    name = "stepline.django"
    label = "stepline"
    verbose_name = "Stepline"

    def ready(self) -> None:
        from stepline.django import _runtime, _serve

        _serve.check_version()
        runtime = _runtime.current()
        runtime.client()  # embedded mode: builds the engine too (imports FUNCTIONS)
        runtime.functions()  # FUNCTIONS, and the tasks of TASKS' Stepline backends
        request_started.connect(_start_engine, dispatch_uid="stepline.django.engine")


def _start_engine(**_: Any) -> None:
    from stepline.django import _runtime

    _runtime.start_engine()
