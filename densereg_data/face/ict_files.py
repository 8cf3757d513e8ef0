"""Reading ICT-FaceKit's files (ICT Face Model Light, MIT licence) as the kit distributes them.

`read_ict_facekit(path)` reads the kit's folder (the one holding ``FaceXModel/``, or ``FaceXModel/``
itself) or the zip GitHub serves (``ICT-FaceKit-master/FaceXModel/...``), streaming zip members
without extracting them. It returns `IctFiles`: the neutral mesh triangulated, its U-V per corner, the
identity and expression morph targets as displacements from the neutral mesh, and the facts the kit's
README.md lists (region ranges, the 68 Multi-PIE landmark vertices, the alternative jawlines).

Convention: ICT-FaceKit frame (as the files are; nothing is converted here)
    Vertices ``(V, 3)`` float64 in centimetres (the README states no unit; the head is about 25 wide
    and the face 29 high, so centimetres). Right-handed, y up, x towards the subject's left, the face
    looks along +z (the nose tip has the largest z). Polygons are counter-clockwise seen from outside;
    fan triangulation keeps that order. U-V is per corner (``faces_uv`` into ``uv``), v upward; the
    face area lies in the unit square, the other parts in further tiles along u (u up to 7).

Convention: morph targets
    Each ``identityNNN.obj`` and expression ``.obj`` is a whole mesh with the neutral topology; its
    displacement is (its vertices - the neutral vertices), and a face is neutral + sum_k w_k * d_k.
    Region ranges are half-open Python ranges (the README writes them inclusive, ``[0:9408]``).

Every problem with the input (missing, unreadable, oversized, corrupt, inconsistent) raises one
`TemplateError` line naming the file.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from densereg_data.errors import TemplateError
from densereg_data.io.untrusted import read_capped, regular_file

log = logging.getLogger(__name__)

__all__ = ["ICT_EXPRESSIONS", "N_IDENTITIES", "IctFiles", "IctRegion", "ObjMesh", "parse_obj", "parse_readme", "read_ict_facekit"]

#: Caps on what we read: one OBJ or README (the kit's OBJs are ~2.6 MB), the zip, its member count.
MAX_FILE_BYTES = 64 * 2**20
MAX_ZIP_BYTES = 4 * 2**30
MAX_ZIP_MEMBERS = 10_000
#: The kit distributes identity000.obj ... identity099.obj.
N_IDENTITIES = 100
NEUTRAL = "generic_neutral_mesh.obj"
#: The 53 ARKit-named expressions, as FaceXModel/vertex_indices.json lists them under "expressions"
#: (the folder also holds cheekRaiser_L/R and PupilDilate_L/R, which that list leaves out).
ICT_EXPRESSIONS = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R",
    "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward",
    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L", "mouthDimple_R", "mouthFrown_L",
    "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L",
    "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
)
#: README section -> result key for the index lists of "### Facial Landmarks".
_README_LISTS = {"Multi-PIE 68 point": "landmarks68", "Right jawline": "right", "Left jawline": "left",
                 "Right extended jawline": "right_extended", "Left extended jawline": "left_extended"}
_LIST_LENGTHS = {"landmarks68": 68, "right": 8, "left": 8, "right_extended": 17, "left_extended": 17}
_TABLE_ROW = re.compile(r"^\|[^|\n]*\|\s*([^|]+?)\s*\|\s*\[(\d+):(\d+)\]\s*\|\s*\[(\d+):(\d+)\]\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|",
                        re.MULTILINE)
_V_LINE = re.compile(rb"^v[ \t]+([^\r\n]*)", re.MULTILINE)


@dataclass(frozen=True)
class IctRegion:
    """A part of the kit's mesh: vertex and polygon index ranges (half-open; polygons as in the OBJ)."""

    vertices: range
    polygons: range


