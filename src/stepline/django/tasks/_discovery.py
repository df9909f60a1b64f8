"""The Django tasks of ``SteplineBackend``s, found once and made Stepline functions.

``stepline.django`` asks for them with its own ``FUNCTIONS`` (``get_functions()``), so the
engine knows a function per task, embedded or separate. Each backend's tasks are the
``Task`` objects of every installed app's ``tasks`` module (unless ``"AUTODISCOVER":
False``) and of its ``"MODULES"`` whose ``backend`` is that backend's alias.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from django.apps import apps
from django.utils.module_loading import module_has_submodule

from stepline._definition.function import Function
from stepline.django.tasks import _compat, _functions
from stepline.django.tasks._options import BackendOptions

__all__ = ["functions", "stepline_backends"]


def stepline_backends() -> dict[str, BackendOptions]:
    """The aliases of ``settings.TASKS`` served by a ``SteplineBackend``, and their options."""
    from stepline.django.tasks._backend import SteplineBackend

    found: dict[str, BackendOptions] = {}
    for alias in _compat.task_backends.settings:
        backend = _compat.task_backends[alias]
        if isinstance(backend, SteplineBackend):
            found[alias] = backend.stepline_options
    return found


def functions(app_id: str) -> list[Function]:
    """A function per task of every ``SteplineBackend``, ordered by the task's path."""
    backends = stepline_backends()
    if not backends:
        return []
    tasks: dict[str, _compat.Task[Any, Any]] = {}
    for module in _modules(backends.values()):
        for value in vars(module).values():
            if isinstance(value, _compat.Task) and value.backend in backends:
                tasks.setdefault(value.module_path, value)
    return [
        _functions.build(app_id, task, task.backend, backends[task.backend])
        for _, task in sorted(tasks.items())
    ]


def _modules(options: Any) -> list[ModuleType]:
    paths: list[str] = []
    if any(o.autodiscover for o in options):
        for config in apps.get_app_configs():
            if module_has_submodule(config.module, "tasks"):
                paths.append(f"{config.name}.tasks")
    for option in options:
        paths.extend(option.modules)
    return [import_module(path) for path in dict.fromkeys(paths)]
