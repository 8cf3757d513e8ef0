"""Rasterization: per-pixel triangle, barycentrics and depth of a mesh in image pixels.

`densereg_data.raster.api` is the interface (`rasterize`, `interpolate`, `face_labels`,
`render_uv_parts`, `Raster`) and holds the conventions. Modules, top down:
- `api`: the record, the backend registry, the public functions; `validate`: input checks, errors;
- `cpu`: the "cpu" backend's driver (memory, bands of rows on threads, which path);
- `fast` (fixed-point z-buffer) with `coverage` (its vectorized coverage passes), `float64` (the
  far-vertex path), `jit` (numba compilation and its source-keyed disk cache), `constants`;
- `reference`: the same rules in plain numpy, the oracle `fast` equals bit for bit;
- `gl`: pyrender/OpenGL (optional), a cross-check.
"""

from densereg_data.raster.api import Raster, face_labels, interpolate, rasterize, render_uv_parts  # noqa: F401
