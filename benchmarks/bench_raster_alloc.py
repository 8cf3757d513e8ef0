"""Page faults of `render_uv_parts` at 1024x1024: its outputs in two allocations (as shipped) or four.

Each variant runs in a fresh Python process (allocator state is per process), calls `render_uv_parts`
on bench_raster.py's inputs at 1024x1024 `--runs` times after 3 warm-up calls, and reports the median
time and the minor page faults per call. "four" allocates triangle, barycentrics, U-V and parts as
separate arrays (the layout the rasterizer had before) by replacing `densereg_data.raster.cpu.raster_arrays`
and `uv_parts_arrays` in that process; the comment above `raster_arrays` says why the count differs.

    .venv/bin/python benchmarks/bench_raster_alloc.py [--runs 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ["NUMBA_NUM_THREADS"] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import json_line, machine, markdown_table  # noqa: E402


def child(variant: str, runs: int) -> None:
    import warnings

    import numpy as np
    from _common import time_it
    from bench_raster import bench_inputs

    from densereg_data.raster import api, cpu

    warnings.filterwarnings("ignore")
    if variant == "four":
        cpu.raster_arrays = lambda h, w: (np.empty((h, w), np.int32), np.empty((h, w, 3), np.float32))
        cpu.uv_parts_arrays = lambda h, w: (np.empty((h, w, 2), np.float32), np.empty((h, w), np.uint8))
    v, f, uv, parts = bench_inputs(1024)
    t = time_it(lambda: api.render_uv_parts(v, f, uv, parts, (1024, 1024)), runs=runs, warmup=3)
    print(json.dumps(t))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per variant, interleaved")
    ap.add_argument("--child", choices=["two", "four"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.runs)
        return 0
    got: dict[str, list[dict]] = {"two": [], "four": []}
    for _ in range(args.rounds):
        for variant in got:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", variant,
                                  "--runs", str(args.runs)], check=True, capture_output=True, text=True)
            got[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    names = {"two": "two blocks (shipped)", "four": "four arrays (before)"}
    rows = [{"outputs": names[k], "median ms per process": " / ".join(f"{t['median_ms']:.2f}" for t in ts),
             "page faults per call": " / ".join(f"{t['faults_per_run']:.0f}" for t in ts)} for k, ts in got.items()]
    print(f"machine: {machine()}\n")
    print(markdown_table(rows, list(rows[0])))
    print(json_line("raster_alloc", machine=machine(), runs=args.runs,
                    **{f"{k}_ms": [t["median_ms"] for t in ts] for k, ts in got.items()},
                    **{f"{k}_faults": [t["faults_per_run"] for t in ts] for k, ts in got.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
