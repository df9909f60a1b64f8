"""Header names of the wire protocol (lower case, as compared)."""

from __future__ import annotations

AUTHORIZATION = "authorization"
CONTENT_TYPE = "content-type"
ENV = "x-inngest-env"
EVENT_ID_SEED = "x-inngest-event-id-seed"
EXPECTED_SERVER_KIND = "x-inngest-expected-server-kind"
FORCE_STEP_PLAN = "x-inngest-force-step-plan"
FRAMEWORK = "x-inngest-framework"
NO_RETRY = "x-inngest-no-retry"
#: Stepline's own: how a replay diverged from the recorded steps (SDK to engine).
NONDETERMINISM = "x-stepline-nondeterminism"
PLATFORM = "x-inngest-platform"
REQ_VERSION = "x-inngest-req-version"
RETRY_AFTER = "retry-after"
SDK = "x-inngest-sdk"
SDK_HANDLED = "x-inngest-sdk-handled"
SERVER_KIND = "x-inngest-server-kind"
SERVER_TIMING = "server-timing"
SIGNATURE = "x-inngest-signature"
SYNC_KIND = "x-inngest-sync-kind"
USER_AGENT = "user-agent"

JSON = "application/json"

#: The execution version this SDK declares on every response.
REQUEST_VERSION = "2"
