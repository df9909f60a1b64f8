"""The signup example (``examples/django_signup``) under ``SteplineTestMixin``, in a child process.

``test_examples.py`` runs it: Django is configured once per process. The example's own
settings are used with ``"ENGINE"`` dropped, so no embedded engine starts and the test's env
runs the onboarding function instead. Usage: ``python examples_django_case.py <data dir>``.
"""

from __future__ import annotations

import os
import sys
import time
import unittest
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_signup"
os.environ["SIGNUP_DATA_DIR"] = sys.argv[1]  # the example's users table goes there
sys.path.insert(0, str(EXAMPLE))

import django  # noqa: E402
import signup.settings as example_settings  # noqa: E402
from django.conf import settings  # noqa: E402

values = {name: getattr(example_settings, name) for name in dir(example_settings) if name.isupper()}
# the example's settings, minus its embedded engine: the TestEnv is the engine
values["STEPLINE"] = {
    key: value for key, value in values["STEPLINE"].items() if key not in ("ENGINE", "DATABASE")
}
if django.VERSION >= (6, 1):  # EMAIL_BACKEND is deprecated there; the test runner's
    del values["EMAIL_BACKEND"]  # locmem mailer replaces the console one either way
settings.configure(**values)
django.setup()

import django.test  # noqa: E402
import django.test.utils  # noqa: E402
import pytest  # noqa: E402
from django.core import mail  # noqa: E402
from signup import workflows  # noqa: E402

import stepline  # noqa: E402
from stepline.testing import SteplineTestMixin  # noqa: E402


class SignupTests(SteplineTestMixin, django.test.SimpleTestCase):
    stepline_client = workflows.client
    stepline_functions = tuple(workflows.functions)

    def sign_up(self, email: str) -> dict[str, object]:
        response = self.client.post("/signup", {"email": email, "name": "Ada"}, "application/json")
        assert response.status_code == 201, response.content
        body: dict[str, object] = response.json()
        return body

    def test_signup_route_onboards_the_user(self) -> None:
        assert django.conf.settings.STEPLINE.get("ENGINE") is None
        began = time.monotonic()
        body = self.sign_up("ada@example.com")
        run = self.stepline.get_run(str(body["run_id"]))
        output = run.result_sync()
        assert output == {"user_id": body["user_id"], "email": "ada@example.com", "welcomed": True}
        assert time.monotonic() - began < 10
        assert [m.to for m in mail.outbox] == [["ada@example.com"]]
        assert [c.step for c in self.stepline.step_calls(workflows.onboarding)] == [
            "load-user",
            "send-welcome-email",
            "mark-onboarded",
        ]
        shown = self.client.get(f"/signup/{body['user_id']}").json()
        assert shown["user"]["onboarded"] is True
        assert shown["run"]["status"] == "Completed"
        assert (
            self.client.post(
                "/signup", {"email": "ada@example.com"}, "application/json"
            ).status_code
            == 409
        )

    def test_a_failing_welcome_email_fails_the_run_and_leaves_the_user_waiting(self) -> None:
        mock = self.stepline.mock_step(
            workflows.onboarding, "send-welcome-email", raises=ConnectionRefusedError("smtp down")
        )
        body = self.sign_up("bo@example.com")
        run = self.stepline.get_run(str(body["run_id"]))
        with pytest.raises(stepline.RunFailedError):
            run.result_sync()  # each retry's backoff passes on the virtual clock
        calls = self.stepline.step_calls(workflows.onboarding, "send-welcome-email")
        assert mock.call_count == len(calls) > 1
        assert [c.attempt for c in calls] == list(range(len(calls)))
        assert all(isinstance(c.error, ConnectionRefusedError) for c in calls)
        assert [c.step for c in self.stepline.step_calls(workflows.onboarding, "load-user")] == [
            "load-user"
        ]
        assert self.stepline.step_calls(workflows.onboarding, "mark-onboarded") == []
        assert mail.outbox == []
        shown = self.client.get(f"/signup/{body['user_id']}").json()
        assert shown["user"]["onboarded"] is False
        assert shown["run"]["status"] == "Failed"


if __name__ == "__main__":
    django.test.utils.setup_test_environment()  # the locmem mail outbox, the testserver host
    unittest.main(argv=[sys.argv[0], "-v"])
