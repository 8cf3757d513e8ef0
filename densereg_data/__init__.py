"""densereg_data: dense face correspondence labels (U-V, parts) from 68-point landmarks, as HDF5 shards.

Light to import (numpy only; h5py, menpo and numba load when used). The shard reader is here:

    >>> import densereg_data
    >>> ds = densereg_data.open_shards("shards/", split="train")
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("densereg")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "open_shards", "verify", "info"]

_LAZY = {"open_shards": "densereg_data.format.shards", "verify": "densereg_data.format.verify", "info": "densereg_data.format.verify"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'densereg_data' has no attribute {name!r}")
