"""A Django app whose ``tasks`` module ``SteplineBackend`` discovers (in these tests)."""
