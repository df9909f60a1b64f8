"""The web app that enqueues ``tasks.py``'s Celery work and reads its results from Redis.

uvicorn app:app --port 8000     # from examples/celery_before, beside a worker and beat
"""

from __future__ import annotations

from typing import Annotated, Any

import fastapi
import tasks
from celery.result import AsyncResult

app = fastapi.FastAPI(title="Billing")


@app.post("/customers/{customer}/bill", status_code=202)
def bill(
    customer: str, delay_seconds: Annotated[int, fastapi.Query(ge=0, le=86_400)] = 0
) -> dict[str, str]:
    """Bills a customer, ``delay_seconds`` from now."""
    result = tasks.bill_customer(customer).apply_async(countdown=delay_seconds)
    return {"job_id": result.id}  # the chain's last task: its result is the receipt


@app.post("/reports", status_code=202)
def report_now() -> dict[str, str]:
    """The nightly report, now."""
    return {"job_id": tasks.build_report.delay().id}


@app.get("/jobs/{job_id}")
def job(job_id: str) -> dict[str, Any]:
    """A job's state and result, from the result backend."""
    result = AsyncResult(job_id, app=tasks.app)
    # PENDING also means "no such job": the backend cannot tell them apart
    value = result.result if result.successful() else None
    return {"job_id": job_id, "status": result.status, "result": value}


@app.post("/jobs/{job_id}/revoke")
def revoke(job_id: str) -> dict[str, str]:
    """Asks the workers to skip the job (a task already running goes on)."""
    tasks.app.control.revoke(job_id)
    return {"job_id": job_id, "status": "REVOKED"}
