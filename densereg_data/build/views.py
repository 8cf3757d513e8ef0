"""New views of a fitted face with exact labels: 3D face profiling, after 3DDFA's 300W-LP.

`render_views(labeller, image, labels, spec, size, margin)` turns the fitted face of one labelled
sample by each (yaw, pitch) delta of a `ViewSpec` and returns, per delta, the shard sample of the new
view or a skip. U-V, parts and landmarks are exact (rendered from the rotated fitted mesh); the image
is the photo re-projected through that mesh, with the background moved continuously with the head.

How a view is made
1. Pose: ``yaw' = yaw + s * dyaw`` with s the sign of the source yaw (+1 at 0), so positive deltas turn
   the face further towards profile (3DDFA); ``pitch' = pitch + dpitch``; roll and camera scale kept.
   The head turns about a pivot that keeps its image position: on the template's vertical midline
   (x = 0) at the mean height and depth of its outermost vertices (the ears for menpo3d), near where
   the neck's turning and nodding axes meet, so the face swings as a head does, not about the nose.
2. Labels: the view's crop is the one crop rule (`crop_from_landmarks`) around the view's landmarks
   in source-image pixels; U-V and parts are `render_uv_parts` of the rotated mesh in it (what the
   labeller renders); the landmarks are `Fitter.project_landmarks` (the jaw on the new silhouette),
   OCCLUDED where another part of the face lies in front of them.
3. Face texture: each vertex takes a position in the source image: its own projection where the
   source z-buffer shows its front; its mirror vertex's (the template is symmetric about x = 0) where
   it was hidden, or seen at a grazing angle while the mirror was seen clearly; else a blend of the
   nearest textured vertices' (stretching). The raster interpolates these positions (exact per
   triangle: the camera is orthographic); a triangle whose corners come from far-apart places takes
   its nearest corner's, so no streak runs across a mirror seam. Where the view sees the mesh's back
   (the inside of the far cheek through an open mouth) it shows the background layer instead.
4. Background: anchors at a spread of the face's own seen vertices and on the outline of its
   projection in the source (3D points of the fitted mesh), rings around that outline at its depth,
   and a fixed frame of far anchors are triangulated once (Delaunay, in the source image); per view
   the face's anchors turn with the head, the rings' motion fading to none `FOLLOW` face radii beyond
   the outline. The mesh is rasterized with depth: as its border does not move, every pixel inside
   it is covered (folds resolve by depth; what showed through an open mouth moves with the face);
   pixels outside it stay put; the face is drawn over it.
5. One bilinear sample of the source image per output pixel, black beyond the image's edges as in
   the original crop (the image is block-averaged first when the crop shrinks it 2x or more, as
   `warp_crop` does).

Convention: view samples
    Each sample has exactly the arrays of `densereg_data.build.sample.label_sample` (docs/FORMAT.md),
    with ``source`` "" and ``source_size`` (0, 0) for the caller to fill, plus ``view_delta`` (2,)
    float32, the (yaw, pitch) delta in degrees. ``crop_from_image`` maps the pixels of the `image`
    passed in (far background does not move, so it is where the view's crop lies in that image); a
    caller that labelled a reduced image composes it with ``reduced_from_image``, as for the source.
    ``pose`` is (yaw', pitch', roll) as above; ``crop_from_template`` the turned camera in view-crop
    pixels; ``landmark_state`` VISIBLE or OCCLUDED (never MISSING: every point is projected).
"""

from __future__ import annotations

import functools
import logging
import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import ConfigError, ShapeError
from densereg_data.geometry.affine import apply_affine, compose_affine, invert_affine, reduction_affine
from densereg_data.geometry.camera import FLIP_YZ, Camera, rotation_from_pose
from densereg_data.geometry.crop import crop_from_landmarks

log = logging.getLogger(__name__)

__all__ = ["ViewSpec", "render_views", "sample_image", "sample_image_reference",
           "MAX_YAW", "MAX_PITCH", "MAX_HIDDEN", "MAX_VIEWS"]

