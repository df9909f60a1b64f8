"""Stepline in the Django admin, through ``django.test.Client`` and a real embedded engine.

One project for the module (``django_admin_setup.admin_project``: the admin's apps, a
migrated SQLite database, ``STEPLINE`` with ``"ENGINE": "embedded"``); runs of
``tests/apps/django_admin_functions`` (greet completes, boom fails, hold sleeps) made once
by events, and ``approve`` (``make`` below), which waits for a signal. Each test logs in a
user of its own: a superuser, or staff with only some permissions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections.abc import Iterator

import pytest

import stepline
import stepline.django
from stepline._api import catalog as _catalog
from stepline.django._admin import listing
from tests._support.polling import wait_until
from tests.apps import django_admin_functions

from .django_admin_setup import admin_project, browser, mount_admin
from .django_setup import _django, harness  # noqa: F401 (_django: an autouse fixture)

RUNS = "/admin/stepline/run/"
EVENTS = "/admin/stepline/event/"
FUNCTIONS = "/admin/stepline/function/"


def make() -> list[stepline.Function]:
    """``STEPLINE["FUNCTIONS"]``: the admin's functions and ``approve``.

    ``approve`` waits an hour for the signal ``approved`` and returns its data.
    """
    client = stepline.django.get_client()

    @client.function(id="approve", trigger=stepline.TriggerEvent(event="adm/approve"))
    def approve(ctx: stepline.SyncContext) -> object:
        return {"verdict": ctx.step.wait_for_signal("review", signal="approved", timeout="1h")}

    return [*django_admin_functions.functions(client), approve]


@dataclasses.dataclass(frozen=True)
class Made:
    """The module's runs: ``greet`` (Completed), ``boom`` (Failed), ``hold`` (sleeping)."""

    greet: str
    greet_event: str
    boom: str
    hold: str


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    harness().configure()
    tmp = tmp_path_factory.mktemp("admin")
    setting = {
        "APP_ID": "adm",
        "DEV": True,
        "FUNCTIONS": "tests.web.test_django_admin.make",
        "ENGINE": "embedded",
        "DATABASE": str(tmp / "engine.db"),
        "ENGINE_OPTIONS": {"poll_interval": 0.05},
    }
    with admin_project(tmp / "django.db", **setting):
        client = stepline.django.get_client()
        greet_event = send(client, "adm/greet", {"name": "Ada"})
        greet = run_of(client, greet_event)
        assert client.get_run_sync(greet).result(timeout=20) == {"text": "Hello, Ada!"}
        boom = run_of(client, send(client, "adm/boom", {}))
        with pytest.raises(stepline.RunFailedError):
            client.get_run_sync(boom).result(timeout=20)
        hold = run_of(client, send(client, "adm/hold", {}))
        wait_until(lambda: sleeping(client, hold), timeout=20, message="hold to sleep")
        yield Made(greet=greet, greet_event=greet_event, boom=boom, hold=hold)


@pytest.fixture
def made(project: Made) -> Made:
    mount_admin()  # the autouse ``_django`` empties the URL conf after each test
    return project


def send(client: stepline.Client, name: str, data: dict[str, object]) -> str:
    [event_id] = client.send_sync(stepline.Event(name=name, data=data))
    return event_id


def run_of(client: stepline.Client, event_id: str) -> str:
    catalog = _catalog.Catalog(client.connection)
    found: list[str] = []

    def started() -> bool:
        found[:] = [r.run_id for r in catalog.event_runs(event_id)[0]]
        return bool(found)

    wait_until(started, timeout=20, message=f"a run of event {event_id}")
    return found[0]


def sleeping(client: stepline.Client, run_id: str) -> bool:
    return any(s.status == "Sleeping" for s in client.get_run_sync(run_id).steps())


def awaiting_signal(client: stepline.Client) -> str:
    """A new run of ``approve``, once its step waits for the signal."""
    run_id = run_of(client, send(client, "adm/approve", {}))

    def waiting() -> bool:
        return any(s.status == "Waiting" for s in client.get_run_sync(run_id).steps())

    wait_until(waiting, timeout=20, message="the run to wait for its signal")
    return run_id


