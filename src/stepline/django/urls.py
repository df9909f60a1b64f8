"""The URLs ``settings.STEPLINE`` calls for: ``path("", include("stepline.django.urls"))``.

With a separate engine, the serve endpoint (``api/inngest`` under the prefix) the engine
calls; with ``"ENGINE": "embedded"``, the engine's REST API and dashboard (dev client or
``EXPOSE_API`` only). See ``stepline.django.default_urls``.
"""

from __future__ import annotations

from django.urls import URLPattern

from stepline.django._mount import default_urls

urlpatterns: list[URLPattern] = default_urls()
