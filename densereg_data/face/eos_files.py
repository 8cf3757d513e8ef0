"""Reading eos-format morphable models (the Surrey Face Model, and BFM 2009/2017 or the LYHM after eos's
own conversion scripts) through eos-py, as numpy arrays.

`read_eos_model(path)` reads eos's ``share/`` folder (or a model ``.bin`` with the other files named) and
returns `EosFiles`: mean shape, triangles, U-V, the identity PCA basis, expression blendshapes, the iBUG
68 -> vertex mapping and the model's contour vertices. No eos object is kept, so the result pickles.

Convention: eos model frame (as the files are; only v is converted)
    Vertices ``(V, 3)`` float64 in millimetres (the SFM mean is 149 wide, 188 high, 107 deep).
    Right-handed, y up, x towards the subject's left (iBUG 46, the left outer eye corner, has x = +46),
    the face looks along +z (the nose tip has the largest z). Triangles are counter-clockwise seen from
    the front: their normals point at the viewer (+z; 99% of the SFM's, area-weighted mean normal +z).

Convention: U-V
    eos stores texture coordinates with v DOWNWARD (image rows: the SFM's forehead has small v); here
    v = 1 - v_eos, so v grows upward as in densereg, and u grows left to right across the face (the
    subject's right eye has the smaller u). With v upward every SFM triangle is counter-clockwise in U-V.

Convention: identity basis
    basis (3V, K) float64 has orthonormal columns (eos's orthonormal PCA basis, rows x0 y0 z0 x1 ...);
    std (K,) = sqrt(eigenvalue). A shape is mean + basis @ (alpha * std) with alpha ~ N(0, I), which
    is eos's ``PcaModel.draw_sample(alpha)``. Landmark and contour indices are 0-based (the mapping
    file's iBUG numbers are 1-based; iBUG point i is entry i - 1).

Hostile files: eos (eos-py 1.5) trusts the size fields of its cereal files. A blendshapes file
claiming a 2 GiB name makes it zero-fill 2 GiB before failing, a model claiming 4e8 triangles makes it
touch gigabytes, and a blendshape claiming a negative number of rows kills it with SIGSEGV. So eos
runs in a child process under an address-space limit and a timeout; whatever it raises or however it
dies becomes one `TemplateError` line naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data.errors import BackendUnavailableError, TemplateError
from densereg_data.io.untrusted import read_capped, regular_file

log = logging.getLogger(__name__)

__all__ = ["N_IBUG", "EosFiles", "parse_landmark_mapping", "read_eos_model"]

N_IBUG = 68
#: Caps: a model or blendshapes .bin (BFM 2017 full head is ~0.5 GB), a text or JSON file.
MAX_BIN_BYTES = 2 * 2**30
MAX_TEXT_BYTES = 4 * 2**20
#: The eos child may use this much address space beyond CHILD_MEMORY_PER_BYTE x the file's size.
CHILD_MEMORY_BASE = 2 * 2**30
CHILD_MEMORY_PER_BYTE = 16
CHILD_TIMEOUT_S = 300.0

# The child: cap its address space (where the OS can), load with eos, write plain arrays to an .npz, or print one line and exit 3.
_CHILD = r"""
import sys
import numpy as np
kind, src, out, limit = sys.argv[1:5]
try:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
except (ImportError, ValueError, OSError):
    pass
try:
    import eos
except ImportError as e:
    print(f"ImportError: {e}", file=sys.stderr); sys.exit(4)
try:
    arrays = {}
    if kind == "model":
        m = eos.morphablemodel.load_model(src)
        s = m.get_shape_model()
        arrays["mean"] = np.asarray(s.get_mean(), np.float64)
        arrays["basis"] = np.asarray(s.get_orthonormal_pca_basis(), np.float64)
        arrays["eigenvalues"] = np.asarray(s.get_eigenvalues(), np.float64)
        arrays["triangles"] = np.asarray(s.get_triangle_list(), np.int64).reshape(-1, 3)
        arrays["texcoords"] = np.asarray(m.get_texture_coordinates(), np.float64).reshape(-1, 2)
        shapes = m.get_expression_model() if m.has_separate_expression_model() else None
        arrays["expression"] = np.array("none" if shapes is None else "list" if isinstance(shapes, list) else "pca")
    else:
        shapes = eos.morphablemodel.load_blendshapes(src)
    if isinstance(shapes, list):
        arrays["blendshapes"] = np.array([np.asarray(b.deformation, np.float64).ravel() for b in shapes] or np.zeros((0, 0)))
        arrays["names"] = np.array([b.name for b in shapes], dtype=str).reshape(len(shapes))
    np.savez(out, **arrays)
