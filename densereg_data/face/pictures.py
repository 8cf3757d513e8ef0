"""A face model as pictures: its U-V over the mesh, its parts, landmarks, jaw contour and prior samples.

`frontal_in_pixels`, `view_in_pixels` and `uv_in_pixels` place template points in a square picture so
that the rasterizer (`densereg_data.raster.api`) can draw them; `template_pictures` and
`prior_samples_picture` draw the pictures `densereg-data model show --out` writes (`PICTURES`).

Convention: views
    A view turns the template by `yaw` degrees about its y axis (`geometry.camera.rotation_from_pose`:
    positive yaw turns the nose towards the image right) and projects it orthographically, the face
    looking at the viewer. Shading is Lambertian, a light over the viewer's upper left; surfaces facing
    away from it are dark.
"""

from __future__ import annotations

import colorsys

import numpy as np

from densereg_data.draw import PART_COLOURS, overlay, uv_colour
from densereg_data.face.template import Template

#: The file names `template_pictures` and `prior_samples_picture` draw, in the order written.
PICTURES: tuple[str, ...] = ("template_uv.png", "uv_grid.png", "template_parts.png", "uv_parts.png",
                             "landmarks.png", "contour.png", "prior_samples.png")
#: Fraction of the picture the larger side of the face spans.
FILL = 0.95
#: Fraction of a prior-sample panel the mean shape spans (samples may be larger).
SAMPLE_FILL = 0.8
#: The yaw (degrees) of the side views: the U-V grid, the jaw contour and the prior samples' second row.
SIDE_YAW = 45.0
#: Unit light direction in the viewer's frame (x right, y up, z towards the viewer).
LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])
_LANDMARK = (0, 255, 0)
_SKIN = np.array([225.0, 205.0, 190.0])


def _box_in_pixels(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: int, fill: float) -> np.ndarray:
    scale = fill * size / float(max(hi[:2] - lo[:2]))
    centre = (lo + hi) / 2
    half = (size - 1) / 2
    return np.c_[(points[:, 0] - centre[0]) * scale + half, -(points[:, 1] - centre[1]) * scale + half,
                 -points[:, 2] * scale]


def frontal_in_pixels(vertices: np.ndarray, size: int, fill: float) -> np.ndarray:
    """(V, 3) float64 (x, y, depth) pixels of a frontal orthographic view of `vertices` (V, 3) in the
    template frame, centred in a `size` x `size` image, the larger side of the x-y bounding box spanning
    `fill` * size pixels.

    Convention: template frame (y up, face looking along +z) -> image (y down, smaller depth nearer),
    as `densereg_data.raster.api` expects.
    """
    return _box_in_pixels(vertices, vertices.min(axis=0), vertices.max(axis=0), size, fill)