def listed(page: str) -> list[str]:
    """The ids in a changelist's rows (their checkboxes, or their links when none)."""
    boxes = re.findall(r'name="_selected_action" value="([^"]+)"', page)
    return boxes or re.findall(r'<th class="field-id"><a href="[^"]*">([^<]+)</a>', page)


def text(response: object) -> str:
    return html.unescape(response.content.decode())  # type: ignore[attr-defined]


# -- lists ----------------------------------------------------------------------------------


def test_the_admin_index_shows_the_stepline_sections_to_a_superuser(made: Made) -> None:
    http = browser("root-index", superuser=True)
    page = text(http.get("/admin/"))
    assert "Stepline" in page
    for section in (RUNS, EVENTS, FUNCTIONS):
        assert f'href="{section}"' in page


def test_runs_appear_in_the_list_and_filter_by_function_status_and_time(made: Made) -> None:
    http = browser("root-list", superuser=True)
    response = http.get(RUNS)
    assert response.status_code == 200
    assert {made.greet, made.boom, made.hold} <= set(listed(text(response)))
    assert "admin/css/changelists.css" in text(response)  # Django's own look
    row = re.search(rf'value="{made.greet}".*?</tr>', text(response), re.S)
    assert row is not None
    # the trigger event by name, linked to its page
    assert f'<a href="{EVENTS}{made.greet_event}/change/">adm/greet</a>' in row.group(0)

    by_function = listed(text(http.get(RUNS, {"function": "adm-greet"})))
    assert made.greet in by_function
    assert made.boom not in by_function
    assert made.hold not in by_function

    failed = listed(text(http.get(RUNS, {"status": "Failed"})))
    assert made.boom in failed
    assert made.greet not in failed

    recent = listed(text(http.get(RUNS, {"created": "1h"})))
    assert {made.greet, made.boom, made.hold} <= set(recent)
    page = text(http.get(RUNS, {"status": "Completed", "created": "24h"}))
    assert made.greet in listed(page)
    assert made.boom not in listed(page)
    # the sidebar: each filter's choices, the one in force marked
    assert "By function" in page
    assert "By status" in page
    assert "By created" in page
    assert re.search(r'<li class="selected">\s*<a href="[^"]*">Completed</a>', page)
    assert re.search(r'<li class="selected">\s*<a href="[^"]*">Past 24 hours</a>', page)


def test_the_time_filter_asks_the_engine_for_runs_since_then() -> None:
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    assert listing.since("1h", now) == dt.datetime(2026, 11, 23, 11, 0, tzinfo=dt.timezone.utc)
    assert listing.since("7d", now) == dt.datetime(2026, 11, 16, 12, 0, tzinfo=dt.timezone.utc)
    assert listing.since(None, now) is None
    assert listing.since("1y", now) is None  # a value it does not know filters nothing
    query = _catalog.RunQuery(since=listing.since("1h", now), function_id="adm-greet", limit=5)
    assert query.path() == ("/v1/runs?limit=5&function_id=adm-greet&since=2026-11-23T11%3A00%3A00Z")


def test_a_future_window_lists_nothing(made: Made, monkeypatch: pytest.MonkeyPatch) -> None:
    """The time filter reaches the engine: moved an hour ahead, ``Past hour`` is empty."""
    http = browser("root-time", superuser=True)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    assert listed(text(http.get(RUNS, {"created": "1h"}))) == []
    assert made.greet in listed(text(http.get(RUNS, {"created": "24h"})))


