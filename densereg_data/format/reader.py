"""Reading shards: `open_shards` (random access, numpy) and `read_split` (a whole split in memory).

Reading needs h5py, json and numpy only (this module imports nothing heavier); both halves of
densereg read through here. Every shard file is opened by `open_shard_file`, which refuses HDF5
features that could read outside the file (external storage, external or soft links, virtual
datasets).

    >>> ds = open_shards("shards/", split="train")
    >>> sample = ds[0]           # dict of numpy arrays, one sample
    >>> batch = ds[0:8]          # dict of stacked arrays, first axis 8
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from densereg_data.conventions import N_LANDMARKS
from densereg_data.errors import ShardFormatError
from densereg_data.format.index import ShardIndex
from densereg_data.format.schema import DENSE, FORMAT, READABLE_VERSIONS, SCHEMA, sample_schema

__all__ = ["ShardReader", "open_shards", "open_shard_file", "check_plain_hdf5", "check_shard_schema", "h5_guard",
           "read_split"]


@contextlib.contextmanager
def h5_guard(path):
    """Turn whatever h5py raises on a corrupt or hostile file into one ShardFormatError naming `path`."""
    try:
        yield
    except ShardFormatError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ShardFormatError(f"{path}: corrupt or unreadable HDF5 content ({why})") from None


def _h5_dtype_name(ds) -> str:
    import h5py

    if h5py.check_string_dtype(ds.dtype) is not None:
        return "str"
    return ds.dtype.name


def check_shard_schema(f, name: str, *, size: int, model_size: int, samples: int | None, split: str | None,
                       expression_size: int = 0) -> None:
    """Raise `ShardFormatError` naming `name` unless the h5py file `f`, opened by `open_shard_file` (which
    checked its format attributes), follows the shard schema: split, datasets, dtypes, shapes, chunks."""
    if split is not None and f.attrs.get("split") != split:
        raise ShardFormatError(f"{name}: split attribute {f.attrs.get('split')!r}, index says {split!r}")
    schema = sample_schema(size, model_size, expression_size, version=int(f.attrs.get("format_version", 2)))
    missing = sorted(set(schema) - set(f.keys()))
    if missing:
        raise ShardFormatError(f"{name}: missing datasets {missing}")
    n = f["image"].shape[0]
    if samples is not None and n != samples:
        raise ShardFormatError(f"{name}: holds {n} samples, index says {samples}")
    for key, (dtype, shape) in schema.items():
        ds = f[key]
        if _h5_dtype_name(ds) != dtype:
            raise ShardFormatError(f"{name}: {key} has dtype {_h5_dtype_name(ds)}, expected {dtype}")
        if ds.shape != (n, *shape):
            raise ShardFormatError(f"{name}: {key} has shape {ds.shape}, expected {(n, *shape)}")
        if ds.chunks != (1, *shape) or ds.compression not in ("lzf", None):
            raise ShardFormatError(f"{name}: {key} is not chunked one sample per chunk (lzf or raw)")


def check_plain_hdf5(f, path) -> None:
    """Raise ShardFormatError unless every member of the open h5py file `f` is a hard-linked, plain
    (contiguous or chunked) dataset stored inside the file: no external storage, no external or soft
    links, no virtual datasets, no groups."""
    import h5py

    for name in f.keys():
        link = f.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ShardFormatError(f"{path}: {name} is a {type(link).__name__}, not a dataset stored in the file")
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise ShardFormatError(f"{path}: {name} is not a dataset")
        if obj.is_virtual:
            raise ShardFormatError(f"{path}: {name} is a virtual dataset (it would read other files)")
        if obj.external:
            raise ShardFormatError(f"{path}: {name} uses external storage (it would read other files)")


def open_shard_file(path: str | os.PathLike, *, size: int | None = None, samples: int | None = None,
                    split: str | None = None):
    """Open one shard (or template.h5) read-only, checked by `check_plain_hdf5` and for the format
    attributes; with `size` (a shard's crop side), also against the schema (`check_shard_schema`, the
    model size taken from its own coefficients). Returns the h5py.File; ShardFormatError naming the
    file otherwise."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ShardFormatError(f"{path}: missing or not a regular file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ShardFormatError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0][:120]})") from None
    try:
        with h5_guard(path):
            check_plain_hdf5(f, path)
            version = f.attrs.get("format_version", None)
            if f.attrs.get("format") != FORMAT or version is None or int(version) not in READABLE_VERSIONS:
                raise ShardFormatError(f"{path}: file attributes do not say {FORMAT} version "
                                       f"{' or '.join(map(str, READABLE_VERSIONS))}")
            if size is not None:
                coeff = f["coefficients"] if "coefficients" in f else None
                model_size = coeff.shape[1] if coeff is not None and coeff.ndim == 2 else -1
                expr = f["expression"] if "expression" in f else None
                expression_size = (expr.shape[1] if expr.ndim == 2 else -1) if expr is not None else 0
                check_shard_schema(f, str(path), size=size, model_size=model_size, samples=samples, split=split,
                                   expression_size=expression_size)
    except BaseException:
        f.close()
        raise
    return f


def absent_datasets(n: int) -> dict[str, np.ndarray]:
    """What the datasets a shard of n samples may lack read as: `expression` of a model without
    expressions (or a version 1 shard) (n, 0); `landmark_state` of a version 1 shard all visible;
    `view_delta` of a version 1 or 2 shard (0, 0), every sample an original."""
    return {"expression": np.zeros((n, 0), np.float32), "landmark_state": np.ones((n, N_LANDMARKS), np.uint8),
            "view_delta": np.zeros((n, 2), np.float32)}


