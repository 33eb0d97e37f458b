"""Browser journeys: a package, so its conftest does not shadow tests/conftest.py as the
module `conftest` (tests import make_settings from it)."""
