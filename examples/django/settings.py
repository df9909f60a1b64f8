"""Settings of the Django example: no database, no templates, CSRF protection on."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-example-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "urls"
# Served by an ASGI server: stepline.django.serve() then picks its async view.
ASGI_APPLICATION = "asgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# Optional: fill in serve() options not passed as arguments (they override the client's).
# STEPLINE_SERVE_ORIGIN = "https://app.example.com"
# STEPLINE_SERVE_PATH = "/api/inngest"
# STEPLINE_STREAMING = "force"