@dataclass(frozen=True, eq=False)
class IctFiles:
    """ICT-FaceKit's files, read (frame and units: the module's Convention).

    vertices: (V, 3) float64 cm, the neutral mesh; faces: (F, 3) int64, polygons fan-triangulated,
    CCW kept; face_polygon: (F,) int64, the OBJ polygon each triangle comes from; uv: (T, 2) float64
    (T is not V: U-V is per corner); faces_uv: (F, 3) int64 into uv; identity: (K, V, 3) float32 cm,
    identity morph targets minus the neutral mesh, named by identity_names; expressions: (E, V, 3)
    float32 cm, named by expression_names (ARKit names); landmarks68: (68,) int64, the Multi-PIE 68
    vertex indices; jawlines: "right", "left" (substitutes for landmarks 0-7 and 9-16),
    "right_extended", "left_extended" -> (n,) int64 vertex indices; regions: README name ("Face",
    "Full face area", "Narrow face area", "Teeth", ...) -> IctRegion; notes: what was missing or skipped.
    """

    source: str
    vertices: np.ndarray
    faces: np.ndarray
    face_polygon: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray
    identity: np.ndarray
    identity_names: tuple[str, ...]
    expressions: np.ndarray
    expression_names: tuple[str, ...]
    landmarks68: np.ndarray
    jawlines: Mapping[str, np.ndarray]
    regions: Mapping[str, IctRegion]
    notes: tuple[str, ...] = ()
    units: str = "cm"

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        checks = [(v.ndim == 2 and v.shape[1] == 3, "vertices must be (V, 3)", v.shape),
                  (f.ndim == 2 and f.shape[1] == 3 and self.faces_uv.shape == f.shape, "faces, faces_uv must be (F, 3)",
                   (f.shape, self.faces_uv.shape)),
                  (self.face_polygon.shape == (len(f),), "face_polygon must be (F,)", self.face_polygon.shape),
                  (self.uv.ndim == 2 and self.uv.shape[1] == 2, "uv must be (T, 2)", self.uv.shape),
                  (self.identity.shape == (len(self.identity_names),) + v.shape, "identity must be (K, V, 3)",
                   self.identity.shape),
                  (self.expressions.shape == (len(self.expression_names),) + v.shape, "expressions must be (E, V, 3)",
                   self.expressions.shape),
                  (self.landmarks68.shape == (68,), "landmarks68 must be (68,)", self.landmarks68.shape)]
        for ok, what, got in checks:
            if not ok:
                raise TemplateError(f"ICT-FaceKit {self.source}: {what}, got {got}")
        indices = [self.landmarks68, *self.jawlines.values()]
        if any(a.size and (a.min() < 0 or a.max() >= len(v)) for a in indices):
            raise TemplateError(f"ICT-FaceKit {self.source}: a landmark or jawline index is outside 0..{len(v) - 1}")
        for a in (v, f, self.face_polygon, self.uv, self.faces_uv, self.identity, self.expressions, *indices):
            a.setflags(write=False)

    def region_faces(self, name: str) -> np.ndarray:
        """(n,) int64 indices into `faces` of the triangles of README region `name` ("Full face area")."""
        if name not in self.regions:
            raise TemplateError(f"unknown ICT-FaceKit region {name!r}; valid: {', '.join(self.regions)}")
        r = self.regions[name].polygons
        return np.flatnonzero((self.face_polygon >= r.start) & (self.face_polygon < r.stop))


@dataclass(frozen=True, eq=False)
class ObjMesh:
    """An OBJ's geometry: vertices (V, 3) float64; polygons as fan triangles faces (F, 3) int64 with
    face_polygon (F,) int64; uv (T, 2) float64 and faces_uv (F, 3) int64 (T = 0 and faces_uv None
    without U-V)."""

    vertices: np.ndarray
    faces: np.ndarray
    face_polygon: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray | None


def _numbers(lines: list[bytes], width: int, name: str, what: str) -> np.ndarray:
    """(n, width) float64 from the payloads of n `what` lines ("v", "vt"), finite, one error line if not."""
    tokens = b" ".join(lines).split()
    try:
        if len(tokens) != width * len(lines):
            raise ValueError
        out = np.array(tokens, dtype=np.float64).reshape(len(lines), width)
        if np.isfinite(out).all():
            return out
    except ValueError:
        pass
    for k, line in enumerate(lines):
        parts = line.split()
        try:
            ok = len(parts) == width and all(np.isfinite(float(p)) for p in parts)
        except ValueError:
            ok = False
        if not ok:
            raise TemplateError(f"bad {what} line in {name} ({what} #{k + 1}): expected {width} finite numbers, "
                                f"got {line.decode(errors='replace')!r}") from None
    raise TemplateError(f"bad {what} lines in {name}")  # not reached: some line failed above


