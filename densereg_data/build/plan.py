"""Planning and resuming a build: the output folder, the cut into shards, and which shards are done.

The samples are sorted (split, source) and cut into shards by that order alone, so shard membership
never depends on completion order. Each shard records a hash of its planned sample list with each
input file's size and modification time (`plan_sha256`) and the samples it skipped; a rerun keeps
every shard that is complete and matches its plan, removes stale temporary files, and writes only the
rest, so an edited or fixed input file redoes its shard.
"""

from __future__ import annotations

import contextlib
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

__all__ = ["check_out_vs_root", "lock_out", "prepare_out", "input_stamp", "plan_shards", "existing_shard"]


def _is_shard_folder(out: Path) -> bool:
    """Does `out` hold a densereg build (its config.json says so)?"""
    try:
        cfg = json.loads((out / CONFIG).read_bytes()[:1 << 20].decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(cfg, dict) and "build" in cfg and "format_version" in cfg


def check_out_vs_root(out: Path, root: Path | None) -> None:
    """Refuse an output folder that is the dataset folder or holds it (a build never writes over inputs)."""
    if root is None:
        return
    o, r = out.expanduser().resolve(), root.expanduser().resolve()
    if o == r or o in r.parents:
        raise BuildError(f"--out {out} is the dataset folder {root} or holds it; choose a folder of its own")


def prepare_out(out: Path, config_bytes: bytes, overwrite: bool) -> None:
    """Accept `out` (created and locked by `lock_out`) for a new build or for resuming, or refuse it.

    A folder holding another build is refused unless `overwrite`, which then removes that build's own
    files (index, config, template, skipped list, shards, temporaries) and nothing else; a non-empty
    folder that holds no build is never written into.
    """
    others = [f for f in out.iterdir() if not f.name.startswith(TMP_PREFIX)]
    if others:
        cfg = out / CONFIG
        same = cfg.is_file() and cfg.read_bytes() == config_bytes
        if not _is_shard_folder(out):
            raise BuildError(f"output folder {out} is not empty and holds no densereg build; choose another --out")
        if not same and not overwrite:
            raise BuildError(f"output folder {out} was built with a different configuration; "
                             "use --overwrite to replace it or choose another --out")
        if overwrite:
            log.info("--overwrite: removing the previous build in %s", out)
            for f in out.iterdir():
                if f.name in (INDEX, CONFIG, TEMPLATE, SKIPPED) or SHARD_RE.match(f.name):
                    f.unlink()
    try:
        probe = out / f"{TMP_PREFIX}{os.getpid()}-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BuildError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    for f in out.iterdir():  # leftovers of a killed run
        if f.name.startswith(TMP_PREFIX):
            f.unlink(missing_ok=True)


@contextlib.contextmanager
def lock_out(out: Path):
    """Create `out` if needed and hold an exclusive lock on it for the build (released at exit, also
    when the process dies). A second build into the same folder gets one BuildError line."""
    import fcntl

    if out.exists() and not out.is_dir():
        raise BuildError(f"output path exists and is not a folder: {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY)
    except OSError as exc:
        raise BuildError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is writing to {out}; wait for it to finish or choose another --out") from None
        yield out
    finally:
        os.close(fd)


def input_stamp(ref: SampleRef) -> list:
    """What a resumed build compares to notice a changed input: each file's size and modification time
    (and an annotation read by the dataset, by its content)."""
    out = []
    if ref.annotation is not None:
        a = ref.annotation
        out.append(hashlib.sha256(a.points.tobytes() + a.state.tobytes() + a.scheme.encode()).hexdigest())
    for p in (ref.image, ref.landmarks):
        if p is None:
            continue
        try:
            st = os.stat(p)
            out.append([st.st_size, st.st_mtime_ns])
        except OSError:
            out.append(None)
    return out


def plan_shards(scan: Scan, capacity: int, config_sha: str) -> list[dict]:
    """Cut the sorted samples into shards: per split, consecutive groups of `capacity`."""
    plan = []
    by_split: dict[str, list[SampleRef]] = {}
    for s in scan.samples:
        by_split.setdefault(s.split, []).append(s)
    for split, refs in by_split.items():
        for n, lo in enumerate(range(0, len(refs), capacity)):
            group = refs[lo:lo + capacity]
            stamps = [[r.source, input_stamp(r)] for r in group]
            digest = hashlib.sha256(json.dumps([config_sha, stamps], ensure_ascii=True).encode()).hexdigest()
            plan.append({"file": shard_name(split, n), "split": split, "refs": group, "plan_sha256": digest})
    return plan


def existing_shard(path: Path, entry: dict, size: int, model_size: int,
                   expression_size: int = 0) -> tuple[ShardRecord, list[dict]] | None:
    """The record and skips of an already complete shard matching its plan, else None."""
    from densereg_data.format.reader import check_shard_schema, h5_guard, open_shard_file

    if not path.is_file():
        return None
    try:
        with open_shard_file(path) as f, h5_guard(path):
            if f.attrs.get("plan_sha256") != entry["plan_sha256"]:
                return None
            check_shard_schema(f, str(path), size=size, model_size=model_size, samples=None, split=entry["split"],
                               expression_size=expression_size)
            n = f["image"].shape[0]
            skipped = json.loads(f.attrs.get("skipped", "[]"))
    except (OSError, ShardFormatError, ValueError, RecursionError) as exc:
        log.warning("redoing %s: %s", path.name, exc)
        return None
    return ShardRecord(path.name, entry["split"], n, path.stat().st_size, sha256_file(path)), skipped
