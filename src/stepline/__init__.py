"""Stepline: durable, step-based functions for the Python web app you already have.

Declare functions on a ``Client``, serve them from your framework with
``stepline.<framework>.serve(...)``, and trigger them with events.
"""

from stepline._api.approvals import Approval as Approval
from stepline._api.approvals import ApprovalDecidedError as ApprovalDecidedError
from stepline._api.approvals import ApprovalInvalidError as ApprovalInvalidError
from stepline._api.approvals import ApprovalNotFoundError as ApprovalNotFoundError
from stepline._api.bulk import BulkHandle as BulkHandle
from stepline._api.bulk import BulkInfo as BulkInfo
from stepline._api.bulk import SyncBulkHandle as SyncBulkHandle
from stepline._api.management import FunctionHandle as FunctionHandle
from stepline._api.management import RunHandle as RunHandle
from stepline._api.management import SyncFunctionHandle as SyncFunctionHandle
from stepline._api.management import SyncRunHandle as SyncRunHandle
from stepline._api.pause import PausedFunction as PausedFunction
from stepline._api.runs import FunctionNotFoundError as FunctionNotFoundError
from stepline._api.runs import ManagementError as ManagementError
from stepline._api.runs import RunCancelledError as RunCancelledError
from stepline._api.runs import RunFailedError as RunFailedError
from stepline._api.runs import RunInfo as RunInfo
from stepline._api.runs import RunNotFoundError as RunNotFoundError
from stepline._api.runs import RunNotStartedError as RunNotStartedError
from stepline._api.runs import RunStatus as RunStatus
from stepline._api.runs import RunTimeoutError as RunTimeoutError
from stepline._api.runs import StepInfo as StepInfo
from stepline._api.signals import SignalAlreadyReceivedError as SignalAlreadyReceivedError
from stepline._api.signals import SignalNotWaitingError as SignalNotWaitingError
from stepline._api.streams import StreamMessage as StreamMessage
from stepline._client import Client as Client
from stepline._definition.function import Function as Function
from stepline._definition.options import Batch as Batch
from stepline._definition.options import Cancel as Cancel
from stepline._definition.options import Concurrency as Concurrency
from stepline._definition.options import Debounce as Debounce
from stepline._definition.options import NondeterminismPolicy as NondeterminismPolicy
from stepline._definition.options import Priority as Priority
from stepline._definition.options import RateLimit as RateLimit
from stepline._definition.options import Singleton as Singleton
from stepline._definition.options import Throttle as Throttle
from stepline._definition.options import Timeouts as Timeouts
from stepline._definition.options import VersioningPolicy as VersioningPolicy
from stepline._definition.triggers import TriggerCron as TriggerCron
from stepline._definition.triggers import TriggerEvent as TriggerEvent
from stepline._endpoints.context import EndpointContext as EndpointContext
from stepline._endpoints.context import SyncEndpointContext as SyncEndpointContext
from stepline._endpoints.request import EndpointRequest as EndpointRequest
from stepline._endpoints.response import EndpointResponse as EndpointResponse
from stepline._errors import BodyInvalidError as BodyInvalidError
from stepline._errors import ConfigError as ConfigError
from stepline._errors import NestedStepError as NestedStepError
from stepline._errors import NonDeterminismError as NonDeterminismError
from stepline._errors import NonRetriableError as NonRetriableError
from stepline._errors import OutputUnserializableError as OutputUnserializableError
from stepline._errors import RetryAfterError as RetryAfterError
from stepline._errors import SendEventError as SendEventError
from stepline._errors import SignatureVerificationError as SignatureVerificationError
from stepline._errors import StepError as StepError
from stepline._errors import SteplineError as SteplineError
from stepline._errors import StepTimeoutError as StepTimeoutError
from stepline._errors import StreamMessageTooLargeError as StreamMessageTooLargeError
from stepline._event import Event as Event
from stepline._execution.checkpointing import Checkpointing as Checkpointing
from stepline._execution.context import Context as Context
from stepline._execution.context import SyncContext as SyncContext
from stepline._execution.step import Step as Step
from stepline._execution.step import SyncStep as SyncStep
from stepline._identity import VERSION as __version__
from stepline._protocol.opcodes import ParallelMode as ParallelMode

__all__ = [
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
