"""Rasterization: per-pixel triangle, barycentrics and depth of a mesh in image pixels.

`densereg_data.raster.api` is the interface (`rasterize`, `interpolate`, `face_labels`, `render_uv_parts`,
`Raster`); backends: the fast numba z-buffer (`fast`, with its coverage kernels in `coverage`) and
pyrender/OpenGL (`gl`, optional).
"""

from densereg_data.raster.api import Raster, face_labels, interpolate, rasterize, render_uv_parts  # noqa: F401
