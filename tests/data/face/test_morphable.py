"""MorphableModel: the vector-basis model's algebra and its closed-form MAP solve, on small random models."""

from __future__ import annotations

import numpy as np
import pytest

from densereg_data.errors import ShapeError
from densereg_data.face.morphable import MorphableModel
from densereg_data.geometry.camera import rotation_from_pose


def _model(rng, v=60, ki=8, ke=3, std=1.0, expr_std=0.5, bounds=(0.0, 1.0)) -> MorphableModel:
    return MorphableModel(
        name="toy",
        mean=rng.normal(scale=30.0, size=(v, 3)),
        basis=rng.normal(scale=2.0, size=(v, 3, ki + ke)).astype(np.float32),
        prior_std=np.r_[np.full(ki, std), np.full(ke, expr_std)],
        n_identity=ki,
        expression_names=tuple(f"e{i}" for i in range(ke)),
        expression_bounds=bounds,
    )


def _project(model, c, rotation, scale=2.0, shift=(100.0, 80.0)):
    points = model.shape(c)
    return scale * points @ rotation[:2].T + np.asarray(shift), scale, np.asarray(shift)


def test_shape_at_and_displace_agree():
    rng = np.random.default_rng(0)
    m = _model(rng)
    c = rng.normal(size=m.n_coefficients)
    verts = rng.integers(0, 60, size=(5, 3))
    w = rng.dirichlet(np.ones(3), size=5)
    mean, local = m.at(verts, w)
    expected = np.einsum("mk,mkc->mc", w, m.shape(c)[verts])
    assert np.allclose(mean + m.displace(local, c), expected, atol=1e-4)
    mean1, local1 = m.at(verts[:, 0])
    assert np.allclose(mean1 + m.displace(local1, c), m.shape(c)[verts[:, 0]], atol=1e-4)
    identity, expression = m.split(c)
    assert identity.shape == (8,) and expression.shape == (3,) and np.array_equal(np.r_[identity, expression], c)


def test_map_recovers_coefficients_from_exact_points():
    """With a weak prior and more equations than unknowns, the MAP solve returns the truth."""
    rng = np.random.default_rng(1)
    m = _model(rng, std=1e3, expr_std=1e3, bounds=(-np.inf, np.inf))
    truth = m.constrain(rng.normal(size=m.n_coefficients))  # the model never imitates a rotation or scaling
    rotation = rotation_from_pose(20.0, -10.0, 5.0)
    x, scale, shift = _project(m, truth, rotation)
    got = m.map_coefficients(x, m.mean, m.basis.astype(np.float64), scale, rotation, shift, np.ones(len(x)))
    assert np.allclose(got, truth, atol=1e-3)


def test_map_keeps_expression_weights_within_bounds():
    rng = np.random.default_rng(2)
    m = _model(rng, std=1e3, expr_std=1e3, bounds=(0.0, 1.0))
    truth = np.r_[m.constrain(rng.normal(size=11))[:8], [-0.6, 0.4, 1.7]]  # one below, one inside, one above the bounds
    rotation = rotation_from_pose(0.0, 0.0, 0.0)
    x, scale, shift = _project(m, truth, rotation)
    got = m.map_coefficients(x, m.mean, m.basis.astype(np.float64), scale, rotation, shift, np.ones(len(x)))
    expr = m.split(got)[1]
    assert expr.min() >= 0.0 and expr.max() <= 1.0
    assert expr[0] == 0.0 and expr[2] == 1.0 and 0.0 < expr[1] < 1.0
    unbounded = _model(np.random.default_rng(2), std=1e3, expr_std=1e3, bounds=(-np.inf, np.inf))
    free = unbounded.map_coefficients(x, m.mean, m.basis.astype(np.float64), scale, rotation, shift, np.ones(len(x)))
    assert np.allclose(free, truth, atol=1e-3)  # the same data: only the bounds made the difference


def test_the_model_cannot_imitate_a_rotation_or_a_scaling():
    """A rotation of the mean about y, or a scaling, is not in the span the fit and the prior use."""
    rng = np.random.default_rng(6)
    m = _model(rng, ki=40, ke=2, v=30)
    p = m.mean - m.mean.mean(axis=0)
    for field in (np.c_[p[:, 2], 0 * p[:, 0], -p[:, 0]], p):  # rotation about y, scaling
        c_best = np.linalg.lstsq(m.basis[:, :, :40].reshape(-1, 40).astype(np.float64), field.ravel(), rcond=None)[0]
        c = m.constrain(np.r_[c_best, 0.0, 0.0])
        residual = field.ravel() - m.basis.reshape(-1, 42).astype(np.float64) @ c
        assert np.linalg.norm(residual) > 0.999 * np.linalg.norm(field)  # nothing of the field is left in the span
        whitened = m.basis[:, :, :40].reshape(-1, 40).astype(np.float64) * m.prior_std[:40]
        direction = np.linalg.lstsq(whitened, field.ravel(), rcond=None)[0]
        w = m.sample(np.random.default_rng(1))[:40] / m.prior_std[:40]  # samples are prior-orthogonal to it
        assert abs(w @ direction) < 1e-8 * np.linalg.norm(w) * np.linalg.norm(direction)


def test_prior_pulls_towards_the_mean():
    rng = np.random.default_rng(3)
    m = _model(rng, std=1e-3, expr_std=1e-3, bounds=(-np.inf, np.inf))
    truth = rng.normal(size=m.n_coefficients)
    rotation = rotation_from_pose(10.0, 0.0, 0.0)
    x, scale, shift = _project(m, truth, rotation)
    got = m.map_coefficients(x, m.mean, m.basis.astype(np.float64), scale, rotation, shift, np.ones(len(x)))
    assert np.abs(got).max() < 0.05


def test_samples_follow_the_prior_and_bounds():
    rng = np.random.default_rng(4)
    m = _model(rng, ki=200, ke=300, std=1.0, expr_std=0.5, bounds=(0.0, 1.0))
    c = m.sample(np.random.default_rng(0))
    identity, expression = m.split(c)
    assert 0.85 < identity.std() < 1.15 and abs(identity.mean()) < 0.2
    assert expression.min() >= 0.0 and expression.max() <= 1.0 and 0.3 < expression.mean() < 0.5
    assert np.array_equal(m.sample(np.random.default_rng(0), scale=0.0), m.zero())


@pytest.mark.parametrize("change, match", [
    ({"prior_std": np.ones(5)}, "prior_std"),
    ({"n_identity": 9}, "components do not make"),
    ({"expression_bounds": (1.0, 0.0)}, "lo < hi"),
    ({"prior_std": np.r_[np.ones(10), 0.0]}, "positive"),
])
def test_inconsistent_models_are_refused(change, match):
    rng = np.random.default_rng(5)
    base = _model(rng)
    fields = {"name": "toy", "mean": base.mean, "basis": base.basis, "prior_std": base.prior_std, "n_identity": 8,
              "expression_names": base.expression_names, "expression_bounds": (0.0, 1.0)} | change
    with pytest.raises(ShapeError, match=match):
        MorphableModel(**fields)