def test_runs_are_paginated_with_a_cursor(made: Made, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib import admin

    from stepline.django import models

    http = browser("root-pages", superuser=True)
    monkeypatch.setattr(admin.site._registry[models.Run], "list_per_page", 2)
    first = text(http.get(RUNS))
    assert len(listed(first)) == 2
    [next_url] = re.findall(r'href="(\?[^"]*cursor=[^"]*)"[^>]*>Next page', first)
    second = text(http.get(RUNS + next_url))
    assert len(listed(second)) >= 1
    assert not set(listed(first)) & set(listed(second))
    assert "First page" in second


def test_search_by_run_id_and_by_event_name(made: Made) -> None:
    http = browser("root-search", superuser=True)
    assert listed(text(http.get(RUNS, {"q": made.boom}))) == [made.boom]
    assert listed(text(http.get(RUNS, {"q": made.boom.lower()}))) == [made.boom]
    started = text(http.get(RUNS, {"q": made.boom[:-3]}))  # the start of an id
    assert made.boom in listed(started)
    assert all(r.startswith(made.boom[:-3]) for r in listed(started))
    by_name = listed(text(http.get(RUNS, {"q": "adm/greet"})))
    assert made.greet in by_name
    assert made.boom not in by_name
    assert listed(text(http.get(RUNS, {"q": "adm/nothing-like-it"}))) == []


# -- a run's page ---------------------------------------------------------------------------


def test_a_completed_run_shows_its_steps_output_and_trigger_event(made: Made) -> None:
    http = browser("root-detail", superuser=True)
    response = http.get(f"{RUNS}{made.greet}/change/")
    assert response.status_code == 200
    page = text(response)
    assert made.greet in page
    assert "Completed" in page
    steps = re.findall(r'<tr class="step-row">\s*<th scope="row">([^<]+)</th>', page)
    assert steps == ["load", "greet"]
    output = re.search(r'id="run-output">.*?<pre class="stepline-json">(.*?)</pre>', page, re.S)
    assert output is not None
    assert '"text": "Hello, Ada!"' in output.group(1)
    events = re.search(r'id="run-events">(.*?)</table>', page, re.S)
    assert events is not None
    assert "adm/greet" in events.group(1)
    assert '"name": "Ada"' in events.group(1)
    assert f"{EVENTS}{made.greet_event}/change/" in events.group(1)
    # links: the function's page and its runs
    assert f"{FUNCTIONS}adm-greet/change/" in page
    assert f"{RUNS}?function=adm-greet" in page


def test_a_failed_run_shows_its_error_and_the_failed_step(made: Made) -> None:
    http = browser("root-failed", superuser=True)
    page = text(http.get(f"{RUNS}{made.boom}/change/"))
    error = re.search(r'id="run-error">(.*?)</fieldset>', page, re.S)
    assert error is not None
    assert "the flux capacitor broke" in error.group(1)
    row = re.search(r'<th scope="row">explode</th>(.*?)</tr>', page, re.S)
    assert row is not None
    assert "Failed" in row.group(1)
    assert "ValueError" in row.group(1)
    assert "Replay from here" in row.group(1)  # an ended run: replay from a step
    # its kind and state in words (``StepInfo.state``), not the op that reported the failure
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells[:2] == ["StepRun", "Failed"], cells


def test_an_unknown_run_is_a_404(made: Made) -> None:
    http = browser("root-404", superuser=True)
    assert http.get(f"{RUNS}01NOSUCHRUN0000000000000000/change/").status_code == 404


# -- actions --------------------------------------------------------------------------------


def history(run_id: str) -> list[str]:
    from django.contrib.admin.models import LogEntry

    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=run_id)]


def test_cancel_from_the_list_cancels_a_sleeping_run_in_the_engine(made: Made) -> None:
    client = stepline.django.get_client()
    run_id = run_of(client, send(client, "adm/hold", {}))
    wait_until(lambda: sleeping(client, run_id), timeout=20, message="the run to sleep")
    http = browser("root-cancel", superuser=True)
    page = text(http.get(RUNS))
    assert '<option value="cancel">Cancel selected runs</option>' in page
    response = http.post(RUNS, {"action": "cancel", "_selected_action": [run_id]}, follow=True)
    assert response.status_code == 200
    assert f"Cancelled run {run_id}" in text(response)
    assert client.get_run_sync(run_id).status() is stepline.RunStatus.CANCELLED
    assert history(run_id) == [f"Cancelled run {run_id} (now Cancelled)"]


