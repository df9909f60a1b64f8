"""The Django admin's Stepline sections (``stepline.django.admin`` registers them)."""
