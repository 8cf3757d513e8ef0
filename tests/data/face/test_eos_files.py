"""eos-format models: the real Surrey Face Model by path (skipped when absent or without eos), and bad input."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from densereg_data.errors import TemplateError
from densereg_data.face.eos_files import parse_landmark_mapping, read_eos_model

SFM = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "face-models" / "sfm"
MODEL = SFM / "sfm_shape_3448.bin"
BLENDSHAPES = SFM / "expression_blendshapes_3448.bin"
MAPPING = SFM / "ibug_to_sfm.txt"
CONTOURS = SFM / "sfm_model_contours.json"

eos = pytest.importorskip("eos", reason="eos-py is not installed (pip install eos-py)")
needs_sfm = pytest.mark.skipif(not MODEL.is_file(), reason=f"the Surrey Face Model is not at {SFM}")


@pytest.fixture(scope="module")
def sfm():
    if not MODEL.is_file():
        pytest.skip(f"the Surrey Face Model is not at {SFM}")
    return read_eos_model(SFM)


def signed_areas(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) twice the signed area of each triangle of (n, 2) points; > 0 counter-clockwise (y up)."""
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])


# ---- the real SFM ----

def test_sfm_loads_with_its_counts(sfm):
    assert sfm.mean.shape == (3448, 3) and sfm.mean.dtype == np.float64
    assert sfm.triangles.shape == (6736, 3) and sfm.triangles.dtype == np.int64
    assert sfm.basis.shape == (3 * 3448, 63) and sfm.std.shape == (63,)
    assert sfm.blendshapes.shape == (6, 3 * 3448)
    assert sfm.blendshape_names == ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    assert sfm.landmarks68.shape == (68,)
    # ibug_to_sfm.txt maps 50 points: not the 16 contour points (1-8, 10-17) nor 61, 65 (inner mouth corners)
    assert (sfm.landmarks68 >= 0).sum() == 50
    assert set(np.flatnonzero(sfm.landmarks68 < 0) + 1) == {*range(1, 9), *range(10, 18), 61, 65}
    assert sfm.landmarks68[30] == 114  # iBUG 31, the nose tip
    assert sfm.contour_landmarks["right"].tolist() == list(range(8))
    assert sfm.contours["left"][:3].tolist() == [795, 790, 773] and len(sfm.contours["right"]) == 17
    assert sfm.notes == () and sfm.units == "mm"
    assert pickle.loads(pickle.dumps(sfm)).mean.tobytes() == sfm.mean.tobytes()


def test_sfm_frame_mm_y_up_face_looks_along_z(sfm):
    extent = np.ptp(sfm.mean, axis=0)
    assert 120 < extent[0] < 180 and 150 < extent[1] < 220  # a face in millimetres
    nose, chin = sfm.mean[sfm.landmarks68[30]], sfm.mean[sfm.landmarks68[8]]
    assert nose[2] > sfm.mean[:, 2].max() - 1 and chin[1] < nose[1]
    assert sfm.mean[sfm.landmarks68[45], 0] > 0 > sfm.mean[sfm.landmarks68[36], 0]  # x towards the subject's left


def test_sfm_winding_normals_point_at_the_viewer(sfm):
    v, f = sfm.mean, sfm.triangles
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (normals[:, 2] > 0).mean() > 0.95
    mean_normal = normals.sum(axis=0) / np.linalg.norm(normals, axis=1).sum()
    assert mean_normal[2] > 0.5


def test_sfm_uv_in_unit_square_v_up_and_one_to_one(sfm):
    uv, v = sfm.uv, sfm.mean
    assert uv.min() >= 0 and uv.max() <= 1
    assert np.corrcoef(uv[:, 1], v[:, 1])[0, 1] > 0.99  # v grows upward with y
    assert np.corrcoef(uv[:, 0], v[:, 0])[0, 1] > 0.98  # u left to right across the face
    assert sfm.uv[sfm.landmarks68[36], 0] < sfm.uv[sfm.landmarks68[45], 0]
    areas = signed_areas(uv, sfm.triangles)
    assert (areas <= 0).sum() == 0  # no flipped or degenerate triangle, border included
    assert len(np.unique(uv, axis=0)) == len(uv)


