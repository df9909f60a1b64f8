"""Observation: the observer between the engine and its metrics, spans and log fields.

The engine reports what happened; nothing here changes what a run does.
"""
