"""What a run's export leaves out: what the engine never keeps, and what the exporter asks.

A durable endpoint's request is its run's trigger: the engine stores it without the
credentials it came with (the headers by an allowlist, a credential-looking query
parameter masked: ``stepline._endpoints.redaction``), so the export, which is that record,
carries none of them either, and still replays. ``redact_key`` masks more at any depth
with the engine's own marker, and ``drop_output`` leaves a step's output out; both are
listed in the document's ``redacted``. A viewer, whose answers the engine redacts whole,
is refused the export (``tests/engine/test_roles.py``).
"""

from __future__ import annotations

import json

import fastapi.testclient

from stepline._endpoints import redaction
from stepline._replay.journal import REDACTED
from stepline.testing import TestEnv
from tests.endpoints.test_testenv_durable import build

SECRETS = ("tok-ada", "sk_live_1", "s3cret-session", "fwd-token", "4242424242424242")


def test_a_durable_endpoints_credentials_are_not_in_its_runs_export() -> None:
    app, client, _fn, charged = build()
    with TestEnv(client, []) as env, fastapi.testclient.TestClient(app) as http:
        answer = http.post(
            "/orders/3?api_key=sk_live_1&page=2",
            json={"hold": True, "card": "4242424242424242"},
            headers={
                "authorization": "Bearer tok-ada",
                "cookie": "session=s3cret-session",
                "x-forwarded-access-token": "fwd-token",
            },
        )
        assert answer.status_code == 202, answer.text
        run_id = answer.headers["x-stepline-run-id"]
        assert env.get_run(run_id).result_sync()["status"] == 200

        whole = env.export_sync(run_id)
        text = json.dumps(whole.to_json())
        request = whole.events[0]["data"]
        assert request["query"] == {"api_key": REDACTED, "page": "2"}
        assert REDACTED == redaction.REDACTED, "the export masks with the engine's marker"
        assert not {"authorization", "cookie", "x-forwarded-access-token"} & {
            name.lower() for name in request["headers"]
        }
        for secret in SECRETS[:4]:
            assert secret not in text, secret
        assert "4242424242424242" in text, "the body is the run's data: masked only when asked"

        masked = whole.redacted_keys(["text"]).without_outputs(["charge"])
        shown = json.dumps(masked.to_json())
        for secret in SECRETS:
            assert secret not in shown, secret
        assert masked.redacted == ("key:text", "output:charge")
        charge = masked.to_json()["steps"][0]
        assert (charge["name"], charge.get("dropped"), "memo" in charge) == ("charge", True, False)

        before = list(charged)
        played = env.replay_sync(whole)
        assert played.same, played.difference
        assert played.output["json"] == {"charge": "real-3", "shipped": "shipped-3"}
        # the body is stored as its text: masked whole, the code that reads it now fails,
        # and the playback says so at that point, past the step answered as asked
        given = env.replay_sync(masked, outputs={"charge": "real-3"})
        assert [s.name for s in given.steps] == ["charge"]
        assert given.difference is not None
        assert "at step 2: the function raises BodyInvalidError" in given.difference
        assert charged == before, "no step body ran during the playbacks"
