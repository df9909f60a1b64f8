"""Declaring functions: what a function is before anything runs.

The function and its handle, its triggers (events, cron schedules), its options and
their checks, and the expressions options may use, all validated at decoration time.
"""
