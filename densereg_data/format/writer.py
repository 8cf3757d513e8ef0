"""Writing shards (docs/FORMAT.md): one shard file sample by sample, template.h5 and index.json.

Every file is written under a temporary name and renamed into place (`densereg_data.format.files`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densereg_data.conventions import DEFAULT_K, PART_NAMES
from densereg_data.errors import ShapeError
from densereg_data.format.files import atomic_write_bytes, dumps_json
from densereg_data.format.schema import (COMPRESSIONS, DENSE, FORMAT, FORMAT_VERSION, INDEX, TEMPLATE_ATTRS,
                                         TEMPLATE_INT_ATTRS, TEMPLATE_MODEL_SCHEMA, TEMPLATE_OPTIONAL_ATTRS,
                                         TEMPLATE_SCHEMA, sample_schema)

__all__ = ["ShardRecord", "ShardWriter", "write_template", "write_index"]


@dataclass(frozen=True)
class ShardRecord:
    """One entry of index.json's ``shards``."""

    file: str
    split: str
    samples: int
    bytes: int
    sha256: str

    def to_json(self) -> dict:
        return {"file": self.file, "split": self.split, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256}


def _in_memory_h5(name: Path):
    """A new HDF5 file built in memory (nothing touches the disk until `_persist`)."""
    import h5py

    return h5py.File(name, "w", driver="core", backing_store=False)


def _persist(f, final: Path) -> tuple[int, str]:
    """Close the in-memory HDF5 file `f` and write its bytes to `final` through a temporary name;
    returns (bytes, sha256). A full disk is a plain OSError (ENOSPC) here, raised by Python's own
    write, never HDF5 failing mid-flush."""
    import hashlib

    f.flush()
    image = f.id.get_file_image()
    f.close()
    atomic_write_bytes(final, image)
    return len(image), hashlib.sha256(image).hexdigest()


class ShardWriter:
    """Write one shard file sample by sample; `close` writes it into place and returns its record.

    size: crop side S; model_size: C; expression_size: E (0: no `expression` dataset); capacity: the most samples it will hold (space is reserved, and
    trimmed to the samples appended on close). attrs: extra file attributes (JSON-able scalars/str).
    The file is assembled in memory and written on `close` (atomically, through a temporary name), so a
    full disk or an exception inside a ``with`` block leaves nothing under the final name.
    """

    def __init__(self, path: str | os.PathLike, split: str, *, size: int, model_size: int, capacity: int,
                 attrs: dict | None = None, compression: str = "lzf", expression_size: int = 0) -> None:
        import h5py

        self.path = Path(path)
        self.split = split
        self.schema = sample_schema(size, model_size, expression_size)
        self.n = 0
        self.capacity = max(int(capacity), 1)
        if compression not in COMPRESSIONS:
            raise ShapeError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self._dsets = None
        self._file = _in_memory_h5(self.path)
        try:
            f = self._file
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["split"] = split
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            for name, (dtype, shape) in self.schema.items():
                dt = h5py.string_dtype("utf-8") if dtype == "str" else np.dtype(dtype)
                packed = compression == "lzf" or name not in DENSE
                f.create_dataset(name, shape=(self.capacity, *shape), maxshape=(None, *shape), chunks=(1, *shape),
                                 dtype=dt, compression="lzf" if packed else None,
                                 shuffle=packed and dtype in ("float16", "float32"))
        except BaseException:
            self.abort()
            raise

    def append(self, sample: dict[str, Any]) -> None:
        """Add one sample: a dict with every SCHEMA key, arrays of the per-sample shape (cast to dtype)."""
        if self.n >= self.capacity:  # noqa: SIM102
            raise ShapeError(f"shard {self.path.name} is full ({self.capacity} samples)")
        missing = set(self.schema) - set(sample)
        if missing:
            raise ShapeError(f"sample for {self.path.name} lacks {sorted(missing)}")
        if self._dsets is None:
            self._dsets = {name: self._file[name] for name in self.schema}
        for name, (dtype, shape) in self.schema.items():
            value = sample[name]
            if dtype == "str":
                self._dsets[name][self.n] = str(value)
                continue
            arr = np.asarray(value)
            if arr.shape != shape:
                raise ShapeError(f"{name} must be {shape}, got {arr.shape} (sample {sample.get('source', '?')})")
            self._dsets[name][self.n] = arr.astype(dtype, copy=False)
        self.n += 1

    def close(self, attrs: dict | None = None) -> ShardRecord:
        """Trim, set final attributes, flush, fsync and rename into place; returns the index record."""
        f = self._file
        self._dsets = None
        try:
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
            if self.n != self.capacity:
                for name in self.schema:
                    f[name].resize(self.n, axis=0)
            self._file = None
            nbytes, digest = _persist(f, self.path)
        except BaseException:
            self._file = f
            self.abort()
            raise
        return ShardRecord(self.path.name, self.split, self.n, nbytes, digest)

    def abort(self) -> None:
        """Drop the file being built (safe to call twice)."""
        self._dsets = None
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - the file is being discarded anyway
                pass
            self._file = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_template(path: str | os.PathLike, facts: dict[str, Any]) -> Path:
    """Write template.h5 from `FaceModel.facts(...)`: the TEMPLATE_SCHEMA arrays and TEMPLATE_ATTRS, and
    the TEMPLATE_MODEL_SCHEMA arrays (the face model for a dense fit) when `facts` has them (all or none)."""
    final = Path(path)
    model = [name for name in TEMPLATE_MODEL_SCHEMA if name in facts]
    if model and len(model) != len(TEMPLATE_MODEL_SCHEMA):
        raise ShapeError(f"template facts hold some face-model arrays ({', '.join(model)}) but not all of "
                         f"{', '.join(TEMPLATE_MODEL_SCHEMA)}")
    f = _in_memory_h5(final)
    try:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        for name, (dtype, _) in TEMPLATE_SCHEMA.items():
            f.create_dataset(name, data=np.asarray(facts[name], dtype=dtype))
        for name in model:
            f.create_dataset(name, data=np.asarray(facts[name], dtype=TEMPLATE_MODEL_SCHEMA[name][0]))
        for key in TEMPLATE_ATTRS:
            value = facts[key]
            f.attrs[key] = int(value) if key in TEMPLATE_INT_ATTRS else str(value)
        for key in TEMPLATE_OPTIONAL_ATTRS:
            if key in facts:
                f.attrs[key] = int(facts[key]) if key in TEMPLATE_INT_ATTRS else str(facts[key])
        _persist(f, final)
    except BaseException:
        f.close()
        raise
    return final


def write_index(out: str | os.PathLike, *, records: list[ShardRecord], split_order: list[str],
                split_aliases: dict[str, list[str]], image_size: int, template: dict, config_sha256: str,
                densereg_version: str, k: int = DEFAULT_K) -> Path:
    """Write index.json (atomically) for the shard `records`, in their order."""
    splits = {s: 0 for s in split_order}
    for r in records:
        splits[r.split] = splits.get(r.split, 0) + r.samples
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "densereg_version": densereg_version,
        "template": {k: template[k] for k in ("id", "hash", "model") if k in template},
        "image_size": [int(image_size), int(image_size)],
        "k": int(k),
        "part_names": list(PART_NAMES),
        "splits": splits,
        "split_aliases": {a: list(v) for a, v in split_aliases.items()},
        "shards": [r.to_json() for r in records],
        "config_sha256": config_sha256,
    }
    return atomic_write_bytes(Path(out) / INDEX, dumps_json(index))
