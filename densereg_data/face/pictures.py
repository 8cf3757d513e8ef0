"""A template as pictures: a frontal view and the U-V layout, in image pixels.

Both place template points in a square picture so that the rasterizer (`densereg_data.raster.api`) can
draw them; `template_pictures` draws the three pictures `densereg-data model show --out` writes.
"""

from __future__ import annotations

import numpy as np

from densereg_data.draw import PART_COLOURS, overlay, uv_colour
from densereg_data.face.template import Template


def frontal_in_pixels(vertices: np.ndarray, size: int, fill: float) -> np.ndarray:
    """(V, 3) float64 (x, y, depth) pixels of a frontal orthographic view of `vertices` (V, 3) in the
    template frame, centred in a `size` x `size` image, the larger side of the x-y bounding box spanning
    `fill` * size pixels.

    Convention: template frame (y up, face looking along +z) -> image (y down, smaller depth nearer),
    as `densereg_data.raster.api` expects.
    """
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    scale = fill * size / float(max(hi[:2] - lo[:2]))
    centre = (lo + hi) / 2
    half = (size - 1) / 2
    return np.c_[(vertices[:, 0] - centre[0]) * scale + half, -(vertices[:, 1] - centre[1]) * scale + half,
                 -vertices[:, 2] * scale]


def uv_in_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """(N, 3) float64 (x, y, depth 0) pixels of U-V points (N, 2) laid out as a `size` x `size` image.

    Convention: u = 0..1 left to right over columns 0..size-1, v = 0..1 bottom to top (row size-1..0),
    the layout of template.h5's U-V grids.
    """
    return np.c_[uv[:, 0] * (size - 1), (1.0 - uv[:, 1]) * (size - 1), np.zeros(len(uv))]


def template_pictures(template: Template, size: int = 512) -> dict[str, np.ndarray]:
    """(size, size, 3) uint8 RGB pictures by file name: the frontal view coloured by U-V
    ("template_uv.png") and by part ("template_parts.png"), and the parts laid out in U-V space with
    the landmarks ("uv_parts.png")."""
    from densereg_data.raster.api import render_uv_parts

    t = template
    front = frontal_in_pixels(t.vertices, size, fill=0.95)
    _, uv, parts = render_uv_parts(front, t.faces, t.uv, t.face_parts, (size, size))
    _, uv2, parts2 = render_uv_parts(uv_in_pixels(t.uv, size), t.faces, t.uv, t.face_parts, (size, size))
    landmarks = uv_in_pixels(t.landmark_uv, size)[:, :2]
    return {
        "template_uv.png": overlay(uv_colour(uv, parts), uv, parts, alpha=0.0),
        "template_parts.png": overlay(PART_COLOURS[parts], uv, parts, alpha=0.0),
        "uv_parts.png": overlay(PART_COLOURS[parts2], uv2, parts2, landmarks=landmarks, alpha=0.0),
    }
