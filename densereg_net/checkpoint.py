"""Checkpoint files: one flat HDF5 file each, read and written with h5py; never a pickle.

Layout (`densereg_net.checkpoint_schema`; docs/NET.md "Checkpoints"): every tensor is a plain dataset
with a flat name (``model:<state_dict key>``, ``optimizer:state:<i>:<name>``, ``rng:torch``,
``rng:cuda:<d>``); everything else is one JSON string attribute, ``densereg_checkpoint``: format and
format_version, model_config {head, k, width, input_norm}, k, part_names, config (the resolved TrainConfig), crop
{margin, size}, image_size, template {landmark_uv, eye_distance[, readout_uv]} or null, mean_landmarks (68 x 2,
training mean in crop pixels), index_sha256 (of the shards' index.json), build_config (their
config.json), version, epoch (next to run), step (next within it), global_step, best_metric (null:
none yet), optimizer {param_groups}, scheduler (the LR scheduler's state).

`load_checkpoint` returns the dict `save_checkpoint` was given (tensors on the CPU; ``template_arrays``
as numpy arrays, plus ``template_facts``: the `TemplateFacts` with the face model, or None). It opens the file
through the shard reader's guards (`check_plain_hdf5`, `h5_guard`: no external storage, links, virtual
datasets or groups), checks the JSON and the model tensors' names, shapes and dtypes against the model
the config builds before reading a byte of them, and bounds every other tensor; `restore_training`
checks the optimizer, scheduler and RNG state against the live objects before loading them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from densereg_data.errors import CheckpointError, ShardFormatError
from densereg_data.format import ShardIndex
from densereg_data.format.template_facts import ModelFacts, TemplateFacts
from densereg_data.format.files import fsync_replace, tmp_path
from densereg_data.format.reader import check_plain_hdf5, h5_guard
from densereg_data.io.untrusted import regular_file
from densereg_net.checkpoint_schema import (FORMAT, FORMAT_VERSION, MAX_META_BYTES, META_ATTR, TENSOR_DTYPES,
                                            TENSOR_NAME, check_meta, check_model_tensors, check_template_tensors)
from densereg_net.model import DenseRegNet, model_from_config

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint", "check_fits_shards", "restore_training",
           "template_meta", "template_arrays"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_CHECKPOINT_BYTES = 64 << 30
_MAX_RNG_BYTES = 1 << 20


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write `state` (model/optimizer/scheduler state dicts, rng {"torch", "cuda": [...]}, and the JSON
    values) as a flat HDF5 file, atomically (temporary name, fsync, rename): a kill never leaves a
    half-written checkpoint."""
    import h5py

    path = Path(path)
    tensors = {f"model:{k}": v for k, v in state["model"].items()}
    for i, slots in state["optimizer"]["state"].items():
        tensors.update({f"optimizer:state:{i}:{name}": v for name, v in slots.items()})
    tensors["rng:torch"] = state["rng"]["torch"]
    tensors.update({f"rng:cuda:{d}": v for d, v in enumerate(state["rng"]["cuda"])})
    tensors.update({f"template:{k}": torch.from_numpy(np.ascontiguousarray(v))
                    for k, v in (state.get("template_arrays") or {}).items()})
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng", "template_arrays", "template_facts")}
    best = meta["best_metric"]
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, best_metric=best if math.isfinite(best) else None,
                optimizer={"param_groups": state["optimizer"]["param_groups"]})
    tmp = tmp_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            for name, t in tensors.items():
                f.create_dataset(name, data=t.detach().cpu().contiguous().numpy())
            f.attrs[META_ATTR] = json.dumps(meta, allow_nan=False, sort_keys=True)
        fsync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _as_checkpoint_error():
    """The shard reader's refusals (it guards every HDF5 file densereg opens) as CheckpointErrors."""
    try:
        yield
    except ShardFormatError as exc:
        raise CheckpointError(str(exc)) from None


