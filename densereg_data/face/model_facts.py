"""A face model as the dense fit reads it: a truncated linear basis, looked up by U-V (template.h5).

The network side (`densereg_net.dense_fit`) cannot load a face model (that needs the heavy stack), so
the shards carry what a light fit of the model needs, in template.h5 (docs/FORMAT.md, "The face model
for a dense fit"):

- the top ``size`` directions of the model's prior covariance of the surface displacement
  (area-weighted over the template's vertices). A `MorphableModel` (vector basis: identity and
  expression) gives vector directions (A = 3 axes), restricted to the coefficients its fit may use (its
  ``constrain``: no rotation- or scale-like directions, which the camera owns). A `DeformableModel`
  (scalar functions, each moving x, y and z with independent coefficients of one prior) gives scalar
  directions (A = 1), each with 3 coefficients, one per axis, and the model's own constraint against
  rotation- and scale-like shapes as linear constraints on them (``basis_constraints``; it mixes the
  axes, so it cannot be folded into scalar directions). Each direction moves the face by
  1 mm RMS over its surface (per axis); ``basis_sd`` (K,) is its prior standard deviation in mm and
  ``basis_to_model`` the model's own coefficients of one unit of it;
- the basis on a U-V grid (``uv_to_basis`` (Gb, Gb, A, K), NaN off the face, the layout of
  ``uv_to_xyz``, whose mean shape it deforms), at the 68 landmarks (``landmark_mean``, ``landmark_basis``)
  and at the jaw-contour candidates of the landmark fit's contour rule (``contour_mean``,
  ``contour_basis``, ``contour_row``, ``contour_landmarks``, ``contour_outward``).

Dense-fitted expression weights are Gaussian MAP values: the landmark fit's blendshape bounds are not
applied (a linear basis over identity and expression together has no per-weight bounds).
"""

from __future__ import annotations

import functools

import numpy as np

from densereg_data.errors import TemplateError
from densereg_data.face.morphable import MorphableModel
from densereg_data.face.shape_model import DeformableModel

__all__ = ["DEFAULT_BASIS_GRID", "DEFAULT_BASIS_SIZE", "dense_model_arrays", "truncated_basis", "vertex_areas"]

