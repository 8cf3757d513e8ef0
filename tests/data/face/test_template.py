"""The face template: U-V layout and orientation, one-to-one map, parts, landmark bindings, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densereg_data import conventions as cv
from densereg_data.errors import TemplateError
from densereg_data.face.parts import points_in_polygon
from densereg_data.face.template import load_template
from densereg_data.face.uv_unwrap import repair_folds, uv_signed_areas
from densereg_data.format.template_facts import TemplateFacts

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "densereg-reference"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="DenseReg reference files not found at ../shared/data/densereg-reference")


@pytest.fixture(scope="module")
def template(face_model):
    return face_model.template


def test_template_has_the_documented_frame(template):
    t = template
    assert t.units == "mm"
    assert t.vertices.dtype == np.float64 and t.faces.dtype == np.int64
    lm = t.landmark_points
    assert lm[30, 2] > lm[0, 2] and lm[30, 2] > lm[16, 2], "the face looks along +z (nose tip in front)"
    assert lm[27, 1] > lm[8, 1], "y is up (nose bridge above the chin)"
    assert lm[16, 0] > lm[0, 0], "x runs towards the subject's left (jaw point 16)"
    normals = np.cross(*(t.vertices[t.faces[:, k]] - t.vertices[t.faces[:, 0]] for k in (1, 2)))
    assert (normals[:, 2] > 0).mean() > 0.75, "triangles are counter-clockwise seen from the front"
    assert 60 < t.eye_distance < 120


def test_uv_orientation_matches_densereg(template):
    luv = template.landmark_uv
    assert luv[16, 0] > luv[0, 0], "u grows left to right across a frontal face"
    assert luv[27, 1] > luv[8, 1], "v grows upward"
    assert luv[0, 0] == pytest.approx(0.110, abs=0.01) and luv[16, 0] == pytest.approx(0.890, abs=0.01)
    assert luv[8, 1] == pytest.approx(0.171, abs=0.01)
    assert luv[[27, 28, 29, 30, 33, 51, 57], 0] == pytest.approx(0.5, abs=0.01), "the midline is u = 0.5"
    assert np.all((template.uv >= 0) & (template.uv <= 1))


def test_uv_map_is_one_to_one(template, face_model):
    areas = uv_signed_areas(template.uv, template.faces)
    assert areas.min() > 0, f"{int((areas <= 0).sum())} triangles folded or flipped in U-V"
    # no overlaps: the triangles' U-V areas add up to the area they cover (measured on a fine grid)
    facts = face_model.facts(grid=512)
    covered = np.isfinite(facts["uv_to_xyz"][..., 0]).mean()
    assert areas.sum() == pytest.approx(covered, rel=0.01)


@needs_reference
def test_landmark_uv_close_to_densereg_reference(template):
    ref = np.load(REFERENCE / "template_landmarks.npy")
    err = np.linalg.norm(template.landmark_uv - ref, axis=1)
    assert np.median(err) < 0.02 and err.max() < 0.07


@needs_reference
def test_parts_overlap_densereg_reference(template, face_model):
    scipy_io = pytest.importorskip("scipy.io")
    colours = scipy_io.loadmat(REFERENCE / "SegLabelsColor.mat")["L_color"]
    palette = {1: (0.079, 0.520, 0.831), 2: (0.996, 0.786, 0.197), 3: (0.023, 0.653, 0.777), 4: (0.976, 0.983, 0.054),
               5: (0.819, 0.733, 0.350), 6: (0.218, 0.725, 0.619), 7: (0.530, 0.749, 0.466), 8: (0.208, 0.166, 0.529)}
    ref = np.zeros(colours.shape[:2], dtype=int)
    for label, rgb in palette.items():
        ref[np.linalg.norm(colours - np.array(rgb), axis=2) < 0.02] = label
    n = ref.shape[0]
    ours = face_model.facts(grid=n)["part_uv"]  # same layout: [row, col] = (u = col / n, v = 1 - row / n)
    iou = {k: ((ref == k) & (ours == k)).sum() / ((ref == k) | (ours == k)).sum() for k in range(1, 9)}
    assert iou[3] > 0.6 and iou[4] > 0.6, iou  # eyes
    assert iou[5] > 0.5, iou  # nose
    assert iou[8] > 0.8, iou  # rest of face
    # brows and lips are thin bands whose thickness differs between the two templates (measured:
    # brows 0.18, upper lip 0.09, lower lip 0.14): they overlap, but loosely
    assert min(iou.values()) > 0.05, iou


def test_parts_cover_the_named_regions(template):
    parts, luv = template.face_parts, template.landmark_uv
    assert parts.min() >= 1 and parts.max() <= 8
    centroids = template.uv[template.faces].mean(axis=1)
    for label, idx in ((3, cv.RIGHT_EYE), (4, cv.LEFT_EYE)):
        inside = points_in_polygon(centroids, luv[list(idx)])
        assert (parts[inside] == label).mean() > 0.99
    for label, name in enumerate(cv.PART_NAMES, start=1):
        assert (parts == label).sum() > 100, name
    # mirror symmetry: the right eye sits at 1 - u of the left eye
    right = centroids[parts == 3, 0].mean()
    left = centroids[parts == 4, 0].mean()
    assert right + left == pytest.approx(1.0, abs=0.02)


def test_landmarks_are_bound_by_barycentrics(template):
    assert set(template.landmarks) == {"ibug68"}
    bary = template.landmarks["ibug68"].bary
    assert np.allclose(bary.sum(axis=1), 1.0) and bary.min() >= 0
    assert (bary.max(axis=1) < 0.999).sum() > 30, "most landmarks lie inside a triangle, not on a vertex"


def test_contour_candidates_run_inward_from_the_jaw(template):
    assert 8 not in template.contour_landmarks
    lm = template.landmark_points
    for i, cand in zip(template.contour_landmarks, template.contour_candidates):
        assert len(cand) >= 10
        first = template.vertices[cand[0]]
        assert np.linalg.norm(first - lm[i]) < 3.0, "the first candidate is at the landmark itself"
        assert np.linalg.norm(template.vertices[cand] - lm[i], axis=1).max() <= 45.0, "all within reach of the landmark"
        to_nose = np.linalg.norm((template.vertices[cand] - lm[30])[:, :2], axis=1)
        assert to_nose[1:].mean() < to_nose[0], "the others run inward, towards the nose"


def test_cached_parts_and_contour_are_what_the_code_derives(template):
    """The disk cache is keyed by DERIVATION_VERSION, not by the code: an edit of the part or contour
    rules without a version bump would serve stale arrays. Both rules are cheap, so recompute them."""
    from densereg_data.face.contour import contour_candidates
    from densereg_data.face.parts import derive_face_parts

    d = template.definition
    assert np.array_equal(derive_face_parts(template.uv, template.faces, template.landmark_uv, d["parts"]), template.face_parts)
    fresh = contour_candidates(template.vertices, template.landmark_points, d["contour"])
    assert all(np.array_equal(a, b) for a, b in zip(fresh, template.contour_candidates, strict=True))


def test_template_is_cached_and_hashed(template):
    assert len(template.hash) == 64
    assert load_template("menpo3d-face") is template  # one per process


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(TemplateError, match=r"unknown template 'nope'; available: ict-face, menpo3d-face, sfm-face"):
        load_template("nope")
    with pytest.raises(TemplateError, match=r"'ict-face' is built from a face model's own files: .*load_face_model\('ict:PATH'\)"):
        load_template("ict-face")


def test_uv_lookup_returns_landmark_positions(template, face_model):
    facts = TemplateFacts.from_dict(face_model.facts(grid=256))
    xyz = facts.xyz(template.landmark_uv)
    err = np.linalg.norm(xyz - template.landmark_points, axis=1) / template.eye_distance
    assert np.median(err) < 0.005 and err.max() < 0.05


def test_repair_folds_unfolds_a_flipped_vertex():
    # a 3 x 3 grid of vertices with the centre vertex pushed across an edge
    xs, ys = np.meshgrid(np.arange(3.0), np.arange(3.0))
    uv = np.c_[xs.ravel(), ys.ravel()] / 2
    faces = []
    for r in range(2):
        for c in range(2):
            a, b, d, e = r * 3 + c, r * 3 + c + 1, (r + 1) * 3 + c, (r + 1) * 3 + c + 1
            faces += [(a, b, e), (a, e, d)]
    faces = np.array(faces)
    assert uv_signed_areas(uv, faces).min() > 0
    bent = uv.copy()
    bent[4] = (1.2, 1.2)  # outside the ring of its neighbours: folds triangles
    assert uv_signed_areas(bent, faces).min() <= 0
    fixed, keep = repair_folds(bent, faces)
    assert keep.all() and uv_signed_areas(fixed, faces).min() > 0
    assert fixed[4] == pytest.approx((0.5, 0.5))
