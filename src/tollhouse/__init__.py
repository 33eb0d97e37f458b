"""Tollhouse: the front door of paid APIs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tollhouse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
