"""New views (3D profiling) in a build: views/s against the plain build's images/s, same run.

    .venv/bin/python benchmarks/bench_views.py [--root ../shared/data/300w-dev] [--workers 2] [--runs 3]
        [--views yaw=15,30,45,60,75,90] [--size 256] [--sheet views.png]

Each run builds 300w-dev twice with the same workers, alternating: plain, then with --views. Prints
the medians (plain images/s; with views: faces/s, views written/s, samples/s; per-stage ms per face),
the ratio views/s over plain images/s, the views written and skipped by kind, and one JSON line.
--sheet writes `densereg-data preview --views` of the last views build (16 faces x their views).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import DEFAULT_ROOT  # noqa: E402  (importing it also sets one BLAS thread per worker, as the build bench)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", default="yaw=15,30,45,60,75,90")
    ap.add_argument("--sheet", type=Path, default=None)
    args = ap.parse_args()
    if not args.root.is_dir():
        print(f"skipped: {args.root} not found", file=sys.stderr)
        return 0
    logging.basicConfig(level=logging.WARNING)
    from densereg_data.build.pipeline import STAGES, BuildConfig, run_build

    plain, views, kinds = [], [], collections.Counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_views_"))
    try:
        for r in range(args.runs + 1):  # run 0 warms the caches and is not counted
            for with_views in (False, True):
                out = tmp / f"r{r}{'v' if with_views else 'p'}"
                cfg = BuildConfig(dataset="pts", root=str(args.root), out=str(out), size=args.size, workers=args.workers,
                                  progress=False, val_fraction=0.2, seed=0,
                                  views=args.views if with_views else None)
                rep = run_build(cfg)
                if r:
                    (views if with_views else plain).append(rep)
                if with_views and r == args.runs:
                    kinds = collections.Counter(json.loads(line)["kind"] for line in (out / "skipped.jsonl").open())
                    if args.sheet is not None:
                        from densereg_data.build.preview import write_contact_sheet

                        write_contact_sheet(out, args.sheet, views=True, n=16)
                if r < args.runs or not with_views:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plain_ips = statistics.median(rep.images_per_second for rep in plain)
    faces_ps = statistics.median(rep.images_per_second for rep in views)
    views_ps = statistics.median(rep.views / rep.seconds for rep in views)
    samples_ps = statistics.median(rep.written / rep.seconds for rep in views)
    stage_ms = {s: statistics.median(1000 * rep.stage_seconds[s] / rep.labelled for rep in views) for s in STAGES}
    last = views[-1]
    print(f"views: {args.views}, size {args.size}, {args.workers} workers, median of {len(views)} runs\n")
    print("| metric | value |\n|---|---|")
    print(f"| plain build images/s | {plain_ips:.1f} |")
    print(f"| views build faces/s | {faces_ps:.1f} |")
    print(f"| views written/s | {views_ps:.1f} |")
    print(f"| samples written/s (faces + views) | {samples_ps:.1f} |")
    print(f"| views/s over plain images/s | {views_ps / plain_ips:.2f} |")
    for s in STAGES:
        print(f"| {s} ms per face ({'main process' if s == 'write' else 'per worker'}) | {stage_ms[s]:.1f} |")
    print(f"| faces / views written | {last.written - last.views} / {last.views} |")
    print(f"| skipped by kind | {', '.join(f'{k} {v}' for k, v in sorted(kinds.items())) or 'none'} |")
    print(json.dumps({"bench": "views", "views": args.views, "size": args.size, "workers": args.workers,
                      "plain_images_per_second": round(plain_ips, 2), "faces_per_second": round(faces_ps, 2),
                      "views_per_second": round(views_ps, 2), "samples_per_second": round(samples_ps, 2),
                      "ratio": round(views_ps / plain_ips, 3), "stage_ms": {k: round(v, 2) for k, v in stage_ms.items()},
                      "faces": last.written - last.views, "views_written": last.views, "skipped": dict(kinds),
                      "plain_runs": [round(r.images_per_second, 2) for r in plain],
                      "views_runs": [round(r.views / r.seconds, 2) for r in views]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