def parse_obj(data: bytes, name: str, *, faces: bool = True) -> ObjMesh:
    """The `v` (exactly 3 numbers), `vt` (2, or 3 with w) and `f` statements of an OBJ file's bytes;
    other statements are ignored.

    Faces take `v`, `v/vt`, `v/vt/vn` or `v//vn` corners, 1-based or negative (relative) indices;
    a polygon of n >= 3 corners becomes n - 2 fan triangles (0, i, i + 1), keeping its winding. With
    faces=False only the vertices are read (faces (0, 3)). `name` names the file in errors.
    """
    vertices = _numbers(_V_LINE.findall(data), 3, name, "v")
    if not faces:
        empty = np.zeros((0, 3), np.int64)
        return ObjMesh(vertices, empty, np.zeros(0, np.int64), np.zeros((0, 2)), None)
    try:
        lines = data.decode("utf-8").split("\n")  # the same lines as _V_LINE's
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{name} is not a text OBJ file (byte {exc.start} is not UTF-8)") from None
    vt_lines, corners, counts, seen = [], [], [], []  # seen: (vertices, vts) defined before each polygon
    n_v = 0
    for number, line in enumerate(lines, 1):
        head = line[:3]
        if head.startswith(("v ", "v\t")):
            n_v += 1
        elif head.startswith(("vt ", "vt\t")):
            vt_lines.append(line[3:].encode())
        elif head.startswith(("f ", "f\t")):
            tokens = line.split()[1:]
            if len(tokens) < 3:
                raise TemplateError(f"bad face in {name} line {number}: {len(tokens)} corners, need at least 3")
            corners.append((number, tokens))
            counts.append(len(tokens))
            seen.append((n_v, len(vt_lines)))
    # vt may carry a third number (w): U-V is its first two
    uv = _numbers([b" ".join(l.split()[:2]) for l in vt_lines], 2, name, "vt") if vt_lines else np.zeros((0, 2))
    v_idx, vt_idx, with_uv = [], [], set()
    for number, tokens in corners:
        for token in tokens:
            parts = token.split("/")
            try:
                v_idx.append(int(parts[0]))
                vt_idx.append(int(parts[1]) if len(parts) > 1 and parts[1] else 0)
            except ValueError:
                raise TemplateError(f"bad face corner {token!r} in {name} line {number}") from None
            with_uv.add(len(parts) > 1 and bool(parts[1]))
    if len(with_uv) > 1:
        raise TemplateError(f"{name}: some face corners have U-V indices and some do not")
    count = np.asarray(counts, np.int64)
    bound = np.asarray(seen, np.int64).reshape(-1, 2)
    flat = []  # per corner, 0-based: vertex and U-V indices
    for which, raw in [(0, v_idx), (1, vt_idx)][: 2 if True in with_uv else 1]:
        idx, n = np.asarray(raw, np.int64), np.repeat(bound[:, which], count)
        idx = np.where(idx < 0, n + idx, idx - 1)
        bad = np.flatnonzero((idx < 0) | (idx >= n))
        if bad.size:
            line = corners[int(np.searchsorted(np.cumsum(count), bad[0], side="right"))][0]
            raise TemplateError(f"{('vertex', 'U-V')[which]} index out of range in {name} line {line} "
                                f"(defined so far: {int(n[bad[0]])})")
        flat.append(idx)
    # fan: polygon corners c0..c(n-1) -> triangles (c0, c(i+1), c(i+2)) for i in 0..n-3
    n_tris = count - 2
    poly = np.repeat(np.arange(len(count), dtype=np.int64), n_tris)
    first = np.repeat(np.cumsum(count) - count, n_tris)
    step = np.arange(len(poly)) - np.repeat(np.cumsum(n_tris) - n_tris, n_tris)
    corner = np.stack([first, first + step + 1, first + step + 2], axis=1).astype(np.int64)
    faces_v = flat[0][corner] if flat else np.zeros((0, 3), np.int64)
    faces_t = flat[1][corner] if len(flat) == 2 else None
    return ObjMesh(vertices, faces_v, poly, uv, faces_t)


