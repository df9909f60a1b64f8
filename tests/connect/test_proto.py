"""The engine's protobuf codec against Google's (the official worker's ``connect_pb2``).

Every message the gateway reads or writes round-trips both ways; unknown fields are
skipped; malformed bytes of every kind raise ``ProtoError`` (never another exception).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import message as pb_message  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from inngest.connect._internal import connect_pb2 as pb

from stepline._connect import proto

SAMPLES: dict[str, dict[str, Any]] = {
    "ConnectMessage": {"kind": 6, "payload": b"\x00\xff"},
    "StartRequest": {"exclude_gateways": ["a", "b"]},
    "StartResponse": {"connection_id": "c", "gateway_endpoint": "ws://h/x", "session_token": "s"},
    "WorkerConnectRequestData": {
        "connection_id": "c",
        "auth_data": {"session_token": "s", "sync_token": "t"},
        "apps": [{"app_name": "a", "app_version": "", "functions": b"[]"}, {"app_name": "b"}],
        "system_attributes": {"cpu_cores": 8, "mem_bytes": -(2**40), "os": "linux"},
        "started_at": {"seconds": 1_700_000_000, "nanos": 5},
        "max_worker_concurrency": 0,
        "worker_manual_readiness_ack": True,
        "environment": "ünïcode",
    },
    "GatewayConnectionReadyData": {"heartbeat_interval": "10s", "extend_lease_interval": "5s"},
    "GatewayExecutorRequestData": {
        "request_id": "r",
        "app_name": "a",
        "step_id": "",
        "request_payload": b'{"ctx": {}}',
        "lease_id": "l",
    },
    "WorkerRequestAckData": {"request_id": "r", "step_id": "step"},
    "WorkerRequestExtendLeaseData": {"request_id": "r", "lease_id": "l", "run_id": "x"},
    "WorkerRequestExtendLeaseAckData": {"request_id": "r", "new_lease_id": "n"},
    "SDKResponse": {
        "request_id": "r",
        "status": 2,
        "body": b"{}",
        "no_retry": True,
        "retry_after": "3",
        "request_version": 2**32 - 1,
    },
    "WorkerReplyAckData": {"request_id": "r"},
    "FlushResponse": {"request_id": "r"},
    "SystemError": {"code": "c", "data": b"", "message": "m"},
}


def _google(name: str) -> type[pb_message.Message]:
    found: type[pb_message.Message] = getattr(pb, name)
    return found


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_round_trips_with_googles_codec(name: str) -> None:
    ours = proto.encode(name, SAMPLES[name])
    theirs = _google(name)()
    theirs.ParseFromString(ours)
    assert proto.decode(name, theirs.SerializeToString()) == SAMPLES[name]
    assert proto.decode(name, ours) == SAMPLES[name]


def test_optional_fields_keep_their_presence_and_defaults_are_left_out() -> None:
    ack = pb.WorkerRequestExtendLeaseAckData()
    ack.ParseFromString(proto.encode("WorkerRequestExtendLeaseAckData", {"request_id": "r"}))
    assert not ack.HasField("new_lease_id"), "no new lease id: the worker stops the call"
    assert proto.encode("WorkerReplyAckData", {"request_id": ""}) == b""
    assert proto.decode("SDKResponse", b"") == {}


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        b"\x78\x96\x01"
        + b"\x81\x01"
        + b"\x00" * 8
        + b"\x8a\x01\x02hi"
        + b"\x95\x01\x00\x00\x00\x00"
    )
    data = unknown + proto.encode("WorkerReplyAckData", {"request_id": "r"})
    assert proto.decode("WorkerReplyAckData", data) == {"request_id": "r"}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x0a", "truncated varint"),
        (b"\x0a\x05ab", "runs past the end"),
        (b"\x00\x01", "invalid field number 0"),
        (b"\x0b", "unsupported wire type 3"),
        (b"\x0e", "unsupported wire type 6"),
        (b"\x08\x01", "wire type 0, want 2"),
        (b"\x0a\x02\xff\xfe", "not valid UTF-8"),
        (b"\x0a" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x0a" + b"\xff" * 9 + b"\x7f", "larger than 64 bits"),
        (b"\x7a\x05ab", "runs past the end"),
    ],
)
def test_malformed_bytes_are_refused_with_the_reason(data: bytes, why: str) -> None:
    with pytest.raises(proto.ProtoError, match=why):
        proto.decode("WorkerReplyAckData", data)


def test_values_out_of_range_are_refused() -> None:
    too_big = b"\x50" + b"\x80\x80\x80\x80\x10"  # request_version = 2**32
    with pytest.raises(proto.ProtoError, match="out of range for uint32"):
        proto.decode("SDKResponse", too_big)
    with pytest.raises(proto.ProtoError, match="out of range for a 32-bit integer"):
        proto.decode("SystemAttributes", b"\x08\x80\x80\x80\x80\x10")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.binary(max_size=80))
def test_random_bytes_decode_or_raise_proto_error(name: str, data: bytes) -> None:
    try:
        ours = proto.decode(name, data)
    except proto.ProtoError:
        return
    theirs = _google(name)()
    theirs.ParseFromString(data)  # what we accept, Google's codec accepts too
    assert proto.decode(name, theirs.SerializeToString()) == {
        k: v for k, v in ours.items() if v not in (0, False, "", b"", [], {}) or _optional(name, k)
    }


def _optional(name: str, field: str) -> bool:
    return any(f == field and kind.startswith("?") for f, kind in proto.MESSAGES[name].values())
