"""Browser journeys: a package, so its conftest is `browser.conftest` and never shadows
the suite's own `conftest` (which test modules import helpers from)."""
