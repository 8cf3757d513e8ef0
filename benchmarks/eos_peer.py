"""Peer measurement: fit OUR template and model with eos (Patrik Huber's 3DMM fitting library) and
with densereg, on the same faces in the same run, and report time per fit and landmark error.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/eos_peer.py /work/shared/data/300w-dev/02_Outdoor

(the two variables are set by this script when run as a program). Prints a table and one JSON line.

eos variants (eos-py 1.5.0):
  eos_contour     `eos.fitting.fit_shape_and_pose` with edge topology + contour (eos's default pipeline:
                  5 iterations of pose, shape, expression, front-facing contour and occluding-edge
                  correspondences), lambda_identity = 30 (eos default)
  eos_no_contour  the overload of `fit_shape_and_pose` without contour: all 68 landmarks on fixed vertices
  eos_linear      one pass of `estimate_orthographic_projection_linear` on the mean shape, then
                  `fit_shape_to_landmarks_linear` (eos default lambda = 3), all 68 landmarks on fixed vertices

How our model becomes an eos MorphableModel: shape = mean + functions @ c with c[k] ~ N(0, prior_std[k]^2 I3)
is a PCA model whose (3V, 3n) basis has column 3k + a = function k on axis a (xyzxyz... rows, eos's
layout) and whose eigenvalues are prior_std[k]^2. eos keeps the basis as given ("orthonormal", though
ours is not unit-norm) and rescales it by sqrt(eigenvalue) for fitting and `draw_sample`, so eos's
standard-normal coefficient alpha[3k + a] equals c[k, a] / prior_std[k] exactly. eos 1.5's
fit_shape_and_pose needs an expression model (without one it raises "bad optional access"), so the
bundle carries a one-component all-zero expression PCA model, which adds nothing to any shape.

Convention: landmarks
    eos.core.Landmark(name, [x, y]) takes the same 0-based pixel coordinates as densereg (eos's own
    .pts reader subtracts 1); eos flips y with the viewport height internally and flips back when
    projecting, so input and output points share one frame and no +0.5 shift is needed (pinned by
    `test_eos_peer.py`, which checks the mean residual of a fit is well under a pixel).

Error: all fits are read out the SAME way: the fitted shape and camera are handed to
`Fitter.project_landmarks`, i.e. the 68 barycentric landmark points with the jaw points slid to the
silhouette by densereg's contour rule, exactly how `FitResult.fitted_landmarks` is made. NME = mean
point error / outer-eye-corner distance (landmarks 36, 45) of the annotation. `nme_inner` is the same
over the 51 non-jaw landmarks (17-67), which does not depend on any contour rule.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # single-threaded BLAS for timing; must precede the numpy import
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.face.fit import Fitter
from densereg_data.geometry.camera import Camera

INNER = np.arange(17, 68)
METHODS = ("ours", "eos_contour", "eos_no_contour", "eos_linear")


def eos_available() -> bool:
    """True when the eos Python bindings (`pip install eos-py`) import."""
    try:
        import eos  # noqa: F401
    except ImportError:
        return False
    return True


def import_eos():
    """The eos module; an ImportError naming the package to install without it."""
    try:
        import eos
    except ImportError as err:  # pragma: no cover - exercised only without eos
        raise ImportError("benchmarks/eos_peer.py needs eos: pip install eos-py") from err
    return eos


@dataclass(frozen=True, eq=False)
class EosBundle:
    """Everything eos needs to fit our template.

    model: eos MorphableModel (shape = ours, zero expression model, no colour); shape_model: its
    PcaModel, kept because `MorphableModel.get_shape_model()` returns a copy (~1 GB, ~1 s) in the
    binding; n_shape: functions used;
    mapper: iBUG "1".."68" minus the 16 contour landmarks -> vertex (for the contour fit); mapper_all:
    all 68 -> vertex; vertex_ids: (68,) int64 the vertex of each landmark (largest barycentric weight);
    edge_topology, contour_landmarks, model_contour: eos's contour-fitting inputs; fitter: ours.
    """

    model: object
    shape_model: object
    n_shape: int
    mapper: object
    mapper_all: object
    vertex_ids: np.ndarray
    edge_topology: object
    contour_landmarks: object
    model_contour: object
    fitter: Fitter


def edge_topology_arrays(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eos's EdgeTopology arrays of a triangle mesh, as share/scripts/generate-edge-topology.py makes them.

    faces: (F, 3) int64. Returns adjacent_faces (E, 2) and adjacent_vertices (E, 2) int64.
    Convention: both 1-BASED (eos's occluding-edge code subtracts 1); a border edge has faces (0, f).
    """
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [0, 2]], faces[:, [1, 2]]]), axis=1)
    face_ids = np.tile(np.arange(1, len(faces) + 1), 3)
    unique, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    first = face_ids[order][starts]
    second = face_ids[order][np.minimum(starts + 1, len(order) - 1)]
    adjacent_faces = np.where(counts[:, None] >= 2, np.c_[first, second], np.c_[np.zeros_like(first), first])
    return adjacent_faces.astype(np.int64), (unique + 1).astype(np.int64)


