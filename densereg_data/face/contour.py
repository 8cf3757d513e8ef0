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
    """For each sliding jaw landmark, (M_i,) int64 vertex indices on the surface curve running inward.

    vertices: (V, 3) float64 template frame; landmark_points: (68, 3) the iBUG landmarks on the surface;
    spec: the definition's "contour" section: "landmarks" (the jaw indices that slide), and the curve is
    the slab of half-width "slab_half_width_mm" about the plane through the landmark perpendicular to
    the jaw line; candidates run from the landmark up to "reach_mm" towards the face's vertical axis and
    are thinned to at most "max_candidates", the one nearest the landmark first, then inward.
    """
    jaw = landmark_points[list(cv.JAW)]
    axis_point = landmark_points[30]  # nose tip: the inward reference
    out = []
    for i in spec["landmarks"]:
        p = jaw[i]
        tangent = jaw[min(i + 1, 16)] - jaw[max(i - 1, 0)]
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
            raise TemplateError(f"no contour candidates found for jaw landmark {i}")
        idx = idx[np.argsort(along[idx])]
        # thin to evenly spaced samples along the curve, keeping the one nearest the landmark first
        first = idx[np.argmin(np.linalg.norm(rel[idx], axis=1))]
        pick = np.unique(np.linspace(0, len(idx) - 1, min(len(idx), spec["max_candidates"])).round().astype(int))
        rest = [j for j in idx[pick] if j != first]
        out.append(np.array([first] + rest, dtype=np.int64))
    return out
