import numpy as np
import pytest
import torch
from net_fakes import one_thread, shards, template_facts, template_landmark_uv  # noqa: F401  (fixtures)

from densereg_data.format import TemplateFacts
from densereg_net.metrics import (MIN_CALIBRATION_FACES, Accumulator, auc, calibrate_readout, combined_landmarks, dense_error,
                                  landmarks_from_uv, nme)


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
def template():
    return TemplateFacts.from_dict(template_facts())


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


def test_dense_error_zero_and_known_offset(template):
    uv, fg, _, _ = _exact_uv(32)
    assert dense_error(uv[None], uv[None], fg[None], template)[0] == pytest.approx(0, abs=1e-12)
    off = uv.clone()
    off[0][fg] += 0.01  # xyz = (u, v, 0) in the fixture: the 3D error is the U-V error
    assert dense_error(off[None], uv[None], fg[None], template)[0] == pytest.approx(0.01 / template.eye_distance, rel=1e-4)


def test_dense_error_is_the_template_facts_lookup_per_image(template):
    """Per image, the mean over TRUE foreground pixels of |facts.xyz(pred) - facts.xyz(true)| / eye
    distance, NaN without foreground: the one U-V -> 3D lookup, also off the face (filled cells)."""
    rng = np.random.default_rng(0)
    true, pred = rng.uniform(0, 1, (3, 2, 8, 8)), rng.uniform(0, 1, (3, 2, 8, 8))
    fg = rng.uniform(size=(3, 8, 8)) < 0.5
    fg[2] = False
    got = dense_error(torch.from_numpy(pred).float(), torch.from_numpy(true).float(), torch.from_numpy(fg), template)
    for i in range(2):
        a, b = pred[i].transpose(1, 2, 0)[fg[i]], true[i].transpose(1, 2, 0)[fg[i]]
        a, b = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
        want = np.mean(np.linalg.norm(template.xyz(a) - template.xyz(b), axis=1)) / template.eye_distance
        assert got[i] == pytest.approx(want, rel=1e-12)
    assert np.isnan(got[2])


def test_accumulator_perfect_prediction(template):
    uv, fg, lm, _ = _exact_uv(64)
    parts = torch.where(fg, 8, 0)
    parts[20:24, 20:24] = 3
    batch = {"uv": uv[None], "parts": parts[None], "landmarks": torch.from_numpy(lm)[None].float()}
    acc = Accumulator(template)
    acc.update({"uv": uv[None], "parts": parts[None], "fg": fg[None]}, batch)
    s = acc.summary()
    assert s["landmarks"]["nme"] < 1e-4 and s["landmarks"]["failure_rate"] == 0
    assert s["landmarks"]["auc@0.08"] > 0.99
    assert s["dense"]["error"] == pytest.approx(0, abs=1e-7) and s["dense"]["auc@0.1"] > 0.99
    assert s["parts"]["miou"] == 1.0
    # half of part 3 predicted as 8: IoU(3) = 0.5, IoU(8) = n8 / (n8 + 8)
    wrong = parts.clone()
    wrong[20:22, 20:24] = 8
    acc2 = Accumulator(template)
    acc2.update({"uv": uv[None], "parts": wrong[None], "fg": fg[None]}, batch)
    n8 = int((parts == 8).sum())
    assert acc2.part_iou()[3] == pytest.approx(0.5)
    assert acc2.part_iou()[8] == pytest.approx(n8 / (n8 + 8))


def test_landmarks_from_one_foreground_pixel_are_that_pixel():
    """With one predicted-foreground pixel the local fit has 1 < 3 points: every landmark falls back
    to the window's weighted average, which is that pixel, exactly."""
    uv, _, _, _ = _exact_uv(64)
    one_pixel = torch.zeros(64, 64, dtype=torch.bool)
    one_pixel[10, 13] = True  # row 10, column 13: (x, y) = (13, 10)
    got = landmarks_from_uv(uv, one_pixel, torch.from_numpy(template_landmark_uv()))
    assert got.dtype == torch.float64 and torch.equal(got, torch.tensor([[13.0, 10.0]], dtype=torch.float64).repeat(68, 1))


def test_landmarks_from_piecewise_constant_uv_stay_within_a_bin():
    """A classification head predicts constant U-V in blocks (bin centres): the local fit is singular
    there, the fallback keeps every landmark within one bin of the truth (finite, no failure)."""
    uv, fg, lm, _ = _exact_uv(64)
    blocky = (torch.floor(uv * 10) + 0.5) / 10 * fg
    got = landmarks_from_uv(blocky, fg, torch.from_numpy(template_landmark_uv())).numpy()
    bin_px = np.array([2 * 64 * 0.33, 2 * 64 * 0.4]) / 10  # one U-V bin in pixels along x and y
    assert np.isfinite(got).all()
    assert (np.abs(got - lm) <= bin_px).all(), np.abs(got - lm).max(0)