def model_contour_vertices(fitter: Fitter, per_gap: int = 2) -> tuple[list[int], list[int]]:
    """Right (iBUG 1-8) and left (iBUG 17-10) model contour vertex lists, each from the top to the chin.

    The anchors are each jaw landmark's first contour candidate (its nearest vertex); between two
    consecutive anchors (the chin, landmark 8, closes each side but is not included, as in eos's
    share/sfm_model_contours.json) `per_gap` vertices nearest to evenly spaced points are inserted,
    so eos's nearest-contour-vertex search has ~3 vertices per landmark like the SFM's 17 per side.
    """
    from scipy.spatial import cKDTree

    t = fitter.template
    row = {lm: r for r, lm in enumerate(t.contour_landmarks)}
    chin = int(fitter.landmark_vertices[8][np.argmax(fitter.landmark_weights[8])])
    tree = cKDTree(t.vertices)

    def side(landmarks: list[int]) -> list[int]:
        anchors = [int(t.contour_candidates[row[i]][0]) for i in landmarks] + [chin]
        out: list[int] = []
        for a, b in zip(anchors[:-1], anchors[1:]):
            out.append(a)
            for f in np.arange(1, per_gap + 1) / (per_gap + 1):
                _, v = tree.query((1 - f) * t.vertices[a] + f * t.vertices[b])
                out.append(int(v))
        return list(dict.fromkeys(v for v in out if v != chin))  # unique, order kept

    return side(list(range(0, 8))), side(list(range(16, 8, -1)))


