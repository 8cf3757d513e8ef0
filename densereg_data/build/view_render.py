"""Rendering the new views of one fitted face (`densereg_data.build.views`, whose docstring gives the
method, steps 1-5): `FaceTurner` (what one face's views share: its source visibility, texture
sources and background anchors) and the source-image sampler (`sample_image`, with its numpy oracle).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from densereg_data import conventions as cv
from densereg_data.build.view_sources import model_facts, sample_image, unoccluded
from densereg_data.errors import ShapeError
from densereg_data.geometry.affine import apply_affine, compose_affine, invert_affine, reduction_affine
from densereg_data.geometry.camera import FLIP_YZ, Camera, rotation_from_pose
from densereg_data.geometry.crop import crop_from_landmarks

log = logging.getLogger(__name__)

__all__ = ["FaceTurner"]

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
#: Anchors on the face outline; far anchors per side of the fixed frame (4 x max(radius, S/2) wide).
N_OUTLINE = 64
N_FAR_SIDE = 8

_OWN, _MIRROR, _STRETCH = 0, 1, 2


# ----------------------------------------------------------------------------------------------------
# one face


class FaceTurner:
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
        self.fitter, self.template, self.facts = labeller.fitter, model.template, model_facts(model)
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
        seen = unoccluded(rasterize(frame, f, (h, w)), f, frame, self.verts, frame, self.verts,
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
        point in the view (`unoccluded`), else VISIBLE; a jaw point (the contour candidate
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
        ok = unoccluded(raster, self.faces, vertices, self.verts, points, at, facts.tolerance * camera.scale, reach)
        r = max(1, int(round(OUTLINE_REACH * t.eye_distance * camera.scale)))
        background = np.pad(~raster.mask, r, constant_values=True)
        for i in contour[~ok[contour]]:
            x, y = (int(np.clip(np.round(v), 0, self.size - 1)) for v in landmarks[i])
            ok[i] = background[y:y + 2 * r + 1, x:x + 2 * r + 1].any()
        return np.where(ok, cv.VISIBLE, cv.OCCLUDED).astype(np.uint8)
