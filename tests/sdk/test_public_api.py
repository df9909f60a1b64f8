"""The public surface is explicit: this pins it, so changes are deliberate."""

from __future__ import annotations

import types

import stepline
import stepline.flask

EXPECTED = [
    "Approval",
    "ApprovalDecidedError",
    "ApprovalInvalidError",
    "ApprovalNotFoundError",
    "Batch",
    "BodyInvalidError",
    "BulkHandle",
    "BulkInfo",
    "Cancel",
    "Checkpointing",
    "Client",
    "Concurrency",
    "ConfigError",
    "Context",
    "Debounce",
    "EndpointContext",
    "EndpointRequest",
    "EndpointResponse",
    "Event",
    "Function",
    "FunctionHandle",
    "FunctionNotFoundError",
    "ManagementError",
    "NestedStepError",
    "NonDeterminismError",
    "NonRetriableError",
    "NondeterminismPolicy",
    "OutputUnserializableError",
    "ParallelMode",
    "PausedFunction",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "RunCancelledError",
    "RunFailedError",
    "RunHandle",
    "RunInfo",
    "RunNotFoundError",
    "RunNotStartedError",
    "RunStatus",
    "RunTimeoutError",
    "SendEventError",
    "SignalAlreadyReceivedError",
    "SignalNotWaitingError",
    "SignatureVerificationError",
    "Singleton",
    "Step",
    "StepError",
    "StepInfo",
    "StepTimeoutError",
    "SteplineError",
    "StreamMessage",
    "StreamMessageTooLargeError",
    "SyncBulkHandle",
    "SyncContext",
    "SyncEndpointContext",
    "SyncFunctionHandle",
    "SyncRunHandle",
    "SyncStep",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "VersioningPolicy",
    "__version__",
]


def test_all_is_pinned_and_sorted() -> None:
    assert stepline.__all__ == EXPECTED
    assert sorted(stepline.__all__) == stepline.__all__


def test_every_exported_name_exists_and_is_public() -> None:
    for name in stepline.__all__:
        value = getattr(stepline, name)
        if isinstance(value, type):
            # Implementation lives in private modules, re-exported here.
            assert value.__module__.startswith("stepline._"), name


def test_no_private_leaks() -> None:
    public = {name for name in dir(stepline) if not name.startswith("_")}
    # Adapter submodules (stepline.flask, ...) become attributes once imported.
    modules = {n for n in public if isinstance(getattr(stepline, n), types.ModuleType)}
    assert public - modules == set(stepline.__all__) - {"__version__"}


def test_flask_adapter_surface() -> None:
    assert callable(stepline.flask.serve)
    assert stepline.flask.FRAMEWORK == "flask"


def test_connect_worker_surface() -> None:
    import stepline.connect

    assert stepline.connect.__all__ == ["ConnectError", "Worker", "functions_of", "main"]
    for name in stepline.connect.__all__:
        assert getattr(stepline.connect, name).__module__.startswith("stepline._connect."), name
    assert issubclass(stepline.connect.ConnectError, stepline.ConfigError)


def test_ai_surface() -> None:
    import stepline.ai

    assert stepline.ai.__all__ == [
        "ApprovalTimeoutError",
        "DurableAgent",
        "TokenBudget",
        "TokenBudgetExceededError",
        "fold",
    ]
    for name in stepline.ai.__all__:
        assert getattr(stepline.ai, name).__module__.startswith("stepline.ai._"), name
    assert issubclass(stepline.ai.ApprovalTimeoutError, stepline.NonRetriableError)


def test_token_and_conversation_reads() -> None:
    import dataclasses

    import stepline.ai

    fields = [field.name for field in dataclasses.fields(stepline.ai.TokenBudget)]
    assert fields == ["tokens", "key", "period", "name", "on_exceeded"]
    assert callable(stepline.Client.conversation_runs)
    assert callable(stepline.Client.conversation_runs_sync)
    for handle in (
        stepline.RunHandle,
        stepline.SyncRunHandle,
        stepline.FunctionHandle,
        stepline.SyncFunctionHandle,
    ):
        assert callable(handle.tokens), handle
