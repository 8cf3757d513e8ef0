"""The rasterizer's algorithm in C with AVX-512 (two prototypes, not used by densereg) against the numba kernel.

Builds benchmarks/raster_avx512/kernel.c (per triangle, boxes in 8-sample rows, one full-image key
buffer) and tiled.c (triangles binned into tiles, keys in a cache-resident tile, the final pass per
tile) with the system C compiler into a temporary folder, checks that their triangle, barycentric,
U-V and parts images are bit-identical to `render_uv_parts` on the template at 256 and 1024, on 20
random placements of it and on 20 random triangle soups, then times all three, interleaved, on the
benchmark inputs of bench_raster.py, and the tiled kernel's stages (a -DSTAGES build). Single thread.
Exits 0 with a note when there is no C compiler or no AVX-512 (its outputs would be meaningless there).

    .venv/bin/python benchmarks/bench_raster_avx512.py [--runs 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
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
TILED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "raster_avx512", "tiled.c")
FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-strict-aliasing"]


def has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return all(f" {x}" in flags for x in ("avx512f", "avx512dq", "avx512vl", "avx512bw", "bmi2"))


def build(folder: str) -> tuple[ctypes.CDLL, ctypes.CDLL, ctypes.CDLL]:
    """The row kernel, the tiled kernel, and the tiled kernel built with -DSTAGES."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise FileNotFoundError("no C compiler (cc, or $CC)")
    libs = []
    for name, source, extra in (("kernel", KERNEL, []), ("tiled", TILED, []), ("stages", TILED, ["-DSTAGES"])):
        lib_path = os.path.join(folder, f"{name}.so")
        subprocess.run([cc, *FLAGS, *extra, "-o", lib_path, source], check=True)
        libs.append(ctypes.CDLL(lib_path))
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    row, tiled, stages = libs
    row.zbuffer_avx512.restype = i64
    row.zbuffer_avx512.argtypes = [p, p, p, i64, p, i64, i64, i64, i32, p, p]
    row.finish.restype = None
    row.finish.argtypes = [p, p, p, p, p, p, p, p, i64]
    for lib in (tiled, stages):
        lib.zbuffer_tiled.restype = i64
        lib.zbuffer_tiled.argtypes = [p, p, p, i64, p, i64, i64, i64, i32, p, p, i32, p, p, p, p]
    return row, tiled, stages


def _snapped(vertices: np.ndarray, size: tuple[int, int]):
    """`render_uv_parts`'s own snapping and output allocation."""
    from densereg_data.raster import api as R
    from densereg_data.raster import fast as raster_cpu

    h, w = size
    nv = vertices.shape[0]
    fx, fy, fz = np.empty(nv, np.int32), np.empty(nv, np.int32), np.empty(nv, np.float32)
    if raster_cpu.snap(vertices, fx, fy, fz) != 0:
        raise ValueError("the prototypes take only finite vertices within FIXED_POINT_LIMIT_PX")
    tri, bary = R._raster_arrays(h, w)
    uv_img, parts_img = R._uv_parts_arrays(h, w)
    return (fx, fy, fz), (tri, bary, uv_img, parts_img)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def render_c(lib, vertices, faces, uv, face_parts, size, cull=False):
    """The row kernel behind `render_uv_parts`'s own snapping and output allocation."""
    h, w = size
    (fx, fy, fz), (tri, bary, uv_img, parts_img) = _snapped(vertices, size)
    ptr = _ptr
    bad = lib.zbuffer_avx512(ptr(fx), ptr(fy), ptr(fz), len(fx), ptr(faces), faces.shape[0], h, w, int(cull),
                             ptr(uv_img), ptr(bary))
    if bad >= 0:
        raise ValueError(f"face {bad} indexes outside the vertices")
    lib.finish(ptr(uv_img), ptr(tri), ptr(bary), ptr(faces), ptr(uv), ptr(face_parts), ptr(uv_img),
               ptr(parts_img), h * w)
    return tri, bary, uv_img, parts_img


def render_tiled(lib, vertices, faces, uv, face_parts, size, cull=False):
    """The tiled kernel behind `render_uv_parts`'s own snapping and output allocation."""
    h, w = size
    (fx, fy, fz), out = _snapped(vertices, size)
    ptr = _ptr
    bad = lib.zbuffer_tiled(ptr(fx), ptr(fy), ptr(fz), len(fx), ptr(faces), faces.shape[0], h, w, int(cull),
                            ptr(uv), ptr(face_parts), 1, *(ptr(a) for a in out))
    if bad != -1:
        raise ValueError(f"face {bad} indexes outside the vertices" if bad >= 0 else "out of memory")
    return out


def identical(render, v, f, uv, parts, size, cull=False) -> bool:
    """render(v, f, uv, parts, size, cull) -> (triangle, bary, uv, parts) equals `render_uv_parts`."""
    from densereg_data.raster.api import render_uv_parts

    r, uv_img, parts_img = render_uv_parts(v, f, uv, parts, size, cull_backfaces=cull)
    got = render(v, f, uv, parts, size, cull)
    return all(np.array_equal(a, b) for a, b in zip((r.triangle, r.bary, uv_img, parts_img), got))


