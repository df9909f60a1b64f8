"""Scaffolding the test suites share (not tests themselves).

- ``polling``: ``wait_until`` / ``await_until``, the one bounded poll loop.
- ``processes``: free ports, a clean environment, and child processes (an example app, an
  engine) spawned with their output in a log file, polled until they answer, and stopped.
- ``refusing``: a localhost URL where a connection is refused at once (held all session).
- ``server_thread``: uvicorn serving an ASGI app from a thread of the test process.
"""
