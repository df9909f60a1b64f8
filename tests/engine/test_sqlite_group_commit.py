"""SQLite group commit: works queued together share one transaction, each in a savepoint,
and one that fails rolls back only its own changes; a work alone needs no savepoint (its
failure rolls back the whole transaction, which holds only its own changes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from stepline.engine import EngineSettings
from stepline.engine._store import Tx, store_for
from tests._support.aio import arun


class Boom(Exception):
    pass


def _write(name: str, *, fail: bool = False) -> Callable[[Tx], str]:
    def work(tx: Tx) -> str:
        tx.attributes.set_attributes("run", {name: "x"})
        if fail:
            raise Boom(name)
        return name

    return work


def test_a_failing_work_alone_keeps_nothing_and_the_next_commits(tmp_path: Path) -> None:
    async def scenario() -> dict[str, dict[str, str]]:
        store = store_for(EngineSettings(database_url=str(tmp_path / "g.db")))
        await store.open()
        try:
            with pytest.raises(Boom):
                await store.atomic(_write("lost", fail=True))
            assert await store.atomic(_write("kept")) == "kept"
            return await store.read(lambda tx: tx.attributes.get_attributes(["run"]))
        finally:
            await store.close()

    assert arun(scenario()) == {"run": {"kept": "x"}}


def test_in_a_group_a_failing_work_rolls_back_only_its_own_changes(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[object], dict[str, dict[str, str]]]:
        store = store_for(EngineSettings(database_url=str(tmp_path / "g.db")))
        await store.open()
        try:
            works = [_write("a"), _write("b", fail=True), _write("c"), _write("d")]
            results = await asyncio.gather(
                *(store.atomic(w) for w in works), return_exceptions=True
            )
            return results, await store.read(lambda tx: tx.attributes.get_attributes(["run"]))
        finally:
            await store.close()

    results, stored = arun(scenario())
    assert results[0] == "a"
    assert isinstance(results[1], Boom)
    assert results[2:] == ["c", "d"]
    assert stored == {"run": {"a": "x", "c": "x", "d": "x"}}
