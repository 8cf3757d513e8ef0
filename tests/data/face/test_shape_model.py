"""The deformable model: interface, template-derived Laplace-Beltrami basis, prior."""

from __future__ import annotations

import numpy as np
import pytest

from densereg_data.errors import ShapeError
from densereg_data.errors import TemplateError
from densereg_data.face.shape_model import DeformableModel, cotangent_laplacian, laplace_beltrami_model


@pytest.fixture(scope="module")
def model(face_model):
    return face_model.shape


def test_functions_are_mass_orthonormal(model, face_model):
    t = face_model.template
    _, mass = cotangent_laplacian(t.vertices, t.faces)
    f = model.functions.astype(np.float64)
    gram = f.T @ (mass[:, None] * f)
    assert np.allclose(gram, np.eye(model.n_functions), atol=1e-3)


def test_prior_decays_with_frequency(model):
    assert np.all(np.diff(model.prior_std) <= 1e-9)


def test_samples_are_realistic_and_rigid_free(model):
    rng = np.random.default_rng(0)
    c = model.sample(rng)
    disp = model.shape(c) - model.mean
    rms = np.sqrt((disp**2).sum(axis=1).mean())
    assert 1.0 < rms < 8.0, f"a face from the prior deforms by {rms:.1f} mm RMS"
    # no rotation or scaling hidden in the shape: projecting again changes nothing
    assert np.allclose(model.constrain(c), c)
    d = model.similarity_directions()
    assert np.abs(np.einsum("knc,nc->k", d / model.prior_std[None, :, None] ** 2, c)).max() < 1e-6


def test_lips_can_part(model, face_model):
    """The basis follows the mesh's mouth opening: upper and lower inner lip can move apart."""
    t = face_model.template
    mean, funcs = model.at(*t.landmark_vertex_weights)
    # least-norm coefficients that move the inner upper lip (62) up by 3 mm and the lower (66) down by 3 mm
    target = np.zeros((68, 3))
    target[62, 1], target[66, 1] = 3.0, -3.0
    c, *_ = np.linalg.lstsq(funcs, target, rcond=None)
    moved = mean + funcs @ c
    gap = (moved[62, 1] - moved[66, 1]) - (mean[62, 1] - mean[66, 1])
    assert gap == pytest.approx(6.0, abs=0.5)


def test_model_validates_shapes():
    with pytest.raises(ShapeError, match="prior_std"):
        DeformableModel("bad", np.zeros((4, 3)), np.zeros((4, 2), np.float32), np.ones(3))


def test_unknown_basis_is_refused(face_model):
    spec = dict(face_model.template.definition["model"], basis="pca")
    with pytest.raises(TemplateError, match="unknown model basis 'pca'; valid: laplace-beltrami"):
        laplace_beltrami_model(face_model.template, spec)


def test_laplace_beltrami_basis_is_the_same_on_every_derivation():
    """A fixed ARPACK start and a fixed sign per function: the basis (and so every shard's coefficients)
    does not depend on the run or the machine. The largest entry of each function is positive."""
    from types import SimpleNamespace

    from densereg_data.face.shape_model import _lb_arrays

    n = 30
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    vertices = np.c_[x.ravel(), y.ravel(), 0.1 * np.sin(x.ravel() / 4) * np.cos(y.ravel() / 5)]
    quad = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
    faces = np.r_[np.c_[quad, quad + 1, quad + n], np.c_[quad + 1, quad + n + 1, quad + n]].astype(np.int64)
    mesh = SimpleNamespace(vertices=vertices, faces=faces, id="grid")
    a, b = _lb_arrays(mesh, 12), _lb_arrays(mesh, 12)
    assert np.array_equal(a["functions"], b["functions"])
    f = a["functions"]
    assert (f[np.abs(f).argmax(axis=0), np.arange(f.shape[1])] > 0).all()
