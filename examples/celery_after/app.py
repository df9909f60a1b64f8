"""Billing off Celery: ``examples/celery_before`` on Stepline, with no broker and no worker.

The same behaviour as the Celery app, as durable functions served by this FastAPI app,
with the engine in this process (SQLite) and its dashboard at ``/stepline/``::

    python examples/celery_after/app.py                  # http://127.0.0.1:8000/docs

    curl -X POST 'localhost:8000/customers/ada/bill?delay_seconds=5'   # {"job_id": ...}
    curl -X POST localhost:8000/reports                                # the nightly report, now
    curl localhost:8000/jobs/<job_id>                                  # status and result
    curl -X POST localhost:8000/jobs/<job_id>/revoke                   # cancel it

What each Celery piece became (docs/from-celery.md has the whole table):

* the chain ``fetch_usage | price_usage | charge | send_receipt`` is ``bill-customer``'s
  four steps, in order; each step's result is recorded, so a retry of ``charge`` never
  fetches or prices again;
* ``countdown=`` is a durable ``ctx.step.sleep`` at the start of the run;
* ``autoretry_for`` / ``retry_backoff`` / ``max_retries`` are the function's
  ``retries=3`` (with the engine's backoff), and ``self.retry(countdown=30)`` is
  ``stepline.RetryAfterError(..., 30 s)``;
* the chord ``group(summarize_region...) | combine_report`` is ``ctx.step.parallel`` over
  one ``ctx.step.invoke`` of ``summarize-region`` a region, then the ``combine`` step,
  which gets every summary;
* the beat schedule is ``build-report``'s ``TriggerCron`` (02:00 UTC every night);
* ``AsyncResult(job_id).status / .result`` and ``revoke`` are ``client.get_run(job_id)``'s
  ``describe()`` and ``cancel()``.

Settings: ``PORT`` (8000), ``STEPLINE_DATABASE_URL`` (``.stepline/embedded.db``) and
``BILLING_ENGINE`` (``none``: no embedded engine, as in
``tests/examples/test_celery_after_example.py``, where ``stepline.testing`` is the engine).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from typing import Annotated, Any, Literal

import fastapi
import pydantic
import uvicorn

import stepline
import stepline.fastapi

client = stepline.Client("billing", is_production=False)

REGIONS = ("emea", "amer", "apac")
PRICE_CENTS_PER_UNIT = 12


class GatewayBusyError(Exception):
    """The payment gateway asks us to come back later (an HTTP 429, say)."""


class Gateway:
    """A stand-in for the payment provider's SDK (the tests swap in a flaky one)."""

    def charge(self, customer: str, cents: int) -> str:
        return f"ch_{customer}_{cents}"


gateway = Gateway()


# -- the work itself: plain functions, as the Celery tasks' bodies were ------------------------


def fetch_usage(customer: str) -> dict[str, Any]:
    """The customer's metered usage (an API or a query in a real app)."""
    return {"customer": customer, "units": 10 * len(customer)}


def price_usage(usage: dict[str, Any]) -> dict[str, Any]:
    return {**usage, "cents": usage["units"] * PRICE_CENTS_PER_UNIT}


def charge_invoice(invoice: dict[str, Any]) -> dict[str, Any]:
    """Charges the invoice; a busy gateway is retried no sooner than it asks."""
    try:
        charge_id = gateway.charge(invoice["customer"], invoice["cents"])
    except GatewayBusyError as busy:
        # Celery: raise self.retry(exc=busy, countdown=30)
        raise stepline.RetryAfterError(str(busy), dt.timedelta(seconds=30)) from busy
    return {**invoice, "charge_id": charge_id}


def send_receipt(charge: dict[str, Any]) -> dict[str, Any]:
    return {**charge, "receipt": f"receipt for {charge['charge_id']} sent"}


def summarize(region: str) -> dict[str, Any]:
    return {"region": region, "invoices": len(region) * 7}


def combine(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "regions": [s["region"] for s in summaries],
        "invoices": sum(s["invoices"] for s in summaries),
    }


# -- the durable functions ---------------------------------------------------------------------


class BillRequest(pydantic.BaseModel):
    """What starts a ``bill-customer`` run (a Celery task's arguments, as JSON)."""

    customer: str = pydantic.Field(min_length=1)
    delay_seconds: int = pydantic.Field(default=0, ge=0, le=86_400)


