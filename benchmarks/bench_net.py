"""Throughput of the default DenseReg network at 256 x 256: training and inference images/s and peak
memory, on the in-memory data path (augmentation on the device). Median of timed iterations after
warm-up. Prints a table and one JSON line.

    python benchmarks/bench_net.py [--device cuda] [--size 256] [--batch-size B] [--iters 10]
"""

from __future__ import annotations

import argparse
import json

from densereg_net.bench import bench


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--heads", default="quantized", help="comma-separated heads")
    a = p.parse_args()
    rows = [bench(a.device, a.size, a.batch_size, h, warmup=a.warmup, iters=a.iters) for h in a.heads.split(",")]
    mem_key = "peak_memory_mb_train" if "peak_memory_mb_train" in rows[0] else "peak_rss_mb_process"
    print(f"device: {rows[0]['device']}, precision {rows[0]['precision']}, size {a.size}, "
          f"median of {a.iters} after {a.warmup} warm-up")
    print(f"{'head':<16}{'params (M)':>11}{'batch':>7}{'train img/s':>13}{'infer img/s':>13}{'peak MB':>10}")
    for r in rows:
        print(f"{r['head']:<16}{r['parameters_m']:>11.2f}{r['batch_size']:>7}{r['train_images_per_s']:>13.2f}"
              f"{r['infer_images_per_s']:>13.2f}{r[mem_key]:>10.0f}")
    print(json.dumps(rows if len(rows) > 1 else rows[0]))


if __name__ == "__main__":
    main()
