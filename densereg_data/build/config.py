"""A build's configuration: `BuildConfig` (every setting, checked) and `output_config` (config.json).

Layering (dataclass defaults <- config file <- flags) is `densereg_data.config.layered_config`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densereg_data.build.executors import EXECUTORS
from densereg_data.errors import BuildError
from densereg_data.format import COMPRESSIONS, FORMAT_VERSION, sample_schema

__all__ = ["BuildConfig", "output_config"]


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs. Output-affecting fields go into config.json (see `output_config`)."""

    dataset: str = "300w"
    model: str = "menpo3d"
    root: str | None = None
    images: str | None = None  # a dataset's images when they are not under root (MERL-RAV: AFLW's)
    scheme: str = "ibug68"  # fit runs: "ibug68" (the 68-point subset) or "native" (the dataset's own scheme)
    out: str = "shards"
    split: str = "all"
    size: int = 256
    margin: float = 0.25
    val_fraction: float = 0.2
    seed: int = 0
    max_fit_nme: float | None = None
    max_skip_fraction: float = 0.05
    samples_per_shard: int = 1000
    max_shard_bytes: int = 512 * 2**20
    workers: int | None = None
    executor: str = "local"
    scheduler: str | None = None
    dask_processes: bool = True
    reduced_decode: bool = True
    compression: str = "lzf"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 4096:
            raise BuildError(f"--size must be in 16..4096, got {self.size}")
        if not 0.0 <= float(self.margin) <= 4.0:
            raise BuildError(f"--margin must be in [0, 4], got {self.margin}")
        if not 0.0 <= float(self.max_skip_fraction) <= 1.0:
            raise BuildError(f"--max-skip-fraction must be in [0, 1], got {self.max_skip_fraction}")
        if self.max_fit_nme is not None and not float(self.max_fit_nme) > 0:
            raise BuildError(f"--max-fit-nme must be > 0, got {self.max_fit_nme}")
        if self.workers is not None and int(self.workers) < 1:
            raise BuildError(f"--workers must be >= 1, got {self.workers}")
        if int(self.samples_per_shard) < 1:
            raise BuildError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")
        if self.compression not in COMPRESSIONS:
            raise BuildError(f"--compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.executor not in EXECUTORS:
            raise BuildError(f"unknown executor {self.executor!r} (valid: {', '.join(sorted(EXECUTORS))})")

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def shard_capacity(self) -> int:
        """Samples per shard: the count limit, lowered so a shard stays under max_shard_bytes uncompressed."""
        per_sample = sum(int(np.prod(shape, dtype=np.int64)) * (np.dtype(dt).itemsize if dt != "str" else 64)
                         for dt, shape in sample_schema(self.size, 0).values())
        return max(1, min(int(self.samples_per_shard), int(self.max_shard_bytes) // per_sample))


def output_config(cfg: BuildConfig, root: str | None, template: dict) -> dict:
    """The config.json document: only what changes the output (not workers, executor, ...)."""
    from densereg_data.version import __version__

    build = {k: getattr(cfg, k) for k in ("dataset", "model", "split", "size", "margin", "val_fraction", "seed", "max_fit_nme",
                                          "reduced_decode", "compression")}
    build["root"] = root
    if cfg.images is not None:
        build["images"] = str(Path(cfg.images).expanduser().resolve())
    build["samples_per_shard"] = cfg.shard_capacity()
    return {"densereg_version": __version__, "format_version": FORMAT_VERSION, "template": template, "build": build}