except BaseException as e:
    print(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300], file=sys.stderr); sys.exit(3)
"""


@dataclass(frozen=True, eq=False)
class EosFiles:
    """An eos-format model, read (frame, units, U-V and basis: the module's Conventions).

    mean: (V, 3) float64 mm; triangles: (F, 3) int64, CCW from the front; uv: (V, 2) float64 in
    [0, 1], v upward, or None when the model has no texture coordinates; basis: (3V, K) float64,
    orthonormal columns; std: (K,) float64, sqrt of eos's eigenvalues; blendshapes: (E, 3V) float64
    mm displacements named by blendshape_names (E may be 0); landmarks68: (68,) int64 vertex of each
    iBUG point, -1 where the mapping has none, or None without a mapping file; contour_landmarks:
    "right", "left" -> (n,) int64 iBUG indices (0-based) of the jaw contour; contours: "right", "left"
    -> (n,) int64 vertex candidates for it, or None; notes: what was missing or skipped.
    """

    source: str
    mean: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray | None
    basis: np.ndarray
    std: np.ndarray
    blendshapes: np.ndarray
    blendshape_names: tuple[str, ...]
    landmarks68: np.ndarray | None = None
    contour_landmarks: Mapping[str, np.ndarray] | None = None
    contours: Mapping[str, np.ndarray] | None = None
    notes: tuple[str, ...] = ()
    units: str = "mm"

    def __post_init__(self) -> None:
        n = len(self.mean)
        checks = [(self.mean.ndim == 2 and self.mean.shape[1] == 3, "mean must be (V, 3)", self.mean.shape),
                  (self.triangles.ndim == 2 and self.triangles.shape[1] == 3, "triangles must be (F, 3)", self.triangles.shape),
                  (self.uv is None or self.uv.shape == (n, 2), "uv must be (V, 2)", None if self.uv is None else self.uv.shape),
                  (self.basis.ndim == 2 and self.basis.shape[0] == 3 * n, "basis must be (3V, K)", self.basis.shape),
                  (self.std.shape == self.basis.shape[1:], "std must be (K,)", self.std.shape),
                  (self.blendshapes.shape == (len(self.blendshape_names), 3 * n), "blendshapes must be (E, 3V)",
                   self.blendshapes.shape),
                  (self.landmarks68 is None or self.landmarks68.shape == (N_IBUG,), "landmarks68 must be (68,)",
                   None if self.landmarks68 is None else self.landmarks68.shape)]
        for ok, what, got in checks:
            if not ok:
                raise TemplateError(f"eos model {self.source}: {what}, got {got} (V = {n})")
        for name, a in (("mean", self.mean), ("basis", self.basis), ("std", self.std), ("blendshapes", self.blendshapes)):
            if not np.isfinite(a).all():
                raise TemplateError(f"eos model {self.source}: {name} has non-finite values")
        if self.triangles.size and (self.triangles.min() < 0 or self.triangles.max() >= n):
            raise TemplateError(f"eos model {self.source}: a triangle index is outside 0..{n - 1}")
        if self.uv is not None and not (np.isfinite(self.uv).all() and self.uv.min() >= 0 and self.uv.max() <= 1):
            raise TemplateError(f"eos model {self.source}: texture coordinates outside [0, 1]")
        for a in (self.mean, self.triangles, self.uv, self.basis, self.std, self.blendshapes, self.landmarks68,
                  *(self.contours or {}).values(), *(self.contour_landmarks or {}).values()):
            if a is not None:
                a.setflags(write=False)


def read_eos_model(path, *, blendshapes=None, landmark_mapping=None, contours=None) -> EosFiles:
    """Read an eos-format model: `path` is eos's ``share/`` folder or a model ``.bin``.

    In a folder the model is the single ``*_shape_*.bin`` (sfm_shape_3448.bin), and blendshapes,
    landmark_mapping and contours default to ``expression_blendshapes_<N>.bin`` (or the single
    ``expression_blendshapes_*.bin``), ``ibug_to_sfm.txt`` and ``sfm_model_contours.json`` there when
    present (a note otherwise). Given a ``.bin``, only the files passed are read. A file passed must exist.
    Raises TemplateError (one line naming the file) for any bad input; BackendUnavailableError without eos.
    """
    root = Path(path).expanduser()
    notes: list[str] = []
    if root.is_dir():
        model = _single(root, "*_shape_*.bin", "model", required=True)
        suffix = model.stem.rpartition("_")[2]
        if blendshapes is None:
            exact = root / f"expression_blendshapes_{suffix}.bin"
            blendshapes = exact if exact.is_file() else _single(root, "expression_blendshapes_*.bin", "blendshapes")
        defaults = {"blendshapes": blendshapes, "landmark mapping": landmark_mapping or _present(root / "ibug_to_sfm.txt"),
                    "contours": contours or _present(root / "sfm_model_contours.json")}
        blendshapes, landmark_mapping, contours = defaults.values()
        notes += [f"no {what} file in {root}" for what, p in defaults.items() if p is None]
    else:
        model = root
    raw = _eos_load("model", model)
    n = len(raw["mean"]) // 3
    where = str(model)
    if len(raw["mean"]) != 3 * n or raw["basis"].shape[0] != len(raw["mean"]):
        raise TemplateError(f"eos model {where}: mean has {len(raw['mean'])} values and the basis "
                            f"{raw['basis'].shape[0]} rows, expected 3 x vertices")
    uv = raw["texcoords"]
    if len(uv) == 0:
        uv = None
        notes.append("the model has no texture coordinates")
    elif len(uv) != n:
        raise TemplateError(f"eos model {where}: {len(uv)} texture coordinates for {n} vertices")
    else:
        uv = np.c_[uv[:, 0], 1.0 - uv[:, 1]]  # v downward (eos) -> v upward (densereg)
    if np.any(raw["eigenvalues"] < 0):
        raise TemplateError(f"eos model {where}: negative eigenvalue {raw['eigenvalues'].min():g}")
    shapes, names = raw.get("blendshapes"), raw.get("names")
    if str(raw["expression"]) == "pca":
        notes.append("the model's expression PCA model is not read")
    if blendshapes is not None:
        bs = _eos_load("blendshapes", Path(blendshapes).expanduser())
        shapes, names = bs["blendshapes"], bs["names"]
        if len(shapes) and shapes.shape[1:] != (3 * n,):
            raise TemplateError(f"blendshapes {blendshapes} have {shapes.shape[1] // 3} vertices, the model "
                                f"{where} has {n}")
    if shapes is None or not len(shapes):
        shapes, names = np.zeros((0, 3 * n)), np.zeros(0, str)
    mapping = contour_landmarks = None
    if landmark_mapping is not None:
        mapping, contour_landmarks = parse_landmark_mapping(landmark_mapping, n)
    result = EosFiles(source=where, mean=raw["mean"].reshape(n, 3), triangles=raw["triangles"], uv=uv,
                      basis=raw["basis"], std=np.sqrt(raw["eigenvalues"]), blendshapes=shapes,
                      blendshape_names=tuple(str(s) for s in names), landmarks68=mapping,
                      contour_landmarks=contour_landmarks,
                      contours=None if contours is None else _read_contours(Path(contours).expanduser(), n),
                      notes=tuple(notes))
    for note in notes:
        log.info("eos model %s: %s", where, note)
    return result


def parse_landmark_mapping(path, n_vertices: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """eos's ``ibug_to_sfm.txt`` (TOML): ((68,) int64 vertex per iBUG point, -1 where unmapped;
    {"right", "left"} -> (n,) int64 0-based iBUG indices of `[contour_landmarks]`, empty when absent)."""
    p = Path(path).expanduser()
    try:
        doc = _toml(read_capped(p, "landmark mapping", TemplateError, MAX_TEXT_BYTES).decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and TOMLDecodeError are ValueErrors
        raise TemplateError(f"landmark mapping {p} is not eos's TOML mapping file: {e}") from None
    table = doc.get("landmark_mappings")
    if not isinstance(table, dict) or not table:
        raise TemplateError(f"landmark mapping {p} has no [landmark_mappings] table")
    out = np.full(N_IBUG, -1, np.int64)
    for key, vertex in table.items():
        point = int(key) if key.isdigit() else 0
        if not 1 <= point <= N_IBUG:
            raise TemplateError(f"landmark mapping {p}: iBUG point {key!r} is not one of 1..{N_IBUG}")
        if type(vertex) is not int or not 0 <= vertex < n_vertices:
            raise TemplateError(f"landmark mapping {p}: iBUG point {key} maps to vertex {vertex!r}, the model "
                                f"has vertices 0..{n_vertices - 1}")
        out[point - 1] = vertex
    sides = doc.get("contour_landmarks", {})
    contour = {}
    for side in ("right", "left"):
        points = sides.get(side, []) if isinstance(sides, dict) else None
        if not isinstance(points, list) or not all(type(q) is int and 1 <= q <= N_IBUG for q in points):
            raise TemplateError(f"landmark mapping {p}: contour_landmarks.{side} must list iBUG points 1..{N_IBUG}")
        contour[side] = np.asarray(points, np.int64).reshape(-1) - 1
    return out, contour


_TOML_LINE = re.compile(r"\s*(?:\[(\w+)\]|(\w+)\s*=\s*(-?\d+|\[[-\d,\s]*\]))?\s*")


def _toml(text: str) -> dict:
    """TOML by tomllib (Python >= 3.11), else the strict subset eos's mapping files use: comments,
    [table] headers, and key = integer or key = [integers] (a list may span lines)."""
    try:
        import tomllib
    except ImportError:
        pass
    else:
        return tomllib.loads(text)
    doc: dict = {}
    table = doc
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    while lines:
        line = lines.pop(0)
        while line.count("[") > line.count("]") and lines:
            line += " " + lines.pop(0)
        m = _TOML_LINE.fullmatch(line)
        if m is None:
            raise ValueError(f"cannot parse {line.strip()!r}")
        if m[1]:
            table = doc.setdefault(m[1], {})
        elif m[2]:
            if m[2] in table:
                raise ValueError(f"key {m[2]!r} defined twice")
            value = m[3].strip("[]")
            table[m[2]] = [int(v) for v in value.split(",") if v.strip()] if m[3].startswith("[") else int(value)
    return doc


def _read_contours(p: Path, n_vertices: int) -> dict[str, np.ndarray]:
    """``sfm_model_contours.json``: {"right", "left"} -> (n,) int64 vertex candidates of the jaw contour."""
    try:
        doc = json.loads(read_capped(p, "model contours", TemplateError, MAX_TEXT_BYTES))
        sides = doc["model_contour"]
        lists = {side: sides[f"{side}_contour"] for side in ("right", "left")}
    except (ValueError, KeyError, TypeError) as e:
        raise TemplateError(f"model contours {p} is not eos's contour file (model_contour.right_contour, "
                            f".left_contour): {type(e).__name__} {e}") from None
    out = {}
    for side, ids in lists.items():
        if not isinstance(ids, list) or not all(type(i) is int and 0 <= i < n_vertices for i in ids):
            raise TemplateError(f"model contours {p}: {side}_contour must list vertices 0..{n_vertices - 1}")
        out[side] = np.asarray(ids, np.int64).reshape(-1)
    return out


def _eos_load(kind: str, p: Path) -> dict[str, np.ndarray]:
    """The arrays of eos model or blendshapes file `p`, loaded by eos in a child process (module docstring)."""
    what = "eos model" if kind == "model" else "blendshapes"
    size = regular_file(p, what, TemplateError, MAX_BIN_BYTES).stat().st_size
    if size == 0:
        raise TemplateError(f"{what} {p} is empty")
    limit = CHILD_MEMORY_BASE + CHILD_MEMORY_PER_BYTE * size
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="densereg-eos-") as tmp:
        out = Path(tmp) / "arrays.npz"
        try:
            done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(p), str(out), str(limit)], env=env,
                                  capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise TemplateError(f"eos took over {CHILD_TIMEOUT_S:g} s to read {what} {p}") from None
        message = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode == 4:
            raise BackendUnavailableError(f"reading eos-format models needs eos: pip install eos-py ({message})")
        if done.returncode == 3:
            raise TemplateError(f"eos cannot read {what} {p} (not an eos file, or corrupt): {message}")
        if done.returncode != 0:
            raise TemplateError(f"eos died reading {what} {p} (exit {done.returncode}; not an eos file, or corrupt)"
                                f"{': ' + message if message else ''}")
        with np.load(out, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _present(p: Path) -> Path | None:
    return p if p.is_file() else None


def _single(root: Path, pattern: str, what: str, *, required: bool = False) -> Path | None:
    found = sorted(root.glob(pattern))
    if len(found) == 1:
        return found[0]
    if not found and not required:
        return None
    listed = ", ".join(f.name for f in found) or "none"
    raise TemplateError(f"expected one {what} file {pattern} in {root}, found {listed}; pass the file itself")
