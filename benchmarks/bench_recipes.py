"""Training recipes side by side: many `densereg-net train` runs in parallel on one device, each scored
with `densereg-net eval --fit` on the val split, one table.

Every run is the CLI a user types (a subprocess, no shell), with the flags of its recipe below and
`--epochs EPOCHS` (views recipes: `--epochs EPOCHS * views_factor`); all runs start together and share
the device (one GPU takes a dozen of these small runs at once). A run still going at `--deadline-s` is
stopped by SIGTERM, which saves its last.pt mid-schedule (learning rate not annealed): the table says
how many epochs each run reached, so stopped runs compare with each other, not with finished ones.
The LAST checkpoint of each run is scored (no selection on the val split).

    python benchmarks/bench_recipes.py SHARDS --out RUNS --device cuda --epochs 250 --deadline-s 360
    python benchmarks/bench_recipes.py SHARDS --out RUNS --recipes q32,q32_imagenet --seeds 0,1,2

SHARDS: a build of `--dataset pts --val-fraction 0.2 --seed 0` (for the views recipes, with `--views`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STRONG_AUGMENT = {"scale": 0.25, "rotation_deg": 30.0, "translate": 0.1, "flip_prob": 0.5,
                  "brightness": 0.35, "contrast": 0.35, "saturation": 0.35}
#: name -> (train flags, epochs factor); "{strong}" is replaced by the strong-augmentation config file.
RECIPES = {
    "q32": (["--originals-only"], 1.0),
    "q32_imagenet": (["--originals-only", "--input-norm", "imagenet"], 1.0),
    "q32_strongaug": (["--originals-only", "--config", "{strong}"], 1.0),
    "q32_imagenet_strongaug": (["--originals-only", "--input-norm", "imagenet", "--config", "{strong}"], 1.0),
    "q48": (["--originals-only", "--width", "48"], 1.0),
    "q48_imagenet": (["--originals-only", "--width", "48", "--input-norm", "imagenet"], 1.0),
    "q32_imagenet_views": (["--input-norm", "imagenet"], 0.5),
    "r32_imagenet": (["--originals-only", "--head", "regression", "--input-norm", "imagenet"], 1.0),
    "c32_imagenet": (["--originals-only", "--head", "classification", "--input-norm", "imagenet"], 1.0),
    "r32": (["--originals-only", "--head", "regression"], 1.0),
    "c32": (["--originals-only", "--head", "classification"], 1.0),
}


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "densereg_cli.net", *map(str, args)]


def summarise(run: Path) -> dict:
    report = json.loads((run / "report" / "report.json").read_text())
    metrics = run / "metrics.csv"  # absent when the run was stopped inside its first epoch
    rows = metrics.read_text().splitlines() if metrics.is_file() else ["header"]
    fit = report.get("dense_fit", {}).get("landmarks", {})
    iou = report["parts"]["iou"]
    return {"run": run.name, "epochs": len(rows) - 1, "nme": report["landmarks"]["nme"], "fit_nme": fit.get("nme"),
            "auc": report["landmarks"]["auc@0.08"], "fit_auc": fit.get("auc@0.08"),
            "failure": report["landmarks"]["failure_rate"], "fit_failure": fit.get("failure_rate"),
            "dense": report["dense"]["error"], "miou": report["parts"]["miou"],
            "right_eye": iou["3"], "left_eye": iou["4"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shards")
    p.add_argument("--out", required=True, help="runs folder (one sub-folder per run; must not hold them yet)")
    p.add_argument("--device", default="auto")
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of: {', '.join(RECIPES)}")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=250)
    p.add_argument("--deadline-s", type=float, default=0, help="SIGTERM every run still training after this many s")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    strong = out / "strong_augment.json"
    strong.write_text(json.dumps({"augment_config": STRONG_AUGMENT}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    jobs, t0 = {}, time.monotonic()
    for name in a.recipes.split(","):
        flags, factor = RECIPES[name]
        for seed in map(int, a.seeds.split(",")):
            run = out / (name if seed == 0 else f"{name}_s{seed}")
            args = [f.replace("{strong}", str(strong)) for f in flags]
            cmd = cli("train", a.shards, "--out", run, "--device", a.device, "--seed", seed, "--log-every", 100,
                      "--epochs", max(1, round(a.epochs * factor)), *args)
            log = open(out / f"{run.name}.train.log", "w")
            jobs[run] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, name)
    while any(proc.poll() is None for proc, _, _ in jobs.values()):
        if a.deadline_s and time.monotonic() - t0 > a.deadline_s:
            for proc, _, _ in jobs.values():
                if proc.poll() is None:
                    proc.terminate()
            a.deadline_s = 0
        time.sleep(2)
    for _, log, _ in jobs.values():
        log.close()
    evals = [subprocess.Popen(cli("eval", run / "last.pt", a.shards, "--split", "val", "--fit", "--device", a.device,
                                  "--out", run / "report"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
             for run in jobs if (run / "last.pt").is_file()]
    for proc in evals:
        proc.wait()
    rows = [{**summarise(run), "recipe": recipe} for run, (_, _, recipe) in jobs.items()
            if (run / "report" / "report.json").is_file()]
    print("| run | epochs | NME (nearest U-V / fit) | AUC@0.08 | failure | dense | mIoU | eyes r / l |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['epochs']} | {r['nme']:.4f} / {r['fit_nme']:.4f} | {r['auc']:.3f} / {r['fit_auc']:.3f} | "
              f"{r['failure']:.3f} / {r['fit_failure']:.3f} | {r['dense']:.4f} | {r['miou']:.3f} | "
              f"{r['right_eye']:.2f} / {r['left_eye']:.2f} |")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["recipe"], []).append(r)
    for name, rs in groups.items():
        if len(rs) > 1:
            spread = {k: f"{statistics.mean(x[k] for x in rs):.4f} +- {statistics.stdev(x[k] for x in rs):.4f}"
                      for k in ("nme", "fit_nme", "failure", "dense", "miou", "right_eye", "left_eye")}
            print(f"{name} over {len(rs)} seeds: {json.dumps(spread)}")
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps({"runs": len(jobs), "scored": len(rows), "wall_s": round(time.monotonic() - t0, 1)}))


if __name__ == "__main__":
    main()
