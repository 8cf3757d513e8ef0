"""Scores of dense predictions: 300-W landmark NME from the dense U-V, dense 3D error, part mIoU.

Convention: landmarks from a dense prediction
    Landmark i is placed at the predicted-foreground pixel whose predicted U-V is nearest to the
    template's ``landmark_uv[i]``, then refined to sub-pixel by inverting a local linear U-V model
    (least squares over the foreground pixels of the (2r+1)^2 window, r = 2): x = x0 + J^-1 (t - a).
    When the fit is ill-conditioned or the step leaves the window, a U-V-distance-weighted average of
    the window is used instead. With no predicted foreground, every landmark is the crop centre.

Convention: 300-W protocol
    NME = mean point-to-point error / distance between the TRUE outer eye corners (0-based 36, 45).
    CED(x) = fraction of images with NME <= x; AUC@a = integral of CED over [0, a] / a (1001-point
    trapezoid); failure rate = fraction with NME > 0.08.

Convention: dense error
    Per TRUE foreground pixel, |xyz(uv_pred) - xyz(uv_true)| / eye_distance, with xyz the bilinear
    lookup in template.h5 ``uv_to_xyz`` (grid ``[row, col]``, u = col / (G - 1), v = 1 - row / (G - 1));
    off-face grid cells take their nearest on-face value. Mean per image; CED and AUC up to 0.1.

Convention: part mIoU
    IoU of each of the 8 face parts accumulated over the whole split (intersections and unions
    summed over images), averaged over the parts that occur (background excluded).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from densereg_net.conventions import N_PARTS, OUTER_EYE_CORNERS

LANDMARK_AUC_LIMIT = 0.08
FAILURE_THRESHOLD = 0.08
DENSE_AUC_LIMIT = 0.1


def lookup_xyz(uv: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear template positions: uv (..., 2) float (u, v); grid (G, G, 3) -> (..., 3) float32."""
    shape = uv.shape[:-1]
    pts = uv.reshape(1, 1, -1, 2).float()  # (1, 1, N, 2)
    g = torch.stack([2 * pts[..., 0] - 1, 1 - 2 * pts[..., 1]], dim=-1)  # x = col, y = row, normalised
    img = grid.permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, G, G)
    out = F.grid_sample(img, g, mode="bilinear", padding_mode="border", align_corners=True)  # (1, 3, 1, N)
    return out[0, :, 0].T.reshape(*shape, 3)


def dense_error(uv_pred: torch.Tensor, uv_true: torch.Tensor, fg_true: torch.Tensor, grid: torch.Tensor,
                eye_distance: float) -> torch.Tensor:
    """Mean dense error per image: uv (B, 2, S, S), fg_true (B, S, S) bool -> (B,) float32 (NaN if
    an image has no true foreground)."""
    a = lookup_xyz(uv_pred.permute(0, 2, 3, 1), grid)  # (B, S, S, 3)
    b = lookup_xyz(uv_true.permute(0, 2, 3, 1), grid)  # (B, S, S, 3)
    d = (a - b).norm(dim=-1) / eye_distance  # (B, S, S)
    m = fg_true.float()
    return (d * m).sum((1, 2)) / m.sum((1, 2))


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
    wts = torch.exp(-d2 / sigma2) * valid
    avg = torch.stack([(wts * xs).sum(1), (wts * ys).sum(1)], -1) / wts.sum(1, keepdim=True).clamp(min=1e-12)
    base = torch.stack([x0, y0], -1).double()
    return torch.where(ok[:, None], base + step, avg.double()).cpu()


def nme(pred: np.ndarray, true: np.ndarray) -> float:
    """300-W NME: pred, true (68, 2) -> mean error / outer-eye-corner distance of `true`."""
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(pred - true, axis=1).mean() / np.linalg.norm(true[a] - true[b]))


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
    nmes = np.asarray(nmes, dtype=np.float64)
    return {"nme": float(nmes.mean()), "auc@0.08": auc(nmes, LANDMARK_AUC_LIMIT),
            "failure_rate": float((nmes > FAILURE_THRESHOLD).mean()), "n": int(len(nmes))}


class Accumulator:
    """Collects per-image scores over batches; `summary()` gives the report numbers.

    landmark_uv: (68, 2) tensor; grid: (G, G, 3) tensor (NaN-filled uv_to_xyz); eye_distance: float.
    """

    def __init__(self, landmark_uv: torch.Tensor, grid: torch.Tensor, eye_distance: float):
        self.landmark_uv, self.grid, self.eye = landmark_uv, grid, eye_distance
        self.nme, self.dense, self.landmarks = [], [], []
        self.inter = np.zeros(N_PARTS, np.int64)
        self.union = np.zeros(N_PARTS, np.int64)

    def update(self, pred: dict, batch: dict) -> None:
        """pred: {"uv" (B, 2, S, S), "parts" (B, S, S), "fg" (B, S, S)}; batch: the truth."""
        grid = self.grid.to(pred["uv"].device)
        fg_true = batch["parts"] > 0
        self.dense += dense_error(pred["uv"], batch["uv"], fg_true, grid, self.eye).tolist()
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
