"""The run core: what each outcome does to a run, starts, fan-out of events, waiters."""
