"""The worker's calls to apps: a request built from a run, sent, watched and decoded.

``Caller.call`` sends one over the engine's driver (HTTP, an app in this process on its
SDK's pool, a Connect worker); ``_flow.onthread`` makes the same calls on the SDK's own
thread with ``prepare_local`` (the request as an object: no JSON, no signature),
``watch`` and ``read``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from stepline._protocol.execution import ExecutionRequest
from stepline._protocol.headers import SERVER_KIND
from stepline.engine._apps.registry import FunctionSpec
from stepline.engine._clock import Clock
from stepline.engine._config import EngineSettings
from stepline.engine._driver import Driver, InProcessDriver
from stepline.engine._model import Job, Run, StepRecord
from stepline.engine._observe import observer as _observer
from stepline.engine._trust import answers
from stepline.engine._wire import request as _request
from stepline.engine._wire import response

if TYPE_CHECKING:
    from stepline._comm.pool import SdkPool

__all__ = ["Caller"]


class Caller:
    """Makes a run's calls to its function's app.

    Args:
        driver: how apps are reached; in production (``settings.mode == "start"``) an
            answer counts only if signed with the engine's key (``_trust.answers``).
        local: the apps served in this process (their sync functions' pools).
    """

    def __init__(
        self,
        driver: Driver,
        *,
        settings: EngineSettings,
        clock: Clock,
        observer: _observer.Observer | None,
        local: InProcessDriver | None = None,
    ) -> None:
        self.driver: Driver = (
            answers.VerifyingDriver(driver, settings.signing_keys, clock)
            if settings.mode == "start"
            else driver
        )
        self.local = local
        self.settings = settings
        self.clock = clock
        self.observer = observer

    async def call(
        self, run: Run, steps: list[StepRecord], job: Job, fn: FunctionSpec
    ) -> response.Outcome:
        """Make ``job``'s call of ``run`` with its ``steps``; the answer as decoded."""
        url, raw, headers = self.prepare(run, steps, job, fn)
        with self.watch(run, job, headers) as call:
            answer = await self.driver.request("POST", url, raw, call.headers, self.timeout(fn))
            return self.read(call, answer)

    def pool(self, fn: FunctionSpec) -> SdkPool | None:
        """The SDK thread pool ``fn``'s calls run on, if it is a sync function served in
        this process (its calls then go on there, ``_flow.onthread``)."""
        return None if self.local is None else self.local.pool(fn.url, fn.function_id)

    def timeout(self, fn: FunctionSpec) -> float:
        """The longest a call of ``fn`` is waited for."""
        return fn.call_timeout or self.settings.call_timeout

    def prepare(
        self, run: Run, steps: list[StepRecord], job: Job, fn: FunctionSpec
    ) -> tuple[str, bytes, Mapping[str, str]]:
        """A call's URL, body and headers."""
        body, compact = _request.built(
            run, steps, job, max_attempts=fn.max_attempts,
            checkpoint=self.settings.checkpointing, endpoint=fn.is_endpoint,
        )  # fmt: skip
        raw, headers = _request.encode(
            body,
            signing_key=self.settings.signing_key,
            now=self.clock.now(),
            server_kind=self.settings.server_kind,
            compact=compact,
        )
        return _request.call_url(fn.url, fn.function_id, job.step_id or "step"), raw, headers

    def prepare_local(
        self, run: Run, steps: list[StepRecord], job: Job, fn: FunctionSpec
    ) -> tuple[str, ExecutionRequest, Mapping[str, str]]:
        """``prepare`` for an app served in this process (``InProcessDriver.call_blocking``):
        the request as an object, unsigned (nothing crosses a network)."""
        call = _request.execution(
            run, steps, job, max_attempts=fn.max_attempts,
            checkpoint=self.settings.checkpointing, endpoint=fn.is_endpoint,
        )  # fmt: skip
        headers = {SERVER_KIND: self.settings.server_kind}
        return _request.call_url(fn.url, fn.function_id, job.step_id or "step"), call, headers

    def watch(
        self, run: Run, job: Job, headers: Mapping[str, str]
    ) -> contextlib.AbstractContextManager[_observer.WatchedCall]:
        """The observer's watch over one call (``Observer.call``)."""
        if self.observer is None:
            return _observer.unwatched(headers)
        return self.observer.call(run, job, headers, self.clock.now())

    def read(self, call: _observer.WatchedCall, answer: response.RawResponse) -> response.Outcome:
        """A call's answer, decoded and within the output limit (noted on ``call``)."""
        call.answered(answer)
        outcome = call.outcome = response.decode(answer, now=self.clock.now())
        limit = self.settings.max_step_output_bytes
        return response.limit_outputs(outcome, limit, answer_bytes=len(answer.body))
