"""Scoring a checkpoint on a split of a shard directory: `evaluate` (the `densereg-net eval` command).

Report: 300-W landmark NME / AUC@0.08 / failure rate, dense error + AUC@0.1, part mIoU, and the
mean-shape baseline; with `out`, also report.json, ced_landmarks.png, ced_dense.png and sheet.png
(image with true (green) and predicted (red) landmarks | true U-V | predicted U-V | true parts |
predicted parts).

With ``fit=True`` (``--fit``) the landmarks are also read out by a dense fit of the face model to each
prediction (`densereg_net.dense_fit`, weighted by `dense_confidence`), scored the same way beside the
nearest-U-V read-out: ``report["dense_fit"]`` = {"landmarks": NME/AUC/failures, "ms_per_face" (median
of the fits' own time), "ms_mean", "failed" (faces whose fit raised FitError: scored with the mean-shape
landmarks), "inlier_fraction" (mean)}, ``report["per_image"]["dense_fit_nme"]``; the combined read-out
(the mean of the two, `metrics.combined_landmarks`) as ``report["combined"]`` {"landmarks"} and
``report["per_image"]["combined_nme"]``; and their curves in
ced_landmarks.png. The face model is the shards' template.h5's, else the checkpoint's; with neither,
one ShardFormatError line says to rebuild.

Without a split named, the first of `DEFAULT_SPLITS` the shards have is scored (val, then test, then
train, then any other), and the report and the log say which and why.

Mean-shape baseline: the mean of the training landmarks in crop pixels (stored in the checkpoint),
placed unchanged in every crop and scored with the same NME, AUC and failure rate.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from densereg_data.errors import ConfigError, FitError, ShardFormatError
from densereg_data.format import TEMPLATE, ShardIndex, read_template_facts
from densereg_data.io.outputs import check_output
from densereg_net.checkpoint import check_fits_shards, load_checkpoint, model_from_checkpoint
from densereg_net.data import ShardDataset, eval_batches, iterate
from densereg_net.dense_fit import NO_FACE_MODEL, dense_confidence, fit_dense, head_outputs
from densereg_net.device import autocast, resolve_device, to_model_layout
from densereg_net.draw import draw_curves, sheet
from densereg_net.metrics import (DENSE_AUC_LIMIT, LANDMARK_AUC_LIMIT, Accumulator, ced, combined_landmarks,
                                  landmark_summary, nme)

log = logging.getLogger(__name__)

#: The splits `evaluate` scores when none is named, in order of preference.
DEFAULT_SPLITS = ("val", "test", "train")
#: The files `evaluate(..., out=)` writes into `out`.
REPORT_FILES = ("report.json", "ced_landmarks.png", "ced_dense.png", "sheet.png")


def default_split(index: ShardIndex) -> tuple[str, str]:
    """(split, why): the first of DEFAULT_SPLITS with samples in `index`, else its first non-empty split."""
    order = ", ".join(DEFAULT_SPLITS)
    for split in DEFAULT_SPLITS:
        if index.has_split(split):
            why = f"no split named: {split!r} is the first of {order} these shards have"
            return split, why + (" (the training data, not a held-out score)" if split == "train" else "")
    for split in index.splits:
        if index.has_split(split):
            return split, f"no split named and none of {order} here: {split!r} is the first split with samples"
    raise ShardFormatError(f"{index.root} holds no samples in any split")


def evaluate(checkpoint, shards, split: str | None = None, out=None, batch_size: int = 16, device: str = "auto",
             sheet_rows: int = 8, fit: bool = False, flip: bool = False) -> dict:
    """Score `checkpoint` on `split` of `shards` (None: see `default_split`); write the report into
    `out` when given; return it (a dict, see the module docstring; "split" says which was scored; with
    `fit`, also the dense-fit read-out). None of the report files may replace an input or land in a
    shard folder (`check_output`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for name in REPORT_FILES if out is not None else ():
        check_output(Path(out) / name, [checkpoint, shards])
    ckpt = load_checkpoint(checkpoint)
    index = ShardIndex.open(shards)
    check_fits_shards(ckpt["k"], ckpt["part_names"], index, str(checkpoint))
    if tuple(ckpt.get("image_size", index.image_size)) != index.image_size:
        log.warning("checkpoint was trained on %s crops, shards are %s", ckpt.get("image_size"), index.image_size)
    why = f"--split {split}"
    if split is None:
        split, why = default_split(index)
    log.info("evaluating %s on split %r of %s (%s)", checkpoint, split, index.root, why)
    dataset = ShardDataset(index, split, views=False)  # real faces: the new views of a --views build are left out
    facts = read_template_facts(index.root / TEMPLATE)
    fit_facts = facts if facts.model is not None else ckpt["template_facts"]
    if fit and fit_facts is None:
        raise ShardFormatError(f"--fit: {index.root / TEMPLATE} (and {checkpoint}) {NO_FACE_MODEL}")
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt, dev)
    template = ckpt.get("template") or {}
    acc = Accumulator(facts, template.get("readout_uv"))  # the checkpoint's calibrated read-out, if it has one
    mean_lm = np.asarray(ckpt["mean_landmarks"], dtype=np.float64)
    baseline, rows, fits = [], [], []
    with torch.no_grad(), head_outputs(model) as head:
        for batch in iterate(dataset, eval_batches(len(dataset), batch_size), 0, dev):
            with autocast(dev):
                pred = model.predict(to_model_layout(batch["image"]), flip=flip)
            pred = {k: v.float() if v.is_floating_point() else v for k, v in pred.items()}
            n0 = len(acc.landmarks)
            acc.update(pred, batch)
            conf = dense_confidence(head["out"]) if fit else None
            for i in range(len(batch["image"])):
                true_lm = batch["landmarks"][i].double().cpu().numpy()
                baseline.append(nme(mean_lm, true_lm))
                if fit:
                    fits.append(_dense_fit(pred, conf, i, fit_facts, mean_lm, true_lm, acc.landmarks[n0 + i]))
                if len(rows) < sheet_rows:
                    rows.append({"image": (batch["image"][i].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8),
                                 "true_uv": batch["uv"][i].cpu().numpy(), "true_parts": batch["parts"][i].cpu().numpy(),
                                 "pred_uv": pred["uv"][i].cpu().numpy(), "pred_parts": pred["parts"][i].cpu().numpy(),
                                 "true_lm": true_lm, "pred_lm": acc.landmarks[n0 + i]})
    summary = acc.summary()
    report = {
        "checkpoint": str(checkpoint), "shards": str(shards), "split": split, "split_reason": why,
        "samples": len(dataset), "head": ckpt["model_config"]["head"], "k": ckpt["k"], "flip": flip,
        "index_sha256": index.sha256, "checkpoint_index_sha256": ckpt.get("index_sha256"),
        **summary, "mean_shape_baseline": {"landmarks": landmark_summary(baseline)},
        "per_image": {"nme": acc.nme, "dense_error": acc.dense, "baseline_nme": baseline},
    }
    if fit:
        scored = [f for f in fits if f["ms"] is not None]
        report["dense_fit"] = {
            "landmarks": landmark_summary([f["nme"] for f in fits]),
            "ms_per_face": float(np.median([f["ms"] for f in scored])) if scored else float("nan"),
            "ms_mean": float(np.mean([f["ms"] for f in scored])) if scored else float("nan"),
            "failed": len(fits) - len(scored),
            "inlier_fraction": float(np.mean([f["inliers"] for f in scored])) if scored else float("nan"),
        }
        report["combined"] = {"landmarks": landmark_summary([f["combined_nme"] for f in fits])}
        report["per_image"]["dense_fit_nme"] = [f["nme"] for f in fits]
        report["per_image"]["combined_nme"] = [f["combined_nme"] for f in fits]
    if out is not None:
        write_report(report, rows, Path(out), index.image_size[0])
    return report


