"""The package version (single source: the installed distribution's metadata)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlmm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
