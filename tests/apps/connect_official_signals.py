"""The app of inngest-py's own Connect signal scenarios, as a process.

``python -m tests.apps.connect_official_signals ENGINE_URL APP_ID EVENT [SIGNAL ...]`` serves one
function (``fn``: sleeps 5 s, returns ``"Hello"``; the event's data may name a ``gate`` file
that ends the sleep once it exists, and other ``seconds``) over the official worker
(``inngest.connect``) with ``instance_id`` = ``APP_ID``, and the worker's
``shutdown_signals`` set to the named signals (``SIGUSR1``...; the SDK's default when
none is named). On such a signal the worker must finish its call, close, and the process
exit with status 0, as in inngest-py's ``test_signals.py``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import warnings

import inngest
import pydantic.warnings

with warnings.catch_warnings():  # inngest 0.5.19's class-based pydantic Config
    warnings.filterwarnings("ignore", category=pydantic.warnings.PydanticDeprecatedSince20)
    import inngest.connect

from tests.apps.connect_official_worker import hold


def main() -> None:
    """Serve until one of the shutdown signals, then return once the worker closed."""
    engine_url, app_id, event_name, *names = sys.argv[1:]
    client = inngest.Inngest(
        app_id=app_id,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
    )

    @client.create_function(fn_id="fn", retries=0, trigger=inngest.TriggerEvent(event=event_name))
    async def fn(ctx: inngest.Context) -> str:
        await hold({"seconds": 5, **ctx.event.data})
        return "Hello"

    signals = [signal.Signals[name] for name in names] or None
    conn = inngest.connect.connect([(client, [fn])], instance_id=app_id, shutdown_signals=signals)
    asyncio.run(conn.start())


if __name__ == "__main__":
    main()