def read_split(index: ShardIndex, split: str, keys=("image", "uv", "parts", "landmarks")) -> dict[str, np.ndarray]:
    """Every sample of a split in memory, e.g. {"image": (N, S, S, 3) uint8, "uv": (N, S, S, 2) float16,
    "parts": (N, S, S) uint8, "landmarks": (N, 68, 2) float32}; a dataset a shard may lack reads as
    `absent_datasets` says."""
    records = index.records(split)
    if not records:
        raise ShardFormatError(f"split {split!r} in {index.root} is empty (0 samples)")
    parts: dict[str, list] = {k: [] for k in keys}
    for rec in records:
        path = index.root / rec["file"]
        with open_shard_file(path, size=index.image_size[0], samples=rec["samples"], split=rec["split"]) as f, \
                h5_guard(path):
            for k in keys:
                parts[k].append(f[k][()] if k in f or k not in absent_datasets(0) else absent_datasets(rec["samples"])[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


class ShardReader:
    """Random access to the samples of one or more splits of a shard directory.

    ``len(ds)``; ``ds[i]`` -> dict of numpy arrays of one sample (``source`` is a str); ``ds[a:b]`` ->
    dict of arrays stacked on a first axis (``source`` a list of str); iteration yields ``ds[i]``.
    Files are opened on first use and kept open (re-opened after a fork); small per-sample arrays are
    read into memory once per shard, the dense ones (image, uv, parts) one chunk per sample.
    ``uv`` is returned as stored (float16); cast with ``.astype(np.float32)`` for arithmetic.
    """

    def __init__(self, path: str | os.PathLike, split: str | None = None) -> None:
        self.path = Path(path)
        self.index = ShardIndex.open(self.path)
        self.splits = self.index.resolve(split)
        self.shards = self.index.records(split)
        self._offsets = np.cumsum([0] + [s["samples"] for s in self.shards])
        self._files: dict[int, Any] = {}
        self._small: dict[int, dict[str, Any]] = {}
        self._dense: dict[int, tuple] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return f"ShardReader({str(self.path)!r}, splits={self.splits}, samples={len(self)})"

    def _open(self, k: int):
        if self._pid != os.getpid():  # forked: h5py handles do not survive a fork
            self._files, self._small, self._dense, self._pid = {}, {}, {}, os.getpid()
        f = self._files.get(k)
        if f is None:
            rec = self.shards[k]
            path = self.path / rec["file"]
            f = open_shard_file(path, size=self.index.image_size[0], samples=rec["samples"], split=rec["split"])
            with h5_guard(path):
                # a model without expressions (or a version 1 shard) has no `expression`: (n, 0) float32;
                absent = absent_datasets(rec["samples"])
                small = {n: f[n][()] if n in f else absent[n] for n in SCHEMA if n not in DENSE}
            self._files[k] = f
            self._small[k] = small
            self._dense[k] = tuple((n, f[n]) for n in DENSE)
        return f

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return k, i - int(self._offsets[k])

    def locate(self, i: int) -> tuple[dict, int]:
        """(shard record of index.json, row in that shard) of sample `i`; the record names its split."""
        k, row = self._locate(int(i))
        return self.shards[k], row

    def _read(self, k: int, lo: int, hi: int) -> dict[str, Any]:
        f = self._open(k)
        with h5_guard(f.filename):
            out: dict[str, Any] = {n: f[n][lo:hi] for n in DENSE}
            for n, arr in self._small[k].items():
                out[n] = [s.decode("utf-8") for s in arr[lo:hi]] if n == "source" else arr[lo:hi]
        return out

    def __getitem__(self, item):
        if isinstance(item, slice):
            return self._slice(*item.indices(len(self)))
        k, j = self._locate(int(item))
        f = self._open(k)
        with h5_guard(f.filename):
            out = {n: d[j] for n, d in self._dense[k]}
            for n, arr in self._small[k].items():
                out[n] = arr[j].decode("utf-8") if n == "source" else arr[j]
        return out

    def _slice(self, start: int, stop: int, step: int) -> dict[str, Any]:
        if step != 1:
            parts = [self[i] for i in range(start, stop, step)]
            return {n: ([p[n] for p in parts] if n == "source" else np.stack([p[n] for p in parts]) if parts else
                        np.empty((0,))) for n in SCHEMA}
        pieces = []
        for k in range(len(self.shards)):
            lo, hi = max(start, self._offsets[k]), min(stop, self._offsets[k + 1])
            if lo < hi:
                pieces.append(self._read(k, int(lo - self._offsets[k]), int(hi - self._offsets[k])))
        if not pieces:
            return {n: [] if n == "source" else np.empty((0,)) for n in SCHEMA}
        return {n: sum((p[n] for p in pieces), []) if n == "source" else np.concatenate([p[n] for p in pieces])
                for n in SCHEMA}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
        self._files, self._small, self._dense = {}, {}, {}

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_small"], state["_dense"] = {}, {}, {}
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def open_shards(path: str | os.PathLike, split: str | None = None) -> ShardReader:
    """Open a shard directory for reading: `split` is a split, an alias (e.g. "full"), "all" or None."""
    return ShardReader(path, split)
