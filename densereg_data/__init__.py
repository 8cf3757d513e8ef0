"""densereg_data: dense face correspondence labels (U-V, parts) from annotated landmarks, as HDF5 shards.

Light to import: numpy and h5py only. The heavy names (the face models, the fit, the labeller, the
rasterizer: menpo, menpo3d, numba, scipy, trimesh) load on first use.

    >>> import densereg_data
    >>> ds = densereg_data.open_shards("shards/", split="train")     # read shards (light)
    >>> labels = densereg_data.label_face("face.jpg", "face.pts")     # label one face (heavy)

Layers, each importing only those above it: `conventions`, `errors` -> `format` (shards, template
facts), `io` (images, landmark files), `geometry` (affines, the crop rule) -> `raster` -> `face`
(face models, fit, labeller) -> `build` (datasets, pipeline, export, preview).
"""

from __future__ import annotations

import importlib

from densereg_data.errors import (BackendUnavailableError, BuildError, CheckpointError, ConfigError,  # noqa: F401
                                  DenseRegError, FitError, ImageFileError, InputError, LandmarkFileError,
                                  ShapeError, ShardFormatError, TemplateError)
from densereg_data.format import ShardIndex, TemplateFacts, info, open_shards, read_template_facts, verify  # noqa: F401

from densereg_data.version import __version__

#: Heavy public names -> the module that defines them (imported on first access).
_LAZY = {
    "label_face": "densereg_data.face.api",
    "DenseLabels": "densereg_data.face.api",
    "Labeller": "densereg_data.face.labeller",
    "load_face_model": "densereg_data.face.models",
    "FACE_MODELS": "densereg_data.face.models",
}

__all__ = [
    "__version__", "open_shards", "ShardIndex", "TemplateFacts", "read_template_facts", "verify", "info",
    "DenseRegError", "InputError", "LandmarkFileError", "ImageFileError", "ShapeError", "FitError", "TemplateError",
    "ShardFormatError", "CheckpointError", "ConfigError", "BuildError", "BackendUnavailableError", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'densereg_data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
