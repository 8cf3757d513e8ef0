"""Fit accuracy and speed per face model: synthetic truth, real 300-W faces, and eos on the same faces.

    python benchmarks/bench_fit.py [--model SPEC ...] [--root ../shared/data/300w-dev/02_Outdoor] [--synthetic 100] [--repeats 5]

`--model` takes a face model spec (``menpo3d``, ``ict:PATH``, ``sfm:PATH``; `densereg_data.face.models`),
may be given several times, and ``all`` means menpo3d, ict and sfm from the shared data folder
(../shared/data/face-models); a model whose files are absent or do not load is skipped with the reason.
Single-threaded (BLAS pinned to one thread). Prints one markdown table row per model, the peer tables,
and one JSON line with everything.

- synthetic: faces from the model's identity + expression prior (`densereg_data.testing.synthetic_face`),
  yaw +-75, pitch/roll +-30 deg, landmarks with 1%-of-eye-distance noise; pose error = geodesic angle
  between fitted and true rotation; label error = per-pixel template distance between fitted and true
  correspondence / template eye distance (pixels both cover). For a model with expressions: the Pearson
  correlation of true and fitted expression coefficients pooled over faces and blendshapes, and as the
  chance baseline the same correlation with the truth of the faces shuffled (mean and 95th percentile
  over 200 shuffles).
- real: every face of 300w-dev: fit NME (mean point error / outer-eye-corner distance), time per fit
  (the median over faces of each face's median of `--repeats` fits), and label consistency: the U-V
  rendered in a 256 crop at each inner (non-jaw) annotated landmark vs that landmark's template U-V,
  as template distance / eye distance.
- peer, menpo3d: eos fitting our template and model (benchmarks/eos_peer.py); sfm: eos's own pipeline on
  the Surrey Face Model files (benchmarks/eos_sfm_peer.py); same faces, same run.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from densereg_data import conventions as cv
from densereg_data.face.models import load_face_model, parse_spec

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # _common, eos_peer, eos_sfm_peer beside this file
    sys.path.insert(0, str(HERE))

import _common

SHARED = HERE.parents[1] / "shared" / "data"
DEFAULT_ROOT = SHARED / "300w-dev" / "02_Outdoor"
ALL_MODELS = ("menpo3d", f"ict:{SHARED / 'face-models' / 'ict-facekit.zip'}", f"sfm:{SHARED / 'face-models' / 'sfm'}")


def resolve_specs(specs: list[str] | None) -> list[str]:
    """The `--model` values with ``all`` expanded and repeats dropped (order kept); [menpo3d] when none."""
    out: list[str] = []
    for spec in specs or ["menpo3d"]:
        out += list(ALL_MODELS) if spec == "all" else [spec]
    return list(dict.fromkeys(out))


def load_or_reason(spec: str):
    """(FaceModel, None), or (None, why it cannot be benchmarked): files absent, or the load failed."""
    from densereg_data.errors import DenseRegError

    try:
        _, path = parse_spec(spec)
        if path is not None and not path.exists():
            return None, f"files absent: {path}"
        return load_face_model(spec), None
    except (DenseRegError, ImportError, OSError) as ex:
        return None, f"{type(ex).__name__}: {ex}"


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long arrays (NaN when either is constant)."""
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def synthetic(model, n: int, seed: int = 0, shuffles: int = 200) -> dict:
    from densereg_data.testing import label_errors, pose_error, synthetic_face

    fitter = model.fitter
    rng = np.random.default_rng(seed)
    poses, pixels, true_expression, fitted_expression = [], [], [], []
    for _ in range(n):
        truth = synthetic_face(fitter, rng)
        fit = fitter.fit(truth.landmarks)
        poses.append(pose_error(fit, truth))
        pixels.append(label_errors(fitter, fit, truth))
        true_expression.append(model.shape.split(truth.coefficients)[1].ravel())
        fitted_expression.append(model.shape.split(fit.coefficients)[1].ravel())
    pixels = np.concatenate(pixels)
    out = {"faces": n, "pose_error_deg_median": float(np.median(poses)), "pose_error_deg_mean": float(np.mean(poses)),
           "label_error_median": float(np.median(pixels)), "label_error_mean": float(pixels.mean())}
    if model.shape.n_expression:
        t, f = np.array(true_expression), np.array(fitted_expression)  # (faces, Ke)
        shuffle = np.random.default_rng(seed + 1)
        chance = np.array([pearson(t[shuffle.permutation(n)], f) for _ in range(shuffles)])
        out.update({"expressions": int(t.shape[1]), "expression_corr": pearson(t, f),
                    "expression_corr_chance_mean": float(np.nanmean(chance)),
                    "expression_corr_chance_p95": float(np.nanpercentile(chance, 95))})
    return out


def real(model, root: Path, repeats: int) -> dict:
    from densereg_data.face.labeller import Labeller
    from densereg_data.format.template_facts import TemplateFacts
    from densereg_data.io.images import read_image
    from densereg_data.io.landmarks import read_pts
    from densereg_data.testing import landmark_label_errors

    fitter = model.fitter
    labeller = Labeller(model)
    facts = TemplateFacts.from_dict(model.facts(grid=256))
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
        errs = landmark_label_errors(crop.uv, crop.landmarks[inner], fitter.template.landmark_uv[inner], facts)
        consistency.append(errs[np.isfinite(errs)])
    consistency = np.concatenate(consistency)
    nmes = np.array(nmes)
    return {"faces": len(paths), "fit_ms_median": 1e3 * float(np.median(times)), "fit_ms_mean": 1e3 * float(np.mean(times)),
            "nme_median": float(np.median(nmes)), "nme_mean": float(nmes.mean()), "nme_max": float(nmes.max()),
            "label_consistency_median": float(np.median(consistency)), "label_consistency_mean": float(consistency.mean())}


