"""Face detectors on the 300-W outdoor dev set: faces found, ms per image, the detector -> landmark box map,
and (with --checkpoint) `densereg-net predict`'s detector path scored against the annotations.

    python benchmarks/bench_detect.py [--data ../shared/data/300w-dev] [--detectors mtcnn,dlib-hog,haar]
    python benchmarks/bench_detect.py --fit-mapping          # prints LANDMARK_BOX_FROM_DETECTOR's values
    python benchmarks/bench_detect.py --detectors mtcnn --checkpoint runs/x/best.pt

Every image (``02_Outdoor/*.jpg|png`` with its .pts: one annotated face each) is read once with
`densereg_data.io.images.read_image`; each detector of `densereg_net.detect.DETECTORS` whose package is
installed runs `detect_faces` on it (the production call: downscaling included), timed per image after
one warm-up image. A detection *matches* the annotated face when its centre lies inside the box of the
68 annotated points and the square roots of the two boxes' areas are within a factor of 2; the image
counts as found when any detection matches. ``extra`` counts the detections that match nothing (false
positives, or unannotated faces: a few images hold more than one person).

Box map: over the found faces, the medians of max(landmark w, h) / max(w, h) and (landmark centre -
detector centre) / (w, h); ``crop IoU`` is the median IoU of the crop square `landmark_box` (with the constants in
`densereg_net.detect`) gives and the crop square of the annotated points (`crop_from_landmarks`).

--checkpoint: `Predictor.predict_all` on every image with the first detector; the prediction whose
detection matches the annotated face is scored with `densereg_net.metrics.nme` (outer-eye-corner
distance, points 36 and 45); beside it, `Predictor.predict` with the annotated points as the crop (the
``--landmarks`` path, the crop the network was trained on). --held-out SHARDS scores the faces of the
images in the shards' val split (their `source`) on their own too: the faces the network never saw.

Prints markdown tables and one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import json_line, machine, markdown_table

from densereg_data.geometry.crop import crop_from_box, crop_from_landmarks
from densereg_data.io.images import read_image
from densereg_data.io.landmarks import read_landmarks
from densereg_net.detect import DETECTORS, LANDMARK_BOX_FROM_DETECTOR, detect_faces, landmark_box


def faces(root: Path, limit: int | None):
    """[(image path, (68, 2) points)] of the dev set, sorted by name."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png") and p.with_suffix(".pts").is_file())
    return [(p, read_landmarks(p.with_suffix(".pts")).points) for p in paths[:limit]]


