"""A small, strict proto3 wire codec for the Connect protocol's messages. Pure.

The engine and the SDK's worker speak Connect (``connect.proto`` of Inngest's SDKs) without Google's
``protobuf`` package: each message is a table of fields (number, name, kind), decoded
into a ``dict`` and encoded from one. Decoding is strict where malformed input could hide
(a truncated varint or length, a varint of more than 10 bytes, a field number 0, a
group, a known field sent with the wrong wire type, text that is not UTF-8, a value out
of its type's range) and lenient where proto3 is (unknown fields of any valid wire type
are skipped, a repeated scalar field's last value wins). A field absent from the input is
absent from the ``dict``: callers read it with ``.get(name, default)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MESSAGES", "ProtoError", "decode", "encode"]

#: The deepest nesting of messages decoded (connect.proto needs 2).
MAX_DEPTH = 8
_U64 = (1 << 64) - 1
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5


class ProtoError(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


# kinds: "string", "bytes", "bool", "uint32", "int32", "int64", "enum", a message's name;
# a leading "*" marks a repeated field, a leading "?" a proto3 ``optional`` one
_Field = tuple[str, str]
MESSAGES: dict[str, dict[int, _Field]] = {
    "ConnectMessage": {1: ("kind", "enum"), 2: ("payload", "bytes")},
    "StartRequest": {1: ("exclude_gateways", "*string")},
    "StartResponse": {
        1: ("connection_id", "string"),
        2: ("gateway_endpoint", "string"),
        3: ("gateway_group", "string"),
        4: ("session_token", "string"),
        5: ("sync_token", "string"),
    },
    "AuthData": {1: ("session_token", "string"), 2: ("sync_token", "string")},
    "AppConfiguration": {
        1: ("app_name", "string"),
        2: ("app_version", "?string"),
        4: ("functions", "bytes"),
    },
    "SystemAttributes": {1: ("cpu_cores", "int32"), 2: ("mem_bytes", "int64"), 3: ("os", "string")},
    "Timestamp": {1: ("seconds", "int64"), 2: ("nanos", "int32")},
    "WorkerConnectRequestData": {
        1: ("connection_id", "string"),
        2: ("instance_id", "string"),
        3: ("auth_data", "AuthData"),
        4: ("capabilities", "bytes"),
        5: ("apps", "*AppConfiguration"),
        6: ("worker_manual_readiness_ack", "bool"),
        7: ("system_attributes", "SystemAttributes"),
        8: ("environment", "?string"),
        9: ("framework", "string"),
        10: ("platform", "?string"),
        11: ("sdk_version", "string"),
        12: ("sdk_language", "string"),
        13: ("started_at", "Timestamp"),
        14: ("max_worker_concurrency", "?int64"),
    },
    "GatewayConnectionReadyData": {
        1: ("heartbeat_interval", "string"),
        2: ("extend_lease_interval", "string"),
    },
    "GatewayExecutorRequestData": {
        1: ("request_id", "string"),
        2: ("account_id", "string"),
        3: ("env_id", "string"),
        4: ("app_id", "string"),
        5: ("app_name", "string"),
        6: ("function_id", "string"),
        7: ("function_slug", "string"),
        8: ("step_id", "?string"),
        9: ("request_payload", "bytes"),
        10: ("system_trace_ctx", "bytes"),
        11: ("user_trace_ctx", "bytes"),
        12: ("run_id", "string"),
        13: ("lease_id", "string"),
        14: ("job_id", "string"),
        # Stepline's own: the engine's X-Inngest-Signature of request_payload (start mode),
        # which Stepline's worker checks as serve() checks a POST; other workers skip it
        1000: ("signature", "?string"),
    },
    "WorkerRequestAckData": {
        1: ("request_id", "string"),
        2: ("account_id", "string"),
        3: ("env_id", "string"),
        4: ("app_id", "string"),
        5: ("function_slug", "string"),
        6: ("step_id", "?string"),
        7: ("system_trace_ctx", "bytes"),
        8: ("user_trace_ctx", "bytes"),
        9: ("run_id", "string"),
    },
    "WorkerRequestExtendLeaseData": {
        1: ("request_id", "string"),
        2: ("account_id", "string"),
        3: ("env_id", "string"),
        4: ("app_id", "string"),
        5: ("function_slug", "string"),
        6: ("step_id", "?string"),
        7: ("system_trace_ctx", "bytes"),
        8: ("user_trace_ctx", "bytes"),
        9: ("run_id", "string"),
        10: ("lease_id", "string"),
    },
    "WorkerRequestExtendLeaseAckData": {
        1: ("request_id", "string"),
        2: ("account_id", "string"),
        3: ("env_id", "string"),
        4: ("app_id", "string"),
        5: ("function_slug", "string"),
        6: ("new_lease_id", "?string"),
    },
    "SDKResponse": {
        1: ("request_id", "string"),
        2: ("account_id", "string"),
        3: ("env_id", "string"),
        4: ("app_id", "string"),
        5: ("status", "enum"),
        6: ("body", "bytes"),
        7: ("no_retry", "bool"),
        8: ("retry_after", "?string"),
        9: ("sdk_version", "string"),
        10: ("request_version", "uint32"),
        11: ("system_trace_ctx", "bytes"),
        12: ("user_trace_ctx", "bytes"),
        13: ("run_id", "string"),
    },
    "WorkerReplyAckData": {1: ("request_id", "string")},
    "FlushResponse": {1: ("request_id", "string")},
    "SystemError": {1: ("code", "string"), 2: ("data", "?bytes"), 3: ("message", "string")},
}
_SCALAR_WIRE = {"string": _LEN, "bytes": _LEN, "bool": _VARINT, "uint32": _VARINT}
_SIGNED = {"int32": 32, "int64": 64, "enum": 32}
_NAMES = {
    name: {f[0]: (number, f[1]) for number, f in fields.items()}
    for name, fields in MESSAGES.items()
}


def _base(kind: str) -> str:
    return kind.lstrip("*?")


def _wire_type(kind: str) -> int:
    base = _base(kind)
    return _SCALAR_WIRE.get(base, _VARINT if base in _SIGNED else _LEN)


# -- decoding ------------------------------------------------------------------------------


def decode(message: str, data: bytes, *, _depth: int = 0) -> dict[str, Any]:
    """Decode ``data`` as ``message`` (a name in ``MESSAGES``).

    Raises:
        ProtoError: the bytes are malformed, or a known field has the wrong type.
    """
    if _depth > MAX_DEPTH:
        raise ProtoError(f"{message}: messages nested more than {MAX_DEPTH} deep")
    fields = MESSAGES[message]
    out: dict[str, Any] = {}
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise ProtoError(f"{message}: invalid field number {number}")
        if wire in (_SGROUP, _EGROUP) or wire > _I32:
            raise ProtoError(f"{message}: field {number} has unsupported wire type {wire}")
        field = fields.get(number)
        if field is None:  # unknown: skipped, as proto3 does
            pos = _skip(view, pos, wire, message, number)
            continue
        name, kind = field
        if wire != _wire_type(kind):
            raise ProtoError(f"{message}.{name}: wire type {wire}, want {_wire_type(kind)}")
        value, pos = _value(view, pos, _base(kind), f"{message}.{name}", _depth)
        if kind.startswith("*"):
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _value(view: memoryview, pos: int, base: str, where: str, depth: int) -> tuple[Any, int]:
    if base in ("bool", "uint32") or base in _SIGNED:
        raw, pos = _varint(view, pos)
        if base == "bool":
            return raw != 0, pos
        if base == "uint32":
            if raw > 0xFFFFFFFF:
                raise ProtoError(f"{where}: {raw} is out of range for uint32")
            return raw, pos
        bits = _SIGNED[base]
        signed = raw - (1 << 64) if raw >> 63 else raw
        if not -(1 << (bits - 1)) <= signed < 1 << (bits - 1):
            raise ProtoError(f"{where}: {signed} is out of range for a {bits}-bit integer")
        return signed, pos
    length, pos = _varint(view, pos)
    if length > len(view) - pos:
        raise ProtoError(f"{where}: length {length} runs past the end of the message")
    chunk = bytes(view[pos : pos + length])
    pos += length
    if base == "bytes":
        return chunk, pos
    if base == "string":
        try:
            return chunk.decode("utf-8"), pos
        except UnicodeDecodeError:
            raise ProtoError(f"{where}: a string that is not valid UTF-8") from None
    return decode(base, chunk, _depth=depth + 1), pos


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    for index in range(10):
        if pos + index >= len(view):
            raise ProtoError("truncated varint")
        byte = view[pos + index]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > _U64:
                raise ProtoError("varint larger than 64 bits")
            return result, pos + index + 1
        shift += 7
    raise ProtoError("varint longer than 10 bytes")


def _skip(view: memoryview, pos: int, wire: int, message: str, number: int) -> int:
    if wire == _VARINT:
        return _varint(view, pos)[1]
    if wire == _LEN:
        length, pos = _varint(view, pos)
        size = length
    else:
        size = 8 if wire == _I64 else 4
    if size > len(view) - pos:
        raise ProtoError(f"{message}: field {number} runs past the end of the message")
    return pos + size


# -- encoding ------------------------------------------------------------------------------


def encode(message: str, values: Mapping[str, Any]) -> bytes:
    """Encode ``values`` as ``message``; proto3 defaults are left out unless ``optional``.

    Raises:
        KeyError: a name that is not a field of ``message``.
    """
    names = _NAMES[message]
    out = bytearray()
    for name, value in values.items():
        number, kind = names[name]
        if value is None:
            continue
        items = value if kind.startswith("*") else [value]
        for item in items:
            if not kind.startswith(("*", "?")) and _is_default(item):
                continue
            out += _put_varint((number << 3) | _wire_type(kind))
            out += _encoded(_base(kind), item)
    return bytes(out)


def _is_default(value: Any) -> bool:
    return value in (0, False, "", b"") or (isinstance(value, Mapping) and not value)


def _encoded(base: str, value: Any) -> bytes:
    if base in _SIGNED or base in ("bool", "uint32"):
        return _put_varint(int(value) & _U64)
    if base == "string":
        raw = str(value).encode("utf-8")
    elif base == "bytes":
        raw = bytes(value)
    else:
        raw = encode(base, value)
    return _put_varint(len(raw)) + raw


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
