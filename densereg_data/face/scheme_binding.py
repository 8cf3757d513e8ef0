"""Binding a landmark scheme's points to a face model's surface, from real annotations.

A scheme's points that have an iBUG twin (`LandmarkScheme.ibug68`) take the model's own iBUG binding.
The others (WFLW's lower brow edges, middle lid points, in-between contour points and pupils) have no
definition on the model, so they are measured: each real face annotated in the scheme is fitted on its
68 iBUG points; the fitted surface is rasterized where the face is, and each extra point's pixel is read
back as the U-V under it and turned into a template position (`TemplateFacts.xyz`, the mean shape). The
median of those positions over the faces, moved to the closest surface point (`template.bind_points`),
is the point's binding. The result is cached on disk under the model's hash, the scheme and the
annotations used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import FitError, TemplateError
from densereg_data.face.cache import cached_arrays
from densereg_data.face.template import LandmarkBinding, bind_points
from densereg_data.io.annotations import FaceAnnotation
from densereg_data.schemes import LandmarkScheme

log = logging.getLogger(__name__)

__all__ = ["derive_binding", "BINDING_VERSION"]

BINDING_VERSION = "scheme-binding-1"
#: Pixels of margin around a face's landmarks when its fitted surface is rasterized.
MARGIN_PX = 8


def derive_binding(model, scheme: LandmarkScheme, faces: list[FaceAnnotation], min_faces: int = 20) -> tuple[LandmarkBinding, dict]:
    """(binding of the scheme's n points, stats) from `faces` annotated in `scheme` (the module's method).

    Only faces with every point visible are used. stats: {"faces": used, "points": {index: {"faces":
    k, "spread_mm": median distance of the k back-projections to their median}}}. TemplateError when
    fewer than `min_faces` faces can be used.
    """
    usable = [a for a in faces if a.scheme == scheme.name and (a.state == cv.VISIBLE).all()]
    if len(usable) < min_faces:
        raise TemplateError(f"{scheme.name}: {len(usable)} fully visible faces to bind its points, need {min_faces}")
    digest = hashlib.sha256(f"{BINDING_VERSION}:{model.hash}:{json.dumps(asdict(scheme), sort_keys=True)}".encode())
    for a in usable:
        digest.update(a.points.tobytes())
    arrays = cached_arrays(f"binding-{scheme.name}", digest.hexdigest(), lambda: _derive(model, scheme, usable))
    binding = LandmarkBinding(scheme.name, arrays["triangles"], arrays["bary"])
    stats = {"faces": len(usable), "points": {int(i): {"faces": int(k), "spread_mm": round(float(d), 2)}
                                              for i, k, d in zip(scheme.extra, arrays["counts"], arrays["spread"])}}
    return binding, stats


def _derive(model, scheme: LandmarkScheme, faces: list[FaceAnnotation]) -> dict[str, np.ndarray]:
    from densereg_data.format.template_facts import TemplateFacts
    from densereg_data.raster.api import interpolate, rasterize

    t = model.template
    fitter = model.fitter
    facts = TemplateFacts.from_dict(model.facts(256))
    extra = list(scheme.extra)
    samples: list[list[np.ndarray]] = [[] for _ in extra]
    log.info("binding %d %s points to %s from %d faces", len(extra), scheme.name, model.id, len(faces))
    for a in faces:
        try:
            fit = fitter.fit(a.points[list(scheme.ibug68)])
        except FitError:
            continue
        lo = np.floor(np.nanmin(a.points, axis=0)) - MARGIN_PX
        size = np.ceil(np.nanmax(a.points, axis=0) - lo) + MARGIN_PX + 1
        verts = fitter.vertices_in_image(fit) - np.r_[lo, 0.0]
        h, w = int(size[1]), int(size[0])
        if h * w > 4096 * 4096:
            continue
        raster = rasterize(verts, t.faces, (h, w))
        uv = interpolate(raster, t.faces, t.uv)
        cols, rows = np.round(a.points[extra] - lo).astype(int).T
        for j, (c, r) in enumerate(zip(cols, rows)):
            if 0 <= r < h and 0 <= c < w and raster.mask[r, c]:
                samples[j].append(facts.xyz(uv[r, c][None])[0])
    points = np.zeros((scheme.n, 3))
    points[list(scheme.ibug68)] = t.landmark_points
    counts, spread = np.zeros(len(extra), np.int64), np.zeros(len(extra))
    for j, i in enumerate(extra):
        if not samples[j]:
            raise TemplateError(f"{scheme.name} point {i} never fell on the fitted face; it cannot be bound")
        s = np.array(samples[j])
        points[i] = np.median(s, axis=0)
        counts[j], spread[j] = len(s), np.median(np.linalg.norm(s - points[i], axis=1))
    triangles, bary = bind_points(t.vertices, t.faces, points)
    ibug = t.landmarks["ibug68"]
    triangles[list(scheme.ibug68)], bary[list(scheme.ibug68)] = ibug.triangles, ibug.bary  # twins: exactly iBUG's
    return {"triangles": triangles, "bary": bary, "counts": counts, "spread": spread}
