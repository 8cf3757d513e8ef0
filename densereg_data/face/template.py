"""The face template: mesh, U-V, parts, landmark bindings and jaw-contour candidates.

The default template is menpo3d's ``template.ply`` (a face mask with a mouth opening) and its 68 iBUG
landmarks ``template.ljson`` (3D points), described by ``templates/menpo3d_face.json``. Everything here
is derived from that definition, cached on disk under a hash of it (`densereg_data.face.cache`), and
loaded once per process by `load_template`.

Convention: template frame
    Vertices ``(V, 3)`` float64 in millimetres (menpo3d's file is in micrometres and is scaled on load).
    Right-handed, y up, x towards the subject's left (the image right of a frontal face), and the face
    looks along +z (the nose tip has the largest z). Faces ``(F, 3)`` int64 are counter-clockwise seen
    from the front, so outward normals point at a frontal viewer.

Convention: U-V
    ``(V, 2)`` float64 in [0, 1]. u is the arc length around the vertical axis of the best-fit cylinder
    (menpo3d's `optimal_cylindrical_unwrap`) and v the height, each scaled and offset so that the
    template's landmarks sit where DenseReg's released model puts them: jaw ends 0 and 16 at u = 0.110
    and 0.890 (so the midline is u = 0.5 and u grows left to right across a frontal image), the chin (8)
    at v = 0.171 and the outer eye corners (36, 45) at v = 0.701 (v grows upward). Folds of the
    cylindrical map (nose wings, under the chin) are relaxed by a local harmonic (Tutte) solve so that the
    map is one-to-one: every triangle has positive area in U-V. Triangles that leave [0, 1]^2 are
    dropped, so the template *is* the part of the face that U-V covers.

Convention: landmarks
    Each of the 68 landmarks is bound to the surface as a triangle index and barycentric weights (the
    closest surface point to the ljson point), not to the nearest vertex.

Convention: parts
    One uint8 label per triangle, 1..8 as `conventions.PART_NAMES`, derived in U-V from the landmarks:
    eyes inside the eye contours, brows within a band about the brow polylines, nose inside the box from
    the nose bridge top down to the nostrils, lips between the outer and inner lip contours.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.face.cache import cached_arrays
from densereg_data.errors import BackendUnavailableError, TemplateError

log = logging.getLogger(__name__)

#: Bumped whenever the derivation code changes what it computes (part of the cache key and hash).
DERIVATION_VERSION = "template-derivation-4"
DEFAULT_TEMPLATE = "menpo3d-face"


@dataclass(frozen=True, eq=False)
class Template:
    """A face template with everything derived from its definition.

    vertices: (V, 3) float64 mm; faces: (F, 3) int64; uv: (V, 2) float64 in [0, 1];
    face_parts: (F,) uint8 in 1..8; landmark_triangles: (68,) int64; landmark_bary: (68, 3) float64;
    contour_landmarks: the jaw landmark indices that slide along the visible contour;
    contour_candidates: for each of those, (M_i,) int64 vertex indices (the first is nearest the
    landmark's own position), running inward from the jaw line.
    """

    id: str
    hash: str
    units: str
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    face_parts: np.ndarray
    landmark_triangles: np.ndarray
    landmark_bary: np.ndarray
    contour_landmarks: tuple[int, ...]
    contour_candidates: tuple[np.ndarray, ...]
    definition: dict

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise TemplateError(f"template {self.id}: vertices must be (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
        if self.uv.shape != (len(v), 2) or self.face_parts.shape != (len(f),):
            raise TemplateError(f"template {self.id}: uv {self.uv.shape} / face_parts {self.face_parts.shape} do not match the mesh")
        if self.landmark_triangles.shape != (cv.N_LANDMARKS,) or self.landmark_bary.shape != (cv.N_LANDMARKS, 3):
            raise TemplateError(f"template {self.id}: landmark bindings must be (68,) and (68, 3)")
        if len(self.contour_candidates) != len(self.contour_landmarks):
            raise TemplateError(f"template {self.id}: one candidate list per contour landmark expected")
        for a in (self.vertices, self.faces, self.uv, self.face_parts, self.landmark_triangles, self.landmark_bary):
            a.setflags(write=False)

    def barycentric_points(self, attribute: np.ndarray, triangles: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Per-vertex `attribute` (V, C) evaluated at surface points (triangles (n,), bary (n, 3)) -> (n, C)."""
        return np.einsum("nk,nkc->nc", bary, attribute[self.faces[triangles]])

    @functools.cached_property
    def landmark_points(self) -> np.ndarray:
        """(68, 3) float64 mm: the landmarks on the surface."""
        return self.barycentric_points(self.vertices, self.landmark_triangles, self.landmark_bary)

    @functools.cached_property
    def landmark_uv(self) -> np.ndarray:
        """(68, 2) float64: the landmarks' U-V."""
        return self.barycentric_points(self.uv, self.landmark_triangles, self.landmark_bary)

    @property
    def eye_distance(self) -> float:
        """Distance (mm) between the outer eye corners, the normaliser of every template-space error."""
        return cv.eye_distance(self.landmark_points)

    @property
    def landmark_vertex_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(68, 3) vertex indices and (68, 3) weights of the landmark bindings."""
        return self.faces[self.landmark_triangles], self.landmark_bary


# ----------------------------------------------------------------------------------------------------
# loading


@functools.lru_cache(maxsize=4)
def load_template(template_id: str = DEFAULT_TEMPLATE) -> Template:
    """The template `template_id`, derived from its definition (cached on disk and in this process)."""
    from densereg_templates import available, definition_path

    path = definition_path(template_id)
    if not path.exists():
        raise TemplateError(f"unknown template {template_id!r}; available: {', '.join(available())}")
    definition = json.loads(path.read_text())
    digest = hashlib.sha256()
    digest.update(DERIVATION_VERSION.encode())
    digest.update(json.dumps(definition, sort_keys=True).encode())
    for src in (definition["mesh"]["source"], definition["landmarks"]["source"]):
        digest.update(_resolve_source(src).read_bytes())
    key = digest.hexdigest()
    arrays = cached_arrays(f"template-{definition['id']}", key, lambda: _derive(definition, _read_sources(definition)))
    n_contour = len(definition["contour"]["landmarks"])
    offsets = arrays["contour_offsets"]
    return Template(
        id=definition["id"],
        hash=key,
        units=definition["mesh"]["units"],
        vertices=arrays["vertices"],
        faces=arrays["faces"],
        uv=arrays["uv"],
        face_parts=arrays["face_parts"],
        landmark_triangles=arrays["landmark_triangles"],
        landmark_bary=arrays["landmark_bary"],
        contour_landmarks=tuple(int(i) for i in definition["contour"]["landmarks"]),
        contour_candidates=tuple(arrays["contour_flat"][offsets[i] : offsets[i + 1]] for i in range(n_contour)),
        definition=definition,
    )


def _resolve_source(src: str) -> Path:
    """A definition's source: "menpo3d:<asset>" (menpo3d's bundled data, found without importing it) or a path."""
    if not src.startswith("menpo3d:"):
        return Path(src)
    spec = importlib.util.find_spec("menpo3d")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("the face template needs menpo3d: pip install 'densereg[data]'")
    return Path(spec.submodule_search_locations[0]) / "data" / src.split(":", 1)[1]


def _read_sources(definition: dict) -> dict[str, np.ndarray]:
    """Mesh and 3D landmarks from the definition's sources."""
    import warnings

    with warnings.catch_warnings():  # menpo warns about its optional cython warps on import
        warnings.simplefilter("ignore")
        import menpo3d.io as m3io

    mesh_src, lm_src = definition["mesh"]["source"], definition["landmarks"]["source"]
    resolve = _resolve_source
    mesh = m3io.import_mesh(str(resolve(mesh_src)))
    scale = float(definition["mesh"]["scale"])
    ljson = json.loads(resolve(lm_src).read_text())
    points = np.asarray(ljson["groups"][definition["landmarks"]["group"]]["landmarks"]["points"], dtype=np.float64)
    if points.shape != (cv.N_LANDMARKS, 3):
        raise TemplateError(f"{lm_src}: expected 68 3D landmarks, got {points.shape}")
    return {
        "vertices": np.asarray(mesh.points, dtype=np.float64) * scale,
        "faces": np.asarray(mesh.trilist, dtype=np.int64),
        "landmarks": points * scale,
    }