def view_in_pixels(vertices: np.ndarray, size: int, fill: float, yaw: float = 0.0,
                   reference: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) float64 (x, y, depth) pixels of `vertices` (V, 3) in the template frame turned by `yaw`
    degrees (see the module's Convention), placed as `frontal_in_pixels` places the turned
    `reference` (V', 3) (default: `vertices` themselves), so that several shapes share one scale.

    Convention: template frame -> image as `frontal_in_pixels`; yaw as `rotation_from_pose`.
    """
    from densereg_data.geometry.camera import rotation_from_pose

    turn = rotation_from_pose(yaw, 0.0, 0.0)
    ref = (vertices if reference is None else reference) @ turn.T
    return _box_in_pixels(vertices @ turn.T, ref.min(axis=0), ref.max(axis=0), size, fill)


def uv_in_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """(N, 3) float64 (x, y, depth 0) pixels of U-V points (N, 2) laid out as a `size` x `size` image.

    Convention: u = 0..1 left to right over columns 0..size-1, v = 0..1 bottom to top (row size-1..0),
    the layout of template.h5's U-V grids.
    """
    return np.c_[uv[:, 0] * (size - 1), (1.0 - uv[:, 1]) * (size - 1), np.zeros(len(uv))]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float64 unit outward normals (area-weighted face normals; counter-clockwise faces seen from
    outside, as the template's) of `vertices` (V, 3) and `faces` (F, 3); 0 at unused vertices."""
    v = vertices[faces]
    face_normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normals = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


class _View:
    """One rendered view of a template-frame shape: pixels (V, 3), U-V (H, W, 2), parts (H, W), shade
    (H, W) in [0, 1] and depth (H, W), from `render_uv_parts` and `interpolate`."""

    def __init__(self, template: Template, vertices: np.ndarray, size: int, yaw: float = 0.0,
                 reference: np.ndarray | None = None, fill: float = FILL) -> None:
        from densereg_data.geometry.camera import rotation_from_pose
        from densereg_data.raster.api import interpolate, render_uv_parts

        t = template
        self.pixels = view_in_pixels(vertices, size, fill, yaw, reference)
        raster, self.uv, self.parts = render_uv_parts(self.pixels, t.faces, t.uv, t.face_parts, (size, size))
        normals = vertex_normals(vertices, t.faces) @ rotation_from_pose(yaw, 0.0, 0.0).T
        attributes = np.c_[np.clip(normals @ LIGHT, 0.0, 1.0), self.pixels[:, 2]]
        values = interpolate(raster, t.faces, attributes)
        self.shade, self.depth = values[..., 0], values[..., 1]

    def shaded(self, colour: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8: `colour` ((H, W, 3) uint8, default skin) lit by the shade; black background."""
        base = np.broadcast_to(_SKIN, self.parts.shape + (3,)) if colour is None else colour.astype(np.float64)
        out = base * (0.3 + 0.7 * self.shade[..., None])
        out[self.parts == 0] = 0
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    def visible(self, points: np.ndarray, tolerance: float = 2.0) -> np.ndarray:
        """(n,) bool: which (x, y, depth) pixel points (n, 3) are not hidden by the surface (within
        `tolerance` pixels of depth) and fall on it."""
        h, w = self.parts.shape
        cols = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
        rows = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
        return (self.parts[rows, cols] > 0) & (points[:, 2] <= self.depth[rows, cols] + tolerance)


def _dots(image: np.ndarray, xy: np.ndarray, colours, radius: int) -> np.ndarray:
    """(H, W, 3) uint8: `image` with a filled dot of `radius` pixels centred on the pixel of each (x, y)
    of `xy` (n, 2) (the nearest pixel centre), in one RGB colour or one per point ((n, 3))."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    colours = np.broadcast_to(np.asarray(colours, dtype=np.uint8), (len(xy), 3))
    for (x, y), c in zip(np.round(xy).astype(int), colours):
        draw.ellipse([(x - radius, y - radius), (x + radius, y + radius)], fill=tuple(int(a) for a in c))
    return np.asarray(pil)


def _radius(size: int) -> int:
    """The landmark dot radius in a `size`-pixel picture (about `draw.overlay`'s)."""
    return max(1, round(size / 250))


def _contour_colours(n: int) -> np.ndarray:
    """(n, 3) uint8: one hue per sliding jaw landmark, from one ear round the chin to the other, from
    orange through red and magenta to blue (no green or yellow: those are the landmarks and iso-v lines)."""
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb((1.08 - 0.5 * i / max(n - 1, 1)) % 1.0, 0.9, 1.0)]
                     for i in range(n)], dtype=np.uint8)


def _contour_view(template: Template, view: _View, yaw: float) -> np.ndarray:
    """(H, W, 3) uint8: `view` (of the template turned by `yaw`) shaded, each sliding jaw landmark's
    candidate vertices in its own colour (small dots, only where visible), the 68 landmarks in green."""
    t = template
    image = view.shaded()
    size = image.shape[0]
    r = _radius(size)
    for candidates, colour in zip(t.contour_candidates, _contour_colours(len(t.contour_candidates))):
        points = view.pixels[candidates]
        image = _dots(image, points[view.visible(points), :2], colour, max(1, r - 1))
    landmarks = view_in_pixels(t.landmark_points, size, FILL, yaw, t.vertices)
    return _dots(image, landmarks[view.visible(landmarks), :2], _LANDMARK, r)


