"""Runs in the Django admin: the list (filters, search, actions) and a run's page.

Search takes a run id (that run) or an event name (the runs its latest events started).
Actions: cancel (``stepline.cancel_run``), rerun and replay, from a step too
(``stepline.rerun_run``), and a live run's page sends a signal (``stepline.signal_run``);
each is the client's (or its run handle's) own call, recorded in the admin's history.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from django import http
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.utils import timezone

from stepline._api import catalog as _catalog
from stepline._api import runs as _runs
from stepline._api.runs import RunStatus, StepInfo
from stepline.django import models
from stepline.django._admin import listing, signals
from stepline.django._admin.base import Action, Done, EngineAdmin, Row, dashboard_url, query

__all__ = ["RunAdmin", "pretty"]

#: events whose runs one page of an event-name search shows
EVENTS_PER_PAGE = 20
#: what a run id (or its start) looks like: Crockford base32, any case
RUN_ID = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{1,26}")
CANCEL = Action("cancel", "Cancel selected runs", "cancel_run")
RERUN = Action("rerun", "Rerun selected runs", "rerun_run")
REPLAY = Action("replay", "Replay selected runs (ended runs)", "rerun_run")
COLUMNS = ("Run", "Function", "Status", "Created", "Duration", "Trigger event")


def pretty(value: Any) -> str:
    """A value as indented JSON (what the run page shows for outputs and event data)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


