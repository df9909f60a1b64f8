"""Flow control: a function's rules, whether and when an event starts a run, and leases.

``rules`` parses a function's config (pure); ``admission`` decides at fan-out (skip or
gather); ``pacing`` times a new run's first call (throttle, priority) and fixes its
concurrency keys; ``limits`` is the rate arithmetic; ``concurrency`` is enforced when a
call is leased.
"""