def _dense_fit(pred: dict, conf: torch.Tensor, i: int, facts, mean_lm: np.ndarray, true_lm: np.ndarray,
               nearest: np.ndarray) -> dict:
    """The dense-fit read-out of image i of a batch: {"nme", "combined_nme", "ms", "inliers"} (combined:
    with the nearest-U-V landmarks `nearest`, `metrics.combined_landmarks`); a FitError scores the
    mean-shape landmarks (ms None) and the nearest-U-V ones as the combined read-out."""
    uv = pred["uv"][i].permute(1, 2, 0).cpu().numpy()  # (S, S, 2)
    try:
        f = fit_dense(uv, pred["fg"][i].cpu().numpy(), conf[i].cpu().numpy(), facts)
    except FitError as exc:
        log.debug("dense fit failed: %s", exc)
        return {"nme": nme(mean_lm, true_lm), "combined_nme": nme(combined_landmarks(nearest, None), true_lm),
                "ms": None, "inliers": 0.0}
    return {"nme": nme(f.landmarks, true_lm), "combined_nme": nme(combined_landmarks(nearest, f.landmarks), true_lm),
            "ms": f.ms, "inliers": f.inlier_fraction}


def write_report(report: dict, rows: list[dict], out: Path, size: int) -> None:
    """report.json, the two CED curves and the sheet of `rows` into the folder `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    split, head, per_image = report["split"], report["head"], report["per_image"]
    curves = {f"DenseReg ({head})": ced(per_image["nme"], LANDMARK_AUC_LIMIT)}
    if "dense_fit_nme" in per_image:
        curves[f"DenseReg ({head}) + dense fit"] = ced(per_image["dense_fit_nme"], LANDMARK_AUC_LIMIT)
        curves[f"DenseReg ({head}), mean of both read-outs"] = ced(per_image["combined_nme"], LANDMARK_AUC_LIMIT)
    draw_curves({**curves, "mean shape": ced(per_image["baseline_nme"], LANDMARK_AUC_LIMIT)},
                out / "ced_landmarks.png", LANDMARK_AUC_LIMIT, "NME (outer eye corners)", f"landmark CED, {split}")
    dense = [d for d in per_image["dense_error"] if np.isfinite(d)]
    draw_curves({f"DenseReg ({head})": ced(dense, DENSE_AUC_LIMIT)},
                out / "ced_dense.png", DENSE_AUC_LIMIT, "dense error / eye distance", f"dense CED, {split}")
    sheet(rows, out / "sheet.png", scale=max(1, 128 // size))
    log.info("wrote %s", out / "report.json")
