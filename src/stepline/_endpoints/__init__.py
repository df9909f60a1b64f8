"""Durable endpoints: a web route whose handler is a durable function run inline.

``endpoint.Endpoint`` is the framework-neutral route (each framework package wraps it in
its own idiom); ``inline`` runs the handler inside the request under a lease on the
run's first call, ``checkpoints`` persists each step before the next one runs,
``request``/``response``/``context`` are what the handler sees and returns.
"""