#: U-V grid side of ``uv_to_basis`` and the most basis directions kept (template.h5 under ~8 MB: menpo3d
#: keeps all its 120 functions, ICT-FaceKit 128 of its 149 free directions, the SFM all its 65).
DEFAULT_BASIS_GRID = 64
DEFAULT_BASIS_SIZE = 128


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) float64 lumped vertex areas (a third of each adjacent triangle's area), mm^2."""
    p = vertices[faces]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    return np.bincount(faces.ravel(), weights=np.repeat(area / 3.0, 3), minlength=len(vertices))


def _gram(shape: MorphableModel, mass: np.ndarray) -> np.ndarray:
    """(C, C) float64: sum_v mass_v d_v(e_i) . d_v(e_j), the area-weighted inner products of the
    displacements of the model's unit coefficients."""
    b = shape.basis.reshape(-1, shape.n_coefficients).astype(np.float64)  # (3V, C)
    return b.T @ (np.repeat(mass, 3)[:, None] * b)


def _free_space(shape: MorphableModel) -> np.ndarray:
    """(C, F) float64: an orthonormal basis of the whitened coefficients the prior allows (the range of the
    model's ``constrain``, divided by the prior std): c = std * (Q @ y) with y ~ N(0, I) is its prior."""
    n, std = shape.n_coefficients, shape.coefficient_std
    cols = np.stack([np.asarray(shape.constrain(e), np.float64) for e in np.eye(n)], 1)
    u, sv, _ = np.linalg.svd(cols / std[:, None], full_matrices=False)
    return u[:, sv > 1e-9 * sv.max()]


def truncated_basis(shape: DeformableModel | MorphableModel, mass: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The top `size` directions of the prior's surface-displacement covariance (see the module).

    mass: (V,) vertex areas. Returns (directions, sd (K,) float64 mm, each direction's prior std, in
    decreasing order), K = min(size, the free dimension). directions: the model coefficients of one unit
    of each direction, which moves the surface by 1 mm RMS: (C, K) float64 for a `MorphableModel`; for a
    `DeformableModel` (n, K), function weights applied to each axis alike.
    """
    if isinstance(shape, DeformableModel):
        f = shape.functions.astype(np.float64)
        q = np.diag(shape.prior_std)  # (n, n): function weights = q @ y, y ~ N(0, I) per axis
        gram = f.T @ (mass[:, None] * f)
    else:
        q = shape.coefficient_std[:, None] * _free_space(shape)  # (C, F): c = q @ y, y ~ N(0, I)
        gram = _gram(shape, mass)
    cov = q.T @ gram @ q / mass.sum()  # mean squared displacement (per axis for functions), mm^2
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1][: min(size, len(values))]
    sd = np.sqrt(np.maximum(values[order], 0.0))
    if not np.all(sd > 1e-9 * sd[0]):
        raise TemplateError(f"model {shape.name}: fewer than {len(order)} directions move the surface")
    w = vectors[:, order]
    sign = np.sign(w[np.abs(w).argmax(axis=0), np.arange(w.shape[1])])  # a fixed sign: largest entry positive
    return q @ (w * sign) / sd, sd


def _basis_at(shape: DeformableModel | MorphableModel, local: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(m, A, K) float64 basis at m points from the model's `at` there (local): A = 1 for a
    `DeformableModel`'s scalar directions, 3 for a `MorphableModel`'s vector ones."""
    if isinstance(shape, DeformableModel):  # local (m, n) functions
        return (local @ directions)[:, None, :]
    return local @ directions  # local (m, 3, C)


def _constraints(shape: DeformableModel | MorphableModel, directions: np.ndarray) -> np.ndarray:
    """(S, K, 3) float64: a `DeformableModel`'s fit constraint (its similarity directions d, prior-orthogonal:
    sum_k d_k . c_k / prior_std_k^2 = 0) for coefficients b of the directions (c = directions @ b);
    (0, K, 3) for a `MorphableModel`, whose directions exclude those displacements already."""
    if not isinstance(shape, DeformableModel):
        return np.zeros((0, directions.shape[1], 3))
    d = shape.similarity_directions()  # (S, n, 3)
    return np.einsum("kj,skc->sjc", directions / shape.prior_std[:, None] ** 2, d)


@functools.lru_cache(maxsize=8)
def dense_model_arrays(model, grid: int = DEFAULT_BASIS_GRID, size: int = DEFAULT_BASIS_SIZE) -> dict[str, np.ndarray]:
    """template.h5's face-model arrays of a `FaceModel` (see the module; dtypes as docs/FORMAT.md)."""
    from densereg_data.face.pictures import uv_in_pixels
    from densereg_data.raster.api import interpolate, rasterize

    if grid < 2 or size < 1:
        raise TemplateError(f"basis grid must be at least 2 and size at least 1, got {grid}, {size}")
    t, shape, fitter = model.template, model.shape, model.fitter
    directions, sd = truncated_basis(shape, vertex_areas(t.vertices, t.faces), size)
    _, local = shape.at(np.arange(len(t.vertices)))
    per_vertex = _basis_at(shape, local, directions)  # (V, A, K)
    raster = rasterize(uv_in_pixels(t.uv, grid), t.faces, (grid, grid))
    uv_to_basis = interpolate(raster, t.faces, per_vertex.reshape(len(per_vertex), -1))
    uv_to_basis = uv_to_basis.reshape(grid, grid, *per_vertex.shape[1:])
    uv_to_basis[~raster.mask] = np.nan
    lm_mean, lm_local = shape.at(fitter.landmark_vertices, fitter.landmark_weights)
    c_mean, c_local = shape.at(fitter.contour_vertices)
    contour = fitter.contour
    return {
        "uv_to_basis": uv_to_basis.astype(np.float32),
        "basis_sd": sd,
        "basis_to_model": directions.T.copy(),
        "basis_constraints": _constraints(shape, directions),
        "landmark_mean": np.asarray(lm_mean, np.float64),
        "landmark_basis": _basis_at(shape, lm_local, directions).astype(np.float32),
        "contour_mean": np.asarray(c_mean, np.float64),
        "contour_basis": _basis_at(shape, c_local, directions).astype(np.float32),
        "contour_row": contour.row.astype(np.int64),
        "contour_landmarks": contour.landmarks.astype(np.int64),
        "contour_outward": contour.outward.astype(np.float64),
    }