def _not_hdf5(path: Path) -> None:
    """CheckpointError unless the file starts with the HDF5 signature (says so for an old pickle)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a densereg HDF5 checkpoint")
    if head != HDF5_SIGNATURE:
        old = head.startswith((b"PK\x03\x04", b"\x80"))
        raise CheckpointError(f"{path}: not a densereg HDF5 checkpoint" + (
            " (a torch.save pickle, from densereg-net before HDF5 checkpoints: pickles are never loaded; retrain)"
            if old else ""))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read and check a checkpoint; the state dict `save_checkpoint` wrote (best_metric inf when none).
    CheckpointError naming the file for anything that is not a sound densereg-net checkpoint."""
    import h5py

    path = regular_file(path, "checkpoint", CheckpointError, MAX_CHECKPOINT_BYTES)
    _not_hdf5(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0][:120]})") from None
    with f, _as_checkpoint_error():
        with h5_guard(path):  # what h5py raises on hostile bytes becomes one line; the checks run outside it
            check_plain_hdf5(f, path)
            raw = f.attrs.get(META_ATTR)
            listing = {name: (f[name].shape, _dtype(f[name])) for name in f.keys()}
        meta = check_meta(_parse_meta(raw, path), path)
        model, opt_state, rng, template = _sort_tensors(listing, path)
        check_model_tensors({k: listing[n] for k, n in model.items()}, meta["model_config"], path)
        _check_sizes(opt_state, rng, listing, {listing[n][0] for n in model.values()}, path)
        check_template_tensors({k: listing[n] for k, n in template.items()}, meta["template"], path)
        with h5_guard(path):
            state = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
            state["model"] = {k: _tensor(f[n], map_location) for k, n in model.items()}
            state["optimizer"] = {"state": {i: {s: _tensor(f[n], map_location) for s, n in slots.items()}
                                            for i, slots in sorted(opt_state.items())},
                                  "param_groups": meta["optimizer"]["param_groups"]}
            state["rng"] = {"torch": _tensor(f["rng:torch"], "cpu"),
                            "cuda": [_tensor(f[f"rng:cuda:{d}"], "cpu") for d in range(len(rng) - 1)]}
            state["template_arrays"] = {k: np.array(f[n][()]) for k, n in template.items()}
    bad = next((k for k, t in state["model"].items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise CheckpointError(f"{path}: model:{bad} holds NaN or infinite values")
    if state["best_metric"] is None:
        state["best_metric"] = math.inf
    state["template_facts"] = _template_facts(state["template"], state["template_arrays"], path)
    return state


def template_meta(facts: TemplateFacts | None, readout_uv: np.ndarray | None = None) -> dict | None:
    """The checkpoint's JSON ``template`` of the shards' template facts (None: the shards have none):
    landmark_uv and eye_distance, readout_uv (the calibrated read-out, `metrics.calibrate_readout`) when
    given, and model_size and expression_size when they have the face model."""
    if facts is None:
        return None
    meta = {"landmark_uv": facts.landmark_uv.tolist(), "eye_distance": facts.eye_distance}
    if readout_uv is not None:
        meta["readout_uv"] = np.asarray(readout_uv, np.float64).tolist()
    if facts.model is not None:
        meta.update(model_size=facts.model.model_size, expression_size=facts.model.n_coefficients - facts.model.model_size)
    return meta


def template_arrays(facts: TemplateFacts | None) -> dict[str, np.ndarray]:
    """The ``template:<name>`` arrays a checkpoint carries (`TEMPLATE_DATASETS`): the grids and the face
    model when the shards' template facts have the face model, so a dense fit needs the checkpoint alone;
    none otherwise."""
    if facts is None or facts.model is None:
        return {}
    return {"uv_to_xyz": facts.uv_to_xyz, "part_uv": facts.part_uv, **facts.model.arrays()}


def _template_facts(meta: dict | None, arrays: dict[str, np.ndarray], path: Path) -> TemplateFacts | None:
    """The checkpoint's template facts with the face model (None without ``template:`` arrays); the values
    checked as template.h5's (CheckpointError naming the file)."""
    if not arrays:
        return None
    try:
        model = ModelFacts.from_dict(arrays, meta["model_size"])
        return TemplateFacts(np.asarray(meta["landmark_uv"], np.float64), arrays["uv_to_xyz"], float(meta["eye_distance"]),
                             arrays["part_uv"], {"model_size": meta["model_size"],
                                                 "expression_size": meta["expression_size"]}, model)
    except ShardFormatError as exc:
        raise CheckpointError(f"{path}: template {str(exc).removeprefix('template facts: ')}") from None


def _parse_meta(raw, path: Path):
    if raw is None:
        raise CheckpointError(f"{path}: no {META_ATTR} attribute: not a densereg-net checkpoint")
    if not isinstance(raw, str) or len(raw) > MAX_META_BYTES:
        raise CheckpointError(f"{path}: the {META_ATTR} attribute is not a JSON string of at most {MAX_META_BYTES} bytes")
    try:
        return json.loads(raw, parse_constant=_bad_json)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the {META_ATTR} attribute is not valid JSON ({str(exc)[:80]})") from None


def _bad_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _dtype(ds) -> str:
    return ds.dtype.name if ds.dtype.fields is None and ds.dtype.kind in "biuf" else str(ds.dtype)[:40]


def _sort_tensors(listing: dict, path: Path) -> tuple[dict, dict, dict, dict]:
    """Dataset names -> ({state_dict key: name}, {param index: {slot: name}}, {rng name: name},
    {template array: name})."""
    model, opt_state, rng, template = {}, {}, {}, {}
    for name, (_, dtype) in listing.items():
        m = TENSOR_NAME.fullmatch(name)
        if m is None:
            raise CheckpointError(f"{path}: unexpected dataset {name[:80]!r} (not model:, optimizer:state: or rng:)")
        if dtype not in TENSOR_DTYPES:
            raise CheckpointError(f"{path}: {name} has dtype {dtype}, not a tensor dtype")
        if m["model"]:
            model[m["model"]] = name
        elif m["param"]:
            opt_state.setdefault(int(m["param"]), {})[m["slot"]] = name
        elif m["template"]:
            template[m["template"]] = name
        else:
            rng[name] = name
    return model, opt_state, rng, template


def _check_sizes(opt_state: dict, rng: dict, listing: dict, param_shapes: set, path: Path) -> None:
    """Bound what is read before reading it: optimizer slots have a model tensor's shape (step: a
    scalar), RNG states are small uint8 vectors, rng:cuda numbered 0..n-1."""
    for i, slots in opt_state.items():
        for slot, name in slots.items():
            shape = listing[name][0]
            if shape != () and shape not in param_shapes:
                raise CheckpointError(f"{path}: {name} has shape {shape}, no model tensor's")
    if sorted(rng) != sorted(["rng:torch", *(f"rng:cuda:{d}" for d in range(len(rng) - 1))]):
        raise CheckpointError(f"{path}: rng tensors {sorted(rng)[:4]} are not rng:torch and rng:cuda:0..n-1")
    for name in rng:
        shape, dtype = listing[name]
        if len(shape) != 1 or dtype != "uint8" or shape[0] > _MAX_RNG_BYTES:
            raise CheckpointError(f"{path}: {name} must be a uint8 vector of at most {_MAX_RNG_BYTES} bytes, "
                                  f"got {shape} {dtype}")


def _tensor(ds, map_location) -> torch.Tensor:
    return torch.from_numpy(np.array(ds[()])).to(map_location)


def model_from_checkpoint(ckpt: dict, device="cpu") -> DenseRegNet:
    """The checkpoint's model on `device`, in eval mode."""
    model = model_from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def check_fits_shards(k: int, part_names, index: ShardIndex, where: str) -> None:
    """Raise CheckpointError if a model trained with (k, part_names) cannot read the shards of `index`."""
    if int(k) != index.k:
        raise CheckpointError(f"{where} was trained with K = {k} bins, but {index.root} has k = {index.k}")
    if tuple(part_names) != index.part_names:
        raise CheckpointError(f"{where} was trained with parts {list(part_names)}, "
                              f"but {index.root} has {list(index.part_names)}")


def restore_training(ckpt: dict, model, opt, sched, device: torch.device, where: str) -> None:
    """Load a checked checkpoint into the live model, optimizer, scheduler and RNGs, after checking the
    optimizer and scheduler state against theirs (CheckpointError naming `where` otherwise)."""
    model.load_state_dict(ckpt["model"])
    fresh = opt.state_dict()
    groups = ckpt["optimizer"]["param_groups"]
    if [g.get("params") for g in groups] != [g["params"] for g in fresh["param_groups"]]:
        raise CheckpointError(f"{where}: optimizer parameter groups do not match this model's")
    groups = [{**_like(g, f, f"{where}: optimizer param_groups"), "params": f["params"]}
              for g, f in zip(groups, fresh["param_groups"])]
    ids = (i for g in fresh["param_groups"] for i in g["params"])
    params = dict(zip(ids, (p for g in opt.param_groups for p in g["params"])))
    for i, slots in ckpt["optimizer"]["state"].items():
        if i not in params:
            raise CheckpointError(f"{where}: optimizer state for parameter {i}, which the optimizer does not have")
        for slot, t in slots.items():
            want = ((), torch.float32) if slot == "step" else (tuple(params[i].shape), params[i].dtype)
            if want != (tuple(t.shape), t.dtype):
                raise CheckpointError(f"{where}: optimizer:state:{i}:{slot} is {tuple(t.shape)} {t.dtype}, "
                                      f"expected {want[0]} {want[1]}")
    opt.load_state_dict({"state": ckpt["optimizer"]["state"], "param_groups": groups})
    sched.load_state_dict(_like(ckpt["scheduler"], sched.state_dict(), f"{where}: scheduler"))
    cpu = ckpt["rng"]["torch"]
    if cpu.shape != torch.get_rng_state().shape:
        raise CheckpointError(f"{where}: rng:torch has {cpu.numel()} bytes, the torch generator's state "
                              f"{torch.get_rng_state().numel()}")
    torch.set_rng_state(cpu)
    cuda = ckpt["rng"]["cuda"]
    if device.type == "cuda" and cuda:
        current = torch.cuda.get_rng_state_all()
        if len(cuda) == len(current) and all(a.shape == b.shape for a, b in zip(cuda, current)):
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("%s: CUDA generator states for %d devices, %d here: not restored", where, len(cuda),
                        len(current))


def _like(saved, fresh, where: str):
    """`saved` (from JSON) if it has the structure and value types of `fresh` (a live state dict),
    tuples restored; CheckpointError naming the first difference otherwise."""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            raise CheckpointError(f"{where} must have the keys {sorted(fresh)}, got {str(saved)[:80]}")
        return {k: _like(saved[k], fresh[k], f"{where}.{k}") for k in fresh}
    if isinstance(fresh, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            raise CheckpointError(f"{where} must be a list of {len(fresh)}, got {str(saved)[:80]}")
        return type(fresh)(_like(s, f, f"{where}[{i}]") for i, (s, f) in enumerate(zip(saved, fresh)))
    if fresh is None:
        ok = saved is None
    elif isinstance(fresh, bool):
        ok = saved is None or isinstance(saved, bool)
    elif isinstance(fresh, (int, float)):
        ok = isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
        ok = ok and (isinstance(saved, int) or not isinstance(fresh, int))
    else:
        ok = isinstance(saved, type(fresh))
    if not ok:
        raise CheckpointError(f"{where} must be like {fresh!r}, got {str(saved)[:80]}")
    return saved
