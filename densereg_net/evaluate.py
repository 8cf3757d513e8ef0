"""`densereg-net eval`: score a checkpoint on a split of a shard directory.

Writes report.json (300-W landmark NME / AUC@0.08 / failure rate, dense error + AUC@0.1, part
mIoU, and the mean-shape baseline), ced_landmarks.png, ced_dense.png and sheet.png (image with true
(green) and predicted (red) landmarks | true IUV | predicted IUV | true parts | predicted parts).

Mean-shape baseline: the mean of the training landmarks in crop pixels (stored in the checkpoint),
placed unchanged in every crop and scored with the same NME, AUC and failure rate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from densereg_net.checkpoint import load_checkpoint, model_from_checkpoint
from densereg_net.data import ShardDataset, eval_batches, iterate
from densereg_net.draw import draw_curves, sheet
from densereg_net.errors import NetInputError
from densereg_net.metrics import DENSE_AUC_LIMIT, LANDMARK_AUC_LIMIT, Accumulator, ced, landmark_summary, nme
from densereg_net.shards import ShardIndex, load_template
from densereg_net.train import autocast, resolve_device

log = logging.getLogger(__name__)


def evaluate(checkpoint, shards, split: str = "test", out=None, batch_size: int = 16, device: str = "auto",
             sheet_rows: int = 8) -> dict:
    """Score `checkpoint` on `split` of `shards`; write the report into `out` (if given); return it."""
    ckpt = load_checkpoint(checkpoint)
    index = ShardIndex.open(shards)
    index.check_compatible(ckpt["k"], ckpt["part_names"], str(checkpoint))
    if tuple(ckpt.get("image_size", index.image_size)) != index.image_size:
        log.warning("checkpoint was trained on %s crops, shards are %s", ckpt.get("image_size"), index.image_size)
    dataset = ShardDataset(index, split)
    template = load_template(index.root / "template.h5")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev)
    acc = Accumulator(torch.from_numpy(template.landmark_uv), torch.from_numpy(template.uv_to_xyz_filled),
                      template.eye_distance)
    mean_lm = np.asarray(ckpt["mean_landmarks"], dtype=np.float64)
    baseline, rows = [], []
    with torch.no_grad():
        for batch in iterate(dataset, eval_batches(len(dataset), batch_size), 0, dev):
            with autocast(dev):
                pred = model.predict(batch["image"])
            pred = {k: v.float() if v.is_floating_point() else v for k, v in pred.items()}
            n0 = len(acc.landmarks)
            acc.update(pred, batch)
            for i in range(len(batch["image"])):
                true_lm = batch["landmarks"][i].double().cpu().numpy()
                baseline.append(nme(mean_lm, true_lm))
                if len(rows) < sheet_rows:
                    rows.append({"image": (batch["image"][i].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8),
                                 "true_uv": batch["uv"][i].cpu().numpy(), "true_parts": batch["parts"][i].cpu().numpy(),
                                 "pred_uv": pred["uv"][i].cpu().numpy(), "pred_parts": pred["parts"][i].cpu().numpy(),
                                 "true_lm": true_lm, "pred_lm": acc.landmarks[n0 + i]})
    summary = acc.summary()
    report = {
        "checkpoint": str(checkpoint), "shards": str(shards), "split": split, "samples": len(dataset),
        "head": ckpt["model_config"]["head"], "k": ckpt["k"],
        "index_sha256": index.sha256, "checkpoint_index_sha256": ckpt.get("index_sha256"),
        **summary, "mean_shape_baseline": {"landmarks": landmark_summary(baseline)},
        "per_image": {"nme": acc.nme, "dense_error": acc.dense, "baseline_nme": baseline},
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        draw_curves({f"DenseReg ({report['head']})": ced(acc.nme, LANDMARK_AUC_LIMIT), "mean shape": ced(baseline, LANDMARK_AUC_LIMIT)},
                    out / "ced_landmarks.png", LANDMARK_AUC_LIMIT, "NME (outer eye corners)", f"landmark CED, {split}")
        draw_curves({f"DenseReg ({report['head']})": ced([d for d in acc.dense if np.isfinite(d)], DENSE_AUC_LIMIT)},
                    out / "ced_dense.png", DENSE_AUC_LIMIT, "dense error / eye distance", f"dense CED, {split}")
        sheet(rows, out / "sheet.png", scale=max(1, 128 // index.image_size[0]))
        log.info("wrote %s", out / "report.json")
    return report

