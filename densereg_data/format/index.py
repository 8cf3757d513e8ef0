"""index.json, read once and checked: the one answer to "which files and rows make up split X".

Reading needs json and the standard library only. `ShardIndex.open(root)` refuses an index that does
not follow docs/FORMAT.md (wrong format or version, missing keys, values of the wrong type or range,
shard file names that are not plain ``<split>-<nnnnn>.h5`` names inside the folder) with one
`ShardFormatError` line naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from densereg_data.errors import ShardFormatError
from densereg_data.format.files import sha256_file
from densereg_data.format.schema import CONFIG, FORMAT, INDEX, READABLE_VERSIONS, SHARD_RE

__all__ = ["ShardIndex", "MAX_INDEX_BYTES"]

#: index.json and config.json larger than this are refused unread (a real index is a few kB per shard).
MAX_INDEX_BYTES = 64 * 2**20


def _read_json(path: Path, what: str):
    try:
        if not path.is_file():
            raise ShardFormatError(f"{path}: missing or not a regular file ({what})")
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ShardFormatError(f"{path}: larger than {MAX_INDEX_BYTES} bytes, not a {what}")
        return json.loads(path.read_bytes().decode("utf-8"))
    except ShardFormatError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ShardFormatError(f"{path}: unreadable {what} ({why})") from None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ShardFormatError(f"{path}: {what}")


@dataclass(frozen=True)
class ShardIndex:
    """A validated index.json of the shard directory `root`.

    k: bins per axis; image_size: (S, S) (height, width); part_names: the part names; shards: the
    shard records ({"file", "split", "samples", "bytes", "sha256"}); splits: {name: samples};
    aliases: {alias: [split, ...]}; template: {"id", "hash", ...}; sha256: hash of index.json;
    build_config: config.json as a dict ({} when absent); raw: the whole document.
    """

    root: Path
    k: int
    image_size: tuple[int, int]
    part_names: tuple[str, ...]
    shards: tuple[dict, ...]
    splits: dict
    aliases: dict
    template: dict
    sha256: str
    build_config: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ShardIndex":
        """Read and check ``root/index.json`` (and config.json when present)."""
        root = Path(root)
        path = root / INDEX
        if not root.is_dir():
            raise ShardFormatError(f"not a shard directory (no such folder): {root}")
        if not path.exists():
            raise ShardFormatError(f"not a shard directory (no {INDEX}): {root}")
        index = _read_json(path, "index")
        _check(isinstance(index, dict), path, "not a JSON object")
        _check(index.get("format") == FORMAT, path, f"format is not {FORMAT!r}")
        version = index.get("format_version")
        _check(_is_int(version) and version in READABLE_VERSIONS, path,
               f"format_version {version!r}, this reader reads {', '.join(map(str, READABLE_VERSIONS))}; "
               "rebuild the shards")
        for key in ("image_size", "k", "part_names", "splits", "split_aliases", "shards"):
            _check(key in index, path, f"missing key {key!r}")
        size = index["image_size"]
        _check(isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size) and size[0] == size[1]
               and 16 <= size[0] <= 4096, path, f"image_size must be [S, S] with S in 16..4096, got {size!r}"[:200])
        k = index["k"]
        _check(_is_int(k) and 1 <= k <= 1024, path, f"k must be an integer in 1..1024, got {k!r}"[:200])
        names = index["part_names"]
        _check(isinstance(names, list) and 1 <= len(names) <= 254 and all(isinstance(n, str) for n in names), path,
               "part_names must be a list of 1..254 strings")
        splits = index["splits"]
        _check(isinstance(splits, dict) and all(isinstance(s, str) and _is_int(n) and n >= 0 for s, n in splits.items()),
               path, "splits must map split names to sample counts >= 0")
        aliases = index["split_aliases"]
        _check(isinstance(aliases, dict) and all(isinstance(a, str) and isinstance(m, list) and m
                                                 and all(isinstance(s, str) and s in splits for s in m)
                                                 for a, m in aliases.items()),
               path, "split_aliases must map names to non-empty lists of splits that are in the index")
        shards = index["shards"]
        _check(isinstance(shards, list), path, "shards must be a list")
        seen = set()
        for rec in shards:
            _check(isinstance(rec, dict), path, "every shard entry must be an object")
            name = rec.get("file")
            _check(isinstance(name, str) and SHARD_RE.match(name) is not None and os.path.basename(name) == name,
                   path, f"shard file name {str(name)[:80]!r} is not a plain <split>-<nnnnn>.h5 name in the folder")
            _check(name not in seen, path, f"shard {name} listed twice")
            seen.add(name)
            _check(rec.get("split") in splits, path, f"shard {name}: split {str(rec.get('split'))[:40]!r} is not in splits")
            for key in ("samples", "bytes"):
                _check(_is_int(rec.get(key)) and rec[key] >= 0, path, f"shard {name}: {key} must be an integer >= 0")
            sha = rec.get("sha256")
            _check(isinstance(sha, str) and len(sha) == 64, path, f"shard {name}: sha256 must be 64 hex digits")
        template = index.get("template", {})
        _check(isinstance(template, dict), path, "template must be an object")
        config = _read_json(root / CONFIG, "config") if (root / CONFIG).exists() else {}
        _check(isinstance(config, dict), root / CONFIG, "not a JSON object")
        return cls(root=root, k=int(k), image_size=(int(size[0]), int(size[1])), part_names=tuple(names),
                   shards=tuple(shards), splits=dict(splits), aliases={a: list(m) for a, m in aliases.items()},
                   template=dict(template), sha256=sha256_file(path), build_config=config, raw=index)

    @property
    def split_names(self) -> list[str]:
        """Every name `resolve` accepts: "all", the splits and the aliases."""
        return ["all", *self.splits, *self.aliases]

    def resolve(self, split: str | None) -> list[str]:
        """A split name, an alias, "all" or None (= all) -> the split names it stands for."""
        if split is None or split == "all":
            return list(self.splits)
        if split in self.splits:
            return [split]
        if split in self.aliases:
            return list(self.aliases[split])
        raise ShardFormatError(f"no split {split!r} in {self.root} (valid: {', '.join(self.split_names)})")

    def records(self, split: str | None) -> list[dict]:
        """The shard records of `split` holding at least one sample, in index order."""
        members = set(self.resolve(split))
        return [s for s in self.shards if s["split"] in members and s["samples"] > 0]

    def files(self, split: str | None) -> list[tuple[Path, int]]:
        """(path, samples) of every non-empty shard file of `split`, in index order.

        Raises ShardFormatError for an unknown or empty split or a listed file that is missing.
        """
        out = [(self.root / s["file"], int(s["samples"])) for s in self.records(split)]
        if not out:
            raise ShardFormatError(f"split {split!r} in {self.root} is empty (0 samples)")
        for p, _ in out:
            if not p.is_file():
                raise ShardFormatError(f"{p}: listed in index.json but missing")
        return out

    def has_split(self, split: str) -> bool:
        """Is `split` (a split or an alias) here with at least one sample?"""
        try:
            return bool(self.records(split))
        except ShardFormatError:
            return False

    def samples(self, split: str | None) -> int:
        return sum(int(s["samples"]) for s in self.records(split))

    def crop(self) -> dict:
        """{"margin", "size"} of the crops, from config.json's "build" object."""
        cfg = self.build_config.get("build", self.build_config)
        cfg = cfg if isinstance(cfg, dict) else {}
        margin, size = cfg.get("margin", 0.25), cfg.get("size", self.image_size[0])
        if not (isinstance(margin, (int, float)) and 0 <= margin <= 4 and _is_int(size) and size == self.image_size[0]):
            raise ShardFormatError(f"{self.root / CONFIG}: build margin {margin!r} / size {size!r} out of range")
        return {"margin": float(margin), "size": int(size)}
