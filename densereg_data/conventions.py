"""The one page everyone reads: every coordinate rule of densereg, in one place, for both halves.

Light (numpy only); `densereg_net` imports it too. `encode_bins` / `decode_bins` take numpy arrays or
torch tensors alike (the network's losses use the very same rule as the tests that pin it).

Convention: 2D points
    ``(n, 2)`` float64, (x, y) = (column, row), in pixels, 0-based. An integer coordinate is a pixel
    *centre*: the point (x=3, y=1) lies at the centre of ``image[1, 3]``. The image's top-left corner
    is at (-0.5, -0.5). Anything in (row, col) order is named ``rc``/``rows``/``cols``.

Convention: landmark files on disk
    ``.pts`` files are 1-based: "1 1" is the centre of the top-left pixel and reads as (0, 0) in memory
    (`PTS_ORIGIN` is subtracted on read and added on write). ``.ljson`` (menpo) stores (y, x) = (row,
    col), 0-based, and is converted to (x, y) on read.

Convention: image and camera frame
    Images are ``(H, W, 3)`` uint8 RGB in numpy; sizes are ``(height, width)``. The image frame is
    right-handed: x right, y down, z = depth into the scene. A smaller depth is nearer the camera; the
    rasterizer keeps, per pixel, the triangle of smallest depth.

Convention: template
    See `densereg_data.face.template`: vertices ``(V, 3)`` float64 in the template's own units, faces
    ``(F, 3)`` int64; right-handed, y up, the face looks along +z; triangles are counter-clockwise seen
    from the front (outward normals point at the viewer).

Convention: U-V
    ``(V, 2)`` in [0, 1]: u runs across the face, left to right as the face is seen in a frontal image
    (from the subject's right to the subject's left) and is symmetric about 0.5 on the midline; v runs
    upward (chin about 0.17, brows about 0.8), as in DenseReg's released model. In images, U-V is 0 on
    background pixels, which are told apart by ``parts == 0`` (or ``mask == False``).

Convention: quantized regression (DenseReg)
    With K bins per axis, ``bin = min(floor(K u), K - 1) + 1`` (class 0 is background) and
    ``residual = K u - (bin - 1)`` in [0, 1]; decoding is ``u = (bin - 1 + residual) / K``.

Convention: parts
    uint8, 0 = background, 1..8 = `PART_NAMES` in that order. "left"/"right" are the *subject's*:
    the subject's right eye appears on the image left of a frontal face.

Convention: landmark numbering
    The 68 iBUG points, 0-based in code (the 300-W papers use 1-based numbers: the outer eye corners
    "37 and 46" are indices 36 and 45 here).
"""

from __future__ import annotations

import numpy as np

#: Added to 0-based in-memory coordinates when writing .pts, subtracted when reading.
PTS_ORIGIN = 1.0

N_LANDMARKS = 68
#: Landmark coordinates farther than this from the image origin (pixels) are refused when read and
#: when fitted: no image is that large, and near float64's range the fit's sums overflow.
LANDMARK_LIMIT_PX = 1e7

#: The 8 DenseReg face parts, label = index + 1 (0 is background). Subject's left/right.
PART_NAMES: tuple[str, ...] = (
    "right_brow",
    "left_brow",
    "right_eye",
    "left_eye",
    "nose",
    "upper_lip",
    "lower_lip",
    "rest_of_face",
)
BACKGROUND = 0
#: Part classes including background (the network's part head has this many outputs).
N_PARTS = len(PART_NAMES) + 1

#: Horizontal flip of a face image swaps these part labels (1-based labels).
PART_FLIP: tuple[int, ...] = (0, 2, 1, 4, 3, 5, 6, 7, 8)

#: Per-point landmark states (datasets mark occlusion): MISSING has no position (self-occluded, not
#: annotated, outside the mark-up); OCCLUDED is placed where the annotator estimated it behind an
#: occluder; VISIBLE is seen. Stored as uint8.
MISSING, VISIBLE, OCCLUDED = 0, 1, 2
LANDMARK_STATES = {"missing": MISSING, "visible": VISIBLE, "occluded": OCCLUDED}

#: DenseReg's number of bins per U-V axis.
DEFAULT_K = 10

#: Outer eye corners (0-based iBUG indices): the 300-W normalisation distance.
OUTER_EYE_CORNERS = (36, 45)

#: iBUG 68-point index groups (0-based).
JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BASE = tuple(range(31, 36))
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))

#: iBUG 68-point index of each point's mirror image (horizontal flip).
LANDMARK_FLIP: tuple[int, ...] = (
    tuple(range(16, -1, -1))  # jaw
    + tuple(range(26, 21, -1)) + tuple(range(21, 16, -1))  # brows
    + (27, 28, 29, 30)  # nose bridge
    + (35, 34, 33, 32, 31)  # nose base
    + (45, 44, 43, 42, 47, 46)  # right eye <- left eye
    + (39, 38, 37, 36, 41, 40)  # left eye <- right eye
    + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)  # outer lips
    + (64, 63, 62, 61, 60, 67, 66, 65)  # inner lips
)


def eye_distance(landmarks: np.ndarray) -> float:
    """Outer-eye-corner distance of 68 points, the 300-W normaliser.

    landmarks: (68, 2) or (68, 3) float64.
    """
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(landmarks[a] - landmarks[b]))


def _is_numpy(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic, float, int, list, tuple))


def encode_bins(u, k: int = DEFAULT_K):
    """U-V value in [0, 1] -> (bin in 1..K, residual in [0, 1]); numpy arrays or torch tensors.

    Convention: bin = min(floor(K u), K - 1) + 1, residual = K u - (bin - 1); u = 1 falls in bin K
    with residual 1. Background handling is the caller's (bin 0). numpy: (int64 bins, float64
    residuals); torch: (int64 bins, residuals in u's dtype).
    """
    if _is_numpy(u):
        u = np.asarray(u, dtype=np.float64)
        b = np.minimum(np.floor(u * k), k - 1).astype(np.int64) + 1
        return b, u * k - (b - 1)
    b = (u * k).floor().clamp(max=k - 1).long() + 1
    return b, u * k - (b - 1).to(u.dtype)


def decode_bins(bins, residual, k: int = DEFAULT_K):
    """(bin in 1..K, residual) -> U-V value ``(bin - 1 + residual) / K``; the inverse of `encode_bins`."""
    if _is_numpy(residual):
        return (np.asarray(bins, dtype=np.float64) - 1 + np.asarray(residual, dtype=np.float64)) / k
    return ((bins - 1).to(residual.dtype) + residual) / k
