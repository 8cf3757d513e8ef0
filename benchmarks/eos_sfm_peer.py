"""Peer measurement: eos's own contour-fitting pipeline and densereg's sfm fitter on the Surrey Face Model,
on the same faces in the same run; time per fit and landmark error.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/eos_sfm_peer.py /work/shared/data/300w-dev/02_Outdoor

(the two variables are set by this script when run as a program). Prints a table and one JSON line.

eos (eos-py 1.5.0) runs natively, as its python example does: `load_model(sfm_shape_3448.bin)`,
`load_blendshapes(expression_blendshapes_3448.bin)`, a MorphableModel with the blendshapes as its
expression model, `LandmarkMapper(ibug_to_sfm.txt)`, `load_edge_topology(sfm_3448_edge_topology.json)`,
`ContourLandmarks.load(ibug_to_sfm.txt)`, `ModelContour.load(sfm_model_contours.json)`, then
`fit_shape_and_pose(...)` with eos's defaults (5 iterations; all 63 shape and 6 blendshape coefficients;
lambda_identity = lambda_expressions = 30). densereg fits `load_face_model("sfm:FOLDER")` with its
defaults. Landmarks go to eos as densereg reads them (0-based pixels; eos_peer's Convention: landmarks).

Our sfm model IS eos's: the same 3448 vertices in eos's order and frame (mm, y up, the face looks +z),
identity coefficients eos's (unit variance), expression coefficients eos's blendshape weights. So eos's
(shape coefficients, blendshape coefficients) concatenated are our coefficients, and eos's camera becomes
ours by `eos_peer.camera_from_eos` (`camera_check_px`: the largest distance, over faces and vertices,
between eos's affine camera applied to eos's fitted mesh and our camera applied to our shape of eos's
coefficients; numerical noise only).

Error: every fit is read out two ways, the same for both fitters:
- `nme`, `nme_inner`: `Fitter.project_landmarks(coefficients, camera)`, densereg's read-out (68 points, the
  jaw points slid to the silhouette by densereg's contour rule; inner = the 51 non-jaw points 17-67);
- `nme_mapped`, `nme_mapped_inner`: eos's own read-out: the vertices of ibug_to_sfm.txt projected by the
  camera (for eos: its affine matrix applied to its own fitted mesh). eos maps 50 points: the chin (8) and
  49 inner ones (not the inner-mouth corners 60 and 64, nor the 16 contour points, which eos matches to
  contour vertices anew in every fit).
NME = mean point error / outer-eye-corner distance (36, 45) of the annotation, over the points named.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # single-threaded BLAS for timing; must precede the numpy import
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv

if str(Path(__file__).resolve().parent) not in sys.path:  # eos_peer beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import eos_peer

DEFAULT_SFM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "face-models" / "sfm"
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "300w-dev" / "02_Outdoor"
SFM_FILES = ("sfm_shape_3448.bin", "expression_blendshapes_3448.bin", "ibug_to_sfm.txt",
             "sfm_model_contours.json", "sfm_3448_edge_topology.json")
FITTERS = ("ours", "eos")
ERRORS = ("nme", "nme_inner", "nme_mapped", "nme_mapped_inner")


def missing_files(folder: str | os.PathLike) -> list[str]:
    """The files of SFM_FILES absent from `folder` ([] when eos's pipeline can run on it)."""
    return [name for name in SFM_FILES if not Path(folder, name).is_file()]


@dataclass(frozen=True, eq=False)
class EosSfm:
    """eos's SFM fitting inputs, loaded as eos's example loads them.

    model: eos MorphableModel (PCA shape + blendshapes); mapper: iBUG "1".."68" -> SFM vertex (50 mapped);
    edge_topology, contour_landmarks, model_contour: eos's contour-fitting inputs; mapped: (68,) int64 the
    SFM vertex of each iBUG landmark, -1 where ibug_to_sfm.txt maps none.
    """

    model: object
    mapper: object
    edge_topology: object
    contour_landmarks: object
    model_contour: object
    mapped: np.ndarray


def load_eos_sfm(folder: str | os.PathLike = DEFAULT_SFM) -> EosSfm:
    """eos's model and contour description from eos's SFM files in `folder`; FileNotFoundError naming
    the files missing."""
    eos = eos_peer.import_eos()
    folder = Path(folder)
    absent = missing_files(folder)
    if absent:
        raise FileNotFoundError(f"eos's SFM files missing in {folder}: {', '.join(absent)}")
    shape = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin"))
    blendshapes = eos.morphablemodel.load_blendshapes(str(folder / "expression_blendshapes_3448.bin"))
    model = eos.morphablemodel.MorphableModel(
        shape.get_shape_model(), blendshapes, color_model=eos.morphablemodel.PcaModel(), vertex_definitions=None,
        texture_coordinates=shape.get_texture_coordinates(),
    )
    mapper = eos.core.LandmarkMapper(str(folder / "ibug_to_sfm.txt"))
    mapped = np.array([int(v) if (v := mapper.convert(str(i + 1))) is not None else -1 for i in range(cv.N_LANDMARKS)],
                      dtype=np.int64)
    return EosSfm(
        model=model,
        mapper=mapper,
        edge_topology=eos.morphablemodel.load_edge_topology(str(folder / "sfm_3448_edge_topology.json")),
        contour_landmarks=eos.fitting.ContourLandmarks.load(str(folder / "ibug_to_sfm.txt")),
        model_contour=eos.fitting.ModelContour.load(str(folder / "sfm_model_contours.json")),
        mapped=mapped,
    )


@dataclass(frozen=True, eq=False)
class EosSfmFit:
    """One eos fit: coefficients (63 + 6,) float64, eos's shape then blendshape coefficients (= ours);
    affine (3, 4) eos's model -> pixel matrix; vertices (V, 3) float64 eos's fitted mesh (model frame);
    seconds, cpu_seconds: the eos calls only (landmark conversion, fit, camera matrix)."""

    coefficients: np.ndarray
    affine: np.ndarray
    vertices: np.ndarray
    seconds: float
    cpu_seconds: float


def eos_sfm_fit(sfm: EosSfm, landmarks: np.ndarray, image_size: tuple[int, int]) -> EosSfmFit:
    """eos's `fit_shape_and_pose` with contours and eos's defaults. landmarks: (68, 2) float64 (x, y)
    0-based px; image_size: (height, width)."""
    eos = eos_peer.import_eos()
    height, width = image_size
    x = np.asarray(landmarks, dtype=np.float32)
    start, cpu_start = time.perf_counter(), time.process_time()
    lms = [eos.core.Landmark(str(i + 1), x[i]) for i in range(len(x))]
    mesh, params, alpha, beta = eos.fitting.fit_shape_and_pose(
        sfm.model, lms, sfm.mapper, width, height, sfm.edge_topology, sfm.contour_landmarks, sfm.model_contour,
    )
    affine = np.asarray(eos.fitting.get_3x4_affine_camera_matrix(params, width, height), dtype=np.float64)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    coefficients = np.r_[np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)]
    return EosSfmFit(coefficients, affine, np.asarray(mesh.vertices, dtype=np.float64), seconds, cpu_seconds)


