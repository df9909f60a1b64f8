"""The client: settings, the function decorator and event sending."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from typing_extensions import Unpack

from stepline import _settings
from stepline._api import sender
from stepline._api.attributes import AttributesMixin
from stepline._api.bulk import BulkMixin
from stepline._api.management import RunsMixin
from stepline._api.metrics import MetricsMixin
from stepline._api.pause import PauseMixin
from stepline._api.signals import SignalsMixin
from stepline._definition import function as _function
from stepline._definition.function import Function, FunctionOptionArgs, Handler, Trigger
from stepline._event import Event
from stepline._execution import tracing
from stepline._transport import performers


class Client(RunsMixin, PauseMixin, BulkMixin, SignalsMixin, AttributesMixin, MetricsMixin):
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
        checkpointing: run several steps per call when the engine allows it (default
            True: they are committed with the call's answer);
            ``Checkpointing(buffered_steps=1)`` commits each step before the next step's
            code runs (no replay, a step never runs again once its successor started);
            False makes one call per step.
        max_stream_message_bytes: the largest value (as JSON) ``ctx.publish`` and
            ``step.publish`` send on a run's stream (default 1 MiB, the engine's default).
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
        logger: logging.Logger | None = None,
        tracer_provider: Any = None,
        environ: Mapping[str, str] | None = None,
        **settings: Unpack[_settings.ClientSettings],
    ) -> None:
        self.settings = _settings.resolve(
            app_id=app_id, environ=os.environ if environ is None else environ, **settings
        )
        self.logger = logger or logging.getLogger("stepline")
        self.tracer_provider = tracer_provider
        self._sync_transport = performers.SyncTransport()
        self._async_transport = performers.AsyncTransport()

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
        on_failure: Handler | None = None,
        **options: Unpack[FunctionOptionArgs],
    ) -> Callable[[Handler], Function]:
        """Declare a durable function; invalid options raise ``ConfigError`` right here.

        Args:
            id: the function's id within the app.
            trigger: the event or cron that starts it (or ``triggers=``, a list).
            triggers: several triggers.
            on_failure: a handler run once the function has failed for good.
            **options: ``name``, ``description``, ``retries``, ``concurrency``,
                ``throttle``, ``rate_limit``, ``debounce``, ``batch_events``,
                ``priority``, ``cancel``, ``idempotency``, ``singleton``, ``timeouts``,
                ``nondeterminism`` (``"warn"`` or ``"fail"``: what a replay that no
                longer matches the recorded steps does), ``versioning`` (``"pinned"`` or
                ``"latest"``: where runs go once their app version is gone) (see
                ``FunctionOptions``).

        Example:
            >>> @client.function(id="welcome", trigger=stepline.TriggerEvent(event="user/signup"))
            ... async def welcome(ctx: stepline.Context) -> str: ...
        """
        return _function.declare(
            self.app_id, id=id, trigger=trigger, triggers=triggers, on_failure=on_failure, **options
        )

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send one or more events; returns their ids. Retries network errors and 5xx."""
        return await sender.send_async(
            self._async_transport, self.settings, _listed(events), tracing.outgoing_headers()
        )

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        """Blocking twin of ``send``."""
        return sender.send_sync(
            self._sync_transport, self.settings, _listed(events), tracing.outgoing_headers()
        )

    async def aclose(self) -> None:
        """Close the connections this event loop and blocking calls opened."""
        await self._async_transport.aclose()
        self._sync_transport.close()

    def close(self) -> None:
        """Close the connections of blocking calls (``aclose`` also closes async ones)."""
        self._sync_transport.close()


def _listed(events: Event | Sequence[Event]) -> list[Event]:
    """The events as a list; anything else (a dict is the usual slip) is a ``TypeError``."""
    listed: list[object] = [events] if isinstance(events, (Event, Mapping)) else list(events)
    for item in listed:
        if not isinstance(item, Event):
            hint = (
                ' (write stepline.Event(name="app/x", data={...}))'
                if isinstance(item, Mapping)
                else ""
            )
            raise TypeError(f"send() takes stepline.Event objects, got {type(item).__name__}{hint}")
    return [item for item in listed if isinstance(item, Event)]
