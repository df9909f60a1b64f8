"""Opcodes carried in the ``op`` field of a 206 response."""

from __future__ import annotations

import enum


class Opcode(str, enum.Enum):
    """An op reported by an SDK; the wire uses the string value."""

    NONE = "None"
    STEP = "Step"
    STEP_RUN = "StepRun"
    STEP_ERROR = "StepError"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    RUN_COMPLETE = "RunComplete"
    STEP_FAILED = "StepFailed"
    SYNC_RUN_COMPLETE = "SyncRunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    STEP_NOT_FOUND = "StepNotFound"

    #: the string the wire carries (``value``, as an attribute of each member, set below:
    #: ``value`` goes through the enum's descriptor, two calls, on every step)
    wire: str

    @classmethod
    def parse(cls, value: str) -> Opcode:
        """Parse an opcode case-insensitively, as the Go server does."""
        found = _BY_LOWER.get(value.lower())
        if found is None:
            raise ValueError(f"unknown opcode {value!r}")
        return found


_BY_LOWER = {op.value.lower(): op for op in Opcode}
for _op in Opcode:
    _op.wire = _op.value

#: Ops whose result is known when reported; they may be checkpointed.
SYNC_OPS = frozenset({Opcode.STEP, Opcode.STEP_RUN, Opcode.RUN_COMPLETE, Opcode.STEP_FAILED})


class ParallelMode(str, enum.Enum):
    """How the engine resumes a function after parallel steps end."""

    WAIT = "wait"
    RACE = "race"
