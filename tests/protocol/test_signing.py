"""Key hashing, request signatures and bearer-token matching."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json

import pytest

from stepline import _errors
from stepline._protocol import jcs, signing

KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"
FALLBACK = "signkey-test-1a2b3c4d5e6f"
NOW = 1_700_000_000.75
BODY = b'{"ctx":{"attempt":0,"run_id":"01H"},"event":{"data":{"n":1},"name":"x"},"steps":{}}'


# --- key hashing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("signkey-prod-123abc", "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"),
        ("signkey-prod-000000", "709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"),
        ("123abc", "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"),
        (
            "signkey-branch-123ABC",
            "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6",
        ),
    ],
)
def test_hash_signing_key_vectors(key: str, expected: str) -> None:
    assert signing.hash_signing_key(key) == expected


@pytest.mark.parametrize(
    "key", ["signkey-prod-123ab", "signkey-prod-xyz0", "signkey-prod-", "", "12 34", "signkey-1234"]
)
def test_hash_signing_key_rejects_non_hex(key: str) -> None:
    with pytest.raises(_errors.ConfigError, match="even-length hexadecimal"):
        signing.hash_signing_key(key)


def test_hash_event_key_vector() -> None:
    assert (
        signing.hash_event_key("test")
        == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )


def test_strip_key_prefix() -> None:
    assert signing.strip_key_prefix("signkey-prod-abc") == "abc"
    assert signing.strip_key_prefix("signkey-branch_1-abc") == "abc"
    assert signing.strip_key_prefix("abc") == "abc"
    assert signing.strip_key_prefix("xsignkey-prod-abc") == "xsignkey-prod-abc"
    assert signing.KEY_PREFIX.pattern == r"^signkey-\w+-"


def test_bearer_token_is_bare_hash() -> None:
    assert signing.bearer_token("signkey-prod-123abc") == (
        "Bearer 94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"
    )


# --- engine-side bearer matching ----------------------------------------------------

HASH = "94bab7f22b92278ccab46e15da43a9fb8b079c05fa099d4134c6c39bbcee49f6"


@pytest.mark.parametrize(
    ("presented", "configured"),
    [
        ("signkey-prod-123abc", "signkey-prod-123abc"),
        ("123abc", "signkey-prod-123abc"),
        ("signkey-prod-123abc", "123abc"),
        (HASH, "signkey-prod-123abc"),
        (f"signkey-prod-{HASH}", "signkey-prod-123abc"),
        (HASH, "123abc"),
    ],
)
def test_keys_match_accepts_plain_or_hashed(presented: str, configured: str) -> None:
    assert signing.keys_match(presented, configured)


@pytest.mark.parametrize(
    ("presented", "configured"),
    [
        ("123abd", "signkey-prod-123abc"),
        (HASH[:-1] + "0", "signkey-prod-123abc"),
        ("", "signkey-prod-123abc"),
        ("signkey-prod-", "signkey-prod-123abc"),
        ("123abc", ""),
        ("", ""),
        ("undefined", "signkey-prod-123abc"),
        ("ünïcode", "signkey-prod-123abc"),
        # a hash of the hash is not the key
        (hashlib.sha256(bytes.fromhex(HASH)).hexdigest(), "signkey-prod-123abc"),
    ],
)
def test_keys_match_rejects(presented: str, configured: str) -> None:
    assert not signing.keys_match(presented, configured)


def test_keys_match_non_hex_configured_key_matches_plain_only() -> None:
    assert signing.keys_match("not-hex", "not-hex")
    assert not signing.keys_match("other", "not-hex")


# --- sign ---------------------------------------------------------------------------


def test_sign_format_and_mac() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    secret = KEY.removeprefix("signkey-test-").encode()  # the hex text, not decoded
    expected = hmac.new(secret, BODY + b"1700000000", hashlib.sha256).hexdigest()
    assert header == f"t=1700000000&s={expected}"


def test_sign_empty_body_signs_timestamp_only() -> None:
    header = signing.sign(b"", "signkey-prod-00ff", now=42)
    expected = hmac.new(b"00ff", b"42", hashlib.sha256).hexdigest()
    assert header == f"t=42&s={expected}"


def test_sign_ignores_key_prefix() -> None:
    assert signing.sign(BODY, KEY, now=NOW) == signing.sign(
        BODY, KEY.removeprefix("signkey-test-"), now=NOW
    )


# --- verify -------------------------------------------------------------------------


def test_round_trip_returns_primary_key() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    assert signing.verify(BODY, header, [KEY, FALLBACK], now=NOW + 10) == KEY


def test_fallback_key_used_when_primary_fails() -> None:
    header = signing.sign(BODY, FALLBACK, now=NOW)
    assert signing.verify(BODY, header, [KEY, FALLBACK], now=NOW) == FALLBACK


def test_empty_primary_is_skipped() -> None:
    header = signing.sign(BODY, FALLBACK, now=NOW)
    assert signing.verify(BODY, header, ["", FALLBACK], now=NOW) == FALLBACK


def test_empty_body_round_trip() -> None:
    header = signing.sign(b"", KEY, now=NOW)
    assert signing.verify(b"", header, [KEY], now=NOW) == KEY


def test_field_order_does_not_matter() -> None:
    timestamp, mac = signing.sign(BODY, KEY, now=NOW).split("&")
    assert signing.verify(BODY, f"{mac}&{timestamp}", [KEY], now=NOW) == KEY


def test_uppercase_signature_accepted() -> None:
    timestamp, mac = signing.sign(BODY, KEY, now=NOW).split("&")
    upper = "s=" + mac.removeprefix("s=").upper()
    assert upper != mac
    assert signing.verify(BODY, f"{timestamp}&{upper}", [KEY], now=NOW) == KEY


def test_canonicalized_body_accepted() -> None:
    # The server signs the JCS form; a proxy or framework may hand us other bytes.
    value = json.loads(BODY)
    header = signing.sign(jcs.canonicalize(value), KEY, now=NOW)
    pretty = json.dumps(value, indent=4, sort_keys=False).encode()
    assert pretty != jcs.canonicalize(value)
    assert signing.verify(pretty, header, [FALLBACK, KEY], now=NOW) == KEY


def test_tampered_body_rejected() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    tampered = BODY.replace(b'"n":1', b'"n":2')
    with pytest.raises(_errors.SignatureVerificationError, match="does not match"):
        signing.verify(tampered, header, [KEY, FALLBACK], now=NOW)


def test_tampered_non_json_body_rejected() -> None:
    header = signing.sign(b"plain text", KEY, now=NOW)
    with pytest.raises(_errors.SignatureVerificationError, match="does not match"):
        signing.verify(b"plain texT", header, [KEY], now=NOW)


def test_wrong_key_rejected() -> None:
    header = signing.sign(BODY, "signkey-test-deadbeef", now=NOW)
    with pytest.raises(_errors.SignatureVerificationError, match="does not match"):
        signing.verify(BODY, header, [KEY, FALLBACK], now=NOW)


def test_tampered_timestamp_rejected() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    forged = header.replace("t=1700000000", "t=1700000001")
    with pytest.raises(_errors.SignatureVerificationError, match="does not match"):
        signing.verify(BODY, forged, [KEY], now=NOW)


def test_stale_timestamp_rejected() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    # exactly at the edge is still fresh
    assert signing.verify(BODY, header, [KEY], now=1_700_000_000 + 300) == KEY
    with pytest.raises(_errors.SignatureVerificationError, match="too old"):
        signing.verify(BODY, header, [KEY], now=1_700_000_000 + 301)


def test_future_timestamp_rejected() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    assert signing.verify(BODY, header, [KEY], now=1_700_000_000 - 300) == KEY
    with pytest.raises(_errors.SignatureVerificationError, match="in the future"):
        signing.verify(BODY, header, [KEY], now=1_700_000_000 - 301)


def test_custom_max_age() -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    window = datetime.timedelta(seconds=10)
    signed_at = 1_700_000_000  # sign() truncates NOW to whole seconds
    assert signing.verify(BODY, header, [KEY], now=signed_at + 10, max_age=window) == KEY
    with pytest.raises(_errors.SignatureVerificationError, match="too old"):
        signing.verify(BODY, header, [KEY], now=signed_at + 10.5, max_age=window)


def test_default_max_age_is_five_minutes() -> None:
    assert datetime.timedelta(minutes=5) == signing.MAX_SIGNATURE_AGE


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_rejected(header: str | None) -> None:
    with pytest.raises(_errors.SignatureVerificationError, match="missing"):
        signing.verify(BODY, header, [KEY], now=NOW)


GOOD_MAC = "a" * 64


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("garbage", "expected"),
        ("t=1700000000", "both"),
        (f"s={GOOD_MAC}", "both"),
        (f"t=1700000000&s={GOOD_MAC}&t=1700000000", "expected"),
        (f"t=1700000000&&s={GOOD_MAC}", "expected"),
        (f"t=abc&s={GOOD_MAC}", "integer"),
        (f"t=17e8&s={GOOD_MAC}", "integer"),
        (f"t=-1&s={GOOD_MAC}", "integer"),
        (f"t=&s={GOOD_MAC}", "integer"),
        (f"t=1_700_000_000&s={GOOD_MAC}", "integer"),
        ("t=1700000000&s=", "64 hexadecimal"),
        ("t=1700000000&s=xyz", "64 hexadecimal"),
        (f"t=1700000000&s={GOOD_MAC}0", "64 hexadecimal"),
    ],
)
def test_malformed_header_rejected(header: str, reason: str) -> None:
    with pytest.raises(_errors.SignatureVerificationError, match="malformed") as info:
        signing.verify(BODY, header, [KEY], now=1_700_000_000)
    assert reason in str(info.value)


@pytest.mark.parametrize("keys", [[], [""], ["", ""]])
def test_no_key_configured_rejected(keys: list[str]) -> None:
    header = signing.sign(BODY, KEY, now=NOW)
    with pytest.raises(_errors.SignatureVerificationError, match="no signing key"):
        signing.verify(BODY, header, keys, now=NOW)


def test_errors_carry_the_wire_code() -> None:
    with pytest.raises(_errors.SignatureVerificationError) as info:
        signing.verify(BODY, None, [KEY], now=NOW)
    assert info.value.code == "sig_verification_failed"
    assert info.value.status == 401