#: |yaw'| beyond this shows the back of the head, where the fitted face has no surface.
MAX_YAW = 90.0
#: |pitch'| beyond this: the template's forehead or neck border becomes the outline, the brows fall on
#: the eyes, and the jaw contour rule (which slides sideways) no longer finds the silhouette; 300W-LP
#: and AFLW2000-3D hold almost no faces beyond it.
MAX_PITCH = 60.0
#: A view with more of its face pixels stretched (seen neither in the source nor through the mirror)
#: than this teaches mostly smeared texture: skipped. On synthetic prior faces: a frontal face turned to
#: profile stretches about 0.14 (inside the ears, under the jaw), one turned back from yaw 40 or 70 about
#: 0.02 (the mirror was seen); the fraction grows with what the source hid from every side, as under
#: the chin of a face looking down 30 degrees (0.2 at a 45-degree turn, 0.35 at 90).
MAX_HIDDEN = 0.25
#: The most (yaw, pitch) combinations one spec may ask for.
MAX_VIEWS = 64
#: A hidden vertex takes its mirror's texture when the mirror was seen at a |cos| (normal . direction to
#: the camera) of at least GRAZING; a vertex seen at a smaller |cos| takes it when the mirror was seen
#: clearly (|cos| at least MIRROR_CLEAR) and better by GRAZING_MARGIN: a grazing view stretches a thin
#: strip of the photo. Where both sides were grazing (the sides of the head in a frontal photo, a strip
#: folded behind the silhouette) the mirror stretches as much and adds a seam: own or stretched texture.
GRAZING = 0.3
MIRROR_CLEAR = 0.5
GRAZING_MARGIN = 0.15
#: A vertex neither seen nor mirrored takes the inverse-square-distance mean of the source positions of
#: this many nearest seen vertices on the rim of its region (one alone leaves flat-coloured cells).
#: Within SEAM_WIDTH of that rim (x eye distance, about 9 mm) a hidden vertex is stretched even where
#: its mirror was seen: a thin strip folded behind the silhouette then continues its surroundings (its
#: mirror, from the other cheek, often does not: skin in a beard), and a large hidden region meets its
#: mirrored fill along a blend rather than a seam.
STRETCH_NEIGHBOURS = 8
SEAM_WIDTH = 0.1
#: Visibility tests, x the template's eye distance: the depth tolerance (about 1.7 mm for menpo3d),
#: and how close the surface seen at a point's pixel must come to it in 3D to count as the point
#: itself (so a point on a steep stretch of surface near a silhouette is not hidden by its own
#: neighbourhood): a vertex about 4 mm, a landmark about 9 mm, while an occluder such as the nose lies
#: 20-50 mm from the eye and mouth corners it hides.
DEPTH_TOLERANCE = 0.02
VERTEX_REACH = 0.05
LANDMARK_REACH = 0.1
#: A jaw landmark stands for the outline an annotator marks; the fit's contour rule puts it on a nearby
#: stretch of jaw or cheek, which may lie behind the ear or the cheek's bulge (up to about 25 mm away).
#: It is VISIBLE when what the view shows in front of it is that close (x eye distance), or when it
#: lies this close to the face's outline (OUTLINE_REACH); what hides it from further (the chin, the
#: nose, the other half of the face) hides the outline itself.
CONTOUR_REACH = 0.3
OUTLINE_REACH = 0.08
#: Rings of background anchors beyond the face outline, in face radii; their motion with the head
#: fades out (half a cosine) to none at FOLLOW radii.
RINGS = (0.1, 0.25, 0.45, 0.7, 1.0, 1.35, 1.75)
FOLLOW = 1.75
#: Background anchors inside the face, at the face's own seen vertices about this far apart (x eye
#: distance): what shows through the mesh's holes (an open mouth) moves with the face.
INNER_SPACING = 0.12
#: Anchors on the face outline; far anchors per side of the fixed frame (4 x max(radius, S/2) wide).
N_OUTLINE = 64
N_FAR_SIDE = 8

_OWN, _MIRROR, _STRETCH = 0, 1, 2


# ----------------------------------------------------------------------------------------------------
# the spec


def _clip(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _degrees(text: str, flag: str, name: str) -> list[float]:
    body = text.strip()
    if body.lower().startswith(name + "="):
        body = body[len(name) + 1:]
    items = [p.strip() for p in body.split(",")]
    if not all(items):
        raise ConfigError(f"{flag} {_clip(text)}: expected comma-separated degrees like '15,30,45', found an empty value")
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"{flag} {_clip(text)}: {_clip(item)} is not a number of degrees") from None
        if not (math.isfinite(value) and abs(value) <= 90.0):
            raise ConfigError(f"{flag} {_clip(text)}: {_clip(item)} degrees is outside [-90, 90]")
        out.append(value + 0.0)  # -0.0 -> 0.0
    return out


