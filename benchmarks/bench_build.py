"""End-to-end build of 300w-dev at 256 with N workers: images/s, per-stage breakdown, bytes per sample.

    .venv/bin/python benchmarks/bench_build.py [--root ../shared/data/300w-dev] [--workers 2] [--runs 3]

Prints a markdown table and one JSON line (median over runs; target >= 40 images/s with 2 workers).
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
    args = ap.parse_args()
    if not args.root.is_dir():
        print(f"skipped: {args.root} not found", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.WARNING)
    from densereg_data.build.pipeline import STAGES, BuildConfig, run_build

    runs = []
    for r in range(args.runs + 1):  # run 0 warms the caches (template, numba) and is not counted
        out = Path(tempfile.mkdtemp(prefix="bench_build_"))
        try:
            cfg = BuildConfig(dataset="pts", root=str(args.root), out=str(out / "s"), size=args.size, workers=args.workers,
                              progress=False, compression=args.compression, val_fraction=0.2, seed=0)
            rep = run_build(cfg)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if r:
            runs.append(rep)
    med = statistics.median(rep.images_per_second for rep in runs)
    stage_ms = {s: statistics.median(1000 * rep.stage_seconds[s] / rep.labelled for rep in runs) for s in STAGES}
    bps = statistics.median(rep.bytes / rep.written for rep in runs)
    print("| metric | value |\n|---|---|")
    print(f"| images/s ({args.workers} workers, median of {len(runs)}) | {med:.1f} (target >= 40) |")
    for s in STAGES:
        where = "main process" if s == "write" else "per worker"
        print(f"| {s} ms/image ({where}) | {stage_ms[s]:.1f} |")
    print(f"| bytes/sample on disk ({args.compression}) | {bps / 1e3:.1f} kB |")
    print(f"| samples written / skipped | {runs[0].written} / {runs[0].skipped} |")
    print(json.dumps({"bench": "build", "images_per_second": round(med, 2), "workers": args.workers,
                      "runs": [round(r.images_per_second, 2) for r in runs], "stage_ms": {k: round(v, 2) for k, v in stage_ms.items()},
                      "bytes_per_sample": round(bps), "size": args.size, "compression": args.compression,
                      "samples": runs[0].written, "skipped": runs[0].skipped}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
