"""``examples/django_ai_approvals``: run as its README says (``manage.py demo``), then used
as a customer and a reviewer would, through Django's own forms and CSRF tokens.

The customer asks for a refund on the desk's page; the run's durable agent (its offline
model) looks the order up and asks to refund it, a tool that needs approval, so the run
waits. The reviewer, the staff user the demo made, logs in to the Django admin, finds the
call in the approvals inbox, approves it with the amount edited, and the customer's page
shows the run completed with the edited refund. Ctrl-C then stops the server.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from tests._support.polling import wait_until
from tests._support.processes import clean_env, free_port, interrupt, spawn, stop, wait_until_up

pytestmark = [pytest.mark.process]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_ai_approvals"
INBOX = "/admin/stepline/approval/"
PASSWORD = "review-s3cret"


def token(page: httpx.Response) -> str:
    """The page's Django CSRF token (its form's ``csrfmiddlewaretoken``)."""
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def test_a_refund_approved_in_the_django_admin_completes_the_run(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = clean_env(DESK_DATA_DIR=str(tmp_path), DESK_PASSWORD=PASSWORD)
    command = [sys.executable, "manage.py", "demo", f"127.0.0.1:{port}", "--noreload"]
    proc = spawn(command, log=log, env=env, cwd=EXAMPLE)
    try:
        wait_until_up(f"{base}/", proc, log=log, timeout=60, what="manage.py demo")
        with (
            httpx.Client(base_url=base, timeout=30) as customer,
            httpx.Client(base_url=base, timeout=30) as reviewer,
        ):
            # the customer asks, with the page's form (Django's CSRF token)
            desk = customer.get("/")
            message = "Please refund order 8: the mugs arrived chipped."
            forged = customer.post("/", data={"message": message})
            assert forged.status_code == 403  # no token: Django's CSRF refuses it
            form = {"message": message, "csrfmiddlewaretoken": token(desk)}
            asked = customer.post("/", data=form)
            assert asked.status_code == 302, asked.text
            run_url = asked.headers["location"]
            run_id = run_url.rsplit("/", 1)[1]
            wait_until(
                lambda: "Waiting for approval" in customer.get(run_url).text,
                timeout=30,
                message=lambda: f"the run to wait for approval:\n{customer.get(run_url).text}",
            )
            assert reviewer.get(run_url).status_code == 404  # not the reviewer's request

            # the reviewer logs in to the admin, with the user the demo made
            assert reviewer.get(INBOX).status_code == 302  # to the login page
            login = reviewer.get("/admin/login/", params={"next": INBOX})
            logged = reviewer.post(
                "/admin/login/",
                data={
                    "username": "reviewer",
                    "password": PASSWORD,
                    "next": INBOX,
                    "csrfmiddlewaretoken": token(login),
                },
            )
            assert (logged.status_code, logged.headers["location"]) == (302, INBOX), logged.text
            inbox = reviewer.get(INBOX)
            assert inbox.status_code == 200
            assert f"/admin/stepline/run/{run_id}/change/" in inbox.text
            link = re.search(rf'href="({INBOX}[^"]+/change/)">refund</a>', inbox.text)
            assert link is not None, inbox.text
            page = reviewer.get(link.group(1))
            assert re.search(r'name="args-cents" value="1800"', page.text)  # the model's
            assert 'name="args-order_id" value="8"' in page.text
            assert "Recorded as django:reviewer." in page.text

            # approved with the amount edited: half of it
            approved = reviewer.post(
                link.group(1),
                data={
                    "_decision": "approve",
                    "args-order_id": "8",
                    "args-cents": "900",
                    "args-reason": message,
                    "csrfmiddlewaretoken": token(page),
                },
            )
            assert (approved.status_code, approved.headers["location"]) == (302, INBOX)
            said = reviewer.get(INBOX).text
            assert f"Approved refund in run {run_id} with edited arguments" in said
            wait_until(
                lambda: 'id="status">Completed<' in customer.get(run_url).text,
                timeout=30,
                message=lambda: f"the run to complete:\n{customer.get(run_url).text}",
            )
            assert "Order 8: refunded 900 cents on order 8" in customer.get(run_url).text
            decided = reviewer.get(link.group(1)).text
            assert "approved by django:reviewer" in decided
        assert interrupt(proc, log=log) == 0
    finally:
        stop(proc)
    said = log.read_text()
    assert "The approvals inbox: http://127.0.0.1:" in said
    assert "Traceback" not in said, said