class RegionRequest(pydantic.BaseModel):
    region: str


@client.function(
    id="bill-customer",
    trigger=stepline.TriggerEvent(event="billing/bill.requested"),
    retries=3,  # each step: the first try and up to 3 retries, with backoff
)
async def bill_customer(ctx: stepline.Context) -> dict[str, Any]:
    """The chain fetch -> price -> charge -> receipt, after an optional countdown."""
    request = ctx.event.data_as(BillRequest)
    if request.delay_seconds:
        await ctx.step.sleep("countdown", dt.timedelta(seconds=request.delay_seconds))
    usage = await ctx.step.run("fetch-usage", fetch_usage, request.customer)
    invoice = await ctx.step.run("price-usage", price_usage, usage)
    charge = await ctx.step.run("charge", charge_invoice, invoice)
    receipt: dict[str, Any] = await ctx.step.run("send-receipt", send_receipt, charge)
    return receipt


@client.function(
    id="summarize-region", trigger=stepline.TriggerEvent(event="billing/region.summarize")
)
async def summarize_region(ctx: stepline.Context) -> dict[str, Any]:
    """One member of the group: a function of its own, so it has its own retries and runs."""
    region = ctx.event.data_as(RegionRequest).region
    summary: dict[str, Any] = await ctx.step.run("summarize", summarize, region)
    return summary


@client.function(
    id="build-report",
    triggers=[
        stepline.TriggerCron(cron="0 2 * * *", timezone="UTC"),  # the beat schedule
        stepline.TriggerEvent(event="billing/report.requested"),  # and on demand
    ],
)
async def build_report(ctx: stepline.Context) -> dict[str, Any]:
    """The chord: every region summarized in parallel, then one step gets all of them."""
    summaries = await ctx.step.parallel(
        [
            functools.partial(
                ctx.step.invoke,
                f"summarize-{region}",
                function=summarize_region,
                data={"region": region},
            )
            for region in REGIONS
        ]
    )
    report: dict[str, Any] = await ctx.step.run("combine", combine, list(summaries))
    return report


FUNCTIONS = [bill_customer, summarize_region, build_report]

# The engine runs in this process; BILLING_ENGINE=none serves the functions at /api/inngest
# for an engine elsewhere (`stepline dev`, or stepline.testing's TestEnv in tests).
ENGINE: Literal["embedded"] | None = (
    None if os.environ.get("BILLING_ENGINE") == "none" else "embedded"
)
app = fastapi.FastAPI(title="Billing", lifespan=stepline.fastapi.lifespan(client))
stepline.fastapi.serve(app, client, FUNCTIONS, engine=ENGINE)


@app.post("/customers/{customer}/bill", status_code=202)
async def bill(
    customer: str,
    delay_seconds: Annotated[int, fastapi.Query(ge=0, le=86_400)] = 0,
) -> dict[str, str]:
    """Bills a customer, ``delay_seconds`` from now (Celery: ``apply_async(countdown=)``)."""
    request = BillRequest(customer=customer, delay_seconds=delay_seconds)
    handle = await client.start(bill_customer, request.model_dump())
    return {"job_id": handle.run_id}


@app.post("/reports", status_code=202)
async def report_now() -> dict[str, str]:
    """The nightly report, now (Celery: ``build_report.delay()``)."""
    handle = await client.start(build_report)
    return {"job_id": handle.run_id}


@app.get("/jobs/{job_id}")
async def job(job_id: str) -> dict[str, Any]:
    """A job's state and result (Celery: ``AsyncResult(job_id).status`` and ``.result``)."""
    try:
        info = await client.get_run(job_id).describe()
    except stepline.RunNotFoundError:
        raise fastapi.HTTPException(404, f"no job {job_id}") from None
    return {"job_id": job_id, "status": info.status.value, "result": info.output}


@app.post("/jobs/{job_id}/revoke")
async def revoke(job_id: str) -> dict[str, str]:
    """Cancels a job that has not ended (Celery: ``app.control.revoke(job_id)``)."""
    try:
        status = await client.get_run(job_id).cancel()
    except stepline.RunNotFoundError:
        raise fastapi.HTTPException(404, f"no job {job_id}") from None
    return {"job_id": job_id, "status": status.value}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
