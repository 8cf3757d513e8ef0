"""Fit the shards' face model to the network's dense U-V: camera, pose, coefficients and 68 landmarks.

DenseReg's headline use of its dense output was to initialise a deformable model: every foreground
pixel's predicted U-V names a point of the face surface, so one image gives thousands of pixel <->
surface correspondences instead of 68. `fit_dense` fits the face model the shards were built with
(template.h5's `ModelFacts`, carried into checkpoints) to them, robustly, in a few milliseconds, and
reads out the 68 landmarks by the landmark fit's own rules.

Convention: dense fit
    A used pixel p at (x, y) = (column, row) with predicted U-V uv_p and confidence c_p corresponds to the
    surface point ``X_p(b) = xyz(uv_p) + basis(uv_p) @ b`` (`TemplateFacts.xyz`, `ModelFacts.basis`: the
    one U-V lookup), b the model's basis coefficients (mm, prior N(0, basis_sd^2), subject to the model's
    `basis_constraints`). Minimised robustly (IRLS, weights c_p w_p) over a scaled-orthographic camera
    (s, R, t) and b, in three stages: `rigid_iterations` camera-only steps on the mean shape
    (`geometry.model_fit.orthographic_camera`), so the outliers are down-weighted before the shape can
    bend towards them; steps alternating the Gaussian-prior MAP of the `coarse_size` largest directions
    given the camera (`geometry.model_fit.map_linear` for vector directions, `map_isotropic` for scalar
    ones) and the camera given the shape; then `fine_iterations` Gauss-Newton steps on camera and every
    direction together (alternation alone converges slowly where shape and pose trade off). The robust
    weights w_p of the pixel residual r_p = |s R2 X_p + t - x_p| are Huber's for the first
    `huber_iterations` steps, then Tukey's biweight, at the scale sigma = max(1.4826 median(r),
    min_scale_px). The data term counts as `effective_pixels` observations of noise sigma / s mm, whatever
    the number of pixels used (neighbouring pixels' errors are not independent). Pixels: the foreground pixels on the
    coarsest regular lattice (every n-th row and column from row 0, column 0: deterministic) that holds at
    most `max_pixels` of them, less those with confidence 0 or a non-finite U-V.

Convention: landmarks of a dense fit
    ``landmark_mean + landmark_basis @ b`` seen by the fitted camera, the sliding jaw points replaced by
    their contour candidate furthest out in the image (`geometry.model_fit.ContourCandidates`, the
    landmark fit's rule): crop pixels (x, y), the shards' landmark convention.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from densereg_data.errors import FitError, ShapeError
from densereg_data.format.template_facts import TemplateFacts
from densereg_data.geometry.camera import Camera
from densereg_data.geometry.model_fit import map_isotropic, map_linear, orthographic_camera

__all__ = ["DenseFitConfig", "DenseFit", "fit_dense", "dense_landmarks", "fitted_points", "fitted_mesh", "dense_confidence", "head_outputs",
           "NO_FACE_MODEL"]

#: What a dense fit says when the template facts (template.h5 or a checkpoint) have no face model.
NO_FACE_MODEL = ("carries no face model for a dense fit (built before the dense fit): rebuild the shards with "
                 "this version (densereg-data build) and retrain")


@dataclass(frozen=True)
class DenseFitConfig:
    """Knobs of the dense fit (see the module's convention)."""

    max_pixels: int = 800
    #: camera-only IRLS steps on the mean shape first (the outliers are found before the shape can bend to them)
    rigid_iterations: int = 6
    #: camera + shape steps: alternating ones with the first `coarse_size` (largest) directions, then
    #: `fine_iterations` joint Gauss-Newton ones with every direction
    iterations: int = 5
    fine_iterations: int = 3
    coarse_size: int = 32
    #: steps (from the first rigid one) weighted by Huber's rule; Tukey's biweight after them
    huber_iterations: int = 3
    huber_c: float = 1.345
    tukey_c: float = 3.5
    min_scale_px: float = 0.15
    effective_pixels: float = 1e6
    min_pixels: int = 30

    def __post_init__(self) -> None:
        if self.max_pixels < self.min_pixels or self.min_pixels < 6 or self.iterations < 1 or self.rigid_iterations < 0 \
                or self.huber_iterations < 0 or not 1 <= self.fine_iterations <= self.iterations or self.coarse_size < 1:
            raise ShapeError("dense fit: need max_pixels >= min_pixels >= 6, iterations >= 1, rigid_iterations >= 0, "
                             "huber_iterations >= 0, 1 <= fine_iterations <= iterations, coarse_size >= 1")
        if not all(math.isfinite(v) and v > 0 for v in (self.huber_c, self.tukey_c, self.min_scale_px,
                                                        self.effective_pixels)):
            raise ShapeError("dense fit: huber_c, tukey_c, min_scale_px and effective_pixels must be positive")


@dataclass(frozen=True, eq=False)
class DenseFit:
    """The outcome of one dense fit.

    camera: orthographic, template frame -> crop pixels; coefficients: the basis coefficients (mm),
    `ModelFacts.zero`'s shape ((K,) or (K, 3)); identity (C,), expression (E,): the face model's own coefficients (docs/FORMAT.md, shards'
    `coefficients` / `expression`; expression weights unbounded); landmarks: (68, 2) float64 crop pixels
    (x, y); pixels: correspondences used; residual_median, residual_scale: px, median residual of the
    inliers and the robust scale; inlier_fraction: used pixels within the Tukey cut-off; ms: wall time.
    """

    camera: Camera
    coefficients: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    landmarks: np.ndarray
    pixels: int
    residual_median: float
    residual_scale: float
    inlier_fraction: float
    ms: float

    @property
    def pose(self) -> np.ndarray:
        """(3,) yaw, pitch, roll in degrees (`densereg_data.geometry.camera`'s convention)."""
        return self.camera.pose


def _pixels(uv, fg, confidence, max_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (P, 2) float64 px, uv (P, 2) float64, confidence (P,) float64) of the used pixels."""
    uv, fg = np.asarray(uv), np.asarray(fg)
    if uv.ndim != 3 or uv.shape[2] != 2 or fg.shape != uv.shape[:2] or fg.dtype != np.bool_:
        raise ShapeError(f"dense fit: uv must be (S, S, 2) and fg (S, S) bool, got {uv.shape} and {fg.shape} {fg.dtype}")
    if confidence is not None and np.shape(confidence) != fg.shape:
        raise ShapeError(f"dense fit: confidence must be {fg.shape}, got {np.shape(confidence)}")
    rows, cols = np.nonzero(fg)
    step = max(1, math.ceil(math.sqrt(len(rows) / max_pixels)))
    while True:  # the coarsest regular lattice from (0, 0) that keeps at most max_pixels
        keep = (rows % step == 0) & (cols % step == 0)
        if keep.sum() <= max_pixels:
            break
        step += 1
    rows, cols = rows[keep], cols[keep]
    conf = np.ones(len(rows)) if confidence is None else np.asarray(confidence)[rows, cols].astype(np.float64)
    if not np.all((conf >= 0) & (conf <= 1)):  # NaN fails too
        raise ShapeError("dense fit: confidence must lie in [0, 1]")
    uvp = uv[rows, cols].astype(np.float64)
    use = (conf > 0) & np.isfinite(uvp).all(axis=1)
    return np.stack([cols[use], rows[use]], axis=1).astype(np.float64), uvp[use], conf[use]


def _robust_weights(r: np.ndarray, scale: float, config: DenseFitConfig, huber: bool) -> np.ndarray:
    """Huber's or Tukey's IRLS weights (P,) of residuals r (P,) px at `scale` px."""
    z = r / scale
    if huber:
        return np.minimum(1.0, config.huber_c / np.maximum(z, 1e-12))
    return np.where(z < config.tukey_c, (1.0 - (z / config.tukey_c) ** 2) ** 2, 0.0)


def fit_dense(uv: np.ndarray, fg: np.ndarray, confidence: np.ndarray | None, facts: TemplateFacts,
              config: DenseFitConfig = DenseFitConfig()) -> DenseFit:
    """Fit `facts`' face model to a dense U-V map (see the module's conventions).

    uv: (S, S, 2) float (u, v), read where `fg` (S, S) bool; confidence: (S, S) float in [0, 1] (None:
    all 1), e.g. `dense_confidence`. Raises ShapeError for bad arrays, FitError when `facts` has no face
    model, too few pixels are usable or no camera fits them.
    """
    t0 = time.perf_counter()
    model = facts.model
    if model is None:
        raise FitError(f"the template facts {facts.attrs.get('template_id', '')!s} {NO_FACE_MODEL}")
    x, uvp, conf = _pixels(uv, fg, confidence, config.max_pixels)
    if len(x) < config.min_pixels:
        raise FitError(f"dense fit: only {len(x)} usable foreground pixels, at least {config.min_pixels} needed")
    mean = facts.xyz(uvp)  # (P, 3) mm
    local = model.basis(uvp).astype(np.float32)  # (P, A, K)
    solve = map_linear if model.axes == 3 else map_isotropic
    b, points, robust = model.zero(), mean, np.ones(len(x))
    s, rotation, shift = orthographic_camera(points, x, conf)
    coarse = config.iterations - config.fine_iterations
    for it in range(config.rigid_iterations + config.iterations + 1):
        r = np.linalg.norm(s * points @ rotation[:2].T + shift - x, axis=1)
        scale_px = max(1.4826 * float(np.median(r)), config.min_scale_px)
        robust = _robust_weights(r, scale_px, config, huber=it < config.huber_iterations)
        w = conf * robust
        if w.sum() <= 0:
            raise FitError("dense fit: every pixel was rejected as an outlier")
        step = it - config.rigid_iterations
        inv_var = w * (config.effective_pixels / w.sum()) * (s / scale_px) ** 2  # mm^-2
        if step == config.iterations:
            break
        if coarse > step >= 0:  # alternate: the shape (largest directions) given the camera
            k = min(config.coarse_size, model.size)
            extra = () if model.axes == 3 else (model.basis_constraints[:, :k],)
            b = model.zero()
            b[:k] = solve(x, mean, local[:, 0, :k] if model.axes == 1 else local[..., :k], s, rotation, shift,
                          inv_var, 1.0 / model.basis_sd[:k] ** 2, *extra)
            points = mean + model.displace(local, b)
        if step >= coarse:  # camera and shape together, every direction
            s, rotation, shift, b = _gauss_newton(x, mean, local, model, b, s, rotation, shift, inv_var)
            points = mean + model.displace(local, b)
        else:
            s, rotation, shift = orthographic_camera(points, x, w)
    camera = Camera("orthographic", rotation, np.array([shift[0], shift[1], 0.0]), scale=s)
    landmarks = dense_landmarks(facts, b, camera)
    if not np.isfinite(landmarks).all():
        raise FitError("dense fit: the fit diverged (non-finite landmarks)")
    inlier = r < config.tukey_c * scale_px
    identity, expression = model.model_coefficients(b)
    return DenseFit(camera=camera, coefficients=b, identity=identity, expression=expression, landmarks=landmarks,
                    pixels=len(x), residual_median=float(np.median(r[inlier])) if inlier.any() else float("nan"),
                    residual_scale=scale_px, inlier_fraction=float(inlier.mean()),
                    ms=1000.0 * (time.perf_counter() - t0))


def _gauss_newton(x, mean, local, model, b, s, rotation, shift, inv_var):
    """One Gauss-Newton step on the camera (log scale, a rotation R <- R exp([w]x), shift / scale) and
    the shape together, from (s, rotation, shift, b); returns the new (s, rotation, shift, b).

    Residuals in mm, ``e = R2 X + (shift - x) / s`` with X = mean + displace(local, b), weights inv_var,
    the shape's Gaussian prior and (scalar directions) its constraints. The shape block is eliminated
    (its normal matrix is K x K: for scalar directions one block serves both image axes in the camera
    frame and depth sees only the prior), leaving a (6 + S) system for the camera and the multipliers.
    The step is halved (up to three times) while it does not lower the weighted cost; else none is taken.
    """
    prior = 1.0 / model.basis_sd**2
    k = model.size
    points = mean + model.displace(local, b)  # (P, 3)
    r2 = rotation[:2]
    e = points @ r2.T + (shift - x) / s  # (P, 2) mm
    px, py, pz = points.T
    zero = np.zeros_like(px)
    skew = np.stack([np.stack([zero, -pz, py], -1), np.stack([pz, zero, -px], -1),
                     np.stack([-py, px, zero], -1)], 1)  # (P, 3, 3): skew @ w = X x w
    jc = np.concatenate([-(shift - x)[..., None] / s, -np.einsum("ij,pjk->pik", r2, skew),
                         np.broadcast_to(np.eye(2), (len(x), 2, 2))], axis=2)  # (P, 2, 6)
    wjc = jc * inv_var[:, None, None]
    h_cc = np.einsum("pai,paj->ij", wjc, jc)
    g_c = np.einsum("pai,pa->i", wjc, e)
    if model.axes == 3:
        jb = np.tensordot(local, r2.astype(np.float32), axes=([1], [1])).transpose(0, 2, 1).reshape(-1, k)  # (2P, K)
        w2 = np.repeat(inv_var, 2)
        h_y = (jb.T @ (jb * w2[:, None].astype(np.float32))).astype(np.float64)
        h_y[np.diag_indices(k)] += prior
        jb = jb.T.astype(np.float64)
        g_y = jb @ (w2 * e.ravel()) + prior * b
        h_yc = jb @ wjc.reshape(-1, 6)  # (K, 6)
        a_y, h = np.zeros((0, k)), np.zeros(0)

        def solve_y(m):
            return np.linalg.solve(h_y, m)
    else:
        f = local[:, 0]  # (P, K) float32
        bc = b @ rotation.T  # (K, 3) the coefficients in the camera frame
        h_f = (f.T @ (f * inv_var[:, None].astype(np.float32))).astype(np.float64)
        h_f[np.diag_indices(k)] += prior
        f = f.T.astype(np.float64)
        g_y = np.concatenate([f @ (inv_var * e[:, 0]) + prior * bc[:, 0], f @ (inv_var * e[:, 1]) + prior * bc[:, 1],
                              prior * bc[:, 2]])  # (3K,): u, v, depth
        h_yc = np.concatenate([f @ wjc[:, 0], f @ wjc[:, 1], np.zeros((k, 6))])  # (3K, 6)
        a = model.basis_constraints @ rotation.T  # (S, K, 3) camera frame
        a_y = a.transpose(0, 2, 1).reshape(len(a), 3 * k)
        h = -a_y @ bc.T.ravel()

        def solve_y(m):
            out = np.empty_like(m)
            both = np.linalg.solve(h_f, np.concatenate([m[:k], m[k:2 * k]], axis=1))
            out[:k], out[k:2 * k] = both[:, : m.shape[1]], both[:, m.shape[1]:]
            out[2 * k:] = m[2 * k:] / prior[:, None]
            return out

    try:
        z = solve_y(np.concatenate([g_y[:, None], h_yc, a_y.T], axis=1))
        zg, zc, za = z[:, 0], z[:, 1:7], z[:, 7:]
        n = len(a_y)
        kkt = np.block([[h_cc - h_yc.T @ zc, -h_yc.T @ za], [-a_y @ zc, -a_y @ za]])
        sol = np.linalg.solve(kkt + 1e-9 * np.eye(6 + n), np.concatenate([-g_c + h_yc.T @ zg, h + a_y @ zg]))
    except np.linalg.LinAlgError as exc:
        raise FitError(f"dense fit: the camera and shape step failed ({exc})") from None
    dc, lam = sol[:6], sol[6:]
    y = -zg - zc @ dc - za @ lam
    step = y if model.axes == 3 else y.reshape(3, k).T @ rotation

    def cost(s_, rotation_, shift_, b_):
        res = (mean + model.displace(local, b_)) @ rotation_[:2].T + (shift_ - x) / s_
        return float(inv_var @ (res**2).sum(axis=1) + prior @ (b_.reshape(k, -1) ** 2).sum(axis=1))

    now = cost(s, rotation, shift, b)
    for alpha in (1.0, 0.5, 0.25, 0.125):  # a shorter step where the full one overshoots
        new = (s * math.exp(alpha * dc[0]), rotation @ _rodrigues(alpha * dc[1:4]), shift + s * alpha * dc[4:6],
               b + alpha * step)
        if cost(*new) <= now:
            return new
    return s, rotation, shift, b


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """(3, 3) rotation exp([w]x) of a rotation vector w (3,)."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    kx, ky, kz = w / angle
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def dense_landmarks(facts: TemplateFacts, coefficients: np.ndarray, camera: Camera) -> np.ndarray:
    """(68, 2) float64 crop pixels of the landmarks of basis coefficients (K,) seen by `camera` (see the
    module's landmark convention)."""
    m = facts.model
    points = m.landmark_mean + m.displace(m.landmark_basis, coefficients)  # (68, 3)
    candidates = m.contour_mean + m.displace(m.contour_basis, coefficients)  # (M, 3)
    points[m.contour_landmarks] = candidates[m.contour.slide(candidates, camera.rotation)]
    return camera.project(points)[:, :2]


