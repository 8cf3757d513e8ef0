"""DenseReg head ablation on real shards: quantized vs regression vs classification, same budget, seeds.

Builds (if missing) shards from the 300-W outdoor dev folder with
    densereg-data build --dataset pts --root ROOT --out SHARDS --val-fraction 0.2 --seed 0 [--size S]
trains each head with the SAME config (epochs, batch, width, lr, augmentation) once per seed, scores the
LAST checkpoint of each (no selection on the val split) on the val split, and prints mean +- sd over the
seeds of every metric (landmark NME, AUC@0.08 and failure rate of the nearest-U-V read-out and, when
`evaluate` has it, of the dense-fit read-out; dense error and AUC@0.1; part mIoU and per-part IoU), the
mean-shape baseline, whether quantized beats regression beyond the spread (mean difference larger
than the sum of the two sds), and one JSON line.

    python benchmarks/bench_heads.py --shards /tmp/shards-300w-dev-128 --size 128 --epochs 10 --width 16 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from densereg_data.conventions import PART_NAMES
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
    p.add_argument("--seeds", default="0", help="comma-separated training seeds, e.g. 0,1,2")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shards = Path(a.shards)
    if not (shards / "index.json").is_file():
        if not Path(a.root).is_dir():
            sys.exit(f"no shards at {shards} and no dataset at {a.root}")
        cmd = ["densereg-data", "build", "--dataset", "pts", "--root", a.root, "--out", str(shards),
               "--val-fraction", "0.2", "--seed", "0"] + (["--size", str(a.size)] if a.size else [])
        subprocess.run(cmd, check=True)
    import inspect

    import numpy as np

    with_fit = "fit" in inspect.signature(evaluate).parameters
    seeds = [int(x) for x in a.seeds.split(",")]
    runs: dict[str, list[dict]] = {}
    baseline = None
    for head in a.heads.split(","):
        for seed in seeds:
            out = Path(a.out) / f"{head}-seed{seed}"
            cfg = TrainConfig(shards=str(shards), out=str(out), epochs=a.epochs, batch_size=a.batch_size, width=a.width,
                              lr=a.lr, head=head, seed=seed, device=a.device, num_workers=0, log_every=15)
            t0 = time.perf_counter()
            train(cfg, resume=(out / "last.pt").is_file())  # finished runs return at once; interrupted ones continue
            minutes = (time.perf_counter() - t0) / 60
            r = evaluate(out / "last.pt", shards, "val", out / "report", device=a.device, **({"fit": True} if with_fit else {}))
            row = {"nme": r["landmarks"]["nme"], "auc@0.08": r["landmarks"]["auc@0.08"],
                   "failure_rate": r["landmarks"]["failure_rate"], "dense_error": r["dense"]["error"],
                   "dense_auc@0.1": r["dense"]["auc@0.1"], "part_miou": r["parts"]["miou"],
                   **{f"iou_{PART_NAMES[int(c) - 1]}": v for c, v in r["parts"]["iou"].items()},
                   "train_minutes": round(minutes, 1)}
            fit = r.get("dense_fit", {}).get("landmarks") if with_fit else None
            if fit:
                row.update({"fit_nme": fit["nme"], "fit_auc@0.08": fit["auc@0.08"], "fit_failure_rate": fit["failure_rate"]})
            runs.setdefault(head, []).append(row)
            baseline = {k: v for k, v in r["mean_shape_baseline"]["landmarks"].items() if k != "n"}
    stats = {head: {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0)
                    for k in rows[0]} for head, rows in runs.items()}
    print(f"val split of {shards}, {a.epochs} epochs, batch {a.batch_size}, width {a.width}, lr {a.lr}, seeds {seeds}\n")
    keys = [k for k in next(iter(stats.values())) if k != "train_minutes"]
    print("| head | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for head, st in stats.items():
        print(f"| {head} | " + " | ".join(f"{st[k][0]:.4f} +- {st[k][1]:.4f}" for k in keys) + " |")
    if baseline:
        print(f"| mean shape | {baseline['nme']:.4f} | {baseline['auc@0.08']:.4f} | {baseline['failure_rate']:.4f} |")
    verdict = {}
    if "quantized" in stats and "regression" in stats:
        lower_better = {"nme", "failure_rate", "dense_error", "fit_nme", "fit_failure_rate"}
        for k in keys:
            (mq, sq), (mr, sr) = stats["quantized"][k], stats["regression"][k]
            better = mq < mr if k in lower_better else mq > mr
            verdict[k] = ("quantized" if better else "regression") + (" beyond the spread" if abs(mq - mr) > sq + sr else
                                                                      " within the spread")
        print("\nquantized vs regression: " + "; ".join(f"{k}: {v}" for k, v in verdict.items()))
    print(json.dumps({"config": vars(a), "runs": runs, "mean_sd": stats, "mean_shape": baseline, "verdict": verdict}))


if __name__ == "__main__":
    main()
