"""URLs of the Django example: an index and the Stepline endpoint at /api/inngest."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path
from functions import client, count, greet

import stepline.django


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "django-example", "functions": "/api/inngest"})


urlpatterns = [
    path("", index),
    stepline.django.serve(client, [greet, count]),
]
