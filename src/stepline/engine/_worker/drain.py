"""A graceful stop's wait: in-flight calls get a grace period to finish and be recorded.

The worker has stopped leasing by then (no new job, no follow-on call, no fan-out taken
on); whatever is still in flight when the grace ends, or when ``halt`` is set (a second
signal), is cancelled by the worker and its lease handed back at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

logger = logging.getLogger("stepline.engine")


async def settle(
    inflight: Mapping[str, asyncio.Task[None]], grace: float, halt: asyncio.Event
) -> bool:
    """Wait until no call is in flight, ``grace`` seconds have passed or ``halt`` is set.

    Args:
        inflight: the worker's running jobs (re-read on every turn: a finishing job
            leaves it).
        grace: the most seconds to wait (0 waits for nothing).
        halt: set to stop waiting at once.

    Returns:
        Whether every call finished in time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    if inflight and grace > 0:
        logger.warning(
            "stopping: letting %d call(s) in flight finish (up to %g s; signal again to "
            "stop at once)",
            len(inflight),
            grace,
        )
    halted = asyncio.ensure_future(halt.wait())
    try:
        while inflight and not halt.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait(
                [*inflight.values(), halted], timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
    finally:
        halted.cancel()
    if inflight:
        logger.warning("stopping: handing back %d call(s) still in flight", len(inflight))
    return not inflight
