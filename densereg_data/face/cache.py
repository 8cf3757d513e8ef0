"""On-disk cache of derived arrays (template U-V, parts, model bases), keyed by a content hash.

Files are plain ``.npz`` archives read with ``allow_pickle=False``, in `densereg_data.cache.cache_root`
(deleting it is always safe).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from densereg_data.cache import cache_root

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The cache folder (created on first use)."""
    return cache_root()


def cached_arrays(name: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays stored as ``<name>-<key[:16]>.npz``, computed by `compute` on a miss and written atomically.

    An unreadable cache file (truncated, corrupt) is recomputed, never trusted.
    """
    path = cache_dir() / f"{name}-{key[:16]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache file %s (%s); recomputing", path, exc)
    arrays = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not stop the work
        log.warning("could not write cache file %s (%s)", path, exc)
    return arrays
