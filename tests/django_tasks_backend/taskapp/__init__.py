"""A Django app whose ``tasks`` module ``SteplineBackend`` discovers (tests/django_tasks)."""
