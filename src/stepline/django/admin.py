"""Stepline's runs, events, functions and approvals in the Django admin.

Django's admin imports this module (``autodiscover``) when ``django.contrib.admin`` and
``"stepline.django"`` are both installed: the sections read the engine through the
project's client (``settings.STEPLINE``: embedded or separate), with Django's permissions
(``stepline.view_run``, ``cancel_run``, ``rerun_run``, ``signal_run``, ``view_event``,
``view_function``, ``pause_function``, ``view_approval``, ``decide_approval``). To put
them on a site of your own, register the same classes::

    my_site.register(stepline.django.models.Run, RunAdmin)
"""

from __future__ import annotations

from django.contrib import admin

from stepline.django import models
from stepline.django._admin.approvals import ApprovalAdmin
from stepline.django._admin.events import EventAdmin
from stepline.django._admin.functions import FunctionAdmin
from stepline.django._admin.runs import RunAdmin

__all__ = ["ApprovalAdmin", "EventAdmin", "FunctionAdmin", "RunAdmin"]

admin.site.register(models.Run, RunAdmin)
admin.site.register(models.Event, EventAdmin)
admin.site.register(models.Function, FunctionAdmin)
admin.site.register(models.Approval, ApprovalAdmin)