def test_basis_reproduces_eos_draw_sample(sfm):
    shape_model = eos.morphablemodel.load_model(str(MODEL)).get_shape_model()
    rng = np.random.default_rng(0)
    assert np.allclose(sfm.basis.T @ sfm.basis, np.eye(63), atol=1e-5)
    for alpha in [np.zeros(63), rng.standard_normal(63), 3 * rng.standard_normal(63), np.eye(63)[62]]:
        ours = sfm.mean.ravel() + sfm.basis @ (alpha * sfm.std)
        theirs = np.asarray(shape_model.draw_sample(alpha.tolist()), np.float64).ravel()
        assert np.abs(ours - theirs).max() < 1e-3  # eos computes in float32; shapes are ~100 mm


def test_blendshapes_are_eos_deformations(sfm):
    theirs = eos.morphablemodel.load_blendshapes(str(BLENDSHAPES))
    assert np.array_equal(sfm.blendshapes[3], np.asarray(theirs[3].deformation, np.float64).ravel())


@needs_sfm
def test_mapping_without_tomllib_reads_the_same(monkeypatch, tmp_path):
    """Python 3.10 has no tomllib: the strict subset parser gives the same mapping."""
    expected = parse_landmark_mapping(MAPPING, 3448)
    monkeypatch.setitem(__import__("sys").modules, "tomllib", None)
    with pytest.raises(ImportError):
        import tomllib  # noqa: F401
    got = parse_landmark_mapping(MAPPING, 3448)
    assert np.array_equal(got[0], expected[0]) and all(np.array_equal(got[1][k], expected[1][k]) for k in expected[1])
    bad = tmp_path / "map.txt"
    bad.write_text("[landmark_mappings]\n9 = 33 33\n")
    with pytest.raises(TemplateError, match="not eos's TOML mapping file: cannot parse '9 = 33 33'"):
        parse_landmark_mapping(bad, 3448)


@needs_sfm
def test_model_bin_with_explicit_files_and_bare_bin():
    both = read_eos_model(MODEL, blendshapes=BLENDSHAPES, landmark_mapping=MAPPING, contours=CONTOURS)
    assert both.blendshapes.shape == (6, 3 * 3448) and (both.landmarks68 >= 0).sum() == 50
    bare = read_eos_model(MODEL)
    assert bare.blendshapes.shape == (0, 3 * 3448) and bare.landmarks68 is None and bare.contours is None


@needs_sfm
def test_folder_without_optional_files_notes_them(tmp_path):
    (tmp_path / MODEL.name).symlink_to(MODEL)
    files = read_eos_model(tmp_path)
    assert files.landmarks68 is None and len(files.notes) == 3


# ---- bad input: one TemplateError line naming the file ----

def one_line(exc_info, name: str) -> None:
    message = str(exc_info.value)
    assert "\n" not in message and name in message, message


@pytest.mark.parametrize("content", [b"", np.random.default_rng(0).bytes(50_000), b"[landmark_mappings]\n9 = 33\n"],
                         ids=["empty", "random", "text"])
@pytest.mark.parametrize("kind", ["model", "blendshapes"])
def test_not_an_eos_file(tmp_path, content, kind):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    if kind == "model":
        with pytest.raises(TemplateError, match="eos model|eos cannot read") as e:
            read_eos_model(bad)
    else:
        if not MODEL.is_file():
            pytest.skip(f"the Surrey Face Model is not at {SFM}")
        with pytest.raises(TemplateError, match="blendshapes") as e:
            read_eos_model(MODEL, blendshapes=bad)
    one_line(e, "bad.bin")


@needs_sfm
def test_truncated_model(tmp_path):
    bad = tmp_path / "cut.bin"
    bad.write_bytes(MODEL.read_bytes()[:1_000_000])
    with pytest.raises(TemplateError, match="Failed to read") as e:
        read_eos_model(bad)
    one_line(e, "cut.bin")


