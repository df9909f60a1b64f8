from __future__ import annotations

import os

import pytest

from stepline import _errors, _settings

KEY = "signkey-test-" + "ab" * 32
KEY2 = "signkey-prod-" + "cd" * 32


def resolve(environ: dict[str, str] | None = None, **arguments: object) -> _settings.Settings:
    return _settings.resolve(app_id="app", environ=environ or {}, **arguments)  # type: ignore[arg-type]


# (argument name, env NAME, argument value, STEPLINE_ value, INNGEST_ value,
#  expected from each, default)
STRING_SETTINGS = [
    ("signing_key", "SIGNING_KEY", KEY, KEY2, "ef" * 8, None),
    ("signing_key_fallback", "SIGNING_KEY_FALLBACK", KEY, KEY2, "ef" * 8, None),
    ("event_key", "EVENT_KEY", "arg-key", "sl-key", "in-key", None),
    ("env", "ENV", "arg-env", "sl-env", "in-env", None),
    ("serve_origin", "SERVE_ORIGIN", "https://a.example", "https://s.example", "https://i", None),
    ("serve_path", "SERVE_PATH", "/arg", "/sl", "/in", None),
    ("app_version", "APP_VERSION", "1", "2", "3", None),
]


@pytest.mark.parametrize(("attr", "name", "arg", "sl", "inn", "default"), STRING_SETTINGS)
def test_string_precedence(attr, name, arg, sl, inn, default):
    env = {f"STEPLINE_{name}": sl, f"INNGEST_{name}": inn}
    assert getattr(resolve(env, **{attr: arg}), attr) == arg
    assert getattr(resolve(env), attr) == sl
    assert getattr(resolve({f"INNGEST_{name}": inn}), attr) == inn
    assert getattr(resolve({}), attr) == default


@pytest.mark.parametrize(("attr", "name", "arg", "sl", "inn", "default"), STRING_SETTINGS)
def test_blank_env_is_unset_and_empty_argument_means_none(attr, name, arg, sl, inn, default):
    env = {f"STEPLINE_{name}": "  ", f"INNGEST_{name}": inn}
    assert getattr(resolve(env), attr) == inn
    assert getattr(resolve(env, **{attr: ""}), attr) is None


def test_signing_keys_property():
    assert resolve().signing_keys == ()
    assert resolve(signing_key_fallback=KEY2).signing_keys == (KEY2,)
    assert resolve(signing_key=KEY, signing_key_fallback=KEY2).signing_keys == (KEY, KEY2)


@pytest.mark.parametrize("key", ["abcd", "signkey-branch-00ff", "signkey-prod-ABCDEF"])
def test_valid_signing_keys(key):
    assert resolve(signing_key=key).signing_key == key


@pytest.mark.parametrize(
    "key", ["signkey-test-", "signkey-test-xyz", "signkey-test-abc", "not a key", "signkey"]
)
@pytest.mark.parametrize("attr", ["signing_key", "signing_key_fallback"])
def test_malformed_signing_key(attr, key):
    with pytest.raises(_errors.ConfigError, match=attr):
        resolve(**{attr: key})
    with pytest.raises(_errors.ConfigError):
        resolve({f"INNGEST_{attr.upper()}": key})


def test_cloud_without_signing_key_is_allowed():
    settings = resolve()
    assert settings.mode == "cloud"
    assert not settings.is_dev
    assert settings.signing_key is None


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("1", "dev"),
        ("true", "dev"),
        ("yes", "dev"),
        ("http://localhost:9000", "dev"),
        ("0", "cloud"),
        ("false", "cloud"),
        ("FALSE", "cloud"),
        ("", "cloud"),
    ],
)
def test_mode_from_dev(value, mode):
    assert resolve({"INNGEST_DEV": value}).mode == mode
    assert resolve({"STEPLINE_DEV": value}).mode == mode


def test_mode_precedence():
    assert resolve({"STEPLINE_DEV": "0", "INNGEST_DEV": "1"}).mode == "cloud"
    assert resolve({"STEPLINE_DEV": "1", "INNGEST_DEV": "0"}).mode == "dev"
    assert resolve({"INNGEST_DEV": "1"}, is_production=True).mode == "cloud"
    assert resolve({"INNGEST_DEV": "0"}, is_production=False).mode == "dev"
    assert resolve({"INNGEST_DEV": "0"}, is_production=False).is_dev


@pytest.mark.shipped_default_url
def test_default_urls():
    production = resolve()
    assert production.api_base_url == production.event_api_base_url == _settings.NO_ENGINE
    dev = resolve(is_production=False)
    assert dev.api_base_url == dev.event_api_base_url == "http://127.0.0.1:8288"


