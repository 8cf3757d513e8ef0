"""The shard format's names and shapes (docs/FORMAT.md, version 3): the one place they are written down.

A shard directory holds ``index.json``, ``config.json``, ``template.h5``, ``skipped.jsonl`` and
``<split>-<nnnnn>.h5`` files. Writers, readers and `verify` all take their rules from here.
"""

from __future__ import annotations

import re

from densereg_data.conventions import N_LANDMARKS

__all__ = ["FORMAT", "FORMAT_VERSION", "READABLE_VERSIONS", "INDEX", "CONFIG", "TEMPLATE", "SKIPPED", "SHARD_RE", "TMP_PREFIX", "SCHEMA",
           "DENSE", "COMPRESSIONS", "TEMPLATE_SCHEMA", "TEMPLATE_ATTRS", "TEMPLATE_OPTIONAL_ATTRS", "TEMPLATE_INT_ATTRS",
           "TEMPLATE_MODEL_SCHEMA", "TEMPLATE_MODEL_LIMITS", "TEMPLATE_MODEL_MAX_BYTES",
           "VERSION_2_DATASETS", "VERSION_3_DATASETS", "sample_schema", "shard_name"]

FORMAT = "densereg-shards"
FORMAT_VERSION = 3
#: Versions this reader reads: version 1 (before expression coefficients) has no `expression` dataset and
#: no expression attributes in template.h5, which read as a model without expressions; versions 1 and 2
#: (before views) have no `view_delta`, which reads as every sample an original (0, 0).
READABLE_VERSIONS = (1, 2, 3)
INDEX, CONFIG, TEMPLATE, SKIPPED = "index.json", "config.json", "template.h5", "skipped.jsonl"
#: A shard file's name: ``<split>-<nnnnn>.h5``; nothing else in a shard folder is ever opened as a shard.
SHARD_RE = re.compile(r"(?P<split>[a-z0-9_]+)-(?P<n>\d{5})\.h5\Z")
#: Prefix of the temporary names writers use before the final rename.
TMP_PREFIX = ".tmp-"

#: dataset -> (dtype, per-sample shape with "S" for the crop side, "C" for the identity and "E" for the
#: expression model size). A dataset with a zero-sized dimension is not written (`expression` of a model
#: without expressions).
SCHEMA: dict[str, tuple[str, tuple]] = {
    "image": ("uint8", ("S", "S", 3)),
    "uv": ("float16", ("S", "S", 2)),
    "parts": ("uint8", ("S", "S")),
    "landmarks": ("float32", (N_LANDMARKS, 2)),
    "landmark_state": ("uint8", (N_LANDMARKS,)),
    "crop_from_image": ("float64", (2, 3)),
    "source": ("str", ()),
    "source_size": ("int32", (2,)),
    "fit_nme": ("float32", ()),
    "crop_from_template": ("float64", (3, 4)),
    "pose": ("float32", (3,)),
    "coefficients": ("float32", ("C",)),
    "expression": ("float32", ("E",)),
    "view_delta": ("float32", (2,)),
}
#: The per-pixel datasets; the rest are small and read into memory when a shard is opened.
DENSE = ("image", "uv", "parts")
#: Shard compressions: "lzf" (every dataset lzf, + shuffle for float16/32; the default) or "none" (the
#: dense datasets stored raw: about 2x the bytes, faster to read; the small ones stay lzf).
COMPRESSIONS = ("lzf", "none")

#: template.h5 dataset -> (dtype, shape with "G" for the U-V grid side).
TEMPLATE_SCHEMA: dict[str, tuple[str, tuple]] = {
    "landmark_uv": ("float64", (N_LANDMARKS, 2)),
    "uv_to_xyz": ("float32", ("G", "G", 3)),
    "eye_distance": ("float64", ()),
    "part_uv": ("uint8", ("G", "G")),
}
TEMPLATE_ATTRS = ("template_id", "template_hash", "units", "model_size")
#: Attributes written by newer builds, read when present: the face model's spec ("menpo3d", "NAME:PATH"),
#: its number of expression coefficients (0 when absent) and their names (a JSON list of strings).
TEMPLATE_OPTIONAL_ATTRS = ("model", "expression_size", "expression_names")
#: Integer-valued template.h5 attributes (the rest are strings).
TEMPLATE_INT_ATTRS = ("model_size", "expression_size")
#: template.h5's optional face-model datasets, for a dense fit (all or none; builds since the dense fit):
#: dataset -> (dtype, shape) with "B" the basis grid side, "A" the axes a basis direction moves (3: a
#: vector direction with one coefficient; 1: a scalar direction with one coefficient per axis), "K" the
#: directions, "D" the model's coefficients per direction (N = model_size + expression_size for A = 3,
#: N / 3 for A = 1), "S" linear constraints on the coefficients (0 for A = 3), "M" the contour
#: candidates, "R" the sliding jaw landmarks.
TEMPLATE_MODEL_SCHEMA: dict[str, tuple[str, tuple]] = {
    "uv_to_basis": ("float32", ("B", "B", "A", "K")),
    "basis_sd": ("float64", ("K",)),
    "basis_to_model": ("float64", ("K", "D")),
    "basis_constraints": ("float64", ("S", "K", 3)),
    "landmark_mean": ("float64", (N_LANDMARKS, 3)),
    "landmark_basis": ("float32", (N_LANDMARKS, "A", "K")),
    "contour_mean": ("float64", ("M", 3)),
    "contour_basis": ("float32", ("M", "A", "K")),
    "contour_row": ("int64", ("M",)),
    "contour_landmarks": ("int64", ("R",)),
    "contour_outward": ("float64", ("R", 3)),
}
#: Bounds a reader holds the face-model datasets to (an untrusted file): each symbol's largest value,
#: and the most bytes all of them may take together.
TEMPLATE_MODEL_LIMITS = {"B": 512, "A": 3, "K": 512, "D": 100_000, "S": 8, "M": 100_000, "R": N_LANDMARKS}
TEMPLATE_MODEL_MAX_BYTES = 64 << 20


#: Datasets version 2 added (a version 1 shard has none: all landmarks visible, no expressions).
VERSION_2_DATASETS = ("landmark_state", "expression")
#: Datasets version 3 added (a version 1 or 2 shard has none: every sample an original face).
VERSION_3_DATASETS = ("view_delta",)


def sample_schema(size: int, model_size: int, expression_size: int = 0,
                  version: int = FORMAT_VERSION) -> dict[str, tuple[str, tuple[int, ...]]]:
    """SCHEMA with S, C and E filled in: name -> (dtype, per-sample shape), without zero-sized datasets
    (and, for an older `version`, without the datasets later versions added)."""
    fill = {"S": int(size), "C": int(model_size), "E": int(expression_size)}
    schema = {k: (dt, tuple(fill.get(d, d) for d in shape)) for k, (dt, shape) in SCHEMA.items()}
    later = (VERSION_2_DATASETS if version < 2 else ()) + (VERSION_3_DATASETS if version < 3 else ())
    return {k: v for k, v in schema.items() if 0 not in v[1] and k not in later}


def shard_name(split: str, number: int) -> str:
    """``train-00000.h5``."""
    return f"{split}-{number:05d}.h5"
