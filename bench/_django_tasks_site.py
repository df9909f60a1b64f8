"""The Django project ``django_tasks_bench.py`` runs both backends in: its settings.

One module for both sides, read from two variables the bench sets for each child process:
``BENCH_TASKS_BACKEND`` (``db``: django-tasks-db's ``DatabaseBackend``, run by its
``db_worker`` command; ``stepline``: ``stepline.django.tasks.SteplineBackend``) and
``BENCH_TASKS_DB`` (the SQLite file). Both sides keep their data in SQLite in WAL mode
with ``synchronous=NORMAL``, Stepline's own default, so both survive a crash of a process
and neither pays an fsync per commit.
"""

from __future__ import annotations

import os

import django

SIDE = os.environ.get("BENCH_TASKS_BACKEND", "db")
DATABASE = os.environ.get("BENCH_TASKS_DB", "bench-tasks.db")

SECRET_KEY = "django-tasks-bench"  # a throwaway project on loopback
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes"]
if django.VERSION < (6, 0):
    INSTALLED_APPS += ["django_tasks"]  # the backport of Django 6.0's django.tasks
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # one connection a process for its life, as a worker should: django-tasks-db's
        # worker ends each task as Django ends a request, and with the default (0) that
        # closes the connection, and with it the WAL (a checkpoint and a fsync a task)
        "CONN_MAX_AGE": None,
        "NAME": DATABASE,
        "OPTIONS": {
            # the worker and the enqueuing process write at once: take the write lock at
            # BEGIN and wait for it, instead of failing on a lock upgrade
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
LOGGING_CONFIG = None

if SIDE == "db":
    INSTALLED_APPS += ["django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
else:
    INSTALLED_APPS += ["stepline.django"]
    # the engine in this process, on a SQLite file of its own beside the project's
    STEPLINE = {
        "APP_ID": "bench",
        "DEV": True,
        "ENGINE": "embedded",
        "DATABASE": f"{DATABASE}.stepline",
    }
    TASKS = {
        "default": {
            "BACKEND": "stepline.django.tasks.SteplineBackend",
            "OPTIONS": {"MODULES": ["_django_tasks_jobs"], "AUTODISCOVER": False},
        }
    }
