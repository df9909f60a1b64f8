"""Settings of the signup example: no Django database, sessions in signed cookies."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Users and the engine's queue live here (SQLite files); tests point it at a temp dir.
DATA_DIR = Path(os.environ.get("SIGNUP_DATA_DIR", BASE_DIR / ".data"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "signup-example-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "signup.urls"
INSTALLED_APPS = ["stepline.django", "signup"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
# The welcome email is printed where runserver (or `manage.py signup`) runs.
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

SIGNUP_USERS_DB = DATA_DIR / "users.sqlite3"

STEPLINE = {
    "APP_ID": "signup",
    "FUNCTIONS": "signup.workflows.functions",
    "DEV": DEBUG,
    # The engine runs on a thread of this process; its queue is a SQLite file that
    # runserver and `manage.py signup` share. Drop ENGINE to use a separate engine
    # (`manage.py stepline dev`) and mount serve() instead.
    "ENGINE": "embedded",
    "DATABASE": str(DATA_DIR / "stepline.db"),
}