def test_production_without_an_engine_url_is_refused_with_the_choices():
    with pytest.raises(_errors.ConfigError) as raised:
        resolve().require_engine("send")
    message = str(raised.value)
    assert message.startswith("send: no engine URL in production mode: ")
    assert "\n" not in message
    for choice in ("STEPLINE_DEV=1", "STEPLINE_API_BASE_URL=", "https://api.inngest.com"):
        assert choice in message
    resolve({"STEPLINE_DEV": "1"}).require_engine("send")  # dev: the local engine
    resolve({"STEPLINE_API_BASE_URL": "https://engine.example"}).require_engine("send")


@pytest.mark.parametrize(
    ("environ", "api", "events"),
    [
        # one engine answers both APIs: a URL for one is the other's too
        ({"STEPLINE_API_BASE_URL": "https://e.example"}, "https://e.example", "https://e.example"),
        ({"INNGEST_EVENT_API_BASE_URL": "http://e:8288"}, "http://e:8288", "http://e:8288"),
        # Inngest Cloud, named, keeps its own event API origin (and the other way round)
        ({"INNGEST_API_BASE_URL": "https://api.inngest.com"}, "https://api.inngest.com",
         "https://inn.gs"),
        ({"STEPLINE_EVENT_API_BASE_URL": "https://inn.gs"}, "https://api.inngest.com",
         "https://inn.gs"),
        ({"STEPLINE_BASE_URL": "https://e.example"}, "https://e.example", "https://e.example"),
    ],
)  # fmt: skip
def test_production_url_for_one_api_serves_both(environ, api, events):
    settings = resolve(environ)
    assert (settings.mode, settings.api_base_url, settings.event_api_base_url) == (
        "cloud",
        api,
        events,
    )


def test_dev_url_is_base_for_both_apis():
    settings = resolve({"INNGEST_DEV": "http://localhost:9000/"})
    assert settings.api_base_url == settings.event_api_base_url == "http://localhost:9000"


@pytest.mark.parametrize(
    ("attr", "name"),
    [("api_base_url", "API_BASE_URL"), ("event_api_base_url", "EVENT_API_BASE_URL")],
)
def test_url_precedence(attr, name):
    env = {
        f"STEPLINE_{name}": "https://sl.example",
        f"INNGEST_{name}": "https://in.example",
        "STEPLINE_BASE_URL": "https://sl-base.example",
        "INNGEST_BASE_URL": "https://in-base.example",
        "INNGEST_DEV": "http://dev.example",
    }
    assert getattr(resolve(env, **{attr: "https://arg.example"}), attr) == "https://arg.example"
    assert getattr(resolve(env), attr) == "https://sl.example"
    del env[f"STEPLINE_{name}"]
    assert getattr(resolve(env), attr) == "https://in.example"
    del env[f"INNGEST_{name}"]
    assert getattr(resolve(env), attr) == "https://sl-base.example"
    del env["STEPLINE_BASE_URL"]
    assert getattr(resolve(env), attr) == "https://in-base.example"
    del env["INNGEST_BASE_URL"]
    assert getattr(resolve(env), attr) == "http://dev.example"


@pytest.mark.parametrize(
    ("value", "production", "expected"),
    [
        ("api.example.com", True, "https://api.example.com"),
        ("api.example.com", False, "http://api.example.com"),
        ("localhost:8288", False, "http://localhost:8288"),
        ("localhost:8288", True, "https://localhost:8288"),
        ("http://x.example//", True, "http://x.example"),
        ("https://x.example/base/", False, "https://x.example/base"),
        ("  https://x.example ", True, "https://x.example"),
    ],
)
def test_url_normalisation(value, production, expected):
    settings = resolve(api_base_url=value, event_api_base_url=value, is_production=production)
    assert settings.api_base_url == settings.event_api_base_url == expected
    settings = resolve({"INNGEST_BASE_URL": value}, is_production=production)
    assert settings.api_base_url == settings.event_api_base_url == expected


@pytest.mark.parametrize("value", ["localhost", "nonsense", "ftp://x.example", "http://"])
def test_invalid_url(value):
    with pytest.raises(_errors.UrlInvalidError):
        resolve(api_base_url=value)
    with pytest.raises(_errors.UrlInvalidError):
        resolve({"STEPLINE_EVENT_API_BASE_URL": value})


def test_url_invalid_is_a_config_error():
    with pytest.raises(_errors.ConfigError):
        resolve(event_api_base_url="nope")


