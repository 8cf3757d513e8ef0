"""A morphable model's own files -> a template surface and its bases, in the template frame, in mm.

Two importers, one result: `ict_arrays` (ICT-FaceKit, read by `face.ict_files`) and `eos_arrays` (an
eos-format model such as the Surrey Face Model, read by `face.eos_files`) each return the arrays of
`import_model`: the template's (as `face.template.derive_surface` derives them: landmark bindings,
parts, jaw-contour candidates, over the model's own U-V) and the model's mean, basis and prior.
`import_model` caches them on disk under a key of the importer's version, the definition and the
bytes of the files read, so a model is parsed once per machine; the face model's hash
(`arrays_hash`) is a digest of its definition and the arrays themselves, the same from a folder and
from a zip.

Convention: what is kept of the model
    ICT-FaceKit: the triangles of the definition's README region ("Narrow face area": skin from brow to
    chin, ear to ear; no eyeballs, teeth, mouth socket or back of the head), U-V per corner as the kit
    gives it (a vertex on a U-V seam inside the region becomes one vertex per U-V, sharing its basis
    rows), centimetres scaled to mm. eos models: every triangle, the model's U-V (or, for a model
    without one, the cylindrical unwrap of `face.uv_unwrap` with the definition's anchors). Both: the
    holes of the surface (ICT's eye openings and mouth slit) are closed by `fill_holes`, so the eyes and
    the mouth are face pixels as on menpo3d's closed template (the fill is a membrane over the rim).

Convention: landmark bindings
    ICT-FaceKit lists all 68 iBUG vertices; an eos mapping leaves some out (the Surrey Face Model maps
    50 of 68: not the jaw but the chin, nor the inner mouth corners 60 and 64). Those are menpo3d's
    template landmarks carried over by the similarity that best aligns its mapped landmarks with the
    model's mean, then bound to the closest surface point.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from densereg_data.errors import TemplateError
from densereg_data.face.cache import cached_arrays

log = logging.getLogger(__name__)

__all__ = ["IMPORT_VERSION", "import_model", "arrays_hash", "ict_arrays", "eos_arrays", "split_seams", "boundary_loops",
           "fill_holes"]

#: Bumped whenever an importer changes what it computes (part of the cache key).
IMPORT_VERSION = "model-import-3"
#: Files larger than this are not hashed for the cache key (the readers refuse them anyway).
_MAX_HASHED = 4 * 2**30
_MAX_FILES = 5_000


def import_model(kind: str, path: Path, definition: dict, read: Callable[[Path, dict], dict]) -> dict[str, np.ndarray]:
    """The arrays of model `kind` from `path` (`read(path, definition)` on a cache miss)."""
    digest = hashlib.sha256(f"{IMPORT_VERSION}:{kind}:".encode())
    digest.update(json.dumps(definition, sort_keys=True).encode())
    for p in _source_files(Path(path), kind):
        digest.update(str(p.relative_to(path) if p != Path(path) else p.name).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return cached_arrays(f"model-{kind}", digest.hexdigest(), lambda: read(Path(path), definition))


#: The files of a model folder that its reader may read (globs relative to the folder), per kind: the
#: cache key hashes these, not whatever else the folder holds.
SOURCE_GLOBS = {
    "ict": ("README.md", "*.obj", "*.json", "FaceXModel/*.obj", "FaceXModel/*.json"),
    "eos": ("*.bin", "*.txt", "*.json"),
}


def _source_files(path: Path, kind: str = "") -> list[Path]:
    """The regular files a model is read from: the file itself, or the folder's files its reader may read."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TemplateError(f"{path}: no such file or folder")
    files = {p for pattern in SOURCE_GLOBS.get(kind, ("**/*",)) for p in path.glob(pattern)
             if p.is_file() and not p.is_symlink() and p.stat().st_size <= _MAX_HASHED}
    if len(files) > _MAX_FILES:
        raise TemplateError(f"{path}: more than {_MAX_FILES} model files; point the model at its own folder")
    return sorted(files)


