"""What a densereg-net checkpoint may hold, and the checks a file must pass before anything in it is used.

A checkpoint is one flat HDF5 file (docs/NET.md, "Checkpoints"): no groups; every tensor a plain dataset
whose name says where it belongs (`TENSOR_NAME`), every other value in the one JSON string attribute
`META_ATTR`. A checkpoint is an untrusted file: nothing in it is unpickled or run, and `check_meta` and
`check_model_tensors` refuse, with one `CheckpointError` line naming the file, any value of the wrong
type or range and any model tensor whose name, shape or dtype is not what the model its config builds has.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from densereg_data.config import check_value
from densereg_data.conventions import N_LANDMARKS, PART_NAMES
from densereg_data.errors import CheckpointError, ConfigError, ShardFormatError
from densereg_data.format.schema import TEMPLATE_MODEL_SCHEMA, TEMPLATE_SCHEMA
from densereg_data.format.template_facts import check_model_listing
from densereg_net.config import TrainConfig
from densereg_net.model import HEADS, INPUT_NORMS, MAX_WIDTH, complete_config, model_from_config

__all__ = ["FORMAT", "FORMAT_VERSION", "META_ATTR", "META_KEYS", "MAX_META_BYTES", "TENSOR_DTYPES", "TENSOR_NAME",
           "TEMPLATE_DATASETS", "check_meta", "check_model_tensors", "check_template_tensors"]

FORMAT = "densereg-net checkpoint"
FORMAT_VERSION = 1
#: The file attribute holding every value that is not a tensor, as one JSON string.
META_ATTR = "densereg_checkpoint"
MAX_META_BYTES = 16 << 20
#: Dataset names: model:<state_dict key>, optimizer:state:<parameter index>:<name>, rng:torch, rng:cuda:<device>.
TENSOR_NAME = re.compile(r"model:(?P<model>[A-Za-z0-9_.]{1,200})|optimizer:state:(?P<param>\d{1,6}):"
                         r"(?P<slot>step|exp_avg|exp_avg_sq|max_exp_avg_sq)|rng:(?:torch|cuda:(?P<cuda>\d{1,3}))"
                         r"|template:(?P<template>[a-z_]{1,40})")
#: The shards' template facts a checkpoint carries as ``template:<name>`` datasets when the shards' template.h5
#: has the face model (for a dense fit from the checkpoint alone): these grids and `TEMPLATE_MODEL_SCHEMA`'s
#: arrays, all or none, checked by template.h5's rules; the JSON ``template`` then also holds model_size and
#: expression_size.
TEMPLATE_GRIDS = {name: (TEMPLATE_SCHEMA[name][0], len(TEMPLATE_SCHEMA[name][1])) for name in ("uv_to_xyz", "part_uv")}
TEMPLATE_DATASETS = (*TEMPLATE_GRIDS, *TEMPLATE_MODEL_SCHEMA)
MAX_TEMPLATE_GRID = 4096
#: The dtypes a stored tensor may have.
TENSOR_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
#: Every key of the JSON metadata (all required).
META_KEYS = ("format", "format_version", "model_config", "k", "part_names", "config", "crop", "image_size",
             "template", "mean_landmarks", "index_sha256", "build_config", "version", "epoch", "step",
             "global_step", "best_metric", "optimizer", "scheduler")
_MAX_COUNTER = 10**12


def _short(value) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(x, lo: int, hi: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _is_num(x, lo: float, hi: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and lo <= x <= hi


def _points(value, shape: tuple[int, ...]) -> bool:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return arr.shape == shape and bool(np.isfinite(arr).all())


def check_meta(meta, path) -> dict:
    """`meta` (the parsed JSON of a checkpoint at `path`) if every value has its type and range;
    CheckpointError naming the file and the first value that has not."""
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CheckpointError(f"{path}: {what}")

    need(isinstance(meta, dict), f"the {META_ATTR} attribute is not a JSON object")
    need(meta.get("format") == FORMAT and meta.get("format_version") == FORMAT_VERSION,
         f"says format {_short(meta.get('format'))} version {_short(meta.get('format_version'))}, "
         f"this reader reads {FORMAT!r} version {FORMAT_VERSION}")
    missing = [k for k in META_KEYS if k not in meta]
    need(not missing, f"metadata lacks {', '.join(missing)}")
    mc = meta["model_config"]
    need(isinstance(mc, dict) and set(mc) in ({"head", "k", "width"}, {"head", "k", "width", "input_norm"}),
         f"model_config must be an object {{head, k, width[, input_norm]}}, got {_short(mc)}")
    need(complete_config(mc)["input_norm"] in INPUT_NORMS,
         f"model_config input_norm must be one of {', '.join(INPUT_NORMS)}, got {_short(mc.get('input_norm'))}")
    need(isinstance(mc["head"], str) and mc["head"] in HEADS,
         f"model_config head must be one of {', '.join(sorted(HEADS))}, got {_short(mc['head'])}")
    need(_is_int(mc["k"], 1, 1024), f"model_config k must be an integer in 1..1024, got {_short(mc['k'])}")
    need(_is_int(mc["width"], 1, MAX_WIDTH),
         f"model_config width must be an integer in 1..{MAX_WIDTH}, got {_short(mc['width'])}")
    need(meta["k"] == mc["k"], f"k {_short(meta['k'])} disagrees with model_config k {mc['k']}")
    need(meta["part_names"] == list(PART_NAMES),
         f"part_names must be {list(PART_NAMES)}, got {_short(meta['part_names'])}")
    crop = meta["crop"]
    need(isinstance(crop, dict) and set(crop) == {"margin", "size"},
         f"crop must be an object {{margin, size}}, got {_short(crop)}")
    need(_is_int(crop["size"], 16, 4096), f"crop size must be an integer in 16..4096, got {_short(crop['size'])}")
    need(_is_num(crop["margin"], 0, 4), f"crop margin must be a number in [0, 4], got {_short(crop['margin'])}")
    need(meta["image_size"] == [crop["size"]] * 2,
         f"image_size {_short(meta['image_size'])} disagrees with crop size {crop['size']}")
    t = meta["template"]
    keys = set(t) - {"readout_uv"} if isinstance(t, dict) else set()
    sizes = keys == {"landmark_uv", "eye_distance", "model_size", "expression_size"}
    need(t is None or (isinstance(t, dict) and (keys == {"landmark_uv", "eye_distance"} or sizes)
                       and _points(t["landmark_uv"], (N_LANDMARKS, 2)) and _is_num(t["eye_distance"], 1e-12, 1e12)
                       and ("readout_uv" not in t or _points(t["readout_uv"], (N_LANDMARKS, 2)))
                       and (not sizes or (_is_int(t["model_size"], 0, 100_000) and _is_int(t["expression_size"], 0, 100_000)))),
         f"template must be null or {{landmark_uv[, readout_uv]: 68 finite (u, v) pairs, eye_distance > 0[, model_size, expression_size: "
         f"integers in 0..100000]}}, got {_short(t)}")
    need(_points(meta["mean_landmarks"], (N_LANDMARKS, 2)), "mean_landmarks must be 68 finite (x, y) pairs")
    sha = meta["index_sha256"]
    need(isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) is not None,
         f"index_sha256 must be 64 hex digits, got {_short(sha)}")
    need(isinstance(meta["build_config"], dict), "build_config must be an object")
    need(isinstance(meta["version"], str), "version must be a string")
    for key in ("epoch", "step", "global_step"):
        need(_is_int(meta[key], 0, _MAX_COUNTER), f"{key} must be an integer >= 0, got {_short(meta[key])}")
    need(meta["best_metric"] is None or _is_num(meta["best_metric"], -math.inf, math.inf),
         f"best_metric must be null or a finite number, got {_short(meta['best_metric'])}")
    opt = meta["optimizer"]
    need(isinstance(opt, dict) and set(opt) == {"param_groups"} and isinstance(opt["param_groups"], list)
         and all(isinstance(g, dict) for g in opt["param_groups"]), "optimizer must be an object {param_groups: [...]}")
    need(isinstance(meta["scheduler"], dict), "scheduler must be an object")
    _check_train_config(meta["config"], mc, path)
    return meta


def _check_train_config(config, mc: dict, path) -> None:
    """The run's TrainConfig, checked as a config file's would be, and agreeing with model_config."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: config must be an object, got {_short(config)}")
    try:
        fields = set(TrainConfig.__dataclass_fields__)
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ConfigError(f"unknown settings {', '.join(unknown)}"[:200])  # prefixed "config: " below
        for name, value in config.items():
            check_value(TrainConfig, name, value, "config")
        TrainConfig(**config)
    except ConfigError as exc:
        why = str(exc) if str(exc).startswith("config: ") else f"config: {exc}"
        raise CheckpointError(f"{path}: {why}") from None
    for key in ("head", "width", "input_norm"):
        if key in config and config[key] != complete_config(mc)[key]:
            raise CheckpointError(f"{path}: config {key} {config[key]!r} disagrees with model_config {key} {mc[key]!r}")


