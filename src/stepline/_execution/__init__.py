"""Running a function for one call of the engine.

Memoized replay and the call's outcome (``call``), the step tools, the context a
function receives, checkpoints, what it publishes on its stream, step timeouts,
divergence from the recorded history and tracing.
"""
