"""End-to-end build of 300w-dev at 256 with N workers: images/s, per-stage breakdown, bytes per sample,
and, in the same run, decode-only throughput of the same images with the same workers (the peer: how
close the build gets to just reading its inputs), printed as build/decode.

    .venv/bin/python benchmarks/bench_build.py [--root ../shared/data/300w-dev] [--workers 2] [--runs 3] [--model SPEC]

Prints a markdown table and one JSON line (median over runs). --model: the face model (default menpo3d;
e.g. ict:../shared/data/face-models/ict-facekit.zip, sfm:../shared/data/face-models/sfm).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "300w-dev"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--compression", default="lzf")
    ap.add_argument("--model", default="menpo3d")
    args = ap.parse_args()
    if not args.root.is_dir():
        print(f"skipped: {args.root} not found", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.WARNING)
    from densereg_data.build.pipeline import STAGES, BuildConfig, run_build

    runs, decode_runs = [], []
    for r in range(args.runs + 1):  # run 0 warms the caches (template, numba, page cache) and is not counted
        out = Path(tempfile.mkdtemp(prefix="bench_build_"))
        try:
            cfg = BuildConfig(dataset="pts", root=str(args.root), out=str(out / "s"), size=args.size, workers=args.workers,
                              progress=False, compression=args.compression, val_fraction=0.2, seed=0, model=args.model)
            rep = run_build(cfg)
            decode = decode_only(cfg)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if r:
            runs.append(rep)
            decode_runs.append(decode)
    med = statistics.median(rep.images_per_second for rep in runs)
    dec = statistics.median(decode_runs)
    stage_ms = {s: statistics.median(1000 * rep.stage_seconds[s] / rep.labelled for rep in runs) for s in STAGES}
    bps = statistics.median(rep.bytes / rep.written for rep in runs)
    print(f"model: {args.model}\n\n| metric | value |\n|---|---|")
    print(f"| build images/s ({args.workers} workers, median of {len(runs)}) | {med:.1f} |")
    print(f"| decode-only images/s (same images, same workers) | {dec:.1f} |")
    print(f"| build / decode | {med / dec:.2f} |")
    for s in STAGES:
        where = "main process" if s == "write" else "per worker"
        print(f"| {s} ms/image ({where}) | {stage_ms[s]:.1f} |")
    print(f"| bytes/sample on disk ({args.compression}) | {bps / 1e3:.1f} kB |")
    print(f"| samples written / skipped | {runs[0].written} / {runs[0].skipped} |")
    print(json.dumps({"bench": "build", "model": args.model, "images_per_second": round(med, 2), "decode_images_per_second": round(dec, 2),
                      "build_over_decode": round(med / dec, 3), "workers": args.workers,
                      "runs": [round(r.images_per_second, 2) for r in runs], "stage_ms": {k: round(v, 2) for k, v in stage_ms.items()},
                      "bytes_per_sample": round(bps), "size": args.size, "compression": args.compression,
                      "samples": runs[0].written, "skipped": runs[0].skipped}))
    return 0


def _decode_one(ref, settings) -> tuple[int, int]:
    """Decode one sample exactly as the build's first stage does; return only its size (no pixels)."""
    from densereg_data.build.sample import decode_sample

    reduced, _, _ = decode_sample(ref, settings)
    return reduced.image.shape[:2]


def decode_only(cfg) -> float:
    """Images/s of decoding the build's samples with its executor and worker count, nothing else."""
    import time

    from densereg_data.build.datasets import make_dataset
    from densereg_data.build.executors import EXECUTORS
    from densereg_data.build.sample import LabelSettings

    refs = make_dataset(cfg.dataset, cfg.root, val_fraction=cfg.val_fraction, seed=cfg.seed).scan(cfg.split).samples
    settings = LabelSettings.of(cfg)
    executor = EXECUTORS[cfg.executor](cfg)
    try:
        t0 = time.perf_counter()
        for _ in executor.imap(_decode_one, refs, settings):
            pass
        return len(refs) / (time.perf_counter() - t0)
    finally:
        executor.close()


if __name__ == "__main__":
    raise SystemExit(main())