def check_model_tensors(stored: dict[str, tuple[tuple[int, ...], str]], model_config: dict, path) -> None:
    """Raise CheckpointError unless `stored` ({state_dict key: (shape, numpy dtype name)}) has exactly the
    names, shapes and dtypes of the state_dict of the model `model_config` builds (built on the meta
    device: no memory is spent on it)."""
    with torch.device("meta"):
        reference = model_from_config(model_config).state_dict()
    built = f"the model of model_config {model_config}"
    missing = [k for k in reference if k not in stored]
    if missing:
        raise CheckpointError(f"{path}: no tensor model:{missing[0]} ({len(missing)} missing), which {built} has")
    extra = [k for k in stored if k not in reference]
    if extra:
        raise CheckpointError(f"{path}: tensor model:{extra[0]} is not in {built}")
    for name, ref in reference.items():
        shape, dtype = stored[name]
        want = (tuple(ref.shape), str(ref.dtype).removeprefix("torch."))
        if (tuple(shape), dtype) != want:
            raise CheckpointError(f"{path}: model:{name} is {tuple(shape)} {dtype}, but {built} has {want[0]} {want[1]}")


def check_template_tensors(stored: dict[str, tuple[tuple[int, ...], str]], template, path) -> None:
    """Raise CheckpointError unless `stored` ({name after ``template:``: (shape, numpy dtype name)}) is empty
    or holds exactly `TEMPLATE_DATASETS`, by template.h5's rules (`check_model_listing`: dtypes, agreeing
    shapes, size bounds, the model's coefficient count from the JSON `template`), before any is read."""
    if not stored:
        return
    unknown = sorted(set(stored) - set(TEMPLATE_DATASETS))
    if unknown:
        raise CheckpointError(f"{path}: unexpected dataset template:{unknown[0][:40]} (not one of {', '.join(TEMPLATE_DATASETS)})")
    if not isinstance(template, dict) or "model_size" not in template:
        raise CheckpointError(f"{path}: template:* datasets, but the template metadata has no model_size and expression_size")
    grid = None
    for name, (dtype, ndim) in TEMPLATE_GRIDS.items():
        if name not in stored:
            raise CheckpointError(f"{path}: template:{name} missing (the face model needs the template grids)")
        shape, got = stored[name]
        grid = shape[0] if grid is None and shape else grid
        want = (grid,) * 2 + (3,) * (ndim - 2)
        if got != dtype or tuple(shape) != want or not 2 <= shape[0] <= MAX_TEMPLATE_GRID:
            raise CheckpointError(f"{path}: template:{name} is {got} {tuple(shape)}, expected {dtype} {want} with "
                                  f"G in 2..{MAX_TEMPLATE_GRID}")
    try:
        if not check_model_listing(stored, f"{path}: template", template["model_size"] + template["expression_size"]):
            raise CheckpointError(f"{path}: template:uv_to_xyz and part_uv without the face model's arrays")
    except ShardFormatError as exc:
        raise CheckpointError(str(exc)) from None