def test_cancel_on_the_run_page(made: Made) -> None:
    client = stepline.django.get_client()
    run_id = run_of(client, send(client, "adm/hold", {}))
    wait_until(lambda: sleeping(client, run_id), timeout=20, message="the run to sleep")
    http = browser("root-cancel-page", superuser=True)
    assert 'value="Cancel run"' in text(http.get(f"{RUNS}{run_id}/change/"))
    response = http.post(f"{RUNS}{run_id}/change/", {"_action": "cancel"})
    assert response.status_code == 302
    assert client.get_run_sync(run_id).status() is stepline.RunStatus.CANCELLED
    page = text(http.get(f"{RUNS}{run_id}/change/"))
    assert 'value="Cancel run"' not in page  # ended: nothing left to cancel
    assert 'value="Replay"' in page


def test_rerun_starts_a_new_run_with_the_same_event(made: Made) -> None:
    client = stepline.django.get_client()
    http = browser("root-rerun", superuser=True)
    response = http.post(f"{RUNS}{made.greet}/change/", {"_action": "rerun"})
    assert response.status_code == 302
    new = response["location"].rstrip("/").split("/")[-2]
    assert new != made.greet
    assert client.get_run_sync(new).result(timeout=20) == {"text": "Hello, Ada!"}
    page = text(http.get(response["location"]))
    assert f"Reran run {made.greet} as {new}" in page  # the message, on the new run's page
    assert re.search(rf'Rerun of:</label><div class="readonly"><a href="[^"]+">{made.greet}', page)
    # from the list too: one new run per ticked run
    before = {r.run_id for r in client.list_runs_sync(function="greet", limit=50)[0]}
    listed_response = http.post(
        RUNS, {"action": "rerun", "_selected_action": [made.greet]}, follow=True
    )
    assert "Reran run" in text(listed_response)
    after = {r.run_id for r in client.list_runs_sync(function="greet", limit=50)[0]}
    assert len(after - before) == 1


def test_replay_from_a_step_reuses_the_steps_before_it(made: Made) -> None:
    client = stepline.django.get_client()
    http = browser("root-replay", superuser=True)
    page = text(http.get(f"{RUNS}{made.boom}/change/"))
    [explode] = re.findall(
        r'name="_action" value="replay"><input type="hidden" name="step" value="([^"]+)">', page
    )[1:]
    response = http.post(f"{RUNS}{made.boom}/change/", {"_action": "replay", "step": explode})
    assert response.status_code == 302
    new = response["location"].rstrip("/").split("/")[-2]
    with pytest.raises(stepline.RunFailedError):
        client.get_run_sync(new).result(timeout=20)
    replayed = text(http.get(response["location"]))
    assert re.search(
        rf'Replay of:</label><div class="readonly"><a href="[^"]+">{made.boom}', replayed
    )
    # a live run cannot be replayed: the engine's refusal is the message
    refused = http.post(f"{RUNS}{made.hold}/change/", {"_action": "replay"}, follow=True)
    assert refused.status_code == 200
    assert 'class="error"' in text(refused)


