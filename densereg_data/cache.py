"""Where densereg keeps what it derives and may delete at any time: one folder, one rule.

``$DENSEREG_CACHE``, else ``$XDG_CACHE_HOME/densereg``, else ``~/.cache/densereg``. The face models'
derived arrays (`densereg_data.face.cache`) and the rasterizer's compiled kernels
(`densereg_data.raster.jit`) live in subfolders of it; deleting it is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The cache folder (not created here)."""
    base = os.environ.get("DENSEREG_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "densereg" if xdg else Path.home() / ".cache" / "densereg"
