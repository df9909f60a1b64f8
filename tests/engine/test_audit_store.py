"""The audit log's table on both stores: entries written and read back newest first, a
page at a time, of one principal; and a database from before the table is migrated."""

from __future__ import annotations

from stepline.engine._store import Store
from stepline.engine._store.audit import AuditEntry

from .test_store_contract import with_store


def _entry(n: int, principal: str, *, via: str | None = None) -> AuditEntry:
    return AuditEntry(
        entry_id=f"01AUDIT{n:04d}",
        at=1_800_000_000.0 + n,
        principal=principal,
        role="operator" if via is None else "admin",
        credential="dashboard session" if via is None else "signing-key bearer",
        via=via,
        action="POST /v1/runs/{run_id}/cancel",
        target=f"run_id=01RUN{n}",
        outcome="ok" if n % 2 else "refused",
        status=200 if n % 2 else 403,
    )


def test_entries_are_read_newest_first_by_page_and_principal(db: str) -> None:
    written = [
        _entry(n, "alice" if n % 3 else "django:bob", via=None if n % 3 else "signing-key")
        for n in range(1, 8)
    ]

    async def scenario(store: Store) -> None:
        for entry in written:
            await store.atomic(lambda tx, e=entry: tx.audit.record(e))
        newest = await store.read(lambda tx: tx.audit.entries(before=None, principal=None, limit=3))
        assert newest == written[::-1][:3]
        older = await store.read(
            lambda tx: tx.audit.entries(before=newest[-1].entry_id, principal=None, limit=10)
        )
        assert older == written[::-1][3:]
        bob = await store.read(
            lambda tx: tx.audit.entries(before=None, principal="django:bob", limit=10)
        )
        assert [e.entry_id for e in bob] == ["01AUDIT0006", "01AUDIT0003"]
        assert {e.via for e in bob} == {"signing-key"}

    with_store(db, scenario)
