"""Tollhouse: the front door of paid APIs."""

from __future__ import annotations

from functools import cache


@cache
def _installed_version() -> str:
    # importlib.metadata costs tens of milliseconds to import: only what shows the version
    # pays for it, not every `tollhouse` command that imports a module of this package.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tollhouse")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