class _Files:
    """The kit's files by name inside FaceXModel/ (a folder or a zip), each read with a size cap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            folder = path / "FaceXModel" if (path / "FaceXModel").is_dir() else path
            if not (folder / NEUTRAL).exists():
                raise TemplateError(f"no FaceXModel/{NEUTRAL} in ICT-FaceKit folder {path}")
            self.folder, self.names = folder, {p.name for p in folder.iterdir()}
            self.readme = folder.parent / "README.md" if (folder.parent / "README.md").exists() else None
            return
        regular_file(path, "ICT-FaceKit folder or zip", TemplateError, MAX_ZIP_BYTES)
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise TemplateError(f"ICT-FaceKit file is neither a folder nor a readable zip: {path} ({exc})") from None
        if len(infos) > MAX_ZIP_MEMBERS:
            raise TemplateError(f"ICT-FaceKit zip has more than {MAX_ZIP_MEMBERS} members ({len(infos)}): {path}")
        for info in infos:
            member = PurePosixPath(info.filename.replace("\\", "/"))
            if member.is_absolute() or ".." in member.parts or ":" in info.filename:
                raise TemplateError(f"unsafe member name {info.filename!r} in ICT-FaceKit zip {path}")
        neutral = [i.filename for i in infos if PurePosixPath(i.filename).name == NEUTRAL]
        if len(neutral) != 1:
            raise TemplateError(f"expected one FaceXModel/{NEUTRAL} in ICT-FaceKit zip {path}, found {len(neutral)}")
        prefix = neutral[0][: -len(NEUTRAL)]
        self.members = {i.filename[len(prefix):]: i for i in infos
                        if i.filename.startswith(prefix) and "/" not in i.filename[len(prefix):] and not i.is_dir()}
        self.names = set(self.members)
        top = str(PurePosixPath(prefix).parent) + "/" if "/" in prefix.rstrip("/") else ""
        self.readme = next((i for i in infos if i.filename == top + "README.md"), None)

    def where(self, name: str) -> str:
        return f"{self.path}!{self.members[name].filename}" if self.zip else str(self.folder / name)

    def read(self, name: str) -> bytes:
        if self.zip is None:
            return read_capped(self.folder / name, "ICT-FaceKit file", TemplateError, MAX_FILE_BYTES)
        if name not in self.members:
            raise TemplateError(f"ICT-FaceKit file not found: FaceXModel/{name} in {self.path}")
        return self._member(self.members[name])

    def _member(self, info: zipfile.ZipInfo) -> bytes:
        where = f"{self.path}!{info.filename}"
        if info.file_size > MAX_FILE_BYTES:  # declared size; the read below also stops at the cap
            raise TemplateError(f"ICT-FaceKit file is larger than {MAX_FILE_BYTES} bytes ({info.file_size}): {where}")
        try:
            with self.zip.open(info) as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise TemplateError(f"cannot read ICT-FaceKit file {where}: {exc}") from None
        if len(data) > MAX_FILE_BYTES:
            raise TemplateError(f"ICT-FaceKit file is larger than {MAX_FILE_BYTES} bytes: {where}")
        return data

    def read_readme(self) -> str | None:
        if self.readme is None:
            return None
        data = (self._member(self.readme) if self.zip else
                read_capped(self.readme, "ICT-FaceKit README", TemplateError, MAX_FILE_BYTES))
        return data.decode("utf-8", errors="replace")


def parse_readme(text: str, where: str) -> tuple[dict[str, np.ndarray], dict[str, IctRegion]]:
    """The index lists (landmarks68, right, left, right_extended, left_extended -> (n,) int64) and the
    region tables (name -> IctRegion) of the kit's README.md; one TemplateError line if either is off."""
    lists: dict[str, np.ndarray] = {}
    for title, key in _README_LISTS.items():
        m = re.search(rf"^{re.escape(title)}[^\n]*:\s*\n\s*\n((?:[ \t]+[\d, \t]+\n?)+)", text, re.MULTILINE)
        values = np.array(re.findall(r"\d+", m.group(1)), dtype=np.int64) if m else np.zeros(0, np.int64)
        if len(values) != _LIST_LENGTHS[key]:
            raise TemplateError(f"ICT-FaceKit README {where}: expected {_LIST_LENGTHS[key]} indices after "
                                f"'{title}', found {len(values)}")
        lists[key] = values
    regions: dict[str, IctRegion] = {}
    for m in _TABLE_ROW.finditer(text):
        name, (v0, v1, p0, p1, nv, nf) = m.group(1), map(int, m.groups()[1:])
        if v1 - v0 + 1 != nv or p1 - p0 + 1 != nf:
            raise TemplateError(f"ICT-FaceKit README {where}: row {name!r} counts {nv}, {nf} disagree with its ranges")
        regions[name] = IctRegion(range(v0, v1 + 1), range(p0, p1 + 1))
    if "Full face area" not in regions:
        raise TemplateError(f"ICT-FaceKit README {where}: no 'Full face area' row in its tables")
    return lists, regions


