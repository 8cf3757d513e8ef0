"""New views of a fitted face (`densereg_data.build.views`): a synthetic face with a known texture turned
and compared with the same face rendered directly at the new pose; the spec; skips; determinism."""

from __future__ import annotations

import re

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.build.view_sources import sample_image, sample_image_reference
from densereg_data.build.views import MAX_HIDDEN, MAX_PITCH, MAX_YAW, ViewSpec, render_views
from densereg_data.errors import ConfigError
from densereg_data.face.fit import FitResult
from densereg_data.face.labeller import Labeller
from densereg_data.face.labels import CropLabels
from densereg_data.geometry.affine import apply_affine
from densereg_data.geometry.camera import FLIP_YZ, Camera, rotation_from_pose
from densereg_data.geometry.crop import crop_from_landmarks, warp_crop
from densereg_data.raster.api import interpolate, rasterize, render_uv_parts

S = 256
MARGIN = 0.25
IMAGE = 320  # the source image, larger than the face crop
SAMPLE_KEYS = {"image": ((S, S, 3), np.uint8), "uv": ((S, S, 2), np.float16), "parts": ((S, S), np.uint8),
               "landmarks": ((68, 2), np.float32), "crop_from_image": ((2, 3), np.float64),
               "source_size": ((2,), np.int32), "fit_nme": ((), np.float32),
               "crop_from_template": ((3, 4), np.float64), "pose": ((3,), np.float32),
               "coefficients": ((360,), np.float32), "expression": ((0,), np.float32),
               "landmark_state": ((68,), np.uint8), "view_delta": ((2,), np.float32)}


@pytest.fixture(scope="module")
def labeller():
    return Labeller("menpo3d")


def texture(uv: np.ndarray, symmetric: bool = False) -> np.ndarray:
    """A known face texture on U-V: colour gradients in u and v, a 16 x 16 checker in blue; `symmetric`:
    mirrored about the face's midline (u = 0.5). (..., 3) float."""
    u, v = uv[..., 0], uv[..., 1]
    if symmetric:
        u = np.abs(2 * u - 1)
    checker = (np.floor(16 * u) + np.floor(16 * v)) % 2
    return np.stack([40 + 170 * u, 40 + 170 * v, 70 + 110 * checker], axis=-1)