@dataclass(frozen=True)
class ViewSpec:
    """Which new views to render: (yaw_delta, pitch_delta) pairs in degrees, each in [-90, 90], never
    (0, 0), at most `MAX_VIEWS`; stored sorted and unique. A positive yaw delta turns the face further
    towards profile (see the module docstring). Raises ConfigError."""

    deltas: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        try:
            pairs = {(float(y) + 0.0, float(p) + 0.0) for y, p in self.deltas}
        except (TypeError, ValueError):
            got = _clip(repr(self.deltas))
            raise ConfigError(f"--views: deltas must be (yaw, pitch) pairs of degrees, got {got}") from None
        text = ",".join(f"{y:g}:{p:g}" for y, p in sorted(pairs))
        if not pairs:
            raise ConfigError("--views: no view to render (no delta)")
        if any(not (math.isfinite(v) and abs(v) <= 90.0) for pair in pairs for v in pair):
            raise ConfigError(f"--views {_clip(text)}: every delta must be finite degrees in [-90, 90]")
        if (0.0, 0.0) in pairs:
            raise ConfigError(f"--views {_clip(text)}: the delta (0, 0) is the source itself")
        if len(pairs) > MAX_VIEWS:
            raise ConfigError(f"--views {_clip(text)}: {len(pairs)} views per face, at most {MAX_VIEWS}")
        object.__setattr__(self, "deltas", tuple(sorted(pairs)))

    @classmethod
    def parse(cls, yaw: str, pitch: str | None = None) -> "ViewSpec":
        """From the command line: `yaw` "yaw=15,30,45" (or "15,30,45"), `pitch` "0,-15,15" (or
        "pitch=...") or None (0 only): every combination but (0, 0). `yaw` may instead be `to_text`'s
        "yaw:pitch" pairs (`pitch` None). Raises ConfigError, one line naming --views / --views-pitch
        and the value."""
        if not isinstance(yaw, str) or not (pitch is None or isinstance(pitch, str)):
            raise ConfigError(f"--views: expected text like 'yaw=15,30,45', got {type(yaw).__name__}")
        if ":" in yaw:
            if pitch is not None:
                raise ConfigError(f"--views {_clip(yaw)}: 'yaw:pitch' pairs take no --views-pitch (got {_clip(pitch)})")
            combos = set()
            for item in yaw.split(","):
                halves = item.split(":")
                if len(halves) != 2:
                    raise ConfigError(f"--views {_clip(yaw)}: {_clip(item)} is not a 'yaw:pitch' pair")
                combos.add((_degrees(halves[0], "--views", "yaw")[0], _degrees(halves[1], "--views", "pitch")[0]))
        else:
            yaws = set(_degrees(yaw, "--views", "yaw"))
            pitches = {0.0} if pitch is None else set(_degrees(pitch, "--views-pitch", "pitch"))
            combos = {(y, p) for y in yaws for p in pitches}
        combos.discard((0.0, 0.0))
        flag = "--views" if pitch is None else f"--views {_clip(yaw)} --views-pitch"
        shown = _clip(yaw if pitch is None else pitch)
        if not combos:
            raise ConfigError(f"{flag} {shown}: no view to render (every delta is 0)")
        if len(combos) > MAX_VIEWS:
            raise ConfigError(f"{flag} {shown}: {len(combos)} combinations, at most {MAX_VIEWS}")
        return cls(tuple(sorted(combos)))

    def to_text(self) -> str:
        """Canonical text for config.json: sorted "yaw:pitch" pairs, e.g. "15:0,30:-15";
        ``ViewSpec.parse(spec.to_text()) == spec``."""
        return ",".join(f"{y:g}:{p:g}" for y, p in self.deltas)


# ----------------------------------------------------------------------------------------------------
# the one public function


def render_views(labeller, image: np.ndarray, labels, spec: ViewSpec, size: int, margin: float, *,
                 max_hidden: float = MAX_HIDDEN) -> list[dict]:
    """New views of one labelled face: per delta of `spec`, in order, ``{"delta": (yaw, pitch),
    "sample": dict or None, "skip": None or {"kind": str, "reason": str}}``. Never raises on a bad face.

    labeller: the `Labeller` that made `labels`; image: (H, W, 3) uint8, the image it was given;
    labels: its `CropLabels` (with `fit`, in crop pixels); size, margin: the build's crop rule;
    max_hidden: `MAX_HIDDEN`. Skip kinds: "view_pose" (beyond `MAX_YAW` / `MAX_PITCH`), "view_hidden"
    (more than `max_hidden` of the turned face stretched), "view_error" (anything else, with why).

    Convention: view samples (module docstring). The same inputs give byte-identical outputs.
    """
    deltas = list(spec.deltas)
    try:
        poses = [_turned_pose(labels.pose, *d) for d in deltas]
        turning = any(isinstance(p, tuple) for p in poses)
        face = _Face(labeller, image, labels, int(size), float(margin)) if turning else None
    except Exception as exc:  # noqa: BLE001 - a bad face skips its views, never ends a build
        log.debug("cannot turn a face: %s", exc, exc_info=True)
        skip = {"kind": "view_error", "reason": f"cannot turn this face: {type(exc).__name__}: {exc}"}
        return [{"delta": d, "sample": None, "skip": dict(skip)} for d in deltas]
    out = []
    for d, pose in zip(deltas, poses):
        if isinstance(pose, dict):  # beyond the limits: a "view_pose" skip
            out.append({"delta": d, "sample": None, "skip": pose})
            continue
        try:
            sample, skip = face.view(d, pose, max_hidden)
        except Exception as exc:  # noqa: BLE001
            log.debug("view %s failed: %s", d, exc, exc_info=True)
            sample, skip = None, {"kind": "view_error", "reason": f"view {d}: {type(exc).__name__}: {exc}"}
        out.append({"delta": d, "sample": sample, "skip": skip})
    return out


def _turned_pose(pose, dyaw: float, dpitch: float) -> tuple[float, float, float] | dict:
    """(yaw', pitch', roll) in degrees of the source `pose` (3,) turned by (dyaw, dpitch) (module
    docstring, 1), or the "view_pose" skip when that lies beyond `MAX_YAW` / `MAX_PITCH`."""
    yaw, pitch, roll = (float(v) for v in np.asarray(pose, np.float64))
    yaw1 = yaw + (1.0 if yaw >= 0 else -1.0) * dyaw
    pitch1 = pitch + dpitch
    if not abs(yaw1) <= MAX_YAW:
        return {"kind": "view_pose", "reason": f"turns the face to yaw {yaw1:.1f} degrees, beyond the {MAX_YAW:.0f} "
                                               "the fit supports"}
    if not abs(pitch1) <= MAX_PITCH:
        return {"kind": "view_pose", "reason": f"turns the face to pitch {pitch1:.1f} degrees, beyond the "
                                               f"{MAX_PITCH:.0f} views support"}
    return yaw1, pitch1, roll


