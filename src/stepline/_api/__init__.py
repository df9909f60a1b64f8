"""The engine's REST API as the client uses it.

Runs (start, find, wait, cancel), events sent, a run's stream, run control (pause,
bulk actions, signals, attributes, metrics) and the read-only catalog, each written
once as flows of effects. ``EngineConnection`` (``connection``) owns the settings and
transports and runs a flow blocking or async; the handles (``management``, ``bulk``)
act on one run, function or bulk action through it.
"""
