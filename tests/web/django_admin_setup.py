"""A Django project with the admin and ``stepline.django``, inside the tests' one configuration.

Django is configured once per process (``tests/adapters/harness_django``: no database, no
apps). ``admin_project`` adds what an admin needs for the length of a ``with``: the admin's
apps, middleware and templates (``override_settings``), a SQLite database of its own,
migrated (``stepline``'s migrations included), and the admin mounted at ``/admin/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.test
from django.core.checks.registry import registry
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from django.urls import include, path

import stepline.django

from .django_setup import harness, mount

APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "stepline.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


@contextlib.contextmanager
def database(file: Path) -> Iterator[None]:
    """The ``default`` database is SQLite at ``file`` meanwhile.

    ``override_settings(DATABASES=...)`` warns (warnings are errors here) and does not
    reach the connections already made, so the connection handler's settings are swapped.
    """
    saved = connections.settings
    old = getattr(connections._connections, "default", None)
    if old is not None:
        del connections["default"]
    connections.__dict__["settings"] = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(file)}}
    )
    try:
        yield
    finally:
        connections["default"].close()
        del connections["default"]
        connections.__dict__["settings"] = saved
        if old is not None:
            connections["default"] = old


@contextlib.contextmanager
def admin_project(file: Path, **stepline_setting: Any) -> Iterator[None]:
    """The admin and ``stepline.django`` installed, with ``STEPLINE = stepline_setting``.

    The system checks the admin's apps register when they are ready (auth's, the admin's)
    are taken back after: they would fail other tests' ``run_checks()`` without the apps.
    """
    checks = set(registry.registered_checks), set(registry.deployment_checks)
    try:
        with (
            database(file),
            override_settings(
                STEPLINE=stepline_setting, MIDDLEWARE=MIDDLEWARE, TEMPLATES=TEMPLATES
            ),
            override_settings(INSTALLED_APPS=APPS),  # after STEPLINE: ready() reads it
        ):
            call_command("migrate", verbosity=0, interactive=False)
            yield
    finally:
        registry.registered_checks, registry.deployment_checks = checks


@contextlib.contextmanager
def embedded_admin_project(folder: Path, functions: str) -> Iterator[None]:
    """``admin_project`` for the app ``desk`` in dev mode, its functions (``functions``: the
    dotted path of their factory) run by an embedded engine whose database is in ``folder``."""
    harness().configure()
    setting = {
        "APP_ID": "desk",
        "DEV": True,
        "FUNCTIONS": functions,
        "ENGINE": "embedded",
        "DATABASE": str(folder / "engine.db"),
        "ENGINE_OPTIONS": {"poll_interval": 0.05},
    }
    with admin_project(folder / "django.db", **setting):
        yield


def mount_admin() -> None:
    """``/admin/`` and, as ``include("stepline.django.urls")``, ``/stepline/``."""
    from django.contrib import admin  # its models load once the admin is installed

    mount(
        path("admin/", admin.site.urls),
        path("stepline/", include(stepline.django.default_urls())),
    )


def browser(username: str, *permissions: str, superuser: bool = False) -> django.test.Client:
    """A logged-in test client for a new staff user with ``stepline.<permission>``s."""
    from django.contrib.auth.models import Permission, User

    if superuser:
        user = User.objects.create_superuser(username, f"{username}@example.com", None)
    else:
        user = User.objects.create_user(username, is_staff=True)  # no password: no hashing
        for codename in permissions:
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="stepline", codename=codename)
            )
    http = django.test.Client()
    http.force_login(user)
    return http