def background(shape: tuple[int, int]) -> np.ndarray:
    """A smooth textured background (h, w, 3) float."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(float)
    return np.stack([128 + 80 * np.sin(x / 9), 128 + 80 * np.sin(y / 11 + 1), 128 + 60 * np.sin((x + y) / 13)], axis=-1)


def synthetic(labeller, pose=(0.0, 0.0, 0.0), seed=0, gray=False, flat=None, symmetric=False):
    """A prior face at `pose`, textured with `texture` over `background` in an IMAGE x IMAGE image, and
    its labels built from the true fit. Returns (image, labels, shape (V, 3) template frame)."""
    fitter, t = labeller.fitter, labeller.model.template
    coefficients = fitter.model.sample(np.random.default_rng(seed))
    rotation = FLIP_YZ @ rotation_from_pose(*pose)
    camera = Camera("orthographic", rotation, np.array([(IMAGE - 1) / 2, (IMAGE - 1) / 2 + 10, 0.0]),
                    scale=0.3 * IMAGE / t.eye_distance)
    shape = fitter.model.shape(coefficients)
    raster, uv, _ = render_uv_parts(camera.project(shape), t.faces, t.uv, t.face_parts, (IMAGE, IMAGE))
    image = background((IMAGE, IMAGE))
    image[raster.mask] = texture(uv[raster.mask], symmetric)
    if gray:
        image[:] = image.mean(axis=-1, keepdims=True)
    if flat is not None:
        image[:] = flat
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    landmarks = fitter.project_landmarks(coefficients, camera)
    crop_from_image = crop_from_landmarks(landmarks, S, MARGIN)
    a = crop_from_image[0, 0]
    crop_camera = Camera("orthographic", rotation, np.array([*apply_affine(crop_from_image, camera.translation[None, :2])[0],
                                                             a * camera.translation[2]]), scale=a * camera.scale)
    crop_landmarks = apply_affine(crop_from_image, landmarks)
    vertices, weights = t.landmark_vertex_weights
    fit = FitResult(camera=crop_camera, coefficients=coefficients, landmarks=crop_landmarks,
                    fitted_landmarks=crop_landmarks, residuals=np.zeros(68), nme=0.0,
                    correspondence_vertices=np.asarray(vertices), correspondence_weights=np.asarray(weights),
                    iterations=0)
    _, crop_uv, crop_parts = render_uv_parts(crop_camera.project(shape), t.faces, t.uv, t.face_parts, (S, S))
    labels = CropLabels(image=warp_crop(image, crop_from_image, S), uv=crop_uv, parts=crop_parts,
                        landmarks=crop_landmarks, crop_from_image=crop_from_image,
                        crop_from_template=crop_camera.image_from_template, pose=crop_camera.pose,
                        coefficients=coefficients.ravel().astype(np.float64), fit_nme=0.0, fit=fit)
    return image, labels, shape, camera


def one(labeller, image, labels, yaw, pitch=0.0, **kw):
    """The single view at (yaw, pitch)."""
    [out] = render_views(labeller, image, labels, ViewSpec(((yaw, pitch),)), S, MARGIN, **kw)
    assert out["delta"] == (yaw, pitch)
    return out


# ----------------------------------------------------------------------------------------------------
# synthetic truth


def test_turned_view_matches_a_direct_render(labeller):
    """Frontal source turned by +45: image, U-V and parts against the face rendered directly at +45
    (where the surface point was visible in the source)."""
    t = labeller.model.template
    image, labels, shape, camera = synthetic(labeller)
    out = one(labeller, image, labels, 45.0)
    assert out["skip"] is None, out["skip"]
    sample = out["sample"]
    m = sample["crop_from_template"]
    scale = np.linalg.norm(m[0, :3])
    np.testing.assert_allclose(m[:, :3] / scale, FLIP_YZ @ rotation_from_pose(45.0, 0.0, 0.0), atol=1e-9)
    vertices = shape @ m[:, :3].T + m[:, 3]
    raster, uv, parts = render_uv_parts(vertices, t.faces, t.uv, t.face_parts, (S, S))
    # visible in the source: the surface point seen here is the one the source shows at its place
    seen_here = interpolate(raster, t.faces, shape)
    src_raster = rasterize(camera.project(shape), t.faces, (IMAGE, IMAGE))
    seen_there = interpolate(src_raster, t.faces, shape)
    at = camera.project(seen_here.reshape(-1, 3))[:, :2]
    cols = np.clip(np.round(at[:, 0]).astype(int), 0, IMAGE - 1)
    rows = np.clip(np.round(at[:, 1]).astype(int), 0, IMAGE - 1)
    gap = np.linalg.norm(seen_there[rows, cols] - seen_here.reshape(-1, 3), axis=1).reshape(S, S)
    both = raster.mask & (sample["parts"] > 0) & (gap < 0.02 * t.eye_distance)
    assert both.sum() > 0.25 * raster.mask.sum()
    # labels: the same function on the same rotated mesh
    assert np.array_equal(sample["parts"][both], parts[both])
    np.testing.assert_allclose(sample["uv"][both].astype(np.float32), uv[both], atol=1e-3)
    assert np.mean(sample["parts"] == parts) > 0.999
    # image: the known texture re-projected through the mesh
    expected = np.clip(np.round(texture(uv)), 0, 255)
    mad = float(np.abs(sample["image"][both].astype(float) - expected[both]).mean())
    print(f"mean absolute difference to a direct render at +45: {mad:.2f} grey levels over {both.sum()} pixels")
    assert mad < 3.5, f"mean absolute image difference {mad:.2f} over {both.sum()} pixels"


def test_hidden_side_is_mirrored_without_seams(labeller):
    """A face at yaw 40 with a symmetric texture turned back to frontal: its far side was hidden and is
    filled from its mirror, so the whole face matches a direct render; few pixels are stretched."""
    t = labeller.model.template
    image, labels, shape, _ = synthetic(labeller, pose=(40.0, 0.0, 0.0), symmetric=True)
    out = one(labeller, image, labels, -40.0)
    sample = out["sample"]
    m = sample["crop_from_template"]
    np.testing.assert_allclose(sample["pose"], [0.0, 0.0, 0.0], atol=1e-4)
    _, uv, _ = render_uv_parts(shape @ m[:, :3].T + m[:, 3], t.faces, t.uv, t.face_parts, (S, S))
    face = sample["parts"] > 0
    error = np.abs(sample["image"].astype(float) - np.round(texture(uv, symmetric=True))).mean(axis=-1)[face]
    print(f"frontalised from yaw 40: mean absolute difference {error.mean():.2f}, "
          f"{np.mean(error > 40):.4f} of the face off by more than 40")
    assert error.mean() < 5.5 and np.mean(error > 40) < 0.006  # with streaks across the mirror seam: ~0.01
    hidden = one(labeller, image, labels, -40.0, max_hidden=0.0)["skip"]
    assert hidden["kind"] == "view_hidden"
    assert float(re.match(r"([0-9.]+) of the turned face", hidden["reason"]).group(1)) < 0.05


# ----------------------------------------------------------------------------------------------------
# outputs


def test_samples_are_complete_deterministic_and_filled(labeller):
    image, labels, *_ = synthetic(labeller, pose=(-20.0, 5.0, 8.0), seed=1)
    spec = ViewSpec.parse("yaw=15,30,45", "0,-15")
    first = render_views(labeller, image, labels, spec, S, MARGIN)
    again = render_views(labeller, image, labels, spec, S, MARGIN)
    assert [o["delta"] for o in first] == list(spec.deltas)
    for a, b in zip(first, again):
        assert a["skip"] is None, a["skip"]
        s = a["sample"]
        assert set(s) == set(SAMPLE_KEYS) | {"source"} and s["source"] == ""
        for key, (shape, dtype) in SAMPLE_KEYS.items():
            assert np.asarray(s[key]).shape == shape and np.asarray(s[key]).dtype == dtype, key
        for key in SAMPLE_KEYS:
            assert np.asarray(s[key]).tobytes() == np.asarray(b["sample"][key]).tobytes(), key  # byte-identical
        assert np.all(np.isfinite(s["uv"].astype(np.float32))) and np.all(np.isfinite(s["landmarks"]))
        assert np.all((s["landmarks"] >= 0) & (s["landmarks"] <= S - 1))  # moderate turns stay in the crop
        yaw, pitch = a["delta"]
        np.testing.assert_allclose(s["pose"], [-20.0 - yaw, 5.0 + pitch, 8.0], atol=1e-3)  # source yaw < 0: s = -1
        np.testing.assert_array_equal(s["view_delta"], a["delta"])
        assert s["fit_nme"] == np.float32(labels.fit_nme)
        np.testing.assert_array_equal(s["coefficients"], labels.coefficients.astype(np.float32))
        # the view's crop is the one crop rule around its landmarks, in the source image's pixels
        image_landmarks = apply_affine(np.linalg.inv(np.vstack([s["crop_from_image"], [0, 0, 1]]))[:2],
                                       s["landmarks"].astype(np.float64))
        np.testing.assert_allclose(crop_from_landmarks(image_landmarks, S, MARGIN), s["crop_from_image"], atol=1e-3)


def test_every_pixel_comes_from_the_source_image(labeller):
    """A flat source image gives a flat view: no hole, no NaN anywhere; black only where the view
    reaches beyond the source image (as the original crop is padded), never on the face."""
    image, labels, *_ = synthetic(labeller, pose=(10.0, -5.0, 0.0), flat=(200, 90, 30))
    for out in render_views(labeller, image, labels, ViewSpec.parse("15,45,75", "0,20"), S, MARGIN):
        assert out["skip"] is None, out["skip"]
        img, face = out["sample"]["image"], out["sample"]["parts"] > 0
        flat = np.all(img == np.array([200, 90, 30], np.uint8), axis=2)
        assert np.all(flat | np.all(img == 0, axis=2)) and flat.mean() > 0.5, out["delta"]
        # the face is textured from the photo; near profile, a back face seen past the nose may show background
        assert flat[face].mean() > (0.999 if out["delta"][0] <= 45 else 0.97), out["delta"]


def test_far_side_landmarks_are_occluded_at_large_yaw(labeller):
    image, labels, *_ = synthetic(labeller)
    state = one(labeller, image, labels, 85.0)["sample"]["landmark_state"]
    # yaw > 0 turns the nose to the image right: the subject's left (42-47 eye, 22-26 brow) turns away
    assert np.count_nonzero(state[42:48] == cv.OCCLUDED) >= 3 and np.count_nonzero(state[22:27] == cv.OCCLUDED) >= 2
    assert np.all(state[[36, 37, 41]] == cv.VISIBLE) and np.all(state[17:22] == cv.VISIBLE)  # the near side
    near = one(labeller, image, labels, 15.0)["sample"]["landmark_state"]
    assert np.all(near[17:68] == cv.VISIBLE)  # nothing of the inner face is hidden at yaw 15


def test_grayscale_source_gives_gray_views(labeller):
    image, labels, *_ = synthetic(labeller, pose=(15.0, 0.0, 0.0), gray=True)
    for out in render_views(labeller, image, labels, ViewSpec.parse("30,-30", "0,15"), S, MARGIN):
        img = out["sample"]["image"]
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])


def test_compiled_sampling_equals_the_reference():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    xy = rng.uniform(-10, 70, size=(5000, 2))
    xy[:3] = [[np.nan, 1.0], [1.0, np.inf], [0.0, 0.0]]
    affine = np.array([[0.9, 0.1, 1.5], [-0.05, 1.1, -2.0]])
    assert np.array_equal(sample_image(image, xy, affine), sample_image_reference(image, xy, affine))
    # a point at (x=3, y=1) reads image[1, 3]; within the outer pixel edges the edge pixel, beyond them black
    got = sample_image_reference(image, np.array([[3.0, 1.0], [-0.4, 36.4], [-5.0, 99.0], [52.6, 0.0]]), np.eye(2, 3))
    assert np.array_equal(got[:2], image[[1, 36], [3, 0]]) and not got[2:].any()


# ----------------------------------------------------------------------------------------------------
# skips


def test_beyond_the_fit_is_a_view_pose_skip(labeller):
    image, labels, *_ = synthetic(labeller, pose=(40.0, 0.0, 0.0))
    out = one(labeller, image, labels, 75.0)
    assert out["sample"] is None and out["skip"]["kind"] == "view_pose"
    assert "yaw 115" in out["skip"]["reason"] and f"{MAX_YAW:.0f}" in out["skip"]["reason"]
    out = one(labeller, image, labels, 0.0, 70.0)
    assert out["skip"]["kind"] == "view_pose" and f"{MAX_PITCH:.0f}" in out["skip"]["reason"]
    assert one(labeller, image, labels, -75.0)["skip"] is None  # back towards frontal and beyond: yaw -35


def test_hidden_views_are_skipped_by_fraction(labeller):
    image, labels, *_ = synthetic(labeller, pose=(0.0, 30.0, 0.0))  # looking down: under the chin is hidden

    def fraction(skip):
        assert skip["kind"] == "view_hidden", skip
        return float(re.match(r"([0-9.]+) of the turned face", skip["reason"]).group(1))

    profile = fraction(one(labeller, image, labels, 90.0)["skip"])  # the neck's side comes into view
    assert profile > MAX_HIDDEN
    assert one(labeller, image, labels, 90.0, max_hidden=profile + 0.01)["skip"] is None
    slight = fraction(one(labeller, image, labels, 15.0, max_hidden=0.0)["skip"])
    assert slight < 0.1 and one(labeller, image, labels, 15.0)["skip"] is None


def test_a_bad_face_skips_every_view(labeller):
    image, labels, *_ = synthetic(labeller)
    no_fit = CropLabels(**{**{k: getattr(labels, k) for k in labels.__dataclass_fields__}, "fit": None})
    outs = render_views(labeller, image, no_fit, ViewSpec.parse("15,30"), S, MARGIN)
    assert [o["skip"]["kind"] for o in outs] == ["view_error"] * 2
    outs = render_views(labeller, image[..., :2], labels, ViewSpec.parse("15"), S, MARGIN)
    assert outs[0]["sample"] is None and outs[0]["skip"]["kind"] == "view_error"


# ----------------------------------------------------------------------------------------------------
# the spec


def test_spec_parses_the_command_line():
    spec = ViewSpec.parse("yaw=15,30,45")
    assert spec.deltas == ((15.0, 0.0), (30.0, 0.0), (45.0, 0.0))
    both = ViewSpec.parse("0, 30", "pitch=0,-15,15")
    assert both.deltas == ((0.0, -15.0), (0.0, 15.0), (30.0, -15.0), (30.0, 0.0), (30.0, 15.0))
    assert ViewSpec.parse(both.to_text()) == both and both.to_text() == "0:-15,0:15,30:-15,30:0,30:15"
    assert ViewSpec.parse("-90,90,30,30").deltas == ((-90.0, 0.0), (30.0, 0.0), (90.0, 0.0))


@pytest.mark.parametrize("yaw, pitch, flag", [
    ("yaw=120", None, "--views"), ("15,nan", None, "--views"), ("15,inf", None, "--views"),
    ("fifteen", None, "--views"), ("", None, "--views"), ("yaw=", None, "--views"), ("15,,30", None, "--views"),
    ("0", None, "--views"), ("15", "0,-95", "--views-pitch"), ("15", "x", "--views-pitch"),
    (",".join(str(v) for v in range(1, 10)), ",".join(str(v) for v in range(1, 9)), "--views"),
])
def test_spec_refuses_bad_text_in_one_line(yaw, pitch, flag):
    with pytest.raises(ConfigError, match=re.escape(flag)) as err:
        ViewSpec.parse(yaw, pitch)
    assert "\n" not in str(err.value)
    shown = yaw if flag == "--views" and pitch is None else pitch
    assert repr(shown[:77]).strip("'")[:20] in str(err.value)
