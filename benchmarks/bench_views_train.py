"""Do new views help the network? Train with and without them, same steps, score both on real faces.

    .venv/bin/python benchmarks/bench_views_train.py --shards SHARDS --out RUNS [--steps 900] [--width 32] [--seed 0]

SHARDS: a build with views, e.g. ``densereg-data build --dataset pts --root ../shared/data/300w-dev
--size 128 --val-fraction 0.2 --seed 0 --views yaw=15,30,45,60,75,90 --out SHARDS``. Two runs of
`densereg-net train`: ``--views`` (originals and their views) and ``--originals-only``, each for the
same number of optimizer steps (so the same wall-clock budget on one machine: the epochs differ, as
an epoch of the first holds all the views), the same seed and settings. Both last checkpoints are
scored on the val split's original faces (`evaluate`, which leaves views out), overall and on the
val faces whose fitted |yaw| > --yaw (30): landmark NME, failure rate, dense error; part mIoU overall.
Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--yaw", type=float, default=30.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from densereg_data.format import ShardIndex, open_shards
    from densereg_net.config import TrainConfig
    from densereg_net.data import original_rows
    from densereg_net.evaluate import evaluate
    from densereg_net.train import train

    index = ShardIndex.open(args.shards)
    n_all = sum(n for _, n in index.files("train"))
    n_orig = len(original_rows(index, "train"))
    if n_all == n_orig:
        print(f"{args.shards} holds no views: build it with --views", file=sys.stderr)
        return 2
    val = open_shards(args.shards, "val")
    small = val[0:len(val)]
    originals = np.flatnonzero(~np.any(np.asarray(small["view_delta"]) != 0, axis=1))
    yaw = np.abs(np.asarray(small["pose"], np.float64)[originals, 0])
    turned = yaw > args.yaw
    rows = []
    for name, views, n in (("with views", True, n_all), ("originals only", False, n_orig)):
        epochs = max(1, math.ceil(args.steps / max(1, n // args.batch_size)))
        cfg = TrainConfig(shards=str(args.shards), out=str(args.out / name.replace(" ", "_")), epochs=epochs,
                          batch_size=args.batch_size, width=args.width, seed=args.seed, views=views, device="cpu",
                          log_every=1000)
        t0 = time.perf_counter()
        train(cfg)
        seconds = time.perf_counter() - t0
        rep = evaluate(Path(cfg.out) / "last.pt", args.shards, split="val", device="cpu")
        nme = np.asarray(rep["per_image"]["nme"], np.float64)
        dense = np.asarray(rep["per_image"]["dense_error"], np.float64)
        rows.append({"run": name, "train samples": n, "epochs": epochs, "steps": epochs * (n // args.batch_size),
                     "minutes": round(seconds / 60, 1),
                     "NME": float(np.nanmean(nme)), "failure": float(np.mean(nme > 0.08)),
                     "dense": float(np.nanmean(dense)), "mIoU": rep["parts"]["miou"],
                     f"NME |yaw|>{args.yaw:g}": float(np.nanmean(nme[turned])) if turned.any() else float("nan"),
                     f"failure |yaw|>{args.yaw:g}": float(np.mean(nme[turned] > 0.08)) if turned.any() else float("nan"),
                     f"dense |yaw|>{args.yaw:g}": float(np.nanmean(dense[turned])) if turned.any() else float("nan")})
    cols = list(rows[0])
    print(f"val: {len(originals)} original faces, {int(turned.sum())} with |yaw| > {args.yaw:g}\n")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    print(json.dumps({"bench": "views_train", "val_faces": int(len(originals)), "turned": int(turned.sum()), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
