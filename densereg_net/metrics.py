"""Scores of dense predictions: 300-W landmark NME from the dense U-V, dense 3D error, part mIoU.

Convention: landmarks from a dense prediction
    Landmark i is placed at the predicted-foreground pixel whose predicted U-V is nearest to its
    read-out U-V, then refined to sub-pixel by inverting a local linear U-V model
    (least squares over the foreground pixels of the (2r+1)^2 window, r = 2): x = x0 + J^-1 (t - a).
    When the fit is ill-conditioned or the step leaves the window, a U-V-distance-weighted average of
    the window is used instead. With no predicted foreground, every landmark is the crop centre.
    The read-out U-V of landmark i is the template's ``landmark_uv[i]`` calibrated on the training
    labels (`calibrate_readout`: where annotators put the point on the fitted faces, which the template
    vertex misses by the fit's residual and, on the jaw, by the contour sliding with pose); a network
    trained on shards without it, or an older checkpoint, reads out at the template's.

Convention: 300-W protocol
    NME = mean point-to-point error / distance between the TRUE outer eye corners (0-based 36, 45).
    CED(x) = fraction of images with NME <= x; AUC@a = integral of CED over [0, a] / a (1001-point
    trapezoid); failure rate = fraction with NME > 0.08.

Convention: dense error
    Per TRUE foreground pixel, |xyz(uv_pred) - xyz(uv_true)| / eye_distance, with xyz the one U-V -> 3D
    lookup of the shards' template facts, `densereg_data.format.TemplateFacts.xyz` (bilinear in
    template.h5 ``uv_to_xyz`` with off-face cells filled by their nearest on-face value; the label
    generator's consistency score uses the same function). Mean per image; CED and AUC up to 0.1.

Convention: part mIoU
    IoU of each of the 8 face parts accumulated over the whole split (intersections and unions
    summed over images), averaged over the parts that occur (background excluded).
"""

from __future__ import annotations

import numpy as np
import torch

from densereg_data.conventions import N_PARTS, OUTER_EYE_CORNERS, eye_distance
from densereg_data.format import TemplateFacts

LANDMARK_AUC_LIMIT = 0.08
FAILURE_THRESHOLD = 0.08
DENSE_AUC_LIMIT = 0.1


def dense_error(uv_pred, uv_true, fg_true, facts: TemplateFacts) -> np.ndarray:
    """Mean dense error per image: uv (B, 2, S, S), fg_true (B, S, S) bool (tensors or arrays) ->
    (B,) float64, NaN for an image without true foreground. See the dense error convention."""
    uv_pred = _numpy(uv_pred).transpose(0, 2, 3, 1)  # (B, S, S, 2)
    uv_true = _numpy(uv_true).transpose(0, 2, 3, 1)  # (B, S, S, 2)
    fg = _numpy(fg_true).astype(bool)
    image = np.nonzero(fg)[0]  # (P,) the image of each true-foreground pixel
    d = np.linalg.norm(facts.xyz(uv_pred[fg]) - facts.xyz(uv_true[fg]), axis=-1) / facts.eye_distance  # (P,)
    n = np.bincount(image, minlength=len(fg))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(image, weights=d, minlength=len(fg)) / np.where(n > 0, n, np.nan)


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) and x.is_floating_point() else (
        x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))


