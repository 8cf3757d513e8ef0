"""Landmark schemes: loading (shipped, by file, hostile files), binding a scheme's extra points to a model
from annotations, and fitting in that scheme."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.errors import LandmarkFileError, TemplateError
from densereg_data.io.annotations import FaceAnnotation
from densereg_data.schemes import load_scheme


def test_shipped_schemes():
    ibug, wflw = load_scheme("ibug68"), load_scheme("wflw98")
    assert ibug.n == 68 and ibug.extra == () and 8 not in ibug.contour and ibug.eye_corners == (36, 45)
    assert wflw.n == 98 and len(wflw.extra) == 30 and wflw.eye_corners == (60, 72)
    assert all(wflw.flip[wflw.ibug68[i]] == wflw.ibug68[cv.LANDMARK_FLIP[i]] for i in range(68))  # flips agree
    assert {96, 97} <= set(wflw.extra) and wflw.ibug68[8] not in wflw.contour  # pupils extra, chin fixed


def test_a_users_scheme_file(tmp_path):
    doc = {"name": "mine", "n": 70, "ibug68": list(range(68)), "contour": list(range(0, 8)) + list(range(9, 17)),
           "eye_corners": [36, 45], "flip": list(cv.LANDMARK_FLIP) + [69, 68]}
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    s = load_scheme(str(tmp_path / "mine.json"))
    assert s.n == 70 and s.extra == (68, 69)


@pytest.mark.parametrize("change, needle", [
    ({"flip": list(range(1, 70)) + [0]}, "flip must pair"),
    ({"ibug68": list(range(67))}, "ibug68 must be 68 distinct"),
    ({"eye_corners": [36, 36]}, "eye_corners must be 2 distinct"),
    ({"n": "seventy"}, "n must be an integer"),
    ({"contour": [0, 99]}, "contour must be distinct point indices"),
])
def test_bad_scheme_files_are_one_line(tmp_path, change, needle):
    doc = {"name": "bad", "n": 70, "ibug68": list(range(68)), "contour": [0, 1], "eye_corners": [36, 45],
           "flip": list(cv.LANDMARK_FLIP) + [69, 68]} | change
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(LandmarkFileError, match=needle):
        load_scheme(str(tmp_path / "bad.json"))


def test_unknown_scheme_and_non_json_are_one_line(tmp_path):
    with pytest.raises(LandmarkFileError, match="unknown landmark scheme 'wflw99'; valid: ibug68, wflw98"):
        load_scheme("wflw99")
    (tmp_path / "x.json").write_bytes(b"\xff\x00not json")
    with pytest.raises(LandmarkFileError, match="not a landmark scheme"):
        load_scheme(str(tmp_path / "x.json"))


def _wflw_faces(model, truth_points: np.ndarray, n: int, rng) -> list[FaceAnnotation]:
    """Synthetic WFLW faces: shapes from the model's prior, turned up to 40 deg; the 68 twins at the
    model's iBUG points (the jaw slid to the silhouette), the 30 extras at `truth_points` (30, 3)."""
    from densereg_data.testing import synthetic_face

    scheme = load_scheme("wflw98")
    fitter, t = model.fitter, model.template
    from densereg_data.face.template import bind_points

    tri, bary = bind_points(t.vertices, t.faces, truth_points)
    faces = []
    for i in range(n):
        face = synthetic_face(fitter, rng, max_yaw=40, max_pitch=15, max_roll=15, noise=0.0)
        verts = face.camera.project(model.shape.shape(face.coefficients))
        extra = np.einsum("nk,nkc->nc", bary, verts[t.faces[tri]])[:, :2]
        points = np.zeros((98, 2))
        points[list(scheme.ibug68)] = face.landmarks
        points[list(scheme.extra)] = extra
        faces.append(FaceAnnotation(f"f{i}", None, points, np.full(98, cv.VISIBLE, np.uint8), "wflw98"))
    return faces


def test_extra_points_are_bound_where_the_faces_put_them(face_model):
    """The extras' true surface points: the template's own positions of interior points (brow, lid,
    pupil-like spots); the derived binding lands within 2 mm of the truth for the non-contour extras."""
    from densereg_data.face.scheme_binding import derive_binding

    scheme = load_scheme("wflw98")
    t = face_model.template
    rng = np.random.default_rng(0)
    lm = t.landmark_points
    truth = np.zeros((30, 3))
    for j, i in enumerate(scheme.extra):  # non-contour extras: midpoints of nearby iBUG points, on the surface
        a, b = (lm[17], lm[21]) if i < 33 else (lm[min(17 + j % 10, 26)], lm[min(36 + j % 12, 47)])
        truth[j] = (a + b) / 2 if i >= 33 else lm[j % 17]
    from densereg_data.face.template import bind_points

    tri, bary = bind_points(t.vertices, t.faces, truth)
    truth = np.einsum("nk,nkc->nc", bary, t.vertices[t.faces[tri]])  # on the surface
    faces = _wflw_faces(face_model, truth, 30, rng)
    binding, stats = derive_binding(face_model, scheme, faces, min_faces=20)
    got = t.barycentric_points(t.vertices, binding)
    inner = [j for j, i in enumerate(scheme.extra) if i >= 33]
    err = np.linalg.norm(got[list(scheme.extra)][inner] - truth[inner], axis=1)
    assert np.median(err) < 2.0, err
    assert np.array_equal(binding.triangles[list(scheme.ibug68)], t.landmarks["ibug68"].triangles)
    assert stats["faces"] == 30 and all(p["faces"] > 0 for p in stats["points"].values())
    with pytest.raises(TemplateError, match="fully visible faces to bind its points, need 20"):
        derive_binding(face_model, scheme, faces[:5])


def test_a_98_point_fit_recovers_the_pose(face_model):
    from densereg_data.face.fit import Fitter
    from densereg_data.face.scheme_binding import derive_binding

    scheme = load_scheme("wflw98")
    t = face_model.template
    rng = np.random.default_rng(1)
    truth = t.landmark_points[np.r_[np.arange(17), np.arange(17, 30)] % 68]  # any surface points will do
    faces = _wflw_faces(face_model, truth, 24, rng)
    binding, _ = derive_binding(face_model, scheme, faces, min_faces=20)
    fitter = Fitter(t, face_model.shape, scheme, binding)
    nmes = []
    for face in _wflw_faces(face_model, truth, 6, np.random.default_rng(2)):
        fit = fitter.fit(face.points)
        assert fit.fitted_landmarks.shape == (98, 2) and np.isfinite(fit.nme)
        nmes.append(fit.nme)
    assert np.median(nmes) < 0.05
    with pytest.raises(Exception, match="landmarks must be \\(98, 2\\)"):
        fitter.fit(faces[0].points[:68])
