"""The rasterizer's two numeric rules, shared by the fast path, the reference and the API (numpy-free)."""

#: Vertices are snapped to 1/256 pixel for the integer z-buffer (as GPUs do): x and y times
#: 2 ** SUBPIXEL_BITS, rounded half to even.
SUBPIXEL_BITS = 8
#: Farther than this from the origin (pixels) the snapped edge functions could overflow int64;
#: meshes with such a vertex (used or not) take the float64 path (same conventions, unsnapped).
FIXED_POINT_LIMIT_PX = float(1 << 22)
