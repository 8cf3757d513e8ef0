"""Fit accuracy and speed: synthetic truth, real 300-W faces, and eos fitting the same template.

    python benchmarks/bench_fit.py [--root ../shared/data/300w-dev/02_Outdoor] [--synthetic 100] [--repeats 5]

Single-threaded (BLAS pinned to one thread). Prints a markdown table and one JSON line.

- synthetic: faces from the model's prior, yaw +-75, pitch/roll +-30 deg, landmarks with 1%-of-eye-
  distance noise; pose error = geodesic angle between fitted and true rotation; label error = per-pixel
  template distance between fitted and true correspondence / template eye distance (pixels both cover).
- real: every face of 300w-dev: fit NME (mean point error / outer-eye-corner distance), time per fit
  (the median over faces of each face's median of `--repeats` fits), and label consistency: the U-V
  rendered in a 256 crop at each inner (non-jaw) annotated landmark vs that landmark's template U-V,
  as template distance / eye distance.
- peer: eos (benchmarks/eos_peer.py) fitting our template and model on the same faces, same run.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.face.models import load_face_model

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "300w-dev" / "02_Outdoor"


def synthetic(n: int, seed: int = 0) -> dict:
    from densereg_data.testing import label_errors, pose_error, synthetic_face

    fitter = load_face_model().fitter
    rng = np.random.default_rng(seed)
    poses, pixels = [], []
    for _ in range(n):
        truth = synthetic_face(fitter, rng)
        fit = fitter.fit(truth.landmarks)
        poses.append(pose_error(fit, truth))
        pixels.append(label_errors(fitter, fit, truth))
    pixels = np.concatenate(pixels)
    return {"faces": n, "pose_error_deg_median": float(np.median(poses)), "pose_error_deg_mean": float(np.mean(poses)),
            "label_error_median": float(np.median(pixels)), "label_error_mean": float(pixels.mean())}


def real(root: Path, repeats: int) -> dict:
    from densereg_data.io.images import read_image
    from densereg_data.face.labeller import Labeller
    from densereg_data.format.template_facts import TemplateFacts
    from densereg_data.testing import landmark_label_errors
    from densereg_data.io.landmarks import read_pts

    model = load_face_model()
    fitter = model.fitter
    labeller = Labeller(model)
    facts = model.facts(grid=256)
    facts = TemplateFacts.from_dict(facts)
    inner = [i for i in range(cv.N_LANDMARKS) if i not in cv.JAW]
    paths = sorted(root.glob("*.pts"))
    fitter.fit(read_pts(paths[0]).points)  # warm-up
    nmes, times, consistency = [], [], []
    for pts in paths:
        x = read_pts(pts).points
        per_face = []
        for _ in range(repeats):
            start = time.perf_counter()
            fit = fitter.fit(x)
            per_face.append(time.perf_counter() - start)
        times.append(np.median(per_face))
        nmes.append(fit.nme)
        image = read_image(next(p for p in (pts.with_suffix(".jpg"), pts.with_suffix(".png")) if p.exists()))
        crop = labeller.label_crop(image, x, size=256)
        errs = landmark_label_errors(crop.uv, crop.landmarks[inner], fitter.template.landmark_uv[inner],
                                     facts)
        consistency.append(errs[np.isfinite(errs)])
    consistency = np.concatenate(consistency)
    nmes = np.array(nmes)
    return {"faces": len(paths), "fit_ms_median": 1e3 * float(np.median(times)), "fit_ms_mean": 1e3 * float(np.mean(times)),
            "nme_median": float(np.median(nmes)), "nme_mean": float(nmes.mean()), "nme_max": float(nmes.max()),
            "label_consistency_median": float(np.median(consistency)), "label_consistency_mean": float(consistency.mean())}


def peer(root: Path, contour_every: int) -> dict | None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import eos_peer

    if not eos_peer.eos_available():
        return None
    return eos_peer.compare(root, contour_every=contour_every)["summary"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fit accuracy and speed")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--synthetic", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--contour-every", type=int, default=1, help="run eos's contour fit on every k-th face only")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"300w-dev not found at {args.root}; pass --root", file=sys.stderr)
        return 2
    syn = synthetic(args.synthetic)
    rl = real(args.root, args.repeats)
    pr = peer(args.root, args.contour_every)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread"
    print(f"command: python benchmarks/bench_fit.py  |  machine: {machine}\n")
    print("| measure | densereg |")
    print("|---|---|")
    print(f"| synthetic ({syn['faces']} faces): median pose error | {syn['pose_error_deg_median']:.2f} deg |")
    print(f"| synthetic: median per-pixel label error / eye distance | {syn['label_error_median']:.4f} |")
    print(f"| 300w-dev ({rl['faces']} faces): fit NME median / mean | {100 * rl['nme_median']:.2f}% / {100 * rl['nme_mean']:.2f}% |")
    print(f"| 300w-dev: fit time, median of per-face medians ({args.repeats} runs each) | {rl['fit_ms_median']:.2f} ms |")
    print(f"| 300w-dev: label consistency median (inner landmarks) | {rl['label_consistency_median']:.4f} |")
    if pr:
        print("\n| fitter (same template and model, same faces, same run) | ms / fit median | ratio to densereg | NME median | NME mean | failed |")
        print("|---|---|---|---|---|---|")
        base = pr["ours"]["ms_median"]
        for name, s in pr.items():
            print(f"| {name} | {s['ms_median']:.2f} | {s['ms_median'] / base:.1f}x | {100 * s['nme_median']:.2f}% | {100 * s['nme_mean']:.2f}% | {s['failed']} |")
    print(json.dumps({"bench": "fit", "machine": machine, "synthetic": syn, "real": rl, "peer": pr}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
