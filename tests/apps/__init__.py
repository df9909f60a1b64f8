"""Apps and servers the tests run: not tests themselves (see tests/README.md)."""
