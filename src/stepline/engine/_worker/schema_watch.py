"""A running engine's watch on the schema version: past what it knows, it stops leasing.

Another node (a newer release) may migrate the database while this engine runs; from then
on the database may hold state this engine does not read, so it must not run work there.
The watch reads the recorded version every ``schema_check_interval`` seconds, one small
read apart from the lease transactions (which stay as they are: the hot path pays
nothing). Once the version is past the engine's, the worker leases nothing more (calls in
flight finish) and retention stops deleting; the engine says so in one log line, in
``/ready`` (503, with the reason) and in ``stepline_schema_too_new``, and stays up so that
an operator sees why. Nothing undoes it but a restart (on a release that knows the schema,
or on the restored backup).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stepline.engine._store import Store, faults, schema_version

logger = logging.getLogger("stepline.engine")


class SchemaWatch:
    """Reads the recorded schema version now and then; refuses work once it is too new.

    Args:
        store: the engine's store.
        known: the newest version the engine knows (``_store.known_schema``).
        postgres: the store is Postgres (where the version is recorded).
        interval: seconds between two reads.
        refuse: told the refusal's line, once (the worker's ``refuse``).
        on_refused: told too (the metric), or None.
    """

    def __init__(
        self,
        store: Store,
        *,
        known: int,
        postgres: bool,
        interval: float,
        refuse: Callable[[str], None],
        on_refused: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.known = known
        self.postgres = postgres
        self.interval = interval
        self.refuse = refuse
        self.on_refused = on_refused

    async def check(self) -> bool:
        """Read the version once; True (and the worker refusing) when it is too new."""
        found = await self.store.read(
            lambda tx: schema_version.recorded(tx, postgres=self.postgres), small=True
        )
        if found <= self.known:
            return False
        reason = schema_version.refusal(found, self.known)
        logger.error(
            "another node migrated the database past this engine; it leases no more work "
            "(calls in flight finish) and /ready answers 503: %s",
            reason,
        )
        self.refuse(reason)
        if self.on_refused is not None:
            self.on_refused(found, self.known)
        return True

    async def run(self) -> None:
        """Check every ``interval`` seconds of real time until too new or cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self.check():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a busy or unreachable database: the next read tries
                known = isinstance(exc, faults.StoreUnavailable)  # logged once by the guard
                logger.warning("could not read the schema version", exc_info=not known)