# ----------------------------------------------------------------------------------------------------
# derivation (runs once per definition; cached)


def _derive(definition: dict, sources: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    log.info("deriving template %s (U-V, parts, contour); cached afterwards", definition["id"])
    vertices, faces, points = sources["vertices"], sources["faces"], sources["landmarks"]
    uv = _cylindrical_uv(vertices, points, definition["uv"]["anchors"])
    uv, keep = repair_folds(uv, faces, rings=int(definition["uv"]["fold_repair_rings"]))
    faces = faces[keep]
    if definition["uv"].get("crop_to_unit_square", True):
        vertices, faces, uv = _crop_to_unit_square(vertices, faces, uv)
    triangles, bary = bind_points(vertices, faces, points)
    landmark_uv = np.einsum("nk,nkc->nc", bary, uv[faces[triangles]])
    parts = derive_face_parts(uv, faces, landmark_uv, definition["parts"])
    landmark_points = np.einsum("nk,nkc->nc", bary, vertices[faces[triangles]])
    candidates = _contour_candidates(vertices, landmark_points, definition["contour"])
    offsets = np.cumsum([0] + [len(c) for c in candidates])
    return {
        "vertices": vertices,
        "faces": faces,
        "uv": uv,
        "face_parts": parts,
        "landmark_triangles": triangles,
        "landmark_bary": bary,
        "contour_flat": np.concatenate(candidates).astype(np.int64),
        "contour_offsets": offsets.astype(np.int64),
    }


def _cylindrical_uv(vertices: np.ndarray, landmarks: np.ndarray, anchors: dict) -> np.ndarray:
    """Cylindrical unwrap (menpo3d's) scaled per axis so the anchor landmarks land on their U-V."""
    from menpo.shape import PointCloud
    from menpo3d.unwrap import optimal_cylindrical_unwrap

    unwrap = optimal_cylindrical_unwrap(PointCloud(vertices))
    cyl, cyl_lm = unwrap.apply(vertices), unwrap.apply(landmarks)
    uv = np.empty((len(vertices), 2))
    for axis, name in enumerate(("u", "v")):
        idx = np.array([int(k) for k in anchors[name]])
        target = np.array(list(anchors[name].values()), dtype=np.float64)
        design = np.c_[cyl_lm[idx, axis], np.ones(len(idx))]
        (scale, offset), *_ = np.linalg.lstsq(design, target, rcond=None)
        uv[:, axis] = scale * cyl[:, axis] + offset
    return uv


def uv_signed_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) signed U-V area of each triangle; positive = counter-clockwise with u right and v up."""
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


def _vertex_adjacency(faces: np.ndarray, n_vertices: int):
    from scipy import sparse

    i = faces[:, [0, 1, 2, 1, 2, 0]].ravel()
    j = faces[:, [1, 2, 0, 0, 1, 2]].ravel()
    adj = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    adj.data[:] = 1.0
    return adj


def _boundary_vertices(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(V,) bool: vertices on a boundary edge (an edge used by one triangle only)."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    on_boundary = np.zeros(n_vertices, dtype=bool)
    on_boundary[unique[counts == 1].ravel()] = True
    return on_boundary


def repair_folds(
    uv: np.ndarray, faces: np.ndarray, rings: int = 2, max_rounds: int = 30, min_area_fraction: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Relax folded or collapsed triangles of a U-V map by local harmonic solves.

    A triangle is bad when its signed U-V area is below `min_area_fraction` of the median area (so
    flipped, folded and nearly collapsed triangles all count). The interior vertices of bad triangles,
    grown by `rings` rings, are re-placed at the uniform-weight harmonic (Tutte) solution with every
    other vertex fixed (boundary vertices stay put), growing the region each round. When a round cannot
    help (no interior vertex to move, or no fewer bad triangles than before), the bad triangles that
    touch the mesh boundary (slivers at the edge of the mask) are dropped, moving the boundary inward.

    Returns (uv (V, 2), keep (F,) bool); raises TemplateError if bad triangles remain after `max_rounds`.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    uv = uv.copy()
    keep = np.ones(len(faces), dtype=bool)
    floor = min_area_fraction * np.median(np.abs(uv_signed_areas(uv, faces)))
    grow = rings
    previous = None
    for _ in range(max_rounds):
        kept = faces[keep]
        bad = uv_signed_areas(uv, kept) <= floor
        if not bad.any():
            return uv, keep
        adj = _vertex_adjacency(kept, len(uv))
        degree = np.asarray(adj.sum(axis=1)).ravel()
        boundary = _boundary_vertices(kept, len(uv))
        free = np.zeros(len(uv), dtype=bool)
        free[kept[bad].ravel()] = True
        free &= ~boundary
        if not free.any() or (previous is not None and bad.sum() >= previous):
            # relaxing the inside cannot help: these are slivers on the mask's edge; drop them
            keep[np.flatnonzero(keep)[bad & boundary[kept].any(axis=1)]] = False
            previous = None
            continue
        previous = bad.sum()
        for _ in range(grow):
            free |= (adj @ free.astype(np.float64)) > 0
        free &= ~boundary
        idx = np.flatnonzero(free)
        lap = sparse.diags(degree[idx]) - adj[idx][:, idx]
        rhs = adj[idx][:, ~free] @ uv[~free]
        uv[idx] = np.column_stack([spsolve(lap.tocsc(), rhs[:, k]) for k in range(2)])
        grow += 1
    n_bad = int((uv_signed_areas(uv, faces[keep]) <= floor).sum())
    raise TemplateError(f"U-V fold repair left {n_bad} folded triangles after {max_rounds} rounds")


def _crop_to_unit_square(vertices, faces, uv):
    """Keep the triangles whose three vertices lie in [0, 1]^2 (largest connected piece); reindex."""
    from scipy.sparse.csgraph import connected_components

    inside = np.all((uv >= 0) & (uv <= 1), axis=1)
    faces = faces[inside[faces].all(axis=1)]
    _, comp = connected_components(_vertex_adjacency(faces, len(vertices)), directed=False)
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    main = np.bincount(comp[used]).argmax()
    faces = faces[comp[faces[:, 0]] == main]
    keep = np.zeros(len(vertices), dtype=bool)
    keep[faces.ravel()] = True
    new_index = np.cumsum(keep) - 1
    return vertices[keep], new_index[faces].astype(np.int64), uv[keep]


def bind_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest surface point of each of `points` (n, 3) as (triangle (n,) int64, barycentrics (n, 3))."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    closest, _, triangles = trimesh.proximity.closest_point(mesh, points)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[triangles], closest)
    bary = np.clip(bary, 0.0, 1.0)
    return triangles.astype(np.int64), bary / bary.sum(axis=1, keepdims=True)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of `points` (n, 2) against a closed `polygon` (m, 2) -> (n,) bool."""
    x, y = points[:, 0:1], points[:, 1:2]
    a, b = polygon, np.roll(polygon, -1, axis=0)
    crosses = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return (crosses & (x < x_at)).sum(axis=1) % 2 == 1


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of `points` (n, 2) to an open polyline (m, 2) -> (n,)."""
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def part_polygons(landmark_uv: np.ndarray) -> dict[int, np.ndarray]:
    """U-V polygons of the polygonal parts (eyes, nose, lips), keyed by part label."""
    lm = landmark_uv
    label = {name: i + 1 for i, name in enumerate(cv.PART_NAMES)}
    nose_top = lm[27, 1]
    nose = np.vstack([[lm[31, 0], nose_top], [lm[35, 0], nose_top], lm[[35, 34, 33, 32, 31]]])
    return {
        label["right_eye"]: lm[list(cv.RIGHT_EYE)],
        label["left_eye"]: lm[list(cv.LEFT_EYE)],
        label["nose"]: nose,
        label["upper_lip"]: lm[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]],
        label["lower_lip"]: lm[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]],
    }


def derive_face_parts(uv: np.ndarray, faces: np.ndarray, landmark_uv: np.ndarray, spec: dict) -> np.ndarray:
    """(F,) uint8 part label of each triangle (1..8), from its U-V centroid and the landmark U-V."""
    centroids = uv[faces].mean(axis=1)
    label = {name: i + 1 for i, name in enumerate(cv.PART_NAMES)}
    parts = np.full(len(faces), label["rest_of_face"], dtype=np.uint8)
    width = float(spec["brow_half_width_v"])
    for name, idx in (("right_brow", cv.RIGHT_BROW), ("left_brow", cv.LEFT_BROW)):
        parts[_distance_to_polyline(centroids, landmark_uv[list(idx)]) <= width] = label[name]
    for part, polygon in part_polygons(landmark_uv).items():
        parts[points_in_polygon(centroids, polygon)] = part
    return parts


def _contour_candidates(vertices: np.ndarray, landmark_points: np.ndarray, spec: dict) -> list[np.ndarray]:
    """For each sliding jaw landmark, vertices on the surface curve running inward from it.

    The curve is the slab of half-width `slab_half_width_mm` about the plane through the landmark
    perpendicular to the jaw line; candidates run from the landmark up to `reach_mm` towards the face's
    vertical axis and are thinned to at most `max_candidates`, ordered from the landmark inward.
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


