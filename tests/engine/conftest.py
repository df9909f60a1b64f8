"""Engine fixtures: the module-scoped store matrix (``db``, per test, is the root conftest's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.databases import STORES, database


@pytest.fixture(scope="module", params=STORES)
def module_store(request: pytest.FixtureRequest) -> str:
    """The store a module's long-lived engines use; the module's tests run once per store."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_db(module_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database URL for one module-scoped engine on ``module_store``."""
    with database(module_store, tmp_path_factory.mktemp(module_store)) as url:
        yield url