def test_nme_leaves_out_missing_points_and_faces_without_eye_corners():
    from densereg_net.metrics import landmark_summary

    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, (68, 2))
    pred = true + 1.0
    true_missing = true.copy()
    true_missing[:8] = np.nan  # a self-occluded jaw side
    pred_far = pred.copy()
    pred_far[:8] += 50.0  # wrong where nothing was annotated: must not count
    assert nme(pred_far, true_missing) == pytest.approx(nme(pred, true))
    no_corner = true.copy()
    no_corner[36] = np.nan
    assert np.isnan(nme(pred, no_corner))
    summary = landmark_summary([0.01, float("nan"), 0.03])
    assert summary["n"] == 2 and summary["nme"] == pytest.approx(0.02)


def test_a_face_not_found_is_a_failure_not_a_dropout():
    from densereg_net.metrics import landmark_summary

    summary = landmark_summary([0.01, float("inf"), 0.03, float("nan")])
    assert summary["n"] == 3 and summary["missed"] == 1 and summary["nme"] == pytest.approx(0.02)
    assert summary["failure_rate"] == pytest.approx(1 / 3)
    assert summary["auc@0.08"] < landmark_summary([0.01, 0.03])["auc@0.08"] * 0.7


def test_calibrated_readout_is_where_annotators_put_the_points():
    """Faces whose annotations sit 2 px right of the template landmarks: the calibrated read-out U-V is
    the label U-V there, and reading out at it recovers the annotations; a landmark annotated off the
    face, missing, or on too few faces keeps the template's U-V."""
    t = template_landmark_uv()
    faces = []
    for seed in range(7):
        uv, fg, lm, _ = _exact_uv(64, seed)
        annotated = lm + [2.0, 0.0]
        annotated[0] = [-5.0, -5.0]  # outside the crop
        annotated[1] = np.nan  # missing
        if seed >= MIN_CALIBRATION_FACES - 1:  # landmark 2 on only MIN - 1 faces
            annotated[2] = [0.0, 0.0]  # off the face (a background pixel)
        faces.append({"uv": uv, "parts": fg.long() * 8, "landmarks": torch.from_numpy(annotated).float()})
    readout = calibrate_readout(faces, t)
    assert np.array_equal(readout[:3], t[:3])
    # where the 4 pixels around the point are on every face, the label U-V 2 px to the right: u grows
    # by 2 / (2 a) (a = 0.33 * 64), v stays (a linear U-V map, so bilinear is exact)
    interior = np.ones(68, bool)
    for f in faces:
        x0, y0 = np.floor(np.nan_to_num(f["landmarks"].numpy())).astype(int).T.clip(0, 62)
        interior &= f["parts"].numpy()[[y0, y0, y0 + 1, y0 + 1], [x0, x0 + 1, x0, x0 + 1]].all(0)
    interior[:3] = False
    assert interior.sum() > 40
    assert np.allclose(readout[interior, 0], t[interior, 0] + 2 / (2 * 0.33 * 64), atol=1e-5)
    assert np.allclose(readout[interior, 1], t[interior, 1], atol=1e-5)
    uv, fg, lm, _ = _exact_uv(64, 0)
    got = landmarks_from_uv(uv, fg, torch.from_numpy(readout)).numpy()
    assert np.abs(got[interior] - (lm[interior] + [2, 0])).max() < 0.01
    assert np.array_equal(calibrate_readout([], t), t)


def test_accumulator_reads_out_at_the_calibrated_uv(template):
    uv, fg, lm, _ = _exact_uv(64)
    parts = torch.where(fg, 8, 0)
    batch = {"uv": uv[None], "parts": parts[None], "landmarks": torch.from_numpy(lm + [2.0, 0.0])[None].float()}
    shifted = calibrate_readout([{"uv": uv, "parts": parts, "landmarks": batch["landmarks"][0]}] * 5, template.landmark_uv)
    plain, calibrated = Accumulator(template), Accumulator(template, shifted)
    for acc in (plain, calibrated):
        acc.update({"uv": uv[None], "parts": parts[None], "fg": fg[None]}, batch)
    d = np.linalg.norm(lm[36] - lm[45])
    assert plain.summary()["landmarks"]["nme"] == pytest.approx(2 / d, rel=0.01)
    assert calibrated.summary()["landmarks"]["nme"] < 0.002


def test_combined_readout_is_the_mean_of_the_two_or_the_nearest_alone():
    a, b = np.zeros((68, 2)), np.full((68, 2), 2.0)
    assert np.array_equal(combined_landmarks(a, b), np.ones((68, 2)))
    assert combined_landmarks(a, None) is a