def template_pictures(template: Template, size: int = 512) -> dict[str, np.ndarray]:
    """uint8 RGB pictures by file name, of heights `size`:

    - "template_uv.png" (size, size, 3): the frontal view coloured by U-V (red = u, green = v) with
      iso-u (red) and iso-v (yellow) lines every 0.1;
    - "uv_grid.png" (size, 2 size, 3): the shaded mesh with the same U-V lines, frontal and turned by
      `SIDE_YAW`, where seams and stretching show;
    - "template_parts.png" (size, size, 3): the frontal view coloured by part, with the U-V lines;
    - "uv_parts.png" (size, size, 3): the parts laid out in U-V space with the 68 landmarks (green);
    - "landmarks.png" (size, size, 3): the shaded frontal view tinted by part, with the 68 landmarks;
    - "contour.png" (size, 2 size, 3): the jaw-contour candidates (`_contour_view`), frontal and turned
      by `SIDE_YAW`.
    """
    from densereg_data.raster.api import render_uv_parts

    t = template
    front = _View(t, t.vertices, size)
    side = _View(t, t.vertices, size, SIDE_YAW)
    _, uv2, parts2 = render_uv_parts(uv_in_pixels(t.uv, size), t.faces, t.uv, t.face_parts, (size, size))
    landmarks = view_in_pixels(t.landmark_points, size, FILL, 0.0, t.vertices)
    tinted = front.shaded(0.6 * _SKIN + 0.4 * PART_COLOURS[front.parts].astype(np.float64))
    return {
        "template_uv.png": overlay(uv_colour(front.uv, front.parts), front.uv, front.parts, alpha=0.0),
        "uv_grid.png": np.hstack([overlay(v.shaded(), v.uv, v.parts, alpha=0.0) for v in (front, side)]),
        "template_parts.png": overlay(PART_COLOURS[front.parts], front.uv, front.parts, alpha=0.0),
        "uv_parts.png": overlay(PART_COLOURS[parts2], uv2, parts2, landmarks=uv_in_pixels(t.landmark_uv, size)[:, :2],
                                alpha=0.0),
        "landmarks.png": _dots(tinted, landmarks[:, :2], _LANDMARK, _radius(size)),
        "contour.png": np.hstack([_contour_view(t, front, 0.0), _contour_view(t, side, SIDE_YAW)]),
    }


def prior_samples_picture(template: Template, shape_model, size: int = 512, n: int = 4, seed: int = 0) -> np.ndarray:
    """(2 (size // 2), (n + 1) (size // 2), 3) uint8: the prior's centre (a sample at scale 0) and `n`
    shapes drawn from the prior (``shape_model.sample(rng, scale=1.0)``, one generator
    ``np.random.default_rng(seed)`` for all), shaded in panels of size // 2 pixels, frontal on the top
    row and turned by `SIDE_YAW` below, all at the centre's scale (`SAMPLE_FILL`) so that size
    differences show; a grey rule after the centre.

    shape_model: anything with ``sample(rng, scale) -> coefficients`` and ``shape(coefficients) ->
    (V, 3)`` in the template frame (a face model's `shape`).
    """
    rng = np.random.default_rng(seed)
    mean = np.asarray(shape_model.shape(shape_model.sample(np.random.default_rng(seed), scale=0.0)), dtype=np.float64)
    shapes = [mean] + [np.asarray(shape_model.shape(shape_model.sample(rng, scale=1.0)), dtype=np.float64)
                       for _ in range(n)]
    panel = size // 2
    rows = [np.hstack([_View(template, s, panel, yaw, mean, SAMPLE_FILL).shaded() for s in shapes])
            for yaw in (0.0, SIDE_YAW)]
    picture = np.vstack(rows)
    picture[:, panel - 2: panel] = 96  # a grey rule on the right edge of the centre's panels
    return picture
