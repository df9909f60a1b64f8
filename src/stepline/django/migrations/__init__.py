"""Migrations of the ``stepline`` app: the outbox table."""
