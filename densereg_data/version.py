"""The installed package's version (written into every output densereg makes)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("densereg")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
