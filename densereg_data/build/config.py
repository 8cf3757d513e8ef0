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
    views: str | None = None  # new views of every face (3D profiling): yaw deltas "yaw=15,30,45", see build.views
    views_pitch: str | None = None  # pitch deltas "0,-15,15" combined with every yaw delta
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
        if self.views_pitch is not None and self.views is None:
            raise BuildError("--views-pitch needs --views (the yaw deltas, e.g. --views yaw=0 for pitch only)")
        self.view_spec  # parses --views / --views-pitch: one ConfigError line when wrong

    @property
    def view_spec(self):
        """The `build.views.ViewSpec` of --views / --views-pitch, None without --views."""
        if self.views is None:
            return None
        from densereg_data.build.views import ViewSpec

        return ViewSpec.parse(str(self.views), None if self.views_pitch is None else str(self.views_pitch))

    @property
    def samples_per_face(self) -> int:
        """Samples one face can give: the original and each new view."""
        spec = self.view_spec
        return 1 + (len(spec.deltas) if spec is not None else 0)

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def shard_capacity(self) -> int:
        """Faces per shard: the sample count limit, lowered so a shard stays under max_shard_bytes
        uncompressed, divided by the samples each face gives (the original and its views)."""
        per_sample = sum(int(np.prod(shape, dtype=np.int64)) * (np.dtype(dt).itemsize if dt != "str" else 64)
                         for dt, shape in sample_schema(self.size, 0).values())
        samples = max(1, min(int(self.samples_per_shard), int(self.max_shard_bytes) // per_sample))
        return max(1, samples // self.samples_per_face)


def output_config(cfg: BuildConfig, root: str | None, template: dict) -> dict:
    """The config.json document: only what changes the output (not workers, executor, ...)."""
    from densereg_data.version import __version__

    build = {k: getattr(cfg, k) for k in ("dataset", "model", "split", "size", "margin", "val_fraction", "seed", "max_fit_nme",
                                          "reduced_decode", "compression")}
    build["root"] = root
    if cfg.images is not None:
        build["images"] = str(Path(cfg.images).expanduser().resolve())
    build["samples_per_shard"] = cfg.shard_capacity()
    if cfg.view_spec is not None:  # absent without views, so a plain build's config.json is unchanged
        build["views"] = cfg.view_spec.to_text()
    return {"densereg_version": __version__, "format_version": FORMAT_VERSION, "template": template, "build": build}
