"""The engine's REST API as the client uses it.

Runs (start, find, wait, cancel), events sent, a run's stream, run control (pause,
bulk actions, signals, attributes, metrics) and the read-only catalog, each written
once as flows of effects that the sync and async faces drive.
"""
