"""Do new views help the network? Train with and without them, same steps, score both on real faces.

    .venv/bin/python benchmarks/bench_views_train.py --shards SHARDS --out RUNS [--steps 900] [--width 32] [--seed 0]

SHARDS: a build with views, e.g. ``densereg-data build --dataset pts --root ../shared/data/300w-dev
--size 128 --val-fraction 0.2 --seed 0 --views yaw=15,30,45,60,75,90 --out SHARDS``. Two runs of
`densereg-net train`: ``--views`` (originals and their views) and ``--originals-only``, each for the
same number of optimizer steps (so the same wall-clock budget on one machine: the epochs differ, as
an epoch of the first holds all the views), the same seed and settings. Both last checkpoints are
scored on the val split's original faces (`evaluate`, which leaves views out) and on each --also shard
folder (e.g. AFLW2000-3D, real large poses), overall and on the faces whose fitted |yaw| > --yaw (30):
landmark NME of both read-outs (nearest U-V, dense fit), failure rate, dense error; part mIoU overall.
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
    ap.add_argument("--also", type=Path, action="append", default=[],
                    help="another shard folder to score both runs on (its first split), e.g. a build of AFLW2000-3D: "
                         "real large-pose faces")
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
    sets = [(args.shards, "val")] + [(p, next(iter(ShardIndex.open(p).splits))) for p in args.also]
    turned_of = {}
    for shards, split in sets:
        ds = open_shards(shards, split)
        small = ds[0:len(ds)]
        originals = np.flatnonzero(~np.any(np.asarray(small["view_delta"]) != 0, axis=1))
        turned_of[str(shards)] = np.abs(np.asarray(small["pose"], np.float64)[originals, 0]) > args.yaw
    rows = []
    for name, views, n in (("with views", True, n_all), ("originals only", False, n_orig)):
        epochs = max(1, math.ceil(args.steps / max(1, n // args.batch_size)))
        cfg = TrainConfig(shards=str(args.shards), out=str(args.out / name.replace(" ", "_")), epochs=epochs,
                          batch_size=args.batch_size, width=args.width, seed=args.seed, views=views, device="cpu",
                          log_every=1000)
        t0 = time.perf_counter()
        train(cfg, resume=(Path(cfg.out) / "last.pt").is_file())  # a finished run returns at once
        seconds = time.perf_counter() - t0
        for shards, split in sets:
            turned = turned_of[str(shards)]
            rep = evaluate(Path(cfg.out) / "last.pt", shards, split=split, device="cpu", fit=True)
            nme = np.asarray(rep["per_image"]["nme"], np.float64)
            fit = np.asarray(rep["per_image"]["dense_fit_nme"], np.float64)
            dense = np.asarray(rep["per_image"]["dense_error"], np.float64)
            rows.append({"run": name, "scored on": f"{Path(shards).name}/{split} ({len(nme)}, {int(turned.sum())} turned)",
                         "train samples": n, "epochs": epochs, "steps": epochs * (n // args.batch_size),
                         "minutes": round(seconds / 60, 1),
                         "NME": float(np.nanmean(nme)), "NME fit": float(np.nanmean(fit)),
                         "failure": float(np.mean(nme > 0.08)), "dense": float(np.nanmean(dense)), "mIoU": rep["parts"]["miou"],
                         f"NME |yaw|>{args.yaw:g}": float(np.nanmean(nme[turned])) if turned.any() else float("nan"),
                         f"NME fit |yaw|>{args.yaw:g}": float(np.nanmean(fit[turned])) if turned.any() else float("nan"),
                         f"dense |yaw|>{args.yaw:g}": float(np.nanmean(dense[turned])) if turned.any() else float("nan")})
    cols = list(rows[0])
    print(f"|yaw| > {args.yaw:g}: the faces' fitted yaw; runs compared at the same optimizer steps\n")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    print(json.dumps({"bench": "views_train", "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
