"""`open_shards` read speed on one core: samples/s reading every sample of a shard folder in order.

    .venv/bin/python benchmarks/bench_read.py [SHARDS] [--runs 5]

Without SHARDS it writes a synthetic 400-sample folder at 256x256 (fake labels on real-looking noise
images) in a temporary folder, for each compression. With SHARDS it also times `verify` with and without
its value pass. Prints markdown tables and one JSON line (medians over runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _synthetic(out: Path, n: int, size: int, compression: str) -> Path:
    from densereg_data.format import ShardWriter, write_index

    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    w = ShardWriter(out / "train-00000.h5", "train", size=size, model_size=8, capacity=n, compression=compression)
    yy, xx = np.mgrid[0:size, 0:size] / size
    face = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.16
    for i in range(n):
        base = (128 + 60 * np.sin(6 * xx + i) + 40 * np.cos(5 * yy))[..., None] + rng.normal(0, 12, (size, size, 3))
        w.append({"image": np.clip(base, 0, 255).astype(np.uint8),
                  "uv": np.where(face[..., None], np.stack([xx, 1 - yy], -1), 0).astype(np.float16),
                  "parts": np.where(face, 1 + (xx * 8).astype(int) % 8, 0).astype(np.uint8),
                  "landmarks": rng.normal(size=(68, 2)), "crop_from_image": np.eye(2, 3), "source": f"s{i}.png",
                  "source_size": [size, size], "fit_nme": 0.02, "crop_from_template": np.eye(3, 4),
                  "pose": np.zeros(3), "coefficients": np.zeros(8)})
    rec = w.close()
    write_index(out, records=[rec], split_order=["train"], split_aliases={}, image_size=size,
                template={"id": "synthetic", "hash": "0" * 64}, config_sha256="0" * 64, densereg_version="bench")
    return out


def _measure(path: Path, runs: int) -> tuple[float, int, float]:
    import densereg_data

    rates = []
    for _ in range(runs):
        ds = densereg_data.open_shards(path)
        t0 = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        rates.append(len(ds) / (time.perf_counter() - t0))
        ds.close()
    index = json.loads((path / "index.json").read_text())
    n = sum(index["splits"].values())
    return statistics.median(rates), n, sum(s["bytes"] for s in index["shards"]) / max(n, 1)


def _verify_ms(path: Path, runs: int) -> tuple[float, float]:
    """Median ms of `verify` without and with its value pass (checksums and schema in both)."""
    import densereg_data

    out = []
    for values in (False, True):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            densereg_data.verify(path, values=values)
            times.append(1e3 * (time.perf_counter() - t0))
        out.append(statistics.median(times))
    return out[0], out[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="?", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=400)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    rows = []
    verify_ms = None
    if args.shards is not None:
        rate, n, bps = _measure(args.shards, args.runs)
        rows.append((str(args.shards), rate, n, bps))
        verify_ms = _verify_ms(args.shards, args.runs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for comp in ("lzf", "none"):
                path = _synthetic(Path(tmp) / comp, args.samples, 256, comp)
                rate, n, bps = _measure(path, args.runs)
                rows.append((f"synthetic 256x256, {comp}", rate, n, bps))
    print("| shards | samples/s (1 core, median of %d) | samples | kB/sample |\n|---|---|---|---|" % args.runs)
    for name, rate, n, bps in rows:
        print(f"| {name} | {rate:.0f} | {n} | {bps / 1e3:.1f} |")
    if verify_ms is not None:
        print(f"\n| verify (1 core, median of {args.runs}) | ms |\n|---|---|")
        print(f"| checksums + schema (`values=False`) | {verify_ms[0]:.0f} |\n| + every array's values (default) | {verify_ms[1]:.0f} |")
    print(json.dumps({"bench": "read", "results": [
        {"shards": name, "samples_per_second": round(rate, 1), "samples": n, "bytes_per_sample": round(bps)}
        for name, rate, n, bps in rows], "verify_ms": verify_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