def test_a_signal_from_the_run_page_completes_the_run_with_its_data(made: Made) -> None:
    client = stepline.django.get_client()
    run_id = awaiting_signal(client)
    http = browser("root-signal", superuser=True)
    page = text(http.get(f"{RUNS}{run_id}/change/"))
    assert 'id="run-signal"' in page
    assert "Send a signal" in page
    # a name nothing waits for: the engine's refusal, the form again with what was typed
    refused = http.post(
        f"{RUNS}{run_id}/change/", {"_action": "signal", "signal": "nope", "payload": "1"}
    )
    assert refused.status_code == 200
    form = re.search(r'id="run-signal">(.*?)</form>', text(refused), re.S)
    assert form is not None
    assert "The engine did not take the signal" in form.group(1)
    assert "not waiting for signal 'nope'" in form.group(1)
    assert 'value="nope"' in form.group(1)
    assert history(run_id) == []
    response = http.post(
        f"{RUNS}{run_id}/change/",
        {"_action": "signal", "signal": "approved", "payload": '{"ok": true, "by": "ana"}'},
    )
    assert response.status_code == 302
    assert response["location"] == f"{RUNS}{run_id}/change/"
    result = client.get_run_sync(run_id).result(timeout=20)
    assert result == {"verdict": {"ok": True, "by": "ana"}}
    assert f"Sent signal approved to run {run_id}" in text(http.get(response["location"]))
    assert history(run_id) == [f"Sent signal approved to run {run_id}"]
    # ended: nothing waits any more, no form
    assert 'id="run-signal"' not in text(http.get(f"{RUNS}{run_id}/change/"))


def test_bad_json_data_is_an_error_and_sends_nothing(made: Made) -> None:
    client = stepline.django.get_client()
    run_id = awaiting_signal(client)
    http = browser("root-signal-json", superuser=True)
    for data in ('{"ok": tru', "{'single': 'quotes'}"):
        response = http.post(
            f"{RUNS}{run_id}/change/", {"_action": "signal", "signal": "approved", "payload": data}
        )
        assert response.status_code == 200
        page = text(response)
        assert re.search(r'<ul class="errorlist[^"]*"[^>]*><li>Not valid JSON: [^<]*line 1', page)
        assert "Nothing was sent." in page
        assert data in page  # the input, to correct
    missing = http.post(f"{RUNS}{run_id}/change/", {"_action": "signal", "payload": "1"})
    assert missing.status_code == 200
    assert "This field is required." in text(missing)
    assert history(run_id) == []
    # the wait is untouched: the next signal is the one the step returns
    assert client.get_run_sync(run_id).status() is stepline.RunStatus.RUNNING
    client.get_run_sync(run_id).signal("approved", "later")
    assert client.get_run_sync(run_id).result(timeout=20) == {"verdict": "later"}


def test_the_signal_permission_guards_the_signal_form(made: Made) -> None:
    client = stepline.django.get_client()
    run_id = awaiting_signal(client)
    viewer = browser("staff-signal-view", "view_run", "cancel_run", "rerun_run")
    assert 'id="run-signal"' not in text(viewer.get(f"{RUNS}{run_id}/change/"))
    forbidden = viewer.post(
        f"{RUNS}{run_id}/change/", {"_action": "signal", "signal": "approved", "payload": "1"}
    )
    assert forbidden.status_code == 403
    # a forged POST with bad data is a 403 too: the permission comes first
    bad = viewer.post(f"{RUNS}{run_id}/change/", {"_action": "signal", "payload": "{"})
    assert bad.status_code == 403
    assert client.get_run_sync(run_id).status() is stepline.RunStatus.RUNNING
    assert any(s.status == "Waiting" for s in client.get_run_sync(run_id).steps())
    assert history(run_id) == []
    signaller = browser("staff-signal", "view_run", "signal_run")
    page = text(signaller.get(f"{RUNS}{run_id}/change/"))
    assert 'id="run-signal"' in page
    assert 'value="Cancel run"' not in page
    sent = signaller.post(
        f"{RUNS}{run_id}/change/", {"_action": "signal", "signal": "approved", "payload": "true"}
    )
    assert sent.status_code == 302
    assert client.get_run_sync(run_id).result(timeout=20) == {"verdict": True}


# -- permissions ----------------------------------------------------------------------------


def test_staff_without_permissions_get_403_and_no_section(made: Made) -> None:
    http = browser("staff-none")
    index = text(http.get("/admin/"))
    assert RUNS not in index
    assert FUNCTIONS not in index
    for url in (RUNS, f"{RUNS}{made.greet}/change/", EVENTS, FUNCTIONS):
        assert http.get(url).status_code == 403, url
    assert http.post(RUNS, {"action": "cancel", "_selected_action": [made.hold]}).status_code == 403
    assert stepline.django.get_client().get_run_sync(made.hold).status() is not (
        stepline.RunStatus.CANCELLED
    )


