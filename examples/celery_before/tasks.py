"""Billing on Celery: the tasks, their canvas and the beat schedule (needs a Redis broker).

The app ``examples/celery_after`` rebuilds on Stepline; ``docs/from-celery.md`` walks
through the migration. Run it with a Redis server on localhost::

    pip install 'celery[redis]' fastapi uvicorn
    cd examples/celery_before
    celery -A tasks worker --loglevel=INFO      # runs the tasks
    celery -A tasks beat --loglevel=INFO        # sends build_report at 02:00 UTC
    uvicorn app:app --port 8000                 # the web app that enqueues them
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task, chain, chord, group
from celery.schedules import crontab

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
RESULTS = os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/1")

app = Celery("billing", broker=BROKER, backend=RESULTS)
app.conf.update(
    timezone="UTC",
    task_acks_late=True,  # a worker that dies mid-task leaves it to another worker
    task_reject_on_worker_lost=True,
    result_expires=7 * 24 * 3600,
    beat_schedule={
        "nightly-report": {"task": "tasks.build_report", "schedule": crontab(hour=2, minute=0)},
    },
)

REGIONS = ("emea", "amer", "apac")
PRICE_CENTS_PER_UNIT = 12


class GatewayBusyError(Exception):
    """The payment gateway asks us to come back later (an HTTP 429, say)."""


class Gateway:
    """A stand-in for the payment provider's SDK."""

    def charge(self, customer: str, cents: int) -> str:
        return f"ch_{customer}_{cents}"


gateway = Gateway()


@app.task
def fetch_usage(customer: str) -> dict[str, Any]:
    """The customer's metered usage (an API or a query in a real app)."""
    return {"customer": customer, "units": 10 * len(customer)}


@app.task
def price_usage(usage: dict[str, Any]) -> dict[str, Any]:
    return {**usage, "cents": usage["units"] * PRICE_CENTS_PER_UNIT}


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),  # unreachable gateway: retry with backoff
    retry_backoff=True,
    max_retries=3,
)
def charge_invoice(self: Task, invoice: dict[str, Any]) -> dict[str, Any]:
    """Charges the invoice; a busy gateway is retried no sooner than it asks."""
    try:
        charge_id = gateway.charge(invoice["customer"], invoice["cents"])
    except GatewayBusyError as busy:
        raise self.retry(exc=busy, countdown=30) from busy
    return {**invoice, "charge_id": charge_id}


@app.task
def send_receipt(charge: dict[str, Any]) -> dict[str, Any]:
    return {**charge, "receipt": f"receipt for {charge['charge_id']} sent"}


def bill_customer(customer: str) -> chain:
    """The chain fetch -> price -> charge -> receipt: each task gets the one before's result."""
    return chain(fetch_usage.s(customer), price_usage.s(), charge_invoice.s(), send_receipt.s())


@app.task
def summarize_region(region: str) -> dict[str, Any]:
    return {"region": region, "invoices": len(region) * 7}


@app.task
def combine_report(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The chord's callback: called once with every region's summary."""
    return {
        "regions": [s["region"] for s in summaries],
        "invoices": sum(s["invoices"] for s in summaries),
    }


@app.task
def build_report() -> str:
    """The nightly report: summarize each region in parallel, then combine the summaries."""
    result = chord(group(summarize_region.s(region) for region in REGIONS))(combine_report.s())
    return str(result.id)  # the callback's id: its AsyncResult holds the report