def test_env_falls_back_to_platform_branches():
    platforms = {
        "RAILWAY_GIT_BRANCH": "railway",
        "RENDER_GIT_BRANCH": "render",
        "VERCEL_GIT_COMMIT_REF": "vercel",
    }
    assert resolve(platforms).env == "railway"
    assert resolve({**platforms, "INNGEST_ENV": "inngest"}).env == "inngest"
    del platforms["RAILWAY_GIT_BRANCH"]
    assert resolve(platforms).env == "render"
    del platforms["RENDER_GIT_BRANCH"]
    assert resolve(platforms).env == "vercel"


def test_streaming():
    assert resolve().streaming == "disable"
    assert resolve({"INNGEST_STREAMING": "allow"}).streaming == "force"
    assert resolve({"INNGEST_STREAMING": "force"}).streaming == "force"
    assert resolve({"STEPLINE_STREAMING": "disable", "INNGEST_STREAMING": "force"}).streaming == (
        "disable"
    )
    assert resolve({"STEPLINE_STREAMING": "disable"}, streaming="force").streaming == "force"
    with pytest.raises(_errors.ConfigError, match="streaming"):
        resolve({"INNGEST_STREAMING": "sometimes"})
    with pytest.raises(_errors.ConfigError):
        resolve(streaming="on")


def test_thread_pool_max_workers():
    assert resolve().thread_pool_max_workers == min(32, (os.cpu_count() or 1) + 4)
    env = {"STEPLINE_THREAD_POOL_MAX_WORKERS": "3", "INNGEST_THREAD_POOL_MAX_WORKERS": "7"}
    assert resolve(env, thread_pool_max_workers=0).thread_pool_max_workers == 0
    assert resolve(env).thread_pool_max_workers == 3
    assert resolve({"INNGEST_THREAD_POOL_MAX_WORKERS": "7"}).thread_pool_max_workers == 7


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "+2"])
def test_thread_pool_max_workers_invalid_env(value):
    with pytest.raises(_errors.ConfigError, match="thread_pool_max_workers"):
        resolve({"INNGEST_THREAD_POOL_MAX_WORKERS": value})


@pytest.mark.parametrize("value", [-1, True, 1.5])
def test_thread_pool_max_workers_invalid_argument(value):
    with pytest.raises(_errors.ConfigError):
        resolve(thread_pool_max_workers=value)


def test_allow_in_band_sync():
    assert resolve().allow_in_band_sync is True
    assert resolve({"INNGEST_ALLOW_IN_BAND_SYNC": "false"}).allow_in_band_sync is False
    assert resolve({"INNGEST_ALLOW_IN_BAND_SYNC": "0"}).allow_in_band_sync is False
    assert resolve({"INNGEST_ALLOW_IN_BAND_SYNC": "False"}).allow_in_band_sync is False
    assert resolve({"INNGEST_ALLOW_IN_BAND_SYNC": "yes"}).allow_in_band_sync is True
    env = {"STEPLINE_ALLOW_IN_BAND_SYNC": "1", "INNGEST_ALLOW_IN_BAND_SYNC": "false"}
    assert resolve(env).allow_in_band_sync is True
    assert resolve(env, allow_in_band_sync=False).allow_in_band_sync is False


def test_argument_only_settings():
    settings = resolve()
    assert (settings.request_timeout, settings.send_max_attempts, settings.checkpointing) == (
        30.0,
        5,
        True,
    )
    settings = resolve(request_timeout=2.5, send_max_attempts=1, checkpointing=False)
    assert (settings.request_timeout, settings.send_max_attempts, settings.checkpointing) == (
        2.5,
        1,
        False,
    )


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("request_timeout", 0),
        ("request_timeout", -1.0),
        ("request_timeout", float("nan")),
        ("send_max_attempts", 0),
        ("send_max_attempts", 1.5),
        ("send_max_attempts", True),
    ],
)
def test_argument_only_settings_invalid(attr, value):
    with pytest.raises(_errors.ConfigError, match=attr):
        resolve(**{attr: value})


@pytest.mark.parametrize("app_id", ["", "   "])
def test_app_id_required(app_id):
    with pytest.raises(_errors.ConfigError, match="app_id"):
        _settings.resolve(app_id=app_id, environ={})


def test_settings_are_frozen():
    settings = resolve()
    with pytest.raises(AttributeError):
        settings.app_id = "other"  # type: ignore[misc]


def test_environment_is_not_read_implicitly(monkeypatch):
    monkeypatch.setenv("INNGEST_EVENT_KEY", "from-os")
    assert resolve().event_key is None
    assert _settings.resolve(app_id="app", environ=os.environ).event_key == "from-os"