def fitted_points(fit: DenseFit, facts: TemplateFacts, uv: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) float64 crop (x, y, depth) of the fitted shape at U-V points uv (n, 2); None: at every
    on-face cell of the basis grid (`uv_to_basis`'s layout, row-major)."""
    if uv is None:
        g = facts.model.uv_to_basis.shape[0]
        rows, cols = np.nonzero(np.isfinite(facts.model.uv_to_basis[:, :, 0, 0]))
        uv = np.stack([cols / (g - 1), 1.0 - rows / (g - 1)], axis=1)
    uv = np.asarray(uv, dtype=np.float64)
    return fit.camera.project(facts.xyz(uv) + facts.model.displace(facts.model.basis(uv), fit.coefficients))


def fitted_mesh(fit: DenseFit, facts: TemplateFacts) -> tuple[np.ndarray, np.ndarray]:
    """The fitted face as a mesh: vertices (n, 3) float64 crop (x, y, depth) at every on-face cell of the
    basis grid (`fitted_points`' order) and triangles (m, 3) int64, two per grid square whose four
    corners are on the face (the diagonal from its top-left corner)."""
    g = facts.model.uv_to_basis.shape[0]
    on = np.isfinite(facts.model.uv_to_basis[:, :, 0, 0])
    number = np.full((g, g), -1, np.int64)
    number[on] = np.arange(int(on.sum()))
    a, b, c, d = number[:-1, :-1], number[:-1, 1:], number[1:, :-1], number[1:, 1:]
    full = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    faces = np.concatenate([np.stack([a[full], c[full], b[full]], 1), np.stack([b[full], c[full], d[full]], 1)])
    return fitted_points(fit, facts), faces


def dense_confidence(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, S, S) float32 confidence in [0, 1] of a prediction from the raw head outputs `out`
    (`DenseRegNet.forward`, or `head_outputs`): the probability of foreground times, for heads with U-V
    bins (quantized, classification), the probabilities of the decoded u and v bins (the largest of bins
    1..K of each softmax)."""
    conf = 1.0 - torch.softmax(out["parts"].float(), dim=1)[:, 0]  # (B, S, S)
    for a in "uv":
        if f"{a}_cls" in out:
            conf = conf * torch.softmax(out[f"{a}_cls"].float(), dim=1)[:, 1:].amax(dim=1)
    return conf


@contextlib.contextmanager
def head_outputs(model: torch.nn.Module):
    """Within the block, the dict yielded holds ``"out"``: the raw head outputs of the model's latest
    forward pass (so `DenseRegNet.predict` and `dense_confidence` share one forward pass)."""
    seen: dict = {}
    handle = model.head.register_forward_hook(lambda module, args, output: seen.__setitem__("out", output))
    try:
        yield seen
    finally:
        handle.remove()
