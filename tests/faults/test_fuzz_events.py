"""Fuzz the event API (``POST /e/{key}`` and ``POST /v1/events``): precise 4xx, never 5xx.

Events are generated field by field (names, data, user, ts, id, v: wrong types, NUL,
lone surrogates, huge and non-finite numbers), in objects and batches, plus raw bodies
that break parsers. Every answer is a 200 with one id per event, each event then
readable through the REST API, or a 4xx naming the problem (a batch's events before its
first invalid one stored, their ids in the 400 and readable). A bystander run in flight
completes unaffected.
"""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests._support.targets import EVENT_KEY, START_MODE, Target, assert_precise, fuzz_target

from . import strategies as s

pytestmark = [pytest.mark.slow]

_names = st.one_of(s.texts, st.sampled_from(["app/signup", "a/b", "x"]), s.json_values)
_events = st.fixed_dictionaries(
    {"name": _names},
    optional={
        "data": st.one_of(s.json_values, st.dictionaries(s.texts, s.json_values, max_size=3)),
        "user": s.json_values,
        "ts": st.one_of(
            s.json_values, st.integers(315_532_800_000, 4_102_444_800_000), st.floats()
        ),
        "id": st.one_of(s.texts, s.json_values),
        "v": st.one_of(s.texts, s.json_values),
    },
)
_bodies = st.one_of(
    _events.map(s.dumps),
    st.lists(_events, max_size=4).map(s.dumps),
    s.json_values.map(s.dumps),
    s.raw_bodies,
)
_seeds = st.one_of(
    st.none(),
    s.header_texts,
    st.sampled_from(["1700000000000,AAAAAAAAAAAAAA==", "-1,AAAAAAAAAAAAAA==", "1,AAAA", ","]),
)


def _post(target: Target, path: str, body: bytes, seed: str | None) -> None:
    headers = {"content-type": "application/json", **target.auth}
    if seed is not None:
        headers["x-inngest-event-id-seed"] = seed
    answer = target.http.post(path, content=body, headers=headers)
    assert_precise(answer, 200, 400, 401, 404, 413)
    if answer.status_code == 400:  # a batch's valid prefix is stored: its ids are readable
        payload = answer.json()
        stored = payload.get("ids") or (payload.get("data") or {}).get("ids") or []
        for event_id in stored:
            assert_precise(target.http.get(f"/v1/events/{event_id}", headers=target.auth), 200)
    if answer.status_code != 200:
        return
    ids = answer.json().get("ids") or answer.json()["data"]["ids"]
    assert ids, answer.text
    shown = target.http.get(f"/v1/events/{ids[0]}", headers=target.auth)
    assert_precise(shown, 200)


def test_event_api_answers_every_body_precisely(db: str) -> None:
    with fuzz_target(db) as target:

        @s.FUZZ
        @given(_bodies, _seeds, s.url_texts)
        def check(body: bytes, seed: str | None, key: str) -> None:
            quoted = urllib.parse.quote(key or "k", safe="")
            _post(target, f"/e/{quoted}", body, seed)

        check()


def test_rest_ingest_and_keyed_event_api_in_start_mode(db: str) -> None:
    with fuzz_target(db, **START_MODE) as target:

        @s.FUZZ
        @given(_bodies, _seeds, st.booleans())
        def check(body: bytes, seed: str | None, rest: bool) -> None:
            path = "/v1/events" if rest else f"/e/{EVENT_KEY}"
            _post(target, path, body, seed)

        check()
