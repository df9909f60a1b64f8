"""Durable endpoints: runs whose first call executes inside the app's web request.

The app starts the run and holds its first call's lease (``inline.InlineRuns.start``),
checkpoints each step under that lease, then answers the call as an SDK would answer
the engine. A lapsed lease hands the call back to the queue: the engine resumes the run
on the app's serve endpoint from the checkpoints.
"""
