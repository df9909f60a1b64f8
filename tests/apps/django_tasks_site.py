"""A Django project whose tasks run on ``SteplineBackend`` and the embedded engine.

``python -m tests.apps.django_tasks_site FOLDER work``: migrates, starts the embedded
engine (an SQLite file in FOLDER, a 2 s lease) and works until killed; with
``ENQUEUE=1`` it first enqueues ``survive`` (which blocks on its first execution) and
writes the result's id to ``FOLDER/id``.

``python -m tests.apps.django_tasks_site FOLDER inspect ID``: waits for the task's result
(``get_result`` in this other process), opens the Django admin's runs list as a
superuser, and prints JSON: the result's status, return value and attempts, how many
runs the task has, and whether the admin lists the run under the task's name.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import django
from django.conf import settings
from django.urls import path

folder = Path(sys.argv[1])
urlpatterns: list[object] = []

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="stepline-tests-not-secret",
    USE_TZ=True,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(folder / "dj.db")}},
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "stepline.django",
        "tests.django_tasks_backend.taskapp",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    TEMPLATES=[
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
    ],
    TASKS={
        "default": {
            "BACKEND": "stepline.django.tasks.SteplineBackend",
            "QUEUES": ["default", "serial"],
            "OPTIONS": {"RETRIES": 2},
        }
    },
    STEPLINE={
        "APP_ID": "tasks-site",
        "DEV": True,
        "ENGINE": "embedded",
        "DATABASE": str(folder / "engine.db"),
        "ENGINE_OPTIONS": {"poll_interval": 0.05, "lease_seconds": 2},
    },
)
django.setup()

import django.test  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

import stepline.django  # noqa: E402
import stepline.embedded  # noqa: E402
from tests.django_tasks_backend.taskapp import tasks  # noqa: E402

urlpatterns[:] = [path("admin/", admin.site.urls)]
call_command("migrate", verbosity=0, interactive=False)


def work() -> None:
    stepline.embedded.start_all()
    if os.environ.get("ENQUEUE") == "1":
        result = tasks.survive.enqueue(str(folder / "marks"))
        (folder / "id").write_text(result.id)
    while True:
        time.sleep(1)


def inspect(result_id: str) -> None:
    result = tasks.survive.get_result(result_id)
    deadline = time.monotonic() + 60
    while not result.is_finished and time.monotonic() < deadline:
        time.sleep(0.1)
        result.refresh()
    user = User.objects.create_superuser("admin", "admin@example.com", None)
    browser = django.test.Client()
    browser.force_login(user)
    page = browser.get("/admin/stepline/run/").content.decode()
    runs, _ = stepline.django.get_client().list_runs_sync(
        function="tests.django_tasks_backend.taskapp.tasks.survive"
    )
    report = {
        "status": str(result.status),
        "return_value": result.return_value if result.is_finished else None,
        "attempts": result.attempts,
        "runs": [run.run_id for run in runs],
        "admin_lists_it": result_id in page and ">survive<" in page,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[2] == "work":
        work()
    else:
        inspect(sys.argv[3])
