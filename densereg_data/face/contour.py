"""Jaw-contour candidates: where each jaw landmark may slide to on a turned face.

An annotator marks the jaw of a turned face on its visible silhouette, not at a fixed point of the
surface. For each sliding jaw landmark the template keeps a list of candidate vertices on the surface
curve running inward from it; the fit (`densereg_data.face.fit`) picks the outermost one in the image.
"""

from __future__ import annotations

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import TemplateError


def contour_candidates(vertices: np.ndarray, landmark_points: np.ndarray, spec: dict) -> list[np.ndarray]:
    """For each sliding iBUG jaw landmark (spec["landmarks"]), its candidates (`jaw_candidates` with the
    iBUG jaw 0-16 and the nose tip 30 of `landmark_points` (68, 3))."""
    return jaw_candidates(vertices, landmark_points[list(cv.JAW)], landmark_points[30], spec["landmarks"], spec)


def jaw_candidates(vertices: np.ndarray, jaw: np.ndarray, axis_point: np.ndarray, sliding, spec: dict) -> list[np.ndarray]:
    """For each of the jaw points `sliding` (indices into `jaw`), (M_i,) int64 vertex indices on the
    surface curve running inward from it.

    vertices: (V, 3) float64 template frame; jaw: (J, 3) the jaw line's points on the surface, in order
    from one ear to the other; axis_point: (3,) the nose tip, the inward reference; spec: the
    definition's "contour" section: the curve is the slab of half-width "slab_half_width_mm" about the
    plane through the point perpendicular to the jaw line; candidates run from the point up to
    "reach_mm" towards the face's vertical axis and are thinned to at most "max_candidates", the one
    nearest the point first, then inward.
    """
    last = len(jaw) - 1
    out = []
    for i in sliding:
        p = jaw[i]
        tangent = jaw[min(i + 1, last)] - jaw[max(i - 1, 0)]
        tangent /= np.linalg.norm(tangent)
        inward = axis_point - p
        inward[2] = 0.0
        inward -= (inward @ tangent) * tangent
        inward /= np.linalg.norm(inward)
        rel = vertices - p
        along = rel @ inward
        near = (
            (np.abs(rel @ tangent) <= spec["slab_half_width_mm"])
            & (along >= -1.0)
            & (np.linalg.norm(rel, axis=1) <= spec["reach_mm"])
        )
        idx = np.flatnonzero(near)
        if len(idx) == 0:
            raise TemplateError(f"no contour candidates found for jaw point {i}")
        idx = idx[np.argsort(along[idx])]
        # thin to evenly spaced samples along the curve, keeping the one nearest the landmark first
        first = idx[np.argmin(np.linalg.norm(rel[idx], axis=1))]
        pick = np.unique(np.linspace(0, len(idx) - 1, min(len(idx), spec["max_candidates"])).round().astype(int))
        rest = [j for j in idx[pick] if j != first]
        out.append(np.array([first] + rest, dtype=np.int64))
    return out
