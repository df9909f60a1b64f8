"""Registration bodies in, validated function specs out; and which functions an event starts.

Everything here is pure: expressions and cron schedules are compiled once, when an
app syncs, so a bad config is a clear 400 at sync time and never a failure at run time.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import fnmatch
import functools
import hashlib
import json
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from stepline import _cel
from stepline._definition import cron as _cron
from stepline._protocol import durations, event_names
from stepline.engine._flow import rules
from stepline.engine._flow.rules import FlowRules, RegistrationError
from stepline.engine._model import YEAR, storable

logger = logging.getLogger("stepline.engine")

if TYPE_CHECKING:
    from stepline.engine._model import FunctionRecord
    from stepline.engine._store import Tx
    from stepline.engine._store.versions import AppVersion

#: The event a cron tick sends.
CRON_EVENT = "inngest/scheduled.timer"
#: Retries when a function does not say (4 retries = 5 attempts), and the cap.
DEFAULT_RETRIES = 4
MAX_RETRIES = 20
_EVENT_VARS = rules.EVENT_VARS
_PAIR_VARS = ("event", "async")
#: the key of a stored function config naming the app version that registered it
VERSION_KEY = "appVersion"
#: the prefix of the ``deployId`` s the engine puts on its own sync PUTs (not versions)
ENGINE_DEPLOY_PREFIX = "stepline-"


@dataclasses.dataclass(frozen=True, slots=True)
class EventTrigger:
    """Start on ``event`` (``*`` wildcards allowed) when ``expression`` holds."""

    event: str
    expression: _cel.Program | None = None

    def matches(self, name: str, event: Mapping[str, Any]) -> bool:
        """Whether an event with this name and payload starts the function."""
        if name != self.event and not ("*" in self.event and fnmatch.fnmatchcase(name, self.event)):
            return False
        return self.expression is None or self.expression.matches({"event": event})


@dataclasses.dataclass(frozen=True, slots=True)
class CronTrigger:
    """Start on each tick of ``schedule``, delayed by a deterministic jitter."""

    schedule: _cron.Schedule
    jitter: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class CancelRule:
    """Cancel a run when ``event`` arrives and ``condition`` holds (within ``timeout``)."""

    event: str
    condition: str | None
    timeout: float
    until: float | None = None

    def expires_at(self, started: float) -> float:
        """When the rule stops applying to a run started at ``started``."""
        return self.until if self.until is not None else started + self.timeout


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One registered function, parsed and compiled."""

    function_id: str
    app_id: str
    name: str
    url: str
    max_attempts: int
    triggers: tuple[EventTrigger, ...]
    crons: tuple[CronTrigger, ...]
    cancel: tuple[CancelRule, ...]
    start_timeout: float | None
    finish_timeout: float | None
    idempotency: _cel.Program | None
    config: dict[str, Any]
    flow: FlowRules = dataclasses.field(default_factory=FlowRules)
    #: the app version that registered it (None: the app declared none)
    version: str | None = None
    #: seconds one call to the app may take (``timeouts.call``; None: the engine's)
    call_timeout: float | None = None
    #: a durable endpoint's function: started only by its endpoint (``event_names``);
    #: from ``triggers``, once (each call the function's runs make asks)
    is_endpoint: bool = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        endpoint = event_names.is_endpoint([t.event for t in self.triggers])
        object.__setattr__(self, "is_endpoint", endpoint)

    @property
    def is_failure_handler(self) -> bool:
        """Triggered by ``inngest/function.failed``/``finished``: emits no such events itself."""
        return any(t.event.startswith("inngest/function.") for t in self.triggers)


@dataclasses.dataclass(frozen=True, slots=True)
class AppSpec:
    """A parsed registration body."""

    app_id: str
    url: str
    sdk: str
    framework: str | None
    functions: tuple[FunctionSpec, ...]
    checksum: str
    #: ``appVersion``, else the sync's ``deployId``; None: the app declared none
    version: str | None = None