def landmarks_from_uv(uv: torch.Tensor, fg: torch.Tensor, landmark_uv: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """uv (2, S, S) float, fg (S, S) bool, landmark_uv (L, 2) -> (L, 2) float64 (x, y) crop pixels."""
    S_h, S_w = fg.shape
    L = landmark_uv.shape[0]
    t = landmark_uv.to(uv.device, torch.float32)
    rows, cols = torch.nonzero(fg, as_tuple=True)
    if rows.numel() == 0:
        return torch.tensor([[(S_w - 1) / 2, (S_h - 1) / 2]], dtype=torch.float64).repeat(L, 1)
    uv_fg = uv[:, rows, cols].T.float()  # (P, 2)
    j = torch.cdist(t, uv_fg).argmin(1)
    x0, y0 = cols[j], rows[j]  # (L,)
    r = torch.arange(-radius, radius + 1, device=uv.device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    dx, dy = dx.reshape(-1), dy.reshape(-1)  # (W,)
    xs, ys = x0[:, None] + dx, y0[:, None] + dy  # (L, W)
    inside = (xs >= 0) & (xs < S_w) & (ys >= 0) & (ys < S_h)
    xs_c, ys_c = xs.clamp(0, S_w - 1), ys.clamp(0, S_h - 1)
    valid = (inside & fg[ys_c, xs_c]).float()  # (L, W)
    vals = uv[:, ys_c, xs_c].permute(1, 2, 0).float()  # (L, W, 2)
    # local linear model uv = a + J [dx, dy]
    X = torch.stack([torch.ones_like(xs_c, dtype=torch.float32), dx.expand_as(xs).float(), dy.expand_as(ys).float()], -1)
    Xw = (X * valid[..., None]).double()
    XtX = Xw.transpose(1, 2) @ X.double() + 1e-6 * torch.eye(3, dtype=torch.float64, device=X.device)  # (L, 3, 3)
    XtY = Xw.transpose(1, 2) @ vals.double()  # (L, 3, 2)
    coef, info = torch.linalg.solve_ex(XtX, XtY)  # (L, 3, 2)
    a, J = coef[:, 0], coef[:, 1:].transpose(1, 2)  # (L, 2), (L, 2, 2): J[:, i, j] = d uv_i / d x_j
    det = torch.linalg.det(J)
    scale = J.abs().amax((1, 2)).clamp(min=1e-12)
    ok = (info == 0) & (valid.sum(1) >= 3) & (det.abs() > 1e-6 * scale**2) & (scale > 1e-9)
    J_safe = torch.where(ok[:, None, None], J, torch.eye(2, dtype=J.dtype, device=J.device))
    step, info2 = torch.linalg.solve_ex(J_safe, (t.double() - a).unsqueeze(-1))
    step = step[..., 0]
    ok &= (info2 == 0) & torch.isfinite(step).all(1)
    ok &= step.abs().amax(1) <= radius + 0.5
    # fallback: U-V-distance-weighted average of the window
    d2 = ((vals - t[:, None]) ** 2).sum(-1)  # (L, W)
    sigma2 = d2.masked_fill(valid == 0, float("inf")).amin(1, keepdim=True).clamp(min=1e-8) * 4
    wts = (torch.exp(-d2 / sigma2) * valid).double()
    avg = torch.stack([(wts * xs).sum(1), (wts * ys).sum(1)], -1) / wts.sum(1, keepdim=True).clamp(min=1e-12)  # float64
    base = torch.stack([x0, y0], -1).double()
    return torch.where(ok[:, None], base + step, avg.double()).cpu()


def nme(pred: np.ndarray, true: np.ndarray) -> float:
    """300-W NME: pred, true (68, 2) -> mean error / outer-eye-corner distance of `true`, over the points
    `true` places (NaN marks a missing one; docs/FORMAT.md `landmark_state`); NaN when an outer eye
    corner is missing (such a face has no 300-W NME)."""
    placed = np.isfinite(true).all(axis=1)
    if not placed[list(OUTER_EYE_CORNERS)].all():
        return float("nan")
    return float(np.linalg.norm(pred[placed] - true[placed], axis=1).mean() / eye_distance(true))


def ced(errors, limit: float, n: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds (n,), fraction of errors <= threshold (n,)) over [0, limit]."""
    e = np.sort(np.asarray(errors, dtype=np.float64))
    x = np.linspace(0, limit, n)
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)


def auc(errors, limit: float) -> float:
    """Area under the CED curve up to `limit`, divided by `limit` (1 = every error is 0)."""
    x, y = ced(errors, limit)
    return float(np.trapezoid(y, x) / limit) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / limit)


def landmark_summary(nmes) -> dict:
    """NME, AUC@0.08 and failure rate over the faces with an NME (NaN ones, without both eye corners, left
    out). An infinite NME is a face the method did not find: a failure, never reached on the CED curve
    (AUC), left out of the mean NME only; "missed" counts them."""
    nmes = np.asarray(nmes, dtype=np.float64)
    nmes = nmes[~np.isnan(nmes)]
    found = nmes[np.isfinite(nmes)]
    return {"nme": float(found.mean()) if len(found) else float("nan"), "auc@0.08": auc(nmes, LANDMARK_AUC_LIMIT),
            "failure_rate": float((nmes > FAILURE_THRESHOLD).mean()), "n": int(len(nmes)),
            "missed": int(len(nmes) - len(found))}


def combined_landmarks(nearest: np.ndarray, fitted: np.ndarray | None) -> np.ndarray:
    """The combined read-out: the mean of the nearest-U-V landmarks and the dense fit's (68, 2), the
    nearest-U-V ones alone when the fit failed (None). The two err differently (the fit is a rigid,
    smooth face; the nearest-U-V read-out follows every pixel), so their mean errs less than either."""
    return nearest if fitted is None else (np.asarray(nearest, np.float64) + np.asarray(fitted, np.float64)) / 2


#: A landmark's read-out U-V is calibrated on at least this many training faces, else the template's.
MIN_CALIBRATION_FACES = 5


def calibrate_readout(samples, template_uv: np.ndarray) -> np.ndarray:
    """(68, 2) float64 read-out U-V: per landmark, the median over `samples` of the label U-V at the
    annotated point (bilinear over the labelled-face pixels among its 4 neighbours, renormalised; none
    of them on the face: no value), the template's ``template_uv`` row where fewer than
    MIN_CALIBRATION_FACES faces give one.

    samples: an iterable of dicts with "uv" (2, S, S), "parts" (S, S) and "landmarks" (68, 2) (the
    `ShardDataset` item): the original training faces, not new views (whose labels put every landmark
    at the template's U-V by construction).
    """
    seen = []
    for s in samples:
        uv, fg = np.asarray(s["uv"], np.float64), np.asarray(s["parts"]) > 0
        S_h, S_w = fg.shape
        pts = np.asarray(s["landmarks"], np.float64)
        pts = np.where(np.isfinite(pts) & (np.abs(pts) < 4 * max(S_h, S_w)), pts, -2.0)  # missing: outside
        x0, y0 = np.floor(pts[:, 0]).astype(np.int64), np.floor(pts[:, 1]).astype(np.int64)
        fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
        total, weight = np.zeros((len(pts), 2)), np.zeros(len(pts))
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            x, y = x0 + dx, y0 + dy
            inside = (x >= 0) & (x < S_w) & (y >= 0) & (y < S_h)
            xc, yc = x.clip(0, S_w - 1), y.clip(0, S_h - 1)
            w = np.where(inside & fg[yc, xc], w, 0.0)
            total += w[:, None] * uv[:, yc, xc].T
            weight += w
        with np.errstate(all="ignore"):
            seen.append(np.where(weight[:, None] > 1e-9, total / weight[:, None], np.nan))
    template_uv = np.asarray(template_uv, np.float64)
    if not seen:
        return template_uv.copy()
    seen = np.stack(seen)  # (N, 68, 2)
    enough = np.isfinite(seen[..., 0]).sum(0) >= MIN_CALIBRATION_FACES
    with np.errstate(all="ignore"):
        median = np.nanmedian(np.where(enough[None, :, None], seen, 0.0), axis=0)
    return np.where(enough[:, None], median, template_uv)


class Accumulator:
    """Collects per-image scores over batches; `summary()` gives the report numbers.

    facts: the shards' template facts (landmark U-V, the U-V -> 3D lookup, eye distance); readout_uv:
    the landmarks' read-out U-V (`calibrate_readout`; None: the template's).
    """

    def __init__(self, facts: TemplateFacts, readout_uv: np.ndarray | None = None):
        self.facts = facts
        self.landmark_uv = torch.from_numpy(np.asarray(facts.landmark_uv if readout_uv is None else readout_uv, np.float64))
        self.nme, self.dense, self.landmarks = [], [], []
        self.inter = np.zeros(N_PARTS, np.int64)
        self.union = np.zeros(N_PARTS, np.int64)

    def update(self, pred: dict, batch: dict) -> None:
        """pred: {"uv" (B, 2, S, S), "parts" (B, S, S), "fg" (B, S, S)}; batch: the truth."""
        self.dense += dense_error(pred["uv"], batch["uv"], batch["parts"] > 0, self.facts).tolist()
        for i in range(pred["uv"].shape[0]):
            lm = landmarks_from_uv(pred["uv"][i], pred["fg"][i], self.landmark_uv).numpy()
            self.landmarks.append(lm)
            self.nme.append(nme(lm, batch["landmarks"][i].double().cpu().numpy()))
        p, t = pred["parts"].reshape(-1), batch["parts"].reshape(-1)
        for c in range(1, N_PARTS):
            pc, tc = p == c, t == c
            self.inter[c] += int((pc & tc).sum())
            self.union[c] += int((pc | tc).sum())

    def part_iou(self) -> dict[int, float]:
        return {c: float(self.inter[c] / self.union[c]) for c in range(1, N_PARTS) if self.union[c] > 0}

    def summary(self) -> dict:
        dense = np.asarray([d for d in self.dense if np.isfinite(d)])
        iou = self.part_iou()
        return {
            "landmarks": landmark_summary(self.nme),
            "dense": {"error": float(dense.mean()) if len(dense) else float("nan"),
                      "auc@0.1": auc(dense, DENSE_AUC_LIMIT), "n": int(len(dense))},
            "parts": {"miou": float(np.mean(list(iou.values()))) if iou else float("nan"),
                      "iou": {str(c): v for c, v in iou.items()}},
        }
