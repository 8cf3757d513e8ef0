"""The rasterizer's algorithm in C with AVX-512 (a prototype, not used by densereg) against the numba kernel.

Builds benchmarks/raster_avx512/kernel.c with the system C compiler into a temporary folder, checks
that its triangle, barycentric, U-V and parts images are bit-identical to `render_uv_parts` on the
template at 256 and 1024 and on 20 random placements of it, then times both, interleaved, on the
benchmark inputs of bench_raster.py. Single thread. Exits 0 with a note when there is no C compiler or
no AVX-512 (its outputs would be meaningless there).

    .venv/bin/python benchmarks/bench_raster_avx512.py [--runs 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

os.environ["NUMBA_NUM_THREADS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from _common import json_line, machine, markdown_table, time_it  # noqa: E402
from bench_raster import bench_inputs  # noqa: E402

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raster_avx512", "kernel.c")
FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-strict-aliasing"]


def has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return all(f" {x}" in flags for x in ("avx512f", "avx512dq", "avx512vl", "avx512bw", "bmi2"))


def build(folder: str) -> ctypes.CDLL:
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise FileNotFoundError("no C compiler (cc, or $CC)")
    lib_path = os.path.join(folder, "kernel.so")
    subprocess.run([cc, *FLAGS, "-o", lib_path, KERNEL], check=True)
    lib = ctypes.CDLL(lib_path)
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.zbuffer_avx512.restype = i64
    lib.zbuffer_avx512.argtypes = [p, p, p, i64, p, i64, i64, i64, ctypes.c_int, p, p]
    lib.finish.restype = None
    lib.finish.argtypes = [p, p, p, p, p, p, p, p, i64]
    return lib


def render_c(lib, vertices, faces, uv, face_parts, size, cull=False):
    """The C kernel behind `render_uv_parts`'s own snapping and output allocation."""
    from densereg_data import raster as R

    h, w = size
    nv = vertices.shape[0]
    fx, fy, fz = np.empty(nv, np.int32), np.empty(nv, np.int32), np.empty(nv, np.float32)
    if R._snap(vertices, fx, fy, fz) != 0:
        raise ValueError("the prototype takes only finite vertices within FIXED_POINT_LIMIT_PX")
    tri, bary = R._raster_arrays(h, w)
    uv_img, parts_img = R._uv_parts_arrays(h, w)
    ptr = lambda a: a.ctypes.data  # noqa: E731
    bad = lib.zbuffer_avx512(ptr(fx), ptr(fy), ptr(fz), nv, ptr(faces), faces.shape[0], h, w, int(cull),
                             ptr(uv_img), ptr(bary))
    if bad >= 0:
        raise ValueError(f"face {bad} indexes outside the vertices")
    lib.finish(ptr(uv_img), ptr(tri), ptr(bary), ptr(faces), ptr(uv), ptr(face_parts), ptr(uv_img),
               ptr(parts_img), h * w)
    return tri, bary, uv_img, parts_img


def identical(lib, v, f, uv, parts, size, cull=False) -> bool:
    from densereg_data.raster import render_uv_parts

    r, uv_img, parts_img = render_uv_parts(v, f, uv, parts, size, cull_backfaces=cull)
    got = render_c(lib, v, f, uv, parts, size, cull)
    return all(np.array_equal(a, b) for a, b in zip((r.triangle, r.bary, uv_img, parts_img), got))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both kernels")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if not has_avx512():
        print("skipped: this CPU has no AVX-512 (avx512f/dq/vl/bw and bmi2)")
        return 0
    from densereg_data.raster import render_uv_parts

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        try:
            lib = build(folder)
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            print(f"skipped: could not build {KERNEL}: {e}")
            return 0
        checked = 0
        for n in (256, 1024):
            v, f, uv, parts = bench_inputs(n)
            cases = [(v, (n, n), False), (v, (n, n), True)]
            for _ in range(10):
                moved = v.copy()
                moved[:, :2] = (moved[:, :2] + rng.uniform(-n / 3, n / 3, 2)) * rng.uniform(0.5, 2.0)
                moved[:, 2] *= rng.choice([-1, 1])
                cases.append((moved, (n + int(rng.integers(-50, 50)), n + int(rng.integers(-50, 50))), False))
            for vv, size, cull in cases:
                if not identical(lib, vv, f, uv, parts, size, cull):
                    print(f"FAILED: the C kernel differs from render_uv_parts at {size}, cull={cull}")
                    return 1
                checked += 1
        rows, results = [], {"identical_cases": checked}
        for n in (256, 1024):
            v, f, uv, parts = bench_inputs(n)
            med = {"numba": [], "c": []}
            for _ in range(args.rounds):
                t = time_it(lambda: render_uv_parts(v, f, uv, parts, (n, n)), runs=args.runs, warmup=3)
                med["numba"].append(t["median_ms"])
                t = time_it(lambda: render_c(lib, v, f, uv, parts, (n, n)), runs=args.runs, warmup=3)
                med["c"].append(t["median_ms"])
            for name, ms in med.items():
                results[f"{name}_{n}_ms"] = ms
            ratios = [a / b for a, b in zip(med["numba"], med["c"])]
            rows.append({"size": f"{n}x{n}",
                         "numba render_uv_parts (ms, per round)": " / ".join(f"{x:.2f}" for x in med["numba"]),
                         "C AVX-512 prototype (ms, per round)": " / ".join(f"{x:.2f}" for x in med["c"]),
                         "numba / C": " / ".join(f"{x:.2f}" for x in ratios)})
    print(f"machine: {machine()}\nbit-identical on {checked} cases\n")
    print(markdown_table(rows, list(rows[0])))
    print(json_line("raster_avx512", machine=machine(), runs=args.runs, **results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
