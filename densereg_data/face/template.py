"""A face template: mesh, U-V, parts, landmark bindings and jaw-contour candidates, as one record.

`Template` is the surface a face model deforms. `load_template` derives one from a JSON definition in
``templates/`` (package `densereg_templates`): its mesh and 3D landmark sources, U-V unwrap
(`densereg_data.face.uv_unwrap`), parts (`.parts`) and jaw contour (`.contour`). The derived arrays are
cached on disk (`densereg_data.face.cache`) under the template's hash, a sha256 of the derivation
version, the definition and the bytes of its sources, and once per process.

Convention: template frame
    Vertices ``(V, 3)`` float64 in the template's `units` (menpo3d's file is in micrometres and is
    scaled to mm on load). Right-handed, y up, x towards the subject's left (the image right of a
    frontal face), and the face looks along +z (the nose tip has the largest z). Faces ``(F, 3)`` int64
    are counter-clockwise seen from the front, so outward normals point at a frontal viewer.

Convention: landmarks
    Each landmark of a scheme (``"ibug68"``: the 68 iBUG points) is bound to the surface as a triangle
    index and barycentric weights (the closest surface point to the definition's 3D point), not to the
    nearest vertex.

U-V and parts follow the conventions of `densereg_data.face.uv_unwrap` and `densereg_data.face.parts`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import BackendUnavailableError, TemplateError
from densereg_data.face.cache import cached_arrays
from densereg_data.face.contour import contour_candidates
from densereg_data.face.parts import derive_face_parts
from densereg_data.face.uv_unwrap import UNWRAP_METHODS, crop_to_unit_square, cylindrical_uv, repair_folds

log = logging.getLogger(__name__)

#: Bumped whenever the derivation code changes what it computes (part of the cache key and hash).
DERIVATION_VERSION = "template-derivation-4"
#: The landmark scheme the fit uses (the 68 iBUG points, `conventions.N_LANDMARKS`).
LANDMARK_SCHEME = "ibug68"
#: The frame every template is converted into on load (see the module's Convention).
FRAME = "right-handed, y up, x to the subject's left, face looks along +z; triangles CCW from the front"


@dataclass(frozen=True, eq=False)
class LandmarkBinding:
    """Landmarks of one scheme bound to the surface: triangles (n,) int64, bary (n, 3) float64 summing to 1."""

    scheme: str
    triangles: np.ndarray
    bary: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.triangles)
        if self.triangles.shape != (n,) or self.bary.shape != (n, 3):
            raise TemplateError(f"landmark binding {self.scheme}: triangles must be (n,) and bary (n, 3), "
                                f"got {self.triangles.shape} and {self.bary.shape}")
        for a in (self.triangles, self.bary):
            a.setflags(write=False)


@dataclass(frozen=True, eq=False)
class Template:
    """A face template with everything derived from its definition.

    vertices: (V, 3) float64 in `units`; faces: (F, 3) int64; uv: (V, 2) float64 in [0, 1];
    face_parts: (F,) uint8 in 1..8; landmarks: scheme -> LandmarkBinding (``"ibug68"`` is required:
    the fit's); contour_landmarks: the iBUG jaw indices that slide along the visible contour;
    contour_candidates: for each of those, (M_i,) int64 vertex indices (the first nearest the landmark's
    own position), running inward from the jaw line; definition: the JSON definition it came from.
    """

    id: str
    hash: str
    units: str
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    face_parts: np.ndarray
    landmarks: Mapping[str, LandmarkBinding]
    contour_landmarks: tuple[int, ...]
    contour_candidates: tuple[np.ndarray, ...]
    definition: dict

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise TemplateError(f"template {self.id}: vertices must be (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
        if self.uv.shape != (len(v), 2) or self.face_parts.shape != (len(f),):
            raise TemplateError(f"template {self.id}: uv {self.uv.shape} / face_parts {self.face_parts.shape} do not match the mesh")
        ibug = self.landmarks.get(LANDMARK_SCHEME)
        if ibug is None or ibug.triangles.shape != (cv.N_LANDMARKS,):
            raise TemplateError(f"template {self.id}: a {LANDMARK_SCHEME} binding of {cv.N_LANDMARKS} landmarks is required")
        if len(self.contour_candidates) != len(self.contour_landmarks):
            raise TemplateError(f"template {self.id}: one candidate list per contour landmark expected")
        for a in (self.vertices, self.faces, self.uv, self.face_parts, *self.contour_candidates):
            a.setflags(write=False)
        object.__setattr__(self, "landmarks", dict(self.landmarks))

    def barycentric_points(self, attribute: np.ndarray, binding: LandmarkBinding) -> np.ndarray:
        """Per-vertex `attribute` (V, C) evaluated at a binding's surface points -> (n, C)."""
        return barycentric(attribute, self.faces[binding.triangles], binding.bary)

    @functools.cached_property
    def landmark_points(self) -> np.ndarray:
        """(68, 3) float64: the iBUG landmarks on the surface, in `units`."""
        return self.barycentric_points(self.vertices, self.landmarks[LANDMARK_SCHEME])

    @functools.cached_property
    def landmark_uv(self) -> np.ndarray:
        """(68, 2) float64: the iBUG landmarks' U-V."""
        return self.barycentric_points(self.uv, self.landmarks[LANDMARK_SCHEME])

    @property
    def eye_distance(self) -> float:
        """Distance (in `units`) between the outer eye corners, the normaliser of every template-space error."""
        return cv.eye_distance(self.landmark_points)

    @property
    def landmark_vertex_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(68, 3) int64 vertex indices and (68, 3) float64 weights of the iBUG landmark bindings."""
        b = self.landmarks[LANDMARK_SCHEME]
        return self.faces[b.triangles], b.bary


@functools.lru_cache(maxsize=4)
def load_template(template_id: str) -> Template:
    """The template `template_id` (e.g. "menpo3d-face"), derived from its definition (cached on disk
    and in this process); TemplateError listing the known ids for an unknown one."""
    from densereg_templates import available, definition_path

    path = definition_path(template_id)
    if not path.exists():
        raise TemplateError(f"unknown template {template_id!r}; available: {', '.join(available())}")
    definition = json.loads(path.read_text())
    if "mesh" not in definition:
        raise TemplateError(f"template {template_id!r} is built from a face model's own files: load it with "
                            f"densereg_data.face.models.load_face_model('{definition.get('model', '?')}:PATH')")
    key = template_hash(definition)
    arrays = cached_arrays(f"template-{definition['id']}", key, lambda: _derive(definition, _read_sources(definition)))
    return template_from_arrays(definition, key, definition["mesh"]["units"], arrays)


def template_from_arrays(definition: dict, key: str, units: str, arrays: dict[str, np.ndarray]) -> Template:
    """The Template of `derive_surface`'s arrays (and the mesh's "vertices", "faces", "uv")."""
    n_contour = len(definition["contour"]["landmarks"])
    offsets = arrays["contour_offsets"]
    return Template(
        id=definition["id"],
        hash=key,
        units=units,
        vertices=arrays["vertices"],
        faces=arrays["faces"],
        uv=arrays["uv"],
        face_parts=arrays["face_parts"],
        landmarks={LANDMARK_SCHEME: LandmarkBinding(LANDMARK_SCHEME, arrays["landmark_triangles"], arrays["landmark_bary"])},
        contour_landmarks=tuple(int(i) for i in definition["contour"]["landmarks"]),
        contour_candidates=tuple(arrays["contour_flat"][offsets[i] : offsets[i + 1]] for i in range(n_contour)),
        definition=definition,
    )


def template_hash(definition: dict) -> str:
    """sha256 hex of what a template derives from: DERIVATION_VERSION, the definition, its source files."""
    digest = hashlib.sha256()
    digest.update(DERIVATION_VERSION.encode())
    digest.update(json.dumps(definition, sort_keys=True).encode())
    for src in (definition["mesh"]["source"], definition["landmarks"]["source"]):
        digest.update(_resolve_source(src).read_bytes())
    return digest.hexdigest()


def _resolve_source(src: str) -> Path:
    """A definition's source: "menpo3d:<asset>" (menpo3d's bundled data, found without importing it) or a path."""
    if not src.startswith("menpo3d:"):
        return Path(src)
    spec = importlib.util.find_spec("menpo3d")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("the face template needs menpo3d: pip install 'densereg[data]'")
    return Path(spec.submodule_search_locations[0]) / "data" / src.split(":", 1)[1]


def _read_sources(definition: dict) -> dict[str, np.ndarray]:
    """Mesh and 3D landmarks from the definition's sources, scaled to its units."""
    import warnings

    with warnings.catch_warnings():  # menpo warns about its optional cython warps on import
        warnings.simplefilter("ignore")
        import menpo3d.io as m3io

    mesh_src, lm_src = definition["mesh"]["source"], definition["landmarks"]["source"]
    mesh = m3io.import_mesh(str(_resolve_source(mesh_src)))
    scale = float(definition["mesh"]["scale"])
    ljson = json.loads(_resolve_source(lm_src).read_text())
    points = np.asarray(ljson["groups"][definition["landmarks"]["group"]]["landmarks"]["points"], dtype=np.float64)
    if points.shape != (cv.N_LANDMARKS, 3):
        raise TemplateError(f"{lm_src}: expected 68 3D landmarks, got {points.shape}")
    return {
        "vertices": np.asarray(mesh.points, dtype=np.float64) * scale,
        "faces": np.asarray(mesh.trilist, dtype=np.int64),
        "landmarks": points * scale,
    }