def affine_project(affine: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """(n, 2) float64 pixels of vertices (n, 3) under eos's (3, 4) affine camera matrix."""
    return vertices @ affine[:2, :3].T + affine[:2, 3]


def mapped_points(image_xy: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """(68, 2) float64: eos's read-out, the mapped vertices' pixels from all vertices' `image_xy` (V, 2);
    NaN where a landmark has no vertex."""
    out = np.full((len(mapped), 2), np.nan)
    out[mapped >= 0] = image_xy[mapped[mapped >= 0]]
    return out


def compare(root: str | os.PathLike = DEFAULT_ROOT, limit: int | None = None, folder: str | os.PathLike = DEFAULT_SFM,
            face_model=None, sfm: EosSfm | None = None, repeats: int = 3) -> dict:
    """Fit every face under `root` (*.pts with the image beside it) with ours and with eos (module doc).

    face_model: densereg's sfm FaceModel (default `load_face_model("sfm:FOLDER")`); sfm: eos's inputs
    (default `load_eos_sfm(folder)`); repeats: fits per face and fitter (both are deterministic), the time
    of a face is their median. Returns {"faces": [...], "mapped": [...] the landmarks eos maps, fitter:
    {"ms", "cpu_ms", "nme", "nme_inner", "nme_mapped", "nme_mapped_inner", "error"} per-face lists,
    "camera_check_px": float, "summary": {fitter: ...}}; a failed fit records NaN and the error message
    and the run goes on.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    from densereg_data.face.models import load_face_model
    from densereg_data.io.images import image_size
    from densereg_data.io.landmarks import read_pts

    paths = sorted(Path(root).glob("*.pts"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no .pts files under {root}")
    face_model = face_model or load_face_model(f"sfm:{folder}")
    sfm = sfm or load_eos_sfm(folder)
    fitter, shape = face_model.fitter, face_model.shape
    first = read_pts(paths[0]).points
    fitter.fit(first)  # warm-up of both (cached arrays), and the check that the two models are one
    warm = eos_sfm_fit(sfm, first, image_size(eos_peer.image_of(paths[0])))
    if warm.vertices.shape != shape.mean.shape or len(warm.coefficients) != shape.n_coefficients:
        raise ValueError(f"face model {face_model.spec} ({shape.mean.shape} vertices, {shape.n_coefficients} "
                         f"coefficients) is not eos's model in {folder} ({warm.vertices.shape}, {len(warm.coefficients)})")
    inner_mapped = np.intersect1d(eos_peer.INNER, np.flatnonzero(sfm.mapped >= 0))
    all_mapped = np.flatnonzero(sfm.mapped >= 0)
    out: dict = {"faces": [p.stem for p in paths], "mapped": all_mapped.tolist()}
    for f in FITTERS:
        out[f] = {k: [] for k in ("ms", "cpu_ms", *ERRORS, "error")}
    camera_check = 0.0
    for path in paths:
        x = read_pts(path).points
        size = image_size(eos_peer.image_of(path))
        for f in FITTERS:
            rec = out[f]
            try:
                if f == "ours":
                    times = []
                    for _ in range(repeats):
                        start, cpu_start = time.perf_counter(), time.process_time()
                        fit = fitter.fit(x)
                        times.append((time.perf_counter() - start, time.process_time() - cpu_start))
                    seconds, cpu = np.median(times, axis=0)
                    coefficients, camera = fit.coefficients, fit.camera
                    own = mapped_points(camera.project(shape.shape(coefficients))[:, :2], sfm.mapped)
                else:
                    fits = [eos_sfm_fit(sfm, x, size) for _ in range(repeats)]
                    fit = fits[-1]
                    seconds, cpu = np.median([(g.seconds, g.cpu_seconds) for g in fits], axis=0)
                    coefficients, camera = fit.coefficients, eos_peer.camera_from_eos(fit.affine)
                    eos_xy = affine_project(fit.affine, fit.vertices)
                    own = mapped_points(eos_xy, sfm.mapped)
                    ours_xy = camera.project(shape.shape(coefficients))[:, :2]
                    camera_check = max(camera_check, float(np.abs(eos_xy - ours_xy).max()))
                fitted = fitter.project_landmarks(coefficients, camera)
                err = "" if np.all(np.isfinite(fitted)) and np.all(np.isfinite(own[all_mapped])) else "non-finite landmarks"
            except Exception as ex:  # noqa: BLE001 - record and go on
                fitted, own, seconds, cpu, err = None, None, np.nan, np.nan, f"{type(ex).__name__}: {ex}"
            ok = not err
            rec["ms"].append(1e3 * seconds)
            rec["cpu_ms"].append(1e3 * cpu)
            rec["nme"].append(eos_peer.nme(fitted, x) if ok else np.nan)
            rec["nme_inner"].append(eos_peer.nme(fitted, x, eos_peer.INNER) if ok else np.nan)
            rec["nme_mapped"].append(eos_peer.nme(own, x, all_mapped) if ok else np.nan)
            rec["nme_mapped_inner"].append(eos_peer.nme(own, x, inner_mapped) if ok else np.nan)
            rec["error"].append(err)
    out["camera_check_px"] = camera_check
    out["summary"] = {f: eos_peer.summarize(out[f], ERRORS) for f in FITTERS}
    return out


def table(summary: dict) -> str:
    """A markdown table of `compare(...)["summary"]`: one row per fitter, NME in percent."""
    base = summary["ours"]["ms_median"]
    lines = [("| fitter (SFM, same faces, same run) | ms / fit median | ratio to ours | NME median / mean (68) | "
              "inner (51) | eos read-out: mapped (50) | mapped inner (49) | failed |"),
             "|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['ms_median']:.2f} | {s['ms_median'] / base:.1f}x | "
                     f"{100 * s['nme_median']:.2f}% / {100 * s['nme_mean']:.2f}% | "
                     f"{100 * s['nme_inner_median']:.2f}% / {100 * s['nme_inner_mean']:.2f}% | "
                     f"{100 * s['nme_mapped_median']:.2f}% / {100 * s['nme_mapped_mean']:.2f}% | "
                     f"{100 * s['nme_mapped_inner_median']:.2f}% / {100 * s['nme_mapped_inner_mean']:.2f}% | {s['failed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--sfm", type=Path, default=DEFAULT_SFM, help="eos's SFM files (share/ of eos)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="fits per face and fitter; the time is their median")
    p.add_argument("--json", type=Path, default=None, help="also write the per-face results here")
    a = p.parse_args(argv)
    if not eos_peer.eos_available():
        print("eos is not installed: pip install eos-py", file=sys.stderr)
        return 2
    if missing_files(a.sfm):
        print(f"eos's SFM files missing in {a.sfm}: {', '.join(missing_files(a.sfm))}", file=sys.stderr)
        return 2
    res = compare(a.root, a.limit, a.sfm, repeats=a.repeats)
    print(table(res["summary"]))
    print(f"\ncamera conversion check: {res['camera_check_px']:.2e} px")
    if a.json:
        a.json.write_text(json.dumps(res, default=float))
    print(json.dumps({"benchmark": "eos_sfm_peer", "root": str(a.root), "camera_check_px": res["camera_check_px"],
                      "summary": res["summary"]}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
