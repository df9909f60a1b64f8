"""``tests.apps.django_kit_functions`` under the name ``tests/endpoints`` gives in its
``STEPLINE["FUNCTIONS"]`` setting."""

from tests.apps.django_kit_functions import make

__all__ = ["make"]