def _morphs(files: _Files, names: Sequence[str], neutral: ObjMesh, neutral_faces: bytes) -> np.ndarray:
    """(n, V, 3) float32 displacements (target - neutral) of the OBJ files `names` (without .obj)."""
    out = np.empty((len(names),) + neutral.vertices.shape, np.float32)
    for k, name in enumerate(names):
        data, where = files.read(name + ".obj"), files.where(name + ".obj")
        mesh = parse_obj(data, where, faces=False)
        if mesh.vertices.shape != neutral.vertices.shape:
            raise TemplateError(f"morph target {where} has {len(mesh.vertices)} vertices, the neutral mesh "
                                f"{len(neutral.vertices)}")
        if _face_section(data) != neutral_faces:  # different bytes: compare the parsed topology
            other = parse_obj(data, where)
            if not np.array_equal(other.faces, neutral.faces):
                raise TemplateError(f"morph target {where} has faces other than the neutral mesh's")
        out[k] = mesh.vertices - neutral.vertices
    return out


def _face_section(data: bytes) -> bytes:
    start = data.find(b"\nf ")
    return data[start:] if start >= 0 else b""


def read_ict_facekit(path, *, max_identity: int | None = None, expressions: bool | Sequence[str] = True) -> IctFiles:
    """Read ICT-FaceKit from its folder (holding FaceXModel/, or FaceXModel/ itself) or its zip.

    max_identity: read at most this many identity modes (identity000, identity001, ...); None: all
    there are (the kit has 100; fewer load as they are, with a note). expressions: True for the 53 of
    `ICT_EXPRESSIONS` (those present), False for none, or a sequence of expression file names (without
    .obj, each required). Raises TemplateError (one line naming the file) for any bad input.
    """
    files = _Files(Path(path).expanduser())
    try:
        return _read(files, max_identity, expressions)
    finally:
        if files.zip is not None:
            files.zip.close()


def _read(files: _Files, max_identity: int | None, expressions: bool | Sequence[str]) -> IctFiles:
    notes: list[str] = []
    data = files.read(NEUTRAL)
    neutral = parse_obj(data, files.where(NEUTRAL))
    if neutral.faces_uv is None:
        raise TemplateError(f"the neutral mesh {files.where(NEUTRAL)} has no U-V (vt) indices")
    wanted = N_IDENTITIES if max_identity is None else max(0, int(max_identity))
    identity_names = []
    while len(identity_names) < wanted and f"identity{len(identity_names):03d}.obj" in files.names:
        identity_names.append(f"identity{len(identity_names):03d}")
    if len(identity_names) < min(wanted, N_IDENTITIES):
        notes.append(f"found {len(identity_names)} identity files (identity000 on), the kit has {N_IDENTITIES}: "
                     f"the identity basis has {len(identity_names)} components")
    if expressions is True:
        expression_names = [e for e in ICT_EXPRESSIONS if e + ".obj" in files.names]
        if len(expression_names) < len(ICT_EXPRESSIONS):
            missing = sorted(set(ICT_EXPRESSIONS) - set(expression_names))
            notes.append(f"{len(missing)} of the kit's {len(ICT_EXPRESSIONS)} expressions missing: {', '.join(missing)}")
    else:
        expression_names = list(expressions or [])
        unknown = [e for e in expression_names if e + ".obj" not in files.names or e.startswith("identity")]
        if unknown:
            raise TemplateError(f"ICT-FaceKit expression file not found: {unknown[0]}.obj in {files.path}")
    readme = files.read_readme()
    if readme is None:
        raise TemplateError(f"no README.md beside FaceXModel/ in {files.path}: it lists the landmark vertices "
                            f"and region ranges")
    lists, regions = parse_readme(readme, files.path.name + " README.md")
    n = len(neutral.vertices)
    if "All" in regions and regions["All"].vertices != range(n):
        raise TemplateError(f"ICT-FaceKit README lists {len(regions['All'].vertices)} vertices, the neutral mesh "
                            f"{files.where(NEUTRAL)} has {n}")
    section = _face_section(data)
    result = IctFiles(
        source=str(files.path),
        vertices=neutral.vertices, faces=neutral.faces, face_polygon=neutral.face_polygon,
        uv=neutral.uv, faces_uv=neutral.faces_uv,
        identity=_morphs(files, identity_names, neutral, section), identity_names=tuple(identity_names),
        expressions=_morphs(files, expression_names, neutral, section), expression_names=tuple(expression_names),
        landmarks68=lists.pop("landmarks68"), jawlines=lists, regions=regions, notes=tuple(notes))
    for note in notes:
        log.info("ICT-FaceKit %s: %s", files.path, note)
    return result