# ----------------------------------------------------------------------------------------------------
# sampling the source image


def sample_image_reference(image: np.ndarray, xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, 3) uint8 of `image` (h, w, 3) uint8 at the points `affine` (2, 3) maps
    `xy` (n, 2) to, rounded half up; black beyond the image's outer pixel edges (as `warp_crop` pads a
    crop), edge-replicated within them; plain numpy, the oracle of `sample_image` (same float64
    arithmetic in the same order)."""
    h, w = image.shape[:2]
    x = affine[0, 0] * xy[:, 0] + affine[0, 1] * xy[:, 1] + affine[0, 2]
    y = affine[1, 0] * xy[:, 0] + affine[1, 1] * xy[:, 1] + affine[1, 2]
    outside = ~((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5))  # NaN too
    x = np.minimum(np.maximum(np.nan_to_num(x, nan=0.0), 0.0), w - 1.0)
    y = np.minimum(np.maximum(np.nan_to_num(y, nan=0.0), 0.0), h - 1.0)
    fx, fy = x - np.floor(x), y - np.floor(y)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    out = np.empty((len(x), 3), np.uint8)
    for c in range(3):
        top = image[y0, x0, c] * (1.0 - fx) + image[y0, x1, c] * fx
        bottom = image[y1, x0, c] * (1.0 - fx) + image[y1, x1, c] * fx
        out[:, c] = np.minimum(np.floor(top * (1.0 - fy) + bottom * fy + 0.5), 255.0)
    out[outside] = 0
    return out


@functools.cache
def _sample_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(image, xy, affine, out):  # pragma: no cover - numba
        h, w = image.shape[0], image.shape[1]
        for i in range(xy.shape[0]):
            x = affine[0, 0] * xy[i, 0] + affine[0, 1] * xy[i, 1] + affine[0, 2]
            y = affine[1, 0] * xy[i, 0] + affine[1, 1] * xy[i, 1] + affine[1, 2]
            if not (x >= -0.5 and x <= w - 0.5 and y >= -0.5 and y <= h - 0.5):  # beyond the image: black
                for c in range(3):
                    out[i, c] = 0
                continue
            if not x == x:
                x = 0.0
            if not y == y:
                y = 0.0
            x = min(max(x, 0.0), w - 1.0)
            y = min(max(y, 0.0), h - 1.0)
            fx, fy = x - np.floor(x), y - np.floor(y)
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            for c in range(3):
                top = image[y0, x0, c] * (1.0 - fx) + image[y0, x1, c] * fx
                bottom = image[y1, x0, c] * (1.0 - fx) + image[y1, x1, c] * fx
                out[i, c] = np.uint8(min(np.floor(top * (1.0 - fy) + bottom * fy + 0.5), 255.0))

    return kernel


def sample_image(image: np.ndarray, xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """`sample_image_reference`, compiled (numba): (n, 3) uint8."""
    out = np.empty((len(xy), 3), np.uint8)
    _sample_kernel()(np.ascontiguousarray(image), np.ascontiguousarray(xy, np.float64),
                     np.ascontiguousarray(affine, np.float64), out)
    return out


# ----------------------------------------------------------------------------------------------------
# per model


@dataclass(frozen=True, eq=False)
class _ModelFacts:
    """What every face of one model shares: mirror (V,) int64 vertex at (-x, y, z), None when the
    template is not symmetric; pivot (3,) template frame; the visibility tests' tolerance, reach and
    landmark_reach (template units); edges (E, 2) int64 and their median length; normals (V, 3) unit
    vertex normals of the template (for the grazing test; a fitted face's differ little); outline
    (n,) int64 the vertices of the template's 3D convex hull (those that can outline a projection);
    inner (m,) int64 vertices spread over the surface, one per `INNER_SPACING` cube."""

    mirror: np.ndarray | None
    pivot: np.ndarray
    tolerance: float
    reach: float
    landmark_reach: float
    edges: np.ndarray
    edge_length: float
    normals: np.ndarray
    outline: np.ndarray
    inner: np.ndarray


_FACTS: "weakref.WeakKeyDictionary[Any, _ModelFacts]" = weakref.WeakKeyDictionary()


def _model_facts(model) -> _ModelFacts:
    """The `_ModelFacts` of a `FaceModel`, computed once per model object."""
    facts = _FACTS.get(model)
    if facts is None:
        from scipy.spatial import ConvexHull, cKDTree

        t = model.template
        v, f = np.asarray(t.vertices, np.float64), np.asarray(t.faces, np.int64)
        eye = float(t.eye_distance)
        dist, mirror = cKDTree(v).query(v * np.array([-1.0, 1.0, 1.0]))
        symmetric = float(np.median(dist)) < 0.02 * eye
        reach = np.abs(v[:, 0]) >= 0.95 * np.abs(v[:, 0]).max()
        pivot = np.array([0.0, v[reach, 1].mean(), v[reach, 2].mean()])
        edges = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)
        length = float(np.median(np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)))
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        normals = np.zeros_like(v)
        for k in range(3):
            for c in range(3):
                normals[:, c] += np.bincount(f[:, k], n[:, c], minlength=len(v))
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        facts = _FACTS[model] = _ModelFacts(
            mirror=mirror.astype(np.int64) if symmetric else None, pivot=pivot, tolerance=DEPTH_TOLERANCE * eye,
            reach=VERTEX_REACH * eye, landmark_reach=LANDMARK_REACH * eye, edges=edges, edge_length=length,
            normals=normals, outline=np.sort(ConvexHull(v).vertices).astype(np.int64),
            inner=np.sort(np.unique(np.floor(v / (INNER_SPACING * eye)).astype(np.int64), axis=0,
                                    return_index=True)[1]).astype(np.int64))
    return facts


# ----------------------------------------------------------------------------------------------------
# visibility


def _neighbours(shape: tuple[int, int], xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (n, 4) of the four pixels around each point of `xy` (n, 2), edge-clamped."""
    h, w = shape
    x0 = np.clip(np.floor(xy[:, 0]).astype(np.intp), 0, w - 1)
    y0 = np.clip(np.floor(xy[:, 1]).astype(np.intp), 0, h - 1)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    return np.stack([y0, y0, y1, y1], axis=1), np.stack([x0, x1, x0, x1], axis=1)


def _surface_at(raster, faces: np.ndarray, attribute: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``interpolate(raster, faces, attribute)[rows, cols]`` (the same float32 values, +inf on
    background) at a few pixels, without interpolating the whole image. attribute: (V, C)."""
    from densereg_data.raster.api import interpolate

    if rows.size * 8 > raster.triangle.size:  # many pixels: the whole image is cheaper
        image = interpolate(raster, faces, attribute)
        image[~raster.mask] = np.inf
        return image[rows, cols]
    tri = raster.triangle[rows, cols]
    corner = faces[np.maximum(tri, 0)]  # (..., 3)
    bary = raster.bary[rows, cols].astype(np.float64)
    a = np.asarray(attribute, np.float64)
    out = (bary[..., 0:1] * a[corner[..., 0]] + bary[..., 1:2] * a[corner[..., 1]]
           + bary[..., 2:3] * a[corner[..., 2]]).astype(np.float32)  # interpolate's arithmetic
    out[tri < 0] = np.inf
    return out


def _unoccluded(raster, faces: np.ndarray, vertices: np.ndarray, surface: np.ndarray, points: np.ndarray,
                at: np.ndarray, tolerance: float, reach) -> np.ndarray:
    """(n,) bool: nothing of the mesh lies in front of each of `points`.

    raster: of the mesh `faces` with `vertices` (V, 3) px (depth smaller nearer); surface: (V, 3) the
    same vertices in the template frame; points: (n, 3) px (x, y, depth) of the points tested, at:
    (n, 3) their template positions. A point is unoccluded when, at one of the four pixels around it,
    the visible surface is not nearer than its depth - `tolerance` (px), or lies within `reach`
    (template units; a number or (n,)) of it, or that pixel is background.
    """
    rows, cols = _neighbours(raster.triangle.shape, points)
    if rows.size * 8 > raster.triangle.size:  # many points: the depth image's 2 x 2 maxima, one read each
        from densereg_data.raster.api import interpolate

        z = interpolate(raster, faces, vertices[:, 2])
        z[~raster.mask] = np.inf
        z = np.pad(z, ((0, 1), (0, 1)), mode="edge")
        front = np.maximum(np.maximum(z[:-1, :-1], z[:-1, 1:]), np.maximum(z[1:, :-1], z[1:, 1:]))[rows[:, 0], cols[:, 0]]
    else:
        front = _surface_at(raster, faces, vertices[:, 2:3], rows, cols)[..., 0].max(axis=1)  # (n,)
    ok = points[:, 2] <= front + tolerance
    rest = np.flatnonzero(~ok)
    if rest.size:
        where = _surface_at(raster, faces, surface, rows[rest], cols[rest])  # (r, 4, 3)
        reach = np.broadcast_to(reach, len(points))[rest, None]
        ok[rest] = (np.linalg.norm(where - at[rest, None, :], axis=2) <= reach).any(axis=1)
    return ok


# ----------------------------------------------------------------------------------------------------
# one face


class _Face:
    """One labelled face, ready to turn: the fitted shape, its per-vertex source texture positions and
    the background mesh, everything its views share. Frames: "crop" = the source crop's pixels (the
    fit's), "image" = the source image's, "view" = a view crop's."""

    def __init__(self, labeller, image: np.ndarray, labels, size: int, margin: float):
        fit = labels.fit
        if fit is None or fit.camera.kind != "orthographic":
            raise ShapeError("views need the labels' orthographic fit (CropLabels.fit)")
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            raise ShapeError(f"image must be (H, W, 3) uint8, got {getattr(image, 'shape', None)} "
                             f"{getattr(image, 'dtype', None)}")
        from densereg_data.face.template import barycentric

        model = labeller.model
        self.fitter, self.template, self.facts = labeller.fitter, model.template, _model_facts(model)
        self.labels, self.size, self.margin = labels, size, margin
        self.faces = np.asarray(self.template.faces, np.int64)
        self.coefficients = fit.coefficients
        self.camera = fit.camera
        self.verts = np.asarray(self.fitter.model.shape(fit.coefficients), np.float64)  # (V, 3) template frame
        self.image_from_crop = invert_affine(np.asarray(labels.crop_from_image, np.float64))
        src = self.camera.project(self.verts)  # (V, 3) crop px + depth
        self._texture(src)
        self._background(src)
        self._sampling(image, np.asarray(labels.crop_from_image, np.float64))
        lm_vertices, lm_weights = self.template.landmark_vertex_weights
        self.lm_points = barycentric(self.verts, np.asarray(lm_vertices), np.asarray(lm_weights))  # (68, 3)

    def _texture(self, src: np.ndarray) -> None:
        """Per-vertex source position (crop px) and kind; the triangles drawn by their nearest corner."""
        from densereg_data.raster.api import rasterize

        f, facts, scale = self.faces, self.facts, float(self.camera.scale)
        # the source z-buffer, at least 384 px across the mesh (at most 2048)
        lo, hi = src[:, :2].min(axis=0), src[:, :2].max(axis=0)
        extent = max(float((hi - lo).max()), 1e-9)
        m = min(max(1.0, 384.0 / extent), 8.0, 2048.0 / extent)
        frame = np.column_stack([(src[:, :2] - lo) * m + 2.0, src[:, 2] * m])
        h, w = (int(math.ceil(e)) + 5 for e in ((hi - lo)[::-1] * m))
        seen = _unoccluded(rasterize(frame, f, (h, w)), f, frame, self.verts, frame, self.verts,
                           facts.tolerance * scale * m, facts.reach)
        q = facts.normals @ -self.camera.rotation[2]  # cos to the direction of the camera
        seen &= q > -0.1  # not its back (seen through the mouth, say), but grazing at the silhouette
        q = np.abs(q)
        if not seen.any():
            raise ShapeError("no vertex of the fitted face is visible in the source")
        kind = np.where(seen, _OWN, _STRETCH).astype(np.uint8)
        tex = src[:, :2].copy()
        hidden = np.flatnonzero(~seen)
        near_rim = np.zeros(len(seen), bool)
        if hidden.size:  # stretched: from the nearest seen vertices on the rim of the hidden region
            from scipy.spatial import cKDTree

            e = facts.edges
            rim = np.unique(e[seen[e[:, 0]] != seen[e[:, 1]]])
            rim = rim[seen[rim]]
            k = min(STRETCH_NEIGHBOURS, len(rim))
            dist, nearest = cKDTree(self.verts[rim]).query(self.verts[hidden], k=k)
            dist, nearest = dist.reshape(len(hidden), k), nearest.reshape(len(hidden), k)
            w = 1.0 / np.maximum(dist, 1e-6 * facts.edge_length) ** 2
            tex[hidden] = np.einsum("nk,nkc->nc", w / w.sum(axis=1, keepdims=True), tex[rim[nearest]])
            near_rim[hidden] = dist[:, 0] < SEAM_WIDTH * self.template.eye_distance
        if facts.mirror is not None:
            mirror = facts.mirror
            qm = q[mirror]
            take = seen[mirror] & ((~seen & ~near_rim & (qm >= GRAZING))
                                   | ((q < GRAZING) & (qm >= MIRROR_CLEAR) & (qm > q + GRAZING_MARGIN)))
            kind[take] = _MIRROR
            tex[take] = src[mirror[take], :2]
        self.kind = kind
        self.attribute = np.column_stack([tex, kind == _STRETCH]).astype(np.float64)  # (V, 3)
        # torn: corners of different kinds, or (stretched ones) further apart in the source than 4 mesh edges
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        torn = (kind[a] != kind[b]) | (kind[a] != kind[c])
        check = np.flatnonzero(~torn & (kind[a] == _STRETCH))
        ta, tb, tc = tex[a[check]], tex[b[check]], tex[c[check]]
        spread = np.maximum(np.maximum(np.abs(ta - tb), np.abs(ta - tc)), np.abs(tb - tc)).max(axis=1)
        torn[check[spread > 4.0 * facts.edge_length * scale + 1.0]] = True
        self.torn = torn

    def _background(self, src: np.ndarray) -> None:
        """Anchors (crop px; 3D where they follow the head), their weights and their triangles."""
        from scipy.spatial import ConvexHull, Delaunay

        cam, candidates = self.camera, self.facts.outline
        hull = candidates[ConvexHull(src[candidates, :2]).vertices]  # counter-clockwise
        p2, p3, pd = src[hull, :2], self.verts[hull], src[hull, 2]
        seg = np.linalg.norm(np.roll(p2, -1, axis=0) - p2, axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.arange(N_OUTLINE) * cum[-1] / N_OUTLINE  # evenly along the outline
        i = np.clip(np.searchsorted(cum, at, side="right") - 1, 0, len(hull) - 1)
        j = (i + 1) % len(hull)
        a = ((at - cum[i]) / np.maximum(seg[i], 1e-12))[:, None]
        o2, o3, od = p2[i] + a * (p2[j] - p2[i]), p3[i] + a * (p3[j] - p3[i]), pd[i] + a[:, 0] * (pd[j] - pd[i])
        x, y = p2[:, 0], p2[:, 1]
        radius = math.sqrt(0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / math.pi)
        centre = o2.mean(axis=0)
        out = o2 - centre
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        rings2 = [o2 + r * radius * out for r in RINGS]
        rings3 = [(np.column_stack([p, od]) - cam.translation) @ cam.rotation / cam.scale for p in rings2]  # unprojected
        weights = [0.5 * (1.0 + math.cos(math.pi * min(r / FOLLOW, 1.0))) for r in RINGS]
        half = 4.0 * max(radius, self.size / 2.0)
        side = np.linspace(-half, half, N_FAR_SIDE, endpoint=False)
        far = centre + np.concatenate([np.column_stack([side, np.full_like(side, -half)]),
                                       np.column_stack([np.full_like(side, half), side]),
                                       np.column_stack([-side, np.full_like(side, half)]),
                                       np.column_stack([np.full_like(side, -half), -side])])
        inner = self.facts.inner[self.kind[self.facts.inner] == _OWN]  # seen in the source
        self.near3 = np.concatenate([self.verts[inner], o3, *rings3])  # (n, 3) template frame
        self.near_weight = np.concatenate([np.ones(len(inner) + N_OUTLINE), np.repeat(weights, N_OUTLINE)])[:, None]
        self.anchors = np.concatenate([src[inner, :2], o2, *rings2, far])  # (n + far, 2) crop px
        self.triangles = Delaunay(self.anchors).simplices.astype(np.int64)
        self.far_depth = float(cam.project(self.facts.pivot[None])[0, 2]) + 4.0 * radius  # behind the head

    def _sampling(self, image: np.ndarray, crop_from_image: np.ndarray) -> None:
        """The image the views sample (the crop's neighbourhood block-averaged, as `warp_crop`, when
        the crop shrinks the image 2x or more) and the map from crop px to its pixels."""
        a = math.sqrt(abs(float(np.linalg.det(crop_from_image[:, :2]))))
        factor = max(1, int(math.floor(1.0 / a))) if a < 1.0 else 1
        if factor == 1:
            self.sample_image, sample_from_image = image, np.eye(2, 3)
        else:
            from PIL import Image

            h, w = image.shape[:2]
            lo, hi = apply_affine(self.image_from_crop, np.array([[-0.5, -0.5], [self.size - 0.5, self.size - 0.5]]))
            reach = 1.5 * float(hi[0] - lo[0])
            x0 = int(np.clip(math.floor(lo[0] - reach), 0, w - 1)) // factor * factor
            y0 = int(np.clip(math.floor(lo[1] - reach), 0, h - 1)) // factor * factor
            x1 = int(np.clip(math.ceil(hi[0] + reach), x0 + 1, w))
            y1 = int(np.clip(math.ceil(hi[1] + reach), y0 + 1, h))
            region = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
            self.sample_image = np.asarray(region.reduce(factor), np.uint8)
            sample_from_image = compose_affine(reduction_affine(factor), np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]))
        self.sample_from_crop = compose_affine(sample_from_image, self.image_from_crop)

    def view(self, delta: tuple[float, float], pose: tuple[float, float, float],
             max_hidden: float) -> tuple[dict | None, dict | None]:
        """(sample, None) or (None, skip) of the view turned by `delta` (yaw, pitch) degrees to `pose`
        (yaw', pitch', roll), `_turned_pose`'s."""
        from densereg_data.raster.api import interpolate, rasterize, render_uv_parts

        labels, size, cam, faces = self.labels, self.size, self.camera, self.faces
        yaw1, pitch1, roll = pose
        rot = FLIP_YZ @ rotation_from_pose(yaw1, pitch1, roll)
        shift = cam.translation + cam.scale * (cam.rotation - rot) @ self.facts.pivot  # the pivot stays put
        turned = Camera("orthographic", rot, shift, scale=cam.scale)  # crop px
        image_landmarks = apply_affine(self.image_from_crop, self.fitter.project_landmarks(self.coefficients, turned))
        view_from_image = crop_from_landmarks(image_landmarks, size, self.margin)
        view_from_crop = compose_affine(view_from_image, self.image_from_crop)
        k = math.sqrt(abs(float(np.linalg.det(view_from_crop[:, :2]))))
        camera = Camera("orthographic", rot, np.concatenate([apply_affine(view_from_crop, shift[None, :2])[0],
                                                             [k * shift[2]]]), scale=cam.scale * k)
        landmarks = self.fitter.project_landmarks(self.coefficients, camera)
        vertices = camera.project(self.verts)
        raster, uv, parts = render_uv_parts(vertices, faces, self.template.uv, self.template.face_parts, (size, size))
        face = raster.mask
        if not face.any():
            return None, {"kind": "view_error", "reason": "the turned face covers no pixel of its crop"}

        # the face: source positions through the mesh; a torn triangle takes its nearest corner's.
        # Where the mesh shows its back (the inside of the far cheek through an open mouth) the
        # image shows what the source showed through that hole: the background layer.
        att = interpolate(raster, faces, self.attribute)  # (S, S, 3): x, y crop px, stretched
        tri = raster.triangle
        x, y = vertices[:, 0], vertices[:, 1]
        a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
        front = (x[b] - x[a]) * (y[c] - y[a]) - (y[b] - y[a]) * (x[c] - x[a]) < 0  # (F,) the raster's winding rule
        face = face & front[np.maximum(tri, 0)]
        if not face.any():
            return None, {"kind": "view_error", "reason": "the turned face shows only its back"}
        torn = face & self.torn[np.maximum(tri, 0)]
        if torn.any():
            rows, cols = np.nonzero(torn)
            corner = faces[tri[rows, cols], np.argmax(raster.bary[rows, cols], axis=1)]
            att[rows, cols] = self.attribute[corner]
        hidden = float(np.count_nonzero(att[..., 2][face] > 0.5)) / float(np.count_nonzero(face))
        if hidden > max_hidden:
            return None, {"kind": "view_hidden", "reason": f"{hidden:.2f} of the turned face was hidden in the "
                                                            f"source (neither seen nor mirrored), over {max_hidden:.2f}"}

        # the background: near anchors turn with the head, fading out; far anchors stay
        n = len(self.near3)
        near, w = turned.project(self.near3), self.near_weight  # (n, 3) crop px
        moved = np.concatenate([self.anchors[:n] + w * (near[:, :2] - self.anchors[:n]), self.anchors[n:]])
        depth = np.concatenate([w[:, 0] * near[:, 2] + (1.0 - w[:, 0]) * self.far_depth,
                                np.full(len(self.anchors) - n, self.far_depth)])
        back = rasterize(np.column_stack([apply_affine(view_from_crop, moved), k * depth]), self.triangles, (size, size))
        where = interpolate(back, self.triangles, self.anchors).astype(np.float64)  # (S, S, 2) crop px
        if not back.mask.all():  # beyond the far anchors nothing moves
            rows, cols = np.nonzero(~back.mask)
            where[rows, cols] = apply_affine(invert_affine(view_from_crop), np.column_stack([cols, rows]).astype(np.float64))
        where[face] = att[..., :2][face]
        pixels = sample_image(self.sample_image, where.reshape(-1, 2), self.sample_from_crop)

        sample = {
            "image": pixels.reshape(size, size, 3),
            "uv": uv.astype(np.float16),
            "parts": np.asarray(parts, np.uint8),
            "landmarks": landmarks.astype(np.float32),
            "crop_from_image": view_from_image,
            "source": "",
            "source_size": np.zeros(2, np.int32),
            "fit_nme": np.float32(labels.fit_nme),
            "crop_from_template": camera.image_from_template,
            "pose": np.array([yaw1, pitch1, roll], np.float32),
            "coefficients": np.asarray(labels.coefficients, np.float32),
            "expression": np.asarray(labels.expression, np.float32),
            "landmark_state": self._landmark_state(landmarks, camera, raster, vertices),
            "view_delta": np.array(delta, np.float32),
        }
        return sample, None

    def _landmark_state(self, landmarks: np.ndarray, camera: Camera, raster, vertices: np.ndarray) -> np.ndarray:
        """(68,) uint8 OCCLUDED where another part of the face lies in front of the landmark's surface
        point in the view (`_unoccluded`), else VISIBLE; a jaw point (the contour candidate
        `project_landmarks` chose) with `CONTOUR_REACH`, or within `OUTLINE_REACH` of the outline."""
        t, facts = self.template, self.facts
        at = self.lm_points.copy()  # (68, 3) template frame
        contour = np.asarray(t.contour_landmarks, np.intp)
        for i, candidates in zip(contour, t.contour_candidates):  # the candidate chosen
            c = np.asarray(candidates)
            at[i] = self.verts[c[np.argmin(np.linalg.norm(vertices[c, :2] - landmarks[i], axis=1))]]
        points = np.column_stack([landmarks, camera.project(at)[:, 2]])
        reach = np.full(len(at), facts.landmark_reach)
        reach[contour] = CONTOUR_REACH * t.eye_distance
        ok = _unoccluded(raster, self.faces, vertices, self.verts, points, at, facts.tolerance * camera.scale, reach)
        r = max(1, int(round(OUTLINE_REACH * t.eye_distance * camera.scale)))
        background = np.pad(~raster.mask, r, constant_values=True)
        for i in contour[~ok[contour]]:
            x, y = (int(np.clip(np.round(v), 0, self.size - 1)) for v in landmarks[i])
            ok[i] = background[y:y + 2 * r + 1, x:x + 2 * r + 1].any()
        return np.where(ok, cv.VISIBLE, cv.OCCLUDED).astype(np.uint8)
