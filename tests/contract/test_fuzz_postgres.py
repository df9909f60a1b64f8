"""REST v1 fuzzed against its OpenAPI document on a live ``stepline start`` over Postgres
(``fuzz_run``: schemathesis' coverage, fuzzing and stateful phases with the bearer key;
its figures are SECURITY.md's, "REST v1 contract")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract import fuzz_run


@pytest.mark.process
@pytest.mark.postgres
# about 50 s alone on a 2-core machine, up to 200 s beside the rest of the suite
@pytest.mark.timeout(480)
def test_every_answer_conforms_to_the_document_on_postgres(tmp_path: Path) -> None:
    fuzz_run.conforms("postgres", tmp_path)
