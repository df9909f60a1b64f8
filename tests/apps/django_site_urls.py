"""The site's URLs: what the settings call for, and the run routes behind a token."""

from __future__ import annotations

import pydantic
from django.urls import include, path

import stepline.django
import stepline.web
from tests.apps.django_site_functions import hold, welcome

TOKEN = "s3cret"


class Greeting(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)


def authorize(access: stepline.web.AccessRequest) -> bool:
    token = access.request.headers.get("x-token")
    if token is None:
        raise stepline.web.AccessDenied("log in first", status=401)
    return bool(token == TOKEN)


urlpatterns = [
    path("", include("stepline.django.urls")),
    path(
        "api/",
        include(
            stepline.django.runs_urls(
                stepline.django.get_client(),
                [welcome, hold],
                authorize=authorize,
                inputs={welcome: Greeting},
                poll_interval=0.1,
            )
        ),
    ),
]
