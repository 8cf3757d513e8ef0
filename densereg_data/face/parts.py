"""The 8 DenseReg face parts of a template's triangles, derived in U-V from the landmarks.

Convention: parts
    One uint8 label per triangle, 1..8 as `conventions.PART_NAMES` (0, background, never occurs on the
    template). A triangle takes the part its U-V centroid falls in: eyes inside the eye contours, brows
    within a band about the brow polylines, nose inside the box from the nose bridge top down to the
    nostrils, lips between the outer and inner lip contours; the rest is rest_of_face.
"""

from __future__ import annotations

import numpy as np

from densereg_data import conventions as cv

#: part name -> uint8 label
PART_LABEL = {name: i + 1 for i, name in enumerate(cv.PART_NAMES)}


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of `points` (n, 2) against a closed `polygon` (m, 2) -> (n,) bool."""
    x, y = points[:, 0:1], points[:, 1:2]
    a, b = polygon, np.roll(polygon, -1, axis=0)
    crosses = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return (crosses & (x < x_at)).sum(axis=1) % 2 == 1


def distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """(n,) distance of `points` (n, 2) to an open polyline `line` (m, 2)."""
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def part_polygons(landmark_uv: np.ndarray, nose_top_landmark: int) -> dict[int, np.ndarray]:
    """U-V polygons (m, 2) of the polygonal parts (eyes, nose, lips), keyed by part label.

    landmark_uv: (68, 2) float64 iBUG landmarks' U-V; the nose box's top edge is at the v of
    `nose_top_landmark` (27, the top of the nose bridge, for DenseReg's parts).
    """
    lm = landmark_uv
    nose_top = lm[nose_top_landmark, 1]
    nose = np.vstack([[lm[31, 0], nose_top], [lm[35, 0], nose_top], lm[[35, 34, 33, 32, 31]]])
    return {
        PART_LABEL["right_eye"]: lm[list(cv.RIGHT_EYE)],
        PART_LABEL["left_eye"]: lm[list(cv.LEFT_EYE)],
        PART_LABEL["nose"]: nose,
        PART_LABEL["upper_lip"]: lm[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]],
        PART_LABEL["lower_lip"]: lm[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]],
    }


def derive_face_parts(uv: np.ndarray, faces: np.ndarray, landmark_uv: np.ndarray, spec: dict) -> np.ndarray:
    """(F,) uint8 part label of each triangle (1..8), from its U-V centroid and the landmark U-V.

    uv: (V, 2); faces: (F, 3) int64; landmark_uv: (68, 2); spec: the definition's "parts" section,
    {"brow_half_width_v": half-width of the brow bands in v, "nose_top_landmark": see `part_polygons`}.
    """
    centroids = uv[faces].mean(axis=1)
    parts = np.full(len(faces), PART_LABEL["rest_of_face"], dtype=np.uint8)
    width = float(spec["brow_half_width_v"])
    for name, idx in (("right_brow", cv.RIGHT_BROW), ("left_brow", cv.LEFT_BROW)):
        parts[distance_to_polyline(centroids, landmark_uv[list(idx)]) <= width] = PART_LABEL[name]
    for part, polygon in part_polygons(landmark_uv, int(spec["nose_top_landmark"])).items():
        parts[points_in_polygon(centroids, polygon)] = part
    return parts
