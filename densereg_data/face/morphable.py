"""A statistical 3D morphable model: mean + identity basis + expression basis, each with a Gaussian prior.

    shape(c) = mean + sum_k basis[:, :, k] c[k]          c = (identity (Ki,), expression (Ke,))

The identity basis is a model's principal components scaled by their standard deviations, so identity
coefficients are unit-variance (eos's and ICT-FaceKit's convention: a coefficient of 1 is one standard
deviation); the expression basis is its blendshapes (displacements from the neutral face), whose
weights have a zero-mean Gaussian prior of `expression_std` and are kept within `expression_bounds`
(blendshape weights are not negative). This is the vector-basis counterpart of
`densereg_data.face.shape_model.DeformableModel`; the fit talks to both through the same methods:

- ``at(vertices, weights)`` -> mean (m, 3) and the local basis (m, 3, K) at surface points;
- ``displace(local, c)`` -> (m, 3) displacements; ``map_coefficients(...)`` -> the MAP coefficients given
  a scaled-orthographic camera (closed form: identity and expression jointly, then the expression weights
  clipped to their bounds and the rest solved again with those held, as eos alternates).

Convention: units and frames
    mean (V, 3) float64 and basis (V, 3, K) float32 in mm, template frame (`face.template.FRAME`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from densereg_data.errors import FitError, ShapeError
from densereg_data.face.template import barycentric


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """mean (V, 3) float64 mm; basis (V, 3, Ki + Ke) float32 mm per unit coefficient; prior_std (Ki + Ke,)
    float64; n_identity Ki; expression_names (Ke,) the blendshapes' names; expression_bounds (lo, hi)
    for every expression weight."""

    name: str
    mean: np.ndarray
    basis: np.ndarray
    prior_std: np.ndarray
    n_identity: int
    expression_names: tuple[str, ...] = ()
    expression_bounds: tuple[float, float] = (0.0, np.inf)

    def __post_init__(self) -> None:
        v, k = len(self.mean), self.basis.shape[-1]
        if self.mean.shape != (v, 3) or self.basis.shape != (v, 3, k) or self.prior_std.shape != (k,):
            raise ShapeError(f"model {self.name}: mean must be (V, 3), basis (V, 3, K) and prior_std (K,); got "
                             f"{self.mean.shape}, {self.basis.shape}, {self.prior_std.shape}")
        if not 0 <= self.n_identity <= k or len(self.expression_names) != k - self.n_identity:
            raise ShapeError(f"model {self.name}: {self.n_identity} identity + {len(self.expression_names)} expression "
                             f"components do not make the basis's {k}")
        if not np.all(self.prior_std > 0):
            raise ShapeError(f"model {self.name}: prior_std must be positive")
        lo, hi = self.expression_bounds
        if not lo < hi:
            raise ShapeError(f"model {self.name}: expression bounds must satisfy lo < hi, got {self.expression_bounds}")
        for a in (self.mean, self.basis, self.prior_std):
            a.setflags(write=False)

    @property
    def n_coefficients(self) -> int:
        """Number of scalar coefficients, identity and expression."""
        return self.basis.shape[-1]

    @property
    def n_expression(self) -> int:
        return self.n_coefficients - self.n_identity

    @property
    def coefficient_std(self) -> np.ndarray:
        """(K,) the prior std of each coefficient, in the order of ``c.ravel()``."""
        return self.prior_std

    def zero(self) -> np.ndarray:
        """(K,) coefficients of the mean (neutral) shape."""
        return np.zeros(self.n_coefficients)

    def split(self, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(identity (Ki,), expression (Ke,)) float64 of coefficients (K,)."""
        c = np.asarray(coefficients, dtype=np.float64).ravel()
        return c[: self.n_identity], c[self.n_identity :]

    @functools.cached_property
    def _flat_basis(self) -> np.ndarray:
        """(3V, K) float32, C-ordered: the layout in which the dense product streams memory best."""
        return np.ascontiguousarray(self.basis.reshape(-1, self.n_coefficients))

    def shape(self, coefficients: np.ndarray) -> np.ndarray:
        """(K,) coefficients -> (V, 3) float64 vertices."""
        c = np.asarray(coefficients, dtype=np.float32).reshape(self.n_coefficients)
        return (self._flat_basis @ c).reshape(-1, 3) + self.mean

    def at(self, vertices: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean (m, 3) and basis (m, 3, K) float64 at surface points: `vertices` (m,) indices, or (m, 3)
        with barycentric `weights` (m, 3)."""
        if weights is None:
            return self.mean[vertices], self.basis[vertices].astype(np.float64)
        return barycentric(self.mean, vertices, weights), barycentric(self.basis, vertices, weights)

    @staticmethod
    def displace(local: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
        """(m, 3) displacements of the local basis (m, 3, K) by coefficients (K,)."""
        return local @ coefficients

    @functools.cached_property
    def _from_free(self) -> np.ndarray:
        """(K, K - r) the coefficients of the free parameters z (standard normal under the prior): c = T z.

        The identity part is whitened and restricted to the prior-orthogonal complement of the r <= 4
        directions that best imitate a small rotation about x, y, z or a scaling of the mean (a model
        built from scans that were not perfectly aligned has such components, and the camera owns pose
        and scale); the expression part is only scaled by its prior std.
        """
        ki = self.n_identity
        whitened = self._flat_basis[:, :ki].astype(np.float64) * self.prior_std[:ki]  # (3V, Ki)
        p = self.mean - self.mean.mean(axis=0)
        x, y, z = p.T
        zero = np.zeros_like(x)
        fields = np.stack([np.c_[zero, -z, y], np.c_[z, zero, -x], np.c_[-y, x, zero], p]).reshape(4, -1).T  # (3V, 4)
        directions = np.linalg.lstsq(whitened, fields, rcond=None)[0] if ki else np.zeros((0, 4))  # (Ki, 4)
        u, sv, _ = np.linalg.svd(directions, full_matrices=True)
        rank = int((sv > 1e-9 * max(sv.max(initial=0.0), 1e-300)).sum())
        free = np.zeros((self.n_coefficients, self.n_coefficients - rank))
        free[:ki, : ki - rank] = u[:, rank:] * self.prior_std[:ki, None]
        free[ki:, ki - rank :] = np.diag(self.prior_std[ki:])
        return free

    def constrain(self, coefficients: np.ndarray) -> np.ndarray:
        """(K,) coefficients with their rotation- and scale-like identity part removed (`_from_free`)."""
        t = self._from_free
        return t @ np.linalg.lstsq(t, np.asarray(coefficients, dtype=np.float64), rcond=None)[0]

    def map_coefficients(self, x: np.ndarray, mean: np.ndarray, local: np.ndarray, scale: float, rotation: np.ndarray,
                         shift: np.ndarray, inv_var: np.ndarray) -> np.ndarray:
        """MAP coefficients (K,) given a scaled-orthographic camera.

        x (m, 2) px; mean (m, 3) mm and local (m, 3, K) the model at the matched surface points; scale,
        rotation (3, 3), shift (2,) the camera; inv_var (m,) 1 / sigma^2 per point in mm^-2. Minimises
        sum_m inv_var_m |R2 (mean_m + local_m c) + (shift - x_m) / scale|^2 + |c / prior_std|^2 over the
        coefficients without rotation or scaling (`_from_free`), the expression weights within their bounds.
        """
        t = self._from_free
        residual = (x - shift) / scale - mean @ rotation[:2].T  # (m, 2) mm
        a = np.einsum("ij,mjk->mik", rotation[:2], local).reshape(-1, self.n_coefficients) @ t  # (2m, K - r)
        w = np.repeat(inv_var, 2)
        normal = a.T @ (a * w[:, None])
        rhs = a.T @ (w * residual.ravel())
        eye = np.eye(len(rhs))
        z = _solve(normal + eye, rhs)
        lo, hi = self.expression_bounds
        std_e = self.prior_std[self.n_identity :]
        expr = slice(t.shape[1] - self.n_expression, None)  # the expression part of z: c_e = std_e * z_e
        for _ in range(3):  # clip the blendshape weights, hold the clipped ones, solve for the rest
            held = np.zeros(len(z), bool)
            held[expr] = (z[expr] * std_e <= lo) | (z[expr] * std_e >= hi)
            if not held.any():
                break
            z[expr] = np.clip(z[expr] * std_e, lo, hi) / std_e
            free = ~held
            sub = normal[np.ix_(free, free)] + eye[np.ix_(free, free)]
            z[free] = _solve(sub, rhs[free] - normal[np.ix_(free, held)] @ z[held])
        c = t @ z
        c[self.n_identity :] = np.clip(c[self.n_identity :], lo, hi)
        return c

    def sample(self, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """(K,) coefficients drawn from the prior (times `scale`) without rotation or scaling (`_from_free`),
        expression weights folded into their bounds."""
        t = self._from_free
        c = t @ (rng.standard_normal(t.shape[1]) * scale)
        lo, hi = self.expression_bounds
        c[self.n_identity :] = np.clip(np.abs(c[self.n_identity :]) if lo >= 0 else c[self.n_identity :], lo, hi)
        return c


def _solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve the symmetric positive-definite system (Cholesky); FitError if it is not."""
    from scipy.linalg import cho_factor, cho_solve

    try:
        return cho_solve(cho_factor(matrix, check_finite=False), rhs, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise FitError(f"shape solve failed: {exc}") from exc
