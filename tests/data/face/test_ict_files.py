"""ICT-FaceKit's files: the OBJ reader on tiny synthetic kits, and the real zip by path (skipped when absent)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from densereg_data.errors import TemplateError
from densereg_data.face import ict_files
from densereg_data.face.ict_files import parse_obj, read_ict_facekit

KIT_ZIP = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "face-models" / "ict-facekit.zip"
PREFIX = "ICT-FaceKit-master/"
SOME_EXPRESSIONS = ["jawOpen", "eyeBlink_L"]

# A tiny kit: a unit quad (two triangles) with per-corner U-V, a README the reader can parse.
QUAD = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl M\nf 1/1 2/2 3/3 4/4\n"
README = "\n".join([
    "| Ordinal# | Geometry name | Vertex indices | Polygon indices | #Vertices | #Faces |",
    "| n/a | All | [0:3] | [0:0] | 4 | 1 |",
    "| #0 | Full face area | [0:3] | [0:0] | 4 | 1 |",
    "", "Multi-PIE 68 point facial landmarks indices:", "", "    " + ", ".join(["1"] * 68), "",
    "Right jawline (substitutes 0-7 in Multi PIE):", "", "    " + ", ".join(["0"] * 8), "",
    "Left jawline (substitutes 9-16 in Multi PIE):", "", "    " + ", ".join(["2"] * 8), "",
    "Right extended jawline (superset of right jawline):", "", "    " + ", ".join(["0"] * 17), "",
    "Left extended jawline (superset of left jawline):", "", "    " + ", ".join(["2"] * 17), "", ""])


def tiny_kit(root: Path, *, identities: int = 2, identity000: str | None = None, neutral: str = QUAD) -> Path:
    """A kit folder under root: README.md and FaceXModel/ (neutral, identities, jawOpen)."""
    folder = root / "kit" / "FaceXModel"
    folder.mkdir(parents=True)
    (root / "kit" / "README.md").write_text(README)
    (folder / "generic_neutral_mesh.obj").write_text(neutral)
    for k in range(identities):
        (folder / f"identity{k:03d}.obj").write_text(QUAD.replace("v 1 1 0", f"v 1 1 {k + 1}"))
    if identity000 is not None:
        (folder / "identity000.obj").write_text(identity000)
    (folder / "jawOpen.obj").write_text(QUAD.replace("v 0 0 0", "v 0 -1 0"))
    return root / "kit"


def zip_of(folder: Path, out: Path, extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, PREFIX + str(p.relative_to(folder)))
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return out


# ---- the OBJ reader and the tiny kit ----

def test_fan_triangulation_keeps_order_and_corner_uv():
    mesh = parse_obj(QUAD.encode(), "quad.obj")
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert mesh.faces_uv.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert mesh.face_polygon.tolist() == [0, 0]
    assert mesh.faces.dtype == np.int64 and mesh.vertices.dtype == np.float64


def test_corner_forms_and_negative_indices():
    head = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\n"
    for face in ("f 1 2 3 4", "f 1//1 2//1 3//1 4//1", "f -4 -3 -2 -1", "f 1/1/1 2/1/1 3/1/1 4/1/1"):
        text = head + ("vt 0 0\n" if "/1/" in face else "") + face + "\n"
        assert parse_obj(text.encode(), "x.obj").faces.tolist() == [[0, 1, 2], [0, 2, 3]], face


def test_per_corner_uv_is_not_merged():
    text = QUAD + "vt 0.5 0.5\nf 3/5 4/4 1/1\n"  # vertex 3 (index 2) with a second U-V
    mesh = parse_obj(text.encode(), "x.obj")
    assert mesh.uv.shape == (5, 2) and mesh.faces_uv[2].tolist() == [4, 3, 0]


def test_tiny_kit_folder_and_zip(tmp_path):
    folder = tiny_kit(tmp_path)
    a = read_ict_facekit(folder, expressions=["jawOpen"])
    b = read_ict_facekit(zip_of(folder, tmp_path / "kit.zip"), expressions=["jawOpen"])
    assert a.identity.shape == (2, 4, 3) and a.identity.dtype == np.float32
    assert a.identity[1, 2].tolist() == [0, 0, 2] and a.expressions[0, 0].tolist() == [0, -1, 0]
    assert a.regions["Full face area"].vertices == range(4) and a.landmarks68.tolist() == [1] * 68
    for key in ("vertices", "faces", "uv", "faces_uv", "identity", "expressions", "landmarks68"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_fewer_identity_files_load_with_a_note(tmp_path, caplog):
    folder = tiny_kit(tmp_path, identities=3)
    with caplog.at_level(logging.INFO, logger="densereg_data.face.ict_files"):
        kit = read_ict_facekit(folder / "FaceXModel", expressions=False)
    assert kit.identity_names == ("identity000", "identity001", "identity002")
    assert kit.identity.shape[0] == 3 and "found 3 identity files" in kit.notes[0]
    assert "found 3 identity files" in caplog.text


@pytest.mark.parametrize("identity000, match", [
    ("v 0 0 0\nv 1 x 0\nv 1 1 0\nv 0 1 0\n", r"bad v line in .*identity000\.obj \(v #2\)"),
    ("v 0 0 0\nv 1 0 0\nv 1 1 0\n", r"identity000\.obj has 3 vertices, the neutral mesh 4"),
    (QUAD.replace("f 1/1 2/2 3/3 4/4", "f 1/1 2/2 4/4"), r"identity000\.obj has faces other than the neutral"),
])
def test_bad_morph_target_is_one_line(tmp_path, identity000, match):
    folder = tiny_kit(tmp_path, identity000=identity000)
    with pytest.raises(TemplateError, match=match):
        read_ict_facekit(folder, expressions=False)


@pytest.mark.parametrize("neutral, match", [
    (QUAD.replace("f 1/1 2/2 3/3 4/4", "f 1/1 2/2 9/3"), r"vertex index out of range in .*neutral_mesh\.obj line 10"),
    (QUAD.replace("f 1/1 2/2 3/3 4/4", "f 1/1 2/9 3/3"), r"U-V index out of range in .*neutral_mesh\.obj line 10"),
    (QUAD.replace("f 1/1 2/2 3/3 4/4", "f 1/1 2/2"), r"bad face in .*neutral_mesh\.obj line 10: 2 corners"),
    (QUAD.replace("f 1/1 2/2 3/3 4/4", "f 1/1 2/a 3/3"), r"bad face corner '2/a' in .*neutral_mesh\.obj line 10"),
    (QUAD.replace("vt 1 1", "vt 1 nan"), r"bad vt line in .*neutral_mesh\.obj"),
    (QUAD.replace("f 1/1 2/2 3/3 4/4", "f 1 2 3 4"), r"neutral_mesh\.obj has no U-V"),
])
def test_corrupt_neutral_is_one_line(tmp_path, neutral, match):
    folder = tiny_kit(tmp_path, neutral=neutral)
    with pytest.raises(TemplateError, match=match):
        read_ict_facekit(folder, expressions=False)


def test_missing_inputs_are_one_line(tmp_path):
    with pytest.raises(TemplateError, match=r"ICT-FaceKit folder or zip not found: .*nowhere"):
        read_ict_facekit(tmp_path / "nowhere")
    folder = tiny_kit(tmp_path)
    with pytest.raises(TemplateError, match=r"expression file not found: mouthSmile_L\.obj"):
        read_ict_facekit(folder, expressions=["mouthSmile_L"])
    (folder / "README.md").unlink()
    with pytest.raises(TemplateError, match=r"no README\.md beside FaceXModel/"):
        read_ict_facekit(folder, expressions=False)
    (folder / "FaceXModel" / "generic_neutral_mesh.obj").unlink()
    with pytest.raises(TemplateError, match=r"no FaceXModel/generic_neutral_mesh\.obj in ICT-FaceKit folder"):
        read_ict_facekit(folder)


def test_bad_zips_are_one_line(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(TemplateError, match=r"neither a folder nor a readable zip: .*fake\.zip"):
        read_ict_facekit(fake)
    folder = tiny_kit(tmp_path)
    evil = zip_of(folder, tmp_path / "evil.zip", {"../escape.obj": QUAD})
    with pytest.raises(TemplateError, match=r"unsafe member name '\.\./escape\.obj'"):
        read_ict_facekit(evil)


def test_size_cap_in_folder_and_zip(tmp_path, monkeypatch):
    folder = tiny_kit(tmp_path)
    archive = zip_of(folder, tmp_path / "kit.zip")
    monkeypatch.setattr(ict_files, "MAX_FILE_BYTES", 60)
    with pytest.raises(TemplateError, match=r"larger than 60 bytes .*generic_neutral_mesh\.obj"):
        read_ict_facekit(folder)
    with pytest.raises(TemplateError, match=r"larger than 60 bytes \(\d+\): .*kit\.zip!.*generic_neutral_mesh\.obj"):
        read_ict_facekit(archive)


# ---- the real kit (by path) ----

@pytest.fixture(scope="module")
def kit_zip():
    if not KIT_ZIP.is_file():
        pytest.skip(f"ICT-FaceKit zip not found at {KIT_ZIP} (see ../shared/data/face-models/README.md)")
    return KIT_ZIP


@pytest.fixture(scope="module")
def kit(kit_zip):
    return read_ict_facekit(kit_zip, max_identity=5, expressions=SOME_EXPRESSIONS)


def test_real_zip_and_extracted_folder_agree(kit, kit_zip, tmp_path):
    names = ["README.md", "FaceXModel/generic_neutral_mesh.obj"] + [
        f"FaceXModel/{n}.obj" for n in [f"identity{k:03d}" for k in range(5)] + SOME_EXPRESSIONS]
    with zipfile.ZipFile(kit_zip) as z:
        for name in names:
            z.extract(PREFIX + name, tmp_path)
    folder = read_ict_facekit(tmp_path / PREFIX, expressions=SOME_EXPRESSIONS)
    assert folder.identity.shape == (5, 26719, 3) and "found 5 identity files" in folder.notes[0]
    assert kit.notes == ()
    for key in ("vertices", "faces", "face_polygon", "uv", "faces_uv", "identity", "expressions", "landmarks68"):
        assert np.array_equal(getattr(kit, key), getattr(folder, key)), key
    assert kit.jawlines.keys() == folder.jawlines.keys() and kit.regions == folder.regions


def test_real_mesh_sizes_and_regions(kit):
    assert kit.vertices.shape == (26719, 3) and kit.uv.shape == (28911, 2)  # U-V per corner: T != V
    assert kit.faces.shape == (2 * 25836 + 548, 3)  # 25,836 quads and 548 triangles
    assert kit.face_polygon.max() == 26383 and kit.expression_names == tuple(SOME_EXPRESSIONS)
    face = kit.regions["Full face area"]
    assert face == kit.regions["Face"] and face.vertices == range(9409) and face.polygons == range(9230)
    assert kit.regions["Narrow face area"].vertices == range(6706)
    assert kit.faces[kit.region_faces("Full face area")].max() == 9408
    assert 20 < np.ptp(kit.vertices[:, 0]) < 30  # head width in cm


def test_real_landmarks_in_the_face_area(kit):
    assert kit.landmarks68.shape == (68,) and len(set(kit.landmarks68.tolist())) == 68
    assert kit.landmarks68.max() < 9409
    assert {k: len(v) for k, v in kit.jawlines.items()} == {"right": 8, "left": 8, "right_extended": 17,
                                                           "left_extended": 17}
    for side in ("right", "left"):
        assert set(kit.jawlines[side]) <= set(kit.jawlines[side + "_extended"])
        assert np.all(kit.jawlines[side] < 9409)
    # frame: landmark 0 (subject's right jaw) at -x, 16 at +x, chin (8) below the nose tip (30), which looks along +z
    v = kit.vertices[kit.landmarks68]
    assert v[0, 0] < 0 < v[16, 0] and v[8, 1] < v[30, 1] and v[30, 2] > v[0, 2]


def test_real_winding_ccw_from_the_front(kit):
    faces = kit.faces[kit.region_faces("Full face area")]
    v = kit.vertices
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert len(np.unique(edges, axis=0)) == len(edges)  # consistently oriented: no directed edge twice
    normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    assert normals[:, 2].sum() > 0.3 * np.linalg.norm(normals, axis=1).sum()  # net: towards +z
    tip = int(np.argmax(v[:9409, 2]))
    assert np.all(normals[(faces == tip).any(axis=1), 2] > 0)  # around the nose tip: all towards +z


def test_real_uv_face_area_in_unit_square_and_ccw(kit):
    corners = kit.uv[kit.faces_uv[kit.region_faces("Full face area")]]  # (n, 3, 2)
    assert corners.min() >= 0 and corners.max() <= 1
    d1, d2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    assert np.all(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] > 0)  # CCW in U-V too (u ~ x, v ~ y)
    assert kit.uv[:, 0].max() > 1  # other parts lie in further U-V tiles along u


def test_real_displacements(kit):
    assert kit.identity.dtype == np.float32 and kit.identity.shape == (5, 26719, 3)
    assert 0.01 < np.abs(kit.identity).max() < 5  # cm: morph target minus neutral, not whole meshes
    jaw = kit.expressions[0]
    assert np.linalg.norm(jaw[kit.landmarks68[8]]) > 0.5 and jaw[kit.landmarks68[8], 1] < 0  # jawOpen lowers the chin