# ----------------------------------------------------------------------------------------------------
# the template as pictures: frontal view and U-V layout, in image pixels


def frontal_in_pixels(vertices: np.ndarray, size: int, fill: float) -> np.ndarray:
    """(V, 3) float64 (x, y, depth) pixels of a frontal orthographic view of `vertices` (V, 3) in the
    template frame, centred in a `size` x `size` image, the larger side of the x-y bounding box spanning
    `fill` * size pixels. Convention: template frame (y up, face looking along +z) -> image (y down,
    smaller depth nearer), as `densereg_data.raster.api` expects."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    scale = fill * size / float(max(hi[:2] - lo[:2]))
    centre = (lo + hi) / 2
    half = (size - 1) / 2
    return np.c_[(vertices[:, 0] - centre[0]) * scale + half, -(vertices[:, 1] - centre[1]) * scale + half,
                 -vertices[:, 2] * scale]


def uv_in_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """(N, 3) float64 (x, y, depth 0) pixels of U-V points (N, 2) laid out as a `size` x `size` image:
    u = 0..1 left to right over columns 0..size-1, v = 0..1 bottom to top."""
    return np.c_[uv[:, 0] * (size - 1), (1.0 - uv[:, 1]) * (size - 1), np.zeros(len(uv))]


# ----------------------------------------------------------------------------------------------------
# facts for consumers of shards (template.h5)


def template_facts(grid: int = 256, template_id: str = DEFAULT_TEMPLATE) -> dict:
    """What a consumer of shards needs to score U-V predictions, without densereg (docs/FORMAT.md).

    Returns landmark_uv (68, 2) float64; uv_to_xyz (G, G, 3) float32, the template position at U-V grid
    point [row, col] with u = col / (G - 1), v = 1 - row / (G - 1), NaN off the face; eye_distance float;
    part_uv (G, G) uint8 (0 off the face); and the attributes template_id, template_hash, units,
    model_size (number of model coefficients).
    """
    from densereg_data.face.shape_model import laplace_beltrami_model
    from densereg_data.raster.api import face_labels, interpolate, rasterize

    t = load_template(template_id)
    if grid < 2:
        raise TemplateError(f"grid must be at least 2, got {grid}")
    raster = rasterize(uv_in_pixels(t.uv, grid), t.faces, (grid, grid))
    xyz = interpolate(raster, t.faces, t.vertices).astype(np.float32)
    xyz[~raster.mask] = np.nan
    return {
        "landmark_uv": t.landmark_uv.copy(),
        "uv_to_xyz": xyz,
        "eye_distance": float(t.eye_distance),
        "part_uv": face_labels(raster, t.face_parts),
        "template_id": t.id,
        "template_hash": t.hash,
        "units": t.units,
        "model_size": int(laplace_beltrami_model(template_id).n_coefficients),
    }
