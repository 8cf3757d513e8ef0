"""Planning and resuming a build: the output folder, the cut into shards, and which shards are done.

The samples are sorted (split, source) and cut into shards by that order alone, so shard membership
never depends on completion order. Each shard records a hash of its planned sample list
(`plan_sha256`) and the samples it skipped; a rerun keeps every shard that is complete and matches its
plan, removes stale temporary files, and writes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from densereg_data.build.datasets import SampleRef, Scan
from densereg_data.errors import BuildError, ShardFormatError
from densereg_data.format import (CONFIG, INDEX, SHARD_RE, SKIPPED, TEMPLATE, TMP_PREFIX, ShardRecord, sha256_file,
                                  shard_name)

log = logging.getLogger(__name__)

__all__ = ["prepare_out", "plan_shards", "existing_shard"]


def prepare_out(out: Path, config_bytes: bytes, overwrite: bool) -> None:
    """Create `out`, or accept it for resuming, or refuse it (different config) unless `overwrite`."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()):
        cfg = out / CONFIG
        same = cfg.is_file() and cfg.read_bytes() == config_bytes
        if not same and not overwrite:
            what = "was built with a different configuration" if cfg.is_file() else "is not empty and holds no shards"
            raise BuildError(f"output folder {out} {what}; use --overwrite to replace it or choose another --out")
        if not same:
            log.info("--overwrite: removing the previous build in %s", out)
            for f in out.iterdir():
                if f.name in (INDEX, CONFIG, TEMPLATE, SKIPPED) or SHARD_RE.match(f.name) or f.name.startswith(TMP_PREFIX):
                    f.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f"{TMP_PREFIX}{os.getpid()}-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BuildError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    for f in out.iterdir():  # leftovers of a killed run
        if f.name.startswith(TMP_PREFIX):
            f.unlink(missing_ok=True)


def plan_shards(scan: Scan, capacity: int, config_sha: str) -> list[dict]:
    """Cut the sorted samples into shards: per split, consecutive groups of `capacity`."""
    plan = []
    by_split: dict[str, list[SampleRef]] = {}
    for s in scan.samples:
        by_split.setdefault(s.split, []).append(s)
    for split, refs in by_split.items():
        for n, lo in enumerate(range(0, len(refs), capacity)):
            group = refs[lo:lo + capacity]
            digest = hashlib.sha256(json.dumps([config_sha, [r.source for r in group]]).encode()).hexdigest()
            plan.append({"file": shard_name(split, n), "split": split, "refs": group, "plan_sha256": digest})
    return plan


def existing_shard(path: Path, entry: dict, size: int, model_size: int) -> tuple[ShardRecord, list[dict]] | None:
    """The record and skips of an already complete shard matching its plan, else None."""
    import h5py

    from densereg_data.format.verify import check_shard_schema

    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("plan_sha256") != entry["plan_sha256"]:
                return None
            check_shard_schema(f, str(path), size=size, model_size=model_size, samples=None, split=entry["split"])
            n = f["image"].shape[0]
            skipped = json.loads(f.attrs.get("skipped", "[]"))
    except (OSError, ShardFormatError, ValueError) as exc:
        log.warning("redoing %s: %s", path.name, exc)
        return None
    return ShardRecord(path.name, entry["split"], n, path.stat().st_size, sha256_file(path)), skipped
