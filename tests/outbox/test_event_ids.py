"""The seed -> ids algorithm on the SDK's floor: one algorithm for the outbox and the engine."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepline._protocol import event_ids
from stepline.engine import _ids

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def test_the_engine_uses_the_floor_algorithm() -> None:
    assert _ids.seeded is event_ids.seeded
    assert _ids.ulid is event_ids.ulid
    assert _ids.SeedError is event_ids.SeedError


def test_a_fresh_seed_is_ms_and_ten_bytes_and_gives_distinct_ulids() -> None:
    seed = event_ids.new_seed(1_800_000_000_123)
    ms, _, b64 = seed.partition(",")
    assert ms == "1800000000123"
    assert len(base64.b64decode(b64)) == 10
    ids = event_ids.seeded(seed, 3)
    assert len(set(ids)) == 3
    assert all(ULID.match(i) for i in ids)
    assert all(_ids.ms_of(i) == 1_800_000_000_123 for i in ids)
    assert event_ids.seeded(seed, 3) == ids  # the same seed, the same ids
    assert (
        event_ids.new_seed(5, bytes(range(10)))
        == "5," + base64.b64encode(bytes(range(10))).decode()
    )


def test_a_fresh_run_id_is_a_ulid_of_now() -> None:
    run_id = event_ids.new_run_id(1_800_000_000_000)
    assert ULID.match(run_id)
    assert _ids.ms_of(run_id) == 1_800_000_000_000
    assert event_ids.new_run_id() != event_ids.new_run_id()


def test_bad_entropy_is_refused() -> None:
    with pytest.raises(ValueError, match="10 bytes"):
        event_ids.new_seed(1, b"short")
    with pytest.raises(event_ids.SeedError):
        event_ids.seeded("nope", 1)


@pytest.mark.slow
@settings(max_examples=500)
@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_a_ulid_is_its_value_in_crockford_base32_five_bits_a_digit(value: int) -> None:
    text = event_ids._encode(value)
    assert len(text) == 26
    assert set(text) <= set(event_ids.ALPHABET)
    assert (
        sum(event_ids.ALPHABET.index(c) << (5 * i) for i, c in enumerate(reversed(text))) == value
    )


def test_known_ulids() -> None:
    assert event_ids._encode(0) == "0" * 26
    assert event_ids._encode(2**128 - 1) == "7" + "Z" * 25
    assert event_ids.ulid(1469918176385, bytes(10)) == "01ARYZ6S41" + "0" * 16


def test_ids_made_in_one_millisecond_sort_in_the_order_they_were_made() -> None:
    made = [event_ids.ulid(1_700_000_000_000) for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == 1000
    later = event_ids.ulid(1_700_000_000_001)
    assert later > made[-1]
    assert _ids.ms_of(later) == 1_700_000_000_001
    # a seeded or given entropy is used as it is
    assert event_ids.ulid(5, bytes(10)) == event_ids.ulid(5, bytes(10))


@pytest.mark.process
def test_a_forked_child_does_not_count_on_from_its_parents_last_id() -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    ms = 1_700_000_000_123
    parent_last = event_ids.ulid(ms)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id in the same ms
        os.write(write, event_ids.ulid(ms).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_next = os.read(read, 64).decode()
    parent_next = event_ids.ulid(ms)
    assert child_next != parent_next
    assert parent_next > parent_last
