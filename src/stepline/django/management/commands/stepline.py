"""``manage.py stepline dev|start|migrate|relay``: the engine's command line, with the settings.

``dev`` runs a local engine that syncs this project's ``serve()`` URL (``-u``); ``start``
runs a production engine with ``SIGNING_KEY``/``EVENT_KEY``; ``migrate`` prepares the
database (``DATABASE``, also the embedded engine's); ``relay`` delivers the project's
outbox (``stepline_outbox`` in ``--database``) to the engine at ``BASE_URL``. Everything
else is the engine CLI's (``stepline dev --help``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, reverse

from stepline import _errors
from stepline.django import _conf, _runtime
from stepline.engine import _cli

__all__ = ["Command", "engine_argv", "serve_url"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Command(BaseCommand):
    help = (
        "Run the Stepline engine with settings.STEPLINE: `dev` (a local engine syncing "
        "this app), `start` (production, with the settings' keys) or `migrate`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("dev", "start", "migrate", "relay"))
        parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port to bind (default 8288)")
        parser.add_argument("--db", metavar="URL", help="default: STEPLINE['DATABASE']")
        parser.add_argument(
            "-u",
            "--app-url",
            action="append",
            dest="app_urls",
            metavar="URL",
            help="a serve URL to sync (repeatable); default: this project's serve() URL "
            f"at STEPLINE['SERVE_ORIGIN'] or {_conf.DEFAULT_APP_ORIGIN}",
        )
        parser.add_argument("--no-sync", action="store_true", help="sync no app at start")
        parser.add_argument(
            "--allow-public", action="store_true", help="let `dev` bind a public interface"
        )
        _relay_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        action: str = options["action"]
        try:
            config = _runtime.current().config
            if action == "relay":
                self._relay(config, options)
                return
            urls: Sequence[str] = options["app_urls"] or ()
            if not (urls or options["no_sync"] or action == "migrate" or config.embedded):
                found = serve_url(config, required=action == "dev")
                urls = (found,) if found else ()
            argv = engine_argv(
                config,
                action,
                app_urls=urls,
                host=options["host"],
                port=options["port"],
                db=options["db"],
                allow_public=options["allow_public"],
            )
        except _errors.ConfigError as exc:
            raise CommandError(str(exc)) from None
        code = _cli.main(argv)
        if code:
            raise CommandError(f"stepline {action} exited with status {code}", returncode=code)

    def _relay(self, config: _conf.Config, options: dict[str, Any]) -> None:
        from stepline.outbox import _relay_django

        engine = options["engine"] or config.base_url
        if config.embedded and not options["engine"]:
            raise _errors.ConfigError(
                "settings.STEPLINE['ENGINE'] is 'embedded': the web process's engine "
                "relays the outbox itself (ENGINE_OPTIONS {'relay_outbox': 'django'}); "
                "pass --engine URL to relay to another engine"
            )
        _relay_django.run(
            alias=options["database"],
            engine_url=engine,
            event_key=config.event_key,
            signing_key=config.signing_key,
            metrics_port=options["metrics_port"],
            poll_interval=options["poll_interval"],
        )


def _relay_arguments(parser: CommandParser) -> None:
    """``relay``'s options: the database alias, the engine, metrics."""
    parser.add_argument(
        "--database",
        default="default",
        help="relay: the database alias holding stepline_outbox (default: default)",
    )
    parser.add_argument(
        "--engine", metavar="URL", help="relay: the engine (default STEPLINE['BASE_URL'])"
    )
    parser.add_argument("--metrics-port", type=int, metavar="PORT", help="relay: /metrics here")
    parser.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="relay: how often an idle relay looks at the outbox (default 1)",
    )


def engine_argv(
    config: _conf.Config,
    action: str,
    *,
    app_urls: Sequence[str] = (),
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
    allow_public: bool = False,
) -> list[str]:
    """The engine CLI's arguments for ``action`` under these settings.

    Raises:
        ConfigError: ``dev``/``start`` while the settings embed the engine.
    """
    db = db or config.database
    if action == "migrate":
        return ["migrate", *(["--db", db] if db else [])]
    if config.embedded:
        raise _errors.ConfigError(
            f"settings.STEPLINE['ENGINE'] is 'embedded': the engine runs inside the web "
            f"process, so `manage.py stepline {action}` would run a second one; drop "
            "ENGINE to use a separate engine"
        )
    argv = [action]
    for url in app_urls:
        argv += ["-u", url]
    if port is None and action == "dev" and config.base_url:
        # the client talks to BASE_URL: a local dev engine listens there
        parts = urllib.parse.urlsplit(config.base_url)
        if parts.hostname in _LOOPBACK and parts.port:
            port = parts.port
    argv += ["--host", host] if host else []
    argv += ["--port", str(port)] if port is not None else []
    argv += ["--db", db] if db else []
    argv += ["--allow-public"] if allow_public else []
    if action == "start":  # absent keys: the engine reads STEPLINE_SIGNING_KEY... itself
        argv += ["--signing-key", config.signing_key] if config.signing_key else []
        fallback = config.signing_key_fallback
        argv += ["--signing-key-fallback", fallback] if fallback else []
        argv += ["--event-key", config.event_key] if config.event_key else []
    return argv


def serve_url(config: _conf.Config, *, required: bool) -> str | None:
    """This project's serve URL: ``SERVE_ORIGIN`` (or runserver's) and ``serve()``'s path.

    Args:
        config: the settings.
        required: raise instead of answering None when there is no ``serve()`` route;
            without ``required``, an unknown ``SERVE_ORIGIN`` also answers None (a
            production engine cannot guess the app's public address).

    Raises:
        ConfigError: ``required`` and no URL named ``stepline`` (``serve()``'s).
    """
    if not required and config.serve_origin is None:
        return None
    origin = (config.serve_origin or _conf.DEFAULT_APP_ORIGIN).rstrip("/")
    if config.serve_path:
        return origin + config.serve_path
    try:
        return origin + reverse("stepline")
    except NoReverseMatch:
        if not required:
            return None
        raise _errors.ConfigError(
            "no serve() URL (named 'stepline') in ROOT_URLCONF to sync; mount "
            "stepline.django.serve() or include('stepline.django.urls'), or pass -u URL "
            "(or --no-sync)"
        ) from None
