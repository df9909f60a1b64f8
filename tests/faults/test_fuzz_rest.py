"""Fuzz the REST API, the SDK-facing routes and the dashboard of a start-mode engine.

Every route of the table gets generated path ids (unknown, real, NUL, unicode digits),
query values (limits, times, statuses, cursors, waits), bodies and credentials (a valid
bearer most of the time; otherwise a forged one and a forged session cookie). Answers
are 2xx, or 4xx with a JSON ``error`` (HTML and redirects for the dashboard's pages);
never a 5xx. A bystander run in flight completes unaffected; a victim run of the same
function may be cancelled or re-run by the fuzz, never the bystander.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._support.targets import BYSTANDER_EVENT, START_MODE, Target, assert_precise, fuzz_target

from . import strategies as s

pytestmark = [pytest.mark.slow]

_statuses = st.one_of(
    s.url_texts,
    st.lists(st.sampled_from(["running", "COMPLETED", "failed", "Cancelled", "queued", "x"])).map(
        ",".join
    ),
)
_limits = st.one_of(s.url_texts, st.integers(-5, 1000).map(str), st.sampled_from(["²", "1e3"]))
#: a function's metrics: preset windows, custom ones, buckets of every size and shape
_metrics_queries = st.fixed_dictionaries(
    {},
    optional={
        "window": st.one_of(st.sampled_from(["1h", "24h", "7d", "", "2h", "1H"]), s.url_texts),
        "since": s.times,
        "until": s.times,
        "bucket": st.one_of(
            st.sampled_from(["60", "5m", "1d", "0", "-1", "nan", "1e400", "0.5"]), s.url_texts
        ),
    },
)
_waits = st.one_of(
    st.sampled_from(["", "0", "0.01", "-1", "61", "nan", "inf", "1e400", "²", "0x1"]), s.url_texts
)
_queries: dict[str, st.SearchStrategy[Any]] = {
    "/v1/runs": st.fixed_dictionaries(
        {},
        optional={
            "function_id": s.url_texts,
            "status": _statuses,
            "since": s.times,
            "until": s.times,
            "event_id": s.url_texts,
            "cursor": s.url_texts,
            "limit": _limits,
            "version": s.url_texts,
            "run_id": st.one_of(s.url_texts, st.sampled_from(["01", "0" * 26, "0" * 27, "il"])),
            "parent_run_id": s.url_texts,
        },
    ),
    "/v1/events": st.fixed_dictionaries(
        {},
        optional={
            "name": s.url_texts,
            "received_after": s.times,
            "received_before": s.times,
            "cursor": s.url_texts,
            "limit": _limits,
            "expression": st.one_of(
                s.url_texts,
                st.sampled_from(["event.data.n > 1", "event.data.n >", "x == 1", "true", "1/0"]),
            ),
            "scan": _limits,
        },
    ),
}
#: Routes with an id in the path: (method, template); ``{id}`` is filled by the fuzz.
_BY_ID = [
    ("GET", "/v1/runs/{id}"),
    ("GET", "/v1/runs/{id}/steps"),
    ("GET", "/v1/runs/{id}/attempts"),
    ("DELETE", "/v1/runs/{id}"),
    ("POST", "/v1/runs/{id}/cancel"),
    ("POST", "/v1/runs/{id}/rerun"),
    ("GET", "/v1/events/{id}"),
    ("GET", "/v1/events/{id}/runs"),
    ("POST", "/v1/events/{id}/replay"),
    ("GET", "/v0/runs/{id}/batch"),
    ("GET", "/v0/runs/{id}/actions"),
    ("DELETE", "/v0/runs/{id}"),
    ("POST", "/v1/checkpoint/{id}/async"),
    ("POST", "/v1/functions/{id}/runs"),
    ("POST", "/invoke/{id}"),
    ("GET", "/dashboard/{id}"),
    ("GET", "/v1/apps/{id}/versions"),
    ("DELETE", "/v1/apps/{id}/versions/{id}"),
    ("GET", "/v1/apps/{id}/workers"),
    ("GET", "/v1/runs/{id}/stream"),
    ("POST", "/v1/runs/{id}/stream"),
    ("POST", "/v1/functions/{id}/inline"),
    ("POST", "/v1/functions/{id}/pause"),
    ("POST", "/v1/functions/{id}/resume"),
    ("GET", "/v1/functions/{id}/metrics"),
    ("POST", "/v1/runs/{id}/inline/checkpoint"),
    ("POST", "/v1/runs/{id}/inline/answer"),
    ("POST", "/v1/runs/{id}/attributes"),
    ("POST", "/v1/runs/{id}/replay"),
    ("GET", "/v1/bulk/{id}"),
    ("POST", "/v1/bulk/{id}/cancel"),
    ("POST", "/v1/runs/{id}/signals/{id}"),
    ("POST", "/v1/signals/hooks/{id}"),
]
_PLAIN = [
    ("GET", "/v1/functions"),
    ("GET", "/v1/apps"),
    ("POST", "/v1/apps/sync"),
    ("POST", "/v1/outbox/deliveries"),
    ("POST", "/v0/gql"),
    ("GET", "/v1/bulk"),
    ("POST", "/v1/bulk/cancel"),
    ("POST", "/v1/bulk/replay"),
    ("POST", "/v1/signals"),
    ("GET", "/metrics"),
    ("GET", "/dev"),
    ("GET", "/health"),
    ("POST", "/v0/connect/start"),
    ("POST", "/v0/connect/flush"),
    ("GET", "/v1/connect/workers"),
    ("POST", "/v0/connect/forward"),
    ("GET", "/"),
    ("POST", "/login"),
    ("POST", "/logout"),
]
#: run streams: short waits only (a live run's read holds the request that long)
_stream_queries = st.fixed_dictionaries(
    {},
    optional={
        "topic": st.one_of(st.sampled_from(["p", "a/b:c.d-e_f"]), s.url_texts),
        "after": st.one_of(st.integers(-3, 10**20).map(str), s.url_texts),
        "limit": _limits,
        "wait": st.sampled_from(["", "0", "0.01", "-1", "31", "nan", "inf", "²", "x"]),
    },
)
_stream_body = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {"topic": st.one_of(st.just("p"), s.url_texts), "data": s.json_values},
                optional={"id": st.one_of(st.none(), s.texts, s.json_values)},
            ),
            max_size=3,
        )
    }
).map(s.dumps)
_ids = st.one_of(s.url_texts, st.sampled_from(["VICTIM", "VICTIM_EVENT", "bystander-steady"]))
_checkpoint_ops = st.fixed_dictionaries(
    {"op": st.sampled_from(["StepRun", "Step", "StepFailed", "Sleep", "RunComplete", "x"])},
    optional={"id": s.texts, "data": s.json_values, "error": s.json_values},
)
#: durable endpoints' checkpoints and answers: a lease (forged, or a run's) and ops or an answer
_lease_body = st.fixed_dictionaries(
    {"job_id": st.one_of(s.texts, st.just("VICTIM:step:start")), "owner": s.texts},
    optional={
        "steps": st.lists(_checkpoint_ops, max_size=3),
        "status": st.one_of(st.sampled_from([200, 206, 500, 99]), s.json_values),
        "headers": st.one_of(st.just({"x-inngest-sdk": "x"}), s.json_values),
        "body": st.one_of(st.just("[]"), s.texts, s.json_values),
    },
).map(s.dumps)
_any_body = st.one_of(st.none(), s.json_values.map(s.dumps), s.raw_bodies)
#: Bodies shaped for each route that reads one (by a prefix of its path), or anything.
_BODIES = {
    "/v1/functions/": st.fixed_dictionaries(
        {}, optional={"data": s.json_values, "idempotency_key": s.json_values}
    ).map(s.dumps),
    "/v1/checkpoint/": st.fixed_dictionaries(
        {"steps": st.lists(_checkpoint_ops, max_size=3)}, optional={"qi_id": s.json_values}
    ).map(s.dumps),
    # never a host name: nothing may leave the machine (or wait for DNS)
    "/v1/apps/sync": st.fixed_dictionaries(
        {
            "url": st.one_of(
                st.sampled_from(
                    [
                        "http://[::1",
                        "http://[::1]:1/x",
                        "http://127.0.0.1:1/x",
                        "http:///",
                        "https://127.0.0.1:1",
                        "http://\x00/",
                        "http://127.0.0.1:99999/",
                        "ftp://a",
                    ]
                ),
                s.url_texts.map(lambda t: f"http://127.0.0.1:1/{t}"),
                s.url_texts.map(lambda t: f"http://[{t}]/"),
            )
        }
    ).map(s.dumps),
    # bulk actions: filters of every shape (a matched bystander is fine: it is a real action)
    "/v1/bulk/": st.fixed_dictionaries(
        {},
        optional={
            "filter": st.one_of(
                s.json_values,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "function_id": s.json_values,
                        "status": st.one_of(st.just(["Failed"]), s.json_values),
                        "since": st.one_of(s.times, s.json_values),
                        "if": st.one_of(st.sampled_from(["event.data.n ==", "1 == 1"]), s.texts),
                    },
                ),
            ),
            "idempotency_key": s.json_values,
        },
    ).map(s.dumps),
    # signals: a key, a token, or anything, with any data
    "/v1/signals": st.fixed_dictionaries(
        {"signal": st.one_of(s.texts, s.json_values)}, optional={"data": s.json_values}
    ).map(s.dumps),
    "/v1/runs/": st.fixed_dictionaries({}, optional={"from_step": s.json_values}).map(s.dumps),
    # Connect's protobuf bodies: empty, random bytes, real messages with odd fields
    "/v0/connect/": st.one_of(
        st.just(b""),
        st.binary(max_size=64),
        st.sampled_from([b"\x0a\x02ab", b"\x0a\x05ab", b"\x08\xff", b"\x0b", b"\x80" * 11]),
        st.builds(lambda t: b"\x0a" + bytes([len(t[:100])]) + t[:100], st.binary(max_size=100)),
    ),
    "/login": st.one_of(
        st.sampled_from([b"key=nope", b"key=", b"key=%ff%fe", b"a=1&" * 20, b"k" * 9000]),
        s.header_texts.map(lambda t: b"key=" + t.encode()),
    ),
}
_credentials = st.one_of(
    st.just("valid"),
    st.just("valid"),
    st.just("valid"),
    st.fixed_dictionaries(
        {},
        optional={
            "authorization": st.one_of(
                s.header_texts, st.sampled_from(["Bearer", "Bearer ", "Bearer undefined"])
            ),
            "cookie": st.one_of(
                s.header_texts.map(lambda v: f"stepline_session={v}"),
                st.sampled_from(
                    [
                        "stepline_session=²².a.b",
                        "stepline_session=99999999999999999999999.ab.cd",
                        "stepline_session=1.2.3",
                        "stepline_session=..",
                    ]
                ).map(str.encode),  # raw UTF-8 bytes: Starlette reads them as latin-1
            ),
            "x-stepline-csrf": st.just("1"),
        },
    ),
)


def _request(target: Target, victim: dict[str, str], data: st.DataObject) -> None:
    method, path = data.draw(
        st.sampled_from(_BY_ID + _PLAIN + [("GET", "/v1/runs")] * 3 + [("GET", "/v1/events")] * 3)
    )
    if "{id}" in path:
        raw = data.draw(_ids)
        path = path.replace("{id}", urllib.parse.quote(victim.get(raw, raw) or "x", safe=""))
    params = data.draw(_queries[path]) if path in _queries else {}
    if path.startswith("/v1/runs/") and method == "GET":
        params = {"wait": data.draw(_waits)}
    if path.startswith("/v1/functions/") and path.endswith("/metrics"):
        params = data.draw(_metrics_queries)
    shaped = next((b for prefix, b in _BODIES.items() if path.startswith(prefix)), None)
    if path.endswith("/stream"):
        params, shaped = data.draw(_stream_queries), _stream_body
    if "/inline/" in path:
        shaped = _lease_body
    body = None
    if method == "POST":
        body = data.draw(st.one_of(shaped, _any_body) if shaped is not None else _any_body)
    credentials = data.draw(_credentials)
    headers = dict(target.auth) if credentials == "valid" else dict(credentials)
    answer = target.http.request(
        method, path, params=params, content=body, headers=headers, follow_redirects=False
    )
    if path in ("/", "/login", "/logout") or answer.status_code in (303, 304):
        assert answer.status_code < 500, f"{method} {path}: {answer.status_code}"
    else:
        assert_precise(answer)


def test_every_route_answers_precisely(db: str) -> None:
    with fuzz_target(db, **START_MODE) as target:
        event = {"name": BYSTANDER_EVENT, "data": {"n": 99}}
        (event_id,) = target.call(target.engine.send, event)
        victim = {
            "VICTIM": str(target.call(target.engine.event_runs, event_id)[0].run_id),
            "VICTIM_EVENT": event_id,
        }

        @settings(s.FUZZ, max_examples=250)
        @given(st.data())
        def check(data: st.DataObject) -> None:
            _request(target, victim, data)

        check()