def box_of(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    return np.array([lo[0], lo[1], hi[0], hi[1]])


def matches(det, ref) -> bool:
    """Detection (x0, y0, x1, y1, ...) matches reference box: centre inside, sqrt(area) within 2x."""
    cx, cy = (det[0] + det[2]) / 2, (det[1] + det[3]) / 2
    a = np.sqrt(max(det[2] - det[0], 0) * max(det[3] - det[1], 0))
    b = np.sqrt((ref[2] - ref[0]) * (ref[3] - ref[1]))
    return bool(ref[0] <= cx <= ref[2] and ref[1] <= cy <= ref[3] and 0.5 <= a / b <= 2.0)


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def square_of(A: np.ndarray, size: int = 256) -> np.ndarray:
    """The crop square (x0, y0, x1, y1 edges, image pixels) of crop_from_image A of side `size`."""
    a = A[0, 0]
    x0, y0 = (-0.5 - A[0, 2]) / a, (-0.5 - A[1, 2]) / a
    return np.array([x0, y0, x0 + size / a, y0 + size / a])


def best_match(boxes: np.ndarray, ref: np.ndarray) -> int | None:
    """Index of the matching detection with the highest IoU with `ref`, or None."""
    hits = [(iou(b, ref), i) for i, b in enumerate(boxes) if matches(b, ref)]
    return max(hits)[1] if hits else None


def bench_detectors(data, names):
    rows, fits = [], {}
    for name in names:
        try:
            detect_faces(read_image(data[0][0]), name)  # warm-up: loads the models
        except ImportError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        times, found, extra, ratios, crop_ious = [], 0, 0, [], []
        for path, pts in data:
            image = read_image(path)
            t0 = time.perf_counter()
            boxes = detect_faces(image, name)
            times.append((time.perf_counter() - t0) * 1e3)
            ref = box_of(pts)
            i = best_match(boxes, ref)
            extra += len(boxes) - (i is not None)
            if i is None:
                continue
            found += 1
            x0, y0, x1, y1 = boxes[i, :4]
            w, h = x1 - x0, y1 - y0
            ratios.append((max(ref[2] - ref[0], ref[3] - ref[1]) / max(w, h),
                           ((ref[0] + ref[2]) - (x0 + x1)) / 2 / w, ((ref[1] + ref[3]) - (y0 + y1)) / 2 / h))
            crop_ious.append(iou(square_of(crop_from_box(landmark_box(boxes[i], name), 256)),
                                 square_of(crop_from_landmarks(pts, 256))))
        fit = np.median(np.asarray(ratios), axis=0) if ratios else np.full(3, np.nan)
        fits[name] = [round(float(v), 3) for v in fit]
        rows.append({"detector": name, "found/images": f"{found}/{len(data)}", "found %": 100.0 * found / len(data),
                     "extra": extra, "ms/image median": float(np.median(times)), "ms/image p90": float(np.percentile(times, 90)),
                     "fit scale, dx, dy": ", ".join(f"{v:.3f}" for v in fit),
                     "crop IoU median": float(np.median(crop_ious)) if crop_ious else float("nan"),
                     "crop IoU p10": float(np.percentile(crop_ious, 10)) if crop_ious else float("nan")})
    return rows, fits


def held_out_sources(shards: str, split: str = "val") -> set[str]:
    """The `source` (image path relative to the dataset root) of every sample of a split."""
    from densereg_data.format import ShardIndex, read_split
    return {s.decode() if isinstance(s, bytes) else str(s)
            for s in read_split(ShardIndex.open(shards), split, keys=("source",))["source"]}


def bench_predict(data, checkpoint: str, detector: str, device: str, root: Path, held_out: set[str] = frozenset()):
    from densereg_net.metrics import nme
    from densereg_net.predict import Predictor

    predictor = Predictor(checkpoint, device)
    fit = predictor.facts is not None and predictor.facts.model is not None  # the dense fit's read-out too
    found, det_nme, lm_nme, lm_nme_found, n_faces, times, fit_nme = 0, [], [], [], 0, [], []
    unseen = []  # per found face: is its image in the held-out split
    for path, pts in data:
        image = read_image(path)
        t0 = time.perf_counter()
        preds = predictor.predict_all(image, detector, fit=fit)
        times.append((time.perf_counter() - t0) * 1e3)
        n_faces += len(preds)
        lm = nme(predictor.predict(image, landmarks=pts).landmarks, pts)
        lm_nme.append(lm)
        ref = box_of(pts)
        dets = np.array([p.detection for p in preds]).reshape(-1, 5)
        i = best_match(dets, ref)
        if i is None:
            continue
        found += 1
        unseen.append(str(Path(path).relative_to(root)) in held_out)
        det_nme.append(nme(preds[i].landmarks, pts))
        lm_nme_found.append(lm)
        if fit:  # a failed dense fit scores as a failure
            fit_nme.append(nme(preds[i].fit_landmarks, pts) if preds[i].fit_landmarks is not None else float("inf"))

    def summary(v):
        v = np.asarray(v)
        return {"mean": float(v.mean()), "median": float(np.median(v)), "failure >0.08": float((v > 0.08).mean())}

    rows = [{"crop": f"detector ({detector}), faces found", "faces": found, **summary(det_nme)},
            *([{"crop": f"detector ({detector}), faces found, dense fit read-out", "faces": found, **summary(fit_nme)}]
              if fit else []),
            {"crop": "annotated landmarks, same faces", "faces": found, **summary(lm_nme_found)},
            {"crop": "annotated landmarks, all faces", "faces": len(lm_nme), **summary(lm_nme)}]
    if any(unseen):
        keep = np.asarray(unseen)
        rows += [{"crop": f"detector ({detector}), held-out faces found", "faces": int(keep.sum()),
                  **summary(np.asarray(det_nme)[keep])},
                 *([{"crop": f"detector ({detector}), held-out faces found, dense fit read-out", "faces": int(keep.sum()),
                     **summary(np.asarray(fit_nme)[keep])}] if fit else []),
                 {"crop": "annotated landmarks, the same held-out faces", "faces": int(keep.sum()),
                  **summary(np.asarray(lm_nme_found)[keep])}]
    return rows, {"found": found, "images": len(data), "faces_returned": n_faces,
                  "predict_all_ms_median": float(np.median(times))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/300w-dev")
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--limit", type=int, help="first N images only")
    p.add_argument("--fit-mapping", action="store_true", help="print the measured box maps as Python constants")
    p.add_argument("--checkpoint", help="also score `predict_all` (the first detector) with this checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--held-out", help="shard folder whose val split's images are also scored on their own")
    a = p.parse_args()
    root = Path(a.data)
    if not root.is_dir():
        sys.exit(f"no data at {root} (the 300-W outdoor dev folder; --data)")
    data = faces(root, a.limit)
    print(f"{len(data)} images from {root}; {machine()}")
    names = a.detectors.split(",")
    rows, fits = bench_detectors(data, names)
    print(markdown_table(rows, ["detector", "found/images", "found %", "extra", "ms/image median", "ms/image p90",
                                "fit scale, dx, dy", "crop IoU median", "crop IoU p10"]))
    if a.fit_mapping:
        for name, fit in fits.items():
            print(f'    "{name}": BoxMap({", ".join(map(str, fit))}),  # now: {tuple(LANDMARK_BOX_FROM_DETECTOR[name])}')
    result = {"images": len(data), "detectors": rows}
    if a.checkpoint:
        held = held_out_sources(a.held_out) if a.held_out else set()
        prow, pinfo = bench_predict(data, a.checkpoint, names[0], a.device, root, held)
        pinfo["held_out_images"] = len(held)
        print(f"\npredict_all ({names[0]}): {pinfo['found']}/{pinfo['images']} annotated faces found, "
              f"{pinfo['faces_returned']} faces returned, {pinfo['predict_all_ms_median']:.0f} ms/image median")
        print(markdown_table(prow, ["crop", "faces", "mean", "median", "failure >0.08"]))
        result["predict"] = {**pinfo, "nme": prow}
    print(json_line("detect", **result))


if __name__ == "__main__":
    main()