def build_eos_model(fitter: Fitter, n_shape: int | None = None) -> EosBundle:
    """An eos MorphableModel + mapper + contour description of OUR template and model (see module doc).

    n_shape: number of model functions to use (each gives 3 eos components); None = all.
    Takes ~5-10 s and ~1 GB (the (3V, 3n) float32 basis is stored twice by eos).
    """
    eos = import_eos()
    t, m = fitter.template, fitter.model
    n = m.n_functions if n_shape is None else int(n_shape)
    if not 1 <= n <= m.n_functions:
        raise ValueError(f"n_shape must be in 1..{m.n_functions}, got {n_shape}")
    v = t.vertices.shape[0]
    basis = np.zeros((v, 3, n, 3), np.float32)  # (V, axis, function, axis)
    for a in range(3):
        basis[:, a, :, a] = m.functions[:, :n]
    basis = basis.reshape(3 * v, 3 * n)  # (3V, 3n): row 3i + a, column 3k + a
    eigenvalues = np.repeat(m.prior_std[:n] ** 2, 3).astype(np.float32)
    triangles = t.faces.tolist()
    shape = eos.morphablemodel.PcaModel(m.mean.astype(np.float32).reshape(-1), basis, eigenvalues, triangles)
    del basis
    expression = eos.morphablemodel.PcaModel(
        np.zeros(3 * v, np.float32), np.zeros((3 * v, 1), np.float32), np.ones(1, np.float32), triangles
    )
    model = eos.morphablemodel.MorphableModel(shape, expression, eos.morphablemodel.PcaModel())

    vertex_ids = fitter.landmark_vertices[np.arange(cv.N_LANDMARKS), fitter.landmark_weights.argmax(axis=1)]
    contour = set(t.contour_landmarks)
    right_lm = [str(i + 1) for i in range(8)]
    left_lm = [str(i + 1) for i in range(9, 17)]
    right, left = model_contour_vertices(fitter)
    adjacent_faces, adjacent_vertices = edge_topology_arrays(t.faces)
    with tempfile.TemporaryDirectory() as tmp:  # eos 1.5 builds mappers and contours only from files
        def mapping(ids):
            lines = ["[landmark_mappings]"] + [f'"{i + 1}" = "{int(vertex_ids[i])}"' for i in ids]
            lines += ["[contour_landmarks]", f"right = {json.dumps(right_lm)}", f"left = {json.dumps(left_lm)}"]
            return "\n".join(lines) + "\n"

        Path(tmp, "contour.toml").write_text(mapping([i for i in range(cv.N_LANDMARKS) if i not in contour]))
        Path(tmp, "all.toml").write_text(mapping(range(cv.N_LANDMARKS)))
        Path(tmp, "contour.json").write_text(json.dumps({"model_contour": {"right_contour": right, "left_contour": left}}))
        mapper = eos.core.LandmarkMapper(str(Path(tmp, "contour.toml")))
        mapper_all = eos.core.LandmarkMapper(str(Path(tmp, "all.toml")))
        contour_landmarks = eos.fitting.ContourLandmarks.load(str(Path(tmp, "contour.toml")))
        model_contour = eos.fitting.ModelContour.load(str(Path(tmp, "contour.json")))
    edge_topology = eos.morphablemodel.EdgeTopology(adjacent_faces.tolist(), adjacent_vertices.tolist())
    return EosBundle(model, model.get_shape_model(), n, mapper, mapper_all, vertex_ids, edge_topology, contour_landmarks, model_contour, fitter)


def camera_from_eos(affine: np.ndarray) -> Camera:
    """Our orthographic Camera from eos's (3, 4) affine model -> screen matrix (rows x, y, [0 0 0 1]).

    Convention: eos's `get_3x4_affine_camera_matrix` maps model coordinates to 0-based (x, y) pixels
    (y down, the input landmarks' frame); the Camera projects the same model points to the same pixels
    when the affine is a scaled rotation (eos's scaled-orthographic fits always are; the nearest one otherwise).
    """
    a = np.asarray(affine, dtype=np.float64)
    scale = float(np.linalg.norm(a[:2, :3], axis=1).mean())
    u, _, vt = np.linalg.svd(a[:2, :3] / scale, full_matrices=False)
    r12 = u @ vt  # nearest pair of orthonormal rows
    rotation = np.vstack([r12, np.cross(r12[0], r12[1])])
    return Camera("orthographic", rotation, np.array([a[0, 3], a[1, 3], 0.0]), scale=scale)


