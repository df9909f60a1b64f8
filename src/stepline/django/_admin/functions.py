"""Functions in the Django admin: the registered functions, their pause, and their runs.

Pausing and resuming (the changelist's actions and the buttons of a function's page)
need ``stepline.pause_function``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django import http
from django.contrib import messages
from django.contrib.admin.utils import unquote

from stepline._api import catalog as _catalog
from stepline._api import runs as _runs
from stepline.django import models
from stepline.django._admin import listing
from stepline.django._admin.base import Action, Done, EngineAdmin, Row, dashboard_url, query

__all__ = ["FunctionAdmin"]

PAUSE = Action("pause", "Pause selected functions", "pause_function")
RESUME = Action("resume", "Resume selected functions", "pause_function")
COLUMNS = ("Function", "Name", "App", "Triggers", "Paused since", "Runs")
#: the runs a function's page lists
RECENT_RUNS = 10


class FunctionAdmin(EngineAdmin):
    """Functions, read from the engine."""

    engine_actions: ClassVar[tuple[Action, ...]] = (PAUSE, RESUME)

    def changelist_view(
        self, request: http.HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> http.HttpResponse:
        self.require(request)
        if request.method == "POST":
            picked = self.selected_action(request)
            if picked is not None:
                action, ids = picked
                act = self._act(action.name, request.POST.get("reason") or None)
                self.apply(request, ids, act, model=models.Function)
            return http.HttpResponseRedirect(request.get_full_path())
        params = query(request)
        try:
            found = self.catalog().functions()
        except _runs.ManagementError as exc:
            return self.changelist(request, columns=COLUMNS, rows=[], error=str(exc))
        search = params.get(listing.SEARCH, "").strip().lower()
        app = params.get("app") or None
        paused = params.get("paused") or None
        shown = [
            f
            for f in found
            if (not search or search in f.function_id.lower() or search in f.name.lower())
            and (app is None or f.app_id == app)
            and (paused is None or (f.paused is not None) == (paused == "yes"))
        ]
        apps = sorted({f.app_id for f in found})
        filters = [
            listing.choices("app", params, "app", [(a, a) for a in apps]),
            listing.choices("paused", params, "paused", [("yes", "Paused"), ("no", "Running")]),
        ]
        return self.changelist(
            request,
            columns=COLUMNS,
            rows=[self._row(f) for f in shown],
            filters=filters,
            search_help="Part of a function's id or name.",
        )

    def _row(self, function: _catalog.FunctionInfo) -> Row:
        runs = self.url("changelist", model="run") + listing.query_string(
            {}, function=function.function_id
        )
        return Row(
            id=function.function_id,
            url=self.url("change", function.function_id),
            first=function.function_id,
            cells=(
                function.name,
                function.app_id,
                function.trigger_text,
                (function.paused or {}).get("at") or "",
                {"text": "Runs", "url": runs},
            ),
        )

    def _act(self, name: str, reason: str | None) -> Callable[[str], Done]:
        client = self.client()

        def act(function_id: str) -> Done:
            if name == "pause":
                client.get_function_sync(function_id).pause(reason=reason)
                return Done(f"Paused {function_id}")
            was = client.get_function_sync(function_id).resume()
            return Done(f"Resumed {function_id}" if was else f"{function_id} was not paused")

        return act

    def change_view(
        self,
        request: http.HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> http.HttpResponse:
        self.require(request)
        function_id = unquote(object_id)
        if request.method == "POST":
            name = request.POST.get("_action", "")
            if name not in ("pause", "resume"):
                return http.HttpResponseBadRequest("unknown action")
            self.require(request, "pause_function")
            try:
                done = self._act(name, request.POST.get("reason") or None)(function_id)
            except _runs.ManagementError as exc:
                messages.error(request, str(exc))
            else:
                self.log(request, function_id, done.message, model=models.Function)
                messages.success(request, done.message)
            return http.HttpResponseRedirect(request.get_full_path())
        catalog = self.catalog()
        try:
            function = next((f for f in catalog.functions() if f.function_id == function_id), None)
            if function is None:
                raise http.Http404(f"no function {function_id}")
            recent = catalog.runs(_catalog.RunQuery(function_id=function_id, limit=RECENT_RUNS))
        except _runs.ManagementError as exc:
            failed = {"error": str(exc)}
            return self.page(request, "stepline/admin/function.html", failed, status=502)
        runs_url = self.url("changelist", model="run")
        context = {
            "title": f"Function {function.name}",
            "function": function,
            "runs": [
                {"run": r.info, "url": self.url("change", r.info.run_id, model="run")}
                for r in recent.items
            ],
            "runs_url": runs_url + listing.query_string({}, function=function_id),
            "can_pause": self.may(request, "pause_function"),
            "dashboard_url": dashboard_url(f"functions/{function_id}"),
        }
        return self.page(request, "stepline/admin/function.html", context)
