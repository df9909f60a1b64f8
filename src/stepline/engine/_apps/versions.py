"""App versions: several registrations of one app at once, and which one a run's call goes to.

An app registered with a version (the register body's ``appVersion``, else the sync's
``deployId``) keeps every version in ``app_versions``; the ``apps`` and ``functions``
tables hold its latest (the newest new or changed registration), so every other path
(fan-out, triggers, flow control, the dashboard) sees one registration as before. A run
records the version it started on (``Run.app_version``): a function whose policy is
``"pinned"`` (the default) is called at that version's URL while it is registered; with
``"latest"``, or once its version is gone, the run moves to the latest version and says
so in a ``version_moved`` notice.

The routing decision (``route``) is pure; the rest are plain functions over a ``Tx``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from stepline.engine._apps import registry
from stepline.engine._apps.registry import AppSpec, FunctionSpec, Versions, latest_of
from stepline.engine._clock import Clock
from stepline.engine._flow.rules import RegistrationError
from stepline.engine._model import AppRecord, FunctionRecord, Run
from stepline.engine._store import Tx
from stepline.engine._store.versions import AppVersion

logger = logging.getLogger("stepline.engine")

#: a function config's key naming its version policy (the SDK's ``versioning=`` option)
POLICY_KEY = "versioning"
PINNED, LATEST = "pinned", "latest"
#: why a run moved to another version (the ``reason`` of a ``version_moved`` notice)
UNREGISTERED, REDEPLOYED = "unregistered", "redeployed"

_WHY = {
    UNREGISTERED: "{old} is no longer registered",
    REDEPLOYED: "the URL that served {old} now serves {new}",
    LATEST: "the function follows the latest version",
}


class VersionRefusedError(RegistrationError):
    """A version that cannot be retired (now); ``status`` is the HTTP answer (404, 409)."""

    def __init__(self, message: str, status: int, live: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.live = live


@dataclasses.dataclass(frozen=True, slots=True)
class CallRoute:
    """Where a run's call goes: ``fn`` (its URL and options), and a move to record first.

    Attributes:
        fn: the function as the version the call goes to registered it (None: nowhere).
        move: ``(to, reason)`` when the run moves to another version with this call.
    """

    fn: FunctionSpec | None
    move: tuple[str, str] | None = None


def route(run: Run, fn: FunctionSpec | None, versions: Versions) -> CallRoute:
    """Which registration a run's next call goes to (pure).

    Args:
        run: the run, with the version it started on (or last moved to).
        fn: its function as the latest registration has it (None if it has none).
        versions: every registered version.
    """
    own = versions.of(run.app_id)
    if run.app_version is None or not own:
        return CallRoute(fn)  # an unversioned run, or an app registered without versions
    latest = latest_of(own.values())
    assert latest is not None
    current = own.get(run.app_version)
    if current is None:
        move = (latest.version, UNREGISTERED)
        return CallRoute(versions.spec(latest, run.function_id) or fn, move)
    if current.version == latest.version:
        return CallRoute(fn or versions.spec(current, run.function_id))
    config = current.functions.get(run.function_id) or {}
    if config.get(POLICY_KEY) == LATEST:
        return CallRoute(fn or versions.spec(latest, run.function_id), (latest.version, LATEST))
    return CallRoute(versions.spec(current, run.function_id) or fn)


async def routed(
    run: Run,
    fn: FunctionSpec | None,
    versions: Versions,
    record: Callable[[Callable[[Tx], Run | None]], Awaitable[Run | None]],
    clock: Clock,
) -> FunctionSpec | None:
    """``route``, recording a move first (``record`` runs it in a transaction)."""
    chosen = route(run, fn, versions)
    if chosen.move is not None and run.app_version is not None:
        old, (new, reason) = run.app_version, chosen.move
        moved = await record(
            lambda tx: move(tx, run.run_id, old, new, reason=reason, now=clock.now())
        )
        run.app_version = new if moved is None else moved.app_version
    return chosen.fn


def notice(old: str, new: str, reason: str, now: float) -> dict[str, Any]:
    """A ``version_moved`` notice (the contract's shape)."""
    why = _WHY.get(reason, reason).format(old=old, new=new)
    return {
        "kind": "version_moved",
        "at": now,
        "from": old,
        "to": new,
        "reason": reason,
        "message": f"moved from app version {old} to {new}: {why}",
    }


def move(tx: Tx, run_id: str, old: str, new: str, *, reason: str, now: float) -> Run | None:
    """Move a live run from ``old`` to ``new`` and append the notice (once: a run on ``old``).

    Returns the run as moved, or None when it has ended or moved already.
    """
    run = tx.get_run(run_id)
    if run is None or run.status.terminal or run.app_version != old:
        return None
    run.app_version = new
    run.notices = [*run.notices, notice(old, new, reason, now)]
    tx.update_run(run)
    logger.info("run %s moved from app version %s to %s (%s)", run_id, old, new, reason)
    return run


# -- registering --------------------------------------------------------------------------


def store(tx: Tx, app: AppSpec, now: float, mode: str) -> tuple[bool, bool]:
    """Store a registration, version-aware; returns ``(modified, latest)``.

    ``latest``: the registration is the app's latest and goes to the ``apps`` and
    ``functions`` tables (and its crons are scheduled). A version synced from the URL of
    another version replaces it (that URL serves the new code now: the old one's live
    runs move); a registration without a version re-syncs the version its URL serves,
    or, at a URL no version has, replaces them all (an app registered without versions).
    """
    # two nodes registering versions at once: one at a time
    tx.versions.lock_app_versions(app.app_id)
    existing = {v.version: v for v in tx.versions.list_app_versions(app.app_id)}
    version = app.version or next((v.version for v in existing.values() if v.url == app.url), None)
    if version is None:
        if existing:
            tx.versions.delete_app_versions(app.app_id)
        return _put_latest(tx, app, now, mode, None), True
    old = existing.get(version)
    changed = old is None or old.checksum != app.checksum or old.url != app.url
    mine = AppVersion(
        app_id=app.app_id,
        version=version,
        url=app.url,
        synced_at=now,
        checksum=app.checksum,
        functions={fn.function_id: _config(fn, version) for fn in app.functions},
        registered_at=_after(existing.values(), now)
        if changed or old is None
        else old.registered_at,
        sdk=app.sdk,
        framework=app.framework,
        mode=mode,
    )
    tx.versions.put_app_version(mine)
    replaced = [v for v in existing.values() if v.url == app.url and v.version != version]
    kept = [v for v in existing.values() if v not in replaced and v.version != version]
    latest = latest_of([*kept, mine])
    assert latest is not None
    for gone in replaced:
        for run_id in tx.versions.live_run_ids(app.app_id, gone.version):
            move(tx, run_id, gone.version, latest.version, reason=REDEPLOYED, now=now)
    tx.versions.delete_app_versions(app.app_id, [v.version for v in replaced])
    if latest is not mine:
        return changed, False
    return _put_latest(tx, app, now, mode, version) or changed, True


def _after(versions: Iterable[AppVersion], now: float) -> float:
    """``now``, or just after the newest registration (a clock that has not moved)."""
    newest = max((v.registered_at for v in versions), default=now - 1.0)
    return now if now > newest else newest + 1e-6


def _config(fn: FunctionSpec, version: str | None) -> dict[str, Any]:
    return fn.config if version is None else {**fn.config, registry.VERSION_KEY: version}


def _put_latest(tx: Tx, app: AppSpec, now: float, mode: str, version: str | None) -> bool:
    record = AppRecord(
        app_id=app.app_id,
        url=app.url,
        sdk=app.sdk,
        framework=app.framework,
        synced_at=now,
        checksum=app.checksum,
        mode=mode,
    )
    functions = [
        FunctionRecord(fn.function_id, app.app_id, fn.name, _config(fn, version), now)
        for fn in app.functions
    ]
    return tx.apps.put_app(record, functions)


# -- listing and retiring -----------------------------------------------------------------


def listing(tx: Tx, app_id: str) -> list[dict[str, Any]]:
    """An app's versions, newest first: URL, sync time, latest flag, live runs on each.

    Raises:
        VersionRefusedError: no such app (404).
    """
    versions = tx.versions.list_app_versions(app_id)
    if not versions and tx.apps.get_app(app_id) is None:
        raise VersionRefusedError(f"app {app_id!r} is not registered", 404)
    live = tx.versions.live_runs_by_version(app_id)
    latest = latest_of(versions)
    return [
        {
            "version": v.version,
            "url": v.url,
            "synced_at": v.synced_at,
            "registered_at": v.registered_at,
            "latest": v is latest,
            "live_runs": live.get(v.version, 0),
            "functions": len(v.functions),
        }
        for v in sorted(versions, key=registry.newness, reverse=True)
    ]


def retire(tx: Tx, app_id: str, version: str, *, force: bool, now: float) -> dict[str, Any]:
    """Unregister one version of an app; with ``force`` its live runs move to the latest.

    Raises:
        VersionRefusedError: no such version (404), it is the latest (409), or runs that
            started on it are still live and ``force`` is not set (409, with the count).
    """
    tx.versions.lock_app_versions(app_id)
    versions = {v.version: v for v in tx.versions.list_app_versions(app_id)}
    found = versions.get(version)
    if found is None:
        known = ", ".join(sorted(versions)) or "none"
        raise VersionRefusedError(
            f"app {app_id!r} has no registered version {version!r} (registered: {known})", 404
        )
    latest = latest_of(versions.values())
    assert latest is not None
    if found is latest:
        only = "the only" if len(versions) == 1 else "the latest"
        raise VersionRefusedError(
            f"{version} is {only} version of app {app_id!r}: new runs start on it. Deploy "
            "and sync a newer version first, then retire this one",
            409,
        )
    run_ids = tx.versions.live_run_ids(app_id, version)
    if run_ids and not force:
        count = len(run_ids)
        raise VersionRefusedError(
            f"{count} {'run' if count == 1 else 'runs'} started on {version} "
            f"{'is' if count == 1 else 'are'} still live; retry with ?force=true (CLI: --force) "
            f"to move {'it' if count == 1 else 'them'} to the latest version ({latest.version})",
            409,
            live=count,
        )
    moved = [
        run_id
        for run_id in run_ids
        if move(tx, run_id, version, latest.version, reason=UNREGISTERED, now=now) is not None
    ]
    tx.versions.delete_app_versions(app_id, [version])
    logger.info("retired version %s of app %s (%d runs moved)", version, app_id, len(moved))
    return {"app_id": app_id, "version": version, "moved": len(moved), "to": latest.version}


def known_urls(tx: Tx, app_id: str) -> Sequence[str]:
    """The URLs of every registered version of an app (origins already trusted)."""
    return [v.url for v in tx.versions.list_app_versions(app_id)]
