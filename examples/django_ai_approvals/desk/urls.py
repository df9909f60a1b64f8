"""``/`` the customer's page, ``/admin/`` (the approvals inbox), ``/stepline/`` the dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from desk import views

urlpatterns = [
    path("", views.index, name="desk-index"),
    path("runs/<str:run_id>", views.run, name="desk-run"),
    # Stepline's sections, the approvals inbox among them: /admin/stepline/approval/
    path("admin/", admin.site.urls),
    # the embedded engine's REST API and dashboard (DEBUG only: a dev-mode client)
    path("stepline/", include("stepline.django.urls")),
]