class RunAdmin(EngineAdmin):
    """Runs, read from the engine."""

    engine_actions: ClassVar[tuple[Action, ...]] = (CANCEL, RERUN, REPLAY)
    list_per_page = 50  # runs per page (the engine pages with a cursor, not a count)

    # -- the list ------------------------------------------------------------------------------

    def changelist_view(
        self, request: http.HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> http.HttpResponse:
        self.require(request)
        if request.method == "POST":
            picked = self.selected_action(request)
            if picked is not None:
                action, ids = picked
                self.apply(request, ids, self._act(action.name), model=models.Run)
            return http.HttpResponseRedirect(request.get_full_path())
        params = query(request)
        catalog = self.catalog()
        try:
            functions = {f.function_id: f.name for f in catalog.functions()}
            runs, cursor, note = self._find(catalog, params)
        except _runs.ManagementError as exc:
            return self.changelist(request, columns=COLUMNS, rows=[], error=str(exc))
        time_options = [(k, label) for k, (label, _) in listing.TIME_RANGES.items()]
        filters = [
            listing.choices("function", params, "function", sorted(functions.items())),
            listing.choices("status", params, "status", [(s.value, s.value) for s in RunStatus]),
            listing.choices("created", params, "created", time_options),
        ]
        rows = [self._row(run, functions) for run in runs]
        return self.changelist(
            request,
            columns=COLUMNS,
            rows=rows,
            filters=filters,
            search_help="A run id (or its start), or an event name (runs of its latest events).",
            next_cursor=cursor,
            note=note,
        )

    def _find(
        self, catalog: _catalog.Catalog, params: Mapping[str, str]
    ) -> tuple[list[_catalog.ListedRun], str | None, str]:
        """The runs to show, the next page's cursor, and a note on what the list is.

        A search is a run id (or its start), else an event name: the runs that the
        latest ``EVENTS_PER_PAGE`` events of that name started, a page per that many.
        """
        query = _catalog.RunQuery(
            function_id=params.get("function") or None,
            status=listing.statuses(params.get("status")),
            since=listing.since(params.get("created"), timezone.now()),
            event_id=params.get("event") or None,
            cursor=params.get(listing.CURSOR) or None,
            limit=self.list_per_page,
        )
        search = params.get(listing.SEARCH, "").strip()
        if not search:
            page = catalog.runs(query)
            note = f"Runs of event {query.event_id}." if query.event_id else ""
            return list(page.items), page.next_cursor, note
        if RUN_ID.fullmatch(search):
            page = catalog.runs(dataclasses.replace(query, run_id_prefix=search.upper()))
            # an engine without ``?run_id=`` lists every run: keep those that match
            found = [r for r in page.items if r.info.run_id.startswith(search.upper())]
            if found:
                return found, page.next_cursor, f"Runs whose id starts with {search.upper()}."
        try:
            return [_catalog.ListedRun(self.client().get_run_sync(search).describe())], None, ""
        except _runs.RunNotFoundError:
            pass  # not a run id: an event name
        events = catalog.events(
            name=search, since=query.since, cursor=query.cursor, limit=EVENTS_PER_PAGE
        )
        found = [
            _catalog.ListedRun(run, (search,))
            for event in events.items
            for run in catalog.event_runs(event.internal_id)[0]
            if (query.function_id is None or run.function_id == query.function_id)
            and (not query.status or run.status in query.status)
        ]
        note = f"Runs started by the latest {len(events.items)} events named “{search}”."
        return found, events.next_cursor, note if events.items else ""

    def _row(self, listed: _catalog.ListedRun, functions: Mapping[str, str]) -> Row:
        run = listed.info
        event = run.event_ids[0] if run.event_ids else None
        trigger = listed.event_names[0] if listed.event_names else event
        return Row(
            id=run.run_id,
            url=self.url("change", run.run_id),
            first=run.run_id,
            cells=(
                _link(
                    functions.get(run.function_id, run.function_id),
                    listing.query_string({}, function=run.function_id),
                ),
                run.status.value,
                run.created_at,
                listing.duration(run.started_at or run.created_at, run.ended_at),
                _link(trigger or "", self.url("change", event, model="event")) if event else "",
            ),
        )

    def _act(self, name: str, from_step: str | None = None) -> Callable[[str], Done]:
        client = self.client()

        def act(run_id: str) -> Done:
            if name == "cancel":
                status = client.get_run_sync(run_id).cancel()
                return Done(f"Cancelled run {run_id} (now {status.value})")
            if name == "rerun":
                new = client.rerun_sync(run_id).run_id
                return Done(f"Reran run {run_id} as {new}", new)
            new = client.get_run_sync(run_id).replay(from_step=from_step).run_id
            step = f" from step {from_step}" if from_step else ""
            return Done(f"Replayed run {run_id}{step} as {new}", new)

        return act

    # -- a run's page --------------------------------------------------------------------------

    def change_view(
        self,
        request: http.HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> http.HttpResponse:
        self.require(request)
        run_id = unquote(object_id)
        if request.method == "POST":
            if request.POST.get("_action") == "signal":
                return self._signal(request, run_id)
            return self._act_on_page(request, run_id)
        return self._run_page(request, run_id)

    def _run_page(
        self, request: http.HttpRequest, run_id: str, signal_form: signals.SignalForm | None = None
    ) -> http.HttpResponse:
        """The run's page; ``signal_form`` is a bound form to show again with its errors."""
        try:
            detail = self.catalog().run(run_id)
        except _runs.RunNotFoundError:
            raise http.Http404(f"no run {run_id}") from None
        except _runs.ManagementError as exc:
            return self.page(request, "stepline/admin/run.html", {"error": str(exc)}, status=502)
        info = detail.info
        ended = info.status.terminal
        may_rerun = self.may(request, "rerun_run")
        form = signals.SignalForm() if signal_form is None else signal_form
        context = {
            "title": f"Run {run_id}",
            "run": info,
            "detail": detail,
            "function_url": self.url("change", info.function_id, model="function"),
            "function_runs_url": f"{self.url('changelist')}?function={info.function_id}",
            "duration": listing.duration(info.started_at or info.created_at, info.ended_at),
            "output": pretty(info.output) if info.status is RunStatus.COMPLETED else None,
            "steps": [self._step(s) for s in detail.steps],
            "events": [self._event(e) for e in detail.events],
            "related": self._related(detail),
            "attributes": sorted(info.attributes.items()),
            "can_cancel": not ended and self.may(request, "cancel_run"),
            "can_rerun": may_rerun,
            "can_replay": ended and may_rerun,
            "signal_form": form if not ended and self.may(request, signals.PERMISSION) else None,
            "approvals": self._approvals(request, detail),
            "dashboard_url": dashboard_url(f"runs/{run_id}"),
        }
        return self.page(request, "stepline/admin/run.html", context)

    def _approvals(
        self, request: http.HttpRequest, detail: _catalog.RunDetail
    ) -> list[tuple[str, str]]:
        """(what is asked, URL) of the approvals the run waits for, for a user who may see
        them.

        Asked of the engine only when one of its steps waits for a decision (a durable
        agent's ``<agent>:approval:<tool>:<id>`` step, or ``<request>:budget-approval``
        over a token budget); a refusal shows none.
        """
        waits = any(
            s.status == "Waiting"
            and (":approval:" in s.name or s.name.endswith(":budget-approval"))
            for s in detail.steps
        )
        if not waits or not self.may(request, "view_approval"):
            return []
        info = detail.info
        try:
            found, _ = self.client().approvals_sync(function=info.function_id, limit=200)
        except _runs.ManagementError:
            return []
        return [
            (a.subject, self.url("change", a.approval_id, model="approval"))
            for a in found
            if a.run_id == info.run_id
        ]

    def _step(self, step: StepInfo) -> dict[str, Any]:
        error = step.error or {}
        return {
            "step": step,
            "kind": step.kind or step.op,
            "state": step.state(timezone.get_current_timezone()),
            "duration": listing.duration(step.started_at, step.ended_at),
            "error": f"{error.get('name', 'Error')}: {error.get('message', '')}" if error else "",
            "replayable": step.status in ("Completed", "Failed"),
        }

    def _event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        event_id = str(event.get("id", ""))
        return {
            "id": event_id,
            "name": str(event.get("name", "")),
            "url": self.url("change", event_id, model="event") if event_id else None,
            "data": pretty(event.get("data")),
        }

    def _related(self, detail: _catalog.RunDetail) -> list[tuple[str, str, str]]:
        """(label, run id, URL) for the runs this one came from."""
        related = [
            ("Replay of", detail.replay_of),
            ("Parent run", detail.parent_run_id),
        ]
        origin = detail.origin or ""
        if origin.startswith("rerun:"):
            related.append(("Rerun of", origin.split(":", 1)[1]))
        return [(label, rid, self.url("change", rid)) for label, rid in related if rid]

    def _act_on_page(self, request: http.HttpRequest, run_id: str) -> http.HttpResponse:
        name = request.POST.get("_action", "")
        permission = {"cancel": "cancel_run", "rerun": "rerun_run", "replay": "rerun_run"}
        if name not in permission:
            return http.HttpResponseBadRequest("unknown action")
        self.require(request, permission[name])
        from_step = request.POST.get("step") or None if name == "replay" else None
        try:
            done = self._act(name, from_step)(run_id)
        except _runs.ManagementError as exc:
            messages.error(request, str(exc))
            return http.HttpResponseRedirect(request.get_full_path())
        self.log(request, run_id, done.message, model=models.Run)
        messages.success(request, done.message)
        return http.HttpResponseRedirect(self.url("change", done.made or run_id))

    def _signal(self, request: http.HttpRequest, run_id: str) -> http.HttpResponse:
        """Send the form's signal; a bad form or the engine's refusal shows the form again."""
        self.require(request, signals.PERMISSION)
        form = signals.SignalForm(request.POST)
        if form.is_valid():
            try:
                done = signals.send(self.client(), run_id, form)
            except _runs.ManagementError as exc:
                form.add_error(None, f"The engine did not take the signal: {exc}")
            else:
                self.log(request, run_id, done.message, model=models.Run)
                messages.success(request, done.message)
                return http.HttpResponseRedirect(self.url("change", run_id))
        return self._run_page(request, run_id, form)


def _link(text: str, url: str) -> dict[str, str]:
    return {"text": text, "url": url}
