"""The pre-deploy check: every live run on the engine replayed against the code about to ship.

``check`` lists the runs of the target's apps (every live one; with ``ended``, the newest
ended ones of each function too), fetches each run's journal from the engine and replays it
against the new code: in this process for a ``module:client`` target (``local``), over the
serve URL for an app started in CI (``wire``). What it finds is a ``CheckReport``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stepline import _settings
from stepline._api import journals
from stepline._api import runs as _runs
from stepline._client import Client
from stepline._definition.function import Function
from stepline._endpoints import registry as _endpoints
from stepline._errors import ConfigError
from stepline._replay import wire
from stepline._replay.journal import Journal
from stepline._replay.local import Replayer
from stepline._replay.verdict import CheckReport, RunVerdict
from stepline._transport import effects

__all__ = ["LocalTarget", "WireTarget", "check", "load_target"]

T = TypeVar("T")
Perform = Callable[[object], Any]
_LIVE = (_runs.RunStatus.QUEUED, _runs.RunStatus.RUNNING)
_ENDED = (_runs.RunStatus.COMPLETED, _runs.RunStatus.FAILED)
_PAGE = 500


@dataclasses.dataclass(frozen=True, slots=True)
class LocalTarget:
    """The new code, imported into this process: a client and its module's functions."""

    name: str
    client: Client
    functions: tuple[Function, ...]

    @property
    def app_ids(self) -> frozenset[str]:
        """The apps whose runs are checked."""
        return frozenset(fn.app_id for fn in self.functions)

    @property
    def function_ids(self) -> set[str]:
        """Every function's full id, ``on_failure`` handlers included."""
        return {each.composite_id for fn in self.functions for each in fn.all()}


@dataclasses.dataclass(frozen=True, slots=True)
class WireTarget:
    """The new code, served by an app at ``url`` (started in CI); its runs are ``app_id``'s."""

    url: str
    app_id: str | None = None
    signing_key: str | None = None

    @property
    def name(self) -> str:
        """What the report calls it."""
        return self.url


def load_target(target: str) -> LocalTarget:
    """``module:client`` (or ``module`` with one client): the client and the functions of
    its app that the module defines at its top level.

    Raises:
        ConfigError: the module cannot be imported, or names no client or no function.
    """
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {module_name!r}: {exc} (run the check where the new code imports, "
            "e.g. from the project's root, or set PYTHONPATH)"
        ) from None
    if name:
        client = getattr(module, name, None)
        if not isinstance(client, Client):
            kind = type(client).__name__ if client is not None else "nothing"
            raise ConfigError(f"{target!r} is {kind}, not a stepline.Client")
    else:
        clients = [v for v in vars(module).values() if isinstance(v, Client)]
        if len(clients) != 1:
            raise ConfigError(f"name the client: {module_name}:<client> ({len(clients)} found)")
        client = clients[0]
    declared = [
        v
        for v in vars(module).values()
        if isinstance(v, Function) and v.failure_of is None and v.app_id == client.app_id
    ]
    # durable endpoints' functions live on the client, wherever their views are declared
    functions = tuple(dict.fromkeys([*declared, *_endpoints.declared(client)]))
    if not functions:
        raise ConfigError(
            f"{module_name!r} defines no function of app {client.app_id!r} at its top level "
            "(import them into that module, or point at the module that declares them)"
        )
    return LocalTarget(target, client, functions)