def eos_fit_full(bundle: EosBundle, landmarks: np.ndarray, image_size: tuple[int, int], method: str = "eos_contour"):
    """Fit with eos; returns (fitted (68, 2) float64 px, seconds, cpu_seconds, coefficients (n, 3), camera).

    landmarks: (68, 2) float64 (x, y) 0-based px; image_size: (height, width). `seconds` (wall) and
    `cpu_seconds` (this process's CPU time, robust to a shared machine when single-threaded) cover the
    eos calls only (landmark conversion + fit + camera matrix), not our read-out.
    """
    eos = import_eos()
    height, width = image_size
    x = np.asarray(landmarks, dtype=np.float32)
    start, cpu_start = time.perf_counter(), time.process_time()
    if method in ("eos_contour", "eos_no_contour"):
        lms = [eos.core.Landmark(str(i + 1), x[i]) for i in range(len(x))]
        if method == "eos_contour":
            _, params, alpha, _ = eos.fitting.fit_shape_and_pose(
                bundle.model, lms, bundle.mapper, width, height,
                bundle.edge_topology, bundle.contour_landmarks, bundle.model_contour,
            )
        else:
            _, params, alpha, _ = eos.fitting.fit_shape_and_pose(bundle.model, lms, bundle.mapper_all, width, height)
        affine = eos.fitting.get_3x4_affine_camera_matrix(params, width, height)
    elif method == "eos_linear":
        shape_model = bundle.shape_model
        ids = [int(i) for i in bundle.vertex_ids]
        points = list(x)
        model_points = [np.append(shape_model.get_mean_at_point(i), 1.0).astype(np.float32) for i in ids]
        pose = eos.fitting.estimate_orthographic_projection_linear(points, model_points, True, height)
        params = eos.fitting.RenderingParameters(pose, width, height)
        affine = eos.fitting.get_3x4_affine_camera_matrix(params, width, height)
        alpha = eos.fitting.fit_shape_to_landmarks_linear(shape_model, affine, points, ids)
    else:
        raise ValueError(f"method must be one of {METHODS[1:]}, got {method!r}")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    fitter = bundle.fitter
    coeffs = np.zeros((fitter.model.n_functions, 3))
    coeffs[: bundle.n_shape] = np.asarray(alpha, dtype=np.float64).reshape(bundle.n_shape, 3)
    coeffs[: bundle.n_shape] *= fitter.model.prior_std[: bundle.n_shape, None]
    camera = camera_from_eos(affine)
    fitted = fitter.project_landmarks(coeffs, camera, slide_contour=True)
    return fitted, seconds, cpu_seconds, coeffs, camera


def eos_fit(bundle: EosBundle, landmarks: np.ndarray, image_size: tuple[int, int], contour: bool = True):
    """(fitted (68, 2) float64 px, seconds): eos_contour when `contour`, else eos_linear (see module doc)."""
    fitted, seconds, _, _, _ = eos_fit_full(bundle, landmarks, image_size, "eos_contour" if contour else "eos_linear")
    return fitted, seconds


def nme(fitted: np.ndarray, landmarks: np.ndarray, idx: np.ndarray | None = None) -> float:
    """Mean point error over `idx` (default all 68) / outer-eye-corner distance of `landmarks` (68, 2)."""
    err = np.linalg.norm(fitted - landmarks, axis=1)
    return float((err if idx is None else err[idx]).mean() / cv.eye_distance(landmarks))