def test_view_permission_shows_runs_but_no_actions(made: Made) -> None:
    http = browser("staff-view", "view_run")
    index = text(http.get("/admin/"))
    assert f'href="{RUNS}"' in index
    assert f'href="{FUNCTIONS}"' not in index
    page = text(http.get(RUNS))
    assert made.greet in listed(page)
    assert 'name="action"' not in page  # no action it may take: no menu, no checkboxes
    detail = text(http.get(f"{RUNS}{made.hold}/change/"))
    assert 'value="Cancel run"' not in detail
    assert 'value="Rerun"' not in detail
    assert http.post(RUNS, {"action": "cancel", "_selected_action": [made.hold]}).status_code == 403
    assert http.post(f"{RUNS}{made.hold}/change/", {"_action": "cancel"}).status_code == 403
    assert http.post(f"{RUNS}{made.greet}/change/", {"_action": "rerun"}).status_code == 403
    assert stepline.django.get_client().get_run_sync(made.hold).status() is not (
        stepline.RunStatus.CANCELLED
    )
    assert http.get(FUNCTIONS).status_code == 403


def test_the_cancel_permission_allows_cancel_and_not_rerun(made: Made) -> None:
    http = browser("staff-cancel", "view_run", "cancel_run")
    page = text(http.get(RUNS))
    assert '<option value="cancel">' in page
    assert '<option value="rerun">' not in page
    assert http.post(RUNS, {"action": "rerun", "_selected_action": [made.greet]}).status_code == 403


# -- events and functions -------------------------------------------------------------------


def test_events_list_search_and_page(made: Made) -> None:
    http = browser("root-events", superuser=True)
    page = text(http.get(EVENTS))
    assert made.greet_event in listed(page)
    assert "By name" in page
    by_name = text(http.get(EVENTS, {"q": "adm/boom"}))
    assert made.greet_event not in listed(by_name)
    assert len(listed(by_name)) == 1
    assert listed(text(http.get(EVENTS, {"q": made.greet_event}))) == [made.greet_event]
    assert made.greet_event in listed(text(http.get(EVENTS, {"name": "adm/greet"})))
    detail = text(http.get(f"{EVENTS}{made.greet_event}/change/"))
    assert "adm/greet" in detail
    assert '"name": "Ada"' in detail
    assert f"{RUNS}{made.greet}/change/" in detail
    # from the event to its runs in the runs list
    assert f"{RUNS}?event={made.greet_event}" in detail
    of_event = listed(text(http.get(RUNS, {"event": made.greet_event})))
    assert made.greet in of_event  # with the reruns of it, if an earlier test made some
    assert made.boom not in of_event


def test_functions_list_and_pause_resume(made: Made) -> None:
    client = stepline.django.get_client()
    http = browser("root-functions", superuser=True)
    page = text(http.get(FUNCTIONS))
    assert {"adm-greet", "adm-hold", "adm-boom"} <= set(listed(page))
    assert "event adm/greet" in page
    response = http.post(
        FUNCTIONS,
        {"action": "pause", "_selected_action": ["adm-greet"], "reason": "maintenance"},
        follow=True,
    )
    assert "Paused adm-greet" in text(response)
    functions = _catalog.Catalog(client.connection).functions()
    [greet] = [f for f in functions if f.function_id == "adm-greet"]
    assert greet.paused is not None
    assert greet.paused["reason"] == "maintenance"
    assert listed(text(http.get(FUNCTIONS, {"paused": "yes"}))) == ["adm-greet"]
    detail = text(http.get(f"{FUNCTIONS}adm-greet/change/"))
    assert "maintenance" in detail
    assert made.greet in detail  # its latest runs
    assert http.post(f"{FUNCTIONS}adm-greet/change/", {"_action": "resume"}).status_code == 302
    functions = _catalog.Catalog(client.connection).functions()
    [greet] = [f for f in functions if f.function_id == "adm-greet"]
    assert greet.paused is None