def check(
    settings: _settings.Settings,
    target: LocalTarget | WireTarget,
    perform: Perform,
    *,
    functions: Sequence[str] = (),
    ended: int = 0,
    strict: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> CheckReport:
    """Replay the target's runs on the engine ``settings`` names; the report.

    Args:
        settings: the engine to read runs from (its API URL and signing key).
        target: the new code.
        perform: runs one effect (a ``SyncTransport``'s ``perform``).
        functions: only these functions (full ids); all of the target's apps' by default.
        ended: also replay the newest ``ended`` completed or failed runs of each function.
        strict: inconclusive verdicts fail the check too.
        clock: for the report's duration.
    """
    began = clock()
    report = CheckReport(
        target=target.name,
        engine=settings.api_base_url,
        checked_at=_now(),
        strict=strict,
    )

    def run(flow: effects.Flow[T]) -> T:
        return effects.drive_sync(flow, perform)

    owners = _owners(run, settings)
    apps, names = _scope(target, owners)
    wanted = set(functions)
    live = [
        info
        for info in run(_listing(settings, None, _LIVE, None))
        if _maybe_ours(info.function_id, apps, owners)
        and (not wanted or info.function_id in wanted)
    ]
    found = {info.run_id: info.function_id for info in live}
    if ended:
        for function_id in sorted(wanted or names):
            for info in run(_listing(settings, function_id, _ENDED, ended)):
                found.setdefault(info.run_id, info.function_id)
    replayer = (
        Replayer(target.client, target.functions) if isinstance(target, LocalTarget) else None
    )
    try:
        for run_id in found:
            journal = run(journals.export_flow(settings, run_id))
            if journal.app_id in apps:  # the run's own record says whose it is
                report.add(_verdict(journal, target, replayer, run))
    finally:
        if replayer is not None:
            replayer.close()
    report.seconds = clock() - began
    return report


def _verdict(
    journal: Journal,
    target: LocalTarget | WireTarget,
    replayer: Replayer | None,
    run: Callable[[effects.Flow[RunVerdict]], RunVerdict],
) -> RunVerdict:
    if replayer is not None:
        return replayer.check_sync(journal)
    assert isinstance(target, WireTarget)
    return run(wire.check_flow(target.url, journal, signing_key=target.signing_key))


def _owners(
    run: Callable[[effects.Flow[Any]], Any], settings: _settings.Settings
) -> dict[str, str]:
    """The app of every function the engine has registered, by function id."""
    registered = run(_runs.call(settings, "GET", "/v1/functions", what="functions")) or []
    return {
        str(item.get("function_id")): str(item.get("app_id"))
        for item in registered
        if isinstance(item, dict)
    }


def _scope(
    target: LocalTarget | WireTarget, owners: dict[str, str]
) -> tuple[frozenset[str], set[str]]:
    """The apps whose runs are checked, and the function ids whose ended runs may be."""
    if isinstance(target, LocalTarget):
        return target.app_ids, target.function_ids
    by_app: dict[str, set[str]] = {}
    for function_id, owner in owners.items():
        by_app.setdefault(owner, set()).add(function_id)
    app_id = target.app_id
    if app_id is None:
        if len(by_app) != 1:
            known = ", ".join(sorted(by_app)) or "none"
            raise ConfigError(
                f"name the app whose runs to check with --app (the engine has: {known})"
            )
        app_id = next(iter(by_app))
    return frozenset({app_id}), by_app.get(app_id, set())


def _maybe_ours(function_id: str, apps: frozenset[str], owners: dict[str, str]) -> bool:
    """Whether a run of ``function_id`` may be of one of ``apps``: its function's registered
    app says so; a function the engine no longer has is told by its id's prefix, and the
    run's journal has the last word (an app ``shop-eu`` is not ``shop``)."""
    owner = owners.get(function_id)
    if owner is not None:
        return owner in apps
    return any(function_id.startswith(f"{app}-") for app in apps)


def _listing(
    settings: _settings.Settings,
    function_id: str | None,
    statuses: Sequence[_runs.RunStatus],
    most: int | None,
) -> effects.Flow[list[_runs.RunInfo]]:
    """Runs by filters, every page (or the newest ``most``)."""
    out: list[_runs.RunInfo] = []
    cursor = None
    while True:
        limit = _PAGE if most is None else min(_PAGE, most - len(out))
        page, cursor = yield from _runs.list_flow(
            settings, function_id=function_id, status=statuses, limit=limit, cursor=cursor
        )
        out.extend(page)
        if cursor is None or not page or (most is not None and len(out) >= most):
            return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
