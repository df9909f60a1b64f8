"""``/`` a page, ``/signup`` and ``/signup/<id>``, the run routes under ``/api/``, the dashboard."""

from __future__ import annotations

from django.urls import include, path

import stepline.django
from signup import views, workflows

urlpatterns = [
    path("", views.index),
    path("signup", views.signup),
    path("signup/<int:user_id>", views.status, name="signup-status"),
    # GET /api/runs/<id>, .../result, .../events (SSE), POST .../cancel
    path(
        "api/",
        include(
            stepline.django.runs_urls(
                stepline.django.get_client(), workflows.functions, authorize=views.owns_run
            )
        ),
    ),
    # the embedded engine's REST API and dashboard (DEBUG only: a dev-mode client)
    path("stepline/", include("stepline.django.urls")),
]
