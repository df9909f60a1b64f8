"""The records' hand-written shallow copies (``Run.copy``, ``StepRecord.copy``,
``Job.copy``) carry every field: each is a constructor call listing the fields, cheaper
than ``dataclasses.replace`` on the hot path, and a field added later must not be lost."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from stepline._status import RunStatus
from stepline.engine._model import Job, JobKind, Run, StepRecord, StepStatus


def _distinct(cls: type[Any]) -> Any:
    """An instance whose every field holds an object of its own."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name == "status":
            values[field.name] = RunStatus.RUNNING if cls is Run else StepStatus.COMPLETED
        elif field.name == "kind":
            values[field.name] = JobKind.EXECUTE
        else:
            values[field.name] = [field.name]  # a fresh list: identity tells which it is
    return cls(**values)


@pytest.mark.parametrize("cls", [Run, StepRecord, Job])
def test_a_copy_carries_every_field_and_is_another_record(cls: type[Any]) -> None:
    record = _distinct(cls)
    copy = record.copy()
    assert copy is not record
    for field in dataclasses.fields(cls):
        assert getattr(copy, field.name) is getattr(record, field.name), field.name
