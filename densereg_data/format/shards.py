"""The shard format (docs/FORMAT.md, version 1): schema, atomic writer, and the reference reader.

A shard directory holds ``index.json``, ``config.json``, ``template.h5``, ``skipped.jsonl`` and
``<split>-<nnnnn>.h5`` files. Writers here never leave a partial file under a final name: every file
is written to a hidden temporary name in the same folder, flushed, fsynced and renamed.

Reading needs h5py, json and numpy only (this module imports nothing heavier).

    >>> ds = open_shards("shards/", split="train")
    >>> sample = ds[0]           # dict of numpy arrays, one sample
    >>> batch = ds[0:8]          # dict of stacked arrays, first axis 8
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from densereg_data.conventions import DEFAULT_K, N_LANDMARKS, PART_NAMES
from densereg_data.errors import ShapeError, ShardFormatError

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SCHEMA", "TEMPLATE_SCHEMA", "ShardRecord", "ShardWriter", "ShardDataset",
    "open_shards", "read_index", "shard_name", "atomic_write_bytes", "sha256_file", "write_template",
    "sample_schema", "write_index", "COMPRESSIONS",
]

FORMAT = "densereg-shards"
FORMAT_VERSION = 1
INDEX, CONFIG, TEMPLATE, SKIPPED = "index.json", "config.json", "template.h5", "skipped.jsonl"
SHARD_RE = re.compile(r"(?P<split>[a-z0-9_]+)-(?P<n>\d{5})\.h5\Z")
TMP_PREFIX = ".tmp-"

#: dataset -> (dtype, per-sample shape with "S" for the crop side and "C" for the model size).
SCHEMA: dict[str, tuple[str, tuple]] = {
    "image": ("uint8", ("S", "S", 3)),
    "uv": ("float16", ("S", "S", 2)),
    "parts": ("uint8", ("S", "S")),
    "landmarks": ("float32", (N_LANDMARKS, 2)),
    "crop_from_image": ("float64", (2, 3)),
    "source": ("str", ()),
    "source_size": ("int32", (2,)),
    "fit_nme": ("float32", ()),
    "crop_from_template": ("float64", (3, 4)),
    "pose": ("float32", (3,)),
    "coefficients": ("float32", ("C",)),
}
#: The per-pixel datasets; the rest are small and read into memory when a shard is opened.
DENSE = ("image", "uv", "parts")
#: Shard compressions: "lzf" (every dataset lzf, + shuffle for float16/32; the default) or "none" (the
#: dense datasets stored raw: about 2x the bytes, about 4x faster to read; the small ones stay lzf).
COMPRESSIONS = ("lzf", "none")

#: template.h5 dataset -> (dtype, shape with "G" for the U-V grid side).
TEMPLATE_SCHEMA: dict[str, tuple[str, tuple]] = {
    "landmark_uv": ("float64", (N_LANDMARKS, 2)),
    "uv_to_xyz": ("float32", ("G", "G", 3)),
    "eye_distance": ("float64", ()),
    "part_uv": ("uint8", ("G", "G")),
}
TEMPLATE_ATTRS = ("template_id", "template_hash", "units", "model_size")


def sample_schema(size: int, model_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """SCHEMA with S and C filled in: name -> (dtype, per-sample shape)."""
    fill = {"S": int(size), "C": int(model_size)}
    return {k: (dt, tuple(fill.get(d, d) for d in shape)) for k, (dt, shape) in SCHEMA.items()}


def shard_name(split: str, number: int) -> str:
    """``train-00000.h5``."""
    return f"{split}-{number:05d}.h5"


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _tmp_path(final: Path) -> Path:
    return final.with_name(f"{TMP_PREFIX}{os.getpid()}-{final.name}")


def _fsync_replace(tmp: Path, final: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename (never a half-written `path`)."""
    final = Path(path)
    tmp = _tmp_path(final)
    try:
        tmp.write_bytes(data)
        _fsync_replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def dumps_json(obj: Any) -> bytes:
    """The canonical JSON bytes of every file here (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


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


class ShardWriter:
    """Write one shard file sample by sample; `close` renames it into place and returns its record.

    size: crop side S; model_size: C; capacity: the most samples it will hold (space is reserved, and
    trimmed to the samples appended on close). attrs: extra file attributes (JSON-able scalars/str).
    On any exception inside a ``with`` block the temporary file is removed and nothing is renamed.
    """

    def __init__(self, path: str | os.PathLike, split: str, *, size: int, model_size: int, capacity: int,
                 attrs: dict | None = None, compression: str = "lzf") -> None:
        import h5py

        self.path = Path(path)
        self.split = split
        self.schema = sample_schema(size, model_size)
        self.n = 0
        self.capacity = max(int(capacity), 1)
        if compression not in COMPRESSIONS:
            raise ShapeError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.tmp = _tmp_path(self.path)
        self._dsets = None
        self._file = h5py.File(self.tmp, "w")
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
            f.close()
            self._file = None
            _fsync_replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return ShardRecord(self.path.name, self.split, self.n, self.path.stat().st_size, sha256_file(self.path))

    def abort(self) -> None:
        """Drop the temporary file (safe to call twice)."""
        self._dsets = None
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001 - the file is being discarded anyway
                pass
            self._file = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_template(path: str | os.PathLike, facts: dict[str, Any]) -> Path:
    """Write template.h5 from `template_facts(...)`: the TEMPLATE_SCHEMA arrays and TEMPLATE_ATTRS."""
    import h5py

    final = Path(path)
    tmp = _tmp_path(final)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for name, (dtype, _) in TEMPLATE_SCHEMA.items():
                f.create_dataset(name, data=np.asarray(facts[name], dtype=dtype))
            for key in TEMPLATE_ATTRS:
                value = facts[key]
                f.attrs[key] = int(value) if key == "model_size" else str(value)
        _fsync_replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
        "template": {"id": template["id"], "hash": template["hash"]},
        "image_size": [int(image_size), int(image_size)],
        "k": int(k),
        "part_names": list(PART_NAMES),
        "splits": splits,
        "split_aliases": {a: list(v) for a, v in split_aliases.items()},
        "shards": [r.to_json() for r in records],
        "config_sha256": config_sha256,
    }
    return atomic_write_bytes(Path(out) / INDEX, dumps_json(index))


# ----------------------------------------------------------------------------------------------- reading


def read_index(path: str | os.PathLike) -> dict:
    """index.json of a shard directory, checked for format and version."""
    p = Path(path) / INDEX
    try:
        index = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardFormatError(f"not a shard directory (no {INDEX}): {Path(path)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardFormatError(f"{p}: unreadable index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ShardFormatError(f"{p}: format is not {FORMAT!r}")
    if index.get("format_version") != FORMAT_VERSION:
        raise ShardFormatError(f"{p}: format_version {index.get('format_version')!r}, this reader reads {FORMAT_VERSION}")
    for key in ("image_size", "splits", "shards", "split_aliases"):
        if key not in index:
            raise ShardFormatError(f"{p}: missing key {key!r}")
    return index


def resolve_splits(index: dict, split: str | None) -> list[str]:
    """A split name, an alias, "all" or None (= all) -> split names present in the index."""
    splits = list(index["splits"])
    if split is None or split == "all":
        return splits
    if split in index["splits"]:
        return [split]
    if split in index["split_aliases"]:
        return list(index["split_aliases"][split])
    valid = ", ".join(["all", *splits, *index["split_aliases"]])
    raise ShardFormatError(f"no split {split!r} in these shards (valid: {valid})")


class ShardDataset:
    """Random access to the samples of one or more splits of a shard directory.

    ``len(ds)``; ``ds[i]`` -> dict of numpy arrays of one sample (``source`` is a str); ``ds[a:b]`` ->
    dict of arrays stacked on a first axis (``source`` a list of str); iteration yields ``ds[i]``.
    Files are opened on first use and kept open (re-opened after a fork); small per-sample arrays are
    read into memory once per shard, the dense ones (image, uv, parts) one chunk per sample.
    ``uv`` is returned as stored (float16); cast with ``.astype(np.float32)`` for arithmetic.
    """

    def __init__(self, path: str | os.PathLike, split: str | None = None) -> None:
        self.path = Path(path)
        self.index = read_index(self.path)
        self.splits = resolve_splits(self.index, split)
        self.shards = [s for s in self.index["shards"] if s["split"] in self.splits and s["samples"] > 0]
        self._offsets = np.cumsum([0] + [s["samples"] for s in self.shards])
        self._files: dict[int, Any] = {}
        self._small: dict[int, dict[str, Any]] = {}
        self._dense: dict[int, tuple] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.path)!r}, splits={self.splits}, samples={len(self)})"

    def _open(self, k: int):
        if self._pid != os.getpid():  # forked: h5py handles do not survive a fork
            self._files, self._small, self._dense, self._pid = {}, {}, {}, os.getpid()
        f = self._files.get(k)
        if f is None:
            import h5py

            name = self.shards[k]["file"]
            try:
                f = h5py.File(self.path / name, "r")
            except (OSError, FileNotFoundError) as exc:
                raise ShardFormatError(f"cannot open shard {self.path / name}: {exc}") from None
            self._files[k] = f
            self._small[k] = {n: f[n][()] for n in SCHEMA if n not in DENSE}
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

    def _read(self, k: int, lo: int, hi: int) -> dict[str, Any]:
        f = self._open(k)
        out: dict[str, Any] = {n: f[n][lo:hi] for n in DENSE}
        for n, arr in self._small[k].items():
            out[n] = [s.decode("utf-8") for s in arr[lo:hi]] if n == "source" else arr[lo:hi]
        return out

    def __getitem__(self, item):
        if isinstance(item, slice):
            return self._slice(*item.indices(len(self)))
        k, j = self._locate(int(item))
        if k not in self._files or self._pid != os.getpid():
            self._open(k)
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

    def __enter__(self) -> "ShardDataset":
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


def open_shards(path: str | os.PathLike, split: str | None = None) -> ShardDataset:
    """Open a shard directory for reading: `split` is a split, an alias (e.g. "full"), "all" or None."""
    return ShardDataset(path, split)
