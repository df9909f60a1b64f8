"""A Django project configured only through ``settings.STEPLINE`` (run in subprocesses).

``tests.apps.django_site_urls`` mounts ``include("stepline.django.urls")`` (the serve
endpoint) and the run routes; ``manage.py stepline dev`` (``python -m django stepline dev``)
runs the engine that syncs it. Addresses come from the environment the test sets.
"""

from __future__ import annotations

import os

SECRET_KEY = "stepline-site-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "tests.apps.django_site_urls"
ASGI_APPLICATION = "tests.apps.django_site_asgi.application"
INSTALLED_APPS = ["stepline.django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

STEPLINE = {
    "APP_ID": "site",
    "DEV": True,
    "FUNCTIONS": "tests.apps.django_site_functions.functions",
    "BASE_URL": os.environ["SITE_ENGINE_URL"],
    "SERVE_ORIGIN": os.environ["SITE_ORIGIN"],
    "DATABASE": os.environ["SITE_DATABASE"],
}