def test_pausing_needs_the_pause_permission(made: Made) -> None:
    http = browser("staff-functions", "view_function")
    page = text(http.get(FUNCTIONS))
    assert "adm-greet" in listed(page)
    assert 'name="action"' not in page
    forbidden = http.post(FUNCTIONS, {"action": "pause", "_selected_action": ["adm-greet"]})
    assert forbidden.status_code == 403
    assert http.post(f"{FUNCTIONS}adm-greet/change/", {"_action": "pause"}).status_code == 403
    client = stepline.django.get_client()
    functions = _catalog.Catalog(client.connection).functions()
    [greet] = [f for f in functions if f.function_id == "adm-greet"]
    assert greet.paused is None


def test_the_admin_module_and_models_are_pinned(made: Made) -> None:
    from django.contrib.auth.models import Permission

    import stepline.django.admin
    from stepline.django import models

    assert stepline.django.admin.__all__ == [
        "ApprovalAdmin",
        "EventAdmin",
        "FunctionAdmin",
        "RunAdmin",
    ]
    assert models.__all__ == ["Approval", "Event", "Function", "OutboxMessage", "Run"]
    for model in (models.Run, models.Event, models.Function, models.Approval):
        assert not model._meta.managed  # no table: the engine holds them
    codenames = {p.codename for p in Permission.objects.filter(content_type__app_label="stepline")}
    assert {"view_run", "cancel_run", "rerun_run", "signal_run"} <= codenames
    assert {"view_event", "view_function"} <= codenames
    assert "pause_function" in codenames
    assert not {"add_run", "change_run", "delete_run"} & codenames


def test_migrations_are_complete(made: Made) -> None:
    from django.core.management import call_command

    call_command("makemigrations", "stepline", check=True, dry_run=True, verbosity=0)


# -- the list's query strings (pure) --------------------------------------------------------


def test_filter_links_set_or_clear_one_parameter_and_start_at_page_one() -> None:
    params = {"status": "Failed", "cursor": "01ABC", "q": ""}
    assert listing.query_string(params, function="adm-greet") == (
        "?function=adm-greet&status=Failed"
    )
    assert listing.query_string(params, status=None) == "?"
    assert listing.query_string({"status": "Failed"}, cursor="01XYZ") == (
        "?cursor=01XYZ&status=Failed"
    )
    status = listing.choices("status", params, "status", [("Failed", "Failed"), ("Queued", "Q")])
    assert [(c.display, c.query_string, c.selected) for c in status.choices] == [
        ("All", "?", False),
        ("Failed", "?status=Failed", True),
        ("Q", "?status=Queued", False),
    ]
    assert listing.statuses("Failed") == (stepline.RunStatus.FAILED,)
    assert listing.statuses("nonsense") == ()


def test_durations_read_like_a_person_would_say_them() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert listing.duration(start, None) == ""
    assert listing.duration(start, start + dt.timedelta(milliseconds=40)) == "40 ms"
    assert listing.duration(start, start + dt.timedelta(seconds=1.25)) == "1.25 s"
    assert listing.duration(start, start + dt.timedelta(seconds=184)) == "3 min 4 s"
    assert listing.duration(start, start + dt.timedelta(hours=2, minutes=5)) == "2 h 5 min"


def test_the_signal_form_reads_its_data_as_json() -> None:
    from stepline.django._admin import signals

    assert signals.parse_data("") is None
    assert signals.parse_data("  \n") is None  # empty sends null
    assert signals.parse_data(' {"ok": true} ') == {"ok": True}
    assert signals.parse_data('"yes"') == "yes"
    # where: the closing brace, or (Python 3.13+) the trailing comma before it
    where = r"\((line 2, column 1|line 1, column 12)\)"
    with pytest.raises(ValueError, match=rf"Not valid JSON: .*{where}"):
        signals.parse_data('{"ok": true,\n}')
