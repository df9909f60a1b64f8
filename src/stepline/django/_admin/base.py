"""The shell every Stepline section of the Django admin shares: engine reads, permissions, pages.

A section is a ``ModelAdmin`` of an unmanaged model (no table): its changelist and change
views render what the project's client reads from the engine (embedded or separate), in
Django admin templates. Adding, changing and deleting do not exist; each action needs a
permission of its own (``stepline.cancel_run``...), checked when it runs, and the pages
only offer the actions the user may take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from django import http, urls
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.template.response import TemplateResponse
from django.views.generic import RedirectView

from stepline._api import actor as _actor
from stepline._api import catalog as _catalog
from stepline._api import runs as _runs
from stepline._client import Client
from stepline.django import _runtime
from stepline.django._admin import listing

__all__ = ["Action", "Done", "EngineAdmin", "Row", "actor_name", "dashboard_url", "query"]


def actor_name(request: http.HttpRequest) -> str:
    """Who the admin's calls to the engine are made for: ``django:<username>``."""
    user: Any = request.user
    return f"django:{user.get_username()}"


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    """An action of a changelist (on the ticked rows) or a change page (on its object).

    Attributes:
        name: the form's value.
        label: what the menu or button says.
        permission: the codename the user needs (app label ``stepline``).
    """

    name: str
    label: str
    permission: str


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """What an action did: its message, and the object it made (a rerun's new run), if any."""

    message: str
    made: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One row of a changelist: the object's id, its link and its cells after the first."""

    id: str
    url: str
    first: str
    cells: tuple[Any, ...]


def query(request: http.HttpRequest) -> dict[str, str]:
    """The request's query string, one value per name (the last, as ``QueryDict.get``)."""
    return {name: str(request.GET.get(name, "")) for name in request.GET}


def dashboard_url(fragment: str = "") -> str | None:
    """The Stepline dashboard mounted in this project (``stepline-engine``), or None.

    Args:
        fragment: the dashboard's page, e.g. ``runs/<id>`` (its hash route).
    """
    try:
        base = urls.reverse("stepline-engine", kwargs={"path": ""})
    except urls.NoReverseMatch:
        return None
    return f"{base}#/{fragment}" if fragment else base


class EngineAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A read-only admin section over the engine; subclasses draw its two pages."""

    #: the changelist's actions, in menu order
    engine_actions: ClassVar[Sequence[Action]] = ()
    # ``ModelAdmin.actions`` act on querysets; ours act on engine ids (``engine_actions``)
    actions = None

    # -- permissions: view, plus one per action --------------------------------------------

    def has_add_permission(self, request: http.HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: http.HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: http.HttpRequest, obj: Any = None) -> bool:
        return False

    def may(self, request: http.HttpRequest, permission: str) -> bool:
        """Whether the user has ``stepline.<permission>``."""
        user: Any = request.user  # authenticated: the admin's views only let staff in
        return bool(user.has_perm(f"{self.opts.app_label}.{permission}"))

    def require(self, request: http.HttpRequest, permission: str | None = None) -> None:
        """403 without the view permission, or without ``permission`` when given."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if permission is not None and not self.may(request, permission):
            raise PermissionDenied

    def offered(self, request: http.HttpRequest) -> list[Action]:
        """The changelist actions this user may take."""
        return [a for a in self.engine_actions if self.may(request, a.permission)]

    # -- URLs: the changelist and a change page, nothing else --------------------------------

    def get_urls(self) -> list[urls.URLPattern]:
        info = self.opts.app_label, self.opts.model_name

        def wrap(view: Callable[..., http.HttpResponseBase]) -> Callable[..., Any]:
            # the engine's audit log names the admin's user for every call the view makes
            def acting(request: http.HttpRequest, *args: Any, **kwargs: Any) -> Any:
                with _actor.acting_as(actor_name(request)):
                    return view(request, *args, **kwargs)

            return self.admin_site.admin_view(acting)

        name = "{}_{}_".format(*info)
        change = f"{self.admin_site.name}:{name}change"
        return [
            urls.path("", wrap(self.changelist_view), name=f"{name}changelist"),
            urls.path("<path:object_id>/change/", wrap(self.change_view), name=f"{name}change"),
            urls.path("<path:object_id>/", wrap(RedirectView.as_view(pattern_name=change))),
        ]

    def url(self, page: str, object_id: str | None = None, *, model: str | None = None) -> str:
        """This site's ``changelist`` or ``change`` URL of this section (or ``model``'s)."""
        name = f"{self.admin_site.name}:{self.opts.app_label}_{model or self.opts.model_name}"
        args = () if object_id is None else (quote(object_id),)
        return urls.reverse(f"{name}_{page}", args=args)

    # -- the engine --------------------------------------------------------------------------

    def client(self) -> Client:
        """The project's client (``settings.STEPLINE``)."""
        return _runtime.get_client()

    def catalog(self) -> _catalog.Catalog:
        """The engine's lists, read through the project's client."""
        return _catalog.Catalog(self.client().connection)

    def log(self, request: http.HttpRequest, object_id: str, message: str, *, model: Any) -> None:
        """Record an action in the admin's history (``LogEntry``, "Recent actions")."""
        self.log_change(request, model(id=object_id), message)

    def apply(
        self,
        request: http.HttpRequest,
        ids: Sequence[str],
        act: Callable[[str], Done],
        *,
        model: type[models.Model],
    ) -> None:
        """Run ``act`` on each id; one message for what worked and one per failure.

        ``act`` says what it did (for the message and the admin's history) or raises a
        ``ManagementError`` (the engine refused: a live run to replay, an unknown id).
        """
        done: list[str] = []
        for object_id in ids:
            try:
                what = act(object_id).message
            except _runs.ManagementError as exc:
                said = str(exc)
                messages.error(request, said if object_id in said else f"{object_id}: {said}")
                continue
            self.log(request, object_id, what, model=model)
            done.append(what)
        if done:
            messages.success(request, "; ".join(done))

    # -- rendering -----------------------------------------------------------------------------

    def page(
        self,
        request: http.HttpRequest,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
    ) -> TemplateResponse:
        """A page of this section in the admin's frame (site header, sidebar, breadcrumbs)."""
        request.current_app = self.admin_site.name
        full = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "changelist_url": self.url("changelist"),
            "dashboard_url": dashboard_url(),
            **context,
        }
        return TemplateResponse(request, template, full, status=status)

    def changelist(
        self,
        request: http.HttpRequest,
        *,
        columns: Sequence[str],
        rows: Sequence[Row],
        filters: Sequence[listing.Filter] = (),
        search_help: str = "",
        next_cursor: str | None = None,
        error: str | None = None,
        note: str = "",
        title: str | None = None,
    ) -> TemplateResponse:
        """The changelist page: search, filters, rows with checkboxes, actions, next page."""
        params = query(request)
        more = listing.query_string(params, cursor=next_cursor) if next_cursor is not None else None
        context = {
            "title": title or f"Select {self.opts.verbose_name} to view",
            "columns": columns,
            "rows": rows,
            "filters": filters,
            "query": params.get(listing.SEARCH, ""),
            "search_help": search_help,
            "hidden_params": [(k, v) for k, v in params.items() if k not in ("q", "cursor")],
            "engine_actions": self.offered(request),
            "next_url": more,
            "first_url": listing.query_string(params) if params.get(listing.CURSOR) else None,
            "error": error,
            "note": note,
        }
        return self.page(
            request, "stepline/admin/change_list.html", context, status=502 if error else 200
        )

    def selected_action(self, request: http.HttpRequest) -> tuple[Action, list[str]] | None:
        """The changelist action a POST asks for and its ticked ids (403 if not allowed)."""
        name = request.POST.get("action", "")
        action = next((a for a in self.engine_actions if a.name == name), None)
        if action is None:
            messages.warning(request, "No action selected.")
            return None
        self.require(request, action.permission)
        ids = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not ids:
            messages.warning(request, "Items must be selected in order to perform actions on them.")
            return None
        return action, ids
