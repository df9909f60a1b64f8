"""Run control on the client (issue 27): pause and resume functions, bulk actions, replay
from a step, signals to runs, run attributes. Each concern is one mixin of ``Client`` over
flows of effects, as ``_management`` does for run management.
"""
