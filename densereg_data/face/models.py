"""Face models: a template surface + a shape model, by name, from one registry.

A `FaceModel` is everything labelling needs: the template surface (`Template`: mesh, U-V, parts,
landmark bindings per scheme, jaw-contour candidates) and the shape model (`DeformableModel`: mean,
basis, prior), with a registry name, an id and a content hash that outputs record. A model is loaded
from a spec string, ``NAME`` or ``NAME:PATH``:

    >>> model = load_face_model("menpo3d")        # the default; the same object again in this process
    >>> labeller = Labeller(model)                 # densereg_data.face.labeller
    >>> facts = model.facts(grid=256)              # template.h5's contents

`FACE_MODELS` maps each name to its `FaceModelEntry`, filled by `register_face_model`. A loader turns
the PATH (None when the spec has none) into a FaceModel in the template frame (`template.FRAME`):
a model with its own U-V and its own identity and expression bases converts its mesh into that frame,
builds its `Template` (its U-V as given; parts, bindings and contour from `face.parts`, `template
.bind_points`, `face.contour`) and its bases as one `DeformableModel`.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from densereg_data import conventions as cv
from densereg_data.errors import TemplateError
from densereg_data.face.fit import Fitter
from densereg_data.face.model_facts import DEFAULT_BASIS_GRID, DEFAULT_BASIS_SIZE, dense_model_arrays
from densereg_data.face.morphable import MorphableModel
from densereg_data.face.shape_model import DeformableModel, laplace_beltrami_model
from densereg_data.face.template import FRAME, Template, load_template, template_from_arrays

log = logging.getLogger(__name__)

__all__ = ["FaceModel", "FaceModelEntry", "FACE_MODELS", "DEFAULT_FACE_MODEL", "register_face_model",
           "load_face_model", "parse_spec"]

DEFAULT_FACE_MODEL = "menpo3d"


@dataclass(frozen=True, eq=False)
class FaceModel:
    """A face model: `template` (the surface, in `template.units`, frame `FRAME`) and `shape` (the
    deformable model over the template's vertices: mean (V, 3) float64, functions (V, n) float32).

    name: the registry name ("menpo3d"); spec: the normalised spec it was loaded from ("menpo3d" or
    "NAME:PATH"); id: what outputs record as template_id ("menpo3d-face"); hash: sha256 hex of what
    the arrays derive from, recorded as template_hash (menpo3d's is its template's: the derivation
    version, the definition with its "model" section, the source files); description, licence: for people.
    """

    name: str
    spec: str
    id: str
    hash: str
    template: Template
    shape: DeformableModel | MorphableModel
    description: str = ""
    licence: str = ""

    def __post_init__(self) -> None:
        if self.shape.mean.shape != self.template.vertices.shape:
            raise TemplateError(f"face model {self.name}: shape model mean {self.shape.mean.shape} does not match the "
                                f"template's vertices {self.template.vertices.shape}")
        if len(self.hash) != 64:
            raise TemplateError(f"face model {self.name}: hash must be 64 hex digits, got {self.hash!r}")

    @property
    def expression_names(self) -> tuple[str, ...]:
        """The names of the expression coefficients (blendshapes); () for a model without expressions."""
        return tuple(self.shape.expression_names)

    @property
    def frame(self) -> str:
        """The template frame every model is in (axes, facing direction, winding)."""
        return FRAME

    @functools.cached_property
    def fitter(self) -> Fitter:
        """The fitter of this model (built once per model object)."""
        return Fitter(self.template, self.shape)

    def facts(self, grid: int = 256, basis_grid: int | None = DEFAULT_BASIS_GRID, basis_size: int = DEFAULT_BASIS_SIZE) -> dict:
        """What a consumer of shards needs to score U-V predictions, without densereg (template.h5, docs/FORMAT.md).

        Returns landmark_uv (68, 2) float64; uv_to_xyz (G, G, 3) float32, the template position at U-V
        grid point [row, col] with u = col / (G - 1), v = 1 - row / (G - 1), NaN off the face;
        eye_distance float; part_uv (G, G) uint8 (0 off the face); and the attributes template_id,
        template_hash, units, model_size (number of identity coefficients), expression_size (number of
        expression coefficients), expression_names (a JSON list) and model (the registry name). Unless
        `basis_grid` is None, also the face model for a dense fit (`face.model_facts.dense_model_arrays`:
        `basis_size` directions on a `basis_grid` U-V grid; computed once per model and settings).
        """
        from densereg_data.face.pictures import uv_in_pixels
        from densereg_data.raster.api import face_labels, interpolate, rasterize

        if grid < 2:
            raise TemplateError(f"grid must be at least 2, got {grid}")
        dense = {} if basis_grid is None else dense_model_arrays(self, int(basis_grid), int(basis_size))
        t = self.template
        raster = rasterize(uv_in_pixels(t.uv, grid), t.faces, (grid, grid))
        xyz = interpolate(raster, t.faces, t.vertices).astype(np.float32)
        xyz[~raster.mask] = np.nan
        return {
            "landmark_uv": t.landmark_uv.copy(),
            "uv_to_xyz": xyz,
            "eye_distance": float(t.eye_distance),
            "part_uv": face_labels(raster, t.face_parts),
            "template_id": self.id,
            "template_hash": self.hash,
            "units": t.units,
            "model_size": int(self.shape.n_identity),
            "expression_size": int(self.shape.n_expression),
            "expression_names": json.dumps(list(self.expression_names)),
            "model": self.name,
            **{name: a.copy() for name, a in dense.items()},
        }

    def summary(self) -> dict:
        """The model's facts for people, JSON-ready (`densereg-data model show`)."""
        from densereg_data.face.uv_unwrap import uv_signed_areas

        t = self.template
        areas = uv_signed_areas(t.uv, t.faces)
        return {
            "model": self.spec,
            "id": self.id,
            "hash": self.hash,
            "description": self.description,
            "licence": self.licence,
            "units": t.units,
            "frame": self.frame,
            "vertices": int(len(t.vertices)),
            "triangles": int(len(t.faces)),
            "extent_mm": np.ptp(t.vertices, axis=0).round(1).tolist(),
            "eye_distance_mm": round(t.eye_distance, 3),
            "uv_min_triangle_area": float(areas.min()),
            "uv_folded_triangles": int((areas <= 0).sum()),
            "parts": {name: int((t.face_parts == i + 1).sum()) for i, name in enumerate(cv.PART_NAMES)},
            "landmark_schemes": sorted(t.landmarks),
            "contour_landmarks": list(t.contour_landmarks),
            "shape_model": self.shape.name,
            "model_size": int(self.shape.n_identity),
            "expression_size": int(self.shape.n_expression),
            "expressions": list(self.expression_names),
            "landmark_uv": {str(i): t.landmark_uv[i].round(4).tolist() for i in (0, 8, 16, 27, 30, 33, 36, 45, 48, 54)},
        }


@dataclass(frozen=True)
class FaceModelEntry:
    """A registered face model: its `loader` (PATH or None -> FaceModel) and what people need to know.

    needs: what must be installed or downloaded; path: what PATH names, or None when it takes none
    (then a spec with a PATH is refused; otherwise a spec without one is); licence: the model's terms.
    """

    name: str
    loader: Callable[[Path | None], FaceModel]
    needs: str
    licence: str
    path: str | None = None


#: name -> entry; filled by `register_face_model`.
FACE_MODELS: dict[str, FaceModelEntry] = {}


def register_face_model(name: str, *, needs: str, licence: str, path: str | None = None):
    """Decorator registering `loader(path: Path | None) -> FaceModel` as face model `name`."""

    def decorate(loader: Callable[[Path | None], FaceModel]) -> Callable[[Path | None], FaceModel]:
        if name in FACE_MODELS:
            raise TemplateError(f"face model {name!r} is already registered")
        FACE_MODELS[name] = FaceModelEntry(name, loader, needs, licence, path)
        return loader

    return decorate


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """``"NAME"`` or ``"NAME:PATH"`` -> (name, PATH or None); TemplateError (one line, the valid names)
    for an unknown name, a PATH given to a model that takes none, or a PATH missing for one that needs it."""
    name, _, path = str(spec).partition(":")
    name = name.strip()
    entry = FACE_MODELS.get(name)
    if entry is None:
        raise TemplateError(f"unknown face model {name!r} in {spec!r}; valid: {', '.join(sorted(FACE_MODELS))}")
    if path and entry.path is None:
        raise TemplateError(f"face model {name!r} takes no PATH, got {spec!r}; use {name!r}")
    if not path and entry.path is not None:
        raise TemplateError(f"face model {name!r} needs a PATH ({entry.path}): use '{name}:PATH'")
    return name, (Path(path).expanduser() if path else None)


def load_face_model(spec: str = DEFAULT_FACE_MODEL) -> FaceModel:
    """The face model of `spec` (``NAME`` or ``NAME:PATH``), loaded once per process.

    Raises TemplateError (an InputError) naming the valid models for an unknown NAME.
    """
    return _load(*parse_spec(spec))


@functools.lru_cache(maxsize=8)
def _load(name: str, path: Path | None) -> FaceModel:
    model = FACE_MODELS[name].loader(path)
    log.debug("loaded face model %s (%s, hash %s)", model.spec, model.id, model.hash[:16])
    return model


@register_face_model(
    "menpo3d",
    needs="menpo3d (pip install 'densereg[data]'): its bundled template.ply and 68 iBUG template.ljson",
    licence="menpo3d's template and landmarks, BSD-3-Clause (menpo3d's LICENSE.txt)",
)
def _menpo3d(path: Path | None) -> FaceModel:
    """menpo3d's face template unwrapped to DenseReg's U-V (templates/menpo3d_face.json), with the
    template-derived Laplace-Beltrami shape model of the definition's "model" section."""
    template = load_template("menpo3d-face")
    return FaceModel(
        name="menpo3d",
        spec="menpo3d",
        id=template.id,
        hash=template.hash,
        template=template,
        shape=laplace_beltrami_model(template, template.definition["model"]),
        description=template.definition["description"],
        licence=FACE_MODELS["menpo3d"].licence,
    )


def _imported(name: str, spec_path: Path, kind: str, read) -> FaceModel:
    """A FaceModel from a model's own files (`face.model_import`), with the definition templates/<name>_face.json."""
    from densereg_data.face.model_import import arrays_hash, import_model
    from densereg_templates import definition_path

    definition = json.loads(definition_path(f"{name}-face").read_text())
    arrays = import_model(kind, spec_path, definition, read)
    digest = arrays_hash({k: v for k, v in arrays.items() if k != "model_vertices"}, definition)
    template = template_from_arrays(definition, digest, definition["source"]["units"], arrays)
    n_identity = int(arrays["n_identity"])
    shape = MorphableModel(
        name=f"{template.id}/{n_identity}+{arrays['basis'].shape[-1] - n_identity}",
        mean=arrays["mean"],
        basis=arrays["basis"],
        prior_std=arrays["prior_std"],
        n_identity=n_identity,
        expression_names=tuple(str(s) for s in arrays["expression_names"]),
        expression_bounds=tuple(float(b) for b in definition["expression"]["bounds"]),
    )
    return FaceModel(name=name, spec=f"{name}:{spec_path}", id=template.id, hash=digest, template=template, shape=shape,
                     description=definition["description"], licence=FACE_MODELS[name].licence)


@register_face_model(
    "ict",
    needs="ICT-FaceKit's files: its folder (holding FaceXModel/) or the zip GitHub serves (ICT-FaceKit-master.zip)",
    licence="ICT-FaceKit, MIT licence (USC Institute for Creative Technologies)",
    path="ICT-FaceKit's folder or zip",
)
def _ict(path: Path | None) -> FaceModel:
    """ICT-FaceKit: its narrow face area in its own U-V, 100 identity + 53 expression components."""
    from densereg_data.face.model_import import ict_arrays

    return _imported("ict", path, "ict", ict_arrays)


@register_face_model(
    "sfm",
    needs="eos-py (pip install eos-py) and an eos-format model: eos's share/ folder (sfm_shape_3448.bin, "
          "expression_blendshapes_3448.bin, ibug_to_sfm.txt) or a model .bin; BFM and LYHM after eos's conversion scripts",
    licence="the Surrey Face Model: free for non-commercial research only (its own licence); other eos models: theirs",
    path="eos's share/ folder or a model .bin",
)
def _sfm(path: Path | None) -> FaceModel:
    """An eos-format model (the Surrey Face Model): its mesh in its own U-V, PCA identity + blendshapes."""
    from densereg_data.face.model_import import eos_arrays

    return _imported("sfm", path, "eos", eos_arrays)