def peer(model, root: Path, contour_every: int) -> tuple[dict | None, str | None]:
    """(the peer measurement, None) or (None, why there is none) for one face model."""
    import eos_peer

    if model.name not in ("menpo3d", "sfm"):
        return None, f"no eos peer for {model.name}"
    if not eos_peer.eos_available():
        return None, "eos is not installed (pip install eos-py)"
    if model.name == "menpo3d":
        return {"kind": "eos_peer", "summary": eos_peer.compare(root, contour_every=contour_every)["summary"]}, None
    import eos_sfm_peer

    folder = parse_spec(model.spec)[1]
    folder = folder if folder.is_dir() else folder.parent
    if eos_sfm_peer.missing_files(folder):
        return None, f"eos's SFM files missing in {folder}: {', '.join(eos_sfm_peer.missing_files(folder))}"
    res = eos_sfm_peer.compare(root, folder=folder, face_model=model)
    return {"kind": "eos_sfm_peer", "camera_check_px": res["camera_check_px"], "summary": res["summary"]}, None


def _row(name: str, syn: dict, rl: dict) -> str:
    expression = (f"{syn['expression_corr']:.3f} ({syn['expression_corr_chance_mean']:+.3f}, p95 "
                  f"{syn['expression_corr_chance_p95']:.3f})" if "expression_corr" in syn else "-")
    return (f"| {name} | {syn['pose_error_deg_median']:.2f} deg | {syn['label_error_median']:.4f} | {expression} | "
            f"{100 * rl['nme_median']:.2f}% / {100 * rl['nme_mean']:.2f}% | {rl['fit_ms_median']:.2f} | "
            f"{rl['label_consistency_median']:.4f} |")


def _peer_table(name: str, pr: dict) -> str:
    if pr["kind"] == "eos_sfm_peer":
        import eos_sfm_peer

        return (f"{name}: eos's own pipeline on the SFM (benchmarks/eos_sfm_peer.py); camera conversion check "
                f"{pr['camera_check_px']:.1e} px\n\n" + eos_sfm_peer.table(pr["summary"]))
    lines = [f"{name}: eos fitting our template and model (benchmarks/eos_peer.py)\n",
             ("| fitter (same template and model, same faces, same run) | ms / fit median | ratio to densereg | "
              "NME median | NME mean | failed |"), "|---|---|---|---|---|---|"]
    base = pr["summary"]["ours"]["ms_median"]
    for fitter, s in pr["summary"].items():
        lines.append(f"| {fitter} | {s['ms_median']:.2f} | {s['ms_median'] / base:.1f}x | {100 * s['nme_median']:.2f}% | "
                     f"{100 * s['nme_mean']:.2f}% | {s['failed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fit accuracy and speed per face model")
    p.add_argument("--model", action="append", default=None, metavar="SPEC",
                   help="face model spec (NAME or NAME:PATH); repeatable; 'all' = " + ", ".join(ALL_MODELS))
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--synthetic", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--contour-every", type=int, default=1, help="menpo3d peer: eos's contour fit on every k-th face only")
    p.add_argument("--no-peer", action="store_true", help="skip the eos peer measurements")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"300w-dev not found at {args.root}; pass --root", file=sys.stderr)
        return 2
    results, skipped = {}, {}
    for spec in resolve_specs(args.model):
        model, reason = load_or_reason(spec)
        if model is None:
            print(f"skipping {spec}: {reason}", file=sys.stderr)
            skipped[spec] = reason
            continue
        key = model.name if model.name not in results else model.spec
        entry = {"spec": model.spec, "id": model.id, "identity": int(model.shape.n_identity),
                 "expressions": int(model.shape.n_expression),
                 "synthetic": synthetic(model, args.synthetic), "real": real(model, args.root, args.repeats)}
        entry["peer"], why = (None, "--no-peer") if args.no_peer else peer(model, args.root, args.contour_every)
        if why:
            entry["peer_skipped"] = why
        results[key] = entry
    if not results:
        print("no face model could be benchmarked", file=sys.stderr)
        return 2
    machine = f"{_common.machine()}, 1 BLAS thread"
    print(f"command: python benchmarks/bench_fit.py {' '.join(argv if argv is not None else sys.argv[1:])}  |  "
          f"machine: {machine}\n")
    n_syn, n_real = args.synthetic, next(iter(results.values()))["real"]["faces"]
    print(f"| model | synthetic ({n_syn} faces): pose error median | label error median / eye distance | "
          f"expression corr (shuffled truth: mean, p95) | 300w-dev ({n_real} faces): NME median / mean | "
          f"fit ms median ({args.repeats} runs each) | label consistency median (inner) |")
    print("|---|---|---|---|---|---|---|")
    for name, entry in results.items():
        print(_row(name, entry["synthetic"], entry["real"]))
    for spec, reason in skipped.items():
        print(f"| {spec} | skipped: {reason} | | | | | |")
    for name, entry in results.items():
        if entry["peer"]:
            print("\n" + _peer_table(name, entry["peer"]))
        elif "peer_skipped" in entry:
            print(f"\n{name}: no peer ({entry['peer_skipped']})")
    print(_common.json_line("fit", machine=machine, root=str(args.root), models=results, skipped=skipped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
