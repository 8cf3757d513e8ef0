"""Fit the deformable template to 68 2D landmarks: camera, shape coefficients, fitted vertices.

The default camera is scaled orthographic; `camera="perspective"` refines the result with a pinhole
camera. The fit alternates, a few times:

1. camera: the scaled rotation + translation that best maps the current 3D landmarks to the 2D ones
   (affine least squares projected onto the nearest scaled rotation, `geometry.model_fit.orthographic_camera`);
2. shape: the Gaussian-prior MAP coefficients given the camera, in closed form by the model itself
   (`DeformableModel.map_coefficients`, `MorphableModel.map_coefficients`: identity and expression jointly);
3. contour: the jaw landmarks 0-16 (but the chin, 8) slide along their template candidate curves to the
   point that is outermost in the image, i.e. on the visible silhouette of the turned face (as eos and
   3DDFA do for the side turned away; on the near side the jaw point itself is outermost): the rule of
   `geometry.model_fit.ContourCandidates`, which the dense fit (`densereg_net.dense_fit`) shares.

The camera and pose conventions are `densereg_data.geometry.camera`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import FitError, ShapeError
from densereg_data.face.morphable import MorphableModel
from densereg_data.face.shape_model import DeformableModel
from densereg_data.face.contour import jaw_candidates
from densereg_data.face.template import LandmarkBinding, Template
from densereg_data.geometry.camera import Camera
from densereg_data.geometry.model_fit import ContourCandidates, orthographic_camera
from densereg_data.schemes import LandmarkScheme, load_scheme

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FitResult:
    """The outcome of one fit.

    landmarks: (n, 2) float64 the annotated points (x, y) px (n = 68 for the iBUG scheme; the fitter's
    `scheme` otherwise); fitted_landmarks: (n, 2) the model's
    projection of its corresponding points; residuals: (68,) px distances; nme: mean residual / outer-eye
    -corner distance of the annotation (of the fitted corners when one is missing); coefficients: the model's (its `zero()` shape); correspondence_vertices
    (68, 3) int64 and correspondence_weights (68, 3): the template surface point matched to each landmark
    (the jaw points as slid along the contour).
    """

    camera: Camera
    coefficients: np.ndarray
    landmarks: np.ndarray
    fitted_landmarks: np.ndarray
    residuals: np.ndarray
    nme: float
    correspondence_vertices: np.ndarray
    correspondence_weights: np.ndarray
    iterations: int
    #: (68,) uint8 per-point states the fit was given (`conventions.VISIBLE`, `OCCLUDED`, `MISSING`);
    #: residuals are NaN and landmarks 0 where MISSING
    state: np.ndarray | None = None
    #: mean residual / sqrt(width x height) of the placed landmarks' bounding box
    nme_box: float = float("nan")

    @property
    def pose(self) -> np.ndarray:
        """(3,) yaw, pitch, roll in degrees."""
        return self.camera.pose


#: Annotation noise of a model without its own (tuned on 300-W with menpo3d's model; BENCHMARKS.md).
DEFAULT_LANDMARK_SIGMA_MM = 0.15


@dataclass(frozen=True)
class FitConfig:
    """Knobs of the fit (defaults tuned on 300-W; see BENCHMARKS.md)."""

    camera: str = "orthographic"
    iterations: int = 4
    # annotation noise, in template mm: lower fits closer, higher trusts the prior more; None: the face
    # model's own (its definition's "fit" section; DEFAULT_LANDMARK_SIGMA_MM without one)
    landmark_sigma_mm: float | None = None
    contour_sigma_scale: float = 1.5  # the jaw contour is annotated less precisely
    slide_contour: bool = True
    occluded_weight: float = 0.25  # an occluded-but-placed landmark counts this much (its sigma x 2)
    min_landmarks: int = 6  # fewer placed landmarks determine no pose: FitError
    focal_length: float | None = None  # perspective only; default: the image's larger side
    image_size: tuple[int, int] | None = None  # (height, width), perspective only

    def __post_init__(self) -> None:
        if self.camera not in ("orthographic", "perspective"):
            raise ShapeError(f"camera must be 'orthographic' or 'perspective', got {self.camera!r}")
        if not 0.0 <= self.occluded_weight <= 1.0 or self.min_landmarks < 4:
            raise ShapeError("occluded_weight must be in [0, 1] and min_landmarks >= 4")
        if self.iterations < 1 or (self.landmark_sigma_mm is not None and not self.landmark_sigma_mm > 0) \
                or self.contour_sigma_scale <= 0:
            raise ShapeError("iterations must be >= 1 and the sigmas positive")


# ----------------------------------------------------------------------------------------------------
# the fitter


@dataclass(frozen=True, eq=False)
class Fitter:
    """Template + model (over the template's vertices) with the arrays the fit needs precomputed. Build
    once, fit many faces: a face model's `FaceModel.fitter` is built once per model object."""

    template: Template
    model: DeformableModel | MorphableModel
    #: the landmark scheme fitted and its binding to the template's surface; None: the iBUG 68 (the
    #: template's own binding and contour candidates)
    scheme: LandmarkScheme | None = None
    binding: LandmarkBinding | None = None
    landmark_vertices: np.ndarray = field(init=False)
    landmark_weights: np.ndarray = field(init=False)
    #: (M,) int64 the template vertices of the jaw-contour candidates, row after row, and their rows,
    #: landmarks and outward directions with the contour rule (`geometry.model_fit.ContourCandidates`)
    contour_vertices: np.ndarray = field(init=False)
    contour: ContourCandidates = field(init=False)

    def __post_init__(self) -> None:
        t = self.template
        if self.scheme is None or self.scheme.name == "ibug68":
            object.__setattr__(self, "scheme", load_scheme("ibug68"))
            vertices, weights = t.landmark_vertex_weights
            points, rows = t.landmark_points, t.contour_candidates
        else:
            if self.binding is None or len(self.binding.triangles) != self.scheme.n:
                raise ShapeError(f"a {self.scheme.name} fit needs a binding of its {self.scheme.n} points")
            vertices, weights = t.faces[self.binding.triangles], self.binding.bary
            points = t.barycentric_points(t.vertices, self.binding)
            chin = self.scheme.ibug68[8]
            jaw = sorted(set(self.scheme.contour) | {chin})
            rows = tuple(jaw_candidates(t.vertices, points[jaw], points[self.scheme.ibug68[30]],
                                        [jaw.index(i) for i in self.scheme.contour], t.definition["contour"]))
        n = self.scheme.n
        object.__setattr__(self, "n_points", n)
        object.__setattr__(self, "landmark_vertices", vertices)
        object.__setattr__(self, "landmark_weights", weights)
        lm_mean, lm_funcs = self.model.at(vertices, weights)
        object.__setattr__(self, "_lm_mean", lm_mean)
        object.__setattr__(self, "_lm_funcs", lm_funcs)
        flat = np.concatenate(rows)
        object.__setattr__(self, "contour_vertices", flat)
        cand_mean, cand_local = self.model.at(flat)
        object.__setattr__(self, "_cand_mean", cand_mean)
        object.__setattr__(self, "_cand_funcs", cand_local)
        # outward direction of each contour landmark, in the template's horizontal plane
        centre = points[self.scheme.ibug68[30]]
        outward = points[list(self.scheme.contour)] - centre
        outward[:, 2] = 0.0
        row = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
        object.__setattr__(self, "contour", ContourCandidates(np.asarray(self.scheme.contour, np.int64), row,
                                                              outward / np.linalg.norm(outward, axis=1, keepdims=True)))
        jaw = set(self.scheme.contour) | {self.scheme.ibug68[8]}
        object.__setattr__(self, "_jaw_mask", np.isin(np.arange(n), sorted(jaw)))

    def fit(self, landmarks: np.ndarray, config: FitConfig = FitConfig(), state: np.ndarray | None = None) -> FitResult:
        """Fit to `landmarks` (68, 2) float64 (x, y) pixels. Raises ShapeError / FitError.

        state: (68,) per-point `conventions` states, None for all visible: a MISSING point (its
        coordinates are ignored, NaN allowed) does not take part, an OCCLUDED one counts
        `config.occluded_weight`; the jaw points slide on the silhouette only where they are placed.
        """
        x, trust = _validate_landmarks(landmarks, state, config, self.n_points)
        contour = list(self.scheme.contour) if config.slide_contour else []
        mean, funcs = self._lm_mean.copy(), self._lm_funcs.copy()
        vertices, weights = self.landmark_vertices.copy(), self.landmark_weights.copy()
        sigma = config.landmark_sigma_mm or self.template.definition.get("fit", {}).get("landmark_sigma_mm",
                                                                                       DEFAULT_LANDMARK_SIGMA_MM)
        inv_var = trust / (sigma * np.where(self._jaw_mask, config.contour_sigma_scale, 1.0)) ** 2
        model = self.model
        coeffs = model.zero()
        # start: the camera from the inner landmarks alone (the jaw's correspondences are unknown yet)
        inner = np.where(self._jaw_mask, 0.0, inv_var)
        _, rotation, _ = orthographic_camera(mean, x, inner if (inner > 0).sum() >= config.min_landmarks else inv_var)
        points = self._update_contour(contour, coeffs, rotation, mean, funcs, vertices, weights)
        for _ in range(config.iterations):
            scale, rotation, shift = orthographic_camera(points, x, inv_var)
            coeffs = model.map_coefficients(x, mean, funcs, scale, rotation, shift, inv_var)
            points = self._update_contour(contour, coeffs, rotation, mean, funcs, vertices, weights)
        scale, rotation, shift = orthographic_camera(points, x, inv_var)
        camera = Camera("orthographic", rotation, np.array([shift[0], shift[1], 0.0]), scale=scale)
        if config.camera == "perspective":
            camera, coeffs = _refine_perspective(x, mean, funcs, camera, coeffs, inv_var, model, config)
            points = mean + model.displace(funcs, coeffs)
        fitted = camera.project(points)[:, :2]
        if not np.all(np.isfinite(fitted)):
            raise FitError("the fit diverged (non-finite projection)")
        residuals = np.linalg.norm(fitted - x, axis=1)
        placed = trust > 0
        residuals[~placed] = np.nan
        mean_error = float(residuals[placed].mean())
        corners = list(self.scheme.eye_corners)
        ref = x if placed[corners].all() else fitted
        eye = float(np.linalg.norm(ref[corners[0]] - ref[corners[1]]))
        box = np.ptp(x[placed], axis=0)
        return FitResult(
            camera=camera,
            coefficients=coeffs,
            landmarks=x,
            fitted_landmarks=fitted,
            residuals=residuals,
            nme=mean_error / eye,
            correspondence_vertices=vertices,
            correspondence_weights=weights,
            iterations=config.iterations,
            state=None if state is None else np.where(placed, np.asarray(state, np.uint8), cv.MISSING).astype(np.uint8),
            nme_box=mean_error / float(np.sqrt(max(box[0] * box[1], 1e-12))),
        )

    def _update_contour(self, contour, coeffs, rotation, mean, funcs, vertices, weights) -> np.ndarray:
        """Slide the contour landmarks (in place in mean, funcs, vertices, weights); return the (68, 3) points."""
        if contour:
            chosen = self._slide_contour(coeffs, rotation)
            mean[contour] = self._cand_mean[chosen]
            funcs[contour] = self._cand_funcs[chosen]
            vertices[contour] = self.contour_vertices[chosen][:, None]
            weights[contour] = (1.0, 0.0, 0.0)
        return mean + self.model.displace(funcs, coeffs)

    def _slide_contour(self, coeffs: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Index into the candidate arrays of the outermost candidate of each contour row."""
        return self.contour.slide(self._cand_mean + self.model.displace(self._cand_funcs, coeffs), rotation)

    def project_landmarks(self, coefficients: np.ndarray, camera: Camera, slide_contour: bool = True) -> np.ndarray:
        """(68, 2) image positions of the landmarks of a shape seen by `camera`, the jaw points taken on
        the silhouette by the fit's own contour rule (as an annotator would mark them)."""
        mean, funcs = self._lm_mean.copy(), self._lm_funcs.copy()
        if slide_contour:
            contour = list(self.scheme.contour)
            chosen = self._slide_contour(coefficients, camera.rotation)
            mean[contour], funcs[contour] = self._cand_mean[chosen], self._cand_funcs[chosen]
        return camera.project(mean + self.model.displace(funcs, coefficients))[:, :2]

    def vertices_in_image(self, result: FitResult) -> np.ndarray:
        """(V, 3) float64: the fitted shape's vertices projected to the image (x, y, depth)."""
        return result.camera.project(self.model.shape(result.coefficients))


# ----------------------------------------------------------------------------------------------------
# the steps


def check_landmarks(landmarks: np.ndarray, n: int = cv.N_LANDMARKS) -> np.ndarray:
    """landmarks as a (68, 2) float64 array of finite (x, y) pixels within `LANDMARK_LIMIT_PX` of the
    image origin; ShapeError (shape, NaN/inf) or FitError (too far) otherwise. The boundary check of
    every entry point that takes landmarks as an array (the fit, `Labeller.label_crop`)."""
    x = np.asarray(landmarks, dtype=np.float64)
    if x.shape != (n, 2):
        raise ShapeError(f"landmarks must be ({n}, 2), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ShapeError("landmarks contain NaN or infinite values")
    far = float(np.abs(x).max())
    if far > cv.LANDMARK_LIMIT_PX:
        raise FitError(f"landmark coordinates must lie within {cv.LANDMARK_LIMIT_PX:g} pixels of the image origin, got {far:g}")
    return x


def _validate_landmarks(landmarks: np.ndarray, state: np.ndarray | None, config: FitConfig,
                        n: int = cv.N_LANDMARKS) -> tuple[np.ndarray, np.ndarray]:
    """(x (68, 2) with missing points at 0, trust (68,): 1 visible, `occluded_weight` occluded, 0 missing):
    `check_landmarks` on the placed points; ShapeError for bad states; FitError when fewer than
    `min_landmarks` are placed or they are degenerate (on one line or one point)."""
    if state is None:
        x, trust = check_landmarks(landmarks, n), np.ones(n)
    else:
        s = np.asarray(state)
        if s.shape != (n,) or not np.isin(s, (cv.MISSING, cv.VISIBLE, cv.OCCLUDED)).all():
            raise ShapeError(f"landmark states must be ({n},) values in 0, 1, 2, got shape {s.shape}")
        placed = s != cv.MISSING
        raw = np.array(landmarks, dtype=np.float64)
        if raw.shape != (n, 2):
            raise ShapeError(f"landmarks must be ({n}, 2), got {raw.shape}")
        if placed.sum() < config.min_landmarks:
            raise FitError(f"only {int(placed.sum())} of {n} landmarks are placed; a pose needs at least {config.min_landmarks}")
        raw[~placed] = 0.0
        x = check_landmarks(raw, n)
        trust = np.where(s == cv.OCCLUDED, config.occluded_weight, placed.astype(np.float64))
    centred = x[trust > 0] - x[trust > 0].mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    if sv[0] <= 1e-9 or sv[1] / sv[0] < 1e-3:
        raise FitError("the landmarks are degenerate (all on one line or one point); no 3D pose fits them")
    return x, trust


def _refine_perspective(x, mean, funcs, camera, coeffs, inv_var, model, config: FitConfig):
    """Refine pose and shape under a pinhole camera (scipy least squares), started from the orthographic fit."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    if config.image_size is not None:
        height, width = config.image_size
        focal = config.focal_length or float(max(height, width))
        principal = ((width - 1) / 2.0, (height - 1) / 2.0)
    else:
        focal = config.focal_length or 1000.0
        principal = tuple(x.mean(axis=0))
    # place the orthographic solution at the depth where focal / z equals its scale
    z0 = focal / camera.scale
    centre = mean.mean(axis=0) @ camera.rotation.T
    start_xy = (camera.translation[:2] + camera.scale * centre[:2] - np.asarray(principal)) * z0 / focal - centre[:2]
    t0 = np.array([start_xy[0], start_xy[1], z0 - centre[2]])
    shape = np.shape(coeffs)
    sqrt_w = np.sqrt(inv_var)
    std = model.coefficient_std

    def unpack(p):
        return Rotation.from_rotvec(p[:3]).as_matrix(), p[3:6], p[6:].reshape(shape)

    def residuals(p):
        rot, t, c = unpack(p)
        cam = Camera("perspective", rot, t, focal_length=focal, principal_point=principal)
        proj = cam.project(mean + model.displace(funcs, c))[:, :2]
        scale_mm = z0 / focal  # pixels -> mm at the face's depth
        data = ((proj - x) * scale_mm * sqrt_w[:, None]).ravel()
        return np.r_[data, c.ravel() / std]

    p0 = np.r_[Rotation.from_matrix(camera.rotation).as_rotvec(), t0, coeffs.ravel()]
    sol = least_squares(residuals, p0, method="trf", x_scale="jac", max_nfev=50)
    rot, t, c = unpack(sol.x)
    if not np.all(np.isfinite(sol.x)) or t[2] <= 0:
        raise FitError("the perspective refinement failed (the face ended behind the camera)")
    return Camera("perspective", rot, t, focal_length=focal, principal_point=principal), c