def parse_app(
    body: object, *, deploy_url: str | None = None, deploy_id: str | None = None
) -> AppSpec:
    """Validate a ``POST /fn/register`` body (either key casing; py sends ``appname``).

    Its version is the body's ``appVersion``, else ``deploy_id`` (the request's
    ``?deployId=``) unless the engine issued that one for its own sync PUT.

    Raises:
        RegistrationError: a missing field, a bad expression, cron or duration; the
            message names the function and the option.
    """
    if not isinstance(body, dict):
        raise RegistrationError("registration body must be a JSON object")
    if not all(storable(text) for text in _strings(body)):
        raise RegistrationError("registration body must not contain NUL characters")
    lowered = {str(k).lower(): v for k, v in body.items()}
    app_id = lowered.get("appname")
    url = lowered.get("url") or deploy_url
    if not isinstance(app_id, str) or not app_id:
        raise RegistrationError("appName is required")
    if not isinstance(url, str) or not url:
        raise RegistrationError("url is required")
    raw_functions = lowered.get("functions")
    if not isinstance(raw_functions, list):
        raise RegistrationError("functions must be an array")
    # the deployId of a sync belongs on /fn/register's URL, never in the app's (js v4 puts
    # the request's there): the engine would call it, and see a new checksum each sync
    try:  # every call and the move check build on it
        urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise RegistrationError(f"url {url!r} is not a URL: {exc}") from None
    url = _without_deploy_id(url)
    raw_functions = [_function_without_deploy_id(raw) for raw in raw_functions]
    functions = tuple(_parse_function(app_id, url, raw) for raw in raw_functions)
    seen: set[str] = set()
    for fn in functions:
        if fn.function_id in seen:
            raise RegistrationError(f"duplicate function id {fn.function_id!r}")
        seen.add(fn.function_id)
    checksum = hashlib.sha256(
        json.dumps([url, raw_functions], sort_keys=True, default=str).encode()
    ).hexdigest()
    sdk = lowered.get("sdk")
    framework = lowered.get("framework")
    return AppSpec(
        version=_version(lowered.get("appversion"), deploy_id),
        app_id=app_id,
        url=url,
        sdk=sdk if isinstance(sdk, str) else "unknown",
        framework=framework if isinstance(framework, str) else None,
        functions=functions,
        checksum=checksum,
    )


def _version(declared: object, deploy_id: str | None) -> str | None:
    if declared is not None and not isinstance(declared, str):
        raise RegistrationError("appVersion must be a string")
    if declared:
        return declared[:200]
    if deploy_id and not deploy_id.startswith(ENGINE_DEPLOY_PREFIX) and storable(deploy_id):
        return deploy_id[:200]
    return None