def arrays_hash(arrays: dict[str, np.ndarray], definition: dict) -> str:
    """sha256 hex of the definition and the arrays' names, dtypes, shapes and bytes (sorted by name)."""
    digest = hashlib.sha256(IMPORT_VERSION.encode())
    digest.update(json.dumps(definition, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def split_seams(faces: np.ndarray, faces_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vertex per distinct (vertex, U-V) corner pair: (faces (F, 3) into the new vertices, source (V',)
    int64 the original vertex of each, uv_index (V',) int64 its U-V), the new vertices in the order of
    their first (vertex, U-V) pair, sorted by vertex."""
    pairs = np.stack([faces.ravel(), faces_uv.ravel()], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return inverse.reshape(faces.shape).astype(np.int64), unique[:, 0].astype(np.int64), unique[:, 1].astype(np.int64)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The closed boundary loops of a triangle mesh, each (n,) int64 vertex indices in the order that
    keeps the mesh on the loop's left (the triangles' own edge direction)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = {(int(a), int(b)) for a, b in edges}
    nxt = {a: b for a, b in key if (b, a) not in key}  # a boundary edge has no twin
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v == start and len(loop) >= 3:
            loops.append(np.array(loop, dtype=np.int64))
    return loops


def fill_holes(faces: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Close every hole of a one-chart mesh (the eye openings and the mouth slit of a face mesh): each
    boundary loop but the outer one (largest U-V area) is triangulated in U-V by ear clipping, with no
    new vertex. A hole's U-V interior is empty (the map is one-to-one) and ear clipping triangulates any
    simple polygon with triangles of its own orientation, so the filled map stays one-to-one.

    Returns faces (F + added, 3) int64, the added triangles last, counter-clockwise in U-V like the rest.
    """
    loops = boundary_loops(faces)
    if len(loops) < 2:
        return faces
    outer = int(np.argmax([abs(_polygon_area(uv[loop])) for loop in loops]))
    added = [_ear_clip(loop if _polygon_area(uv[loop]) > 0 else loop[::-1], uv)
             for i, loop in enumerate(loops) if i != outer]
    return np.concatenate([faces, *added]).astype(np.int64)


def _ear_clip(polygon: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(n - 2, 3) triangles of the counter-clockwise simple polygon `polygon` (n,) of U-V points."""
    ring = list(polygon)
    out = []
    while len(ring) > 3:
        n = len(ring)
        best = None
        for k in range(n):
            a, b, c = ring[k - 1], ring[k], ring[(k + 1) % n]
            area = _cross(uv[a], uv[b], uv[c])
            if area <= 0:
                continue  # reflex or flat corner
            others = [v for v in ring if v not in (a, b, c)]
            if others and _inside(uv[others], uv[a], uv[b], uv[c]).any():
                continue
            if best is None or area > best[0]:  # the fattest ear keeps the triangles well shaped
                best = (area, k)
        if best is None:  # a degenerate remainder (collinear points): cut the flattest corner
            best = (0.0, int(np.argmax([_cross(uv[ring[k - 1]], uv[ring[k]], uv[ring[(k + 1) % n]]) for k in range(n)])))
        k = best[1]
        out.append((ring[k - 1], ring[k], ring[(k + 1) % n]))
        del ring[k]
    out.append(tuple(ring))
    return np.array(out, dtype=np.int64)


def _cross(a, b, c) -> float:
    return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))


def _inside(points, a, b, c) -> np.ndarray:
    """Points (m, 2) inside or on the counter-clockwise triangle a, b, c."""
    def side(p, q):
        return (q[0] - p[0]) * (points[:, 1] - p[1]) - (q[1] - p[1]) * (points[:, 0] - p[0])
    return (side(a, b) >= 0) & (side(b, c) >= 0) & (side(c, a) >= 0)


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _surface(definition: dict, vertices, faces, uv, points, mean, basis, n_identity) -> dict[str, np.ndarray]:
    from densereg_data.face.template import derive_surface

    arrays = derive_surface(definition, vertices, faces, uv, points)
    spec = definition["expression"]
    n_expression = basis.shape[-1] - n_identity
    arrays.update(
        mean=mean,
        basis=basis.astype(np.float32),
        prior_std=np.r_[np.ones(n_identity), np.full(n_expression, float(spec["prior_std"]))],
        n_identity=np.array(n_identity, dtype=np.int64),
    )
    return arrays


def ict_arrays(path: Path, definition: dict) -> dict[str, np.ndarray]:
    """ICT-FaceKit's folder or zip -> the `import_model` arrays, plus "expression_names" (Ke,) str."""
    from densereg_data.face.ict_files import read_ict_facekit

    kit = read_ict_facekit(path)
    for note in kit.notes:
        log.warning("ICT-FaceKit %s: %s", path, note)
    src = definition["source"]
    region = kit.region_faces(src["region"])
    faces, source, uv_index = split_seams(kit.faces[region], kit.faces_uv[region])
    scale = float(src["scale"])
    vertices = kit.vertices[source] * scale
    uv = kit.uv[uv_index]
    if uv.min() < 0 or uv.max() > 1:
        raise TemplateError(f"ICT-FaceKit {path}: region {src['region']!r} has U-V outside the unit square")
    missing = ~np.isin(kit.landmarks68, source)
    if missing.any():
        raise TemplateError(f"ICT-FaceKit {path}: landmarks {np.flatnonzero(missing).tolist()} lie outside region {src['region']!r}")
    points = kit.vertices[kit.landmarks68] * scale
    basis = np.concatenate([kit.identity, kit.expressions]).transpose(1, 2, 0)[source] * np.float32(scale)  # (V', 3, K)
    faces = fill_holes(faces, uv)
    arrays = _surface(definition, vertices, faces, uv, points, vertices.copy(), basis, len(kit.identity))
    arrays["expression_names"] = np.array(kit.expression_names, dtype=str)
    arrays["model_vertices"] = source
    return arrays


def eos_arrays(path: Path, definition: dict) -> dict[str, np.ndarray]:
    """An eos-format model (eos's share/ folder or a model .bin) -> the `import_model` arrays, plus
    "expression_names" (Ke,) str."""
    from densereg_data.face.eos_files import read_eos_model

    model = read_eos_model(path)
    for note in model.notes:
        log.info("eos model %s: %s", path, note)
    scale = float(definition["source"]["scale"])
    mean = model.mean * scale
    n = len(mean)
    if model.landmarks68 is None:
        raise TemplateError(f"eos model {path}: no iBUG landmark mapping (ibug_to_sfm.txt or the like) beside it")
    points = _complete_landmarks(mean, model.landmarks68, str(path))
    faces = model.triangles
    uv = model.uv
    if uv is None:
        from densereg_data.face.uv_unwrap import cylindrical_uv, repair_folds

        uv, keep = repair_folds(cylindrical_uv(mean, points, definition["uv"]["anchors"]), faces, rings=2)
        faces = faces[keep]
        faces = faces[np.all((uv[faces] >= 0) & (uv[faces] <= 1), axis=(1, 2))]
        uv = np.clip(uv, 0.0, 1.0)
    identity = (model.basis * model.std).reshape(n, 3, -1)  # unit-variance coefficients, eos's convention
    expression = model.blendshapes.reshape(len(model.blendshapes), n, 3).transpose(1, 2, 0)
    basis = np.concatenate([identity, expression], axis=2) * scale
    faces = fill_holes(faces, uv)
    arrays = _surface(definition, mean, faces, uv, points, mean, basis, identity.shape[-1])
    arrays["expression_names"] = np.array(model.blendshape_names, dtype=str)
    arrays["model_vertices"] = np.arange(n, dtype=np.int64)
    return arrays


def _complete_landmarks(mean: np.ndarray, mapping: np.ndarray, where: str) -> np.ndarray:
    """(68, 3) landmark points: the mapped vertices, the rest carried over from menpo3d's template by the
    least-squares similarity on the mapped ones (the module's Convention)."""
    from densereg_data.face.template import load_template

    mapped = mapping >= 0
    if mapped.sum() < 6:
        raise TemplateError(f"eos model {where}: only {int(mapped.sum())} of 68 iBUG landmarks are mapped, need at least 6")
    points = np.zeros((len(mapping), 3))
    points[mapped] = mean[mapping[mapped]]
    if mapped.all():
        return points
    reference = load_template("menpo3d-face").landmark_points
    scale, rotation, shift = _similarity(reference[mapped], points[mapped])
    points[~mapped] = scale * reference[~mapped] @ rotation.T + shift
    return points


def _similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The s, R, t minimising sum |s R a_i + t - b_i|^2 (Umeyama)."""
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    u, sv, vt = np.linalg.svd((b - mb).T @ (a - ma))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sv) @ d) / ((a - ma) ** 2).sum())
    return scale, rotation, mb - scale * rotation @ ma
