"""The steps every fit of a linear face model to 2D points shares: the scaled-orthographic camera, the
Gaussian-prior linear solve of the coefficients (`map_linear` for a vector basis, `map_isotropic` for
scalar functions moving the three axes alike), and the jaw-contour rule. numpy only.

The landmark fit (`densereg_data.face.fit`, 68 annotated points) and the dense fit
(`densereg_net.dense_fit`, thousands of pixel <-> surface correspondences) both call these, so a face
fitted either way has the same camera, the same prior and its jaw landmarks on the same silhouette.

Convention: camera
    ``[x, y] = scale * rotation[:2] @ X + shift`` for a template point X (mm), the orthographic camera of
    `densereg_data.geometry.camera` (``Camera("orthographic", rotation, [shift, 0], scale)``).

Convention: contour
    An annotator marks a turned face's jaw on its visible silhouette. Each sliding jaw landmark has a row
    of candidate surface points running inward from it; the landmark is the candidate that lies furthest
    along the landmark's outward direction (template frame, horizontal) as both are seen in the image
    (rotated; scale and shift do not change which is furthest). Ties go to the first candidate of the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densereg_data.errors import FitError, ShapeError

__all__ = ["orthographic_camera", "map_linear", "map_isotropic", "ContourCandidates"]


def orthographic_camera(points: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted scaled-orthographic camera: argmin sum_l w_l |s Q2 X_l + t - x_l|^2 (affine, then the
    nearest scaled rotation).

    points: (m, 3) float64 template mm; x: (m, 2) float64 (x, y) px; w: (m,) float64 >= 0.
    Returns (scale, rotation (3, 3) with rows Q2 and their cross product, shift (2,) px); FitError when
    the points do not determine a camera.
    """
    wsum = w.sum()
    pc = (w @ points) / wsum
    xc = (w @ x) / wsum
    P = points - pc
    Xc = x - xc
    Pw = P * w[:, None]
    try:
        affine = np.linalg.solve(P.T @ Pw, Pw.T @ Xc).T  # (2, 3)
    except np.linalg.LinAlgError:
        raise FitError("no camera fits these landmarks (too few, or all on one plane of the model)") from None
    u, sv, vt = np.linalg.svd(affine, full_matrices=False)
    q2 = u @ vt
    scale = float(np.sum((Pw @ q2.T) * Xc) / np.sum((Pw @ q2.T) * (P @ q2.T)))
    if not np.isfinite(scale) or scale <= 0:
        raise FitError(f"no valid camera: scale {scale}")
    a, b = q2
    rotation = np.array([a, b, [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]])
    shift = xc - scale * (q2 @ pc)
    return scale, rotation, shift


def map_linear(x: np.ndarray, mean: np.ndarray, local: np.ndarray, scale: float, rotation: np.ndarray,
               shift: np.ndarray, inv_var: np.ndarray, prior_inv_var: np.ndarray) -> np.ndarray:
    """MAP coefficients (K,) of a linear model seen by a scaled-orthographic camera, Gaussian prior.

    x: (m, 2) px; mean: (m, 3) mm and local: (m, 3, K) the model at the matched surface points (point
    m moves by ``local[m] @ c``; float32 local makes the K x K normal matrix in float32, for speed);
    scale, rotation (3, 3), shift (2,): the camera; inv_var: (m,) 1 / sigma^2 per point in mm^-2;
    prior_inv_var: (K,) 1 / sd^2 per coefficient, > 0. Minimises
    ``sum_m inv_var_m |R2 (mean_m + local_m c) - (x_m - shift) / scale|^2 + sum_k prior_inv_var_k c_k^2``
    in closed form (the K x K normal equations); FitError if they are singular.
    """
    k = local.shape[-1]
    residual = (x - shift) / scale - mean @ rotation[:2].T  # (m, 2) mm
    a = np.tensordot(local, rotation[:2].astype(local.dtype), axes=([1], [1]))  # (m, K, 2)
    a = a.transpose(0, 2, 1).reshape(-1, k)  # (2m, K)
    w = np.repeat(inv_var, 2)
    normal = (a.T @ (a * w[:, None].astype(local.dtype))).astype(np.float64)  # in local's precision
    normal[np.diag_indices(k)] += prior_inv_var
    rhs = a.T.astype(np.float64) @ (w * residual.ravel())
    try:
        return np.linalg.solve(normal, rhs)
    except np.linalg.LinAlgError as exc:
        raise FitError(f"shape solve failed: {exc}") from exc


