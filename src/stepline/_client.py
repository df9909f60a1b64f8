"""The client: settings, the function decorator and event sending."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from stepline import _errors, _sender, _settings, _tracing, _transport
from stepline._event import Event
from stepline._function import Function, Handler, Trigger
from stepline._management import RunsMixin
from stepline._options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    FunctionOptions,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
)


class Client(RunsMixin):
    """An app's handle on Stepline: declares functions, sends events, manages runs.

    Share one client per process (it keeps connection pools; they are re-made after a
    fork). ``start``/``get_run``/``list_runs``/``rerun`` talk to the engine's REST API;
    each has a blocking twin ending in ``_sync``.

    Every setting is resolved once, here: an argument wins, then ``STEPLINE_*``
    environment variables, then their ``INNGEST_*`` equivalents, then defaults.

    Args:
        app_id: the app's id; function ids are prefixed with it.
        is_production: ``False`` for dev mode (no signatures, local engine URLs),
            ``True`` for cloud mode; ``None`` reads ``STEPLINE_DEV``/``INNGEST_DEV``.
        signing_key: verifies requests from the engine and authenticates to its API.
        signing_key_fallback: accepted during key rotation.
        event_key: key used to send events.
        api_base_url: engine API origin (registration, large payloads).
        event_api_base_url: event API origin.
        env: environment/branch name sent as ``X-Inngest-Env``.
        serve_origin: public origin of the app, when behind a proxy.
        serve_path: public path of the serve endpoint.
        streaming: ``"force"`` to answer with keepalive streaming where supported.
        thread_pool_max_workers: threads for sync functions under async servers
            (0 runs them inline on the event loop).
        allow_in_band_sync: accept in-band sync requests.
        app_version: optional app version sent at registration.
        logger: logger handed to functions (through ``ctx.logger``).
        tracer_provider: an OpenTelemetry ``TracerProvider`` (``stepline[otel]``): each
            function call and step gets a span continuing the engine's trace. None
            (the default) traces nothing; ``trace.get_tracer_provider()`` uses the global one.
        environ: the environment to read (defaults to ``os.environ``).
    """

    def __init__(
        self,
        app_id: str,
        *,
        is_production: bool | None = None,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        event_key: str | None = None,
        api_base_url: str | None = None,
        event_api_base_url: str | None = None,
        env: str | None = None,
        serve_origin: str | None = None,
        serve_path: str | None = None,
        streaming: Literal["disable", "force"] | None = None,
        thread_pool_max_workers: int | None = None,
        allow_in_band_sync: bool | None = None,
        app_version: str | None = None,
        checkpointing: bool | None = None,
        logger: logging.Logger | None = None,
        tracer_provider: Any = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = _settings.resolve(
            app_id=app_id,
            environ=os.environ if environ is None else environ,
            is_production=is_production,
            signing_key=signing_key,
            signing_key_fallback=signing_key_fallback,
            event_key=event_key,
            api_base_url=api_base_url,
            event_api_base_url=event_api_base_url,
            env=env,
            serve_origin=serve_origin,
            serve_path=serve_path,
            streaming=streaming,
            thread_pool_max_workers=thread_pool_max_workers,
            allow_in_band_sync=allow_in_band_sync,
            app_version=app_version,
            checkpointing=checkpointing,
        )
        self.logger = logger or logging.getLogger("stepline")
        self.tracer_provider = tracer_provider
        self._sync_transport = _transport.SyncTransport()
        self._async_transport = _transport.AsyncTransport()

    @property
    def app_id(self) -> str:
        """The app id."""
        return self.settings.app_id

    def __repr__(self) -> str:
        return f"<stepline.Client app_id={self.app_id!r} mode={self.settings.mode!r}>"

    def function(
        self,
        *,
        id: str,
        trigger: Trigger | None = None,
        triggers: Sequence[Trigger] | None = None,
        name: str | None = None,
        description: str | None = None,
        retries: int | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: Batch | None = None,
        priority: Priority | None = None,
        cancel: Cancel | Sequence[Cancel] | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        timeouts: Timeouts | None = None,
        on_failure: Handler | None = None,
    ) -> Callable[[Handler], Function]:
        """Declare a durable function; invalid options raise ``ConfigError`` right here.

        Example:
            >>> @client.function(id="welcome", trigger=stepline.TriggerEvent(event="user/signup"))
            ... async def welcome(ctx: stepline.Context) -> str: ...
        """
        if (trigger is None) == (triggers is None):
            raise _errors.ConfigError(f'function "{id}": give exactly one of trigger= or triggers=')
        all_triggers = [trigger] if trigger is not None else list(triggers or [])
        options = FunctionOptions.build(
            name=name,
            description=description,
            retries=retries,
            concurrency=concurrency,
            throttle=throttle,
            rate_limit=rate_limit,
            debounce=debounce,
            batch_events=batch_events,
            priority=priority,
            cancel=cancel,
            idempotency=idempotency,
            singleton=singleton,
            timeouts=timeouts,
        )

        def decorate(handler: Handler) -> Function:
            return Function(
                client=self,
                local_id=id,
                handler=handler,
                triggers=all_triggers,
                options=options,
                on_failure=on_failure,
            )

        return decorate

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send one or more events; returns their ids. Retries network errors and 5xx."""
        return await _sender.send_async(
            self._async_transport, self.settings, _listed(events), _tracing.outgoing_headers()
        )

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        """Blocking twin of ``send``."""
        return _sender.send_sync(
            self._sync_transport, self.settings, _listed(events), _tracing.outgoing_headers()
        )

    async def aclose(self) -> None:
        """Close the connections this event loop and blocking calls opened."""
        await self._async_transport.aclose()
        self._sync_transport.close()

    def close(self) -> None:
        """Close the connections of blocking calls (``aclose`` also closes async ones)."""
        self._sync_transport.close()


def _listed(events: Event | Sequence[Event]) -> list[Event]:
    return [events] if isinstance(events, Event) else list(events)
