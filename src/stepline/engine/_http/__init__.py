"""The engine's HTTP surface: the API app, who may call it, the dashboard and the JSON views.

Everything here drives an ``Engine`` (``engine/_engine.py``); nothing below the engine imports
this package.
"""
