"""Losses of the DenseReg heads (`LOSSES`, keyed by head name), with documented weights.

All heads: part cross-entropy over every pixel (9 classes, 0 = background), weight `parts`, plus a
                soft Dice loss over the 8 face parts (1 - mean over parts of 2|P.T| / (|P| + |T|), the
                batch pooled), weight `part_dice`: the eyes cover 0.3 % of a crop's pixels each, so
                cross-entropy alone learns to never predict them (eye IoU near 0, BENCHMARKS.md).
quantized:      cross-entropy on the u and v bins over every pixel (K + 1 classes, background = 0),
                weight `bins` each; smooth-L1 (beta 0.1, in bin units) between the predicted residual
                of the TRUE bin and the true residual, on foreground pixels only, weight `residual`
                each.
classification: the bin cross-entropies only.
regression:     smooth-L1 (beta 0.1) between K * sigmoid(prediction) and K * true (u, v) on
                foreground pixels (the same bin units as the residual), weight `regression` each.
Targets follow `conventions.encode_bins`; the foreground is ``parts > 0``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from densereg_data.conventions import encode_bins

LOSSES: dict[str, callable] = {}


@dataclass(frozen=True)
class LossWeights:
    parts: float = 1.0
    part_dice: float = 1.0
    bins: float = 1.0
    residual: float = 1.0
    regression: float = 1.0
    beta: float = 0.1

    def to_dict(self):
        return asdict(self)


def register_loss(name):
    def deco(fn):
        LOSSES[name] = fn
        return fn
    return deco


def targets(batch: dict, k: int) -> dict[str, torch.Tensor]:
    """Bin classes (B, S, S) int64 (0 on background) and residuals (B, S, S) float32 of u and v."""
    fg = batch["parts"] > 0
    out = {"fg": fg}
    for i, a in enumerate("uv"):
        b, r = encode_bins(batch["uv"][:, i].float().clamp(0, 1), k)
        out[f"{a}_bin"] = torch.where(fg, b, torch.zeros_like(b))
        out[f"{a}_res"] = r
    return out


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def part_dice_loss(logits: torch.Tensor, parts: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over the face parts 1..P-1 of the soft Dice overlap 2 sum(p t) / (sum p + sum t), the
    sums over the whole batch; logits (B, P, S, S), parts (B, S, S) int64 with 0 = background."""
    prob = logits.float().softmax(1)[:, 1:]  # (B, P-1, S, S)
    onehot = F.one_hot(parts, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    dice = (2 * inter + eps) / (prob.sum(dims) + onehot.sum(dims) + eps)
    return 1 - dice.mean()


def _bins_and_parts(out, batch, t, w):
    terms = {"parts": w.parts * F.cross_entropy(out["parts"].float(), batch["parts"])}
    if w.part_dice:
        terms["part_dice"] = w.part_dice * part_dice_loss(out["parts"], batch["parts"])
    if "u_cls" in out:
        for a in "uv":
            terms[f"{a}_bins"] = w.bins * F.cross_entropy(out[f"{a}_cls"].float(), t[f"{a}_bin"])
    return terms


@register_loss("quantized")
def quantized_loss(out, batch, k, w: LossWeights = LossWeights()):
    t = targets(batch, k)
    terms = _bins_and_parts(out, batch, t, w)
    fg = t["fg"].float()
    for a in "uv":
        true_bin = t[f"{a}_bin"].clamp(min=1) - 1  # (B, S, S); background pixels are masked out
        pred = out[f"{a}_res"].float().gather(1, true_bin.unsqueeze(1)).squeeze(1)
        l1 = F.smooth_l1_loss(pred, t[f"{a}_res"], reduction="none", beta=w.beta)
        terms[f"{a}_res"] = w.residual * _masked_mean(l1, fg)
    return sum(terms.values()), terms


@register_loss("classification")
def classification_loss(out, batch, k, w: LossWeights = LossWeights()):
    t = targets(batch, k)
    terms = _bins_and_parts(out, batch, t, w)
    return sum(terms.values()), terms


@register_loss("regression")
def regression_loss(out, batch, k, w: LossWeights = LossWeights()):
    t = targets(batch, k)
    terms = _bins_and_parts(out, batch, t, w)
    fg = t["fg"].float()
    pred = torch.sigmoid(out["uv"].float()) * k
    l1 = F.smooth_l1_loss(pred, batch["uv"].float() * k, reduction="none", beta=w.beta)  # (B, 2, S, S)
    terms["u_reg"] = w.regression * _masked_mean(l1[:, 0], fg)
    terms["v_reg"] = w.regression * _masked_mean(l1[:, 1], fg)
    return sum(terms.values()), terms


def compute_loss(head: str, out: dict, batch: dict, k: int, weights: LossWeights = LossWeights()):
    """(total scalar, {term: scalar}) for the named head."""
    return LOSSES[head](out, batch, k, weights)
