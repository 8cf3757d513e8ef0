"""Checking and summarising a shard directory: `verify` (checksums, schema, index) and `info`.

Both read through h5py, json and numpy only, like any consumer of docs/FORMAT.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from densereg_data.errors import ShardFormatError
from densereg_data.format.files import sha256_file
from densereg_data.format.index import MAX_INDEX_BYTES, ShardIndex
from densereg_data.format.reader import check_shard_schema, h5_guard, open_shard_file
from densereg_data.format.template_facts import read_template_facts
from densereg_data.format.values import check_values
from densereg_data.format.schema import (CONFIG, INDEX, SHARD_RE, SKIPPED, TEMPLATE,
                                         TEMPLATE_ATTRS, TEMPLATE_SCHEMA)

__all__ = ["verify", "info", "format_info"]


def _check_template(path: Path) -> dict:
    with open_shard_file(path) as f, h5_guard(path):
        for key, (dtype, shape) in TEMPLATE_SCHEMA.items():
            if key not in f:
                raise ShardFormatError(f"{path}: missing dataset {key}")
            ds = f[key]
            if ds.dtype.name != dtype or len(ds.shape) != len(shape):
                raise ShardFormatError(f"{path}: {key} is {ds.dtype.name} {ds.shape}, expected {dtype} {shape}")
        g = f["uv_to_xyz"].shape[0]
        if f["uv_to_xyz"].shape != (g, g, 3) or f["part_uv"].shape != (g, g) or f["landmark_uv"].shape != (68, 2):
            raise ShardFormatError(f"{path}: template grids disagree in shape")
        missing = [a for a in TEMPLATE_ATTRS if a not in f.attrs]
        if missing:
            raise ShardFormatError(f"{path}: missing attributes {missing}")
        out = {a: (f.attrs[a].item() if hasattr(f.attrs[a], "item") else f.attrs[a]) for a in TEMPLATE_ATTRS} | {"grid": g}
        expression_size = f.attrs.get("expression_size", 0)
        try:
            out["expression_size"] = int(expression_size)
        except (TypeError, ValueError):
            raise ShardFormatError(f"{path}: expression_size must be an integer, got {expression_size!r}"[:200]) from None
        if not 0 <= out["expression_size"] <= 10_000:
            raise ShardFormatError(f"{path}: expression_size must be in 0..10000, got {out['expression_size']}")
        return out


def verify(path: str | os.PathLike, *, values: bool = True) -> dict:
    """Check a shard directory; raise `ShardFormatError` naming the first bad file.

    Checks: index.json (format, version, keys, types and ranges of its values, split counts, plain
    shard names), config.json's sha256, template.h5's schema and values, skipped.jsonl (one JSON
    object per line), and for every shard its byte count and sha256 (before opening it), that it holds
    only plain datasets stored inside it, its file attributes, dataset names, dtypes, shapes, chunking
    and compression, sample count, and (unless `values` is False) every array's values
    (`densereg_data.format.values`). Returns a summary {"shards": n, "samples": n, "bytes": n}.
    """
    root = Path(path)
    sindex = ShardIndex.open(root)
    index = sindex.raw
    cfg = root / CONFIG
    if not cfg.is_file():
        raise ShardFormatError(f"{cfg}: missing")
    if sha256_file(cfg) != index.get("config_sha256"):
        raise ShardFormatError(f"{cfg}: sha256 does not match index.json's config_sha256")
    tmpl = _check_template(root / TEMPLATE)
    read_template_facts(root / TEMPLATE)  # values: finite landmark U-V, positive eye distance, grids agree
    _read_skipped(root / SKIPPED)
    model_size = int(tmpl["model_size"])
    expression_size = int(tmpl.get("expression_size", 0))
    size = int(index["image_size"][0])
    counts: dict[str, int] = {}
    listed = set()
    total_bytes = 0
    for rec in index["shards"]:
        name = rec["file"]  # a plain shard name: ShardIndex.open checked every record
        p = root / name
        listed.add(name)
        if not p.is_file():
            raise ShardFormatError(f"{p}: listed in index.json but missing")
        if p.stat().st_size != rec["bytes"]:
            raise ShardFormatError(f"{p}: {p.stat().st_size} bytes, index says {rec['bytes']}")
        if sha256_file(p) != rec["sha256"]:
            raise ShardFormatError(f"{p}: sha256 mismatch (the file is corrupt or was changed)")
        with open_shard_file(p) as f, h5_guard(p):
            check_shard_schema(f, str(p), size=size, model_size=model_size, samples=rec["samples"], split=rec["split"],
                               expression_size=expression_size)
            if values:
                check_values(f, str(p), n_parts=len(sindex.part_names))
        counts[rec["split"]] = counts.get(rec["split"], 0) + rec["samples"]
        total_bytes += rec["bytes"]
    for split, n in index["splits"].items():
        if counts.get(split, 0) != n:
            raise ShardFormatError(f"{root / INDEX}: split {split!r} says {n} samples, its shards hold {counts.get(split, 0)}")
    stray = sorted(f.name for f in root.iterdir() if SHARD_RE.match(f.name) and f.name not in listed)
    if stray:
        raise ShardFormatError(f"{root / stray[0]}: shard file not listed in index.json")
    return {"shards": len(index["shards"]), "samples": sum(counts.values()), "bytes": total_bytes}


def _read_skipped(path: Path) -> list[dict]:
    """skipped.jsonl: one JSON object per line ([] when absent); ShardFormatError naming the line."""
    if not path.exists():
        return []
    if not path.is_file() or path.stat().st_size > MAX_INDEX_BYTES:
        raise ShardFormatError(f"{path}: not a regular file of at most {MAX_INDEX_BYTES} bytes")
    out = []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ShardFormatError(f"{path}: not UTF-8 text") from None
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                raise ShardFormatError(f"{path}:{line_no}: not a JSON line") from None
            if not isinstance(entry, dict):
                raise ShardFormatError(f"{path}:{line_no}: not a JSON object")
            out.append(entry)
    return out


def info(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a shard directory (no checksums: see `verify`).

    Keys: path, densereg_version, template, image_size, splits, split_aliases, shards, bytes,
    bytes_per_sample, fit_nme (mean, median, p95, max), skipped (count, by_reason), config.
    """
    root = Path(path)
    sindex = ShardIndex.open(root)
    index = sindex.raw
    nme = []
    for rec in index["shards"]:
        if rec["samples"]:
            with open_shard_file(root / rec["file"]) as f, h5_guard(root / rec["file"]):
                nme.append(np.asarray(f["fit_nme"][()], dtype=np.float64).reshape(-1))
    nme_all = np.concatenate(nme) if nme else np.zeros(0, np.float32)
    total = sum(r["bytes"] for r in index["shards"])
    n = int(sum(index["splits"].values()))
    skipped = _read_skipped(root / SKIPPED)
    by_reason: dict[str, int] = {}
    for s in skipped:
        kind = str(s.get("kind", s.get("reason", "?")).split(":")[0])
        by_reason[kind] = by_reason.get(kind, 0) + 1
    return {
        "path": str(root),
        "densereg_version": index.get("densereg_version"),
        "template": index.get("template"),
        "image_size": index["image_size"],
        "splits": index["splits"],
        "split_aliases": index["split_aliases"],
        "shards": len(index["shards"]),
        "samples": n,
        "bytes": total,
        "bytes_per_sample": (total / n) if n else None,
        "fit_nme": {
            "mean": float(nme_all.mean()), "median": float(np.median(nme_all)),
            "p95": float(np.percentile(nme_all, 95)), "max": float(nme_all.max()),
        } if nme_all.size else None,
        "skipped": {"count": len(skipped), "by_reason": dict(sorted(by_reason.items()))},
        "config": sindex.build_config or None,  # config.json as ShardIndex.open read it (size-capped)
    }


def format_info(summary: dict[str, Any]) -> str:
    """`info`'s dict as a short human-readable report."""
    lines = [
        f"shards:      {summary['path']}  ({summary['shards']} files, {summary['bytes'] / 1e6:.1f} MB)",
        f"template:    {summary['template']['id']}  {summary['template']['hash'][:12]}",
        f"image size:  {summary['image_size'][0]}x{summary['image_size'][1]}",
        "splits:      " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
        + "".join(f"; {a} = {' + '.join(m)}" for a, m in summary["split_aliases"].items()),
        f"samples:     {summary['samples']}"
        + (f"  ({summary['bytes_per_sample'] / 1e3:.1f} kB per sample on disk)" if summary["bytes_per_sample"] else ""),
    ]
    if summary["fit_nme"]:
        f = summary["fit_nme"]
        lines.append(f"fit NME:     mean {f['mean']:.4f}, median {f['median']:.4f}, p95 {f['p95']:.4f}, max {f['max']:.4f}")
    sk = summary["skipped"]
    lines.append(f"skipped:     {sk['count']}" + (" (" + ", ".join(f"{k} {v}" for k, v in sk["by_reason"].items()) + ")"
                                                    if sk["count"] else ""))
    return "\n".join(lines)
