"""Stepline for Django: the serve endpoint, the web-app kit's routes, settings and commands.

Without settings::

    urlpatterns = [
        stepline.django.serve(client, [welcome]),
        path("api/", include(stepline.django.runs_urls(client, [welcome], authorize=can_run))),
    ]

With ``INSTALLED_APPS += ["stepline.django"]`` and ``STEPLINE = {"APP_ID": ..., "FUNCTIONS":
"dotted.path", "ENGINE": "embedded" | None, ...}``: ``get_client()`` is the process's one
client, ``include("stepline.django.urls")`` mounts what the settings call for, and
``manage.py stepline dev|start|migrate`` runs the engine with the settings' keys.

A durable view (steps inline in the request, resumed by the engine if they must wait):
``@stepline.django.durable()`` on a view function; see ``durable``.

The transactional outbox (``manage.py migrate`` creates its table): ``send_on_commit`` and
``start_in_transaction`` write inside ``transaction.atomic()``; the relay delivers after
commit (docs/outbox-django.md).
"""

from __future__ import annotations

from stepline.django._durable import durable as durable
from stepline.django._mount import default_urls as default_urls
from stepline.django._mount import engine_urls as engine_urls
from stepline.django._outbox import send_on_commit as send_on_commit
from stepline.django._outbox import start_in_transaction as start_in_transaction
from stepline.django._routes import runs_urls as runs_urls
from stepline.django._runtime import get_client as get_client
from stepline.django._runtime import get_engine as get_engine
from stepline.django._runtime import get_functions as get_functions
from stepline.django._serve import FRAMEWORK as FRAMEWORK
from stepline.django._serve import MIN_VERSION as MIN_VERSION
from stepline.django._serve import serve as serve

__all__ = [
    "FRAMEWORK",
    "MIN_VERSION",
    "default_urls",
    "durable",
    "engine_urls",
    "get_client",
    "get_engine",
    "get_functions",
    "runs_urls",
    "send_on_commit",
    "serve",
    "start_in_transaction",
]