@needs_sfm
def test_hostile_size_field_is_contained(tmp_path):
    """A 248 KB blendshapes file claiming a 2 GiB name: unlimited, eos zero-fills 2 GiB and then fails to
    read it; in its address-limited child the allocation itself fails."""
    data = BLENDSHAPES.read_bytes()
    bad = tmp_path / "huge.bin"
    bad.write_bytes(data[:8] + struct.pack("<Q", 2**31) + data[16:])
    with pytest.raises(TemplateError, match="eos cannot read .*bad_alloc") as e:
        read_eos_model(MODEL, blendshapes=bad)
    one_line(e, "huge.bin")


@needs_sfm
def test_eos_segfault_is_contained(tmp_path):
    """A blendshape claiming (-48e6 x 4529) values: eos-py 1.5 dies of SIGSEGV; we raise one line."""
    data = BLENDSHAPES.read_bytes()
    bad = tmp_path / "crash.bin"
    bad.write_bytes(data[:21] + struct.pack("<ii", -48_000_000, 4529) + data[29:])  # rows, cols of "anger"
    with pytest.raises(TemplateError, match=r"eos died reading blendshapes .*exit -11") as e:
        read_eos_model(MODEL, blendshapes=bad)
    one_line(e, "crash.bin")


def test_missing_files(tmp_path):
    with pytest.raises(TemplateError, match="eos model not found") as e:
        read_eos_model(tmp_path / "nope.bin")
    one_line(e, "nope.bin")
    with pytest.raises(TemplateError, match=r"expected one model file \*_shape_\*\.bin") as e:
        read_eos_model(tmp_path)
    one_line(e, str(tmp_path))


@needs_sfm
def test_missing_explicit_mapping(tmp_path):
    with pytest.raises(TemplateError, match="landmark mapping not found") as e:
        read_eos_model(MODEL, landmark_mapping=tmp_path / "ibug.txt")
    one_line(e, "ibug.txt")


@needs_sfm
def test_blendshapes_of_another_vertex_count(tmp_path):
    bad = tmp_path / "small.bin"
    eos.morphablemodel.save_blendshapes([eos.morphablemodel.Blendshape("x", np.zeros(30, np.float32))], str(bad))
    with pytest.raises(TemplateError, match="have 10 vertices, the model .* has 3448") as e:
        read_eos_model(MODEL, blendshapes=bad)
    one_line(e, "small.bin")


@pytest.mark.parametrize("text, match", [
    ("[landmark_mappings]\n9 = 3448\n", "maps to vertex 3448"),
    ("[landmark_mappings]\n9 = -1\n", "maps to vertex -1"),
    ("[landmark_mappings]\n69 = 3\n", "not one of 1..68"),
    ("[landmark_mappings]\n9 = 33 33\n", "not eos's TOML"),
    ("9 = 33\n", "no \\[landmark_mappings\\]"),
    ("[landmark_mappings]\n9 = 1\n[contour_landmarks]\nright = [0]\n", "contour_landmarks.right"),
])
def test_bad_landmark_mapping(tmp_path, text, match):
    bad = tmp_path / "map.txt"
    bad.write_text(text)
    with pytest.raises(TemplateError, match=match) as e:
        parse_landmark_mapping(bad, 3448)
    one_line(e, "map.txt")


@needs_sfm
def test_bad_contours(tmp_path):
    bad = tmp_path / "contours.json"
    bad.write_text('{"model_contour": {"right_contour": [1, 5000], "left_contour": [2]}}')
    with pytest.raises(TemplateError, match="right_contour must list vertices 0..3447") as e:
        read_eos_model(MODEL, contours=bad)
    one_line(e, "contours.json")
    shutil.copy(MAPPING, tmp_path / "m.txt")
    (tmp_path / "m.txt").chmod(0o644)
    with pytest.raises(TemplateError, match="not eos's contour file") as e:
        read_eos_model(MODEL, landmark_mapping=tmp_path / "m.txt", contours=tmp_path / "m.txt")
    one_line(e, "m.txt")
