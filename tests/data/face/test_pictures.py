"""Pictures of a face model (`model show --out`): sizes, content, landmark placement, prior samples, and
where `show_face_model` refuses to write."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densereg_data.errors import InputError
from densereg_data.face.jobs import show_face_model
from densereg_data.face.pictures import (FILL, PICTURES, SIDE_YAW, prior_samples_picture, template_pictures,
                                         vertex_normals, view_in_pixels)

SIZE = 160  # not the default, so sizes must follow the argument
GREEN = (0, 255, 0)


@pytest.fixture(scope="module")
def pictures(face_model):
    out = template_pictures(face_model.template, SIZE)
    out["prior_samples.png"] = prior_samples_picture(face_model.template, face_model.shape, SIZE)
    return out


def _panels(picture: np.ndarray, panel: int) -> list[np.ndarray]:
    h, w, _ = picture.shape
    return [picture[r:r + panel, c:c + panel] for r in range(0, h, panel) for c in range(0, w, panel)]


def test_each_picture_has_its_size_and_shows_a_face(pictures):
    square, wide, strip = (SIZE, SIZE, 3), (SIZE, 2 * SIZE, 3), (SIZE, 5 * (SIZE // 2), 3)
    expected = {"template_uv.png": square, "uv_grid.png": wide, "template_parts.png": square, "uv_parts.png": square,
                "landmarks.png": square, "contour.png": wide, "prior_samples.png": strip}
    assert sorted(pictures) == sorted(PICTURES) and {k: v.shape for k, v in pictures.items()} == expected
    for name, picture in pictures.items():
        assert picture.dtype == np.uint8, name
        for panel in _panels(picture, SIZE // 2 if name == "prior_samples.png" else SIZE):
            face = (panel != panel[0, 0]).any(axis=-1)  # the corner is background
            assert 0.2 < face.mean() < 0.95, name
            assert len(np.unique(panel[face], axis=0)) > 5, name  # shaded, or parts and lines: not one flat fill
    for name in ("uv_grid.png", "contour.png"):  # a frontal and a side view
        assert (pictures[name][:, :SIZE] != pictures[name][:, SIZE:]).any(axis=-1).mean() > 0.2, name


def test_landmarks_are_drawn_where_the_frontal_view_puts_them(pictures, face_model):
    t = face_model.template
    xy = view_in_pixels(t.landmark_points, SIZE, FILL, 0.0, t.vertices)[:, :2]
    cols, rows = np.round(xy).astype(int).T
    marked = pictures["landmarks.png"]
    assert (marked[rows, cols] == GREEN).all()  # every one of the 68 is marked
    for plain in ("template_parts.png", "uv_grid.png"):  # the unmarked views hold no landmark green
        assert not (pictures[plain] == GREEN).all(axis=-1).any(), plain
    # the image's y points down, and the subject's right eye (36) is on the image left
    assert xy[8, 1] > xy[30, 1] > xy[27, 1] and xy[36, 0] < xy[45, 0]


def test_contour_candidates_show_in_both_views(pictures, face_model):
    t = face_model.template
    contour = pictures["contour.png"]
    front, side = contour[:, :SIZE], contour[:, SIZE:]
    dots = []
    for view in (front, side):
        skin = (view != 0).any(axis=-1) & ~(view == GREEN).all(axis=-1)
        dots.append((skin & (view.max(axis=-1).astype(int) - view.min(axis=-1) > 150)).sum())  # not the skin
    assert dots[0] > 10 * len(t.contour_landmarks)
    assert 0.2 * dots[0] < dots[1] < 0.9 * dots[0]  # the side view hides the far side's candidates


def test_a_side_view_turns_the_nose_to_the_image_right(face_model):
    t = face_model.template
    front = view_in_pixels(t.landmark_points, SIZE, FILL, 0.0, t.vertices)
    side = view_in_pixels(t.landmark_points, SIZE, FILL, SIDE_YAW, t.vertices)
    # nose tip (30) against the midpoint of the outer eye corners: centred when frontal, to the right when turned
    assert abs(front[30, 0] - front[[36, 45], 0].mean()) < 0.05 * SIZE
    assert side[30, 0] - side[[36, 45], 0].mean() > 0.1 * SIZE
    assert side[36, 2] < side[45, 2] - 0.1 * SIZE  # the subject's right side comes towards the viewer


def test_vertex_normals_point_out_of_counter_clockwise_faces():
    square = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]])
    normals = vertex_normals(square, np.array([[0, 1, 2], [0, 2, 3]]))
    np.testing.assert_allclose(normals[:4], np.tile([0.0, 0, 1], (4, 1)))
    assert not normals[4].any()  # an unused vertex


def test_prior_samples_differ_from_each_other_and_repeat_with_the_seed(pictures, face_model):
    strip = pictures["prior_samples.png"]
    panels = _panels(strip, SIZE // 2)
    assert len(panels) == 10
    for row in (panels[:5], panels[5:]):
        for i in range(5):
            for j in range(i + 1, 5):
                assert (row[i] != row[j]).any(axis=-1).mean() > 0.002, (i, j)
    np.testing.assert_array_equal(prior_samples_picture(face_model.template, face_model.shape, SIZE), strip)
    assert not np.array_equal(prior_samples_picture(face_model.template, face_model.shape, SIZE, seed=1), strip)


class _Flat:
    """A shape model whose prior holds only the mean: every sample is the template itself."""

    name = "flat"

    def __init__(self, vertices):
        self.vertices = vertices

    def sample(self, rng, scale=1.0):
        return np.zeros(3)

    def shape(self, coefficients):
        return self.vertices + 0.0 * coefficients.sum()


def test_prior_samples_come_from_the_shape_models_prior(face_model):
    t = face_model.template
    panels = _panels(prior_samples_picture(t, _Flat(t.vertices), SIZE, n=2), SIZE // 2)
    assert len(panels) == 6
    for row in (panels[:3], panels[3:]):
        assert np.array_equal(row[0][:, :-2], row[1][:, :-2]) and np.array_equal(row[1], row[2])  # but the rule


def test_show_face_model_writes_every_picture_and_redraws_its_own(tmp_path, face_model):
    out = tmp_path / "show"
    facts = show_face_model("menpo3d", out, size=96)
    assert sorted(p.name for p in out.iterdir()) == sorted([*PICTURES, "template.json"])
    assert json.loads((out / "template.json").read_text()) == facts and facts["hash"] == face_model.hash
    from densereg_data.io.images import read_image

    assert read_image(out / "uv_grid.png").shape == (96, 192, 3)
    assert show_face_model("menpo3d", out, size=64) == facts  # an earlier `model show` is replaced
    assert read_image(out / "uv_grid.png").shape == (64, 128, 3)


@pytest.mark.parametrize("name, content", [("landmarks.png", b"my own picture"), ("template.json", b'{"mine": 1}'),
                                           ("template.json", b"\xff not json")])
def test_show_face_model_keeps_a_users_files(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=f"{name} already exists and is not from an earlier `model show`"):
        show_face_model("menpo3d", tmp_path, size=64)
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_bytes() == content


def test_show_face_model_refuses_a_shard_folder(tmp_path):
    from densereg_data.format.schema import FORMAT, INDEX

    (tmp_path / INDEX).write_text(json.dumps({"format": FORMAT}))
    with pytest.raises(InputError, match="inside the shard folder"):
        show_face_model("menpo3d", tmp_path / "pictures", size=64)
    assert not (tmp_path / "pictures").exists()