def compare(
    root: str | os.PathLike,
    limit: int | None = None,
    methods: tuple[str, ...] = METHODS,
    contour_every: int = 1,
    n_shape: int | None = None,
    bundle: EosBundle | None = None,
) -> dict:
    """Fit every face under `root` (*.pts with the image beside it) with ours and each eos method.

    contour_every: run eos_contour (seconds per fit) on every k-th face only. Returns {"faces": [...],
    method: {"ms": [...], "nme": [...], "nme_inner": [...], "error": [...]}, "summary": {...}};
    a failed fit records NaN and the error message and the run goes on.
    """
    from densereg_data.face.models import load_face_model
    from densereg_data.io.images import image_size
    from densereg_data.io.landmarks import read_pts

    paths = sorted(Path(root).glob("*.pts"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no .pts files under {root}")
    fitter = load_face_model().fitter
    if any(m.startswith("eos") for m in methods) and bundle is None:
        bundle = build_eos_model(fitter, n_shape)
    out: dict = {"faces": [p.stem for p in paths]}
    for m in methods:
        out[m] = {"ms": [], "cpu_ms": [], "nme": [], "nme_inner": [], "error": []}
    first = read_pts(paths[0]).points
    fitter.fit(first)  # warm-up (lazy arrays, caches)
    for i, path in enumerate(paths):
        x = read_pts(path).points
        size = image_size(image_of(path))
        for m in methods:
            rec = out[m]
            if m == "eos_contour" and i % contour_every:
                fitted, seconds, cpu, err = None, np.nan, np.nan, "skipped"
            else:
                try:
                    if m == "ours":
                        start, cpu_start = time.perf_counter(), time.process_time()
                        fitted = fitter.fit(x).fitted_landmarks
                        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                    else:
                        fitted, seconds, cpu, _, _ = eos_fit_full(bundle, x, size, m)
                    err = "" if np.all(np.isfinite(fitted)) else "non-finite landmarks"
                except Exception as ex:  # noqa: BLE001 - record and go on
                    fitted, seconds, cpu, err = None, np.nan, np.nan, f"{type(ex).__name__}: {ex}"
            ok = fitted is not None and not err
            rec["ms"].append(1e3 * seconds)
            rec["cpu_ms"].append(1e3 * cpu)
            rec["nme"].append(nme(fitted, x) if ok else np.nan)
            rec["nme_inner"].append(nme(fitted, x, INNER) if ok else np.nan)
            rec["error"].append(err)
    out["summary"] = {m: summarize(out[m]) for m in methods}
    return out


def image_of(pts: Path) -> Path:
    """The image beside a .pts file (same stem; .jpg, .png or .jpeg); FileNotFoundError without one."""
    for ext in (".jpg", ".png", ".jpeg", ".JPG", ".PNG"):
        if pts.with_suffix(ext).exists():
            return pts.with_suffix(ext)
    raise FileNotFoundError(f"no image beside {pts}")


def summarize(rec: dict, errors: tuple[str, ...] = ("nme", "nme_inner")) -> dict:
    """One fitter's per-face record -> n, failed, ms and cpu_ms median / mean, and `<key>_median` /
    `<key>_mean` of each error list in `errors`, all over the faces whose first error is finite."""
    ms, cpu = (np.array(rec[k], dtype=np.float64) for k in ("ms", "cpu_ms"))
    done = np.isfinite(np.array(rec[errors[0]], dtype=np.float64))

    def stat(values: np.ndarray, f) -> float:
        return float(f(values[done])) if done.any() else np.nan

    out = {"n": int(done.sum()), "failed": int(sum(1 for r in rec["error"] if r and r != "skipped")),
           "ms_median": stat(ms, np.median), "ms_mean": stat(ms, np.mean),
           "cpu_ms_median": stat(cpu, np.median), "cpu_ms_mean": stat(cpu, np.mean)}
    for key in errors:
        values = np.array(rec[key], dtype=np.float64)
        out[f"{key}_median"], out[f"{key}_mean"] = stat(values, np.median), stat(values, np.mean)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", default="/work/shared/data/300w-dev/02_Outdoor")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--contour-every", type=int, default=1, help="run eos_contour on every k-th face only")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--n-shape", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the per-face results here")
    a = p.parse_args(argv)
    if not eos_available():
        print("eos is not installed: pip install eos-py", file=sys.stderr)
        return 2
    res = compare(a.root, a.limit, tuple(a.methods.split(",")), a.contour_every, a.n_shape)
    print(f"{'method':16s} {'n':>4s} {'ms median':>10s} {'ms mean':>10s} {'cpu med':>10s} {'cpu mean':>10s} {'NME med':>8s} {'NME mean':>8s} {'inner med':>9s} {'inner mean':>10s}")
    for m, s in res["summary"].items():
        print(f"{m:16s} {s['n']:4d} {s['ms_median']:10.2f} {s['ms_mean']:10.2f} {s['cpu_ms_median']:10.2f} {s['cpu_ms_mean']:10.2f} {s['nme_median']:8.4f} {s['nme_mean']:8.4f} "
              f"{s['nme_inner_median']:9.4f} {s['nme_inner_mean']:10.4f}" + (f"  ({s['failed']} failed)" if s["failed"] else ""))
    if a.json:
        a.json.write_text(json.dumps(res, default=float))
    print(json.dumps({"benchmark": "eos_peer", "root": str(a.root), "summary": res["summary"]}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
