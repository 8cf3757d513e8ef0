"""Rasterizer speed on menpo3d's face template (53,349 vertices, 106,111 triangles).

Single-threaded (NUMBA_NUM_THREADS=1, no parallel kernels). Times `render_uv_parts` (triangle index +
barycentrics + U-V + parts, validation included) at 256 and 1024, and the pyrender + OSMesa peer
drawing the same mesh at 256 (render only, render + readback, and the full "pyrender" backend), and,
for scale, the plain numpy "reference" backend (the test oracle) at both sizes.
With `--threads N` (N > 1) it also times `render_uv_parts(..., threads=N)` at both sizes, in the
same run; those rows are not the single-thread targets.

    PYOPENGL_PLATFORM=osmesa .venv/bin/python benchmarks/bench_raster.py [--runs 30] [--threads 2]

Prints a markdown table and one JSON line (the command, the machine, the medians, the peer's and
the ratio). "faults" is the minor page faults per call: at 1024 the outputs are ~25 MB, and whether
the allocator hands back memory it already has (0 faults) or fresh pages from the OS (~1,500 faults)
depends on the process's allocation history.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

os.environ["NUMBA_NUM_THREADS"] = "1"
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _common import json_line, machine, markdown_table, time_it  # noqa: E402

TARGET_MS = {256: 1.5, 1024: 6.0}


def template_in_pixels(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The template projected orthographically so the face fills ~80 % of an n x n image."""
    import menpo3d.io as m3io

    from densereg_data.face.pictures import frontal_in_pixels

    m = m3io.import_builtin_asset("template.ply")
    return frontal_in_pixels(m.points, n, fill=0.8), m.trilist


def bench_inputs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`render_uv_parts`'s inputs for the benchmark at n x n: vertices (V, 3) float64 pixels, faces
    (F, 3) int64, a U-V (V, 2) float64 spanning the projected face, parts (F,) uint8 cycling 1..8."""
    v, f = template_in_pixels(n)
    xy = v[:, :2]
    uv = (xy - xy.min(0)) / (xy.max(0) - xy.min(0))
    uv[:, 1] = 1 - uv[:, 1]
    parts = (np.arange(len(f)) % 8 + 1).astype(np.uint8)
    return np.ascontiguousarray(v), np.ascontiguousarray(f, dtype=np.int64), np.ascontiguousarray(uv), parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-gl", action="store_true", help="skip the pyrender peer")
    ap.add_argument("--no-reference", action="store_true", help="skip the numpy reference backend")
    ap.add_argument("--threads", type=int, default=1, help="also time render_uv_parts with this many threads")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    from densereg_data.raster.api import rasterize, render_uv_parts

    rows = []
    results: dict[str, float] = {}
    for n in (256, 1024):
        v, f, uv, parts = bench_inputs(n)
        t = time_it(lambda: render_uv_parts(v, f, uv, parts, (n, n)), runs=args.runs, warmup=3)
        results[f"cpu_{n}_ms"] = t["median_ms"]
        results[f"cpu_{n}_faults"] = t["faults_per_run"]
        rows.append({"command": f"render_uv_parts {n}x{n} (cpu)", "median_ms": t["median_ms"],
                     "min_ms": t["min_ms"], "faults": t["faults_per_run"], "target_ms": TARGET_MS[n]})
        if args.threads > 1:
            t = time_it(lambda: render_uv_parts(v, f, uv, parts, (n, n), threads=args.threads),
                        runs=args.runs, warmup=3)
            results[f"cpu_{n}_threads{args.threads}_ms"] = t["median_ms"]
            rows.append({"command": f"render_uv_parts {n}x{n} (cpu, threads={args.threads})",
                         "median_ms": t["median_ms"], "min_ms": t["min_ms"], "faults": t["faults_per_run"],
                         "target_ms": "", "ratio": f"{results[f'cpu_{n}_ms'] / t['median_ms']:.2f}x one thread"})

    if not args.no_reference:  # the plain numpy oracle, for scale (a few runs: it is slow)
        for n in (256, 1024):
            v, f, _, _ = bench_inputs(n)
            t = time_it(lambda: rasterize(v, f, (n, n), backend="reference"), runs=max(3, args.runs // 10), warmup=1)
            results[f"reference_{n}_ms"] = t["median_ms"]
            rows.append({"command": f"rasterize {n}x{n} (backend='reference')", "median_ms": t["median_ms"],
                         "min_ms": t["min_ms"], "ratio": f"{t['median_ms'] / results[f'cpu_{n}_ms']:.0f}x the cpu row"})

    if not args.no_gl:
        from densereg_data.errors import BackendUnavailableError
        from densereg_data.raster import gl as raster_gl

        try:
            n = 256
            v, f = template_in_pixels(n)
            scene = raster_gl.build_scene(v, f, (n, n))
            peers = {
                "pyrender render only (glFinish)": lambda: raster_gl.render_no_readback(scene, (n, n)),
                "pyrender render + readback": lambda: raster_gl.render_ids(scene, (n, n)),
                "rasterize(backend='pyrender') (scene build + upload + readback + bary)":
                    lambda: rasterize(v, f, (n, n), backend="pyrender"),
            }
            for name, fn in peers.items():
                runs = args.runs if "backend=" not in name else max(5, args.runs // 4)
                t = time_it(fn, runs=runs, warmup=2)
                key = {0: "gl_render_ms", 1: "gl_render_readback_ms", 2: "gl_backend_ms"}[
                    list(peers).index(name)]
                results[key] = t["median_ms"]
                rows.append({"command": f"{name} 256x256", "median_ms": t["median_ms"],
                             "min_ms": t["min_ms"], "peer_ms": "", "ratio": ""})
            a = rasterize(v, f, (n, n))
            b = rasterize(v, f, (n, n), backend="pyrender")
            fg = a.mask | b.mask
            results["gl_agreement"] = float((a.triangle[fg] == b.triangle[fg]).mean())
            cpu = results["cpu_256_ms"]
            results["gl_render_over_cpu_256"] = results["gl_render_ms"] / cpu
            results["gl_render_readback_over_cpu_256"] = results["gl_render_readback_ms"] / cpu
            for r in rows[:1]:  # the single-thread 256 row
                r["peer_ms"] = results["gl_render_ms"]
                r["ratio"] = f"{results['gl_render_ms'] / cpu:.1f}x (render only), " \
                             f"{results['gl_render_readback_ms'] / cpu:.1f}x (with readback)"
        except BackendUnavailableError as e:
            print(f"pyrender peer skipped: {e}", file=sys.stderr)

    print(f"machine: {machine()}\n")
    print(markdown_table(rows, ["command", "median_ms", "min_ms", "faults", "target_ms", "peer_ms", "ratio"]))
    if "gl_agreement" in results:
        print(f"\nGL/CPU triangle-index agreement (foreground): {results['gl_agreement']:.4%}")
    command = " ".join(["python", "benchmarks/bench_raster.py", *(sys.argv[1:] if argv is None else argv)])
    print(json_line("raster", command=command, machine=machine(), runs=args.runs, **results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