def _derive(definition: dict, sources: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The template's arrays from its definition and sources (runs once per definition; cached)."""
    log.info("deriving template %s (U-V, parts, contour); cached afterwards", definition["id"])
    vertices, faces, points = sources["vertices"], sources["faces"], sources["landmarks"]
    spec = definition["uv"]
    if spec["method"] not in UNWRAP_METHODS:
        raise TemplateError(f"template {definition['id']}: unknown U-V method {spec['method']!r}; valid: {', '.join(UNWRAP_METHODS)}")
    uv = cylindrical_uv(vertices, points, spec["anchors"])
    uv, keep = repair_folds(uv, faces, rings=int(spec["fold_repair_rings"]))
    faces = faces[keep]
    if spec["crop_to_unit_square"]:
        vertices, faces, uv = crop_to_unit_square(vertices, faces, uv)
    return derive_surface(definition, vertices, faces, uv, points)


def derive_surface(definition: dict, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray,
                   points: np.ndarray) -> dict[str, np.ndarray]:
    """What every template derives from a mesh with its U-V, whatever the U-V's source (an unwrap here, a
    model's own map in `densereg_data.face.model_import`): the 68 landmark bindings (closest surface
    points to `points` (68, 3)), the parts (`face.parts`, the definition's "parts") and the jaw-contour
    candidates (`face.contour`, its "contour"). Returns the arrays `load_template` caches."""
    triangles, bary = bind_points(vertices, faces, points)
    landmark_uv = barycentric(uv, faces[triangles], bary)
    parts = derive_face_parts(uv, faces, landmark_uv, definition["parts"])
    landmark_points = barycentric(vertices, faces[triangles], bary)
    candidates = contour_candidates(vertices, landmark_points, definition["contour"])
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


def barycentric(attribute: np.ndarray, corners: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-vertex `attribute` (V, ...) at surface points given by their triangles' corner vertices
    `corners` (n, 3) int and barycentric `weights` (n, 3) -> (n, ...) float64."""
    return np.einsum("nk,nk...->n...", weights, attribute[corners].astype(np.float64, copy=False))


def bind_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest surface point of each of `points` (n, 3) as (triangle (n,) int64, barycentrics (n, 3))."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    closest, _, triangles = trimesh.proximity.closest_point(mesh, points)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[triangles], closest)
    bary = np.clip(bary, 0.0, 1.0)
    return triangles.astype(np.int64), bary / bary.sum(axis=1, keepdims=True)