def _without_deploy_id(url: str) -> str:
    """``url`` without a ``deployId`` query parameter (unchanged if it cannot be split)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # reported where the URL is checked, with its function's name
        return url
    if "deployId" not in parts.query:
        return url
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "deployId"]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _function_without_deploy_id(raw: object) -> object:
    """A function config whose step runtime URLs carry no ``deployId`` (nor a version)."""
    if isinstance(raw, dict) and VERSION_KEY in raw:  # the engine's own key, never an app's
        raw = {k: v for k, v in raw.items() if k != VERSION_KEY}
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), dict):
        return raw
    cleaned: dict[str, Any] = {}
    for name, step in raw["steps"].items():
        runtime = step.get("runtime") if isinstance(step, dict) else None
        if isinstance(runtime, dict) and isinstance(runtime.get("url"), str):
            url = _without_deploy_id(runtime["url"])
            cleaned[name] = {**step, "runtime": {**runtime, "url": url}}
        else:
            cleaned[name] = step
    return {**raw, "steps": cleaned}


def parse_function(app_id: str, config: Mapping[str, Any]) -> FunctionSpec:
    """Rebuild a spec from a stored config (already validated at sync time)."""
    return _parse_function(app_id, "", dict(config))


def _parse_function(app_id: str, url: str, raw: object) -> FunctionSpec:
    if not isinstance(raw, dict):
        raise RegistrationError("each function must be a JSON object")
    fid = raw.get("id")
    if not isinstance(fid, str) or not fid:
        raise RegistrationError("function id is required")
    where = f"function {fid!r}"
    step = _step(where, raw)
    runtime = step.get("runtime") or {}
    step_url = runtime.get("url") if isinstance(runtime, dict) else None
    if not isinstance(step_url, str) or not step_url:
        step_url = url
    try:  # every call builds on it: one that cannot be split would fail every call
        urllib.parse.urlsplit(step_url)
    except ValueError as exc:
        raise RegistrationError(f"{where}: url {step_url!r} is not a URL: {exc}") from None
    triggers, crons = _triggers(where, raw.get("triggers"))
    retry_config = step.get("retries") or raw.get("retries") or {}
    if not isinstance(retry_config, dict):
        raise RegistrationError(f'{where}: retries must be an object like {{"attempts": 3}}')
    retries = retry_config.get("attempts", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise RegistrationError(f"{where}: retries.attempts must be an integer >= 0")
    timeouts = raw.get("timeouts") or {}
    if not isinstance(timeouts, dict):
        raise RegistrationError(f"{where}: timeouts must be an object")
    cancels = raw.get("cancel") or []
    if not isinstance(cancels, list):
        raise RegistrationError(f"{where}: cancel must be an array")
    idempotency = raw.get("idempotency")
    return FunctionSpec(
        function_id=fid,
        app_id=app_id,
        name=str(raw.get("name") or fid),
        url=step_url,
        max_attempts=min(retries, MAX_RETRIES) + 1,
        triggers=triggers,
        crons=crons,
        cancel=tuple(_cancel(where, c) for c in cancels),
        start_timeout=rules.duration(f"{where}: timeouts.start", timeouts.get("start")),
        finish_timeout=rules.duration(f"{where}: timeouts.finish", timeouts.get("finish")),
        idempotency=rules.expression(f"{where}: idempotency", idempotency, _EVENT_VARS),
        flow=rules.parse_flow(where, raw),
        config={**raw, "url": step_url},
        version=raw[VERSION_KEY] if isinstance(raw.get(VERSION_KEY), str) else None,
        call_timeout=rules.duration(f"{where}: timeouts.call", timeouts.get("call")) or None,
    )


def _strings(value: object) -> Iterable[str]:
    """Every key and string in a JSON document (iteratively: it may be deeply nested)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _step(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    steps = raw.get("steps") or {}
    if not isinstance(steps, dict):
        raise RegistrationError(f"{where}: steps must be an object")
    step: object = steps.get("step") or next(iter(steps.values()), {})
    if not isinstance(step, dict):
        raise RegistrationError(f"{where}: steps.step must be an object")
    return step


def _triggers(where: str, raw: object) -> tuple[tuple[EventTrigger, ...], tuple[CronTrigger, ...]]:
    if not isinstance(raw, list) or not raw:
        raise RegistrationError(f"{where}: triggers must be a non-empty array")
    events: list[EventTrigger] = []
    crons: list[CronTrigger] = []
    for item in raw:
        if not isinstance(item, dict):
            raise RegistrationError(f"{where}: each trigger must be an object")
        if isinstance(item.get("event"), str) and item["event"]:
            expression = rules.expression(
                f"{where}: trigger expression", item.get("expression"), _EVENT_VARS
            )
            events.append(EventTrigger(item["event"], expression))
        elif isinstance(item.get("cron"), str):
            try:
                schedule = _cron.parse(item["cron"])
            except _cron.CronError as exc:
                raise RegistrationError(f"{where}: cron {item['cron']!r}: {exc}") from None
            if any(c.schedule.canonical == schedule.canonical for c in crons):
                raise RegistrationError(f"{where}: duplicate cron {item['cron']!r}")
            jitter = rules.duration(f"{where}: cron jitter", item.get("jitter")) or 0.0
            crons.append(CronTrigger(schedule, jitter))
        else:
            raise RegistrationError(f"{where}: a trigger needs an event or a cron")
    return tuple(events), tuple(crons)


def _cancel(where: str, raw: object) -> CancelRule:
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise RegistrationError(f"{where}: each cancel entry needs an event")
    condition = raw.get("if")
    rules.expression(f"{where}: cancel if", condition, _PAIR_VARS)
    value = raw.get("timeout")
    if isinstance(value, str) and len(value) >= 10 and value[:4].isdigit():
        try:  # an RFC 3339 time rather than a duration
            until = durations.parse_timestamp(value).timestamp()
        except ValueError:
            raise RegistrationError(f"{where}: cancel timeout {value!r} is not a time") from None
        return CancelRule(raw["event"], condition or None, YEAR, until)
    timeout = rules.duration(f"{where}: cancel timeout", value) or YEAR
    return CancelRule(raw["event"], condition or None, timeout)


@functools.lru_cache(maxsize=4096)
def compiled(text: str) -> _cel.Program:
    """A compiled expression, cached by its text (pauses store text, not programs)."""
    return _cel.compile(text)


def key_of(program: _cel.Program | None, event: Mapping[str, Any]) -> str:
    """A flow-control key: the expression's value as JSON (``""`` with no expression).

    An expression that cannot be evaluated for this event (a missing field) gives
    ``"null"``, so such events share one key rather than failing.
    """
    if program is None:
        return ""
    try:
        return json.dumps(program.evaluate({"event": event}), sort_keys=True, default=str)
    except _cel.EvaluationError:
        return "null"


class Versions:
    """Every registered version of every app, as the store had them at the last reload."""

    def __init__(self, versions: Iterable[AppVersion] = ()) -> None:
        self._apps: dict[str, dict[str, AppVersion]] = {}
        for version in versions:
            self._apps.setdefault(version.app_id, {})[version.version] = version
        self._specs: dict[tuple[str, str, str], FunctionSpec | None] = {}

    def of(self, app_id: str) -> dict[str, AppVersion]:
        """The versions of an app (empty for an app registered without one)."""
        return self._apps.get(app_id, {})

    def latest(self, app_id: str) -> AppVersion | None:
        """The version new runs start on."""
        return latest_of(self.of(app_id).values())

    def spec(self, version: AppVersion, function_id: str) -> FunctionSpec | None:
        """A function as ``version`` registered it (parsed once)."""
        key = (version.app_id, version.version, function_id)
        if key not in self._specs:
            config = version.functions.get(function_id)
            spec = None
            if config is not None:
                try:
                    spec = parse_function(version.app_id, config)
                except RegistrationError:  # stored by an older engine: reload skips it too
                    spec = None
            self._specs[key] = spec
        return self._specs[key]


def latest_of(versions: Iterable[AppVersion]) -> AppVersion | None:
    """The newest registration among ``versions``."""
    return max(versions, key=newness, default=None)


def newness(version: AppVersion) -> tuple[float, str]:
    """The order of an app's versions: the latest registration is the greatest."""
    return version.registered_at, version.version


def stored(tx: Tx) -> tuple[list[FunctionRecord], Versions]:
    """The latest registration's functions, and every registered app version."""
    return tx.apps.list_functions(), Versions(tx.versions.list_app_versions())


def built(records: Iterable[FunctionRecord], versions: Versions) -> Registry:
    """The registry of what ``stored`` read; a function whose stored config no longer
    parses (stored by an older version) is logged and left out."""
    specs = []
    for record in records:
        try:
            specs.append(parse_function(record.app_id, record.config))
        except RegistrationError as exc:
            logger.error("skipping function %s: %s", record.function_id, exc)
    return Registry(specs, versions)


class Registry:
    """The functions the engine knows, indexed by trigger event name."""

    def __init__(
        self, functions: Iterable[FunctionSpec] = (), versions: Versions | None = None
    ) -> None:
        #: every registered version of every app (``_versions``)
        self.versions = versions if versions is not None else Versions()
        self._by_id: dict[str, FunctionSpec] = {}
        self._by_event: dict[str, list[tuple[FunctionSpec, EventTrigger]]] = {}
        self._wildcards: list[tuple[FunctionSpec, EventTrigger]] = []
        for fn in functions:
            self._add(fn)

    def _add(self, fn: FunctionSpec) -> None:
        self._by_id[fn.function_id] = fn
        for trigger in fn.triggers:
            if "*" in trigger.event:
                self._wildcards.append((fn, trigger))
            else:
                self._by_event.setdefault(trigger.event, []).append((fn, trigger))

    def get(self, function_id: str) -> FunctionSpec | None:
        """The function with this composite id."""
        return self._by_id.get(function_id)

    def __iter__(self) -> Any:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def triggered_by(self, name: str, event: Mapping[str, Any]) -> list[FunctionSpec]:
        """Functions this event starts (each at most once, even with several triggers)."""
        found: dict[str, FunctionSpec] = {}
        for fn, trigger in [*self._by_event.get(name, ()), *self._wildcards]:
            if fn.function_id not in found and trigger.matches(name, event):
                found[fn.function_id] = fn
        return list(found.values())


def next_cron_fire(trigger: CronTrigger, function_id: str, after: float) -> tuple[float, float]:
    """The next tick after ``after`` and when to fire it (tick plus jitter), in epoch seconds."""
    start = _dt.datetime.fromtimestamp(after, _dt.timezone.utc)
    tick = trigger.schedule.next_after(start)
    fire = tick
    if trigger.jitter:
        fire = _cron.jittered(tick, _dt.timedelta(seconds=trigger.jitter), function_id)
    return tick.timestamp(), fire.timestamp()
