"""Dashboard users from the environment and a keys file: names, roles, keys, and what the
engine refuses to start with."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline._serving.access import Role
from stepline.engine import _config
from stepline.engine._config import EngineConfigError

SIGNING_KEY = "signkey-prod-" + "ab" * 32
BASE = {"STEPLINE_SIGNING_KEY": SIGNING_KEY, "STEPLINE_EVENT_KEY": "ev"}


def _resolve(**env: str) -> _config.EngineSettings:
    return _config.resolve(mode="start", environ={**BASE, **env})


def test_users_come_from_the_setting_and_the_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# the on-call team\n\ncarol:ADMIN:carol-key-0123456789\n")
    settings = _resolve(
        STEPLINE_DASHBOARD_KEYS=(
            "alice:viewer:alice-key-0123456789, bob:operator:bob:key:0123456789"
        ),
        STEPLINE_DASHBOARD_KEYS_FILE=str(keys),
    )
    found = [(u.name, u.role, u.key) for u in settings.dashboard_users]
    assert found == [
        ("alice", Role.VIEWER, "alice-key-0123456789"),
        ("bob", Role.OPERATOR, "bob:key:0123456789"),  # the key is everything after the role
        ("carol", Role.ADMIN, "carol-key-0123456789"),
    ]
    assert "alice-key" not in repr(settings.dashboard_users)  # a key is never shown


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ("alice:owner:alice-key-0123456789", "role of viewer, operator, admin"),
        ("alice:viewer", "want name:role:key"),
        ("alice:viewer:short", "at least 16"),
        ("signing-key:viewer:alice-key-0123456789", "the engine's own"),
        ("a b:viewer:alice-key-0123456789", "must be 1-64 letters"),
        ("al:viewer:alice-key-0123456789,al:admin:other-key-0123456789", "two dashboard users"),
        ("al:viewer:alice-key-0123456789,bo:admin:alice-key-0123456789", "another user's key"),
    ],
)
def test_the_engine_refuses_to_start_with_a_bad_user(entries: str, says: str) -> None:
    with pytest.raises(EngineConfigError, match=says):
        _resolve(STEPLINE_DASHBOARD_KEYS=entries)


def test_an_unreadable_keys_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError, match="cannot read"):
        _resolve(STEPLINE_DASHBOARD_KEYS_FILE=str(tmp_path / "missing"))
