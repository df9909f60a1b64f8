"""Event names nobody may send: the engines' own, and durable endpoints' triggers.

``inngest/`` names are the engine's own events (``inngest/function.invoked``,
``inngest/function.finished``, ``inngest/scheduled.timer``...): only the engine emits
them. ``stepline/`` names are Stepline's: a durable endpoint's function is triggered by
``stepline/endpoint.<id>``, and its run's trigger data is the web request the endpoint
recorded, so an event with that name would start the handler on data its sender wrote.
Every intake of events (the event API, ``POST /v1/events``, the client's send and so
``step.send_event``, the outbox) refuses both with ``reserved_problem``'s message; the
engine's own emissions do not go through an intake.

A durable endpoint's function runs only through its endpoint: ``endpoint_only_problem``
is what the engine's start routes, invokes and the web kit answer for one.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ENDPOINT_EVENT",
    "ENGINE_PREFIX",
    "RESERVED_PREFIXES",
    "STEPLINE_PREFIX",
    "endpoint_only_problem",
    "is_endpoint",
    "is_endpoint_trigger",
    "reserved_problem",
]

#: The engine's own events (Inngest's reserved prefix).
ENGINE_PREFIX = "inngest/"
#: Stepline's own events (durable endpoints' triggers).
STEPLINE_PREFIX = "stepline/"
#: The prefixes no intake of events takes.
RESERVED_PREFIXES = (ENGINE_PREFIX, STEPLINE_PREFIX)
#: A durable endpoint's function is triggered by ``f"{ENDPOINT_EVENT}.{id}"``.
ENDPOINT_EVENT = f"{STEPLINE_PREFIX}endpoint"


def reserved_problem(name: str) -> str | None:
    """Why no one may send an event named ``name`` (None: it may be sent)."""
    if name.startswith(ENGINE_PREFIX):
        return (
            f"event names starting with {ENGINE_PREFIX!r} are reserved for the engine's own "
            "events; name yours after your app (e.g. 'shop/order.paid'), and start or invoke "
            "a function through the start API or step.invoke"
        )
    if name.startswith(STEPLINE_PREFIX):
        return (
            f"event names starting with {STEPLINE_PREFIX!r} are reserved for Stepline "
            "(durable endpoints' triggers); name yours after your app (e.g. "
            "'shop/order.paid'), and call a durable endpoint through its web route"
        )
    return None


def is_endpoint_trigger(name: str) -> bool:
    """Whether ``name`` is the trigger of a durable endpoint's function."""
    return name.startswith(f"{ENDPOINT_EVENT}.")


def is_endpoint(trigger_events: Iterable[str]) -> bool:
    """Whether a function with these trigger event names is a durable endpoint's."""
    return any(is_endpoint_trigger(name) for name in trigger_events)


def endpoint_only_problem(function_id: str) -> str:
    """Why ``function_id`` (a durable endpoint's function) cannot be started this way."""
    return (
        f"function {function_id!r} is a durable endpoint's function: it runs only when its "
        "endpoint's web route is called (which records the request and its caller); call "
        "that route instead. Its runs can be followed, cancelled, rerun and replayed as usual"
    )
