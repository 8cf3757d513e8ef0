"""The deformable model: mean shape + linear basis + Gaussian prior.

`DeformableModel` is the one interface the fit uses, whatever the source:

    shape(c) = mean + sum_k functions[:, k] (outer) c[k]         c: (n, 3), c[k] ~ N(0, prior_std[k]^2 I3)

that is, every basis function is a scalar field on the template's vertices that displaces them along
x, y and z with independent, equal-variance coefficients (an isotropic Gaussian-process prior). The
template-derived source, `laplace_beltrami_model`, needs no training data: its functions are the lowest
Laplace-Beltrami eigenfunctions of the template mesh (cotangent weights, lumped mass), so they follow
the mesh's topology: the mouth opening separates the lips, which can part. Their prior standard
deviation decays with frequency, ``rms_displacement_mm * (lambda_1 / lambda_k) ** decay``.

A statistical 3DMM with a vector basis plugs in as a model whose functions are its principal
components expressed per axis (n = 3 x components) and whose prior_std are the component deviations.

Convention: units and frames
    mean (V, 3) float64 and displacements in the template's units (mm), template frame.
    functions (V, n) float32, M-orthonormal (sum_v area_v f_k(v) f_j(v) = delta_kj), so a
    coefficient c moves the surface by about c / sqrt(area) mm RMS.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from densereg_data.errors import FitError, ShapeError, TemplateError
from densereg_data.face.cache import cached_arrays
from densereg_data.face.template import Template, barycentric

log = logging.getLogger(__name__)

MODEL_DERIVATION_VERSION = "lb-model-2"


@dataclass(frozen=True, eq=False)
class DeformableModel:
    """mean (V, 3) float64 mm; functions (V, n) float32; prior_std (n,) float64 (coefficient units)."""

    name: str
    mean: np.ndarray
    functions: np.ndarray
    prior_std: np.ndarray
    #: (n, 3): the functions' coefficients of the centred coordinate fields X, Y, Z (M-projection); they
    #: span the displacements that imitate a small rotation or a scaling, which the model must not make
    #: (the camera owns pose and scale). None: no such constraint.
    coordinate_coefficients: np.ndarray | None = None

    def __post_init__(self) -> None:
        v, n = self.functions.shape
        if self.mean.shape != (v, 3) or self.prior_std.shape != (n,):
            raise ShapeError(
                f"model {self.name}: mean must be (V, 3) and prior_std (n,) with functions (V, n) = {self.functions.shape}; "
                f"got mean {self.mean.shape}, prior_std {self.prior_std.shape}"
            )
        if not np.all(self.prior_std > 0):
            raise ShapeError(f"model {self.name}: prior_std must be positive")
        for a in (self.mean, self.functions, self.prior_std):
            a.setflags(write=False)

    @property
    def n_functions(self) -> int:
        return self.functions.shape[1]

    @property
    def n_coefficients(self) -> int:
        """Number of scalar coefficients (n functions x 3 axes)."""
        return 3 * self.n_functions

    #: the fit's and the shards' view: every coefficient is identity, there is no expression basis
    @property
    def n_identity(self) -> int:
        return self.n_coefficients

    n_expression = 0
    expression_names: tuple[str, ...] = ()

    @property
    def coefficient_std(self) -> np.ndarray:
        """(3n,) the prior std of each coefficient, in the order of ``c.ravel()``."""
        return np.repeat(self.prior_std, 3)

    def zero(self) -> np.ndarray:
        """(n, 3) coefficients of the mean shape."""
        return np.zeros((self.n_functions, 3))

    def split(self, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(identity (3n,), expression (0,)) float64 of (n, 3) coefficients."""
        return np.asarray(coefficients, dtype=np.float64).ravel(), np.zeros(0)

    @functools.cached_property
    def _functions_t(self) -> np.ndarray:
        """(n, V) float32, C-ordered: the layout in which the dense product streams memory best."""
        return np.ascontiguousarray(self.functions.T)

    def shape(self, coefficients: np.ndarray) -> np.ndarray:
        """(n, 3) coefficients -> (V, 3) float64 vertices."""
        c = np.asarray(coefficients, dtype=np.float32).reshape(self.n_functions, 3)
        return (c.T @ self._functions_t).T + self.mean

    def at(self, vertices: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean (m, 3) and functions (m, n) at surface points.

        vertices: (m,) vertex indices, or (m, 3) with `weights` (m, 3) barycentric weights.
        """
        if weights is None:
            return self.mean[vertices], self.functions[vertices].astype(np.float64)
        return barycentric(self.mean, vertices, weights), barycentric(self.functions, vertices, weights)

    @staticmethod
    def displace(local: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
        """(m, 3) displacements of the functions at m points (m, n) by coefficients (n, 3)."""
        return local @ coefficients

    def map_coefficients(self, x: np.ndarray, mean: np.ndarray, local: np.ndarray, scale: float, rotation: np.ndarray,
                         shift: np.ndarray, inv_var: np.ndarray) -> np.ndarray:
        """MAP coefficients (n, 3) given a scaled-orthographic camera (`MorphableModel.map_coefficients`'s
        arguments; local (m, n) the functions at the matched points).

        In the camera-aligned frame (c' = c Q^T) the image axes see only c'_0 and c'_1 and share one n x n
        normal matrix; depth c'_2 has only its prior. The similarity directions (rotations, scaling), given
        in the template frame (k, n, 3), are constrained to zero by Lagrange multipliers (a k x k system).
        """
        from scipy.linalg import cho_factor, cho_solve

        prior_std = self.prior_std
        prior_inv_var = 1.0 / prior_std**2
        residual = (x - shift - scale * (mean @ rotation[:2].T)) / scale  # (m, 2) in mm
        fw = local * inv_var[:, None]
        try:
            chol = cho_factor(local.T @ fw + np.diag(prior_inv_var), check_finite=False)
        except np.linalg.LinAlgError as exc:
            raise FitError(f"shape solve failed: {exc}") from exc

        def solve(rhs):  # H^-1 for (n, 3, m) right-hand sides: the shared block on axes 0, 1; the prior on depth
            out = np.empty_like(rhs)
            out[:, :2] = cho_solve(chol, rhs[:, :2].reshape(len(rhs), -1), check_finite=False).reshape(rhs[:, :2].shape)
            out[:, 2] = rhs[:, 2] * prior_std[:, None] ** 2
            return out

        g = np.zeros((len(local.T), 3, 1))
        g[:, :2, 0] = fw.T @ residual
        c = solve(g)[..., 0]
        directions = self._directions
        if len(directions):
            # constraint rows in the camera frame, in the prior metric: sum_k d_k . c_k / sigma_k^2 = 0
            a = (directions @ rotation.T) * prior_inv_var[None, :, None]  # (k, n, 3)
            h_inv_at = solve(a.transpose(1, 2, 0))  # (n, 3, k)
            schur = np.einsum("knc,ncj->kj", a, h_inv_at)
            lam = np.linalg.solve(schur, np.einsum("knc,nc->k", a, c))
            c = c - h_inv_at @ lam
        return c @ rotation

    @functools.cached_property
    def _directions(self) -> np.ndarray:
        return self.similarity_directions()

    def similarity_directions(self, rotation: np.ndarray | None = None) -> np.ndarray:
        """(4, n, 3) coefficient directions of the infinitesimal rotations about x, y, z and of scaling,
        in the template frame, or in the frame of `rotation` (3, 3) (coefficients c -> c @ rotation.T)."""
        if self.coordinate_coefficients is None:
            return np.zeros((0, self.n_functions, 3))
        a = self.coordinate_coefficients if rotation is None else self.coordinate_coefficients @ rotation.T
        ax, ay, az = a[:, 0], a[:, 1], a[:, 2]
        zero = np.zeros_like(ax)
        return np.stack(
            [
                np.stack([zero, -az, ay], axis=1),  # rotation about x: (0, -z, y)
                np.stack([az, zero, -ax], axis=1),  # rotation about y: (z, 0, -x)
                np.stack([-ay, ax, zero], axis=1),  # rotation about z: (-y, x, 0)
                np.stack([ax, ay, az], axis=1),  # scaling: (x, y, z)
            ]
        )

    def constrain(self, coefficients: np.ndarray) -> np.ndarray:
        """Project (n, 3) coefficients onto the prior-orthogonal complement of the similarity directions."""
        d = self.similarity_directions()
        if len(d) == 0:
            return coefficients
        sd = self.prior_std[:, None]
        basis, _ = np.linalg.qr((d / sd).reshape(len(d), -1).T)  # whitened, orthonormal (3n, 4)
        w = (coefficients / sd).ravel()
        return (w - basis @ (basis.T @ w)).reshape(coefficients.shape) * sd

    def sample(self, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """(n, 3) coefficients drawn from the prior (times `scale`), without rotation or scaling."""
        return self.constrain(rng.standard_normal((self.n_functions, 3)) * (scale * self.prior_std)[:, None])


def cotangent_laplacian(vertices: np.ndarray, faces: np.ndarray):
    """Cotangent stiffness matrix L (V, V) (positive semi-definite) and lumped mass (V,) of a mesh."""
    from scipy import sparse

    n = len(vertices)
    stiff_i, stiff_j, stiff_w = [], [], []
    p = vertices[faces]  # (F, 3, 3)
    for k in range(3):
        a, b, c = p[:, k], p[:, (k + 1) % 3], p[:, (k + 2) % 3]
        u, v = b - a, c - a  # the angle at corner a faces edge (b, c)
        cot = np.einsum("ij,ij->i", u, v) / np.maximum(np.linalg.norm(np.cross(u, v), axis=1), 1e-12)
        stiff_i.append(faces[:, (k + 1) % 3])
        stiff_j.append(faces[:, (k + 2) % 3])
        stiff_w.append(0.5 * cot)
    i, j, w = np.concatenate(stiff_i), np.concatenate(stiff_j), np.concatenate(stiff_w)
    off = sparse.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    lap = sparse.diags(np.asarray(off.sum(axis=1)).ravel()) - off
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    mass = np.bincount(faces.ravel(), weights=np.repeat(area / 3.0, 3), minlength=n)
    return lap.tocsc(), mass


def _lb_arrays(template: Template, n_functions: int) -> dict[str, np.ndarray]:
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    log.info("computing %d Laplace-Beltrami eigenfunctions of template %s; cached afterwards", n_functions, template.id)
    lap, mass = cotangent_laplacian(template.vertices, template.faces)
    # a fixed start vector and a fixed sign per function: the same basis (and so the same coefficients
    # in every shard) on every machine and every derivation, not ARPACK's random start's
    v0 = np.random.default_rng(0).standard_normal(len(mass))
    values, vectors = eigsh(lap, k=n_functions + 1, M=sparse.diags(mass).tocsc(), sigma=-1e-3, which="LM", v0=v0)
    order = np.argsort(values)
    values, vectors = values[order], vectors[:, order]
    peak = np.abs(vectors).argmax(axis=0)
    vectors = vectors * np.sign(vectors[peak, np.arange(vectors.shape[1])])  # largest entry positive
    # drop the constant function: a translation, which the camera already has
    return {"eigenvalues": values[1:], "functions": vectors[:, 1:].astype(np.float32), "mass": mass}


def laplace_beltrami_model(template: Template, spec: dict) -> DeformableModel:
    """The template-derived model of a definition's "model" section `spec`: the lowest
    ``spec["n_functions"]`` Laplace-Beltrami eigenfunctions of `template`'s mesh (cached on disk under
    the template's hash), prior ``rms_displacement_mm * (lambda_1 / lambda_k) ** decay`` (see the module)."""
    if spec.get("basis") != "laplace-beltrami":
        raise TemplateError(f"template {template.id}: unknown model basis {spec.get('basis')!r}; valid: laplace-beltrami")
    n = int(spec["n_functions"])
    key = hashlib.sha256(f"{MODEL_DERIVATION_VERSION}:{template.hash}:{n}".encode()).hexdigest()
    arrays = cached_arrays(f"model-{template.id}", key, lambda: _lb_arrays(template, n))
    values = arrays["eigenvalues"]
    area = float(arrays["mass"].sum())
    rms = float(spec["rms_displacement_mm"]) * (values[0] / values) ** float(spec["decay"])
    mass = arrays["mass"]
    centred = template.vertices - (mass @ template.vertices) / area
    return DeformableModel(
        name=f"{template.id}/laplace-beltrami-{n}",
        mean=template.vertices,
        functions=arrays["functions"],
        prior_std=rms * np.sqrt(area),
        coordinate_coefficients=arrays["functions"].T.astype(np.float64) @ (mass[:, None] * centred),
    )