def map_isotropic(x: np.ndarray, mean: np.ndarray, local: np.ndarray, scale: float, rotation: np.ndarray,
                  shift: np.ndarray, inv_var: np.ndarray, prior_inv_var: np.ndarray,
                  constraints: np.ndarray | None = None) -> np.ndarray:
    """MAP coefficients (K, 3) of a model of scalar functions that move x, y and z with independent
    coefficients of one Gaussian prior per function (point m moves by ``c.T @ local[m]``), seen by a
    scaled-orthographic camera, subject to ``sum_k constraints[s, k] . c[k] = 0`` for every row s.

    local: (m, K) the functions at the matched points; constraints: (S, K, 3) template frame, or None;
    the other arguments and the objective as `map_linear`. In the camera-aligned frame (c' = c R^T) the
    two image axes share one K x K normal matrix and depth c'_2 sees only its prior, so one solve serves
    both; the constraints are met by Lagrange multipliers (an S x S system).
    """
    residual = (x - shift) / scale - mean @ rotation[:2].T  # (m, 2) mm
    normal = (local.T @ (local * inv_var[:, None].astype(local.dtype))).astype(np.float64)
    normal[np.diag_indices(len(prior_inv_var))] += prior_inv_var
    g = local.T.astype(np.float64) @ (inv_var[:, None] * residual)  # (K, 2)
    k = len(prior_inv_var)
    a = np.zeros((0, k, 3)) if constraints is None else constraints @ rotation.T  # (S, K, 3) camera frame
    try:  # one solve for the data and the constraint rows' image axes; depth: the prior alone
        solved = np.linalg.solve(normal, np.concatenate([g, a[..., :2].transpose(1, 0, 2).reshape(k, -1)], axis=1))
    except np.linalg.LinAlgError as exc:
        raise FitError(f"shape solve failed: {exc}") from exc
    c = np.zeros((len(g), 3))
    c[:, :2] = solved[:, :2]
    if len(a):
        h_inv_at = np.empty_like(a)  # (S, K, 3): H^-1 applied to each constraint row
        h_inv_at[..., :2] = solved[:, 2:].reshape(len(g), len(a), 2).transpose(1, 0, 2)
        h_inv_at[..., 2] = a[..., 2] / prior_inv_var
        schur = np.einsum("skc,tkc->st", a, h_inv_at)
        lam = np.linalg.solve(schur, np.einsum("skc,kc->s", a, c))
        c = c - np.einsum("s,skc->kc", lam, h_inv_at)
    return c @ rotation


@dataclass(frozen=True, eq=False)
class ContourCandidates:
    """Where the sliding jaw landmarks may go: the rows of candidate points and the contour rule.

    landmarks: (R,) int64, the landmark index each row belongs to (distinct); row: (M,) int64, the row of
    each candidate, non-decreasing, every row 0..R-1 present (a row's first candidate is the one nearest
    its landmark); outward: (R, 3) float64, each landmark's outward direction in the template frame.
    """

    landmarks: np.ndarray
    row: np.ndarray
    outward: np.ndarray

    def __post_init__(self) -> None:
        r = len(self.landmarks)
        if (self.landmarks.ndim != 1 or self.row.ndim != 1 or self.outward.shape != (r, 3) or len(self.row) < r
                or len(np.unique(self.landmarks)) != r):
            raise ShapeError(f"contour candidates: landmarks (R,) distinct, row (M >= R,), outward (R, 3) expected; got "
                             f"{self.landmarks.shape}, {self.row.shape}, {self.outward.shape}")
        steps = np.diff(self.row)
        if r == 0 or self.row[0] != 0 or self.row[-1] != r - 1 or np.any((steps != 0) & (steps != 1)):
            raise ShapeError(f"contour candidates: row must run 0, 0, ..., 1, ... up to {r - 1} without gaps")
        if not np.isfinite(self.outward).all():
            raise ShapeError("contour candidates: outward directions must be finite")

    @property
    def starts(self) -> np.ndarray:
        """(R,) int64: the index of each row's first candidate."""
        return np.flatnonzero(np.r_[True, self.row[1:] != self.row[:-1]])

    def slide(self, points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(R,) int64 indices into the candidates: the outermost candidate of each row in the image.

        points: (M, 3) float64, the candidates on the (deformed) shape, template frame; rotation: (3, 3)
        the camera's. See the module's contour convention.
        """
        image_xy = points @ rotation[:2].T  # (M, 2), scale and shift do not change the argmax
        direction = self.outward @ rotation[:2].T  # (R, 2)
        row_of = self.row
        score = (image_xy * direction[row_of]).sum(axis=1)
        # argmax per row: sort-free via maximum.reduceat
        best = np.maximum.reduceat(score, self.starts)
        hit = np.flatnonzero(score == best[row_of])
        first = np.r_[True, row_of[hit][1:] != row_of[hit][:-1]]
        return hit[first]
