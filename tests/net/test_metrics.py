import numpy as np
import pytest
import torch

from net_fakes import synthetic_sample, template_landmark_uv, write_template
from densereg_net.metrics import Accumulator, auc, dense_error, landmarks_from_uv, lookup_xyz, nme
from densereg_net.shards import load_template
from net_fakes import one_thread, shards  # noqa: F401  (fixtures)


def _sample(size=64, seed=0):
    """A synthetic sample with float64 U-V (no float16 rounding): u, v exactly linear in x, y."""
    s = synthetic_sample(size, np.random.default_rng(seed))
    return s


def _exact_uv(size=64, seed=0):
    rng = np.random.default_rng(seed)
    S = size
    cx, cy = (S - 1) / 2 + rng.uniform(-2, 2), (S - 1) / 2 + rng.uniform(-2, 2)
    a, b = S * 0.33, S * 0.4
    rows, cols = np.mgrid[0:S, 0:S].astype(np.float64)
    u, v = (cols - cx) / (2 * a) + 0.5, 0.5 - (rows - cy) / (2 * b)
    fg = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    t = template_landmark_uv()
    lm = np.stack([cx + (t[:, 0] - 0.5) * 2 * a, cy - (t[:, 1] - 0.5) * 2 * b], -1)
    uv = np.stack([u, v]) * fg
    return torch.from_numpy(uv).float(), torch.from_numpy(fg), lm, 2 * a


@pytest.fixture
def template(tmp_path):
    write_template(tmp_path / "template.h5")
    return load_template(tmp_path / "template.h5")


def test_landmarks_from_perfect_uv_are_exact():
    uv, fg, lm, _ = _exact_uv()
    got = landmarks_from_uv(uv, fg, torch.from_numpy(template_landmark_uv())).numpy()
    assert np.abs(got - lm).max() < 1e-3
    assert nme(got, lm) < 1e-4


def test_landmarks_follow_a_shifted_prediction():
    uv, fg, lm, _ = _exact_uv()
    shifted_uv, shifted_fg = torch.roll(uv, 3, dims=2), torch.roll(fg, 3, dims=1)  # 3 px to the right
    got = landmarks_from_uv(shifted_uv, shifted_fg, torch.from_numpy(template_landmark_uv())).numpy()
    assert np.allclose(got, lm + [3, 0], atol=1e-3)
    d = np.linalg.norm(lm[36] - lm[45])
    assert nme(got, lm) == pytest.approx(3 / d, rel=1e-3)


def test_no_foreground_gives_the_crop_centre():
    got = landmarks_from_uv(torch.zeros(2, 16, 16), torch.zeros(16, 16, dtype=torch.bool), torch.rand(68, 2))
    assert torch.allclose(got, torch.full((68, 2), 7.5, dtype=torch.float64))


def test_nme_auc_failure_on_known_values():
    true = np.zeros((68, 2))
    true[36], true[45] = [0, 0], [100, 0]
    assert nme(true, true) == 0
    assert nme(true + [4, 3], true) == pytest.approx(0.05)
    assert auc([0.0, 0.0], 0.08) == pytest.approx(1.0)
    assert auc([0.04] * 3, 0.08) == pytest.approx(0.5, abs=1e-3)
    assert auc([0.2], 0.08) == 0.0


def test_lookup_xyz_is_bilinear_on_the_grid(template):
    grid = torch.from_numpy(template.uv_to_xyz_filled)
    uv = torch.tensor([[0.5, 0.5], [0.25, 0.75], [0.3, 0.41]])
    assert torch.allclose(lookup_xyz(uv, grid)[:, :2], uv, atol=1e-6)  # xyz = (u, v, 0) in the fixture
    # row 0 is v = 1: the grid's [row, col] convention
    G = grid.shape[0]
    assert G == 33 and np.allclose(template.uv_to_xyz[8, 16, :2], [0.5, 0.75])
    assert np.isnan(template.uv_to_xyz[0, 0]).all() and np.isfinite(template.uv_to_xyz_filled).all()


def test_dense_error_zero_and_known_offset(template):
    uv, fg, _, _ = _exact_uv(32)
    grid = torch.from_numpy(template.uv_to_xyz_filled)
    assert dense_error(uv[None], uv[None], fg[None], grid, template.eye_distance).item() == pytest.approx(0, abs=1e-7)
    off = uv.clone()
    off[0][fg] += 0.01
    assert dense_error(off[None], uv[None], fg[None], grid, template.eye_distance).item() == pytest.approx(
        0.01 / template.eye_distance, rel=1e-3)


def test_accumulator_perfect_prediction(template):
    uv, fg, lm, _ = _exact_uv(64)
    parts = torch.where(fg, 8, 0)
    parts[20:24, 20:24] = 3
    batch = {"uv": uv[None], "parts": parts[None], "landmarks": torch.from_numpy(lm)[None].float()}
    acc = Accumulator(torch.from_numpy(template.landmark_uv), torch.from_numpy(template.uv_to_xyz_filled),
                      template.eye_distance)
    acc.update({"uv": uv[None], "parts": parts[None], "fg": fg[None]}, batch)
    s = acc.summary()
    assert s["landmarks"]["nme"] < 1e-4 and s["landmarks"]["failure_rate"] == 0
    assert s["landmarks"]["auc@0.08"] > 0.99
    assert s["dense"]["error"] == pytest.approx(0, abs=1e-7) and s["dense"]["auc@0.1"] > 0.99
    assert s["parts"]["miou"] == 1.0
    # half of part 3 predicted as 8: IoU(3) = 0.5, IoU(8) = n8 / (n8 + 8)
    wrong = parts.clone()
    wrong[20:22, 20:24] = 8
    acc2 = Accumulator(torch.from_numpy(template.landmark_uv), torch.from_numpy(template.uv_to_xyz_filled),
                       template.eye_distance)
    acc2.update({"uv": uv[None], "parts": wrong[None], "fg": fg[None]}, batch)
    n8 = int((parts == 8).sum())
    assert acc2.part_iou()[3] == pytest.approx(0.5)
    assert acc2.part_iou()[8] == pytest.approx(n8 / (n8 + 8))


def test_landmarks_from_piecewise_constant_uv_do_not_fail():
    """A classification head predicts constant U-V in blocks: the local fit is singular there."""
    uv, fg, lm, _ = _exact_uv(64)
    blocky = (torch.floor(uv * 10) + 0.5) / 10 * fg
    one_pixel = torch.zeros(64, 64, dtype=torch.bool)
    one_pixel[10, 10] = True
    for u, f in ((blocky, fg), (uv, one_pixel)):
        got = landmarks_from_uv(u, f, torch.from_numpy(template_landmark_uv()))
        assert got.shape == (68, 2) and torch.isfinite(got).all()
