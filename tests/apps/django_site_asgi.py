"""The site under an ASGI server: ``uvicorn tests.apps.django_site_asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site_settings")
application = get_asgi_application()