def cases(rng: np.random.Generator):
    """(vertices, faces, uv, parts, size, cull): the template at 256 and 1024 (culled or not) and 10
    random placements at each, then 20 triangle soups of mixed sizes, some on whole pixels."""
    for n in (256, 1024):
        v, f, uv, parts = bench_inputs(n)
        yield v, f, uv, parts, (n, n), False
        yield v, f, uv, parts, (n, n), True
        for _ in range(10):
            moved = v.copy()
            moved[:, :2] = (moved[:, :2] + rng.uniform(-n / 3, n / 3, 2)) * rng.uniform(0.5, 2.0)
            moved[:, 2] *= rng.choice([-1, 1])
            yield moved, f, uv, parts, (n + int(rng.integers(-50, 50)), n + int(rng.integers(-50, 50))), False
    for s in range(20):
        nt = int(rng.integers(1, 400))
        size = (int(rng.integers(1, 300)), int(rng.integers(1, 300)))
        v = np.column_stack([rng.uniform(-50, size[1] + 50, 3 * nt), rng.uniform(-50, size[0] + 50, 3 * nt),
                             rng.normal(size=3 * nt)])
        if s % 3 == 0:
            v[:, :2] = np.round(v[:, :2])
        if s % 4 == 0:
            v[:, 2] = np.round(v[:, 2])
        f = np.arange(3 * nt, dtype=np.int64).reshape(-1, 3)
        yield v, f, rng.uniform(size=(3 * nt, 2)), rng.integers(1, 9, nt).astype(np.uint8), size, bool(s % 2)


def stage_times(lib, n: int, runs: int) -> dict[str, float]:
    """Mean ms per call of the tiled kernel's stages (its -DSTAGES build) at n x n."""
    v, f, uv, parts = bench_inputs(n)
    acc = (ctypes.c_double * 4).in_dll(lib, "stage_ns")
    for _ in range(3):
        render_tiled(lib, v, f, uv, parts, (n, n))
    for i in range(4):
        acc[i] = 0.0
    for _ in range(runs):
        render_tiled(lib, v, f, uv, parts, (n, n))
    triage, binning, tiles, final = (x / runs / 1e6 for x in acc)
    return {"triage": triage, "binning": binning, "depth tests": tiles - final, "final passes": final}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three kernels")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if not has_avx512():
        print("skipped: this CPU has no AVX-512 (avx512f/dq/vl/bw and bmi2)")
        return 0
    from densereg_data.raster.api import render_uv_parts

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        try:
            row, tiled, stages = build(folder)
        except (FileNotFoundError, subprocess.CalledProcessError) as e:
            print(f"skipped: could not build the prototypes: {e}")
            return 0
        prototypes = {"c_rows": functools.partial(render_c, row), "c_tiled": functools.partial(render_tiled, tiled)}
        checked = 0
        for v, f, uv, parts, size, cull in cases(rng):
            for name, render in prototypes.items():
                if not identical(render, v, f, uv, parts, size, cull):
                    print(f"FAILED: {name} differs from render_uv_parts at {size}, cull={cull}")
                    return 1
            checked += 1
        kernels = {"numba": render_uv_parts, **prototypes}
        rows, results = [], {"identical_cases": checked}
        stage_rows = []
        for n in (256, 1024):
            v, f, uv, parts = bench_inputs(n)
            med = {name: [] for name in kernels}
            for _ in range(args.rounds):
                for name, fn in kernels.items():
                    t = time_it(lambda: fn(v, f, uv, parts, (n, n)), runs=args.runs, warmup=3)
                    med[name].append(t["median_ms"])
            for name, ms in med.items():
                results[f"{name}_{n}_ms"] = ms
            rows.append({"size": f"{n}x{n}",
                         **{f"{name} (ms, per round)": " / ".join(f"{x:.2f}" for x in ms) for name, ms in med.items()},
                         "numba / rows": " / ".join(f"{a / b:.2f}" for a, b in zip(med["numba"], med["c_rows"])),
                         "numba / tiled": " / ".join(f"{a / b:.2f}" for a, b in zip(med["numba"], med["c_tiled"]))})
            st = stage_times(stages, n, args.runs)
            results[f"tiled_stages_{n}_ms"] = st
            stage_rows.append({"size": f"{n}x{n}", **{k: round(x, 3) for k, x in st.items()}})
    print(f"machine: {machine()}\nbit-identical on {checked} cases (both kernels)\n")
    print(markdown_table(rows, list(rows[0])))
    print("\ntiled.c, mean ms per call by stage (-DSTAGES build):\n")
    print(markdown_table(stage_rows, list(stage_rows[0])))
    print(json_line("raster_avx512", machine=machine(), runs=args.runs, **results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
