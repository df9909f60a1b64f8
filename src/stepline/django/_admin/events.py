"""Events in the Django admin: what the engine received, and the runs each one started.

Search takes an event id (that event) or an event name (exact); the name filter offers
the events the functions are triggered by.
"""

from __future__ import annotations

from typing import Any

from django import http
from django.contrib.admin.utils import unquote
from django.utils import timezone

from stepline._api import catalog as _catalog
from stepline._api import runs as _runs
from stepline.django._admin import listing
from stepline.django._admin.base import EngineAdmin, Row, dashboard_url, query
from stepline.django._admin.runs import pretty

__all__ = ["EventAdmin"]

COLUMNS = ("Event", "Name", "Received", "Runs")


class EventAdmin(EngineAdmin):
    """Events, read from the engine."""

    list_per_page = 50

    def changelist_view(
        self, request: http.HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> http.HttpResponse:
        self.require(request)
        params = query(request)
        catalog = self.catalog()
        search = params.get(listing.SEARCH, "").strip()
        try:
            names = sorted(
                {str(t["event"]) for f in catalog.functions() for t in f.triggers if "event" in t}
            )
            found = self._find(catalog, params, search)
        except _runs.ManagementError as exc:
            return self.changelist(request, columns=COLUMNS, rows=[], error=str(exc))
        time_options = [(k, label) for k, (label, _) in listing.TIME_RANGES.items()]
        filters = [
            listing.choices("name", params, "name", [(n, n) for n in names]),
            listing.choices("received", params, "received", time_options),
        ]
        return self.changelist(
            request,
            columns=COLUMNS,
            rows=[self._row(e) for e in found.items],
            filters=filters,
            search_help="An event id, or an event name.",
            next_cursor=found.next_cursor,
        )

    def _find(
        self, catalog: _catalog.Catalog, params: dict[str, str], search: str
    ) -> _catalog.Page[_catalog.EventInfo]:
        since = listing.since(params.get("received"), timezone.now())
        cursor = params.get(listing.CURSOR) or None
        if search:
            try:
                return _catalog.Page((catalog.event(search),))
            except _runs.RunNotFoundError:
                pass  # not an event id: a name
        name = search or params.get("name") or None
        return catalog.events(name=name, since=since, cursor=cursor, limit=self.list_per_page)

    def _row(self, event: _catalog.EventInfo) -> Row:
        runs = self.url("changelist", model="run") + listing.query_string(
            {}, event=event.internal_id
        )
        return Row(
            id=event.internal_id,
            url=self.url("change", event.internal_id),
            first=event.id,
            cells=(event.name, event.received_at, {"text": "Runs", "url": runs}),
        )

    def change_view(
        self,
        request: http.HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> http.HttpResponse:
        self.require(request)
        event_id = unquote(object_id)
        catalog = self.catalog()
        try:
            event = catalog.event(event_id)
            runs, skipped = catalog.event_runs(event.internal_id)
        except _runs.RunNotFoundError:
            raise http.Http404(f"no event {event_id}") from None
        except _runs.ManagementError as exc:
            return self.page(request, "stepline/admin/event.html", {"error": str(exc)}, status=502)
        context = {
            "title": f"Event {event.name}",
            "event": event,
            "data": pretty(event.data),
            "user": pretty(dict(event.user)) if event.user else "",
            "runs": [{"run": r, "url": self.url("change", r.run_id, model="run")} for r in runs],
            "skipped": skipped,
            "runs_url": self.url("changelist", model="run")
            + listing.query_string({}, event=event.internal_id),
            "dashboard_url": dashboard_url(f"events/{event.internal_id}"),
        }
        return self.page(request, "stepline/admin/event.html", context)
