"""DenseReg head ablation on real shards: quantized vs regression vs classification, same budget.

Builds (if missing) shards from the 300-W outdoor dev folder with
    densereg-data build --dataset pts --root ROOT --out SHARDS --val-fraction 0.2 --seed 0 [--size S]
trains each head with the SAME config (epochs, batch, width, lr, seed, augmentation), scores the
LAST checkpoint of each (no selection on the val split) on the val split, and prints a table with the
mean-shape baseline beside it, plus one JSON line.

    python benchmarks/bench_heads.py --shards /tmp/shards-300w-dev-128 --size 128 --epochs 10 --width 16
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from densereg_net.evaluate import evaluate
from densereg_net.train import TrainConfig, train

HEADS = ("quantized", "regression", "classification")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data/300w-dev")
    p.add_argument("--shards", default="/tmp/shards-300w-dev")
    p.add_argument("--size", type=int, default=None, help="crop size of the build (default: the builder's)")
    p.add_argument("--out", default="/tmp/bench-heads")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--heads", default=",".join(HEADS))
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shards = Path(a.shards)
    if not (shards / "index.json").is_file():
        if not Path(a.root).is_dir():
            sys.exit(f"no shards at {shards} and no dataset at {a.root}")
        cmd = ["densereg-data", "build", "--dataset", "pts", "--root", a.root, "--out", str(shards),
               "--val-fraction", "0.2", "--seed", "0"] + (["--size", str(a.size)] if a.size else [])
        subprocess.run(cmd, check=True)
    results = {}
    for head in a.heads.split(","):
        out = Path(a.out) / head
        cfg = TrainConfig(shards=str(shards), out=str(out), epochs=a.epochs, batch_size=a.batch_size, width=a.width,
                          lr=a.lr, head=head, device=a.device, num_workers=0, log_every=15)
        t0 = time.perf_counter()
        if (out / "last.pt").is_file():
            train(cfg, resume=True)  # finished runs return at once; interrupted ones continue
        else:
            train(cfg)
        minutes = (time.perf_counter() - t0) / 60
        r = evaluate(out / "last.pt", shards, "val", out / "report", device=a.device)
        results[head] = {"nme": r["landmarks"]["nme"], "auc@0.08": r["landmarks"]["auc@0.08"],
                         "failure_rate": r["landmarks"]["failure_rate"], "dense_error": r["dense"]["error"],
                         "dense_auc@0.1": r["dense"]["auc@0.1"], "part_miou": r["parts"]["miou"],
                         "train_minutes": round(minutes, 1)}
        results["mean_shape"] = {**{k: v for k, v in r["mean_shape_baseline"]["landmarks"].items() if k != "n"},
                                 "samples": r["samples"]}
    print(f"val split of {shards}, {a.epochs} epochs, batch {a.batch_size}, width {a.width}, lr {a.lr}")
    print(f"{'method':<16}{'NME':>8}{'AUC@0.08':>10}{'fail':>7}{'dense':>8}{'dAUC@0.1':>10}{'mIoU':>7}")
    for name, r in results.items():
        if name == "mean_shape":
            continue
        print(f"{name:<16}{r['nme']:>8.4f}{r['auc@0.08']:>10.4f}{r['failure_rate']:>7.3f}{r['dense_error']:>8.4f}"
              f"{r['dense_auc@0.1']:>10.4f}{r['part_miou']:>7.3f}")
    m = results.get("mean_shape")
    if m:
        print(f"{'mean shape':<16}{m['nme']:>8.4f}{m['auc@0.08']:>10.4f}{m['failure_rate']:>7.3f}{'-':>8}{'-':>10}{'-':>7}")
    print(json.dumps({"config": vars(a), "results": results}))


if __name__ == "__main__":
    main()
