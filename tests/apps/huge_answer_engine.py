"""An engine process that runs one call against a huge answer and reports its peak memory.

``python tests/apps/huge_answer_engine.py DB APP_URL``: registers the app at ``APP_URL``,
warms up with one small run (``sec/warm``), notes the process's peak RSS (``VmHWM``), runs
``sec/go`` (whose answer is huge) and prints one JSON line: the run's status and error name
and the peak before and after, in KiB.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from stepline.engine import Engine, EngineSettings
from tests._support.engines import FAST
from tests._support.polling import await_until
from tests.faults.sec_servers import register_body


def peak_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def one(engine: Engine, name: str) -> Any:
    (event_id,) = await engine.send({"name": name, "data": {}})

    async def started() -> list[Any] | None:
        return [link for link in await engine.event_runs(event_id) if link.run_id] or None

    links = await await_until(started, timeout=5.0, interval=0.01, message="a run to start")
    return await engine.wait_for_run(str(links[0].run_id), timeout=60)


async def main(db: str, app_url: str) -> None:
    engine = Engine(EngineSettings(database_url=db, **FAST))
    await engine.start()
    try:
        body = register_body(app_url, attempts=0)
        body["functions"][0]["triggers"] = [{"event": "sec/warm"}, {"event": "sec/go"}]
        await engine.register(body)
        warm = await one(engine, "sec/warm")
        assert warm.status.value == "Completed", warm
        before = peak_kib()
        run = await one(engine, "sec/go")
        after = peak_kib()
    finally:
        await engine.stop()
    error = json.loads(run.output or "null")
    report = {
        "status": run.status.value,
        "error": error.get("name") if isinstance(error, dict) else None,
        "peak_before_kib": before,
        "peak_after_kib": after,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
