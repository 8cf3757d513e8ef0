"""Peer measurement: Google MediaPipe's face mesh (478 points, mapped to the iBUG 68) beside densereg's network,
on the same validation crops, scored by densereg's own metric code.

    python benchmarks/mediapipe_peer.py /tmp/mp-shards --checkpoint runs/x/best.pt --json /tmp/mp-peer.json

Prints a markdown table (one row per method) and one JSON line; `--json` also writes every number, per face.

Faces: the crops of one split (default val) of a shard folder, read with `densereg_data.format.open_shards`:
image (S, S, 3) uint8 RGB, the true landmarks (68, 2) in crop pixels (NaN where missing). Both methods see
exactly these crops, and every score comes from `densereg_net.metrics` (`nme`, `auc`, `landmark_summary`).

MediaPipe: mediapipe 0.10.21, the last release that ships its face-detection and face-mesh models inside the
wheel (later ones download them at run time), and it pins numpy < 2, so it never goes into the project's
environment. This script makes a virtual environment of its own once (`python3 -m venv`, then `pip install
mediapipe==0.10.21`; default `densereg_data.cache.cache_root() / "mediapipe-0.10.21"`, or `--venv`), reuses it
afterwards, and runs THIS file in it as a worker (`--worker`; it needs only the standard library, numpy, cv2
and mediapipe, which is why only those are imported at the top). Data passes as plain files: the crops as PNG
files in a temporary folder, the points back as an .npz read with allow_pickle=False. The worker runs the
legacy solution `mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
refine_landmarks=True)` (its own BlazeFace detector, then the 478-point mesh with iris refinement) on each
crop, enlarged first by `--upscale` (an integer factor, cv2 bicubic; default 2). Why 2: on crops this small
MediaPipe is not mirror-consistent at x1 (a face and its mirror image, mapped back, disagree on average by
about half a pixel in x), while from x2 on they agree, within 0.2 px, with the edge convention below; x1 is
the crop as the network sees it, and is one flag away.
A face MediaPipe does not find scores NME = +inf: a failure, and 0 in the CED at every threshold.

Convention: MediaPipe's coordinates
    MediaPipe returns x, y normalised by the image width and height with 0 and 1 at the image's outer EDGES
    (its rects and landmark projection are continuous: a full-image rect has its centre at 0.5). In
    densereg's crop pixels (integer = pixel centre) that is ``crop_xy = normalised * S - 0.5``, whatever
    `--upscale` was (an edge-aligned resize leaves normalised coordinates unchanged). `--json` records the
    mean signed offset (mapped - true, pixels) over the found faces as a check of this half pixel.

Mapping 478 -> iBUG 68: Peizhi Yan's Mediapipe_2_Dlib_Landmarks (github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks,
MIT; dlib's 68 points are the iBUG 300-W scheme). Each iBUG point is one MediaPipe vertex or the mean of two.
The table was written here from the published correspondence lists, not copied. The author published three
revisions, and all three are scored (one row each), since a peer's figure depends on the mapping:
- `r1.0`: the packaged release mediapipe2dlib 1.0 (Mediapipe_2_Dlib_Landmarks,
  build/lib/mediapipe2dlib/mp2dlib.py at db9e81e2);
- `fbc9138`: the revision the author vendors as utils/mp2dlib.py in PeizhiYan/flame-head-tracker at fbc9138a
  (and PeizhiYan/gaussian-dejavu): outer brow ends 156 / 383 instead of 70 / 300, nostril wings 98 / 327
  instead of 75 / 305;
- `0a2977a`: flame-head-tracker utils/mp2dlib.py at 0a2977af: as fbc9138 with the brow points 19, 22, 23, 26
  (1-based) the mean of two vertices (70+63, 107+55, 336+285, 293+300).

Inner points: NME over the 51 non-jaw points 17-67 (0-based) is `metrics.nme` with the jaw's true points
marked missing (NaN), so the one NME rule (mean over the points the truth places / true outer-eye-corner
distance) gives it.

Ours (`--checkpoint`): `densereg_net.evaluate.evaluate(checkpoint, shards, split)` gives the landmark NME,
AUC@0.08 and failure rate on the same split (with `fit=True` when this `evaluate` accepts it, and then the
dense-fit read-out's figures from the report as a row of their own), plus the checkpoint's mean-shape
baseline. The 51-point figures need per-face landmarks, which the report does not hold: they come from a
`densereg_net.predict.Predictor` given each shard crop as it is: the steps of `Predictor.predict` after its
warp (`model.predict`, then `metrics.landmarks_from_uv`), in `evaluate`'s batches (`data.eval_batches`).
`Predictor.predict(crop, bbox=...)` with a box whose crop is the identity cannot be used: the box's float
rounding leaves the affine ~1e-14 off identity and Pillow's bilinear resampling then changes some pixels by 1.
The per-face 68-point NMEs are checked against the report's (printed: the largest difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MP_VERSION = "0.10.21"
MP_PYTHONS = ((3, 9), (3, 12))  # the Pythons mediapipe 0.10.21 has wheels for (inclusive)
N_MESH = 478
INSTALL_RECORD = "densereg-install.json"


def _mp2dlib(**changes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Peizhi Yan's 68 correspondence lists (release 1.0), with `changes` {"p<0-based iBUG index>": vertices}."""
    base: list[tuple[int, ...]] = [
        # jaw 0-16, from the subject's right ear (image left) over the chin to the left ear
        (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
        (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
        (70,), (63,), (105,), (66,), (107,),  # right brow 17-21, outer to inner
        (336,), (296,), (334,), (293,), (300,),  # left brow 22-26, inner to outer
        (168, 6), (197, 195), (5,), (4,),  # nose bridge 27-30
        (75,), (97,), (2,), (326,), (305,),  # nose base 31-35
        (33,), (160,), (158,), (133,), (153,), (144,),  # right eye 36-41 (36: outer corner)
        (362,), (385,), (387,), (263,), (373,), (380,),  # left eye 42-47 (45: outer corner)
        (61,), (39,), (37,), (0,), (267,), (269,), (291,),  # outer lips, upper 48-54
        (321,), (314,), (17,), (84,), (91,),  # outer lips, lower 55-59 (right to left in the image)
        (78,), (82,), (13,), (312,), (308,),  # inner lips, upper 60-64
        (317,), (14,), (87,),  # inner lips, lower 65-67
    ]
    for key, vertices in changes.items():
        base[int(key[1:])] = vertices
    return tuple(base)


_FBC9138 = {"p17": (156,), "p26": (383,), "p31": (98,), "p35": (327,)}
#: name -> (where it was published, the MediaPipe vertices of each iBUG point, 0-based both).
MAPPINGS: dict[str, tuple[str, tuple[tuple[int, ...], ...]]] = {
    "r1.0": ("PeizhiYan/Mediapipe_2_Dlib_Landmarks release 1.0 (build/lib/mediapipe2dlib/mp2dlib.py @ db9e81e2)",
             _mp2dlib()),
    "fbc9138": ("PeizhiYan/flame-head-tracker utils/mp2dlib.py @ fbc9138a", _mp2dlib(**_FBC9138)),
    "0a2977a": ("PeizhiYan/flame-head-tracker utils/mp2dlib.py @ 0a2977af",
                _mp2dlib(**_FBC9138, p18=(70, 63), p21=(107, 55), p22=(336, 285), p25=(293, 300))),
}


class SetupError(RuntimeError):
    """MediaPipe's environment could not be made or run; the message is one line."""


def mapping_matrix(table: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """(68, 478) float64 W with ``points68 = W @ points478``: each row averages the vertices listed for it."""
    if len(table) != 68:
        raise ValueError(f"a mapping has 68 entries, got {len(table)}")
    w = np.zeros((len(table), N_MESH))
    for i, vertices in enumerate(table):
        if not vertices or not all(0 <= v < N_MESH for v in vertices):
            raise ValueError(f"iBUG point {i}: vertices must be in 0..{N_MESH - 1}, got {vertices}")
        for v in vertices:
            w[i, v] += 1.0 / len(vertices)
    return w


def crop_pixels(normalised: np.ndarray, size: int) -> np.ndarray:
    """MediaPipe's normalised (..., 2) x, y -> densereg crop pixels (x, y) float64 (Convention above)."""
    return np.asarray(normalised, dtype=np.float64) * size - 0.5


# ----------------------------------------------------------------------------- MediaPipe's environment


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")


def _mediapipe_version(python: Path) -> str | None:
    """mediapipe's version importable by `python`, None when it does not import."""
    r = subprocess.run([str(python), "-I", "-c", "import mediapipe; print(mediapipe.__version__)"],
                       check=False, capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


def _last_line(text: str) -> str:
    lines = [s.strip() for s in text.strip().splitlines() if s.strip()]
    return lines[-1][:300] if lines else "(no output)"


def ensure_venv(venv: Path, python: str = "python3") -> dict:
    """The virtual environment `venv` with mediapipe==MP_VERSION, made (venv + pip) when absent or incomplete.

    Returns {"python": path, "created": bool, "install_seconds": float or None (the first install's, as
    recorded in venv/densereg-install.json)}. Raises SetupError (one line) when `python` is not 3.9-3.12,
    the venv cannot be made, or pip cannot install mediapipe."""
    exe = venv_python(venv)
    record = venv / INSTALL_RECORD
    if exe.is_file() and _mediapipe_version(exe) == MP_VERSION:
        seconds = json.loads(record.read_text()).get("install_seconds") if record.is_file() else None
        return {"python": str(exe), "created": False, "install_seconds": seconds}
    try:
        r = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                           check=False, capture_output=True, text=True)
    except OSError as ex:
        raise SetupError(f"cannot run {python} to make MediaPipe's venv: {ex}; give --python") from None
    if r.returncode != 0:
        raise SetupError(f"cannot run {python} to make MediaPipe's venv: {_last_line(r.stderr)}; give --python")
    version = tuple(int(v) for v in r.stdout.split())
    if not MP_PYTHONS[0] <= version <= MP_PYTHONS[1]:
        raise SetupError(f"mediapipe {MP_VERSION} has wheels for Python 3.9-3.12, {python} is "
                         f"{'.'.join(map(str, version))}: give --python python3.X")
    start = time.perf_counter()
    print(f"making MediaPipe's venv {venv} (pip install mediapipe=={MP_VERSION}, about 1 GB; once)", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([python, "-m", "venv", str(venv)], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"{python} -m venv {venv} failed: {_last_line(r.stderr)}")
    r = subprocess.run([str(exe), "-m", "pip", "install", "--quiet", f"mediapipe=={MP_VERSION}"],
                       check=False, capture_output=True, text=True)
    if r.returncode != 0 or _mediapipe_version(exe) != MP_VERSION:
        raise SetupError(f"pip could not install mediapipe=={MP_VERSION} into {venv}: {_last_line(r.stderr)}")
    seconds = time.perf_counter() - start
    record.write_text(json.dumps({"mediapipe": MP_VERSION, "python": ".".join(map(str, version)),
                                  "install_seconds": round(seconds, 1)}) + "\n")
    return {"python": str(exe), "created": True, "install_seconds": seconds}


def run_mediapipe(images: np.ndarray, python: str, upscale: int = 1) -> dict:
    """Run the worker (this file, `--worker`) in MediaPipe's venv on `images` (N, S, S, 3) uint8 RGB.

    Returns {"points": (N, 478, 2) float64 crop pixels, NaN where no face was found; "found": (N,) bool;
    "ms": (N,) float64 milliseconds per `FaceMesh.process`; "mediapipe": its version; "upscale"}."""
    from densereg_data.io.images import write_png

    n, size = len(images), images.shape[1]
    with tempfile.TemporaryDirectory(prefix="densereg-mediapipe-") as tmp:
        folder = Path(tmp, "crops")
        folder.mkdir()
        for i, image in enumerate(images):
            write_png(folder / f"{i:06d}.png", image)
        out = Path(tmp, "points.npz")
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
        r = subprocess.run([python, "-I", str(Path(__file__).resolve()), "--worker", str(folder), str(out),
                            "--upscale", str(upscale)], check=False, capture_output=True, text=True, env=env)
        if r.returncode != 0 or not out.is_file():
            raise SetupError(f"MediaPipe's worker failed (exit {r.returncode}): {_last_line(r.stderr)}")
        with np.load(out, allow_pickle=False) as z:
            names, normalised, found, ms = list(z["names"]), z["normalised"], z["found"], z["ms"]
            meta = json.loads(str(z["meta"]))
    if names != [f"{i:06d}.png" for i in range(n)] or normalised.shape != (n, N_MESH, 2):
        raise SetupError(f"MediaPipe's worker returned {len(names)} faces of shape {normalised.shape[1:]}, "
                         f"expected {n} of ({N_MESH}, 2)")
    return {"points": crop_pixels(normalised, size), "found": found.astype(bool), "ms": ms.astype(np.float64),
            "mediapipe": meta["mediapipe"], "upscale": upscale}


def worker(folder: Path, out: Path, upscale: int) -> int:
    """In MediaPipe's venv: every *.png in `folder` -> `out` (.npz: names, normalised (N, 478, 2) float64
    with NaN where no face was found, found (N,) bool, ms (N,) float64, meta (JSON string))."""
    import cv2
    import mediapipe as mp

    names = sorted(p.name for p in folder.glob("*.png"))
    normalised = np.full((len(names), N_MESH, 2), np.nan)
    found = np.zeros(len(names), bool)
    ms = np.zeros(len(names))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for i, name in enumerate(names):
            bgr = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
            if bgr is None:
                print(f"cannot read {folder / name}", file=sys.stderr)
                return 1
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            if upscale > 1:
                rgb = cv2.resize(rgb, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
            start = time.perf_counter()
            result = mesh.process(rgb)
            ms[i] = 1e3 * (time.perf_counter() - start)
            if result.multi_face_landmarks:
                points = result.multi_face_landmarks[0].landmark
                normalised[i] = [(p.x, p.y) for p in points]
                found[i] = True
    solution = "face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)"
    meta = json.dumps({"mediapipe": mp.__version__, "upscale": upscale, "solution": solution})
    np.savez(out, names=np.array(names, dtype=str), normalised=normalised, found=found, ms=ms, meta=np.array(meta))
    return 0


# ----------------------------------------------------------------------------- scores


def inner_truth(true: np.ndarray) -> np.ndarray:
    """(..., 68, 2) true landmarks with the 17 jaw points marked missing (NaN): `metrics.nme` of these is the
    NME over the 51 inner points (the eye corners that normalise it are inner points)."""
    from densereg_data.conventions import JAW

    out = np.array(true, dtype=np.float64)
    out[..., list(JAW), :] = np.nan
    return out


def face_nmes(pred: np.ndarray, true: np.ndarray, found: np.ndarray | None = None) -> dict[str, list[float]]:
    """Per-face `metrics.nme` over 68 and 51 points: pred, true (N, 68, 2) crop pixels; a face not `found`
    gets +inf; NaN (kept) where the truth lacks an outer eye corner."""
    from densereg_net.metrics import nme

    found = np.ones(len(true), bool) if found is None else found
    return {
        "nme": [nme(p, t) if f else float("inf") for p, t, f in zip(pred, true, found)],
        "nme_inner": [nme(p, t) if f else float("inf") for p, t, f in zip(pred, inner_truth(true), found)],
    }


def summarize(nmes) -> dict:
    """`metrics.landmark_summary` (a face not found, NME +inf, is a failure and adds 0 to the CED; "nme" is
    the mean over the faces found); n: faces scored; found: faces with an NME."""
    from densereg_net import metrics

    s = metrics.landmark_summary(nmes)
    return {"nme": s["nme"], "auc@0.08": s["auc@0.08"], "failure_rate": s["failure_rate"], "n": s["n"],
            "found": s["n"] - s["missed"]}


def score(pred: np.ndarray, true: np.ndarray, found: np.ndarray | None = None) -> dict:
    """{"per_face": face_nmes(...), "nme68": summarize(68), "nme51": summarize(51 inner)}."""
    per_face = face_nmes(pred, true, found)
    return {"per_face": per_face, "nme68": summarize(per_face["nme"]), "nme51": summarize(per_face["nme_inner"])}


def offset(pred: np.ndarray, true: np.ndarray, found: np.ndarray) -> list[float]:
    """Mean signed (dx, dy) pixels of pred - true over the found faces' placed points (the half-pixel check)."""
    d = (pred - true)[found].reshape(-1, 2)
    d = d[np.isfinite(d).all(axis=1)]
    return [float(v) for v in d.mean(axis=0)] if len(d) else [float("nan")] * 2


def mediapipe_rows(points: np.ndarray, found: np.ndarray, true: np.ndarray, mappings: list[str]) -> dict:
    """name -> score(...) of MediaPipe's points (N, 478, 2) mapped to 68 by each mapping, plus its offset."""
    out = {}
    for name in mappings:
        pred = np.einsum("lv,nvc->nlc", mapping_matrix(MAPPINGS[name][1]), np.nan_to_num(points))  # (N, 68, 2)
        pred[~found] = np.nan
        out[name] = {**score(pred, true, found), "offset_px": offset(pred, true, found), "source": MAPPINGS[name][0]}
    return out


def ours(checkpoint: Path, shards: Path, split: str, images: np.ndarray, true: np.ndarray, device: str = "auto",
         batch_size: int = 16) -> dict:
    """densereg's rows: evaluate()'s report (and its dense-fit read-out when `evaluate` has `fit`), the
    51-point figures from `Predictor` on each crop, and the mean-shape baseline (module docstring)."""
    import inspect

    import torch

    from densereg_net.checkpoint import load_checkpoint
    from densereg_net.data import eval_batches
    from densereg_net.device import autocast, to_model_layout
    from densereg_net.evaluate import evaluate
    from densereg_net.metrics import landmarks_from_uv
    from densereg_net.predict import Predictor

    has_fit = "fit" in inspect.signature(evaluate).parameters
    report = evaluate(checkpoint, shards, split=split, batch_size=batch_size, device=device,
                      **({"fit": True} if has_fit else {}))
    predictor = Predictor(checkpoint, device=device)
    if predictor.size != images.shape[1]:
        raise ValueError(f"{checkpoint} crops {predictor.size} px, the shards hold {images.shape[1]} px crops")
    pred = np.empty((len(images), 68, 2))
    with torch.no_grad():  # Predictor.predict's steps after its warp (the crop is given), in evaluate's batches
        for ids in eval_batches(len(images), batch_size):
            x = torch.from_numpy(images[ids]).permute(0, 3, 1, 2).float().div(255).to(predictor.device)  # (B, 3, S, S)
            with autocast(predictor.device):
                out = predictor.model.predict(to_model_layout(x))
            for j, i in enumerate(ids):
                pred[i] = landmarks_from_uv(out["uv"][j].float(), out["fg"][j], predictor.landmark_uv).numpy()
    net = score(pred, true)
    check = float(np.nanmax(np.abs(np.asarray(net["per_face"]["nme"]) - np.asarray(report["per_image"]["nme"]))))
    mean_lm = np.asarray(load_checkpoint(checkpoint)["mean_landmarks"], dtype=np.float64)
    rows = {"ours": {**net, "report": {"landmarks": report["landmarks"], "dense": report["dense"],
                                       "parts": report["parts"]}}}
    fit = report.get("dense_fit") if has_fit else None  # evaluate(fit=True): report["dense_fit"]
    fit_landmarks = fit.get("landmarks", fit) if isinstance(fit, dict) else None
    if isinstance(fit_landmarks, dict) and "nme" in fit_landmarks:
        rows["ours (dense fit)"] = {"report": {"landmarks": fit_landmarks}}
    rows["mean shape"] = {**score(np.broadcast_to(mean_lm, true.shape), true),
                          "report": {"landmarks": report["mean_shape_baseline"]["landmarks"]}}
    return {"rows": rows, "split": report["split"], "samples": report["samples"], "evaluate_has_fit": has_fit,
            "predictor_vs_evaluate_max_nme_difference": check}


# ----------------------------------------------------------------------------- output


def strict(obj):
    """`obj` for strict JSON: numpy scalars and arrays to Python, NaN and infinity to None (a face not found
    has NME null in the per-face lists; its count is in "found")."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [strict(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def table(rows: dict[str, dict]) -> str:
    """Markdown table: method, faces, NME 68, NME 51 inner, AUC@0.08 (68), AUC@0.08 (51), failure rate (68).

    A row's 68-point figures are evaluate()'s report where it has one, else its own `nme68`."""
    lines = ["| method | faces | NME 68 | NME 51 inner | AUC@0.08 (68) | AUC@0.08 (51) | failure rate (68) |",
             "|---|---|---|---|---|---|---|"]

    def f(v) -> str:
        return "-" if v is None or not np.isfinite(v) else f"{v:.4f}"

    for name, row in rows.items():
        s68 = row.get("report", {}).get("landmarks") or row["nme68"]
        s51 = row.get("nme51", {})
        n = s68.get("n", "-")
        missed = row["nme68"]["n"] - row["nme68"]["found"] if "nme68" in row else 0
        faces = f"{n} ({missed} not found)" if missed else str(n)
        lines.append(f"| {name} | {faces} | {f(s68['nme'])} | {f(s51.get('nme'))} | {f(s68['auc@0.08'])} | "
                     f"{f(s51.get('auc@0.08'))} | {f(s68['failure_rate'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("shards", type=Path, help="a shard folder (densereg-data build)")
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", type=Path, default=None, help="densereg's network to score beside MediaPipe")
    p.add_argument("--device", default="auto", help="for the network: auto, cpu, cuda, cuda:N")
    p.add_argument("--venv", type=Path, default=None,
                   help=f"MediaPipe's virtual environment (default: densereg's cache folder/mediapipe-{MP_VERSION})")
    p.add_argument("--python", default="python3", help="the Python 3.9-3.12 that makes the venv")
    p.add_argument("--upscale", type=int, default=2, help="integer factor the crops are enlarged by for MediaPipe")
    p.add_argument("--mapping", default="all", help=f"one of {', '.join(MAPPINGS)} or all")
    p.add_argument("--json", type=Path, default=None, help="also write every number (per face too) here")
    a = p.parse_args(argv)
    mappings = list(MAPPINGS) if a.mapping == "all" else [a.mapping]
    if any(m not in MAPPINGS for m in mappings):
        print(f"unknown --mapping {a.mapping!r}: one of {', '.join(MAPPINGS)} or all", file=sys.stderr)
        return 2
    if a.upscale < 1:
        print(f"--upscale must be an integer >= 1, got {a.upscale}", file=sys.stderr)
        return 2
    import logging

    from densereg_data.cache import cache_root
    from densereg_data.errors import DenseRegError
    from densereg_data.format import open_shards

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with open_shards(a.shards, a.split) as reader:
            if len(reader) == 0:
                print(f"split {a.split!r} of {a.shards} holds no faces", file=sys.stderr)
                return 2
            data = reader[0:len(reader)]
    except (DenseRegError, OSError, ValueError) as ex:
        print(f"cannot read split {a.split!r} of {a.shards}: {ex}", file=sys.stderr)
        return 2
    images, true = data["image"], data["landmarks"].astype(np.float64)  # (N, S, S, 3) uint8, (N, 68, 2)
    venv = a.venv or cache_root() / f"mediapipe-{MP_VERSION}"
    try:
        env = ensure_venv(venv, a.python)
        mp_out = run_mediapipe(images, env["python"], a.upscale)
    except SetupError as ex:
        print(str(ex), file=sys.stderr)
        return 2
    found = mp_out["found"]
    mp_rows = mediapipe_rows(mp_out["points"], found, true, mappings)
    rows = {f"MediaPipe {mp_out['mediapipe']} ({name})": r for name, r in mp_rows.items()}
    net = None
    if a.checkpoint is not None:
        try:
            net = ours(a.checkpoint, a.shards, a.split, images, true, a.device)
        except (DenseRegError, OSError, ValueError) as ex:
            print(f"cannot score {a.checkpoint}: {ex}", file=sys.stderr)
            return 2
        rows = {**net["rows"], **rows}
    print(f"split {a.split!r} of {a.shards}: {len(images)} faces, {images.shape[1]} px crops; MediaPipe "
          f"{mp_out['mediapipe']} face mesh (refine_landmarks), upscale x{a.upscale}, found {int(found.sum())}, "
          f"median {np.median(mp_out['ms']):.1f} ms/face; venv {venv}")
    print(table(rows))
    offsets = ", ".join(f"{n} ({r['offset_px'][0]:+.2f}, {r['offset_px'][1]:+.2f})" for n, r in mp_rows.items())
    print(f"\nMediaPipe mean offset mapped - true, px: {offsets}")
    if net is not None:
        print(f"ours: Predictor's per-face 68-point NME vs evaluate's: largest difference "
              f"{net['predictor_vs_evaluate_max_nme_difference']:.2e}; evaluate(fit=...) "
              f"{'used' if net['evaluate_has_fit'] else 'not available'}")
    summary = {name: {"nme68": r.get("nme68"), "nme51": r.get("nme51"),
                      "report": r.get("report", {}).get("landmarks")} for name, r in rows.items()}
    header = {"benchmark": "mediapipe_peer", "shards": str(a.shards), "split": a.split, "faces": len(images),
              "crop_size": int(images.shape[1]), "mediapipe": mp_out["mediapipe"], "upscale": a.upscale,
              "mediapipe_found": int(found.sum()), "mediapipe_ms_median": float(np.median(mp_out["ms"])),
              "venv": str(venv), "venv_created": env["created"], "install_seconds": env["install_seconds"],
              "checkpoint": str(a.checkpoint) if a.checkpoint else None}
    if a.json:
        full = {**header, "sources": data["source"], "mediapipe_found_per_face": found.tolist(),
                "rows": rows, **({"ours_checks": {k: v for k, v in net.items() if k != "rows"}} if net else {})}
        a.json.write_text(json.dumps(strict(full), allow_nan=False) + "\n")
    print(json.dumps(strict({**header, "summary": summary}), allow_nan=False))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":  # inside MediaPipe's venv: no densereg imports
        w = argparse.ArgumentParser(prog="mediapipe_peer.py --worker")
        w.add_argument("--worker", action="store_true")
        w.add_argument("folder", type=Path)
        w.add_argument("out", type=Path)
        w.add_argument("--upscale", type=int, default=1)
        wa = w.parse_args()
        sys.exit(worker(wa.folder, wa.out, wa.upscale))
    sys.exit(main())
