"""Fit accuracy on the real annotations of every registered dataset in ../shared/data/landmarks, and
fit-only throughput on MERL-RAV with 2 workers.

    .venv/bin/python benchmarks/bench_datasets.py [--landmarks ../shared/data/landmarks] [--model menpo3d] [--workers 2]

Each dataset is fitted with `densereg-data fit` (`densereg_data.build.fitrun.run_fit`) into a
temporary folder; the table gives, per dataset and per split / subset (WFLW's attributes, MERL-RAV's
view folders), faces, box-NME median and mean (mean residual over the placed points / sqrt(w x h) of
their box), eye-NME median where both outer eye corners are placed, and failures (box-NME > 10%).
AFLW2000-3D adds our yaw / pitch / roll against its `Pose_Para` (mean absolute error, degrees).
Faces of a scheme other than iBUG's 68 are fitted on their 68-point subset, and WFLW also in its own 98
points (`--scheme native`: the 30 points without an iBUG twin bound from half of the faces; the other
half is the "held-out" row). Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

DEFAULT_LANDMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "landmarks"
#: dataset -> its --root under the landmarks folder (the layout its authors distribute)
ROOTS = {
    "merlrav": "merl_rav/abhi1kumar+MERL-RAV_dataset",
    "cofw68": "cofw68/golnazghiasi+cofw68-benchmark",
    "wflw": "wflw/AmrElsersy+PFLD-Pytorch-Landmarks/data/WFLW",
    "aflw2000-3d": "aflw2000_3d/yfeng95+PRNet/TestImages/AFLW2000",
    "coco-wholebody": "coco_wholebody/open-mmlab+mmpose/tests/data/coco",
    "300vw": "300vw/open-mmlab+mmpose/tests/data/300vw",
}


def fit_dataset(name: str, root: Path, model: str, workers: int, scheme: str = "ibug68") -> dict:
    from densereg_data.build.config import BuildConfig
    from densereg_data.build.fitrun import run_fit

    with tempfile.TemporaryDirectory(prefix=f"bench_{name}_") as tmp:
        if name == "coco-wholebody":
            from densereg_data.testing import coco_wholebody_layout

            root = coco_wholebody_layout(root, Path(tmp) / "coco")
        report = run_fit(BuildConfig(dataset=name, root=str(root), out=str(Path(tmp) / "fits"), model=model,
                                     workers=workers, progress=False, scheme=scheme))
        pose = _pose_error(Path(tmp) / "fits") if name == "aflw2000-3d" else None
    return {"faces": report.faces, "fitted": report.fitted, "skipped": report.skipped,
            "faces_per_second": report.faces_per_second, "groups": report.summary["groups"], "pose_mae_deg": pose,
            "binding": report.summary.get("binding")}


def _pose_error(out: Path) -> dict:
    import h5py

    ours, theirs = [], []
    for f in sorted(out.glob("*-0000*.h5")):
        with h5py.File(f, "r") as h:
            ours.append(h["pose"][()])
            theirs.append(h["dataset_pose"][()])
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    ok = np.isfinite(theirs).all(axis=1)
    err = np.abs(ours[ok] - theirs[ok])
    return {"faces": int(ok.sum()), "yaw": float(err[:, 0].mean()), "pitch": float(err[:, 1].mean()),
            "roll": float(err[:, 2].mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landmarks", type=Path, default=DEFAULT_LANDMARKS)
    ap.add_argument("--model", default="menpo3d")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from densereg_data.build.datasets import DATASETS

    results = {}
    for name, rel in ROOTS.items():
        root = args.landmarks / rel
        if name not in DATASETS or not root.is_dir():
            print(f"skipped {name}: {'not registered' if name not in DATASETS else f'{root} not found'}", file=sys.stderr)
            continue
        results[name] = fit_dataset(name, root, args.model, args.workers)
        if name == "wflw":  # the 98-point scheme: 30 points bound from half of the faces, the other half held out
            results["wflw (98 points)"] = fit_dataset(name, root, args.model, args.workers, scheme="native")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.workers} workers"
    print(f"command: python benchmarks/bench_datasets.py --model {args.model}  |  machine: {machine}\n")
    print("| dataset | split / subset | faces | box-NME median | box-NME mean | eye-NME median (faces) | failures |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for key, g in r["groups"].items():
            eye = "-" if g["eye_nme_median"] is None else f"{100 * g['eye_nme_median']:.2f}% ({g['eye_faces']})"
            print(f"| {name} | {key} | {g['faces']} | {100 * g['box_nme_median']:.2f}% | {100 * g['box_nme_mean']:.2f}% "
                  f"| {eye} | {g['failures']} |")
    for name, r in results.items():
        print(f"\n{name}: {r['fitted']} of {r['faces']} fitted, {r['skipped']} skipped, {r['faces_per_second']:.0f} faces/s")
        if r["pose_mae_deg"]:
            p = r["pose_mae_deg"]
            print(f"{name}: pose mean absolute error vs the dataset's ({p['faces']} faces): yaw {p['yaw']:.1f}, "
                  f"pitch {p['pitch']:.1f}, roll {p['roll']:.1f} deg")
    print(json.dumps({"bench": "datasets", "model": args.model, "machine": machine, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
