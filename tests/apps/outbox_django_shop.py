"""The shop's functions for the Django embedded-relay app (``STEPLINE['FUNCTIONS']``)."""

from __future__ import annotations

import stepline.django
from tests._support.outbox_shop import shop_functions

functions = shop_functions(stepline.django.get_client())
